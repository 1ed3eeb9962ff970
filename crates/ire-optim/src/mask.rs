//! The flat-coordinate mask and the boost, shared by AdmIRE and the toy.
//!
//! ```text
//! n = 1[h ≤ τ]        θ ← θ + (1 + κ n) ⊙ Δ
//! ```
//!
//! τ, the k-th smallest `h`, comes from [`crate::select_device`] (on the device) or
//! [`crate::select_cpu`] (burn-flex's fused refresh, which also writes the masks).

use burn::prelude::*;

/// The mask `n = 1[h ≤ τ]`.
pub fn flat_mask<B: Backend, const D: usize>(
    h: Tensor<B, D>,
    threshold: f64,
) -> Tensor<B, D, Bool> {
    h.lower_equal_elem(threshold)
}

/// The AdmIRE update of one tensor from AdamW's result: `θ_new + κ n ⊙ (θ_new − θ)`, i.e.
/// `θ + (1 + κ n) ⊙ Δ` with `Δ = θ_new − θ` (the paper's code: snapshot, unmodified AdamW
/// step, difference).
///
/// Coordinates outside the mask keep `θ_new`, AdamW's value, bit for bit.
pub fn boost<B: Backend, const D: usize>(
    theta: Tensor<B, D>,
    stepped: Tensor<B, D>,
    mask: Tensor<B, D, Bool>,
    kappa: f64,
) -> Tensor<B, D> {
    // κΔ = (θ − θ_new)·(−κ) and κΔ + θ_new: bit for bit `θ_new + κ(θ_new − θ)` (IEEE negation,
    // subtraction and addition are symmetric), written so that the left operand is the one
    // this function owns and CPU backends can reuse its buffer.
    let kappa_delta = (theta - stepped.clone()).mul_scalar(-kappa);
    let boosted = kappa_delta + stepped.clone();
    stepped.mask_where(mask, boosted)
}
