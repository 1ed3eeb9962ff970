//! The `[optim]` TOML section: both spellings, defaults, unknown keys, tables of another base,
//! bad values named by field.

use ire_optim::config_read::upgrade;
use ire_optim::{
    BaseName, Estimator, HessianForm, IreConfig, MaskScope, MuonAdjustLr, OptimConfig, OptimError,
    ScheduleConfig, ScheduleKind,
};

/// `[optim]` (and `[schedule]`) of a config text as `ire train` reads them; `saved`: a config
/// ire wrote itself.
fn read(text: &str, saved: bool) -> Result<(OptimConfig, Option<ScheduleConfig>), String> {
    let mut root: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut optim = root
        .remove("optim")
        .and_then(|v| v.as_table().cloned())
        .unwrap_or_default();
    upgrade(&mut optim, saved).map_err(|e| e.to_string())?;
    let mut cfg: OptimConfig = optim
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string())?;
    cfg.fill_tables();
    cfg.validate().map_err(|e| e.to_string())?;
    let schedule = root.remove("schedule").map(|s| s.try_into().unwrap());
    Ok((cfg, schedule))
}

fn parse(text: &str) -> Result<OptimConfig, String> {
    read(text, false).map(|(o, _)| o)
}

#[test]
fn minimal_sections_get_the_papers_defaults_in_either_spelling() {
    let admire = parse("[optim]\nname = \"admire\"\n").unwrap();
    assert_eq!(admire, OptimConfig::admire());
    assert_eq!(
        parse("[optim]\nbase = \"adamw\"\n[optim.ire]\n").unwrap(),
        admire
    );
    assert_eq!(
        parse("[optim]\nname = \"adamw\"\n").unwrap(),
        OptimConfig::adamw()
    );
    assert_eq!(parse("[optim]\n").unwrap(), OptimConfig::adamw());
    let ire = admire.ire.clone().unwrap();
    assert_eq!((ire.kappa, ire.gamma, ire.interval), (4.0, 0.6, 10));
    assert_eq!(
        (
            ire.scope,
            ire.estimator,
            ire.hessian,
            ire.prog_decay,
            ire.start
        ),
        (
            MaskScope::Global,
            Estimator::Gnb,
            HessianForm::Squared,
            false,
            None
        )
    );
    let a = admire.adamw.unwrap();
    assert_eq!(
        (a.beta1, a.beta2, a.eps, a.weight_decay),
        (0.9, 0.95, 1e-16, 0.1)
    );
    assert_eq!(
        (admire.no_decay_groups, admire.clip_norm),
        (false, Some(1.0))
    );
    // Each base gets its own table's defaults (Muon also AdamW's, for what it leaves to AdamW).
    let sgd = parse("[optim]\nbase = \"sgd\"\n").unwrap();
    let s = sgd.sgd.unwrap();
    assert_eq!(
        (s.momentum, s.dampening, s.nesterov, s.weight_decay),
        (0.9, 0.0, false, 0.0)
    );
    assert!(sgd.adamw.is_none() && sgd.ire.is_none());
    let l = parse("[optim]\nbase = \"lion\"\n").unwrap().lion.unwrap();
    assert_eq!((l.beta1, l.beta2, l.weight_decay), (0.9, 0.99, 0.0));
    let muon = parse("[optim]\nbase = \"muon\"\n[optim.ire]\nkappa = 2\n").unwrap();
    let m = muon.muon.unwrap();
    assert_eq!(
        (m.momentum, m.nesterov, m.weight_decay, m.ns_steps),
        (0.95, true, 0.1, 5)
    );
    assert_eq!((m.ns_coefficients, m.eps), ([3.4445, -4.775, 2.0315], 1e-7));
    assert_eq!(m.adjust_lr, MuonAdjustLr::MatchRmsAdamw);
    assert_eq!(muon.adamw, OptimConfig::adamw().adamw);
    assert_eq!(
        (muon.label(), sgd.label(), admire.label()),
        ("muon+ire".into(), "sgd".into(), "admire".into())
    );
}

#[test]
fn the_older_spelling_reads_as_the_current_one_key_for_key() {
    let old = r#"
[optim]
name = "admire"
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
"#;
    let new = r#"
[optim]
base = "adamw"
no_decay_groups = true
clip_norm = false

[optim.adamw]
beta1 = 0.8
beta2 = 0.99
eps = 1e-8
weight_decay = 0.0

[optim.ire]
kappa = 3
gamma = 0.7
interval = 5
prog_decay = true
scope = "per_tensor"
estimator = "adam_v"
hessian = "abs"
start = 300
"#;
    let (o, schedule) = read(old, false).unwrap();
    assert_eq!(o, parse(new).unwrap());
    let ire = o.ire.clone().unwrap();
    assert_eq!(
        (ire.kappa, ire.gamma, ire.interval, ire.start),
        (3.0, 0.7, 5, Some(300))
    );
    assert_eq!(
        (ire.scope, ire.estimator, ire.hessian),
        (MaskScope::PerTensor, Estimator::AdamV, HessianForm::Abs)
    );
    assert_eq!((o.clip_norm, o.adamw.unwrap().beta1), (None, 0.8));
    let s = schedule.unwrap();
    assert_eq!(s.kind, ScheduleKind::Constant);
    assert_eq!(s.build().unwrap().lr_min, 6e-4 / 20.0);
    // The resolved config survives a TOML round trip (clip_norm = false included), in the
    // current spelling.
    let text = toml::to_string(&o).unwrap();
    assert!(text.contains("[ire]") && !text.contains("name"), "{text}");
    assert_eq!(toml::from_str::<OptimConfig>(&text).unwrap(), o);
    // An AdamW config in the older spelling: without IRE; IRE keys refused, unless ire saved
    // the config itself (older versions wrote every key), then dropped.
    let adamw_old = "[optim]\nname = \"adamw\"\nkappa = 4.0\nbeta2 = 0.9\n";
    let err = parse(adamw_old).unwrap_err();
    assert!(
        err.contains("kappa") && err.contains("only applies to AdmIRE"),
        "{err}"
    );
    let (saved, _) = read(adamw_old, true).unwrap();
    assert_eq!((saved.ire, saved.adamw.unwrap().beta2), (None, 0.9));
}

#[test]
fn every_base_table_parses_and_round_trips() {
    let text = r#"
[optim]
base = "muon"
[optim.muon]
momentum = 0.9
nesterov = false
weight_decay = 0.01
ns_steps = 4
ns_coefficients = [3.0, -4.0, 2.0]
eps = 1e-6
adjust_lr = "original"
[optim.adamw]
beta2 = 0.98
[optim.ire]
gamma = 0.5
"#;
    let o = parse(text).unwrap();
    let m = o.muon.unwrap();
    assert_eq!(
        (m.momentum, m.nesterov, m.weight_decay, m.ns_steps),
        (0.9, false, 0.01, 4)
    );
    assert_eq!(
        (m.ns_coefficients, m.eps, m.adjust_lr),
        ([3.0, -4.0, 2.0], 1e-6, MuonAdjustLr::Original)
    );
    assert_eq!(
        (o.adamw.unwrap().beta2, o.ire.clone().unwrap().gamma),
        (0.98, 0.5)
    );
    for text in [
        text,
        "[optim]\nbase = \"sgd\"\n[optim.sgd]\nmomentum = 0.8\nnesterov = true\nweight_decay = 5e-4\n",
        "[optim]\nbase = \"lion\"\n[optim.lion]\nbeta1 = 0.95\nbeta2 = 0.98\nweight_decay = 1.0\n",
    ] {
        let o = parse(text).unwrap();
        let again = toml::to_string(&o).unwrap();
        assert_eq!(parse(&format!("[optim]\n{}", again.replace("\n[", "\n[optim."))).unwrap(), o, "{again}");
    }
    let s =
        parse("[optim]\nbase = \"sgd\"\n[optim.sgd]\nmomentum = 0.8\nnesterov = true\n").unwrap();
    assert_eq!(
        (s.sgd.unwrap().momentum, s.sgd.unwrap().nesterov, s.base),
        (0.8, true, BaseName::Sgd)
    );
}

#[test]
fn bad_keys_and_values_are_named() {
    let err = |text: &str| parse(text).unwrap_err();
    let e = err("[optim]\nbase = \"adamw\"\n[optim.ire]\nkapa = 2.0\n");
    assert!(e.contains("kapa"), "{e}");
    let e = err("[optim]\nname = \"adam\"\n");
    assert!(e.contains("name") && e.contains("admire"), "{e}");
    let e = err("[optim]\nbase = \"adam\"\n");
    assert!(e.contains("adam") && e.contains("lion"), "{e}");
    let e = err("[optim]\nname = \"admire\"\nscope = \"local\"\n");
    assert!(e.contains("local") && e.contains("per_tensor"), "{e}");
    let e = err("[optim]\nname = \"admire\"\nclip_norm = true\n");
    assert!(e.contains("clip_norm"), "{e}");
    // Mixed spellings, misplaced keys, tables of another base.
    let e = err("[optim]\nname = \"admire\"\nbase = \"sgd\"\n");
    assert!(
        e.contains("[optim] name") && e.contains("write one of them"),
        "{e}"
    );
    let e = err("[optim]\nname = \"admire\"\n[optim.ire]\nkappa = 2\n");
    assert!(
        e.contains("[optim] ire") && e.contains("replace `name` by `base`"),
        "{e}"
    );
    let e = err("[optim]\nbase = \"adamw\"\nkappa = 2\n");
    assert!(
        e.contains("[optim] kappa") && e.contains("belongs in [optim.ire]"),
        "{e}"
    );
    let e = err("[optim]\nbase = \"sgd\"\nbeta2 = 0.9\n");
    assert!(
        e.contains("[optim] beta2") && e.contains("belongs in [optim.adamw]"),
        "{e}"
    );
    let e = err("[optim]\nkappa = 2.0\n");
    assert!(e.contains("belongs in [optim.ire]"), "{e}");
    let e = err("[optim]\nbase = \"adamw\"\n[optim.sgd]\nmomentum = 0.5\n");
    assert!(
        e.contains("[optim] sgd") && e.contains("set base = \"sgd\""),
        "{e}"
    );
    let e = err("[optim]\nbase = \"sgd\"\n[optim.adamw]\n");
    assert!(
        e.contains("[optim] adamw") && e.contains("base is \"sgd\""),
        "{e}"
    );
    let e = err("[optim]\nbase = \"lion\"\n[optim.ire]\nestimator = \"adam_v\"\n");
    assert!(e.contains("ire.estimator") && e.contains("\"gnb\""), "{e}");
}

#[test]
fn out_of_range_values_are_rejected_by_field() {
    let field = |cfg: OptimConfig| match cfg.validate() {
        Err(OptimError::Config { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    };
    let ire = |f: fn(&mut IreConfig)| {
        let mut cfg = OptimConfig::admire();
        f(cfg.ire.as_mut().unwrap());
        cfg
    };
    assert_eq!(field(ire(|i| i.gamma = 0.0)), "ire.gamma");
    assert_eq!(field(ire(|i| i.gamma = 1.5)), "ire.gamma");
    assert_eq!(field(ire(|i| i.kappa = -1.0)), "ire.kappa");
    assert_eq!(field(ire(|i| i.interval = 0)), "ire.interval");
    let adamw = |f: fn(&mut ire_optim::AdamWConfig)| {
        let mut cfg = OptimConfig::admire();
        f(cfg.adamw.as_mut().unwrap());
        cfg
    };
    assert_eq!(field(adamw(|a| a.beta2 = 1.0)), "adamw.beta2");
    assert_eq!(field(adamw(|a| a.eps = -1.0)), "adamw.eps");
    assert_eq!(
        field(adamw(|a| a.weight_decay = f64::NAN)),
        "adamw.weight_decay"
    );
    let clip = OptimConfig {
        clip_norm: Some(0.0),
        ..OptimConfig::admire()
    };
    assert_eq!(field(clip), "clip_norm");
    let mut sgd = OptimConfig::base(BaseName::Sgd);
    sgd.sgd.as_mut().unwrap().dampening = 0.5;
    sgd.sgd.as_mut().unwrap().nesterov = true;
    assert_eq!(field(sgd), "sgd.nesterov");
    let mut lion = OptimConfig::base(BaseName::Lion);
    lion.lion.as_mut().unwrap().beta2 = -0.1;
    assert_eq!(field(lion), "lion.beta2");
    let mut muon = OptimConfig::base(BaseName::Muon);
    muon.muon.as_mut().unwrap().ns_steps = 0;
    assert_eq!(field(muon), "muon.ns_steps");
    assert!(OptimConfig::admire().validate().is_ok());
    let msg = ire(|i| i.gamma = 2.0).validate().unwrap_err().to_string();
    assert_eq!(msg, "invalid [optim] ire.gamma: 2 is not in (0, 1]");
}

#[test]
fn the_shipped_configs_parse() {
    for file in ["tiny-admire.toml", "tiny-adamw.toml"] {
        let path = format!("{}/../../configs/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let (optim, schedule) = read(&text, false).unwrap_or_else(|e| panic!("{file}: {e}"));
        schedule.unwrap().build().unwrap();
        assert_eq!(optim.ire.is_some(), file.contains("admire"));
    }
}
