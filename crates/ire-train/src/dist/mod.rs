//! Data parallelism over threads, processes and machines: one model replica per device, each
//! on its own micro-batches, gradients averaged before one identical optimizer step on every
//! replica.
//!
//! ```text
//! launch.rs     which launcher started this process: rank, world, local rank, rendezvous
//! engine.rs     the collective interface (Engine) and a rank's place (Rank)
//! local.rs      threads of one process (burn-collective)
//! mpi.rs        MPI through rsmpi (feature `mpi`): host buffers
//! nccl.rs       NCCL through cudarc (feature `cuda`): in place on the GPU's buffers
//! nccl_lib.rs   whether NCCL's library loads, and what to do when it does not (libnccl.so.2)
//! rendezvous.rs rank 0's NCCL id to every rank over TCP (std::net; any build)
//! connect.rs    the engine a run uses: `dist.engine` and the launcher resolved
//! buckets.rs    gradients as flat buckets in visiting order
//! watchdog.rs   a collective that waits too long ends the job
//! group.rs      what the loop calls: agree, mean_gradients, check_same
//! check.rs      `ire bench allreduce`: known values summed, compared, timed
//! ```
//!
//! `docs/distributed.md` has the launch recipes and what happens on each failure.

pub mod buckets;
pub mod check;
pub mod connect;
pub mod engine;
pub mod group;
pub mod launch;
pub mod local;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "cuda")]
pub mod nccl;
pub mod nccl_lib;
pub mod rendezvous;
pub mod watchdog;

pub use connect::{connect, resolve_engine};
pub use engine::{Engine, Rank};
pub use group::Group;
pub use launch::{Launch, Launcher};
