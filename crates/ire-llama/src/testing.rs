//! Test support shared by ire's test suites (the fused-op tests here, the CubeCL lane in
//! ire-optim): seeded normal tensors, host copies, and a tolerance check scaled to the
//! reference's magnitude. [`assert_close`] panics on a mismatch, like `assert!`, and
//! [`output_and_input_grads`] when an input gets no gradient; nothing else in the library calls
//! them.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use ire_core::SplitMix64;

/// A `shape` tensor of standard normals from [`SplitMix64`] `seed`, on the default device.
pub fn randn<B: Backend, const N: usize>(shape: [usize; N], seed: u64) -> Tensor<B, N> {
    let mut rng = SplitMix64::new(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

/// The values of `t` on the host as f32, whatever its float dtype.
pub fn values<B: Backend, const N: usize>(t: Tensor<B, N>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// The output of `f` and the gradient of every input under `L = Σ f(inputs) ⊙ R`, with `R` seeded
/// normals from `seed`: a random vector–Jacobian product, so every output entry's backward counts.
pub fn output_and_input_grads<B: AutodiffBackend, const N: usize, const M: usize>(
    inputs: [Tensor<B, N>; M],
    f: impl Fn([Tensor<B, N>; M]) -> Tensor<B, N>,
    seed: u64,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let inputs = inputs.map(|t| t.require_grad());
    let y = f(inputs.clone());
    let r = randn::<B, N>(y.dims(), seed);
    let grads = (y.clone() * r).sum().backward();
    let g = inputs
        .iter()
        .map(|t| values(t.grad(&grads).expect("every input requires a gradient")))
        .collect();
    (values(y), g)
}

/// Asserts that `a` is finite and `max |a − b| ≤ tol · max(1, max |b|)`, naming `what` and the
/// figures when not.
pub fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    assert!(a.iter().all(|x| x.is_finite()), "{what}: non-finite values");
    let scale = b.iter().fold(1.0f32, |m, x| m.max(x.abs()));
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{what}: max difference {worst} (scale {scale}, tolerance {tol})"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn randn_is_seeded_and_roughly_standard() {
        let a = values(randn::<Flex, 1>([4096], 7));
        assert_eq!(a, values(randn::<Flex, 1>([4096], 7)));
        assert_ne!(a, values(randn::<Flex, 1>([4096], 8)));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / a.len() as f32;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.1,
            "mean {mean}, var {var}"
        );
    }

    #[test]
    fn assert_close_scales_the_tolerance_by_the_reference() {
        assert_close("within", &[100.5], &[100.0], 1e-2);
        let far = std::panic::catch_unwind(|| assert_close("far", &[0.5], &[0.0], 1e-2));
        assert!(far.is_err());
        let nan = std::panic::catch_unwind(|| assert_close("nan", &[f32::NAN], &[0.0], 1.0));
        assert!(nan.is_err());
    }
}
