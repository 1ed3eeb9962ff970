//! GEMM throughput of the `gemm` crate (what burn-flex and ire's kernels use) on the training
//! step's shapes, 2 threads by RAYON_NUM_THREADS. Prints GFLOP/s per shape. Not a test.
//!
//! `cargo run --release -p ire-llama --example bench_gemm`

use std::time::Instant;

use ire_llama::ops::kernels::gemm::{matmul, Mat, Par};

fn bench(name: &str, m: usize, k: usize, n: usize, trans_b: bool) {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.01).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.01).collect();
    let mut c = vec![0.0f32; m * n];
    let am = Mat::rows(&a, m, k, k);
    let bm = if trans_b {
        Mat::rows(&b, n, k, k).t()
    } else {
        Mat::rows(&b, k, n, n)
    };
    let (mut best, mut fresh) = (f64::MAX, f64::MAX);
    for _ in 0..7 {
        let t = Instant::now();
        matmul(&mut c, n, am, bm, false, Par::All);
        best = best.min(t.elapsed().as_secs_f64());
        // The same product into a newly allocated output, as an op that returns a tensor does.
        let t = Instant::now();
        let mut out = vec![0.0f32; m * n];
        matmul(&mut out, n, am, bm, false, Par::All);
        fresh = fresh.min(t.elapsed().as_secs_f64());
        std::hint::black_box(out);
    }
    let gf = |s: f64| 2.0 * (m * n * k) as f64 / s / 1e9;
    println!(
        "{name:<28} {m:>5} x {k:>5} x {n:>5}  {:>7.2} ms  {:>6.1} GFLOP/s   fresh output {:>6.1} GFLOP/s",
        best * 1e3,
        gf(best),
        gf(fresh)
    );
}

fn main() {
    bench("60m qkvo fwd", 2048, 512, 512, true);
    bench("60m gate/up fwd", 2048, 512, 1376, true);
    bench("60m lm_head fwd", 2048, 512, 32000, true);
    bench("60m lm_head chunk fwd", 128, 512, 32000, true);
    bench("60m lm_head dW", 32000, 2048, 512, false);
    bench("square", 2048, 2048, 2048, false);
    bench("q/k/v/o fwd (x W^T)", 2048, 256, 256, true);
    bench("gate/up fwd", 2048, 256, 688, true);
    bench("down fwd", 2048, 688, 256, true);
    bench("lm_head fwd", 2048, 256, 8192, true);
    bench("lm_head dh (dz W)", 2048, 8192, 256, false);
    bench("lm_head dW (dz^T h)", 8192, 2048, 256, false);
    bench("gate dW (dy^T x)", 688, 2048, 256, false);
}
