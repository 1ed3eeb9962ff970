//! Sharpness of a loss at a point, from gradients alone: Hutchinson's estimate of the Hessian
//! trace and the top eigenvalue by power iteration (the paper's Table 6 measures Tr(∇²L)).
//!
//! Hessian-vector products are central differences of gradients (Burn 0.21 cannot
//! differentiate twice through its autodiff graph):
//!
//! ```text
//! H·v ≈ (∇L(θ + εv) − ∇L(θ − εv)) / 2ε                  error O(ε²·‖∇³L‖)
//! Tr(H) = E[vᵀHv],  v Rademacher (±1)                    mean over probes ± standard error
//! λ_max: v ← Hv / ‖Hv‖, λ = vᵀHv, until λ settles
//! ```
//!
//! Everything here works on flat `f64` parameter vectors and a gradient closure, so it applies
//! to any model (the caller flattens its parameters) and is tested on functions whose Hessian
//! is known in closed form.

use crate::OptimError;
use ire_core::SplitMix64;

/// A mean with its standard error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The estimate.
    pub mean: f64,
    /// Standard error of the mean (0 with one sample).
    pub stderr: f64,
    /// Samples (probes or iterations) used.
    pub samples: usize,
}

/// A gradient of the loss at given flat parameters.
pub trait GradFn: FnMut(&[f64]) -> Result<Vec<f64>, OptimError> {}
impl<F: FnMut(&[f64]) -> Result<Vec<f64>, OptimError>> GradFn for F {}

/// How Hessian-vector products are taken: the finite-difference step and the probes' seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probing {
    /// The step ε of the central differences (see [`default_step`]).
    pub eps: f64,
    /// Seed of the random probe vectors.
    pub seed: u64,
}

/// The finite-difference step for parameters `theta`: `1e-3 ×` their RMS (at least 1e-5), so
/// the perturbation is small against the parameters whatever their scale.
pub fn default_step(theta: &[f64]) -> f64 {
    let rms = (theta.iter().map(|x| x * x).sum::<f64>() / theta.len().max(1) as f64).sqrt();
    1e-3 * rms.max(1e-2)
}

/// `H·v` by central differences of `grad` at `theta` with step `eps`.
pub fn hessian_vector<G>(
    grad: &mut G,
    theta: &[f64],
    v: &[f64],
    eps: f64,
) -> Result<Vec<f64>, OptimError>
where
    G: FnMut(&[f64]) -> Result<Vec<f64>, OptimError>,
{
    let shifted = |sign: f64| -> Vec<f64> {
        theta
            .iter()
            .zip(v)
            .map(|(t, d)| t + sign * eps * d)
            .collect()
    };
    let plus = grad(&shifted(1.0))?;
    let minus = grad(&shifted(-1.0))?;
    if plus.len() != theta.len() || minus.len() != theta.len() {
        return Err(OptimError::Sharpness(format!(
            "the gradient has {} values, the parameters {}",
            plus.len().min(minus.len()),
            theta.len()
        )));
    }
    Ok(plus
        .iter()
        .zip(&minus)
        .map(|(p, m)| (p - m) / (2.0 * eps))
        .collect())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Hutchinson's estimate of `Tr(∇²L(theta))` from `probes` Rademacher vectors (seeded).
pub fn hutchinson_trace(
    grad: &mut impl GradFn,
    theta: &[f64],
    probes: usize,
    how: Probing,
) -> Result<Estimate, OptimError> {
    let mut rng = SplitMix64::new(how.seed);
    let mut samples = Vec::with_capacity(probes);
    for _ in 0..probes {
        let v: Vec<f64> = theta
            .iter()
            .map(|_| if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 })
            .collect();
        let hv = hessian_vector(grad, theta, &v, how.eps)?;
        samples.push(dot(&v, &hv));
    }
    Ok(mean_and_stderr(&samples))
}

fn mean_and_stderr(samples: &[f64]) -> Estimate {
    let n = samples.len();
    let mean = samples.iter().sum::<f64>() / n.max(1) as f64;
    let stderr = match n {
        0 | 1 => 0.0,
        _ => {
            let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            (var / n as f64).sqrt()
        }
    };
    Estimate {
        mean,
        stderr,
        samples: n,
    }
}

/// The largest-magnitude eigenvalue of `∇²L(theta)` by power iteration from a seeded random
/// start, stopping when it changes by less than `tol` (relative) or after `max_iters`.
pub fn top_eigenvalue(
    grad: &mut impl GradFn,
    theta: &[f64],
    (max_iters, tol): (usize, f64),
    how: Probing,
) -> Result<Estimate, OptimError> {
    let mut rng = SplitMix64::new(how.seed);
    let mut v: Vec<f64> = theta.iter().map(|_| rng.normal()).collect();
    normalize(&mut v);
    let mut lambda = 0.0;
    for iter in 1..=max_iters {
        let mut hv = hessian_vector(grad, theta, &v, how.eps)?;
        let next = dot(&v, &hv);
        let settled = (next - lambda).abs() <= tol * next.abs().max(1e-12);
        lambda = next;
        if normalize(&mut hv) == 0.0 || settled {
            return Ok(Estimate {
                mean: lambda,
                stderr: 0.0,
                samples: iter,
            });
        }
        v = hv;
    }
    Ok(Estimate {
        mean: lambda,
        stderr: 0.0,
        samples: max_iters,
    })
}

/// Scales `v` to unit length; returns its former norm.
fn normalize(v: &mut [f64]) -> f64 {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    type Grad = Box<dyn FnMut(&[f64]) -> Result<Vec<f64>, OptimError>>;

    /// L = ½ θᵀAθ with A = Q·diag(d)·Qᵀ, Q a Householder reflection: H = A exactly.
    fn quadratic(d: &[f64]) -> (Grad, Vec<Vec<f64>>) {
        let n = d.len();
        let u: Vec<f64> = (0..n).map(|i| 1.0 + (i as f64 * 0.7).sin()).collect();
        let uu = dot(&u, &u);
        let q: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| (i == j) as u8 as f64 - 2.0 * u[i] * u[j] / uu)
                    .collect()
            })
            .collect();
        let a: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| (0..n).map(|k| q[i][k] * d[k] * q[j][k]).sum())
                    .collect()
            })
            .collect();
        let rows = a.clone();
        let grad: Grad = Box::new(move |t: &[f64]| Ok(rows.iter().map(|r| dot(r, t)).collect()));
        (grad, a)
    }

    #[test]
    fn trace_and_top_eigenvalue_of_a_quadratic() {
        let d = [5.0, 3.0, 2.5, 1.0, 0.5, 0.25, -0.5, 0.1];
        let (mut grad, a) = quadratic(&d);
        let theta: Vec<f64> = (0..d.len()).map(|i| 0.3 * i as f64 - 1.0).collect();
        let exact: f64 = d.iter().sum();
        assert!(((0..d.len()).map(|i| a[i][i]).sum::<f64>() - exact).abs() < 1e-12);
        let eps = default_step(&theta);
        let how = |seed| Probing { eps, seed };
        let t = hutchinson_trace(&mut grad, &theta, 400, how(1)).unwrap();
        assert!(
            t.stderr > 0.0,
            "a non-diagonal Hessian gives varying probes"
        );
        assert!(
            (t.mean - exact).abs() < 3.0 * t.stderr,
            "trace {} ± {} vs exact {exact}",
            t.mean,
            t.stderr
        );
        let top = top_eigenvalue(&mut grad, &theta, (500, 1e-12), how(2)).unwrap();
        assert!((top.mean - 5.0).abs() < 1e-6, "λ_max {top:?}");
    }

    #[test]
    fn sharpness_of_the_papers_toy_matches_its_closed_form() {
        // L(u, v) = (1 + u²)·v²/2: ∇L = (u·v², (1 + u²)·v), H = [[v², 2uv], [2uv, 1 + u²]].
        let mut grad: Grad = Box::new(|t: &[f64]| {
            let (u, v) = (t[0], t[1]);
            Ok(vec![u * v * v, (1.0 + u * u) * v])
        });
        let (u, v): (f64, f64) = (1.5, 0.5);
        let (a, b, c) = (v * v, 2.0 * u * v, 1.0 + u * u);
        let trace = a + c;
        let lambda = (a + c) / 2.0 + (((a - c) / 2.0).powi(2) + b * b).sqrt();
        let theta = [u, v];
        let eps = default_step(&theta);
        // Rademacher probes on a 2×2 Hessian give vᵀHv = a + c ± 2b: the mean converges.
        let how = |seed| Probing { eps, seed };
        let t = hutchinson_trace(&mut grad, &theta, 2000, how(3)).unwrap();
        assert!((t.mean - trace).abs() < 3.0 * t.stderr, "{t:?} vs {trace}");
        let top = top_eigenvalue(&mut grad, &theta, (200, 1e-12), how(4)).unwrap();
        assert!((top.mean - lambda).abs() < 1e-5, "{top:?} vs {lambda}");
    }

    #[test]
    fn a_gradient_of_the_wrong_length_is_an_error() {
        let mut grad: Grad = Box::new(|_: &[f64]| Ok(vec![0.0]));
        let how = Probing { eps: 1e-3, seed: 0 };
        let err = hutchinson_trace(&mut grad, &[1.0, 2.0], 2, how).unwrap_err();
        assert!(err.to_string().contains("2"), "{err}");
    }
}
