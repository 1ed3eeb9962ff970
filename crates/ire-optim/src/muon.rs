//! Muon (Jordan et al. 2024; `torch.optim.Muon`) on one 2-D parameter: momentum, Nesterov, the
//! Newton–Schulz orthogonalisation of the update and torch's lr adjustment — the reference
//! (composed tensor ops, in f32) for the Muon base of IRE. Muon is for the hidden matrices;
//! embeddings, the LM head and 1-D parameters take AdamW, as Muon is used in practice.
//!
//! For each step of a parameter θ ∈ ℝ^{A×B} with gradient g and learning rate η:
//!
//! ```text
//! b ← b + (1 − μ)(g − b)                     buf.lerp_(grad, 1 - momentum)
//! u ← g + μ (b − g)  (Nesterov)  or  b       grad.lerp(buf, momentum) / buf
//! O ← NS₅(u)                                 _zeropower_via_newtonschulz
//! θ ← θ (1 − η λ)                            param.mul_(1 - lr * weight_decay)
//! θ ← θ − η' O                               param.add_(update, alpha=-adjusted_lr)
//! ```
//!
//! NS₅ (five Newton–Schulz steps towards the nearest semi-orthogonal matrix): work on the wide
//! orientation (transpose when A > B), X ← X / max(‖X‖_F, ε), then five times
//! `G = X Xᵀ; X ← a X + (b G + c G G) X` with (a, b, c) = (3.4445, −4.775, 2.0315), and transpose
//! back. η' is η·√max(1, A/B) (`original`, torch's default) or 0.2·η·√max(A, B)
//! (`match_rms_adamw`, which lets one lr serve Muon and AdamW). torch runs NS₅ in bfloat16;
//! this runs it in f32 (the vectors test both: torch within a bf16 tolerance, the same formula
//! in f32 within f32's).

use burn::prelude::*;

/// How Muon scales η for a matrix's shape (`adjust_lr_fn` in torch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustLr {
    /// η·√max(1, A/B) (torch's default, `None` / `"original"`).
    Original,
    /// 0.2·η·√max(A, B): the update's RMS matches AdamW's.
    MatchRmsAdamw,
}

/// Muon's hyper-parameters (torch's names and defaults except `lr`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MuonParams {
    /// μ (0.95).
    pub momentum: f64,
    /// Nesterov momentum (true).
    pub nesterov: bool,
    /// λ, decoupled weight decay scaled by η (0.1).
    pub weight_decay: f64,
    /// (a, b, c) of the Newton–Schulz polynomial.
    pub ns_coefficients: [f64; 3],
    /// ε of the normalisation (1e-7).
    pub eps: f64,
    /// Newton–Schulz steps (5).
    pub ns_steps: usize,
    /// The lr adjustment for the matrix's shape.
    pub adjust_lr: AdjustLr,
}

impl Default for MuonParams {
    fn default() -> Self {
        Self {
            momentum: 0.95,
            nesterov: true,
            weight_decay: 0.1,
            ns_coefficients: [3.4445, -4.775, 2.0315],
            eps: 1e-7,
            ns_steps: 5,
            adjust_lr: AdjustLr::Original,
        }
    }
}

/// η' for a `rows × cols` matrix.
pub fn adjusted_lr(lr: f64, rows: usize, cols: usize, adjust: AdjustLr) -> f64 {
    let (a, b) = (rows as f64, cols as f64);
    match adjust {
        AdjustLr::Original => lr * (a / b).max(1.0).sqrt(),
        AdjustLr::MatchRmsAdamw => lr * 0.2 * a.max(b).sqrt(),
    }
}

/// NS₅ of the module docs: an approximately semi-orthogonal matrix with `g`'s row and column
/// spaces.
pub fn newton_schulz<B: Backend>(g: Tensor<B, 2>, hp: &MuonParams) -> Tensor<B, 2> {
    let [rows, cols] = g.dims();
    let transposed = rows > cols;
    let x = if transposed { g.transpose() } else { g };
    let norm = x.clone().square().sum().sqrt().clamp_min(hp.eps);
    let mut x = x.div(norm.reshape([1, 1]));
    let [a, b, c] = hp.ns_coefficients;
    for _ in 0..hp.ns_steps {
        let gram = x.clone().matmul(x.clone().transpose());
        let poly = gram.clone().mul_scalar(b) + gram.clone().matmul(gram).mul_scalar(c);
        x = x.clone().mul_scalar(a) + poly.matmul(x);
    }
    if transposed {
        x.transpose()
    } else {
        x
    }
}

/// One Muon step of one matrix: the new θ and momentum buffer (zeros before the first step).
pub fn muon_step<B: Backend>(
    theta: Tensor<B, 2>,
    grad: Tensor<B, 2>,
    buffer: Tensor<B, 2>,
    lr: f64,
    hp: &MuonParams,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let [rows, cols] = theta.dims();
    let buffer = buffer.clone() + (grad.clone() - buffer).mul_scalar(1.0 - hp.momentum);
    let update = match hp.nesterov {
        true => grad.clone() + (buffer.clone() - grad).mul_scalar(hp.momentum),
        false => buffer.clone(),
    };
    let orthogonal = newton_schulz(update, hp);
    let decay = lr * hp.weight_decay;
    let theta = match decay {
        0.0 => theta,
        _ => theta.mul_scalar(1.0 - decay),
    };
    let step = adjusted_lr(lr, rows, cols, hp.adjust_lr);
    (theta + orthogonal.mul_scalar(-step), buffer)
}
