//! The guard between the backward pass and the optimizer: a step whose global loss or gradient
//! norm is not finite is never applied. `[guard] nonfinite = "stop"` (the default) stops the
//! run with an error naming the step, the cause and the newest good checkpoint; `"skip"` skips
//! the update, up to `guard.max_skipped` steps in the whole run. The values are global (agreed
//! over the ranks), so every rank decides the same.

use std::path::Path;

use crate::config::{GuardSection, NonFinitePolicy};
use crate::TrainError;

/// The guard's settings and the run's count of skipped steps.
#[derive(Debug)]
pub struct Guard<'a> {
    /// `[guard]`.
    pub cfg: &'a GuardSection,
    /// Steps skipped so far in the run (kept in the checkpoint's trainer state).
    pub skipped: &'a mut usize,
    /// The newest checkpoint, for the error message.
    pub last_good: Option<&'a Path>,
}

impl Guard<'_> {
    /// `Ok(true)` to apply the update of `step` (1-based), `Ok(false)` to skip it, an error to
    /// stop.
    pub fn check(&mut self, step: usize, loss: f32, grad_norm: f32) -> Result<bool, TrainError> {
        if loss.is_finite() && grad_norm.is_finite() {
            return Ok(true);
        }
        let cause = match loss.is_finite() {
            false => format!("training loss ({loss})"),
            true => format!("gradient norm ({grad_norm})"),
        };
        let cfg = self.cfg;
        if cfg.nonfinite == NonFinitePolicy::Skip && *self.skipped < cfg.max_skipped {
            *self.skipped += 1;
            tracing::warn!(
                "step {step}: {cause}; update skipped ({} of guard.max_skipped = {})",
                self.skipped,
                cfg.max_skipped
            );
            return Ok(false);
        }
        let last_good = match self.last_good {
            Some(p) => format!("The newest good checkpoint is {}.", p.display()),
            None => "No checkpoint had been written yet.".to_string(),
        };
        let cause = match cfg.nonfinite {
            NonFinitePolicy::Stop => cause,
            NonFinitePolicy::Skip => format!(
                "{cause} after {} skipped steps (guard.max_skipped)",
                self.skipped
            ),
        };
        Err(TrainError::NonFinite {
            step,
            cause,
            last_good,
        })
    }
}
