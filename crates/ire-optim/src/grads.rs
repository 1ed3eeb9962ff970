//! Whole-model operations on [`GradientsParams`]: visiting every parameter's gradient as a
//! flat tensor, scaling and adding them (for gradient accumulation and data parallelism).
//!
//! `GradientsParams` holds one tensor per `ParamId` on the inner (non-autodiff) backend, with
//! the parameter's rank; the module is needed to know that rank, so each function takes it.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// The inner backend's flat gradient of one parameter.
pub(crate) type Flat<B> = Tensor<<B as AutodiffBackend>::InnerBackend, 1>;

struct Visit<'a, F> {
    grads: &'a GradientsParams,
    f: F,
}

impl<B: AutodiffBackend, F: FnMut(ParamId, Flat<B>)> ModuleVisitor<B> for Visit<'_, F> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let n = g.shape().num_elements();
            (self.f)(param.id, g.reshape([n]));
        }
    }
}

/// Calls `f(id, flat_gradient)` for every parameter of `module` that has a gradient, in the
/// module's visiting order.
pub(crate) fn for_each_grad<B, M, F>(module: &M, grads: &GradientsParams, f: F)
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    F: FnMut(ParamId, Flat<B>),
{
    module.visit(&mut Visit { grads, f });
}

struct Map<'a, F> {
    grads: &'a mut GradientsParams,
    f: F,
}

impl<B: AutodiffBackend, F: FnMut(ParamId, Flat<B>) -> Flat<B>> ModuleVisitor<B> for Map<'_, F> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let dims = g.dims();
            let n = g.shape().num_elements();
            let out = (self.f)(param.id, g.reshape([n]));
            self.grads.register(param.id, out.reshape(dims));
        }
    }
}

/// Replaces every gradient `g` of `module`'s parameters by `f(id, g)` (flat in, flat out, same
/// length).
pub(crate) fn map_grads<B, M, F>(module: &M, mut grads: GradientsParams, f: F) -> GradientsParams
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    F: FnMut(ParamId, Flat<B>) -> Flat<B>,
{
    module.visit(&mut Map {
        grads: &mut grads,
        f,
    });
    grads
}

/// `factor · g` for every gradient (e.g. `1/accum` for micro-batch accumulation, `1/world` after
/// a sum all-reduce). Gradients of parameters not in `module` are dropped.
pub fn scale_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    grads: GradientsParams,
    factor: f64,
    module: &M,
) -> GradientsParams {
    map_grads(module, grads, |_, g| g.mul_scalar(factor))
}

struct Add<'a> {
    a: &'a mut GradientsParams,
    b: &'a mut GradientsParams,
    out: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Add<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let a = self.a.remove::<B::InnerBackend, D>(param.id);
        let b = self.b.remove::<B::InnerBackend, D>(param.id);
        let sum = match (a, b) {
            (Some(a), Some(b)) => a + b,
            (Some(g), None) | (None, Some(g)) => g,
            (None, None) => return,
        };
        self.out.register(param.id, sum);
    }
}

/// `a + b` parameter by parameter (a parameter present in only one of them keeps that
/// gradient). Use it to accumulate micro-batches: `acc = add_gradients(acc, g, &model)`.
pub fn add_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    mut a: GradientsParams,
    mut b: GradientsParams,
    module: &M,
) -> GradientsParams {
    let mut add = Add {
        a: &mut a,
        b: &mut b,
        out: GradientsParams::new(),
    };
    module.visit(&mut add);
    add.out
}

struct Synthetic {
    rng: ire_core::SplitMix64,
    std: f64,
    out: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Synthetic {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        let shape = value.shape();
        let data: Vec<f32> = (0..shape.num_elements())
            .map(|_| (self.rng.normal() * self.std) as f32)
            .collect();
        let grad =
            Tensor::<B::InnerBackend, D>::from_data(TensorData::new(data, shape), &value.device());
        self.out.register(param.id, grad);
    }
}

/// Seeded N(0, std²) gradients for every parameter of `module`, drawn on the host. For tests
/// and benchmarks that need gradients of the right shapes without a backward pass.
pub fn synthetic_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    seed: u64,
    std: f64,
) -> GradientsParams {
    let mut v = Synthetic {
        rng: ire_core::SplitMix64::new(seed),
        std,
        out: GradientsParams::new(),
    };
    module.visit(&mut v);
    v.out
}
