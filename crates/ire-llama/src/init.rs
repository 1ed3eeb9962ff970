//! Building a [`Llama`] parameter by parameter: from a seeded initialisation scheme or from
//! named host tensors (a checkpoint). Every parameter is produced by name, so the values of a
//! seeded init do not depend on the backend, the device or the order of construction.

use std::sync::Arc;

use burn::module::Param;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::{Attention, DecoderLayer, Embedding, Linear, Llama, LlamaModel, Mlp, RmsNorm};
use crate::precision::Precision;
use crate::rope::RopeHost;
use crate::{LlamaConfig, LlamaError};
use ire_core::SplitMix64;

/// How fresh weights are drawn.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum InitScheme {
    /// PyTorch module defaults, what the paper's 229M run used: Linear `U(±1/√fan_in)`,
    /// Embedding `N(0, 1)`, norms 1.
    #[default]
    Torch,
    /// HF `_init_weights`: Linear and Embedding `N(0, initializer_range)`, norms 1.
    Hf,
}

/// The kind of a parameter, which decides its initial distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A `[out, in]` projection.
    Linear,
    /// The token embedding.
    Embedding,
    /// An RMSNorm scale.
    Norm,
}

/// Supplies the values of one parameter: `(name, kind, shape) → row-major f32 values`.
pub trait ParamSource {
    /// Values for the parameter `name` of the given shape.
    fn values(
        &mut self,
        name: &str,
        kind: ParamKind,
        shape: &[usize],
    ) -> Result<Vec<f32>, LlamaError>;
}

/// Seeded random initialisation by [`InitScheme`].
#[derive(Debug, Clone)]
pub struct SeededInit {
    /// Which distribution family.
    pub scheme: InitScheme,
    /// Run seed; each parameter's stream is derived from it and the parameter's name.
    pub seed: u64,
    /// `initializer_range` of the config (used by [`InitScheme::Hf`]).
    pub std: f64,
}

impl ParamSource for SeededInit {
    fn values(
        &mut self,
        name: &str,
        kind: ParamKind,
        shape: &[usize],
    ) -> Result<Vec<f32>, LlamaError> {
        let n: usize = shape.iter().product();
        let mut rng = SplitMix64::new(self.seed ^ fnv1a(name.as_bytes()));
        Ok(match (kind, self.scheme) {
            (ParamKind::Norm, _) => vec![1.0; n],
            (ParamKind::Linear, InitScheme::Torch) => {
                let bound = 1.0 / (shape[1] as f64).sqrt();
                (0..n)
                    .map(|_| ((rng.unit() * 2.0 - 1.0) * bound) as f32)
                    .collect()
            }
            (ParamKind::Embedding, InitScheme::Torch) => {
                (0..n).map(|_| rng.normal() as f32).collect()
            }
            (_, InitScheme::Hf) => (0..n).map(|_| (rng.normal() * self.std) as f32).collect(),
        })
    }
}

impl<B: Backend> Llama<B> {
    /// A freshly initialised model; the same `(config, scheme, seed)` gives the same weights on
    /// every backend and device.
    pub fn init(
        config: &LlamaConfig,
        scheme: InitScheme,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self, LlamaError> {
        let mut source = SeededInit {
            scheme,
            seed,
            std: config.initializer_range,
        };
        Self::from_source(config, &mut source, device)
    }

    /// Builds the model asking `source` for each parameter by its HF name.
    pub fn from_source(
        config: &LlamaConfig,
        source: &mut dyn ParamSource,
        device: &B::Device,
    ) -> Result<Self, LlamaError> {
        config.validate("<config>")?;
        let d = config.hidden_size;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            layers.push(decoder_layer(
                config,
                source,
                &format!("model.layers.{l}"),
                device,
            )?);
        }
        let lm_head = match config.tie_word_embeddings {
            true => None,
            false => Some(linear(source, "lm_head", config.vocab_size, d, device)?),
        };
        let final_norm = rms_norm(config, source, "model.norm", device)?;
        let embed = source.values(
            "model.embed_tokens.weight",
            ParamKind::Embedding,
            &[config.vocab_size, d],
        )?;
        Ok(Llama {
            model: LlamaModel {
                embed_tokens: Embedding {
                    weight: param2(embed, [config.vocab_size, d], device),
                },
                layers,
                norm: final_norm,
            },
            lm_head,
            config: config.clone(),
            rope: Arc::new(RopeHost::new(
                config.head_dim(),
                config.max_position_embeddings,
                config.rope_theta,
            )),
            precision: Precision::F32,
        })
    }
}

/// Decoder layer `p` (`model.layers.{l}`), its parameters asked from `source` in HF order:
/// attention, MLP, then the two norms.
fn decoder_layer<B: Backend>(
    config: &LlamaConfig,
    source: &mut dyn ParamSource,
    p: &str,
    device: &B::Device,
) -> Result<DecoderLayer<B>, LlamaError> {
    let (d, i) = (config.hidden_size, config.intermediate_size);
    let kv = config.num_key_value_heads * config.head_dim();
    let mut lin = |name: &str, out: usize, inp: usize| {
        linear(source, &format!("{p}.{name}"), out, inp, device)
    };
    let self_attn = Attention {
        q_proj: lin("self_attn.q_proj", d, d)?,
        k_proj: lin("self_attn.k_proj", kv, d)?,
        v_proj: lin("self_attn.v_proj", kv, d)?,
        o_proj: lin("self_attn.o_proj", d, d)?,
        num_heads: config.num_attention_heads,
        num_kv_heads: config.num_key_value_heads,
    };
    let mlp = Mlp {
        gate_proj: lin("mlp.gate_proj", i, d)?,
        up_proj: lin("mlp.up_proj", i, d)?,
        down_proj: lin("mlp.down_proj", d, i)?,
    };
    Ok(DecoderLayer {
        self_attn,
        mlp,
        input_layernorm: rms_norm(config, source, &format!("{p}.input_layernorm"), device)?,
        post_attention_layernorm: rms_norm(
            config,
            source,
            &format!("{p}.post_attention_layernorm"),
            device,
        )?,
    })
}

/// The linear layer `name` (`name.weight`, `[out, in]`).
fn linear<B: Backend>(
    source: &mut dyn ParamSource,
    name: &str,
    out: usize,
    inp: usize,
    device: &B::Device,
) -> Result<Linear<B>, LlamaError> {
    let v = source.values(&format!("{name}.weight"), ParamKind::Linear, &[out, inp])?;
    Ok(Linear {
        weight: param2(v, [out, inp], device),
    })
}

/// The RMSNorm `name` (`name.weight`, `[hidden]`).
fn rms_norm<B: Backend>(
    config: &LlamaConfig,
    source: &mut dyn ParamSource,
    name: &str,
    device: &B::Device,
) -> Result<RmsNorm<B>, LlamaError> {
    let d = config.hidden_size;
    let v = source.values(&format!("{name}.weight"), ParamKind::Norm, &[d])?;
    Ok(RmsNorm {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(v, [d]), device)),
        eps: config.rms_norm_eps,
    })
}

fn param2<B: Backend>(v: Vec<f32>, shape: [usize; 2], device: &B::Device) -> Param<Tensor<B, 2>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(v, shape), device))
}

/// FNV-1a, to derive a per-parameter seed from its name.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
