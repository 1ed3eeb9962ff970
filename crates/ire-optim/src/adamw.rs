//! AdamW with PyTorch semantics (`torch.optim.AdamW`, `foreach=False`, no AMSGrad), written
//! with PyTorch's own sequence of f32 operations.
//!
//! For step t = 1, 2, … of one parameter θ with gradient g and learning rate η:
//!
//! ```text
//! θ  ← θ · (1 − η λ)                                   param.mul_(1 - lr * weight_decay)
//! m  ← m + (1 − β₁)(g − m)                             exp_avg.lerp_(grad, 1 - beta1)
//! v  ← β₂ v + ((1 − β₂) g) g                           exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
//! θ  ← θ + (−η/(1 − β₁ᵗ) · m) / (√v / √(1 − β₂ᵗ) + ε)  param.addcdiv_(exp_avg, denom, value=-step_size)
//! ```
//!
//! The bias corrections are computed in f64 as Python does and enter the f32 kernels as
//! scalars; ε is added after the bias correction of `√v`. AdmIRE takes the displacement
//! Δ = θ_new − θ of this unmodified step, as the paper's code does.

use burn::prelude::*;

/// The AdamW hyper-parameters that do not change during a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
}

/// Adam's moments of one parameter after a step.
#[derive(Debug, Clone)]
pub struct Moments<B: Backend, const D: usize> {
    /// First moment `m` (PyTorch `exp_avg`).
    pub exp_avg: Tensor<B, D>,
    /// Second moment `v` (PyTorch `exp_avg_sq`).
    pub exp_avg_sq: Tensor<B, D>,
}

/// One AdamW step of one parameter: updates the moments with the raw `grad` and returns the
/// new parameter value.
///
/// `step` is the 1-based step count of this parameter after this update; `lr` is η_t and
/// `weight_decay` is λ for this parameter (0 for a no-decay group).
pub fn adamw_step<B: Backend, const D: usize>(
    theta: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Moments<B, D>,
    step: u64,
    lr: f64,
    weight_decay: f64,
    hp: &AdamWParams,
) -> (Tensor<B, D>, Moments<B, D>) {
    let t = step as f64;
    let bias_correction1 = 1.0 - hp.beta1.powf(t);
    let bias_correction2 = 1.0 - hp.beta2.powf(t);
    let step_size = lr / bias_correction1;

    let decay = lr * weight_decay;
    let decayed = if decay == 0.0 {
        theta
    } else {
        theta.mul_scalar(1.0 - decay)
    };
    // The same operations as PyTorch, ordered so that each left operand is a buffer this step
    // owns (CPU backends then update it in place instead of allocating).
    let grad_sq = grad.clone().mul_scalar(1.0 - hp.beta2).mul(grad.clone());
    let m = moments.exp_avg;
    let exp_avg = m.clone() + (grad - m).mul_scalar(1.0 - hp.beta1);
    let exp_avg_sq = moments.exp_avg_sq.mul_scalar(hp.beta2) + grad_sq;
    let denom = exp_avg_sq
        .clone()
        .sqrt()
        .div_scalar(bias_correction2.sqrt())
        .add_scalar(hp.eps);
    let updated = decayed + exp_avg.clone().mul_scalar(-step_size).div(denom);
    (
        updated,
        Moments {
            exp_avg,
            exp_avg_sq,
        },
    )
}
