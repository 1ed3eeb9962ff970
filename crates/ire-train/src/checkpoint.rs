//! Checkpoints: one folder per step under `RUN_DIR/checkpoints/step-NNNNNN/` holding the model
//! in HF format (`model.safetensors`, `config.json`), the optimizer state (`optimizer/`), the
//! trainer state (step, tokens, loader position, clock), the resolved run config, and a
//! `manifest.json` with the size and sha256 of every other file.
//!
//! Durability, in order: everything is written into a hidden temporary folder; every file is
//! fsynced and hashed into the manifest; the folder is fsynced, renamed into place, and the
//! parent fsynced; the new checkpoint is read back and verified; only then are the oldest ones
//! beyond `keep` removed (never the newest one that verified). A crash at any point leaves every
//! earlier checkpoint intact, and [`clean_stale`] tidies what a crash left behind.
//!
//! On load, [`verify`] checks the manifest, so a truncated or overwritten file is one error
//! naming it; [`newest_good`] falls back to the previous checkpoint with a warning.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use ire_core::fs::{file_sha256, sync_dir, write_atomic};
use ire_llama::{save_hf, Llama};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// File name of the trainer state inside a checkpoint.
pub const STATE_FILE: &str = "trainer_state.json";
/// File name of the run config inside a checkpoint and the run directory.
pub const RUN_CONFIG_FILE: &str = "config.toml";
/// The run's copy of the tokenizer (in the run directory), used by `ire export`.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The run directory's lock file, present while a job trains into it (`ire_core::DirLock`).
pub const RUN_LOCK_FILE: &str = "run.lock";
/// Folder of the optimizer state inside a checkpoint.
pub const OPTIMIZER_DIR: &str = "optimizer";
/// Sizes and hashes of a checkpoint's files.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Everything besides weights and optimizer state needed to continue a run exactly
/// (`trainer_state.json`; docs/metrics.md documents every field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// Steps skipped because their loss or gradient norm was not finite (`guard.nonfinite =
    /// "skip"`).
    #[serde(default)]
    pub skipped_steps: usize,
}

impl TrainerState {
    /// The state of a run that has not started.
    pub fn fresh(seed: u64) -> Self {
        Self {
            step: 0,
            tokens: 0,
            wall_s: 0.0,
            seed,
            next_sample: 0,
            train_loss: None,
            val_loss: None,
            skipped_steps: 0,
        }
    }
}

/// One file in `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path relative to the checkpoint folder, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex sha256 of the contents.
    pub sha256: String,
}

/// `manifest.json`: every file of the checkpoint but itself, sorted by path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The files.
    pub files: Vec<ManifestEntry>,
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

/// Tidies what an interrupted save left in `checkpoints/`: a `.step-N.old` whose replacement
/// never landed is renamed back to `step-N`; other `.step-*.tmp` / `.old` folders are removed.
pub fn clean_stale(run_dir: &Path) -> Result<(), TrainError> {
    let dir = checkpoints_dir(run_dir);
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(&dir).map_err(|e| TrainError::io(&dir, e))? {
        let path = entry.map_err(|e| TrainError::io(&dir, e))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let Some(stem) = name.strip_prefix(".step-") else {
            continue;
        };
        if let Some(step) = stem.strip_suffix(".old") {
            let restored = dir.join(format!("step-{step}"));
            if !restored.exists() {
                tracing::warn!("restoring {} (a save was interrupted)", restored.display());
                std::fs::rename(&path, &restored).map_err(|e| TrainError::io(&path, e))?;
                continue;
            }
        } else if !stem.ends_with(".tmp") {
            continue;
        }
        tracing::warn!("removing {} (left by an interrupted save)", path.display());
        remove_path(&path)?;
    }
    Ok(())
}

fn remove_path(path: &Path) -> Result<(), TrainError> {
    let result = match path.is_dir() {
        true => std::fs::remove_dir_all(path),
        false => std::fs::remove_file(path),
    };
    result.map_err(|e| TrainError::io(path, e))
}

/// Writes a checkpoint durably, verifies it, and prunes old ones (see the module docs).
/// `save_optimizer` writes the optimizer state into the folder it is given. The model must
/// be finite: a checkpoint is never written with NaN or infinite weights.
pub fn save_checkpoint<B: Backend>(
    run_dir: &Path,
    model: &Llama<B>,
    state: &TrainerState,
    run_config_toml: &str,
    keep: usize,
    save_optimizer: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<PathBuf, TrainError> {
    let final_dir = checkpoint_path(run_dir, state.step);
    let bad = ire_llama::params::non_finite_params(model);
    if !bad.is_empty() {
        return Err(TrainError::checkpoint(
            &final_dir,
            format!(
                "not written: parameters hold NaN or infinite values ({})",
                bad.join(", ")
            ),
        ));
    }
    let parent = checkpoints_dir(run_dir);
    let tmp = parent.join(format!(".step-{:06}.tmp", state.step));
    if tmp.exists() {
        remove_path(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    save_hf(model, &tmp, &Default::default())?;
    save_optimizer(&tmp.join(OPTIMIZER_DIR))?;
    let json = serde_json::to_string_pretty(state).map_err(|e| {
        TrainError::checkpoint(&tmp, format!("cannot serialise the trainer state: {e}"))
    })?;
    write_atomic(&tmp.join(STATE_FILE), json.as_bytes())?;
    write_atomic(&tmp.join(RUN_CONFIG_FILE), run_config_toml.as_bytes())?;
    write_manifest(&tmp)?;
    sync_dir(&tmp)?;
    // Replace an older checkpoint of the same step only after the new one is complete.
    if final_dir.exists() {
        let old = parent.join(format!(".step-{:06}.old", state.step));
        std::fs::rename(&final_dir, &old).map_err(|e| TrainError::io(&final_dir, e))?;
        std::fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
        sync_dir(&parent)?;
        remove_path(&old)?;
    } else {
        std::fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    }
    sync_dir(&parent)?;
    verify(&final_dir)?;
    prune(run_dir, state.step, keep)?;
    Ok(final_dir)
}

/// Removes the oldest checkpoints so that `keep` remain, never `newest` (which just verified).
fn prune(run_dir: &Path, newest: usize, keep: usize) -> Result<(), TrainError> {
    let steps: Vec<usize> = list_checkpoints(run_dir)?
        .into_iter()
        .filter(|&s| s != newest)
        .collect();
    let excess = (steps.len() + 1).saturating_sub(keep.max(1));
    for step in &steps[..excess.min(steps.len())] {
        remove_path(&checkpoint_path(run_dir, *step))?;
    }
    Ok(sync_dir(&checkpoints_dir(run_dir))?)
}

/// Files under `dir` (recursively, sorted), without the manifest itself.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| TrainError::io(&d, e))? {
            let path = entry.map_err(|e| TrainError::io(&d, e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path != dir.join(MANIFEST_FILE) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn relative(dir: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(dir).unwrap_or(path);
    let parts: Vec<_> = rel.iter().map(|p| p.to_string_lossy()).collect();
    parts.join("/")
}

/// fsyncs every file of `dir` and writes `manifest.json` with their sizes and hashes.
fn write_manifest(dir: &Path) -> Result<(), TrainError> {
    let mut files = Vec::new();
    for path in files_under(dir)? {
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| TrainError::io(&path, e))?;
        let (bytes, sha256) = file_sha256(&path)?;
        files.push(ManifestEntry {
            path: relative(dir, &path),
            bytes,
            sha256,
        });
    }
    let folders: std::collections::BTreeSet<PathBuf> = files_under(dir)?
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    for folder in folders {
        sync_dir(&folder)?;
    }
    let json = serde_json::to_string_pretty(&Manifest { files })
        .map_err(|e| TrainError::checkpoint(dir, format!("cannot serialise the manifest: {e}")))?;
    write_atomic(&dir.join(MANIFEST_FILE), json.as_bytes())?;
    Ok(())
}

/// Checks every file of a checkpoint against its `manifest.json`: present, same size, same
/// sha256. The error names the first file that differs. A checkpoint without a manifest
/// (written before ire recorded one) passes with a warning.
pub fn verify(dir: &Path) -> Result<(), TrainError> {
    let path = dir.join(MANIFEST_FILE);
    if !path.exists() {
        tracing::warn!(
            "{}: no {MANIFEST_FILE} (an older checkpoint); its files cannot be verified",
            dir.display()
        );
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| TrainError::checkpoint(&path, format!("not a checkpoint manifest: {e}")))?;
    for entry in &manifest.files {
        let file = dir.join(&entry.path);
        let damaged = |what: String| {
            TrainError::checkpoint(&file, format!("damaged checkpoint file: {what}"))
        };
        let meta = std::fs::metadata(&file).map_err(|e| damaged(format!("{e}")))?;
        if meta.len() != entry.bytes {
            return Err(damaged(format!(
                "{} bytes, the manifest records {}",
                meta.len(),
                entry.bytes
            )));
        }
        let (_, sha256) = file_sha256(&file)?;
        if sha256 != entry.sha256 {
            return Err(damaged(format!(
                "sha256 {sha256}, the manifest records {}",
                entry.sha256
            )));
        }
    }
    Ok(())
}

/// The newest checkpoint of a run that verifies, falling back to older ones with a warning
/// naming what is damaged; `None` when the run has no checkpoint. An error only when every
/// checkpoint is damaged.
pub fn newest_good(run_dir: &Path) -> Result<Option<(usize, PathBuf)>, TrainError> {
    let steps = list_checkpoints(run_dir)?;
    let mut first_error = None;
    for &step in steps.iter().rev() {
        let dir = checkpoint_path(run_dir, step);
        match verify(&dir).and_then(|_| read_state(&dir).map(|_| ())) {
            Ok(()) => return Ok(Some((step, dir))),
            Err(e) => {
                tracing::warn!("skipping checkpoint {}: {e}", dir.display());
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        None => Ok(None),
        Some(e) => Err(TrainError::checkpoint(
            checkpoints_dir(run_dir),
            format!("every checkpoint is damaged; the newest: {e}"),
        )),
    }
}

/// Reads the trainer state of a checkpoint folder.
pub fn read_state(dir: &Path) -> Result<TrainerState, TrainError> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| TrainError::checkpoint(&path, format!("not a trainer state: {e}")))
}
