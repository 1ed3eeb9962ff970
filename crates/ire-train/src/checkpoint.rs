//! Checkpoints: one folder per step under `RUN_DIR/checkpoints/step-NNNNNN/` holding the model
//! in HF format (`model.safetensors`, `config.json`), the optimizer state (`optimizer/`), the
//! trainer state (step, tokens, loader position, clock) and the resolved run config.
//!
//! A checkpoint is written into a hidden temporary folder and renamed into place, so a crash
//! mid-save never damages an existing checkpoint; only then are the oldest ones beyond `keep`
//! removed.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use ire_llama::{save_hf, write_atomic, Llama};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// File name of the trainer state inside a checkpoint.
pub const STATE_FILE: &str = "trainer_state.json";
/// File name of the run config inside a checkpoint and the run directory.
pub const RUN_CONFIG_FILE: &str = "config.toml";
/// The run's copy of the tokenizer (in the run directory), used by `ire export`.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Folder of the optimizer state inside a checkpoint.
pub const OPTIMIZER_DIR: &str = "optimizer";

/// Everything besides weights and optimizer state needed to continue a run exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done; the next iteration to run.
    pub step: usize,
    /// Training tokens consumed.
    pub tokens: u64,
    /// Seconds spent training so far.
    pub wall_s: f64,
    /// The run seed (checked on resume).
    pub seed: u64,
    /// Global sample index the next training batch starts at (the loader's whole state).
    pub next_sample: u64,
    /// Last logged training loss.
    pub train_loss: Option<f64>,
    /// Last validation loss.
    pub val_loss: Option<f64>,
}

/// The checkpoints folder of a run.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// The folder of the checkpoint at `step`.
pub fn checkpoint_path(run_dir: &Path, step: usize) -> PathBuf {
    checkpoints_dir(run_dir).join(format!("step-{step:06}"))
}

/// Steps of the complete checkpoints of a run, ascending.
pub fn list_checkpoints(run_dir: &Path) -> Result<Vec<usize>, TrainError> {
    let dir = checkpoints_dir(run_dir);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut steps = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| TrainError::io(&dir, e))? {
        let entry = entry.map_err(|e| TrainError::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(n) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<usize>().ok())
        {
            if entry.path().join(STATE_FILE).exists() {
                steps.push(n);
            }
        }
    }
    steps.sort_unstable();
    Ok(steps)
}

/// Writes a checkpoint atomically and prunes old ones. `save_optimizer` writes the optimizer
/// state into the folder it is given.
pub fn save_checkpoint<B: Backend>(
    run_dir: &Path,
    model: &Llama<B>,
    state: &TrainerState,
    run_config_toml: &str,
    keep: usize,
    save_optimizer: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<PathBuf, TrainError> {
    let final_dir = checkpoint_path(run_dir, state.step);
    let tmp = checkpoints_dir(run_dir).join(format!(".step-{:06}.tmp", state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    save_hf(model, &tmp, &Default::default())?;
    save_optimizer(&tmp.join(OPTIMIZER_DIR))?;
    let json = serde_json::to_string_pretty(state).expect("trainer state serializes");
    write_atomic(&tmp.join(STATE_FILE), json.as_bytes())?;
    write_atomic(&tmp.join(RUN_CONFIG_FILE), run_config_toml.as_bytes())?;
    // Replace an older checkpoint of the same step only after the new one is complete.
    if final_dir.exists() {
        let old = checkpoints_dir(run_dir).join(format!(".step-{:06}.old", state.step));
        std::fs::rename(&final_dir, &old).map_err(|e| TrainError::io(&final_dir, e))?;
        std::fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
    } else {
        std::fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    }
    let steps = list_checkpoints(run_dir)?;
    if steps.len() > keep {
        for step in &steps[..steps.len() - keep] {
            let dir = checkpoint_path(run_dir, *step);
            std::fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        }
    }
    Ok(final_dir)
}

/// Reads the trainer state of a checkpoint folder.
pub fn read_state(dir: &Path) -> Result<TrainerState, TrainError> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| TrainError::checkpoint(&path, format!("not a trainer state: {e}")))
}
