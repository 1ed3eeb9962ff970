//! Fault injection for tests: make one rank fail (an error or a panic) in one phase of one step,
//! to show that every rank stops, the process exits with that error, and nothing is lost. Set
//! by tests through [`crate::TrainOptions::fault`], or for the binary through the environment
//! variable `IRE_FAULT=RANK:STEP:PHASE[:panic]` (PHASE: `setup`, `refresh`, `micro`, `update`,
//! `report`; `nan`, which makes that rank's loss of that step NaN, as a bad batch would; or
//! `kill`, which aborts the process halfway through writing that step's checkpoint, as a
//! SIGKILL or power loss would).
//! Never set in normal use.

use crate::TrainError;

/// Where a fault fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The rank that fails.
    pub rank: usize,
    /// The iteration (0-based) in which it fails; ignored for `setup`.
    pub step: usize,
    /// The phase: `setup`, `refresh`, `micro`, `update` or `report`.
    pub phase: String,
    /// Panic instead of returning an error.
    pub panic: bool,
}

impl Fault {
    /// Parses `RANK:STEP:PHASE[:panic]`.
    pub fn parse(text: &str) -> Result<Self, TrainError> {
        let bad = || TrainError::config("IRE_FAULT", "RANK:STEP:PHASE[:panic]");
        let parts: Vec<&str> = text.split(':').collect();
        if !(3..=4).contains(&parts.len()) || parts.get(3).is_some_and(|p| *p != "panic") {
            return Err(bad());
        }
        Ok(Self {
            rank: parts[0].parse().map_err(|_| bad())?,
            step: parts[1].parse().map_err(|_| bad())?,
            phase: parts[2].to_string(),
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
}

/// Fails (or panics) when `fault` targets this rank, step and phase.
pub fn check(
    fault: Option<&Fault>,
    rank: usize,
    step: usize,
    phase: &'static str,
) -> Result<(), TrainError> {
    let Some(f) = fault else { return Ok(()) };
    if f.rank != rank || f.phase != phase || (phase != "setup" && f.step != step) {
        return Ok(());
    }
    if f.panic {
        panic!("injected panic: rank {rank}, step {step}, {phase}");
    }
    Err(TrainError::Injected { rank, step, phase })
}

/// Whether `fault` makes this rank's loss at `step` NaN (phase `nan`).
pub fn poisons(fault: Option<&Fault>, rank: usize, step: usize) -> bool {
    fault.is_some_and(|f| f.phase == "nan" && f.rank == rank && f.step == step)
}

/// Whether `fault` kills the process while the checkpoint of `step` is written (phase `kill`).
pub fn kills(fault: Option<&Fault>, rank: usize, step: usize) -> bool {
    fault.is_some_and(|f| f.phase == "kill" && f.rank == rank && f.step == step)
}
