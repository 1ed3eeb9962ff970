//! `ire train`: run (or resume) a training run from a TOML config.
//!
//! Exit status: 0 finished (or stopped at `--stop-at`), 75 stopped by SIGINT/SIGTERM/SIGHUP
//! after writing a checkpoint (continue with `--resume`), 130 a second signal (no checkpoint
//! of that step), 1 an error.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use ire_train::{RunConfig, TrainOptions};

/// The config the README's main command uses: AdmIRE on the embedded corpus, `tiny` model.
pub const DEFAULT_CONFIG: &str = "configs/tiny-admire.toml";

/// Arguments of `ire train`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run config (TOML). Default: configs/tiny-admire.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config value, e.g. --set optim.ire.kappa=2 --set run.dir=runs/k2 (repeatable);
    /// `--set optim.ire=false` removes a table (here: the base without IRE).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Resume the run in this directory from its newest checkpoint (uses its saved config).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "config")]
    resume: Option<PathBuf>,
    /// Stop with a checkpoint after this many steps (the schedule still spans schedule.total).
    #[arg(long)]
    stop_at: Option<usize>,
    /// Never draw a progress bar: print plain progress lines (as when stderr is not a
    /// terminal; their cadence is metrics.progress_steps / metrics.progress_seconds).
    #[arg(long)]
    no_progress: bool,
    /// With --resume: accept a change of this config key or section against the checkpoint's
    /// config (e.g. schedule.total, optim, global_batch); repeatable.
    #[arg(long = "allow-change", value_name = "KEY", requires = "resume")]
    allow_change: Vec<String>,
}

/// Runs `ire train`; returns the exit status (see the module docs).
pub fn run(args: Args) -> anyhow::Result<u8> {
    // Under mpirun, srun or torchrun the job's process count is the launcher's, whatever a
    // saved config recorded (a run may resume on another world size at the same global batch).
    let launch = ire_train::dist::Launch::from_env()?;
    let (mut cfg, resume) = read_config(&args, &launch)?;
    if launch.rank == 0 {
        crate::log::open_run_log(&cfg.run.dir, resume)?;
    }
    let devices = crate::backend::process_devices(&cfg.run.devices, &launch)?;
    let (peak, source) = crate::backend::peak_flops(&mut cfg, launch.world, launch.rank);
    if launch.rank == 0 {
        tracing::info!(
            "MFU against a peak of {:.3} TFLOP/s per device ({source})",
            peak / 1e12
        );
    }
    ire_train::signals::install_stop_handler();
    let opts = TrainOptions {
        resume,
        stop_at: args.stop_at,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
        allow_changes: args.allow_change.clone(),
        fault: ire_train::fault::Fault::from_env()?,
        launch: launch.clone(),
    };
    let run_dir = cfg.run.dir.clone();
    let summary = ire_train::train::<crate::backend::Training>(cfg, devices, opts, peak)?;
    if launch.rank == 0 {
        report(&summary, &run_dir); // rank 0 reports for the job
    }
    Ok(match summary.signalled {
        true => ire_train::signals::EXIT_INTERRUPTED,
        false => 0,
    })
}

/// The run's config — the given file (default [`DEFAULT_CONFIG`]) or, with `--resume`, the
/// run's saved one — with the `--set` overrides and the launcher's process count; and whether
/// this is a resume.
fn read_config(args: &Args, launch: &ire_train::dist::Launch) -> anyhow::Result<(RunConfig, bool)> {
    let (path, resume) = match &args.resume {
        Some(dir) => (dir.join(ire_train::checkpoint::RUN_CONFIG_FILE), true),
        None => (
            args.config
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)),
            false,
        ),
    };
    let mut overrides = args.set.clone();
    if let Some(dir) = &args.resume {
        // The saved config may carry a relative run.dir; trust the directory we were given.
        overrides.push(format!("run.dir={:?}", dir.display().to_string()));
    }
    overrides.push(format!("dist.processes={}", launch.world));
    // A resumed run's config.toml was written by ire: `load_saved` accepts what older versions
    // wrote there (AdmIRE keys on AdamW runs).
    let cfg = match resume {
        true => RunConfig::load_saved(&path, &overrides),
        false => RunConfig::load(&path, &overrides),
    }
    .with_context(|| format!("reading the run config {}", path.display()))?;
    Ok((cfg, resume))
}

/// The closing lines on stdout and in `train.log`: how the run ended, and the command that
/// continues it when it stopped early with a checkpoint.
fn report(summary: &ire_train::TrainSummary, run_dir: &std::path::Path) {
    let fmt = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into());
    let closing = format!(
        "{} after {} steps: train loss {}, val loss {}; checkpoint {}; metrics {}",
        if summary.interrupted {
            "stopped"
        } else {
            "finished"
        },
        summary.steps,
        fmt(summary.train_loss),
        fmt(summary.val_loss),
        summary
            .checkpoint
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into()),
        run_dir.join("metrics.jsonl").display()
    );
    println!("{closing}");
    crate::log::write_line(&closing);
    if summary.interrupted && summary.checkpoint.is_some() {
        let resume = format!("continue with: ire train --resume {}", run_dir.display());
        println!("{resume}");
        crate::log::write_line(&resume);
    }
}
