//! What the two exact k-th-smallest selections of τ share: the result ([`Selection`]), how `h`
//! is formed from a stored value ([`HForm`]), and the sampled bracket both start from.
//!
//! τ is the k-th smallest `h` (k = ⌊γp⌋). [`crate::select_device`] finds it with on-device
//! counts (any Burn backend), [`crate::select_cpu`] with a pass over host memory (burn-flex's
//! fused refresh); both give the same threshold and count, ties at τ included (tested).
//!
//! Both first take a strided sample of about 65k values (`sample_stride`), sort it and read two
//! sample quantiles around q = k/p that bracket τ with high probability (`bracket_positions`:
//! ±4σ of a sample quantile plus two positions). A bracket that misses only costs time: each
//! caller checks it with exact counts and falls back to all values.

/// The result of a k-th-smallest selection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selection {
    /// The k-th smallest value τ (exact; an f32 value for f32 input). `-inf` when k = 0.
    pub threshold: f64,
    /// How many values are ≤ τ (≥ k; larger only with ties at τ).
    pub count_le: u64,
}

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
    pub(crate) fn apply(self, x: f32) -> f32 {
        match self {
            HForm::Square => x * x,
            HForm::Abs => x.abs(),
            HForm::Identity => x,
        }
    }
}

/// Target size of the strided sample that brackets τ.
pub(crate) const SAMPLE: usize = 1 << 16;

/// The stride of the sample over `p` values: about [`SAMPLE`] picks, and odd, so that the rows
/// of a matrix are not sampled at the same column.
pub(crate) fn sample_stride(p: usize) -> usize {
    (p / SAMPLE) | 1
}

/// The positions `(lo, hi)` in a sorted sample of `s` values (s ≥ 1) that bracket the k-th
/// smallest of all `p` values (1 ≤ k ≤ p) with high probability: ±4 standard deviations of the
/// sample quantile at q = k/p, plus two positions. `lo = None`: the bracket starts below the
/// sample (below everything); `hi = None`: it ends above the sample (the top).
pub(crate) fn bracket_positions(s: usize, p: usize, k: u64) -> (Option<usize>, Option<usize>) {
    let s = s as f64;
    let q = k as f64 / p as f64;
    let margin = 4.0 * (q * (1.0 - q) / s).sqrt() + 2.0 / s;
    let lo_pos = ((q - margin) * s).floor();
    let hi_pos = ((q + margin) * s).ceil();
    let lo = (lo_pos >= 0.0).then_some(lo_pos as usize);
    let hi = (hi_pos < s).then_some(hi_pos as usize);
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bracket_holds_the_quantile_and_clips_at_the_ends() {
        // The middle of a full sample: both positions inside, around q·s.
        let (lo, hi) = bracket_positions(SAMPLE, 1 << 24, 1 << 23);
        let (lo, hi) = (lo.unwrap(), hi.unwrap());
        assert!(lo < SAMPLE / 2 && SAMPLE / 2 < hi && hi < SAMPLE);
        // k = 1: below the sample; k = p: above it.
        assert_eq!(bracket_positions(1000, 1 << 20, 1).0, None);
        assert_eq!(bracket_positions(1000, 1 << 20, 1 << 20).1, None);
        assert_eq!(sample_stride(100), 1);
        assert_eq!(sample_stride(SAMPLE * 4), 5);
    }
}
