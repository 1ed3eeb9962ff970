//! The types a run is described by and reports with: how `ire train` was asked to run
//! ([`TrainOptions`]), what every rank reads ([`Shared`]), and what a finished run reports
//! ([`TrainSummary`]). Kept apart from the code that builds them (`trainer.rs`) and the code
//! that reads them (`rank_loop.rs`), so neither imports the other.

use std::path::PathBuf;

use ire_data::{Batch, Loader};
use ire_llama::LlamaConfig;
use ire_optim::Schedule;

use crate::dist::launch::Launch;
use crate::fault::Fault;
use crate::RunConfig;

/// How `ire train` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from the newest checkpoint in the run directory.
    pub resume: bool,
    /// Stop (with a checkpoint) once this many steps are done, before `schedule.total`.
    pub stop_at: Option<usize>,
    /// Draw a progress bar on the terminal (else plain progress lines, `metrics.progress_*`).
    pub progress: bool,
    /// Config keys (or sections) allowed to differ from the checkpoint's on resume.
    pub allow_changes: Vec<String>,
    /// Test hook: make one rank fail (see [`crate::fault`]).
    pub fault: Option<Fault>,
    /// The launcher's description of this process (one process unless started by mpirun,
    /// srun or torchrun).
    pub launch: Launch,
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Steps done.
    pub steps: usize,
    /// Last training loss.
    pub train_loss: Option<f64>,
    /// Last validation loss.
    pub val_loss: Option<f64>,
    /// The newest checkpoint.
    pub checkpoint: Option<PathBuf>,
    /// Whether the run stopped before `schedule.total` (a signal or `stop_at`).
    pub interrupted: bool,
    /// Whether it stopped because of a signal (SIGINT, SIGTERM, SIGHUP).
    pub signalled: bool,
}

/// What every rank of a run reads, built once by [`crate::train`].
pub(crate) struct Shared {
    /// The resolved run config.
    pub cfg: RunConfig,
    /// The same, as written into every checkpoint.
    pub config_toml: String,
    /// The model's shape.
    pub model_cfg: LlamaConfig,
    /// `run.dir`.
    pub run_dir: PathBuf,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// The training split's loader (batches by global sample index).
    pub train: Loader,
    /// The fixed validation windows.
    pub val: Batch,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// How the run was asked to run.
    pub opts: TrainOptions,
    /// Peak FLOP/s of one device, for MFU.
    pub peak_flops: f64,
}

impl Shared {
    /// Training tokens per optimizer step over all ranks.
    pub fn tokens_per_step(&self) -> u64 {
        (self.cfg.global_batch() * self.seq_len) as u64
    }

    /// The injected fault, if any (tests only).
    pub fn fault(&self) -> Option<&Fault> {
        self.opts.fault.as_ref()
    }
}
