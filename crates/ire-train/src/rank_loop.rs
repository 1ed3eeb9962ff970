//! One replica's training loop, nanoGPT-style, as named phases per step:
//!
//! ```text
//! refresh   AdmIRE only, when due: GNB estimate on fresh batches → agree → all-reduce → mask
//! micro     forward/backward over the micro-batches
//! agree     every rank learns the global loss, whether to stop, and whether any rank failed
//! reduce    average the gradients over the ranks
//! update    clip; guard (loss and gradient norm finite, else stop or skip); optimizer step
//! report    rank 0: metrics line, progress, evaluation, checkpoint
//! agree     any failure in update/report stops every rank at this step
//! ```
//!
//! Every rank reaches every collective in the same order: a phase's error or panic is held
//! until the next agreement point (`Rank::agree`), where all ranks learn of it and leave
//! together, so no rank waits forever in an all-reduce.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use ire_data::{Batch, DataParallel, LoaderState, Prefetcher};
use ire_llama::{IreOps, Llama};
use ire_optim::{
    clip_global_norm, global_grad_norm, gnb_gradients, gnb_seed, FusedUpdate, OptimName, Optimizer,
};

use crate::checkpoint::{self, TrainerState};
use crate::config::NonFinitePolicy;
use crate::dp::Rank;
use crate::fault;
use crate::metrics::{MetricLine, MetricsWriter};
use crate::trainer::{Ctx, TrainSummary};
use crate::{signals, TrainError};

/// Offset of the global sample indices that AdmIRE's GNB batches draw from, so they are fresh
/// batches (not the step's training batch) and still a pure function of the step.
const GNB_SAMPLE_OFFSET: u64 = 1 << 40;

/// Runs one replica from `state` to the end (or a stop), then leaves the collective group.
pub(crate) fn rank_loop<B: AutodiffBackend + IreOps>(
    ctx: &Ctx,
    rank: Rank,
    device: &B::Device,
    model: Llama<B>,
    state: TrainerState,
    resume_from: Option<&Path>,
) -> Result<TrainSummary, TrainError>
where
    B::InnerBackend: IreOps + FusedUpdate,
{
    ire_llama::ops::cpu::flush_denormals(); // this rank's thread (rayon's are set by tune())
    rank.register::<B>(device)?;
    let setup = attempt(rank, "setup", || {
        Worker::new(ctx, rank, device, state, resume_from)
    });
    let result = rank
        .agree::<B, _>(setup, &[], device)
        .and_then(|(mut worker, _)| worker.run(model));
    let left = rank.finish::<B>();
    let summary = result?;
    left?;
    Ok(summary)
}

/// Runs `f`, turning a panic into an error so the rank still reaches the next agreement.
fn attempt<T>(
    rank: Rank,
    phase: &'static str,
    f: impl FnOnce() -> Result<T, TrainError>,
) -> Result<T, TrainError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(no message)".into());
        Err(TrainError::Panic {
            rank: rank.index,
            phase,
            message,
        })
    })
}

/// One rank's mutable training state.
struct Worker<'a, B: AutodiffBackend> {
    ctx: &'a Ctx,
    rank: Rank,
    device: &'a B::Device,
    optim: Optimizer<B>,
    layout: DataParallel,
    prefetch: Prefetcher,
    metrics: Option<MetricsWriter>,
    progress: Option<indicatif::ProgressBar>,
    state: TrainerState,
    last_ckpt: Option<PathBuf>,
    stop_at: usize,
}

/// What the update phase measured, for the report.
struct StepStats {
    lr: f64,
    loss: f32,
    grad_norm: f32,
    kappa_t: f64,
    step_s: f64,
}

impl<'a, B: AutodiffBackend + IreOps> Worker<'a, B>
where
    B::InnerBackend: IreOps + FusedUpdate,
{
    /// Optimizer (restored from the checkpoint), prefetcher, metrics file (rank 0).
    fn new(
        ctx: &'a Ctx,
        rank: Rank,
        device: &'a B::Device,
        state: TrainerState,
        resume_from: Option<&Path>,
    ) -> Result<Self, TrainError> {
        fault::check(ctx.opts.fault.as_ref(), rank.index, state.step, "setup")?;
        let cfg = &ctx.cfg;
        let mut optim = Optimizer::<B>::new(&cfg.optim, ctx.schedule.warmup)?;
        if let Some(dir) = resume_from {
            optim.load(&dir.join(checkpoint::OPTIMIZER_DIR), device)?;
        }
        // Batches are built ahead on a background thread in the order the loop consumes them;
        // positions are global sample indices, so they do not depend on the device count.
        let layout = DataParallel {
            rank: rank.index,
            world: rank.world,
            micro_batch: cfg.batch.micro_batch,
            accum: cfg.batch.grad_accum,
        };
        let position = LoaderState {
            next_sample: state.next_sample,
        };
        let depth = 2 * cfg.batch.grad_accum;
        let prefetch = Prefetcher::new(ctx.train.clone(), layout, position, depth)?;
        let metrics = match rank.is_main() {
            true => Some(MetricsWriter::open(
                &ctx.run_dir.join("metrics.jsonl"),
                Some(state.step),
            )?),
            false => None,
        };
        let total = ctx.schedule.total;
        let progress =
            (rank.is_main() && ctx.opts.progress).then(|| progress_bar(total, state.step));
        Ok(Self {
            ctx,
            rank,
            device,
            optim,
            layout,
            prefetch,
            metrics,
            progress,
            stop_at: ctx.opts.stop_at.unwrap_or(total).min(total),
            last_ckpt: resume_from.map(Path::to_path_buf),
            state,
        })
    }

    /// Trains to the end (or a stop) and reports; the progress bar is cleared either way.
    fn run(&mut self, model: Llama<B>) -> Result<TrainSummary, TrainError> {
        let signalled = self.steps(model);
        if let Some(pb) = self.progress.take() {
            pb.finish_and_clear();
        }
        let unfinished = self.state.step < self.ctx.schedule.total;
        Ok(TrainSummary {
            steps: self.state.step,
            train_loss: self.state.train_loss,
            val_loss: self.state.val_loss,
            checkpoint: self.last_ckpt.clone(),
            interrupted: unfinished,
            // A signal during the last step still lets the run finish: not "interrupted".
            signalled: signalled? && unfinished,
        })
    }

    /// The loop: one iteration per optimizer step, phases as in the module docs. Returns
    /// whether a signal stopped it.
    fn steps(&mut self, mut model: Llama<B>) -> Result<bool, TrainError> {
        for it in self.state.step..self.stop_at {
            let started = Instant::now();
            let first = self.prefetch.state();
            let local = match self.optim.needs_refresh(it) {
                true => self.refresh(&model, it, first)?,
                false => Ok(()),
            };
            let local = local.and_then(|_| {
                attempt(self.rank, "micro-batches", || {
                    self.micro_batches(&model, it)
                })
            });
            let (local, loss) = match local {
                Ok((grads, loss)) => (Ok(grads), loss),
                Err(e) => (Err(e), 0.0),
            };
            let stop = signals::stop_requested() as u8 as f32;
            let (grads, sums) = self.rank.agree::<B, _>(local, &[loss, stop], self.device)?;
            let loss = sums[0] / self.rank.world as f32;
            let stop = sums[1] > 0.0;
            let grads = self.rank.mean_gradients::<B>(grads)?;

            let updated = attempt(self.rank, "update", || {
                self.update(model, grads, it, loss, started)
            });
            let local = updated.and_then(|(model, stats)| {
                attempt(self.rank, "report", || {
                    self.report(&model, it, &stats, stop)
                })
                .map(|_| model)
            });
            model = self.rank.agree::<B, _>(local, &[], self.device)?.0;
            if stop {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// AdmIRE's mask refresh from a GNB estimate on fresh batches. The outer `Result` is a
    /// collective failure (all ranks see it); the inner one this rank's own error, held for
    /// the next agreement.
    fn refresh(
        &mut self,
        model: &Llama<B>,
        it: usize,
        first: LoaderState,
    ) -> Result<Result<(), TrainError>, TrainError> {
        let local = attempt(self.rank, "refresh", || self.gnb_estimate(model, it, first));
        let (estimate, _) = self.rank.agree::<B, _>(local, &[], self.device)?;
        let estimate = self.rank.mean_gradients::<B>(estimate)?;
        Ok(attempt(self.rank, "refresh", || {
            self.optim.refresh_mask(model, &estimate);
            Ok(())
        }))
    }

    /// This rank's share of the GNB estimate, averaged over its micro-batches.
    fn gnb_estimate(
        &mut self,
        model: &Llama<B>,
        it: usize,
        first: LoaderState,
    ) -> Result<GradientsParams, TrainError> {
        fault::check(self.fault(), self.rank.index, it, "refresh")?;
        let (micro, accum) = (self.layout.micro_batch, self.layout.accum);
        let seed = gnb_seed(self.ctx.cfg.run.seed, it as u64);
        let mut estimate = None;
        for m in 0..accum {
            let start = GNB_SAMPLE_OFFSET + self.layout.sample_start(first, m);
            let (x, _) = to_tensors::<B>(&self.ctx.train.batch(start, micro)?, self.device);
            let g = gnb_gradients(model, x, seed, start);
            let g = ire_optim::scale_gradients::<B, _>(g, 1.0 / accum as f64, model);
            estimate = Some(accumulate(estimate, g, model));
        }
        estimate.ok_or_else(|| TrainError::config("batch.grad_accum", "at least 1"))
    }

    /// Forward/backward over the micro-batches; the loss is scaled so gradients average.
    /// Returns the summed gradients and this rank's mean loss.
    fn micro_batches(
        &mut self,
        model: &Llama<B>,
        it: usize,
    ) -> Result<(GradientsParams, f32), TrainError> {
        fault::check(self.fault(), self.rank.index, it, "micro")?;
        let accum = self.layout.accum;
        let mut grads = None;
        let mut loss_sum = Tensor::<B::InnerBackend, 1>::zeros([1], self.device);
        for _ in 0..accum {
            let batch = self.prefetch.next_micro()?;
            let (x, y) = to_tensors::<B>(&batch, self.device);
            let loss = model.loss(x, y);
            loss_sum = loss_sum + loss.clone().inner();
            let g = GradientsParams::from_grads(loss.div_scalar(accum as f64).backward(), model);
            grads = Some(accumulate(grads, g, model));
        }
        let grads = grads.ok_or_else(|| TrainError::config("batch.grad_accum", "at least 1"))?;
        let loss = loss_sum.into_scalar().elem::<f32>() / accum as f32;
        match fault::poisons(self.fault(), self.rank.index, it) {
            true => Ok((grads, f32::NAN)),
            false => Ok((grads, loss)),
        }
    }

    /// Clip, guard, step. The guard runs before the optimizer touches the weights: a
    /// non-finite global loss or gradient norm stops the run (or skips the update, if
    /// configured); the values are global, so every rank decides the same.
    fn update(
        &mut self,
        model: Llama<B>,
        grads: GradientsParams,
        it: usize,
        loss: f32,
        started: Instant,
    ) -> Result<(Llama<B>, StepStats), TrainError> {
        fault::check(self.fault(), self.rank.index, it, "update")?;
        let lr = self.ctx.schedule.lr_at(it);
        let lr_max = self.ctx.schedule.lr_max;
        let (grads, grad_norm) = match self.ctx.cfg.optim.clip_norm {
            Some(max_norm) => clip_global_norm(&model, grads, max_norm),
            None => {
                let norm = global_grad_norm(&model, &grads) as f32;
                (grads, norm)
            }
        };
        let mut stats = StepStats {
            lr,
            loss,
            grad_norm,
            kappa_t: 0.0,
            step_s: 0.0,
        };
        let model = match self.guard(it, loss, grad_norm)? {
            true => {
                // The boost applies after the start step (the optimizer decides; this is
                // for logging).
                let is_admire = self.ctx.cfg.optim.name == OptimName::Admire;
                if is_admire && it > self.optim.start() && self.optim.mask_fraction().is_some() {
                    stats.kappa_t = self.optim.kappa_t(lr, lr_max);
                }
                self.optim.step(it, lr, lr_max, model, grads)
            }
            false => model,
        };
        stats.step_s = started.elapsed().as_secs_f64();
        let tokens = self.tokens_per_step();
        let state = &mut self.state;
        state.step = it + 1;
        state.tokens += tokens;
        state.wall_s += stats.step_s;
        state.next_sample = self.prefetch.state().next_sample;
        state.train_loss = Some(loss as f64);
        Ok((model, stats))
    }

    /// `Ok(true)` to apply the update, `Ok(false)` to skip it, an error to stop.
    fn guard(&mut self, it: usize, loss: f32, grad_norm: f32) -> Result<bool, TrainError> {
        if loss.is_finite() && grad_norm.is_finite() {
            return Ok(true);
        }
        let cause = match loss.is_finite() {
            false => format!("training loss ({loss})"),
            true => format!("gradient norm ({grad_norm})"),
        };
        let guard = &self.ctx.cfg.guard;
        if guard.nonfinite == NonFinitePolicy::Skip && self.state.skipped_steps < guard.max_skipped
        {
            self.state.skipped_steps += 1;
            tracing::warn!(
                "step {}: {cause}; update skipped ({} of guard.max_skipped = {})",
                it + 1,
                self.state.skipped_steps,
                guard.max_skipped
            );
            return Ok(false);
        }
        let last_good = match &self.last_ckpt {
            Some(p) => format!("The newest good checkpoint is {}.", p.display()),
            None => "No checkpoint had been written yet.".to_string(),
        };
        let cause = match guard.nonfinite {
            NonFinitePolicy::Stop => cause,
            NonFinitePolicy::Skip => format!(
                "{cause} after {} skipped steps (guard.max_skipped)",
                self.state.skipped_steps
            ),
        };
        Err(TrainError::NonFinite {
            step: it + 1,
            cause,
            last_good,
        })
    }

    /// Rank 0: metrics line, progress bar, evaluation and checkpoint when due.
    fn report(
        &mut self,
        model: &Llama<B>,
        it: usize,
        stats: &StepStats,
        stop: bool,
    ) -> Result<(), TrainError> {
        fault::check(self.fault(), self.rank.index, it, "report")?;
        if !self.rank.is_main() {
            return Ok(());
        }
        let cfg = &self.ctx.cfg;
        let step = self.state.step;
        let last = step == self.stop_at;
        if step.is_multiple_of(cfg.metrics.log_interval) || last {
            self.log_train(stats)?;
        }
        let total = self.ctx.schedule.total;
        if (cfg.eval.interval > 0 && step.is_multiple_of(cfg.eval.interval)) || step == total {
            self.evaluate(model, stats.loss)?;
        }
        let ckpt_due = (cfg.checkpoint.interval > 0
            && step.is_multiple_of(cfg.checkpoint.interval))
            || last
            || stop;
        if ckpt_due {
            let (optim, kill) = (&self.optim, fault::kills(self.fault(), 0, it));
            let dir = checkpoint::save_checkpoint(
                &self.ctx.run_dir,
                model,
                &self.state,
                &self.ctx.config_toml,
                cfg.checkpoint.keep,
                |d| {
                    optim.save(d)?;
                    if kill {
                        eprintln!("injected fault: killed while writing the checkpoint");
                        std::process::abort();
                    }
                    Ok(())
                },
            )?;
            tracing::debug!("checkpoint {}", dir.display());
            self.last_ckpt = Some(dir);
        }
        Ok(())
    }

    fn log_train(&mut self, stats: &StepStats) -> Result<(), TrainError> {
        let tps = self.tokens_per_step() as f64 / stats.step_s;
        let flops = self.ctx.model_cfg.flops_per_token(self.ctx.seq_len);
        let is_admire = self.ctx.cfg.optim.name == OptimName::Admire;
        let line = MetricLine {
            split: "train".into(),
            step: self.state.step,
            tokens: self.state.tokens,
            loss: stats.loss as f64,
            lr: Some(stats.lr),
            grad_norm: Some(stats.grad_norm as f64),
            tokens_per_s: Some(tps),
            mfu: Some(flops * tps / (self.ctx.peak_flops * self.rank.world as f64)),
            wall_s: self.state.wall_s,
            mask_fraction: self.optim.mask_fraction(),
            kappa_t: is_admire.then_some(stats.kappa_t),
        };
        if let Some(w) = self.metrics.as_mut() {
            w.write(&line)?;
        }
        if let Some(pb) = &self.progress {
            pb.set_position(self.state.step as u64);
            pb.set_message(format!(
                "loss {:.4}  lr {:.2e}  {tps:.0} tok/s",
                stats.loss, stats.lr
            ));
        }
        Ok(())
    }

    fn evaluate(&mut self, model: &Llama<B>, train_loss: f32) -> Result<(), TrainError> {
        let micro = self.layout.micro_batch;
        let val_loss = evaluate(&model.valid(), &self.ctx.val, micro, self.device);
        let step = self.state.step;
        if !val_loss.is_finite() {
            tracing::warn!("step {step}: validation loss is {val_loss}");
        }
        self.state.val_loss = Some(val_loss);
        tracing::info!("step {step}: train loss {train_loss:.4}, val loss {val_loss:.4}");
        let line = MetricLine {
            split: "val".into(),
            step,
            tokens: self.state.tokens,
            loss: val_loss,
            lr: None,
            grad_norm: None,
            tokens_per_s: None,
            mfu: None,
            wall_s: self.state.wall_s,
            mask_fraction: None,
            kappa_t: None,
        };
        match self.metrics.as_mut() {
            Some(w) => w.write(&line),
            None => Ok(()),
        }
    }

    fn tokens_per_step(&self) -> u64 {
        (self.ctx.cfg.global_batch() * self.ctx.seq_len) as u64
    }

    fn fault(&self) -> Option<&fault::Fault> {
        self.ctx.opts.fault.as_ref()
    }
}

pub(crate) fn to_tensors<B: Backend>(
    batch: &Batch,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let shape = [batch.batch, batch.ctx];
    let x: Vec<i64> = batch.inputs.iter().map(|&t| t as i64).collect();
    let y: Vec<i64> = batch.targets.iter().map(|&t| t as i64).collect();
    (
        Tensor::from_data(TensorData::new(x, shape), device),
        Tensor::from_data(TensorData::new(y, shape), device),
    )
}

/// Sums gradients (`None` = nothing yet).
fn accumulate<B: AutodiffBackend>(
    acc: Option<GradientsParams>,
    g: GradientsParams,
    model: &Llama<B>,
) -> GradientsParams {
    match acc {
        None => g,
        Some(acc) => ire_optim::add_gradients::<B, _>(acc, g, model),
    }
}

/// Mean loss over the fixed validation windows, in chunks of `micro` sequences.
pub fn evaluate<B: IreOps>(model: &Llama<B>, val: &Batch, micro: usize, device: &B::Device) -> f64 {
    let mut total = 0.0f64;
    let mut start = 0;
    while start < val.batch {
        let n = micro.min(val.batch - start);
        let chunk = val.rows(start, n);
        let (x, y) = to_tensors::<B>(&chunk, device);
        let loss: f32 = model.loss(x, y).into_scalar().elem();
        total += loss as f64 * n as f64;
        start += n;
    }
    total / val.batch as f64
}

fn progress_bar(total: usize, at: usize) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} steps  {msg}  [{elapsed} < {eta}]",
    ) {
        pb.set_style(style);
    }
    pb.set_position(at as u64);
    pb
}
