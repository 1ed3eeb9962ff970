//! The `[optim]` TOML section: defaults, unknown keys, bad values named by field.

use ire_optim::{
    Estimator, HessianForm, MaskScope, OptimConfig, OptimError, OptimName, ScheduleConfig,
    ScheduleKind,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Run {
    optim: OptimConfig,
    schedule: Option<ScheduleConfig>,
}

fn parse(text: &str) -> Result<Run, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

#[test]
fn minimal_section_gets_the_papers_defaults() {
    let run = parse("[optim]\nname = \"admire\"\n").unwrap();
    assert_eq!(run.optim, OptimConfig::admire());
    let o = run.optim;
    assert_eq!((o.kappa, o.gamma, o.interval), (4.0, 0.6, 10));
    assert_eq!(
        (o.beta1, o.beta2, o.eps, o.weight_decay),
        (0.9, 0.95, 1e-16, 0.1)
    );
    assert_eq!(
        (o.scope, o.estimator, o.hessian),
        (MaskScope::Global, Estimator::Gnb, HessianForm::Squared)
    );
    assert_eq!(
        (o.prog_decay, o.no_decay_groups, o.start, o.clip_norm),
        (false, false, None, Some(1.0))
    );
}

#[test]
fn every_field_parses() {
    let run = parse(
        r#"
[optim]
name = "adamw"
kappa = 3
gamma = 0.7
interval = 5
beta1 = 0.8
beta2 = 0.99
eps = 1e-8
weight_decay = 0.0
prog_decay = true
scope = "per_tensor"
estimator = "adam_v"
hessian = "abs"
start = 300
no_decay_groups = true
clip_norm = false

[schedule]
kind = "constant"
lr_max = 6e-4
warmup = 10
total = 100
"#,
    )
    .unwrap();
    let o = run.optim;
    assert_eq!(o.name, OptimName::Adamw);
    assert_eq!(
        (o.kappa, o.gamma, o.interval, o.start),
        (3.0, 0.7, 5, Some(300))
    );
    assert_eq!(
        (o.scope, o.estimator, o.hessian),
        (MaskScope::PerTensor, Estimator::AdamV, HessianForm::Abs)
    );
    assert_eq!(o.clip_norm, None);
    let s = run.schedule.unwrap();
    assert_eq!(s.kind, ScheduleKind::Constant);
    assert_eq!(s.build().unwrap().lr_min, 6e-4 / 20.0);
    // The resolved config survives a TOML round trip (clip_norm = false included).
    let text = toml::to_string(&o).unwrap();
    assert_eq!(toml::from_str::<OptimConfig>(&text).unwrap(), o);
}

#[test]
fn bad_keys_and_values_are_named() {
    let err = parse("[optim]\nname = \"admire\"\nkapa = 2.0\n").unwrap_err();
    assert!(err.contains("kapa"), "{err}");
    let err = parse("[optim]\nname = \"adam\"\n").unwrap_err();
    assert!(err.contains("name") && err.contains("admire"), "{err}");
    let err = parse("[optim]\nname = \"admire\"\nscope = \"local\"\n").unwrap_err();
    assert!(err.contains("scope") && err.contains("per_tensor"), "{err}");
    let err = parse("[optim]\nname = \"admire\"\nclip_norm = true\n").unwrap_err();
    assert!(err.contains("clip_norm"), "{err}");
    let err = parse("[optim]\nkappa = 2.0\n").unwrap_err();
    assert!(err.contains("name"), "{err}");
}

#[test]
fn out_of_range_values_are_rejected_by_field() {
    let field = |cfg: OptimConfig| match cfg.validate() {
        Err(OptimError::Config { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    };
    let base = OptimConfig::admire();
    assert_eq!(
        field(OptimConfig {
            gamma: 0.0,
            ..base.clone()
        }),
        "gamma"
    );
    assert_eq!(
        field(OptimConfig {
            gamma: 1.5,
            ..base.clone()
        }),
        "gamma"
    );
    assert_eq!(
        field(OptimConfig {
            kappa: -1.0,
            ..base.clone()
        }),
        "kappa"
    );
    assert_eq!(
        field(OptimConfig {
            interval: 0,
            ..base.clone()
        }),
        "interval"
    );
    assert_eq!(
        field(OptimConfig {
            beta2: 1.0,
            ..base.clone()
        }),
        "beta2"
    );
    assert_eq!(
        field(OptimConfig {
            eps: -1.0,
            ..base.clone()
        }),
        "eps"
    );
    assert_eq!(
        field(OptimConfig {
            weight_decay: f64::NAN,
            ..base.clone()
        }),
        "weight_decay"
    );
    assert_eq!(
        field(OptimConfig {
            clip_norm: Some(0.0),
            ..base.clone()
        }),
        "clip_norm"
    );
    assert!(base.validate().is_ok());
    let msg = OptimConfig { gamma: 2.0, ..base }
        .validate()
        .unwrap_err()
        .to_string();
    assert_eq!(msg, "invalid [optim] gamma: 2 is not in (0, 1]");
}

#[test]
fn the_shipped_configs_parse() {
    for file in ["tiny-admire.toml", "tiny-adamw.toml"] {
        let path = format!("{}/../../configs/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let value: toml::Table = toml::from_str(&text).unwrap();
        let optim: OptimConfig = value["optim"]
            .clone()
            .try_into()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        optim.validate().unwrap();
        let schedule: ScheduleConfig = value["schedule"]
            .clone()
            .try_into()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        schedule.build().unwrap();
        assert_eq!(optim.name == OptimName::Admire, file.contains("admire"));
    }
}
