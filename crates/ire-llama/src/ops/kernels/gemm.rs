//! Matrix products through the `gemm` crate (the one burn-flex uses; AVX-512 kernels with the
//! workspace's `x86-v4` feature, chosen at run time), on strided views of slices so that
//! transposed operands and head-strided layouts cost no copy.

/// A read-only matrix view: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    /// Backing storage; every addressed element must lie inside it.
    pub data: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Row stride (elements).
    pub rs: usize,
    /// Column stride (elements).
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows × cols` matrix with rows `ld` apart.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: ld,
            cs: 1,
        }
    }

    /// The transpose (a view).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Rows `start .. start + n` (a view).
    pub fn row_range(self, start: usize, n: usize) -> Self {
        let off = (start * self.rs).min(self.data.len());
        Self {
            data: &self.data[off..],
            rows: n,
            ..self
        }
    }

    /// Columns `start .. start + n` (a view).
    pub fn col_range(self, start: usize, n: usize) -> Self {
        let off = (start * self.cs).min(self.data.len());
        Self {
            data: &self.data[off..],
            cols: n,
            ..self
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// Threads for one product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Par {
    /// This thread only (inside a parallel loop).
    Seq,
    /// Every rayon thread.
    All,
}

/// `dst ← beta·dst + a·b` (`beta` ∈ {0, 1}: overwrite or accumulate) where `dst` is row-major
/// `a.rows × b.cols` with rows `ld` apart.
///
/// # Panics
/// When the shapes disagree or a view addresses memory outside its slice (an internal
/// invariant of the kernels, never user input).
pub fn matmul(dst: &mut [f32], ld: usize, a: Mat<'_>, b: Mat<'_>, accumulate: bool, par: Par) {
    let (m, n) = (a.rows, b.cols);
    if m > 0 && n > 0 {
        assert!(
            (m - 1) * ld + n <= dst.len(),
            "gemm destination out of bounds"
        );
    }
    // SAFETY: dst is a valid, exclusively borrowed slice covering the destination.
    unsafe { raw(dst.as_mut_ptr(), ld, a, b, accumulate, par) }
}

/// `a·b` as a new row-major `[a.rows, b.cols]` vector. The output is not zeroed first (gemm
/// overwrites it), which saves a full write pass over every product the step allocates.
pub fn product(a: Mat<'_>, b: Mat<'_>, par: Par) -> Vec<f32> {
    let len = a.rows * b.cols;
    let mut out: Vec<std::mem::MaybeUninit<f32>> = Vec::with_capacity(len);
    // SAFETY: MaybeUninit elements need no initialisation.
    unsafe { out.set_len(len) };
    // SAFETY: `out` holds exactly rows × cols elements; with accumulate = false gemm reads
    // none of them and writes all (raw() zero-fills when the inner dimension is 0).
    unsafe { raw(out.as_mut_ptr().cast::<f32>(), b.cols, a, b, false, par) };
    let mut out = std::mem::ManuallyDrop::new(out);
    // SAFETY: every element is initialised now; MaybeUninit<f32> has f32's layout.
    unsafe { Vec::from_raw_parts(out.as_mut_ptr().cast::<f32>(), out.len(), out.capacity()) }
}

/// The gemm call behind [`matmul`] and [`product`].
///
/// # Safety
/// `dst` must be valid for writes (and reads when `accumulate`) of the `a.rows × b.cols`
/// row-major matrix with rows `ld` apart, and alias neither operand.
unsafe fn raw(dst: *mut f32, ld: usize, a: Mat<'_>, b: Mat<'_>, accumulate: bool, par: Par) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions of a gemm");
    assert!(a.fits() && b.fits(), "gemm operand view out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                // SAFETY: row r of the destination is valid for n writes (caller contract).
                unsafe { std::ptr::write_bytes(dst.add(r * ld), 0, n) };
            }
        }
        return;
    }
    let parallelism = match par {
        Par::Seq => gemm::Parallelism::None,
        Par::All if m * n * k >= 64 * 64 * 64 => gemm::Parallelism::Rayon(0),
        Par::All => gemm::Parallelism::None,
    };
    // SAFETY: the asserts above keep every addressed element of a and b inside its slice;
    // the caller guarantees the destination.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            ld as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The f32 GEMM peak of this machine on every rayon thread, in FLOP/s, and that thread count:
/// the best of a few `[1024, 1024] × [1024, 1024]` products through [`matmul`] (the kernel of
/// the training step's matmuls on the CPU), after one warm-up, for about half a second at most.
/// What `ire train` measures MFU against on the CPU (docs/metrics.md).
pub fn measure_peak_flops() -> (f64, usize) {
    const N: usize = 1024;
    let a: Vec<f32> = (0..N * N).map(|i| (i % 17) as f32 * 0.01).collect();
    let b: Vec<f32> = (0..N * N).map(|i| (i % 13) as f32 * 0.01).collect();
    let mut out = vec![0.0f32; N * N];
    let (a, b) = (Mat::rows(&a, N, N, N), Mat::rows(&b, N, N, N));
    matmul(&mut out, N, a, b, false, Par::All); // warm-up: pages, threads, packing buffers
    let budget = std::time::Instant::now();
    let mut best = f64::INFINITY;
    for _ in 0..20 {
        let start = std::time::Instant::now();
        matmul(&mut out, N, a, b, false, Par::All);
        best = best.min(start.elapsed().as_secs_f64());
        if budget.elapsed().as_secs_f64() > 0.5 {
            break;
        }
    }
    let flops = 2.0 * (N * N * N) as f64 / best.max(1e-9);
    (flops, rayon::current_num_threads())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: Mat<'_>, b: Mat<'_>) -> Vec<f32> {
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                for p in 0..a.cols {
                    out[i * b.cols + j] +=
                        a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
                }
            }
        }
        out
    }

    #[test]
    fn the_peak_is_a_rate_on_every_thread() {
        let (flops, threads) = measure_peak_flops();
        assert!(flops.is_finite() && flops > 0.0, "{flops}");
        assert_eq!(threads, rayon::current_num_threads());
    }

    #[test]
    fn strided_products_match_the_naive_loop() {
        let x: Vec<f32> = (0..7 * 5).map(|i| (i % 11) as f32 - 5.0).collect();
        let y: Vec<f32> = (0..5 * 3).map(|i| (i % 7) as f32 * 0.5).collect();
        let a = Mat::rows(&x, 7, 5, 5);
        let b = Mat::rows(&y, 5, 3, 3);
        let mut out = vec![1.0; 21];
        matmul(&mut out, 3, a, b, false, Par::All);
        assert_eq!(out, naive(a, b));
        // Accumulate, and a transposed operand.
        matmul(&mut out, 3, a, b, true, Par::Seq);
        let twice: Vec<f32> = naive(a, b).iter().map(|v| 2.0 * v).collect();
        assert_eq!(out, twice);
        let bt: Vec<f32> = (0..3 * 5).map(|i| y[(i % 5) * 3 + i / 5]).collect(); // [3, 5]
        let mut out2 = vec![0.0; 21];
        matmul(
            &mut out2,
            3,
            a,
            Mat::rows(&bt, 3, 5, 5).t(),
            false,
            Par::Seq,
        );
        assert_eq!(out2, naive(a, b));
    }
}
