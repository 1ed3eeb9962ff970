//! Evaluation: the mean loss over the run's fixed validation windows, and when it is due.

use burn::module::AutodiffModule;
use burn::prelude::*;
use ire_data::Batch;
use ire_llama::{IreOps, Llama};
use ire_optim::TrainBackend;

use crate::step::batch_tensors;

/// Whether `step` (1-based) is evaluated: every `eval.interval` steps (0 = never) and at the
/// end of the schedule (`total`).
pub(crate) fn due(interval: usize, total: usize, step: usize) -> bool {
    (interval > 0 && step.is_multiple_of(interval)) || step == total
}

/// The validation loss of a training model (evaluated without autodiff).
pub(crate) fn evaluate_training<B: TrainBackend>(
    model: &Llama<B>,
    val: &Batch,
    micro: usize,
    device: &B::Device,
) -> f64 {
    evaluate(&model.valid(), val, micro, device)
}

/// Mean loss over the fixed validation windows, in chunks of `micro` sequences.
pub fn evaluate<B: IreOps>(model: &Llama<B>, val: &Batch, micro: usize, device: &B::Device) -> f64 {
    let mut total = 0.0f64;
    let mut start = 0;
    while start < val.batch {
        let n = micro.min(val.batch - start);
        let chunk = val.rows(start, n);
        let (x, y) = batch_tensors::<B>(&chunk, device);
        let loss: f32 = model.loss(x, y).into_scalar().elem();
        total += loss as f64 * n as f64;
        start += n;
    }
    total / val.batch as f64
}
