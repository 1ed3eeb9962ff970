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
//! - τ, the exact k-th smallest `h`: [`select_device`] finds it with on-device counts (any
//!   backend), [`select_cpu`] in passes over host memory (burn-flex's fused refresh); [`select`]
//!   holds what both share (the result, how `h` is formed, the sampled bracket).
//! - [`mask`]: the mask `1[h ≤ τ]` and the boost; [`toy`]: the paper's two-parameter example
//!   (Fig. 1) on the same functions.
//! - [`sharpness`]: Hutchinson's Hessian trace and λ_max from finite differences of gradients.
//! - [`TrainBackend`]: the one bound training code puts on its backend.
//!
//! The optimizer's part of the paper's loop (`docs/admire.md`): refresh the mask when due,
//! then step with the iteration's gradients (here synthetic ones). The whole training step —
//! micro-batches, clipping, the non-finite guard — is `ire_train::step`, whose example runs
//! this loop through the trainer's own functions.
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::prelude::*;
//! use ire_llama::{InitScheme, Llama, LlamaConfig};
//! use ire_optim::{gnb_gradients, gnb_seed, synthetic_gradients, OptimConfig, Optimizer};
//! type B = Autodiff<Flex>;
//!
//! let device = Default::default();
//! let mut cfg = LlamaConfig::preset("tiny").unwrap();
//! (cfg.vocab_size, cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) = (64, 1, 32, 64);
//! let mut model = Llama::<B>::init(&cfg, InitScheme::Torch, 0, &device).unwrap();
//! let warmup = 2; // T_s: the boost starts after the warm-up
//! let mut optim = Optimizer::<B>::new(&OptimConfig::admire(), warmup).unwrap();
//! let tokens = Tensor::<B, 2, Int>::from_ints([[1, 2, 3, 4, 5]], &device);
//! for it in 0..5 {
//!     if optim.needs_refresh(it) {
//!         let g_hat = gnb_gradients(&model, tokens.clone(), gnb_seed(1, it as u64), 0);
//!         optim.refresh_mask(&model, &g_hat);
//!     }
//!     let grads = synthetic_gradients::<B, _>(&model, it as u64, 1e-2);
//!     model = optim.step(it, 1e-3, 1e-3, model, grads);
//!     // κ_t = κ = 4 once a mask exists (refreshed before iteration 3), 0 before.
//!     assert_eq!(optim.applied_kappa(), if it >= 3 { 4.0 } else { 0.0 });
//! }
//! // ⌊γp⌋/p of the coordinates (more with ties at τ) are flat.
//! assert!(optim.mask_fraction().unwrap() > 0.59);
//! ```
#![warn(missing_docs)]

pub mod adamw;
mod backend;
pub mod base;
mod clip;
mod config;
pub mod config_read;
mod error;
mod flex_storage;
pub mod fused;
pub mod fused_bases;
mod gnb;
mod grads;
pub mod lion;
pub mod mask;
mod mask_report;
pub mod muon;
mod optimizer;
mod schedule;
pub mod select;
pub mod select_cpu;
pub mod select_device;
pub mod sgd;
pub mod sharpness;
mod state;
pub mod toy;

pub use backend::TrainBackend;
pub use base::Rule;
pub use clip::{clip_global_norm, global_grad_norm};
pub use config::{
    AdamWConfig, BaseName, Estimator, HessianForm, IreConfig, LionConfig, MaskScope, MuonAdjustLr,
    MuonConfig, OptimConfig, SgdConfig, ADAMW_KEYS, ADMIRE_ONLY_KEYS,
};
pub use error::OptimError;
pub use fused::FusedUpdate;
pub use gnb::{gnb_gradients, gnb_seed, gnb_uniforms, sample_labels, LogitsModel};
pub use grads::{add_gradients, scale_gradients, synthetic_gradients};
pub use mask_report::{group_of, layer_of, mask_report, MaskReport};
pub use optimizer::{MaskStats, Optimizer, ParamState};
pub use schedule::{Schedule, ScheduleConfig, ScheduleKind};
pub use state::{STATE_JSON_FILE, STATE_TENSORS_FILE};
