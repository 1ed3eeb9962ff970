//! SGD with momentum, dampening, Nesterov and weight decay, with PyTorch semantics
//! (`torch.optim.SGD`, `foreach=False`), one parameter at a time — the reference (composed
//! tensor ops) for the SGD base of IRE.
//!
//! For step t = 1, 2, … of one parameter θ with gradient g and learning rate η:
//!
//! ```text
//! g ← g + λ θ                                   grad = grad.add(param, alpha=weight_decay)
//! b ← g                           (t = 1)       buf = torch.clone(grad)
//! b ← μ b + (1 − τ) g             (t > 1)       buf.mul_(momentum).add_(grad, alpha=1 - dampening)
//! d ← g + μ b  (Nesterov)  or  b                grad = grad.add(buf, alpha=momentum) / buf
//! θ ← θ − η d                                   param.add_(grad, alpha=-lr)
//! ```
//!
//! With μ = 0 there is no buffer and d = g. Weight decay is L2 (added to the gradient, so the
//! momentum carries it), not AdamW's decoupled decay.

use burn::prelude::*;

/// SGD's hyper-parameters (torch's names and defaults except `lr`, which the schedule gives).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdParams {
    /// μ, the momentum factor (0: plain SGD).
    pub momentum: f64,
    /// τ, the dampening of the gradient in the momentum buffer.
    pub dampening: f64,
    /// λ, L2 weight decay added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum (needs μ > 0 and τ = 0, as torch requires).
    pub nesterov: bool,
}

/// One SGD step of one parameter: the new θ and the momentum buffer (`None` when μ = 0).
/// `buffer` is the previous step's (`None` at the first step).
pub fn sgd_step<B: Backend, const D: usize>(
    theta: Tensor<B, D>,
    grad: Tensor<B, D>,
    buffer: Option<Tensor<B, D>>,
    lr: f64,
    hp: &SgdParams,
) -> (Tensor<B, D>, Option<Tensor<B, D>>) {
    let grad = match hp.weight_decay {
        0.0 => grad,
        wd => grad + theta.clone().mul_scalar(wd),
    };
    if hp.momentum == 0.0 {
        return (theta + grad.mul_scalar(-lr), None);
    }
    let buffer = match buffer {
        None => grad.clone(),
        Some(b) => b.mul_scalar(hp.momentum) + grad.clone().mul_scalar(1.0 - hp.dampening),
    };
    let direction = match hp.nesterov {
        true => grad + buffer.clone().mul_scalar(hp.momentum),
        false => buffer.clone(),
    };
    (theta + direction.mul_scalar(-lr), Some(buffer))
}
