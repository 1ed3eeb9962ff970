//! Walking a module's float parameters by their dotted HF names: listing them, reading them to
//! the host and replacing their values. Used by checkpoint I/O and by the optimizers' state.

use std::collections::HashMap;

use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

/// One float parameter as seen by a visitor.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    /// Dotted path, e.g. `model.layers.0.mlp.up_proj.weight`.
    pub name: String,
    /// Burn's id of the parameter (stable for the module's lifetime).
    pub id: ParamId,
    /// Tensor shape.
    pub shape: Vec<usize>,
}

/// Keeps the dotted path while a visitor/mapper walks the module tree.
#[derive(Default)]
struct PathStack(Vec<String>);

impl PathStack {
    fn push(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    fn pop(&mut self) {
        self.0.pop();
    }
    fn name(&self) -> String {
        self.0.join(".")
    }
}

struct Lister {
    path: PathStack,
    out: Vec<ParamInfo>,
    values: Option<Vec<Vec<f32>>>,
}

impl<B: Backend> ModuleVisitor<B> for Lister {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let tensor = param.val();
        self.out.push(ParamInfo {
            name: self.path.name(),
            id: param.id,
            shape: tensor.dims().to_vec(),
        });
        if let Some(values) = &mut self.values {
            let data = tensor.into_data().convert::<f32>();
            values.push(data.into_vec::<f32>().expect("converted to f32 just above"));
        }
    }
}

/// The float parameters of `module` in visiting order (deterministic for a given type).
pub fn named_params<B: Backend, M: Module<B>>(module: &M) -> Vec<ParamInfo> {
    let mut lister = Lister {
        path: PathStack::default(),
        out: Vec::new(),
        values: None,
    };
    module.visit(&mut lister);
    lister.out
}

/// The float parameters of `module` with their values copied to the host as f32.
pub fn named_values<B: Backend, M: Module<B>>(module: &M) -> Vec<(ParamInfo, Vec<f32>)> {
    let mut lister = Lister {
        path: PathStack::default(),
        out: Vec::new(),
        values: Some(Vec::new()),
    };
    module.visit(&mut lister);
    let values = lister.values.unwrap_or_default();
    lister.out.into_iter().zip(values).collect()
}

struct Replacer<'a> {
    path: PathStack,
    values: &'a mut HashMap<String, Vec<f32>>,
}

impl<B: Backend> ModuleMapper<B> for Replacer<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let Some(v) = self.values.remove(&self.path.name()) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.shape();
        let device = tensor.device();
        let tracked = tensor.is_require_grad();
        let new = Tensor::<B, D>::from_data(TensorData::new(v, shape), &device);
        // An autodiff parameter stays one: gradients reach the new values too.
        let new = if tracked { new.require_grad() } else { new };
        Param::from_mapped_value(id, new, mapper)
    }
}

/// Replaces the values of the named parameters (keeping their ids and whether autodiff tracks
/// them). Each value must have the parameter's element count; names that are not parameters are
/// left in `values`.
pub fn replace_values<B: Backend, M: Module<B>>(
    module: M,
    values: &mut HashMap<String, Vec<f32>>,
) -> M {
    let mut replacer = Replacer {
        path: PathStack::default(),
        values,
    };
    module.map(&mut replacer)
}

struct FiniteCheck {
    path: PathStack,
    bad: Vec<String>,
}

impl<B: Backend> ModuleVisitor<B> for FiniteCheck {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let finite: bool = param.val().is_finite().all().into_scalar().elem();
        if !finite {
            self.bad.push(self.path.name());
        }
    }
}

/// Names of the parameters holding a NaN or an infinity (one reduction per parameter on its
/// device; empty when all are finite).
pub fn non_finite_params<B: Backend, M: Module<B>>(module: &M) -> Vec<String> {
    let mut check = FiniteCheck {
        path: PathStack::default(),
        bad: Vec::new(),
    };
    module.visit(&mut check);
    check.bad
}
