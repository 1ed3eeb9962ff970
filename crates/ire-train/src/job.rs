//! One process of a multi-process job (mpirun, srun, torchrun): form the group first, then
//! set up in turns — rank 0 prepares the run directory and the data while the others wait
//! for its outcome (an error there stops every rank with rank 0's message), the first rank of
//! each other node prepares its own copy of the data if the data folder is not shared, every
//! rank opens the checkpoint rank 0 chose, and the resolved config and the data's identity
//! are checked equal on every rank — then this process's one [`rank_loop`].

use std::time::Duration;

use ire_core::DirLock;
use ire_optim::TrainBackend;

use crate::dist::{self, Group};
use crate::rank_loop::rank_loop;
use crate::run::{TrainOptions, TrainSummary};
use crate::setup::{self, Start};
use crate::{resume, EngineKind, RunConfig, TrainError};

/// Runs this process's rank of the job with the engine `kind` on `device`.
pub(crate) fn run_process<B: TrainBackend>(
    cfg: RunConfig,
    kind: EngineKind,
    device: B::Device,
    opts: TrainOptions,
    peak_flops: f64,
) -> Result<TrainSummary, TrainError> {
    let launch = opts.launch.clone();
    let rank = dist::Rank {
        index: launch.rank,
        world: launch.world,
    };
    let engine = dist::connect::<B::InnerBackend>(kind, &launch, rank, &cfg.dist, &device)?;
    let timeout = Duration::from_secs(cfg.dist.timeout_s);
    let group = Group::<B>::new(engine, Some(timeout), cfg.dist.bucket_mb);
    tracing::info!(
        "rank {} of {} (local rank {}): engine {}, launcher {}, device {:?}",
        rank.index,
        rank.world,
        launch.local_rank,
        group.engine_name(),
        launch.launcher,
        device
    );
    // Rank 0 holds the run directory's lock until the job ends.
    let result = set_up(&group, &cfg, &opts).and_then(|(start, _lock)| {
        let state = setup::state_of(&start, cfg.run.seed);
        let opened = setup::open_run::<B>(cfg, opts, &start, &device, peak_flops);
        let (shared, model) = group.agree(opened, &[])?.0;
        if rank.is_main() {
            setup::log_run(&shared.cfg, &shared.model_cfg);
        }
        let ckpt = setup::checkpoint_of(&start);
        rank_loop::<B>(&shared, &group, &device, model, state, ckpt)
    });
    let left = group.finish();
    let summary = result?;
    left?;
    Ok(summary)
}

/// The set-up in turns (see the module docs); returns the start rank 0 chose, and on rank 0
/// the run directory's lock.
fn set_up<B: TrainBackend>(
    group: &Group<B>,
    cfg: &RunConfig,
    opts: &TrainOptions,
) -> Result<(Start, Option<DirLock>), TrainError> {
    let rank = group.rank();
    let prepared = match rank.is_main() {
        true => setup::prepare_run(cfg, opts).map(|(start, lock)| (start, Some(lock))),
        false => Ok((None, None)),
    };
    let ((start, lock), _) = group.agree(prepared, &[])?;
    let node_first = !rank.is_main() && opts.launch.local_rank == 0;
    let local = match node_first {
        true => setup::prepare_data(cfg).map(drop),
        false => Ok(()),
    };
    group.agree(local, &[])?;
    let chosen = match &start {
        Some((dir, _)) => dir.display().to_string(),
        None => String::new(),
    };
    let chosen = group.broadcast(&chosen)?;
    let start = match rank.is_main() {
        true => Ok(start),
        false => setup::start_from(&chosen),
    };
    let (start, _) = group.agree(start, &[])?;
    group.check_same(&cfg.to_toml(), |rank0, mine| {
        format!(
            "the resolved run config differs: {}",
            resume::differences(rank0, mine)
        )
    })?;
    let data = setup::data_identity(cfg);
    let data = group.agree(data, &[])?.0;
    group.check_same(&data, |rank0, mine| {
        format!(
            "the prepared data in {} differs (sha256 of meta.json: {mine} here, {rank0} on rank 0); \
             prepare it once on a shared folder, or from the same config and sources on every node",
            cfg.data.prepared_dir().display()
        )
    })?;
    Ok((start, lock))
}
