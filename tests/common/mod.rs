//! What the end-to-end tests share: running the `ire` binary (directly or under mpirun) as a
//! user would, waiting for it with a limit, and reading its outputs (metrics without timings,
//! checkpoint weights).
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A config of `configs/`, as a path string.
pub fn config(name: &str) -> String {
    repo().join("configs").join(name).display().to_string()
}

/// A micro version of the default run: the same config file with a smaller model and a few
/// steps.
pub const SMALL: [&str; 14] = [
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

/// `ire ARGS` in `cwd`, offline, waited for.
pub fn ire(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ire"))
        .args(args)
        .current_dir(cwd)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the ire binary runs")
}

/// Its stdout, after asserting that it succeeded (else its output is the failure).
pub fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "ire failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Starts `ire` with extra environment variables, output captured.
pub fn spawn_ire(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ire"))
        .args(args)
        .current_dir(cwd)
        .env("HF_HUB_OFFLINE", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the ire binary runs")
}

/// Waits for `child` at most `secs` seconds (a hang fails the test instead of stalling it).
pub fn wait_within(mut child: Child, secs: u64) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed().as_secs() > secs {
            let _ = child.kill();
            panic!("did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Waits until `path` exists (at most `secs` seconds).
pub fn wait_for(path: &Path, secs: u64) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed().as_secs() < secs,
            "{} did not appear within {secs} s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `path` holds at least `lines` lines (a run has started), at most `secs` seconds.
pub fn wait_for_lines(path: &Path, lines: usize, secs: u64) {
    let started = Instant::now();
    while std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
        < lines
    {
        assert!(
            started.elapsed().as_secs() < secs,
            "{} did not reach {lines} lines within {secs} s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The step count of `ire train`'s `stopped after N steps` line in `stdout`.
pub fn stopped_after(stdout: &str) -> usize {
    stdout
        .split("stopped after ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no `stopped after N steps` line: {stdout}"))
}

/// A metrics file without its timings, parsed (so equal means equal to the last bit).
pub fn metric_values(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for key in ["tokens_per_s", "mfu", "wall_s"] {
                v.as_object_mut().unwrap().remove(key);
            }
            v
        })
        .collect()
}

/// The f32 tensors of a `model.safetensors`, by name (read by hand: the format is an 8-byte
/// header length, a JSON header, then the data).
pub fn weights(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out = std::collections::BTreeMap::new();
    for (name, info) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        assert_eq!(info["dtype"], "F32", "{name}");
        let at = |i: usize| info["data_offsets"][i].as_u64().unwrap() as usize;
        let values = data[at(0)..at(1)]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        out.insert(name.clone(), values);
    }
    out
}

/// The largest `|a - b| / (1e-3 + |a|)` over all parameters (as crates/ire-train's tests).
pub fn worst_relative_difference(a: &Path, b: &Path) -> f32 {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut worst = 0f32;
    for (name, x) in &a {
        for (p, q) in x.iter().zip(&b[name]) {
            worst = worst.max((p - q).abs() / (1e-3 + p.abs()));
        }
    }
    worst
}
