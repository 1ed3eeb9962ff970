//! `LlamaConfig`: the model's shape with Hugging Face `config.json` field names, the named presets,
//! the exact parameter count, and reading/writing HF `config.json` in both its styles. Reading goes
//! through `HfConfig`, a serde-derived form of the file (HF's names and defaults), which
//! `HfConfig::into_config` resolves to a checked `LlamaConfig`.

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};
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
    ///
    /// A value of the wrong JSON type, or a missing required field, is a [`LlamaError::Json`]
    /// naming the field's path; a value ire does not support is a [`LlamaError::ConfigValue`].
    pub fn from_hf_value(value: &Value, origin: &str) -> Result<Self, LlamaError> {
        // A derived struct would also read a JSON array (field by field, in order); HF's
        // config.json and its `rope_parameters` are objects, so arrays stay rejected.
        if !value.is_object() {
            let found = "not an object".into();
            return Err(config_value(origin, "<root>", found, "a JSON object"));
        }
        let params = value.get("rope_parameters");
        if let Some(p) = params.filter(|p| !p.is_null() && !p.is_object()) {
            return Err(config_value(
                origin,
                "rope_parameters",
                p.to_string(),
                "an object",
            ));
        }
        let file: HfConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            // A missing field's path is the root, and serde's message names the field.
            let message = match e.path().to_string().as_str() {
                "." => e.inner().to_string(),
                path => format!("field `{path}`: {}", e.inner()),
            };
            LlamaError::Json {
                file: origin.into(),
                message,
            }
        })?;
        file.into_config(origin)
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

/// A [`LlamaError::ConfigValue`] for `field` of `origin`.
fn config_value(origin: &str, field: &str, found: String, expected: &str) -> LlamaError {
    LlamaError::ConfigValue {
        file: origin.into(),
        field: field.into(),
        found,
        expected: expected.into(),
    }
}

/// HF `config.json` as transformers writes it, in either style: transformers 4 (top-level
/// `rope_theta`, `torch_dtype`) or transformers 5 (`rope_parameters`, `dtype`). Field names are
/// HF's; keys ire has no use for (`architectures`, `bos_token_id`, `use_cache`,
/// `transformers_version`, ...) are ignored, whatever their value. An optional key that is absent
/// or null takes transformers' `LlamaConfig` default; [`HfConfig::into_config`] applies those and
/// rejects what ire does not implement.
#[derive(Deserialize)]
struct HfConfig {
    // Required, as ire always has: transformers would default them to Llama-7B's shape, but the
    // config.json it writes has them all.
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    /// Default: `num_attention_heads` (MHA).
    num_key_value_heads: Option<usize>,
    /// Default 1e-6.
    rms_norm_eps: Option<f64>,
    /// Default 10⁴; transformers 5 writes θ in `rope_parameters` instead, which wins.
    rope_theta: Option<f64>,
    /// An object or null ([`LlamaConfig::from_hf_value`] checks, as serde would take an array).
    rope_parameters: Option<RopeParameters>,
    /// Must be null: RoPE scaling is not implemented.
    rope_scaling: Option<Value>,
    /// Default false.
    tie_word_embeddings: Option<bool>,
    /// Default 0.02.
    initializer_range: Option<f64>,
    /// Default (and the only value ire implements): `hidden_size / num_attention_heads`.
    head_dim: Option<usize>,
    // The keys below have one supported value. Those without `Option` are an error when null.
    /// "llama".
    #[serde(default = "default_model_type")]
    model_type: String,
    /// "silu".
    #[serde(default = "default_hidden_act")]
    hidden_act: String,
    /// Gemma's name for `hidden_act` (not an HF Llama key); "silu" too.
    #[serde(default = "default_hidden_act")]
    hidden_activation: String,
    /// False (the default).
    attention_bias: Option<bool>,
    /// False (the default).
    mlp_bias: Option<bool>,
    /// The weights' dtype: "float32", "bfloat16" or "float16".
    dtype: Option<String>,
    /// transformers 4's name for `dtype`.
    torch_dtype: Option<String>,
}

/// transformers 5's `rope_parameters`; other keys (`factor`, ...) are ignored.
#[derive(Deserialize)]
struct RopeParameters {
    /// "default" (no scaling); an error when null.
    #[serde(default = "default_rope_type")]
    rope_type: String,
    /// RoPE θ, overriding the top-level `rope_theta`; an error when null.
    #[serde(default, deserialize_with = "non_null")]
    rope_theta: Option<f64>,
}

fn default_model_type() -> String {
    "llama".into()
}
fn default_hidden_act() -> String {
    "silu".into()
}
fn default_rope_type() -> String {
    "default".into()
}

/// For an `Option` field that may be absent (`#[serde(default)]`) but not null.
fn non_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl HfConfig {
    /// The plain config: transformers' defaults applied, the shape checked with
    /// [`LlamaConfig::validate`]. `origin` names the source in errors.
    fn into_config(self, origin: &str) -> Result<LlamaConfig, LlamaError> {
        self.check_supported(origin)?;
        let heads = self.num_attention_heads;
        if let Some(hd) = self.head_dim {
            // With no heads, validate names num_attention_heads instead.
            if heads > 0 && hd != self.hidden_size / heads {
                let expected = format!(
                    "hidden_size / num_attention_heads = {}",
                    self.hidden_size / heads
                );
                return Err(config_value(origin, "head_dim", hd.to_string(), &expected));
            }
        }
        let rope_theta = self.rope_parameters.and_then(|p| p.rope_theta);
        let cfg = LlamaConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: self.num_key_value_heads.unwrap_or(heads),
            max_position_embeddings: self.max_position_embeddings,
            rms_norm_eps: self.rms_norm_eps.unwrap_or_else(default_rms_norm_eps),
            rope_theta: rope_theta
                .or(self.rope_theta)
                .unwrap_or_else(default_rope_theta),
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(false),
            initializer_range: self
                .initializer_range
                .unwrap_or_else(default_initializer_range),
        };
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Rejects the HF Llama variants ire does not implement, naming the field.
    fn check_supported(&self, origin: &str) -> Result<(), LlamaError> {
        let bad = |field: &str, found: &str, expected: &str| {
            config_value(origin, field, Value::from(found).to_string(), expected)
        };
        if self.model_type != "llama" {
            return Err(bad("model_type", &self.model_type, "\"llama\""));
        }
        for (field, act) in [
            ("hidden_act", &self.hidden_act),
            ("hidden_activation", &self.hidden_activation),
        ] {
            if act != "silu" {
                return Err(bad(field, act, "\"silu\""));
            }
        }
        for (field, bias) in [
            ("attention_bias", self.attention_bias),
            ("mlp_bias", self.mlp_bias),
        ] {
            if bias == Some(true) {
                let expected = "false (ire's Llama has no biases)";
                return Err(config_value(origin, field, "true".into(), expected));
            }
        }
        if let Some(scaling) = &self.rope_scaling {
            let expected = "null (RoPE scaling is not supported)";
            return Err(config_value(
                origin,
                "rope_scaling",
                scaling.to_string(),
                expected,
            ));
        }
        if let Some(kind) = self.rope_parameters.as_ref().map(|p| &p.rope_type) {
            if kind != "default" {
                let expected = "\"default\" (RoPE scaling is not supported)";
                return Err(bad("rope_parameters.rope_type", kind, expected));
            }
        }
        for (field, dtype) in [("dtype", &self.dtype), ("torch_dtype", &self.torch_dtype)] {
            if let Some(dt) = dtype.as_deref() {
                if !matches!(dt, "float32" | "bfloat16" | "float16") {
                    return Err(bad(field, dt, "\"float32\", \"bfloat16\" or \"float16\""));
                }
            }
        }
        Ok(())
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
