//! burn-flex tensors as the CPU kernels of [`crate::fused`] and [`crate::fused_bases`] take
//! them: owned, contiguous f32 storage, updated in place by rayon tasks of [`CHUNK`] values.

use burn::backend::flex::FlexTensor;
use burn::prelude::*;

/// Coordinates per rayon task.
pub(crate) const CHUNK: usize = 1 << 14;

/// Owned, contiguous f32 storage of a tensor (copied only when shared or strided).
pub(crate) fn owned(t: FlexTensor) -> FlexTensor {
    let t = if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    };
    let shape = t.layout().shape().clone();
    let n = shape.num_elements();
    if t.layout().start_offset() == 0 && t.bytes().len() == n * 4 {
        t
    } else {
        FlexTensor::from_data(TensorData::new(
            t.as_slice::<f32>().expect("contiguous").to_vec(),
            shape,
        ))
    }
}
