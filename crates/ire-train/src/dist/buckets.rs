//! Gradients as flat buckets, the unit every engine all-reduces: the model's gradients are
//! taken in the module's visiting order (the same on every rank, whatever the parameter ids),
//! flattened, concatenated into buckets of at most `bucket_elems` elements (a larger
//! parameter is a bucket of its own), reduced, scaled by `1/world` and put back.
//!
//! The order of visits, not burn's `ParamId`, pairs tensors across processes: ids are drawn
//! at random in each process. Concatenation also makes every bucket one fresh, contiguous,
//! exclusively owned buffer, which NCCL can reduce in place.

use burn::module::{ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use ire_llama::Llama;
use ire_optim::TrainBackend;

use crate::TrainError;

type Inner<B> = <B as burn::tensor::backend::AutodiffBackend>::InnerBackend;

/// Takes every gradient out of `grads`, flat, with its parameter's id, in visiting order.
struct Take<'a, B: TrainBackend> {
    grads: &'a mut GradientsParams,
    out: Vec<(ParamId, Tensor<Inner<B>, 1>)>,
}

impl<B: TrainBackend> ModuleVisitor<B> for Take<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<Inner<B>, D>(param.id) {
            let n = g.shape().num_elements();
            self.out.push((param.id, g.reshape([n])));
        }
    }
}

/// Puts reduced flat gradients back, in the same order, with each parameter's shape.
struct Give<B: TrainBackend> {
    flats: std::iter::Peekable<std::vec::IntoIter<(ParamId, Tensor<Inner<B>, 1>)>>,
    grads: GradientsParams,
}

impl<B: TrainBackend> ModuleVisitor<B> for Give<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some((_, flat)) = self.flats.next_if(|(id, _)| *id == param.id) {
            let dims: [usize; D] = param.val().dims();
            self.grads.register(param.id, flat.reshape(dims));
        }
    }
}

/// The mean of `grads` over the ranks: buckets of at most `bucket_elems` elements, each
/// summed by `sum` (the engine), then scaled by `1/world`.
pub fn mean_gradients<B: TrainBackend>(
    model: &Llama<B>,
    mut grads: GradientsParams,
    world: usize,
    bucket_elems: usize,
    mut sum: impl FnMut(Tensor<Inner<B>, 1>) -> Result<Tensor<Inner<B>, 1>, TrainError>,
) -> Result<GradientsParams, TrainError> {
    let mut take = Take::<B> {
        grads: &mut grads,
        out: Vec::new(),
    };
    model.visit(&mut take);
    let (ids, flats): (Vec<ParamId>, Vec<_>) = take.out.into_iter().unzip();
    let scale = 1.0 / world as f64;
    let lens: Vec<usize> = flats.iter().map(|f| f.dims()[0]).collect();
    let mut reduced = Vec::with_capacity(flats.len());
    // Each tensor is moved into its bucket (not cloned), so a one-parameter bucket is owned
    // alone and an engine can reduce it in place.
    let mut flats = flats.into_iter();
    for bucket in plan(&lens, bucket_elems) {
        let mut parts: Vec<_> = flats.by_ref().take(bucket.len()).collect();
        let joined = match parts.len() {
            1 => parts.remove(0),
            _ => Tensor::cat(parts, 0),
        };
        let mean = sum(joined)?.mul_scalar(scale);
        let mut at = 0;
        for &n in &lens[bucket] {
            reduced.push(mean.clone().narrow(0, at, n));
            at += n;
        }
    }
    let mut give = Give::<B> {
        flats: ids
            .into_iter()
            .zip(reduced)
            .collect::<Vec<_>>()
            .into_iter()
            .peekable(),
        grads,
    };
    model.visit(&mut give);
    Ok(give.grads)
}

/// Consecutive ranges of `lens` whose sums stay within `limit` (a longer one alone).
pub fn plan(lens: &[usize], limit: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, &n) in lens.iter().enumerate() {
        if i > start && size + n > limit {
            out.push(start..i);
            (start, size) = (i, 0);
        }
        size += n;
    }
    if start < lens.len() {
        out.push(start..lens.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use ire_llama::{InitScheme, LlamaConfig};

    type B = Autodiff<Flex>;

    /// Every gradient of `grads` for `model`'s parameters, flat, in visiting order.
    fn flat(model: &Llama<B>, grads: &GradientsParams) -> Vec<Vec<f32>> {
        struct Read<'a>(&'a GradientsParams, Vec<Vec<f32>>);
        impl ModuleVisitor<B> for Read<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if let Some(g) = self.0.get::<Inner<B>, D>(param.id) {
                    self.1.push(g.into_data().to_vec().unwrap());
                }
            }
        }
        let mut read = Read(grads, Vec::new());
        model.visit(&mut read);
        read.1
    }

    #[test]
    fn the_mean_over_buckets_puts_every_gradient_back_with_its_shape_and_value() {
        let device = Default::default();
        let mut cfg = LlamaConfig::preset("tiny").unwrap();
        (
            cfg.vocab_size,
            cfg.num_hidden_layers,
            cfg.hidden_size,
            cfg.intermediate_size,
        ) = (64, 2, 32, 64);
        let model = Llama::<B>::init(&cfg, InitScheme::Torch, 0, &device).unwrap();
        let tokens = Tensor::<B, 2, Int>::from_ints([[1, 2, 3, 4, 5]], &device);
        let (x, y) = (
            tokens.clone().slice([0..1, 0..4]),
            tokens.slice([0..1, 1..5]),
        );
        let grads = || {
            crate::step::forward_backward(&model, 1, || Ok((x.clone(), y.clone())))
                .unwrap()
                .grads
        };
        let before = flat(&model, &grads());
        let largest = before.iter().map(Vec::len).max().unwrap();
        // Three "ranks" holding the same gradient: the mean is the gradient. Small buckets (a
        // few parameters each, the largest alone) and one bucket for all must both hold.
        for limit in [largest / 2, largest, usize::MAX] {
            let mut buckets = 0;
            let mean = mean_gradients(&model, grads(), 3, limit, |b| {
                buckets += 1;
                Ok(b.mul_scalar(3.0))
            })
            .unwrap();
            let after = flat(&model, &mean);
            assert_eq!(before.len(), after.len());
            for (a, b) in before.iter().zip(&after) {
                assert_eq!(a.len(), b.len());
                for (p, q) in a.iter().zip(b) {
                    assert!((p - q).abs() <= 1e-6 * p.abs().max(1e-6), "{p} vs {q}");
                }
            }
            let expected = plan(&before.iter().map(Vec::len).collect::<Vec<_>>(), limit).len();
            assert_eq!(buckets, expected, "limit {limit}");
            assert!(limit == usize::MAX || buckets > 1);
        }
    }

    #[test]
    fn buckets_are_consecutive_and_within_the_limit_unless_one_parameter_is_larger() {
        assert_eq!(plan(&[3, 3, 3, 3], 6), vec![0..2, 2..4]);
        assert_eq!(plan(&[3, 10, 2, 2, 7], 6), vec![0..1, 1..2, 2..4, 4..5]);
        assert_eq!(plan(&[1, 1, 1], 100), vec![0..3]);
        assert_eq!(plan(&[], 4), Vec::<std::ops::Range<usize>>::new());
    }
}
