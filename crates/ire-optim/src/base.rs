//! The base optimizers' update of one parameter, behind one [`Rule`]: which base updates a
//! parameter, which state buffers it keeps (torch's names), and its step.
//!
//! ```text
//! base = "adamw"   every parameter: AdamW                      exp_avg, exp_avg_sq
//! base = "sgd"     every parameter: SGD                        momentum_buffer (μ > 0)
//! base = "lion"    every parameter: Lion                       exp_avg
//! base = "muon"    2-D matrices of the decoder layers: Muon    momentum_buffer
//!                  embedding, LM head, norms: AdamW            exp_avg, exp_avg_sq
//! ```
//!
//! AdamW's step is [`crate::FusedUpdate::fused_update`], SGD's and Lion's
//! [`crate::FusedUpdate::fused_sgd`] and [`crate::FusedUpdate::fused_lion`] (one pass on CPU, the
//! composed references [`crate::sgd`] and [`crate::lion`] elsewhere), Muon's the composed
//! [`crate::muon`] on every backend; each applies IRE's boost to its own displacement.

use std::collections::BTreeMap;

use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use serde::{Deserialize, Serialize};

use crate::config::{BaseName, OptimConfig};
use crate::fused::FusedUpdate;
use crate::fused_bases::{LionStep, SgdStep};
use crate::lion::LionParams;
use crate::mask::boost;
use crate::muon::muon_step;
use crate::sgd::SgdParams;

/// Which update a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// AdamW (`torch.optim.AdamW`).
    Adamw,
    /// SGD (`torch.optim.SGD`).
    Sgd,
    /// Lion (`lion-pytorch`).
    Lion,
    /// Muon (`torch.optim.Muon`), 2-D only.
    Muon,
}

/// A parameter's state buffers by torch's name, flat.
pub type Buffers<B> = BTreeMap<&'static str, Tensor<B, 1>>;

impl Rule {
    /// The rule of the parameter `name` of shape `dims` under `base`: Muon takes the 2-D
    /// matrices of the decoder layers (`model.layers.*`), AdamW the rest.
    pub fn of(base: BaseName, name: &str, dims: &[usize]) -> Self {
        match base {
            BaseName::Adamw => Self::Adamw,
            BaseName::Sgd => Self::Sgd,
            BaseName::Lion => Self::Lion,
            BaseName::Muon if dims.len() == 2 && name.starts_with("model.layers.") => Self::Muon,
            BaseName::Muon => Self::Adamw,
        }
    }

    /// The state buffers this rule keeps under `cfg`, by torch's names.
    pub fn buffers(self, cfg: &OptimConfig) -> &'static [&'static str] {
        match self {
            Self::Adamw => &["exp_avg", "exp_avg_sq"],
            Self::Sgd if cfg.sgd.unwrap_or_default().momentum == 0.0 => &[],
            Self::Sgd | Self::Muon => &["momentum_buffer"],
            Self::Lion => &["exp_avg"],
        }
    }

    /// The rule's name as logged (`adamw`, `muon`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Adamw => "adamw",
            Self::Sgd => "sgd",
            Self::Lion => "lion",
            Self::Muon => "muon",
        }
    }
}

/// One SGD, Lion or Muon step of one parameter, IRE's boost (`θ + (1 + κ n) ⊙ Δ`) on `mask`'s
/// coordinates included: the new θ and buffers. SGD and Lion run
/// [`FusedUpdate::fused_sgd`]/[`FusedUpdate::fused_lion`] (one pass on CPU), Muon the composed
/// [`muon_step`] (its Newton–Schulz iterations are GEMMs) and [`boost`]. `buffers` are the previous
/// step's (empty at the first step: zeros, or no SGD buffer); `weight_decay` is λ for this
/// parameter (0 in the no-decay group).
#[allow(clippy::too_many_arguments)]
pub fn base_step<B: FusedUpdate, const D: usize>(
    rule: Rule,
    cfg: &OptimConfig,
    theta: Tensor<B, D>,
    grad: Tensor<B, D>,
    mut buffers: Buffers<B>,
    mask: Option<Tensor<B, D, Bool>>,
    lr: f64,
    kappa: f64,
    weight_decay: f64,
) -> (Tensor<B, D>, Buffers<B>) {
    let dims = theta.dims();
    let n = theta.shape().num_elements();
    let device = theta.device();
    let prim = |x: Tensor<B, D>| x.into_primitive().tensor();
    let back = |p| Tensor::<B, D>::from_primitive(TensorPrimitive::Float(p));
    let flat = |p| back(p).reshape([n]);
    let mut previous = |name| {
        buffers
            .remove(name)
            .map(|b: Tensor<B, 1>| prim(b.reshape(dims)))
    };
    let mut out = Buffers::new();
    let theta = match rule {
        Rule::Sgd => {
            let s = cfg.sgd.unwrap_or_default();
            let hp = SgdParams {
                momentum: s.momentum,
                dampening: s.dampening,
                weight_decay,
                nesterov: s.nesterov,
            };
            let step = SgdStep { lr, hp, kappa };
            let b = previous("momentum_buffer");
            let mask = mask.map(Tensor::into_primitive);
            let (theta, b) = B::fused_sgd(prim(theta), prim(grad), b, mask, &step);
            out.extend(b.map(|b| ("momentum_buffer", flat(b))));
            back(theta)
        }
        Rule::Lion => {
            let l = cfg.lion.unwrap_or_default();
            let hp = LionParams {
                beta1: l.beta1,
                beta2: l.beta2,
                weight_decay,
            };
            let step = LionStep { lr, hp, kappa };
            let m = previous("exp_avg").unwrap_or_else(|| prim(Tensor::zeros(dims, &device)));
            let mask = mask.map(Tensor::into_primitive);
            let (theta, m) = B::fused_lion(prim(theta), prim(grad), m, mask, &step);
            out.insert("exp_avg", flat(m));
            back(theta)
        }
        Rule::Muon => {
            let b = previous("momentum_buffer").map(back);
            let (theta, b) = muon_rule(cfg, theta, grad, b, mask, lr, kappa, weight_decay);
            out.insert("momentum_buffer", b.reshape([n]));
            theta
        }
        Rule::Adamw => unreachable!("AdamW steps through FusedUpdate::fused_update"),
    };
    (theta, out)
}

/// Muon's step of one parameter ([`muon_step`] on it as a matrix), then the boost where `mask`
/// is set: θ and the momentum buffer (zeros when `buffer` is `None`, the first step).
#[allow(clippy::too_many_arguments)]
fn muon_rule<B: Backend, const D: usize>(
    cfg: &OptimConfig,
    theta: Tensor<B, D>,
    grad: Tensor<B, D>,
    buffer: Option<Tensor<B, D>>,
    mask: Option<Tensor<B, D, Bool>>,
    lr: f64,
    kappa: f64,
    weight_decay: f64,
) -> (Tensor<B, D>, Tensor<B, D>) {
    let hp = crate::muon::MuonParams {
        weight_decay,
        ..cfg.muon.unwrap_or_default().params()
    };
    let dims = theta.dims();
    let matrix = [dims[0], dims[1..].iter().product()];
    let b = buffer.unwrap_or_else(|| theta.zeros_like()).reshape(matrix);
    let (stepped, b) = muon_step(
        theta.clone().reshape(matrix),
        grad.reshape(matrix),
        b,
        lr,
        &hp,
    );
    let stepped = stepped.reshape(dims);
    let theta = match mask {
        Some(mask) => boost(theta, stepped, mask, kappa),
        None => stepped,
    };
    (theta, b.reshape(dims))
}
