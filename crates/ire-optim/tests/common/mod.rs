//! Shared helpers for the integration tests: a small Llama on `Autodiff<Flex>`, seeded token
//! batches, real gradients and parameter snapshots.
#![allow(dead_code)]

use burn::backend::{Autodiff, Flex};
use burn::optim::GradientsParams;
use burn::prelude::*;
use ire_llama::params::named_values;
use ire_core::SplitMix64;
use ire_llama::{InitScheme, IreOps, Llama, LlamaConfig};

/// The test backend.
pub type B = Autodiff<Flex>;

/// A Llama small enough for many steps in a test.
pub fn small_config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 61,
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 4,
        max_position_embeddings: 32,
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
        tie_word_embeddings: false,
        initializer_range: 0.02,
    }
}

pub fn model(seed: u64) -> Llama<B> {
    model_of(&small_config(), seed)
}

/// A Llama of `config` on any backend, initialised from `seed` as HF's torch init does.
pub fn model_of<B: IreOps>(config: &LlamaConfig, seed: u64) -> Llama<B> {
    Llama::init(config, InitScheme::Torch, seed, &Default::default()).expect("valid test config")
}

/// Random tokens `[batch, seq]` below `vocab`.
pub fn tokens(seed: u64, batch: usize, seq: usize, vocab: usize) -> Tensor<B, 2, Int> {
    let mut rng = SplitMix64::new(seed);
    let ids: Vec<i64> = (0..batch * seq)
        .map(|_| (rng.next_u64() % vocab as u64) as i64)
        .collect();
    Tensor::<B, 1, Int>::from_ints(ids.as_slice(), &Default::default()).reshape([batch, seq])
}

/// Next-token gradients of `model` on a seeded batch.
pub fn loss_grads(model: &Llama<B>, seed: u64) -> GradientsParams {
    let t = tokens(seed, 2, 9, model.config.vocab_size);
    let inputs = t.clone().slice([0..2, 0..8]);
    let targets = t.slice([0..2, 1..9]);
    let loss = model.loss(inputs, targets);
    GradientsParams::from_grads(loss.backward(), model)
}

/// All parameters by name, as f32 host values.
pub fn snapshot(model: &Llama<B>) -> Vec<(String, Vec<f32>)> {
    named_values(model)
        .into_iter()
        .map(|(i, v)| (i.name, v))
        .collect()
}

/// Whether two snapshots are equal bit for bit.
pub fn bit_equal(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((na, va), (nb, vb))| {
            na == nb
                && va.len() == vb.len()
                && va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits())
        })
}

/// Largest |a − b| / (|b| + floor) over two snapshots.
pub fn max_rel_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)], floor: f32) -> f32 {
    a.iter()
        .zip(b)
        .flat_map(|((_, va), (_, vb))| {
            va.iter()
                .zip(vb)
                .map(|(x, y)| (x - y).abs() / (y.abs() + floor))
        })
        .fold(0.0, f32::max)
}

/// Largest |a − b| over two snapshots.
pub fn max_abs_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    a.iter()
        .zip(b)
        .flat_map(|((_, va), (_, vb))| va.iter().zip(vb).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f32::max)
}

/// Squared normals with a share of exact zeros and values rounded to few levels (ties).
pub fn curvature(seed: u64, n: usize, levels: Option<f64>) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let g = rng.normal();
            if rng.unit() < 0.1 {
                return 0.0;
            }
            let h = g * g * 1e-6;
            match levels {
                Some(l) => ((h * l).round() / l) as f32,
                None => h as f32,
            }
        })
        .collect()
}
