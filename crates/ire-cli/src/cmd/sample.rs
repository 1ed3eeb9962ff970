//! `ire sample`: continue a prompt with a trained model (key/value-cached decoding, greedy or
//! temperature + top-k sampling, seeded) — the quickest look at what a run learned. `--model`
//! is an HF folder, a checkpoint, or a run folder (its newest checkpoint that verifies, as
//! `--resume` picks).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ire_llama::generate::{generate, room_after, Sampling};
use ire_llama::load_hf;

/// Arguments of `ire sample`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model folder: an exported HF folder, a run's checkpoint (`RUN/checkpoints/step-N`), or a
    /// run folder of `ire train` (its newest checkpoint).
    #[arg(long)]
    model: PathBuf,
    /// The text to continue.
    #[arg(long)]
    prompt: String,
    /// tokenizer.json; default: the model folder's, else its run's (`RUN/tokenizer.json`).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Tokens to generate at most (stops early at the end-of-text token); with the prompt, at
    /// most the model's context (`max_position_embeddings`).
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

/// The model folder `--model` names: an HF folder or checkpoint (it has `config.json`) as is,
/// a run folder's newest checkpoint that verifies (the one `--resume` would continue from).
fn model_folder(model: &Path) -> anyhow::Result<PathBuf> {
    if !model.is_dir() {
        bail!("--model {}: no such folder", model.display());
    }
    if model.join(ire_llama::CONFIG_FILE).exists() {
        return Ok(model.to_path_buf());
    }
    if !ire_train::checkpoint::checkpoints_dir(model).is_dir() {
        bail!(
            "--model {}: neither a model folder (no {}) nor a run folder of `ire train` (no checkpoints/)",
            model.display(),
            ire_llama::CONFIG_FILE
        );
    }
    match ire_train::checkpoint::newest_good(model)? {
        Some((step, dir)) => {
            tracing::info!(
                "{}: a run folder; sampling from its newest checkpoint {} (step {step})",
                model.display(),
                dir.display()
            );
            Ok(dir)
        }
        None => bail!(
            "--model {}: a run folder without a checkpoint yet; train until one is written \
             (checkpoint.interval) or pass a model folder",
            model.display()
        ),
    }
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
    let folder = model_folder(&args.model)?;
    let tok_path = match &args.tokenizer {
        Some(p) => p.clone(),
        None => find_tokenizer(&folder)?,
    };
    let tokenizer = ire_data::Tokenizer::from_file(&tok_path)?;
    let device = crate::backend::default_device()?;
    let model = load_hf::<crate::backend::Backend>(&folder, &device)
        .with_context(|| format!("loading the model {}", folder.display()))?;
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
    check_context(&model.config, prompt.len(), args.max_new_tokens)?;
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

/// Refuses a request past the model's context, naming the flag and the largest value allowed.
fn check_context(
    config: &ire_llama::LlamaConfig,
    prompt_len: usize,
    max_new: usize,
) -> anyhow::Result<()> {
    let context = config.max_position_embeddings;
    let room = room_after(config, prompt_len);
    if room == 0 {
        bail!(
            "--prompt: {prompt_len} tokens fill the model's context of {context} positions \
             (max_position_embeddings); shorten it to leave room for new tokens"
        );
    }
    if max_new > room {
        bail!(
            "--max-new-tokens {max_new}: with the prompt's {prompt_len} tokens it runs past the \
             model's context of {context} positions (max_position_embeddings); the largest \
             allowed here is {room}"
        );
    }
    Ok(())
}
