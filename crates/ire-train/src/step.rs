//! The training step as separate, callable pieces. The rank loop (`rank_loop.rs`), `ire bench
//! step` ([`crate::bench`]) and the example below call these same functions:
//!
//! ```text
//! estimate_curvature  AdmIRE, when due: the GNB gradient ĝ on fresh micro-batches, averaged
//!                     (then Optimizer::refresh_mask builds the mask from it)
//! forward_backward    forward/backward over the micro-batches, each loss scaled by 1/accum:
//!                     the summed gradients and the mean loss
//! apply_update        clip; guard (finite loss and norm, else skip or stop); optimizer step:
//!                     what was done (loss, grad norm, lr, κ_t applied, mask statistics)
//! ```
//!
//! Between them the data-parallel loop adds only its agreement and collective calls (the mean
//! of ĝ and of the gradients, the global loss), and after them the cadence of log, evaluation
//! and checkpoint.
//!
//! **Step counting**, the same in every file of ire: an *iteration* `it` is 0-based — the
//! paper's t, what the optimizer, the schedule and the GNB seed take. The *step* is `it + 1`,
//! the number of updates done once the iteration finishes — what logs, `metrics.jsonl`,
//! checkpoint folders (`step-000010`), `IRE_FAULT`, errors and
//! [`TrainerState::step`](crate::checkpoint::TrainerState::step) say.
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::prelude::*;
//! use ire_llama::{InitScheme, Llama, LlamaConfig};
//! use ire_optim::{gnb_seed, OptimConfig, Optimizer, ScheduleConfig, ScheduleKind};
//! use ire_train::guard::Guard;
//! use ire_train::step::{apply_update, estimate_curvature, forward_backward, UpdateSettings};
//! use ire_train::GuardSection;
//! type B = Autodiff<Flex>;
//!
//! let device = Default::default();
//! let mut cfg = LlamaConfig::preset("tiny").unwrap();
//! (cfg.vocab_size, cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) = (64, 1, 32, 64);
//! let mut model = Llama::<B>::init(&cfg, InitScheme::Torch, 0, &device).unwrap();
//! let schedule = ScheduleConfig { kind: ScheduleKind::Cosine, lr_max: 1e-3, lr_min: None, warmup: 2, total: 10 }
//!     .build()
//!     .unwrap();
//! let mut optim = Optimizer::<B>::new(&OptimConfig::admire(), schedule.warmup).unwrap();
//! let tokens = Tensor::<B, 2, Int>::from_ints([[1, 2, 3, 4, 5]], &device);
//! let (x, y) = (tokens.clone().slice([0..1, 0..4]), tokens.clone().slice([0..1, 1..5]));
//! let (guard_cfg, mut skipped) = (GuardSection::default(), 0);
//! for it in 0..5 {
//!     if optim.needs_refresh(it) {
//!         let g_hat = estimate_curvature(&model, 1, gnb_seed(1, it as u64), |_| Ok((tokens.clone(), 0)))?;
//!         optim.refresh_mask(&model, &g_hat);
//!     }
//!     let grads = forward_backward(&model, 1, || Ok((x.clone(), y.clone())))?;
//!     let settings = UpdateSettings { iteration: it, lr: schedule.lr_at(it), lr_max: schedule.lr_max, clip_norm: Some(1.0) };
//!     let mut guard = Guard { cfg: &guard_cfg, skipped: &mut skipped, last_good: None };
//!     let (next, update) = apply_update(&mut optim, model, grads, &settings, &mut guard)?;
//!     model = next;
//!     assert!(update.applied && update.loss.is_finite());
//!     // The boost applies after the warm-up, once a mask exists (iteration 3 here).
//!     assert_eq!(update.kappa_t > 0.0, it >= 3);
//! }
//! // ⌊γp⌋/p of the coordinates (more with ties at τ) are flat.
//! assert!(optim.mask_fraction().unwrap() > 0.59);
//! # Ok::<(), ire_train::TrainError>(())
//! ```

use burn::optim::GradientsParams;
use burn::prelude::*;
use ire_data::Batch;
use ire_llama::Llama;
use ire_optim::{
    clip_global_norm, global_grad_norm, gnb_gradients, MaskReport, MaskStats, Optimizer,
    TrainBackend,
};

use crate::guard::Guard;
use crate::TrainError;

/// A micro-batch as tensors: inputs and targets, `[batch, seq]` each.
pub type Tokens<B> = (Tensor<B, 2, Int>, Tensor<B, 2, Int>);

/// What [`forward_backward`] computed.
pub struct StepGrads {
    /// The gradients, summed over the micro-batches of losses scaled by 1/accum (so they
    /// average).
    pub grads: GradientsParams,
    /// The mean loss over the micro-batches.
    pub loss: f32,
}

/// The update's inputs that are not tensors.
#[derive(Debug, Clone, Copy)]
pub struct UpdateSettings {
    /// The 0-based iteration (the optimizer's t).
    pub iteration: usize,
    /// η_t.
    pub lr: f64,
    /// η_max (for AdmIRE's `prog_decay`).
    pub lr_max: f64,
    /// Global-norm clipping threshold (`optim.clip_norm`), or none.
    pub clip_norm: Option<f64>,
}

/// What [`apply_update`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The step (1-based) this update completes.
    pub step: usize,
    /// The loss the gradients came from.
    pub loss: f32,
    /// The global gradient norm before clipping.
    pub grad_norm: f32,
    /// η_t.
    pub lr: f64,
    /// The κ_t the optimizer applied (0 when it did not boost or the update was skipped).
    pub kappa_t: f64,
    /// Whether the update was applied (false: skipped by the guard).
    pub applied: bool,
    /// The current mask's threshold and fraction (AdmIRE after its first refresh).
    pub mask: Option<MaskStats>,
    /// The per-group diagnostics of the mask refresh this step did (AdmIRE, refresh steps).
    pub mask_report: Option<MaskReport>,
}

/// A prepared batch as tensors on `device`.
pub fn batch_tensors<B: Backend>(batch: &Batch, device: &B::Device) -> Tokens<B> {
    let shape = [batch.batch, batch.seq_len];
    let x: Vec<i64> = batch.inputs.iter().map(|&t| t as i64).collect();
    let y: Vec<i64> = batch.targets.iter().map(|&t| t as i64).collect();
    (
        Tensor::from_data(TensorData::new(x, shape), device),
        Tensor::from_data(TensorData::new(y, shape), device),
    )
}

/// Forward and backward over `accum` micro-batches from `next`; each loss is scaled by
/// 1/accum before its backward, so the summed gradients are the mean gradient.
pub fn forward_backward<B: TrainBackend>(
    model: &Llama<B>,
    accum: usize,
    mut next: impl FnMut() -> Result<Tokens<B>, TrainError>,
) -> Result<StepGrads, TrainError> {
    let mut grads = None;
    let mut loss_sum: Option<Tensor<B::InnerBackend, 1>> = None;
    for _ in 0..accum {
        let (x, y) = next()?;
        let loss = model.loss(x, y);
        let inner = loss.clone().inner();
        loss_sum = Some(match loss_sum {
            None => inner,
            Some(sum) => sum + inner,
        });
        let g = GradientsParams::from_grads(loss.div_scalar(accum as f64).backward(), model);
        grads = Some(accumulate(grads, g, model));
    }
    let (Some(grads), Some(loss_sum)) = (grads, loss_sum) else {
        return Err(TrainError::config("batch.grad_accum", "at least 1"));
    };
    let loss = loss_sum.into_scalar().elem::<f32>() / accum as f32;
    Ok(StepGrads { grads, loss })
}

/// AdmIRE's curvature estimate: the GNB gradient ([`gnb_gradients`], labels sampled from the
/// model's own predictions under `seed`) over `accum` micro-batches, averaged. `next(m)` gives
/// micro-batch `m`'s inputs and the global index of its first sample (which keys the labels).
pub fn estimate_curvature<B: TrainBackend>(
    model: &Llama<B>,
    accum: usize,
    seed: u64,
    mut next: impl FnMut(usize) -> Result<(Tensor<B, 2, Int>, u64), TrainError>,
) -> Result<GradientsParams, TrainError> {
    let mut estimate = None;
    for m in 0..accum {
        let (x, first_sample) = next(m)?;
        let g = gnb_gradients(model, x, seed, first_sample);
        let g = ire_optim::scale_gradients::<B, _>(g, 1.0 / accum as f64, model);
        estimate = Some(accumulate(estimate, g, model));
    }
    estimate.ok_or_else(|| TrainError::config("batch.grad_accum", "at least 1"))
}

/// Clip, guard, optimizer step. The guard runs before the optimizer touches the weights: a
/// non-finite loss or gradient norm skips the update or stops the run ([`Guard::check`]).
pub fn apply_update<B: TrainBackend>(
    optim: &mut Optimizer<B>,
    model: Llama<B>,
    grads: StepGrads,
    s: &UpdateSettings,
    guard: &mut Guard,
) -> Result<(Llama<B>, Update), TrainError> {
    let StepGrads { grads, loss } = grads;
    let (grads, grad_norm) = match s.clip_norm {
        Some(max_norm) => clip_global_norm(&model, grads, max_norm),
        None => {
            let norm = global_grad_norm(&model, &grads) as f32;
            (grads, norm)
        }
    };
    let step = s.iteration + 1;
    let applied = guard.check(step, loss, grad_norm)?;
    let model = match applied {
        true => optim.step(s.iteration, s.lr, s.lr_max, model, grads),
        false => model,
    };
    let update = Update {
        step,
        loss,
        grad_norm,
        lr: s.lr,
        kappa_t: if applied { optim.applied_kappa() } else { 0.0 },
        applied,
        mask: optim.mask_stats(),
        mask_report: optim.take_mask_report(),
    };
    Ok((model, update))
}

/// Sums gradients (`None` = nothing yet).
fn accumulate<B: TrainBackend>(
    acc: Option<GradientsParams>,
    g: GradientsParams,
    model: &Llama<B>,
) -> GradientsParams {
    match acc {
        None => g,
        Some(acc) => ire_optim::add_gradients::<B, _>(acc, g, model),
    }
}
