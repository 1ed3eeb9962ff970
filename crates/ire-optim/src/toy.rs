//! The paper's toy example (Fig. 1): IRE on L(u, v) = (1 + u²) v² / 2 with plain gradient
//! descent as the base optimizer, driven through the same threshold, mask and boost functions
//! as AdmIRE (on Burn tensors, in f64).
//!
//! ```text
//! ∇L = (u v², (1 + u²) v)        diag ∇²L = (v², 1 + u²)        θ₀ = (1, 0.01)
//! Δ = −η ∇L                       τ = 1st smallest of diag ∇²L (γ = 0.5, p = 2)
//! θ ← θ + (1 + κ n) ⊙ Δ,  n = 1[h ≤ τ] = (1, 0)
//! ```
//!
//! The minima are v = 0 with sharpness 1 + u²; IRE speeds up the drift of u towards the
//! flattest minimum (0, 0) by 1 + κ while the sharp direction v is untouched.

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::DType;

use crate::mask::{boost, flat_mask};
use crate::select_device::kth_smallest;

/// Fraction of flat coordinates in the toy (1 of 2).
const GAMMA: f64 = 0.5;
/// |v| below this counts as converged onto the minimum manifold.
const CONVERGED: f64 = 1e-12;
/// |v| above this (or a non-finite iterate) counts as divergence.
const DIVERGED: f64 = 1e6;

/// A toy run.
#[derive(Debug, Clone, PartialEq)]
pub struct ToyResult {
    /// Iterates (u, v) from θ₀ on (only finite ones).
    pub trajectory: Vec<(f64, f64)>,
    /// u at the last finite iterate (u∞ when converged).
    pub limit_u: f64,
    /// First step with |v| < 1e-12, if reached within the step cap.
    pub converged_step: Option<usize>,
    /// First step with |v| > 1e6 or a non-finite iterate, if any.
    pub diverged: Option<usize>,
}

/// Runs IRE (κ) on the toy loss with learning rate `lr` for at most `steps` steps, stopping at
/// convergence (|v| < 1e-12) or divergence. κ = 0 is gradient descent.
pub fn run(kappa: f64, lr: f64, steps: usize) -> ToyResult {
    type B = Flex;
    let device = Default::default();
    let f64_tensor =
        |a: [f64; 2]| Tensor::<B, 1>::from_data(TensorData::from(a), (&device, DType::F64));

    let (mut u, mut v) = (1.0_f64, 0.01_f64);
    let mut theta = f64_tensor([u, v]);
    let mut result = ToyResult {
        trajectory: vec![(u, v)],
        limit_u: u,
        converged_step: None,
        diverged: None,
    };
    for step in 1..=steps {
        let grad = [u * v * v, (1.0 + u * u) * v];
        let hessian_diag = f64_tensor([v * v, 1.0 + u * u]);
        let tau = kth_smallest(std::slice::from_ref(&hessian_diag), (GAMMA * 2.0) as u64).threshold;
        let mask = flat_mask(hessian_diag, tau);
        // The base optimizer's step (gradient descent), then the boost of its displacement.
        let stepped = theta.clone() - f64_tensor(grad).mul_scalar(lr);
        theta = boost(theta, stepped, mask, kappa);

        let values = theta
            .to_data()
            .convert::<f64>()
            .into_vec::<f64>()
            .expect("converted to f64 just above");
        let (nu, nv) = (values[0], values[1]);
        if !(nu.is_finite() && nv.is_finite()) || nv.abs() > DIVERGED {
            result.diverged = Some(step);
            break;
        }
        (u, v) = (nu, nv);
        result.trajectory.push((u, v));
        result.limit_u = u;
        if v.abs() < CONVERGED {
            result.converged_step = Some(step);
            break;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close6(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-7
    }

    #[test]
    fn gd_and_ire_reach_the_papers_limits() {
        for (kappa, expected) in [
            (0.0, 0.992887),
            (90.0, 0.928491),
            (900.0, 0.742592),
            (9000.0, 0.009979),
        ] {
            let r = run(kappa, 1.0, 10_000);
            assert!(r.converged_step.is_some(), "κ = {kappa} did not converge");
            assert_eq!(r.diverged, None);
            assert!(
                close6(r.limit_u, expected),
                "κ = {kappa}: u∞ = {} ≠ {expected}",
                r.limit_u
            );
        }
    }

    #[test]
    fn first_iterates_and_u100_match_the_paper() {
        let gd = run(0.0, 1.0, 100);
        assert_eq!(gd.trajectory.len(), 101);
        assert!(close6(gd.trajectory[100].0, 0.993674));
        assert!((gd.trajectory[1].0 - 0.9999).abs() < 1e-12);
        assert!((gd.trajectory[1].1 + 0.01).abs() < 1e-12);
        let ire = run(90.0, 1.0, 2);
        assert!((ire.trajectory[1].0 - 0.9909).abs() < 1e-12);
        assert!((ire.trajectory[2].0 - 0.981883).abs() < 1e-6);
        // The sharp direction is untouched by IRE.
        assert_eq!(ire.trajectory[1].1, gd.trajectory[1].1);
        // Larger κ converges in fewer steps.
        let steps = |k| run(k, 1.0, 10_000).converged_step.unwrap();
        assert!(
            steps(9000.0) < steps(900.0) && steps(900.0) < steps(90.0) && steps(90.0) < steps(0.0)
        );
    }

    #[test]
    fn lr_two_diverges_without_nan() {
        let r = run(0.0, 2.0, 1000);
        let step = r.diverged.expect("η = 2 must diverge");
        assert!(step < 20, "diverged late: {step}");
        assert_eq!(r.converged_step, None);
        assert!(r.limit_u.is_finite());
        assert!(r
            .trajectory
            .iter()
            .all(|(u, v)| u.is_finite() && v.is_finite()));
        // |v| triples every step: 0.01, -0.03, 0.09, …
        assert!((r.trajectory[1].1 + 0.03).abs() < 1e-12);
        assert!((r.trajectory[2].1 - 0.09).abs() < 1e-4);
    }
}
