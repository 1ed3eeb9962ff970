//! Setting a run up, in the pieces a single process and a multi-process job share:
//! [`prepare_run`] (the main rank alone: the starting point, the run directory and its config,
//! the prepared data) and [`open_run`] (every rank: the data's loaders and the model, fresh or
//! from the chosen checkpoint). `trainer.rs` and `job.rs` call them in their order.

use std::path::{Path, PathBuf};

use ire_core::DirLock;
use ire_data::{Loader, PreparedDataset};
use ire_llama::{load_hf, Llama, LlamaConfig};
use ire_optim::TrainBackend;

use crate::checkpoint::{self, TrainerState};
use crate::memory::MemoryPlan;
use crate::run::{Shared, TrainOptions};
use crate::{resume, RunConfig, TrainError};

/// Where a run starts: a fresh model, or a verified checkpoint and its state.
pub(crate) type Start = Option<(PathBuf, TrainerState)>;

/// The main rank's preparation: the run directory's lock (returned, to hold), the starting point (after checking that the config may
/// continue the run), the run directory with its resolved config, the prepared data and the
/// tokenizer copy.
pub(crate) fn prepare_run(
    cfg: &RunConfig,
    opts: &TrainOptions,
) -> Result<(Start, DirLock), TrainError> {
    let run_dir = &cfg.run.dir;
    std::fs::create_dir_all(run_dir).map_err(|e| TrainError::io(run_dir, e))?;
    // Taken before the directory is read or written, and held by the caller for the whole
    // job: a second job on it stops here, with the holder named (not told the directory holds
    // a run).
    let lock = lock_run_dir(run_dir)?;
    let start = starting_point(cfg, opts)?;
    // Written only now: a refused resume leaves the run's config as it was.
    ire_core::fs::write_atomic(
        &run_dir.join(checkpoint::RUN_CONFIG_FILE),
        cfg.to_toml().as_bytes(),
    )?;
    let dataset = prepare_data(cfg)?;
    let tok_path = dataset.tokenizer_path();
    let tok_bytes = std::fs::read(&tok_path).map_err(|e| TrainError::io(&tok_path, e))?;
    ire_core::fs::write_atomic(&run_dir.join(checkpoint::TOKENIZER_FILE), &tok_bytes)?;
    Ok((start, lock))
}

/// Locks `run_dir` for this job (`run.lock`: pid, host, start time), refusing a second job
/// with one error naming the holder; a lock left by a dead process on this host is taken over.
pub fn lock_run_dir(run_dir: &Path) -> Result<DirLock, TrainError> {
    Ok(DirLock::acquire(run_dir, checkpoint::RUN_LOCK_FILE)?)
}

/// The prepared data of `cfg`: prepared once (idempotent), then opened and checked.
pub(crate) fn prepare_data(cfg: &RunConfig) -> Result<PreparedDataset, TrainError> {
    Ok(ire_data::prepare(&cfg.data, &cfg.data.prepared_dir())?)
}

/// The prepared data's identity: the sha256 of its `meta.json` (which records every shard's
/// hash and the tokenizer's).
pub(crate) fn data_identity(cfg: &RunConfig) -> Result<String, TrainError> {
    let meta = cfg.data.prepared_dir().join(ire_data::format::META_FILE);
    Ok(ire_core::fs::file_sha256(&meta)?.1)
}

/// Where the run starts: `None` for a fresh run (refusing a directory that already holds a
/// run), or the newest checkpoint that verifies and its state when resuming — after checking
/// that the config may continue it.
fn starting_point(cfg: &RunConfig, opts: &TrainOptions) -> Result<Start, TrainError> {
    let run_dir = &cfg.run.dir;
    if !opts.resume {
        let existing = checkpoint::list_checkpoints(run_dir)?;
        if !existing.is_empty() {
            return Err(TrainError::checkpoint(
                run_dir,
                format!(
                    "this run directory already holds a run; continue it with `ire train --resume {}`, \
                     or choose another `run.dir` (e.g. --set run.dir=runs/other)",
                    run_dir.display()
                ),
            ));
        }
        if run_dir.join("metrics.jsonl").exists() {
            return Err(no_checkpoint(run_dir));
        }
        return Ok(None);
    }
    checkpoint::clean_stale(run_dir)?;
    let Some((_, dir)) = checkpoint::newest_good(run_dir)? else {
        return Err(no_checkpoint(run_dir));
    };
    let state = checkpoint::read_state(&dir)?;
    let saved = RunConfig::load_saved(&dir.join(checkpoint::RUN_CONFIG_FILE), &[])?;
    resume::check_compatible(&dir, &saved, cfg, &opts.allow_changes)?;
    Ok(Some((dir, state)))
}

/// The one answer, fresh or `--resume`, for a run directory whose run stopped before its first
/// checkpoint (this job holds its lock, so no other job is using it).
fn no_checkpoint(run_dir: &Path) -> TrainError {
    TrainError::checkpoint(
        run_dir,
        format!(
            "this run stopped before its first checkpoint (checkpoints/step-*/ is empty): there is \
             nothing to resume; to start it over, delete {} (or choose another `run.dir`, e.g. \
             --set run.dir=runs/other)",
            run_dir.display()
        ),
    )
}

/// The start chosen by the main rank, read by another rank from the checkpoint folder it
/// names (`""` for a fresh run).
pub(crate) fn start_from(dir: &str) -> Result<Start, TrainError> {
    if dir.is_empty() {
        return Ok(None);
    }
    let dir = PathBuf::from(dir);
    let state = checkpoint::read_state(&dir)?;
    Ok(Some((dir, state)))
}

/// Every rank's part: the loaders over the prepared data and the model (fresh, or from the
/// checkpoint of `start`) on `device`. Returns what the ranks share and the model.
pub(crate) fn open_run<B: TrainBackend>(
    cfg: RunConfig,
    opts: TrainOptions,
    start: &Start,
    device: &B::Device,
    peak_flops: f64,
) -> Result<(Shared, Llama<B>), TrainError> {
    let dataset = prepare_data(&cfg)?;
    let model_cfg = cfg.model.resolve()?;
    if model_cfg.vocab_size < dataset.vocab_size() {
        return Err(TrainError::config(
            "model.vocab_size",
            format!(
                "at least the tokenizer's vocabulary ({}), got {}",
                dataset.vocab_size(),
                model_cfg.vocab_size
            ),
        ));
    }
    let (seq_len, seed) = (cfg.seq_len(&model_cfg), cfg.run.seed);
    let loader = |split| Loader::new(&dataset, split, seq_len, cfg.data.sampler, seed);
    let train = loader(ire_data::Split::Train)?;
    let val = loader(ire_data::Split::Val)?.val_windows(cfg.eval.windows)?;
    let model = match start {
        Some((dir, state)) => {
            tracing::info!(
                "resuming {} from step {}",
                cfg.run.dir.display(),
                state.step
            );
            load_hf::<B>(dir, device)?
        }
        None => Llama::<B>::init(&model_cfg, cfg.model.init, seed, device)?,
    };
    let model = model.with_precision(cfg.run.precision);
    let shared = Shared {
        schedule: cfg.schedule.build()?,
        config_toml: cfg.to_toml(),
        model_cfg,
        run_dir: cfg.run.dir.clone(),
        train,
        val,
        seq_len,
        opts,
        peak_flops,
        cfg,
    };
    Ok((shared, model))
}

/// The trainer state a run starts from.
pub(crate) fn state_of(start: &Start, seed: u64) -> TrainerState {
    match start {
        Some((_, state)) => state.clone(),
        None => TrainerState::fresh(seed),
    }
}

/// The checkpoint folder of `start`, if any.
pub(crate) fn checkpoint_of(start: &Start) -> Option<&Path> {
    start.as_ref().map(|(dir, _)| dir.as_path())
}

/// The run's memory plan for one device (see [`crate::memory`]).
pub fn memory_plan(cfg: &RunConfig, model_cfg: &LlamaConfig) -> MemoryPlan {
    let seq_len = cfg.seq_len(model_cfg);
    let admire = cfg.optim.ire.is_some();
    let b = &cfg.batch;
    MemoryPlan::new(
        model_cfg,
        b.micro_batch,
        seq_len,
        b.grad_accum,
        admire,
        cfg.run.precision,
    )
}

/// Logs the run's shape and memory plan; on CPU (where every device of a process shares the
/// RAM) warns when the replicas' peak does not fit in the available memory.
pub(crate) fn log_run(cfg: &RunConfig, model_cfg: &LlamaConfig) {
    let seq_len = cfg.seq_len(model_cfg);
    tracing::info!(
        "run `{}`: {} parameters ({} matmuls), {} replica(s), global batch {} × {} = {} tokens/step, {} steps, optimizer {}",
        cfg.run.name,
        model_cfg.num_params(),
        cfg.run.precision.name(),
        cfg.replicas(),
        cfg.global_batch(),
        seq_len,
        cfg.global_batch() * seq_len,
        cfg.schedule.total,
        cfg.optim.label()
    );
    let plan = memory_plan(cfg, model_cfg);
    tracing::info!("{plan}");
    let cpu = cfg.run.devices.iter().all(|d| d == "cpu");
    if cpu && cfg.run.precision != ire_llama::Precision::F32 {
        tracing::warn!(
            "run.precision = \"{}\" on the CPU runs the composed ops (the CPU kernels are f32 \
             only): right for checking a GPU config, about 3× slower than f32",
            cfg.run.precision.name()
        );
    }
    let replicas = cfg.run.devices.len() as u64;
    match crate::memory::cpu_available() {
        Some(free) if cpu && !plan.fits(free / replicas.max(1)) => tracing::warn!(
            "{} replica(s) need about {:.1} GiB, {:.1} GiB are available: the run may be killed \
             for memory; lower batch.micro_batch (and raise batch.grad_accum to keep the global batch)",
            replicas,
            (plan.total() * replicas) as f64 / (1u64 << 30) as f64,
            free as f64 / (1u64 << 30) as f64
        ),
        _ => {}
    }
}
