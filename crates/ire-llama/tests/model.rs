//! Model behaviour with real numbers: causality, parameter counts, GQA, gradients vs finite
//! differences, checkpoint round trips and bad-checkpoint errors, and agreement with logits that
//! transformers computed for checked-in fixtures.

use std::collections::HashMap;
use std::path::Path;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::AutodiffModule;
use burn::prelude::*;
use ire_llama::params::{named_params, named_values, replace_values};
use ire_llama::{
    load_hf, save_hf, InitScheme, Llama, LlamaConfig, LlamaError, ParamKind, ParamSource,
};

type B = Flex;

fn small_config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 97,
        hidden_size: 32,
        intermediate_size: 40,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 16,
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
        tie_word_embeddings: false,
        initializer_range: 0.02,
    }
}

fn tokens<Bk: Backend>(rows: &[&[i64]]) -> Tensor<Bk, 2, Int> {
    let s = rows[0].len();
    let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::<Bk, 1, Int>::from_ints(flat.as_slice(), &Default::default()).reshape([rows.len(), s])
}

fn to_vec<const D: usize, Bk: Backend>(t: Tensor<Bk, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

#[test]
fn changing_a_token_leaves_earlier_logits_unchanged() {
    let cfg = small_config();
    let model = Llama::<B>::init(&cfg, InitScheme::Hf, 3, &Default::default()).unwrap();
    let a = to_vec(model.forward(tokens(&[&[5, 9, 13, 2, 7, 11]])));
    let b = to_vec(model.forward(tokens(&[&[5, 9, 13, 60, 7, 11]])));
    let v = cfg.vocab_size;
    assert_eq!(
        a[..3 * v],
        b[..3 * v],
        "positions before the change must not move"
    );
    let diff: f32 = a[3 * v..]
        .iter()
        .zip(&b[3 * v..])
        .map(|(x, y)| (x - y).abs())
        .sum();
    assert!(
        diff > 1e-3,
        "positions from the change on must move (diff {diff})"
    );
}

/// Gives zeros: builds big presets cheaply to count their parameters.
struct Zeros;
impl ParamSource for Zeros {
    fn values(&mut self, _: &str, _: ParamKind, shape: &[usize]) -> Result<Vec<f32>, LlamaError> {
        Ok(vec![0.0; shape.iter().product()])
    }
}

#[test]
fn every_preset_has_the_formula_parameter_count_and_hf_names() {
    for name in ire_llama::PRESETS {
        let cfg = LlamaConfig::preset(name).unwrap();
        let model = Llama::<B>::from_source(&cfg, &mut Zeros, &Default::default()).unwrap();
        assert_eq!(model.num_params(), cfg.num_params(), "preset {name}");
        let names: Vec<String> = named_params::<B, _>(&model)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert!(names.contains(&"model.embed_tokens.weight".to_string()));
        assert!(names.contains(&"model.layers.0.self_attn.q_proj.weight".to_string()));
        assert!(names.contains(&"model.layers.0.mlp.gate_proj.weight".to_string()));
        assert!(names.contains(&"model.layers.0.post_attention_layernorm.weight".to_string()));
        assert!(names.contains(&"model.norm.weight".to_string()));
        assert!(names.contains(&"lm_head.weight".to_string()));
    }
    let mut tied = LlamaConfig::preset("tiny").unwrap();
    tied.tie_word_embeddings = true;
    let model = Llama::<B>::from_source(&tied, &mut Zeros, &Default::default()).unwrap();
    assert_eq!(model.num_params(), tied.num_params());
    assert_eq!(tied.num_params(), 7_358_720 - 8192 * 256);
}

#[test]
fn init_is_seeded_and_follows_the_scheme() {
    let cfg = small_config();
    let dev = Default::default();
    let a = named_values::<B, _>(&Llama::<B>::init(&cfg, InitScheme::Torch, 7, &dev).unwrap());
    let b = named_values::<B, _>(&Llama::<B>::init(&cfg, InitScheme::Torch, 7, &dev).unwrap());
    let c = named_values::<B, _>(&Llama::<B>::init(&cfg, InitScheme::Torch, 8, &dev).unwrap());
    let strip = |v: &[(ire_llama::params::ParamInfo, Vec<f32>)]| -> Vec<(String, Vec<f32>)> {
        v.iter().map(|(p, x)| (p.name.clone(), x.clone())).collect()
    };
    assert_eq!(strip(&a), strip(&b));
    assert_ne!(a[0].1, c[0].1);
    let get = |vals: &[(ire_llama::params::ParamInfo, Vec<f32>)], n: &str| {
        vals.iter().find(|(p, _)| p.name == n).unwrap().1.clone()
    };
    // Torch: Linear U(±1/√fan_in), Embedding N(0,1), norms 1.
    let q = get(&a, "model.layers.0.self_attn.q_proj.weight");
    let bound = 1.0 / (cfg.hidden_size as f32).sqrt();
    assert!(q.iter().all(|x| x.abs() <= bound));
    assert!(q.iter().any(|x| x.abs() > 0.8 * bound));
    let emb = get(&a, "model.embed_tokens.weight");
    let var = emb.iter().map(|x| x * x).sum::<f32>() / emb.len() as f32;
    assert!((var - 1.0).abs() < 0.1, "embedding variance {var}");
    assert!(get(&a, "model.norm.weight").iter().all(|&x| x == 1.0));
    // HF: N(0, 0.02).
    let h = named_values::<B, _>(&Llama::<B>::init(&cfg, InitScheme::Hf, 7, &dev).unwrap());
    let emb = get(&h, "model.embed_tokens.weight");
    let std = (emb.iter().map(|x| x * x).sum::<f32>() / emb.len() as f32).sqrt();
    assert!((std - 0.02).abs() < 0.002, "hf std {std}");
}

#[test]
fn gqa_equals_mha_with_repeated_kv_heads() {
    let gqa_cfg = small_config(); // 4 heads, 2 kv heads
    let dev = Default::default();
    let gqa = Llama::<B>::init(&gqa_cfg, InitScheme::Hf, 11, &dev).unwrap();
    let mut mha_cfg = gqa_cfg.clone();
    mha_cfg.num_key_value_heads = 4;
    let hd = gqa_cfg.head_dim();
    let d = gqa_cfg.hidden_size;
    // Build MHA weights: kv head j serves query heads 2j and 2j+1, so repeat each kv block.
    let mut values: HashMap<String, Vec<f32>> = HashMap::new();
    for (info, v) in named_values::<B, _>(&gqa) {
        if info.name.contains("k_proj") || info.name.contains("v_proj") {
            let mut rep = Vec::with_capacity(2 * v.len());
            for j in 0..gqa_cfg.num_key_value_heads {
                let block = &v[j * hd * d..(j + 1) * hd * d];
                rep.extend_from_slice(block);
                rep.extend_from_slice(block);
            }
            values.insert(info.name, rep);
        } else {
            values.insert(info.name, v);
        }
    }
    let mha = Llama::<B>::from_source(&mha_cfg, &mut MapSource(values), &dev).unwrap();
    let t = tokens(&[&[1, 5, 9, 33, 70, 2, 4, 8], &[3, 3, 3, 50, 51, 52, 0, 96]]);
    let a = to_vec(gqa.forward(t.clone()));
    let b = to_vec(mha.forward(t));
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(max < 1e-5, "GQA vs repeated-KV MHA differ by {max}");
}

struct MapSource(HashMap<String, Vec<f32>>);
impl ParamSource for MapSource {
    fn values(&mut self, name: &str, _: ParamKind, _: &[usize]) -> Result<Vec<f32>, LlamaError> {
        Ok(self.0.remove(name).expect("test map has every parameter"))
    }
}

#[test]
fn gradients_match_central_finite_differences() {
    // f64 (ndarray) so central differences are accurate to ~1e-9.
    type AD = Autodiff<NdArray<f64>>;
    let mut cfg = small_config();
    cfg.num_hidden_layers = 1;
    cfg.vocab_size = 23;
    let dev = Default::default();
    let model = Llama::<AD>::init(&cfg, InitScheme::Torch, 5, &dev).unwrap();
    let inputs = tokens::<AD>(&[&[1, 4, 9, 16, 2, 7]]);
    let targets = tokens::<AD>(&[&[4, 9, 16, 2, 7, 22]]);
    let loss = model.loss(inputs.clone(), targets.clone());
    let grads = loss.backward();
    let params = named_params::<AD, _>(&model);
    let values = named_values::<AD, _>(&model);
    let inner = model.valid();
    let (ii, ti) = (inputs.inner(), targets.inner());
    let eval = |m: &Llama<NdArray<f64>>| -> f64 { m.loss(ii.clone(), ti.clone()).into_scalar() };
    let mut checked = 0;
    for (info, (_, v)) in params.iter().zip(&values) {
        // The gradient of this parameter, read through the module (Param ids are shared).
        let grad = grad_of(&model, &grads, &info.name);
        for k in [0usize, v.len() / 3, v.len() - 1] {
            let h = 1e-5;
            let mut p64 = v.iter().map(|&x| x as f64).collect::<Vec<_>>();
            p64[k] += h;
            let lp = eval(&with_values(&inner, &info.name, &p64));
            p64[k] -= 2.0 * h;
            let lm = eval(&with_values(&inner, &info.name, &p64));
            let fd = (lp - lm) / (2.0 * h);
            let an = grad[k];
            assert!(
                (fd - an).abs() <= 1e-8 + 1e-6 * fd.abs().max(an.abs()),
                "{} [{k}]: finite difference {fd} vs autodiff {an}",
                info.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 3 * 12);
}

fn grad_of(
    model: &Llama<Autodiff<NdArray<f64>>>,
    grads: &<Autodiff<NdArray<f64>> as burn::tensor::backend::AutodiffBackend>::Gradients,
    name: &str,
) -> Vec<f64> {
    use burn::module::{ModuleVisitor, Param};
    struct G<'a> {
        path: Vec<String>,
        name: &'a str,
        grads: &'a <Autodiff<NdArray<f64>> as burn::tensor::backend::AutodiffBackend>::Gradients,
        out: Vec<f64>,
    }
    impl ModuleVisitor<Autodiff<NdArray<f64>>> for G<'_> {
        fn enter_module(&mut self, n: &str, _: &str) {
            self.path.push(n.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Autodiff<NdArray<f64>>, D>>) {
            if self.path.join(".") == self.name {
                let g = p.val().grad(self.grads).expect("parameter has a gradient");
                self.out = g.into_data().convert::<f64>().to_vec().unwrap();
            }
        }
    }
    let mut v = G {
        path: vec![],
        name,
        grads,
        out: vec![],
    };
    model.visit(&mut v);
    v.out
}

fn with_values(model: &Llama<NdArray<f64>>, name: &str, values: &[f64]) -> Llama<NdArray<f64>> {
    use burn::module::{ModuleMapper, Param};
    struct R<'a> {
        path: Vec<String>,
        name: &'a str,
        values: &'a [f64],
    }
    impl ModuleMapper<NdArray<f64>> for R<'_> {
        fn enter_module(&mut self, n: &str, _: &str) {
            self.path.push(n.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(
            &mut self,
            p: Param<Tensor<NdArray<f64>, D>>,
        ) -> Param<Tensor<NdArray<f64>, D>> {
            if self.path.join(".") != self.name {
                return p;
            }
            let (id, t, m) = p.consume();
            let new = Tensor::from_data(
                TensorData::new(self.values.to_vec(), t.shape()),
                &t.device(),
            );
            Param::from_mapped_value(id, new, m)
        }
    }
    model.clone().map(&mut R {
        path: vec![],
        name,
        values,
    })
}

#[test]
fn export_then_import_is_bit_exact_tied_and_untied() {
    for tied in [false, true] {
        let mut cfg = small_config();
        cfg.tie_word_embeddings = tied;
        let dev = Default::default();
        let model = Llama::<B>::init(&cfg, InitScheme::Torch, 21, &dev).unwrap();
        let dir = tempfile::tempdir().unwrap();
        save_hf(&model, dir.path(), &Default::default()).unwrap();
        let back = load_hf::<B>(dir.path(), &dev).unwrap();
        assert_eq!(back.config, cfg);
        assert_eq!(named_values::<B, _>(&model), {
            // ids differ after loading; compare names, shapes and values.
            let mut v = named_values::<B, _>(&back);
            for ((a, _), (b, _)) in v.iter_mut().zip(named_values::<B, _>(&model).iter()) {
                a.id = b.id;
            }
            v
        });
        let t = tokens(&[&[1, 2, 3, 4]]);
        assert_eq!(to_vec(model.forward(t.clone())), to_vec(back.forward(t)));
    }
}

fn rewrite_safetensors(
    dir: &Path,
    edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut items: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut items);
    let views: Vec<(String, safetensors::tensor::TensorView)> = items
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn bad_checkpoints_give_errors_naming_the_tensor() {
    let cfg = small_config();
    let dev = Default::default();
    let model = Llama::<B>::init(&cfg, InitScheme::Torch, 1, &dev).unwrap();
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        save_hf(&model, dir.path(), &Default::default()).unwrap();
        dir
    };
    let dir = fresh();
    rewrite_safetensors(dir.path(), |t| {
        t.retain(|(n, ..)| n != "model.layers.1.mlp.up_proj.weight")
    });
    let err = load_hf::<B>(dir.path(), &dev).unwrap_err().to_string();
    assert!(
        err.contains("missing tensor `model.layers.1.mlp.up_proj.weight`")
            && err.contains("[40, 32]"),
        "{err}"
    );

    let dir = fresh();
    rewrite_safetensors(dir.path(), |t| {
        t.push((
            "model.layers.2.mlp.up_proj.weight".into(),
            safetensors::Dtype::F32,
            vec![1],
            vec![0; 4],
        ))
    });
    let err = load_hf::<B>(dir.path(), &dev).unwrap_err().to_string();
    assert!(
        err.contains("unexpected") && err.contains("model.layers.2.mlp.up_proj.weight"),
        "{err}"
    );

    let dir = fresh();
    rewrite_safetensors(dir.path(), |t| {
        let e = t
            .iter_mut()
            .find(|(n, ..)| n == "model.norm.weight")
            .unwrap();
        e.2 = vec![16];
        e.3.truncate(16 * 4);
    });
    let err = load_hf::<B>(dir.path(), &dev).unwrap_err().to_string();
    assert!(
        err.contains("`model.norm.weight` has shape [16]; expected [32]"),
        "{err}"
    );

    let dir = fresh();
    rewrite_safetensors(dir.path(), |t| {
        let e = t
            .iter_mut()
            .find(|(n, ..)| n == "model.norm.weight")
            .unwrap();
        e.1 = safetensors::Dtype::I32;
    });
    let err = load_hf::<B>(dir.path(), &dev).unwrap_err().to_string();
    assert!(
        err.contains("model.norm.weight") && err.contains("I32"),
        "{err}"
    );

    let dir = fresh();
    let cfg_path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("\"silu\"", "\"gelu\"");
    std::fs::write(&cfg_path, text).unwrap();
    let err = load_hf::<B>(dir.path(), &dev).unwrap_err().to_string();
    assert!(
        err.contains("hidden_act") && err.contains("config.json"),
        "{err}"
    );

    let dir = fresh();
    std::fs::write(dir.path().join("model.safetensors"), b"not safetensors").unwrap();
    let err = load_hf::<B>(dir.path(), &dev).unwrap_err().to_string();
    assert!(err.contains("not a valid safetensors"), "{err}");
}

#[test]
fn replace_values_keeps_untouched_parameters() {
    let cfg = small_config();
    let model = Llama::<B>::init(&cfg, InitScheme::Torch, 1, &Default::default()).unwrap();
    let mut vals = HashMap::from([("model.norm.weight".to_string(), vec![2.0f32; 32])]);
    let model2 = replace_values::<B, _>(model.clone(), &mut vals);
    assert!(vals.is_empty());
    let a = named_values::<B, _>(&model);
    let b = named_values::<B, _>(&model2);
    for ((pa, va), (pb, vb)) in a.iter().zip(&b) {
        assert_eq!(pa.name, pb.name);
        if pa.name == "model.norm.weight" {
            assert!(vb.iter().all(|&x| x == 2.0));
        } else {
            assert_eq!(va, vb);
        }
    }
}

/// Checkpoints written by transformers (tools/hf_reference.py `fixtures`): a GQA f32 model with
/// the transformers-5 config style, and a tied bf16 model with the older style. ire must give
/// the loss and logits transformers computed for the same tokens.
#[test]
fn transformers_checkpoints_give_transformers_losses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for name in ["hf_tiny_gqa", "hf_tiny_tied_bf16"] {
        let dir = root.join(name);
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let ids: Vec<i64> = expected["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let model = load_hf::<B>(&dir, &Default::default()).unwrap();
        let n = ids.len();
        let all = tokens::<B>(&[&ids]);
        let logits = model.forward(all.clone());
        let v = model.config.vocab_size;
        let flat = to_vec(logits.clone());
        let loss: f32 =
            Llama::cross_entropy(logits.slice([0..1, 0..n - 1]), all.slice([0..1, 1..n]))
                .into_scalar();
        let want = expected["loss"].as_f64().unwrap();
        assert!(
            (loss as f64 - want).abs() < 1e-5,
            "{name}: loss {loss} vs transformers {want}"
        );
        for (key, pos) in [("logits_first", 0usize), ("logits_last", n - 1)] {
            for (j, w) in expected[key].as_array().unwrap().iter().enumerate() {
                let got = flat[pos * v + j] as f64;
                let w = w.as_f64().unwrap();
                assert!((got - w).abs() < 1e-5, "{name} {key}[{j}]: {got} vs {w}");
            }
        }
    }
}
