//! End to end through the `ire` binary, as a user runs it: prepare → train → export → score on
//! the embedded corpus, and config errors on the command line.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn prepare_train_export_score_on_the_embedded_corpus() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let config = repo.join("configs/tiny-admire.toml");
    let config = config.to_str().unwrap();

    let out = ok(&ire(&["prepare", "--config", config], cwd));
    assert!(
        out.contains("prepared data/embedded-bpe8192: vocab 8192"),
        "{out}"
    );

    let mut args = vec![
        "train",
        "--config",
        config,
        "--no-progress",
        "--set",
        "optim.ire.interval=2",
    ];
    args.extend(SMALL);
    let out = ok(&ire(&args, cwd));
    assert!(out.contains("finished after 6 steps"), "{out}");
    let metrics = std::fs::read_to_string(cwd.join("runs/tiny-admire/metrics.jsonl")).unwrap();
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.contains("\"split\":\"train\""))
            .count(),
        6
    );
    assert!(
        metrics.contains("\"mask_fraction\""),
        "AdmIRE refreshed its mask"
    );

    let out = ok(&ire(
        &["export", "runs/tiny-admire", "--out", "exported"],
        cwd,
    ));
    assert!(out.contains("step-000006"), "{out}");

    let tokens = "1,2,3,40,500,6000,7,8";
    let a = ok(&ire(
        &["score", "--model", "exported", "--tokens", tokens],
        cwd,
    ));
    let b = ok(&ire(
        &[
            "score",
            "--model",
            "runs/tiny-admire/checkpoints/step-000006",
            "--tokens",
            tokens,
        ],
        cwd,
    ));
    assert_eq!(a, b, "the export scores exactly like the checkpoint");
    let json: serde_json::Value = serde_json::from_str(a.trim()).unwrap();
    let loss = json["loss"].as_f64().unwrap();
    // Trained a little: finite and below the uniform loss ln(8192) = 9.01.
    assert!(loss.is_finite() && loss < 9.01, "{a}");
    assert_eq!(json["logits_first"].as_array().unwrap().len(), 8);

    // `ire sample`: the same seed gives the same text, from the export or the checkpoint (whose
    // tokenizer is the run's).
    let sample = |model: &str, seed: &str| {
        ok(&ire(
            &[
                "sample",
                "--model",
                model,
                "--prompt",
                "The state of the",
                "--seed",
                seed,
                "--max-new-tokens",
                "12",
            ],
            cwd,
        ))
    };
    let a = sample("exported", "3");
    assert!(
        a.starts_with("The state of the") && a.trim().len() > 16,
        "{a}"
    );
    assert_eq!(a, sample("exported", "3"));
    assert_eq!(a, sample("runs/tiny-admire/checkpoints/step-000006", "3"));

    // `ire sharpness`: one line per checkpoint, recorded in sharpness.jsonl; measured once.
    let sharp = [
        "sharpness",
        "runs/tiny-admire",
        "--all",
        "--windows",
        "2",
        "--probes",
        "2",
    ];
    let sharp = [&sharp[..], &["--power-iters", "3"]].concat();
    let out = ok(&ire(&sharp, cwd));
    assert!(
        out.contains("step      3") && out.contains("step      6") && out.contains("Tr(H)"),
        "{out}"
    );
    let records = std::fs::read_to_string(cwd.join("runs/tiny-admire/sharpness.jsonl")).unwrap();
    assert_eq!(records.lines().count(), 2, "{records}");
    let first: serde_json::Value = serde_json::from_str(records.lines().next().unwrap()).unwrap();
    assert!(first["trace"].as_f64().unwrap().is_finite(), "{first}");
    assert_eq!(
        ok(&ire(&sharp, cwd)),
        out,
        "recorded steps are not measured again"
    );
    let newest = [&sharp[..2], &sharp[3..]].concat();
    let again = ok(&ire(&newest, cwd));
    assert!(
        again.contains("step      6") && !again.contains("step      3"),
        "{again}"
    );
    let records = std::fs::read_to_string(cwd.join("runs/tiny-admire/sharpness.jsonl")).unwrap();
    assert_eq!(
        records.lines().count(),
        2,
        "the newest step is found: {records}"
    );
    let missing = ire(&["sharpness", "runs/tiny-admire", "--step", "5"], cwd);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && err.contains("[3, 6]"), "{err}");

    // `ire sample --model RUN`: the run's newest checkpoint, named in the log.
    let from_run = ire(
        &[
            "sample",
            "--model",
            "runs/tiny-admire",
            "--prompt",
            "The state of the",
            "--seed",
            "3",
            "--max-new-tokens",
            "12",
        ],
        cwd,
    );
    assert_eq!(
        ok(&from_run),
        a,
        "the run folder samples like its step-6 checkpoint"
    );
    let log = String::from_utf8_lossy(&from_run.stderr);
    assert!(
        log.contains("newest checkpoint") && log.contains("step-000006"),
        "{log}"
    );
    // A missing folder is named as missing (not as a missing tokenizer).
    let missing = ire(&["sample", "--model", "no-such-run", "--prompt", "x"], cwd);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success()
            && err.contains("--model no-such-run: no such folder")
            && !err.contains("tokenizer"),
        "{err}"
    );
    // Past the context (256 positions): refused, naming the flag and the largest value.
    let long = ire(
        &[
            "sample",
            "--model",
            "exported",
            "--prompt",
            "The state of the",
            "--max-new-tokens",
            "1000",
        ],
        cwd,
    );
    let err = String::from_utf8_lossy(&long.stderr);
    assert!(
        !long.status.success() && err.contains("--max-new-tokens 1000"),
        "{err}"
    );
    let number_after = |text: &str| -> usize {
        let rest = err
            .split(text)
            .nth(1)
            .unwrap_or_else(|| panic!("no `{text}`: {err}"));
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (prompt, largest) = (
        number_after("the prompt's "),
        number_after("allowed here is "),
    );
    assert!(
        err.contains("context of 256 positions") && prompt + largest == 256,
        "{err}"
    );
    let at_most = largest.to_string();
    let fits = [
        "sample",
        "--model",
        "exported",
        "--prompt",
        "The state of the",
        "--max-new-tokens",
    ];
    ok(&ire(&[&fits[..], &[at_most.as_str()]].concat(), cwd));

    // `ire compare` of one run given twice (two spellings): one run, a warning, no ± on its loss.
    let cmp = ire(
        &[
            "compare",
            "runs/tiny-admire",
            "./runs/tiny-admire/",
            "--out",
            "cmp",
        ],
        cwd,
    );
    let table = ok(&cmp);
    let log = String::from_utf8_lossy(&cmp.stderr);
    assert!(log.contains("given again; counted once"), "{log}");
    let row = table
        .lines()
        .find(|l| l.starts_with("| tiny-admire |"))
        .unwrap();
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(cells[2], "1", "one run: {row}");
    assert!(
        !cells[4].contains('±') && cells[11].contains("(probe s.e., step 6)"),
        "{row}"
    );
    let written = std::fs::read_to_string(cwd.join("cmp/table.md")).unwrap();
    assert!(
        written.contains("\nColumns:\n") && written.contains("`probe s.e.`"),
        "{written}"
    );
    // AdmIRE's mask diagnostics: on the lines of the refresh steps (T_s = warm-up = 2, K = 2:
    // iterations t = 3, 5, i.e. steps 4 and 6), tabled at the last refresh and drawn per group.
    let lines = std::fs::read_to_string(cwd.join("runs/tiny-admire/metrics.jsonl")).unwrap();
    let refreshes: Vec<u64> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("mask").is_some())
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(refreshes, [4, 6]);
    let mask_row = written
        .lines()
        .find(|l| l.starts_with("| tiny-admire | 6 |"))
        .unwrap_or_else(|| panic!("no mask row at step 6: {written}"));
    let shares: Vec<&str> = mask_row.split('|').map(str::trim).collect();
    // "", name, step, the 10 groups, overlap, "" (the outer pipes).
    assert_eq!(shares.len(), 15, "10 groups and the overlap: {mask_row}");
    for cell in &shares[3..13] {
        let pct: f64 = cell.trim_end_matches(" %").parse().unwrap();
        assert!((0.0..=100.0).contains(&pct), "{mask_row}");
    }
    let overlap: f64 = shares[13].parse().unwrap();
    assert!((0.0..=1.0).contains(&overlap), "{mask_row}");
    assert!(cwd.join("cmp/mask_groups.png").exists());

    // A second train into the same directory refuses; --resume continues from the checkpoint.
    let again = ire(&args, cwd);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    let out = ok(&ire(
        &["train", "--resume", "runs/tiny-admire", "--no-progress"],
        cwd,
    ));
    assert!(out.contains("finished after 6 steps"), "{out}");
}

/// Every base of configs/bases trains from its file, alone and with IRE, as a user runs it: the
/// log says which parameters each base takes, IRE refreshes its mask, the losses are finite.
#[test]
fn every_base_trains_from_its_config_file_alone_and_with_ire() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let mut configs: Vec<_> = std::fs::read_dir(repo.join("configs/bases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    configs.sort();
    assert_eq!(configs.len(), 6, "{configs:?}");
    for path in configs {
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let ire_on = name.ends_with("-ire");
        let dir = format!("run.dir=runs/{name}");
        let mut args = vec!["train", "--config", path.to_str().unwrap(), "--no-progress"];
        args.extend(SMALL);
        args.extend(["--set", &dir]);
        if ire_on {
            args.extend(["--set", "optim.ire.interval=2"]);
        }
        let out = ire(&args, cwd);
        assert!(ok(&out).contains("finished after 6 steps"), "{name}");
        let log = String::from_utf8_lossy(&out.stderr);
        let base = name.trim_start_matches("tiny-").trim_end_matches("-ire");
        let label = if ire_on {
            format!("{base}+ire")
        } else {
            base.to_string()
        };
        let rules = log
            .lines()
            .find_map(|l| l.split_once(&format!("optimizer {label}: ")))
            .unwrap_or_else(|| panic!("{name}: no optimizer line in\n{log}"))
            .1;
        // 2 layers × 7 matrices for Muon; every one of the 2·9 + 3 tensors for the others.
        let want = match base {
            "muon" => "muon: 14 tensors",
            "sgd" => "sgd: 21 tensors",
            _ => "lion: 21 tensors",
        };
        assert!(rules.starts_with(want), "{name}: {rules}");
        if base == "muon" {
            assert!(
                rules.contains("adamw: 7 tensors") && rules.contains("embed_tokens, lm_head, norm"),
                "{rules}"
            );
        }
        let metrics =
            std::fs::read_to_string(cwd.join(format!("runs/{name}/metrics.jsonl"))).unwrap();
        assert_eq!(metrics.contains("\"mask\""), ire_on, "{name}");
        for line in metrics.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(
                v["loss"].as_f64().is_some_and(f64::is_finite),
                "{name}: {line}"
            );
        }
    }
}

/// `ire sweep` on a 2 × 2 grid of a few steps, as a user runs it: every run killed by a fault
/// mid-run, the sweep rerun resumes each from its checkpoint to the end; `--status` says where
/// each stands; a finished sweep runs nothing again; `--emit slurm` writes an array script whose
/// tasks are `--index I`, and `--index` runs that one run.
#[test]
fn a_sweep_runs_resumes_reports_and_emits_a_slurm_array() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let config = repo.join("configs/tiny-admire.toml");
    let set: Vec<String> = SMALL.chunks(2).map(|kv| format!("{:?}", kv[1])).collect();
    let spec = format!(
        "config = {config:?}\ndir = \"runs/grid\"\nset = [{}, \"optim.ire.interval=2\"]\n\n\
         [[axis]]\nvariants = {{ adamw = [\"optim.ire=false\"], admire = [] }}\n\n\
         [[axis]]\nkey = \"run.seed\"\nname = \"s\"\nvalues = [1, 2]\n",
        set.join(", ")
    );
    std::fs::write(cwd.join("grid.toml"), spec).unwrap();
    let names = ["adamw-s1", "adamw-s2", "admire-s1", "admire-s2"];
    // Each run is killed while writing its last checkpoint (step 6; the one at 3 stands): the
    // sweep reports them.
    let out = Command::new(env!("CARGO_BIN_EXE_ire"))
        .args(["sweep", "grid.toml", "--workers", "2", "--threads", "1"])
        .current_dir(cwd)
        .env("HF_HUB_OFFLINE", "1")
        .env("IRE_FAULT", "0:6:kill")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 run(s) did not finish"), "{err}");
    // Two workers: the second run starts before the first one ends.
    let lines: Vec<&str> = err.lines().collect();
    let second_start = lines.iter().filter(|l| l.contains(": starting")).nth(1);
    let second_start = lines.iter().position(|l| Some(l) == second_start).unwrap();
    let first_end = lines
        .iter()
        .position(|l| l.contains("ire train exited"))
        .unwrap();
    assert!(
        second_start < first_end,
        "the workers ran one after the other:\n{err}"
    );
    let status = ok(&ire(&["sweep", "grid.toml", "--status"], cwd));
    for (i, name) in names.iter().enumerate() {
        assert!(
            status.contains(&format!("| {i} | {name} | step 3/6 |")),
            "{status}"
        );
    }
    // Rerun: each resumes from step 3 and finishes; the IRE runs refreshed their masks.
    let rerun = ire(
        &["sweep", "grid.toml", "--workers", "2", "--threads", "1"],
        cwd,
    );
    ok(&rerun);
    let err = String::from_utf8_lossy(&rerun.stderr);
    for name in names {
        assert!(
            err.contains(&format!("{name}: resuming from step 3")),
            "{err}"
        );
    }
    let status = ok(&ire(&["sweep", "grid.toml", "--status"], cwd));
    assert_eq!(status.matches("| finished |").count(), 4, "{status}");
    for name in names {
        let metrics =
            std::fs::read_to_string(cwd.join(format!("runs/grid/{name}/metrics.jsonl"))).unwrap();
        let steps: Vec<u64> = metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["split"] == "train")
            .map(|v| v["step"].as_u64().unwrap())
            .collect();
        assert_eq!(
            steps,
            [1, 2, 3, 4, 5, 6],
            "{name}: each step once after the resume"
        );
        assert_eq!(
            metrics.contains("\"mask\""),
            name.starts_with("admire"),
            "{name}"
        );
    }
    // Finished: nothing runs again.
    let again = ire(&["sweep", "grid.toml"], cwd);
    assert!(ok(&again).contains("every run finished"));
    assert_eq!(
        String::from_utf8_lossy(&again.stderr)
            .matches("finished, skipped")
            .count(),
        4
    );
    // The Slurm array: one task per run, each `--index`.
    let out = ok(&ire(
        &["sweep", "grid.toml", "--emit", "slurm", "--threads", "2"],
        cwd,
    ));
    assert!(out.contains("4 array tasks"), "{out}");
    let script = std::fs::read_to_string(cwd.join("grid.sbatch")).unwrap();
    for line in [
        "#SBATCH --array=0-3",
        "#SBATCH --cpus-per-task=2",
        "--index \"$SLURM_ARRAY_TASK_ID\" --threads 2",
    ] {
        assert!(script.contains(line), "{line}\n{script}");
    }
    std::fs::remove_dir_all(cwd.join("runs/grid/admire-s1")).unwrap();
    ok(&ire(&["sweep", "grid.toml", "--index", "2"], cwd));
    let status = ok(&ire(&["sweep", "grid.toml", "--status"], cwd));
    assert_eq!(status.matches("| finished |").count(), 4, "{status}");
    let err = ire(&["sweep", "grid.toml", "--index", "4"], cwd);
    assert!(String::from_utf8_lossy(&err.stderr).contains("--index 4: the sweep has 4 runs"));
}

#[test]
fn init_then_score_gives_the_uniform_loss_scale() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(&ire(
        &[
            "init",
            "--preset",
            "tiny",
            "--vocab-size",
            "512",
            "--init",
            "hf",
            "--out",
            "m",
        ],
        tmp.path(),
    ));
    assert!(out.contains("parameters"), "{out}");
    let out = ok(&ire(
        &["score", "--model", "m", "--tokens", "1,2,3,4,5,6,7,8,9"],
        tmp.path(),
    ));
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // HF init (std 0.02) gives near-uniform predictions: loss ≈ ln(512) = 6.238.
    let loss = json["loss"].as_f64().unwrap();
    assert!((loss - 512f64.ln()).abs() < 0.05, "{out}");
    let bad = ire(
        &["score", "--model", "m", "--tokens", "1,2,99999"],
        tmp.path(),
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("outside the model's vocabulary"));
}

#[test]
fn config_errors_are_one_clear_line() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let config = repo.join("configs/tiny-admire.toml");
    let out = ire(
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--set",
            "optim.ire.gamma=2",
        ],
        tmp.path(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gamma"), "{err}");
    let out = ire(&["train", "--config", "nope.toml"], tmp.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.toml"), "{err}");
    // Settings that cannot be meant: IRE's key outside its table, another base's table, a
    // sequence past the context.
    let adamw = repo.join("configs/tiny-adamw.toml");
    for (set, needles) in [
        ("optim.kappa=2", ["optim.kappa", "belongs in [optim.ire]"]),
        (
            "optim.sgd.momentum=0.5",
            ["optim.sgd", "is for another base"],
        ),
        (
            "batch.seq_len=512",
            ["batch.seq_len", "set model.max_position_embeddings = 512"],
        ),
    ] {
        let out = ire(
            &["train", "--config", adamw.to_str().unwrap(), "--set", set],
            tmp.path(),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        for needle in needles {
            assert!(err.contains(needle), "{set}: {err}");
        }
    }
}

/// `ire config` prints a config that resolves to itself and trains; the CPU's measured MFU peak
/// is logged, recorded in the run's config.toml and read back (not measured) on resume.
#[test]
fn ire_config_prints_a_config_that_trains() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let config = repo.join("configs/tiny-adamw.toml");
    let mut args = vec!["config", "--config", config.to_str().unwrap()];
    args.extend(SMALL);
    let resolved = ok(&ire(&args, cwd));
    for line in [
        "hidden_size = 64",
        "# [optim.ire]  # not used by this run: its keys at their defaults",
        "# kappa = 4.0",
        "# peak_flops =  # unset",
    ] {
        assert!(resolved.lines().any(|l| l == line), "{line}\n{resolved}");
    }
    std::fs::write(cwd.join("resolved.toml"), &resolved).unwrap();
    // Only the first line (it names the file) differs when the output is resolved again.
    let body = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
    let again = ok(&ire(&["config", "--config", "resolved.toml"], cwd));
    assert_eq!(body(&again), body(&resolved));

    ok(&ire(&["prepare", "--config", "resolved.toml"], cwd));
    let train = ["train", "--config", "resolved.toml", "--no-progress"];
    let out = ire(&train, cwd);
    assert!(ok(&out).contains("finished after 6 steps"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("MFU against a peak of") && log.contains("measured: f32 GEMM"),
        "{log}"
    );
    // The run's config is the same config plus the measured peak.
    let saved = ok(&ire(
        &["config", "--config", "runs/tiny-adamw/config.toml"],
        cwd,
    ));
    let differ: Vec<(&str, &str)> = saved
        .lines()
        .zip(resolved.lines())
        .skip(1)
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(differ.len(), 1, "{differ:?}");
    assert!(differ[0].0.starts_with("peak_flops = "), "{differ:?}");
    let resume = ["train", "--resume", "runs/tiny-adamw", "--no-progress"];
    let out = ire(&resume, cwd);
    ok(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("(metrics.peak_flops of the config"), "{log}");
}

#[test]
fn sigterm_writes_a_checkpoint_and_exits_with_the_interrupted_status() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let config = repo.join("configs/tiny-adamw.toml");
    ok(&ire(
        &["prepare", "--config", config.to_str().unwrap()],
        cwd,
    ));
    let mut args = vec![
        "train",
        "--config",
        config.to_str().unwrap(),
        "--no-progress",
    ];
    args.extend(SMALL);
    args.extend([
        "--set",
        "schedule.total=100000",
        "--set",
        "checkpoint.interval=0",
    ]);
    let child = Command::new(env!("CARGO_BIN_EXE_ire"))
        .args(&args)
        .current_dir(cwd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = cwd.join("runs/tiny-adamw/metrics.jsonl");
    wait_for_lines(&metrics, 2, 120); // training started
                                      // SIGTERM, what a scheduler sends first, like Ctrl-C (SIGINT).
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(75),
        "interrupted, resumable: exit status 75"
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("stopped after"), "{stdout}");
    assert!(
        stdout.contains("continue with: ire train --resume runs/tiny-adamw"),
        "{stdout}"
    );
    let steps = stopped_after(&stdout);
    let ckpt = cwd.join(format!("runs/tiny-adamw/checkpoints/step-{steps:06}"));
    assert!(
        ckpt.join("trainer_state.json").exists(),
        "no checkpoint at step {steps}"
    );
}

/// The AdmIRE run the kill tests cut: long enough (300 micro steps) that a kill lands mid-run.
fn long_run(config: &str, dir: &str) -> Vec<String> {
    let mut args: Vec<String> = ["train", "--config", config, "--no-progress"]
        .map(String::from)
        .to_vec();
    args.extend(SMALL.map(String::from));
    for set in [
        "schedule.total=300",
        "checkpoint.interval=10",
        "eval.interval=50",
        "optim.ire.interval=2",
        &format!("run.dir={dir}"),
    ] {
        args.extend(["--set".to_string(), set.to_string()]);
    }
    args
}

#[test]
fn sigkill_or_a_kill_during_a_checkpoint_write_then_resume_equals_the_uninterrupted_run() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let config = repo.join("configs/tiny-admire.toml");
    let config = config.to_str().unwrap();
    let refs = |v: &[String]| v.iter().map(String::clone).collect::<Vec<_>>();
    let full = refs(&long_run(config, "runs/full"));
    ok(&ire(
        &full.iter().map(String::as_str).collect::<Vec<_>>(),
        cwd,
    ));

    // 1. SIGKILL once the checkpoint of step 10 exists.
    let cut = refs(&long_run(config, "runs/cut"));
    let mut child = spawn_ire(
        &cut.iter().map(String::as_str).collect::<Vec<_>>(),
        cwd,
        &[],
    );
    let ckpt = cwd.join("runs/cut/checkpoints/step-000010/trainer_state.json");
    let started = std::time::Instant::now();
    while !ckpt.exists() {
        assert!(
            started.elapsed().as_secs() < 120,
            "no checkpoint at step 10"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(child.try_wait().unwrap().is_none(), "killed mid-run");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // 2. Killed halfway through writing the checkpoint of step 20 (after step 10's).
    let kill = refs(&long_run(config, "runs/kill"));
    let child = spawn_ire(
        &kill.iter().map(String::as_str).collect::<Vec<_>>(),
        cwd,
        &[("IRE_FAULT", "0:20:kill")],
    );
    let out = wait_within(child, 300);
    assert!(!out.status.success(), "aborted mid-write");
    assert!(cwd.join("runs/kill/checkpoints/.step-000020.tmp").exists());

    for run in ["runs/cut", "runs/kill"] {
        ok(&ire(&["train", "--resume", run, "--no-progress"], cwd));
        assert!(!cwd.join(run).join("checkpoints/.step-000020.tmp").exists());
        assert_eq!(
            metric_values(&cwd.join("runs/full/metrics.jsonl")),
            metric_values(&cwd.join(run).join("metrics.jsonl")),
            "{run}: metrics differ from the uninterrupted run"
        );
        assert_eq!(
            std::fs::read(cwd.join("runs/full/checkpoints/step-000300/model.safetensors")).unwrap(),
            std::fs::read(
                cwd.join(run)
                    .join("checkpoints/step-000300/model.safetensors")
            )
            .unwrap(),
            "{run}: final weights differ"
        );
    }
}

#[test]
fn a_failure_on_one_of_two_devices_exits_with_its_error() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let config = repo.join("configs/tiny-adamw.toml");
    let config = config.to_str().unwrap();
    for (i, (fault, expect)) in [
        ("0:2:report", "injected fault: rank 0, step 2, report"),
        ("1:3:micro:panic", "rank 1 panicked during micro-batches"),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = format!("run.dir=runs/two-{i}");
        let mut args = vec!["train", "--config", config, "--no-progress"];
        args.extend(SMALL);
        args.extend(["--set", "run.devices=[\"cpu\", \"cpu\"]", "--set", &dir]);
        let out = wait_within(spawn_ire(&args, cwd, &[("IRE_FAULT", fault)]), 120);
        assert_eq!(out.status.code(), Some(1), "{fault}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{fault}: {err}");
    }
}

#[test]
fn every_paper_config_fits_an_80_gb_gpu_by_the_memory_plan() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(repo.join("configs/paper")).unwrap() {
        let path = entry.unwrap().path();
        let out = ok(&ire(
            &["memory", "--config", path.to_str().unwrap()],
            tmp.path(),
        ));
        assert!(
            out.contains("expected peak") && out.contains("  fits a 80 GB device"),
            "{out}"
        );
        seen += 1;
    }
    assert!(seen >= 9);
    // The 229M OpenWebText config at micro-batch 64 would not (its scores alone are ~96 GiB).
    let owt = repo.join("configs/paper/owt-229m-admire-50k.toml");
    let args = [
        "memory",
        "--config",
        owt.to_str().unwrap(),
        "--set",
        "batch.micro_batch=64",
    ];
    let out = ok(&ire(&args, tmp.path()));
    assert!(out.contains("does not fit a 80 GB device"), "{out}");
}

/// The GPU machine's one prepared script, in its CPU mode: every part runs (tiny curves against
/// the committed CPU reference, the exact τ, the step benchmark in f32 and bf16) and its JSON
/// lines say what a GPU run would report, so a change here cannot break it unnoticed.
#[test]
fn the_gpu_check_script_runs_end_to_end_on_a_cpu_build() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(repo.join("tools/gpu-check.sh"))
        .env("IRE_GPU_CHECK_DEVICE", "cpu")
        .env("IRE", env!("CARGO_BIN_EXE_ire"))
        .env("OUT", tmp.path().join("out"))
        .env("GPU_CHECK_DATA", tmp.path().join("data"))
        // Not torch: CI has none, and the ire side is what this test guards.
        .env("PYTHON", "/nonexistent/python3")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let check = |name: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|l| l["check"] == name).collect()
    };
    let curves = check("curve");
    assert_eq!(curves.len(), 2, "{stdout}");
    for c in curves {
        // The CPU reproduces the committed CPU curve: 4 steps, to well within its tolerance.
        assert_eq!(c["steps"], 4, "{c}");
        assert!(c["max_abs_diff"].as_f64().unwrap() <= 1e-3, "{c}");
    }
    let tau = check("tau")[0];
    assert_eq!(tau["exact"], true, "{tau}");
    assert_eq!(tau["k"], 120_000, "{tau}");
    let steps = check("step");
    let ire: Vec<_> = steps.iter().filter(|l| l["impl"] == "ire").collect();
    assert_eq!(ire.len(), 2, "f32 and bf16: {stdout}");
    for r in &ire {
        assert!(r["tokens_per_s"].as_f64().unwrap() > 0.0, "{r}");
        let ratio = r["admire_over_adamw"].as_f64().unwrap();
        assert!(ratio > 0.5 && ratio < 10.0, "{r}");
    }
    let skipped = steps.iter().filter(|l| l["impl"] == "torch").count();
    assert_eq!(
        skipped, 2,
        "torch is reported as skipped, once per precision"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

/// The steps of a metrics file's training lines, in file order.
fn train_steps(path: &Path) -> Vec<u64> {
    metric_values(path)
        .iter()
        .filter(|v| v["split"] == "train")
        .map(|v| v["step"].as_u64().unwrap())
        .collect()
}

/// Sends `signal` (`-STOP`, `-CONT`) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// Resumes a paused process when dropped, so a failing assertion does not leave it stopped.
struct Paused(u32);

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

/// This machine's host name as `ire` reads it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[test]
fn a_second_job_on_a_run_directory_in_use_is_refused_and_a_dead_jobs_lock_is_taken_over() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let config = repo.join("configs/tiny-adamw.toml");
    let config = config.to_str().unwrap();
    ok(&ire(&["prepare", "--config", config], cwd));
    let run = cwd.join("runs/tiny-adamw");
    let (lock, metrics) = (run.join("run.lock"), run.join("metrics.jsonl"));
    let mut fresh = vec!["train", "--config", config, "--no-progress"];
    fresh.extend(SMALL); // 6 steps
    let resume = |stop_at: &'static str| {
        ["train", "--resume", "runs/tiny-adamw", "--no-progress"]
            .into_iter()
            .chain(
                ["--stop-at", stop_at]
                    .into_iter()
                    .filter(|_| !stop_at.is_empty()),
            )
            .collect::<Vec<_>>()
    };

    // 1. The first job, paused (SIGSTOP: alive, holding its lock) as soon as it has written the
    //    run's config, before its first checkpoint: the moment a second job used to be told
    //    "delete the directory".
    let first = spawn_ire(&[fresh.as_slice(), &["--stop-at", "2"]].concat(), cwd, &[]);
    let started = std::time::Instant::now();
    while !(run.join("config.toml").exists() && lock.exists()) {
        assert!(
            started.elapsed().as_secs() < 120,
            "the first job did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    signal(first.id(), "-STOP");
    let paused = Paused(first.id());
    let mut first = first;
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first job still runs"
    );
    let holder = format!("pid {} on host {}", first.id(), host_name());
    for (what, args) in [("--resume", resume("")), ("a fresh run", fresh.clone())] {
        let out = wait_within(spawn_ire(&args, cwd, &[]), 60);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        let expect = format!("runs/tiny-adamw: another ire train job ({holder}, started 20");
        assert!(err.contains(&expect), "{what}: {expect:?} not in {err}");
        assert!(
            err.contains("delete runs/tiny-adamw/run.lock"),
            "{what}: {err}"
        );
        assert!(
            !err.contains("delete the directory") && !err.contains("nothing to resume"),
            "{what}: {err}"
        );
    }
    drop(paused);
    let out = wait_within(first, 300);
    assert!(ok(&out).contains("stopped after 2 steps"));
    assert_eq!(
        train_steps(&metrics),
        [1, 2],
        "only the first job wrote metrics"
    );
    assert!(!lock.exists(), "released when the job ended");

    // 2. The lock released, the run resumes.
    ok(&wait_within(spawn_ire(&resume("4"), cwd, &[]), 300));
    assert!(!lock.exists());

    // 3. A lock left by a killed job (its pid gone from this host) is taken over, with a warning.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("pid={dead}\nhost={}\nstarted=1796683263\n", host_name());
    std::fs::write(&lock, stale).unwrap();
    let out = wait_within(spawn_ire(&resume(""), cwd, &[]), 300);
    assert!(ok(&out).contains("finished after 6 steps"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("taking over the lock left by pid {dead} on host")),
        "{err}"
    );
    assert_eq!(train_steps(&metrics), [1, 2, 3, 4, 5, 6]);
    assert!(!lock.exists());
}

#[test]
fn repro_status_without_runs_says_so_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let out = Command::new("bash")
        .arg(repo().join("tools/repro.sh"))
        .arg("status")
        .env("IRE", env!("CARGO_BIN_EXE_ire"))
        .env("REPRO_DIR", &runs)
        .env("REPRO_RESULTS", tmp.path().join("results"))
        .output()
        .unwrap();
    assert_eq!(
        ok(&out),
        format!(
            "[repro] no runs in {} yet (tools/repro.sh starts them)\n",
            runs.display()
        )
    );
}
