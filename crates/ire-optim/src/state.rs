//! Saving and restoring the optimizer state bit-exactly with a checkpoint.
//!
//! Two files in the checkpoint directory, each written atomically:
//! - `optimizer.safetensors`: per parameter NAME (HF dotted names, not Burn `ParamId`s, which
//!   change when a model is reloaded) its rule's buffers under torch's names — AdamW's
//!   `<name>.exp_avg` and `<name>.exp_avg_sq`, SGD's and Muon's `<name>.momentum_buffer`,
//!   Lion's `<name>.exp_avg` (F32, the parameter's shape) — and, when a mask exists,
//!   `<name>.mask` (U8, 0/1);
//! - `optimizer.json`: format tag, the resolved config, the start step, per-parameter step
//!   counts and rules, the number of mask refreshes, and τ (as f32 bits) and the mask fraction.
//!
//! States written before there were other bases (`ire-optim-state/1`: AdamW only, no rules)
//! load as AdamW state.
//!
//! The GNB labels are a pure function of (seed, iteration, global sample index) ([`crate::gnb_seed`]),
//! all of which the trainer restores, so no generator state needs saving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::base::Rule;
use crate::optimizer::{MaskStats, Optimizer, ParamState};
use crate::OptimError;

/// Tensor file of the optimizer state.
pub const STATE_TENSORS_FILE: &str = "optimizer.safetensors";
/// JSON file of the optimizer state.
pub const STATE_JSON_FILE: &str = "optimizer.json";
const FORMAT: &str = "ire-optim-state/2";
/// The format before bases other than AdamW: no `rules`, every parameter AdamW.
const FORMAT_ADAMW_ONLY: &str = "ire-optim-state/1";
const MASK: &str = ".mask";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateJson {
    /// Always [`FORMAT`].
    format: String,
    /// The config the state was written with (informative; the caller's config is kept), in
    /// the spelling of the version that wrote it.
    config: serde_json::Value,
    /// T_s.
    start: usize,
    /// Number of mask refreshes so far.
    refreshes: u64,
    /// τ of the last refresh as f32 bits (exact, and NaN/inf survive JSON).
    mask_threshold_bits: Option<u32>,
    /// τ for humans (null when not finite).
    mask_threshold: Option<f32>,
    /// Mask fraction of the last refresh.
    mask_fraction: Option<f64>,
    /// Steps taken per parameter name.
    steps: BTreeMap<String, u64>,
    /// The rule per parameter name (absent in `ire-optim-state/1`: AdamW).
    #[serde(default)]
    rules: BTreeMap<String, Rule>,
}

fn f32_bytes(data: TensorData) -> Vec<u8> {
    data.convert::<f32>()
        .into_vec::<f32>()
        .expect("converted to f32 just above")
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect()
}

impl<B: AutodiffBackend> Optimizer<B> {
    /// Writes `optimizer.safetensors` and `optimizer.json` into `dir` (created if needed).
    pub fn save(&self, dir: &Path) -> Result<(), OptimError> {
        std::fs::create_dir_all(dir).map_err(|source| OptimError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut tensors: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = Vec::new();
        for (name, s) in &self.params {
            for (buffer, t) in &s.buffers {
                let bytes = f32_bytes(t.to_data());
                tensors.push((
                    format!("{name}.{buffer}"),
                    s.shape.clone(),
                    Dtype::F32,
                    bytes,
                ));
            }
        }
        for (name, m) in &self.masks {
            let bytes: Vec<u8> = m
                .clone()
                .int()
                .into_data()
                .convert::<i64>()
                .into_vec::<i64>()
                .expect("converted to i64 just above")
                .into_iter()
                .map(|x| u8::from(x != 0))
                .collect();
            let shape = self
                .params
                .get(name)
                .map_or_else(|| vec![bytes.len()], |s| s.shape.clone());
            tensors.push((format!("{name}{MASK}"), shape, Dtype::U8, bytes));
        }
        let file = dir.join(STATE_TENSORS_FILE);
        let views = tensors
            .iter()
            .map(|(name, shape, dtype, bytes)| {
                let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                    .expect("byte length equals element count × dtype size by construction");
                (name.clone(), view)
            })
            .collect::<Vec<_>>();
        let bytes = safetensors::serialize(views, None).map_err(|e| OptimError::Safetensors {
            file: file.clone(),
            message: e.to_string(),
        })?;
        ire_core::fs::write_atomic(&file, &bytes)?;

        let json = StateJson {
            format: FORMAT.to_string(),
            config: serde_json::to_value(&self.cfg).expect("an OptimConfig always serializes"),
            start: self.start,
            refreshes: self.refreshes,
            mask_threshold_bits: self.stats.map(|s| s.threshold.to_bits()),
            mask_threshold: self.stats.map(|s| s.threshold).filter(|t| t.is_finite()),
            mask_fraction: self.stats.map(|s| s.fraction),
            steps: self
                .params
                .iter()
                .map(|(n, s)| (n.clone(), s.step))
                .collect(),
            rules: self
                .params
                .iter()
                .map(|(n, s)| (n.clone(), s.rule))
                .collect(),
        };
        let text = serde_json::to_string_pretty(&json).expect("the state JSON always serializes");
        ire_core::fs::write_atomic(&dir.join(STATE_JSON_FILE), text.as_bytes())?;
        Ok(())
    }

    /// Replaces this optimizer's state with the one saved in `dir`, on `device`. The
    /// optimizer's own config and start step are kept (the run's TOML is the source of truth);
    /// moments, step counts, masks, the refresh count, τ and the fraction come from the file.
    pub fn load(&mut self, dir: &Path, device: &B::Device) -> Result<(), OptimError> {
        let json = read_state_json(&dir.join(STATE_JSON_FILE))?;
        let file = dir.join(STATE_TENSORS_FILE);
        let bytes = std::fs::read(&file).map_err(|source| OptimError::Io {
            path: file.clone(),
            source,
        })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| OptimError::Safetensors {
            file: file.clone(),
            message: e.to_string(),
        })?;
        let tensors = TensorFile { file, st };
        let params = tensors.param_states(&json, &self.cfg, device)?;
        let masks = tensors.masks(&params, device)?;

        if json.start != self.start {
            tracing::warn!(
                saved = json.start,
                current = self.start,
                "optimizer start step differs from the checkpoint's; keeping the current one"
            );
        }
        self.refreshes = json.refreshes;
        self.stats = match (json.mask_threshold_bits, json.mask_fraction) {
            (Some(bits), Some(fraction)) => Some(MaskStats {
                threshold: f32::from_bits(bits),
                fraction,
            }),
            _ => None,
        };
        self.params = params;
        self.masks = masks;
        Ok(())
    }
}

/// `optimizer.json`, checked for its format tag.
fn read_state_json(json_file: &Path) -> Result<StateJson, OptimError> {
    let text = std::fs::read_to_string(json_file).map_err(|source| OptimError::Io {
        path: json_file.to_path_buf(),
        source,
    })?;
    let json: StateJson = serde_json::from_str(&text).map_err(|e| OptimError::Json {
        file: json_file.to_path_buf(),
        message: e.to_string(),
    })?;
    if json.format != FORMAT && json.format != FORMAT_ADAMW_ONLY {
        return Err(OptimError::Json {
            file: json_file.to_path_buf(),
            message: format!(
                "format is `{}`, expected `{FORMAT}` (or `{FORMAT_ADAMW_ONLY}`)",
                json.format
            ),
        });
    }
    Ok(json)
}

/// `optimizer.safetensors`, parsed, with the path its errors name.
struct TensorFile<'a> {
    file: PathBuf,
    st: SafeTensors<'a>,
}

impl TensorFile<'_> {
    fn bad(&self, tensor: &str, message: String) -> OptimError {
        OptimError::StateTensor {
            file: self.file.clone(),
            tensor: tensor.to_string(),
            message,
        }
    }

    /// The shape and bytes of `tensor`, which must have `dtype`.
    fn read(&self, tensor: &str, dtype: Dtype) -> Result<(Vec<usize>, &[u8]), OptimError> {
        let view = self
            .st
            .tensor(tensor)
            .map_err(|e| self.bad(tensor, e.to_string()))?;
        if view.dtype() != dtype {
            return Err(self.bad(
                tensor,
                format!("dtype {:?}, expected {dtype:?}", view.dtype()),
            ));
        }
        Ok((view.shape().to_vec(), view.data()))
    }

    /// The state of every parameter in `json.steps`: its rule (AdamW in the older format),
    /// that rule's buffers under `cfg`, its step count.
    fn param_states<B: Backend>(
        &self,
        json: &StateJson,
        cfg: &crate::OptimConfig,
        device: &B::Device,
    ) -> Result<BTreeMap<String, ParamState<B>>, OptimError> {
        let mut params = BTreeMap::new();
        for (name, &step) in &json.steps {
            let rule = json.rules.get(name).copied().unwrap_or(Rule::Adamw);
            let mut shape = None;
            let mut buffers = crate::base::Buffers::new();
            for &buffer in rule.buffers(cfg) {
                let tensor = format!("{name}.{buffer}");
                let (s, bytes) = self.read(&tensor, Dtype::F32)?;
                match &shape {
                    Some(first) if *first != s => {
                        let message = format!(
                            "shape {s:?}, but the parameter's other buffers have {first:?}"
                        );
                        return Err(self.bad(&tensor, message));
                    }
                    _ => shape = Some(s.clone()),
                }
                let floats: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                let n = floats.len();
                buffers.insert(
                    buffer,
                    Tensor::from_data(TensorData::new(floats, [n]), device),
                );
            }
            let Some(shape) = shape.or_else(|| self.shape_of_mask(name)) else {
                // A rule without buffers (SGD without momentum) and no mask: nothing to restore
                // but the step count, which this rule does not read.
                continue;
            };
            let state = ParamState {
                rule,
                buffers,
                step,
                shape,
            };
            params.insert(name.clone(), state);
        }
        Ok(params)
    }

    /// The shape of `<name>.mask`, if the file has one.
    fn shape_of_mask(&self, name: &str) -> Option<Vec<usize>> {
        let view = self.st.tensor(&format!("{name}{MASK}")).ok()?;
        Some(view.shape().to_vec())
    }

    /// Every `<name>.mask` in the file (flat), checked against the shape of `params`' state.
    fn masks<B: Backend>(
        &self,
        params: &BTreeMap<String, ParamState<B>>,
        device: &B::Device,
    ) -> Result<BTreeMap<String, Tensor<B, 1, Bool>>, OptimError> {
        let mut masks = BTreeMap::new();
        for tensor in self.st.names() {
            let Some(name) = tensor.strip_suffix(MASK) else {
                continue;
            };
            let (shape, data) = self.read(tensor, Dtype::U8)?;
            if let Some(s) = params.get(name) {
                if s.shape != shape {
                    return Err(self.bad(
                        tensor,
                        format!(
                            "shape {shape:?}, but the parameter's state has {:?}",
                            s.shape
                        ),
                    ));
                }
            }
            let bools: Vec<bool> = data.iter().map(|&b| b != 0).collect();
            let n = bools.len();
            masks.insert(
                name.to_string(),
                Tensor::from_data(TensorData::new(bools, [n]), device),
            );
        }
        Ok(masks)
    }
}
