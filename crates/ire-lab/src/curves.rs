//! One run's curves as `ire train` wrote them (`metrics.jsonl`, and `sharpness.jsonl` when
//! measured), and the paper's speed-up (Fig. 4): for a baseline B and a candidate A, the first
//! step at which A's validation loss reaches B's final validation loss, and B's total steps
//! divided by that step. [`RunSetup`] says what the run trained (model, data, batch), from the
//! resolved config every run folder keeps.

use std::path::Path;

use ire_train::checkpoint::RUN_CONFIG_FILE;
use ire_train::metrics::{read_metrics, MetricLine};
use ire_train::RunConfig;

use crate::sharpness::{read_records, SharpnessRecord};
use crate::LabError;

/// What a run trained, in words for chart titles: from `RUN/config.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSetup {
    /// The model: preset, width, depth and parameters (`Llama tiny: hidden 256, 4 layers, 7.4M params`).
    pub model: String,
    /// The dataset's short name (`embedded`, `wikitext-103`, …).
    pub data: String,
    /// The global batch (`batch 8 × 256 tokens`).
    pub batch: String,
}

impl RunSetup {
    /// The setup of a run's resolved config (`None` when the folder has none or it no longer
    /// parses: the charts then leave it out of their titles).
    pub fn load(run_dir: &Path) -> Option<RunSetup> {
        Self::of(&saved_config(run_dir)?)
    }

    /// The setup of a config.
    pub fn of(cfg: &RunConfig) -> Option<RunSetup> {
        let m = cfg.model.resolve().ok()?;
        Some(RunSetup {
            model: format!(
                "Llama {}: hidden {}, {} layers, {:.1}M params",
                cfg.model.preset,
                m.hidden_size,
                m.num_hidden_layers,
                m.num_params() as f64 / 1e6
            ),
            data: cfg.data.dataset.name(),
            batch: format!("batch {} × {} tokens", cfg.global_batch(), cfg.seq_len(&m)),
        })
    }
}

/// One run's curves.
#[derive(Debug, Clone)]
pub struct RunCurves {
    /// Display name (the run directory's name).
    pub name: String,
    /// Train lines in step order.
    pub train: Vec<MetricLine>,
    /// Validation lines in step order.
    pub val: Vec<MetricLine>,
    /// `ire sharpness` measurements (`sharpness.jsonl`), in file order; empty when none.
    pub sharpness: Vec<SharpnessRecord>,
    /// What it trained (`None`: no readable `config.toml`).
    pub setup: Option<RunSetup>,
    /// Its `run.seed` (`None`: no readable `config.toml`), which pairs it with another group's
    /// run of the same seed.
    pub seed: Option<u64>,
}

/// `RUN/config.toml` as ire wrote it (configs saved by older versions load too).
fn saved_config(run_dir: &Path) -> Option<RunConfig> {
    RunConfig::load_saved(&run_dir.join(RUN_CONFIG_FILE), &[]).ok()
}

impl RunCurves {
    /// Reads `RUN_DIR/metrics.jsonl`.
    pub fn load(run_dir: &Path) -> Result<Self, LabError> {
        let path = run_dir.join("metrics.jsonl");
        if !path.exists() {
            return Err(LabError::run(
                run_dir,
                "no metrics.jsonl here; is this a run directory of `ire train`?",
            ));
        }
        let lines = read_metrics(&path)?;
        let (val, train): (Vec<_>, Vec<_>) = lines.into_iter().partition(|l| l.split == "val");
        let name = run_dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| run_dir.display().to_string());
        let sharpness = read_records(run_dir)?;
        Ok(Self {
            name,
            train,
            val,
            sharpness,
            setup: RunSetup::load(run_dir),
            seed: saved_config(run_dir).map(|c| c.run.seed),
        })
    }

    /// Last validation loss.
    pub fn final_val(&self) -> Option<f64> {
        self.val.last().map(|l| l.loss)
    }

    /// Last training loss.
    pub fn final_train(&self) -> Option<f64> {
        self.train.last().map(|l| l.loss)
    }

    /// Total steps of the run.
    pub fn total_steps(&self) -> usize {
        self.train
            .last()
            .map(|l| l.step)
            .unwrap_or(0)
            .max(self.val.last().map(|l| l.step).unwrap_or(0))
    }
}

/// The paper's speed-up of `candidate` over `baseline`: `(first step where candidate's val loss
/// ≤ baseline's final val loss, baseline total steps / that step)`; `None` if never reached.
pub fn speedup(baseline: &RunCurves, candidate: &RunCurves) -> Option<(usize, f64)> {
    let target = baseline.final_val()?;
    let curve = candidate.val.iter().map(|l| (l.step, l.loss));
    first_reach(curve, target, baseline.total_steps())
}

/// The first `(step, loss)` of `curve` with loss ≤ `target`, and `baseline_steps / step`.
pub(crate) fn first_reach(
    mut curve: impl Iterator<Item = (usize, f64)>,
    target: f64,
    baseline_steps: usize,
) -> Option<(usize, f64)> {
    let (step, _) = curve.find(|&(_, loss)| loss <= target)?;
    Some((step, baseline_steps as f64 / step.max(1) as f64))
}
