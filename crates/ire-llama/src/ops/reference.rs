//! The reference implementations of [`super::IreOps`]: ordinary Burn tensor ops, forward and a
//! hand-written backward. Every backend gets these unless it overrides them; the Flex kernels
//! are tested against them, and they are tested against Burn's own autodiff of the plain
//! forward (`tests/ops.rs`) and by the f64 finite-difference check (`tests/model.rs`).
//!
//! Numerics follow HF's `modeling_llama.py` in the input dtype (f32 or f64): the RMSNorm scale
//! `1/√(mean(x²)+ε)`, RoPE in the rotate-half convention, the softmax with its row maximum
//! subtracted. With bf16 inputs (mixed precision, [`crate::precision`]) the matmuls run in
//! bf16 and the attention softmax and the loss's log-softmax widen to f32, as under PyTorch's
//! autocast; their gradients return in the inputs' dtype.

use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorPrimitive;

use super::{CeOutput, CeTarget};
use crate::precision::{cast_to, widen};
use crate::rope::{rope, rope_backward};

fn t<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

fn p<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// `x wᵀ`.
pub fn linear<B: Backend>(x: FloatTensor<B>, w: FloatTensor<B>) -> FloatTensor<B> {
    p(t::<B, 2>(x).matmul(t::<B, 2>(w).transpose()))
}

/// `(dy w, dyᵀ x)`.
pub fn linear_backward<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    dy: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let dy = t::<B, 2>(dy);
    let dx = dy.clone().matmul(t::<B, 2>(w));
    let dw = dy.transpose().matmul(t::<B, 2>(x));
    (p(dx), p(dw))
}

/// `(x · r · w, r)` with `r = 1/√(mean(x²) + ε)` per row.
pub fn rms_norm<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    eps: f64,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let x = t::<B, 2>(x);
    let rms = (x.clone().powi_scalar(2).mean_dim(1) + eps).sqrt(); // [N, 1]
    let r = rms.ones_like() / rms; // not recip(): ndarray's f32 recip is an approximation
    let y = x * r.clone() * t::<B, 1>(w).unsqueeze::<2>();
    let n = r.dims()[0];
    (p(y), p(r.reshape([n])))
}

/// With `u = dy ⊙ w`: `∂x = r·u − x·r³·mean(u ⊙ x)`, `∂w = Σ_rows dy ⊙ x · r`.
pub fn rms_norm_backward<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    r: FloatTensor<B>,
    dy: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (x, dy) = (t::<B, 2>(x), t::<B, 2>(dy));
    let [n, d] = x.dims();
    let r = t::<B, 1>(r).reshape([n, 1]);
    let xr = x * r.clone(); // the normalised input
    let dw = (dy.clone() * xr.clone()).sum_dim(0).reshape([d]);
    let u = dy * t::<B, 1>(w).unsqueeze::<2>();
    let dot = (u.clone() * xr.clone()).mean_dim(1); // mean(u ⊙ x·r)
    let dx = (u - xr * dot) * r;
    (p(dx), p(dw))
}

/// `σ(g) = 1/(1+e^(−g))`, written out: burn's default sigmoid rounds through f32, which would
/// cap the precision of f64 runs (and of the gradient check that uses them); a division, not
/// `recip()`, which ndarray computes approximately in f32.
fn sigmoid<B: Backend, const D: usize>(g: Tensor<B, D>) -> Tensor<B, D> {
    let denom = g.neg().exp() + 1.0;
    denom.ones_like() / denom
}

/// `g·σ(g)·up`.
pub fn swiglu<B: Backend>(gate: FloatTensor<B>, up: FloatTensor<B>) -> FloatTensor<B> {
    let dims = dims_of::<B>(&gate);
    let g = t::<B, 1>(flat::<B>(gate));
    let y = g.clone() * sigmoid(g) * t::<B, 1>(flat::<B>(up));
    reshape::<B>(p(y), &dims)
}

/// `∂gate = dy·up·σ(g)(1 + g(1 − σ(g)))`, `∂up = dy·g·σ(g)`.
pub fn swiglu_backward<B: Backend>(
    gate: FloatTensor<B>,
    up: FloatTensor<B>,
    dy: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let dims = dims_of::<B>(&gate);
    let (g, u, dy) = (
        t::<B, 1>(flat::<B>(gate)),
        t::<B, 1>(flat::<B>(up)),
        t::<B, 1>(flat::<B>(dy)),
    );
    let s = sigmoid(g.clone());
    let silu = g.clone() * s.clone();
    let dup = dy.clone() * silu;
    let dsilu = s.clone() * ((g * (s.neg() + 1.0)) + 1.0);
    let dgate = dy * u * dsilu;
    (reshape::<B>(p(dgate), &dims), reshape::<B>(p(dup), &dims))
}

fn dims_of<B: Backend>(x: &FloatTensor<B>) -> Vec<usize> {
    use burn::tensor::TensorMetadata;
    x.shape().to_vec()
}

fn flat<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let n = dims_of::<B>(&x).iter().product::<usize>();
    B::float_reshape(x, [n].into())
}

fn reshape<B: Backend>(x: FloatTensor<B>, dims: &[usize]) -> FloatTensor<B> {
    B::float_reshape(x, dims.to_vec().into())
}

/// `[B, H, S, m] @ [B, KVH, m, n]` → `[B, H, S, n]`, query head `i` against kv head
/// `i / (H/KVH)` (HF's `repeat_kv` order) without repeating the kv heads: the `H/KVH` query
/// heads of a group are stacked as rows of one matmul per kv head.
fn group_matmul<B: Backend>(a: Tensor<B, 4>, kv: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, h, s, m] = a.dims();
    let [_, kvh, _, n] = kv.dims();
    a.reshape([b, kvh, h / kvh * s, m])
        .matmul(kv)
        .reshape([b, h, s, n])
}

/// The kv-side gradient of [`group_matmul`]: `Σ_{i in group j} a_iᵀ g_i` for `a: [B, H, S, m]`,
/// `g: [B, H, S, n]` → `[B, KVH, m, n]` — the sum over the query heads sharing kv head `j` is
/// part of the one matmul per group.
fn group_matmul_kv_grad<B: Backend>(a: Tensor<B, 4>, g: Tensor<B, 4>, kvh: usize) -> Tensor<B, 4> {
    let [b, h, s, m] = a.dims();
    let n = g.dims()[3];
    let rows = h / kvh * s;
    a.reshape([b, kvh, rows, m])
        .transpose()
        .matmul(g.reshape([b, kvh, rows, n]))
}

/// Scaled causal scores `q kᵀ/√hd` with the upper triangle at −∞, `[B, H, S, S]`, for
/// `q: [B, H, S, hd]` and `k: [B, KVH, S, hd]`; the product in q's dtype, the scores widened
/// to f32 when that is bf16.
fn causal_scores<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, _, s, hd] = q.dims();
    let scores = widen(group_matmul(q, k.transpose())).mul_scalar(1.0 / (hd as f64).sqrt());
    let mask = Tensor::<B, 2, Bool>::tril_mask([s, s], 0, &scores.device()).unsqueeze::<4>();
    scores.mask_fill(mask, f64::NEG_INFINITY)
}

/// Rotated q `[B, H, S, hd]`, rotated k and v `[B, KVH, S, hd]` (heads first, kv not repeated).
fn attention_inputs<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
    let (q, k, v) = (t::<B, 4>(q), t::<B, 4>(k), t::<B, 4>(v));
    let (cos, sin) = (t::<B, 2>(cos), t::<B, 2>(sin));
    let q = rope(q, cos.clone(), sin.clone()).swap_dims(1, 2);
    let k = rope(k, cos, sin).swap_dims(1, 2);
    (q, k, v.swap_dims(1, 2))
}

/// `softmax(causal_scores) v`, and the row log-sum-exp.
pub fn attention<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (q, k, v) = attention_inputs::<B>(q, k, v, cos, sin);
    let dtype = v.dtype();
    let scores = causal_scores(q, k);
    let max = scores.clone().max_dim(3);
    let e = (scores - max.clone()).exp();
    let sum = e.clone().sum_dim(3);
    let prob = cast_to(e / sum.clone(), dtype);
    let y = group_matmul(prob, v).swap_dims(1, 2); // [B, S, H, hd]
    let lse = (max + sum.log()).squeeze_dim::<3>(3); // [B, H, S]
    (p(y), p(lse))
}

/// With `P = exp(scores − lse)`: `∂v = Pᵀ dy`, `∂P = dy vᵀ`, `∂scores = P ⊙ (∂P − rowsum(dy ⊙ y))`,
/// `∂q = ∂scores k/√hd`, `∂k = ∂scoresᵀ q/√hd` (∂k and ∂v summed over the query heads of each
/// kv group), then RoPE's transpose.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
    y: FloatTensor<B>,
    lse: FloatTensor<B>,
    dy: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let (cos_t, sin_t) = (t::<B, 2>(cos.clone()), t::<B, 2>(sin.clone()));
    let (q, k, v) = attention_inputs::<B>(q, k, v, cos, sin);
    let kvh = k.dims()[1];
    let hd = q.dims()[3];
    let dtype = q.dtype();
    let scale = 1.0 / (hd as f64).sqrt();
    let prob = (causal_scores(q.clone(), k.clone()) - t::<B, 3>(lse).unsqueeze_dim::<4>(3)).exp();
    let (y, dy) = (t::<B, 4>(y).swap_dims(1, 2), t::<B, 4>(dy).swap_dims(1, 2)); // [B, H, S, hd]
    let dv = group_matmul_kv_grad(cast_to(prob.clone(), dtype), dy.clone(), kvh);
    let dprob = widen(group_matmul(dy.clone(), v.transpose()));
    let delta = (widen(dy) * widen(y)).sum_dim(3);
    let ds = cast_to(prob * (dprob - delta), dtype);
    let dq = group_matmul(ds.clone(), k).mul_scalar(scale);
    let dk = group_matmul_kv_grad(ds, q, kvh).mul_scalar(scale);
    let dq = rope_backward(dq.swap_dims(1, 2), cos_t.clone(), sin_t.clone());
    let dk = rope_backward(dk.swap_dims(1, 2), cos_t, sin_t);
    (p(dq), p(dk), p(dv.swap_dims(1, 2)))
}

/// Labels drawn from `softmax(logits)` by inverse CDF with one uniform per row.
///
/// # Shapes
/// - logits: `[N, V]`, uniforms: `[N]` → `[N]`
pub fn sample_labels<B: Backend>(
    logits: Tensor<B, 2>,
    uniforms: Tensor<B, 1>,
) -> Tensor<B, 1, Int> {
    let [n, v] = logits.dims();
    let cdf = burn::tensor::activation::softmax(logits, 1).cumsum(1);
    // Rounding can leave cdf's last entry just below u; clamp to the last class.
    let below = cdf
        .lower(uniforms.reshape([n, 1]).expand([n, v]))
        .int()
        .sum_dim(1);
    below.clamp_max((v - 1) as i64).reshape([n])
}

/// Mean cross-entropy of `h wᵀ` against the labels or sampled labels; with `grads`,
/// `∂h = (softmax − onehot) w / N` and `∂w = (softmax − onehot)ᵀ h / N`.
pub fn cross_entropy<B: Backend>(
    h: FloatTensor<B>,
    w: FloatTensor<B>,
    target: CeTarget<B>,
    grads: bool,
) -> CeOutput<B> {
    let (h, w) = (t::<B, 2>(h), t::<B, 2>(w));
    let [n, _] = h.dims();
    let v = w.dims()[0];
    let dtype = h.dtype();
    let logits = widen(h.clone().matmul(w.clone().transpose()));
    let (labels, sampled): (Tensor<B, 1, Int>, bool) = match target {
        CeTarget::Labels(l) => (Tensor::from_primitive(l), false),
        CeTarget::Sample(u) => (sample_labels(logits.clone(), t::<B, 1>(u)), true),
    };
    let idx = labels.clone().reshape([n, 1]);
    let logp = burn::tensor::activation::log_softmax(logits, 1);
    let loss = logp.clone().gather(1, idx.clone()).mean().neg();
    let (grad_h, grad_w) = if grads {
        let onehot = Tensor::<B, 2>::zeros([n, v], &logp.device()).scatter(
            1,
            idx,
            Tensor::ones([n, 1], &logp.device()),
            burn::tensor::IndexingUpdateOp::Add,
        );
        let dlogits = cast_to((logp.exp() - onehot).div_scalar(n as f64), dtype);
        let gh = dlogits.clone().matmul(w);
        let gw = dlogits.transpose().matmul(h);
        (Some(p(gh)), Some(p(gw)))
    } else {
        (None, None)
    };
    CeOutput {
        loss: p(loss),
        grad_h,
        grad_w,
        labels: sampled.then(|| labels.into_primitive()),
    }
}
