//! Hugging Face checkpoints: `model.safetensors` (or a sharded index) + `config.json`.
//!
//! Parameter names and shapes are HF's own, so export writes each parameter under its module
//! path and import reads each one back by the same name; there is no renaming table.
//! Import accepts F32, BF16 and F16 tensors (converted to f32), tied or untied heads, and both
//! `config.json` styles. Any missing, extra or wrong-shaped tensor is an error naming it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use burn::prelude::*;
use ire_core::fs::write_atomic;
use safetensors::{Dtype, SafeTensors};
use serde_json::{Map, Value};

use crate::init::{ParamKind, ParamSource};
use crate::params::named_values;
use crate::{Llama, LlamaConfig, LlamaError};

/// Name of the weights file transformers reads and writes.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Name of the sharded-weights index transformers writes for large models.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
/// Name of the model config file.
pub const CONFIG_FILE: &str = "config.json";

/// Writes `model.safetensors` (f32, HF names) and `config.json` into `dir`, each atomically
/// (written to a temporary file, then renamed). `extra_config` entries (e.g. `bos_token_id`)
/// are merged into `config.json`.
pub fn save_hf<B: Backend>(
    model: &Llama<B>,
    dir: &Path,
    extra_config: &Map<String, Value>,
) -> Result<(), LlamaError> {
    std::fs::create_dir_all(dir).map_err(|e| LlamaError::io(dir, e))?;
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = named_values(model)
        .into_iter()
        .map(|(info, values)| {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (info.name, info.shape, bytes)
        })
        .collect();
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            let view = safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                .expect("byte length equals element count × 4 by construction");
            (name.clone(), view)
        })
        .collect::<Vec<_>>();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights = dir.join(WEIGHTS_FILE);
    let bytes =
        safetensors::serialize(views, Some(metadata)).map_err(|e| LlamaError::Safetensors {
            file: weights.clone(),
            message: e.to_string(),
        })?;
    write_atomic(&weights, &bytes)?;
    let config = model.config.to_hf_value(extra_config);
    let text = serde_json::to_string_pretty(&config).expect("a JSON value always serializes");
    Ok(write_atomic(&dir.join(CONFIG_FILE), text.as_bytes())?)
}

/// Loads an HF Llama checkpoint folder (as written by transformers or by [`save_hf`]).
pub fn load_hf<B: Backend>(dir: &Path, device: &B::Device) -> Result<Llama<B>, LlamaError> {
    let config = LlamaConfig::from_hf_file(&dir.join(CONFIG_FILE))?;
    let files = weight_files(dir)?;
    let buffers = files
        .iter()
        .map(|f| std::fs::read(f).map_err(|e| LlamaError::io(f, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut source = SafetensorsSource::new(&files, &buffers)?;
    let model = Llama::from_source(&config, &mut source, device)?;
    source.finish(&config)?;
    Ok(model)
}

/// The safetensors files of a checkpoint folder: the index's shards, or `model.safetensors`.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, LlamaError> {
    let index = dir.join(WEIGHTS_INDEX_FILE);
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| LlamaError::io(&index, e))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| LlamaError::Json {
            file: index.clone(),
            message: e.to_string(),
        })?;
        let map = json
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| LlamaError::Json {
                file: index.clone(),
                message: "expected an object field `weight_map` {tensor name: shard file}".into(),
            })?;
        let mut shards: Vec<PathBuf> = map
            .values()
            .filter_map(Value::as_str)
            .collect::<HashSet<_>>()
            .into_iter()
            .map(|f| dir.join(f))
            .collect();
        shards.sort();
        return Ok(shards);
    }
    Ok(vec![dir.join(WEIGHTS_FILE)])
}

/// Serves parameters by name from parsed safetensors buffers and remembers which were used.
struct SafetensorsSource<'a> {
    tensors: HashMap<String, (PathBuf, safetensors::tensor::TensorView<'a>)>,
    used: HashSet<String>,
    first_file: PathBuf,
}

impl<'a> SafetensorsSource<'a> {
    fn new(files: &[PathBuf], buffers: &'a [Vec<u8>]) -> Result<Self, LlamaError> {
        let mut tensors = HashMap::new();
        for (file, buffer) in files.iter().zip(buffers) {
            let st = SafeTensors::deserialize(buffer).map_err(|e| LlamaError::Safetensors {
                file: file.clone(),
                message: e.to_string(),
            })?;
            for (name, view) in st.tensors() {
                tensors.insert(name, (file.clone(), view));
            }
        }
        Ok(Self {
            tensors,
            used: HashSet::new(),
            first_file: files.first().cloned().unwrap_or_default(),
        })
    }

    /// After the model is built: every tensor in the files must have been used, except a tied
    /// `lm_head.weight` copy (checked for shape) and RoPE `inv_freq` buffers of old exports.
    fn finish(&self, config: &LlamaConfig) -> Result<(), LlamaError> {
        let mut extra: Vec<String> = Vec::new();
        for (name, (file, view)) in &self.tensors {
            if self.used.contains(name) || name.ends_with("rotary_emb.inv_freq") {
                continue;
            }
            if name == "lm_head.weight" && config.tie_word_embeddings {
                let expected = vec![config.vocab_size, config.hidden_size];
                if view.shape() != expected.as_slice() {
                    return Err(LlamaError::TensorShape {
                        file: file.clone(),
                        name: name.clone(),
                        expected,
                        found: view.shape().to_vec(),
                    });
                }
                continue;
            }
            extra.push(name.clone());
        }
        if extra.is_empty() {
            return Ok(());
        }
        extra.sort();
        Err(LlamaError::UnexpectedTensors {
            file: self.first_file.clone(),
            names: extra,
        })
    }
}

impl ParamSource for SafetensorsSource<'_> {
    fn values(
        &mut self,
        name: &str,
        _kind: ParamKind,
        shape: &[usize],
    ) -> Result<Vec<f32>, LlamaError> {
        let (file, view) = self
            .tensors
            .get(name)
            .ok_or_else(|| LlamaError::MissingTensor {
                file: self.first_file.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
            })?;
        if view.shape() != shape {
            return Err(LlamaError::TensorShape {
                file: file.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let bytes = view.data();
        let values = match view.dtype() {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(LlamaError::TensorDtype {
                    file: file.clone(),
                    name: name.to_string(),
                    found: format!("{other:?}"),
                })
            }
        };
        self.used.insert(name.to_string());
        Ok(values)
    }
}
