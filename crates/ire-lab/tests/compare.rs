//! `ire compare`'s pieces on real runs: three tiny trainings (two seeds of AdamW, one AdmIRE),
//! grouped by config, charted, tabled, with the speed-up and sharpness columns.

#[path = "../../ire-train/tests/common/mod.rs"]
mod common;

use common::{config, devices, opts, peak, B};
use ire_train::metrics::MetricLine;
use ire_train::train;

#[test]
fn compare_draws_charts_and_reports_the_speedup() {
    use ire_lab::charts::draw;
    use ire_lab::curves::{speedup, RunCurves};
    use ire_lab::groups::{group_table, load_groups, singletons};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let base = tmp.path().join("adamw");
    let cand = tmp.path().join("admire");
    train::<B>(
        config(&base, &data, "adamw", 2, 1, 6),
        devices(1),
        opts(false, None),
        peak(),
    )
    .unwrap();
    train::<B>(
        config(&cand, &data, "admire", 2, 1, 6),
        devices(1),
        opts(false, None),
        peak(),
    )
    .unwrap();
    // A second seed of the baseline's config joins its group (mean curve with a band).
    let base2 = tmp.path().join("adamw-s2");
    let mut cfg = config(&base2, &data, "adamw", 2, 1, 6);
    cfg.run.seed = 11;
    train::<B>(cfg, devices(1), opts(false, None), peak()).unwrap();
    // Sharpness measured at the baseline seeds' last checkpoints: a column and a chart.
    let settings = ire_lab::sharpness::SharpnessSettings {
        windows: 2,
        probes: 2,
        power_iters: 2,
        ..Default::default()
    };
    for run in [&base, &base2] {
        let r = ire_lab::sharpness::measure::<B>(run, None, settings, &devices(1)[0]).unwrap();
        ire_lab::sharpness::append_record(run, &r).unwrap();
    }
    let groups = load_groups(&[&base, &cand, &base2]).unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(
        (groups[0].name.as_str(), groups[0].runs.len()),
        ("adamw", 2)
    );
    assert_eq!(
        (groups[1].name.as_str(), groups[1].runs.len()),
        ("admire", 1)
    );
    let seeds = groups[0].final_val().unwrap();
    assert!(
        seeds.n == 2 && seeds.std > 0.0,
        "two seeds differ: {seeds:?}"
    );
    // The charts' titles name the setup the runs share (from their saved configs).
    let title = ire_lab::charts::setup_title(&groups);
    assert!(
        title.starts_with("Llama ") && title.contains(" layers, ") && !title.contains("differs"),
        "{title}"
    );
    let out = tmp.path().join("charts");
    let files = draw(&groups, &out).unwrap();
    assert_eq!(files.len(), 8);
    assert!(files[6].ends_with("sharpness_vs_steps.png"));
    for f in &files {
        assert!(
            std::fs::metadata(f).unwrap().len() > 1000,
            "{} is too small",
            f.display()
        );
    }
    let text = group_table(&groups);
    assert!(
        text.contains("| adamw | 2 | 6 |")
            && text.contains("| admire | 1 | 6 |")
            && text.contains("(baseline)"),
        "{text}"
    );
    let alone = singletons(vec![
        RunCurves::load(&base).unwrap(),
        RunCurves::load(&base2).unwrap(),
    ]);
    assert_eq!(alone.len(), 2);
    // The speed-up metric on hand-made curves: the baseline ends at 2.0 after 100 steps; the
    // candidate first reaches 2.0 at step 40, so the speed-up is 100 / 40 = 2.5.
    let line = |step: usize, loss: f64| MetricLine {
        split: "val".into(),
        step,
        tokens: 0,
        loss,
        lr: None,
        grad_norm: None,
        tokens_per_s: None,
        mfu: None,
        wall_s: 0.0,
        mask_fraction: None,
        mask: None,
        kappa_t: None,
    };
    let b = RunCurves {
        name: "b".into(),
        train: vec![],
        val: vec![line(20, 3.0), line(100, 2.0)],
        sharpness: vec![],
        setup: None,
        seed: None,
    };
    let a = RunCurves {
        name: "a".into(),
        train: vec![],
        val: vec![line(20, 2.5), line(40, 1.99), line(60, 1.9)],
        sharpness: vec![],
        setup: None,
        seed: None,
    };
    assert_eq!(speedup(&b, &a), Some((40, 2.5)));
    assert_eq!(speedup(&a, &b), None);
}
