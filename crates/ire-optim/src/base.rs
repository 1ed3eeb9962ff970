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
//! AdamW's step is [`crate::FusedUpdate::fused_update`] (one pass on CPU); SGD's, Lion's and
//! Muon's are the composed references ([`crate::sgd`], [`crate::lion`], [`crate::muon`]) run
//! here on any backend. IRE's boost is the caller's: it takes the displacement of this step.

use std::collections::BTreeMap;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::{BaseName, OptimConfig};
use crate::lion::{lion_step, LionParams};
use crate::muon::muon_step;
use crate::sgd::{sgd_step, SgdParams};

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

/// One SGD, Lion or Muon step of one parameter with the composed ops: the new θ and buffers.
/// `buffers` are the previous step's (empty at the first step: zeros, or no SGD buffer);
/// `weight_decay` is λ for this parameter (0 in the no-decay group).
pub fn composed_step<B: Backend, const D: usize>(
    rule: Rule,
    cfg: &OptimConfig,
    theta: Tensor<B, D>,
    grad: Tensor<B, D>,
    mut buffers: Buffers<B>,
    lr: f64,
    weight_decay: f64,
) -> (Tensor<B, D>, Buffers<B>) {
    let dims = theta.dims();
    let n = theta.shape().num_elements();
    let device = theta.device();
    let mut buffer = |name| -> Tensor<B, D> {
        buffers
            .remove(name)
            .map_or_else(|| Tensor::zeros(dims, &device), |b| b.reshape(dims))
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
            let previous = buffers.remove("momentum_buffer").map(|b| b.reshape(dims));
            let (theta, b) = sgd_step(theta, grad, previous, lr, &hp);
            out.extend(b.map(|b| ("momentum_buffer", b.reshape([n]))));
            theta
        }
        Rule::Lion => {
            let l = cfg.lion.unwrap_or_default();
            let hp = LionParams {
                beta1: l.beta1,
                beta2: l.beta2,
                weight_decay,
            };
            let (theta, m) = lion_step(theta, grad, buffer("exp_avg"), lr, &hp);
            out.insert("exp_avg", m.reshape([n]));
            theta
        }
        Rule::Muon => {
            let hp = crate::muon::MuonParams {
                weight_decay,
                ..cfg.muon.unwrap_or_default().params()
            };
            let matrix = [dims[0], dims[1..].iter().product()];
            let b = buffer("momentum_buffer").reshape(matrix);
            let (theta, b) = muon_step(theta.reshape(matrix), grad.reshape(matrix), b, lr, &hp);
            out.insert("momentum_buffer", b.reshape([n]));
            theta.reshape(dims)
        }
        Rule::Adamw => unreachable!("AdamW steps through FusedUpdate::fused_update"),
    };
    (theta, out)
}
