//! `ire-train`: joins the model, the data pipeline and the optimizers into training runs.
//!
//! - [`RunConfig`]: the TOML run config (`[run] [model] [data] [optim] [schedule] [batch]
//!   [eval] [checkpoint] [metrics]`) with `--set key=value` overrides.
//! - [`train`]: the loop — gradient accumulation, data parallelism over several devices,
//!   global-norm clipping, AdmIRE's mask refresh, evaluation, metrics, atomic checkpoints and
//!   exact resume.
//! - [`compare`]: loss curves and the paper's speed-up table; [`export`]: HF folders.
#![warn(missing_docs)]

pub mod checkpoint;
pub mod compare;
mod config;
pub mod dp;
mod error;
pub mod export;
pub mod metrics;
mod trainer;

pub use config::{
    BatchSection, CheckpointSection, EvalSection, MetricsSection, ModelSection, RunConfig,
    RunSection,
};
pub use error::TrainError;
pub use trainer::{evaluate, install_ctrlc_handler, train, TrainOptions, TrainSummary};
