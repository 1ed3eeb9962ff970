//! `ire init`: write a freshly initialised model (HF `model.safetensors` + `config.json`).

use std::path::PathBuf;

use anyhow::Context;
use ire_llama::{save_hf, InitScheme, Llama, LlamaConfig};

/// Arguments of `ire init`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model preset: tiny, 60m, 119m or 229m.
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Override the vocabulary size.
    #[arg(long)]
    vocab_size: Option<usize>,
    /// Override the number of key/value heads (grouped-query attention).
    #[arg(long)]
    kv_heads: Option<usize>,
    /// Tie lm_head to the embedding.
    #[arg(long)]
    tied: bool,
    /// Initialisation: torch (PyTorch defaults, as the paper) or hf (normal(0, 0.02)).
    #[arg(long, default_value = "torch", value_parser = parse_scheme)]
    init: InitScheme,
    /// Seed of the initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

fn parse_scheme(s: &str) -> Result<InitScheme, String> {
    match s {
        "torch" => Ok(InitScheme::Torch),
        "hf" => Ok(InitScheme::Hf),
        _ => Err(format!("`{s}`: expected `torch` or `hf`")),
    }
}

/// Runs `ire init`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut config = LlamaConfig::preset(&args.preset)?;
    if let Some(v) = args.vocab_size {
        config.vocab_size = v;
    }
    if let Some(kv) = args.kv_heads {
        config.num_key_value_heads = kv;
    }
    config.tie_word_embeddings |= args.tied;
    config.validate("--preset/--vocab-size/--kv-heads")?;
    let device = crate::backend::default_device()?;
    let model = Llama::<crate::backend::Backend>::init(&config, args.init, args.seed, &device)?;
    save_hf(&model, &args.out, &Default::default())
        .with_context(|| format!("writing the model to {}", args.out.display()))?;
    println!(
        "wrote {} ({} parameters, preset {}, init {:?}, seed {})",
        args.out.display(),
        config.num_params(),
        args.preset,
        args.init,
        args.seed
    );
    Ok(())
}
