//! AdmIRE — AdamW with the Implicit-Regularization Enhancement (Wang et al., "Improving
//! Generalization and Convergence by Enhancing Implicit Regularization", NeurIPS 2024,
//! arXiv 2405.20763, Algorithm 1) — and plain AdamW, its κ = 0 case, behind one [`Optimizer`].
//!
//! Algorithm 1 with AdamW as the base optimizer, as the paper's code runs it:
//!
//! ```text
//! for t = 0, 1, …, T:
//!     if t > T_s and (t − T_s − 1) mod K == 0:            needs_refresh(t)   (paper: t % K == 1)
//!         ĝ = GNB gradient on a fresh batch                gnb_gradients
//!         h = ĝ ⊙ ĝ                                        refresh_mask
//!         τ = k-th smallest of h over all p parameters, k = ⌊γ p⌋
//!         n = 1[h ≤ τ]                                     (kept for the next K steps)
//!     g = clip(∇L(θ_t))                                    clip_global_norm
//!     Δ = AdamW displacement from g (m, v, bias correction, ε, weight decay)
//!     θ_{t+1} = θ_t + (1 + κ_t n) ⊙ Δ     if t > T_s      step
//!     θ_{t+1} = θ_t + Δ                   otherwise
//! ```
//!
//! with κ_t = κ, or κ·η_t/η_max under `prog_decay`, and T_s the start step (the end of the
//! warm-up by default). Adam's `m` and `v` see only the raw (clipped) gradient; the boost
//! multiplies the whole AdamW displacement, weight decay included, so flat coordinates move
//! `1 + κ` times as far and sharp ones exactly as in AdamW. Defaults: κ = 4, γ = 0.6, K = 10.
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

use crate::adamw::{AdamWParams, Moments};
use crate::config::{Estimator, HessianForm, MaskScope, OptimConfig, OptimName};
use crate::fused::{FusedUpdate, Step};
use crate::grads::for_each_grad;
use crate::mask_report::{mask_report, MaskReport};
use crate::select::HForm;
use crate::OptimError;

/// Adam state of one parameter, kept flat on the inner backend and keyed by the parameter's
/// dotted name (Burn's `ParamId`s change when a model is reloaded, names do not).
#[derive(Debug, Clone)]
pub struct ParamState<B: Backend> {
    /// First moment `m`, flattened.
    pub exp_avg: Tensor<B, 1>,
    /// Second moment `v`, flattened.
    pub exp_avg_sq: Tensor<B, 1>,
    /// How many steps this parameter has taken (the bias-correction exponent).
    pub step: u64,
    /// The parameter's shape.
    pub shape: Vec<usize>,
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

/// AdamW or AdmIRE over a whole model; see the module docs.
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
    /// κ_t of the last step, 0 when it did not boost.
    pub(crate) applied_kappa: f64,
}

impl<B: AutodiffBackend> Optimizer<B> {
    /// Validates `cfg` and builds an optimizer with empty state. `start_step` is T_s when
    /// `cfg.start` is not set: pass the schedule's warm-up length.
    pub fn new(cfg: &OptimConfig, start_step: usize) -> Result<Self, OptimError> {
        cfg.validate()?;
        Ok(Self {
            cfg: cfg.clone(),
            start: cfg.start.unwrap_or(start_step),
            params: BTreeMap::new(),
            masks: BTreeMap::new(),
            stats: None,
            report: None,
            refreshes: 0,
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

    fn is_admire(&self) -> bool {
        self.cfg.name == OptimName::Admire
    }

    /// κ_t: κ, or κ·η_t/η_max with `prog_decay` (0 for AdamW or when `lr_max ≤ 0`).
    pub fn kappa_t(&self, lr: f64, lr_max: f64) -> f64 {
        if !self.is_admire() {
            0.0
        } else if !self.cfg.prog_decay {
            self.cfg.kappa
        } else if lr_max > 0.0 {
            self.cfg.kappa * lr / lr_max
        } else {
            0.0
        }
    }

    /// Whether the mask must be refreshed before the step of `iteration`: AdmIRE only, when
    /// `iteration > start` and `(iteration − start − 1) mod K == 0` (the paper's
    /// `it > warmup and it % 10 == 1` for start = warmup, K = 10).
    pub fn needs_refresh(&self, iteration: usize) -> bool {
        self.is_admire()
            && iteration > self.start
            && (iteration - self.start - 1).is_multiple_of(self.cfg.interval)
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

    /// Adam state of the parameter `name`, if it has taken a step.
    pub fn param_state(&self, name: &str) -> Option<&ParamState<B::InnerBackend>> {
        self.params.get(name)
    }

    /// The current mask of the parameter `name` (flat), if any.
    pub fn mask(&self, name: &str) -> Option<&Tensor<B::InnerBackend, 1, Bool>> {
        self.masks.get(name)
    }

    /// One optimizer step of `module` with learning rate `lr` (η_t; `lr_max` is η_max for
    /// `prog_decay`). The boost applies iff this is AdmIRE, `iteration > start`, κ_t ≠ 0 and a
    /// mask exists; otherwise the arithmetic is exactly AdamW's. Parameters without a gradient
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
        let boosting =
            self.is_admire() && iteration > self.start && kappa != 0.0 && !self.masks.is_empty();
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
            hp: AdamWParams {
                beta1: self.cfg.beta1,
                beta2: self.cfg.beta2,
                eps: self.cfg.eps,
            },
            weight_decay: self.cfg.weight_decay,
            no_decay_groups: self.cfg.no_decay_groups,
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
        let form = match (self.cfg.estimator, self.cfg.hessian) {
            (Estimator::AdamV, _) => HForm::Identity,
            (Estimator::Gnb, HessianForm::Squared) => HForm::Square,
            (Estimator::Gnb, HessianForm::Abs) => HForm::Abs,
        };
        match self.cfg.estimator {
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
                    if let Some(state) = self.params.get(&info.name) {
                        h.push((info.name, state.exp_avg_sq.clone()));
                    }
                }
            }
        }
        let (masks, stats) = build_masks(h, form, self.cfg.gamma, self.cfg.scope);
        self.report = Some(mask_report(stats.threshold as f64, &masks, &self.masks));
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
    hp: AdamWParams,
    weight_decay: f64,
    no_decay_groups: bool,
}

impl<B: AutodiffBackend> StepMapper<'_, B>
where
    B::InnerBackend: FusedUpdate,
{
    /// The parameter's saved moments reshaped to `dims` and its next step count, or zeros and
    /// step 1 when it has no state yet (or state of another shape, which is dropped).
    fn take_moments<const D: usize>(
        &mut self,
        name: &str,
        dims: [usize; D],
        device: &B::Device,
    ) -> (Moments<B::InnerBackend, D>, u64) {
        let previous = self.params.remove(name).filter(|s| {
            let fits = s.shape == dims;
            if !fits {
                tracing::warn!(param = %name, state = ?s.shape, shape = ?dims, "optimizer state has another shape; restarting it");
            }
            fits
        });
        match previous {
            Some(s) => (
                Moments {
                    exp_avg: s.exp_avg.reshape(dims),
                    exp_avg_sq: s.exp_avg_sq.reshape(dims),
                },
                s.step + 1,
            ),
            None => {
                let zeros = Tensor::zeros(dims, device);
                (
                    Moments {
                        exp_avg: zeros.clone(),
                        exp_avg_sq: zeros,
                    },
                    1,
                )
            }
        }
    }

    /// λ for the parameter `name` of rank `rank` (0 in the no-decay group when it is on).
    fn weight_decay_of(&self, name: &str, rank: usize) -> f64 {
        if self.no_decay_groups && no_decay(name, rank) {
            0.0
        } else {
            self.weight_decay
        }
    }

    /// The boost mask of `name` reshaped to `dims`, when boosting and its size is `n`.
    fn mask_of<const D: usize>(
        &self,
        name: &str,
        n: usize,
        dims: [usize; D],
    ) -> Option<BoolTensor<B::InnerBackend>> {
        self.masks
            .and_then(|m| m.get(name))
            .filter(|m| m.dims()[0] == n)
            .map(|m| m.clone().reshape(dims).into_primitive())
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

        let (moments, step) = self.take_moments(&name, dims, &theta.device());
        let weight_decay = self.weight_decay_of(&name, D);
        let mask = self.mask_of(&name, n, dims);
        // One pass per parameter (θ, m, v updated in place on CPU); the masked coordinates get
        // the boost, the others exactly AdamW's arithmetic.
        let step_scalars = Step {
            lr: self.lr,
            weight_decay,
            hp: self.hp,
            step,
            kappa: self.kappa,
        };
        let (updated, m, v) = B::InnerBackend::fused_update(
            theta.into_primitive().tensor(),
            grad.into_primitive().tensor(),
            moments.exp_avg.into_primitive().tensor(),
            moments.exp_avg_sq.into_primitive().tensor(),
            mask,
            &step_scalars,
        );
        let wrap = |p| Tensor::<B::InnerBackend, D>::from_primitive(TensorPrimitive::Float(p));
        let (updated, moments) = (
            wrap(updated),
            Moments {
                exp_avg: wrap(m),
                exp_avg_sq: wrap(v),
            },
        );

        self.params.insert(
            name,
            ParamState {
                exp_avg: moments.exp_avg.reshape([n]),
                exp_avg_sq: moments.exp_avg_sq.reshape([n]),
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
