//! The phases of a training step, by one set of names: what an error or panic says it
//! happened in, and what `IRE_FAULT` targets ([`crate::fault`]).
//!
//! ```text
//! setup     the rank's optimizer state, prefetcher and metrics file (once)
//! refresh   AdmIRE only, when due: the GNB estimate on fresh batches and the new mask
//! micro     forward/backward over the micro-batches
//! update    clip, guard, optimizer step
//! report    rank 0: metrics line, evaluation, checkpoint when due
//! ```

use std::fmt;

/// A phase of the training step; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Building the rank's state (once, before the first step).
    Setup,
    /// AdmIRE's mask refresh.
    Refresh,
    /// Forward and backward over the micro-batches.
    Micro,
    /// Clip, guard, optimizer step.
    Update,
    /// Metrics, evaluation and checkpoint (rank 0).
    Report,
}

impl Phase {
    /// Every phase, in the order a step runs them.
    pub const ALL: [Phase; 5] = [
        Phase::Setup,
        Phase::Refresh,
        Phase::Micro,
        Phase::Update,
        Phase::Report,
    ];

    /// The phase's name in `IRE_FAULT`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Refresh => "refresh",
            Phase::Micro => "micro",
            Phase::Update => "update",
            Phase::Report => "report",
        }
    }

    /// The phase named `name` (as [`Phase::name`] spells it).
    pub fn parse(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// What messages say: the name, except `micro-batches` for [`Phase::Micro`].
impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Micro => f.write_str("micro-batches"),
            other => f.write_str(other.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.name()), Some(p));
        }
        assert_eq!(Phase::parse("micro-batches"), None);
    }
}
