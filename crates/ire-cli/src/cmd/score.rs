//! `ire score`: the mean next-token loss and first logits of a model on given tokens, as one
//! JSON line, to compare ire with any other implementation (see tools/hf_reference.py).

use std::path::PathBuf;

use anyhow::{bail, Context};
use burn::prelude::*;
use ire_llama::{load_hf, Llama};

/// Arguments of `ire score`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// HF checkpoint folder (config.json + model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Comma-separated token ids, e.g. 1,2,3.
    #[arg(long, conflicts_with = "tokens_file")]
    tokens: Option<String>,
    /// File of token ids separated by commas or whitespace.
    #[arg(long)]
    tokens_file: Option<PathBuf>,
    /// How many logits of the first position to print.
    #[arg(long, default_value_t = 8)]
    first: usize,
}

/// Parses token ids separated by commas and/or whitespace; `origin` names the source in errors.
pub fn parse_tokens(text: &str, origin: &str) -> anyhow::Result<Vec<i64>> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>().with_context(|| {
                format!("{origin}: `{s}` is not a token id (expected a non-negative integer)")
            })
        })
        .collect()
}

/// Runs `ire score`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let tokens = match (&args.tokens, &args.tokens_file) {
        (Some(t), _) => parse_tokens(t, "--tokens")?,
        (None, Some(f)) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            parse_tokens(&text, &f.display().to_string())?
        }
        (None, None) => bail!("give the tokens with --tokens 1,2,3 or --tokens-file FILE"),
    };
    let device = crate::backend::default_device()?;
    let model: Llama<crate::backend::Backend> = load_hf(&args.model, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let vocab = model.config.vocab_size as i64;
    if tokens.len() < 2 {
        bail!(
            "need at least 2 tokens to score a next-token loss, got {}",
            tokens.len()
        );
    }
    if let Some(bad) = tokens.iter().find(|&&t| t < 0 || t >= vocab) {
        bail!("token id {bad} is outside the model's vocabulary [0, {vocab})");
    }
    let n = tokens.len();
    let all = Tensor::<crate::backend::Backend, 1, Int>::from_ints(tokens.as_slice(), &device)
        .reshape([1, n]);
    let inputs = all.clone().slice([0..1, 0..n - 1]);
    let targets = all.slice([0..1, 1..n]);
    let logits = model.forward(inputs);
    let first: Vec<f32> = logits
        .clone()
        .slice([0..1, 0..1, 0..args.first.min(model.config.vocab_size)])
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| anyhow::anyhow!("reading logits: {e:?}"))?;
    let loss: f32 = Llama::cross_entropy(logits, targets).into_scalar().elem();
    let line = serde_json::json!({ "loss": loss, "logits_first": first, "tokens": n });
    println!("{line}");
    Ok(())
}
