//! What a long job's output looks like when it goes to a file (nohup, Slurm): `ire train`,
//! `ire sharpness` and `ire bench step` with stderr piped (not a terminal) print plain progress
//! lines and no ANSI colour, and a run keeps its whole log in `RUN/train.log`, appended on
//! resume.

mod common;

use common::*;

/// The progress lines of `text`: (step, total, loss, lr, tokens/s, MFU %) of each
/// `step N/T  loss L  lr R  X tok/s  MFU M%  elapsed E  ETA A`.
fn progress_lines(text: &str) -> Vec<(usize, usize, f64, f64, f64, f64)> {
    text.lines()
        .filter_map(|l| l.split_once(" step ").map(|(_, rest)| rest))
        .filter(|rest| rest.contains(" tok/s "))
        .map(|rest| {
            let parts: Vec<&str> = rest.split("  ").collect();
            assert_eq!(parts.len(), 7, "7 fields: {rest}");
            let (step, total) = parts[0].split_once('/').expect("N/T");
            let value = |field: &str, name: &str| -> f64 {
                let v = field
                    .strip_prefix(name)
                    .unwrap_or_else(|| panic!("{name}: {rest}"));
                let v = v.trim_end_matches(" tok/s").trim_end_matches('%');
                v.trim()
                    .replace(',', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("{field}"))
            };
            assert!(
                parts[5].starts_with("elapsed ") && parts[6].starts_with("ETA "),
                "{rest}"
            );
            (
                step.parse().unwrap(),
                total.parse().unwrap(),
                value(parts[1], "loss "),
                value(parts[2], "lr "),
                value(parts[3], ""),
                value(parts[4], "MFU "),
            )
        })
        .collect()
}

/// A run with stderr piped, stopped at step 4 then resumed to 6, a progress line every 2
/// steps (the time cadence out of reach): lines at the first step, every 2 steps and the last
/// step of each invocation, numbers that parse and make sense, no ESC byte anywhere, and all
/// of it in train.log, which the resume appends to.
#[test]
fn without_a_terminal_train_prints_progress_lines_without_colour_and_keeps_train_log() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let config = config("tiny-admire.toml");
    let mut args = vec!["train", "--config", &config, "--stop-at", "4"];
    args.extend(SMALL);
    let cadence = [
        "--set",
        "metrics.progress_steps=2",
        "--set",
        "metrics.progress_seconds=1e6",
    ];
    args.extend(cadence);
    args.extend(["--set", "eval.interval=2"]);
    let first = ire(&args, cwd);
    let stdout = ok(&first);
    let stderr = String::from_utf8_lossy(&first.stderr).to_string();
    assert!(
        !stderr.contains('\x1b'),
        "no colour without a terminal: {stderr}"
    );
    let lines = progress_lines(&stderr);
    let steps: Vec<usize> = lines.iter().map(|l| l.0).collect();
    assert_eq!(steps, vec![1, 3, 4], "{stderr}");
    for &(_, total, loss, lr, tps, mfu) in &lines {
        assert_eq!(total, 6);
        assert!(loss > 1.0 && loss < 10.0, "loss {loss}");
        assert!((0.0..1.0).contains(&lr), "lr {lr}");
        assert!(
            tps > 0.0 && mfu > 0.0 && mfu < 100.0,
            "{tps} tok/s, MFU {mfu}%"
        );
    }

    let log_path = cwd.join("runs/tiny-admire/train.log");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains('\x1b'), "{log}");
    assert!(
        log.lines()
            .next()
            .unwrap()
            .contains("==== fresh start: ire train --config"),
        "{log}"
    );
    assert_eq!(
        progress_lines(&log),
        lines,
        "train.log has the same progress lines"
    );
    assert!(log.contains("val loss"), "the evaluation's line: {log}");
    assert!(
        log.contains(stdout.lines().next().unwrap()),
        "the closing line: {log}"
    );

    let mut resume = vec!["train", "--resume", "runs/tiny-admire"];
    resume.extend(cadence);
    let second = ire(&resume, cwd);
    assert!(ok(&second).contains("finished after 6 steps"));
    let stderr = String::from_utf8_lossy(&second.stderr);
    let steps: Vec<usize> = progress_lines(&stderr).iter().map(|l| l.0).collect();
    assert_eq!(steps, vec![5, 6], "{stderr}");
    let appended = std::fs::read_to_string(&log_path).unwrap();
    assert!(appended.starts_with(&log), "appended, not truncated");
    let rest = &appended[log.len()..];
    assert!(
        rest.lines()
            .next()
            .unwrap()
            .contains("==== resume: ire train --resume"),
        "{rest}"
    );
    let steps: Vec<usize> = progress_lines(rest).iter().map(|l| l.0).collect();
    assert_eq!(steps, vec![5, 6], "{rest}");
    assert!(rest.contains("finished after 6 steps"), "{rest}");
}

/// `ire sharpness` with stderr piped: a progress line (at least the first gradient's) per
/// checkpoint measured, without colour, before its result on stdout.
#[test]
fn sharpness_without_a_terminal_prints_progress_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let config = config("tiny-admire.toml");
    let mut args = vec!["train", "--config", &config];
    args.extend(SMALL);
    ok(&ire(&args, cwd));
    let sharp = ["sharpness", "runs/tiny-admire", "--all", "--windows", "1"];
    let out = ire(
        &[&sharp[..], &["--probes", "2", "--power-iters", "2"]].concat(),
        cwd,
    );
    let stdout = ok(&out);
    assert_eq!(stdout.lines().count(), 2, "checkpoints 3 and 6: {stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\x1b'), "{stderr}");
    for step in ["step-000003", "step-000006"] {
        let first = format!("sharpness {step}: gradient 1/8  Hutchinson probe 1/2  elapsed ");
        assert!(stderr.contains(&first), "{first} in {stderr}");
    }
}

/// `ire bench step` with stderr piped: a progress line at its first step (the JSON result
/// alone on stdout).
#[test]
fn bench_step_without_a_terminal_prints_progress_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let shape = [
        "--seq", "16", "--batch", "2", "--steps", "2", "--warmup", "1",
    ];
    let out = ire(&[&["bench", "step"][..], &shape].concat(), tmp.path());
    let json: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(json["steps"], 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = "bench step: step 1/3  adamw + admire (warm-up)  elapsed ";
    assert!(stderr.contains(first), "{first} in {stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr}");
}
