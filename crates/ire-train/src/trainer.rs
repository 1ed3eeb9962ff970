//! Preparing a run and starting its ranks: the run directory, the data, the model and the
//! optimizer state, fresh or from the newest checkpoint that verifies (after checking that the
//! config may continue it). `rank_loop.rs` then runs one loop per device.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::Module;
use ire_core::DirLock;
use ire_data::Loader;
use ire_llama::{load_hf, Llama, LlamaConfig};
use ire_optim::TrainBackend;

use crate::checkpoint::{self, TrainerState};
use crate::dp::{self, Rank};
use crate::memory::MemoryPlan;
use crate::rank_loop::rank_loop;
use crate::run::{Shared, TrainOptions, TrainSummary};
use crate::{resume, RunConfig, TrainError};

/// Runs (or resumes) the training run described by `cfg` on `devices` (one replica each).
pub fn train<B: TrainBackend>(
    cfg: RunConfig,
    devices: Vec<B::Device>,
    opts: TrainOptions,
    peak_flops: f64,
) -> Result<TrainSummary, TrainError> {
    let run_dir = cfg.run.dir.clone();
    std::fs::create_dir_all(&run_dir).map_err(|e| TrainError::io(&run_dir, e))?;
    // Held until this function returns, and taken before the directory is read or written: a
    // second job on it stops here, with the holder named (not told the directory holds a run).
    let _lock = lock_run_dir(&run_dir)?;
    ire_llama::ops::cpu::tune();
    let start = starting_point(&cfg, &opts)?;
    // Written only now: a refused resume leaves the run's config as it was.
    let config_toml = cfg.to_toml();
    ire_core::fs::write_atomic(
        &run_dir.join(checkpoint::RUN_CONFIG_FILE),
        config_toml.as_bytes(),
    )?;

    // Data: prepare once (idempotent), then open (and check) the shards.
    let data_dir = cfg.data.prepared_dir();
    let dataset = ire_data::prepare(&cfg.data, &data_dir)?;
    let tok_path = dataset.tokenizer_path();
    let tok_bytes = std::fs::read(&tok_path).map_err(|e| TrainError::io(&tok_path, e))?;
    ire_core::fs::write_atomic(&run_dir.join(checkpoint::TOKENIZER_FILE), &tok_bytes)?;
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
    let seq_len = cfg.seq_len(&model_cfg);
    let seed = cfg.run.seed;
    let loader = |split| Loader::new(&dataset, split, seq_len, cfg.data.sampler, seed);
    let train_loader = loader(ire_data::Split::Train)?;
    let val = loader(ire_data::Split::Val)?.val_windows(cfg.eval.windows)?;

    // Model and trainer state: fresh or from the checkpoint chosen above.
    let main_device = devices[0].clone();
    let (model, state, ckpt) = match start {
        Some((dir, state)) => {
            tracing::info!("resuming {} from step {}", run_dir.display(), state.step);
            (load_hf::<B>(&dir, &main_device)?, state, Some(dir))
        }
        None => {
            let model = Llama::<B>::init(&model_cfg, cfg.model.init, seed, &main_device)?;
            (model, TrainerState::fresh(seed), None)
        }
    };
    let model = model.with_precision(cfg.run.precision);
    log_run(&cfg, &model_cfg, devices.len(), seq_len);
    log_memory(&cfg, &model_cfg);

    let shared = Arc::new(Shared {
        schedule: cfg.schedule.build()?,
        config_toml,
        model_cfg,
        run_dir,
        train: train_loader,
        val,
        seq_len,
        opts,
        peak_flops,
        cfg,
    });
    run_ranks::<B>(&shared, devices, model, state, ckpt)
}

/// Takes the run directory's lock, `run.lock`, for the job's life (released when the returned
/// guard drops; a killed job's lock is taken over by the next one, with a warning naming its
/// pid). A second job stops with [`TrainError::RunLocked`]. With several processes, rank 0
/// alone calls this.
pub fn lock_run_dir(run_dir: &Path) -> Result<DirLock, TrainError> {
    Ok(DirLock::acquire(run_dir, checkpoint::RUN_LOCK_FILE)?)
}

/// Where the run starts: `None` for a fresh run (refusing a directory that already holds a
/// run), or the newest checkpoint that verifies and its state when resuming — after checking
/// that the config may continue it.
fn starting_point(
    cfg: &RunConfig,
    opts: &TrainOptions,
) -> Result<Option<(PathBuf, TrainerState)>, TrainError> {
    let run_dir = &cfg.run.dir;
    if !opts.resume {
        let existing = checkpoint::list_checkpoints(run_dir)?;
        if !existing.is_empty() || run_dir.join("metrics.jsonl").exists() {
            return Err(TrainError::checkpoint(
                run_dir,
                "this run directory already holds a run; resume it with `ire train --resume DIR`, \
                 or choose another `run.dir` (e.g. --set run.dir=runs/other)",
            ));
        }
        return Ok(None);
    }
    checkpoint::clean_stale(run_dir)?;
    let Some((_, dir)) = checkpoint::newest_good(run_dir)? else {
        return Err(TrainError::checkpoint(
            run_dir,
            "no checkpoint to resume from (checkpoints/step-*/ is empty); to start this run over, \
             delete the directory (or train into another run.dir)",
        ));
    };
    let state = checkpoint::read_state(&dir)?;
    let saved = RunConfig::load(&dir.join(checkpoint::RUN_CONFIG_FILE), &[])?;
    resume::check_compatible(&dir, &saved, cfg, &opts.allow_changes)?;
    Ok(Some((dir, state)))
}

/// The run's memory plan for one device (see [`crate::memory`]).
pub fn memory_plan(cfg: &RunConfig, model_cfg: &LlamaConfig) -> MemoryPlan {
    let seq_len = cfg.seq_len(model_cfg);
    let admire = cfg.optim.name == ire_optim::OptimName::Admire;
    let b = &cfg.batch;
    let precision = cfg.run.precision;
    MemoryPlan::new(
        model_cfg,
        b.micro_batch,
        seq_len,
        b.grad_accum,
        admire,
        precision,
    )
}

/// Logs the memory plan; on CPU (where every device shares the RAM) warns when the replicas'
/// peak does not fit in the available memory.
fn log_memory(cfg: &RunConfig, model_cfg: &LlamaConfig) {
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

fn log_run(cfg: &RunConfig, model_cfg: &LlamaConfig, world: usize, seq_len: usize) {
    tracing::info!(
        "run `{}`: {} parameters ({} matmuls), {} device(s), global batch {} × {} = {} tokens/step, {} steps, optimizer {}",
        cfg.run.name,
        model_cfg.num_params(),
        cfg.run.precision.name(),
        world,
        cfg.global_batch(),
        seq_len,
        cfg.global_batch() * seq_len,
        cfg.schedule.total,
        format!("{:?}", cfg.optim.name).to_lowercase()
    );
}

/// Runs one [`rank_loop`] per device (rank 0 on this thread) and returns rank 0's summary, or
/// the first error that is not just "another rank failed".
fn run_ranks<B: TrainBackend>(
    shared: &Arc<Shared>,
    devices: Vec<B::Device>,
    model: Llama<B>,
    state: TrainerState,
    ckpt: Option<PathBuf>,
) -> Result<TrainSummary, TrainError> {
    let world = devices.len();
    if world > 1 {
        dp::reset::<B>();
    }
    // Every replica starts as a clone of one module, so parameter ids agree across ranks.
    let results: Vec<Result<TrainSummary, TrainError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = devices
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, device)| {
                let replica = model.clone().fork(device);
                let (shared, state, ckpt) = (shared.clone(), state.clone(), ckpt.clone());
                let device = device.clone();
                let rank = Rank { index: i, world };
                scope.spawn(move || {
                    rank_loop::<B>(&shared, rank, &device, replica, state, ckpt.as_deref())
                })
            })
            .collect();
        let rank = Rank { index: 0, world };
        let mut results = vec![rank_loop::<B>(
            shared,
            rank,
            &devices[0],
            model,
            state,
            ckpt.as_deref(),
        )];
        for h in handles {
            results.push(h.join().unwrap_or_else(|_| {
                Err(TrainError::Collective("a replica thread panicked".into()))
            }));
        }
        results
    });
    let mut summary = None;
    let mut peer_failed = false;
    for result in results {
        match result {
            Ok(s) => {
                summary.get_or_insert(s);
            }
            Err(TrainError::PeerFailed) => peer_failed = true,
            Err(e) => return Err(e),
        }
    }
    match (summary, peer_failed) {
        (Some(s), false) => Ok(s),
        _ => Err(TrainError::PeerFailed),
    }
}
