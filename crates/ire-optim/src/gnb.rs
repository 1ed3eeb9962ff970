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
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::AutodiffBackend;
use ire_llama::{Llama, SplitMix64};

/// A model that maps token ids to next-token logits (what GNB needs from it).
pub trait LogitsModel<B: Backend> {
    /// Logits for every position.
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]` → `[batch, seq, vocab]`
    fn logits(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3>;
}

impl<B: Backend> LogitsModel<B> for Llama<B> {
    fn logits(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.forward(tokens)
    }
}

fn mix(x: u64) -> u64 {
    SplitMix64::new(x).next_u64()
}

/// The GNB seed of one mask refresh: a hash of the run seed and the iteration.
pub fn gnb_seed(seed: u64, iteration: u64) -> u64 {
    mix(mix(seed) ^ iteration)
}

/// One label per position sampled from `softmax(logits)`; row `r` uses the uniform stream of
/// global sample `first_sample + r` under `seed`.
///
/// # Shapes
/// - logits: `[batch, seq, vocab]` → `[batch, seq]`
pub fn sample_labels<B: Backend>(
    logits: Tensor<B, 3>,
    seed: u64,
    first_sample: u64,
) -> Tensor<B, 2, Int> {
    let [b, s, v] = logits.dims();
    let device = logits.device();
    let mut uniforms = Vec::with_capacity(b * s);
    for r in 0..b as u64 {
        let mut rng = SplitMix64::new(mix(seed ^ mix(first_sample + r)));
        uniforms.extend((0..s).map(|_| rng.unit() as f32));
    }
    let u = Tensor::<B, 2>::from_data(TensorData::new(uniforms, [b * s, 1]), &device);
    let cdf = softmax(logits.reshape([b * s, v]), 1).cumsum(1);
    // Rounding can leave cdf's last entry just below u; clamp to the last class.
    let below = cdf.lower(u.expand([b * s, v])).int().sum_dim(1);
    below.clamp_max((v - 1) as i64).reshape([b, s])
}

/// Mean cross-entropy of `logits` against `labels`.
///
/// # Shapes
/// - logits: `[batch, seq, vocab]`, labels: `[batch, seq]` → `[1]`
fn mean_cross_entropy<B: Backend>(logits: Tensor<B, 3>, labels: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let [b, s, v] = logits.dims();
    let logp = log_softmax(logits.reshape([b * s, v]), 1);
    logp.gather(1, labels.reshape([b * s, 1])).mean().neg()
}

/// The GNB gradient ĝ of `model` on `tokens` (a fresh batch whose first row is global sample
/// `first_sample`), with labels sampled from the model under `seed` (use [`gnb_seed`]). Hand the result (accumulated and all-reduced as
/// needed) to the optimizer's `refresh_mask`; it is not clipped (the ranking does not care).
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
    let logits = model.logits(tokens);
    let labels = sample_labels(logits.clone().detach(), seed, first_sample);
    let loss = mean_cross_entropy(logits, labels);
    GradientsParams::from_grads(loss.backward(), model)
}
