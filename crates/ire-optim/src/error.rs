//! The crate's error type: every variant names the config field or the file at fault.

use std::path::PathBuf;

/// Errors from building an optimizer or schedule, and from saving/loading optimizer state.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A config value is out of range or inconsistent with another one.
    #[error("invalid [{section}] {field}: {message}")]
    Config {
        /// The TOML section (`optim` or `schedule`).
        section: &'static str,
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A sharpness estimate got inconsistent inputs (e.g. a gradient of the wrong length).
    #[error("sharpness: {0}")]
    Sharpness(String),
    /// Reading or writing a state file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A safetensors state file could not be written or parsed.
    #[error("safetensors error in {file}: {message}")]
    Safetensors {
        /// The file.
        file: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The JSON part of the state could not be written or parsed.
    #[error("JSON error in {file}: {message}")]
    Json {
        /// The file.
        file: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A state tensor is missing, has the wrong dtype or the wrong shape.
    #[error("optimizer state {file}: tensor `{tensor}`: {message}")]
    StateTensor {
        /// The safetensors file.
        file: PathBuf,
        /// The tensor name (`<parameter>.exp_avg`, `.exp_avg_sq` or `.mask`).
        tensor: String,
        /// What is wrong with it.
        message: String,
    },
}

impl OptimError {
    /// A [`OptimError::Config`] for `[optim] field`.
    pub(crate) fn optim(field: &'static str, message: impl Into<String>) -> Self {
        Self::Config {
            section: "optim",
            field,
            message: message.into(),
        }
    }

    /// A [`OptimError::Config`] for `[schedule] field`.
    pub(crate) fn schedule(field: &'static str, message: impl Into<String>) -> Self {
        Self::Config {
            section: "schedule",
            field,
            message: message.into(),
        }
    }
}

impl From<ire_core::IoError> for OptimError {
    fn from(e: ire_core::IoError) -> Self {
        let (path, source) = e.into_parts();
        OptimError::Io { path, source }
    }
}
