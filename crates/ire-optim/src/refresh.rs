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

/// `#{h ≤ lo}` and the values `lo < h ≤ hi` (pass one).
///
/// Branch-free: every `h` is written to a scratch slot and the write position advances only
/// for values inside the bracket (a branch on `h > lo` would be mispredicted for ~40 % of the
/// values and cost 10× the memory traffic).
fn gather(parts: &[&[f32]], form: HForm, lo: f32, hi: f32) -> (u64, Vec<f32>) {
    parts
        .par_iter()
        .flat_map(|x| x.par_chunks(CHUNK))
        .map_init(
            || vec![0.0f32; CHUNK],
            |scratch, chunk| {
                let mut below = 0u64;
                let mut len = 0usize;
                for &x in chunk {
                    let h = form.apply(x);
                    below += u64::from(h <= lo);
                    scratch[len] = h;
                    len += usize::from((h > lo) & (h <= hi));
                }
                (below, scratch[..len].to_vec())
            },
        )
        .reduce(
            || (0, Vec::new()),
            |(a, mut u), (b, v)| {
                u.extend(v);
                (a + b, u)
            },
        )
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
        .for_each(|(o, x)| {
            for (m, &v) in o.iter_mut().zip(x) {
                *m = form.apply(v) <= tau;
            }
        });
    out
}
