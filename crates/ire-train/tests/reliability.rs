//! Faults and bad input in the trainer: a failure on one rank stops every rank (errors and
//! panics, in every phase of the step), the guard against non-finite steps, resume checks,
//! resuming on another device count, damaged or half-written checkpoints, and a second job on a
//! run directory in use.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use ire_train::checkpoint::{self, checkpoint_path, list_checkpoints};
use ire_train::fault::Fault;
use ire_train::metrics::read_metrics;
use ire_train::{train, NonFinitePolicy, RunConfig, TrainError, TrainOptions, TrainSummary};

mod common;
use common::*;

/// Trains on a separate thread and gives up (failing the test) after `limit`: a hang is a
/// failure, not a stuck test run.
fn train_within(
    cfg: RunConfig,
    world: usize,
    opts: TrainOptions,
    limit: Duration,
) -> Result<TrainSummary, TrainError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(train::<B>(cfg, devices(world), opts, peak()));
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("training did not return within {limit:?}: a rank hangs"))
}

fn with_fault(fault: &str) -> TrainOptions {
    TrainOptions {
        fault: Some(Fault::parse(fault).unwrap()),
        ..Default::default()
    }
}

#[test]
fn a_failure_on_one_rank_stops_every_rank_with_that_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Each phase, on rank 0 (which alone logs, evaluates and saves) or rank 1, as an error or
    // a panic, in step 3 (1-based, after the checkpoint of step 2). AdmIRE refreshes its mask
    // before steps 4, 6, … (warm-up 2, interval 2).
    for (i, spec) in [
        "0:3:report",
        "1:3:report:panic",
        "1:0:setup",
        "0:0:setup:panic",
        "1:4:refresh",
        "0:4:refresh:panic",
        "1:3:micro",
        "0:3:micro:panic",
        "1:3:update",
        "0:3:update:panic",
    ]
    .iter()
    .enumerate()
    {
        let run = tmp.path().join(format!("run-{i}"));
        let cfg = config(&run, &data, "admire", 1, 2, 6);
        let err = train_within(cfg, 2, with_fault(spec), Duration::from_secs(120))
            .expect_err("the fault stops the run");
        let fault = Fault::parse(spec).unwrap();
        match (&err, fault.panic) {
            (TrainError::Injected { rank, step, .. }, false) => {
                assert_eq!((*rank, *step), (fault.rank, fault.step), "{spec}: {err}")
            }
            (TrainError::Panic { rank, message, .. }, true) => {
                assert_eq!(*rank, fault.rank, "{spec}: {err}");
                assert!(message.contains("injected panic"), "{spec}: {err}");
            }
            _ => panic!("{spec}: expected the injected fault, got: {err}"),
        }
        // What was saved before the fault is intact.
        for step in list_checkpoints(&run).unwrap() {
            assert!(step <= 2, "{spec}: checkpoint at step {step}");
            checkpoint::verify(&checkpoint_path(&run, step)).unwrap();
        }
    }
}

#[test]
fn a_non_finite_step_is_never_applied_and_skip_continues_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Stop (the default): the error names the step, the cause and the newest good checkpoint.
    let run = tmp.path().join("stop");
    let err = train_within(
        config(&run, &data, "adamw", 2, 1, 8),
        1,
        with_fault("0:5:nan"),
        Duration::from_secs(120),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, TrainError::NonFinite { step: 5, .. }),
        "{msg}"
    );
    assert!(msg.contains("training loss (NaN)"), "{msg}");
    assert!(
        msg.contains("step-000004"),
        "names the newest good checkpoint: {msg}"
    );
    assert_eq!(list_checkpoints(&run).unwrap(), vec![2, 4]);

    // Skip: the update of step 5 is skipped, the run finishes, the skip is recorded, and the
    // NaN loss line reads back.
    let run = tmp.path().join("skip");
    let mut cfg = config(&run, &data, "adamw", 2, 1, 8);
    cfg.guard.nonfinite = NonFinitePolicy::Skip;
    let s = train_within(cfg, 1, with_fault("0:5:nan"), Duration::from_secs(120)).unwrap();
    assert_eq!(s.steps, 8);
    let state = checkpoint::read_state(&checkpoint_path(&run, 8)).unwrap();
    assert_eq!(state.skipped_steps, 1);
    let lines = read_metrics(&run.join("metrics.jsonl")).unwrap();
    let bad: Vec<_> = lines
        .iter()
        .filter(|l| l.loss.is_nan())
        .map(|l| l.step)
        .collect();
    assert_eq!(bad, vec![5]);

    // Skip with a limit of 0 skipped steps stops like "stop" and says why.
    let run = tmp.path().join("limit");
    let mut cfg = config(&run, &data, "adamw", 2, 1, 8);
    cfg.guard.nonfinite = NonFinitePolicy::Skip;
    cfg.guard.max_skipped = 0;
    let err = train_within(cfg, 1, with_fault("0:5:nan"), Duration::from_secs(120)).unwrap_err();
    assert!(err.to_string().contains("guard.max_skipped"), "{err}");
}

#[test]
fn resume_refuses_a_changed_config_and_leaves_the_run_resumable() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, data) = (tmp.path().join("run"), tmp.path().join("data"));
    let cfg = || config(&run, &data, "adamw", 2, 1, 6);
    train::<B>(cfg(), devices(1), opts(false, Some(2)), peak()).unwrap();
    let saved = std::fs::read(run.join("config.toml")).unwrap();

    let mut changed = cfg();
    changed.schedule.lr_max = 1e-2;
    changed.model.hidden_size = Some(64);
    let err = train::<B>(changed.clone(), devices(1), opts(true, None), peak())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("schedule.lr_max: saved 0.003, now 0.01"),
        "{err}"
    );
    assert!(err.contains("model.hidden_size: saved 32, now 64"), "{err}");
    assert_eq!(saved, std::fs::read(run.join("config.toml")).unwrap());

    // A harmless change passes; an allowed one too.
    let mut harmless = cfg();
    harmless.eval.interval = 3;
    train::<B>(harmless, devices(1), opts(true, Some(3)), peak()).unwrap();
    let mut lr = cfg();
    lr.schedule.lr_max = 1e-2;
    let allow = TrainOptions {
        resume: true,
        allow_changes: vec!["schedule".into()],
        ..Default::default()
    };
    let s = train::<B>(lr, devices(1), allow, peak()).unwrap();
    assert_eq!(s.steps, 6);
}

#[test]
fn resuming_on_two_devices_at_the_same_global_batch_continues_the_same_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (one, cut) = (tmp.path().join("one"), tmp.path().join("cut"));
    train::<B>(
        config(&one, &data, "admire", 4, 1, 4),
        devices(1),
        opts(false, None),
        peak(),
    )
    .unwrap();
    train::<B>(
        config(&cut, &data, "admire", 4, 1, 4),
        devices(1),
        opts(false, Some(2)),
        peak(),
    )
    .unwrap();
    // Same global batch (2 devices × 2): the same samples, the same steps.
    let s = train::<B>(
        config(&cut, &data, "admire", 2, 2, 4),
        devices(2),
        opts(true, None),
        peak(),
    )
    .unwrap();
    assert_eq!(s.steps, 4);
    let (a, b) = (weights(&one, 4), weights(&cut, 4));
    let worst = worst_relative_difference(&a, &b);
    assert!(
        worst < 1e-4,
        "resumed on 2 devices: parameters differ by {worst} (relative)"
    );
}

/// Flips one byte in the middle of `path`.
fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_damaged_checkpoint_is_named_and_resume_falls_back_to_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (full, cut) = (tmp.path().join("full"), tmp.path().join("cut"));
    train::<B>(
        config(&full, &data, "admire", 2, 1, 8),
        devices(1),
        opts(false, None),
        peak(),
    )
    .unwrap();
    train::<B>(
        config(&cut, &data, "admire", 2, 1, 8),
        devices(1),
        opts(false, Some(4)),
        peak(),
    )
    .unwrap();
    assert_eq!(list_checkpoints(&cut).unwrap(), vec![2, 4]);
    let newest = checkpoint_path(&cut, 4);
    let weights_file = newest.join("model.safetensors");
    corrupt(&weights_file);
    let err = checkpoint::verify(&newest).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("sha256"),
        "{err}"
    );
    // A truncated optimizer file is named too.
    let second = checkpoint_path(&cut, 2);
    let manifest = std::fs::read_to_string(second.join("manifest.json")).unwrap();
    let optim_file = manifest
        .split('"')
        .find(|s| s.starts_with("optimizer/"))
        .unwrap()
        .to_string();
    let backup = std::fs::read(second.join(&optim_file)).unwrap();
    std::fs::write(second.join(&optim_file), &backup[..backup.len() / 2]).unwrap();
    let err = checkpoint::verify(&second).unwrap_err().to_string();
    assert!(err.contains(&optim_file) && err.contains("bytes"), "{err}");
    std::fs::write(second.join(&optim_file), &backup).unwrap();

    // Leftovers of an interrupted save: a temp folder is removed on resume.
    let stale = checkpoint::checkpoints_dir(&cut).join(".step-000006.tmp");
    std::fs::create_dir_all(&stale).unwrap();
    // Resume falls back to step 2 and reproduces the uninterrupted run exactly.
    let s = train::<B>(
        config(&cut, &data, "admire", 2, 1, 8),
        devices(1),
        opts(true, None),
        peak(),
    )
    .unwrap();
    assert_eq!(s.steps, 8);
    assert!(!stale.exists(), "stale temp folder removed");
    assert_eq!(deterministic(&full), deterministic(&cut));
    assert_eq!(weights(&full, 8), weights(&cut, 8));
}

#[test]
fn checkpoints_are_verified_and_the_newest_is_never_pruned() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let mut cfg = config(&run, &tmp.path().join("data"), "adamw", 2, 1, 6);
    cfg.checkpoint.keep = 1;
    train::<B>(cfg, devices(1), opts(false, None), peak()).unwrap();
    assert_eq!(list_checkpoints(&run).unwrap(), vec![6]);
    let dir = checkpoint_path(&run, 6);
    checkpoint::verify(&dir).unwrap();
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    for file in [
        "model.safetensors",
        "config.json",
        "trainer_state.json",
        "config.toml",
    ] {
        assert!(
            manifest.contains(&format!("\"{file}\"")),
            "{file} in {manifest}"
        );
    }
    // A `.old` folder whose replacement never landed is restored on resume.
    let old = checkpoint::checkpoints_dir(&run).join(".step-000006.old");
    std::fs::rename(&dir, &old).unwrap();
    checkpoint::clean_stale(&run).unwrap();
    assert!(dir.join("trainer_state.json").exists() && !old.exists());
}

/// The folder's entries, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_second_job_on_a_run_directory_in_use_is_refused_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    // The first job (this test) holds the lock; its directory has no checkpoint yet.
    let held = ire_train::lock_run_dir(&run).unwrap();
    std::fs::write(run.join("metrics.jsonl"), "").unwrap();
    let before = names(&run);
    assert_eq!(before, ["metrics.jsonl", "run.lock"]);
    let me = std::process::id();
    for resume in [false, true] {
        let cfg = config(&run, &tmp.path().join("data"), "adamw", 1, 1, 4);
        let err = train::<B>(cfg, devices(1), opts(resume, None), peak()).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(&err, TrainError::RunLocked { holder, .. } if holder.pid == me),
            "resume {resume}: {msg}"
        );
        let lock = run.join("run.lock").display().to_string();
        for part in [
            &run.display().to_string(),
            &format!("pid {me} on host"),
            &lock,
        ] {
            assert!(msg.contains(part.as_str()), "{part:?} not in {msg}");
        }
        assert!(
            !msg.contains("delete the directory") && !msg.contains("nothing to resume"),
            "{msg}"
        );
        // Refused before anything was read or written: no config, no data, no metrics.
        assert_eq!(names(&run), before);
        assert!(!tmp.path().join("data").exists());
    }
    drop(held);
    assert_eq!(names(&run), ["metrics.jsonl"]);
}
