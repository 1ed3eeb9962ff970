//! The optimizers through the trainer: the configs written before bases and IRE were apart
//! (`name = "admire"` / `name = "adamw"`) reproduce the runs recorded with that build.

use std::path::Path;

use ire_train::metrics::MetricLine;
use ire_train::train;

mod common;
use common::*;

/// The deterministic metrics of an 8-step run of `optim` ([`config`]), recorded by the build
/// before `[optim] base` and `[optim.ire]` existed (commit 60f1352); `IRE_RECORD=1` rewrites them.
fn recorded(optim: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/recorded-{optim}.json"))
}

/// Whether two recorded values agree: bit for bit on the machine that recorded them; within
/// 1e-5 relative elsewhere (another CPU's SIMD width reorders the GEMMs' sums).
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-5 * a.abs().max(b.abs())
}

fn same_run(a: &MetricLine, b: &MetricLine) -> bool {
    let opt = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => close(x, y),
        (x, y) => x.is_none() && y.is_none(),
    };
    a.split == b.split
        && a.step == b.step
        && a.tokens == b.tokens
        && close(a.loss, b.loss)
        && opt(a.lr, b.lr)
        && opt(a.grad_norm, b.grad_norm)
        && opt(a.mask_fraction, b.mask_fraction)
        && opt(a.kappa_t, b.kappa_t)
        && a.mask.as_ref().map(|m| m.flat.len()) == b.mask.as_ref().map(|m| m.flat.len())
}

#[test]
fn the_old_optimizer_names_reproduce_the_recorded_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for optim in ["admire", "adamw"] {
        let run = tmp.path().join(optim);
        train::<B>(
            config(&run, &data, optim, 2, 1, 8),
            devices(1),
            opts(false, None),
            peak(),
        )
        .unwrap();
        let lines = deterministic(&run);
        if std::env::var_os("IRE_RECORD").is_some() {
            std::fs::write(
                recorded(optim),
                serde_json::to_string_pretty(&lines).unwrap(),
            )
            .unwrap();
        }
        let want: Vec<MetricLine> =
            serde_json::from_str(&std::fs::read_to_string(recorded(optim)).unwrap()).unwrap();
        assert_eq!(lines.len(), want.len(), "{optim}");
        for (got, want) in lines.iter().zip(&want) {
            assert!(same_run(got, want), "{optim}: {got:?}\nrecorded: {want:?}");
        }
    }
}
