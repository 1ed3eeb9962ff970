//! Forward+backward throughput of a Llama preset on each CPU backend that builds (burn-flex and
//! burn-ndarray), same shapes and weights. Not a test: prints figures for docs/performance.md.
//!
//! `cargo run --release -p ire-llama --example bench_model -- [preset] [seq] [batch] [steps]`
//! (defaults: tiny 256 8 10). Thread count: RAYON_NUM_THREADS (default: all cores).

use std::time::Instant;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use ire_llama::{InitScheme, Llama, LlamaConfig};

fn bench<B: AutodiffBackend + ire_llama::IreOps>(
    name: &str,
    cfg: &LlamaConfig,
    seq: usize,
    batch: usize,
    steps: usize,
) -> f64 {
    let device = Default::default();
    let model = Llama::<B>::init(cfg, InitScheme::Torch, 0, &device).expect("preset is valid");
    let ids: Vec<i64> = (0..batch * (seq + 1))
        .map(|i| ((i * 7919) % cfg.vocab_size) as i64)
        .collect();
    let all = Tensor::<B, 1, Int>::from_ints(ids.as_slice(), &device).reshape([batch, seq + 1]);
    let x = all.clone().slice([0..batch, 0..seq]);
    let y = all.slice([0..batch, 1..seq + 1]);
    let mut times = Vec::new();
    for i in 0..steps + 2 {
        let t = Instant::now();
        let loss = model.loss(x.clone(), y.clone());
        let grads = loss.backward();
        // Touch one gradient so lazy backends finish the work.
        let g = model
            .model
            .norm
            .weight
            .val()
            .grad(&grads)
            .expect("norm has a gradient");
        let _ = g.into_data();
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).expect("finite times"));
    let median = times[times.len() / 2];
    let tps = (batch * seq) as f64 / median;
    println!(
        "{name:<8} fwd+bwd median {:.1} ms  ->  {tps:.0} tokens/s",
        median * 1e3
    );
    tps
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let preset = args.first().map(String::as_str).unwrap_or("tiny");
    let seq: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let cfg = LlamaConfig::preset(preset).expect("known preset");
    println!(
        "preset {preset}: {} params, seq {seq} x batch {batch}, threads {}",
        cfg.num_params(),
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())
    );
    let flex = bench::<Autodiff<Flex>>("flex", &cfg, seq, batch, steps);
    let nd = bench::<Autodiff<NdArray>>("ndarray", &cfg, seq, batch, steps);
    println!("flex / ndarray = {:.2}x", flex / nd);
}
