//! `LlamaConfig`: the model's shape with Hugging Face `config.json` field names, the named presets,
//! the exact parameter count, and reading/writing HF `config.json` in both its styles.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::LlamaError;

/// The shape of a Llama model. Field names equal those of HF `LlamaConfig` / `config.json`, so a
/// config can be read from or written to a checkpoint folder without renaming.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlamaConfig {
    /// Number of token ids (rows of `model.embed_tokens.weight`).
    pub vocab_size: usize,
    /// Model width d.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP (gate/up output, down input).
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads; `hidden_size` must be divisible by it.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention); divides `num_attention_heads`.
    pub num_key_value_heads: usize,
    /// Longest sequence the model is configured for (the training context length).
    pub max_position_embeddings: usize,
    /// Epsilon inside RMSNorm's square root.
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base θ.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Whether `lm_head` reuses `model.embed_tokens.weight`.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Standard deviation of the HF-style normal initialisation.
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_initializer_range() -> f64 {
    0.02
}

/// The preset names, in size order.
pub const PRESETS: [&str; 4] = ["tiny", "60m", "119m", "229m"];

impl LlamaConfig {
    /// A named preset: `tiny` (the CPU default), `60m`, `119m`, `229m` (see docs/architecture.md).
    ///
    /// All presets are untied (HF's default), MHA (kv heads = heads), rms_norm_eps 1e-6, θ = 10⁴.
    pub fn preset(name: &str) -> Result<Self, LlamaError> {
        let (v, d, i, l, h, ctx) = match name {
            // The CPU default; the shape of the PyTorch reference in docs/performance.md.
            "tiny" => (8192, 256, 688, 4, 4, 256),
            // The usual "Llama 60M" shape, with the GPT-2 vocabulary padded to 50304.
            "60m" => (50304, 512, 1376, 8, 8, 1024),
            // The paper's minipile width/depth/context as a standard Llama.
            "119m" => (50304, 768, 2048, 6, 12, 512),
            // Exactly the paper's OpenWebText model (HF LlamaForCausalLM, untied).
            "229m" => (50304, 768, 3072, 16, 12, 1024),
            other => return Err(LlamaError::UnknownPreset(other.to_string())),
        };
        Ok(Self {
            vocab_size: v,
            hidden_size: d,
            intermediate_size: i,
            num_hidden_layers: l,
            num_attention_heads: h,
            num_key_value_heads: h,
            max_position_embeddings: ctx,
            rms_norm_eps: default_rms_norm_eps(),
            rope_theta: default_rope_theta(),
            tie_word_embeddings: false,
            initializer_range: default_initializer_range(),
        })
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Checks the shape is one ire can build; `origin` names the file or preset in the error.
    pub fn validate(&self, origin: &str) -> Result<(), LlamaError> {
        let bad = |field: &str, found: String, expected: &str| LlamaError::ConfigValue {
            file: origin.to_string(),
            field: field.to_string(),
            found,
            expected: expected.to_string(),
        };
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if value == 0 {
                return Err(bad(field, "0".into(), "a positive integer"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(bad(
                "num_attention_heads",
                self.num_attention_heads.to_string(),
                &format!("a divisor of hidden_size ({})", self.hidden_size),
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(bad(
                "num_attention_heads",
                self.num_attention_heads.to_string(),
                "a value giving an even head_dim (RoPE rotates pairs)",
            ));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(bad(
                "num_key_value_heads",
                self.num_key_value_heads.to_string(),
                &format!(
                    "a divisor of num_attention_heads ({})",
                    self.num_attention_heads
                ),
            ));
        }
        // Written so that NaN fails too.
        for (field, value) in [
            ("rms_norm_eps", self.rms_norm_eps),
            ("rope_theta", self.rope_theta),
            ("initializer_range", self.initializer_range),
        ] {
            if value.is_nan() || value <= 0.0 {
                return Err(bad(field, value.to_string(), "> 0"));
            }
        }
        Ok(())
    }

    /// Exact number of parameters, from the formula
    /// `V·d (+ V·d untied) + L·(2·d² + 2·d·kv·hd + 3·d·I + 2·d) + d`.
    pub fn num_params(&self) -> usize {
        let d = self.hidden_size;
        let kv = self.num_key_value_heads * self.head_dim();
        let per_layer = 2 * d * d + 2 * d * kv + 3 * d * self.intermediate_size + 2 * d;
        let embed = self.vocab_size * d;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + head + self.num_hidden_layers * per_layer + d
    }

    /// Training FLOPs per token at context `seq`: 6 × (all matmul weights incl. lm_head) plus the
    /// attention term 12·L·d·seq (PaLM appendix B; the formula of docs/performance.md).
    pub fn flops_per_token(&self, seq: usize) -> f64 {
        let d = self.hidden_size;
        let kv = self.num_key_value_heads * self.head_dim();
        let per_layer = 2 * d * d + 2 * d * kv + 3 * d * self.intermediate_size;
        // lm_head is a matmul whether or not it shares the embedding's storage.
        let matmul = self.num_hidden_layers * per_layer + self.vocab_size * d;
        6.0 * matmul as f64 + 12.0 * (self.num_hidden_layers * d * seq) as f64
    }

    /// Reads an HF `config.json`, accepting both the older style (top-level `rope_theta`,
    /// `torch_dtype`) and the transformers-5 style (`rope_parameters`, `dtype`).
    ///
    /// Fields that change the architecture in ways ire does not implement (biases, another
    /// activation, RoPE scaling, a custom head_dim) are errors naming the field.
    pub fn from_hf_file(path: &Path) -> Result<Self, LlamaError> {
        let text = std::fs::read_to_string(path).map_err(|e| LlamaError::io(path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| LlamaError::Json {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_hf_value(&value, &path.display().to_string())
    }

    /// As [`LlamaConfig::from_hf_file`], from parsed JSON; `origin` names the source in errors.
    pub fn from_hf_value(value: &Value, origin: &str) -> Result<Self, LlamaError> {
        let obj = value.as_object().ok_or_else(|| LlamaError::ConfigValue {
            file: origin.into(),
            field: "<root>".into(),
            found: "not an object".into(),
            expected: "a JSON object".into(),
        })?;
        let bad = |field: &str, found: &Value, expected: &str| LlamaError::ConfigValue {
            file: origin.into(),
            field: field.into(),
            found: found.to_string(),
            expected: expected.into(),
        };
        let get_usize = |field: &str| -> Result<usize, LlamaError> {
            match obj.get(field) {
                Some(v) => v
                    .as_u64()
                    .map(|x| x as usize)
                    .ok_or_else(|| bad(field, v, "a non-negative integer")),
                None => Err(bad(
                    field,
                    &Value::Null,
                    "a non-negative integer (required)",
                )),
            }
        };
        let get_f64 = |field: &str, default: f64| -> Result<f64, LlamaError> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v.as_f64().ok_or_else(|| bad(field, v, "a number")),
            }
        };
        let get_bool = |field: &str, default: bool| -> Result<bool, LlamaError> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v.as_bool().ok_or_else(|| bad(field, v, "true or false")),
            }
        };

        if let Some(mt) = obj.get("model_type") {
            if mt.as_str() != Some("llama") {
                return Err(bad("model_type", mt, "\"llama\""));
            }
        }
        for field in ["hidden_act", "hidden_activation"] {
            if let Some(act) = obj.get(field) {
                if act.as_str() != Some("silu") {
                    return Err(bad(field, act, "\"silu\""));
                }
            }
        }
        for field in ["attention_bias", "mlp_bias"] {
            if get_bool(field, false)? {
                return Err(bad(
                    field,
                    &Value::Bool(true),
                    "false (ire's Llama has no biases)",
                ));
            }
        }
        if let Some(scaling) = obj.get("rope_scaling") {
            if !scaling.is_null() {
                return Err(bad(
                    "rope_scaling",
                    scaling,
                    "null (RoPE scaling is not supported)",
                ));
            }
        }

        // RoPE θ: transformers 5 nests it in `rope_parameters`; older files have it top-level.
        let mut rope_theta = get_f64("rope_theta", default_rope_theta())?;
        if let Some(params) = obj.get("rope_parameters").filter(|v| !v.is_null()) {
            let p = params
                .as_object()
                .ok_or_else(|| bad("rope_parameters", params, "an object"))?;
            if let Some(kind) = p.get("rope_type") {
                if kind.as_str() != Some("default") {
                    return Err(bad(
                        "rope_parameters.rope_type",
                        kind,
                        "\"default\" (RoPE scaling is not supported)",
                    ));
                }
            }
            if let Some(t) = p.get("rope_theta") {
                rope_theta = t
                    .as_f64()
                    .ok_or_else(|| bad("rope_parameters.rope_theta", t, "a number"))?;
            }
        }
        for field in ["dtype", "torch_dtype"] {
            if let Some(dt) = obj.get(field).filter(|v| !v.is_null()) {
                let ok = matches!(dt.as_str(), Some("float32" | "bfloat16" | "float16"));
                if !ok {
                    return Err(bad(field, dt, "\"float32\", \"bfloat16\" or \"float16\""));
                }
            }
        }

        let num_attention_heads = get_usize("num_attention_heads")?;
        let hidden_size = get_usize("hidden_size")?;
        let num_key_value_heads = match obj.get("num_key_value_heads") {
            None | Some(Value::Null) => num_attention_heads,
            Some(_) => get_usize("num_key_value_heads")?,
        };
        if let Some(hd) = obj.get("head_dim").filter(|v| !v.is_null()) {
            if num_attention_heads > 0
                && hd.as_u64() != Some((hidden_size / num_attention_heads) as u64)
            {
                return Err(bad(
                    "head_dim",
                    hd,
                    &format!(
                        "hidden_size / num_attention_heads = {}",
                        hidden_size / num_attention_heads
                    ),
                ));
            }
        }
        let cfg = Self {
            vocab_size: get_usize("vocab_size")?,
            hidden_size,
            intermediate_size: get_usize("intermediate_size")?,
            num_hidden_layers: get_usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            max_position_embeddings: get_usize("max_position_embeddings")?,
            rms_norm_eps: get_f64("rms_norm_eps", default_rms_norm_eps())?,
            rope_theta,
            // HF LlamaConfig's default is tied=False.
            tie_word_embeddings: get_bool("tie_word_embeddings", false)?,
            initializer_range: get_f64("initializer_range", default_initializer_range())?,
        };
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// The HF `config.json` for this model (float32 weights). Both RoPE/dtype styles are
    /// written so that transformers 4.x and 5.x read the same values.
    pub fn to_hf_value(&self, extra: &Map<String, Value>) -> Value {
        let mut v = json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim(),
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_parameters": { "rope_type": "default", "rope_theta": self.rope_theta },
            "rope_scaling": null,
            "tie_word_embeddings": self.tie_word_embeddings,
            "initializer_range": self.initializer_range,
            "hidden_act": "silu",
            "attention_bias": false,
            "attention_dropout": 0.0,
            "mlp_bias": false,
            "pretraining_tp": 1,
            "use_cache": true,
            "torch_dtype": "float32",
            "dtype": "float32",
        });
        if let Some(obj) = v.as_object_mut() {
            for (k, val) in extra {
                obj.insert(k.clone(), val.clone());
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_param_counts_match_formula_and_known_sizes() {
        // Reference sizes: the tiny shape is the 7.36M PyTorch reference model; 229m is the paper's
        // 228.3M OpenWebText model (../shared/paper/admire.md §5).
        let tiny = LlamaConfig::preset("tiny").unwrap();
        assert_eq!(tiny.num_params(), 7_358_720);
        let m229 = LlamaConfig::preset("229m").unwrap();
        assert_eq!(m229.num_params(), 228_287_232);
        for name in PRESETS {
            LlamaConfig::preset(name).unwrap().validate(name).unwrap();
        }
        assert!(matches!(
            LlamaConfig::preset("7b"),
            Err(LlamaError::UnknownPreset(_))
        ));
    }

    #[test]
    fn reads_both_config_styles() {
        let old = json!({"model_type": "llama", "vocab_size": 256, "hidden_size": 64,
            "intermediate_size": 176, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 128, "rope_theta": 500000.0,
            "torch_dtype": "bfloat16", "tie_word_embeddings": true});
        let new = json!({"model_type": "llama", "vocab_size": 256, "hidden_size": 64,
            "intermediate_size": 176, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 128,
            "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
            "dtype": "bfloat16", "tie_word_embeddings": true});
        let a = LlamaConfig::from_hf_value(&old, "old").unwrap();
        let b = LlamaConfig::from_hf_value(&new, "new").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rope_theta, 500000.0);
        assert_eq!(a.num_key_value_heads, 2);
        // Round trip through our own writer.
        let c = LlamaConfig::from_hf_value(&a.to_hf_value(&Map::new()), "ours").unwrap();
        assert_eq!(a, c);
    }

    #[test]
    fn unsupported_values_name_the_field() {
        let base = LlamaConfig::preset("tiny")
            .unwrap()
            .to_hf_value(&Map::new());
        for (field, value, needle) in [
            ("hidden_act", json!("gelu"), "hidden_act"),
            ("attention_bias", json!(true), "attention_bias"),
            (
                "rope_scaling",
                json!({"rope_type": "linear", "factor": 2.0}),
                "rope_scaling",
            ),
            ("num_key_value_heads", json!(3), "num_key_value_heads"),
            ("head_dim", json!(32), "head_dim"),
            ("dtype", json!("int8"), "dtype"),
        ] {
            let mut v = base.clone();
            v[field] = value;
            let err = LlamaConfig::from_hf_value(&v, "cfg.json")
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle) && err.contains("cfg.json"), "{err}");
        }
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove("vocab_size");
        let err = LlamaConfig::from_hf_value(&v, "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("vocab_size"), "{err}");
    }

    /// The tiny preset's config.json with `edits` applied to its top-level keys (`Some` sets,
    /// `None` removes), read back.
    fn read_edited(edits: &[(&str, Option<Value>)]) -> Result<LlamaConfig, LlamaError> {
        let mut v = LlamaConfig::preset("tiny")
            .unwrap()
            .to_hf_value(&Map::new());
        let obj = v.as_object_mut().unwrap();
        for (key, val) in edits {
            match val {
                Some(x) => obj.insert(key.to_string(), x.clone()),
                None => obj.remove(*key),
            };
        }
        LlamaConfig::from_hf_value(&v, "cfg.json")
    }

    #[test]
    fn unknown_keys_are_ignored_whatever_their_value() {
        let tiny = LlamaConfig::preset("tiny").unwrap();
        let got = read_edited(&[
            ("architectures", Some(json!("anything"))),
            ("transformers_version", Some(json!(5))),
            ("bos_token_id", Some(json!([1, 2]))),
            ("eos_token_id", Some(json!(null))),
            ("use_cache", Some(json!("yes"))),
            ("attention_dropout", Some(json!({"p": 0.1}))),
            ("pretraining_tp", Some(json!(null))),
            ("some_future_key", Some(json!({"a": [1]}))),
        ]);
        assert_eq!(got.unwrap(), tiny);
    }

    #[test]
    fn absent_or_null_optional_keys_take_the_defaults() {
        let tiny = LlamaConfig::preset("tiny").unwrap();
        let optional = [
            "num_key_value_heads",
            "rms_norm_eps",
            "rope_theta",
            "rope_parameters",
            "rope_scaling",
            "tie_word_embeddings",
            "initializer_range",
            "head_dim",
            "attention_bias",
            "mlp_bias",
            "dtype",
            "torch_dtype",
        ];
        let absent: Vec<_> = optional.iter().map(|k| (*k, None)).collect();
        let absent = [&absent[..], &[("model_type", None), ("hidden_act", None)]].concat();
        assert_eq!(read_edited(&absent).unwrap(), tiny);
        let null: Vec<_> = optional.iter().map(|k| (*k, Some(json!(null)))).collect();
        assert_eq!(read_edited(&null).unwrap(), tiny);
        let same = [
            ("attention_bias", Some(json!(false))),
            ("mlp_bias", Some(json!(false))),
            ("hidden_activation", Some(json!("silu"))),
            ("torch_dtype", Some(json!("bfloat16"))),
            ("dtype", Some(json!("float16"))),
        ];
        assert_eq!(read_edited(&same).unwrap(), tiny);
    }

    #[test]
    fn numbers_and_rope_theta_read_as_in_both_styles() {
        let tiny = LlamaConfig::preset("tiny").unwrap();
        let with = |f: fn(&mut LlamaConfig)| {
            let mut c = tiny.clone();
            f(&mut c);
            c
        };
        let floats_as_integers = [
            ("rms_norm_eps", Some(json!(1))),
            ("initializer_range", Some(json!(1))),
        ];
        let expected = with(|c| {
            c.rms_norm_eps = 1.0;
            c.initializer_range = 1.0;
        });
        assert_eq!(read_edited(&floats_as_integers).unwrap(), expected);
        // rope_parameters' θ wins over the top level's, which is the fallback.
        let nested = [
            ("rope_theta", Some(json!(0))),
            (
                "rope_parameters",
                Some(json!({"rope_theta": 500000, "factor": 2.0})),
            ),
        ];
        let expected = with(|c| c.rope_theta = 500000.0);
        assert_eq!(read_edited(&nested).unwrap(), expected);
        let top = [
            ("rope_theta", Some(json!(20000.0))),
            ("rope_parameters", Some(json!({"rope_type": "default"}))),
        ];
        assert_eq!(read_edited(&top).unwrap(), with(|c| c.rope_theta = 20000.0));
        let gqa_tied = [
            ("num_key_value_heads", Some(json!(2))),
            ("tie_word_embeddings", Some(json!(true))),
        ];
        let expected = with(|c| {
            c.num_key_value_heads = 2;
            c.tie_word_embeddings = true;
        });
        assert_eq!(read_edited(&gqa_tied).unwrap(), expected);
    }

    /// Asserts that [`read_edited`] with `edits` is an error naming `field` and the file.
    fn assert_rejected(edits: &[(&str, Option<Value>)], field: &str) {
        let err = match read_edited(edits) {
            Ok(c) => panic!("{edits:?} accepted: {c:?}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(field) && err.contains("cfg.json"), "{err}");
    }

    #[test]
    fn bad_counts_are_errors_naming_the_field() {
        for root in [json!([]), json!("x"), json!(null), json!(1)] {
            let err = LlamaConfig::from_hf_value(&root, "cfg.json").unwrap_err();
            assert!(err.to_string().contains("cfg.json"), "{err}");
        }
        for field in [
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "max_position_embeddings",
        ] {
            assert_rejected(&[(field, None)], field);
            for bad in [json!(null), json!(64.0), json!(-1), json!("64"), json!(0)] {
                assert_rejected(&[(field, Some(bad))], field);
            }
        }
        for bad in [
            json!(64.0),
            json!(-1),
            json!("2"),
            json!(0),
            json!(3),
            json!(true),
        ] {
            assert_rejected(&[("num_key_value_heads", Some(bad))], "num_key_value_heads");
        }
    }

    #[test]
    fn bad_values_are_errors_naming_the_field() {
        for (field, bads) in [
            (
                "model_type",
                vec![
                    json!(null),
                    json!("mistral"),
                    json!(1),
                    json!({"llama": null}),
                ],
            ),
            (
                "hidden_act",
                vec![json!(null), json!("gelu"), json!(["silu"])],
            ),
            (
                "hidden_activation",
                vec![json!(null), json!("gelu_pytorch_tanh")],
            ),
            (
                "attention_bias",
                vec![json!(true), json!("false"), json!(0)],
            ),
            ("mlp_bias", vec![json!(true), json!(1)]),
            (
                "rope_scaling",
                vec![json!({}), json!("linear"), json!(0), json!(false)],
            ),
            ("rope_theta", vec![json!("1e4"), json!(true)]),
            ("rms_norm_eps", vec![json!("x"), json!(0), json!(-1e-6)]),
            ("initializer_range", vec![json!("x"), json!(0.0)]),
            ("tie_word_embeddings", vec![json!("yes"), json!(0)]),
            ("dtype", vec![json!("int8"), json!(32), json!("Float32")]),
            ("torch_dtype", vec![json!("float64"), json!(["float32"])]),
            (
                "head_dim",
                vec![json!(32), json!(64.0), json!("64"), json!(-1), json!(0)],
            ),
            (
                "rope_parameters",
                vec![json!([]), json!(["default", 1e4]), json!("x"), json!(1)],
            ),
        ] {
            for bad in bads {
                assert_rejected(&[(field, Some(bad))], field);
            }
        }
    }

    #[test]
    fn bad_rope_parameters_are_errors_naming_the_field() {
        for (bad, field) in [
            (json!({"rope_type": null}), "rope_type"),
            (json!({"rope_type": "linear", "factor": 2.0}), "rope_type"),
            (json!({"rope_theta": null}), "rope_theta"),
            (json!({"rope_theta": "x"}), "rope_theta"),
            (json!({"rope_theta": 0}), "rope_theta"),
        ] {
            assert_rejected(&[("rope_parameters", Some(bad))], field);
        }
        // The top-level θ counts (and is checked) only without rope_parameters' θ.
        for bad in [json!(0), json!(-1.0)] {
            assert_rejected(
                &[("rope_theta", Some(bad)), ("rope_parameters", None)],
                "rope_theta",
            );
        }
    }

    #[test]
    fn writes_the_same_config_json_bytes() {
        let mut extra = Map::new();
        extra.insert("bos_token_id".into(), json!(50256));
        let text =
            serde_json::to_string_pretty(&LlamaConfig::preset("tiny").unwrap().to_hf_value(&extra))
                .unwrap();
        let expected = r#"{
  "architectures": [
    "LlamaForCausalLM"
  ],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 50256,
  "dtype": "float32",
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 256,
  "initializer_range": 0.02,
  "intermediate_size": 688,
  "max_position_embeddings": 256,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 4,
  "num_hidden_layers": 4,
  "num_key_value_heads": 4,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-6,
  "rope_parameters": {
    "rope_theta": 10000.0,
    "rope_type": "default"
  },
  "rope_scaling": null,
  "rope_theta": 10000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "float32",
  "use_cache": true,
  "vocab_size": 8192
}"#;
        assert_eq!(text, expected);
    }
}
