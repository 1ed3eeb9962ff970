//! When a rank saves a checkpoint, and which one is the newest: every `checkpoint.interval`
//! steps, at the last step and when a signal stops the run; the writing itself (durable,
//! verified, pruned) is [`crate::checkpoint::save_checkpoint`].

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use ire_llama::Llama;
use ire_optim::Optimizer;

use crate::checkpoint::{save_checkpoint, TrainerState};
use crate::run::Shared;
use crate::TrainError;

/// The run's checkpoint cadence and its newest checkpoint.
pub(crate) struct Checkpointer<'a> {
    run_dir: &'a Path,
    config_toml: &'a str,
    interval: usize,
    keep: usize,
    newest: Option<PathBuf>,
}

impl<'a> Checkpointer<'a> {
    /// The cadence of `shared`'s config; `resumed_from` is the newest checkpoint so far.
    pub fn new(shared: &'a Shared, resumed_from: Option<&Path>) -> Self {
        Self {
            run_dir: &shared.run_dir,
            config_toml: &shared.config_toml,
            interval: shared.cfg.checkpoint.interval,
            keep: shared.cfg.checkpoint.keep,
            newest: resumed_from.map(Path::to_path_buf),
        }
    }

    /// Whether `step` is saved: every `checkpoint.interval` steps (0 = never), at the `last`
    /// step of this invocation, and when the run is `stopping` on a signal.
    pub fn due(&self, step: usize, last: bool, stopping: bool) -> bool {
        (self.interval > 0 && step.is_multiple_of(self.interval)) || last || stopping
    }

    /// The newest checkpoint written or resumed from.
    pub fn newest(&self) -> Option<&Path> {
        self.newest.as_deref()
    }

    /// Saves the model, the optimizer and `state`; `kill` aborts the process halfway (the
    /// `kill` fault of [`crate::fault`]).
    pub fn save<B: AutodiffBackend>(
        &mut self,
        model: &Llama<B>,
        state: &TrainerState,
        optim: &Optimizer<B>,
        kill: bool,
    ) -> Result<(), TrainError> {
        let dir = save_checkpoint(
            self.run_dir,
            model,
            state,
            self.config_toml,
            self.keep,
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
        self.newest = Some(dir);
        Ok(())
    }
}
