//! Rotary position embeddings in HF's rotate-half convention:
//! `x' = x·cos + rotate_half(x)·sin`, with `rotate_half([x₁, x₂]) = [−x₂, x₁]` and
//! `cos/sin[p, j] = cos/sin(p · θ^(−2(j mod hd/2)/hd))`, computed in f32 as transformers does.

use burn::prelude::*;

/// Host-side cos/sin tables `[positions, head_dim]`, computed once per model.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeHost {
    head_dim: usize,
    positions: usize,
    theta: f64,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeHost {
    /// Tables for `positions` positions.
    pub fn new(head_dim: usize, positions: usize, theta: f64) -> Self {
        let half = head_dim / 2;
        // transformers: inv_freq = 1 / base ** (arange(0, dim, 2).float() / dim), all in f32.
        let inv_freq: Vec<f32> = (0..half)
            .map(|j| 1.0f32 / (theta as f32).powf((2 * j) as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(positions * head_dim);
        let mut sin = Vec::with_capacity(positions * head_dim);
        for p in 0..positions {
            for j in 0..head_dim {
                let angle = p as f32 * inv_freq[j % half];
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Self {
            head_dim,
            positions,
            theta,
            cos,
            sin,
        }
    }

    /// Device tables for the first `seq` positions (extended on the fly when `seq` is longer
    /// than the precomputed range).
    pub fn tables<B: Backend>(&self, seq: usize, device: &B::Device) -> RopeTables<B> {
        if seq > self.positions {
            return Self::new(self.head_dim, seq, self.theta).tables(seq, device);
        }
        let n = seq * self.head_dim;
        let make = |v: &[f32]| {
            Tensor::<B, 2>::from_data(
                TensorData::new(v[..n].to_vec(), [seq, self.head_dim]),
                device,
            )
        };
        RopeTables {
            cos: make(&self.cos),
            sin: make(&self.sin),
        }
    }
}

/// cos/sin on the device, `[seq, head_dim]` each. The attention op applies them
/// ([`crate::ops::causal_attention`]); [`RopeTables::apply`] is the plain formula.
#[derive(Debug, Clone)]
pub struct RopeTables<B: Backend> {
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
}

impl<B: Backend> RopeTables<B> {
    /// `(cos, sin)`, `[seq, head_dim]` each.
    pub fn tables(&self) -> (Tensor<B, 2>, Tensor<B, 2>) {
        (self.cos.clone(), self.sin.clone())
    }

    /// Rotates queries or keys: `x·cos + rotate_half(x)·sin`.
    ///
    /// # Shapes
    /// - x: `[batch, seq, heads, head_dim]` → same
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        rope(x, self.cos.clone(), self.sin.clone())
    }
}

/// RoPE on `[B, S, H, hd]` with tables `[S, hd]`: `x·cos + rotate_half(x)·sin`.
pub fn rope<B: Backend>(x: Tensor<B, 4>, cos: Tensor<B, 2>, sin: Tensor<B, 2>) -> Tensor<B, 4> {
    let [s, hd] = cos.dims();
    let (cos, sin) = (cos.reshape([1, s, 1, hd]), sin.reshape([1, s, 1, hd]));
    x.clone() * cos + rotate_half(x) * sin
}

/// The transpose of [`rope`]: `dx = g·cos + rotate_halfᵀ(g·sin)`, `rotate_halfᵀ([a, b]) = [b, −a]`.
pub fn rope_backward<B: Backend>(
    g: Tensor<B, 4>,
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
) -> Tensor<B, 4> {
    let [s, hd] = cos.dims();
    let (cos, sin) = (cos.reshape([1, s, 1, hd]), sin.reshape([1, s, 1, hd]));
    let gs = g.clone() * sin;
    let (a, b) = (
        gs.clone().narrow(3, 0, hd / 2),
        gs.narrow(3, hd / 2, hd / 2),
    );
    g * cos + Tensor::cat(vec![b, a.neg()], 3)
}

/// `[x₁, x₂] → [−x₂, x₁]` on the last axis.
fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let hd = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, hd / 2);
    let x2 = x.narrow(3, hd / 2, hd / 2);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    type B = burn::backend::Flex;

    /// RoPE equals the closed-form rotation of each pair (x_j, x_{j+hd/2}) by angle p·θ^(−2j/hd).
    #[test]
    fn rope_equals_closed_form_rotation() {
        let (hd, seq, theta) = (8usize, 5usize, 10_000.0f64);
        let device = Default::default();
        let host = RopeHost::new(hd, 16, theta);
        let data: Vec<f32> = (0..seq * hd)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let x = Tensor::<B, 1>::from_floats(data.as_slice(), &device).reshape([1, seq, 1, hd]);
        let y: Vec<f32> = host
            .tables::<B>(seq, &device)
            .apply(x)
            .into_data()
            .to_vec()
            .unwrap();
        for p in 0..seq {
            for j in 0..hd / 2 {
                let angle = p as f64 * theta.powf(-(2.0 * j as f64) / hd as f64);
                let (a, b) = (data[p * hd + j] as f64, data[p * hd + j + hd / 2] as f64);
                let ra = a * angle.cos() - b * angle.sin();
                let rb = a * angle.sin() + b * angle.cos();
                assert!((y[p * hd + j] as f64 - ra).abs() < 1e-5, "p={p} j={j}");
                assert!(
                    (y[p * hd + j + hd / 2] as f64 - rb).abs() < 1e-5,
                    "p={p} j={j}"
                );
            }
        }
        // Longer sequences than the precomputed range extend the table identically.
        let short = RopeHost::new(hd, 3, theta).tables::<B>(seq, &device);
        let full = host.tables::<B>(seq, &device);
        let a: Vec<f32> = short.cos.into_data().to_vec().unwrap();
        let b: Vec<f32> = full.cos.into_data().to_vec().unwrap();
        assert_eq!(a, b);
    }
}
