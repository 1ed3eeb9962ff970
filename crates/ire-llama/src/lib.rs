//! `ire-llama`: a standard Llama causal language model as Burn modules, with Hugging Face
//! parameter names and safetensors import/export.
//!
//! - [`LlamaConfig`] holds the shape with HF `config.json` field names and the named presets
//!   (`tiny`, `60m`, `119m`, `229m`).
//! - [`Llama`] is HF's `LlamaForCausalLM`: RMSNorm, rotate-half RoPE, grouped-query causal
//!   attention, SwiGLU, tied or untied head, no biases. [`Llama::forward`] gives logits,
//!   [`Llama::cross_entropy`] the mean next-token loss.
//! - [`Llama::init`] draws seeded weights ([`InitScheme::Torch`] or [`InitScheme::Hf`]) that are
//!   the same on every backend; [`save_hf`]/[`load_hf`] write and read checkpoints that
//!   `transformers.LlamaForCausalLM.from_pretrained` loads unchanged.
//! - [`generate`]: decoding with a key/value cache and seeded sampling (`ire sample`).
//!
//! ```
//! use ire_llama::{InitScheme, Llama, LlamaConfig};
//! use burn::prelude::*;
//! type B = burn::backend::Flex;
//! let mut cfg = LlamaConfig::preset("tiny").unwrap();
//! cfg.vocab_size = 64;
//! cfg.num_hidden_layers = 1;
//! let model = Llama::<B>::init(&cfg, InitScheme::Torch, 0, &Default::default()).unwrap();
//! let tokens = Tensor::<B, 2, Int>::from_ints([[1, 2, 3]], &Default::default());
//! assert_eq!(model.forward(tokens).dims(), [1, 3, 64]);
//! ```
#![warn(missing_docs)]

mod checkpoint;
mod config;
mod error;
pub mod generate;
mod init;
mod model;
pub mod ops;
pub mod params;
pub mod precision;
mod rope;
pub mod testing;

pub use checkpoint::{
    load_hf, save_hf, CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE,
};
pub use config::{LlamaConfig, PRESETS};
pub use error::LlamaError;
pub use init::{InitScheme, ParamKind, ParamSource, SeededInit};
pub use model::{Attention, DecoderLayer, Embedding, Linear, Llama, LlamaModel, Mlp, RmsNorm};
pub use ops::IreOps;
pub use precision::Precision;
pub use rope::{RopeHost, RopeTables};

/// The default CPU backend (see docs/performance.md for the flex vs ndarray measurement).
pub type CpuBackend = burn::backend::Flex;
