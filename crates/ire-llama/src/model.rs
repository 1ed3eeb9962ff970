//! The Llama decoder as Burn modules. Field names spell the Hugging Face parameter paths
//! (`model.layers.0.self_attn.q_proj.weight`, …) so checkpoints need no renaming table.
//!
//! Follows HF `modeling_llama.py`: pre-norm blocks with per-token RMSNorm, rotary position
//! embeddings in the rotate-half convention, grouped-query causal self-attention, a SwiGLU MLP
//! and no biases anywhere.

use std::sync::Arc;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::module::{attention, embedding, linear};
use burn::tensor::ops::AttentionModuleOptions;

use crate::rope::RopeTables;
use crate::LlamaConfig;

/// A bias-free linear layer with HF's weight layout `[out_features, in_features]`.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// `[out, in]`, as `torch.nn.Linear` stores it.
    pub weight: Param<Tensor<B, 2>>,
}

impl<B: Backend> Linear<B> {
    /// `y = x Wᵀ`.
    ///
    /// # Shapes
    /// - x: `[..., in]` → `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        linear(x, self.weight.val().transpose(), None)
    }
}

/// Token embedding table `[vocab, hidden]`.
#[derive(Module, Debug)]
pub struct Embedding<B: Backend> {
    /// `[vocab_size, hidden_size]`.
    pub weight: Param<Tensor<B, 2>>,
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + ε) · w`.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Per-channel scale `[hidden_size]`.
    pub weight: Param<Tensor<B, 1>>,
    /// ε inside the square root.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// # Shapes
    /// - x: `[batch, seq, hidden]` → same
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let inv_rms = (x.clone().powi_scalar(2).mean_dim(2) + self.eps)
            .sqrt()
            .recip();
        x * inv_rms * self.weight.val().unsqueeze::<3>()
    }
}

/// Causal self-attention with grouped-query heads and rotary embeddings.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// `[heads·head_dim, hidden]`.
    pub q_proj: Linear<B>,
    /// `[kv_heads·head_dim, hidden]`.
    pub k_proj: Linear<B>,
    /// `[kv_heads·head_dim, hidden]`.
    pub v_proj: Linear<B>,
    /// `[hidden, heads·head_dim]`.
    pub o_proj: Linear<B>,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads; each serves `num_heads / num_kv_heads` query heads.
    pub num_kv_heads: usize,
}

impl<B: Backend> Attention<B> {
    /// # Shapes
    /// - x: `[batch, seq, hidden]` → same
    pub fn forward(&self, x: Tensor<B, 3>, rope: &RopeTables<B>) -> Tensor<B, 3> {
        let [b, s, d] = x.dims();
        let (h, kvh) = (self.num_heads, self.num_kv_heads);
        let hd = d / h;
        // (B, S, H·hd) → (B, H, S, hd)
        let q = self
            .q_proj
            .forward(x.clone())
            .reshape([b, s, h, hd])
            .swap_dims(1, 2);
        let k = self
            .k_proj
            .forward(x.clone())
            .reshape([b, s, kvh, hd])
            .swap_dims(1, 2);
        let v = self
            .v_proj
            .forward(x)
            .reshape([b, s, kvh, hd])
            .swap_dims(1, 2);
        let (q, k) = (rope.apply(q), rope.apply(k));
        // GQA: query head i reads kv head i / (h / kvh), as HF's `repeat_kv`.
        let (k, v) = (repeat_kv(k, h / kvh), repeat_kv(v, h / kvh));
        let options = AttentionModuleOptions {
            is_causal: true,
            ..Default::default()
        };
        let y = attention(q, k, v, None, None, options); // (B, H, S, hd)
        self.o_proj.forward(y.swap_dims(1, 2).reshape([b, s, d]))
    }
}

/// Repeats each kv head `n_rep` times along the head axis: `[B, kvh, S, hd]` → `[B, kvh·n_rep, S, hd]`.
fn repeat_kv<B: Backend>(x: Tensor<B, 4>, n_rep: usize) -> Tensor<B, 4> {
    if n_rep == 1 {
        return x;
    }
    let [b, kvh, s, hd] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kvh, n_rep, s, hd])
        .reshape([b, kvh * n_rep, s, hd])
}

/// `silu(x) = x / (1 + e^(−x))`, written out because burn's default sigmoid rounds through f32,
/// which would cap the precision of f64 runs (and of the gradient checks that use them).
fn silu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clone() / (x.neg().exp() + 1.0)
}

/// SwiGLU MLP: `down(silu(gate(x)) ⊙ up(x))`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `[intermediate, hidden]`.
    pub gate_proj: Linear<B>,
    /// `[intermediate, hidden]`.
    pub up_proj: Linear<B>,
    /// `[hidden, intermediate]`.
    pub down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// # Shapes
    /// - x: `[batch, seq, hidden]` → same
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

/// One pre-norm transformer block.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// Attention block.
    pub self_attn: Attention<B>,
    /// MLP block.
    pub mlp: Mlp<B>,
    /// Norm before attention.
    pub input_layernorm: RmsNorm<B>,
    /// Norm before the MLP.
    pub post_attention_layernorm: RmsNorm<B>,
}

impl<B: Backend> DecoderLayer<B> {
    /// `x + attn(norm(x))`, then `x + mlp(norm(x))`.
    pub fn forward(&self, x: Tensor<B, 3>, rope: &RopeTables<B>) -> Tensor<B, 3> {
        let x = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rope);
        x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x))
    }
}

/// The decoder stack without the head (HF's `LlamaModel`, prefix `model.`).
#[derive(Module, Debug)]
pub struct LlamaModel<B: Backend> {
    /// Token embeddings.
    pub embed_tokens: Embedding<B>,
    /// Decoder blocks.
    pub layers: Vec<DecoderLayer<B>>,
    /// Final norm.
    pub norm: RmsNorm<B>,
}

/// A Llama causal language model (HF's `LlamaForCausalLM`).
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// The decoder (`model.*` parameters).
    pub model: LlamaModel<B>,
    /// Output projection `[vocab, hidden]`; `None` when tied to `model.embed_tokens.weight`.
    pub lm_head: Option<Linear<B>>,
    /// The shape this model was built from.
    #[module(skip)]
    pub config: LlamaConfig,
    /// Host copy of the RoPE cos/sin tables for `max_position_embeddings` positions.
    #[module(skip)]
    pub rope: Arc<crate::rope::RopeHost>,
}

impl<B: Backend> Llama<B> {
    /// Next-token logits for every position.
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]` (seq ≤ `max_position_embeddings` is not required; RoPE
    ///   extends to any length)
    /// - returns: `[batch, seq, vocab]`
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [_, s] = tokens.dims();
        let device = tokens.device();
        let rope = self.rope.tables::<B>(s, &device);
        let mut x = embedding(self.model.embed_tokens.weight.val(), tokens);
        for layer in &self.model.layers {
            x = layer.forward(x, &rope);
        }
        let x = self.model.norm.forward(x);
        match &self.lm_head {
            Some(head) => head.forward(x),
            None => linear(x, self.model.embed_tokens.weight.val().transpose(), None),
        }
    }

    /// Mean next-token cross-entropy of `logits` against `targets`, computed in f32.
    ///
    /// # Shapes
    /// - logits: `[batch, seq, vocab]`, targets: `[batch, seq]` → `[1]`
    pub fn cross_entropy(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
        let [b, s, v] = logits.dims();
        let logp = log_softmax(logits.reshape([b * s, v]), 1);
        let picked = logp.gather(1, targets.reshape([b * s, 1]));
        picked.mean().neg()
    }

    /// `cross_entropy(forward(inputs), targets)`.
    pub fn loss(&self, inputs: Tensor<B, 2, Int>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
        Self::cross_entropy(self.forward(inputs), targets)
    }
}
