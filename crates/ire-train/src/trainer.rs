//! Starting a run's ranks: one process with a thread per device (the in-process group), or
//! this process's one rank of a multi-process job (`job.rs`). The pieces of the set-up are in
//! `setup.rs`; `rank_loop.rs` then runs one loop per rank.

use std::sync::Arc;

use burn::module::Module;
use ire_llama::Llama;
use ire_optim::TrainBackend;

use crate::checkpoint::TrainerState;
use crate::dist::{self, local, Group, Rank};
use crate::rank_loop::rank_loop;
use crate::run::{Shared, TrainOptions, TrainSummary};
use crate::setup::{self, Start};
use crate::{job, EngineKind, RunConfig, TrainError};

/// Runs (or resumes) the training run described by `cfg` on `devices` (one replica each; one
/// device per process when `opts.launch` describes a multi-process job).
pub fn train<B: TrainBackend>(
    cfg: RunConfig,
    devices: Vec<B::Device>,
    opts: TrainOptions,
    peak_flops: f64,
) -> Result<TrainSummary, TrainError> {
    ire_llama::ops::cpu::tune();
    let cuda = cfg.run.devices.iter().any(|d| d.starts_with("cuda"));
    let engine = dist::resolve_engine(cfg.dist.engine, &opts.launch, devices.len(), cuda)?;
    if engine != EngineKind::Local {
        let device = devices.into_iter().next().ok_or_else(|| {
            TrainError::config("run.devices", "at least one device, e.g. [\"cpu\"]")
        })?;
        return job::run_process::<B>(cfg, engine, device, opts, peak_flops);
    }
    let (start, _lock) = setup::prepare_run(&cfg, &opts)?; // the lock is held until return
    let main_device = devices[0].clone();
    let state = setup::state_of(&start, cfg.run.seed);
    let (shared, model) = setup::open_run::<B>(cfg, opts, &start, &main_device, peak_flops)?;
    setup::log_run(&shared.cfg, &shared.model_cfg);
    run_threads::<B>(&Arc::new(shared), devices, model, state, &start)
}

/// Runs one [`rank_loop`] per device (rank 0 on this thread), joined by the in-process
/// engine, and returns rank 0's summary, or the first error that is not just "another rank
/// failed".
fn run_threads<B: TrainBackend>(
    shared: &Arc<Shared>,
    devices: Vec<B::Device>,
    model: Llama<B>,
    state: TrainerState,
    start: &Start,
) -> Result<TrainSummary, TrainError> {
    let world = devices.len();
    if world > 1 {
        local::reset::<B::InnerBackend>();
    }
    let ckpt = setup::checkpoint_of(start);
    let bucket_mb = shared.cfg.dist.bucket_mb;
    let one_rank = |index: usize, device: &B::Device, replica: Llama<B>, state: TrainerState| {
        let rank = Rank { index, world };
        let engine = local::LocalEngine::<B::InnerBackend>::join(rank, device)?;
        let group = Group::<B>::new(Box::new(engine), None, bucket_mb);
        rank_loop::<B>(shared, &group, device, replica, state, ckpt)
    };
    // Every replica starts as a clone of one module, so parameter ids agree across ranks.
    let results: Vec<Result<TrainSummary, TrainError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..world)
            .map(|i| {
                let replica = model.clone().fork(&devices[i]);
                let (state, one_rank, device) = (state.clone(), &one_rank, devices[i].clone());
                scope.spawn(move || one_rank(i, &device, replica, state))
            })
            .collect();
        let mut results = vec![one_rank(0, &devices[0], model, state)];
        for h in handles {
            results.push(h.join().unwrap_or_else(|_| {
                Err(TrainError::Collective("a replica thread panicked".into()))
            }));
        }
        results
    });
    first_cause(results)
}

/// Rank 0's summary when every rank finished, else the first error that is a rank's own
/// (not "another rank failed").
fn first_cause(results: Vec<Result<TrainSummary, TrainError>>) -> Result<TrainSummary, TrainError> {
    let mut summary = None;
    let mut peer = None;
    for result in results {
        match result {
            Ok(s) => {
                summary.get_or_insert(s);
            }
            Err(e @ TrainError::Peer { .. }) => {
                peer.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match (summary, peer) {
        (_, Some(e)) => Err(e),
        (Some(s), None) => Ok(s),
        (None, None) => Err(TrainError::Collective("no rank ran".into())),
    }
}
