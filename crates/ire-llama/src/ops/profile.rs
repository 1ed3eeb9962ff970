//! Where the training step's time goes: wall time per fused op, forward and backward, summed
//! over calls. Off by default (one relaxed atomic load per op); the training benchmark turns it
//! on to print the split that docs/performance.md records.
//!
//! The timings are meaningful on eager CPU backends only: a GPU backend returns before its
//! kernels finish.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// A timed section of the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Linear layers, forward.
    LinearForward,
    /// Linear layers, backward.
    LinearBackward,
    /// RMSNorm, forward.
    NormForward,
    /// RMSNorm, backward.
    NormBackward,
    /// SwiGLU, forward.
    SwigluForward,
    /// SwiGLU, backward.
    SwigluBackward,
    /// Attention (with RoPE), forward.
    AttentionForward,
    /// Attention (with RoPE), backward.
    AttentionBackward,
    /// LM head + cross-entropy, forward (with the gradients when training).
    Loss,
    /// LM head + cross-entropy, backward (scaling the saved gradients).
    LossBackward,
}

impl Section {
    /// Every section, in report order.
    pub const ALL: [Section; 10] = [
        Section::LinearForward,
        Section::LinearBackward,
        Section::NormForward,
        Section::NormBackward,
        Section::SwigluForward,
        Section::SwigluBackward,
        Section::AttentionForward,
        Section::AttentionBackward,
        Section::Loss,
        Section::LossBackward,
    ];

    /// Short name for reports (`linear.fwd`, …).
    pub fn name(self) -> &'static str {
        match self {
            Section::LinearForward => "linear.fwd",
            Section::LinearBackward => "linear.bwd",
            Section::NormForward => "rmsnorm.fwd",
            Section::NormBackward => "rmsnorm.bwd",
            Section::SwigluForward => "swiglu.fwd",
            Section::SwigluBackward => "swiglu.bwd",
            Section::AttentionForward => "attention.fwd",
            Section::AttentionBackward => "attention.bwd",
            Section::Loss => "head+loss.fwd",
            Section::LossBackward => "head+loss.bwd",
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; 10] = [const { AtomicU64::new(0) }; 10];

/// Turns timing on or off (process-wide).
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Clears the accumulated times.
pub fn reset() {
    for n in &NANOS {
        n.store(0, Ordering::Relaxed);
    }
}

/// Seconds accumulated per section since the last [`reset`].
pub fn snapshot() -> Vec<(Section, f64)> {
    Section::ALL
        .iter()
        .map(|&s| (s, NANOS[s as usize].load(Ordering::Relaxed) as f64 * 1e-9))
        .collect()
}

/// Runs `f`, adding its wall time to `section` when timing is on.
#[inline]
pub(crate) fn timed<R>(section: Section, f: impl FnOnce() -> R) -> R {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let start = Instant::now();
    let out = f();
    NANOS[section as usize].fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    out
}
