//! Checkpoint round trip: N steps, save (optimizer + model via `save_hf`), restore into a fresh
//! optimizer and a model reloaded with `load_hf` (new `ParamId`s), M more steps — the result
//! equals the uninterrupted run bit for bit, masks and GNB draws included.

mod common;

use common::{bit_equal, loss_grads, model, snapshot, tokens, B};
use ire_llama::{load_hf, save_hf, Llama};
use ire_optim::{
    clip_global_norm, gnb_gradients, gnb_seed, BaseName, IreConfig, OptimConfig, OptimError,
    Optimizer, STATE_JSON_FILE, STATE_TENSORS_FILE,
};

fn cfg() -> OptimConfig {
    with_ire(OptimConfig::adamw())
}

/// `base` with IRE refreshing every 3 steps from step 2.
fn with_ire(base: OptimConfig) -> OptimConfig {
    base.with_ire(IreConfig {
        start: Some(2),
        interval: 3,
        ..IreConfig::default()
    })
}

/// Every base with IRE, and SGD without momentum (no buffer at all).
fn every_base() -> Vec<OptimConfig> {
    let mut plain_sgd = OptimConfig::base(BaseName::Sgd);
    plain_sgd.sgd.as_mut().unwrap().momentum = 0.0;
    let bases = [
        BaseName::Adamw,
        BaseName::Sgd,
        BaseName::Lion,
        BaseName::Muon,
    ];
    let mut out: Vec<OptimConfig> = bases
        .into_iter()
        .map(|b| with_ire(OptimConfig::base(b)))
        .collect();
    out.push(with_ire(plain_sgd));
    out
}

/// One iteration of the paper's loop.
fn iteration(opt: &mut Optimizer<B>, m: Llama<B>, it: usize) -> Llama<B> {
    if opt.needs_refresh(it) {
        let batch = tokens(500 + it as u64, 2, 8, m.config.vocab_size);
        let g = gnb_gradients(&m, batch, gnb_seed(17, it as u64), 0);
        opt.refresh_mask(&m, &g);
    }
    let (grads, _) = clip_global_norm(&m, loss_grads(&m, it as u64), 1.0);
    let lr = 3e-3 * (1.0 + (it as f64 * 0.3).cos()) / 2.0;
    opt.step(it, lr, 3e-3, m, grads)
}

#[test]
fn resume_is_bit_exact_for_every_base() {
    for cfg in every_base() {
        resume_is_bit_exact(&cfg);
    }
}

fn resume_is_bit_exact(cfg: &OptimConfig) {
    let (n, total) = (6, 12);
    let label = cfg.label();

    let mut straight = model(7);
    let mut opt = Optimizer::<B>::new(cfg, 0).unwrap();
    for it in 0..total {
        straight = iteration(&mut opt, straight, it);
    }
    assert!(opt.refreshes() >= 3);

    let dir = tempfile::tempdir().unwrap();
    let mut first = model(7);
    let mut opt1 = Optimizer::<B>::new(cfg, 0).unwrap();
    for it in 0..n {
        first = iteration(&mut opt1, first, it);
    }
    opt1.save(dir.path()).unwrap();
    save_hf(&first, dir.path(), &Default::default()).unwrap();
    let stats = opt1.mask_stats();
    drop((first, opt1));

    let mut resumed: Llama<B> = load_hf(dir.path(), &Default::default()).unwrap();
    let mut opt2 = Optimizer::<B>::new(cfg, 0).unwrap();
    opt2.load(dir.path(), &Default::default()).unwrap();
    assert_eq!(opt2.mask_stats(), stats);
    assert!(stats.is_some());
    for it in n..total {
        resumed = iteration(&mut opt2, resumed, it);
    }
    assert!(
        bit_equal(&snapshot(&straight), &snapshot(&resumed)),
        "{label}"
    );
    assert_eq!(opt.refreshes(), opt2.refreshes(), "{label}");
    assert_eq!(opt.mask_stats(), opt2.mask_stats(), "{label}");
    for name in [
        "model.layers.1.self_attn.q_proj.weight",
        "model.norm.weight",
        "model.embed_tokens.weight",
    ] {
        let bits = |o: &Optimizer<B>| -> (Vec<bool>, Vec<(String, Vec<u32>)>) {
            let buffers = o.param_state(name).map(|s| {
                let bits = |t: &burn::tensor::Tensor<burn::backend::Flex, 1>| {
                    t.to_data()
                        .to_vec::<f32>()
                        .unwrap()
                        .iter()
                        .map(|x| x.to_bits())
                        .collect()
                };
                s.buffers
                    .iter()
                    .map(|(k, t)| (k.to_string(), bits(t)))
                    .collect()
            });
            let mask = o.mask(name).unwrap().clone().into_data().to_vec().unwrap();
            (mask, buffers.unwrap_or_default())
        };
        assert_eq!(bits(&opt), bits(&opt2), "{label} {name}");
        let buffers = bits(&opt).1.len();
        assert!(
            buffers > 0 || label == "sgd+ire",
            "{label} {name}: no buffers"
        );
    }
    let name = "model.layers.1.self_attn.q_proj.weight";
    assert_eq!(
        opt.param_state(name).map(|s| s.step),
        opt2.param_state(name).map(|s| s.step)
    );
}

/// A state written before there were other bases (format 1: no rules, the config in the older
/// spelling) loads as AdamW state and resumes the run bit for bit.
#[test]
fn a_state_of_the_format_before_bases_loads_as_adamw() {
    let cfg = cfg();
    let (mut a, mut b) = (model(5), model(5));
    let (mut straight, mut opt1) = (
        Optimizer::<B>::new(&cfg, 0).unwrap(),
        Optimizer::<B>::new(&cfg, 0).unwrap(),
    );
    for it in 0..6 {
        a = iteration(&mut straight, a, it);
        b = iteration(&mut opt1, b, it);
    }
    let dir = tempfile::tempdir().unwrap();
    opt1.save(dir.path()).unwrap();
    let json = dir.path().join(STATE_JSON_FILE);
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let root = state.as_object_mut().unwrap();
    assert!(root.remove("rules").is_some());
    root.insert("format".into(), "ire-optim-state/1".into());
    root.insert(
        "config".into(),
        serde_json::json!({"name": "admire", "kappa": 4.0, "beta2": 0.95}),
    );
    std::fs::write(&json, serde_json::to_string(&state).unwrap()).unwrap();
    let mut opt2 = Optimizer::<B>::new(&cfg, 0).unwrap();
    opt2.load(dir.path(), &Default::default()).unwrap();
    for it in 6..10 {
        a = iteration(&mut straight, a, it);
        b = iteration(&mut opt2, b, it);
    }
    assert!(bit_equal(&snapshot(&a), &snapshot(&b)));
}

#[test]
fn save_load_save_gives_the_same_bytes() {
    let mut m = model(3);
    let mut opt = Optimizer::<B>::new(&cfg(), 0).unwrap();
    for it in 0..4 {
        m = iteration(&mut opt, m, it);
    }
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    opt.save(a.path()).unwrap();
    let mut again = Optimizer::<B>::new(&cfg(), 0).unwrap();
    again.load(a.path(), &Default::default()).unwrap();
    again.save(b.path()).unwrap();
    for file in [STATE_TENSORS_FILE, STATE_JSON_FILE] {
        let (x, y) = (
            std::fs::read(a.path().join(file)).unwrap(),
            std::fs::read(b.path().join(file)).unwrap(),
        );
        assert!(x == y, "{file} differs after a round trip");
    }
}

#[test]
fn missing_or_corrupt_state_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut opt = Optimizer::<B>::new(&cfg(), 0).unwrap();
    match opt.load(dir.path(), &Default::default()) {
        Err(OptimError::Io { path, .. }) => assert!(path.ends_with(STATE_JSON_FILE)),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    let m = model(3);
    let g = loss_grads(&m, 0);
    let _ = opt.step(0, 1e-3, 1e-3, m, g);
    opt.save(dir.path()).unwrap();
    std::fs::write(dir.path().join(STATE_TENSORS_FILE), b"not safetensors").unwrap();
    match opt.load(dir.path(), &Default::default()) {
        Err(OptimError::Safetensors { file, .. }) => assert!(file.ends_with(STATE_TENSORS_FILE)),
        other => panic!("expected a safetensors error, got {other:?}"),
    }
    // The failed load left the state alone.
    assert_eq!(opt.param_state("lm_head.weight").unwrap().step, 1);
}
