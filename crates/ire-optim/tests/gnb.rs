//! The GNB estimator: on a linear softmax model the Monte-Carlo mean of N·ĝ² converges to the
//! exact diagonal Gauss-Newton matrix; labels follow the softmax; seeds make it reproducible.

mod common;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, Param};
use burn::prelude::*;
use ire_core::SplitMix64;
use ire_optim::{gnb_gradients, gnb_seed, sample_labels, LogitsModel};

type B = Autodiff<Flex>;

/// logits = x_token · W, with fixed (non-trainable) input features per token.
#[derive(Module, Debug)]
struct LinearSoftmax<B: Backend> {
    /// `[d, classes]`.
    w: Param<Tensor<B, 2>>,
    /// `[inputs, d]` row-major, on the host.
    #[module(skip)]
    features: Vec<f32>,
}

const INPUTS: usize = 4;
const D: usize = 3;
const CLASSES: usize = 5;

impl<B: Backend> LogitsModel<B> for LinearSoftmax<B> {
    fn logits(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, s] = tokens.dims();
        let device = tokens.device();
        let features =
            Tensor::<B, 2>::from_data(TensorData::new(self.features.clone(), [INPUTS, D]), &device);
        let x = features.select(0, tokens.reshape([b * s]));
        x.matmul(self.w.val()).reshape([b, s, CLASSES])
    }
}

fn linear_model() -> LinearSoftmax<B> {
    let mut rng = SplitMix64::new(42);
    let w: Vec<f32> = (0..D * CLASSES).map(|_| rng.normal() as f32).collect();
    let features: Vec<f32> = (0..INPUTS * D).map(|_| rng.normal() as f32).collect();
    LinearSoftmax {
        w: Param::from_tensor(Tensor::from_data(
            TensorData::new(w, [D, CLASSES]),
            &Default::default(),
        )),
        features,
    }
}

#[test]
fn monte_carlo_mean_of_n_g_squared_is_the_gauss_newton_diagonal() {
    let model = linear_model();
    let token_ids: [[i64; 3]; 2] = [[0, 1, 2], [3, 1, 0]];
    let n = 6.0;
    let tokens = Tensor::<B, 2, Int>::from_ints(token_ids, &Default::default());

    // Exact: G_jc = (1/N) Σ_n x_nj² p_nc (1 − p_nc).
    let w: Vec<f64> = model
        .w
        .val()
        .into_data()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&x| x as f64)
        .collect();
    let mut exact = vec![0.0f64; D * CLASSES];
    for &t in token_ids.iter().flatten() {
        let x: Vec<f64> = model.features[t as usize * D..(t as usize + 1) * D]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let z: Vec<f64> = (0..CLASSES)
            .map(|c| (0..D).map(|j| x[j] * w[j * CLASSES + c]).sum())
            .collect();
        let zmax = z.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - zmax).exp()).collect();
        let sum: f64 = e.iter().sum();
        for j in 0..D {
            for c in 0..CLASSES {
                let p = e[c] / sum;
                exact[j * CLASSES + c] += x[j] * x[j] * p * (1.0 - p) / n;
            }
        }
    }

    let samples = 4000;
    let mut mean = [0.0f64; D * CLASSES];
    for s in 0..samples {
        let g = gnb_gradients(&model, tokens.clone(), gnb_seed(9, s), 0);
        let g: Vec<f32> = g
            .get::<Flex, 2>(model.w.id)
            .unwrap()
            .into_data()
            .to_vec()
            .unwrap();
        for (m, x) in mean.iter_mut().zip(&g) {
            *m += n * (*x as f64) * (*x as f64) / samples as f64;
        }
    }
    for (i, (m, e)) in mean.iter().zip(&exact).enumerate() {
        let rel = (m - e).abs() / e;
        assert!(
            rel < 0.12,
            "entry {i}: Monte-Carlo {m:.5} vs exact {e:.5} ({:.1}%)",
            rel * 100.0
        );
    }
    let (sm, se): (f64, f64) = (mean.iter().sum(), exact.iter().sum());
    assert!((sm - se).abs() / se < 0.03, "total {sm} vs {se}");
}

#[test]
fn sampled_labels_follow_the_softmax() {
    let probs = [0.1f32, 0.2, 0.3, 0.4];
    let rows = 20_000;
    let logits: Vec<f32> = (0..rows)
        .flat_map(|_| probs.iter().map(|p| p.ln()))
        .collect();
    let logits =
        Tensor::<Flex, 3>::from_data(TensorData::new(logits, [1, rows, 4]), &Default::default());
    let labels: Vec<i64> = sample_labels(logits, 5, 0)
        .into_data()
        .convert::<i64>()
        .to_vec()
        .unwrap();
    for (c, p) in probs.iter().enumerate() {
        let freq = labels.iter().filter(|&&l| l == c as i64).count() as f32 / rows as f32;
        assert!(
            (freq - p).abs() < 0.02,
            "class {c}: frequency {freq} vs probability {p}"
        );
    }
}

#[test]
fn same_seed_same_estimate_other_seed_other_estimate() {
    let model = common::model(1);
    let t = common::tokens(3, 2, 8, model.config.vocab_size);
    let flat = |g: burn::optim::GradientsParams| -> Vec<u32> {
        let id = model.model.layers[0].mlp.up_proj.weight.id;
        g.get::<Flex, 2>(id)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    };
    let seed = gnb_seed(1, 501);
    let a = flat(gnb_gradients(&model, t.clone(), seed, 0));
    let b = flat(gnb_gradients(&model, t.clone(), seed, 0));
    let c = flat(gnb_gradients(&model, t, gnb_seed(1, 511), 0));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

/// A row's labels depend only on its global sample index: sampling rows 1.. of a batch that
/// starts at sample 100 equals sampling them as a batch that starts at sample 101 (what a
/// second data-parallel rank does).
#[test]
fn labels_are_keyed_by_global_sample_not_by_batch_position() {
    let (rows, seq, vocab) = (4usize, 6usize, 11usize);
    let logits: Vec<f32> = (0..rows * seq * vocab)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 4.0)
        .collect();
    let dev = Default::default();
    let all = Tensor::<Flex, 3>::from_data(TensorData::new(logits, [rows, seq, vocab]), &dev);
    let seed = gnb_seed(7, 42);
    let labels = |t: Tensor<Flex, 3>, first: u64| -> Vec<i64> {
        sample_labels(t, seed, first)
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap()
    };
    let whole = labels(all.clone(), 100);
    let tail = labels(all.clone().slice([1..rows, 0..seq, 0..vocab]), 101);
    assert_eq!(&whole[seq..], tail.as_slice());
    assert_ne!(whole, labels(all, 200), "other samples draw other labels");
}
