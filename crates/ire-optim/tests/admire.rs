//! AdmIRE's invariants on a small Llama: κ = 0 is AdamW bit for bit, nothing is boosted before
//! the start step, γ = 1 is AdamW at η(1+κ), the boost touches only masked coordinates, and the
//! mask fraction is ≥ γ (= ⌊γp⌋/p without ties).

mod common;

use burn::prelude::*;
use common::{bit_equal, loss_grads, max_rel_diff, model, snapshot, tokens, B};
use ire_llama::params::named_values;
use ire_optim::{
    gnb_gradients, gnb_seed, synthetic_gradients, BaseName, Estimator, IreConfig, MaskScope,
    OptimConfig, Optimizer, ScheduleConfig, ScheduleKind,
};

const LR_MAX: f64 = 1e-2;

fn admire(kappa: f64, gamma: f64, start: usize, interval: usize) -> OptimConfig {
    OptimConfig::adamw().with_ire(IreConfig {
        kappa,
        gamma,
        start: Some(start),
        interval,
        ..IreConfig::default()
    })
}

/// `cfg` with its IRE settings changed by `f`.
fn with_ire(mut cfg: OptimConfig, f: impl FnOnce(&mut IreConfig)) -> OptimConfig {
    f(cfg.ire.as_mut().unwrap());
    cfg
}

fn gnb(model: &ire_llama::Llama<B>, it: usize) -> burn::optim::GradientsParams {
    let t = tokens(1000 + it as u64, 2, 8, model.config.vocab_size);
    gnb_gradients(model, t, gnb_seed(3, it as u64), 0)
}

/// Runs `steps` iterations of the paper's loop (refresh if due, then step on real gradients).
fn run(cfg: &OptimConfig, steps: usize, lr_scale: f64) -> (ire_llama::Llama<B>, Optimizer<B>) {
    let mut m = model(11);
    let mut opt = Optimizer::<B>::new(cfg, 0).unwrap();
    for it in 0..steps {
        if opt.needs_refresh(it) {
            let g = gnb(&m, it);
            opt.refresh_mask(&m, &g);
        }
        let grads = loss_grads(&m, it as u64);
        m = opt.step(it, LR_MAX * lr_scale, LR_MAX, m, grads);
    }
    (m, opt)
}

#[test]
fn kappa_zero_is_adamw_bit_for_bit() {
    let (a, _) = run(&OptimConfig::adamw(), 8, 1.0);
    let (b, opt) = run(&admire(0.0, 0.6, 1, 3), 8, 1.0);
    assert!(
        opt.refreshes() >= 2,
        "the κ = 0 run must have refreshed its mask"
    );
    assert!(bit_equal(&snapshot(&a), &snapshot(&b)));
    // …while κ = 4 on the same run does change the parameters.
    let (c, _) = run(&admire(4.0, 0.6, 1, 3), 8, 1.0);
    assert!(max_rel_diff(&snapshot(&c), &snapshot(&a), 1e-6) > 1e-4);
}

#[test]
fn no_boost_before_the_start_step() {
    let cfg = admire(4.0, 0.6, 3, 10);
    let mut m_adamw = model(11);
    let mut m_admire = model(11);
    let mut adamw = Optimizer::<B>::new(&OptimConfig::adamw(), 0).unwrap();
    let mut opt = Optimizer::<B>::new(&cfg, 0).unwrap();
    assert_eq!(opt.start(), 3);
    // A mask exists from the first iteration on.
    let g = gnb(&m_admire, 0);
    opt.refresh_mask(&m_admire, &g);
    for it in 0..=3 {
        assert!(!opt.needs_refresh(it));
        let grads = loss_grads(&m_adamw, it as u64);
        m_adamw = adamw.step(it, LR_MAX, LR_MAX, m_adamw, grads);
        let grads = loss_grads(&m_admire, it as u64);
        m_admire = opt.step(it, LR_MAX, LR_MAX, m_admire, grads);
        assert!(
            bit_equal(&snapshot(&m_adamw), &snapshot(&m_admire)),
            "iteration {it} ≤ start was boosted"
        );
    }
    // Iteration 4 > start: boosted, and exactly on the masked coordinates.
    let before = snapshot(&m_admire);
    let grads = loss_grads(&m_adamw, 4);
    m_adamw = adamw.step(4, LR_MAX, LR_MAX, m_adamw, grads);
    let grads = loss_grads(&m_admire, 4);
    m_admire = opt.step(4, LR_MAX, LR_MAX, m_admire, grads);
    let (plain, boosted) = (snapshot(&m_adamw), snapshot(&m_admire));
    let mut masked = 0usize;
    for (((name, old), (_, a)), (_, b)) in before.iter().zip(&plain).zip(&boosted) {
        let mask: Vec<bool> = opt
            .mask(name)
            .unwrap()
            .clone()
            .into_data()
            .to_vec()
            .unwrap();
        for i in 0..old.len() {
            if mask[i] {
                masked += 1;
                // θ_new + κ(θ_new − θ), the paper's code's arithmetic, exactly.
                let expected = a[i] + 4.0 * (a[i] - old[i]);
                assert_eq!(
                    b[i].to_bits(),
                    expected.to_bits(),
                    "{name}[{i}]: {} vs {expected}",
                    b[i]
                );
            } else {
                assert_eq!(
                    a[i].to_bits(),
                    b[i].to_bits(),
                    "{name}[{i}] is not masked but moved differently"
                );
            }
        }
    }
    let total: usize = before.iter().map(|(_, v)| v.len()).sum();
    assert!(masked as f64 >= (0.6 * total as f64).floor());
}

#[test]
fn gamma_one_is_adamw_at_one_plus_kappa_times_the_lr() {
    // The same synthetic gradients for both runs: the parameters drift apart only by rounding.
    // θ + Δ + κΔ and θ + Δ' with Δ' computed at η(1 + κ) round differently, so this is a float
    // comparison; Adam's moments see the same gradients and must agree bit for bit.
    let kappa = 4.0;
    let mut a = model(5);
    let mut b = model(5);
    let mut adamw = Optimizer::<B>::new(&OptimConfig::adamw(), 0).unwrap();
    let mut opt = Optimizer::<B>::new(&admire(kappa, 1.0, 0, 1000), 0).unwrap();
    let g = gnb(&b, 0);
    let stats = opt.refresh_mask(&b, &g);
    assert_eq!(stats.fraction, 1.0);
    for it in 1..=6 {
        let lr = LR_MAX * it as f64 / 6.0;
        let (ga, gb) = (
            synthetic_gradients(&a, it as u64, 0.01),
            synthetic_gradients(&b, it as u64, 0.01),
        );
        a = adamw.step(it, lr * (1.0 + kappa), LR_MAX, a, ga);
        b = opt.step(it, lr, LR_MAX, b, gb);
    }
    // AdmIRE's Δ = θ_new − θ is a difference of O(1) numbers (as in the paper's fp32 code): it
    // carries an error of about an ulp of θ, amplified by κ, on every step. Parameters are
    // O(1) (embedding entries up to ~4), so 6 steps stay well below 1e-5.
    let diff = common::max_abs_diff(&snapshot(&b), &snapshot(&a));
    assert!(
        diff < 1e-5,
        "γ = 1 differs from AdamW at η(1+κ) by {diff:e}"
    );
    assert!(
        diff > 0.0,
        "expected some rounding difference (else the test compares nothing)"
    );
    for (info, _) in named_values(&a) {
        let (sa, sb) = (
            adamw.param_state(&info.name).unwrap(),
            opt.param_state(&info.name).unwrap(),
        );
        let bits = |t: &Tensor<burn::backend::Flex, 1>| -> Vec<u32> {
            t.to_data()
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect()
        };
        for buffer in ["exp_avg", "exp_avg_sq"] {
            let (a, b) = (sa.buffer(buffer).unwrap(), sb.buffer(buffer).unwrap());
            assert_eq!(bits(a), bits(b), "{} {buffer}", info.name);
        }
    }
    // Weight decay is boosted too: from fresh moments with zero gradients, a step is pure
    // decay, θ ← θ − (1 + κ)·η·λ·θ.
    let mut c = model(6);
    let mut opt = Optimizer::<B>::new(&admire(kappa, 1.0, 0, 1000), 0).unwrap();
    opt.refresh_mask(&c, &synthetic_gradients(&c, 1, 1.0));
    let before = snapshot(&c);
    let zeros = synthetic_gradients(&c, 0, 0.0);
    c = opt.step(1, 1e-2, LR_MAX, c, zeros);
    for ((name, old), (_, new)) in before.iter().zip(&snapshot(&c)) {
        for (o, n) in old.iter().zip(new) {
            let expected = o * (1.0 - 5.0 * 1e-2 * 0.1);
            assert!(
                (n - expected).abs() <= 1e-6 * o.abs(),
                "{name}: {o} → {n}, expected {expected}"
            );
        }
    }
}

#[test]
fn mask_fraction_is_gamma_without_ties_and_at_least_gamma_with_ties() {
    let m = model(2);
    let p: usize = named_values(&m).iter().map(|(_, v)| v.len()).sum();
    for gamma in [0.6, 0.9, 0.25] {
        // Continuous random estimates: no ties.
        let mut opt = Optimizer::<B>::new(&admire(4.0, gamma, 0, 10), 0).unwrap();
        let est = synthetic_gradients(&m, 9, 1.0);
        let stats = opt.refresh_mask(&m, &est);
        let k = (gamma * p as f64).floor();
        assert_eq!(stats.fraction, k / p as f64, "γ = {gamma}");
        assert_eq!(opt.mask_fraction(), Some(stats.fraction));
        // τ is the k-th smallest ĝ² (host check).
        let mut h: Vec<f32> = Vec::new();
        for (info, _) in named_values(&m) {
            let id = info.id;
            let g = est
                .get::<burn::backend::Flex, 2>(id)
                .map(|t| t.into_data().to_vec::<f32>().unwrap());
            let g = g.or_else(|| {
                est.get::<burn::backend::Flex, 1>(id)
                    .map(|t| t.into_data().to_vec::<f32>().unwrap())
            });
            h.extend(g.unwrap().iter().map(|x| x * x));
        }
        h.sort_by(f32::total_cmp);
        assert_eq!(stats.threshold, h[k as usize - 1]);
    }
    // GNB estimates have ties (embedding rows of tokens absent from the batch have ĝ = 0).
    let mut opt = Optimizer::<B>::new(&admire(4.0, 0.05, 0, 10), 0).unwrap();
    let stats = opt.refresh_mask(&m, &gnb(&m, 0));
    assert!(stats.fraction > 0.05, "expected ties at τ = 0: {stats:?}");
    assert_eq!(stats.threshold, 0.0);
    // Masked entries counted from the stored masks agree with the reported fraction.
    let masked: usize = named_values(&m)
        .iter()
        .map(|(i, _)| {
            let v: Vec<bool> = opt
                .mask(&i.name)
                .unwrap()
                .clone()
                .into_data()
                .to_vec()
                .unwrap();
            v.iter().filter(|b| **b).count()
        })
        .sum();
    assert_eq!(masked as f64 / p as f64, stats.fraction);
}

#[test]
fn per_tensor_scope_takes_gamma_of_every_tensor() {
    let m = model(2);
    let cfg = with_ire(admire(4.0, 0.6, 0, 10), |i| i.scope = MaskScope::PerTensor);
    let mut opt = Optimizer::<B>::new(&cfg, 0).unwrap();
    let stats = opt.refresh_mask(&m, &synthetic_gradients(&m, 4, 1.0));
    let mut k_total = 0.0;
    let mut p = 0usize;
    for (info, v) in named_values(&m) {
        let mask: Vec<bool> = opt
            .mask(&info.name)
            .unwrap()
            .clone()
            .into_data()
            .to_vec()
            .unwrap();
        let k = (0.6 * v.len() as f64).floor();
        assert_eq!(
            mask.iter().filter(|b| **b).count() as f64,
            k,
            "{}",
            info.name
        );
        k_total += k;
        p += v.len();
    }
    assert_eq!(stats.fraction, k_total / p as f64);
}

#[test]
fn adam_v_estimator_ranks_the_second_moment() {
    let mut m = model(2);
    let cfg = with_ire(admire(4.0, 0.5, 0, 10), |i| i.estimator = Estimator::AdamV);
    let mut opt = Optimizer::<B>::new(&cfg, 0).unwrap();
    let grads = loss_grads(&m, 0);
    m = opt.step(0, LR_MAX, LR_MAX, m, grads);
    let stats = opt.refresh_mask(&m, &burn::optim::GradientsParams::new());
    assert!(stats.fraction >= 0.5);
    // A masked coordinate never has a larger v than an unmasked one.
    let name = "model.layers.0.mlp.up_proj.weight";
    let v: Vec<f32> = opt
        .param_state(name)
        .unwrap()
        .buffer("exp_avg_sq")
        .unwrap()
        .to_data()
        .to_vec()
        .unwrap();
    let mask: Vec<bool> = opt
        .mask(name)
        .unwrap()
        .clone()
        .into_data()
        .to_vec()
        .unwrap();
    let max_in = v
        .iter()
        .zip(&mask)
        .filter(|(_, m)| **m)
        .map(|(x, _)| *x)
        .fold(f32::MIN, f32::max);
    let min_out = v
        .iter()
        .zip(&mask)
        .filter(|(_, m)| !**m)
        .map(|(x, _)| *x)
        .fold(f32::MAX, f32::min);
    assert!(max_in <= stats.threshold && stats.threshold < min_out);
}

#[test]
fn refresh_rule_and_kappa_schedule() {
    let s = ScheduleConfig {
        kind: ScheduleKind::Cosine,
        lr_max: 6e-4,
        lr_min: None,
        warmup: 500,
        total: 50_000,
    }
    .build()
    .unwrap();
    let opt = Optimizer::<B>::new(&OptimConfig::admire(), s.warmup).unwrap();
    let due: Vec<usize> = (480..540).filter(|&it| opt.needs_refresh(it)).collect();
    // The paper's `it > warmup and it % 10 == 1`.
    assert_eq!(due, vec![501, 511, 521, 531]);
    assert_eq!(opt.kappa_t(3e-4, 6e-4), 4.0);
    let decayed = Optimizer::<B>::new(
        &with_ire(OptimConfig::admire(), |i| i.prog_decay = true),
        500,
    )
    .unwrap();
    assert_eq!(decayed.kappa_t(3e-4, 6e-4), 2.0);
    let adamw = Optimizer::<B>::new(&OptimConfig::adamw(), 500).unwrap();
    assert!(!(0..2000).any(|it| adamw.needs_refresh(it)));
    assert_eq!(adamw.kappa_t(6e-4, 6e-4), 0.0);
}

#[test]
fn no_decay_groups_spare_norms_and_the_embedding() {
    // Every base: with zero gradients only weight decay moves anything (SGD's L2 term enters
    // its first momentum buffer whole, Lion's sign(0) is 0, Muon orthogonalises a zero matrix
    // to zero), so θ ← θ(1 − ηλ) = 0.95 θ outside the no-decay group and θ inside it.
    for base in [
        BaseName::Adamw,
        BaseName::Sgd,
        BaseName::Lion,
        BaseName::Muon,
    ] {
        let mut m = model(3);
        let mut cfg = OptimConfig {
            no_decay_groups: true,
            ..OptimConfig::base(base)
        };
        cfg.adamw.iter_mut().for_each(|a| a.weight_decay = 0.5);
        cfg.sgd.iter_mut().for_each(|s| s.weight_decay = 0.5);
        cfg.lion.iter_mut().for_each(|l| l.weight_decay = 0.5);
        cfg.muon.iter_mut().for_each(|m| m.weight_decay = 0.5);
        let mut opt = Optimizer::<B>::new(&cfg, 0).unwrap();
        let before = snapshot(&m);
        let zeros = synthetic_gradients(&m, 0, 0.0);
        m = opt.step(0, 0.1, 0.1, m, zeros);
        for ((name, old), (_, new)) in before.iter().zip(&snapshot(&m)) {
            let decays = !(name.contains("norm") || name.contains("embed_tokens"));
            for (o, n) in old.iter().zip(new) {
                if decays {
                    assert!(
                        (n - o * 0.95).abs() <= 1e-6 * o.abs(),
                        "{base:?} {name}: {o} → {n}"
                    );
                } else {
                    assert_eq!(o.to_bits(), n.to_bits(), "{base:?}: {name} decayed");
                }
            }
        }
    }
}
