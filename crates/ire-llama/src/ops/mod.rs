//! Fused operations of the Llama training step, one trait over the backend.
//!
//! [`IreOps`] names the five operations the model spends its time in — linear layers, RMSNorm,
//! SwiGLU, causal attention with RoPE, and the cross-entropy of the LM head — each as a forward
//! and a hand-written backward on plain (non-autodiff) tensors:
//!
//! - the **default methods** ([`reference`]) compose ordinary Burn tensor ops. They are the
//!   reference every kernel is tested against, and what CUDA, ndarray and the f64
//!   finite-difference test run;
//! - **`Flex` overrides them** with CPU kernels ([`kernels`]: gemm with no copies, rayon over
//!   rows and heads, SIMD with a vectorised `exp`) for f32 tensors;
//! - **`Autodiff<B>`** ([`autodiff`]) turns each forward/backward pair into one node of the
//!   autodiff graph, so Burn never decomposes softmax, attention or the loss into dozens of
//!   eager ops.
//!
//! The functions at the bottom of this file ([`linear`], [`rms_norm`], [`swiglu`],
//! [`causal_attention`], [`cross_entropy`], [`sampled_cross_entropy`]) are the model's API.
//!
//! `IRE_KERNELS` chooses, per process, which Flex kernels run: unset or `all` for every kernel,
//! `reference` (or `none`) for the composed defaults, or a comma list of `linear`, `norm`,
//! `swiglu`, `attention`, `loss` for just those (benchmarks use it to price each kernel in one
//! binary).

pub mod autodiff;
mod backends;
pub mod cpu;
mod flex;
pub mod kernels;
pub mod profile;
pub mod reference;

use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::TensorPrimitive;

use crate::precision::cast_to;
use crate::rope::RopeTables;

/// What the cross-entropy compares the logits with.
#[derive(Debug, Clone)]
pub enum CeTarget<B: Backend> {
    /// The true next tokens, `[N]`.
    Labels(IntTensor<B>),
    /// One uniform in `[0, 1)` per row, `[N]`: the label of row `i` is drawn from
    /// `softmax(logits_i)` by inverse CDF, `ŷ_i = #{j : cdf_ij < u_i}` (clamped to the last
    /// class). This is GNB's label sampling (ire-optim), fused with the loss.
    Sample(FloatTensor<B>),
}

/// What [`IreOps::ire_cross_entropy`] returns.
#[derive(Debug, Clone)]
pub struct CeOutput<B: Backend> {
    /// Mean cross-entropy over the `N` rows, `[1]`.
    pub loss: FloatTensor<B>,
    /// `∂loss/∂h`, `[N, D]`, when gradients were asked for.
    pub grad_h: Option<FloatTensor<B>>,
    /// `∂loss/∂w`, `[V, D]`, when gradients were asked for.
    pub grad_w: Option<FloatTensor<B>>,
    /// The sampled labels `[N]` for [`CeTarget::Sample`].
    pub labels: Option<IntTensor<B>>,
}

/// The fused operations of the training step; see the module docs. Shapes are those of the
/// model's tensors: `N` rows (batch × sequence), hidden size `D`, vocabulary `V`.
pub trait IreOps: Backend {
    /// `y = x wᵀ`: x `[N, in]`, w `[out, in]` (HF layout) → `[N, out]`.
    fn ire_linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::linear::<Self>(x, w)
    }

    /// `(∂x, ∂w) = (dy w, dyᵀ x)`, both contiguous in the inputs' layouts.
    fn ire_linear_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference::linear_backward::<Self>(x, w, dy)
    }

    /// RMSNorm over the last axis: x `[N, D]`, w `[D]` → (`y = x · r · w` `[N, D]`,
    /// `r = 1/√(mean(x²) + ε)` `[N]`).
    fn ire_rms_norm(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference::rms_norm::<Self>(x, w, eps)
    }

    /// Gradients of [`IreOps::ire_rms_norm`] given the saved `r`.
    fn ire_rms_norm_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        r: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference::rms_norm_backward::<Self>(x, w, r, dy)
    }

    /// `silu(gate) · up`, element-wise, same shapes.
    fn ire_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::swiglu::<Self>(gate, up)
    }

    /// Gradients of [`IreOps::ire_swiglu`]: `(∂gate, ∂up)`.
    fn ire_swiglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference::swiglu_backward::<Self>(gate, up, dy)
    }

    /// Causal self-attention with RoPE applied to `q` and `k` inside the op.
    ///
    /// q `[B, S, H, hd]`, k and v `[B, S, KVH, hd]` (query head `i` reads kv head
    /// `i / (H/KVH)`), cos and sin `[S, hd]` → (y `[B, S, H, hd]`, the log-sum-exp of each
    /// score row `[B, H, S]`, which the backward uses to rebuild the probabilities).
    fn ire_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference::attention::<Self>(q, k, v, cos, sin)
    }

    /// Gradients of [`IreOps::ire_attention`]: `(∂q, ∂k, ∂v)` given its output `y` and
    /// log-sum-exp `lse`.
    #[allow(clippy::too_many_arguments)]
    fn ire_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        y: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        reference::attention_backward::<Self>(q, k, v, cos, sin, y, lse, dy)
    }

    /// Mean cross-entropy of the logits `h wᵀ` against `target`, without keeping the logits:
    /// h `[N, D]`, w `[V, D]`. With `grads`, the gradients of the mean loss with respect to
    /// `h` and `w` are computed in the same pass (the logits are used once and dropped), and
    /// the autodiff backward only scales them.
    fn ire_cross_entropy(
        h: FloatTensor<Self>,
        w: FloatTensor<Self>,
        target: CeTarget<Self>,
        grads: bool,
    ) -> CeOutput<Self> {
        reference::cross_entropy::<Self>(h, w, target, grads)
    }
}

/// Which Flex kernels run, from `IRE_KERNELS` (read once per process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSet {
    /// Linear layers as one gemm with contiguous gradients.
    pub linear: bool,
    /// RMSNorm.
    pub norm: bool,
    /// SwiGLU.
    pub swiglu: bool,
    /// Causal attention with RoPE.
    pub attention: bool,
    /// The LM head's cross-entropy.
    pub loss: bool,
}

impl KernelSet {
    /// Every kernel on.
    pub const ALL: Self = Self {
        linear: true,
        norm: true,
        swiglu: true,
        attention: true,
        loss: true,
    };
    /// Every kernel off: the composed reference runs.
    pub const NONE: Self = Self {
        linear: false,
        norm: false,
        swiglu: false,
        attention: false,
        loss: false,
    };

    /// Parses an `IRE_KERNELS` value; `None` for a name that is not a kernel.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "" | "all" => return Some(Self::ALL),
            "reference" | "none" => return Some(Self::NONE),
            _ => {}
        }
        let mut set = Self::NONE;
        for name in value.split(',').map(str::trim) {
            match name {
                "linear" => set.linear = true,
                "norm" => set.norm = true,
                "swiglu" => set.swiglu = true,
                "attention" => set.attention = true,
                "loss" => set.loss = true,
                _ => return None,
            }
        }
        Some(set)
    }

    /// The process's set (`IRE_KERNELS`; all kernels when unset). An unknown value is reported
    /// once and treated as `all`.
    pub fn current() -> Self {
        static SET: std::sync::OnceLock<KernelSet> = std::sync::OnceLock::new();
        *SET.get_or_init(|| {
            let value = std::env::var("IRE_KERNELS").unwrap_or_default();
            Self::parse(&value).unwrap_or_else(|| {
                tracing::warn!(
                    "IRE_KERNELS={value:?} is not `all`, `reference` or a comma list of \
                     linear, norm, swiglu, attention, loss; using all kernels"
                );
                Self::ALL
            })
        })
    }
}

fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

fn wrap<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// `y = x wᵀ` over the last axis of `x`.
///
/// # Shapes
/// - x: `[..., in]`, w: `[out, in]` → `[..., out]`
pub fn linear<B: IreOps, const D: usize>(x: Tensor<B, D>, w: Tensor<B, 2>) -> Tensor<B, D> {
    let mut dims = x.dims();
    let n_in = dims[D - 1];
    let rows = x.shape().num_elements() / n_in.max(1);
    dims[D - 1] = w.dims()[0];
    let y = B::ire_linear(prim(x.reshape([rows, n_in])), prim(w));
    wrap::<B, 2>(y).reshape(dims)
}

/// RMSNorm over the last axis: `x / √(mean(x²) + ε) · w`.
///
/// # Shapes
/// - x: `[..., D]`, w: `[D]` → same as x
pub fn rms_norm<B: IreOps, const D: usize>(
    x: Tensor<B, D>,
    w: Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    let dims = x.dims();
    let d = dims[D - 1];
    let rows = x.shape().num_elements() / d.max(1);
    let (y, _) = B::ire_rms_norm(prim(x.reshape([rows, d])), prim(w), eps);
    wrap::<B, 2>(y).reshape(dims)
}

/// `silu(gate) ⊙ up` (the SwiGLU MLP's activation).
///
/// # Shapes
/// - gate, up: same shape → same
pub fn swiglu<B: IreOps, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    wrap(B::ire_swiglu(prim(gate), prim(up)))
}

/// Causal self-attention with rotary embeddings, grouped-query heads, scale `1/√hd`.
///
/// # Shapes
/// - q: `[batch, seq, heads, head_dim]`, k and v: `[batch, seq, kv_heads, head_dim]`
/// - returns `[batch, seq, heads, head_dim]`
pub fn causal_attention<B: IreOps>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    rope: &RopeTables<B>,
) -> Tensor<B, 4> {
    let (cos, sin) = rope.tables();
    let dtype = q.dtype();
    let (cos, sin) = (cast_to(cos, dtype), cast_to(sin, dtype));
    let (y, _) = B::ire_attention(prim(q), prim(k), prim(v), prim(cos), prim(sin));
    wrap(y)
}

/// Mean next-token cross-entropy of the logits `h wᵀ` against `targets`, the logits never
/// materialised in full.
///
/// # Shapes
/// - h: `[N, D]`, w: `[V, D]`, targets: `[N]` → `[1]`
pub fn cross_entropy<B: IreOps>(
    h: Tensor<B, 2>,
    w: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let target = CeTarget::Labels(targets.into_primitive());
    wrap(B::ire_cross_entropy(prim(h), prim(w), target, false).loss)
}

/// Like [`cross_entropy`], against labels drawn from the model's own softmax with one uniform
/// per row (GNB); returns the loss and the drawn labels.
///
/// # Shapes
/// - h: `[N, D]`, w: `[V, D]`, uniforms: `[N]` → (`[1]`, `[N]`)
pub fn sampled_cross_entropy<B: IreOps>(
    h: Tensor<B, 2>,
    w: Tensor<B, 2>,
    uniforms: Tensor<B, 1>,
) -> (Tensor<B, 1>, Tensor<B, 1, Int>) {
    let out = B::ire_cross_entropy(prim(h), prim(w), CeTarget::Sample(prim(uniforms)), false);
    let labels = out
        .labels
        .expect("a sampled cross-entropy returns its labels");
    (wrap(out.loss), Tensor::from_primitive(labels))
}
