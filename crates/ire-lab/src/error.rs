//! Errors of the analysis tools, each naming the run, file or option at fault.

use std::path::PathBuf;

use ire_train::TrainError;

/// Everything that can stop `ire compare` or `ire sharpness`.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A bad option or config value.
    #[error("{key}: {message}")]
    Config {
        /// The option or key (a file path for a config that does not parse).
        key: String,
        /// What was expected.
        message: String,
    },
    /// A run directory or one of its files is not what the tool needs.
    #[error("{path}: {message}")]
    Run {
        /// The run directory, checkpoint or file.
        path: PathBuf,
        /// What is wrong and what to do.
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
    /// Plot rendering failed.
    #[error("drawing {path}: {message}")]
    Plot {
        /// The output file.
        path: PathBuf,
        /// The renderer's message.
        message: String,
    },
    /// From the trainer (configs, checkpoints, metrics files).
    #[error(transparent)]
    Train(Box<TrainError>),
    /// From the model crate (loading a checkpoint).
    #[error(transparent)]
    Model(Box<ire_llama::LlamaError>),
    /// From the data crate (the validation windows).
    #[error(transparent)]
    Data(Box<ire_data::DataError>),
    /// From the optimizer crate (the sharpness estimators).
    #[error(transparent)]
    Optim(Box<ire_optim::OptimError>),
}

// The other crates' errors are boxed: a `Result<_, LabError>` stays small.
impl From<TrainError> for LabError {
    fn from(e: TrainError) -> Self {
        LabError::Train(Box::new(e))
    }
}
impl From<ire_llama::LlamaError> for LabError {
    fn from(e: ire_llama::LlamaError) -> Self {
        LabError::Model(Box::new(e))
    }
}
impl From<ire_data::DataError> for LabError {
    fn from(e: ire_data::DataError) -> Self {
        LabError::Data(Box::new(e))
    }
}
impl From<ire_optim::OptimError> for LabError {
    fn from(e: ire_optim::OptimError) -> Self {
        LabError::Optim(Box::new(e))
    }
}

impl LabError {
    /// A [`LabError::Config`] for `key`.
    pub fn config(key: &str, message: impl Into<String>) -> Self {
        LabError::Config {
            key: key.to_string(),
            message: message.into(),
        }
    }
    /// A [`LabError::Run`] at `path`.
    pub fn run(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        LabError::Run {
            path: path.into(),
            message: message.into(),
        }
    }
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LabError::Io {
            path: path.into(),
            source,
        }
    }
}
