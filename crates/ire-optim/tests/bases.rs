//! Every base through the [`Optimizer`] on a small Llama: each parameter takes its rule's
//! reference step (SGD, Lion, Muon's composed ops; AdamW's), κ = 0 is the base bit for bit, and
//! IRE moves exactly the masked coordinates (1 + κ)× the base's displacement, weight decay
//! included.

mod common;

use std::collections::BTreeMap;

use burn::backend::Flex;
use burn::prelude::*;
use common::{bit_equal, model, snapshot, B};
use ire_optim::adamw::{adamw_step, AdamWParams, Moments};
use ire_optim::lion::{lion_step, LionParams};
use ire_optim::muon::muon_step;
use ire_optim::sgd::{sgd_step, SgdParams};
use ire_optim::{synthetic_gradients, BaseName, IreConfig, OptimConfig, Optimizer, Rule};

const BASES: [BaseName; 4] = [
    BaseName::Adamw,
    BaseName::Sgd,
    BaseName::Lion,
    BaseName::Muon,
];

/// `base` with non-default decay (so that decay is exercised) and, when `kappa` is given, IRE
/// boosting from the first refresh.
fn config(base: BaseName, kappa: Option<f64>) -> OptimConfig {
    let mut cfg = OptimConfig::base(base);
    if let Some(s) = cfg.sgd.as_mut() {
        (s.weight_decay, s.nesterov) = (0.01, true);
    }
    if let Some(l) = cfg.lion.as_mut() {
        l.weight_decay = 0.3;
    }
    cfg.ire = kappa.map(|kappa| IreConfig {
        kappa,
        gamma: 0.5,
        interval: 2,
        start: Some(0),
        ..IreConfig::default()
    });
    cfg
}

/// Steps `cfg` over a small model for `steps` iterations with synthetic gradients (the same
/// for every run: they do not depend on θ), refreshing the mask when due.
fn run(cfg: &OptimConfig, steps: usize) -> Vec<(String, Vec<f32>)> {
    let mut m = model(11);
    let mut opt = Optimizer::<B>::new(cfg, 0).unwrap();
    for it in 0..steps {
        if opt.needs_refresh(it) {
            opt.refresh_mask(&m, &synthetic_gradients(&m, 100 + it as u64, 1.0));
        }
        let grads = synthetic_gradients(&m, it as u64, 1e-2);
        m = opt.step(it, 1e-2, 1e-2, m, grads);
    }
    snapshot(&m)
}

#[test]
fn kappa_zero_is_the_base_bit_for_bit() {
    for base in BASES {
        let alone = run(&config(base, None), 6);
        let ire = run(&config(base, Some(0.0)), 6);
        assert!(bit_equal(&alone, &ire), "{base:?}");
        let boosted = run(&config(base, Some(4.0)), 6);
        assert!(
            !bit_equal(&alone, &boosted),
            "{base:?}: κ = 4 changed nothing"
        );
    }
}

/// What the rule's reference step gives for one parameter's first step from fresh state.
fn reference_first_step(
    rule: Rule,
    cfg: &OptimConfig,
    theta: Tensor<Flex, 2>,
    grad: Tensor<Flex, 2>,
    lr: f64,
) -> Tensor<Flex, 2> {
    let zeros = theta.zeros_like();
    match rule {
        Rule::Adamw => {
            let a = cfg.adamw_params();
            let hp = AdamWParams {
                beta1: a.beta1,
                beta2: a.beta2,
                eps: a.eps,
            };
            let moments = Moments {
                exp_avg: zeros.clone(),
                exp_avg_sq: zeros,
            };
            adamw_step(theta, grad, moments, 1, lr, a.weight_decay, &hp).0
        }
        Rule::Sgd => {
            let s = cfg.sgd.unwrap();
            let hp = SgdParams {
                momentum: s.momentum,
                dampening: s.dampening,
                weight_decay: s.weight_decay,
                nesterov: s.nesterov,
            };
            sgd_step(theta, grad, None, lr, &hp).0
        }
        Rule::Lion => {
            let l = cfg.lion.unwrap();
            let hp = LionParams {
                beta1: l.beta1,
                beta2: l.beta2,
                weight_decay: l.weight_decay,
            };
            lion_step(theta, grad, zeros, lr, &hp).0
        }
        Rule::Muon => muon_step(theta, grad, zeros, lr, &cfg.muon.unwrap().params()).0,
    }
}

/// Each parameter moves as its rule's reference step moves it (within f32 rounding: the fused
/// AdamW pass and the composed ops order a few operations differently), and under IRE the
/// masked coordinates move `1 + κ` times as far and the others not at all differently.
#[test]
fn every_parameter_takes_its_rules_reference_step_and_ire_boosts_the_masked_ones() {
    let device = Default::default();
    for base in BASES {
        let cfg = config(base, Some(4.0));
        let m0 = model(11);
        let mut opt = Optimizer::<B>::new(&cfg, 0).unwrap();
        opt.refresh_mask(&m0, &synthetic_gradients(&m0, 5, 1.0));
        let before: BTreeMap<String, Vec<f32>> = snapshot(&m0).into_iter().collect();
        let grads: BTreeMap<String, Vec<f32>> = {
            let g = synthetic_gradients(&m0, 1, 1e-2);
            let mut out = BTreeMap::new();
            for info in ire_llama::params::named_params(&m0) {
                let t: Tensor<Flex, 1> = match info.shape.len() {
                    1 => g.get::<Flex, 1>(info.id).unwrap(),
                    _ => g.get::<Flex, 2>(info.id).unwrap().flatten(0, 1),
                };
                out.insert(info.name, t.to_data().to_vec::<f32>().unwrap());
            }
            out
        };
        let rules: BTreeMap<String, Rule> = opt.rules(&m0).into_iter().collect();
        let m1 = opt.step(1, 1e-2, 1e-2, m0.clone(), synthetic_gradients(&m0, 1, 1e-2));
        let mut boosted = 0;
        for (info, after) in ire_llama::params::named_values(&m1) {
            let rule = rules[&info.name];
            let dims = match info.shape.as_slice() {
                [n] => [1, *n],
                [a, b] => [*a, *b],
                other => panic!("shape {other:?}"),
            };
            let t = |v: &Vec<f32>| {
                Tensor::<Flex, 2>::from_data(TensorData::new(v.clone(), dims), &device)
            };
            let theta = &before[&info.name];
            let base_step = reference_first_step(rule, &cfg, t(theta), t(&grads[&info.name]), 1e-2);
            let base_step: Vec<f32> = base_step.to_data().to_vec().unwrap();
            let mask: Vec<bool> = opt
                .mask(&info.name)
                .unwrap()
                .clone()
                .into_data()
                .to_vec()
                .unwrap();
            for i in 0..after.len() {
                let delta = base_step[i] - theta[i];
                let want = if mask[i] {
                    theta[i] + 5.0 * delta
                } else {
                    base_step[i]
                };
                let tol = 1e-6 * (1.0 + theta[i].abs()) + 1e-3 * delta.abs();
                assert!(
                    (after[i] - want).abs() <= tol,
                    "{base:?} {} [{i}] ({rule:?}, masked {}): {} vs {want}",
                    info.name,
                    mask[i],
                    after[i]
                );
                boosted += usize::from(mask[i] && delta != 0.0);
            }
        }
        assert!(boosted > 0, "{base:?}: nothing was boosted");
    }
}

#[test]
fn muon_takes_the_decoder_matrices_and_adamw_the_rest() {
    let m = model(1);
    let opt = Optimizer::<B>::new(&OptimConfig::base(BaseName::Muon), 0).unwrap();
    for (name, rule) in opt.rules(&m) {
        let matrix = name.starts_with("model.layers.") && !name.contains("norm");
        assert_eq!(
            rule,
            if matrix { Rule::Muon } else { Rule::Adamw },
            "{name}"
        );
    }
    let sgd = Optimizer::<B>::new(&OptimConfig::base(BaseName::Sgd), 0).unwrap();
    assert!(sgd.rules(&m).iter().all(|(_, r)| *r == Rule::Sgd));
}
