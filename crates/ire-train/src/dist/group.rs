//! A rank's side of the data-parallel group: the operations the training loop calls, built on
//! an [`Engine`]. Replicas start equal and take the same optimizer step on the mean gradient,
//! so they stay equal without broadcasting weights.
//!
//! - [`Group::agree`]: the error-carrying barrier. Every rank calls it at the same point with
//!   the outcome of its own work since the last one; a rank's own error comes back to it, the
//!   others get [`TrainError::Peer`] carrying the first failing rank's message — so every
//!   rank leaves the loop at the same step, none waits forever in the next all-reduce, and
//!   every process of a multi-process job reports the same cause.
//! - [`Group::mean_gradients`]: the mean of the gradients, in flat buckets (`buckets.rs`).
//! - [`Group::check_same`]: a value that must be equal on every rank (the resolved config,
//!   the prepared data's identity), checked at start.
//!
//! Every collective runs under the [`Watchdog`] when the engine can abort the job.

use std::cell::Cell;
use std::time::Duration;

use burn::optim::GradientsParams;
use ire_llama::Llama;
use ire_optim::TrainBackend;

use crate::dist::buckets;
use crate::dist::engine::{Engine, Rank};
use crate::dist::watchdog::Watchdog;
use crate::TrainError;

/// Exit status of a process whose collective timed out (the watchdog aborted the job).
pub const EXIT_COLLECTIVE_TIMEOUT: i32 = 124;

/// One rank's handle on its group.
pub struct Group<B: TrainBackend> {
    engine: Box<dyn Engine<B::InnerBackend>>,
    watchdog: Option<Watchdog>,
    bucket_elems: usize,
    /// The step in progress (1-based; 0 at start), for the watchdog's message.
    step: Cell<usize>,
    /// Seconds spent in gradient all-reduces so far.
    reduce_s: Cell<f64>,
}

impl<B: TrainBackend> Group<B> {
    /// A group over `engine`; with a `timeout`, collectives that wait longer end the job
    /// (only where the engine can abort: MPI, NCCL).
    pub fn new(
        engine: Box<dyn Engine<B::InnerBackend>>,
        timeout: Option<Duration>,
        bucket_mb: usize,
    ) -> Self {
        let rank = engine.rank();
        let watchdog = match (timeout, engine.aborter()) {
            (Some(t), Some(abort)) if rank.world > 1 => Some(Watchdog::start(
                t,
                Box::new(move |what| {
                    eprintln!(
                        "error: rank {}: {what} did not finish within {} s: another rank died or \
                         hangs (raise dist.timeout_s if a rank is just slow); aborting the job",
                        rank.index,
                        t.as_secs()
                    );
                    abort();
                    std::process::exit(EXIT_COLLECTIVE_TIMEOUT);
                }),
            )),
            _ => None,
        };
        Self {
            engine,
            watchdog,
            bucket_elems: (bucket_mb << 20) / 4,
            step: Cell::new(0),
            reduce_s: Cell::new(0.0),
        }
    }

    /// This rank's place in the group.
    pub fn rank(&self) -> Rank {
        self.engine.rank()
    }

    /// The engine's name (`local`, `mpi`, `nccl`).
    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    /// Sets the step the next collectives belong to (for the watchdog's message).
    pub fn set_step(&self, step: usize) {
        self.step.set(step);
    }

    /// Runs the collective `what` under the watchdog.
    fn guarded<T>(
        &self,
        what: &str,
        f: impl FnOnce() -> Result<T, TrainError>,
    ) -> Result<T, TrainError> {
        if let Some(w) = &self.watchdog {
            w.arm(&format!("the {what} of step {}", self.step.get()));
        }
        let out = f();
        if let Some(w) = &self.watchdog {
            w.disarm();
        }
        out
    }

    /// The error-carrying barrier (see the module docs); `values` are summed over the ranks
    /// alongside (loss, stop flags).
    pub fn agree<T>(
        &self,
        local: Result<T, TrainError>,
        values: &[f32],
    ) -> Result<(T, Vec<f32>), TrainError> {
        let rank = self.rank();
        let mut send = values.to_vec();
        send.extend((0..rank.world).map(|i| (i == rank.index && local.is_err()) as u8 as f32));
        let summed = self.guarded("agreement", || self.engine.sum_host(&send))?;
        let Some(first) = summed[values.len()..].iter().position(|&f| f > 0.0) else {
            return local.map(|v| (v, summed[..values.len()].to_vec()));
        };
        let text = match (&local, first == rank.index) {
            (Err(e), true) => e.to_string(),
            _ => String::new(),
        };
        let message = self.guarded("error broadcast", || {
            self.engine.broadcast_host(text.as_bytes(), first)
        })?;
        match local {
            Err(e) => Err(e),
            Ok(_) => Err(TrainError::Peer {
                rank: first,
                message: String::from_utf8_lossy(&message).into_owned(),
            }),
        }
    }

    /// The mean of `grads` over the ranks.
    pub fn mean_gradients(
        &self,
        model: &Llama<B>,
        grads: GradientsParams,
    ) -> Result<GradientsParams, TrainError> {
        let world = self.rank().world;
        if world == 1 {
            return Ok(grads);
        }
        let started = std::time::Instant::now();
        let mean = self.guarded("gradient all-reduce", || {
            buckets::mean_gradients(model, grads, world, self.bucket_elems, |b| {
                self.engine.sum_device(b)
            })
        });
        self.reduce_s
            .set(self.reduce_s.get() + started.elapsed().as_secs_f64());
        mean
    }

    /// Seconds this rank spent in gradient all-reduces (waiting for slower ranks included).
    pub fn reduce_seconds(&self) -> f64 {
        self.reduce_s.get()
    }

    /// Checks that `mine` equals rank 0's on every rank; a difference is one error on every
    /// rank, described by `describe(rank0, mine)` on the rank that differs.
    pub fn check_same(
        &self,
        mine: &str,
        describe: impl FnOnce(&str, &str) -> String,
    ) -> Result<(), TrainError> {
        let rank = self.rank();
        if rank.world == 1 {
            return Ok(());
        }
        let theirs = self.guarded("start-up check", || {
            self.engine.broadcast_host(mine.as_bytes(), 0)
        })?;
        let theirs = String::from_utf8_lossy(&theirs);
        let local = match theirs == mine {
            true => Ok(()),
            false => Err(TrainError::RankMismatch {
                rank: rank.index,
                detail: describe(&theirs, mine),
            }),
        };
        self.agree(local, &[]).map(drop)
    }

    /// Rank 0's `text`, on every rank.
    pub fn broadcast(&self, text: &str) -> Result<String, TrainError> {
        if self.rank().world == 1 {
            return Ok(text.to_string());
        }
        let bytes = self.guarded("broadcast", || {
            self.engine.broadcast_host(text.as_bytes(), 0)
        })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Leaves the group.
    pub fn finish(&self) -> Result<(), TrainError> {
        self.engine.finish()
    }
}
