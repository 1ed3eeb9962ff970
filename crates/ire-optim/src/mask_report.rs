//! What a mask refresh found, per part of the model: the diagnostics `metrics.jsonl` carries at
//! every refresh (its `mask` object) so that a researcher sees *which* coordinates IRE calls
//! flat, not only how many (the global fraction only echoes γ).
//!
//! - `tau`: the threshold τ (the ⌊γp⌋-th smallest `h`);
//! - `flat`: the flat fraction of each parameter group, by Hugging Face name: `embed_tokens`,
//!   `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`, `norm` (every
//!   RMSNorm weight) and `lm_head` — coordinates in the mask over the group's coordinates;
//! - `layers`: the flat fraction of each decoder layer (`model.layers.{i}.*`), in layer order;
//! - `overlap`: how stable the flat set is — the fraction of this refresh's flat coordinates that
//!   were flat at the previous refresh, |n_prev ∧ n| / |n| (absent at the first refresh).
//!
//! Counts are exact integer sums of the boolean masks (no sampling), on the device
//! ([`FusedUpdate::count_flat`]: composed tensor ops by default, one pass over the mask bytes on
//! burn-flex).

use std::collections::BTreeMap;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::fused::FusedUpdate;

/// The diagnostics of one mask refresh; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MaskReport {
    /// τ, the threshold of `n = 1[h ≤ τ]` (the largest per-tensor τ with `scope = per_tensor`).
    pub tau: f64,
    /// Flat fraction per parameter group (HF name part), e.g. `"q_proj": 0.24`.
    pub flat: BTreeMap<String, f64>,
    /// Flat fraction per decoder layer, index = layer.
    pub layers: Vec<f64>,
    /// Fraction of the flat coordinates that were flat at the previous refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<f64>,
}

/// The group a parameter belongs to, from its HF name: the projection's name for the linear
/// layers, `norm` for every RMSNorm, `embed_tokens`, `lm_head`; else the name's last part
/// before `.weight`.
pub fn group_of(name: &str) -> &str {
    let stem = name.strip_suffix(".weight").unwrap_or(name);
    let last = stem.rsplit('.').next().unwrap_or(stem);
    if last.ends_with("norm") {
        "norm"
    } else {
        last
    }
}

/// The decoder layer of `model.layers.{i}.…`, if any.
pub fn layer_of(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("model.layers.")?;
    rest.split('.').next()?.parse().ok()
}

/// Counts per group and layer of one refresh's masks, and the overlap with `previous` (the
/// masks of the refresh before, when there was one).
pub fn mask_report<B: FusedUpdate>(
    tau: f64,
    masks: &BTreeMap<String, Tensor<B, 1, Bool>>,
    previous: &BTreeMap<String, Tensor<B, 1, Bool>>,
) -> MaskReport {
    let mut groups: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut layers: Vec<(u64, u64)> = Vec::new();
    let (mut flat_total, mut kept) = (0u64, 0u64);
    for (name, mask) in masks {
        let prev = previous.get(name).filter(|p| p.dims() == mask.dims());
        let prev = prev.map(|p| p.clone().into_primitive());
        let (flat, shared) = B::count_flat(mask.clone().into_primitive(), prev);
        let size = mask.dims()[0] as u64;
        add(
            groups.entry(group_of(name).to_string()).or_default(),
            flat,
            size,
        );
        if let Some(layer) = layer_of(name) {
            if layers.len() <= layer {
                layers.resize(layer + 1, (0, 0));
            }
            add(&mut layers[layer], flat, size);
        }
        flat_total += flat;
        kept += shared.unwrap_or(0);
    }
    let overlap = (!previous.is_empty() && flat_total > 0).then(|| kept as f64 / flat_total as f64);
    MaskReport {
        tau,
        flat: groups.into_iter().map(|(g, c)| (g, ratio(c))).collect(),
        layers: layers.into_iter().map(ratio).collect(),
        overlap,
    }
}

fn add(acc: &mut (u64, u64), flat: u64, size: u64) {
    acc.0 += flat;
    acc.1 += size;
}

fn ratio((flat, size): (u64, u64)) -> f64 {
    match size {
        0 => 0.0,
        _ => flat as f64 / size as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Flex;

    fn mask(bits: &[bool]) -> Tensor<B, 1, Bool> {
        Tensor::from_data(
            TensorData::new(bits.to_vec(), [bits.len()]),
            &Default::default(),
        )
    }

    #[test]
    fn the_flex_counts_equal_the_composed_ones_and_a_plain_count() {
        let n: usize = 100_003; // several of the kernel's chunks, and a ragged last one
        let a: Vec<bool> = (0..n).map(|i| (i * 7919) % 5 < 2).collect();
        let b: Vec<bool> = (0..n).map(|i| (i * 104_729) % 3 == 0).collect();
        let want = (
            a.iter().filter(|&&x| x).count() as u64,
            Some(a.iter().zip(&b).filter(|(x, y)| **x && **y).count() as u64),
        );
        let (ma, mb) = (mask(&a).into_primitive(), mask(&b).into_primitive());
        assert_eq!(B::count_flat(ma.clone(), Some(mb.clone())), want);
        assert_eq!(
            crate::fused::reference_count::<B>(ma.clone(), Some(mb)),
            want
        );
        assert_eq!(B::count_flat(ma, None), (want.0, None));
    }

    #[test]
    fn groups_and_layers_come_from_the_hf_names() {
        assert_eq!(group_of("model.embed_tokens.weight"), "embed_tokens");
        assert_eq!(group_of("model.layers.3.self_attn.q_proj.weight"), "q_proj");
        assert_eq!(group_of("model.layers.0.mlp.down_proj.weight"), "down_proj");
        assert_eq!(group_of("model.layers.0.input_layernorm.weight"), "norm");
        assert_eq!(
            group_of("model.layers.1.post_attention_layernorm.weight"),
            "norm"
        );
        assert_eq!(group_of("model.norm.weight"), "norm");
        assert_eq!(group_of("lm_head.weight"), "lm_head");
        assert_eq!(layer_of("model.layers.12.mlp.up_proj.weight"), Some(12));
        assert_eq!(layer_of("model.norm.weight"), None);
        assert_eq!(layer_of("lm_head.weight"), None);
    }

    #[test]
    fn fractions_count_flat_coordinates_per_group_layer_and_overlap() {
        let t = true;
        let f = false;
        let masks = BTreeMap::from([
            ("model.embed_tokens.weight".to_string(), mask(&[t, t, t, f])),
            (
                "model.layers.0.self_attn.q_proj.weight".into(),
                mask(&[t, f]),
            ),
            (
                "model.layers.0.input_layernorm.weight".into(),
                mask(&[f, f]),
            ),
            (
                "model.layers.1.self_attn.q_proj.weight".into(),
                mask(&[t, t]),
            ),
            ("model.norm.weight".into(), mask(&[t, f])),
        ]);
        let first = mask_report(0.5, &masks, &BTreeMap::new());
        assert_eq!(first.flat["embed_tokens"], 0.75);
        assert_eq!(first.flat["q_proj"], 0.75); // 3 of 4 over both layers
        assert_eq!(first.flat["norm"], 0.25); // 1 of 4: layer 0's norm and the final norm
        assert_eq!(first.layers, vec![0.25, 1.0]); // layer 0: 1 of 4; layer 1: 2 of 2
        assert_eq!(first.overlap, None);
        assert_eq!(first.tau, 0.5);

        // The next refresh keeps the embedding's first two and the layer-1 q_proj's first
        // flat coordinates, and makes new ones flat: 3 of its 6 flat coordinates were flat.
        let next = BTreeMap::from([
            ("model.embed_tokens.weight".to_string(), mask(&[t, t, f, t])),
            (
                "model.layers.0.self_attn.q_proj.weight".into(),
                mask(&[f, t]),
            ),
            (
                "model.layers.0.input_layernorm.weight".into(),
                mask(&[f, t]),
            ),
            (
                "model.layers.1.self_attn.q_proj.weight".into(),
                mask(&[t, f]),
            ),
            ("model.norm.weight".into(), mask(&[f, f])),
        ]);
        let second = mask_report(0.4, &next, &masks);
        assert_eq!(second.overlap, Some(3.0 / 6.0));
        let json = serde_json::to_string(&second).unwrap();
        assert_eq!(serde_json::from_str::<MaskReport>(&json).unwrap(), second);
    }
}
