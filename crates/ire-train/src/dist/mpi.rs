//! The MPI engine (cargo feature `mpi`): rsmpi over the system's OpenMPI or MPICH, for CPU
//! clusters and HPC launchers. Buffers are on the host: a gradient bucket is copied out of
//! the device, summed with `MPI_Allreduce` and copied back (on CUDA that is host staging; use
//! NCCL there). The processes are MPI's world: started by `mpirun` (or `srun --mpi=pmix`).
//!
//! A rank that dies makes the launcher end the job (mpirun kills the others and exits
//! non-zero); a rank that hangs is caught by the collective watchdog, which calls
//! `MPI_Abort`.
//!
//! [`broadcast_from_rank_0`] is the NCCL engine's rendezvous under mpirun: MPI carries the
//! NCCL id (MPI is initialized once per process, by one engine or the other).

use std::sync::Arc;

use burn::prelude::*;
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;

use crate::dist::engine::{Aborter, Engine, Rank};
use crate::dist::launch::Launch;
use crate::TrainError;

/// This process's member of `MPI_COMM_WORLD`. Dropping it finalizes MPI.
pub struct MpiEngine<B: Backend> {
    world: SimpleCommunicator,
    rank: Rank,
    device: B::Device,
    // Last: finalizes MPI after the communicator is gone.
    _universe: Universe,
}

impl<B: Backend> MpiEngine<B> {
    /// Initializes MPI (thread level `MPI_THREAD_MULTIPLE`, so the watchdog may abort from its
    /// own thread) and checks that MPI's world is the launcher's.
    pub fn init(launch: &Launch, device: &B::Device) -> Result<Self, TrainError> {
        let Some((universe, _level)) = mpi::initialize_with_threading(Threading::Multiple) else {
            return Err(TrainError::Collective(
                "MPI was already initialized in this process".into(),
            ));
        };
        let world = universe.world();
        let rank = same_world(&world, launch)?;
        Ok(Self {
            world,
            rank,
            device: device.clone(),
            _universe: universe,
        })
    }

    fn sum(&self, values: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; values.len()];
        if !values.is_empty() {
            self.world
                .all_reduce_into(values, &mut out[..], SystemOperation::sum());
        }
        out
    }
}

/// This process's place in MPI's world, checked against the launcher's.
fn same_world(world: &SimpleCommunicator, launch: &Launch) -> Result<Rank, TrainError> {
    let rank = Rank {
        index: world.rank() as usize,
        world: world.size() as usize,
    };
    if (rank.index, rank.world) != (launch.rank, launch.world) {
        return Err(TrainError::Collective(format!(
            "MPI sees rank {} of {}, but the {} environment says rank {} of {}: start the job \
             with mpirun (or srun --mpi=pmix), or use dist.engine = \"nccl\" under torchrun",
            rank.index, rank.world, launch.launcher, launch.rank, launch.world
        )));
    }
    Ok(rank)
}

/// Rank 0's `bytes` (a fixed-size id) on every rank of MPI's world: initializes MPI, checks
/// that its world is the launcher's and broadcasts. The universe keeps MPI initialized until
/// it is dropped (it finalizes MPI then).
pub fn broadcast_from_rank_0<const N: usize>(
    launch: &Launch,
    bytes: &[u8; N],
) -> Result<(Universe, [u8; N]), TrainError> {
    let Some(universe) = mpi::initialize() else {
        return Err(TrainError::Collective(
            "MPI was already initialized in this process".into(),
        ));
    };
    let world = universe.world();
    same_world(&world, launch)?;
    let mut buf = *bytes;
    world.process_at_rank(0).broadcast_into(&mut buf[..]);
    Ok((universe, buf))
}

impl<B: Backend> Engine<B> for MpiEngine<B> {
    fn name(&self) -> &'static str {
        "mpi"
    }

    fn rank(&self) -> Rank {
        self.rank
    }

    fn sum_device(&self, bucket: Tensor<B, 1>) -> Result<Tensor<B, 1>, TrainError> {
        let n = bucket.dims()[0];
        let host = bucket
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| TrainError::Collective(format!("reading a gradient bucket: {e:?}")))?;
        let summed = self.sum(&host);
        Ok(Tensor::from_data(
            TensorData::new(summed, [n]),
            &self.device,
        ))
    }

    fn sum_host(&self, values: &[f32]) -> Result<Vec<f32>, TrainError> {
        Ok(self.sum(values))
    }

    fn broadcast_host(&self, bytes: &[u8], root: usize) -> Result<Vec<u8>, TrainError> {
        let from = self.world.process_at_rank(root as i32);
        let mut len = bytes.len() as u64;
        from.broadcast_into(&mut len);
        let mut buf = match self.rank.index == root {
            true => bytes.to_vec(),
            false => vec![0u8; len as usize],
        };
        if len > 0 {
            from.broadcast_into(&mut buf[..]);
        }
        Ok(buf)
    }

    fn barrier(&self) -> Result<(), TrainError> {
        self.world.barrier();
        Ok(())
    }

    fn aborter(&self) -> Option<Aborter> {
        // SAFETY: MPI_Abort may be called from any thread once MPI is initialized with
        // MPI_THREAD_MULTIPLE; it does not return.
        Some(Arc::new(|| unsafe {
            mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, 1);
        }))
    }
}
