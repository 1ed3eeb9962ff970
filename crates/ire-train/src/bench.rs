//! Device benchmarks and checks that need no dataset: the training step's throughput on a Llama
//! shape (`ire bench step`, the `bench_train` example) and the exact AdmIRE threshold τ on the
//! device against a host sort (`ire bench tau`). Generic over the backend, so the CUDA build
//! measures the GPU with the same code the CPU build measures the CPU with;
//! `tools/gpu-check.sh` runs both next to PyTorch.
//!
//! The step is the trainer's own pieces ([`crate::step`]): the AdmIRE refresh when due
//! ([`estimate_curvature`] + mask), [`forward_backward`], [`apply_update`] (clip, guard,
//! optimizer step) with the clip, κ, γ, K and every other setting taken from the
//! [`StepBench::optim`] config it is given, then one scalar read (which syncs lazy backends).
//! `Both` steps an AdamW and an AdmIRE model alternately, so both see the same machine load;
//! their mean-step-time ratio is the whole-run cost of AdmIRE. The steps show their progress
//! (`ire_core::Progress`: a bar on a terminal, else a log line every 10 s) on stderr; the JSON
//! goes to stdout.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::prelude::*;
use ire_llama::ops::profile;
use ire_llama::{InitScheme, Llama, LlamaConfig, Precision};
use ire_optim::select_device::kth_smallest;
use ire_optim::{gnb_seed, BaseName, IreConfig, OptimConfig, Optimizer, TrainBackend};
use serde_json::{json, Value};

use crate::guard::Guard;
use crate::step::{apply_update, estimate_curvature, forward_backward, Tokens, UpdateSettings};
use crate::{GuardSection, TrainError};

/// The optimizers `ire bench step --optim LIST` understands: a base alone or with IRE
/// (`admire` is `adamw+ire`), `both` (AdamW and AdmIRE) and `all` (every base, alone and
/// with IRE).
pub const BENCH_OPTIMS: &str =
    "adamw, admire, sgd, sgd+ire, lion, lion+ire, muon, muon+ire, both or all (comma-separated)";

/// The optimizers of a `--optim` list ([`BENCH_OPTIMS`]), by label, each from `template`'s
/// settings (its base's tables at their defaults for another base; IRE from `template`, or
/// the defaults with `start = 0`). `None` names the label it does not know.
pub fn bench_optims(list: &str, template: &OptimConfig) -> Result<Vec<OptimConfig>, String> {
    let mut out = Vec::new();
    for label in list.split(',').map(str::trim) {
        let labels: &[&str] = match label {
            "both" => &["adamw", "admire"],
            "all" => &[
                "adamw", "admire", "sgd", "sgd+ire", "lion", "lion+ire", "muon", "muon+ire",
            ],
            one => &[one][..],
        };
        for &one in labels {
            out.push(bench_optim(one, template).ok_or_else(|| one.to_string())?);
        }
    }
    Ok(out)
}

fn bench_optim(label: &str, template: &OptimConfig) -> Option<OptimConfig> {
    let (base, ire) = match label {
        "admire" => ("adamw", true),
        other => match other.strip_suffix("+ire") {
            Some(base) => (base, true),
            None => (other, false),
        },
    };
    let base = [
        BaseName::Adamw,
        BaseName::Sgd,
        BaseName::Lion,
        BaseName::Muon,
    ]
    .into_iter()
    .find(|b| b.as_str() == base)?;
    let mut cfg = if base == template.base {
        template.clone()
    } else {
        OptimConfig {
            clip_norm: template.clip_norm,
            no_decay_groups: template.no_decay_groups,
            adamw: template.adamw,
            ..OptimConfig::base(base)
        }
    };
    cfg.ire = ire.then(|| {
        template
            .ire
            .clone()
            .unwrap_or_else(|| StepBench::default_optim().ire.unwrap_or_default())
    });
    cfg.sgd = cfg.sgd.filter(|_| base == BaseName::Sgd);
    cfg.lion = cfg.lion.filter(|_| base == BaseName::Lion);
    cfg.muon = cfg.muon.filter(|_| base == BaseName::Muon);
    cfg.adamw = cfg
        .adamw
        .filter(|_| matches!(base, BaseName::Adamw | BaseName::Muon));
    cfg.fill_tables();
    Some(cfg)
}

/// What [`step_bench`] measures.
#[derive(Debug, Clone)]
pub struct StepBench {
    /// The model's shape.
    pub model: LlamaConfig,
    /// Sequence length.
    pub seq: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Timed steps (after `warmup` untimed ones).
    pub steps: usize,
    /// Untimed steps first (autotune, allocator warm-up).
    pub warmup: usize,
    /// The optimizers to step, alternately ([`bench_optims`]); the first is the reference of
    /// the `*_over_first` ratios.
    pub optims: Vec<OptimConfig>,
    /// The learning rate of every step (η_t = η_max).
    pub lr: f64,
    /// Dtype of the matmuls.
    pub precision: Precision,
    /// Per-phase and per-fused-op times (one optimizer only).
    pub profile: bool,
    /// Peak FLOP/s of the device, for MFU.
    pub peak_flops: f64,
}

impl StepBench {
    /// The optimizer settings `ire bench step` uses: AdmIRE's defaults (κ = 4, γ = 0.6,
    /// K = 10, clip 1.0), boosting from the first step (`start = 0`).
    pub fn default_optim() -> OptimConfig {
        OptimConfig::adamw().with_ire(IreConfig {
            start: Some(0),
            ..IreConfig::default()
        })
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), in GB.
pub fn peak_rss_gb() -> f64 {
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
struct Run<B: TrainBackend> {
    optim_name: String,
    model: Llama<B>,
    optim: Optimizer<B>,
    settings: UpdateSettings,
    times: Vec<f64>,
    phases: Phases,
}

impl<B: TrainBackend> Run<B> {
    fn new(s: &StepBench, optim: &OptimConfig, device: &B::Device) -> Result<Self, TrainError> {
        let model =
            Llama::<B>::init(&s.model, InitScheme::Torch, 0, device)?.with_precision(s.precision);
        Ok(Self {
            optim_name: optim.label(),
            model,
            optim: Optimizer::<B>::new(optim, 0)?,
            settings: UpdateSettings {
                iteration: 0,
                lr: s.lr,
                lr_max: s.lr,
                clip_norm: optim.clip_norm,
            },
            times: Vec::new(),
            phases: Phases::default(),
        })
    }

    /// One training step as the trainer runs it, timed when `timing`. A non-finite loss or
    /// gradient norm stops the benchmark with the guard's error.
    fn step(&mut self, it: usize, batch: &Tokens<B>, timing: bool) -> Result<(), TrainError> {
        let mut p = Phases::default();
        let t = Instant::now();
        let model = &self.model;
        if self.optim.needs_refresh(it) {
            let g = p.time("gnb fwd+bwd", || {
                estimate_curvature(model, 1, gnb_seed(0, it as u64), |_| {
                    Ok((batch.0.clone(), 0))
                })
            });
            let g = g?;
            p.time("mask refresh", || self.optim.refresh_mask(model, &g));
        }
        let grads = p.time("fwd+bwd", || {
            forward_backward(model, 1, || Ok(batch.clone()))
        });
        let grads = grads?;
        let (guard_cfg, mut skipped) = (GuardSection::default(), 0);
        let mut guard = Guard {
            cfg: &guard_cfg,
            skipped: &mut skipped,
            last_good: None,
        };
        let settings = UpdateSettings {
            iteration: it,
            ..self.settings
        };
        let model = self.model.clone();
        let updated = p.time("update (clip, guard, optimizer)", || {
            apply_update(&mut self.optim, model, grads, &settings, &mut guard)
        });
        self.model = updated?.0;
        // The trainer reads the loss every step; read a value too (it syncs lazy backends).
        let _: f32 = p.time("sync", || {
            let w = self.model.model.norm.weight.val();
            w.sum().into_scalar().elem()
        });
        if timing {
            self.times.push(t.elapsed().as_secs_f64());
            for (k, v) in p.0 {
                *self.phases.0.entry(k).or_default() += v;
            }
        }
        Ok(())
    }

    /// Median and mean step time (s).
    fn stats(&self) -> (f64, f64) {
        let mean = self.times.iter().sum::<f64>() / self.times.len().max(1) as f64;
        let mut sorted = self.times.clone();
        sorted.sort_by(f64::total_cmp);
        (
            sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN),
            mean,
        )
    }
}

/// Fixed pseudo-random tokens `[batch, seq + 1]`: inputs and targets shifted by one.
fn tokens<B: Backend>(s: &StepBench, device: &B::Device) -> Tokens<B> {
    let (b, n) = (s.batch, s.seq);
    let ids: Vec<i64> = (0..b * (n + 1))
        .map(|i| ((i as u64 * 2_654_435_761) % s.model.vocab_size as u64) as i64)
        .collect();
    let all = Tensor::<B, 1, Int>::from_ints(ids.as_slice(), device).reshape([b, n + 1]);
    (all.clone().slice([0..b, 0..n]), all.slice([0..b, 1..n + 1]))
}

/// Steps the model `warmup + steps` times and reports one JSON object: median and mean step
/// time, tokens/s, MFU, peak RSS of the first optimizer; with AdamW and AdmIRE the AdmIRE/AdamW
/// ratio of mean step times, with several optimizers each one's times (`runs`); with `profile`, milliseconds per step by phase and by fused op. An invalid shape
/// or optimizer setting, or a non-finite step, is an error.
pub fn step_bench<B: TrainBackend>(s: &StepBench, device: &B::Device) -> Result<Value, TrainError> {
    let mut runs = s
        .optims
        .iter()
        .map(|o| Run::new(s, o, device))
        .collect::<Result<Vec<Run<B>>, _>>()?;
    if runs.is_empty() {
        return Err(TrainError::config("--optim", "at least one optimizer"));
    }
    let batch = tokens::<B>(s, device);
    let profiling = s.profile && runs.len() == 1;
    let names: Vec<String> = runs.iter().map(|r| r.optim_name.to_string()).collect();
    let total = (s.warmup + s.steps) as u64;
    let mut progress = ire_core::Progress::command("bench step: step", total);
    for it in 0..s.warmup + s.steps {
        let timing = it >= s.warmup;
        if timing && it == s.warmup {
            profile::enable(profiling);
            profile::reset();
        }
        for run in runs.iter_mut() {
            run.step(it, &batch, timing)?;
        }
        progress.update(it as u64 + 1, || {
            let phase = if timing { "timed" } else { "warm-up" };
            format!("{} ({phase})", names.join(" + "))
        });
    }
    progress.finish();
    profile::enable(false);
    let (median, mean) = runs[0].stats();
    let tokens = (s.batch * s.seq) as f64;
    let flops = s.model.flops_per_token(s.seq);
    let mut out = json!({
        "optim": runs[0].optim_name,
        "params": s.model.num_params(),
        "hidden": s.model.hidden_size,
        "layers": s.model.num_hidden_layers,
        "vocab": s.model.vocab_size,
        "seq": s.seq,
        "batch": s.batch,
        "steps": s.steps,
        "precision": s.precision.name(),
        "step_ms": median * 1e3,
        "step_ms_mean": mean * 1e3,
        "tokens_per_s": tokens / median,
        "tokens_per_s_mean": tokens / mean,
        "mfu": flops * tokens / median / s.peak_flops,
        "peak_rss_gb": peak_rss_gb(),
        "threads": std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into()),
        "kernels": std::env::var("IRE_KERNELS").unwrap_or_else(|_| "all".into()),
    });
    if names == ["adamw", "admire"] {
        let (_, admire_mean) = runs[1].stats();
        out["admire_step_ms_mean"] = (admire_mean * 1e3).into();
        out["admire_over_adamw"] = (admire_mean / mean).into();
    }
    if runs.len() > 1 {
        out["runs"] = runs.iter().map(|r| run_summary(r, mean)).collect();
    }
    if profiling {
        out["ms_per_step"] = profile_split(&runs[0]).into();
    }
    Ok(out)
}

/// One optimizer's step times against the first's mean (`first_mean`, s), and its optimizer's
/// share of the step.
fn run_summary<B: TrainBackend>(run: &Run<B>, first_mean: f64) -> Value {
    let (median, mean) = run.stats();
    let n = run.times.len().max(1) as f64;
    let phase = |k| run.phases.0.get(k).copied().unwrap_or(0.0) / n * 1e3;
    json!({
        "optim": run.optim_name,
        "step_ms": median * 1e3,
        "step_ms_mean": mean * 1e3,
        "over_first": mean / first_mean,
        "update_ms": phase("update (clip, guard, optimizer)"),
        "refresh_ms": phase("mask refresh") + phase("gnb fwd+bwd"),
    })
}

/// Milliseconds per step by phase, and inside forward + backward by fused op.
fn profile_split<B: TrainBackend>(run: &Run<B>) -> serde_json::Map<String, Value> {
    let n = run.times.len().max(1) as f64;
    let ms = |s: f64| (s / n * 1e3 * 100.0).round() / 100.0;
    let mut split: serde_json::Map<String, Value> = run
        .phases
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
    let phase = |k| run.phases.0.get(k).copied().unwrap_or(0.0);
    let fwd_bwd = phase("fwd+bwd") + phase("gnb fwd+bwd");
    split.insert(
        "  other (embedding, residuals, autodiff)".into(),
        ms(fwd_bwd - fused).into(),
    );
    split
}

/// The exact k-th smallest of `n` fixed pseudo-random non-negative f32 values (squares, like
/// AdmIRE's h, with deliberate ties), `k = ⌊0.6 n⌋`, found on `device` by
/// [`ire_optim::select_device::kth_smallest`] and on the host by sorting; one JSON object with both, the
/// counts and whether they agree exactly.
pub fn tau_check<B: Backend>(n: usize, device: &B::Device) -> Value {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let host: Vec<f32> = (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Every 97th value repeats a fixed one: ties near τ are the hard case.
            let u = if i % 97 == 0 {
                0.5
            } else {
                (state >> 40) as f32 / (1u64 << 24) as f32
            };
            u * u
        })
        .collect();
    let k = (0.6 * n as f64).floor() as u64;
    let t = Instant::now();
    let parts: Vec<Tensor<B, 1>> = host
        .chunks(n.div_ceil(3).max(1))
        .map(|c| Tensor::<B, 1>::from_floats(c, device))
        .collect();
    let upload_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let sel = kth_smallest(&parts, k);
    let device_s = t.elapsed().as_secs_f64();
    let mut sorted = host.clone();
    sorted.sort_by(f32::total_cmp);
    let tau_host = if k == 0 {
        f32::NEG_INFINITY
    } else {
        sorted[k as usize - 1]
    };
    let count_host = host.iter().filter(|&&v| v <= tau_host).count() as u64;
    json!({
        "values": n,
        "k": k,
        "tau_device": sel.threshold,
        "tau_host": tau_host as f64,
        "count_le_device": sel.count_le,
        "count_le_host": count_host,
        "exact": sel.threshold == tau_host as f64 && sel.count_le == count_host,
        "device_s": device_s,
        "upload_s": upload_s,
    })
}
