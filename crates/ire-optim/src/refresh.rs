//! AdmIRE's mask refresh on the CPU in two passes over the estimates: the exact global
//! threshold τ (the ⌊γp⌋-th smallest `h`) and the masks `n = 1[h ≤ τ]`, with `h = ĝ²`, `|ĝ|`
//! or Adam's `v` formed on the fly (never stored).
//!
//! 1. A strided sample of ~65k values brackets τ between two sample quantiles around γ
//!    (the same bracket [`crate::mask`] uses on devices).
//! 2. **Pass one** (rayon over chunks): count the values ≤ lo and gather the ~1–2 % inside
//!    `(lo, hi]`; τ is then a `select_nth` on the gathered values, offset by the count.
//!    If the sample missed (rare; the bracket is ±4σ wide), every value is gathered instead.
//! 3. **Pass two**: write the masks.
//!
//! NaNs are never ≤ τ; if fewer than k values are ordered, τ = +∞. Ties at τ are included, as
//! in the device version, so both give the same threshold and masks (tested).

use rayon::prelude::*;

use crate::mask::Selection;

/// How `h` is formed from a stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HForm {
    /// `h = x²` (GNB, `ire.py`).
    Square,
    /// `h = |x|` (GNB, `ire_new.py`).
    Abs,
    /// `h = x` (Adam's `v`).
    Identity,
}

impl HForm {
    #[inline(always)]
    fn apply(self, x: f32) -> f32 {
        match self {
            HForm::Square => x * x,
            HForm::Abs => x.abs(),
            HForm::Identity => x,
        }
    }
}

/// Target size of the strided sample.
const SAMPLE: usize = 1 << 16;
/// Elements per rayon task.
const CHUNK: usize = 1 << 16;

/// The exact k-th smallest `h` over all `parts` (taken together) and how many `h` are ≤ it.
pub fn kth_smallest(parts: &[&[f32]], form: HForm, k: u64) -> Selection {
    let p: usize = parts.iter().map(|x| x.len()).sum();
    assert!(k as usize <= p, "k = {k} exceeds the number of values {p}");
    if k == 0 {
        return Selection {
            threshold: f64::NEG_INFINITY,
            count_le: 0,
        };
    }
    let (lo, hi) = bracket(parts, form, p, k);
    let (below, inside) = gather(parts, form, lo, hi);
    if below < k && k <= below + inside.len() as u64 {
        return select(inside, k - below, below);
    }
    let (_, all) = gather(parts, form, f32::NEG_INFINITY, f32::INFINITY);
    let ordered = all.len() as u64;
    if k > ordered {
        // Fewer than k values are ordered (the rest are NaN): every ordered value is in.
        return Selection {
            threshold: f64::INFINITY,
            count_le: ordered,
        };
    }
    select(all, k, 0)
}

/// Sample quantiles `(lo, hi)` around k/p, ±4σ of a sample quantile plus two positions.
fn bracket(parts: &[&[f32]], form: HForm, p: usize, k: u64) -> (f32, f32) {
    let stride = (p / SAMPLE) | 1; // odd, so matrix columns are not sampled in lockstep
    let mut sample: Vec<f32> = parts
        .iter()
        .flat_map(|x| x.iter().step_by(stride).map(|&v| form.apply(v)))
        .filter(|v| !v.is_nan())
        .collect();
    if sample.is_empty() {
        return (f32::NEG_INFINITY, f32::INFINITY);
    }
    sample.sort_unstable_by(f32::total_cmp);
    let s = sample.len() as f64;
    let q = k as f64 / p as f64;
    let margin = 4.0 * (q * (1.0 - q) / s).sqrt() + 2.0 / s;
    let lo_pos = ((q - margin) * s).floor();
    let hi_pos = ((q + margin) * s).ceil();
    let lo = if lo_pos >= 0.0 {
        sample[lo_pos as usize]
    } else {
        f32::NEG_INFINITY
    };
    let hi = if hi_pos < s {
        sample[hi_pos as usize]
    } else {
        f32::INFINITY
    };
    (lo, hi)
}

/// `#{h ≤ lo}` and the values `lo < h ≤ hi` (pass one), chunks in parallel.
fn gather(parts: &[&[f32]], form: HForm, lo: f32, hi: f32) -> (u64, Vec<f32>) {
    let chunks: Vec<(u64, Vec<f32>)> = parts
        .par_iter()
        .flat_map(|x| x.par_chunks(CHUNK))
        .map_init(
            || Vec::with_capacity(CHUNK),
            |scratch, chunk| {
                scratch.clear();
                let below = gather_chunk(chunk, form, lo, hi, scratch);
                (below, scratch.clone())
            },
        )
        .collect();
    // One concatenation (a merging reduce would copy the values log(chunks) times).
    let below = chunks.iter().map(|(b, _)| b).sum();
    (below, chunks.into_iter().flat_map(|(_, v)| v).collect())
}

/// One chunk of [`gather`]: counts `h ≤ lo` and appends the `h` in `(lo, hi]` to `inside`.
fn gather_chunk(x: &[f32], form: HForm, lo: f32, hi: f32, inside: &mut Vec<f32>) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if ire_llama::ops::kernels::isa() == ire_llama::ops::kernels::Isa::Avx512 {
        // SAFETY: isa() detected AVX-512 F/VL/BW/DQ on this CPU.
        return unsafe { avx512::gather_chunk(x, form, lo, hi, inside) };
    }
    gather_chunk_portable(x, form, lo, hi, inside)
}

ire_llama::multiversion! {
    /// [`gather_chunk`] without AVX-512: blocks of 16 are formed and compared in vector lanes;
    /// only a block holding a bracketed value (~20 % of blocks for a 1.5 % bracket) takes the
    /// scalar path that appends it. (A branch per value on `h > lo` would be mispredicted for
    /// ~40 % of the values.)
    fn gather_chunk_portable(x: &[f32], form: HForm, lo: f32, hi: f32, inside: &mut Vec<f32>) -> u64 {
        // One loop per form, so the form is not re-decided per value.
        match form {
            HForm::Square => gather_blocks(x, |v| v * v, lo, hi, inside),
            HForm::Abs => gather_blocks(x, f32::abs, lo, hi, inside),
            HForm::Identity => gather_blocks(x, |v| v, lo, hi, inside),
        }
    }
}

#[inline(always)]
fn gather_blocks(
    x: &[f32],
    f: impl Fn(f32) -> f32,
    lo: f32,
    hi: f32,
    inside: &mut Vec<f32>,
) -> u64 {
    const L: usize = 16;
    let mut below = [0u32; L];
    let blocks = x.chunks_exact(L);
    let rest = blocks.remainder();
    for block in blocks {
        let mut h = [0.0f32; L];
        let mut any = 0u32;
        for i in 0..L {
            h[i] = f(block[i]);
            below[i] += u32::from(h[i] <= lo);
            any |= u32::from((h[i] > lo) & (h[i] <= hi));
        }
        if any != 0 {
            inside.extend(h.iter().filter(|&&v| (v > lo) & (v <= hi)));
        }
    }
    let mut total: u64 = below.iter().map(|&b| u64::from(b)).sum();
    for &v in rest {
        let h = f(v);
        total += u64::from(h <= lo);
        if (h > lo) & (h <= hi) {
            inside.push(h);
        }
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::HForm;

    /// [`super::gather_chunk`] with AVX-512: compares produce lane masks, and the bracketed
    /// values of a block are appended with one compress-store, no branch per value.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gather_chunk(
        x: &[f32],
        form: HForm,
        lo: f32,
        hi: f32,
        inside: &mut Vec<f32>,
    ) -> u64 {
        let (lo_v, hi_v) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
        let blocks = x.chunks_exact(16);
        let rest = blocks.remainder();
        // Room for every value, so the compress-stores below stay in bounds.
        inside.reserve(x.len());
        let start = inside.len();
        let out = inside.as_mut_ptr();
        let mut len = start;
        let mut below = 0u64;
        for block in blocks {
            // SAFETY: the block holds 16 floats.
            let v = unsafe { _mm512_loadu_ps(block.as_ptr()) };
            let h = match form {
                HForm::Square => _mm512_mul_ps(v, v),
                HForm::Abs => _mm512_abs_ps(v),
                HForm::Identity => v,
            };
            let le_lo = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(h, lo_v);
            let gt_lo = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(h, lo_v);
            let le_hi = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(h, hi_v);
            below += u64::from(le_lo.count_ones());
            let keep = gt_lo & le_hi;
            if keep != 0 {
                // SAFETY: len + 16 ≤ start + x.len() ≤ capacity (reserved above).
                unsafe { _mm512_mask_compressstoreu_ps(out.add(len).cast(), keep, h) };
                len += keep.count_ones() as usize;
            }
        }
        // SAFETY: the first `len` elements were written (the old ones, then the stores).
        unsafe { inside.set_len(len) };
        for &v in rest {
            let h = match form {
                HForm::Square => v * v,
                HForm::Abs => v.abs(),
                HForm::Identity => v,
            };
            below += u64::from(h <= lo);
            if (h > lo) & (h <= hi) {
                inside.push(h);
            }
        }
        below
    }
}

/// The `r`-th smallest (1-based) of `values`, plus `offset` values known to be below it.
fn select(mut values: Vec<f32>, r: u64, offset: u64) -> Selection {
    let idx = r as usize - 1;
    let (_, &mut tau, _) = values.select_nth_unstable_by(idx, f32::total_cmp);
    let ties = values.iter().filter(|&&v| v <= tau).count() as u64;
    // -0.0 and +0.0 compare equal; report the positive one.
    let tau = if tau == 0.0 { 0.0 } else { tau };
    Selection {
        threshold: f64::from(tau),
        count_le: offset + ties,
    }
}

/// The mask `1[h ≤ τ]` of one part (pass two).
pub fn mask(x: &[f32], form: HForm, threshold: f64) -> Vec<bool> {
    let tau = threshold as f32;
    let mut out = vec![false; x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, x)| mask_chunk(x, form, tau, o));
    out
}

ire_llama::multiversion! {
    /// One chunk of [`mask`], one loop per form.
    fn mask_chunk(x: &[f32], form: HForm, tau: f32, out: &mut [bool]) {
        match form {
            HForm::Square => mask_values(x, |v| v * v, tau, out),
            HForm::Abs => mask_values(x, f32::abs, tau, out),
            HForm::Identity => mask_values(x, |v| v, tau, out),
        }
    }
}

#[inline(always)]
fn mask_values(x: &[f32], f: impl Fn(f32) -> f32, tau: f32, out: &mut [bool]) {
    for (m, &v) in out.iter_mut().zip(x) {
        *m = f(v) <= tau;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 gathering (when this CPU has it) and the portable one agree exactly.
    #[test]
    fn gathering_paths_agree() {
        let mut rng = ire_llama::SplitMix64::new(3);
        let mut x: Vec<f32> = (0..10_007).map(|_| rng.normal() as f32).collect();
        x[17] = f32::NAN;
        x[18] = -0.0;
        for form in [HForm::Square, HForm::Abs, HForm::Identity] {
            let (mut a, mut b) = (vec![1.5f32], vec![1.5f32]); // appends after what is there
            let na = gather_chunk(&x, form, 0.3, 0.9, &mut a);
            let nb = gather_chunk_portable(&x, form, 0.3, 0.9, &mut b);
            assert_eq!(na, nb, "{form:?}: counts");
            assert_eq!(a, b, "{form:?}: gathered values, in order");
            assert!(a.len() > 100, "{form:?}: the bracket holds values");
        }
    }
}
