//! Trainer behaviour on a small model and the vendored Moby-Dick corpus: exact resume,
//! data-parallel equivalence, non-finite loss handling, checkpoint pruning, export,
//! and config errors. Every config in configs/ must parse, and read back from its `ire config`
//! text.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use ire_llama::params::named_values;
use ire_train::checkpoint::{checkpoint_path, list_checkpoints};
use ire_train::reference::annotated_toml;
use ire_train::{train, RunConfig, TrainError};

mod common;
use common::*;

#[test]
fn a_resumed_run_reproduces_the_uninterrupted_run_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for optim in ["admire", "adamw", "sgd+ire", "lion+ire", "muon+ire"] {
        let full = tmp.path().join(format!("full-{optim}"));
        let cut = tmp.path().join(format!("cut-{optim}"));
        let s = train::<B>(
            config(&full, &data, optim, 2, 1, 8),
            devices(1),
            opts(false, None),
            peak(),
        )
        .unwrap();
        assert_eq!(s.steps, 8);
        assert!(!s.interrupted);
        // "Kill" after 5 steps (a checkpoint is written on stop), then resume to the end.
        let s = train::<B>(
            config(&cut, &data, optim, 2, 1, 8),
            devices(1),
            opts(false, Some(5)),
            peak(),
        )
        .unwrap();
        assert_eq!((s.steps, s.interrupted), (5, true));
        assert_eq!(list_checkpoints(&cut).unwrap(), vec![4, 5]);
        let s = train::<B>(
            config(&cut, &data, optim, 2, 1, 8),
            devices(1),
            opts(true, None),
            peak(),
        )
        .unwrap();
        assert_eq!(s.steps, 8);
        let (a, b) = (deterministic(&full), deterministic(&cut));
        assert_eq!(a.len(), 8 + 4, "8 train lines and 4 evaluations");
        assert_eq!(a, b, "{optim}: metrics of the resumed run differ");
        assert_eq!(
            weights(&full, 8),
            weights(&cut, 8),
            "{optim}: final weights differ"
        );
        if optim != "adamw" {
            assert!(
                a.iter().any(|l| l.mask_fraction.is_some()),
                "the mask was refreshed"
            );
        }
    }
}

#[test]
fn two_devices_with_half_batches_equal_one_device() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for optim in ["adamw", "admire"] {
        let one = tmp.path().join(format!("one-{optim}"));
        let two = tmp.path().join(format!("two-{optim}"));
        train::<B>(
            config(&one, &data, optim, 4, 1, 4),
            devices(1),
            opts(false, None),
            peak(),
        )
        .unwrap();
        train::<B>(
            config(&two, &data, optim, 2, 2, 4),
            devices(2),
            opts(false, None),
            peak(),
        )
        .unwrap();
        let (a, b) = (weights(&one, 4), weights(&two, 4));
        let worst = worst_relative_difference(&a, &b);
        assert!(
            worst < 1e-4,
            "{optim}: 2x2 vs 1x4 parameters differ by {worst} (relative)"
        );
        let (la, lb) = (deterministic(&one), deterministic(&two));
        for (x, y) in la.iter().zip(&lb) {
            assert!(
                (x.loss - y.loss).abs() < 1e-4,
                "{optim} step {}: {} vs {}",
                x.step,
                x.loss,
                y.loss
            );
        }
    }
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let mut cfg = config(&run, &tmp.path().join("data"), "adamw", 2, 1, 20);
    cfg.schedule.lr_max = 1e9;
    cfg.optim.clip_norm = None;
    let err = train::<B>(cfg, devices(1), opts(false, None), peak()).unwrap_err();
    let TrainError::NonFinite { step, .. } = &err else {
        panic!("expected a non-finite-loss error, got {err}");
    };
    let msg = err.to_string();
    assert!(
        msg.contains("non-finite") && msg.contains("the update was not applied"),
        "{msg}"
    );
    let ckpts = list_checkpoints(&run).unwrap();
    assert!(
        ckpts.iter().all(|s| s < step),
        "no checkpoint at or after the bad step"
    );
    for s in ckpts {
        assert!(weights(&run, s)
            .iter()
            .all(|(_, v)| v.iter().all(|x| x.is_finite())));
    }
}

#[test]
fn an_existing_run_directory_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let data = tmp.path().join("data");
    train::<B>(
        config(&run, &data, "adamw", 2, 1, 2),
        devices(1),
        opts(false, None),
        peak(),
    )
    .unwrap();
    let before = std::fs::read(run.join("metrics.jsonl")).unwrap();
    let err = train::<B>(
        config(&run, &data, "adamw", 2, 1, 2),
        devices(1),
        opts(false, None),
        peak(),
    )
    .unwrap_err()
    .to_string();
    let command = format!("ire train --resume {}", run.display());
    assert!(err.contains(&command), "the exact command: {err}");
    assert_eq!(before, std::fs::read(run.join("metrics.jsonl")).unwrap());
}

#[test]
fn a_run_without_a_checkpoint_gets_one_answer_from_train_and_from_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let data = tmp.path().join("data");
    // What a job killed before its first checkpoint leaves: the metrics of its first steps.
    std::fs::create_dir_all(&run).unwrap();
    let line = r#"{"split":"train","step":1,"tokens":64,"loss":5.0,"lr":0.0,"grad_norm":1.0}"#;
    std::fs::write(run.join("metrics.jsonl"), format!("{line}\n")).unwrap();
    let answers: Vec<String> = [false, true]
        .into_iter()
        .map(|resume| {
            train::<B>(
                config(&run, &data, "adamw", 2, 1, 2),
                devices(1),
                opts(resume, None),
                peak(),
            )
            .unwrap_err()
            .to_string()
        })
        .collect();
    assert_eq!(answers[0], answers[1], "train and --resume disagree");
    let delete = format!("delete {}", run.display());
    assert!(
        answers[0].contains("stopped before its first checkpoint") && answers[0].contains(&delete),
        "{}",
        answers[0]
    );
    assert!(
        !answers[0].contains("--resume"),
        "nothing to resume: {}",
        answers[0]
    );
}

#[test]
fn export_writes_a_folder_transformers_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let data = tmp.path().join("data");
    train::<B>(
        config(&run, &data, "adamw", 2, 1, 4),
        devices(1),
        opts(false, None),
        peak(),
    )
    .unwrap();
    let out = tmp.path().join("export");
    let used = ire_train::export::export(&run, Some(2), &out).unwrap();
    assert_eq!(used, checkpoint_path(&run, 2));
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let json = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(f)).unwrap()).unwrap()
    };
    let cfg = json("config.json");
    let eot = ire_data::PreparedDataset::open(&data).unwrap().eot_id() as u64;
    assert_eq!(cfg["eos_token_id"].as_u64(), Some(eot));
    // transformers' AutoTokenizer takes eos/bos/pad from tokenizer_config.json: the token
    // whose id in tokenizer.json is the end-of-text id ire uses.
    let tok_cfg = json("tokenizer_config.json");
    let eot_token = tok_cfg["eos_token"].as_str().unwrap();
    assert_eq!(eot_token, "<|endoftext|>");
    for key in ["bos_token", "pad_token"] {
        assert_eq!(tok_cfg[key].as_str(), Some(eot_token), "{key}");
    }
    let added = json("tokenizer.json")["added_tokens"].clone();
    let entry = added
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["content"] == eot_token)
        .expect("the end-of-text token is an added token");
    assert_eq!(
        (entry["id"].as_u64(), entry["special"].as_bool()),
        (Some(eot), Some(true))
    );
    assert_eq!(tok_cfg["model_max_length"], cfg["max_position_embeddings"]);
    assert_eq!(cfg["architectures"][0], "LlamaForCausalLM");
    let exported = ire_llama::load_hf::<Flex>(&out, &Default::default()).unwrap();
    let a: Vec<Vec<f32>> = named_values::<Flex, _>(&exported)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let b: Vec<Vec<f32>> = weights(&run, 2).into_iter().map(|(_, v)| v).collect();
    assert_eq!(a, b);
    let err = ire_train::export::export(&run, Some(3), &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no checkpoint at step 3"), "{err}");
}

#[test]
fn a_bf16_run_tracks_the_f32_run_and_writes_f32_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut curves = vec![];
    for precision in [ire_llama::Precision::F32, ire_llama::Precision::Bf16] {
        let run = tmp.path().join(precision.name());
        // AdmIRE: the GNB refresh (every 2 steps) runs the sampled loss in bf16 too.
        let mut cfg = config(&run, &data, "admire", 2, 1, 10);
        cfg.run.precision = precision;
        train::<B>(cfg, devices(1), opts(false, None), peak()).unwrap();
        let lines = ire_train::metrics::read_metrics(&run.join("metrics.jsonl")).unwrap();
        let curve: Vec<(String, usize, f64)> = lines
            .iter()
            .map(|l| (l.split.clone(), l.step, l.loss))
            .collect();
        assert!(curve.iter().all(|(_, _, l)| l.is_finite()));
        // The checkpoint holds f32 tensors whatever the run computed in.
        let st = std::fs::read(checkpoint_path(&run, 10).join("model.safetensors")).unwrap();
        let n = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&st[8..8 + n]).unwrap();
        let dtypes: Vec<&str> = header
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "__metadata__")
            .map(|(_, v)| v["dtype"].as_str().unwrap())
            .collect();
        assert!(
            !dtypes.is_empty() && dtypes.iter().all(|d| *d == "F32"),
            "{dtypes:?}"
        );
        curves.push(curve);
    }
    let (f32, bf16) = (&curves[0], &curves[1]);
    assert_eq!(f32.len(), bf16.len());
    let mut worst = 0.0f64;
    for (a, b) in f32.iter().zip(bf16) {
        assert_eq!((&a.0, a.1), (&b.0, b.1));
        worst = worst.max((a.2 - b.2).abs());
    }
    // Losses ≈ 6 (vocabulary 384). Tolerance 0.02 over 10 steps of lr 3e-3, train and val;
    // measured largest gap 0.004.
    assert!(worst > 0.0, "bf16 must change something");
    assert!(worst < 0.02, "bf16 drifted from f32 by {worst}");
}

#[test]
fn bad_configs_name_the_key() {
    let good = std::fs::read_to_string(repo().join("configs/tiny-admire.toml")).unwrap();
    let cases: [(&str, Vec<String>, &str); 6] = [
        ("no windows", vec!["eval.windows=0".into()], "eval.windows"),
        ("unknown key", vec!["optim.ire.kapa=3".into()], "kapa"),
        (
            "wrong type",
            vec!["optim.ire.kappa=\"big\"".into()],
            "optim.ire.kappa",
        ),
        (
            "bad value",
            vec!["batch.micro_batch=0".into()],
            "batch.micro_batch",
        ),
        (
            "bad schedule",
            vec!["schedule.warmup=1000".into()],
            "schedule",
        ),
        (
            "bad preset",
            vec!["model.preset=\"7b\"".into()],
            "model.preset",
        ),
    ];
    for (what, set, needle) in cases {
        let err = RunConfig::parse(&good, "tiny-admire.toml", &set)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{what}: {err}");
    }
    let err = RunConfig::parse("[run]\nname = 1\n", "x.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("x.toml") && err.contains("run.name"), "{err}");
    // Malformed TOML: the file, line and column of the fault.
    let err = RunConfig::parse("[run]\nname = \"a\"\nseed = = 3\n", "x.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("x.toml:3:"), "{err}");
    // Overrides reach nested keys and keep the types TOML gives them.
    let cfg = RunConfig::parse(
        &good,
        "t",
        &["optim.ire.kappa=2".into(), "run.dir=runs/k2".into()],
    )
    .unwrap();
    assert_eq!(cfg.optim.ire.unwrap().kappa, 2.0);
    assert_eq!(cfg.run.dir, PathBuf::from("runs/k2"));
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.toml` under configs/.
fn config_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![repo().join("configs")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 13, "found only {files:?}");
    files
}

#[test]
fn every_config_in_configs_parses() {
    for path in config_files() {
        let cfg = RunConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            cfg.schedule.total > cfg.schedule.warmup,
            "{}",
            path.display()
        );
    }
}

/// Every config under configs/, and one with the optional keys set, parse back from their
/// `ire config` text to the same config.
#[test]
fn the_annotated_config_resolves_to_the_same_config() {
    let mut configs: Vec<(PathBuf, Vec<String>)> =
        config_files().into_iter().map(|p| (p, vec![])).collect();
    let set = [
        "optim.clip_norm=false",
        "metrics.peak_flops=2.5e11",
        "model.max_position_embeddings=512",
        "batch.seq_len=512",
        "data.tokenizer={ file = \"tok.json\" }",
        "optim.ire.start=7",
        "run.devices=[\"cpu\", \"cpu\"]",
    ];
    let admire = repo().join("configs/tiny-admire.toml");
    configs.push((admire, set.iter().map(|s| s.to_string()).collect()));
    for (path, set) in configs {
        let origin = path.display().to_string();
        let cfg = RunConfig::load(&path, &set).unwrap();
        let text = annotated_toml(&cfg, &origin);
        let again = RunConfig::parse(&text, "annotated", &[])
            .unwrap_or_else(|e| panic!("{origin}: {e}\n{text}"));
        let json = |c: &RunConfig| serde_json::to_value(c).unwrap();
        assert_eq!(json(&again), json(&cfg), "{origin}\n{text}");
        assert_eq!(
            annotated_toml(&again, &origin),
            text,
            "{origin}: a fixed point"
        );
    }
}
