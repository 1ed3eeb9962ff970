//! Causal attention with RoPE, forward and backward, one (batch, head) at a time.
//!
//! Per head, q and k are rotated (q also scaled by `1/√hd`) into small contiguous buffers; the
//! scores are computed a block of [`BLOCK`] query rows at a time against only the keys that
//! block may see (the masked upper triangle is skipped, not computed and thrown away), and the
//! block's softmax runs in place with a vectorised `exp`. The forward keeps only the row
//! log-sum-exp; the backward rebuilds each probability block from it (FlashAttention-2's
//! recipe), so no `[S, S]` tensor outlives one block. Heads run in parallel (rayon); with
//! grouped-query attention a backward task owns one kv head and its query heads, so the k/v
//! gradients need no locks.
//!
//! Layouts: q, y `[B, S, H, hd]`; k, v `[B, S, KVH, hd]`; cos, sin `[S, hd]`; lse `[B, H, S]`.

use rayon::prelude::*;

use super::gemm::{matmul, Mat, Par};
use super::{dot, exp_shifted_in_place, flush, multiversion};

/// Query rows per score block.
pub const BLOCK: usize = 64;

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Batch.
    pub b: usize,
    /// Sequence length.
    pub s: usize,
    /// Query heads.
    pub h: usize,
    /// Key/value heads (divides `h`).
    pub kvh: usize,
    /// Head size (even).
    pub hd: usize,
}

impl Dims {
    fn group(&self) -> usize {
        self.h / self.kvh
    }

    /// A `[S, hd]` view of head `head` of batch `b` in a `[B, S, heads, hd]` tensor.
    fn head<'a>(&self, x: &'a [f32], heads: usize, b: usize, head: usize) -> Mat<'a> {
        let start = (b * self.s * heads + head) * self.hd;
        Mat {
            data: &x[start..],
            rows: self.s,
            cols: self.hd,
            rs: heads * self.hd,
            cs: 1,
        }
    }
}

multiversion! {
    /// `out[p] = (x[p]·cos[p] + rotate_half(x[p])·sin[p]) · scale` for the rows of `x`.
    fn rope_in(x: Mat<'_>, cos: &[f32], sin: &[f32], scale: f32, out: &mut [f32]) {
        let hd = x.cols;
        let half = hd / 2;
        for (p, o) in out.chunks_exact_mut(hd).enumerate().take(x.rows) {
            let xr = &x.data[p * x.rs..p * x.rs + hd];
            let (x1, x2) = xr.split_at(half);
            let (c1, c2) = cos[p * hd..(p + 1) * hd].split_at(half);
            let (s1, s2) = sin[p * hd..(p + 1) * hd].split_at(half);
            let (o1, o2) = o.split_at_mut(half);
            for j in 0..half {
                o1[j] = (x1[j] * c1[j] - x2[j] * s1[j]) * scale;
                o2[j] = (x2[j] * c2[j] + x1[j] * s2[j]) * scale;
            }
        }
    }
}

multiversion! {
    /// The transpose of [`rope_in`] on contiguous `[rows, hd]` gradients:
    /// `out = (g·cos + rotate_halfᵀ(g·sin)) · scale`, `rotate_halfᵀ([a, b]) = [b, −a]`.
    fn rope_out(g: &[f32], hd: usize, cos: &[f32], sin: &[f32], scale: f32, out: &mut [f32]) {
        let half = hd / 2;
        for (p, (gr, o)) in g.chunks_exact(hd).zip(out.chunks_exact_mut(hd)).enumerate() {
            let (g1, g2) = gr.split_at(half);
            let (c1, c2) = cos[p * hd..(p + 1) * hd].split_at(half);
            let (s1, s2) = sin[p * hd..(p + 1) * hd].split_at(half);
            let (o1, o2) = o.split_at_mut(half);
            for j in 0..half {
                o1[j] = (g1[j] * c1[j] + g2[j] * s2[j]) * scale;
                o2[j] = (g2[j] * c2[j] - g1[j] * s1[j]) * scale;
            }
        }
    }
}

multiversion! {
    /// Causal softmax of a block of score rows (row `r` may see keys `0 ..= first + r`) in
    /// place; masked entries become 0. Writes each row's log-sum-exp.
    fn softmax_block(p: &mut [f32], ld: usize, first: usize, lse: &mut [f32]) {
        for (r, (row, l)) in p.chunks_exact_mut(ld).zip(lse.iter_mut()).enumerate() {
            let (vis, masked) = row.split_at_mut(first + r + 1);
            let m = super::max(vis);
            let sum = exp_shifted_in_place(vis, m);
            let inv = 1.0 / sum;
            for x in vis.iter_mut() {
                *x = flush(*x * inv);
            }
            masked.fill(0.0);
            *l = m + sum.ln();
        }
    }
}

multiversion! {
    /// Rebuilds probabilities `exp(score − lse)` of a block of causal rows in place.
    fn probs_block(p: &mut [f32], ld: usize, first: usize, lse: &[f32]) {
        for (r, (row, &l)) in p.chunks_exact_mut(ld).zip(lse).enumerate() {
            let (vis, masked) = row.split_at_mut(first + r + 1);
            exp_shifted_in_place(vis, l);
            masked.fill(0.0);
        }
    }
}

multiversion! {
    /// `dp ← p ⊙ (dp − δ_row)` (the softmax backward) for a block of rows.
    fn dscores_block(p: &[f32], dp: &mut [f32], ld: usize, delta: &[f32]) {
        for ((pr, dr), &d) in p.chunks_exact(ld).zip(dp.chunks_exact_mut(ld)).zip(delta) {
            for (g, &q) in dr.iter_mut().zip(pr) {
                *g = flush(q * (*g - d));
            }
        }
    }
}

/// One head's forward: `(y [S, hd], lse [S])`.
fn forward_head(
    d: Dims,
    (q, k, v): (&[f32], &[f32], &[f32]),
    (cos, sin): (&[f32], &[f32]),
    b: usize,
    head: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (s, hd) = (d.s, d.hd);
    let kv = head / d.group();
    let scale = 1.0 / (hd as f32).sqrt();
    let mut qr = vec![0.0f32; s * hd];
    let mut kr = vec![0.0f32; s * hd];
    rope_in(d.head(q, d.h, b, head), cos, sin, scale, &mut qr);
    rope_in(d.head(k, d.kvh, b, kv), cos, sin, 1.0, &mut kr);
    let vm = d.head(v, d.kvh, b, kv);
    let mut y = vec![0.0f32; s * hd];
    let mut lse = vec![0.0f32; s];
    let mut p = vec![0.0f32; BLOCK.min(s) * s];
    for i0 in (0..s).step_by(BLOCK) {
        let (bq, kend) = (BLOCK.min(s - i0), (i0 + BLOCK).min(s));
        let p = &mut p[..bq * kend];
        let qb = Mat::rows(&qr[i0 * hd..], bq, hd, hd);
        matmul(
            p,
            kend,
            qb,
            Mat::rows(&kr, kend, hd, hd).t(),
            false,
            Par::Seq,
        );
        softmax_block(p, kend, i0, &mut lse[i0..i0 + bq]);
        let pm = Mat::rows(p, bq, kend, kend);
        matmul(
            &mut y[i0 * hd..],
            hd,
            pm,
            vm.row_range(0, kend),
            false,
            Par::Seq,
        );
    }
    (y, lse)
}

/// Causal attention with RoPE; returns `(y [B, S, H, hd], lse [B, H, S])`.
pub fn forward(
    d: Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    cos: &[f32],
    sin: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let heads: Vec<(Vec<f32>, Vec<f32>)> = (0..d.b * d.h)
        .into_par_iter()
        .map(|t| forward_head(d, (q, k, v), (cos, sin), t / d.h, t % d.h))
        .collect();
    let (s, h, hd) = (d.s, d.h, d.hd);
    let mut y = vec![0.0f32; d.b * s * h * hd];
    y.par_chunks_mut(s * h * hd)
        .zip(heads.par_chunks(h))
        .for_each(|(yb, hs)| {
            for (head, (yh, _)) in hs.iter().enumerate() {
                for (p, row) in yh.chunks_exact(hd).enumerate() {
                    let at = (p * h + head) * hd;
                    yb[at..at + hd].copy_from_slice(row);
                }
            }
        });
    let lse = heads.into_iter().flat_map(|(_, l)| l).collect();
    (y, lse)
}

/// The tensors of one backward call.
#[derive(Debug, Clone, Copy)]
pub struct Saved<'a> {
    /// `[B, S, H, hd]`.
    pub q: &'a [f32],
    /// `[B, S, KVH, hd]`.
    pub k: &'a [f32],
    /// `[B, S, KVH, hd]`.
    pub v: &'a [f32],
    /// `[S, hd]`.
    pub cos: &'a [f32],
    /// `[S, hd]`.
    pub sin: &'a [f32],
    /// The forward's output `[B, S, H, hd]`.
    pub y: &'a [f32],
    /// The forward's log-sum-exp `[B, H, S]`.
    pub lse: &'a [f32],
}

/// One kv head's backward (with its query heads): `(dq [G, S, hd], dk [S, hd], dv [S, hd])`.
fn backward_kv_head(d: Dims, t: Saved<'_>, dy: &[f32], b: usize, kv: usize) -> [Vec<f32>; 3] {
    let (s, hd, g) = (d.s, d.hd, d.group());
    let scale = 1.0 / (hd as f32).sqrt();
    let mut kr = vec![0.0f32; s * hd];
    rope_in(d.head(t.k, d.kvh, b, kv), t.cos, t.sin, 1.0, &mut kr);
    let krm = Mat::rows(&kr, s, hd, hd);
    let vm = d.head(t.v, d.kvh, b, kv);
    let (mut dkr, mut dv) = (vec![0.0f32; s * hd], vec![0.0f32; s * hd]);
    let mut dq = vec![0.0f32; g * s * hd];
    let (mut qr, mut dqr) = (vec![0.0f32; s * hd], vec![0.0f32; s * hd]);
    let mut p = vec![0.0f32; BLOCK.min(s) * s];
    let mut dp = vec![0.0f32; BLOCK.min(s) * s];
    let mut delta = vec![0.0f32; s];
    for (gi, head) in (kv * g..(kv + 1) * g).enumerate() {
        rope_in(d.head(t.q, d.h, b, head), t.cos, t.sin, scale, &mut qr);
        let (dom, om) = (d.head(dy, d.h, b, head), d.head(t.y, d.h, b, head));
        for (i, dl) in delta.iter_mut().enumerate() {
            let (a, o) = (i * dom.rs, i * om.rs);
            *dl = dot(&dom.data[a..a + hd], &om.data[o..o + hd]);
        }
        let lse = &t.lse[(b * d.h + head) * s..][..s];
        for i0 in (0..s).step_by(BLOCK) {
            let (bq, kend) = (BLOCK.min(s - i0), (i0 + BLOCK).min(s));
            let (p, dp) = (&mut p[..bq * kend], &mut dp[..bq * kend]);
            let qb = Mat::rows(&qr[i0 * hd..], bq, hd, hd);
            let dob = dom.row_range(i0, bq);
            matmul(p, kend, qb, krm.row_range(0, kend).t(), false, Par::Seq);
            probs_block(p, kend, i0, &lse[i0..i0 + bq]);
            let pm = Mat::rows(p, bq, kend, kend);
            matmul(&mut dv, hd, pm.t(), dob, true, Par::Seq);
            matmul(dp, kend, dob, vm.row_range(0, kend).t(), false, Par::Seq);
            dscores_block(p, dp, kend, &delta[i0..i0 + bq]);
            let dsm = Mat::rows(dp, bq, kend, kend);
            matmul(
                &mut dqr[i0 * hd..],
                hd,
                dsm,
                krm.row_range(0, kend),
                false,
                Par::Seq,
            );
            matmul(&mut dkr, hd, dsm.t(), qb, true, Par::Seq);
        }
        let out = &mut dq[gi * s * hd..(gi + 1) * s * hd];
        rope_out(&dqr, hd, t.cos, t.sin, scale, out);
    }
    let mut dk = vec![0.0f32; s * hd];
    rope_out(&dkr, hd, t.cos, t.sin, 1.0, &mut dk);
    [dq, dk, dv]
}

/// Gradients of [`forward`]: `(dq [B, S, H, hd], dk, dv [B, S, KVH, hd])`.
pub fn backward(d: Dims, t: Saved<'_>, dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let parts: Vec<[Vec<f32>; 3]> = (0..d.b * d.kvh)
        .into_par_iter()
        .map(|i| backward_kv_head(d, t, dy, i / d.kvh, i % d.kvh))
        .collect();
    let (s, hd, g) = (d.s, d.hd, d.group());
    let mut dq = vec![0.0f32; d.b * s * d.h * hd];
    let mut dk = vec![0.0f32; d.b * s * d.kvh * hd];
    let mut dv = vec![0.0f32; d.b * s * d.kvh * hd];
    dq.par_chunks_mut(s * d.h * hd)
        .zip(dk.par_chunks_mut(s * d.kvh * hd))
        .zip(dv.par_chunks_mut(s * d.kvh * hd))
        .zip(parts.par_chunks(d.kvh))
        .for_each(|(((dqb, dkb), dvb), kvs)| {
            for (kv, [pq, pk, pv]) in kvs.iter().enumerate() {
                for p in 0..s {
                    let at = (p * d.kvh + kv) * hd;
                    dkb[at..at + hd].copy_from_slice(&pk[p * hd..(p + 1) * hd]);
                    dvb[at..at + hd].copy_from_slice(&pv[p * hd..(p + 1) * hd]);
                    for gi in 0..g {
                        let at = (p * d.h + kv * g + gi) * hd;
                        let from = (gi * s + p) * hd;
                        dqb[at..at + hd].copy_from_slice(&pq[from..from + hd]);
                    }
                }
            }
        });
    (dq, dk, dv)
}
