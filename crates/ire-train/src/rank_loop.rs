//! One replica's training loop, read top to bottom like nanoGPT's: each step runs the pieces
//! of [`crate::step`], with the data-parallel agreement between them, then the cadence of
//! log, evaluation and checkpoint.
//!
//! ```text
//! refresh   AdmIRE only, when due: estimate_curvature → agree → mean over ranks → mask
//! micro     forward_backward over this rank's micro-batches
//! agree     every rank learns the global loss, whether to stop, and whether any rank failed
//! reduce    mean of the gradients over the ranks
//! update    apply_update: clip, guard, optimizer step
//! report    rank 0: metrics line, evaluation, checkpoint, each when due
//! agree     any failure in update/report stops every rank at this step
//! ```
//!
//! Every rank reaches every collective in the same order: each phase runs inside
//! [`run_phase`] (fault injection, panics caught) and its error is held until the next
//! agreement point ([`Group::agree`]), where all ranks learn of it and leave together, so no
//! rank waits forever in an all-reduce.

use std::path::Path;
use std::time::Instant;

use ire_data::{DataParallel, LoaderState, Prefetcher};
use ire_llama::Llama;
use ire_optim::{gnb_seed, Optimizer, TrainBackend};

use crate::checkpoint::{TrainerState, OPTIMIZER_DIR};
use crate::checkpointer::Checkpointer;
use crate::dist::{Group, Rank};
use crate::fault::{self, run_phase, Fault};
use crate::guard::Guard;
use crate::phase::Phase;
use crate::report::Reporter;
use crate::run::{Shared, TrainSummary};
use crate::step::{self, batch_tensors, StepGrads, Update, UpdateSettings};
use crate::{eval, signals, TrainError};

/// Offset of the global sample indices that AdmIRE's GNB batches draw from, so they are fresh
/// batches (not the step's training batch) and still a pure function of the step.
const GNB_SAMPLE_OFFSET: u64 = 1 << 40;

/// Runs one replica from `state` to the end (or a stop), then leaves the collective group.
pub(crate) fn rank_loop<B: TrainBackend>(
    shared: &Shared,
    group: &Group<B>,
    device: &B::Device,
    model: Llama<B>,
    state: TrainerState,
    resume_from: Option<&Path>,
) -> Result<TrainSummary, TrainError> {
    ire_llama::ops::cpu::flush_denormals(); // this rank's thread (rayon's are set by tune())
    let rank = group.rank();
    let setup = run_phase(shared.fault(), rank.index, state.step, Phase::Setup, || {
        RankLoop::new(shared, group, device, state, resume_from)
    });
    let result = group
        .agree(setup, &[])
        .and_then(|(mut lp, _)| lp.run(model));
    let left = group.finish();
    let summary = result?;
    left?;
    Ok(summary)
}

/// One rank's training: its optimizer, its share of the data and the run's state; rank 0
/// also reports. Evaluation and checkpoints follow their own cadence ([`eval::due`],
/// [`Checkpointer::due`]).
struct RankLoop<'a, B: TrainBackend> {
    shared: &'a Shared,
    group: &'a Group<B>,
    rank: Rank,
    device: &'a B::Device,
    optim: Optimizer<B>,
    layout: DataParallel,
    prefetch: Prefetcher,
    state: TrainerState,
    /// The step this invocation stops after (`schedule.total`, or `--stop-at`).
    stop_at: usize,
    reporter: Option<Reporter>,
    checkpoints: Checkpointer<'a>,
}

impl<'a, B: TrainBackend> RankLoop<'a, B> {
    /// Optimizer (restored from the checkpoint), prefetcher, reporter (rank 0).
    fn new(
        shared: &'a Shared,
        group: &'a Group<B>,
        device: &'a B::Device,
        state: TrainerState,
        resume_from: Option<&Path>,
    ) -> Result<Self, TrainError> {
        let (cfg, rank) = (&shared.cfg, group.rank());
        let mut optim = Optimizer::<B>::new(&cfg.optim, shared.schedule.warmup)?;
        // Only the reporting rank writes the mask diagnostics; the others skip their counts.
        optim.set_mask_report(rank.is_main());
        if let Some(dir) = resume_from {
            optim.load(&dir.join(OPTIMIZER_DIR), device)?;
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
        let prefetch = Prefetcher::new(shared.train.clone(), layout, position, depth)?;
        let total = shared.schedule.total;
        let stop_at = shared.opts.stop_at.unwrap_or(total).min(total);
        let reporter = match rank.is_main() {
            true => Some(Reporter::open(shared, rank.world, &state, stop_at)?),
            false => None,
        };
        Ok(Self {
            shared,
            group,
            rank,
            device,
            optim,
            layout,
            prefetch,
            stop_at,
            reporter,
            checkpoints: Checkpointer::new(shared, resume_from),
            state,
        })
    }

    /// Trains to the end (or a stop) and reports; the progress bar is cleared either way.
    fn run(&mut self, model: Llama<B>) -> Result<TrainSummary, TrainError> {
        let started = Instant::now();
        if self.reporter.is_some() {
            let rules = self.optim.describe_rules(&model);
            tracing::info!("optimizer {}: {rules}", self.shared.cfg.optim.label());
        }
        let signalled = self.steps(model);
        if let Some(r) = self.reporter.as_mut() {
            r.finish();
            if self.rank.world > 1 {
                let (reduce, total) =
                    (self.group.reduce_seconds(), started.elapsed().as_secs_f64());
                tracing::info!(
                    "gradient all-reduce ({}): {reduce:.2} s of {total:.2} s ({:.1}%)",
                    self.group.engine_name(),
                    100.0 * reduce / total.max(1e-9)
                );
            }
        }
        let unfinished = self.state.step < self.shared.schedule.total;
        Ok(TrainSummary {
            steps: self.state.step,
            train_loss: self.state.train_loss,
            val_loss: self.state.val_loss,
            checkpoint: self.checkpoints.newest().map(Path::to_path_buf),
            interrupted: unfinished,
            // A signal during the last step still lets the run finish: not "interrupted".
            signalled: signalled? && unfinished,
        })
    }

    /// The loop: one iteration per optimizer step, phases as in the module docs. Returns
    /// whether a signal stopped it.
    fn steps(&mut self, mut model: Llama<B>) -> Result<bool, TrainError> {
        for it in self.state.step..self.stop_at {
            let (step, started) = (it + 1, Instant::now());
            self.group.set_step(step);
            let held = match self.optim.needs_refresh(it) {
                true => self.refresh(&model, it)?,
                false => Ok(()),
            };
            let local = held.and_then(|()| {
                run_phase(self.fault(), self.rank.index, step, Phase::Micro, || {
                    self.gradients(&model, step)
                })
            });
            let (grads, stop) = self.agree_and_reduce(&model, local)?;
            let updated = run_phase(self.fault(), self.rank.index, step, Phase::Update, || {
                self.update(model, grads, it, started)
            });
            let reported = updated.and_then(|(model, update, step_s)| {
                run_phase(self.fault(), self.rank.index, step, Phase::Report, || {
                    self.report(&model, &update, step_s, stop)
                })
                .map(|()| model)
            });
            model = self.group.agree(reported, &[])?.0;
            if stop {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// AdmIRE's mask refresh from a GNB estimate on fresh batches, averaged over the ranks.
    /// The outer `Result` is a collective failure (all ranks see it); the inner one this
    /// rank's own error, held for the next agreement.
    fn refresh(
        &mut self,
        model: &Llama<B>,
        it: usize,
    ) -> Result<Result<(), TrainError>, TrainError> {
        let (fault, rank, step) = (self.fault(), self.rank.index, it + 1);
        let first = self.prefetch.state();
        let local = run_phase(fault, rank, step, Phase::Refresh, || {
            let (micro, accum) = (self.layout.micro_batch, self.layout.accum);
            let seed = gnb_seed(self.shared.cfg.run.seed, it as u64);
            step::estimate_curvature(model, accum, seed, |m| {
                let start = GNB_SAMPLE_OFFSET + self.layout.sample_start(first, m);
                let batch = self.shared.train.batch(start, micro)?;
                Ok((batch_tensors::<B>(&batch, self.device).0, start))
            })
        });
        let (estimate, _) = self.group.agree(local, &[])?;
        let estimate = self.group.mean_gradients(model, estimate)?;
        Ok(run_phase(fault, rank, step, Phase::Refresh, || {
            self.optim.refresh_mask(model, &estimate);
            Ok(())
        }))
    }

    /// This rank's gradients and mean loss over its micro-batches.
    fn gradients(&mut self, model: &Llama<B>, step: usize) -> Result<StepGrads, TrainError> {
        let prefetch = &mut self.prefetch;
        let device = self.device;
        let mut grads = step::forward_backward(model, self.layout.accum, || {
            Ok(batch_tensors::<B>(&prefetch.next_micro()?, device))
        })?;
        if fault::poisons(self.fault(), self.rank.index, step) {
            grads.loss = f32::NAN;
        }
        Ok(grads)
    }

    /// The agreement after the micro-batches: the global mean loss, whether any rank was
    /// signalled to stop, whether any failed; then the mean of the gradients.
    fn agree_and_reduce(
        &self,
        model: &Llama<B>,
        local: Result<StepGrads, TrainError>,
    ) -> Result<(StepGrads, bool), TrainError> {
        let (local, loss) = match local {
            Ok(g) => (Ok(g.grads), g.loss),
            Err(e) => (Err(e), 0.0),
        };
        let stop = signals::stop_requested() as u8 as f32;
        let (grads, sums) = self.group.agree(local, &[loss, stop])?;
        let loss = sums[0] / self.rank.world as f32;
        let grads = self.group.mean_gradients(model, grads)?;
        Ok((StepGrads { grads, loss }, sums[1] > 0.0))
    }

    /// [`step::apply_update`] with the schedule's lr, then the run's state advances by one
    /// step. Returns the model, what was done, and the step's seconds.
    fn update(
        &mut self,
        model: Llama<B>,
        grads: StepGrads,
        it: usize,
        started: Instant,
    ) -> Result<(Llama<B>, Update, f64), TrainError> {
        let schedule = &self.shared.schedule;
        let settings = UpdateSettings {
            iteration: it,
            lr: schedule.lr_at(it),
            lr_max: schedule.lr_max,
            clip_norm: self.shared.cfg.optim.clip_norm,
        };
        let mut guard = Guard {
            cfg: &self.shared.cfg.guard,
            skipped: &mut self.state.skipped_steps,
            last_good: self.checkpoints.newest(),
        };
        let (model, update) =
            step::apply_update(&mut self.optim, model, grads, &settings, &mut guard)?;
        let step_s = started.elapsed().as_secs_f64();
        let state = &mut self.state;
        state.step = update.step;
        state.tokens += self.shared.tokens_per_step();
        state.wall_s += step_s;
        state.next_sample = self.prefetch.state().next_sample;
        state.train_loss = Some(update.loss as f64);
        Ok((model, update, step_s))
    }

    /// Rank 0: the train line, evaluation and checkpoint, each when due.
    fn report(
        &mut self,
        model: &Llama<B>,
        update: &Update,
        step_s: f64,
        stop: bool,
    ) -> Result<(), TrainError> {
        let step = self.state.step;
        fault::hang_or_die(self.fault(), self.rank, step);
        let Some(reporter) = self.reporter.as_mut() else {
            return Ok(());
        };
        let last = step == self.stop_at;
        if reporter.due(step, last) || update.mask_report.is_some() {
            reporter.train(&self.state, update, step_s)?;
        }
        reporter.progress(&self.state, update, step_s);
        let cfg = &self.shared.cfg;
        if eval::due(cfg.eval.interval, self.shared.schedule.total, step) {
            let (val, micro) = (&self.shared.val, self.layout.micro_batch);
            let val_loss = eval::evaluate_training(model, val, micro, self.device);
            self.state.val_loss = Some(val_loss);
            reporter.val(&self.state, update.loss)?;
        }
        if self.checkpoints.due(step, last, stop) {
            let kill = fault::kills(self.shared.fault(), self.rank.index, step);
            self.checkpoints
                .save(model, &self.state, &self.optim, kill)?;
        }
        Ok(())
    }

    /// The injected fault, if any (tests only).
    fn fault(&self) -> Option<&'a Fault> {
        self.shared.fault()
    }
}
