//! The `[optim]` section of a run's TOML, with the paper's defaults (the `[schedule]` section
//! is [`crate::ScheduleConfig`], next to the schedule it builds).
//!
//! ```toml
//! [optim]
//! name = "admire"      # or "adamw"
//! kappa = 4.0          # boost of the flat coordinates: they move (1 + kappa)x
//! gamma = 0.6          # fraction treated as flat (the paper's code: rank = 1 - gamma)
//! interval = 10        # K: mask refresh period
//! ```
//!
//! Every field has a default except `name`; unknown keys are errors. [`OptimConfig::validate`]
//! rejects out-of-range values with an error naming the field.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::OptimError;

/// Which optimizer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OptimName {
    /// Plain AdamW (PyTorch semantics); the AdmIRE-only keys are refused.
    Adamw,
    /// AdamW + implicit-regularization enhancement (the paper's AdmIRE).
    Admire,
}

/// Over which set of coordinates the γ-quantile threshold is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaskScope {
    /// One threshold over all parameters of the model (the paper's code).
    Global,
    /// One threshold per parameter tensor (commented-out code in the paper's repository).
    PerTensor,
}

/// Where the diagonal-Hessian estimate `h` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    /// Sophia's Gauss-Newton-Bartlett estimator on a fresh batch with labels sampled from the
    /// model (the paper's choice): the trainer passes [`crate::gnb_gradients`] to
    /// `refresh_mask`.
    Gnb,
    /// ABLATION, not the paper: Adam's second moment `v` as `h`. Costs nothing extra; the
    /// estimate passed to `refresh_mask` is ignored.
    AdamV,
}

/// How the GNB gradient ĝ becomes `h` (only the ranking matters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HessianForm {
    /// `h = ĝ²` (`ire.py`).
    Squared,
    /// `h = |ĝ|` (`ire_new.py`; the same ranking, no underflow in low precision).
    Abs,
}

/// The keys of `[optim]` that only AdmIRE reads: AdamW ignores them, so a config that writes
/// one with `name = "adamw"` is refused (`ire_train::RunConfig::parse`), and a resolved AdamW
/// config omits them.
pub const ADMIRE_ONLY_KEYS: &[&str] = &[
    "kappa",
    "gamma",
    "interval",
    "prog_decay",
    "scope",
    "estimator",
    "hessian",
    "start",
];

/// The `[optim]` section. Defaults are the paper's Llama settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// `"admire"` or `"adamw"` (required).
    pub name: OptimName,
    /// κ ≥ 0: masked (flat) coordinates move `1 + κ` times the AdamW step. Default 4.
    #[serde(default = "default_kappa")]
    pub kappa: f64,
    /// γ ∈ (0, 1]: fraction of coordinates (smallest `h`) treated as flat. Default 0.6.
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// K ≥ 1: the mask is refreshed every K steps and kept in between. Default 10.
    #[serde(default = "default_interval")]
    pub interval: usize,
    /// Adam β₁. Default 0.9.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// Adam β₂. Default 0.95.
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// Adam ε, added to `√v̂` after bias correction (PyTorch). Default 1e-16 (the paper's code).
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Decoupled weight decay λ (θ ← θ − η·λ·θ). Default 0.1, on all parameters.
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// κ_t = κ·η_t/η_max instead of κ. Default false (the Llama scripts).
    #[serde(default)]
    pub prog_decay: bool,
    /// `"global"` (default, the paper) or `"per_tensor"` threshold.
    #[serde(default = "default_scope")]
    pub scope: MaskScope,
    /// `"gnb"` (default, the paper) or `"adam_v"` (an ablation, not the paper's method).
    #[serde(default = "default_estimator")]
    pub estimator: Estimator,
    /// `"squared"` (h = ĝ², default) or `"abs"` (h = |ĝ|).
    #[serde(default = "default_hessian")]
    pub hessian: HessianForm,
    /// First step after which the boost applies (`iteration > start`). Default: the schedule's
    /// warm-up length (passed to `Optimizer::new`).
    #[serde(default)]
    pub start: Option<usize>,
    /// No weight decay on 1-D parameters (norms) and the token embedding. Default false: the
    /// paper decays everything.
    #[serde(default)]
    pub no_decay_groups: bool,
    /// Global gradient-norm clip (`torch.nn.utils.clip_grad_norm_`); `false` turns it off.
    /// Default 1.0.
    #[serde(
        default = "default_clip_norm",
        deserialize_with = "de_clip_norm",
        serialize_with = "ser_clip_norm"
    )]
    #[schemars(schema_with = "clip_norm_schema")]
    pub clip_norm: Option<f64>,
}

fn default_kappa() -> f64 {
    4.0
}
fn default_gamma() -> f64 {
    0.6
}
fn default_interval() -> usize {
    10
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.95
}
fn default_eps() -> f64 {
    1e-16
}
fn default_weight_decay() -> f64 {
    0.1
}
fn default_scope() -> MaskScope {
    MaskScope::Global
}
fn default_estimator() -> Estimator {
    Estimator::Gnb
}
fn default_hessian() -> HessianForm {
    HessianForm::Squared
}
fn default_clip_norm() -> Option<f64> {
    Some(1.0)
}

/// `clip_norm = 1.0` or `clip_norm = false`.
fn de_clip_norm<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Clip {
        Norm(f64),
        Switch(bool),
    }
    match Clip::deserialize(d) {
        Ok(Clip::Norm(x)) => Ok(Some(x)),
        Ok(Clip::Switch(false)) => Ok(None),
        Ok(Clip::Switch(true)) => Err(serde::de::Error::custom(
            "clip_norm = true is not a norm: give a number (e.g. 1.0) or false",
        )),
        Err(_) => Err(serde::de::Error::custom(
            "clip_norm must be a number (e.g. 1.0) or false",
        )),
    }
}

/// A norm or `false`, for the config reference.
fn clip_norm_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "anyOf": [{ "type": "number" }, { "const": false }], "default": 1.0 })
}

fn ser_clip_norm<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) => s.serialize_f64(*x),
        None => s.serialize_bool(false),
    }
}

impl OptimConfig {
    /// The paper's AdmIRE defaults (κ = 4, γ = 0.6, K = 10, β = (0.9, 0.95), ε = 1e-16,
    /// λ = 0.1, global GNB mask, clip 1.0).
    pub fn admire() -> Self {
        Self {
            name: OptimName::Admire,
            kappa: default_kappa(),
            gamma: default_gamma(),
            interval: default_interval(),
            beta1: default_beta1(),
            beta2: default_beta2(),
            eps: default_eps(),
            weight_decay: default_weight_decay(),
            prog_decay: false,
            scope: default_scope(),
            estimator: default_estimator(),
            hessian: default_hessian(),
            start: None,
            no_decay_groups: false,
            clip_norm: default_clip_norm(),
        }
    }

    /// The paper's AdamW baseline (the same defaults with `name = "adamw"`).
    pub fn adamw() -> Self {
        Self {
            name: OptimName::Adamw,
            ..Self::admire()
        }
    }

    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<(), OptimError> {
        let finite = |field: &'static str, x: f64| {
            if x.is_finite() {
                Ok(())
            } else {
                Err(OptimError::optim(field, format!("{x} is not finite")))
            }
        };
        finite("kappa", self.kappa)?;
        if self.kappa < 0.0 {
            return Err(OptimError::optim("kappa", format!("{} < 0", self.kappa)));
        }
        finite("gamma", self.gamma)?;
        if !(self.gamma > 0.0 && self.gamma <= 1.0) {
            return Err(OptimError::optim(
                "gamma",
                format!("{} is not in (0, 1]", self.gamma),
            ));
        }
        if self.interval == 0 {
            return Err(OptimError::optim("interval", "must be at least 1"));
        }
        for (field, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(OptimError::optim(field, format!("{b} is not in [0, 1)")));
            }
        }
        finite("eps", self.eps)?;
        if self.eps < 0.0 {
            return Err(OptimError::optim("eps", format!("{} < 0", self.eps)));
        }
        finite("weight_decay", self.weight_decay)?;
        if self.weight_decay < 0.0 {
            return Err(OptimError::optim(
                "weight_decay",
                format!("{} < 0", self.weight_decay),
            ));
        }
        if let Some(c) = self.clip_norm {
            if !(c.is_finite() && c > 0.0) {
                return Err(OptimError::optim(
                    "clip_norm",
                    format!("{c} is not a positive number"),
                ));
            }
        }
        Ok(())
    }
}

impl Default for OptimConfig {
    /// [`OptimConfig::admire`].
    fn default() -> Self {
        Self::admire()
    }
}
