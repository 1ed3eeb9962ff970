//! `ire-train`: joins the model, the data pipeline and the optimizers into training runs.
//!
//! - [`RunConfig`]: the TOML run config (`[run] [model] [data] [optim] [schedule] [batch]
//!   [eval] [checkpoint] [metrics]`) with `--set key=value` overrides.
//! - [`step`]: the training step as callable pieces — `estimate_curvature` (AdmIRE's GNB
//!   estimate), `forward_backward` (micro-batches), `apply_update` (clip, [`guard`], optimizer
//!   step) — and the step-count convention (0-based iteration, 1-based step).
//! - [`train`]: the run — hold the run directory's lock ([`lock_run_dir`], `run.lock`), prepare
//!   data and model, resume, then one loop per device
//!   (`rank_loop.rs`) calling the step's pieces with the data-parallel agreement ([`dist`])
//!   between them and the cadence of log, evaluation and checkpoint after them.
//! - Reliability: the non-finite [`guard`], errors that stop every rank ([`dist::Group::agree`],
//!   each [`phase`] run inside [`fault::run_phase`]), verified durable checkpoints
//!   ([`checkpoint`]), resume checks ([`resume`]), signal handling ([`signals`]);
//!   `docs/reliability.md` has the table.
//! - [`metrics`]: `metrics.jsonl`; [`tensorboard`]: the same scalars as TensorBoard event files; [`export`]: HF folders; [`memory`]: the expected peak per
//!   device; [`bench`](mod@bench): `ire bench` (the same step on fixed tokens).
//!
//! Analysis of finished runs (charts, seed groups, speed-ups, sharpness) is the `ire-lab`
//! crate, so this one does not depend on a plotting library.
#![warn(missing_docs)]

pub mod bench;
pub mod checkpoint;
mod checkpointer;
mod config;
pub mod dist;
mod error;
mod eval;
pub mod export;
pub mod fault;
pub mod guard;
mod job;
pub mod memory;
pub mod metrics;
pub mod phase;
mod rank_loop;
pub mod reference;
mod report;
pub mod resume;
mod run;
mod setup;
pub mod signals;
pub mod step;
pub mod tensorboard;
mod trainer;

pub use config::{
    BatchSection, CheckpointSection, DistSection, EngineKind, EvalSection, GuardSection,
    MetricsSection, ModelSection, NonFinitePolicy, RunConfig, RunSection,
};
pub use error::TrainError;
pub use eval::evaluate;
pub use run::{TrainOptions, TrainSummary};
pub use setup::{lock_run_dir, memory_plan};
pub use trainer::train;
