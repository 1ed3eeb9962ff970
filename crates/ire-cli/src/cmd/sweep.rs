//! `ire sweep SPEC.toml`: the runs of a sweep file (`ire_lab::sweep`), each an `ire train`
//! process of this binary — their datasets prepared first, once each; then `--workers N` at a
//! time with `--threads T` each, finished runs skipped, started ones resumed from their
//! checkpoint; `--status` prints where each stands,
//! `--index I` runs one (a Slurm array task), `--emit slurm` writes the array script.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context};
use ire_lab::sweep::{RunState, SweepRun, SweepSpec};
use ire_train::RunConfig;

/// Arguments of `ire sweep`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sweep file (a base config, overrides, axes).
    spec: PathBuf,
    /// Runs at a time.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Threads per run (RAYON_NUM_THREADS of each `ire train`).
    #[arg(long)]
    threads: Option<usize>,
    /// Print each run's state and final validation loss, and run nothing.
    #[arg(long)]
    status: bool,
    /// Run only the run of this index (0-based, in `--status` order): a Slurm array task.
    #[arg(long)]
    index: Option<usize>,
    /// Write a scheduler script instead of running: `slurm` (an sbatch array, one run a task).
    #[arg(long, value_name = "SCHEDULER")]
    emit: Option<String>,
}

/// Runs `ire sweep`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let spec = SweepSpec::load(&args.spec)?;
    spec.check()?;
    let runs = spec.runs();
    if args.status {
        print!("{}", status_table(&spec, &runs));
        return Ok(());
    }
    if let Some(scheduler) = &args.emit {
        // Here, once: the array's tasks start together and would race to prepare (and a
        // cluster's compute nodes may have no network for a download).
        std::fs::create_dir_all(spec.dir.join("logs"))?;
        prepare_data(&spec, &runs)?;
        return emit(scheduler, &args, &spec, runs.len());
    }
    let chosen: Vec<SweepRun> = match args.index {
        Some(i) => vec![runs.get(i).cloned().with_context(|| {
            format!(
                "--index {i}: the sweep has {} runs (0 to {})",
                runs.len(),
                runs.len().saturating_sub(1)
            )
        })?],
        None => runs,
    };
    std::fs::create_dir_all(spec.dir.join("logs"))?;
    prepare_data(&spec, &chosen)?;
    let queue = Mutex::new(chosen.into_iter().collect::<VecDeque<_>>());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..args.workers.max(1) {
            s.spawn(|| {
                loop {
                    // The queue's lock is released before the run (a `while let` on the lock
                    // would hold it through the run and serialise the workers).
                    let next = queue.lock().expect("no worker panics").pop_front();
                    let Some(run) = next else { break };
                    if let Err(e) = run_one(&spec, &run, args.threads) {
                        tracing::error!("{}: {e:#}", run.name);
                        failures
                            .lock()
                            .expect("no worker panics")
                            .push(run.name.clone());
                    }
                }
            });
        }
    });
    let failed = failures.into_inner().expect("no worker panics");
    if !failed.is_empty() {
        bail!(
            "{} run(s) did not finish: {} (logs in {})",
            failed.len(),
            failed.join(", "),
            spec.dir.join("logs").display()
        );
    }
    println!("sweep {}: every run finished", args.spec.display());
    Ok(())
}

/// Prepares each distinct dataset of `runs` once, before any run starts (concurrent runs would
/// otherwise race to prepare the same folder, and all but one find it locked).
fn prepare_data(spec: &SweepSpec, runs: &[SweepRun]) -> anyhow::Result<()> {
    let mut done = std::collections::BTreeSet::new();
    for run in runs {
        let cfg = RunConfig::load(&spec.config, &run.overrides)?;
        if !done.insert(cfg.data.prepared_dir()) {
            continue;
        }
        let exe = std::env::current_exe().context("the path of this ire binary")?;
        let mut cmd = Command::new(exe);
        cmd.args(["prepare", "--config"]).arg(&spec.config);
        for o in &run.overrides {
            cmd.args(["--set", o]);
        }
        let log = spec.dir.join("logs").join("prepare.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let status = cmd.stdout(file.try_clone()?).stderr(file).status()?;
        if !status.success() {
            bail!("ire prepare exited with {status}; log: {}", log.display());
        }
    }
    Ok(())
}

/// The run's last step.
fn total_steps(spec: &SweepSpec, run: &SweepRun) -> anyhow::Result<usize> {
    Ok(RunConfig::load(&spec.config, &run.overrides)?
        .schedule
        .total)
}

/// Trains one run to its end: skipped when finished, resumed when started, started again when
/// its folder holds no checkpoint; output in `dir/logs/<name>.log`.
fn run_one(spec: &SweepSpec, run: &SweepRun, threads: Option<usize>) -> anyhow::Result<()> {
    let state = run.state(total_steps(spec, run)?);
    let exe = std::env::current_exe().context("the path of this ire binary")?;
    let mut cmd = Command::new(exe);
    match state {
        RunState::Finished => {
            tracing::info!("{}: finished, skipped", run.name);
            return Ok(());
        }
        RunState::Started(step) => {
            tracing::info!("{}: resuming from step {step}", run.name);
            cmd.args(["train", "--resume"]).arg(&run.dir);
        }
        RunState::NoCheckpoint | RunState::NotStarted => {
            if state == RunState::NoCheckpoint {
                // Stopped before its first checkpoint: nothing to resume, so it starts again.
                std::fs::remove_dir_all(&run.dir)
                    .with_context(|| format!("removing {}", run.dir.display()))?;
            }
            tracing::info!("{}: starting", run.name);
            cmd.args(["train", "--config"]).arg(&spec.config);
            for o in &run.overrides {
                cmd.args(["--set", o]);
            }
        }
    }
    cmd.arg("--no-progress");
    if let Some(t) = threads {
        cmd.env("RAYON_NUM_THREADS", t.to_string());
    }
    let log = spec.dir.join("logs").join(format!("{}.log", run.name));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    let status = cmd.stdout(file.try_clone()?).stderr(file).status()?;
    if !status.success() {
        bail!("ire train exited with {status}; log: {}", log.display());
    }
    tracing::info!("{}: done", run.name);
    Ok(())
}

/// One line per run: index, name, state, final validation loss.
fn status_table(spec: &SweepSpec, runs: &[SweepRun]) -> String {
    let mut out = String::from("| # | run | state | final val loss |\n|---|---|---|---|\n");
    for (i, run) in runs.iter().enumerate() {
        let state = match total_steps(spec, run).map(|t| (t, run.state(t))) {
            Ok((_, RunState::NotStarted)) => "not started".to_string(),
            Ok((_, RunState::NoCheckpoint)) => "started, no checkpoint".to_string(),
            Ok((t, RunState::Started(step))) => format!("step {step}/{t}"),
            Ok((_, RunState::Finished)) => "finished".to_string(),
            Err(e) => format!("bad config: {e}"),
        };
        let loss = ire_lab::RunCurves::load(&run.dir)
            .ok()
            .and_then(|c| c.final_val());
        let loss = loss.map_or("-".to_string(), |l| format!("{l:.4}"));
        out += &format!("| {i} | {} | {state} | {loss} |\n", run.name);
    }
    out
}

/// Writes the scheduler's script for the sweep (`slurm`: `SPEC.sbatch`, an array of one task per
/// run, each `ire sweep SPEC --index $SLURM_ARRAY_TASK_ID`); the datasets are prepared before.
fn emit(scheduler: &str, args: &Args, spec: &SweepSpec, runs: usize) -> anyhow::Result<()> {
    if scheduler != "slurm" {
        bail!("--emit {scheduler}: expected slurm");
    }
    let exe = std::env::current_exe().context("the path of this ire binary")?;
    let cwd = std::env::current_dir()?;
    let spec_path = absolute(&args.spec)?;
    let threads = args.threads.unwrap_or(1);
    let name = spec_path
        .file_stem()
        .map_or("sweep".into(), |s| s.to_string_lossy().to_string());
    let script = format!(
        "#!/bin/bash\n\
         # Written by `ire sweep {spec} --emit slurm`: one run of the sweep per array task; a task\n\
         # that finds its run finished does nothing, a started one resumes it. Submit with\n\
         # `sbatch {out}`; follow with `ire sweep {spec} --status`.\n\
         #SBATCH --job-name={name}\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --cpus-per-task={threads}\n\
         #SBATCH --output={logs}/slurm-%A_%a.out\n\
         cd {cwd}\n\
         exec {exe} sweep {spec} --index \"$SLURM_ARRAY_TASK_ID\" --threads {threads}\n",
        spec = spec_path.display(),
        out = spec_path.with_extension("sbatch").display(),
        last = runs.saturating_sub(1),
        logs = absolute(&spec.dir.join("logs"))?.display(),
        cwd = cwd.display(),
        exe = exe.display(),
    );
    let out = spec_path.with_extension("sbatch");
    std::fs::create_dir_all(spec.dir.join("logs"))?;
    std::fs::write(&out, script).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {} ({runs} array tasks)", out.display());
    Ok(())
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(std::env::current_dir()?.join(path))
}
