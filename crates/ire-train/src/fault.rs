//! The wrapper every phase of a step runs in ([`run_phase`]): it fires an injected fault when
//! one targets the phase, and turns a panic into an error, so that a failing rank still
//! reaches the next agreement point ([`crate::dist::Group::agree`]) and every rank stops together.
//!
//! Faults are for tests: make one rank fail (an error or a panic) in one phase of one step, to
//! show that every rank stops, the process exits with that error, and nothing is lost. Tests
//! set them through [`crate::TrainOptions::fault`]; the binary reads the environment variable
//! `IRE_FAULT=RANK:STEP:PHASE[:panic]`, where STEP is the 1-based step (as in logs and
//! checkpoint names) and PHASE a [`Phase`] name (`setup`, `refresh`, `micro`, `update`,
//! `report`), or `nan`, which makes that rank's loss of that step NaN, as a bad batch would, or
//! `kill`, which aborts the process as a SIGKILL or power loss would: rank 0 halfway through
//! writing that step's checkpoint, another rank (a process of a multi-process job) at that
//! step's report — or `hang`, which makes that rank sleep forever at that step's report, alive,
//! as a stuck rank would. Never set in normal use.

use std::panic::AssertUnwindSafe;

use crate::phase::Phase;
use crate::TrainError;

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Fail (or panic) at the start of a phase.
    Fail(Phase),
    /// Make the step's loss NaN.
    Nan,
    /// Abort the process: rank 0 while the step's checkpoint is written, another rank at the
    /// step's report.
    Kill,
    /// Stop making progress (sleep forever) at the step's report, alive: what the collective
    /// watchdog is for.
    Hang,
}

/// Where a fault fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The rank that fails.
    pub rank: usize,
    /// The step (1-based) in which it fails; ignored for `setup`.
    pub step: usize,
    /// What it does.
    pub kind: FaultKind,
    /// Panic instead of returning an error.
    pub panic: bool,
}

impl Fault {
    /// Parses `RANK:STEP:PHASE[:panic]`.
    pub fn parse(text: &str) -> Result<Self, TrainError> {
        let bad = || {
            TrainError::config(
                "IRE_FAULT",
                "RANK:STEP:PHASE[:panic], PHASE one of setup, refresh, micro, update, report, nan, kill, hang",
            )
        };
        let parts: Vec<&str> = text.split(':').collect();
        if !(3..=4).contains(&parts.len()) || parts.get(3).is_some_and(|p| *p != "panic") {
            return Err(bad());
        }
        let kind = match parts[2] {
            "nan" => FaultKind::Nan,
            "kill" => FaultKind::Kill,
            "hang" => FaultKind::Hang,
            name => FaultKind::Fail(Phase::parse(name).ok_or_else(bad)?),
        };
        Ok(Self {
            rank: parts[0].parse().map_err(|_| bad())?,
            step: parts[1].parse().map_err(|_| bad())?,
            kind,
            panic: parts.len() == 4,
        })
    }

    /// The fault from `IRE_FAULT`, if set.
    pub fn from_env() -> Result<Option<Self>, TrainError> {
        std::env::var("IRE_FAULT")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| Self::parse(&v))
            .transpose()
    }

    fn targets(&self, rank: usize, step: usize) -> bool {
        self.rank == rank && self.step == step
    }
}

/// Runs phase `phase` of `step` on `rank`: fires `fault` first if it targets them, and turns a
/// panic inside `f` into [`TrainError::Panic`].
pub fn run_phase<T>(
    fault: Option<&Fault>,
    rank: usize,
    step: usize,
    phase: Phase,
    f: impl FnOnce() -> Result<T, TrainError>,
) -> Result<T, TrainError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        fire(fault, rank, step, phase)?;
        f()
    }))
    .unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(no message)".into());
        Err(TrainError::Panic {
            rank,
            phase,
            message,
        })
    })
}

/// Fails (or panics) when `fault` targets this rank, step and phase.
fn fire(fault: Option<&Fault>, rank: usize, step: usize, phase: Phase) -> Result<(), TrainError> {
    let Some(f) = fault else { return Ok(()) };
    let step_matches = phase == Phase::Setup || f.step == step;
    if f.kind != FaultKind::Fail(phase) || f.rank != rank || !step_matches {
        return Ok(());
    }
    if f.panic {
        panic!("injected panic: rank {rank}, step {step}, {phase}");
    }
    Err(TrainError::Injected { rank, step, phase })
}

/// Whether `fault` makes this rank's loss at `step` NaN (`nan`).
pub fn poisons(fault: Option<&Fault>, rank: usize, step: usize) -> bool {
    fault.is_some_and(|f| f.kind == FaultKind::Nan && f.targets(rank, step))
}

/// The report-phase faults: `hang` on any rank, `kill` on a rank that does not write
/// checkpoints (rank 0's `kill` fires inside the checkpoint write).
pub fn hang_or_die(fault: Option<&Fault>, rank: crate::dist::engine::Rank, step: usize) {
    if hangs(fault, rank.index, step) {
        eprintln!("injected fault: rank {} hangs at step {step}", rank.index);
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    if !rank.is_main() && kills(fault, rank.index, step) {
        eprintln!("injected fault: rank {} killed at step {step}", rank.index);
        std::process::abort();
    }
}

/// Whether `fault` makes this rank hang at `step` (`hang`).
pub fn hangs(fault: Option<&Fault>, rank: usize, step: usize) -> bool {
    fault.is_some_and(|f| f.kind == FaultKind::Hang && f.targets(rank, step))
}

/// Whether `fault` kills the process at `step` (`kill`): rank 0 while the checkpoint of `step`
/// is written, another rank at the step's report.
pub fn kills(fault: Option<&Fault>, rank: usize, step: usize) -> bool {
    fault.is_some_and(|f| f.kind == FaultKind::Kill && f.targets(rank, step))
}
