//! Sophia's Gauss-Newton-Bartlett (GNB) estimate of the diagonal Hessian, the estimator the
//! paper uses (its Eq. 6).
//!
//! On a fresh batch, sample one label per token from the model's own softmax, take the mean
//! cross-entropy against the sampled labels and backpropagate:
//!
//! ```text
//! ŷ_i ~ softmax(f(θ; x)_i)          ĝ = ∇θ (1/N) Σ_i CE(f(θ; x)_i, ŷ_i)          h = N · ĝ ⊙ ĝ
//! ```
//!
//! `E[N ĝ²]` is the diagonal of the Gauss-Newton matrix of the mean loss. The factor N (and
//! the choice ĝ² vs |ĝ|) does not change the ranking, so [`gnb_gradients`] returns ĝ and the
//! optimizer's `refresh_mask` forms `h` — after the trainer has averaged ĝ over micro-batches
//! ([`crate::scale_gradients`], [`crate::add_gradients`]) and data-parallel replicas.
//!
//! Labels are drawn by inverse-CDF sampling on the device: `ŷ = #{j : cdf_j < u}` with
//! `cdf = cumsum(softmax(logits))` and one uniform `u` per token. The uniforms come from a
//! SplitMix64 stream keyed by ([`gnb_seed`]`(seed, iteration)`, global sample index of the row),
//! so a sample gets the same labels whichever rank or micro-batch it lands in (2 devices ×
//! B/2 estimate exactly what 1 device × B does), a resumed run draws the same labels, and no
//! process-wide backend generator is involved. Only `batch × seq` uniforms cross to the device.
//! No gradient flows through the sampling.

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use ire_core::{splitmix64, SplitMix64};
use ire_llama::{IreOps, Llama};

/// A model that maps token ids to next-token logits (what GNB needs from it).
pub trait LogitsModel<B: Backend> {
    /// Logits for every position.
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]` → `[batch, seq, vocab]`
    fn logits(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3>;

    /// Mean cross-entropy against labels drawn from the model's own softmax, row `i` with
    /// `uniforms[i]` (inverse CDF). The default forms the logits; a model with a fused LM head
    /// overrides it so the logits never exist at once.
    ///
    /// # Shapes
    /// - tokens, uniforms: `[batch, seq]` → `[1]`
    fn sampled_loss(&self, tokens: Tensor<B, 2, Int>, uniforms: Tensor<B, 2>) -> Tensor<B, 1> {
        let logits = self.logits(tokens);
        let [b, s, v] = logits.dims();
        let flat = logits.reshape([b * s, v]);
        let labels = ire_llama::ops::reference::sample_labels(
            flat.clone().detach(),
            uniforms.reshape([b * s]),
        );
        let logp = log_softmax(flat, 1);
        logp.gather(1, labels.reshape([b * s, 1])).mean().neg()
    }
}

impl<B: IreOps> LogitsModel<B> for Llama<B> {
    fn logits(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.forward(tokens)
    }

    fn sampled_loss(&self, tokens: Tensor<B, 2, Int>, uniforms: Tensor<B, 2>) -> Tensor<B, 1> {
        Llama::sampled_loss(self, tokens, uniforms).0
    }
}

/// The GNB seed of one mask refresh: a hash of the run seed and the iteration.
pub fn gnb_seed(seed: u64, iteration: u64) -> u64 {
    splitmix64(splitmix64(seed) ^ iteration)
}

/// The uniforms of a `[batch, seq]` batch whose first row is global sample `first_sample`:
/// row `r` is the SplitMix64 stream of sample `first_sample + r` under `seed`.
pub fn gnb_uniforms<B: Backend>(
    batch: usize,
    seq: usize,
    seed: u64,
    first_sample: u64,
    device: &B::Device,
) -> Tensor<B, 2> {
    let mut uniforms = Vec::with_capacity(batch * seq);
    for r in 0..batch as u64 {
        let mut rng = SplitMix64::new(splitmix64(seed ^ splitmix64(first_sample + r)));
        uniforms.extend((0..seq).map(|_| rng.unit() as f32));
    }
    Tensor::from_data(TensorData::new(uniforms, [batch, seq]), device)
}

/// One label per position sampled from `softmax(logits)`; row `r` uses the uniform stream of
/// global sample `first_sample + r` under `seed` ([`gnb_uniforms`]).
///
/// # Shapes
/// - logits: `[batch, seq, vocab]` → `[batch, seq]`
pub fn sample_labels<B: Backend>(
    logits: Tensor<B, 3>,
    seed: u64,
    first_sample: u64,
) -> Tensor<B, 2, Int> {
    let [b, s, v] = logits.dims();
    let u = gnb_uniforms::<B>(b, s, seed, first_sample, &logits.device());
    ire_llama::ops::reference::sample_labels(logits.reshape([b * s, v]), u.reshape([b * s]))
        .reshape([b, s])
}

/// The GNB gradient ĝ of `model` on `tokens` (a fresh batch whose first row is global sample
/// `first_sample`), with labels sampled from the model under `seed` (use [`gnb_seed`]). Hand the
/// result (accumulated and all-reduced as needed) to the optimizer's `refresh_mask`; it is not
/// clipped (the ranking does not care).
///
/// # Shapes
/// - tokens: `[batch, seq]`
pub fn gnb_gradients<B, M>(
    model: &M,
    tokens: Tensor<B, 2, Int>,
    seed: u64,
    first_sample: u64,
) -> GradientsParams
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + LogitsModel<B>,
{
    let [b, s] = tokens.dims();
    let uniforms = gnb_uniforms::<B>(b, s, seed, first_sample, &tokens.device());
    let loss = model.sampled_loss(tokens, uniforms);
    GradientsParams::from_grads(loss.backward(), model)
}
