//! The collective interface of data parallelism: the few operations a group of ranks needs —
//! a sum of flat gradient buckets on the device, a sum of a few host scalars (the agreement
//! point), a broadcast and a barrier — and a rank's place in the group ([`Rank`]). Each engine
//! implements [`Engine`]: the in-process group of threads (`local.rs`, burn-collective), MPI
//! (`mpi.rs`, feature `mpi`) and NCCL (`nccl.rs`, feature `cuda`).

use std::sync::Arc;

use burn::prelude::*;

use crate::TrainError;

/// This replica's place in the data-parallel group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rank {
    /// 0-based index; rank 0 logs, evaluates and checkpoints.
    pub index: usize,
    /// Number of replicas.
    pub world: usize,
}

impl Rank {
    /// The only rank of a one-replica run.
    pub const SOLO: Rank = Rank { index: 0, world: 1 };

    /// Whether this rank logs, evaluates and checkpoints.
    pub fn is_main(&self) -> bool {
        self.index == 0
    }
}

/// Ends the whole job at once, from any thread (the collective watchdog calls it when a
/// collective does not finish in time): `MPI_Abort`, or aborting the NCCL communicator.
pub type Aborter = Arc<dyn Fn() + Send + Sync>;

/// One rank's handle on a collective engine. Every rank calls the same operations in the same
/// order; each call returns when all ranks have made it (or fails).
pub trait Engine<B: Backend> {
    /// The engine's name in logs: `local`, `mpi` or `nccl`.
    fn name(&self) -> &'static str;

    /// This rank's place in the group.
    fn rank(&self) -> Rank;

    /// The element-wise sum of `bucket` (a flat f32 tensor on this rank's device) over all
    /// ranks; every rank gets the sum. In place where the engine allows it (NCCL).
    fn sum_device(&self, bucket: Tensor<B, 1>) -> Result<Tensor<B, 1>, TrainError>;

    /// The element-wise sum of a few host values over all ranks (flags, losses).
    fn sum_host(&self, values: &[f32]) -> Result<Vec<f32>, TrainError>;

    /// Rank `root`'s `bytes`, on every rank (the others' `bytes` are ignored). The default
    /// goes through [`Engine::sum_host`] (the length, then the bytes as exact small floats);
    /// engines with a native broadcast use it.
    fn broadcast_host(&self, bytes: &[u8], root: usize) -> Result<Vec<u8>, TrainError> {
        let mine = self.rank().index == root;
        let len = self.sum_host(&[if mine { bytes.len() as f32 } else { 0.0 }])?[0] as usize;
        let send: Vec<f32> = match mine {
            true => bytes.iter().map(|&b| f32::from(b)).collect(),
            false => vec![0.0; len],
        };
        Ok(self.sum_host(&send)?.iter().map(|&v| v as u8).collect())
    }

    /// Returns when every rank has called it.
    fn barrier(&self) -> Result<(), TrainError> {
        self.sum_host(&[0.0]).map(drop)
    }

    /// How to end the whole job from another thread, when the engine can (see [`Aborter`]).
    fn aborter(&self) -> Option<Aborter> {
        None
    }

    /// Leaves the group (every rank, once, at the end).
    fn finish(&self) -> Result<(), TrainError> {
        Ok(())
    }
}
