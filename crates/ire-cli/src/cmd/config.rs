//! `ire config`: the resolved config of a run (every key with its value, defaults filled in, a
//! comment per key), or with `--reference` docs/config.md; both from
//! `ire_train::reference`, which reads the config structs' doc comments.

use std::path::PathBuf;

use anyhow::Context;
use ire_train::RunConfig;

/// Arguments of `ire config`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run config (TOML), resolved as `ire train --config` resolves it.
    #[arg(long, default_value = super::train::DEFAULT_CONFIG)]
    config: PathBuf,
    /// Override a config value, e.g. --set optim.ire.kappa=2 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print the reference of every key (docs/config.md) instead of one config.
    #[arg(long, conflicts_with_all = ["config", "set"])]
    reference: bool,
}

/// Runs `ire config`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.reference {
        print!("{}", ire_train::reference::markdown());
        return Ok(());
    }
    let cfg = RunConfig::load(&args.config, &args.set)
        .with_context(|| format!("reading the run config {}", args.config.display()))?;
    let origin = args.config.display().to_string();
    print!("{}", ire_train::reference::annotated_toml(&cfg, &origin));
    Ok(())
}
