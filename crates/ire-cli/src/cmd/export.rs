//! `ire export`: a run's checkpoint as an HF folder (model.safetensors, config.json, tokenizer.json).

use std::path::PathBuf;

/// Arguments of `ire export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run directory.
    run_dir: PathBuf,
    /// Which checkpoint (default: the newest).
    #[arg(long)]
    step: Option<usize>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `ire export`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let ckpt = ire_train::export::export(&args.run_dir, args.step, &args.out)?;
    println!("exported {} to {}", ckpt.display(), args.out.display());
    Ok(())
}
