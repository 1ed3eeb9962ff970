//! The exact on-device k-th-smallest threshold (`select_device`) against a host sort: small and
//! large inputs, ties, zeros, f64, and an input built so that the strided sample misses the
//! bracket; the mask and the boost built on it.

mod common;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::DType;
use common::curvature;
use ire_optim::mask::{boost, flat_mask};
use ire_optim::select_device::{count_le, kth_smallest, kth_smallest_with, Strategy};

type B = Flex;

fn tensor(values: &[f32]) -> Tensor<B, 1> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [values.len()]),
        &Default::default(),
    )
}

/// The k-th smallest by sorting, and how many values are ≤ it.
fn by_sort(values: &[f32], k: usize) -> (f32, u64) {
    let mut s = values.to_vec();
    s.sort_by(f32::total_cmp);
    let t = s[k - 1];
    (t, values.iter().filter(|&&v| v <= t).count() as u64)
}

/// Checks both strategies, on the values as one tensor and split into uneven parts.
fn check(values: &[f32], ks: &[usize]) {
    let whole = [tensor(values)];
    let cut = [values.len() / 3, values.len() / 3 + values.len() / 7];
    let parts = if values.len() >= 10 {
        vec![
            tensor(&values[..cut[0]]),
            tensor(&values[cut[0]..cut[1]]),
            tensor(&values[cut[1]..]),
        ]
    } else {
        Vec::new()
    };
    for &k in ks {
        let (expected, count) = by_sort(values, k);
        let splits: &[(&str, &[Tensor<B, 1>])] = if values.len() >= 10 {
            &[("whole", &whole), ("parts", &parts)]
        } else {
            &[("whole", &whole)]
        };
        for &(what, split) in splits {
            for strategy in [Strategy::Compact, Strategy::Bisect] {
                let sel = kth_smallest_with(split, k as u64, strategy);
                let at = format!("n = {}, k = {k}, {what}, {strategy:?}", values.len());
                assert_eq!(
                    sel.threshold as f32, expected,
                    "{at}: got {}, sort says {expected}",
                    sel.threshold
                );
                assert_eq!(sel.count_le, count, "{at}: count");
            }
        }
        assert_eq!(kth_smallest(&whole, k as u64).threshold as f32, expected);
    }
}

#[test]
fn small_inputs_match_a_sort() {
    for (seed, levels) in [(1, None), (2, Some(1e7)), (3, Some(3e6))] {
        let v = curvature(seed, 1000, levels);
        check(&v, &[1, 2, 100, 499, 500, 600, 999, 1000]);
    }
    // All equal, and a single value.
    check(&[0.5; 10], &[1, 6, 10]);
    check(&[3.0], &[1]);
    // Zeros only up to k.
    check(&[0.0, 0.0, 0.0, 1.0, 2.0], &[1, 3, 4, 5]);
}

#[test]
fn large_inputs_use_the_sampled_bracket_and_match_a_sort() {
    let n = 600_000;
    for (seed, levels) in [(4, None), (5, Some(2e7))] {
        let v = curvature(seed, n, levels);
        check(&v, &[1, n / 10, (0.6 * n as f64) as usize, n - 1, n]);
    }
}

#[test]
fn a_misleading_sample_falls_back_to_the_full_bisection() {
    // The sample takes every 17th value (n / 65536 = 16, made odd): make those huge.
    let n = 1 << 20;
    let mut v = curvature(6, n, None);
    for i in (0..n).step_by(17) {
        v[i] = 1e6 + i as f32;
    }
    check(&v, &[(0.6 * n as f64) as usize, n / 2]);
    // And the other way: sampled values tiny, everything else large.
    let mut w: Vec<f32> = curvature(7, n, None).iter().map(|x| x + 1.0).collect();
    for i in (0..n).step_by(17) {
        w[i] = 0.0;
    }
    check(&w, &[(0.6 * n as f64) as usize]);
}

#[test]
fn k_zero_gives_an_empty_mask() {
    let t = tensor(&[0.0, 1.0, 2.0]);
    let sel = kth_smallest(std::slice::from_ref(&t), 0);
    assert_eq!(sel.threshold, f64::NEG_INFINITY);
    assert_eq!(sel.count_le, 0);
    let mask: Vec<bool> = flat_mask(t, sel.threshold).into_data().to_vec().unwrap();
    assert_eq!(mask, vec![false, false, false]);
}

#[test]
fn f64_values_get_an_f64_threshold() {
    let device = Default::default();
    // Two values that are equal in f32 but not in f64.
    let v = [1.0 + 1e-12, 1.0, 0.5, 2.0];
    let t = Tensor::<B, 1>::from_data(TensorData::from(v), (&device, DType::F64));
    let sel = kth_smallest(std::slice::from_ref(&t), 3);
    assert_eq!(sel.threshold, 1.0 + 1e-12);
    assert_eq!(sel.count_le, 3);
    assert_eq!(kth_smallest(&[t], 2).threshold, 1.0);
}

#[test]
fn nan_values_are_never_in_the_mask() {
    let t = tensor(&[0.3, f32::NAN, 0.1, 0.2]);
    let sel = kth_smallest(std::slice::from_ref(&t), 3);
    assert_eq!(sel.threshold as f32, 0.3);
    assert_eq!(sel.count_le, 3);
    // Asking for more ordered values than exist: τ = +inf, NaN still excluded.
    let sel = kth_smallest(std::slice::from_ref(&t), 4);
    assert_eq!(sel.threshold, f64::INFINITY);
    assert_eq!(sel.count_le, 3);
    assert_eq!(count_le(&t, f64::INFINITY), 3);
}

#[test]
fn boost_adds_kappa_delta_on_the_mask_only() {
    let theta = tensor(&[1.0, 2.0, 3.0, 4.0]);
    let stepped = tensor(&[1.1, 1.8, 3.3, 3.6]);
    let mask = tensor(&[0.0, 1.0, 0.0, 1.0]).greater_elem(0.5);
    let out: Vec<f32> = boost(theta.clone(), stepped.clone(), mask.clone(), 4.0)
        .into_data()
        .to_vec()
        .unwrap();
    let plain: Vec<f32> = stepped.clone().into_data().to_vec().unwrap();
    assert_eq!(out[0].to_bits(), plain[0].to_bits());
    assert_eq!(out[2].to_bits(), plain[2].to_bits());
    // θ + (1 + κ)Δ.
    assert!((out[1] - (2.0 - 5.0 * 0.2)).abs() < 1e-6);
    assert!((out[3] - (4.0 - 5.0 * 0.4)).abs() < 1e-6);
    // κ = 0 through the boost is the base step bit for bit.
    let zero: Vec<f32> = boost(theta, stepped, mask, 0.0)
        .into_data()
        .to_vec()
        .unwrap();
    assert!(zero
        .iter()
        .zip(&plain)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}
