//! The optimizer over a whole model: a base (AdamW, SGD, Lion or Muon; [`crate::base`]) and,
//! optionally, the Implicit-Regularization Enhancement on top (Wang et al., "Improving
//! Generalization and Convergence by Enhancing Implicit Regularization", NeurIPS 2024,
//! arXiv 2405.20763, Algorithm 1) — AdamW + IRE is the paper's AdmIRE.
//!
//! Algorithm 1 over any base optimizer, as the paper's code runs it with AdamW:
//!
//! ```text
//! for t = 0, 1, …, T:
//!     if t > T_s and (t − T_s − 1) mod K == 0:            needs_refresh(t)   (paper: t % K == 1)
//!         ĝ = GNB gradient on a fresh batch                gnb_gradients
//!         h = ĝ ⊙ ĝ                                        refresh_mask
//!         τ = k-th smallest of h over all p parameters, k = ⌊γ p⌋
//!         n = 1[h ≤ τ]                                     (kept for the next K steps)
//!     g = clip(∇L(θ_t))                                    clip_global_norm
//!     Δ = the base's displacement from g (its state, its weight decay)
//!     θ_{t+1} = θ_t + (1 + κ_t n) ⊙ Δ     if t > T_s      step
//!     θ_{t+1} = θ_t + Δ                   otherwise
//! ```
//!
//! with κ_t = κ, or κ·η_t/η_max under `prog_decay`, and T_s the start step (the end of the
//! warm-up by default). The base's state sees only the raw (clipped) gradient; the boost
//! multiplies the whole displacement, weight decay included, so flat coordinates move `1 + κ`
//! times as far and sharp ones exactly as the base moves them. Without `[optim.ire]`, or with
//! κ = 0, the arithmetic is the base's, bit for bit. Defaults: κ = 4, γ = 0.6, K = 10.
//!
//! The mask is global: one threshold over every parameter of the model, which is why
//! `refresh_mask` is its own function and not part of a per-tensor step.

use std::collections::{BTreeMap, HashMap};

use burn::module::{AutodiffModule, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::BoolTensor;
use burn::tensor::TensorPrimitive;
use ire_llama::params::named_params;

use crate::adamw::AdamWParams;
use crate::base::{base_step, Buffers, Rule};
use crate::config::{Estimator, HessianForm, IreConfig, MaskScope, OptimConfig};
use crate::fused::{FusedUpdate, Step};
use crate::grads::for_each_grad;
use crate::mask_report::{mask_report, MaskReport};
use crate::select::HForm;
use crate::OptimError;

/// The base's state of one parameter, kept flat on the inner backend and keyed by the
/// parameter's dotted name (Burn's `ParamId`s change when a model is reloaded, names do not).
#[derive(Debug, Clone)]
pub struct ParamState<B: Backend> {
    /// Which base updates the parameter.
    pub rule: Rule,
    /// The rule's buffers by torch's name ([`Rule::buffers`]): AdamW's `exp_avg` (m) and
    /// `exp_avg_sq` (v), SGD's and Muon's `momentum_buffer`, Lion's `exp_avg`; flattened.
    pub buffers: Buffers<B>,
    /// How many steps this parameter has taken (AdamW's bias-correction exponent).
    pub step: u64,
    /// The parameter's shape.
    pub shape: Vec<usize>,
}

impl<B: Backend> ParamState<B> {
    /// The buffer `name` (`exp_avg`, `exp_avg_sq`, `momentum_buffer`), if the rule keeps it.
    pub fn buffer(&self, name: &str) -> Option<&Tensor<B, 1>> {
        self.buffers.get(name)
    }
}

/// What a mask refresh found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskStats {
    /// τ: the k-th smallest `h` (global scope), or the largest per-tensor τ (per-tensor scope).
    /// NaN when there was nothing to rank.
    pub threshold: f32,
    /// Fraction of the ranked coordinates in the mask: ⌊γp⌋/p without ties at τ, more with
    /// them (ties are included).
    pub fraction: f64,
}

/// A base optimizer, with IRE on top or not, over a whole model; see the module docs.
#[derive(Debug)]
pub struct Optimizer<B: AutodiffBackend> {
    pub(crate) cfg: OptimConfig,
    pub(crate) start: usize,
    pub(crate) params: BTreeMap<String, ParamState<B::InnerBackend>>,
    pub(crate) masks: BTreeMap<String, Tensor<B::InnerBackend, 1, Bool>>,
    pub(crate) stats: Option<MaskStats>,
    /// The diagnostics of the last refresh, until taken by [`Optimizer::take_mask_report`].
    pub(crate) report: Option<MaskReport>,
    pub(crate) refreshes: u64,
    /// Whether a refresh computes its [`MaskReport`].
    pub(crate) report_masks: bool,
    /// κ_t of the last step, 0 when it did not boost.
    pub(crate) applied_kappa: f64,
}

impl<B: AutodiffBackend> Optimizer<B> {
    /// Validates `cfg` and builds an optimizer with empty state. `start_step` is T_s when
    /// `cfg.start` is not set: pass the schedule's warm-up length.
    pub fn new(cfg: &OptimConfig, start_step: usize) -> Result<Self, OptimError> {
        cfg.validate()?;
        let mut cfg = cfg.clone();
        cfg.fill_tables();
        Ok(Self {
            start: cfg.ire.as_ref().and_then(|i| i.start).unwrap_or(start_step),
            cfg,
            params: BTreeMap::new(),
            masks: BTreeMap::new(),
            stats: None,
            report: None,
            refreshes: 0,
            report_masks: true,
            applied_kappa: 0.0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OptimConfig {
        &self.cfg
    }

    /// T_s: the boost applies for `iteration > start`.
    pub fn start(&self) -> usize {
        self.start
    }

    /// IRE's settings, when IRE is on.
    pub fn ire(&self) -> Option<&IreConfig> {
        self.cfg.ire.as_ref()
    }

    /// κ_t: κ, or κ·η_t/η_max with `prog_decay` (0 without IRE or when `lr_max ≤ 0`).
    pub fn kappa_t(&self, lr: f64, lr_max: f64) -> f64 {
        match self.ire() {
            None => 0.0,
            Some(ire) if !ire.prog_decay => ire.kappa,
            Some(ire) if lr_max > 0.0 => ire.kappa * lr / lr_max,
            Some(_) => 0.0,
        }
    }

    /// Whether the mask must be refreshed before the step of `iteration`: with IRE only, when
    /// `iteration > start` and `(iteration − start − 1) mod K == 0` (the paper's
    /// `it > warmup and it % 10 == 1` for start = warmup, K = 10).
    pub fn needs_refresh(&self, iteration: usize) -> bool {
        self.ire().is_some_and(|ire| {
            iteration > self.start && (iteration - self.start - 1).is_multiple_of(ire.interval)
        })
    }

    /// One line saying which base updates which parameters of `module` and how many values
    /// each rule takes, e.g. `muon: 14 tensors, 3.1M values (down_proj, gate_proj, …); adamw: 7
    /// tensors, 1.2M values (embed_tokens, lm_head, norm)`.
    pub fn describe_rules<M: AutodiffModule<B>>(&self, module: &M) -> String {
        let mut by_rule: BTreeMap<&str, (usize, usize, std::collections::BTreeSet<String>)> =
            BTreeMap::new();
        for p in named_params::<B, M>(module) {
            let rule = Rule::of(self.cfg.base, &p.name, &p.shape);
            let entry = by_rule.entry(rule.as_str()).or_default();
            entry.0 += 1;
            entry.1 += p.shape.iter().product::<usize>();
            entry.2.insert(crate::group_of(&p.name).to_string());
        }
        let parts = by_rule
            .iter()
            .rev()
            .map(|(rule, (tensors, values, groups))| {
                let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
                let millions = *values as f64 / 1e6;
                format!(
                    "{rule}: {tensors} tensors, {millions:.2}M values ({})",
                    groups.join(", ")
                )
            });
        parts.collect::<Vec<_>>().join("; ")
    }

    /// Whether [`Optimizer::refresh_mask`] computes the per-group diagnostics
    /// ([`Optimizer::take_mask_report`]); on by default. Ranks that do not report turn it off.
    pub fn set_mask_report(&mut self, on: bool) {
        self.report_masks = on;
    }

    /// Which base updates each parameter of `module` (`name → rule`): every parameter takes
    /// the base, except under Muon, where the embedding, the LM head and 1-D parameters take
    /// AdamW ([`Rule::of`]).
    pub fn rules<M: AutodiffModule<B>>(&self, module: &M) -> Vec<(String, Rule)> {
        named_params::<B, M>(module)
            .into_iter()
            .map(|p| {
                let rule = Rule::of(self.cfg.base, &p.name, &p.shape);
                (p.name, rule)
            })
            .collect()
    }

    /// Fraction of coordinates in the current mask, if there is one.
    pub fn mask_fraction(&self) -> Option<f64> {
        self.stats.map(|s| s.fraction)
    }

    /// Threshold and fraction of the last refresh, if any.
    pub fn mask_stats(&self) -> Option<MaskStats> {
        self.stats
    }

    /// The per-group diagnostics of the last mask refresh ([`MaskReport`]), once: `None` until
    /// the next refresh after it was taken.
    pub fn take_mask_report(&mut self) -> Option<MaskReport> {
        self.report.take()
    }

    /// The κ_t the last [`Optimizer::step`] multiplied the flat coordinates' displacement by
    /// (`1 + κ_t`), or 0 when it did not boost (AdamW, `iteration ≤ start`, no mask yet).
    pub fn applied_kappa(&self) -> f64 {
        self.applied_kappa
    }

    /// How many times the mask has been refreshed.
    pub fn refreshes(&self) -> u64 {
        self.refreshes
    }

    /// The base's state of the parameter `name`, if it has taken a step.
    pub fn param_state(&self, name: &str) -> Option<&ParamState<B::InnerBackend>> {
        self.params.get(name)
    }

    /// The current mask of the parameter `name` (flat), if any.
    pub fn mask(&self, name: &str) -> Option<&Tensor<B::InnerBackend, 1, Bool>> {
        self.masks.get(name)
    }

    /// One optimizer step of `module` with learning rate `lr` (η_t; `lr_max` is η_max for
    /// `prog_decay`). The boost applies iff IRE is on, `iteration > start`, κ_t ≠ 0 and a mask
    /// exists; otherwise the arithmetic is exactly the base's. Parameters without a gradient
    /// are left alone, as in PyTorch.
    pub fn step<M: AutodiffModule<B>>(
        &mut self,
        iteration: usize,
        lr: f64,
        lr_max: f64,
        module: M,
        grads: GradientsParams,
    ) -> M
    where
        B::InnerBackend: FusedUpdate,
    {
        let kappa = self.kappa_t(lr, lr_max);
        let boosting = self.ire().is_some()
            && iteration > self.start
            && kappa != 0.0
            && !self.masks.is_empty();
        self.applied_kappa = if boosting { kappa } else { 0.0 };
        let mut mapper = StepMapper::<B> {
            names: named_params::<B, M>(&module)
                .into_iter()
                .map(|p| (p.id, p.name))
                .collect(),
            grads,
            params: &mut self.params,
            masks: boosting.then_some(&self.masks),
            kappa,
            lr,
            cfg: &self.cfg,
        };
        module.map(&mut mapper)
    }

    /// Recomputes the mask from a diagonal-Hessian estimate: `h = ĝ²` (or `|ĝ|`) from the GNB
    /// gradient `estimate` ([`crate::gnb_gradients`], averaged over micro-batches and replicas),
    /// or Adam's `v` for the `adam_v` ablation (then `estimate` is ignored). τ is the exact
    /// ⌊γp⌋-th smallest `h` over all parameters (or per tensor), and `n = 1[h ≤ τ]`.
    ///
    /// Parameters without an estimate (no gradient, or no Adam state yet for `adam_v`) get no
    /// mask and are not counted in p.
    pub fn refresh_mask<M: AutodiffModule<B>>(
        &mut self,
        module: &M,
        estimate: &GradientsParams,
    ) -> MaskStats
    where
        B::InnerBackend: FusedUpdate,
    {
        let names: HashMap<ParamId, String> = named_params::<B, M>(module)
            .into_iter()
            .map(|p| (p.id, p.name))
            .collect();
        // The flat values h is formed from (ĝ, or Adam's v), by parameter name.
        let mut h: Vec<(String, Tensor<B::InnerBackend, 1>)> = Vec::new();
        let ire = self.cfg.ire.clone().unwrap_or_default();
        let form = match (ire.estimator, ire.hessian) {
            (Estimator::AdamV, _) => HForm::Identity,
            (Estimator::Gnb, HessianForm::Squared) => HForm::Square,
            (Estimator::Gnb, HessianForm::Abs) => HForm::Abs,
        };
        match ire.estimator {
            Estimator::Gnb => {
                for_each_grad::<B, M, _>(module, estimate, |id, g| {
                    let name = names
                        .get(&id)
                        .expect("named_params lists every parameter the visitor visits");
                    h.push((name.clone(), g));
                });
            }
            Estimator::AdamV => {
                for info in named_params::<B, M>(module) {
                    let v = self
                        .params
                        .get(&info.name)
                        .and_then(|s| s.buffer("exp_avg_sq"));
                    if let Some(v) = v {
                        h.push((info.name, v.clone()));
                    }
                }
            }
        }
        let (masks, stats) = build_masks(h, form, ire.gamma, ire.scope);
        if self.report_masks {
            self.report = Some(mask_report(stats.threshold as f64, &masks, &self.masks));
        }
        self.masks = masks;
        self.stats = Some(stats);
        self.refreshes += 1;
        stats
    }
}

/// ⌊γ n⌋ for n coordinates.
fn k_of(gamma: f64, n: usize) -> u64 {
    (gamma * n as f64).floor() as u64
}

type Masks<B> = BTreeMap<String, Tensor<B, 1, Bool>>;

/// Threshold and masks from the flat values `x` (in the module's parameter order), with
/// `h = form(x)` formed by the backend's fused refresh.
fn build_masks<B: FusedUpdate>(
    x: Vec<(String, Tensor<B, 1>)>,
    form: HForm,
    gamma: f64,
    scope: MaskScope,
) -> (Masks<B>, MaskStats) {
    let p: usize = x.iter().map(|(_, t)| t.dims()[0]).sum();
    let mut masks = BTreeMap::new();
    if p == 0 {
        let stats = MaskStats {
            threshold: f32::NAN,
            fraction: 0.0,
        };
        return (masks, stats);
    }
    let bool_tensor = |m| Tensor::<B, 1, Bool>::from_primitive(m);
    let (threshold, count) = match scope {
        MaskScope::Global => {
            let (names, parts): (Vec<String>, Vec<_>) = x
                .into_iter()
                .map(|(n, t)| (n, t.into_primitive().tensor()))
                .unzip();
            let (sel, parts) = B::flat_masks(parts, form, k_of(gamma, p));
            for (name, mask) in names.into_iter().zip(parts) {
                masks.insert(name, bool_tensor(mask));
            }
            (sel.threshold, sel.count_le)
        }
        MaskScope::PerTensor => {
            let mut largest = f64::NEG_INFINITY;
            let mut count = 0;
            for (name, t) in x {
                let k = k_of(gamma, t.dims()[0]);
                let (sel, mut mask) = B::flat_masks(vec![t.into_primitive().tensor()], form, k);
                largest = largest.max(sel.threshold);
                count += sel.count_le;
                masks.insert(name, bool_tensor(mask.remove(0)));
            }
            (largest, count)
        }
    };
    let stats = MaskStats {
        threshold: threshold as f32,
        fraction: count as f64 / p as f64,
    };
    (masks, stats)
}

/// Whether `name` is in the no-decay group: 1-D parameters (norms, biases) and the embedding.
fn no_decay(name: &str, rank: usize) -> bool {
    rank == 1 || name.contains("embed_tokens")
}

struct StepMapper<'a, B: AutodiffBackend> {
    names: HashMap<ParamId, String>,
    grads: GradientsParams,
    params: &'a mut BTreeMap<String, ParamState<B::InnerBackend>>,
    masks: Option<&'a Masks<B::InnerBackend>>,
    kappa: f64,
    lr: f64,
    cfg: &'a OptimConfig,
}

impl<B: AutodiffBackend> StepMapper<'_, B>
where
    B::InnerBackend: FusedUpdate,
{
    /// The parameter's saved buffers and its next step count, or no buffers and step 1 when it
    /// has no state yet (or state of another shape or rule, which is dropped).
    fn take_state(
        &mut self,
        name: &str,
        rule: Rule,
        dims: &[usize],
    ) -> (Buffers<B::InnerBackend>, u64) {
        let previous = self.params.remove(name).filter(|s| {
            let fits = s.shape == dims && s.rule == rule;
            if !fits {
                tracing::warn!(param = %name, state = ?s.shape, shape = ?dims, saved_rule = s.rule.as_str(), rule = rule.as_str(), "optimizer state has another shape or rule; restarting it");
            }
            fits
        });
        previous.map_or_else(|| (Buffers::new(), 1), |s| (s.buffers, s.step + 1))
    }

    /// λ for the parameter `name` of rank `rank` under `rule` (0 in the no-decay group when
    /// it is on).
    fn weight_decay_of(&self, name: &str, rank: usize, rule: Rule) -> f64 {
        if self.cfg.no_decay_groups && no_decay(name, rank) {
            return 0.0;
        }
        match rule {
            Rule::Adamw => self.cfg.adamw_params().weight_decay,
            Rule::Sgd => self.cfg.sgd.unwrap_or_default().weight_decay,
            Rule::Lion => self.cfg.lion.unwrap_or_default().weight_decay,
            Rule::Muon => self.cfg.muon.unwrap_or_default().weight_decay,
        }
    }

    /// The boost mask of `name` reshaped to `dims`, when boosting and its size is `n`.
    fn mask_of<const D: usize>(
        &self,
        name: &str,
        n: usize,
        dims: [usize; D],
    ) -> Option<Tensor<B::InnerBackend, D, Bool>> {
        self.masks
            .and_then(|m| m.get(name))
            .filter(|m| m.dims()[0] == n)
            .map(|m| m.clone().reshape(dims))
    }

    /// AdamW's step of one parameter, the boost included, in one fused pass.
    fn adamw<const D: usize>(
        &self,
        theta: Tensor<B::InnerBackend, D>,
        grad: Tensor<B::InnerBackend, D>,
        mut buffers: Buffers<B::InnerBackend>,
        mask: Option<BoolTensor<B::InnerBackend>>,
        step: u64,
        weight_decay: f64,
    ) -> (Tensor<B::InnerBackend, D>, Buffers<B::InnerBackend>) {
        let dims = theta.dims();
        let n = theta.shape().num_elements();
        let device = theta.device();
        let mut moment = |name| {
            let m: Tensor<B::InnerBackend, 1> = buffers
                .remove(name)
                .unwrap_or_else(|| Tensor::zeros([n], &device));
            m.reshape(dims).into_primitive().tensor()
        };
        let (m, v) = (moment("exp_avg"), moment("exp_avg_sq"));
        let a = self.cfg.adamw_params();
        let step_scalars = Step {
            lr: self.lr,
            weight_decay,
            hp: AdamWParams {
                beta1: a.beta1,
                beta2: a.beta2,
                eps: a.eps,
            },
            step,
            kappa: self.kappa,
        };
        let (theta, grad) = (
            theta.into_primitive().tensor(),
            grad.into_primitive().tensor(),
        );
        let (updated, m, v) = B::InnerBackend::fused_update(theta, grad, m, v, mask, &step_scalars);
        let flat = |p| Tensor::<B::InnerBackend, D>::from_primitive(TensorPrimitive::Float(p));
        let buffers = Buffers::from([
            ("exp_avg", flat(m).reshape([n])),
            ("exp_avg_sq", flat(v).reshape([n])),
        ]);
        (flat(updated), buffers)
    }
}

impl<B: AutodiffBackend> ModuleMapper<B> for StepMapper<'_, B>
where
    B::InnerBackend: FusedUpdate,
{
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let name = self
            .names
            .get(&id)
            .expect("named_params lists every parameter the mapper visits")
            .clone();
        let require_grad = tensor.is_require_grad();
        let theta = tensor.inner();
        let dims = theta.dims();
        let n = theta.shape().num_elements();

        let rule = Rule::of(self.cfg.base, &name, &dims);
        let (buffers, step) = self.take_state(&name, rule, &dims);
        let weight_decay = self.weight_decay_of(&name, D, rule);
        let mask = self.mask_of(&name, n, dims);
        let (updated, buffers) = match rule {
            // One pass per parameter (θ, m, v updated in place on CPU); the masked coordinates
            // get the boost, the others exactly AdamW's arithmetic.
            Rule::Adamw => {
                let mask = mask.map(Tensor::into_primitive);
                self.adamw(theta, grad, buffers, mask, step, weight_decay)
            }
            // The base's step, θ + (1 + κ n) ⊙ Δ on the masked coordinates.
            _ => {
                let (lr, kappa) = (self.lr, self.kappa);
                base_step(
                    rule,
                    self.cfg,
                    theta,
                    grad,
                    buffers,
                    mask,
                    lr,
                    kappa,
                    weight_decay,
                )
            }
        };
        self.params.insert(
            name,
            ParamState {
                rule,
                buffers,
                step,
                shape: dims.to_vec(),
            },
        );
        let mut out = Tensor::from_inner(updated);
        if require_grad {
            out = out.require_grad();
        }
        Param::from_mapped_value(id, out, mapper)
    }
}
