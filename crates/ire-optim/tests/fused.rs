//! The fused one-pass updates (burn-flex kernels) against the composed references (AdamW's,
//! SGD's and Lion's tensor ops, then the boost), over several steps, with and without a mask,
//! across chunk boundaries.

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use ire_core::SplitMix64;
use ire_optim::adamw::AdamWParams;
use ire_optim::fused::{reference, FusedUpdate, Step};
use ire_optim::fused_bases::{reference_lion, reference_sgd, LionStep, SgdStep};
use ire_optim::lion::LionParams;
use ire_optim::sgd::SgdParams;

fn tensor(values: Vec<f32>) -> Tensor<Flex, 1> {
    Tensor::from_floats(values.as_slice(), &Default::default())
}

fn vals(p: burn::tensor::ops::FloatTensor<Flex>) -> Vec<f32> {
    Tensor::<Flex, 1>::from_primitive(TensorPrimitive::Float(p))
        .into_data()
        .to_vec()
        .unwrap()
}

fn normal(n: usize, seed: u64, scale: f64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| (rng.normal() * scale) as f32).collect()
}

/// Runs `steps` updates both ways and returns the worst relative difference of θ, m and v.
fn compare(n: usize, masked: bool, weight_decay: f64, kappa: f64, steps: u64) -> f32 {
    let hp = AdamWParams {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
    };
    let mask: Vec<bool> = (0..n).map(|i| (i * 7919) % 5 < 3).collect();
    let mk_mask = || {
        masked.then(|| {
            Tensor::<Flex, 1, Bool>::from_data(
                TensorData::new(mask.clone(), [n]),
                &Default::default(),
            )
            .into_primitive()
        })
    };
    let start = normal(n, 1, 0.02);
    let zeros = vec![0.0f32; n];
    let p = |v: Vec<f32>| tensor(v).into_primitive().tensor();
    let (mut a, mut b) = (
        (p(start.clone()), p(zeros.clone()), p(zeros.clone())),
        (p(start), p(zeros.clone()), p(zeros)),
    );
    for step in 1..=steps {
        let s = Step {
            lr: 1e-3 * step as f64,
            weight_decay,
            hp,
            step,
            kappa,
        };
        let g = normal(n, 100 + step, 1.0 / step as f64);
        a = Flex::fused_update(a.0, p(g.clone()), a.1, a.2, mk_mask(), &s);
        b = reference::<Flex>(b.0, p(g), b.1, b.2, mk_mask(), &s);
    }
    let mut worst = 0.0f32;
    for (x, y) in [(a.0, b.0), (a.1, b.1), (a.2, b.2)] {
        let (x, y) = (vals(x), vals(y));
        for (u, w) in x.iter().zip(&y) {
            worst = worst.max((u - w).abs() / w.abs().max(1e-6));
        }
    }
    worst
}

#[test]
fn fused_update_matches_the_composed_reference() {
    for (n, masked, wd, kappa) in [
        (37, false, 0.1, 0.0),
        (37, true, 0.1, 4.0),
        (40_000, true, 0.0, 2.0), // crosses rayon chunks: the mask must stay aligned
        (40_000, false, 0.1, 4.0),
    ] {
        let worst = compare(n, masked, wd, kappa, 5);
        assert!(
            worst < 2e-6,
            "n {n} masked {masked} wd {wd} κ {kappa}: worst relative difference {worst}"
        );
    }
}

/// Bit patterns of a tensor's values.
fn bits(p: burn::tensor::ops::FloatTensor<Flex>) -> Vec<u32> {
    vals(p).iter().map(|x| x.to_bits()).collect()
}

/// Five SGD and Lion steps through burn-flex's kernels and the composed references, from the
/// same start with the same gradients: θ and the buffers agree bit for bit (same f32 operations
/// in the same order), for momentum with and without Nesterov and dampening, none at all, decay
/// or not, a mask or not, over three kernel chunks.
#[test]
fn fused_sgd_and_lion_equal_the_composed_references_bit_for_bit() {
    let n = 2 * (1 << 14) + 123;
    let p = |v: Vec<f32>| tensor(v).into_primitive().tensor();
    let mask: Vec<bool> = (0..n).map(|i| (i * 7919) % 5 < 3).collect();
    let mk_mask = |on: bool| {
        on.then(|| {
            Tensor::<Flex, 1, Bool>::from_data(
                TensorData::new(mask.clone(), [n]),
                &Default::default(),
            )
            .into_primitive()
        })
    };
    let sgd_cases = [
        (0.9, 0.0, false, 0.01),
        (0.9, 0.0, true, 0.0),
        (0.8, 0.3, false, 0.1),
        (0.0, 0.0, false, 0.01),
    ];
    for (case, (momentum, dampening, nesterov, weight_decay)) in sgd_cases.into_iter().enumerate() {
        for masked in [false, true] {
            let hp = SgdParams {
                momentum,
                dampening,
                weight_decay,
                nesterov,
            };
            let (mut a, mut b) = ((p(normal(n, 1, 0.02)), None), (p(normal(n, 1, 0.02)), None));
            for step in 1..=5u64 {
                let s = SgdStep {
                    lr: 0.1 / step as f64,
                    hp,
                    kappa: 4.0,
                };
                let g = normal(n, 100 + step, 1.0 / step as f64);
                a = Flex::fused_sgd(a.0, p(g.clone()), a.1, mk_mask(masked), &s);
                b = reference_sgd::<Flex>(b.0, p(g), b.1, mk_mask(masked), &s);
                assert_eq!(
                    bits(a.0.clone()),
                    bits(b.0.clone()),
                    "SGD case {case}, masked {masked}, step {step}: θ"
                );
                assert_eq!(
                    a.1.clone().map(bits),
                    b.1.clone().map(bits),
                    "SGD case {case}: buffer"
                );
                assert_eq!(a.1.is_some(), momentum != 0.0);
            }
        }
    }
    for (weight_decay, masked) in [(0.0, false), (0.5, false), (0.5, true)] {
        let hp = LionParams {
            beta1: 0.9,
            beta2: 0.99,
            weight_decay,
        };
        let zeros = || p(vec![0.0; n]);
        let (mut a, mut b) = (
            (p(normal(n, 2, 0.02)), zeros()),
            (p(normal(n, 2, 0.02)), zeros()),
        );
        for step in 1..=5u64 {
            let s = LionStep {
                lr: 1e-3 * step as f64,
                hp,
                kappa: 4.0,
            };
            // Some exact zeros: sign(0) = 0, as torch's and Burn's sign.
            let g: Vec<f32> = normal(n, 200 + step, 1.0)
                .into_iter()
                .enumerate()
                .map(|(i, x)| if i % 11 == 0 { 0.0 } else { x })
                .collect();
            a = Flex::fused_lion(a.0, p(g.clone()), a.1, mk_mask(masked), &s);
            b = reference_lion::<Flex>(b.0, p(g), b.1, mk_mask(masked), &s);
            assert_eq!(
                bits(a.0.clone()),
                bits(b.0.clone()),
                "Lion λ {weight_decay}, masked {masked}, step {step}: θ"
            );
            assert_eq!(bits(a.1.clone()), bits(b.1.clone()), "Lion: m");
        }
    }
}

#[test]
fn the_mask_boosts_exactly_the_masked_displacement() {
    // One step from zero moments with κ = 3: masked coordinates move 4× as far as AdamW's.
    let n = 20_000;
    let hp = AdamWParams {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
    };
    let s = Step {
        lr: 1e-2,
        weight_decay: 0.0,
        hp,
        step: 1,
        kappa: 3.0,
    };
    let theta = normal(n, 3, 1.0);
    let g = normal(n, 4, 1.0);
    let mask: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
    let p = |v: &Vec<f32>| tensor(v.clone()).into_primitive().tensor();
    let zeros = vec![0.0f32; n];
    let m =
        Tensor::<Flex, 1, Bool>::from_data(TensorData::new(mask.clone(), [n]), &Default::default());
    let boosted = vals(
        Flex::fused_update(
            p(&theta),
            p(&g),
            p(&zeros),
            p(&zeros),
            Some(m.into_primitive()),
            &s,
        )
        .0,
    );
    let plain = vals(Flex::fused_update(p(&theta), p(&g), p(&zeros), p(&zeros), None, &s).0);
    for i in 0..n {
        let (d_boost, d_plain) = (boosted[i] - theta[i], plain[i] - theta[i]);
        if mask[i] {
            // Differences of θ values carry θ's rounding (a few ulp of |θ|).
            let tol = 4.0 * f32::EPSILON * (theta[i].abs() + boosted[i].abs() + 1.0);
            assert!(
                (d_boost - 4.0 * d_plain).abs() <= tol,
                "i {i}: boosted displacement {d_boost}, AdamW's {d_plain}"
            );
        } else {
            assert_eq!(
                boosted[i], plain[i],
                "unmasked coordinate {i} is AdamW's bit for bit"
            );
        }
    }
}

/// The CPU refresh's threshold and count equal the on-device bisection's, on values with ties,
/// zeros and NaNs, across the sampled bracket and its fallback.
#[test]
fn cpu_refresh_selects_what_the_device_bisection_selects() {
    use ire_optim::select::HForm;
    use ire_optim::select_cpu;
    use ire_optim::select_device::{kth_smallest_with, Strategy};
    let n = 300_000;
    let mut rng = SplitMix64::new(9);
    let mut x: Vec<f32> = (0..n).map(|_| (rng.normal() * 1e-3) as f32).collect();
    for i in (0..n).step_by(97) {
        x[i] = 0.0; // ties at zero
    }
    for i in (0..n).step_by(1013) {
        x[i] = f32::NAN; // never in the mask
    }
    for i in (5..n).step_by(89) {
        x[i] = 2.5e-4; // a heavy tie
    }
    let parts = [&x[..n / 3], &x[n / 3..]];
    for (form, k) in [
        (HForm::Square, (0.6 * n as f64) as u64),
        (HForm::Abs, (0.6 * n as f64) as u64),
        (HForm::Square, 1),
        (HForm::Square, 0),
        (HForm::Abs, (n - n / 1013) as u64), // the last ordered value
    ] {
        let cpu = select_cpu::kth_smallest(&parts, form, k);
        let h: Vec<Tensor<Flex, 1>> = parts
            .iter()
            .map(|p| {
                let t = tensor(p.to_vec());
                match form {
                    HForm::Square => t.square(),
                    HForm::Abs => t.abs(),
                    HForm::Identity => t,
                }
            })
            .collect();
        let device = kth_smallest_with(&h, k, Strategy::Bisect);
        assert_eq!(cpu, device, "{form:?} k {k}");
        let masked: usize = parts
            .iter()
            .map(|p| {
                select_cpu::mask(p, form, cpu.threshold)
                    .iter()
                    .filter(|&&b| b)
                    .count()
            })
            .sum();
        assert_eq!(
            masked as u64, cpu.count_le,
            "{form:?} k {k}: mask size = count"
        );
    }
}
