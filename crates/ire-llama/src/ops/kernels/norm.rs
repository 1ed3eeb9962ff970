//! RMSNorm and SwiGLU, forward and backward: one pass over the data each, rows in parallel.

use rayon::prelude::*;

use super::{dot, exp, multiversion};

/// Rows per rayon task: enough work to amortise scheduling, enough tasks to balance threads.
fn rows_per_task(rows: usize, d: usize) -> usize {
    (16_384 / d.max(1)).clamp(1, rows.max(1))
}

multiversion! {
    fn rms_rows(x: &[f32], w: &[f32], eps: f32, y: &mut [f32], r: &mut [f32]) {
        let d = w.len();
        for ((xr, yr), rr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).zip(r.iter_mut()) {
            let inv = 1.0 / (dot(xr, xr) / d as f32 + eps).sqrt();
            *rr = inv;
            for ((o, &a), &g) in yr.iter_mut().zip(xr).zip(w) {
                *o = a * inv * g;
            }
        }
    }
}

/// `y = x·r·w`, `r = 1/√(mean(x²)+ε)` for rows of length `w.len()`; returns `(y, r)`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let d = w.len();
    let rows = x.len() / d.max(1);
    let (mut y, mut r) = (vec![0.0f32; x.len()], vec![0.0f32; rows]);
    let step = rows_per_task(rows, d);
    y.par_chunks_mut(step * d)
        .zip(r.par_chunks_mut(step))
        .zip(x.par_chunks(step * d))
        .for_each(|((y, r), x)| rms_rows(x, w, eps, y, r));
    (y, r)
}

multiversion! {
    fn rms_back_rows(x: &[f32], w: &[f32], r: &[f32], dy: &[f32], dx: &mut [f32], dw: &mut [f32]) {
        let d = w.len();
        for (((xr, dyr), dxr), &inv) in x
            .chunks_exact(d)
            .zip(dy.chunks_exact(d))
            .zip(dx.chunks_exact_mut(d))
            .zip(r)
        {
            // mean(u ⊙ x̂) with u = dy ⊙ w and x̂ = x·r.
            let mut acc = 0.0f32;
            for ((&g, &a), &s) in dyr.iter().zip(xr).zip(w) {
                acc += g * s * a;
            }
            let c = acc * inv / d as f32;
            for ((((o, &g), &a), &s), dws) in dxr.iter_mut().zip(dyr).zip(xr).zip(w).zip(dw.iter_mut()) {
                let xhat = a * inv;
                *o = (g * s - xhat * c) * inv;
                *dws += g * xhat;
            }
        }
    }
}

/// Gradients of [`rms_norm`]: `(∂x, ∂w)`.
pub fn rms_norm_backward(x: &[f32], w: &[f32], r: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let d = w.len();
    let rows = r.len();
    let mut dx = vec![0.0f32; x.len()];
    let step = rows_per_task(rows, d);
    let dw = dx
        .par_chunks_mut(step * d)
        .zip(x.par_chunks(step * d))
        .zip(dy.par_chunks(step * d))
        .zip(r.par_chunks(step))
        .map(|(((dx, x), dy), r)| {
            let mut dw = vec![0.0f32; d];
            rms_back_rows(x, w, r, dy, dx, &mut dw);
            dw
        })
        .reduce(
            || vec![0.0f32; d],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(p, q)| *p += q);
                a
            },
        );
    (dx, dw)
}

/// Elements per rayon task of the element-wise kernels.
const CHUNK: usize = 1 << 15;

multiversion! {
    fn swiglu_chunk(g: &[f32], u: &[f32], y: &mut [f32]) {
        for ((o, &a), &b) in y.iter_mut().zip(g).zip(u) {
            *o = a / (1.0 + exp(-a)) * b;
        }
    }
}

/// `silu(g)·u`.
pub fn swiglu(g: &[f32], u: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; g.len()];
    y.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
        .for_each(|(y, (g, u))| swiglu_chunk(g, u, y));
    y
}

multiversion! {
    fn swiglu_back_chunk(g: &[f32], u: &[f32], dy: &[f32], dg: &mut [f32], du: &mut [f32]) {
        for ((((a, b), o), pg), pu) in g.iter().zip(u).zip(dy).zip(dg.iter_mut()).zip(du.iter_mut()) {
            let s = 1.0 / (1.0 + exp(-*a));
            *pu = o * a * s;
            *pg = o * b * s * (1.0 + a * (1.0 - s));
        }
    }
}

/// Gradients of [`swiglu`]: `(∂g, ∂u)`.
pub fn swiglu_backward(g: &[f32], u: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mut dg, mut du) = (vec![0.0f32; g.len()], vec![0.0f32; g.len()]);
    dg.par_chunks_mut(CHUNK)
        .zip(du.par_chunks_mut(CHUNK))
        .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
        .zip(dy.par_chunks(CHUNK))
        .for_each(|(((dg, du), (g, u)), dy)| swiglu_back_chunk(g, u, dy, dg, du));
    (dg, du)
}
