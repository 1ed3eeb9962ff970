//! The AdamW / AdmIRE update of one parameter in one pass over its memory.
//!
//! [`FusedUpdate::fused_update`] does what [`adamw_step`] followed by [`boost`] do — decay,
//! `m`, `v`, the bias-corrected step and, on masked coordinates, the `(1 + κ)` boost of the
//! displacement — with PyTorch's f32 operation order per element:
//!
//! ```text
//! θ' = θ·(1 − ηλ)
//! m  = m + (g − m)(1 − β₁)
//! v  = β₂v + ((1 − β₂)g)g
//! θ' = θ' + (−η/(1 − β₁ᵗ))·m / (√v / √(1 − β₂ᵗ) + ε)
//! θ' = θ' + (θ − θ')(−κ)        where the mask is set (AdmIRE)
//! ```
//!
//! The default method composes the tensor ops of [`adamw_step`] and [`boost`] (the reference,
//! run by CUDA and ndarray); burn-flex overrides it with one threaded, vectorised loop that
//! updates θ, m and v in place. The two agree with `torch.optim.AdamW` on the committed vectors
//! (`tests/adamw_torch.rs`) and with each other (`tests/fused.rs`).

use burn::backend::flex::FlexTensor;
use burn::backend::{Flex, NdArray};
use burn::prelude::*;
use burn::tensor::ops::{BoolTensor, FloatTensor};
use burn::tensor::{DType, TensorMetadata};
use rayon::prelude::*;

use crate::adamw::{adamw_step, AdamWParams, Moments};
use crate::flex_storage::{owned, CHUNK};
use crate::fused_bases::{reference_lion, reference_sgd, t, LionStep, SgdStep};
use crate::mask::{boost, flat_mask};
use crate::select::{HForm, Selection};
use crate::select_cpu;
use crate::select_device::kth_smallest;

/// The scalars of one parameter's step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// η_t.
    pub lr: f64,
    /// λ for this parameter (0 in the no-decay group).
    pub weight_decay: f64,
    /// β₁, β₂, ε.
    pub hp: AdamWParams,
    /// This parameter's 1-based step count (the bias-correction exponent).
    pub step: u64,
    /// κ_t for the masked coordinates (used only with a mask).
    pub kappa: f64,
}

/// θ, m and v after a step.
pub type Updated<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

/// The fused optimizer update; see the module docs.
pub trait FusedUpdate: Backend {
    /// One step of one parameter: θ, its gradient, Adam's `m` and `v` (all the parameter's
    /// shape) and the AdmIRE mask (same shape; `None` for plain AdamW). Returns θ, m, v.
    fn fused_update(
        theta: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: Option<BoolTensor<Self>>,
        s: &Step,
    ) -> Updated<Self> {
        reference::<Self>(theta, grad, m, v, mask, s)
    }

    /// One SGD step of one parameter, the boost on `mask`'s coordinates included
    /// ([`crate::fused_bases`]). `buffer`: the momentum buffer, `None` at the first step.
    /// Returns θ and the buffer (`None` with μ = 0).
    fn fused_sgd(
        theta: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        buffer: Option<FloatTensor<Self>>,
        mask: Option<BoolTensor<Self>>,
        s: &SgdStep,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        reference_sgd::<Self>(theta, grad, buffer, mask, s)
    }

    /// One Lion step of one parameter, the boost on `mask`'s coordinates included
    /// ([`crate::fused_bases`]). Returns θ and the momentum `exp_avg`.
    fn fused_lion(
        theta: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        exp_avg: FloatTensor<Self>,
        mask: Option<BoolTensor<Self>>,
        s: &LionStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference_lion::<Self>(theta, grad, exp_avg, mask, s)
    }

    /// `Σ x²` as a `[1]` tensor (global-norm clipping; stays on the device).
    fn sum_squares(x: FloatTensor<Self>) -> FloatTensor<Self> {
        t::<Self>(x).square().sum().into_primitive().tensor()
    }

    /// AdmIRE's mask refresh: `h = form(x)` for every (flat) part, τ = the exact k-th
    /// smallest `h` over all parts, and each part's mask `1[h ≤ τ]`.
    fn flat_masks(
        parts: Vec<FloatTensor<Self>>,
        form: HForm,
        k: u64,
    ) -> (Selection, Vec<BoolTensor<Self>>) {
        reference_masks::<Self>(parts, form, k)
    }

    /// How many coordinates `mask` sets, and how many of those `previous` sets too (when
    /// given): the counts behind AdmIRE's mask diagnostics ([`crate::MaskReport`]).
    fn count_flat(
        mask: BoolTensor<Self>,
        previous: Option<BoolTensor<Self>>,
    ) -> (u64, Option<u64>) {
        reference_count::<Self>(mask, previous)
    }
}

/// The composed counts: integer sums of the mask and of its AND with the previous one.
pub fn reference_count<B: Backend>(
    mask: BoolTensor<B>,
    previous: Option<BoolTensor<B>>,
) -> (u64, Option<u64>) {
    let mask = Tensor::<B, 1, Bool>::from_primitive(mask);
    let count = |m: Tensor<B, 1, Bool>| m.int().sum().into_scalar().elem::<i64>() as u64;
    let both = previous.map(|p| count(Tensor::from_primitive(p).bool_and(mask.clone())));
    (count(mask), both)
}

/// The composed refresh: `h` by tensor ops, [`crate::select_device::kth_smallest`] (on-device
/// bisection), [`flat_mask`].
pub fn reference_masks<B: Backend>(
    parts: Vec<FloatTensor<B>>,
    form: HForm,
    k: u64,
) -> (Selection, Vec<BoolTensor<B>>) {
    let h: Vec<Tensor<B, 1>> = parts
        .into_iter()
        .map(|x| {
            let x = t::<B>(x);
            match form {
                HForm::Square => x.square(),
                HForm::Abs => x.abs(),
                HForm::Identity => x,
            }
        })
        .collect();
    let sel = kth_smallest(&h, k);
    let masks = h
        .into_iter()
        .map(|h| flat_mask(h, sel.threshold).into_primitive())
        .collect();
    (sel, masks)
}

/// The composed update: [`adamw_step`], then [`boost`] where a mask is given.
pub fn reference<B: Backend>(
    theta: FloatTensor<B>,
    grad: FloatTensor<B>,
    m: FloatTensor<B>,
    v: FloatTensor<B>,
    mask: Option<BoolTensor<B>>,
    s: &Step,
) -> Updated<B> {
    let shape = theta.shape();
    let back = |x: Tensor<B, 1>| B::float_reshape(x.into_primitive().tensor(), shape.clone());
    let (theta, grad) = (t::<B>(theta), t::<B>(grad));
    let moments = Moments {
        exp_avg: t::<B>(m),
        exp_avg_sq: t::<B>(v),
    };
    let (updated, moments) = match mask {
        Some(mask) => {
            let n = shape.num_elements();
            let mask = Tensor::<B, 1, Bool>::from_primitive(B::bool_reshape(mask, [n].into()));
            let (stepped, moments) = adamw_step(
                theta.clone(),
                grad,
                moments,
                s.step,
                s.lr,
                s.weight_decay,
                &s.hp,
            );
            (boost(theta, stepped, mask, s.kappa), moments)
        }
        None => adamw_step(theta, grad, moments, s.step, s.lr, s.weight_decay, &s.hp),
    };
    (
        back(updated),
        back(moments.exp_avg),
        back(moments.exp_avg_sq),
    )
}

impl FusedUpdate for NdArray<f32> {}
impl FusedUpdate for NdArray<f64> {}
#[cfg(feature = "cuda")]
impl FusedUpdate for burn::backend::Cuda {}
#[cfg(feature = "wgpu")]
impl FusedUpdate for burn::backend::Wgpu {}

/// The f32 scalars of the per-element update, computed once per parameter as PyTorch does
/// (bias corrections in f64, entering the f32 arithmetic as scalars).
#[derive(Debug, Clone, Copy)]
struct Scalars {
    decay: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bc2_sqrt: f32,
    eps: f32,
    neg_step_size: f32,
    neg_kappa: f32,
}

impl Scalars {
    fn new(s: &Step) -> Self {
        let t = s.step as f64;
        let bc1 = 1.0 - s.hp.beta1.powf(t);
        let bc2 = 1.0 - s.hp.beta2.powf(t);
        Self {
            decay: (1.0 - s.lr * s.weight_decay) as f32,
            one_minus_beta1: (1.0 - s.hp.beta1) as f32,
            beta2: s.hp.beta2 as f32,
            one_minus_beta2: (1.0 - s.hp.beta2) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            eps: s.hp.eps as f32,
            neg_step_size: (-(s.lr / bc1)) as f32,
            neg_kappa: (-s.kappa) as f32,
        }
    }
}

ire_core::multiversion! {
    /// The update of a chunk of coordinates, in place (see the module docs for the formula).
    fn update_chunk(theta: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], mask: &[u8], s: Scalars) {
        let boosting = !mask.is_empty();
        for i in 0..theta.len().min(m.len()).min(v.len()).min(g.len()) {
            let (th, gi) = (theta[i], g[i]);
            let mut new = if s.decay == 1.0 { th } else { th * s.decay };
            let mi = m[i] + (gi - m[i]) * s.one_minus_beta1;
            let vi = v[i] * s.beta2 + gi * s.one_minus_beta2 * gi;
            let denom = vi.sqrt() / s.bc2_sqrt + s.eps;
            new += mi * s.neg_step_size / denom;
            if boosting && mask[i] != 0 {
                new += (th - new) * s.neg_kappa;
            }
            theta[i] = new;
            m[i] = mi;
            v[i] = vi;
        }
    }
}

ire_core::multiversion! {
    /// `Σ x²` of a chunk, in 16 f32 lanes.
    fn sum_squares_chunk(x: &[f32]) -> f32 {
        ire_llama::ops::kernels::dot(x, x)
    }
}

/// Mask bytes per task when counting them (a u32 sum of 0/1 bytes cannot overflow).
const COUNT_CHUNK: usize = 1 << 20;

impl FusedUpdate for Flex {
    fn fused_sgd(
        theta: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        buffer: Option<FloatTensor<Self>>,
        mask: Option<BoolTensor<Self>>,
        s: &SgdStep,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        crate::fused_bases::flex_sgd(theta, grad, buffer, mask, s)
    }

    fn fused_lion(
        theta: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        exp_avg: FloatTensor<Self>,
        mask: Option<BoolTensor<Self>>,
        s: &LionStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        crate::fused_bases::flex_lion(theta, grad, exp_avg, mask, s)
    }

    fn fused_update(
        theta: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: Option<BoolTensor<Self>>,
        s: &Step,
    ) -> Updated<Self> {
        let f32s = [&theta, &grad, &m, &v]
            .iter()
            .all(|x| x.dtype() == DType::F32);
        if !f32s {
            return reference::<Self>(theta, grad, m, v, mask, s);
        }
        let (mut theta, mut m, mut v) = (owned(theta), owned(m), owned(v));
        let grad = owned(grad);
        let n = theta.layout().shape().num_elements();
        let mask = mask.map(|b| {
            let exact = b.is_contiguous() && b.layout().start_offset() == 0 && b.bytes().len() == n;
            if exact {
                b
            } else {
                b.to_contiguous()
            }
        });
        let g = grad.as_slice::<f32>().expect("owned() is contiguous");
        let bits: &[u8] = mask.as_ref().map_or(&[], |b| b.storage::<u8>());
        let sc = Scalars::new(s);
        let (th, ms, vs) = (
            theta.storage_mut::<f32>(),
            m.storage_mut::<f32>(),
            v.storage_mut::<f32>(),
        );
        th.par_chunks_mut(CHUNK)
            .zip(ms.par_chunks_mut(CHUNK))
            .zip(vs.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(i, (((th, m), v), g))| {
                let mb = if bits.is_empty() {
                    &[][..]
                } else {
                    &bits[i * CHUNK..i * CHUNK + th.len()]
                };
                update_chunk(th, m, v, g, mb, sc);
            });
        (theta, m, v)
    }

    fn sum_squares(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return t::<Self>(x).square().sum().into_primitive().tensor();
        }
        let x = owned(x);
        let total: f64 = x
            .as_slice::<f32>()
            .expect("owned() is contiguous")
            .par_chunks(CHUNK)
            .map(|c| f64::from(sum_squares_chunk(c)))
            .sum();
        FlexTensor::from_data(TensorData::new(vec![total as f32], [1]))
    }

    fn flat_masks(
        parts: Vec<FloatTensor<Self>>,
        form: HForm,
        k: u64,
    ) -> (Selection, Vec<BoolTensor<Self>>) {
        if parts.iter().any(|x| x.dtype() != DType::F32) {
            return reference_masks::<Self>(parts, form, k);
        }
        let parts: Vec<FlexTensor> = parts.into_iter().map(owned).collect();
        let slices: Vec<&[f32]> = parts
            .iter()
            .map(|x| x.as_slice::<f32>().expect("owned() is contiguous"))
            .collect();
        let (sel, masks) = select_cpu::select_and_mask(&slices, form, k);
        let masks = masks
            .into_iter()
            .map(|bits| {
                let n = bits.len();
                FlexTensor::from_data(TensorData::new(bits, [n]))
            })
            .collect();
        (sel, masks)
    }

    fn count_flat(
        mask: BoolTensor<Self>,
        previous: Option<BoolTensor<Self>>,
    ) -> (u64, Option<u64>) {
        let bytes = |b: FlexTensor| match b.is_contiguous() && b.layout().start_offset() == 0 {
            true => b,
            false => b.to_contiguous(),
        };
        let mask = bytes(mask);
        let bits = mask.storage::<u8>();
        // Mask bytes are 0 or 1: their sum is the count, and `a & b` is their AND. Large
        // chunks of u32 sums vectorise; rayon splits the tensor, not the bytes.
        let ones = |c: &[u8]| c.iter().map(|&b| u32::from(b)).sum::<u32>() as u64;
        let count = bits.par_chunks(COUNT_CHUNK).map(ones).sum();
        let both = previous.map(bytes).map(|p| {
            let prev = p.storage::<u8>();
            let and = |(a, b): (&[u8], &[u8])| {
                a.iter()
                    .zip(b)
                    .map(|(&x, &y)| u32::from(x & y))
                    .sum::<u32>() as u64
            };
            let pairs = bits
                .par_chunks(COUNT_CHUNK)
                .zip(prev.par_chunks(COUNT_CHUNK));
            pairs.map(and).sum()
        });
        (count, both)
    }
}
