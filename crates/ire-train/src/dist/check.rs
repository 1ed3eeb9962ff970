//! The all-reduce check of `ire bench allreduce`: every rank sums a bucket of known values
//! through its engine, compares the result with the sum computed on the host (exact: the
//! values are small integers), and times further sums of the same bucket for the bandwidth.
//! Any engine and backend: the CUDA build checks NCCL in place on the GPU's buffers, the CPU
//! build the in-process and MPI engines.
//!
//! Rank `r` holds `(i % 97) * (r + 1)` at index `i`, so the sum is `(i % 97) * w (w + 1) / 2`
//! for `w` ranks; every partial sum is an integer below 2^24, exact in f32 in any order.
//! The timed sums chain on the result (each rank then holds the same values, so each sum
//! multiplies them by `w`): no copy is timed with the collective.

use std::time::Instant;

use burn::prelude::*;
use serde_json::{json, Value};

use crate::dist::engine::Engine;
use crate::TrainError;

/// Sums one bucket of `bytes` (f32 elements, rounded down) and checks it, then times `reps`
/// more sums. Every rank calls it with the same arguments; every rank gets the same answer:
/// the largest error over all ranks and whether all were exact (`ok`).
pub fn check_size<B: Backend>(
    engine: &dyn Engine<B>,
    device: &B::Device,
    bytes: usize,
    reps: usize,
) -> Result<Value, TrainError> {
    let rank = engine.rank();
    let n = bytes / 4;
    let mine: Vec<f32> = (0..n)
        .map(|i| (i % 97) as f32 * (rank.index + 1) as f32)
        .collect();
    let bucket = Tensor::<B, 1>::from_data(TensorData::new(mine, [n]), device);
    let summed = engine.sum_device(bucket)?;
    let got = summed
        .clone()
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| TrainError::Collective(format!("reading the summed bucket: {e:?}")))?;
    let factor = (rank.world * (rank.world + 1) / 2) as f32;
    let mut error = if got.len() == n {
        0.0f32
    } else {
        f32::INFINITY
    };
    for (i, v) in got.iter().enumerate() {
        let off = (v - (i % 97) as f32 * factor).abs();
        error = if off.is_nan() {
            f32::INFINITY
        } else {
            error.max(off)
        };
    }
    let mut errors = vec![0.0f32; rank.world];
    errors[rank.index] = error;
    let max_error = engine.sum_host(&errors)?.into_iter().fold(0.0f32, f32::max);
    let started = Instant::now();
    let mut chained = summed;
    for _ in 0..reps {
        chained = engine.sum_device(chained)?;
    }
    let seconds = started.elapsed().as_secs_f64() / reps.max(1) as f64;
    drop(chained);
    let algbw = (n * 4) as f64 / seconds.max(1e-12) / 1e9;
    let busbw = algbw * 2.0 * (rank.world as f64 - 1.0) / rank.world as f64;
    Ok(json!({
        "bytes": n * 4,
        "elements": n,
        "max_abs_error": max_error,
        "ok": max_error == 0.0,
        "ms": seconds * 1e3,
        "algbw_gb_s": if reps > 0 { json!(algbw) } else { Value::Null },
        "busbw_gb_s": if reps > 0 { json!(busbw) } else { Value::Null },
    }))
}

/// [`check_size`] for each of `sizes` (bytes), as one JSON object: the engine, the world,
/// one entry per size, and `ok` when every size was exact.
pub fn allreduce_check<B: Backend>(
    engine: &dyn Engine<B>,
    device: &B::Device,
    sizes: &[usize],
    reps: usize,
) -> Result<Value, TrainError> {
    let mut results = Vec::with_capacity(sizes.len());
    for &bytes in sizes {
        results.push(check_size(engine, device, bytes, reps)?);
    }
    let ok = results.iter().all(|r| r["ok"] == json!(true));
    Ok(json!({
        "check": "allreduce",
        "engine": engine.name(),
        "world": engine.rank().world,
        "reps": reps,
        "sizes": results,
        "ok": ok,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::engine::Rank;
    use crate::dist::local::{self, LocalEngine};
    use burn::backend::Flex;

    type B = Flex;

    #[test]
    fn one_rank_sums_to_its_own_values() {
        let device = Default::default();
        let engine = LocalEngine::<B>::join(Rank::SOLO, &device).unwrap();
        let out = allreduce_check::<B>(&engine, &device, &[4096, 10_001], 2).unwrap();
        assert_eq!(out["ok"], json!(true), "{out}");
        assert_eq!(out["sizes"][1]["elements"], json!(2500));
        assert_eq!(out["engine"], json!("local"));
    }

    #[test]
    fn two_ranks_agree_on_the_exact_sum() {
        local::reset::<B>();
        let outs: Vec<Value> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|index| {
                    s.spawn(move || {
                        let device = Default::default();
                        let rank = Rank { index, world: 2 };
                        let engine = LocalEngine::<B>::join(rank, &device).unwrap();
                        let out = allreduce_check::<B>(&engine, &device, &[400, 4000], 1);
                        engine.finish().unwrap();
                        out.unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for out in outs {
            assert_eq!(out["ok"], json!(true), "{out}");
            assert_eq!(out["world"], json!(2));
            assert_eq!(out["sizes"][0]["max_abs_error"], json!(0.0));
        }
    }

    /// An engine that adds one to every summed value: the check must say so.
    struct OffByOne(LocalEngine<B>);

    impl Engine<B> for OffByOne {
        fn name(&self) -> &'static str {
            "off-by-one"
        }
        fn rank(&self) -> Rank {
            self.0.rank()
        }
        fn sum_device(&self, bucket: Tensor<B, 1>) -> Result<Tensor<B, 1>, TrainError> {
            Ok(self.0.sum_device(bucket)?.add_scalar(1.0))
        }
        fn sum_host(&self, values: &[f32]) -> Result<Vec<f32>, TrainError> {
            self.0.sum_host(values)
        }
    }

    #[test]
    fn a_wrong_sum_is_reported() {
        let device = Default::default();
        let engine = OffByOne(LocalEngine::<B>::join(Rank::SOLO, &device).unwrap());
        let out = allreduce_check::<B>(&engine, &device, &[400], 0).unwrap();
        assert_eq!(out["ok"], json!(false), "{out}");
        assert_eq!(out["sizes"][0]["max_abs_error"], json!(1.0));
        assert_eq!(out["sizes"][0]["algbw_gb_s"], Value::Null);
    }
}
