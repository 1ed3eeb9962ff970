//! Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", arXiv 2302.06675),
//! as the `lion-pytorch` package (0.2.5) runs it, one parameter at a time — the reference
//! (composed tensor ops) for the Lion base of IRE.
//!
//! For each step of one parameter θ with gradient g, learning rate η and momentum m:
//!
//! ```text
//! θ ← θ (1 − η λ)                       p.data.mul_(1 - lr * wd)
//! u ← sign(β₁ m + (1 − β₁) g)           exp_avg.clone().mul_(beta1).add(grad, alpha=1 - beta1).sign_()
//! θ ← θ − η u                           p.add_(update, alpha=-lr)
//! m ← β₂ m + (1 − β₂) g                 exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)
//! ```
//!
//! The update is a sign, so every coordinate moves by exactly η (0 where the interpolation is
//! 0); Chen et al. suggest an lr 3–10× smaller than AdamW's and a λ 3–10× larger.

use burn::prelude::*;

/// Lion's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LionParams {
    /// β₁: interpolation of the update's sign.
    pub beta1: f64,
    /// β₂: the momentum's decay.
    pub beta2: f64,
    /// λ, decoupled weight decay (scaled by η).
    pub weight_decay: f64,
}

/// One Lion step of one parameter: the new θ and momentum (`exp_avg`, zeros before the first
/// step).
pub fn lion_step<B: Backend, const D: usize>(
    theta: Tensor<B, D>,
    grad: Tensor<B, D>,
    exp_avg: Tensor<B, D>,
    lr: f64,
    hp: &LionParams,
) -> (Tensor<B, D>, Tensor<B, D>) {
    let decay = lr * hp.weight_decay;
    let theta = match decay {
        0.0 => theta,
        _ => theta.mul_scalar(1.0 - decay),
    };
    let update =
        (exp_avg.clone().mul_scalar(hp.beta1) + grad.clone().mul_scalar(1.0 - hp.beta1)).sign();
    let theta = theta + update.mul_scalar(-lr);
    let exp_avg = exp_avg.mul_scalar(hp.beta2) + grad.mul_scalar(1.0 - hp.beta2);
    (theta, exp_avg)
}
