//! Resume that cannot surprise: the config saved in a checkpoint is compared, key by key, with
//! the config the run is resumed with. A key that changes what is computed (model, optimizer,
//! schedule, data, seed, global batch) is an error naming the key and both values, unless the
//! user allows it (`--allow-change KEY`); harmless keys (evaluation, logging, checkpoint
//! cadence, the run's name and folder, the guard) may change freely. The device count and
//! micro-batch may change as long as the global batch stays: data positions are global sample
//! indices, so the same samples are seen.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{RunConfig, TrainError};

/// Keys (or whole sections, ending in `.`) that do not change the trained weights.
const HARMLESS: &[&str] = &[
    "run.name",
    "run.dir",
    "run.devices",
    "dist.",
    "batch.micro_batch",
    "batch.grad_accum",
    "eval.",
    "checkpoint.",
    "metrics.",
    "guard.",
];

/// The name of the derived key for `micro_batch × grad_accum × devices`.
pub const GLOBAL_BATCH_KEY: &str = "global_batch";

/// Checks that `now` may continue the run whose checkpoint at `dir` was saved with `saved`.
/// `allowed` are keys or sections (`optim` allows `optim.*`) the user accepts changing.
pub fn check_compatible(
    dir: &Path,
    saved: &RunConfig,
    now: &RunConfig,
    allowed: &[String],
) -> Result<(), TrainError> {
    let (old, new) = (flatten(saved)?, flatten(now)?);
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut changes = Vec::new();
    for key in keys {
        let (a, b) = (old.get(key), new.get(key));
        if a == b || is_harmless(key) || is_allowed(key, allowed) {
            continue;
        }
        changes.push(describe(key, a, b));
    }
    let (ga, gb) = (saved.global_batch(), now.global_batch());
    if ga != gb && !is_allowed(GLOBAL_BATCH_KEY, allowed) {
        changes.push(format!(
            "{GLOBAL_BATCH_KEY} (batch.micro_batch × batch.grad_accum × devices × processes): saved {ga}, now {gb}"
        ));
    }
    if changes.is_empty() {
        return Ok(());
    }
    Err(TrainError::checkpoint(
        dir,
        format!(
            "the run config changed since this checkpoint: {}. Resume with the saved values, or \
             accept a change with --allow-change KEY (repeatable)",
            changes.join("; ")
        ),
    ))
}

/// The keys whose values differ between two resolved configs (TOML text), each with both
/// values: `batch.micro_batch: 2 on rank 0, 4 here`.
pub(crate) fn differences(rank0: &str, mine: &str) -> String {
    let leaves = |text: &str| {
        toml::from_str::<toml::Value>(text)
            .map(|v| {
                let mut out = BTreeMap::new();
                walk(&v, String::new(), &mut out);
                out
            })
            .unwrap_or_default()
    };
    let (a, b) = (leaves(rank0), leaves(mine));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".into());
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {} on rank 0, {} here", show(a.get(k)), show(b.get(k))))
        .collect();
    match diffs.is_empty() {
        true => "(the texts differ, not the values)".into(),
        false => diffs.join("; "),
    }
}

fn describe(key: &str, a: Option<&String>, b: Option<&String>) -> String {
    let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".into());
    format!("{key}: saved {}, now {}", show(a), show(b))
}

fn is_harmless(key: &str) -> bool {
    HARMLESS.iter().any(|h| match h.strip_suffix('.') {
        Some(section) => key.starts_with(h) || key == section,
        None => key == *h,
    })
}

fn is_allowed(key: &str, allowed: &[String]) -> bool {
    allowed
        .iter()
        .any(|a| key == a || key.starts_with(&format!("{a}.")))
}

/// The config's leaves as `dotted.key → TOML text` (arrays are one leaf).
fn flatten(cfg: &RunConfig) -> Result<BTreeMap<String, String>, TrainError> {
    let value = toml::Value::try_from(cfg)
        .map_err(|e| TrainError::config("run config", format!("cannot serialise: {e}")))?;
    let mut out = BTreeMap::new();
    walk(&value, String::new(), &mut out);
    Ok(out)
}

fn walk(value: &toml::Value, prefix: String, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = match prefix.is_empty() {
                    true => k.clone(),
                    false => format!("{prefix}.{k}"),
                };
                walk(v, key, out);
            }
        }
        leaf => {
            out.insert(prefix, leaf.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[run]
name = "a"
dir = "runs/a"
seed = 3
[model]
preset = "tiny"
[optim]
name = "adamw"
[schedule]
lr_max = 1e-3
warmup = 2
total = 10
[batch]
micro_batch = 4
seq_len = 16
"#;

    fn cfg(overrides: &[&str]) -> RunConfig {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        RunConfig::parse(BASE, "test.toml", &o).unwrap()
    }

    fn check(saved: &[&str], now: &[&str], allowed: &[&str]) -> Result<(), String> {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        check_compatible(Path::new("ckpt"), &cfg(saved), &cfg(now), &allowed)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn harmless_changes_pass() {
        check(
            &[],
            &["eval.interval=7", "run.name=\"b\"", "checkpoint.keep=9"],
            &[],
        )
        .unwrap();
        // Two devices with half the micro-batch: the same global batch.
        check(
            &[],
            &["run.devices=[\"cpu\", \"cpu\"]", "batch.micro_batch=2"],
            &[],
        )
        .unwrap();
    }

    #[test]
    fn a_change_that_alters_training_names_the_key_and_both_values() {
        let err = check(&[], &["schedule.lr_max=2e-3", "run.seed=4"], &[]).unwrap_err();
        assert!(
            err.contains("schedule.lr_max: saved 0.001, now 0.002"),
            "{err}"
        );
        assert!(err.contains("run.seed: saved 3, now 4"), "{err}");
        assert!(err.contains("--allow-change"), "{err}");
        let err = check(&[], &["model.hidden_size=64"], &[]).unwrap_err();
        assert!(
            err.contains("model.hidden_size: saved (unset), now 64"),
            "{err}"
        );
        let err = check(&[], &["batch.micro_batch=2"], &[]).unwrap_err();
        assert!(
            err.contains("global_batch") && err.contains("saved 4, now 2"),
            "{err}"
        );
    }

    #[test]
    fn allowed_changes_pass_by_key_or_section() {
        check(&[], &["schedule.lr_max=2e-3"], &["schedule.lr_max"]).unwrap();
        check(
            &[],
            &["schedule.lr_max=2e-3", "schedule.total=20"],
            &["schedule"],
        )
        .unwrap();
        check(&[], &["batch.micro_batch=2"], &["global_batch"]).unwrap();
        assert!(check(&[], &["schedule.total=20"], &["schedule.lr_max"]).is_err());
    }
}
