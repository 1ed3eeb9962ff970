//! Errors of the trainer: config keys, run directories, checkpoints, numerics, each naming what
//! is at fault and what to do.

use std::path::PathBuf;

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A config key has a bad value.
    #[error("{key}: {message}")]
    Config {
        /// The key path, e.g. `configs/tiny.toml: optim.ire.kappa`.
        key: String,
        /// What is expected there.
        message: String,
    },
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint or run directory is unusable.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The checkpoint or run directory.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// Another `ire train` job holds the run directory's lock (`run.lock`): two jobs would
    /// write the same metrics and checkpoints.
    #[error(
        "{dir}: another ire train job ({holder}) is using this run directory; wait for it to end, \
         or if that process is gone from that host, delete {file}"
    )]
    RunLocked {
        /// The run directory.
        dir: PathBuf,
        /// Its lock file.
        file: PathBuf,
        /// The job holding it: pid, host and start time.
        holder: ire_core::Holder,
    },
    /// A step's loss or gradient norm was NaN or infinite; the update was not applied.
    #[error("non-finite {cause} at step {step}: the update was not applied and the run stopped. {last_good}")]
    NonFinite {
        /// The step (1-based, as logged) whose values were not finite.
        step: usize,
        /// What was not finite, e.g. `training loss (NaN)`.
        cause: String,
        /// Where the newest good checkpoint is.
        last_good: String,
    },
    /// Another data-parallel rank failed; its message is carried here.
    #[error("rank {rank} failed: {message}")]
    Peer {
        /// The first failing rank.
        rank: usize,
        /// Its error.
        message: String,
    },
    /// A value that must be equal on every rank (the config, the data) differs.
    #[error("rank {rank} does not match rank 0: {detail}")]
    RankMismatch {
        /// The rank that differs.
        rank: usize,
        /// What differs.
        detail: String,
    },
    /// A rank's thread panicked (a bug); the run stopped on every rank.
    #[error("rank {rank} panicked during {phase}: {message}")]
    Panic {
        /// The rank.
        rank: usize,
        /// The phase of the step.
        phase: crate::phase::Phase,
        /// The panic's message.
        message: String,
    },
    /// A fault injected by a test (`TrainOptions::fault`, `IRE_FAULT`).
    #[error("injected fault: rank {rank}, step {step}, {phase}")]
    Injected {
        /// The rank.
        rank: usize,
        /// The step (1-based; 0 for setup on a fresh run).
        step: usize,
        /// The phase.
        phase: crate::phase::Phase,
    },
    /// From the model crate.
    #[error(transparent)]
    Model(#[from] ire_llama::LlamaError),
    /// From the data crate.
    #[error(transparent)]
    Data(#[from] ire_data::DataError),
    /// From the optimizer crate.
    #[error(transparent)]
    Optim(#[from] ire_optim::OptimError),
    /// A data-parallel collective operation failed (or the group could not form).
    #[error("data-parallel collective failed: {0}")]
    Collective(String),
}

impl TrainError {
    /// A config error for `key` expecting `message`.
    pub fn config(key: &str, message: impl Into<String>) -> Self {
        TrainError::Config {
            key: key.to_string(),
            message: message.into(),
        }
    }
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
    /// A checkpoint error at `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        TrainError::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl From<ire_core::LockError> for TrainError {
    /// The run directory's lock: held is [`TrainError::RunLocked`].
    fn from(e: ire_core::LockError) -> Self {
        match e {
            ire_core::LockError::Held { dir, file, holder } => {
                TrainError::RunLocked { dir, file, holder }
            }
            ire_core::LockError::Io(e) => e.into(),
        }
    }
}

impl From<ire_core::IoError> for TrainError {
    fn from(e: ire_core::IoError) -> Self {
        let (path, source) = e.into_parts();
        TrainError::Io { path, source }
    }
}
