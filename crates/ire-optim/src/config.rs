//! The `[optim]` section of a run's TOML: the base optimizer, its hyper-parameters, and IRE as
//! an optional part (the `[schedule]` section is [`crate::ScheduleConfig`], next to the
//! schedule it builds).
//!
//! ```toml
//! [optim]
//! base = "adamw"       # or "sgd", "lion", "muon"
//!
//! [optim.adamw]        # the base's own table (Muon: [optim.muon] and [optim.adamw])
//! beta2 = 0.95
//!
//! [optim.ire]          # present: IRE on top of the base (AdamW + IRE is the paper's AdmIRE)
//! kappa = 4.0          # boost of the flat coordinates: they move (1 + kappa)x
//! gamma = 0.6          # fraction treated as flat (the paper's code: rank = 1 - gamma)
//! interval = 10        # K: mask refresh period
//! ```
//!
//! The older spelling — `name = "admire"` or `"adamw"` with AdamW's and IRE's keys directly in
//! `[optim]` — reads as the same config ([`crate::config_read::upgrade`]). Every key has a default;
//! unknown keys, and tables of a base the run does not use, are errors. [`OptimConfig::validate`]
//! rejects out-of-range values with an error naming the field.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::muon::{AdjustLr, MuonParams};
use crate::OptimError;

/// The base optimizer IRE enhances (or that runs alone).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum BaseName {
    /// AdamW (`torch.optim.AdamW`), hyper-parameters in `[optim.adamw]`.
    #[default]
    Adamw,
    /// SGD with momentum (`torch.optim.SGD`), hyper-parameters in `[optim.sgd]`.
    Sgd,
    /// Lion (Chen et al. 2023; `lion-pytorch`), hyper-parameters in `[optim.lion]`.
    Lion,
    /// Muon (`torch.optim.Muon`) on the decoder's 2-D matrices, AdamW on the embedding, the LM
    /// head and the norms: `[optim.muon]` and `[optim.adamw]`.
    Muon,
}

impl BaseName {
    /// The name as the config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Adamw => "adamw",
            Self::Sgd => "sgd",
            Self::Lion => "lion",
            Self::Muon => "muon",
        }
    }
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
    /// ABLATION, not the paper: Adam's second moment `v` as `h` (AdamW base only). Costs
    /// nothing extra; the estimate passed to `refresh_mask` is ignored.
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

/// The keys of IRE (`[optim.ire]`), which the older spelling writes directly in `[optim]`.
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

/// The keys of AdamW (`[optim.adamw]`), which the older spelling writes directly in `[optim]`.
pub const ADAMW_KEYS: &[&str] = &["beta1", "beta2", "eps", "weight_decay"];

/// `[optim.ire]`: the implicit-regularization enhancement on top of the base. Defaults are the
/// paper's Llama settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IreConfig {
    /// κ ≥ 0: masked (flat) coordinates move `1 + κ` times the base's step. Default 4.
    #[serde(default = "default_kappa")]
    pub kappa: f64,
    /// γ ∈ (0, 1]: fraction of coordinates (smallest `h`) treated as flat. Default 0.6.
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// K ≥ 1: the mask is refreshed every K steps and kept in between. Default 10.
    #[serde(default = "default_interval")]
    pub interval: usize,
    /// κ_t = κ·η_t/η_max instead of κ. Default false (the Llama scripts).
    #[serde(default)]
    pub prog_decay: bool,
    /// `"global"` (default, the paper) or `"per_tensor"` threshold.
    #[serde(default = "default_scope")]
    pub scope: MaskScope,
    /// `"gnb"` (default, the paper) or `"adam_v"` (an ablation, AdamW base only).
    #[serde(default = "default_estimator")]
    pub estimator: Estimator,
    /// `"squared"` (h = ĝ², default) or `"abs"` (h = |ĝ|).
    #[serde(default = "default_hessian")]
    pub hessian: HessianForm,
    /// First step after which the boost applies (`iteration > start`). Default: the schedule's
    /// warm-up length (passed to `Optimizer::new`).
    #[serde(default)]
    pub start: Option<usize>,
}

/// `[optim.adamw]`: AdamW's hyper-parameters (PyTorch semantics; defaults are the paper's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
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
}

/// `[optim.sgd]`: SGD's hyper-parameters (`torch.optim.SGD`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SgdConfig {
    /// μ, the momentum factor. Default 0.9 (torch's default is 0, plain SGD).
    #[serde(default = "default_sgd_momentum")]
    pub momentum: f64,
    /// τ, the dampening of the gradient in the momentum buffer. Default 0.
    #[serde(default)]
    pub dampening: f64,
    /// Nesterov momentum (needs momentum > 0 and dampening = 0). Default false.
    #[serde(default)]
    pub nesterov: bool,
    /// λ, L2 weight decay added to the gradient (not decoupled). Default 0.
    #[serde(default)]
    pub weight_decay: f64,
}

/// `[optim.lion]`: Lion's hyper-parameters (`lion-pytorch`'s defaults). Chen et al. suggest an
/// lr 3–10× smaller than AdamW's and a λ 3–10× larger.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LionConfig {
    /// β₁, the interpolation whose sign is the update. Default 0.9.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// β₂, the momentum's decay. Default 0.99.
    #[serde(default = "default_lion_beta2")]
    pub beta2: f64,
    /// λ, decoupled weight decay (θ ← θ − η·λ·θ). Default 0.
    #[serde(default)]
    pub weight_decay: f64,
}

/// How Muon scales the lr for a matrix's shape (`adjust_lr_fn` of `torch.optim.Muon`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MuonAdjustLr {
    /// η·√max(1, A/B): torch's default; Muon's lr is then ~10–50× AdamW's.
    Original,
    /// 0.2·η·√max(A, B): the update's RMS matches AdamW's, so one schedule serves the Muon
    /// matrices and the AdamW parameters (ire's default).
    MatchRmsAdamw,
}

/// `[optim.muon]`: Muon's hyper-parameters for the decoder's 2-D matrices (`torch.optim.Muon`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MuonConfig {
    /// μ, the momentum. Default 0.95.
    #[serde(default = "default_muon_momentum")]
    pub momentum: f64,
    /// Nesterov momentum. Default true.
    #[serde(default = "default_true")]
    pub nesterov: bool,
    /// λ, decoupled weight decay of the matrices (θ ← θ − η·λ·θ). Default 0.1.
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Newton–Schulz steps. Default 5.
    #[serde(default = "default_ns_steps")]
    pub ns_steps: usize,
    /// (a, b, c) of the Newton–Schulz polynomial. Default [3.4445, -4.775, 2.0315].
    #[serde(default = "default_ns_coefficients")]
    pub ns_coefficients: [f64; 3],
    /// ε of the normalisation before Newton–Schulz. Default 1e-7.
    #[serde(default = "default_muon_eps")]
    pub eps: f64,
    /// `"match_rms_adamw"` (default: one lr for both parts) or `"original"` (torch's default).
    #[serde(default = "default_adjust_lr")]
    pub adjust_lr: MuonAdjustLr,
}

/// The `[optim]` section: the base, its tables, and IRE when enabled. Written in this
/// spelling; the older one is rewritten into it first ([`crate::config_read::upgrade`]), and
/// [`OptimConfig::fill_tables`] gives the base's tables their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// `"adamw"` (default), `"sgd"`, `"lion"` or `"muon"`. The older `name = "admire"` /
    /// `"adamw"` reads as `base = "adamw"` with or without `[optim.ire]`.
    #[serde(default)]
    pub base: BaseName,
    /// No weight decay on 1-D parameters (norms) and the token embedding, for every base.
    /// Default false: the paper decays everything.
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
    /// AdamW's table: set for `base = "adamw"` and `"muon"` (its non-matrix part).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adamw: Option<AdamWConfig>,
    /// SGD's table, for `base = "sgd"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sgd: Option<SgdConfig>,
    /// Lion's table, for `base = "lion"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lion: Option<LionConfig>,
    /// Muon's table, for `base = "muon"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub muon: Option<MuonConfig>,
    /// IRE on top of the base; absent: the base alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ire: Option<IreConfig>,
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
fn default_sgd_momentum() -> f64 {
    0.9
}
fn default_lion_beta2() -> f64 {
    0.99
}
fn default_muon_momentum() -> f64 {
    0.95
}
fn default_true() -> bool {
    true
}
fn default_ns_steps() -> usize {
    5
}
fn default_ns_coefficients() -> [f64; 3] {
    [3.4445, -4.775, 2.0315]
}
fn default_muon_eps() -> f64 {
    1e-7
}
fn default_adjust_lr() -> MuonAdjustLr {
    MuonAdjustLr::MatchRmsAdamw
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

impl Default for IreConfig {
    /// The paper's settings: κ = 4, γ = 0.6, K = 10, global GNB mask, from the warm-up's end.
    fn default() -> Self {
        Self {
            kappa: default_kappa(),
            gamma: default_gamma(),
            interval: default_interval(),
            prog_decay: false,
            scope: default_scope(),
            estimator: default_estimator(),
            hessian: default_hessian(),
            start: None,
        }
    }
}

impl Default for AdamWConfig {
    /// β = (0.9, 0.95), ε = 1e-16, λ = 0.1 (the paper's Llama settings).
    fn default() -> Self {
        Self {
            beta1: default_beta1(),
            beta2: default_beta2(),
            eps: default_eps(),
            weight_decay: default_weight_decay(),
        }
    }
}

impl Default for SgdConfig {
    /// μ = 0.9, no dampening, no Nesterov, no decay.
    fn default() -> Self {
        Self {
            momentum: default_sgd_momentum(),
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

impl Default for LionConfig {
    /// β = (0.9, 0.99), no decay (`lion-pytorch`).
    fn default() -> Self {
        Self {
            beta1: default_beta1(),
            beta2: default_lion_beta2(),
            weight_decay: 0.0,
        }
    }
}

impl Default for MuonConfig {
    /// torch's defaults, except the lr adjustment (`match_rms_adamw`).
    fn default() -> Self {
        Self {
            momentum: default_muon_momentum(),
            nesterov: true,
            weight_decay: default_weight_decay(),
            ns_steps: default_ns_steps(),
            ns_coefficients: default_ns_coefficients(),
            eps: default_muon_eps(),
            adjust_lr: default_adjust_lr(),
        }
    }
}

impl MuonConfig {
    /// The step's parameters ([`crate::muon::muon_step`]).
    pub fn params(&self) -> MuonParams {
        MuonParams {
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            ns_coefficients: self.ns_coefficients,
            eps: self.eps,
            ns_steps: self.ns_steps,
            adjust_lr: match self.adjust_lr {
                MuonAdjustLr::Original => AdjustLr::Original,
                MuonAdjustLr::MatchRmsAdamw => AdjustLr::MatchRmsAdamw,
            },
        }
    }
}

impl OptimConfig {
    /// `base` alone, with its tables at their defaults and no IRE.
    pub fn base(base: BaseName) -> Self {
        let mut cfg = Self {
            base,
            no_decay_groups: false,
            clip_norm: default_clip_norm(),
            adamw: None,
            sgd: None,
            lion: None,
            muon: None,
            ire: None,
        };
        cfg.fill_tables();
        cfg
    }

    /// The paper's AdmIRE: AdamW (β = (0.9, 0.95), ε = 1e-16, λ = 0.1) + IRE (κ = 4, γ = 0.6,
    /// K = 10, global GNB mask), clip 1.0.
    pub fn admire() -> Self {
        Self {
            ire: Some(IreConfig::default()),
            ..Self::adamw()
        }
    }

    /// The paper's AdamW baseline (the same defaults without IRE).
    pub fn adamw() -> Self {
        Self::base(BaseName::Adamw)
    }

    /// This config with IRE at its defaults on top (or the given IRE).
    pub fn with_ire(self, ire: IreConfig) -> Self {
        Self {
            ire: Some(ire),
            ..self
        }
    }

    /// Gives the tables the base uses their defaults where they are absent (a resolved config
    /// shows them).
    pub fn fill_tables(&mut self) {
        let uses_adamw = matches!(self.base, BaseName::Adamw | BaseName::Muon);
        if uses_adamw && self.adamw.is_none() {
            self.adamw = Some(AdamWConfig::default());
        }
        match self.base {
            BaseName::Sgd => self.sgd = Some(self.sgd.unwrap_or_default()),
            BaseName::Lion => self.lion = Some(self.lion.unwrap_or_default()),
            BaseName::Muon => self.muon = Some(self.muon.unwrap_or_default()),
            BaseName::Adamw => {}
        }
    }

    /// A short label: `adamw`, `admire` (AdamW + IRE, the paper's name), `sgd`, `sgd+ire`, …
    pub fn label(&self) -> String {
        match (self.base, &self.ire) {
            (BaseName::Adamw, Some(_)) => "admire".into(),
            (base, Some(_)) => format!("{}+ire", base.as_str()),
            (base, None) => base.as_str().into(),
        }
    }

    /// AdamW's hyper-parameters (its defaults when the base does not use AdamW).
    pub fn adamw_params(&self) -> AdamWConfig {
        self.adamw.unwrap_or_default()
    }

    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<(), OptimError> {
        check_tables(self)?;
        if let Some(c) = self.clip_norm {
            if !(c.is_finite() && c > 0.0) {
                let message = format!("{c} is not a positive number");
                return Err(OptimError::optim("clip_norm", message));
            }
        }
        if let Some(a) = &self.adamw {
            validate_adamw(a)?;
        }
        if let Some(s) = &self.sgd {
            validate_sgd(s)?;
        }
        if let Some(l) = &self.lion {
            beta("lion.beta1", l.beta1)?;
            beta("lion.beta2", l.beta2)?;
            non_negative("lion.weight_decay", l.weight_decay)?;
        }
        if let Some(m) = &self.muon {
            validate_muon(m)?;
        }
        if let Some(ire) = &self.ire {
            validate_ire(ire, self.base)?;
        }
        Ok(())
    }
}

/// Refuses a table of a base the run does not use (`[optim.sgd]` with `base = "adamw"`): its
/// values would be ignored.
fn check_tables(cfg: &OptimConfig) -> Result<(), OptimError> {
    let uses = |table: &str| match table {
        "adamw" => matches!(cfg.base, BaseName::Adamw | BaseName::Muon),
        other => other == cfg.base.as_str(),
    };
    let written = [
        ("adamw", cfg.adamw.is_some()),
        ("sgd", cfg.sgd.is_some()),
        ("lion", cfg.lion.is_some()),
        ("muon", cfg.muon.is_some()),
    ];
    for (table, set) in written {
        if set && !uses(table) {
            let message = format!(
                "[optim.{table}] is for another base, and this run's base is \"{}\": remove the \
                 table, or set base = \"{table}\"",
                cfg.base.as_str()
            );
            return Err(OptimError::optim(table, message));
        }
    }
    Ok(())
}

fn non_negative(field: &'static str, x: f64) -> Result<(), OptimError> {
    if !x.is_finite() {
        return Err(OptimError::optim(field, format!("{x} is not finite")));
    }
    if x < 0.0 {
        return Err(OptimError::optim(field, format!("{x} < 0")));
    }
    Ok(())
}

fn beta(field: &'static str, b: f64) -> Result<(), OptimError> {
    if (0.0..1.0).contains(&b) {
        Ok(())
    } else {
        Err(OptimError::optim(field, format!("{b} is not in [0, 1)")))
    }
}

fn validate_adamw(a: &AdamWConfig) -> Result<(), OptimError> {
    beta("adamw.beta1", a.beta1)?;
    beta("adamw.beta2", a.beta2)?;
    non_negative("adamw.eps", a.eps)?;
    non_negative("adamw.weight_decay", a.weight_decay)
}

fn validate_sgd(s: &SgdConfig) -> Result<(), OptimError> {
    non_negative("sgd.momentum", s.momentum)?;
    non_negative("sgd.dampening", s.dampening)?;
    non_negative("sgd.weight_decay", s.weight_decay)?;
    if s.nesterov && (s.momentum <= 0.0 || s.dampening != 0.0) {
        let message = "Nesterov momentum needs momentum > 0 and dampening = 0 (as torch requires)";
        return Err(OptimError::optim("sgd.nesterov", message));
    }
    Ok(())
}

fn validate_muon(m: &MuonConfig) -> Result<(), OptimError> {
    beta("muon.momentum", m.momentum)?;
    non_negative("muon.weight_decay", m.weight_decay)?;
    non_negative("muon.eps", m.eps)?;
    if m.ns_steps == 0 {
        return Err(OptimError::optim("muon.ns_steps", "must be at least 1"));
    }
    if m.ns_coefficients.iter().any(|c| !c.is_finite()) {
        let message = format!("{:?} has a value that is not finite", m.ns_coefficients);
        return Err(OptimError::optim("muon.ns_coefficients", message));
    }
    Ok(())
}

fn validate_ire(ire: &IreConfig, base: BaseName) -> Result<(), OptimError> {
    non_negative("ire.kappa", ire.kappa)?;
    if !(ire.gamma > 0.0 && ire.gamma <= 1.0) {
        let message = format!("{} is not in (0, 1]", ire.gamma);
        return Err(OptimError::optim("ire.gamma", message));
    }
    if ire.interval == 0 {
        return Err(OptimError::optim("ire.interval", "must be at least 1"));
    }
    if ire.estimator == Estimator::AdamV && base != BaseName::Adamw {
        let message = format!(
            "\"adam_v\" ranks by AdamW's second moment, which base = \"{}\" does not keep: \
             use \"gnb\"",
            base.as_str()
        );
        return Err(OptimError::optim("ire.estimator", message));
    }
    Ok(())
}
