//! [`IreOps`] for burn-flex: f32 tensors go to the [`kernels`](super::kernels), anything else
//! (f64 in tests, bf16) and kernels switched off by `IRE_KERNELS` go to the reference.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, TensorData};

use super::kernels::{attention, cross_entropy, gemm, norm};
use super::{reference, CeOutput, CeTarget, IreOps, KernelSet};

/// The tensor made contiguous (a no-op when it already is).
fn dense(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The f32 elements of a contiguous tensor.
fn data(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("dense() made the tensor contiguous f32")
}

fn dims(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Whether every tensor is f32 and the kernel is switched on.
fn use_kernel(on: bool, ts: &[&FlexTensor]) -> bool {
    on && ts.iter().all(|t| t.dtype() == DType::F32)
}

impl IreOps for Flex {
    fn ire_linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        if !use_kernel(KernelSet::current().linear, &[&x, &w]) {
            return reference::linear::<Self>(x, w);
        }
        let (x, w) = (dense(x), dense(w));
        let ([n, k], [m, _]) = (two(&x), two(&w));
        let mut y = vec![0.0f32; n * m];
        let wm = gemm::Mat::rows(data(&w), m, k, k);
        gemm::matmul(
            &mut y,
            m,
            gemm::Mat::rows(data(&x), n, k, k),
            wm.t(),
            false,
            gemm::Par::All,
        );
        tensor(y, vec![n, m])
    }

    fn ire_linear_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !use_kernel(KernelSet::current().linear, &[&x, &w, &dy]) {
            return reference::linear_backward::<Self>(x, w, dy);
        }
        let (x, w, dy) = (dense(x), dense(w), dense(dy));
        let ([n, k], [m, _]) = (two(&x), two(&w));
        let (xm, wm) = (
            gemm::Mat::rows(data(&x), n, k, k),
            gemm::Mat::rows(data(&w), m, k, k),
        );
        let dym = gemm::Mat::rows(data(&dy), n, m, m);
        let dx = gemm::product(dym, wm, gemm::Par::All);
        let dw = gemm::product(dym.t(), xm, gemm::Par::All);
        (tensor(dx, vec![n, k]), tensor(dw, vec![m, k]))
    }

    fn ire_rms_norm(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !use_kernel(KernelSet::current().norm, &[&x, &w]) {
            return reference::rms_norm::<Self>(x, w, eps);
        }
        let (x, w) = (dense(x), dense(w));
        let [n, d] = two(&x);
        let (y, r) = norm::rms_norm(data(&x), data(&w), eps as f32);
        (tensor(y, vec![n, d]), tensor(r, vec![n]))
    }

    fn ire_rms_norm_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        r: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !use_kernel(KernelSet::current().norm, &[&x, &w, &r, &dy]) {
            return reference::rms_norm_backward::<Self>(x, w, r, dy);
        }
        let (x, w, r, dy) = (dense(x), dense(w), dense(r), dense(dy));
        let [n, d] = two(&x);
        let (dx, dw) = norm::rms_norm_backward(data(&x), data(&w), data(&r), data(&dy));
        (tensor(dx, vec![n, d]), tensor(dw, vec![d]))
    }

    fn ire_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        if !use_kernel(KernelSet::current().swiglu, &[&gate, &up]) {
            return reference::swiglu::<Self>(gate, up);
        }
        let (g, u) = (dense(gate), dense(up));
        tensor(norm::swiglu(data(&g), data(&u)), dims(&g))
    }

    fn ire_swiglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !use_kernel(KernelSet::current().swiglu, &[&gate, &up, &dy]) {
            return reference::swiglu_backward::<Self>(gate, up, dy);
        }
        let (g, u, dy) = (dense(gate), dense(up), dense(dy));
        let (dg, du) = norm::swiglu_backward(data(&g), data(&u), data(&dy));
        (tensor(dg, dims(&g)), tensor(du, dims(&g)))
    }

    fn ire_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !use_kernel(KernelSet::current().attention, &[&q, &k, &v, &cos, &sin]) {
            return reference::attention::<Self>(q, k, v, cos, sin);
        }
        let (q, k, v, cos, sin) = (dense(q), dense(k), dense(v), dense(cos), dense(sin));
        let d = attention_dims(&q, &k);
        let (y, lse) = attention::forward(d, data(&q), data(&k), data(&v), data(&cos), data(&sin));
        (tensor(y, dims(&q)), tensor(lse, vec![d.b, d.h, d.s]))
    }

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
        let all = [&q, &k, &v, &cos, &sin, &y, &lse, &dy];
        if !use_kernel(KernelSet::current().attention, &all) {
            return reference::attention_backward::<Self>(q, k, v, cos, sin, y, lse, dy);
        }
        let [q, k, v, cos, sin, y, lse, dy] = [q, k, v, cos, sin, y, lse, dy].map(dense);
        let d = attention_dims(&q, &k);
        let saved = attention::Saved {
            q: data(&q),
            k: data(&k),
            v: data(&v),
            cos: data(&cos),
            sin: data(&sin),
            y: data(&y),
            lse: data(&lse),
        };
        let (dq, dk, dv) = attention::backward(d, saved, data(&dy));
        (
            tensor(dq, dims(&q)),
            tensor(dk, dims(&k)),
            tensor(dv, dims(&k)),
        )
    }

    fn ire_cross_entropy(
        h: FloatTensor<Self>,
        w: FloatTensor<Self>,
        target: CeTarget<Self>,
        grads: bool,
    ) -> CeOutput<Self> {
        let uniforms_f32 = match &target {
            CeTarget::Sample(u) => u.dtype() == DType::F32,
            CeTarget::Labels(_) => true,
        };
        if !uniforms_f32 || !use_kernel(KernelSet::current().loss, &[&h, &w]) {
            return reference::cross_entropy::<Self>(h, w, target, grads);
        }
        let (h, w) = (dense(h), dense(w));
        let [n, d] = two(&h);
        let (labels, uniforms);
        let target = match target {
            CeTarget::Labels(l) => {
                labels = int_values(l);
                cross_entropy::Target::Labels(&labels)
            }
            CeTarget::Sample(u) => {
                uniforms = dense(u);
                cross_entropy::Target::Sample(data(&uniforms))
            }
        };
        let sampled = matches!(target, cross_entropy::Target::Sample(_));
        let out = cross_entropy::cross_entropy(data(&h), data(&w), d, target, grads)
            .unwrap_or_else(|e| panic!("cross-entropy: {e}"));
        let v = two(&w)[0];
        let (grad_h, grad_w) = match out.grads {
            Some((gh, gw)) => (Some(tensor(gh, vec![n, d])), Some(tensor(gw, vec![v, d]))),
            None => (None, None),
        };
        CeOutput {
            loss: tensor(vec![out.loss as f32], vec![1]),
            grad_h,
            grad_w,
            labels: sampled.then(|| FlexTensor::from_data(TensorData::new(out.labels, vec![n]))),
        }
    }
}

fn two(t: &FlexTensor) -> [usize; 2] {
    let s = dims(t);
    [s[0], s[1]]
}

fn attention_dims(q: &FlexTensor, k: &FlexTensor) -> attention::Dims {
    let (qs, ks) = (dims(q), dims(k));
    attention::Dims {
        b: qs[0],
        s: qs[1],
        h: qs[2],
        kvh: ks[2],
        hd: qs[3],
    }
}

/// An integer tensor's values as i64, whatever its integer dtype.
fn int_values(t: IntTensor<Flex>) -> Vec<i64> {
    t.into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .expect("converted to i64 just above")
}
