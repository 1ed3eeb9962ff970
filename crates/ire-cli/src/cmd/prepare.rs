//! `ire prepare`: tokenize a run config's dataset into shards once (idempotent, resumable).

use std::path::PathBuf;

use anyhow::Context;
use ire_train::RunConfig;

/// Arguments of `ire prepare`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run config whose [data] section to prepare. Default: configs/tiny-admire.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config value (repeatable), e.g. --set data.prepared_dir=/fast/disk/wt103.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Runs `ire prepare`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let path = args
        .config
        .unwrap_or_else(|| PathBuf::from(super::train::DEFAULT_CONFIG));
    let cfg = RunConfig::load(&path, &args.set)
        .with_context(|| format!("reading the run config {}", path.display()))?;
    let out = cfg.data.prepared_dir();
    let ds = ire_data::prepare(&cfg.data, &out)?;
    println!(
        "prepared {}: vocab {}, train {} tokens, val {} tokens",
        out.display(),
        ds.vocab_size(),
        ds.num_tokens(ire_data::Split::Train),
        ds.num_tokens(ire_data::Split::Val)
    );
    Ok(())
}
