//! SGD's and Lion's update of one parameter in one pass over its memory, IRE's boost included —
//! the [`crate::FusedUpdate::fused_sgd`] and [`crate::FusedUpdate::fused_lion`] hooks.
//!
//! Per element, in the f32 operation order of the composed references ([`crate::sgd::sgd_step`],
//! [`crate::lion::lion_step`], then [`crate::mask::boost`]):
//!
//! ```text
//! SGD   g' = g + θλ;  b = g' (first step) or bμ + g'(1 − τ);  d = g' + bμ (Nesterov) or b
//!       θ' = θ + d(−η)                                        (μ = 0: d = g', no buffer)
//! Lion  θ' = θ(1 − ηλ);  θ' = θ' + sign(mβ₁ + g(1 − β₁))(−η);  m = mβ₂ + g(1 − β₂)
//! IRE   θ' = θ' + (θ − θ')(−κ)                                where the mask is set
//! ```
//!
//! The defaults compose those references (any backend); burn-flex runs one threaded loop that
//! updates θ and the buffer in place (`tests/fused.rs` checks the two agree bit for bit).

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::ops::{BoolTensor, FloatTensor};
use burn::tensor::{DType, TensorMetadata, TensorPrimitive};
use rayon::prelude::*;

use crate::flex_storage::{owned, CHUNK};
use crate::lion::{lion_step, LionParams};
use crate::mask::boost;
use crate::sgd::{sgd_step, SgdParams};

/// The scalars of one parameter's SGD step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdStep {
    /// η_t.
    pub lr: f64,
    /// μ, τ, λ (0 in the no-decay group), Nesterov.
    pub hp: SgdParams,
    /// κ_t for the masked coordinates (used only with a mask).
    pub kappa: f64,
}

/// The scalars of one parameter's Lion step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LionStep {
    /// η_t.
    pub lr: f64,
    /// β₁, β₂, λ (0 in the no-decay group).
    pub hp: LionParams,
    /// κ_t for the masked coordinates (used only with a mask).
    pub kappa: f64,
}

/// A tensor primitive as a flat `[n]` tensor (also the AdamW reference's, in `fused.rs`).
pub(crate) fn t<B: Backend>(p: FloatTensor<B>) -> Tensor<B, 1> {
    let n = p.shape().num_elements();
    Tensor::from_primitive(TensorPrimitive::Float(B::float_reshape(p, [n].into())))
}

fn mask_1d<B: Backend>(mask: BoolTensor<B>) -> Tensor<B, 1, Bool> {
    let n = mask.shape().num_elements();
    Tensor::from_primitive(B::bool_reshape(mask, [n].into()))
}

/// The composed SGD step ([`sgd_step`]), then the boost where `mask` is set. `buffer`: the
/// momentum buffer, `None` at the first step (and always with μ = 0). Returns θ and the buffer.
pub fn reference_sgd<B: Backend>(
    theta: FloatTensor<B>,
    grad: FloatTensor<B>,
    buffer: Option<FloatTensor<B>>,
    mask: Option<BoolTensor<B>>,
    s: &SgdStep,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    let shape = theta.shape();
    let back = |x: Tensor<B, 1>| B::float_reshape(x.into_primitive().tensor(), shape.clone());
    let theta = t::<B>(theta);
    let (stepped, buffer) = sgd_step(theta.clone(), t::<B>(grad), buffer.map(t::<B>), s.lr, &s.hp);
    let updated = match mask {
        Some(mask) => boost(theta, stepped, mask_1d::<B>(mask), s.kappa),
        None => stepped,
    };
    (back(updated), buffer.map(back))
}

/// The composed Lion step ([`lion_step`]), then the boost where `mask` is set. Returns θ and m.
pub fn reference_lion<B: Backend>(
    theta: FloatTensor<B>,
    grad: FloatTensor<B>,
    exp_avg: FloatTensor<B>,
    mask: Option<BoolTensor<B>>,
    s: &LionStep,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let shape = theta.shape();
    let back = |x: Tensor<B, 1>| B::float_reshape(x.into_primitive().tensor(), shape.clone());
    let theta = t::<B>(theta);
    let (stepped, m) = lion_step(theta.clone(), t::<B>(grad), t::<B>(exp_avg), s.lr, &s.hp);
    let updated = match mask {
        Some(mask) => boost(theta, stepped, mask_1d::<B>(mask), s.kappa),
        None => stepped,
    };
    (back(updated), back(m))
}

/// SGD's f32 scalars.
#[derive(Debug, Clone, Copy)]
struct SgdScalars {
    weight_decay: f32,
    momentum: f32,
    one_minus_dampening: f32,
    nesterov: bool,
    first: bool,
    neg_lr: f32,
    neg_kappa: f32,
}

/// Lion's f32 scalars.
#[derive(Debug, Clone, Copy)]
struct LionScalars {
    decay: f32,
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    neg_lr: f32,
    neg_kappa: f32,
}

/// Burn's `sign`: −1, 0 or 1 (and NaN for NaN), where `f32::signum(0.0)` would be 1.
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

ire_core::multiversion! {
    /// SGD on a chunk, in place; `buf` is empty without momentum.
    fn sgd_chunk(theta: &mut [f32], buf: &mut [f32], g: &[f32], mask: &[u8], s: SgdScalars) {
        for i in 0..theta.len().min(g.len()) {
            let th = theta[i];
            let gi = if s.weight_decay == 0.0 { g[i] } else { g[i] + th * s.weight_decay };
            let d = if buf.is_empty() {
                gi
            } else {
                let b = if s.first { gi } else { buf[i] * s.momentum + gi * s.one_minus_dampening };
                buf[i] = b;
                if s.nesterov { gi + b * s.momentum } else { b }
            };
            let mut new = th + d * s.neg_lr;
            if !mask.is_empty() && mask[i] != 0 {
                new = (th - new) * s.neg_kappa + new;
            }
            theta[i] = new;
        }
    }
}

ire_core::multiversion! {
    /// Lion on a chunk, in place.
    fn lion_chunk(theta: &mut [f32], m: &mut [f32], g: &[f32], mask: &[u8], s: LionScalars) {
        for i in 0..theta.len().min(m.len()).min(g.len()) {
            let (th, gi, mi) = (theta[i], g[i], m[i]);
            let decayed = if s.decay == 1.0 { th } else { th * s.decay };
            let mut new = decayed + sign(mi * s.beta1 + gi * s.one_minus_beta1) * s.neg_lr;
            if !mask.is_empty() && mask[i] != 0 {
                new = (th - new) * s.neg_kappa + new;
            }
            theta[i] = new;
            m[i] = mi * s.beta2 + gi * s.one_minus_beta2;
        }
    }
}

/// The mask's bytes, contiguous and exactly `n` of them.
fn mask_bytes(mask: Option<BoolTensor<Flex>>, n: usize) -> Option<BoolTensor<Flex>> {
    mask.map(|b| {
        let exact = b.is_contiguous() && b.layout().start_offset() == 0 && b.bytes().len() == n;
        if exact {
            b
        } else {
            b.to_contiguous()
        }
    })
}

/// burn-flex's SGD pass (f32 only; other dtypes take the reference).
pub(crate) fn flex_sgd(
    theta: FloatTensor<Flex>,
    grad: FloatTensor<Flex>,
    buffer: Option<FloatTensor<Flex>>,
    mask: Option<BoolTensor<Flex>>,
    s: &SgdStep,
) -> (FloatTensor<Flex>, Option<FloatTensor<Flex>>) {
    let f32s = theta.dtype() == DType::F32
        && grad.dtype() == DType::F32
        && buffer.as_ref().is_none_or(|b| b.dtype() == DType::F32);
    if !f32s {
        return reference_sgd::<Flex>(theta, grad, buffer, mask, s);
    }
    let (mut theta, grad) = (owned(theta), owned(grad));
    let n = theta.layout().shape().num_elements();
    let first = buffer.is_none();
    // The first step writes g' into a fresh buffer (the kernel reads no old values then).
    let fresh = || {
        FlexTensor::from_data(TensorData::new(
            vec![0.0f32; n],
            theta.layout().shape().clone(),
        ))
    };
    let mut buffer = (s.hp.momentum != 0.0).then(|| buffer.map_or_else(fresh, owned));
    let mask = mask_bytes(mask, n);
    let bits: &[u8] = mask.as_ref().map_or(&[], |b| b.storage::<u8>());
    let g = grad.as_slice::<f32>().expect("owned() is contiguous");
    let sc = SgdScalars {
        weight_decay: s.hp.weight_decay as f32,
        momentum: s.hp.momentum as f32,
        one_minus_dampening: (1.0 - s.hp.dampening) as f32,
        nesterov: s.hp.nesterov,
        first,
        neg_lr: (-s.lr) as f32,
        neg_kappa: (-s.kappa) as f32,
    };
    let th = theta.storage_mut::<f32>();
    let buf: &mut [f32] = buffer.as_mut().map_or(&mut [], |b| b.storage_mut::<f32>());
    let chunk_of = |i: usize, len: usize, all: &[u8]| -> std::ops::Range<usize> {
        if all.is_empty() {
            0..0
        } else {
            i * CHUNK..i * CHUNK + len
        }
    };
    if buf.is_empty() {
        th.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(i, (th, g))| {
                let mb = &bits[chunk_of(i, th.len(), bits)];
                sgd_chunk(th, &mut [], g, mb, sc);
            });
    } else {
        th.par_chunks_mut(CHUNK)
            .zip(buf.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(i, ((th, b), g))| {
                let mb = &bits[chunk_of(i, th.len(), bits)];
                sgd_chunk(th, b, g, mb, sc);
            });
    }
    (theta, buffer)
}

/// burn-flex's Lion pass (f32 only; other dtypes take the reference).
pub(crate) fn flex_lion(
    theta: FloatTensor<Flex>,
    grad: FloatTensor<Flex>,
    exp_avg: FloatTensor<Flex>,
    mask: Option<BoolTensor<Flex>>,
    s: &LionStep,
) -> (FloatTensor<Flex>, FloatTensor<Flex>) {
    let f32s = [&theta, &grad, &exp_avg]
        .iter()
        .all(|x| x.dtype() == DType::F32);
    if !f32s {
        return reference_lion::<Flex>(theta, grad, exp_avg, mask, s);
    }
    let (mut theta, mut m, grad) = (owned(theta), owned(exp_avg), owned(grad));
    let n = theta.layout().shape().num_elements();
    let mask = mask_bytes(mask, n);
    let bits: &[u8] = mask.as_ref().map_or(&[], |b| b.storage::<u8>());
    let g = grad.as_slice::<f32>().expect("owned() is contiguous");
    let sc = LionScalars {
        decay: (1.0 - s.lr * s.hp.weight_decay) as f32,
        beta1: s.hp.beta1 as f32,
        one_minus_beta1: (1.0 - s.hp.beta1) as f32,
        beta2: s.hp.beta2 as f32,
        one_minus_beta2: (1.0 - s.hp.beta2) as f32,
        neg_lr: (-s.lr) as f32,
        neg_kappa: (-s.kappa) as f32,
    };
    let (th, ms) = (theta.storage_mut::<f32>(), m.storage_mut::<f32>());
    th.par_chunks_mut(CHUNK)
        .zip(ms.par_chunks_mut(CHUNK))
        .zip(g.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(i, ((th, m), g))| {
            let mb = if bits.is_empty() {
                &[][..]
            } else {
                &bits[i * CHUNK..i * CHUNK + th.len()]
            };
            lion_chunk(th, m, g, mb, sc);
        });
    (theta, m)
}
