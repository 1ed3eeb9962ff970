//! The LM head's cross-entropy, fused with the head: `loss = mean_i (lse_i − z_i[y_i])` for the
//! logits `z = h wᵀ`, computed a block of rows at a time so the `[N, V]` logits never exist in
//! full (memory falls with the vocabulary: a block is ≈ [`BLOCK_ELEMS`] floats).
//!
//! Per block: one gemm for the logits, then per row (rayon) the max, a vectorised exp-sum and
//! the log-sum-exp; the target logit is `h_i · w_{y_i}` (exact, independent of the softmax).
//! With gradients, the block's logits become `(softmax − onehot)/N` in place and two more gemms
//! give `∂h` for those rows and accumulate `∂w` — so the backward pass only scales by the
//! incoming gradient. Labels may also be *drawn* from each row's softmax by inverse CDF (GNB).

use rayon::prelude::*;

use super::gemm::{matmul, product, Mat, Par};
use super::{dot, exp_shifted_in_place, flush, max, multiversion, sum_exp_shifted};

/// Target size of one block of logits, in floats (64 MiB): the whole batch for small
/// vocabularies, 512 rows at V = 32000. Larger blocks make the `∂w` accumulation (a
/// read-modify-write of `[V, D]` per block) rarer; smaller ones save memory.
pub const BLOCK_ELEMS: usize = 1 << 24;

/// What the loss compares each row with.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The true label of each row.
    Labels(&'a [i64]),
    /// One uniform in `[0, 1)` per row: draw the label from the row's softmax.
    Sample(&'a [f32]),
}

/// What [`cross_entropy`] computed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Mean loss over the rows.
    pub loss: f64,
    /// `∂loss/∂h` `[N, D]` and `∂loss/∂w` `[V, D]`, when asked for.
    pub grads: Option<(Vec<f32>, Vec<f32>)>,
    /// The labels used (drawn ones for [`Target::Sample`]).
    pub labels: Vec<i64>,
}

multiversion! {
    /// Log-sum-exp of a row without touching it.
    fn row_lse(z: &[f32]) -> f32 {
        let m = max(z);
        m + sum_exp_shifted(z, m).ln()
    }
}

multiversion! {
    /// Turns a row of logits into `e^(z − max)` in place; returns `(max, Σ)`.
    fn row_exp(z: &mut [f32]) -> (f32, f32) {
        let m = max(z);
        (m, exp_shifted_in_place(z, m))
    }
}

multiversion! {
    /// `e ← e·c` (turns `e^(z−m)` into `softmax/N` with `c = 1/(Σ·N)`), flushing what falls
    /// below f32's normal range.
    fn row_scale(e: &mut [f32], c: f32) {
        for x in e.iter_mut() {
            *x = flush(*x * c);
        }
    }
}

/// `#{j : cdf_j < u}` for the cumulative sums of `e / total` (clamped to the last class), the
/// inverse-CDF draw the reference does with `cumsum(softmax) < u`.
fn draw(e: &[f32], total: f32, u: f32) -> usize {
    let inv = 1.0 / total;
    let mut cdf = 0.0f32;
    for (j, &x) in e.iter().enumerate() {
        cdf += x * inv;
        if cdf >= u {
            return j;
        }
    }
    e.len().saturating_sub(1)
}

/// Mean cross-entropy of `h wᵀ` (h `[N, D]`, w `[V, D]`) against `target`; with `grads`, also
/// the gradients of the mean. A label outside `0..V` is an error naming the row.
pub fn cross_entropy(
    h: &[f32],
    w: &[f32],
    d: usize,
    target: Target<'_>,
    grads: bool,
) -> Result<Output, String> {
    let n = h.len() / d.max(1);
    let v = w.len() / d.max(1);
    if let Target::Labels(labels) = target {
        if let Some(i) = labels.iter().position(|&y| y < 0 || y as usize >= v) {
            return Err(format!(
                "label {} of row {i} is outside the vocabulary 0..{v}",
                labels[i]
            ));
        }
    }
    let rows = (BLOCK_ELEMS / v.max(1)).clamp(1, n.max(1));
    let wm = Mat::rows(w, v, d, d);
    let mut grad_h = if grads {
        vec![0.0f32; n * d]
    } else {
        Vec::new()
    };
    let mut grad_w = if grads {
        vec![0.0f32; v * d]
    } else {
        Vec::new()
    };
    let mut labels = vec![0i64; n];
    let mut loss = 0.0f64;
    for r0 in (0..n).step_by(rows) {
        let bn = rows.min(n - r0);
        let hb = Mat::rows(&h[r0 * d..], bn, d, d);
        // A new (unzeroed) block each time: the allocator hands back the previous one.
        let mut logits = product(hb, wm.t(), Par::All);
        let z = &mut logits[..];
        let block_labels = &mut labels[r0..r0 + bn];
        loss += z
            .par_chunks_mut(v)
            .zip(block_labels.par_iter_mut())
            .enumerate()
            .map(|(i, (row, label))| {
                let r = r0 + i;
                let lse = if grads || matches!(target, Target::Sample(_)) {
                    let (m, total) = row_exp(row);
                    *label = match target {
                        Target::Labels(l) => l[r],
                        Target::Sample(u) => draw(row, total, u[r]) as i64,
                    };
                    if grads {
                        row_scale(row, 1.0 / (total * n as f32));
                        row[*label as usize] -= 1.0 / n as f32;
                    }
                    m + total.ln()
                } else {
                    *label = match target {
                        Target::Labels(l) => l[r],
                        Target::Sample(_) => unreachable!("handled above"),
                    };
                    row_lse(row)
                };
                let y = *label as usize;
                let zy = dot(&h[r * d..(r + 1) * d], &w[y * d..(y + 1) * d]);
                (lse - zy) as f64
            })
            .sum::<f64>();
        if grads {
            let dz = Mat::rows(z, bn, v, v);
            matmul(&mut grad_h[r0 * d..], d, dz, wm, false, Par::All);
            matmul(&mut grad_w, d, dz.t(), hb, r0 > 0, Par::All);
        }
    }
    Ok(Output {
        loss: loss / n.max(1) as f64,
        grads: grads.then_some((grad_h, grad_w)),
        labels,
    })
}
