//! The exact k-th smallest of `h` on the device — τ for AdmIRE's mask on any Burn backend —
//! without copying `h` (or any parameter) to the host; [`crate::select_cpu`] is the host version.
//!
//! ```text
//! τ = k-th smallest value of h,  k = ⌊γ p⌋
//! ```
//!
//! Non-negative IEEE floats order like their bit patterns, so a bisection over bit patterns
//! with one `(h ≤ t).sum()` per round converges to the k-th value in at most 32 rounds (64 for
//! f64), with one integer coming back per round. To make the rounds few and cheap:
//!
//! 1. a strided sample of ~65k values (h values, not parameters) brackets τ between two
//!    sample quantiles around γ ([`crate::select`]); two exact counts check the bracket
//!    `(lo, hi]` (if the sample missed, the bisection simply starts from the side it knows);
//! 2. [`Strategy::Compact`] gathers the ~1-2% of values inside the bracket (`argwhere` +
//!    `select`, on the device) and bisects on them, offset by the exact count below `lo`;
//!    [`Strategy::Bisect`] bisects within the bracket on all values (≈ 20 rounds).
//!
//! Compaction needs a native `argwhere`; in Burn 0.21 only Flex has one (CubeCL backends fall
//! back to a host loop over the whole mask), so [`kth_smallest`] compacts on Flex and bisects
//! elsewhere — on a GPU a count round over all values is a single fast reduction.
//!
//! Ties are included (`≤`), so the mask fraction is ≥ ⌊γp⌋/p (within 1/p of γ), with equality
//! when no other value ties with τ.

use burn::prelude::*;
use burn::tensor::{DType, Slice};

use crate::select::{bracket_positions, sample_stride, Selection, SAMPLE};

/// Below this many values the bisection runs on all of them directly.
const DIRECT_MAX: usize = 1 << 18;

/// How [`kth_smallest_with`] narrows down τ after the sampled bracket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Gather the values inside the bracket and bisect on them (needs a native `argwhere`).
    Compact,
    /// Bisect within the bracket with counts over all values.
    Bisect,
}

/// Totally ordered integer keys for f32 or f64 values: key order = numeric order.
#[derive(Debug, Clone, Copy)]
enum Keys {
    F32,
    F64,
}

impl Keys {
    fn of(dtype: DType) -> Self {
        if dtype == DType::F64 {
            Keys::F64
        } else {
            Keys::F32
        }
    }

    fn key(self, x: f64) -> u64 {
        match self {
            Keys::F32 => {
                let b = (x as f32).to_bits();
                u64::from(if b >> 31 == 1 { !b } else { b | 0x8000_0000 })
            }
            Keys::F64 => {
                let b = x.to_bits();
                if b >> 63 == 1 {
                    !b
                } else {
                    b | (1 << 63)
                }
            }
        }
    }

    fn value(self, key: u64) -> f64 {
        match self {
            Keys::F32 => {
                let k = key as u32;
                let b = if k >> 31 == 1 { k & 0x7FFF_FFFF } else { !k };
                f64::from(f32::from_bits(b))
            }
            Keys::F64 => f64::from_bits(if key >> 63 == 1 {
                key & !(1 << 63)
            } else {
                !key
            }),
        }
    }
}

fn to_count(c: i64) -> u64 {
    u64::try_from(c).expect("a count of elements is non-negative")
}

/// Number of elements of `values` that are ≤ `t` (one integer read from the device).
pub fn count_le<B: Backend>(values: &Tensor<B, 1>, t: f64) -> u64 {
    count_le_parts(std::slice::from_ref(values), t)
}

/// Number of elements of all `parts` that are ≤ `t`, summed on the device (one read).
fn count_le_parts<B: Backend>(parts: &[Tensor<B, 1>], t: f64) -> u64 {
    let total = parts
        .iter()
        .map(|p| p.clone().lower_equal_elem(t).int().sum())
        .reduce(|a, b| a + b);
    total.map_or(0, |c| to_count(c.into_scalar().elem::<i64>()))
}

/// The exact k-th smallest (1-based) of the non-negative values in `parts` (taken together),
/// with the number of values ≤ it; compacts on Flex and bisects elsewhere (module docs).
/// `k = 0` gives `-inf` (an empty mask); `k` must not exceed the number of values. NaNs are
/// never ≤ a threshold: if fewer than k values are ordered, τ = +inf.
///
/// Values must be ≥ 0 (squares, absolute values, Adam's v): negative values are ordered
/// correctly too, but only expected in tests.
pub fn kth_smallest<B: Backend>(parts: &[Tensor<B, 1>], k: u64) -> Selection {
    let native_argwhere = parts
        .first()
        .is_some_and(|t| B::name(&t.device()) == "flex");
    let strategy = if native_argwhere {
        Strategy::Compact
    } else {
        Strategy::Bisect
    };
    kth_smallest_with(parts, k, strategy)
}

/// [`kth_smallest`] with an explicit [`Strategy`].
pub fn kth_smallest_with<B: Backend>(
    parts: &[Tensor<B, 1>],
    k: u64,
    strategy: Strategy,
) -> Selection {
    let p: usize = parts.iter().map(|t| t.dims()[0]).sum();
    assert!(k as usize <= p, "k = {k} exceeds the number of values {p}");
    if k == 0 {
        return Selection {
            threshold: f64::NEG_INFINITY,
            count_le: 0,
        };
    }
    let keys = Keys::of(parts[0].dtype());
    // Bracket invariant: count(≤ lo) < k ≤ count(≤ hi). Key 0 (a NaN pattern below -inf)
    // stands for "below everything"; +inf is the top (count unknown until measured).
    let bottom = Bracket {
        lo: 0,
        count_lo: 0,
        hi: keys.key(f64::INFINITY),
        count_hi: None,
    };
    if p <= DIRECT_MAX {
        return bisect(&[Tensor::cat(parts.to_vec(), 0)], k, bottom, keys);
    }
    let (lo, hi) = sample_bracket(parts, p, k);
    let sampled = Sampled {
        lo,
        hi,
        lo_key: lo.map_or(0, |t| keys.key(t)),
        hi_key: keys.key(hi),
    };
    match strategy {
        Strategy::Compact => compact_then_bisect(parts, k, sampled, bottom, keys),
        Strategy::Bisect => bisect_from_sample(parts, k, sampled, bottom, keys),
    }
}

/// The sampled bracket `(lo, hi]` as values (`lo`: `None` = below everything) and as keys.
#[derive(Debug, Clone, Copy)]
struct Sampled {
    lo: Option<f64>,
    hi: f64,
    lo_key: u64,
    hi_key: u64,
}

/// [`Strategy::Compact`]: gathers the values inside the sampled bracket and bisects on them,
/// or on all values from `bottom` when the bracket missed the k-th value.
fn compact_then_bisect<B: Backend>(
    parts: &[Tensor<B, 1>],
    k: u64,
    s: Sampled,
    bottom: Bracket,
    keys: Keys,
) -> Selection {
    let Sampled {
        lo,
        hi,
        lo_key,
        hi_key,
    } = s;
    let mut count_hi = None;
    let mut candidates = Vec::new();
    for part in parts {
        let b_hi = part.clone().lower_equal_elem(hi);
        let c = b_hi.clone().int().sum();
        count_hi = Some(match count_hi {
            Some(acc) => acc + c,
            None => c,
        });
        let inside = match lo {
            Some(lo) => b_hi.not_equal(part.clone().lower_equal_elem(lo)),
            None => b_hi,
        };
        let idx = inside.argwhere();
        let m = idx.dims()[0];
        if m > 0 {
            candidates.push(part.clone().select(0, idx.reshape([m])));
        }
    }
    let count_hi = count_hi.map_or(0, |c| to_count(c.into_scalar().elem::<i64>()));
    let inside: usize = candidates.iter().map(|t| t.dims()[0]).sum();
    let count_lo = count_hi - inside as u64;
    if count_lo < k && k <= count_hi {
        let bracket = Bracket {
            lo: lo_key,
            count_lo,
            hi: hi_key,
            count_hi: Some(count_hi),
        };
        return bisect(&[Tensor::cat(candidates, 0)], k, bracket, keys);
    }
    bisect(
        parts,
        k,
        fallback(bottom, k, (lo_key, count_lo), (hi_key, count_hi)),
        keys,
    )
}

/// [`Strategy::Bisect`]: bisects on all values within the sampled bracket, or from `bottom`
/// when the bracket missed the k-th value.
fn bisect_from_sample<B: Backend>(
    parts: &[Tensor<B, 1>],
    k: u64,
    s: Sampled,
    bottom: Bracket,
    keys: Keys,
) -> Selection {
    let all = [Tensor::cat(parts.to_vec(), 0)];
    let count_lo = s.lo.map_or(0, |t| count_le_parts(&all, t));
    let count_hi = count_le_parts(&all, s.hi);
    let bracket = if count_lo < k && k <= count_hi {
        Bracket {
            lo: s.lo_key,
            count_lo: 0,
            hi: s.hi_key,
            count_hi: Some(count_hi),
        }
    } else {
        fallback(bottom, k, (s.lo_key, count_lo), (s.hi_key, count_hi))
    };
    bisect(&all, k, bracket, keys)
}

/// The bracket to bisect on all values when the sampled one does not contain the k-th value.
fn fallback(
    bottom: Bracket,
    k: u64,
    (lo_key, count_lo): (u64, u64),
    (hi_key, count_hi): (u64, u64),
) -> Bracket {
    if k <= count_lo {
        Bracket {
            hi: lo_key,
            count_hi: Some(count_lo),
            ..bottom
        }
    } else {
        debug_assert!(k > count_hi);
        Bracket {
            lo: hi_key,
            ..bottom
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bracket {
    lo: u64,
    count_lo: u64,
    hi: u64,
    count_hi: Option<u64>,
}

/// Bisection over keys in `(lo, hi]`. `parts` hold the candidates; `count_lo` is the number of
/// elements ≤ lo that are *not* among them (added to every count).
fn bisect<B: Backend>(parts: &[Tensor<B, 1>], k: u64, b: Bracket, keys: Keys) -> Selection {
    let Bracket {
        mut lo,
        count_lo: offset,
        mut hi,
        mut count_hi,
    } = b;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let c = offset + count_le_parts(parts, keys.value(mid));
        if c >= k {
            hi = mid;
            count_hi = Some(c);
        } else {
            lo = mid;
        }
    }
    let threshold = keys.value(hi);
    let count_le = count_hi.unwrap_or_else(|| offset + count_le_parts(parts, threshold));
    // -0.0 and +0.0 compare equal; report the positive one.
    let threshold = if threshold == 0.0 { 0.0 } else { threshold };
    Selection {
        threshold,
        count_le,
    }
}

/// Two thresholds from a strided sample that bracket the k-th smallest with high probability:
/// `lo` (`None` = below everything) and `hi`.
fn sample_bracket<B: Backend>(parts: &[Tensor<B, 1>], p: usize, k: u64) -> (Option<f64>, f64) {
    let stride = sample_stride(p);
    let mut sample: Vec<f64> = Vec::with_capacity(SAMPLE + parts.len());
    for part in parts {
        let picked = part.clone().slice(Slice::new(0, None, stride as isize));
        let values = picked
            .into_data()
            .convert::<f64>()
            .into_vec::<f64>()
            .expect("converted to f64 just above");
        sample.extend(values);
    }
    // NaNs stay in the sample (sorted by total order) and are mapped below.
    sample.sort_by(f64::total_cmp);
    let (lo_pos, hi_pos) = bracket_positions(sample.len(), p, k);
    let lo = lo_pos.map(|i| sample[i]);
    let hi = hi_pos.map_or(f64::INFINITY, |i| sample[i]);
    // NaN samples mean "top"; an empty bracket means "below everything".
    let hi = if hi.is_nan() { f64::INFINITY } else { hi };
    let lo = lo.filter(|l| !l.is_nan() && *l < hi);
    (lo, hi)
}
