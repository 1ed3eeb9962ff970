//! Learning-rate schedules as pure functions of the step: linear warm-up, then cosine decay to
//! `lr_min` (the paper's `get_lr`) or constant; [`ScheduleConfig`] is the `[schedule]` section
//! of a run's TOML and [`ScheduleConfig::build`] validates it into a [`Schedule`].
//!
//! ```text
//! it < warmup          : η = lr_max · it / warmup
//! warmup ≤ it < total  : η = lr_min + ½(1 + cos(π (it − warmup)/(total − warmup))) (lr_max − lr_min)
//! it ≥ total           : η = lr_min                       (cosine; constant keeps lr_max)
//! ```

use serde::{Deserialize, Serialize};

use crate::OptimError;

/// The learning-rate schedule's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Linear warm-up to `lr_max`, then cosine to `lr_min` at `total` (the paper's `get_lr`).
    Cosine,
    /// Linear warm-up to `lr_max`, then constant.
    Constant,
}

/// The `[schedule]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// `"cosine"` (default) or `"constant"`.
    #[serde(default = "default_kind")]
    pub kind: ScheduleKind,
    /// Peak learning rate η_max (> 0).
    pub lr_max: f64,
    /// Final learning rate of the cosine; default `lr_max / 20` (the paper).
    #[serde(default)]
    pub lr_min: Option<f64>,
    /// Warm-up steps: η rises linearly from 0 at step 0 to `lr_max` at step `warmup`.
    #[serde(default)]
    pub warmup: usize,
    /// Step at which the cosine reaches `lr_min` (the run length).
    pub total: usize,
}

fn default_kind() -> ScheduleKind {
    ScheduleKind::Cosine
}

/// A validated schedule ([`ScheduleConfig::build`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Shape of the schedule.
    pub kind: ScheduleKind,
    /// Peak learning rate.
    pub lr_max: f64,
    /// Final learning rate of the cosine (resolved: `lr_max / 20` by default).
    pub lr_min: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// Last step of the decay.
    pub total: usize,
}

impl Schedule {
    /// Validates `cfg`: `lr_max > 0`, `0 ≤ lr_min ≤ lr_max`, `total ≥ 1`, `warmup ≤ total`.
    pub fn new(cfg: &ScheduleConfig) -> Result<Self, OptimError> {
        if !(cfg.lr_max.is_finite() && cfg.lr_max > 0.0) {
            return Err(OptimError::schedule(
                "lr_max",
                format!("{} is not a positive number", cfg.lr_max),
            ));
        }
        let lr_min = cfg.lr_min.unwrap_or(cfg.lr_max / 20.0);
        if !(lr_min.is_finite() && lr_min >= 0.0) {
            return Err(OptimError::schedule(
                "lr_min",
                format!("{lr_min} is negative or not finite"),
            ));
        }
        if lr_min > cfg.lr_max {
            return Err(OptimError::schedule(
                "lr_min",
                format!("{lr_min} is larger than lr_max = {}", cfg.lr_max),
            ));
        }
        if cfg.total == 0 {
            return Err(OptimError::schedule("total", "must be at least 1"));
        }
        if cfg.warmup > cfg.total {
            return Err(OptimError::schedule(
                "warmup",
                format!("{} is larger than total = {}", cfg.warmup, cfg.total),
            ));
        }
        Ok(Self {
            kind: cfg.kind,
            lr_max: cfg.lr_max,
            lr_min,
            warmup: cfg.warmup,
            total: cfg.total,
        })
    }

    /// The learning rate at `step` (0-based, the paper's `it`).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr_max * step as f64 / self.warmup as f64;
        }
        match self.kind {
            ScheduleKind::Constant => self.lr_max,
            ScheduleKind::Cosine if step >= self.total => self.lr_min,
            ScheduleKind::Cosine => {
                let ratio = (step - self.warmup) as f64 / (self.total - self.warmup) as f64;
                let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
                self.lr_min + coeff * (self.lr_max - self.lr_min)
            }
        }
    }
}

impl ScheduleConfig {
    /// Checks the fields and resolves the defaults; the error names the field at fault.
    pub fn build(&self) -> Result<Schedule, OptimError> {
        Schedule::new(self)
    }

    /// The learning rate at `step`; the same function as [`Schedule::lr_at`]. Call
    /// [`ScheduleConfig::build`] once first to reject invalid values.
    pub fn lr_at(&self, step: usize) -> f64 {
        Schedule {
            kind: self.kind,
            lr_max: self.lr_max,
            lr_min: self.lr_min.unwrap_or(self.lr_max / 20.0),
            warmup: self.warmup,
            total: self.total,
        }
        .lr_at(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: ScheduleKind, warmup: usize, total: usize) -> ScheduleConfig {
        ScheduleConfig {
            kind,
            lr_max: 6e-4,
            lr_min: None,
            warmup,
            total,
        }
    }

    #[test]
    fn cosine_matches_the_papers_get_lr() {
        let s = cfg(ScheduleKind::Cosine, 500, 50_000).build().unwrap();
        let lr_min = 6e-4 / 20.0;
        assert_eq!(s.lr_min, lr_min);
        assert_eq!(s.lr_at(0), 0.0);
        assert!((s.lr_at(250) - 3e-4).abs() < 1e-18);
        assert_eq!(s.lr_at(500), 6e-4);
        // Halfway through the decay: the mean of max and min.
        let mid = 500 + (50_000 - 500) / 2;
        assert!((s.lr_at(mid) - (6e-4 + lr_min) / 2.0).abs() < 1e-12);
        assert_eq!(s.lr_at(50_000), lr_min);
        assert!(s.lr_at(49_999) > lr_min);
        assert_eq!(s.lr_at(50_001), lr_min);
        assert_eq!(s.lr_at(1_000_000), lr_min);
        // Monotone decay after warm-up.
        assert!(s.lr_at(10_000) > s.lr_at(20_000));
    }

    #[test]
    fn constant_and_no_warmup() {
        let s = cfg(ScheduleKind::Constant, 10, 100).build().unwrap();
        assert!((s.lr_at(5) - 3e-4).abs() < 1e-18);
        assert_eq!(s.lr_at(10), 6e-4);
        assert_eq!(s.lr_at(1000), 6e-4);
        let s = cfg(ScheduleKind::Cosine, 0, 100).build().unwrap();
        assert_eq!(s.lr_at(0), 6e-4);
        assert_eq!(s.lr_at(100), 6e-4 / 20.0);
        let c = cfg(ScheduleKind::Cosine, 10, 100);
        assert_eq!(c.lr_at(55), c.build().unwrap().lr_at(55));
    }

    #[test]
    fn invalid_values_name_the_field() {
        let field = |c: ScheduleConfig| match c.build() {
            Err(OptimError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(field(cfg(ScheduleKind::Cosine, 101, 100)), "warmup");
        assert_eq!(field(cfg(ScheduleKind::Cosine, 0, 0)), "total");
        let mut c = cfg(ScheduleKind::Cosine, 1, 10);
        c.lr_max = 0.0;
        assert_eq!(field(c.clone()), "lr_max");
        c.lr_max = 1e-3;
        c.lr_min = Some(2e-3);
        assert_eq!(field(c.clone()), "lr_min");
        c.lr_min = Some(-1.0);
        assert_eq!(field(c), "lr_min");
    }
}
