//! Training-step throughput (forward + backward + global clipping + AdamW or AdmIRE step) of a
//! Llama preset on the CPU backend, as the trainer runs it. Not a test: `tools/bench-train.sh`
//! runs it next to PyTorch on the same shape and prints the ratio.
//!
//! `cargo run --release -p ire-train --example bench_train -- [--preset tiny] [--seq 256]
//!  [--batch 8] [--steps 10] [--optim adamw|admire] [--backend flex|ndarray]`
//! Prints one JSON line. Threads: RAYON_NUM_THREADS.

use std::time::Instant;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use ire_llama::{InitScheme, Llama, LlamaConfig};
use ire_optim::{clip_global_norm, gnb_gradients, gnb_seed, OptimConfig, Optimizer};

struct Args {
    preset: String,
    seq: usize,
    batch: usize,
    steps: usize,
    optim: String,
    backend: String,
}

fn parse() -> Args {
    let mut a = Args {
        preset: "tiny".into(),
        seq: 256,
        batch: 8,
        steps: 10,
        optim: "adamw".into(),
        backend: "flex".into(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let v = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--preset" => a.preset = v,
            "--seq" => a.seq = v.parse().expect("--seq takes an integer"),
            "--batch" => a.batch = v.parse().expect("--batch takes an integer"),
            "--steps" => a.steps = v.parse().expect("--steps takes an integer"),
            "--optim" => a.optim = v,
            "--backend" => a.backend = v,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Peak resident memory of this process (Linux), in GiB.
fn peak_rss_gib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(f64::NAN)
}

fn run<B: AutodiffBackend + ire_llama::IreOps>(a: &Args)
where
    B::InnerBackend: ire_optim::FusedUpdate,
{
    let cfg = LlamaConfig::preset(&a.preset).expect("known preset");
    let device = Default::default();
    let mut model = Llama::<B>::init(&cfg, InitScheme::Torch, 0, &device).expect("valid preset");
    let optim_cfg = match a.optim.as_str() {
        "admire" => OptimConfig {
            interval: 10,
            ..OptimConfig::admire()
        },
        _ => OptimConfig::adamw(),
    };
    // Start = 0, so AdmIRE boosts (and refreshes every 10 steps) from the first step.
    let mut optim = Optimizer::<B>::new(&optim_cfg, 0).expect("valid optimizer config");
    let ids: Vec<i64> = (0..a.batch * (a.seq + 1))
        .map(|i| ((i as u64 * 2_654_435_761) % cfg.vocab_size as u64) as i64)
        .collect();
    let all = Tensor::<B, 1, Int>::from_ints(ids.as_slice(), &device).reshape([a.batch, a.seq + 1]);
    let x = all.clone().slice([0..a.batch, 0..a.seq]);
    let y = all.slice([0..a.batch, 1..a.seq + 1]);
    let mut times = Vec::new();
    for it in 0..a.steps + 3 {
        let t = Instant::now();
        if optim.needs_refresh(it) {
            let g = gnb_gradients(&model, x.clone(), gnb_seed(0, it as u64), 0);
            optim.refresh_mask(&model, &g);
        }
        let loss = model.loss(x.clone(), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let (grads, _norm) = clip_global_norm(&model, grads, 1.0);
        model = optim.step(it, 1e-3, 1e-3, model, grads);
        // The trainer reads the loss every step; do the same (it also syncs lazy backends).
        let _: f32 = model.model.norm.weight.val().sum().into_scalar().elem();
        if it >= 3 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(|p, q| p.partial_cmp(q).expect("finite"));
    let median = times[times.len() / 2];
    let tokens = (a.batch * a.seq) as f64;
    println!(
        "{}",
        serde_json::json!({
            "impl": format!("ire/{}", a.backend),
            "preset": a.preset,
            "optim": a.optim,
            "params": cfg.num_params(),
            "seq": a.seq,
            "batch": a.batch,
            "step_ms": median * 1e3,
            "tokens_per_s": tokens / median,
            "peak_rss_gb": peak_rss_gib() * 1.073741824,
            "threads": std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into()),
        })
    );
}

fn main() {
    let a = parse();
    match a.backend.as_str() {
        "ndarray" => run::<Autodiff<NdArray>>(&a),
        _ => run::<Autodiff<Flex>>(&a),
    }
}
