//! Rank 0's record of a run: the `metrics.jsonl` lines (train and val) and the same scalars in
//! TensorBoard's `tb/` folder, the console line after each evaluation, when a train line is
//! due, and the progress: a bar on a terminal, else a plain line every `metrics.progress_steps`
//! steps or `metrics.progress_seconds` seconds (`step 120/1000  loss 5.2341  lr 1.20e-3  8,210
//! tok/s  MFU 2.1%  elapsed 2m10s  ETA 15m40s`, tokens/s and MFU averaged over the steps since
//! the previous line).

use ire_core::progress::{format_count, Cadence, Progress};

use crate::checkpoint::TrainerState;
use crate::metrics::{MetricLine, MetricsWriter};
use crate::run::Shared;
use crate::step::Update;
use crate::tensorboard::EventWriter;
use crate::TrainError;

/// Writes the run's metrics and draws its progress (rank 0 only).
pub(crate) struct Reporter {
    metrics: MetricsWriter,
    tensorboard: Option<EventWriter>,
    progress: Progress,
    /// Tokens and step seconds since the last progress line.
    window: (u64, f64),
    log_interval: usize,
    tokens_per_step: u64,
    flops_per_token: f64,
    peak_flops: f64,
    is_admire: bool,
}

impl Reporter {
    /// Opens `metrics.jsonl` (keeping the lines up to `state.step` on resume) and the progress
    /// (a bar when `opts.progress`, else lines; this process stops after step `stop_at`);
    /// `world` devices count towards the peak FLOP/s.
    pub fn open(
        shared: &Shared,
        world: usize,
        state: &TrainerState,
        stop_at: usize,
    ) -> Result<Self, TrainError> {
        let metrics = MetricsWriter::open(&shared.run_dir.join("metrics.jsonl"), Some(state.step))?;
        let tensorboard = match shared.cfg.metrics.tensorboard {
            true => Some(EventWriter::create(
                &shared.run_dir.join("tb"),
                state.step as u64 + 1,
            )?),
            false => None,
        };
        let cadence = Cadence {
            steps: shared.cfg.metrics.progress_steps as u64,
            seconds: shared.cfg.metrics.progress_seconds,
        };
        let (at, total) = (state.step as u64, shared.schedule.total as u64);
        let progress = Progress::new("step", at, total, cadence, shared.opts.progress)
            .ending_at(stop_at as u64);
        Ok(Self {
            metrics,
            tensorboard,
            progress,
            window: (0, 0.0),
            log_interval: shared.cfg.metrics.log_interval,
            tokens_per_step: shared.tokens_per_step(),
            flops_per_token: shared.model_cfg.flops_per_token(shared.seq_len),
            peak_flops: shared.peak_flops * world as f64,
            is_admire: shared.cfg.optim.ire.is_some(),
        })
    }

    /// Whether `step` gets a train line: every `metrics.log_interval` steps and the last one.
    pub fn due(&self, step: usize, last: bool) -> bool {
        step.is_multiple_of(self.log_interval) || last
    }

    /// The train line of the update just done, which took `step_s` seconds.
    pub fn train(
        &mut self,
        state: &TrainerState,
        update: &Update,
        step_s: f64,
    ) -> Result<(), TrainError> {
        let tps = self.tokens_per_step as f64 / step_s;
        let line = MetricLine {
            split: "train".into(),
            step: state.step,
            tokens: state.tokens,
            loss: update.loss as f64,
            lr: Some(update.lr),
            grad_norm: Some(update.grad_norm as f64),
            tokens_per_s: Some(tps),
            mfu: Some(self.mfu(tps)),
            wall_s: state.wall_s,
            mask_fraction: update.mask.map(|m| m.fraction),
            kappa_t: self.is_admire.then_some(update.kappa_t),
            mask: update.mask_report.clone(),
        };
        self.metrics.write(&line)?;
        self.scalars(&line)
    }

    /// Every step: the bar, or a progress line when one is due.
    pub fn progress(&mut self, state: &TrainerState, update: &Update, step_s: f64) {
        self.window.0 += self.tokens_per_step;
        self.window.1 += step_s;
        let tps = self.window.0 as f64 / self.window.1.max(1e-9);
        let mfu = self.mfu(tps);
        let shown = self.progress.update(state.step as u64, || {
            format!(
                "loss {:.4}  lr {:.2e}  {} tok/s  MFU {:.1}%",
                update.loss,
                update.lr,
                format_count(tps.round() as u64),
                100.0 * mfu
            )
        });
        if shown {
            self.window = (0, 0.0);
        }
    }

    /// Model FLOPs utilisation at `tps` tokens per second.
    fn mfu(&self, tps: f64) -> f64 {
        self.flops_per_token * tps / self.peak_flops
    }

    /// The val line (and a console line) after an evaluation at `state.step`.
    pub fn val(&mut self, state: &TrainerState, train_loss: f32) -> Result<(), TrainError> {
        let step = state.step;
        let val_loss = state.val_loss.unwrap_or(f64::NAN);
        if !val_loss.is_finite() {
            tracing::warn!("step {step}: validation loss is {val_loss}");
        }
        tracing::info!("step {step}: train loss {train_loss:.4}, val loss {val_loss:.4}");
        let line = MetricLine {
            split: "val".into(),
            step,
            tokens: state.tokens,
            loss: val_loss,
            lr: None,
            grad_norm: None,
            tokens_per_s: None,
            mfu: None,
            wall_s: state.wall_s,
            mask_fraction: None,
            kappa_t: None,
            mask: None,
        };
        self.metrics.write(&line)?;
        self.scalars(&line)
    }

    /// The line's numbers as TensorBoard scalars tagged `split/field` (`train/loss`, `val/loss`,
    /// `train/lr`, …), when TensorBoard output is on.
    fn scalars(&mut self, line: &MetricLine) -> Result<(), TrainError> {
        let Some(tb) = &mut self.tensorboard else {
            return Ok(());
        };
        let split = line.split.as_str();
        let fields = [
            ("loss", Some(line.loss)),
            ("lr", line.lr),
            ("grad_norm", line.grad_norm),
            ("tokens_per_s", line.tokens_per_s),
            ("mfu", line.mfu),
            ("mask_fraction", line.mask_fraction),
            ("kappa_t", line.kappa_t),
        ];
        let mut tags: Vec<(String, f64)> = fields
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| (format!("{split}/{name}"), v)))
            .collect();
        if let Some(mask) = &line.mask {
            tags.extend(mask_scalars(mask));
        }
        let refs: Vec<(&str, f64)> = tags.iter().map(|(t, v)| (t.as_str(), *v)).collect();
        tb.scalars(line.step as u64, &refs)
    }

    /// Clears the progress bar.
    pub fn finish(&mut self) {
        self.progress.finish();
    }
}

/// A refresh's diagnostics as TensorBoard scalars: `mask/tau`, `mask/overlap`,
/// `mask/flat/<group>` and `mask/layer/<i>`.
fn mask_scalars(mask: &ire_optim::MaskReport) -> Vec<(String, f64)> {
    let mut tags = vec![("mask/tau".to_string(), mask.tau)];
    tags.extend(mask.overlap.map(|o| ("mask/overlap".to_string(), o)));
    tags.extend(
        mask.flat
            .iter()
            .map(|(g, f)| (format!("mask/flat/{g}"), *f)),
    );
    let layers = mask.layers.iter().enumerate();
    tags.extend(layers.map(|(i, f)| (format!("mask/layer/{i}"), *f)));
    tags
}
