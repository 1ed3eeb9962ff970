//! `ire-lab`: analysis of finished training runs, apart from training so that `ire-train`
//! stays the loop and does not depend on a plotting library.
//!
//! - [`curves`]: one run's `metrics.jsonl` (and `sharpness.jsonl`) as [`RunCurves`], and the
//!   paper's speed-up of one run over another.
//! - [`groups`]: runs whose configs differ only in the seed as one [`RunGroup`] — mean curve,
//!   min–max band, final loss mean ± std, speed-ups per seed and on the mean curve, the table.
//! - [`charts`]: the PNG/SVG charts of `ire compare`.
//! - [`mask`]: AdmIRE's flat share per parameter group over training (chart and table).
//! - [`sharpness`]: Hutchinson's Tr(∇²L) and λ_max of a checkpoint's validation loss
//!   (`ire sharpness`), recorded in `RUN/sharpness.jsonl`.
//!
//! - [`speedup`]: the study's estimators — the best lr of a grid, the baseline's fitted loss
//!   curve and the speed-up read from it, bootstrap intervals over seeds, the paired
//!   sign-flip test.
//!
//! - [`sweep`]: a sweep file's runs (a base config and axes of overrides) and where each
//!   stands (`ire sweep`).
#![warn(missing_docs)]

pub mod charts;
pub mod curves;
mod error;
pub mod groups;
pub mod mask;
pub mod sharpness;
pub mod speedup;
pub mod sweep;

pub use curves::RunCurves;
pub use error::LabError;
pub use groups::RunGroup;
