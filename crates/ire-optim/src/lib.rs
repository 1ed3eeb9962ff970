//! `ire-optim`: AdamW with PyTorch semantics and AdmIRE, the optimizer of "Improving
//! Generalization and Convergence by Enhancing Implicit Regularization" (Wang et al.,
//! NeurIPS 2024, arXiv 2405.20763), for Burn models.
//!
//! AdmIRE runs AdamW and multiplies its displacement by `1 + κ` on the "flat" coordinates —
//! the fraction γ with the smallest diagonal-Hessian estimate — refreshed every K steps:
//!
//! ```text
//! θ_{t+1} = θ_t + (1 + κ_t n_t) ⊙ Δ_AdamW,     n = 1[h ≤ τ],  τ = ⌊γp⌋-th smallest h
//! ```
//!
//! - [`OptimConfig`] / [`ScheduleConfig`]: the `[optim]` and `[schedule]` TOML sections.
//! - [`Optimizer`]: AdamW or AdmIRE over a whole model — `step`, `needs_refresh`,
//!   `refresh_mask`, `save`/`load` (state keyed by parameter name).
//! - [`gnb_gradients`]: the Gauss-Newton-Bartlett gradient the mask is built from;
//!   [`add_gradients`], [`scale_gradients`] to accumulate it; [`clip_global_norm`] for the
//!   training gradient.
//! - [`mask`]: the exact on-device k-th-smallest threshold, the mask and the boost;
//!   [`toy`]: the paper's two-parameter example (Fig. 1) on the same functions.
//! - [`sharpness`]: Hutchinson's Hessian trace and λ_max from finite differences of gradients.
//! - [`TrainBackend`]: the one bound training code puts on its backend.
//!
//! A training iteration, as in the paper's loop (`docs/admire.md`):
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::optim::GradientsParams;
//! use burn::prelude::*;
//! use ire_llama::{InitScheme, Llama, LlamaConfig};
//! use ire_optim::{clip_global_norm, gnb_gradients, gnb_seed, OptimConfig, Optimizer, ScheduleConfig};
//! type B = Autodiff<Flex>;
//!
//! let device = Default::default();
//! let mut cfg = LlamaConfig::preset("tiny").unwrap();
//! (cfg.vocab_size, cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) = (64, 1, 32, 64);
//! let mut model = Llama::<B>::init(&cfg, InitScheme::Torch, 0, &device).unwrap();
//! let schedule = ScheduleConfig { kind: ire_optim::ScheduleKind::Cosine, lr_max: 1e-3, lr_min: None, warmup: 2, total: 10 }
//!     .build()
//!     .unwrap();
//! let mut optim = Optimizer::<B>::new(&OptimConfig::admire(), schedule.warmup).unwrap();
//! let tokens = Tensor::<B, 2, Int>::from_ints([[1, 2, 3, 4, 5]], &device);
//! for it in 0..5 {
//!     if optim.needs_refresh(it) {
//!         let g_hat = gnb_gradients(&model, tokens.clone(), gnb_seed(1, it as u64), 0);
//!         optim.refresh_mask(&model, &g_hat);
//!     }
//!     let loss = model.loss(tokens.clone().slice([0..1, 0..4]), tokens.clone().slice([0..1, 1..5]));
//!     let grads = GradientsParams::from_grads(loss.backward(), &model);
//!     let (grads, _norm) = clip_global_norm(&model, grads, 1.0);
//!     let lr = schedule.lr_at(it);
//!     model = optim.step(it, lr, schedule.lr_max, model, grads);
//! }
//! // ⌊γp⌋/p of the coordinates (more with ties at τ) are flat.
//! assert!(optim.mask_fraction().unwrap() > 0.59);
//! ```
#![warn(missing_docs)]

pub mod adamw;
mod admire;
mod backend;
mod clip;
mod config;
mod error;
pub mod fused;
mod gnb;
mod grads;
pub mod mask;
pub mod refresh;
mod schedule;
pub mod sharpness;
mod state;
pub mod toy;

pub use admire::{MaskStats, Optimizer, ParamState};
pub use backend::TrainBackend;
pub use clip::{clip_global_norm, global_grad_norm};
pub use config::{
    Estimator, HessianForm, MaskScope, OptimConfig, OptimName, ScheduleConfig, ScheduleKind,
};
pub use error::OptimError;
pub use fused::FusedUpdate;
pub use gnb::{gnb_gradients, gnb_seed, gnb_uniforms, sample_labels, LogitsModel};
pub use grads::{add_gradients, scale_gradients, synthetic_gradients};
pub use schedule::Schedule;
pub use state::{STATE_JSON_FILE, STATE_TENSORS_FILE};
