//! Global-norm clipping across all parameters (torch's `clip_grad_norm_`), and the gradient
//! helpers used for accumulation.

mod common;

use burn::backend::Flex;
use burn::optim::GradientsParams;
use common::{loss_grads, model};
use ire_llama::params::named_params;
use ire_optim::{add_gradients, clip_global_norm, global_grad_norm, scale_gradients};

/// All gradients of `model` as host vectors in parameter order.
fn host(model: &ire_llama::Llama<common::B>, g: &GradientsParams) -> Vec<Vec<f32>> {
    named_params(model)
        .into_iter()
        .map(|p| match p.shape.len() {
            1 => g
                .get::<Flex, 1>(p.id)
                .unwrap()
                .into_data()
                .to_vec()
                .unwrap(),
            _ => g
                .get::<Flex, 2>(p.id)
                .unwrap()
                .into_data()
                .to_vec()
                .unwrap(),
        })
        .collect()
}

#[test]
fn clips_to_the_global_norm_like_torch() {
    let m = model(1);
    let g = loss_grads(&m, 0);
    let before = host(&m, &g);
    let total = before
        .iter()
        .flatten()
        .map(|x| (*x as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(total > 0.1, "test needs a sizeable gradient: {total}");
    assert!((global_grad_norm(&m, &g) - total).abs() < 1e-5 * total);

    let max_norm = total / 4.0;
    let (clipped, reported) = clip_global_norm(&m, g, max_norm);
    assert!((reported as f64 - total).abs() < 1e-5 * total);
    let coef = (max_norm / (total + 1e-6)) as f32;
    let after = host(&m, &clipped);
    for (a, b) in after.iter().flatten().zip(before.iter().flatten()) {
        assert!((a - b * coef).abs() <= 1e-6 * (b * coef).abs() + 1e-12);
    }
    let new_total = after
        .iter()
        .flatten()
        .map(|x| (*x as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((new_total - max_norm).abs() < 1e-5 * max_norm);

    // Below the limit: unchanged, bit for bit.
    let g = loss_grads(&m, 0);
    let (same, reported) = clip_global_norm(&m, g, 10.0 * total);
    assert!((reported as f64 - total).abs() < 1e-5 * total);
    let same = host(&m, &same);
    assert!(same
        .iter()
        .flatten()
        .zip(before.iter().flatten())
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn accumulation_helpers_add_and_scale() {
    let m = model(1);
    let (a, b) = (loss_grads(&m, 0), loss_grads(&m, 1));
    let (ha, hb) = (host(&m, &a), host(&m, &b));
    let mean = scale_gradients(add_gradients(a, b, &m), 0.5, &m);
    let hm = host(&m, &mean);
    for ((x, y), z) in ha
        .iter()
        .flatten()
        .zip(hb.iter().flatten())
        .zip(hm.iter().flatten())
    {
        assert_eq!(*z, (x + y) * 0.5);
    }
}
