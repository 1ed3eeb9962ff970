//! CPU kernels for the fused ops, on plain `f32` slices: no Burn types here, so each kernel can
//! be read (and tested) as the arithmetic it is.
//!
//! **SIMD.** Kernels are written as plain loops over slices and compiled three times by
//! `ire_core::multiversion!`: for AVX-512, for AVX2+FMA and for baseline x86-64. The widest
//! the running CPU supports is chosen at run time (once; `is_x86_feature_detected!`), so the binary still
//! runs on any x86-64. LLVM vectorises the loops; reductions keep 16 independent accumulators
//! so that it may. [`exp`] is a polynomial with no libm call, so it vectorises too.
//!
//! **Threads.** rayon, over rows, heads or row blocks; gemm calls inside a parallel loop are
//! single-threaded ([`gemm::Par::Seq`]), a gemm on its own uses every thread.

pub mod attention;
pub mod cross_entropy;
pub mod gemm;
pub mod norm;

// The instruction-set detection and the dispatch macro live in ire-core (ire-optim's CPU
// kernels use them too).
use ire_core::multiversion;

/// Lanes of the unrolled reductions (one AVX-512 register of f32).
const LANES: usize = 16;

/// `e^x` in f32 without libm, vectorisable: `2^k · p(r)` with `x = k ln2 + r`, `|r| ≤ ln2/2`,
/// and a degree-6 polynomial for `e^r` (relative error ≤ 2 ulp on the range used here).
/// Inputs below −87.3 (and `−∞`) give exactly 0, never a denormal.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Clamp so 2^k stays a normal float; e^-87.3 ≈ 1.2e-38.
    let x0 = x;
    let x = x.clamp(-87.3, 88.7);
    // k = round(x / ln2) by the 1.5·2^23 trick: the integer lands in the low mantissa bits.
    const SHIFT: f32 = 12_582_912.0;
    let t = x * LOG2E + SHIFT;
    let k = t - SHIFT;
    let r = x - k * LN2_HI - k * LN2_LO;
    // e^r ≈ 1 + r + r²/2 + … + r⁶/720 (Horner).
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    let ki = (t.to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32);
    let scale = f32::from_bits((ki.wrapping_add(127) << 23) as u32);
    let e = p * scale;
    // Below the clamp the true value is under f32's smallest normal: return 0, not a value
    // that later arithmetic would turn into a (slow) denormal.
    if x0 < -87.3 {
        0.0
    } else {
        e
    }
}

/// `x`, or 0 when `|x|` is below f32's smallest normal (denormals cost a microcode assist in
/// every instruction that reads them; see `ire_train::cpu`).
#[inline(always)]
pub fn flush(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x
    }
}

/// The largest element (−∞ for an empty slice).
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &a in acc.iter().chain(rest) {
        m = if a > m { a } else { m };
    }
    m
}

/// `Σ xᵢ·yᵢ`.
#[inline(always)]
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for i in 0..LANES {
            acc[i] += a[i] * b[i];
        }
    }
    let mut s = 0.0;
    for (a, b) in xr.iter().zip(yr) {
        s += a * b;
    }
    acc.iter().sum::<f32>() + s
}

/// `Σ xᵢ`.
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// `xᵢ ← e^(xᵢ − shift)`, returning `Σ e^(xᵢ − shift)`.
#[inline(always)]
pub fn exp_shifted_in_place(x: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            let e = exp(c[i] - shift);
            c[i] = e;
            acc[i] += e;
        }
    }
    let mut s = 0.0;
    for v in chunks.into_remainder() {
        *v = exp(*v - shift);
        s += *v;
    }
    acc.iter().sum::<f32>() + s
}

/// `Σ e^(xᵢ − shift)` without writing.
#[inline(always)]
pub fn sum_exp_shifted(x: &[f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += exp(c[i] - shift);
        }
    }
    acc.iter().sum::<f32>() + rest.iter().map(|&v| exp(v - shift)).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.001_7;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-90.0), 0.0);
        assert!(exp(-87.0) >= f32::MIN_POSITIVE);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(flush(1e-39), 0.0);
        assert_eq!(flush(-2e-38), -2e-38);
    }

    #[test]
    fn reductions_match_scalar_loops() {
        let x: Vec<f32> = (0..37)
            .map(|i| ((i * 29 % 17) as f32 - 8.0) / 3.0)
            .collect();
        let y: Vec<f32> = (0..37)
            .map(|i| ((i * 13 % 11) as f32 - 5.0) / 7.0)
            .collect();
        assert_eq!(max(&x), 8.0 / 3.0);
        let d: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert!((dot(&x, &y) - d).abs() < 1e-5);
        assert!((sum(&x) - x.iter().sum::<f32>()).abs() < 1e-5);
        let mut e = x.clone();
        let s = exp_shifted_in_place(&mut e, 1.5);
        for (a, b) in e.iter().zip(&x) {
            assert!((a - (b - 1.5).exp()).abs() <= 1e-6 * a.abs().max(1.0));
        }
        assert!((s - sum(&e)).abs() < 1e-5);
        assert!((sum_exp_shifted(&x, 1.5) - s).abs() < 1e-5);
    }
}
