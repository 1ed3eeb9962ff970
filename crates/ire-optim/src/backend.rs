//! The one backend bound of training code: [`TrainBackend`], an autodiff backend whose forward
//! runs ire's fused ops and whose inner backend has the fused ops' backward and the fused
//! optimizer kernels. A blanket impl covers every backend that qualifies (`Autodiff<Flex>`,
//! `Autodiff<NdArray>`, `Autodiff<Cuda>`, `Autodiff<Wgpu>`), so entry points say
//! `B: TrainBackend` instead of repeating the where clauses.

use burn::tensor::backend::AutodiffBackend;
use ire_llama::IreOps;

use crate::FusedUpdate;

/// A backend ire can train on; see the module docs.
pub trait TrainBackend: AutodiffBackend<InnerBackend: IreOps + FusedUpdate> + IreOps {}

impl<B> TrainBackend for B where B: AutodiffBackend<InnerBackend: IreOps + FusedUpdate> + IreOps {}
