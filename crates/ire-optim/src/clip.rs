//! Global-norm gradient clipping across all parameters, like `torch.nn.utils.clip_grad_norm_`
//! (Burn's own clipping works per tensor, which is not what the paper does).
//!
//! ```text
//! total = ‖(g_1, …, g_P)‖₂        coef = max_norm / (total + 1e-6)        g ← g · min(coef, 1)
//! ```

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use burn::tensor::TensorPrimitive;

use crate::fused::FusedUpdate;
use crate::grads::{for_each_grad, map_grads, Flat};

/// The global L2 norm of `grads` over `module`'s parameters (one host read).
pub fn global_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> f64
where
    B::InnerBackend: FusedUpdate,
{
    let mut sum_sq: Option<Flat<B>> = None;
    for_each_grad::<B, M, _>(module, grads, |_, g| {
        let s = Flat::<B>::from_primitive(TensorPrimitive::Float(B::InnerBackend::sum_squares(
            g.into_primitive().tensor(),
        )));
        sum_sq = Some(match sum_sq.take() {
            Some(acc) => acc + s,
            None => s,
        });
    });
    match sum_sq {
        Some(s) => s.into_scalar().elem::<f64>().sqrt(),
        None => 0.0,
    }
}

/// Scales all gradients so that their global norm is at most `max_norm`, and returns them with
/// the norm before clipping (what the trainer logs as `grad_norm`).
///
/// As in PyTorch the coefficient is `max_norm / (total + 1e-6)` clamped to 1, so gradients
/// below the limit are returned unchanged. A non-finite total leaves the gradients unscaled
/// (PyTorch would multiply them by NaN); the caller sees the non-finite norm.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, f32)
where
    B::InnerBackend: FusedUpdate,
{
    let total = global_grad_norm::<B, M>(module, &grads);
    let coef = max_norm / (total + 1e-6);
    if !total.is_finite() || coef >= 1.0 {
        return (grads, total as f32);
    }
    // torch multiplies by the f32 coefficient.
    let coef = coef as f32;
    let grads = map_grads::<B, M, _>(module, grads, |_, g| g.mul_scalar(coef));
    (grads, total as f32)
}
