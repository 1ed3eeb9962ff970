//! AdamW against `torch.optim.AdamW`: replays the gradient sequences of
//! `tests/data/adamw_torch.json` (written by `tools/make_adamw_vectors.py`) and compares the
//! parameters after every step.

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use ire_optim::{AdamWConfig, OptimConfig, Optimizer};
use serde::Deserialize;

type B = Autodiff<Flex>;
type Inner = Flex;

#[derive(Deserialize)]
struct Vectors {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    betas: [f64; 2],
    eps: f64,
    weight_decay: f64,
    lrs: Vec<f64>,
    param0: Vec<f32>,
    shape: Vec<usize>,
    grads: Vec<Vec<f32>>,
    params: Vec<Vec<f32>>,
}

#[derive(Module, Debug)]
struct One<B: Backend> {
    weight: Param<Tensor<B, 2>>,
}

fn load_cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/adamw_torch.json");
    let text = std::fs::read_to_string(path)
        .expect("tests/data/adamw_torch.json (tools/make_adamw_vectors.py)");
    let v: Vectors = serde_json::from_str(&text).expect("valid vectors JSON");
    v.cases
}

/// Relative tolerance (f32 rounding of a few ulps per step) and the absolute floor.
const REL: f32 = 1e-6;
const ABS: f32 = 1e-9;

#[test]
fn adamw_matches_torch_vectors() {
    let cases = load_cases();
    assert!(
        cases.len() >= 3,
        "expected several cases, found {}",
        cases.len()
    );
    let device = Default::default();
    for case in cases {
        // Rank-1 cases are run as [1, n]: the rank does not enter AdamW without decay groups.
        let dims: [usize; 2] = match case.shape.as_slice() {
            [n] => [1, *n],
            [a, b] => [*a, *b],
            other => panic!("{}: unsupported shape {other:?}", case.name),
        };
        let cfg = OptimConfig {
            adamw: Some(AdamWConfig {
                beta1: case.betas[0],
                beta2: case.betas[1],
                eps: case.eps,
                weight_decay: case.weight_decay,
            }),
            ..OptimConfig::adamw()
        };
        let mut optim = Optimizer::<B>::new(&cfg, 0).unwrap();
        let mut model = One::<B> {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(case.param0.clone(), dims),
                &device,
            )),
        };
        let lr_max = case.lrs.iter().cloned().fold(0.0, f64::max);
        let mut worst = 0.0f32;
        for (step, ((lr, grad), expected)) in case
            .lrs
            .iter()
            .zip(&case.grads)
            .zip(&case.params)
            .enumerate()
        {
            let mut grads = GradientsParams::new();
            let g = Tensor::<Inner, 2>::from_data(TensorData::new(grad.clone(), dims), &device);
            grads.register(model.weight.id, g);
            model = optim.step(step, *lr, lr_max, model, grads);
            let got: Vec<f32> = model.weight.val().into_data().to_vec().unwrap();
            for (i, (g, e)) in got.iter().zip(expected).enumerate() {
                let err = (g - e).abs();
                worst = worst.max(err / (e.abs() + ABS));
                assert!(
                    err <= REL * e.abs() + ABS,
                    "{} step {} element {i}: got {g}, torch {e} (diff {err:e})",
                    case.name,
                    step + 1
                );
            }
        }
        assert_eq!(
            optim.param_state("weight").unwrap().step,
            case.lrs.len() as u64
        );
        eprintln!("{}: worst relative difference {worst:e}", case.name);
    }
}
