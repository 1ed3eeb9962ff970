//! Mixed precision: which dtype the model computes in, and the casts at its boundaries.
//!
//! [`Precision::Bf16`] is the recipe of PyTorch's `autocast(dtype=torch.bfloat16)` as the paper's
//! OpenWebText script uses it, with every cast written out (Burn 0.21 has no autocast and no
//! dtype promotion; a matmul of f32 by bf16 is an error on Flex and misread on CUDA):
//!
//! - **f32** (the master copy): parameters, gradients, optimizer state, checkpoints; the
//!   embedding lookup (its backward is a scatter-add, and bf16 atomics are off on CUDA); the
//!   residual stream; RMSNorm; the softmax inside attention; the log-softmax of the loss.
//! - **bf16**: every matmul — the q/k/v/o and MLP projections (input and weight cast per use),
//!   `q kᵀ`, `P v`, the LM head's logits — plus RoPE and SwiGLU on the projections' outputs.
//!   Matmuls accumulate in f32 on every backend (Flex converts to f32 and rounds the result;
//!   CubeCL picks f32 accumulators for bf16 outputs).
//!
//! A cast has a backward in Burn (the gradient is cast back to the input's dtype), so the f32
//! parameters receive f32 gradients. [`Precision::F32`] casts nothing: the f32 path is exactly
//! the model without this module. On CUDA, "f32" matmuls may still run on TF32 tensor cores
//! when Burn's autotune picks them (docs/performance.md).

use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use serde::{Deserialize, Serialize};

/// The dtype of the model's matmuls (`run.precision`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32 (the paper's Wikitext-103 and Minipile setting).
    #[default]
    F32,
    /// bf16 matmuls and attention with f32 master weights, norms, softmax and loss (the paper's
    /// OpenWebText setting).
    Bf16,
}

impl Precision {
    /// The dtype activations enter the matmuls in.
    pub fn compute(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
        }
    }

    /// The name used in configs and logs.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// Whether `dtype` is a 16-bit float (computed in, but never reduced in).
pub fn is_half(dtype: DType) -> bool {
    matches!(dtype, DType::BF16 | DType::F16)
}

/// `x` in `dtype`; no op (and no autodiff node) when it already is.
pub fn cast_to<B: Backend, const D: usize>(x: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    if x.dtype() == dtype {
        return x;
    }
    x.cast(FloatDType::from(dtype))
}

/// `x` in f32 when it is a 16-bit float (for reductions: softmax, norms, the loss); as it is
/// otherwise (f32, and f64 in the finite-difference tests).
pub fn widen<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if is_half(x.dtype()) {
        x.cast(FloatDType::F32)
    } else {
        x
    }
}
