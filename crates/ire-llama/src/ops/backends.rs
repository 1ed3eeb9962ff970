//! Backends that run the composed reference of every op (the trait's default methods).

use burn::backend::NdArray;

use super::IreOps;

impl IreOps for NdArray<f32> {}
impl IreOps for NdArray<f64> {}

#[cfg(feature = "cuda")]
impl IreOps for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl IreOps for burn::backend::Wgpu {}
