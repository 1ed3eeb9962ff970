//! The fused ops against their references, forward and backward.
//!
//! Three computations of every op on the same seeded inputs:
//! - **autodiff**: the composed reference forward (`ire_llama::ops::reference`) differentiated
//!   by Burn's own autodiff on `Autodiff<Flex>` — the ground truth;
//! - **default**: the `IreOps` path on `Autodiff<NdArray>`, i.e. the composed forward with the
//!   hand-written backward (what CUDA runs);
//! - **kernels**: the `IreOps` path on `Autodiff<Flex>`, i.e. the CPU kernels.
//!
//! Outputs and input gradients must agree to f32 precision (relative to the tensor's scale).

use burn::backend::{Autodiff, Flex, NdArray};
use burn::prelude::*;
use ire_llama::ops::{self, reference};
use ire_llama::testing::{assert_close, output_and_input_grads as run, randn, values};
use ire_core::SplitMix64;
use ire_llama::RopeHost;

type K = Autodiff<Flex>;
type D = Autodiff<NdArray<f32>>;

/// Checks kernels and default against autodiff for `f` (the IreOps path) and `reference`.
fn check<const N: usize, const M: usize>(
    name: &str,
    shapes: [[usize; N]; M],
    fused_k: impl Fn([Tensor<K, N>; M]) -> Tensor<K, N>,
    fused_d: impl Fn([Tensor<D, N>; M]) -> Tensor<D, N>,
    plain: impl Fn([Tensor<K, N>; M]) -> Tensor<K, N>,
    tol: f32,
) {
    let mk_k = || std::array::from_fn::<_, M, _>(|i| randn::<K, N>(shapes[i], 11 + i as u64));
    let mk_d = || std::array::from_fn::<_, M, _>(|i| randn::<D, N>(shapes[i], 11 + i as u64));
    let truth = run(mk_k(), plain, 99);
    let kernels = run(mk_k(), fused_k, 99);
    let default = run(mk_d(), fused_d, 99);
    for (label, got) in [("kernels", &kernels), ("default", &default)] {
        assert_close(&format!("{name} {label} output"), &got.0, &truth.0, tol);
        for (i, (g, t)) in got.1.iter().zip(&truth.1).enumerate() {
            assert_close(&format!("{name} {label} grad of input {i}"), g, t, tol);
        }
    }
}

#[test]
fn linear_matches_matmul_with_transposed_weight() {
    check(
        "linear",
        [[37, 24], [19, 24]],
        |[x, w]| ops::linear(x, w),
        |[x, w]| ops::linear(x, w),
        |[x, w]| x.matmul(w.transpose()),
        1e-5,
    );
}

#[test]
fn rms_norm_matches_the_formula() {
    for (rows, d) in [(37, 24), (1, 7), (130, 256)] {
        check(
            "rms_norm",
            [[rows, d], [1, d]],
            |[x, w]| ops::rms_norm(x, w.reshape([d]), 1e-6),
            |[x, w]| ops::rms_norm(x, w.reshape([d]), 1e-6),
            |[x, w]| {
                let r = (x.clone().powi_scalar(2).mean_dim(1) + 1e-6).sqrt().recip();
                x * r * w
            },
            2e-5,
        );
    }
}

#[test]
fn swiglu_matches_silu_times_up() {
    check(
        "swiglu",
        [[3, 41, 17], [3, 41, 17]],
        |[g, u]| ops::swiglu(g, u),
        |[g, u]| ops::swiglu(g, u),
        |[g, u]| burn::tensor::activation::silu(g) * u,
        2e-5,
    );
}

/// Causal attention with RoPE and GQA, through the public op and the composed reference.
fn attention_case(b: usize, s: usize, h: usize, kvh: usize, hd: usize) {
    let rope = RopeHost::new(hd, s, 10_000.0);
    let rk = rope.tables::<K>(s, &Default::default());
    let rd = rope.tables::<D>(s, &Default::default());
    // Inputs are [B, S, heads·hd] so one shape array serves q, k and v; k and v use kvh heads.
    let shapes = [[b, s, h * hd], [b, s, kvh * hd], [b, s, kvh * hd]];
    let split = move |x: [usize; 3], heads: usize| [x[0], x[1], heads, hd];
    let (qs, ks) = (split(shapes[0], h), split(shapes[1], kvh));
    check(
        &format!("attention b{b} s{s} h{h} kvh{kvh} hd{hd}"),
        shapes,
        |[q, k, v]| {
            ops::causal_attention(q.reshape(qs), k.reshape(ks), v.reshape(ks), &rk)
                .reshape(shapes[0])
        },
        |[q, k, v]| {
            ops::causal_attention(q.reshape(qs), k.reshape(ks), v.reshape(ks), &rd)
                .reshape(shapes[0])
        },
        |[q, k, v]| {
            let (cos, sin) = rk.tables();
            let p = |t: Tensor<K, 4>| t.into_primitive().tensor();
            let (y, _) = reference::attention::<K>(
                p(q.reshape(qs)),
                p(k.reshape(ks)),
                p(v.reshape(ks)),
                cos.into_primitive().tensor(),
                sin.into_primitive().tensor(),
            );
            Tensor::<K, 4>::from_primitive(burn::tensor::TensorPrimitive::Float(y))
                .reshape(shapes[0])
        },
        3e-5,
    );
}

#[test]
fn attention_matches_the_composed_reference() {
    attention_case(2, 67, 4, 2, 8); // GQA, crosses a query block, odd length
    attention_case(1, 5, 2, 2, 4); // batch 1, MHA, shorter than a block
    attention_case(2, 130, 3, 1, 16); // one kv head for three query heads, three blocks
}

/// The composed attention equals burn's own causal attention (the op the model used before).
#[test]
fn reference_attention_equals_burns_attention_after_rope() {
    let (b, s, h, hd) = (2, 9, 2, 8);
    let rope = RopeHost::new(hd, s, 10_000.0).tables::<Flex>(s, &Default::default());
    let q = randn::<Flex, 4>([b, s, h, hd], 1);
    let k = randn::<Flex, 4>([b, s, h, hd], 2);
    let v = randn::<Flex, 4>([b, s, h, hd], 3);
    let ours = values(ops::causal_attention(
        q.clone(),
        k.clone(),
        v.clone(),
        &rope,
    ));
    let options = burn::tensor::ops::AttentionModuleOptions {
        is_causal: true,
        ..Default::default()
    };
    let theirs = burn::tensor::module::attention(
        rope.apply(q).swap_dims(1, 2),
        rope.apply(k).swap_dims(1, 2),
        v.swap_dims(1, 2),
        None,
        None,
        options,
    )
    .swap_dims(1, 2);
    assert_close("attention vs burn", &ours, &values(theirs), 1e-5);
}

/// Cross-entropy of `h wᵀ` through the op vs log_softmax + gather, and its gradients.
fn ce_case(n: usize, d: usize, v: usize) {
    let labels: Vec<i64> = (0..n).map(|i| ((i * 7919 + 3) % v) as i64).collect();
    let lk = Tensor::<K, 1, Int>::from_ints(labels.as_slice(), &Default::default());
    let ld = Tensor::<D, 1, Int>::from_ints(labels.as_slice(), &Default::default());
    let to2 = |t: Tensor<K, 1>| t.reshape([1, 1]);
    check(
        &format!("cross_entropy n{n} d{d} v{v}"),
        [[n, d], [v, d]],
        |[h, w]| to2(ops::cross_entropy(h, w, lk.clone())),
        |[h, w]| ops::cross_entropy(h, w, ld.clone()).reshape([1, 1]),
        |[h, w]| {
            let logp = burn::tensor::activation::log_softmax(h.matmul(w.transpose()), 1);
            to2(logp.gather(1, lk.clone().reshape([n, 1])).mean().neg())
        },
        2e-5,
    );
}

#[test]
fn cross_entropy_matches_log_softmax_and_gather() {
    ce_case(37, 16, 300);
    ce_case(1, 8, 5);
    // More than one block of logits (the kernel's block is 16 Mi floats).
    ce_case(1100, 4, 16_000);
}

#[test]
fn sampled_cross_entropy_draws_the_reference_labels() {
    let (n, d, v) = (64, 8, 50);
    let h = randn::<Flex, 2>([n, d], 5);
    let w = randn::<Flex, 2>([v, d], 6);
    let mut rng = SplitMix64::new(7);
    let u: Vec<f32> = (0..n).map(|_| rng.unit() as f32).collect();
    let u = Tensor::<Flex, 1>::from_floats(u.as_slice(), &Default::default());
    let (loss, labels) = ops::sampled_cross_entropy(h.clone(), w.clone(), u.clone());
    let logits = h.clone().matmul(w.clone().transpose());
    let expected = reference::sample_labels(logits.clone(), u);
    let (got, want): (Vec<i64>, Vec<i64>) = (
        labels.into_data().convert::<i64>().to_vec().unwrap(),
        expected
            .clone()
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap(),
    );
    assert_eq!(got, want, "the fused draw picks the reference's labels");
    // Labels spread over the classes (not a constant).
    let distinct: std::collections::BTreeSet<_> = got.iter().collect();
    assert!(
        distinct.len() > 10,
        "only {} distinct labels",
        distinct.len()
    );
    let plain = burn::tensor::activation::log_softmax(logits, 1)
        .gather(1, expected.reshape([n, 1]))
        .mean()
        .neg();
    assert_close("sampled loss", &values(loss), &values(plain), 1e-5);
}

/// The kernel switch parses what the docs say.
#[test]
fn kernel_set_parses_names() {
    use ire_llama::ops::KernelSet;
    assert_eq!(KernelSet::parse("all"), Some(KernelSet::ALL));
    assert_eq!(KernelSet::parse(""), Some(KernelSet::ALL));
    assert_eq!(KernelSet::parse("reference"), Some(KernelSet::NONE));
    let some = KernelSet::parse("loss, attention").unwrap();
    assert!(some.loss && some.attention && !some.linear && !some.norm && !some.swiglu);
    assert_eq!(KernelSet::parse("fast"), None);
}

/// Whether every value is 0 or a normal float (denormals slow every later instruction down).
fn no_denormals(what: &str, xs: &[f32]) {
    let bad = xs
        .iter()
        .filter(|x| **x != 0.0 && x.abs() < f32::MIN_POSITIVE)
        .count();
    assert_eq!(bad, 0, "{what}: {bad} denormal values");
}

#[test]
fn peaky_softmaxes_leave_no_denormals() {
    // Scores and logits spread over hundreds: most probabilities underflow f32.
    let (n, d, v) = (64, 8, 300);
    let h = (randn::<K, 2>([n, d], 3) * 40.0).require_grad();
    let w = randn::<K, 2>([v, d], 4).require_grad();
    let labels: Vec<i64> = (0..n as i64).map(|i| i % v as i64).collect();
    let l = Tensor::<K, 1, Int>::from_ints(labels.as_slice(), &Default::default());
    let grads = ops::cross_entropy(h.clone(), w.clone(), l).backward();
    no_denormals("∂h", &values(h.grad(&grads).unwrap()));
    no_denormals("∂w", &values(w.grad(&grads).unwrap()));

    let (b, s, heads, hd) = (1, 70, 2, 8);
    let rope = RopeHost::new(hd, s, 10_000.0).tables::<K>(s, &Default::default());
    let q = (randn::<K, 4>([b, s, heads, hd], 5) * 30.0).require_grad();
    let k = (randn::<K, 4>([b, s, heads, hd], 6) * 30.0).require_grad();
    let vv = randn::<K, 4>([b, s, heads, hd], 7).require_grad();
    let y = ops::causal_attention(q.clone(), k.clone(), vv.clone(), &rope);
    let grads = (y * randn::<K, 4>([b, s, heads, hd], 8)).sum().backward();
    for (name, t) in [("∂q", q), ("∂k", k), ("∂v", vv)] {
        no_denormals(name, &values(t.grad(&grads).unwrap()));
    }
}
