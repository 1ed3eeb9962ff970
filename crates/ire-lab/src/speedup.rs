//! The estimators a careful optimizer comparison reports, as plain functions of final losses
//! (the study's analysis; "Fantastic Pretraining Optimizers", arXiv 2509.02046, and the
//! modded-nanogpt record rule are the models):
//!
//! - [`best_lr`]: the optimum of an lr grid — the vertex of the parabola in log-lr through the
//!   grid's best point and its two neighbours (a grid whose best point is at an edge has no
//!   bracketed optimum: extend the grid).
//! - [`LossCurve`]: the baseline's final loss against training data, `L(D) = a·D^(−b) + c`,
//!   through its final losses at three budgets (e.g. 0.5T, T, 2T), and its inverse
//!   [`LossCurve::data_for`]: how much data the baseline needs to reach a loss.
//! - [`fitted_speedup`]: `D_base(L_candidate) / D_candidate` — the data the baseline would need
//!   for the candidate's final loss over the data the candidate used.
//! - [`bootstrap`]: a percentile interval of any such statistic over resampled seeds.
//! - [`paired_test`]: the mean paired difference across seeds, its t statistic, and the exact
//!   two-sided sign-flip p-value.

use ire_core::SplitMix64;

/// The optimum of an lr grid: the vertex of the parabola in `ln lr` through the best point and
/// its neighbours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BestLr {
    /// The fitted optimal lr.
    pub lr: f64,
    /// The parabola's loss there.
    pub loss: f64,
}

/// Why an lr grid has no bracketed optimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoOptimum {
    /// Fewer than three points, or a non-finite or non-positive lr.
    TooFewPoints,
    /// The best point is the smallest (`Low`) or largest (`High`) lr: extend the grid there.
    AtEdge(Edge),
    /// The three points are not convex (the loss is not a valley there).
    NotConvex,
}

/// The edge of an lr grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// The smallest lr.
    Low,
    /// The largest lr.
    High,
}

/// The grid's optimum from `(lr, final loss)` points (any order; non-finite losses count as
/// worst).
pub fn best_lr(points: &[(f64, f64)]) -> Result<BestLr, NoOptimum> {
    let mut p: Vec<(f64, f64)> = points.to_vec();
    if p.len() < 3 || p.iter().any(|(lr, _)| !(lr.is_finite() && *lr > 0.0)) {
        return Err(NoOptimum::TooFewPoints);
    }
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let loss = |l: f64| if l.is_finite() { l } else { f64::INFINITY };
    let best = (0..p.len())
        .min_by(|&i, &j| loss(p[i].1).total_cmp(&loss(p[j].1)))
        .expect("at least three points");
    if best == 0 {
        return Err(NoOptimum::AtEdge(Edge::Low));
    }
    if best == p.len() - 1 {
        return Err(NoOptimum::AtEdge(Edge::High));
    }
    let [(u0, y0), (u1, y1), (u2, y2)] =
        [p[best - 1], p[best], p[best + 1]].map(|(lr, l)| (lr.ln(), l));
    if ![y0, y1, y2].iter().all(|y| y.is_finite()) {
        return Err(NoOptimum::NotConvex);
    }
    // The parabola through three points in Newton's form: y = y0 + d1 (u − u0) + d2 (u − u0)(u − u1).
    let d1 = (y1 - y0) / (u1 - u0);
    let d2 = ((y2 - y1) / (u2 - u1) - d1) / (u2 - u0);
    if d2 <= 0.0 {
        return Err(NoOptimum::NotConvex);
    }
    let u = (u0 + u1) / 2.0 - d1 / (2.0 * d2);
    let loss = y0 + d1 * (u - u0) + d2 * (u - u0) * (u - u1);
    Ok(BestLr { lr: u.exp(), loss })
}

/// `L(D) = a·D^(−b) + c`: the baseline's final loss after `D` tokens (or steps).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossCurve {
    /// The scale a > 0.
    pub a: f64,
    /// The exponent b > 0.
    pub b: f64,
    /// The asymptote c (the loss with unlimited data).
    pub c: f64,
}

impl LossCurve {
    /// The curve through three `(D, L)` points with growing D and falling L, the middle one
    /// convex (`L` falling more slowly as D grows, as every power law with c below does).
    /// `None` when no such curve passes through them.
    pub fn through(points: [(f64, f64); 3]) -> Option<Self> {
        let [(d1, l1), (d2, l2), (d3, l3)] = points;
        let ok = d1 > 0.0 && d1 < d2 && d2 < d3 && l1 > l2 && l2 > l3;
        if !(ok && [d1, d2, d3, l1, l2, l3].iter().all(|x| x.is_finite())) {
            return None;
        }
        // With s(b) = (d1^−b − d2^−b)/(d2^−b − d3^−b), the curve needs s(b) = (l1 − l2)/(l2 − l3);
        // s grows monotonically with b, so bisect for it on a log scale of b.
        let target = (l1 - l2) / (l2 - l3);
        let s = |b: f64| (d1.powf(-b) - d2.powf(-b)) / (d2.powf(-b) - d3.powf(-b));
        let (mut lo, mut hi) = (1e-6f64, 20.0f64);
        if !(s(lo) < target && target < s(hi)) {
            return None;
        }
        for _ in 0..200 {
            let mid = (lo * hi).sqrt();
            if s(mid) < target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let b = (lo * hi).sqrt();
        let a = (l1 - l2) / (d1.powf(-b) - d2.powf(-b));
        Some(Self {
            a,
            b,
            c: l1 - a * d1.powf(-b),
        })
    }

    /// The loss after `d`.
    pub fn loss_at(&self, d: f64) -> f64 {
        self.a * d.powf(-self.b) + self.c
    }

    /// The data the curve needs to reach `loss`; `None` at or below the asymptote (no amount of
    /// data gets there on this curve).
    pub fn data_for(&self, loss: f64) -> Option<f64> {
        (loss > self.c).then(|| (self.a / (loss - self.c)).powf(1.0 / self.b))
    }
}

/// The fitted speed-up of a candidate that reached `loss` with `data`: the data the baseline's
/// curve needs for that loss over `data` (`None` when the loss is below the curve's asymptote).
pub fn fitted_speedup(curve: &LossCurve, loss: f64, data: f64) -> Option<f64> {
    curve.data_for(loss).map(|d| d / data)
}

/// A percentile interval over bootstrap resamples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The statistic on the data as given.
    pub estimate: f64,
    /// The 2.5th percentile of the resampled statistic.
    pub low: f64,
    /// The 97.5th percentile.
    pub high: f64,
}

/// The 95 % percentile interval of `statistic` over `resamples` bootstrap resamples: each
/// resample draws, for every sample in `samples` (e.g. the seeds' final losses of one run
/// group), as many values with replacement. Resamples where the statistic is undefined (`None`)
/// are left out; `None` when the statistic of the data itself is undefined. Deterministic for a
/// `seed`.
pub fn bootstrap(
    samples: &[&[f64]],
    statistic: impl Fn(&[Vec<f64>]) -> Option<f64>,
    resamples: usize,
    seed: u64,
) -> Option<Interval> {
    let given: Vec<Vec<f64>> = samples.iter().map(|s| s.to_vec()).collect();
    let estimate = statistic(&given)?;
    let mut rng = SplitMix64::new(seed);
    let mut values: Vec<f64> = (0..resamples)
        .filter_map(|_| {
            let drawn: Vec<Vec<f64>> = samples
                .iter()
                .map(|s| {
                    (0..s.len())
                        .map(|_| s[(rng.next_u64() % s.len() as u64) as usize])
                        .collect()
                })
                .collect();
            statistic(&drawn).filter(|v| v.is_finite())
        })
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at =
        |q: f64| values[((q * (values.len() - 1) as f64).round() as usize).min(values.len() - 1)];
    Some(Interval {
        estimate,
        low: at(0.025),
        high: at(0.975),
    })
}

/// A paired comparison across seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedTest {
    /// Mean of `candidate − baseline` over the pairs.
    pub mean_difference: f64,
    /// `mean / (sd / √n)` (NaN with fewer than two pairs or no spread).
    pub t: f64,
    /// Exact two-sided p-value of the sign-flip (permutation) test: the share of the 2ⁿ sign
    /// assignments whose |mean| is at least the observed one.
    pub p_value: f64,
}

/// The paired test of `candidate[i]` against `baseline[i]` (same seed `i`); `None` without pairs
/// or with more than 20 (2ⁿ assignments).
pub fn paired_test(candidate: &[f64], baseline: &[f64]) -> Option<PairedTest> {
    let d: Vec<f64> = candidate.iter().zip(baseline).map(|(c, b)| c - b).collect();
    let n = d.len();
    if n == 0 || n > 20 || candidate.len() != baseline.len() {
        return None;
    }
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
    let t = mean / (var / n as f64).sqrt();
    let observed = mean.abs() * (1.0 - 1e-12);
    let extreme = (0u32..1 << n)
        .filter(|signs| {
            let sum: f64 = d
                .iter()
                .enumerate()
                .map(|(i, x)| if signs >> i & 1 == 1 { -x } else { *x })
                .sum();
            (sum / n as f64).abs() >= observed
        })
        .count();
    Some(PairedTest {
        mean_difference: mean,
        t,
        p_value: extreme as f64 / (1u64 << n) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parabola_finds_a_known_optimum_between_grid_points() {
        // loss = (ln lr − ln 3.2e-3)² + 5 on a √2 grid from 1e-3: the optimum lies between
        // points and the parabola is exact for a quadratic.
        let truth = 3.2e-3f64;
        let grid: Vec<(f64, f64)> = (0..7)
            .map(|i| {
                let lr = 1e-3 * 2f64.sqrt().powi(i);
                (lr, (lr.ln() - truth.ln()).powi(2) + 5.0)
            })
            .rev()
            .collect();
        let best = best_lr(&grid).unwrap();
        assert!((best.lr / truth - 1.0).abs() < 1e-9, "{best:?}");
        assert!((best.loss - 5.0).abs() < 1e-9);
        // An optimum beyond the grid is named as such, not extrapolated.
        assert_eq!(best_lr(&grid[..3]), Err(NoOptimum::AtEdge(Edge::Low)));
        assert_eq!(best_lr(&grid[4..]), Err(NoOptimum::AtEdge(Edge::High)));
        assert_eq!(best_lr(&grid[..2]), Err(NoOptimum::TooFewPoints));
        // A diverged run (NaN) counts as worst, never as best.
        let mut with_nan = grid.clone();
        with_nan[0].1 = f64::NAN;
        assert!((best_lr(&with_nan).unwrap().lr / truth - 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_loss_curve_recovers_a_power_law_and_inverts_it() {
        let truth = LossCurve {
            a: 40.0,
            b: 0.35,
            c: 3.1,
        };
        for budgets in [[500.0, 1000.0, 2000.0], [300.0, 1000.0, 4000.0]] {
            let points = budgets.map(|d| (d, truth.loss_at(d)));
            let fit = LossCurve::through(points).unwrap();
            assert!((fit.a / truth.a - 1.0).abs() < 1e-6, "{fit:?}");
            assert!((fit.b / truth.b - 1.0).abs() < 1e-9, "{fit:?}");
            assert!((fit.c - truth.c).abs() < 1e-9, "{fit:?}");
            // A candidate that reaches at T the baseline's loss at 1.7 T is 1.7× faster.
            let loss = truth.loss_at(1700.0);
            let speedup = fitted_speedup(&fit, loss, 1000.0).unwrap();
            assert!((speedup - 1.7).abs() < 1e-6, "{speedup}");
        }
        // Below the asymptote no data suffices; curves that are not power laws are refused.
        let fit =
            LossCurve::through([500.0, 1000.0, 2000.0].map(|d| (d, truth.loss_at(d)))).unwrap();
        assert_eq!(fit.data_for(3.0), None);
        assert_eq!(
            LossCurve::through([(1.0, 5.0), (2.0, 5.5), (4.0, 4.0)]),
            None
        );
        assert_eq!(
            LossCurve::through([(1.0, 5.0), (2.0, 4.0), (4.0, 2.0)]),
            None,
            "concave"
        );
    }

    #[test]
    fn bootstrap_intervals_are_deterministic_and_cover_the_spread() {
        let mean = |s: &[Vec<f64>]| Some(s[0].iter().sum::<f64>() / s[0].len() as f64);
        // No spread: a zero-width interval at the value.
        let same = bootstrap(&[&[4.0, 4.0, 4.0]], mean, 500, 1).unwrap();
        assert_eq!((same.low, same.estimate, same.high), (4.0, 4.0, 4.0));
        // Seeds 1..=5: the mean's interval lies inside [min, max] and around 3.
        let spread = bootstrap(&[&[1.0, 2.0, 3.0, 4.0, 5.0]], mean, 2000, 7).unwrap();
        assert_eq!(spread.estimate, 3.0);
        assert!(
            1.0 < spread.low && spread.low < 3.0 && 3.0 < spread.high && spread.high < 5.0,
            "{spread:?}"
        );
        assert_eq!(
            bootstrap(&[&[1.0, 2.0, 3.0, 4.0, 5.0]], mean, 2000, 7),
            Some(spread)
        );
        // An undefined statistic gives no interval.
        assert_eq!(bootstrap(&[&[1.0]], |_| None, 10, 1), None);
    }

    #[test]
    fn the_sign_flip_test_gives_exact_p_values() {
        // Five seeds all better by about 0.1: the most extreme of 32 sign patterns, twice.
        let base = [5.0, 5.1, 4.9, 5.05, 4.95];
        let cand = [4.9, 5.0, 4.79, 4.96, 4.84];
        let t = paired_test(&cand, &base).unwrap();
        assert!((t.mean_difference + 0.102).abs() < 1e-12, "{t:?}");
        assert!((t.p_value - 2.0 / 32.0).abs() < 1e-12, "{t:?}");
        assert!(t.t < -10.0, "{t:?}");
        // Differences of mixed sign are not significant.
        let mixed = paired_test(&[5.1, 4.9, 5.0], &[5.0, 5.0, 5.0]).unwrap();
        assert_eq!(mixed.p_value, 1.0);
        assert_eq!(paired_test(&[], &[]), None);
        assert_eq!(paired_test(&[1.0, 2.0], &[1.0]), None);
    }
}
