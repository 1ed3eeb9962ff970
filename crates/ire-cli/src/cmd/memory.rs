//! `ire memory`: a config's expected peak memory per device, from the shapes (no data, no
//! model is built): the quick check that a run fits before it is launched.

use std::path::PathBuf;

use ire_train::RunConfig;

/// Arguments of `ire memory`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run config (TOML).
    #[arg(long, default_value = "configs/tiny-admire.toml")]
    config: PathBuf,
    /// Override a config value, e.g. --set batch.micro_batch=8 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

/// Runs `ire memory`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = RunConfig::load(&args.config, &args.overrides)?;
    let model = cfg.model.resolve()?;
    let plan = ire_train::memory_plan(&cfg, &model);
    println!(
        "{}: micro-batch {} × {} tokens, grad_accum {}, {} device(s)",
        args.config.display(),
        cfg.batch.micro_batch,
        cfg.seq_len(&model),
        cfg.batch.grad_accum,
        cfg.run.devices.len()
    );
    println!("{plan}");
    for gb in [24u64, 40, 80] {
        let verdict = if plan.fits(gb * 1_000_000_000) {
            "fits"
        } else {
            "does not fit"
        };
        println!("  {verdict} a {gb} GB device (with 10 % headroom)");
    }
    Ok(())
}
