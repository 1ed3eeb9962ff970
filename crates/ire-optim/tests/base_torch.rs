//! SGD, Lion and Muon against PyTorch: replays the gradient sequences of
//! `tests/data/base_torch.json` (written by `tools/make_base_vectors.py` with torch 2.15 and
//! lion-pytorch 0.2.5) through `sgd_step`, `lion_step` and `muon_step` on burn-flex and compares
//! the parameters after every step.
//!
//! SGD and Lion: f32 tolerance. Muon: torch runs its Newton–Schulz iteration in bfloat16, so
//! against torch the parameters must agree within 2 % of how far the run moved them (measured:
//! ≤ 0.8 %), and against the same formula run in float32 by the script (`muon_f32` cases)
//! within an f32 tolerance.

use burn::backend::Flex;
use burn::prelude::*;
use ire_optim::lion::{lion_step, LionParams};
use ire_optim::muon::{muon_step, AdjustLr, MuonParams};
use ire_optim::sgd::{sgd_step, SgdParams};
use serde::Deserialize;

type B = Flex;

#[derive(Deserialize)]
struct Vectors {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    optimizer: String,
    name: String,
    hp: serde_json::Value,
    lrs: Vec<f64>,
    shape: [usize; 2],
    param0: Vec<f32>,
    grads: Vec<Vec<f32>>,
    params: Vec<Vec<f32>>,
}

fn cases(optimizer: &str) -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/base_torch.json");
    let text = std::fs::read_to_string(path).expect("tests/data/base_torch.json");
    let all: Vectors = serde_json::from_str(&text).expect("valid vectors JSON");
    let chosen: Vec<Case> = all
        .cases
        .into_iter()
        .filter(|c| c.optimizer == optimizer)
        .collect();
    assert!(chosen.len() >= 2, "expected several {optimizer} cases");
    chosen
}

fn tensor(values: &[f32], shape: [usize; 2]) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), &Default::default())
}

fn values(t: &Tensor<B, 2>) -> Vec<f32> {
    t.to_data().to_vec::<f32>().unwrap()
}

fn f(hp: &serde_json::Value, key: &str) -> f64 {
    hp[key].as_f64().unwrap_or_else(|| panic!("hp.{key}"))
}

/// Replays `case` with `step(θ, g, lr) → θ'` and returns, per step, the worst absolute
/// difference to torch's parameters and the worst relative one (against max(|torch|, 1e-3)).
fn replay(
    case: &Case,
    mut step: impl FnMut(Tensor<B, 2>, Tensor<B, 2>, f64) -> Tensor<B, 2>,
) -> (f32, f32) {
    let mut theta = tensor(&case.param0, case.shape);
    let (mut worst_abs, mut worst_rel) = (0f32, 0f32);
    for ((g, lr), want) in case.grads.iter().zip(&case.lrs).zip(&case.params) {
        theta = step(theta, tensor(g, case.shape), *lr);
        for (got, want) in values(&theta).iter().zip(want) {
            let diff = (got - want).abs();
            worst_abs = worst_abs.max(diff);
            worst_rel = worst_rel.max(diff / want.abs().max(1e-3));
        }
    }
    (worst_abs, worst_rel)
}

#[test]
fn sgd_matches_torch_optim_sgd() {
    for case in cases("sgd") {
        let hp = SgdParams {
            momentum: f(&case.hp, "momentum"),
            dampening: f(&case.hp, "dampening"),
            weight_decay: f(&case.hp, "weight_decay"),
            nesterov: case.hp["nesterov"].as_bool().unwrap(),
        };
        let mut buffer = None;
        let (_, rel) = replay(&case, |theta, g, lr| {
            let (theta, b) = sgd_step(theta, g, buffer.take(), lr, &hp);
            buffer = b;
            theta
        });
        assert!(
            rel < 2e-6,
            "sgd {}: worst relative difference {rel}",
            case.name
        );
    }
}

#[test]
fn lion_matches_lion_pytorch() {
    for case in cases("lion") {
        let betas = case.hp["betas"].as_array().unwrap();
        let hp = LionParams {
            beta1: betas[0].as_f64().unwrap(),
            beta2: betas[1].as_f64().unwrap(),
            weight_decay: f(&case.hp, "weight_decay"),
        };
        let mut m = Tensor::<B, 2>::zeros(case.shape, &Default::default());
        let (_, rel) = replay(&case, |theta, g, lr| {
            let (theta, next) = lion_step(theta, g, m.clone(), lr, &hp);
            m = next;
            theta
        });
        assert!(
            rel < 2e-6,
            "lion {}: worst relative difference {rel}",
            case.name
        );
    }
}

fn muon_params(hp: &serde_json::Value) -> MuonParams {
    let c = hp["ns_coefficients"].as_array().unwrap();
    MuonParams {
        momentum: f(hp, "momentum"),
        nesterov: hp["nesterov"].as_bool().unwrap(),
        weight_decay: f(hp, "weight_decay"),
        ns_coefficients: [0, 1, 2].map(|i| c[i].as_f64().unwrap()),
        eps: f(hp, "eps"),
        ns_steps: hp["ns_steps"].as_u64().unwrap() as usize,
        adjust_lr: match hp["adjust_lr_fn"].as_str() {
            Some("match_rms_adamw") => AdjustLr::MatchRmsAdamw,
            _ => AdjustLr::Original,
        },
    }
}

fn replay_muon(case: &Case) -> (f32, f32) {
    let hp = muon_params(&case.hp);
    let mut buffer = Tensor::<B, 2>::zeros(case.shape, &Default::default());
    replay(case, |theta, g, lr| {
        let (theta, b) = muon_step(theta, g, buffer.clone(), lr, &hp);
        buffer = b;
        theta
    })
}

#[test]
fn muon_matches_its_formula_in_f32() {
    for case in cases("muon_f32") {
        let (abs, _) = replay_muon(&case);
        assert!(
            abs < 2e-6,
            "muon_f32 {}: worst absolute difference {abs}",
            case.name
        );
    }
}

#[test]
fn muon_matches_torch_optim_muon_within_bf16() {
    for case in cases("muon") {
        let moved = case.param0.iter().zip(case.params.last().unwrap());
        let moved = moved.map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let (abs, _) = replay_muon(&case);
        assert!(
            abs < 0.02 * moved,
            "muon {}: worst difference {abs} against a total move of {moved}",
            case.name
        );
    }
}
