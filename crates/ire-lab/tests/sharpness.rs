//! `ire_lab::sharpness` on a trained tiny Llama: the flat loss closure is the model's loss
//! (its gradient matches finite differences of the loss along a direction), the Hessian-vector
//! products it gives are symmetric and in the linear regime of the finite differences, and a
//! measurement is recorded and read back.

#[path = "../../ire-train/tests/common/mod.rs"]
mod common;

use ire_lab::sharpness::{append_record, measure, read_records, FlatLoss, SharpnessSettings};
use ire_optim::sharpness::{default_step, hessian_vector, hutchinson_trace, Probing};

fn trained_run() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let cfg = common::config(&run, &tmp.path().join("data"), "adamw", 4, 1, 4);
    ire_train::train::<common::B>(
        cfg,
        common::devices(1),
        common::opts(false, None),
        common::peak(),
    )
    .unwrap();
    (tmp, run)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn the_flat_loss_and_its_hessian_products_are_consistent() {
    let (_tmp, run) = trained_run();
    let dev = common::devices(1).remove(0);
    let (step, f) = FlatLoss::<common::B>::load(&run, None, 4, &dev).unwrap();
    assert_eq!(step, 4);
    let theta = f.theta();
    let (loss, g) = f.eval(&theta).unwrap();
    assert!(
        f.eval(&theta[1..]).is_err(),
        "a θ of the wrong length is an error"
    );
    assert_eq!(g.len(), theta.len());
    assert!(
        loss.is_finite() && loss > 0.0 && loss < (384f64).ln() + 0.5,
        "{loss}"
    );

    // Along the unit gradient direction the loss changes by |g| per unit step: a wrong
    // parameter layout (θ written back in another order than the gradient is read) breaks it.
    let norm = dot(&g, &g).sqrt();
    let u: Vec<f64> = g.iter().map(|x| x / norm).collect();
    let h = 1e-2;
    let at = |s: f64| -> f64 {
        let t: Vec<f64> = theta.iter().zip(&u).map(|(t, d)| t + s * d).collect();
        f.eval(&t).unwrap().0
    };
    let slope = (at(h) - at(-h)) / (2.0 * h);
    assert!(
        (slope - norm).abs() < 0.02 * norm,
        "directional derivative {slope} vs |g| {norm}"
    );

    // H is symmetric: vᵀ(Hw) = wᵀ(Hv) for random ±1 vectors.
    let mut grad = |t: &[f64]| -> Result<Vec<f64>, ire_optim::OptimError> { Ok(f.eval(t)?.1) };
    let eps = default_step(&theta);
    let sign = |i: usize, k: usize| {
        if (i * 2654435761 + k * 40503) % 7 < 3 {
            1.0
        } else {
            -1.0
        }
    };
    let v: Vec<f64> = (0..theta.len()).map(|i| sign(i, 1)).collect();
    let w: Vec<f64> = (0..theta.len()).map(|i| sign(i, 2)).collect();
    let hv = hessian_vector(&mut grad, &theta, &v, eps).unwrap();
    let hw = hessian_vector(&mut grad, &theta, &w, eps).unwrap();
    let (a, b) = (dot(&v, &hw), dot(&w, &hv));
    let scale = dot(&v, &hv).abs().max(dot(&w, &hw).abs());
    assert!(
        (a - b).abs() < 0.02 * scale,
        "vᵀHw {a} vs wᵀHv {b} (scale {scale})"
    );

    // The finite differences are in their linear regime: halving ε moves the trace estimate
    // (same probes) far less than its standard error.
    let t1 = hutchinson_trace(&mut grad, &theta, 6, Probing { eps, seed: 5 }).unwrap();
    let half = Probing {
        eps: eps / 2.0,
        seed: 5,
    };
    let t2 = hutchinson_trace(&mut grad, &theta, 6, half).unwrap();
    assert!(t1.stderr > 0.0);
    assert!(
        (t1.mean - t2.mean).abs() < 0.1 * t1.stderr.max(0.01 * t1.mean.abs()),
        "{t1:?} vs {t2:?}"
    );
}

#[test]
fn a_measurement_is_recorded_and_a_missing_step_is_named() {
    let (_tmp, run) = trained_run();
    let dev = common::devices(1).remove(0);
    let settings = SharpnessSettings {
        windows: 2,
        probes: 3,
        power_iters: 30,
        power_tol: 1e-3,
        seed: 1,
    };
    let r = measure::<common::B>(&run, Some(2), settings, &dev).unwrap();
    assert_eq!(r.step, 2);
    assert!(r.trace.is_finite() && r.trace_stderr.is_finite() && r.trace_stderr > 0.0);
    // λ_max bounds the curvature along any unit direction, and the trace is the sum of all.
    assert!(
        r.lambda_max.is_finite() && r.lambda_max.abs() > 0.0,
        "{r:?}"
    );
    assert!(r.lambda_iters >= 2 && r.lambda_iters <= 30);
    append_record(&run, &r).unwrap();
    assert_eq!(read_records(&run).unwrap(), vec![r]);

    let e = measure::<common::B>(&run, Some(3), settings, &dev).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("step 3") && msg.contains("[2, 4]"), "{msg}");
}
