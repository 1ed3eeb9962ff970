//! `ire-core`: the few helpers every other ire crate needs, each written once.
//!
//! - [`fs`]: a durable atomic write (temporary sibling, fsync, rename, fsync of the folder), a
//!   folder fsync, and sha256 of bytes and of a file (streamed).
//! - [`lock`]: [`DirLock`], one job per folder: an exclusive lock file naming its holder (pid,
//!   host, start time), taken over from a holder that died on this host.
//! - [`progress`]: [`Progress`], a long command's progress: a bar on a terminal, plain periodic
//!   log lines otherwise (files kept by nohup or Slurm).
//! - [`time`]: seconds since the epoch, and as an RFC 3339 UTC string.
//! - [`rng`]: SplitMix64, the fixed stream behind weight initialisation, GNB labels, data
//!   sampling and the sharpness probes (no dependency whose stream could change with a version).
//! - [`cpu`]: which x86 instruction set the running CPU has, and [`multiversion!`], which
//!   compiles a kernel for each and dispatches at run time.
//!
//! It sits below every other crate and depends on none of them (nor on Burn), so any crate may
//! use it without creating a cycle: see `docs/architecture.md`.
#![warn(missing_docs)]

pub mod cpu;
pub mod fs;
pub mod lock;
pub mod progress;
pub mod rng;
pub mod time;

pub use fs::IoError;
pub use lock::{DirLock, Holder, LockError};
pub use progress::{Cadence, Progress};
pub use rng::{splitmix64, SplitMix64};
