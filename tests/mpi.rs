//! Multi-process training under `mpirun` (built with `--features mpi`; CI's MPI lane installs
//! OpenMPI): two processes train exactly what one process with two devices trains, a rank that
//! dies ends the job without losing a checkpoint and the run resumes, ranks that disagree on
//! the config stop with one error, and a two-process run resumes on one process.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

/// `mpirun -n N ire ARGS` in `cwd` (as root in CI, on 2 cores: both flags needed), with
/// `env` exported to every rank, output captured.
fn mpirun(n: usize, args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = Command::new("mpirun");
    cmd.args([
        "-n",
        &n.to_string(),
        "--oversubscribe",
        "--allow-run-as-root",
    ]);
    for (k, _) in env {
        cmd.args(["-x", k]);
    }
    cmd.arg(env!("CARGO_BIN_EXE_ire"))
        .args(args)
        .current_dir(cwd)
        .env("HF_HUB_OFFLINE", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun runs (install openmpi-bin)")
}

/// The 20-step AdmIRE run of these tests (mask refresh every 4 steps, checkpoints every 5),
/// into `dir`, with `extra` settings.
fn run_args(dir: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "train",
        "--config",
        &config("tiny-admire.toml"),
        "--no-progress",
    ]
    .map(String::from)
    .to_vec();
    args.extend(SMALL.map(String::from));
    let sets = [
        "schedule.total=20",
        "checkpoint.interval=5",
        "checkpoint.keep=4",
        "eval.interval=10",
        "optim.ire.interval=4",
        "batch.micro_batch=4",
    ];
    for set in sets.iter().chain(extra) {
        args.extend(["--set".to_string(), set.to_string()]);
    }
    args.extend(["--set".to_string(), format!("run.dir={dir}")]);
    args
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Waits (at most 30 s) until the job that held `dir`'s `run.lock` is gone: mpirun may return
/// while the ranks it killed are still exiting.
fn wait_for_the_holder_to_exit(dir: &Path) {
    let lock = dir.join("run.lock");
    let started = std::time::Instant::now();
    while let Ok(text) = std::fs::read_to_string(&lock) {
        let pid = text
            .lines()
            .find_map(|l| l.strip_prefix("pid="))
            .unwrap_or("0")
            .trim()
            .to_string();
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let dead = state
            .rsplit_once(')')
            .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'));
        if dead {
            return;
        }
        assert!(
            started.elapsed().as_secs() < 30,
            "the holder {pid} of {} still runs",
            lock.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn model(cwd: &Path, dir: &str, step: usize) -> std::path::PathBuf {
    cwd.join(dir)
        .join(format!("checkpoints/step-{step:06}/model.safetensors"))
}

#[test]
fn two_processes_train_what_two_devices_train_and_resume_on_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    ok(&ire(
        &["prepare", "--config", &config("tiny-admire.toml")],
        cwd,
    ));
    // The reference: one process, two devices (threads), global batch 2 × 4.
    let two_devices = run_args("runs/threads", &["run.devices=[\"cpu\", \"cpu\"]"]);
    ok(&ire(&strs(&two_devices), cwd));
    let procs = run_args("runs/procs", &[]);
    let out = wait_within(mpirun(2, &strs(&procs), cwd, &[]), 300);
    let stdout = ok(&out);
    // Rank 0 alone reports; the start-up log names rank, world, engine and launcher.
    assert_eq!(
        stdout.matches("finished after 20 steps").count(),
        1,
        "{stdout}"
    );
    let log = stderr(&out);
    for rank in ["rank 0 of 2", "rank 1 of 2"] {
        assert!(
            log.contains(&format!("{rank} (local rank"))
                && log.contains("engine mpi, launcher mpirun (OpenMPI)"),
            "{log}"
        );
    }
    assert!(log.contains("2 replica(s), global batch 8"), "{log}");
    // Bit for bit: the same samples per rank, the same reduction (a + b, then × 1/2).
    assert_eq!(
        metric_values(&cwd.join("runs/threads/metrics.jsonl")),
        metric_values(&cwd.join("runs/procs/metrics.jsonl")),
        "losses differ between 2 processes and 2 devices"
    );
    assert_eq!(
        std::fs::read(model(cwd, "runs/threads", 20)).unwrap(),
        std::fs::read(model(cwd, "runs/procs", 20)).unwrap(),
        "final weights differ between 2 processes and 2 devices"
    );

    // A 2-process run stopped at step 10, resumed by one process with twice the accumulation
    // (the same global batch): the same run, up to the order of the gradient sums.
    let cut = run_args("runs/cut", &[]);
    let mut cut_args = strs(&cut);
    cut_args.extend(["--stop-at", "10"]);
    ok(&wait_within(mpirun(2, &cut_args, cwd, &[]), 300));
    let out = ire(
        &[
            "train",
            "--resume",
            "runs/cut",
            "--no-progress",
            "--set",
            "batch.grad_accum=2",
        ],
        cwd,
    );
    assert!(ok(&out).contains("finished after 20 steps"));
    assert!(
        stderr(&out).contains("1 replica(s), global batch 8"),
        "{}",
        stderr(&out)
    );
    let worst =
        worst_relative_difference(&model(cwd, "runs/procs", 20), &model(cwd, "runs/cut", 20));
    assert!(
        worst < 1e-4,
        "resumed on 1 process: parameters differ by {worst} (relative)"
    );
}

#[test]
fn a_rank_that_dies_ends_the_job_and_the_run_resumes_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    ok(&ire(
        &["prepare", "--config", &config("tiny-admire.toml")],
        cwd,
    ));
    let full = run_args("runs/full", &[]);
    ok(&wait_within(mpirun(2, &strs(&full), cwd, &[]), 300));

    // Rank 1 aborts (as SIGKILL or OOM would) at step 12, after the checkpoint of step 10.
    let killed = run_args("runs/killed", &[]);
    let out = wait_within(
        mpirun(2, &strs(&killed), cwd, &[("IRE_FAULT", "1:12:kill")]),
        120,
    );
    assert!(!out.status.success(), "the job must fail");
    let log = stderr(&out);
    assert!(log.contains("rank 1 killed at step 12"), "{log}");
    assert!(
        !model(cwd, "runs/killed", 15).exists(),
        "no step after the death is saved"
    );
    wait_for_the_holder_to_exit(&cwd.join("runs/killed"));
    // Resumed under mpirun from step 10: exactly the uninterrupted run.
    let out = wait_within(
        mpirun(
            2,
            &["train", "--resume", "runs/killed", "--no-progress"],
            cwd,
            &[],
        ),
        300,
    );
    assert!(ok(&out).contains("finished after 20 steps"));
    assert!(
        stderr(&out).contains("resuming runs/killed from step 10"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        metric_values(&cwd.join("runs/full/metrics.jsonl")),
        metric_values(&cwd.join("runs/killed/metrics.jsonl")),
    );
    assert_eq!(
        std::fs::read(model(cwd, "runs/full", 20)).unwrap(),
        std::fs::read(model(cwd, "runs/killed", 20)).unwrap(),
    );
}

#[test]
fn ranks_with_different_configs_stop_with_one_error_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    ok(&ire(
        &["prepare", "--config", &config("tiny-admire.toml")],
        cwd,
    ));
    let a = run_args("runs/mixed", &[]);
    let b = run_args("runs/mixed", &["optim.ire.kappa=2"]);
    // MPMD: rank 0 runs `a`, rank 1 runs `b`.
    let mut cmd = Command::new("mpirun");
    cmd.args([
        "--oversubscribe",
        "--allow-run-as-root",
        "-n",
        "1",
        env!("CARGO_BIN_EXE_ire"),
    ])
    .args(&a)
    .args([":", "-n", "1", env!("CARGO_BIN_EXE_ire")])
    .args(&b)
    .current_dir(cwd)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let out = wait_within(cmd.spawn().unwrap(), 120);
    assert!(!out.status.success());
    let log = stderr(&out);
    let cause = "rank 1 does not match rank 0: the resolved run config differs: optim.ire.kappa: 4.0 on rank 0, 2.0 here";
    assert!(log.contains(cause), "{log}");
    // Rank 0 reports rank 1's error, not a bare "another rank failed".
    assert!(log.contains(&format!("rank 1 failed: {cause}")), "{log}");
    assert!(
        !cwd.join("runs/mixed/metrics.jsonl").exists(),
        "nothing trained"
    );
}

#[test]
fn a_second_job_on_a_run_in_use_is_refused_and_sigterm_stops_every_rank_with_one_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    ok(&ire(
        &["prepare", "--config", &config("tiny-admire.toml")],
        cwd,
    ));
    let long = run_args(
        "runs/live",
        &["schedule.total=100000", "checkpoint.interval=0"],
    );
    let first = mpirun(2, &strs(&long), cwd, &[]);
    let metrics = cwd.join("runs/live/metrics.jsonl");
    wait_for_lines(&metrics, 2, 120); // training started
                                      // A second job (a Slurm requeue while the first still runs) is refused by name.
    let second = mpirun(
        2,
        &["train", "--resume", "runs/live", "--no-progress"],
        cwd,
        &[],
    );
    let out = wait_within(second, 120);
    assert!(!out.status.success());
    let log = stderr(&out);
    assert!(
        log.contains("another ire train job (pid") && log.contains("is using this run directory"),
        "{log}"
    );
    assert!(
        !log.contains("nothing to resume") && !log.contains("delete the directory"),
        "{log}"
    );
    // The scheduler's SIGTERM to every rank (as Slurm signals every task): one checkpoint, and
    // every rank exits 75, so mpirun does.
    let ranks = Command::new("pgrep")
        .args(["-P", &first.id().to_string()])
        .output()
        .unwrap();
    let ranks: Vec<String> = String::from_utf8_lossy(&ranks.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(ranks.len(), 2, "mpirun's children: {ranks:?}");
    for pid in &ranks {
        assert!(Command::new("kill")
            .args(["-TERM", pid])
            .status()
            .unwrap()
            .success());
    }
    let out = wait_within(first, 120);
    assert_eq!(
        out.status.code(),
        Some(75),
        "stopped, resumable: {}",
        stderr(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let steps = stopped_after(&stdout);
    let ckpt = cwd.join(format!(
        "runs/live/checkpoints/step-{steps:06}/trainer_state.json"
    ));
    assert!(ckpt.exists(), "no checkpoint at step {steps}");
    assert!(
        !cwd.join("runs/live/run.lock").exists(),
        "the lock is released"
    );
}

#[test]
fn a_rank_that_hangs_is_caught_by_the_collective_timeout_and_the_job_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    ok(&ire(
        &["prepare", "--config", &config("tiny-admire.toml")],
        cwd,
    ));
    // Rank 1 stays alive but stops at step 7: rank 0 waits in the agreement after that step's
    // report until the watchdog aborts the job (MPI_Abort) after dist.timeout_s.
    let hung = run_args("runs/hung", &["dist.timeout_s=5"]);
    let started = std::time::Instant::now();
    let out = wait_within(
        mpirun(2, &strs(&hung), cwd, &[("IRE_FAULT", "1:7:hang")]),
        120,
    );
    assert!(!out.status.success(), "the job must fail");
    let log = stderr(&out);
    assert!(log.contains("rank 1 hangs at step 7"), "{log}");
    assert!(
        log.contains("rank 0: the agreement of step 7 did not finish within 5 s"),
        "{log}"
    );
    assert!(started.elapsed().as_secs() < 100);
    wait_for_the_holder_to_exit(&cwd.join("runs/hung"));
    // The checkpoint of step 5 is intact: the run resumes from it.
    let out = wait_within(
        mpirun(
            2,
            &["train", "--resume", "runs/hung", "--no-progress"],
            cwd,
            &[],
        ),
        300,
    );
    assert!(ok(&out).contains("finished after 20 steps"));
}
