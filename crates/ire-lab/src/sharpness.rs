//! Sharpness of a run's checkpoint: Hutchinson's Tr(∇²L) and λ_max of the validation loss on
//! the run's first fixed validation windows (the paper's Table 6), for `ire sharpness`.
//!
//! The math is [`ire_optim::sharpness`] (central differences of gradients: Burn 0.21's autodiff
//! cannot differentiate twice). This file supplies its gradient closure: the loaded model's
//! float parameters flattened in visiting order into one `f64` vector θ; `grad(θ)` writes θ back
//! into the model, takes the mean loss over the windows (in chunks of the run's micro-batch),
//! backpropagates and flattens the gradient in the same order. Results are appended to
//! `RUN/sharpness.jsonl`, one line per checkpoint and setting. A measurement shows its progress
//! by gradients (a bar on a terminal, else a log line every 10 s: `ire_core::Progress`).
//!
//! The gradient is not the trainer's `ire_train::step::forward_backward`: the windows are cut
//! into chunks of unequal size, weighted by their share, and summed in f64, the precision the
//! finite differences of gradients need.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use ire_core::Progress;
use ire_data::{Batch, Loader};
use ire_llama::params::{named_values, replace_values};
use ire_llama::{load_hf, Llama};
use ire_optim::sharpness::{default_step, hutchinson_trace, top_eigenvalue, Probing};
use ire_optim::OptimError;
use ire_optim::TrainBackend;
use serde::{Deserialize, Serialize};

use ire_train::checkpoint::{
    checkpoint_path, list_checkpoints, newest_good, verify, RUN_CONFIG_FILE,
};
use ire_train::step::batch_tensors;
use ire_train::RunConfig;

use crate::LabError;

/// File of the results, in the run directory.
pub const SHARPNESS_FILE: &str = "sharpness.jsonl";

/// What to measure and how.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SharpnessSettings {
    /// Validation windows of the run's sequence length the loss is averaged over.
    pub windows: usize,
    /// Rademacher probes of Hutchinson's estimate.
    pub probes: usize,
    /// Power-iteration steps for λ_max at most.
    pub power_iters: usize,
    /// Relative change of λ at which the power iteration stops.
    pub power_tol: f64,
    /// Seed of the probes and the power iteration's start.
    pub seed: u64,
}

impl Default for SharpnessSettings {
    fn default() -> Self {
        Self {
            windows: 8,
            probes: 16,
            power_iters: 20,
            power_tol: 1e-2,
            seed: 0,
        }
    }
}

/// One measurement: a line of `sharpness.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharpnessRecord {
    /// The checkpoint's step.
    pub step: usize,
    /// The settings used.
    #[serde(flatten)]
    pub settings: SharpnessSettings,
    /// Mean validation loss on the windows at the checkpoint.
    pub loss: f64,
    /// Hutchinson's Tr(∇²L).
    pub trace: f64,
    /// Its standard error over the probes.
    pub trace_stderr: f64,
    /// λ_max by power iteration.
    pub lambda_max: f64,
    /// Power-iteration steps taken.
    pub lambda_iters: usize,
    /// Finite-difference step ε.
    pub eps: f64,
    /// Parameters (the dimension of the Hessian).
    pub params: usize,
    /// Seconds the measurement took.
    pub seconds: f64,
}

/// A checkpoint's validation loss as a function of its flat parameters: the closure
/// [`ire_optim::sharpness`] differentiates.
pub struct FlatLoss<B: AutodiffBackend> {
    model: Llama<B>,
    /// Parameter names and lengths in visiting order: the layout of θ.
    layout: Vec<(String, usize)>,
    val: Batch,
    micro: usize,
    device: B::Device,
}

impl<B: TrainBackend> FlatLoss<B> {
    /// Loads the checkpoint of `run_dir` at `step` (its newest good one when `None`) and the
    /// run's first `windows` validation windows; returns the checkpoint's step too.
    pub fn load(
        run_dir: &Path,
        step: Option<usize>,
        windows: usize,
        device: &B::Device,
    ) -> Result<(usize, Self), LabError> {
        let (step, ckpt) = checkpoint_at(run_dir, step)?;
        let (val, micro) = validation_windows(run_dir, windows)?;
        let model = load_hf::<B>(&ckpt, device)?;
        let layout = named_values(&model)
            .into_iter()
            .map(|(info, v)| (info.name, v.len()))
            .collect();
        let device = device.clone();
        let f = Self {
            model,
            layout,
            val,
            micro,
            device,
        };
        Ok((step, f))
    }

    /// The checkpoint's parameters, flat.
    pub fn theta(&self) -> Vec<f64> {
        named_values(&self.model)
            .into_iter()
            .flat_map(|(_, v)| v.into_iter().map(f64::from))
            .collect()
    }

    /// Mean validation loss at `theta` and its gradient (same layout); `theta` must have one
    /// value per parameter.
    pub fn eval(&self, theta: &[f64]) -> Result<(f64, Vec<f64>), OptimError> {
        let n: usize = self.layout.iter().map(|(_, len)| len).sum();
        if theta.len() != n {
            return Err(OptimError::Sharpness(format!(
                "{} parameter values given, the model has {n}",
                theta.len()
            )));
        }
        let m = with_values(self.model.clone(), &self.layout, theta);
        Ok(loss_and_grad(&m, &self.val, self.micro, &self.device))
    }
}

/// Measures the checkpoint of `run_dir` at `step` (its newest good one when `None`).
pub fn measure<B: TrainBackend>(
    run_dir: &Path,
    step: Option<usize>,
    settings: SharpnessSettings,
    device: &B::Device,
) -> Result<SharpnessRecord, LabError> {
    let t0 = Instant::now();
    let (step, f) = FlatLoss::<B>::load(run_dir, step, settings.windows, device)?;
    let theta = f.theta();
    let at_theta = f.eval(&theta)?.0;
    let mut progress = gradient_progress(step, settings);
    let mut calls = 0u64;
    let mut grad = |t: &[f64]| -> Result<Vec<f64>, OptimError> {
        let g = f.eval(t)?.1;
        calls += 1;
        progress.update(calls, || phase_of(calls, settings));
        Ok(g)
    };
    let eps = default_step(&theta);
    let how = |seed| Probing { eps, seed };
    let trace = hutchinson_trace(&mut grad, &theta, settings.probes, how(settings.seed))?;
    let limits = (settings.power_iters, settings.power_tol);
    let top = top_eigenvalue(&mut grad, &theta, limits, how(settings.seed + 1))?;
    Ok(SharpnessRecord {
        step,
        settings,
        loss: at_theta,
        trace: trace.mean,
        trace_stderr: trace.stderr,
        lambda_max: top.mean,
        lambda_iters: top.samples,
        eps,
        params: theta.len(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Progress over the gradients a measurement takes at most: two per Hutchinson probe, two per
/// power iteration (which may stop early).
fn gradient_progress(step: usize, settings: SharpnessSettings) -> Progress {
    let total = 2 * (settings.probes + settings.power_iters) as u64;
    Progress::command(&format!("sharpness step-{step:06}: gradient"), total)
}

/// Which estimate the `calls`-th gradient belongs to: `Hutchinson probe 3/16` or
/// `power iteration 2/20`.
fn phase_of(calls: u64, settings: SharpnessSettings) -> String {
    let probe = calls.div_ceil(2) as usize;
    match probe <= settings.probes {
        true => format!("Hutchinson probe {probe}/{}", settings.probes),
        false => format!(
            "power iteration {}/{}",
            probe - settings.probes,
            settings.power_iters
        ),
    }
}

/// The verified checkpoint folder of `step`, or the newest good one.
fn checkpoint_at(run_dir: &Path, step: Option<usize>) -> Result<(usize, PathBuf), LabError> {
    match step {
        Some(s) => {
            let dir = checkpoint_path(run_dir, s);
            if !dir.is_dir() {
                let have = list_checkpoints(run_dir)?;
                return Err(LabError::run(
                    &dir,
                    format!("no checkpoint of step {s}; the run has steps {have:?}"),
                ));
            }
            verify(&dir)?;
            Ok((s, dir))
        }
        None => newest_good(run_dir)?
            .ok_or_else(|| LabError::run(run_dir, "no good checkpoint in this run")),
    }
}

/// The run's first `n` fixed validation windows (as its evaluation uses) and its micro-batch.
fn validation_windows(run_dir: &Path, n: usize) -> Result<(Batch, usize), LabError> {
    if n == 0 {
        return Err(LabError::config("--windows", "at least 1"));
    }
    let cfg = RunConfig::load_saved(&run_dir.join(RUN_CONFIG_FILE), &[])?;
    let dataset = ire_data::prepare(&cfg.data, &cfg.data.prepared_dir())?;
    let model_cfg = cfg.model.resolve()?;
    let seq_len = cfg.seq_len(&model_cfg);
    let loader = Loader::new(
        &dataset,
        ire_data::Split::Val,
        seq_len,
        cfg.data.sampler,
        cfg.run.seed,
    )?;
    Ok((loader.val_windows(n)?, cfg.batch.micro_batch))
}

/// `model` with its float parameters set from the flat `theta` (layout: names and lengths in
/// visiting order), still tracked by autodiff.
fn with_values<B: AutodiffBackend>(
    model: Llama<B>,
    layout: &[(String, usize)],
    theta: &[f64],
) -> Llama<B> {
    let mut values = HashMap::with_capacity(layout.len());
    let mut at = 0;
    for (name, len) in layout {
        let v: Vec<f32> = theta[at..at + len].iter().map(|&x| x as f32).collect();
        values.insert(name.clone(), v);
        at += len;
    }
    replace_values(model, &mut values)
}

/// Mean loss over `val` and its gradient, flat in visiting order (zeros for a parameter the
/// loss does not reach).
fn loss_and_grad<B: TrainBackend>(
    model: &Llama<B>,
    val: &Batch,
    micro: usize,
    device: &B::Device,
) -> (f64, Vec<f64>) {
    let mut total = 0.0;
    let mut grad: Vec<f64> = Vec::new();
    let mut start = 0;
    while start < val.batch {
        let n = micro.max(1).min(val.batch - start);
        let (x, y) = batch_tensors::<B>(&val.rows(start, n), device);
        let share = n as f64 / val.batch as f64;
        let loss = model.loss(x, y);
        total += loss.clone().into_scalar().elem::<f64>() * share;
        let grads = GradientsParams::from_grads(loss.mul_scalar(share).backward(), model);
        let mut flat = Flatten::<B> {
            grads: &grads,
            out: Vec::with_capacity(grad.len()),
            _b: std::marker::PhantomData,
        };
        model.visit(&mut flat);
        if grad.is_empty() {
            grad = flat.out;
        } else {
            grad.iter_mut().zip(&flat.out).for_each(|(a, b)| *a += b);
        }
        start += n;
    }
    (total, grad)
}

struct Flatten<'a, B> {
    grads: &'a GradientsParams,
    out: Vec<f64>,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        match self.grads.get::<B::InnerBackend, D>(param.id) {
            Some(g) => {
                let data = g.into_data().convert::<f32>();
                let values = data.as_slice::<f32>().unwrap_or(&[]);
                self.out.extend(values.iter().map(|&x| x as f64));
            }
            None => {
                let n = param.val().shape().num_elements();
                self.out.extend(std::iter::repeat_n(0.0, n));
            }
        }
    }
}

/// The records of `run_dir`'s `sharpness.jsonl` (none when it does not exist).
pub fn read_records(run_dir: &Path) -> Result<Vec<SharpnessRecord>, LabError> {
    let path = run_dir.join(SHARPNESS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LabError::io(&path, e)),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                LabError::run(
                    &path,
                    format!("line {}: not a sharpness record: {e}", i + 1),
                )
            })
        })
        .collect()
}

/// Appends `record` to `run_dir`'s `sharpness.jsonl`.
pub fn append_record(run_dir: &Path, record: &SharpnessRecord) -> Result<(), LabError> {
    let path = run_dir.join(SHARPNESS_FILE);
    let line = serde_json::to_string(record).map_err(|e| LabError::run(&path, e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| LabError::io(&path, e))?;
    writeln!(f, "{line}")
        .and_then(|_| f.sync_all())
        .map_err(|e| LabError::io(&path, e))
}
