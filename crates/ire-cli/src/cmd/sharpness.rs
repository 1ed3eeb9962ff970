//! `ire sharpness`: Hutchinson's Tr(∇²L) (± its standard error) and λ_max of a run's
//! checkpoints on its fixed validation windows, appended to `RUN/sharpness.jsonl`.

use std::path::PathBuf;

use anyhow::bail;
use ire_lab::sharpness::{append_record, measure, read_records, SharpnessSettings};

/// Arguments of `ire sharpness`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run directory.
    run_dir: PathBuf,
    /// Checkpoint step(s) to measure (repeatable); default: the newest good checkpoint.
    #[arg(long)]
    step: Vec<usize>,
    /// Every checkpoint the run kept.
    #[arg(long, conflicts_with = "step")]
    all: bool,
    /// Validation windows the loss is averaged over (the run's first, as its evaluation uses).
    #[arg(long, default_value_t = 8)]
    windows: usize,
    /// Rademacher probes of Hutchinson's estimate (two gradients each).
    #[arg(long, default_value_t = 16)]
    probes: usize,
    /// Power-iteration steps for λ_max at most (two gradients each).
    #[arg(long, default_value_t = 20)]
    power_iters: usize,
    /// Relative change of λ at which the power iteration stops.
    #[arg(long, default_value_t = 1e-2)]
    power_tol: f64,
    /// Seed of the probes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Measure again even when sharpness.jsonl has this step with these settings.
    #[arg(long)]
    force: bool,
}

/// Runs `ire sharpness`: one line per checkpoint on stdout, and in `RUN/sharpness.jsonl`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.probes < 2 {
        bail!(
            "--probes: at least 2 (the standard error needs two), got {}",
            args.probes
        );
    }
    if args.power_iters == 0 || args.power_tol.is_nan() || args.power_tol <= 0.0 {
        bail!("--power-iters must be ≥ 1 and --power-tol > 0");
    }
    let settings = SharpnessSettings {
        windows: args.windows,
        probes: args.probes,
        power_iters: args.power_iters,
        power_tol: args.power_tol,
        seed: args.seed,
    };
    let steps: Vec<Option<usize>> = if args.all {
        ire_train::checkpoint::list_checkpoints(&args.run_dir)?
            .into_iter()
            .map(Some)
            .collect()
    } else if args.step.is_empty() {
        // The newest good checkpoint, by its step, so an earlier record of it is found below.
        let newest = ire_train::checkpoint::newest_good(&args.run_dir)?;
        vec![newest.map(|(step, _)| step)]
    } else {
        args.step.iter().copied().map(Some).collect()
    };
    let done = read_records(&args.run_dir)?;
    let device = crate::backend::default_device()?;
    for step in steps {
        let known = done
            .iter()
            .find(|r| Some(r.step) == step && r.settings == settings);
        let record = match known {
            Some(r) if !args.force => r.clone(),
            _ => {
                let r =
                    measure::<crate::backend::Training>(&args.run_dir, step, settings, &device)?;
                append_record(&args.run_dir, &r)?;
                r
            }
        };
        println!(
            "{}  step {:>6}  loss {:.4}  Tr(H) {:.2} ± {:.2}  λ_max {:.3} ({} iters)  {:.0} s",
            args.run_dir.display(),
            record.step,
            record.loss,
            record.trace,
            record.trace_stderr,
            record.lambda_max,
            record.lambda_iters,
            record.seconds
        );
    }
    Ok(())
}
