//! `ire-train`: joins the model, the data pipeline and the optimizers into training runs.
//!
//! - [`RunConfig`]: the TOML run config (`[run] [model] [data] [optim] [schedule] [batch]
//!   [eval] [checkpoint] [metrics]`) with `--set key=value` overrides.
//! - [`train`]: the loop — gradient accumulation, data parallelism over several devices,
//!   global-norm clipping, AdmIRE's mask refresh, evaluation, metrics, atomic checkpoints and
//!   exact resume.
//! - Reliability: a guard against non-finite steps (`[guard]`), errors that stop every rank
//!   ([`dp::Rank::agree`]), verified durable checkpoints ([`checkpoint`]), resume checks
//!   ([`resume`]), signal handling ([`signals`]); `docs/reliability.md` has the table.
//! - [`compare`]: loss curves and the paper's speed-up table; [`groups`]: seeds of one config
//!   as one curve with a band, speed-ups per seed and aggregated; [`export`]: HF folders;
//!   [`sharpness`]: Tr(∇²L) and λ_max of a checkpoint; [`memory`]: the expected peak per device.
#![warn(missing_docs)]

pub mod bench;
pub mod checkpoint;
pub mod compare;
mod config;
pub mod dp;
mod error;
pub mod export;
pub mod fault;
pub mod groups;
pub mod memory;
pub mod metrics;
mod rank_loop;
pub mod resume;
pub mod sharpness;
pub mod signals;
mod trainer;

pub use config::{
    BatchSection, CheckpointSection, EvalSection, GuardSection, MetricsSection, ModelSection,
    NonFinitePolicy, RunConfig, RunSection,
};
pub use error::TrainError;
pub use rank_loop::evaluate;
pub use trainer::{memory_plan, train, TrainOptions, TrainSummary};
