//! `ire export`: turn a run's checkpoint into a folder transformers loads as is —
//! `model.safetensors`, `config.json` (with the tokenizer's special-token ids), `tokenizer.json`
//! and `tokenizer_config.json`.
//!
//! ire's tokenizers (GPT-2's, or the byte-level BPE `ire prepare` trains) have one special
//! token, `<|endoftext|>`, which ends every document. `tokenizer_config.json` names it as
//! transformers' `eos_token` and `bos_token` (as GPT-2 does) and as `pad_token`: ire trains on
//! packed windows and never pads, so padding (for batched generation in transformers) may use
//! any id the loss masks, and the end-of-text id is the usual choice.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::checkpoint::{self, TOKENIZER_FILE};
use crate::TrainError;

/// Copies the checkpoint at `step` (default: the newest) of `run_dir` to `out` in HF format.
/// Returns the checkpoint folder used.
pub fn export(run_dir: &Path, step: Option<usize>, out: &Path) -> Result<PathBuf, TrainError> {
    let steps = checkpoint::list_checkpoints(run_dir)?;
    let step = match step {
        Some(s) if steps.contains(&s) => s,
        Some(s) => {
            return Err(TrainError::checkpoint(
                run_dir,
                format!("no checkpoint at step {s}; available: {steps:?}"),
            ))
        }
        None => *steps.last().ok_or_else(|| {
            TrainError::checkpoint(run_dir, "no checkpoints yet (checkpoints/step-*/)")
        })?,
    };
    let ckpt = checkpoint::checkpoint_path(run_dir, step);
    // The run keeps its own copy of the tokenizer, so an export works from anywhere.
    let tok = run_dir.join(TOKENIZER_FILE);
    let tokenizer = ire_data::Tokenizer::from_file(&tok)?;

    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let weights = ckpt.join(ire_llama::WEIGHTS_FILE);
    let bytes = std::fs::read(&weights).map_err(|e| TrainError::io(&weights, e))?;
    ire_core::fs::write_atomic(&out.join(ire_llama::WEIGHTS_FILE), &bytes)?;

    // config.json with the tokenizer's end-of-text as bos/eos, as GPT-2-style models have.
    let config_path = ckpt.join(ire_llama::CONFIG_FILE);
    let model_cfg = ire_llama::LlamaConfig::from_hf_file(&config_path)?;
    let eot = tokenizer.eot_id() as u64;
    let mut extra = Map::new();
    extra.insert("bos_token_id".into(), Value::from(eot));
    extra.insert("eos_token_id".into(), Value::from(eot));
    let text =
        serde_json::to_string_pretty(&model_cfg.to_hf_value(&extra)).expect("JSON serializes");
    ire_core::fs::write_atomic(&out.join(ire_llama::CONFIG_FILE), text.as_bytes())?;

    let tok_bytes = std::fs::read(&tok).map_err(|e| TrainError::io(&tok, e))?;
    ire_core::fs::write_atomic(&out.join("tokenizer.json"), &tok_bytes)?;
    let eot_token = tokenizer.inner().id_to_token(eot as u32).ok_or_else(|| {
        TrainError::checkpoint(&tok, format!("no token has the end-of-text id {eot}"))
    })?;
    let tok_cfg = tokenizer_config(&eot_token, model_cfg.max_position_embeddings);
    let text = serde_json::to_string_pretty(&tok_cfg).expect("JSON serializes");
    ire_core::fs::write_atomic(&out.join(TOKENIZER_CONFIG_FILE), text.as_bytes())?;
    Ok(ckpt)
}

/// The file transformers' `AutoTokenizer` reads the special tokens from.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// `tokenizer_config.json` for a tokenizer whose only special token is `eot` (see the module
/// doc): a fast tokenizer from `tokenizer.json`, with `eot` as bos, eos, unk and pad, adding
/// none of them on encode (as ire trains), and texts up to the model's `context`.
pub fn tokenizer_config(eot: &str, context: usize) -> Value {
    serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": eot,
        "eos_token": eot,
        "unk_token": eot,
        "pad_token": eot,
        "add_bos_token": false,
        "add_eos_token": false,
        "clean_up_tokenization_spaces": false,
        "model_max_length": context,
    })
}
