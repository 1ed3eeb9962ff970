//! `ire sample`: continue a prompt with a trained model (key/value-cached decoding, greedy or
//! temperature + top-k sampling, seeded) — the quickest look at what a run learned.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ire_llama::generate::{generate, Sampling};
use ire_llama::load_hf;

/// Arguments of `ire sample`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model folder: a run's checkpoint (`RUN/checkpoints/step-N`) or an exported HF folder.
    #[arg(long)]
    model: PathBuf,
    /// The text to continue.
    #[arg(long)]
    prompt: String,
    /// tokenizer.json; default: the model folder's, else its run's (`RUN/tokenizer.json`).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Tokens to generate at most (stops early at the end-of-text token).
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Softmax temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    /// Sample among the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 50)]
    top_k: usize,
    /// Seed of the sampler: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// The tokenizer next to the model, or the one of the run the checkpoint belongs to.
fn find_tokenizer(model: &Path) -> anyhow::Result<PathBuf> {
    let candidates = [
        model.join("tokenizer.json"),
        model.join("../../tokenizer.json"),
    ];
    match candidates.iter().find(|p| p.exists()) {
        Some(p) => Ok(p.clone()),
        None => bail!(
            "{}: no tokenizer.json in the folder or its run directory; pass --tokenizer PATH",
            model.display()
        ),
    }
}

/// Runs `ire sample`: prints the prompt followed by the generated text.
pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.temperature.is_finite() || args.temperature < 0.0 {
        bail!(
            "--temperature: a number ≥ 0 (0 = greedy), got {}",
            args.temperature
        );
    }
    let tok_path = match &args.tokenizer {
        Some(p) => p.clone(),
        None => find_tokenizer(&args.model)?,
    };
    let tokenizer = ire_data::Tokenizer::from_file(&tok_path)?;
    let device = crate::backend::default_device()?;
    let model = load_hf::<crate::backend::Backend>(&args.model, &device)
        .with_context(|| format!("loading the model {}", args.model.display()))?;
    let prompt = tokenizer.encode(&args.prompt)?;
    if prompt.is_empty() {
        bail!("--prompt: the text encodes to no tokens");
    }
    if let Some(&bad) = prompt
        .iter()
        .find(|&&t| t as usize >= model.config.vocab_size)
    {
        bail!(
            "{}: token id {bad} is outside the model's vocabulary ({}); is it the run's tokenizer?",
            tok_path.display(),
            model.config.vocab_size
        );
    }
    let sampling = Sampling {
        temperature: args.temperature,
        top_k: args.top_k,
        seed: args.seed,
    };
    let eot = Some(tokenizer.eot_id());
    let new = generate(
        &model,
        &prompt,
        args.max_new_tokens,
        &sampling,
        eot,
        &device,
    );
    let text = tokenizer.decode(&new)?;
    println!("{}{}", args.prompt, text);
    Ok(())
}
