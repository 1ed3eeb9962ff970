//! Text generation: incremental decoding with a key/value cache, and sampling (greedy, or
//! temperature with top-k, seeded). The prompt and the new tokens together stay within the
//! model's context (`max_position_embeddings`, [`room_after`]): past it RoPE positions were
//! never trained, so the text would be garbage.
//!
//! [`Llama::forward_cached`] runs the model on new tokens only, attending to the keys and values
//! cached for the earlier positions; it is built from composed tensor ops (inference only, any
//! backend) and equals [`Llama::forward`] on the whole sequence (tested). Per layer and token:
//!
//! ```text
//! q, k, v = x·Wqᵀ, x·Wkᵀ, x·Wvᵀ          RoPE on q and k at positions past_len + i
//! K, V    = [cache.K ; k], [cache.V ; v]   query i sees keys 0 … past_len + i
//! y       = softmax(q·Kᵀ / √hd) · V        (GQA: query head j uses kv head j / (H / KVH))
//! ```

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::embedding;

use crate::model::Attention;
use crate::ops::{self, IreOps};
use crate::{Llama, LlamaConfig};
use ire_core::SplitMix64;

/// The keys and values of the positions decoded so far, per layer, `[batch, pos, kv_heads,
/// head_dim]`.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model with `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
        }
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<B: IreOps> Llama<B> {
    /// Next-token logits for `tokens`, which continue the sequence held in `cache` (appended to
    /// it).
    ///
    /// # Shapes
    /// - tokens: `[batch, new]` → `[batch, new, vocab]`
    pub fn forward_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        let [_, s] = tokens.dims();
        let device = tokens.device();
        let past = cache.len;
        let (cos, sin) = self.rope.tables::<B>(past + s, &device).tables();
        let hd = cos.dims()[1];
        let (cos, sin) = (
            cos.slice([past..past + s, 0..hd]),
            sin.slice([past..past + s, 0..hd]),
        );
        let mut x = embedding(self.model.embed_tokens.weight.val(), tokens);
        for (layer, slot) in self.model.layers.iter().zip(cache.layers.iter_mut()) {
            let normed = layer.input_layernorm.forward(x.clone());
            let (y, kv) = attend_cached(&layer.self_attn, normed, &cos, &sin, slot.take(), past);
            *slot = Some(kv);
            x = x + y;
            x = x.clone() + layer.mlp.forward(layer.post_attention_layernorm.forward(x));
        }
        cache.len = past + s;
        ops::linear(self.model.norm.forward(x), self.head_weight())
    }
}

/// One attention block on new positions with cached keys/values; returns the output and the
/// extended cache entry.
fn attend_cached<B: IreOps>(
    attn: &Attention<B>,
    x: Tensor<B, 3>,
    cos: &Tensor<B, 2>,
    sin: &Tensor<B, 2>,
    cached: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
    past: usize,
) -> (Tensor<B, 3>, (Tensor<B, 4>, Tensor<B, 4>)) {
    let [b, s, d] = x.dims();
    let (h, kvh) = (attn.num_heads, attn.num_kv_heads);
    let hd = d / h;
    let rope = |t: Tensor<B, 4>| crate::rope::rope(t, cos.clone(), sin.clone());
    let q = rope(attn.q_proj.forward(x.clone()).reshape([b, s, h, hd]));
    let k = rope(attn.k_proj.forward(x.clone()).reshape([b, s, kvh, hd]));
    let v = attn.v_proj.forward(x).reshape([b, s, kvh, hd]);
    let (k, v) = match cached {
        Some((ck, cv)) => (Tensor::cat(vec![ck, k], 1), Tensor::cat(vec![cv, v], 1)),
        None => (k, v),
    };
    let total = past + s;
    // (B, T, KVH, hd) → (B, H, T, hd), each kv head repeated for its H / KVH query heads.
    let heads = |t: Tensor<B, 4>| {
        t.swap_dims(1, 2)
            .unsqueeze_dim::<5>(2)
            .repeat_dim(2, h / kvh)
            .reshape([b, h, total, hd])
    };
    let scores = q
        .swap_dims(1, 2)
        .matmul(heads(k.clone()).swap_dims(2, 3))
        .div_scalar((hd as f64).sqrt()); // (B, H, s, T)
    let future: Vec<bool> = (0..s)
        .flat_map(|i| (0..total).map(move |j| j > past + i))
        .collect();
    let mask =
        Tensor::<B, 2, Bool>::from_data(TensorData::new(future, [s, total]), &scores.device())
            .reshape([1, 1, s, total])
            .expand([b, h, s, total]);
    let probs = softmax(scores.mask_fill(mask, f32::NEG_INFINITY), 3);
    let y = probs
        .matmul(heads(v.clone()))
        .swap_dims(1, 2)
        .reshape([b, s, d]);
    (attn.o_proj.forward(y), (k, v))
}

/// How to pick the next token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 = greedy (argmax); otherwise logits are divided by it before the softmax.
    pub temperature: f64,
    /// Keep only the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Seed of the sampler (the same seed gives the same tokens).
    pub seed: u64,
}

/// How many new tokens fit after a prompt of `prompt_len` tokens: the prompt and the new tokens
/// together fill at most the model's context (`max_position_embeddings`).
pub fn room_after(config: &LlamaConfig, prompt_len: usize) -> usize {
    config.max_position_embeddings.saturating_sub(prompt_len)
}

/// Continues `prompt` (token ids, not empty) by up to `max_new` tokens, stopping early after
/// `stop` if given, and at the model's context ([`room_after`]; a caller that must not stop
/// short checks it first). Returns only the new tokens.
pub fn generate<B: IreOps>(
    model: &Llama<B>,
    prompt: &[u32],
    max_new: usize,
    sampling: &Sampling,
    stop: Option<u32>,
    device: &B::Device,
) -> Vec<u32> {
    let mut cache = KvCache::new(model.model.layers.len());
    let mut rng = SplitMix64::new(sampling.seed);
    let mut input: Vec<u32> = prompt.to_vec();
    let max_new = max_new.min(room_after(&model.config, prompt.len()));
    let mut out = Vec::with_capacity(max_new);
    while out.len() < max_new && !input.is_empty() {
        let ids: Vec<i64> = input.iter().map(|&t| t as i64).collect();
        let n = ids.len();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, n]), device);
        let logits = model.forward_cached(tokens, &mut cache);
        let vocab = logits.dims()[2];
        let last: Vec<f32> = logits
            .slice([0..1, n - 1..n, 0..vocab])
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        let next = pick(&last, sampling, &mut rng);
        out.push(next);
        if Some(next) == stop {
            break;
        }
        input = vec![next];
    }
    out
}

/// Picks a token from one row of logits.
pub fn pick(logits: &[f32], sampling: &Sampling, rng: &mut SplitMix64) -> u32 {
    let argmax = || {
        (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap_or(0) as u32
    };
    if sampling.temperature <= 0.0 || logits.is_empty() {
        return argmax();
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if sampling.top_k > 0 {
        order.truncate(sampling.top_k);
    }
    let top = logits[order[0]] as f64;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - top) / sampling.temperature).exp())
        .collect();
    let mut u = rng.unit() * weights.iter().sum::<f64>();
    for (&i, w) in order.iter().zip(&weights) {
        if u < *w {
            return i as u32;
        }
        u -= w;
    }
    order[order.len() - 1] as u32
}
