//! The training loop, nanoGPT-style: set the lr, refresh AdmIRE's mask when due, run the
//! micro-batches, average gradients across replicas, clip, step, log, evaluate, checkpoint.
//!
//! [`train`] prepares the run (directory, data, model, optimizer, resume) and runs one
//! [`rank_loop`] per device; rank 0 also logs, evaluates and saves.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use ire_data::{Batch, DataParallel, Loader, LoaderState, Prefetcher};
use ire_llama::{load_hf, IreOps, Llama, LlamaConfig};
use ire_optim::{
    clip_global_norm, global_grad_norm, gnb_gradients, gnb_seed, FusedUpdate, OptimName, Optimizer,
    Schedule,
};

use crate::checkpoint::{self, TrainerState};
use crate::dp::{self, Rank};
use crate::metrics::{MetricLine, MetricsWriter};
use crate::{RunConfig, TrainError};

/// Offset of the global sample indices that AdmIRE's GNB batches draw from, so they are fresh
/// batches (not the step's training batch) and still a pure function of the step.
const GNB_SAMPLE_OFFSET: u64 = 1 << 40;

/// How `ire train` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from the newest checkpoint in the run directory.
    pub resume: bool,
    /// Stop (with a checkpoint) once this many steps are done, before `schedule.total`.
    pub stop_at: Option<usize>,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Steps done.
    pub steps: usize,
    /// Last training loss.
    pub train_loss: Option<f64>,
    /// Last validation loss.
    pub val_loss: Option<f64>,
    /// The newest checkpoint.
    pub checkpoint: Option<PathBuf>,
    /// Whether the run stopped early (Ctrl-C or `stop_at`).
    pub interrupted: bool,
}

/// Set by the Ctrl-C handler; checked (and agreed on by all ranks) once per step.
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once per process).
pub fn install_ctrlc_handler() {
    let _ = ctrlc::set_handler(|| {
        if STOP_REQUESTED.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C: finishing this step, writing a checkpoint, then exiting");
    });
}

/// Read-only context shared by all ranks.
struct Ctx {
    cfg: RunConfig,
    config_toml: String,
    model_cfg: LlamaConfig,
    run_dir: PathBuf,
    schedule: Schedule,
    train: Loader,
    val: Batch,
    seq_len: usize,
    opts: TrainOptions,
    peak_flops: f64,
}

/// Runs (or resumes) the training run described by `cfg` on `devices` (one replica each).
pub fn train<B: AutodiffBackend + IreOps>(
    cfg: RunConfig,
    devices: Vec<B::Device>,
    opts: TrainOptions,
    peak_flops: f64,
) -> Result<TrainSummary, TrainError>
where
    B::InnerBackend: IreOps + FusedUpdate,
{
    ire_llama::ops::cpu::tune();
    let run_dir = cfg.run.dir.clone();
    let existing = checkpoint::list_checkpoints(&run_dir)?;
    if !opts.resume && (!existing.is_empty() || run_dir.join("metrics.jsonl").exists()) {
        return Err(TrainError::checkpoint(
            &run_dir,
            "this run directory already holds a run; resume it with `ire train --resume DIR`, \
             or choose another `run.dir` (e.g. --set run.dir=runs/other)",
        ));
    }
    std::fs::create_dir_all(&run_dir).map_err(|e| TrainError::io(&run_dir, e))?;
    let config_toml = cfg.to_toml();
    ire_llama::write_atomic(
        &run_dir.join(checkpoint::RUN_CONFIG_FILE),
        config_toml.as_bytes(),
    )?;

    // Data: prepare once (idempotent), then open the shards.
    let data_dir = cfg.data.prepared_dir();
    let dataset = ire_data::prepare(&cfg.data, &data_dir)?;
    let tokenizer_copy = run_dir.join(checkpoint::TOKENIZER_FILE);
    let tok_path = dataset.tokenizer_path();
    let tok_bytes = std::fs::read(&tok_path).map_err(|e| TrainError::io(&tok_path, e))?;
    ire_llama::write_atomic(&tokenizer_copy, &tok_bytes)?;
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
    let train_loader = Loader::new(
        &dataset,
        ire_data::Split::Train,
        seq_len,
        cfg.data.sampler,
        cfg.run.seed,
    )?;
    let val_loader = Loader::new(
        &dataset,
        ire_data::Split::Val,
        seq_len,
        cfg.data.sampler,
        cfg.run.seed,
    )?;
    let val = val_loader.val_windows(cfg.eval.windows)?;

    // Model, optimizer and trainer state: fresh or from the newest checkpoint.
    let main_device = devices[0].clone();
    let (model, state, ckpt) = match existing.last().filter(|_| opts.resume) {
        Some(&step) => {
            let dir = checkpoint::checkpoint_path(&run_dir, step);
            let model: Llama<B> = load_hf(&dir, &main_device)?;
            let state = checkpoint::read_state(&dir)?;
            if state.seed != cfg.run.seed {
                return Err(TrainError::checkpoint(
                    &dir,
                    format!(
                        "saved with seed {}, config says {}",
                        state.seed, cfg.run.seed
                    ),
                ));
            }
            tracing::info!("resuming {} from step {}", run_dir.display(), state.step);
            (model, state, Some(dir))
        }
        None => {
            let model = Llama::<B>::init(&model_cfg, cfg.model.init, cfg.run.seed, &main_device)?;
            let state = TrainerState {
                step: 0,
                tokens: 0,
                wall_s: 0.0,
                seed: cfg.run.seed,
                next_sample: 0,
                train_loss: None,
                val_loss: None,
            };
            (model, state, None)
        }
    };
    if opts.resume && ckpt.is_none() {
        return Err(TrainError::checkpoint(
            &run_dir,
            "no checkpoint to resume from (checkpoints/step-*/ is empty); to start this run over, \
             delete the directory (or train into another run.dir)",
        ));
    }

    let world = devices.len();
    let tokens_per_step = (cfg.global_batch() * seq_len) as u64;
    tracing::info!(
        "run `{}`: {} parameters, {} device(s), global batch {} × {} = {} tokens/step, {} steps, optimizer {}",
        cfg.run.name,
        model_cfg.num_params(),
        world,
        cfg.global_batch(),
        seq_len,
        tokens_per_step,
        cfg.schedule.total,
        format!("{:?}", cfg.optim.name).to_lowercase()
    );

    let ctx = Arc::new(Ctx {
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
                let ctx = ctx.clone();
                let state = state.clone();
                let ckpt = ckpt.clone();
                let device = device.clone();
                scope.spawn(move || {
                    rank_loop::<B>(
                        &ctx,
                        Rank { index: i, world },
                        &device,
                        replica,
                        state,
                        ckpt.as_deref(),
                    )
                })
            })
            .collect();
        let mut results = vec![rank_loop::<B>(
            &ctx,
            Rank { index: 0, world },
            &main_device,
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
    let mut results = results.into_iter();
    let main = results.next().expect("rank 0 always runs");
    for r in results {
        r?;
    }
    main
}

/// The first global sample index of micro-batch `micro` of rank `rank` at iteration `it`.
///
/// Samples of one step are `it·G … it·G + G − 1` (G = global batch), split into consecutive
/// chunks by (micro-batch, rank): 1 device × batch B and 2 devices × B/2 see the same samples.
fn sample_start(it: usize, micro: usize, rank: Rank, micro_batch: usize, accum: usize) -> u64 {
    let global = (micro_batch * accum * rank.world) as u64;
    it as u64 * global + ((micro * rank.world + rank.index) * micro_batch) as u64
}

fn to_tensors<B: Backend>(
    batch: &Batch,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let shape = [batch.batch, batch.ctx];
    let x: Vec<i64> = batch.inputs.iter().map(|&t| t as i64).collect();
    let y: Vec<i64> = batch.targets.iter().map(|&t| t as i64).collect();
    (
        Tensor::from_data(TensorData::new(x, shape), device),
        Tensor::from_data(TensorData::new(y, shape), device),
    )
}

/// Sums gradients (`None` = nothing yet).
fn accumulate<B: AutodiffBackend>(
    acc: Option<GradientsParams>,
    g: GradientsParams,
    model: &Llama<B>,
) -> GradientsParams {
    match acc {
        None => g,
        Some(acc) => ire_optim::add_gradients::<B, _>(acc, g, model),
    }
}

/// One replica's training loop.
fn rank_loop<B: AutodiffBackend + IreOps>(
    ctx: &Ctx,
    rank: Rank,
    device: &B::Device,
    mut model: Llama<B>,
    mut state: TrainerState,
    resume_from: Option<&Path>,
) -> Result<TrainSummary, TrainError>
where
    B::InnerBackend: IreOps + FusedUpdate,
{
    ire_llama::ops::cpu::flush_denormals(); // this rank's thread (rayon's are set by tune())
    let cfg = &ctx.cfg;
    let (micro, accum) = (cfg.batch.micro_batch, cfg.batch.grad_accum);
    let total = ctx.schedule.total;
    let lr_max = ctx.schedule.lr_max;
    let clip = cfg.optim.clip_norm;
    let is_admire = cfg.optim.name == OptimName::Admire;
    let mut optim = Optimizer::<B>::new(&cfg.optim, ctx.schedule.warmup)?;
    if let Some(dir) = resume_from {
        optim.load(&dir.join(checkpoint::OPTIMIZER_DIR), device)?;
    }
    rank.register::<B>(device)?;

    // Training batches are built ahead on a background thread, in the order the loop consumes
    // them: micro-batch m of step `it` is global samples it·G + (m·W + rank)·b … (sample_start).
    let layout = DataParallel {
        rank: rank.index,
        world: rank.world,
        micro_batch: micro,
        accum,
    };
    let position = LoaderState {
        next_sample: state.step as u64 * layout.global_batch(),
    };
    let mut prefetch = Prefetcher::new(ctx.train.clone(), layout, position, 2 * accum)?;

    let mut metrics = match rank.is_main() {
        true => Some(MetricsWriter::open(
            &ctx.run_dir.join("metrics.jsonl"),
            Some(state.step),
        )?),
        false => None,
    };
    let progress = (rank.is_main() && ctx.opts.progress).then(|| progress_bar(total, state.step));
    let tokens_per_step = (cfg.global_batch() * ctx.seq_len) as u64;
    let flops_per_token = ctx.model_cfg.flops_per_token(ctx.seq_len);
    let stop_at = ctx.opts.stop_at.unwrap_or(total).min(total);
    let mut last_ckpt: Option<PathBuf> = resume_from.map(Path::to_path_buf);
    let mut interrupted = false;

    for it in state.step..stop_at {
        let started = Instant::now();
        let lr = ctx.schedule.lr_at(it);

        // AdmIRE: refresh the flat-direction mask from a GNB estimate on fresh batches.
        if optim.needs_refresh(it) {
            let mut estimate = None;
            for m in 0..accum {
                let start = GNB_SAMPLE_OFFSET + sample_start(it, m, rank, micro, accum);
                let (x, _) = to_tensors::<B>(&ctx.train.batch(start, micro)?, device);
                let g = gnb_gradients(&model, x, gnb_seed(cfg.run.seed, it as u64), start);
                let g = ire_optim::scale_gradients::<B, _>(g, 1.0 / accum as f64, &model);
                estimate = Some(accumulate(estimate, g, &model));
            }
            let estimate = rank.mean_gradients::<B>(estimate.expect("grad_accum ≥ 1"))?;
            optim.refresh_mask(&model, &estimate);
        }

        // Forward/backward over the micro-batches; the loss is scaled so gradients average.
        let mut grads = None;
        let mut loss_sum = Tensor::<B::InnerBackend, 1>::zeros([1], device);
        for m in 0..accum {
            let batch = prefetch.next_micro()?;
            debug_assert_eq!(batch.first_sample, sample_start(it, m, rank, micro, accum));
            let (x, y) = to_tensors::<B>(&batch, device);
            let loss = model.loss(x, y);
            loss_sum = loss_sum + loss.clone().inner();
            let g = GradientsParams::from_grads(loss.div_scalar(accum as f64).backward(), &model);
            grads = Some(accumulate(grads, g, &model));
        }
        let grads = rank.mean_gradients::<B>(grads.expect("grad_accum ≥ 1"))?;
        let (grads, grad_norm) = match clip {
            Some(max_norm) => clip_global_norm(&model, grads, max_norm),
            None => {
                let norm = global_grad_norm(&model, &grads) as f32;
                (grads, norm)
            }
        };
        // The boost applies after the start step (the optimizer decides; this is for logging).
        let kappa_t = match is_admire && it > optim.start() && optim.mask_fraction().is_some() {
            true => optim.kappa_t(lr, lr_max),
            false => 0.0,
        };
        model = optim.step(it, lr, lr_max, model, grads);

        // Agree on the global loss and on stopping, so all ranks leave at the same step.
        let local_loss: f32 = loss_sum.into_scalar().elem::<f32>() / accum as f32;
        let stop_flag = if STOP_REQUESTED.load(Ordering::SeqCst) {
            1.0
        } else {
            0.0
        };
        let global = rank.sum_host::<B>(&[local_loss, stop_flag], device)?;
        let loss = global[0] / rank.world as f32;
        let stop = global[1] > 0.0;
        if !loss.is_finite() {
            let last_good = match &last_ckpt {
                Some(p) => format!("The last good checkpoint, {}, is untouched.", p.display()),
                None => "No checkpoint had been written yet.".to_string(),
            };
            rank.finish::<B>()?;
            return Err(TrainError::NonFinite {
                step: it + 1,
                loss,
                last_good,
            });
        }

        let step_s = started.elapsed().as_secs_f64();
        state.step = it + 1;
        state.tokens += tokens_per_step;
        state.wall_s += step_s;
        state.next_sample = prefetch.state().next_sample;
        state.train_loss = Some(loss as f64);

        if let Some(w) = metrics.as_mut() {
            if state.step.is_multiple_of(cfg.metrics.log_interval) || state.step == stop_at {
                let tps = tokens_per_step as f64 / step_s;
                w.write(&MetricLine {
                    split: "train".into(),
                    step: state.step,
                    tokens: state.tokens,
                    loss: loss as f64,
                    lr: Some(lr),
                    grad_norm: Some(grad_norm as f64),
                    tokens_per_s: Some(tps),
                    mfu: Some(flops_per_token * tps / (ctx.peak_flops * rank.world as f64)),
                    wall_s: state.wall_s,
                    mask_fraction: optim.mask_fraction(),
                    kappa_t: is_admire.then_some(kappa_t),
                })?;
            }
            if let Some(pb) = &progress {
                pb.set_position(state.step as u64);
                pb.set_message(format!(
                    "loss {loss:.4}  lr {lr:.2e}  {:.0} tok/s",
                    tokens_per_step as f64 / step_s
                ));
            }
        }

        let last = state.step == stop_at;
        let eval_due = (cfg.eval.interval > 0 && state.step.is_multiple_of(cfg.eval.interval))
            || state.step == total;
        if rank.is_main() && eval_due {
            let val_loss = evaluate(&model.valid(), &ctx.val, micro, device);
            state.val_loss = Some(val_loss);
            tracing::info!(
                "step {}: train loss {loss:.4}, val loss {val_loss:.4}",
                state.step
            );
            if let Some(w) = metrics.as_mut() {
                w.write(&MetricLine {
                    split: "val".into(),
                    step: state.step,
                    tokens: state.tokens,
                    loss: val_loss,
                    lr: None,
                    grad_norm: None,
                    tokens_per_s: None,
                    mfu: None,
                    wall_s: state.wall_s,
                    mask_fraction: None,
                    kappa_t: None,
                })?;
            }
        }
        let ckpt_due = (cfg.checkpoint.interval > 0
            && state.step.is_multiple_of(cfg.checkpoint.interval))
            || last
            || stop;
        if rank.is_main() && ckpt_due {
            let dir = checkpoint::save_checkpoint(
                &ctx.run_dir,
                &model,
                &state,
                &ctx.config_toml,
                cfg.checkpoint.keep,
                |d| optim.save(d).map_err(TrainError::from),
            )?;
            tracing::debug!("checkpoint {}", dir.display());
            last_ckpt = Some(dir);
        }
        if stop {
            interrupted = true;
            break;
        }
    }
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    rank.finish::<B>()?;
    Ok(TrainSummary {
        steps: state.step,
        train_loss: state.train_loss,
        val_loss: state.val_loss,
        checkpoint: last_ckpt,
        interrupted: interrupted || state.step < total,
    })
}

/// Mean loss over the fixed validation windows, in chunks of `micro` sequences.
pub fn evaluate<B: IreOps>(model: &Llama<B>, val: &Batch, micro: usize, device: &B::Device) -> f64 {
    let mut total = 0.0f64;
    let mut start = 0;
    while start < val.batch {
        let n = micro.min(val.batch - start);
        let chunk = val.rows(start, n);
        let (x, y) = to_tensors::<B>(&chunk, device);
        let loss: f32 = model.loss(x, y).into_scalar().elem();
        total += loss as f64 * n as f64;
        start += n;
    }
    total / val.batch as f64
}

fn progress_bar(total: usize, at: usize) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(total as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed} < {eta}]",
        )
        .expect("static template"),
    );
    pb.set_position(at as u64);
    pb
}
