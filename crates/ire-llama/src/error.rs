//! Errors of the model crate: bad configs and bad checkpoints, each naming the field or tensor at fault.

use std::path::PathBuf;

/// Everything that can go wrong building, loading or saving a Llama model.
#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    /// A config field has a value ire does not support (or that is inconsistent).
    #[error("{file}: field `{field}` = {found}; expected {expected}")]
    ConfigValue {
        /// The config file (or `<preset>` / `<config>` when not from a file).
        file: String,
        /// The offending field, named as in HF `config.json`.
        field: String,
        /// What was found.
        found: String,
        /// What ire expects.
        expected: String,
    },
    /// An unknown preset name.
    #[error("unknown model preset `{0}`; expected one of: tiny, 60m, 119m, 229m")]
    UnknownPreset(String),
    /// The checkpoint lacks a tensor the model needs.
    #[error("{file}: missing tensor `{name}` (expected shape {expected:?})")]
    MissingTensor {
        /// The safetensors file.
        file: PathBuf,
        /// HF parameter name.
        name: String,
        /// Shape the model expects.
        expected: Vec<usize>,
    },
    /// The checkpoint has tensors that the model does not have.
    #[error("{file}: unexpected tensor(s) {names:?} not in a Llama with this config")]
    UnexpectedTensors {
        /// The safetensors file.
        file: PathBuf,
        /// The names that have no place in the model.
        names: Vec<String>,
    },
    /// A tensor has the wrong shape.
    #[error("{file}: tensor `{name}` has shape {found:?}; expected {expected:?}")]
    TensorShape {
        /// The safetensors file.
        file: PathBuf,
        /// HF parameter name.
        name: String,
        /// Shape the model expects.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// A tensor has a dtype ire cannot read.
    #[error("{file}: tensor `{name}` has dtype {found}; expected F32, BF16 or F16")]
    TensorDtype {
        /// The safetensors file.
        file: PathBuf,
        /// HF parameter name.
        name: String,
        /// The dtype in the file.
        found: String,
    },
    /// A file is not valid safetensors.
    #[error("{file}: not a valid safetensors file: {message}")]
    Safetensors {
        /// The file.
        file: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A file is not valid JSON of the expected form.
    #[error("{file}: {message}")]
    Json {
        /// The file.
        file: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// An I/O failure on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl LlamaError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LlamaError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<ire_core::IoError> for LlamaError {
    fn from(e: ire_core::IoError) -> Self {
        let (path, source) = e.into_parts();
        LlamaError::Io { path, source }
    }
}
