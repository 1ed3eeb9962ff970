//! A sweep: one base config and axes of overrides, expanded to named runs (`ire sweep`).
//!
//! ```toml
//! config = "../configs/tiny-admire.toml"   # relative to this file
//! dir = "runs/study2"                      # each run in dir/<name>, logs in dir/logs/
//! set = ["schedule.total=1000"]            # overrides of every run
//!
//! [[axis]]                                 # the runs are the product of the axes
//! key = "schedule.lr_max"
//! name = "lr"                              # the axis' part of a run's name: lr2e-3
//! values = [1e-3, 2e-3]
//!
//! [[axis]]                                 # or labelled variants, each a list of overrides
//! variants = { adamw = ["optim.ire=false"], admire = [] }
//! ```
//!
//! Run names join the axes' parts in order with `-` (`lr0.001-s1-admire`); a run's state comes
//! from its folder: finished (a checkpoint at the last step), started (some checkpoint: resume
//! it), or not started.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ire_train::checkpoint::list_checkpoints;
use ire_train::RunConfig;
use serde::Deserialize;

use crate::LabError;

/// The sweep file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// The config every run starts from, relative to the sweep file.
    pub config: PathBuf,
    /// Where the runs go (`dir/<name>`), relative to the working directory.
    pub dir: PathBuf,
    /// Overrides of every run (`section.key=value`).
    #[serde(default)]
    pub set: Vec<String>,
    /// The axes, in name order.
    #[serde(default)]
    pub axis: Vec<Axis>,
}

/// One axis: a key and its values, or labelled lists of overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axis {
    /// The config key the values set (with `values`).
    #[serde(default)]
    pub key: Option<String>,
    /// The axis' prefix in run names (default: the key's last part; none for variants).
    #[serde(default)]
    pub name: Option<String>,
    /// The values of `key`.
    #[serde(default)]
    pub values: Vec<toml::Value>,
    /// Labelled variants, each a list of overrides (instead of `key` and `values`).
    #[serde(default)]
    pub variants: BTreeMap<String, Vec<String>>,
}

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRun {
    /// Its name (`lr0.001-s1-admire`), also its folder's.
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// Every override: the sweep's, then one per axis, then `run.dir` and `run.name`.
    pub overrides: Vec<String>,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// No folder.
    NotStarted,
    /// A folder without a checkpoint (stopped before its first): it starts again.
    NoCheckpoint,
    /// Its newest checkpoint is at this step, before the last.
    Started(usize),
    /// A checkpoint at the last step.
    Finished,
}

impl SweepSpec {
    /// Reads a sweep file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Self, LabError> {
        let bad = |message: String| LabError::Config {
            key: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let mut spec: SweepSpec = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        for (i, axis) in spec.axis.iter().enumerate() {
            let values = axis.key.is_some() && !axis.values.is_empty();
            let variants = !axis.variants.is_empty();
            if values == variants {
                let message = format!(
                    "axis {}: give `key` and `values`, or `variants` (a label and its overrides)",
                    i + 1
                );
                return Err(bad(message));
            }
        }
        let base = path.parent().unwrap_or(Path::new(""));
        spec.config = base.join(&spec.config);
        Ok(spec)
    }

    /// The runs: the product of the axes, the first axis varying slowest.
    pub fn runs(&self) -> Vec<SweepRun> {
        let mut runs = vec![(Vec::<String>::new(), self.set.clone())];
        for axis in &self.axis {
            let choices = axis.choices();
            runs = runs
                .into_iter()
                .flat_map(|(name, set)| {
                    choices.iter().map(move |(part, extra)| {
                        let mut name = name.clone();
                        name.push(part.clone());
                        (name, [set.clone(), extra.clone()].concat())
                    })
                })
                .collect();
        }
        runs.into_iter()
            .map(|(parts, mut overrides)| {
                let name = if parts.is_empty() {
                    "run".to_string()
                } else {
                    parts.join("-")
                };
                let dir = self.dir.join(&name);
                overrides.push(format!("run.dir=\"{}\"", dir.display()));
                overrides.push(format!("run.name=\"{name}\""));
                SweepRun {
                    name,
                    dir,
                    overrides,
                }
            })
            .collect()
    }

    /// Checks that every run's config resolves (before anything runs); the error names the run.
    pub fn check(&self) -> Result<(), LabError> {
        for run in self.runs() {
            RunConfig::load(&self.config, &run.overrides).map_err(|e| LabError::Config {
                key: format!("{} (run {})", self.config.display(), run.name),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }
}

impl Axis {
    /// `(name part, overrides)` per value or variant.
    fn choices(&self) -> Vec<(String, Vec<String>)> {
        if let Some(key) = &self.key {
            let prefix = self
                .name
                .clone()
                .unwrap_or_else(|| key.rsplit('.').next().unwrap_or(key).to_string());
            return self
                .values
                .iter()
                .map(|v| {
                    let shown = match v {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (format!("{prefix}{shown}"), vec![format!("{key}={v}")])
                })
                .collect();
        }
        let prefix = self.name.clone().unwrap_or_default();
        self.variants
            .iter()
            .map(|(label, set)| (format!("{prefix}{label}"), set.clone()))
            .collect()
    }
}

impl SweepRun {
    /// Where the run stands, against its config's last step `total`.
    pub fn state(&self, total: usize) -> RunState {
        if !self.dir.exists() {
            return RunState::NotStarted;
        }
        match list_checkpoints(&self.dir)
            .ok()
            .and_then(|c| c.last().copied())
        {
            None => RunState::NoCheckpoint,
            Some(step) if step >= total => RunState::Finished,
            Some(step) => RunState::Started(step),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<SweepSpec, LabError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.toml");
        std::fs::write(&path, text).unwrap();
        SweepSpec::load(&path)
    }

    #[test]
    fn axes_expand_to_named_runs_with_their_overrides() {
        let s = spec(
            r#"
config = "tiny.toml"
dir = "runs/s"
set = ["schedule.total=8"]

[[axis]]
key = "schedule.lr_max"
name = "lr"
values = [1e-3, 2e-3]

[[axis]]
key = "run.seed"
name = "s"
values = [1, 2]

[[axis]]
variants = { adamw = ["optim.ire=false"], admire = [] }
"#,
        )
        .unwrap();
        assert!(s.config.ends_with("tiny.toml") && s.config.is_absolute());
        let runs = s.runs();
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names.len(), 8);
        assert_eq!(
            &names[..3],
            ["lr0.001-s1-adamw", "lr0.001-s1-admire", "lr0.001-s2-adamw"]
        );
        assert_eq!(names[7], "lr0.002-s2-admire");
        assert_eq!(
            runs[0].overrides,
            [
                "schedule.total=8",
                "schedule.lr_max=0.001",
                "run.seed=1",
                "optim.ire=false",
                "run.dir=\"runs/s/lr0.001-s1-adamw\"",
                "run.name=\"lr0.001-s1-adamw\"",
            ]
        );
        assert_eq!(runs[7].dir, Path::new("runs/s/lr0.002-s2-admire"));
    }

    #[test]
    fn a_bad_axis_is_named() {
        let err = spec("config = \"c.toml\"\ndir = \"d\"\n[[axis]]\nkey = \"run.seed\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sweep.toml") && err.contains("axis 1"),
            "{err}"
        );
        let err = spec("config = \"c.toml\"\ndir = \"d\"\nworkers = 2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("workers"), "{err}");
    }
}
