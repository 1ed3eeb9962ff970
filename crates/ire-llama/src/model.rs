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
use burn::tensor::module::embedding;
use burn::tensor::DType;

use crate::ops::{self, IreOps};
use crate::precision::{cast_to, widen, Precision};
use crate::rope::RopeTables;
use crate::LlamaConfig;

/// A bias-free linear layer with HF's weight layout `[out_features, in_features]`.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// `[out, in]`, as `torch.nn.Linear` stores it.
    pub weight: Param<Tensor<B, 2>>,
}

impl<B: IreOps> Linear<B> {
    /// `y = x Wᵀ` (one gemm over all leading dimensions; see [`ops::linear`]), in `x`'s dtype:
    /// the f32 weight is cast to it per use under mixed precision ([`crate::precision`]).
    ///
    /// # Shapes
    /// - x: `[..., in]` → `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let w = cast_to(self.weight.val(), x.dtype());
        ops::linear(x, w)
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

impl<B: IreOps> RmsNorm<B> {
    /// # Shapes
    /// - x: `[batch, seq, hidden]` → same
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        ops::rms_norm(x, self.weight.val(), self.eps)
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

impl<B: IreOps> Attention<B> {
    /// # Shapes
    /// - x: `[batch, seq, hidden]` → same
    pub fn forward(&self, x: Tensor<B, 3>, rope: &RopeTables<B>) -> Tensor<B, 3> {
        let [b, s, d] = x.dims();
        let (h, kvh) = (self.num_heads, self.num_kv_heads);
        let hd = d / h;
        // Heads stay in the projections' layout (B, S, H, hd): no transposes or copies; RoPE,
        // the causal mask and GQA's kv sharing happen inside the attention op.
        let q = self.q_proj.forward(x.clone()).reshape([b, s, h, hd]);
        let k = self.k_proj.forward(x.clone()).reshape([b, s, kvh, hd]);
        let v = self.v_proj.forward(x).reshape([b, s, kvh, hd]);
        let y = ops::causal_attention(q, k, v, rope); // (B, S, H, hd)
        self.o_proj.forward(y.reshape([b, s, d]))
    }
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

impl<B: IreOps> Mlp<B> {
    /// # Shapes
    /// - x: `[batch, seq, hidden]` → same
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = self.gate_proj.forward(x.clone());
        self.down_proj
            .forward(ops::swiglu(gate, self.up_proj.forward(x)))
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

impl<B: IreOps> DecoderLayer<B> {
    /// `x + attn(norm(x))`, then `x + mlp(norm(x))`. The residual stream `x` and the norms stay
    /// in `x`'s dtype; attention and the MLP compute in `compute` (a no-op cast when equal).
    pub fn forward(&self, x: Tensor<B, 3>, rope: &RopeTables<B>, compute: DType) -> Tensor<B, 3> {
        let dtype = x.dtype();
        let h = cast_to(self.input_layernorm.forward(x.clone()), compute);
        let x = x + cast_to(self.self_attn.forward(h, rope), dtype);
        let h = cast_to(self.post_attention_layernorm.forward(x.clone()), compute);
        x + cast_to(self.mlp.forward(h), dtype)
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
    /// The dtype of the matmuls ([`crate::precision`]); parameters are f32 either way.
    #[module(skip)]
    pub precision: Precision,
}

impl<B: IreOps> Llama<B> {
    /// The same model computing in `precision` (parameters untouched).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The dtype of the matmuls for activations of `dtype`: the model's compute dtype when the
    /// activations are f32, else theirs (f64 in the finite-difference tests stays f64).
    fn compute_dtype(&self, dtype: DType) -> DType {
        match dtype {
            DType::F32 => self.precision.compute().into(),
            other => other,
        }
    }

    /// The final hidden states (after the last norm), the LM head's input.
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]` (any length: RoPE extends past `max_position_embeddings`)
    /// - returns: `[batch, seq, hidden]`
    pub fn hidden(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [_, s] = tokens.dims();
        let device = tokens.device();
        let rope = self.rope.tables::<B>(s, &device);
        let mut x = embedding(self.model.embed_tokens.weight.val(), tokens);
        let compute = self.compute_dtype(x.dtype());
        for layer in &self.model.layers {
            x = layer.forward(x, &rope, compute);
        }
        self.model.norm.forward(x)
    }

    /// The LM head's weight `[vocab, hidden]`: `lm_head.weight`, or the embedding when tied.
    pub fn head_weight(&self) -> Tensor<B, 2> {
        match &self.lm_head {
            Some(head) => head.weight.val(),
            None => self.model.embed_tokens.weight.val(),
        }
    }

    /// The final hidden states and the head's weight in the compute dtype (the LM head's
    /// matmul runs in it; its log-softmax widens to f32).
    fn head_inputs(&self, tokens: Tensor<B, 2, Int>) -> (Tensor<B, 3>, Tensor<B, 2>) {
        let h = self.hidden(tokens);
        let compute = self.compute_dtype(h.dtype());
        (cast_to(h, compute), cast_to(self.head_weight(), compute))
    }

    /// Next-token logits for every position (f32 under mixed precision).
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]` → `[batch, seq, vocab]`
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let (h, w) = self.head_inputs(tokens);
        widen(ops::linear(h, w))
    }

    /// Mean next-token cross-entropy of `logits` against `targets` (log-softmax and gather:
    /// the plain formula, for logits computed elsewhere; [`Llama::loss`] never forms them).
    ///
    /// # Shapes
    /// - logits: `[batch, seq, vocab]`, targets: `[batch, seq]` → `[1]`
    pub fn cross_entropy(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
        let [b, s, v] = logits.dims();
        let logp = log_softmax(logits.reshape([b * s, v]), 1);
        let picked = logp.gather(1, targets.reshape([b * s, 1]));
        picked.mean().neg()
    }

    /// Mean next-token cross-entropy of the model on `inputs` against `targets`, fused with the
    /// LM head ([`ops::cross_entropy`]: the `[batch·seq, vocab]` logits never exist at once).
    ///
    /// # Shapes
    /// - inputs, targets: `[batch, seq]` → `[1]`
    pub fn loss(&self, inputs: Tensor<B, 2, Int>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
        let [b, s] = targets.dims();
        let (h, w) = self.head_inputs(inputs);
        let d = h.dims()[2];
        ops::cross_entropy(h.reshape([b * s, d]), w, targets.reshape([b * s]))
    }

    /// The loss against labels drawn from the model's own softmax, one uniform per position
    /// (GNB's sampled loss, fused like [`Llama::loss`]); returns the loss and the labels.
    ///
    /// # Shapes
    /// - inputs: `[batch, seq]`, uniforms: `[batch, seq]` → (`[1]`, `[batch, seq]`)
    pub fn sampled_loss(
        &self,
        inputs: Tensor<B, 2, Int>,
        uniforms: Tensor<B, 2>,
    ) -> (Tensor<B, 1>, Tensor<B, 2, Int>) {
        let [b, s] = inputs.dims();
        let (h, w) = self.head_inputs(inputs);
        let d = h.dims()[2];
        let u = uniforms.reshape([b * s]);
        let (loss, labels) = ops::sampled_cross_entropy(h.reshape([b * s, d]), w, u);
        (loss, labels.reshape([b, s]))
    }
}
