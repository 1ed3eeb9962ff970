//! Metrics as JSON lines in `RUN_DIR/metrics.jsonl`: one object per logged train step
//! (`"split": "train"`) and per evaluation (`"split": "val"`). `ire compare` reads them back.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricLine {
    /// `"train"` or `"val"`.
    pub split: String,
    /// Optimizer steps done.
    pub step: usize,
    /// Training tokens consumed so far (all devices).
    pub tokens: u64,
    /// Mean loss (train: over the step's global batch; val: over the fixed windows).
    pub loss: f64,
    /// Learning rate used at this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Global gradient norm before clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Training throughput of this step (all devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    /// Model FLOPs utilisation estimate (PaLM formula) against the configured peak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfu: Option<f64>,
    /// Seconds of training since the run started (excluding evaluation and checkpoints).
    pub wall_s: f64,
    /// AdmIRE: fraction of coordinates in the flat mask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_fraction: Option<f64>,
    /// AdmIRE: the boost κ_t applied at this step (0 before the start step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kappa_t: Option<f64>,
}

impl MetricLine {
    /// The fields that must be identical between an interrupted-and-resumed run and an
    /// uninterrupted one (everything but timings).
    pub fn deterministic_part(&self) -> MetricLine {
        MetricLine {
            tokens_per_s: None,
            mfu: None,
            wall_s: 0.0,
            ..self.clone()
        }
    }
}

/// Appends metric lines to a file, flushing each so a crash loses nothing already logged.
pub struct MetricsWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsWriter {
    /// Opens `path` for appending, first dropping lines past `keep_until_step` (the steps a
    /// resumed run will log again).
    pub fn open(path: &Path, keep_until_step: Option<usize>) -> Result<Self, TrainError> {
        if let Some(limit) = keep_until_step {
            if path.exists() {
                let lines = read_metrics(path)?;
                let kept: String = lines
                    .into_iter()
                    .filter(|l| l.step <= limit)
                    .map(|l| serde_json::to_string(&l).expect("metric lines serialize") + "\n")
                    .collect();
                std::fs::write(path, kept).map_err(|e| TrainError::io(path, e))?;
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes one line.
    pub fn write(&mut self, line: &MetricLine) -> Result<(), TrainError> {
        let text = serde_json::to_string(line).expect("metric lines serialize");
        writeln!(self.file, "{text}")
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

/// Reads every line of a `metrics.jsonl`; a malformed line is an error naming its number.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricLine>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                TrainError::checkpoint(path, format!("line {}: not a metrics line: {e}", i + 1))
            })
        })
        .collect()
}
