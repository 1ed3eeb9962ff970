//! The exact k-th smallest of `h` on the CPU, and the masks `n = 1[h ≤ τ]`, in passes over
//! host memory: AdmIRE's mask refresh on burn-flex ([`crate::FusedUpdate::flat_masks`]), with
//! `h = ĝ²`, `|ĝ|` or Adam's `v` formed on the fly (never stored). [`crate::select_device`] is
//! the on-device version.
//!
//! 1. A strided sample of ~65k values brackets τ between two sample quantiles around γ
//!    (the bracket [`crate::select`] gives both versions; NaNs are left out of this sample).
//! 2. **Pass one** (rayon over chunks): count the values ≤ lo and gather the ~1–2 % inside
//!    `(lo, hi]`; τ is then a `select_nth` on the gathered values, offset by the count.
//!    If the sample missed (rare; the bracket is ±4σ wide), every value is gathered instead.
//! 3. **Pass two**: write the masks ([`select_and_mask`] does both passes in one).
//!
//! NaNs are never ≤ τ; if fewer than k values are ordered, τ = +∞. Ties at τ are included, as
//! in the device version, so both give the same threshold and masks (tested).

use rayon::prelude::*;

use crate::select::{bracket_positions, sample_stride, HForm, Selection};

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

/// Sample quantiles `(lo, hi)` around k/p ([`bracket_positions`]) of the ordered (non-NaN)
/// sampled `h`; `(-∞, +∞)` when every sampled `h` is NaN.
fn bracket(parts: &[&[f32]], form: HForm, p: usize, k: u64) -> (f32, f32) {
    let stride = sample_stride(p);
    let mut sample: Vec<f32> = parts
        .iter()
        .flat_map(|x| x.iter().step_by(stride).map(|&v| form.apply(v)))
        .filter(|v| !v.is_nan())
        .collect();
    if sample.is_empty() {
        return (f32::NEG_INFINITY, f32::INFINITY);
    }
    let (lo_pos, hi_pos) = bracket_positions(sample.len(), p, k);
    // The two order statistics a sort would give, by selection (linear, where sorting the
    // ~65 k values took a few ms): after the first, everything past it is ≥ it.
    let (lo, from) = match lo_pos {
        Some(i) => (*sample.select_nth_unstable_by(i, f32::total_cmp).1, i + 1),
        None => (f32::NEG_INFINITY, 0),
    };
    let hi = match hi_pos {
        Some(i) if i >= from => {
            *sample[from..]
                .select_nth_unstable_by(i - from, f32::total_cmp)
                .1
        }
        Some(i) => sample[i],
        None => f32::INFINITY,
    };
    (lo, hi)
}

/// What one chunk's pass found: `#{h ≤ lo}`, and the bracketed `h` with their positions in
/// the chunk.
#[derive(Debug, Default, Clone, PartialEq)]
struct Gathered {
    below: u64,
    values: Vec<f32>,
    index: Vec<u32>,
}

/// `#{h ≤ lo}` and the values `lo < h ≤ hi` over all parts (pass one), chunks in parallel.
fn gather(parts: &[&[f32]], form: HForm, lo: f32, hi: f32) -> (u64, Vec<f32>) {
    let chunks: Vec<Gathered> = parts
        .par_iter()
        .flat_map(|x| x.par_chunks(CHUNK))
        .map(|chunk| {
            let mut g = Gathered::default();
            gather_chunk(chunk, form, lo, hi, &mut g, None);
            g
        })
        .collect();
    // One concatenation (a merging reduce would copy the values log(chunks) times).
    let below = chunks.iter().map(|g| g.below).sum();
    (below, chunks.into_iter().flat_map(|g| g.values).collect())
}

/// τ, the count ≤ τ and every part's mask `1[h ≤ τ]` in a single pass over the values: the
/// pass writes `1[h ≤ lo]` (final for all but the ~1.5 % bracketed values) while it gathers the
/// bracketed ones with their positions; once τ is selected among those, only their mask bytes
/// are fixed up. Falls back to [`kth_smallest`] + [`mask`] if the sampled bracket missed.
pub fn select_and_mask(parts: &[&[f32]], form: HForm, k: u64) -> (Selection, Vec<Vec<bool>>) {
    let p: usize = parts.iter().map(|x| x.len()).sum();
    let two_pass = || {
        let sel = kth_smallest(parts, form, k);
        let masks = parts.iter().map(|x| mask(x, form, sel.threshold)).collect();
        (sel, masks)
    };
    if k == 0 || k as usize > p {
        return two_pass(); // the empty mask, or kth_smallest's error on k > p
    }
    let (lo, hi) = bracket(parts, form, p, k);
    let mut masks: Vec<Vec<bool>> = parts.iter().map(|x| vec![false; x.len()]).collect();
    let pieces: Vec<(usize, usize, Gathered)> = masks
        .par_iter_mut()
        .zip(parts.par_iter())
        .enumerate()
        .flat_map(|(part, (m, x))| {
            m.par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .enumerate()
                .map(move |(c, (mc, xc))| {
                    let mut g = Gathered::default();
                    gather_chunk(xc, form, lo, hi, &mut g, Some(mc));
                    (part, c * CHUNK, g)
                })
        })
        .collect();
    let below: u64 = pieces.iter().map(|(_, _, g)| g.below).sum();
    let inside: usize = pieces.iter().map(|(_, _, g)| g.values.len()).sum();
    if !(below < k && k <= below + inside as u64) {
        return two_pass();
    }
    let values = pieces
        .iter()
        .flat_map(|(_, _, g)| g.values.iter().copied())
        .collect();
    let sel = select(values, k - below, below);
    let tau = sel.threshold as f32;
    for (part, offset, g) in &pieces {
        let m = &mut masks[*part][*offset..];
        for (&i, &v) in g.index.iter().zip(&g.values) {
            m[i as usize] = v <= tau;
        }
    }
    (sel, masks)
}

/// One chunk of pass one: counts `h ≤ lo`, appends the `h` in `(lo, hi]` and their positions
/// to `out`, and, given a mask, writes `1[h ≤ lo]` into it.
fn gather_chunk(
    x: &[f32],
    form: HForm,
    lo: f32,
    hi: f32,
    out: &mut Gathered,
    mask: Option<&mut [bool]>,
) {
    #[cfg(target_arch = "x86_64")]
    if ire_core::cpu::isa() == ire_core::cpu::Isa::Avx512 {
        // SAFETY: isa() detected AVX-512 F/VL/BW/DQ on this CPU.
        return unsafe { avx512::gather_chunk(x, form, lo, hi, out, mask) };
    }
    gather_chunk_portable(x, form, lo, hi, out, mask)
}

ire_core::multiversion! {
    /// [`gather_chunk`] without AVX-512: blocks of 16 are formed and compared in vector lanes;
    /// only a block holding a bracketed value (~20 % of blocks for a 1.5 % bracket) takes the
    /// scalar path that appends it. (A branch per value on `h > lo` would be mispredicted for
    /// ~40 % of the values.)
    fn gather_chunk_portable(x: &[f32], form: HForm, lo: f32, hi: f32, out: &mut Gathered, mask: Option<&mut [bool]>) {
        // One loop per form, so the form is not re-decided per value.
        match form {
            HForm::Square => gather_blocks(x, |v| v * v, lo, hi, out, mask),
            HForm::Abs => gather_blocks(x, f32::abs, lo, hi, out, mask),
            HForm::Identity => gather_blocks(x, |v| v, lo, hi, out, mask),
        }
    }
}

#[inline(always)]
fn gather_blocks(
    x: &[f32],
    f: impl Fn(f32) -> f32,
    lo: f32,
    hi: f32,
    out: &mut Gathered,
    mut mask: Option<&mut [bool]>,
) {
    const L: usize = 16;
    let mut below = [0u32; L];
    let mut blocks = 0;
    for (b, block) in x.chunks_exact(L).enumerate() {
        let mut h = [0.0f32; L];
        let mut any = 0u32;
        for i in 0..L {
            h[i] = f(block[i]);
            below[i] += u32::from(h[i] <= lo);
            any |= u32::from((h[i] > lo) & (h[i] <= hi));
        }
        if let Some(m) = mask.as_deref_mut() {
            for (mi, &hi_) in m[b * L..(b + 1) * L].iter_mut().zip(&h) {
                *mi = hi_ <= lo;
            }
        }
        if any != 0 {
            for (i, &v) in h.iter().enumerate() {
                if (v > lo) & (v <= hi) {
                    out.values.push(v);
                    out.index.push((b * L + i) as u32);
                }
            }
        }
        blocks = b + 1;
    }
    out.below += below.iter().map(|&b| u64::from(b)).sum::<u64>();
    for (i, &v) in x.iter().enumerate().skip(blocks * L) {
        let h = f(v);
        out.below += u64::from(h <= lo);
        if let Some(m) = mask.as_deref_mut() {
            m[i] = h <= lo;
        }
        if (h > lo) & (h <= hi) {
            out.values.push(h);
            out.index.push(i as u32);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Gathered, HForm};

    /// [`super::gather_chunk`] with AVX-512: compares produce lane masks; a block's mask bytes
    /// are one masked byte store, and its bracketed values and positions are appended with
    /// compress-stores — no branch per value.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW and VL.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn gather_chunk(
        x: &[f32],
        form: HForm,
        lo: f32,
        hi: f32,
        out: &mut Gathered,
        mut mask: Option<&mut [bool]>,
    ) {
        let (lo_v, hi_v) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
        let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let ones = _mm_set1_epi8(1);
        let blocks = x.len() / 16;
        // Room for every value, so the compress-stores below stay in bounds.
        out.values.reserve(x.len());
        out.index.reserve(x.len());
        let mut len = out.values.len();
        assert_eq!(
            len,
            out.index.len(),
            "values and positions are appended together"
        );
        let (vals, idx) = (out.values.as_mut_ptr(), out.index.as_mut_ptr());
        let mut below = 0u64;
        for b in 0..blocks {
            // SAFETY: block b holds 16 floats of x.
            let v = unsafe { _mm512_loadu_ps(x.as_ptr().add(b * 16)) };
            let h = match form {
                HForm::Square => _mm512_mul_ps(v, v),
                HForm::Abs => _mm512_abs_ps(v),
                HForm::Identity => v,
            };
            let le_lo = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(h, lo_v);
            let gt_lo = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(h, lo_v);
            let le_hi = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(h, hi_v);
            below += u64::from(le_lo.count_ones());
            if let Some(m) = mask.as_deref_mut() {
                // SAFETY: the mask has x.len() bytes; bytes 0/1 are valid bools.
                unsafe {
                    _mm_storeu_si128(
                        m.as_mut_ptr().add(b * 16).cast(),
                        _mm_maskz_mov_epi8(le_lo, ones),
                    )
                };
            }
            let keep = gt_lo & le_hi;
            if keep != 0 {
                let pos = _mm512_add_epi32(_mm512_set1_epi32((b * 16) as i32), iota);
                // SAFETY: len + 16 ≤ old len + x.len() ≤ capacity of both (reserved above).
                unsafe {
                    _mm512_mask_compressstoreu_ps(vals.add(len).cast(), keep, h);
                    _mm512_mask_compressstoreu_epi32(idx.add(len).cast(), keep, pos);
                }
                len += keep.count_ones() as usize;
            }
        }
        // SAFETY: the first `len` elements of both were written (old ones, then the stores).
        unsafe {
            out.values.set_len(len);
            out.index.set_len(len);
        }
        out.below += below;
        for (i, &v) in x.iter().enumerate().skip(blocks * 16) {
            let h = match form {
                HForm::Square => v * v,
                HForm::Abs => v.abs(),
                HForm::Identity => v,
            };
            out.below += u64::from(h <= lo);
            if let Some(m) = mask.as_deref_mut() {
                m[i] = h <= lo;
            }
            if (h > lo) & (h <= hi) {
                out.values.push(h);
                out.index.push(i as u32);
            }
        }
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

ire_core::multiversion! {
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

    /// The AVX-512 pass (when this CPU has it) and the portable one agree exactly, masks
    /// included.
    #[test]
    fn gathering_paths_agree() {
        let mut rng = ire_core::SplitMix64::new(3);
        let mut x: Vec<f32> = (0..10_007).map(|_| rng.normal() as f32).collect();
        x[17] = f32::NAN;
        x[18] = -0.0;
        for form in [HForm::Square, HForm::Abs, HForm::Identity] {
            let start = Gathered {
                below: 2,
                values: vec![1.5],
                index: vec![7],
            }; // appends after what is there
            let (mut a, mut b) = (start.clone(), start);
            let (mut ma, mut mb) = (vec![true; x.len()], vec![false; x.len()]);
            gather_chunk(&x, form, 0.3, 0.9, &mut a, Some(&mut ma));
            gather_chunk_portable(&x, form, 0.3, 0.9, &mut b, Some(&mut mb));
            assert_eq!(a, b, "{form:?}: counts, gathered values and positions");
            assert_eq!(ma, mb, "{form:?}: masks");
            assert!(a.values.len() > 100, "{form:?}: the bracket holds values");
            for (&i, &v) in a.index.iter().zip(&a.values).skip(1) {
                assert_eq!(form.apply(x[i as usize]), v, "{form:?}: position {i}");
            }
        }
    }

    /// The one-pass refresh gives the two-pass threshold, count and masks.
    #[test]
    fn one_pass_equals_two_passes() {
        let mut rng = ire_core::SplitMix64::new(5);
        let x: Vec<f32> = (0..200_003).map(|_| (rng.normal() * 1e-3) as f32).collect();
        let parts = [&x[..70_001], &x[70_001..]];
        for k in [0, 1, 120_000, 200_003] {
            let (sel, masks) = select_and_mask(&parts, HForm::Square, k);
            assert_eq!(sel, kth_smallest(&parts, HForm::Square, k), "k {k}");
            for (m, part) in masks.iter().zip(parts) {
                assert_eq!(*m, mask(part, HForm::Square, sel.threshold), "k {k}");
            }
        }
    }
}
