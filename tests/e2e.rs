//! End to end through the `ire` binary, as a user runs it: prepare → train → export → score on
//! the embedded corpus, and config errors on the command line.

use std::path::Path;
use std::process::{Command, Output};

fn ire(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ire"))
        .args(args)
        .current_dir(cwd)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the ire binary runs")
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "ire failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A micro version of the default run: the same config file with a smaller model and a few steps.
const SMALL: [&str; 14] = [
    "--set",
    "model.hidden_size=64",
    "--set",
    "model.intermediate_size=128",
    "--set",
    "model.num_hidden_layers=2",
    "--set",
    "batch.seq_len=32",
    "--set",
    "schedule.total=6",
    "--set",
    "schedule.warmup=2",
    "--set",
    "checkpoint.interval=3",
];

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
        "optim.interval=2",
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
            "optim.gamma=2",
        ],
        tmp.path(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gamma"), "{err}");
    let out = ire(&["train", "--config", "nope.toml"], tmp.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.toml"), "{err}");
}

#[test]
fn ctrl_c_writes_a_checkpoint_and_exits_cleanly() {
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
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&metrics)
        .map(|t| t.lines().count())
        .unwrap_or(0)
        < 2
    {
        assert!(started.elapsed().as_secs() < 120, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stdout = ok(&out);
    assert!(stdout.contains("stopped after"), "{stdout}");
    let steps: usize = stdout
        .split("stopped after ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ckpt = cwd.join(format!("runs/tiny-adamw/checkpoints/step-{steps:06}"));
    assert!(
        ckpt.join("trainer_state.json").exists(),
        "no checkpoint at step {steps}"
    );
}
