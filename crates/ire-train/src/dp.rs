//! Data parallelism: one model replica per device, each in its own thread on its own
//! micro-batches; gradients are averaged with burn-collective's all-reduce before one identical
//! optimizer step on every replica (so replicas stay equal without broadcasting weights).
//!
//! Replicas must be clones of one module: burn's `GradientsParams::all_reduce` pairs tensors by
//! sorted `ParamId`, and clones share ids. With one device nothing here communicates.

use burn::collective::{self, CollectiveConfig, PeerId, ReduceOperation};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::TensorPrimitive;

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
    /// Whether this rank logs, evaluates and checkpoints.
    pub fn is_main(&self) -> bool {
        self.index == 0
    }

    fn peer(&self) -> PeerId {
        PeerId(self.index as u32)
    }

    /// Joins the collective group (no-op for one device). Every rank must call it once.
    pub fn register<B: AutodiffBackend>(&self, device: &B::Device) -> Result<(), TrainError> {
        if self.world == 1 {
            return Ok(());
        }
        let config = CollectiveConfig::default().with_num_devices(self.world);
        collective::register::<B::InnerBackend>(self.peer(), device.clone(), config)
            .map_err(|e| TrainError::Collective(format!("registering rank {}: {e:?}", self.index)))
    }

    /// Leaves the collective group (no-op for one device).
    pub fn finish<B: AutodiffBackend>(&self) -> Result<(), TrainError> {
        if self.world == 1 {
            return Ok(());
        }
        collective::finish_collective::<B::InnerBackend>(self.peer())
            .map_err(|e| TrainError::Collective(format!("leaving, rank {}: {e:?}", self.index)))
    }

    /// Averages gradients over all replicas.
    pub fn mean_gradients<B: AutodiffBackend>(
        &self,
        grads: GradientsParams,
    ) -> Result<GradientsParams, TrainError> {
        if self.world == 1 {
            return Ok(grads);
        }
        grads
            .all_reduce::<B::InnerBackend>(self.peer(), ReduceOperation::Mean)
            .map_err(|e| TrainError::Collective(format!("gradients, rank {}: {e:?}", self.index)))
    }

    /// Sums a small vector of host values over all replicas (loss, stop flags).
    pub fn sum_host<B: AutodiffBackend>(
        &self,
        values: &[f32],
        device: &B::Device,
    ) -> Result<Vec<f32>, TrainError> {
        if self.world == 1 {
            return Ok(values.to_vec());
        }
        let t = Tensor::<B::InnerBackend, 1>::from_floats(values, device);
        let reduced = collective::all_reduce::<B::InnerBackend>(
            self.peer(),
            t.into_primitive().tensor(),
            ReduceOperation::Sum,
        )
        .map_err(|e| TrainError::Collective(format!("scalars, rank {}: {e:?}", self.index)))?;
        let t = Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(reduced));
        Ok(t.into_data().convert::<f32>().to_vec().unwrap_or_default())
    }
}

impl Rank {
    /// The error-carrying barrier: every rank calls it at the same point with the outcome of
    /// its own work since the last one, and all learn whether any rank failed. A rank's own
    /// error comes back to it; a rank that was fine gets [`TrainError::PeerFailed`], so every
    /// rank leaves the loop at the same step and none waits forever in the next all-reduce.
    /// `values` are summed over the ranks alongside (loss, stop flags).
    pub fn agree<B: AutodiffBackend, T>(
        &self,
        local: Result<T, TrainError>,
        values: &[f32],
        device: &B::Device,
    ) -> Result<(T, Vec<f32>), TrainError> {
        let mut send = values.to_vec();
        send.push(if local.is_err() { 1.0 } else { 0.0 });
        let summed = self.sum_host::<B>(&send, device)?;
        let failed = summed[values.len()];
        match local {
            Err(e) => Err(e),
            Ok(_) if failed > 0.0 => Err(TrainError::PeerFailed),
            Ok(v) => Ok((v, summed[..values.len()].to_vec())),
        }
    }
}

/// Resets burn-collective's in-process server so a new group can form (a second run in the
/// same process, e.g. in tests).
pub fn reset<B: AutodiffBackend>() {
    collective::reset_collective::<B::InnerBackend>();
}
