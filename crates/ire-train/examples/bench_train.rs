//! Training-step throughput of a Llama shape on the CPU backend, exactly as the trainer runs a
//! step: the AdmIRE refresh when due (GNB forward/backward + mask, every K = 10 steps), forward
//! and backward, global-norm clipping, the optimizer step. Not a test: `tools/bench-train.sh`
//! runs it next to PyTorch on the same shape and prints the ratios.
//!
//! ```text
//! cargo run --release -p ire-train --example bench_train -- [--preset tiny] [--vocab V]
//!     [--seq 256] [--batch 8] [--steps 20] [--warmup 3] [--optim adamw|admire|both]
//!     [--backend flex|ndarray] [--profile]
//! ```
//!
//! Prints one JSON line: the median and mean step time (the mean includes the refresh steps,
//! so AdmIRE / AdamW compares means), tokens/s, peak RSS, and with `--profile` where the time
//! goes: the phases of the step and, inside forward + backward, each fused op (ms per step).
//! `--optim both` steps an AdamW and an AdmIRE run of the same model alternately (both see the
//! same machine load) and adds `admire_over_adamw`, the ratio of their mean step times.
//! Threads: RAYON_NUM_THREADS. Kernels: IRE_KERNELS (see `ire_llama::ops`).

use std::collections::BTreeMap;
use std::time::Instant;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use ire_llama::ops::profile;
use ire_llama::{InitScheme, IreOps, Llama, LlamaConfig};
use ire_optim::{clip_global_norm, gnb_gradients, gnb_seed, FusedUpdate, OptimConfig, Optimizer};

struct Args {
    preset: String,
    vocab: Option<usize>,
    seq: usize,
    batch: usize,
    steps: usize,
    warmup: usize,
    optim: String,
    backend: String,
    profile: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        preset: "tiny".into(),
        vocab: None,
        seq: 256,
        batch: 8,
        steps: 20,
        warmup: 3,
        optim: "adamw".into(),
        backend: "flex".into(),
        profile: false,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        if flag == "--profile" {
            a.profile = true;
            continue;
        }
        let value = argv.next().ok_or(format!("{flag} needs a value"))?;
        let int = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag} takes an integer, got {v}"))
        };
        match flag.as_str() {
            "--preset" => a.preset = value,
            "--vocab" => a.vocab = Some(int(&value)?),
            "--seq" => a.seq = int(&value)?,
            "--batch" => a.batch = int(&value)?,
            "--steps" => a.steps = int(&value)?,
            "--warmup" => a.warmup = int(&value)?,
            "--optim" => a.optim = value,
            "--backend" => a.backend = value,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// Peak resident memory of this process (Linux), in GB.
fn peak_rss_gb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb * 1024.0 / 1e9)
        .unwrap_or(f64::NAN)
}

/// Wall time of each phase of the step, summed over the timed steps.
#[derive(Default)]
struct Phases(BTreeMap<&'static str, f64>);

impl Phases {
    fn time<R>(&mut self, name: &'static str, f: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let out = f();
        *self.0.entry(name).or_default() += t.elapsed().as_secs_f64();
        out
    }
}

/// One model and optimizer being stepped, with its timings.
struct Run<B: AutodiffBackend> {
    optim_name: &'static str,
    model: Llama<B>,
    optim: Optimizer<B>,
    times: Vec<f64>,
    phases: Phases,
}

impl<B: AutodiffBackend + IreOps> Run<B>
where
    B::InnerBackend: FusedUpdate,
{
    fn new(cfg: &LlamaConfig, admire: bool) -> Self {
        let model =
            Llama::<B>::init(cfg, InitScheme::Torch, 0, &Default::default()).expect("valid shape");
        let optim_cfg = match admire {
            true => OptimConfig {
                interval: 10,
                ..OptimConfig::admire()
            },
            false => OptimConfig::adamw(),
        };
        Self {
            optim_name: if admire { "admire" } else { "adamw" },
            model,
            // Start = 0, so AdmIRE boosts (and refreshes every 10 steps) from the first step.
            optim: Optimizer::<B>::new(&optim_cfg, 0).expect("valid optimizer config"),
            times: Vec::new(),
            phases: Phases::default(),
        }
    }

    /// One training step as the trainer runs it, timed when `timing`.
    fn step(&mut self, it: usize, x: &Tensor<B, 2, Int>, y: &Tensor<B, 2, Int>, timing: bool) {
        let mut p = Phases::default();
        let t = Instant::now();
        let model = &self.model;
        if self.optim.needs_refresh(it) {
            let g = p.time("gnb fwd+bwd", || {
                gnb_gradients(model, x.clone(), gnb_seed(0, it as u64), 0)
            });
            p.time("mask refresh", || self.optim.refresh_mask(model, &g));
        }
        let grads = p.time("fwd+bwd", || {
            let loss = model.loss(x.clone(), y.clone());
            GradientsParams::from_grads(loss.backward(), model)
        });
        let (grads, _norm) = p.time("clip", || clip_global_norm(model, grads, 1.0));
        let model = self.model.clone();
        self.model = p.time("optimizer", || {
            self.optim.step(it, 1e-3, 1e-3, model, grads)
        });
        // The trainer reads the loss every step; read a value too (it syncs lazy backends).
        let _: f32 = self
            .model
            .model
            .norm
            .weight
            .val()
            .sum()
            .into_scalar()
            .elem();
        if timing {
            self.times.push(t.elapsed().as_secs_f64());
            for (k, v) in p.0 {
                *self.phases.0.entry(k).or_default() += v;
            }
        }
    }

    /// Median and mean step time (s).
    fn stats(&self) -> (f64, f64) {
        let mean = self.times.iter().sum::<f64>() / self.times.len() as f64;
        let mut sorted = self.times.clone();
        sorted.sort_by(f64::total_cmp);
        (sorted[sorted.len() / 2], mean)
    }
}

fn run<B: AutodiffBackend + IreOps>(a: &Args) -> serde_json::Value
where
    B::InnerBackend: FusedUpdate,
{
    let mut cfg = LlamaConfig::preset(&a.preset).expect("a known preset");
    if let Some(v) = a.vocab {
        cfg.vocab_size = v;
    }
    let device = Default::default();
    // `both`: AdamW and AdmIRE runs of the same model, stepped alternately so both see the
    // same machine load; their ratio is the whole-run cost of AdmIRE.
    let mut runs: Vec<Run<B>> = match a.optim.as_str() {
        "both" => vec![Run::new(&cfg, false), Run::new(&cfg, true)],
        "admire" => vec![Run::new(&cfg, true)],
        _ => vec![Run::new(&cfg, false)],
    };
    let ids: Vec<i64> = (0..a.batch * (a.seq + 1))
        .map(|i| ((i as u64 * 2_654_435_761) % cfg.vocab_size as u64) as i64)
        .collect();
    let all = Tensor::<B, 1, Int>::from_ints(ids.as_slice(), &device).reshape([a.batch, a.seq + 1]);
    let x = all.clone().slice([0..a.batch, 0..a.seq]);
    let y = all.slice([0..a.batch, 1..a.seq + 1]);
    let profiling = a.profile && runs.len() == 1;
    for it in 0..a.warmup + a.steps {
        let timing = it >= a.warmup;
        if timing && it == a.warmup {
            profile::enable(profiling);
            profile::reset();
        }
        for run in runs.iter_mut() {
            run.step(it, &x, &y, timing);
        }
    }
    profile::enable(false);
    let (median, mean) = runs[0].stats();
    let tokens = (a.batch * a.seq) as f64;
    let mut out = serde_json::json!({
        "impl": format!("ire/{}", a.backend),
        "preset": a.preset,
        "vocab": cfg.vocab_size,
        "optim": runs[0].optim_name,
        "params": cfg.num_params(),
        "seq": a.seq,
        "batch": a.batch,
        "steps": a.steps,
        "step_ms": median * 1e3,
        "step_ms_mean": mean * 1e3,
        "tokens_per_s": tokens / median,
        "tokens_per_s_mean": tokens / mean,
        "peak_rss_gb": peak_rss_gb(),
        "threads": std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into()),
        "kernels": std::env::var("IRE_KERNELS").unwrap_or_else(|_| "all".into()),
    });
    if let Some(second) = runs.get(1) {
        let (_, admire_mean) = second.stats();
        out["admire_step_ms_mean"] = (admire_mean * 1e3).into();
        out["admire_over_adamw"] = (admire_mean / mean).into();
    }
    if profiling {
        let n = runs[0].times.len() as f64;
        let phases = &runs[0].phases;
        let ms = |s: f64| (s / n * 1e3 * 100.0).round() / 100.0;
        let mut split: serde_json::Map<String, serde_json::Value> = phases
            .0
            .iter()
            .map(|(k, v)| (k.to_string(), ms(*v).into()))
            .collect();
        let mut fused = 0.0;
        for (section, secs) in profile::snapshot() {
            if secs > 0.0 {
                split.insert(format!("  {}", section.name()), ms(secs).into());
                fused += secs;
            }
        }
        // The per-op times include the GNB pass's (same ops), so "other" is taken against both.
        let fwd_bwd = phases.0.get("fwd+bwd").copied().unwrap_or(0.0)
            + phases.0.get("gnb fwd+bwd").copied().unwrap_or(0.0);
        split.insert(
            "  other (embedding, residuals, autodiff)".into(),
            ms(fwd_bwd - fused).into(),
        );
        out["ms_per_step"] = split.into();
    }
    out
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_train: {e}");
            std::process::exit(2);
        }
    };
    // As `ire_train::train` does before its first step.
    ire_llama::ops::cpu::tune();
    let line = match a.backend.as_str() {
        "ndarray" => run::<Autodiff<NdArray>>(&a),
        _ => run::<Autodiff<Flex>>(&a),
    };
    println!("{line}");
}
