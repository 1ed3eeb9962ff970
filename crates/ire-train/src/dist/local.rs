//! The in-process engine: one thread per device in this process, joined by burn-collective's
//! local group (on CUDA its device-to-device transfers go through NCCL send/recv inside
//! cubecl-cuda). Cannot span processes.

use burn::collective::{self, CollectiveConfig, PeerId, ReduceOperation};
use burn::prelude::*;
use burn::tensor::TensorPrimitive;

use crate::dist::engine::{Engine, Rank};
use crate::TrainError;

/// One thread's member of the in-process group.
pub struct LocalEngine<B: Backend> {
    rank: Rank,
    device: B::Device,
}

impl<B: Backend> LocalEngine<B> {
    /// Joins the group of `rank.world` threads (each calls it once, on its own device).
    pub fn join(rank: Rank, device: &B::Device) -> Result<Self, TrainError> {
        if rank.world > 1 {
            let config = CollectiveConfig::default().with_num_devices(rank.world);
            collective::register::<B>(peer(rank), device.clone(), config)
                .map_err(|e| failed(rank, "registering", e))?;
        }
        Ok(Self {
            rank,
            device: device.clone(),
        })
    }
}

/// Resets burn-collective's in-process server so a new group can form (a second run in the
/// same process, e.g. in tests). Call before the threads join.
pub fn reset<B: Backend>() {
    collective::reset_collective::<B>();
}

fn peer(rank: Rank) -> PeerId {
    PeerId(rank.index as u32)
}

fn failed(rank: Rank, what: &str, e: impl std::fmt::Debug) -> TrainError {
    TrainError::Collective(format!("{what}, rank {} (local engine): {e:?}", rank.index))
}

impl<B: Backend> Engine<B> for LocalEngine<B> {
    fn name(&self) -> &'static str {
        "local"
    }

    fn rank(&self) -> Rank {
        self.rank
    }

    fn sum_device(&self, bucket: Tensor<B, 1>) -> Result<Tensor<B, 1>, TrainError> {
        if self.rank.world == 1 {
            return Ok(bucket);
        }
        let summed = collective::all_reduce::<B>(
            peer(self.rank),
            bucket.into_primitive().tensor(),
            ReduceOperation::Sum,
        )
        .map_err(|e| failed(self.rank, "gradient all-reduce", e))?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(summed)))
    }

    fn sum_host(&self, values: &[f32]) -> Result<Vec<f32>, TrainError> {
        if self.rank.world == 1 {
            return Ok(values.to_vec());
        }
        let t = Tensor::<B, 1>::from_floats(values, &self.device);
        let summed = self.sum_device(t)?;
        summed
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| failed(self.rank, "reading the summed scalars", e))
    }

    fn finish(&self) -> Result<(), TrainError> {
        if self.rank.world == 1 {
            return Ok(());
        }
        collective::finish_collective::<B>(peer(self.rank))
            .map_err(|e| failed(self.rank, "leaving", e))
    }
}
