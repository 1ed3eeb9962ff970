//! The memory plan of a run: the expected peak bytes per device, from the shapes alone, so that
//! a run that cannot fit says so before it allocates (and `configs/paper/*` can be sized).
//!
//! Per device, f32 throughout (4 bytes), P parameters, micro-batch B, sequence S, hidden d,
//! kv width d_kv, MLP width I, H heads, L layers, vocabulary V:
//!
//! ```text
//! weights      4P
//! gradients    4P  (+4P accumulator when grad_accum > 1)
//! optimizer    8P  (m, v)  (+1P AdmIRE's mask, +4P its Hessian estimate during a refresh)
//! activations  4·B·S·(6d + 2·d_kv + 4I)·L   what autodiff keeps per layer (norm inputs, q, k, v
//!                                          with RoPE, attention out, o_proj out, MLP gate, up,
//!                                          silu(gate), product)
//! scores       4·2·B·H·S²·L                the decomposed attention keeps [B, H, S, S] twice per
//!                                          layer (the scaled, masked scores and the softmax)
//! logits       4·3·B·S·V                   logits, log-softmax, and their gradient
//! transient    4·B·H·S²                    one layer's score gradient during backward
//! ```
//!
//! With `run.precision = "bf16"` ([`ire_llama::precision`]) the matmul operands are 2 bytes:
//!
//! ```text
//! weights      4P + 2P                     the bf16 copy of each weight, kept for its backward
//! activations  (4·2d + 2·(4d + 2·d_kv + 4I))·B·S·L   the residual stream and norm inputs stay f32
//! logits       (2 + 4 + 4)·B·S·V           bf16 logits, f32 log-softmax and gradient
//! ```
//!
//! (scores and the transient stay f32: the softmax is widened). The bf16 figures are derived,
//! not yet measured.
//!
//! An estimate of the composed (default) ops, which the CUDA build runs; the CPU's fused kernels
//! keep less (docs/performance.md has a measured comparison). It leaves out the allocator's
//! slack and the backend's workspace, so the warning threshold keeps 10 % headroom.

use std::fmt;

use ire_llama::{LlamaConfig, Precision};

/// Bytes per f32.
const F32: u64 = 4;
/// Bytes per bf16.
const BF16: u64 = 2;

/// Expected bytes per device, by what holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Model weights.
    pub weights: u64,
    /// Gradients (and the accumulator with gradient accumulation).
    pub gradients: u64,
    /// Optimizer state (AdamW's moments; AdmIRE's mask and refresh estimate too).
    pub optimizer: u64,
    /// Activations autodiff keeps for backward, attention scores excluded.
    pub activations: u64,
    /// The attention score matrices kept for backward.
    pub scores: u64,
    /// Logits, their log-softmax and gradient.
    pub logits: u64,
    /// The largest transient of the backward pass.
    pub transient: u64,
}

impl MemoryPlan {
    /// The plan of one device running `micro` sequences of `seq` tokens of `model`.
    pub fn new(
        model: &LlamaConfig,
        micro: usize,
        seq: usize,
        accum: usize,
        admire: bool,
        precision: Precision,
    ) -> Self {
        let p = model.num_params() as u64;
        let (b, s) = (micro as u64, seq as u64);
        let d = model.hidden_size as u64;
        let kv = (model.num_key_value_heads * model.head_dim()) as u64;
        let i = model.intermediate_size as u64;
        let h = model.num_attention_heads as u64;
        let l = model.num_hidden_layers as u64;
        let v = model.vocab_size as u64;
        let accumulator = if accum > 1 { F32 * p } else { 0 };
        let admire_state = if admire { p + F32 * p } else { 0 };
        let f32_plan = Self {
            weights: F32 * p,
            gradients: F32 * p + accumulator,
            // AdamW's m and v: the most any base keeps (SGD, Lion and Muon's matrices keep one).
            optimizer: 2 * F32 * p + admire_state,
            activations: F32 * b * s * (6 * d + 2 * kv + 4 * i) * l,
            scores: F32 * 2 * b * h * s * s * l,
            logits: F32 * 3 * b * s * v,
            transient: F32 * b * h * s * s,
        };
        match precision {
            Precision::F32 => f32_plan,
            Precision::Bf16 => Self {
                weights: F32 * p + BF16 * p,
                activations: (F32 * 2 * d + BF16 * (4 * d + 2 * kv + 4 * i)) * b * s * l,
                logits: (BF16 + 2 * F32) * b * s * v,
                ..f32_plan
            },
        }
    }

    /// The expected peak.
    pub fn total(&self) -> u64 {
        self.weights
            + self.gradients
            + self.optimizer
            + self.activations
            + self.scores
            + self.logits
            + self.transient
    }

    /// Whether the peak, with 10 % headroom, fits in `capacity` bytes.
    pub fn fits(&self, capacity: u64) -> bool {
        self.total() as f64 * 1.1 <= capacity as f64
    }
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

impl fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "expected peak {:.1} GiB per device = weights {:.2} + gradients {:.2} + optimizer {:.2} \
             + activations {:.2} + attention scores {:.2} + logits {:.2} + backward transient {:.2} \
             (estimate from the shapes)",
            gib(self.total()),
            gib(self.weights),
            gib(self.gradients),
            gib(self.optimizer),
            gib(self.activations),
            gib(self.scores),
            gib(self.logits),
            gib(self.transient)
        )
    }
}

/// Memory available to a CPU run (`MemAvailable` of /proc/meminfo), if the system says.
pub fn cpu_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_adds_up_the_formula() {
        let m = LlamaConfig::preset("tiny").unwrap();
        let plan = MemoryPlan::new(&m, 8, 256, 1, false, Precision::F32);
        let p = m.num_params() as u64;
        assert_eq!(plan.weights, 4 * p);
        assert_eq!(plan.optimizer, 8 * p);
        // tiny: d 256, kv 256, I 688, H 4, L 4, V 8192.
        assert_eq!(
            plan.activations,
            4 * 8 * 256 * (6 * 256 + 2 * 256 + 4 * 688) * 4
        );
        assert_eq!(plan.scores, 4 * 2 * 8 * 4 * 256 * 256 * 4);
        assert_eq!(plan.logits, 4 * 3 * 8 * 256 * 8192);
        let admire = MemoryPlan::new(&m, 8, 256, 2, true, Precision::F32);
        assert_eq!(admire.optimizer - plan.optimizer, 5 * p);
        assert_eq!(admire.gradients - plan.gradients, 4 * p);
        let bf16 = MemoryPlan::new(&m, 8, 256, 1, false, Precision::Bf16);
        assert_eq!(bf16.weights, 6 * p);
        assert_eq!(
            bf16.activations,
            (4 * 2 * 256 + 2 * (4 * 256 + 2 * 256 + 4 * 688)) * 8 * 256 * 4
        );
        assert_eq!(bf16.logits, 10 * 8 * 256 * 8192);
        assert_eq!((bf16.scores, bf16.optimizer), (plan.scores, plan.optimizer));
        assert!(bf16.total() < plan.total());
        assert!(plan.fits(plan.total() * 2) && !plan.fits(plan.total()));
    }
}
