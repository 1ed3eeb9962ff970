//! Decoding with the key/value cache equals recomputing the whole sequence, and sampling is a
//! pure function of the seed.

use burn::backend::Flex;
use burn::prelude::*;
use ire_core::SplitMix64;
use ire_llama::generate::{generate, pick, room_after, KvCache, Sampling};
use ire_llama::{InitScheme, Llama, LlamaConfig};

type B = Flex;

/// A small model with grouped-query attention (4 query heads share 2 kv heads).
fn model() -> Llama<B> {
    let mut cfg = LlamaConfig::preset("tiny").unwrap();
    cfg.hidden_size = 32;
    cfg.intermediate_size = 64;
    cfg.num_hidden_layers = 2;
    cfg.num_attention_heads = 4;
    cfg.num_key_value_heads = 2;
    cfg.vocab_size = 97;
    Llama::<B>::init(&cfg, InitScheme::Hf, 5, &Default::default()).unwrap()
}

fn tokens(ids: &[u32]) -> Tensor<B, 2, Int> {
    let v: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(v, [1, ids.len()]), &Default::default())
}

fn row(logits: Tensor<B, 3>, pos: usize) -> Vec<f32> {
    let v = logits.dims()[2];
    logits
        .slice([0..1, pos..pos + 1, 0..v])
        .into_data()
        .to_vec()
        .unwrap()
}

#[test]
fn cached_decoding_equals_full_recomputation() {
    let model = model();
    let greedy = Sampling {
        temperature: 0.0,
        top_k: 0,
        seed: 0,
    };
    let prompt = [3u32, 14, 15, 92, 65];
    let new = generate(&model, &prompt, 12, &greedy, None, &Default::default());
    assert_eq!(new.len(), 12);
    // The same tokens by recomputing every prefix from scratch, and the same logits.
    let mut seq = prompt.to_vec();
    let mut cache = KvCache::new(2);
    let mut cached = model.forward_cached(tokens(&prompt), &mut cache);
    let mut pos = prompt.len() - 1;
    for &expected in &new {
        let full = row(model.forward(tokens(&seq)), seq.len() - 1);
        let inc = row(cached, pos);
        let worst = full
            .iter()
            .zip(&inc)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            worst < 1e-4,
            "at length {}: logits differ by {worst}",
            seq.len()
        );
        let argmax = pick(&full, &greedy, &mut SplitMix64::new(0));
        assert_eq!(argmax, expected, "greedy token at length {}", seq.len());
        seq.push(expected);
        cached = model.forward_cached(tokens(&[expected]), &mut cache);
        pos = 0;
    }
    assert_eq!(cache.len(), seq.len());
}

#[test]
fn the_same_seed_gives_the_same_tokens() {
    let model = model();
    let at = |seed| Sampling {
        temperature: 1.0,
        top_k: 20,
        seed,
    };
    let run = |s: &Sampling| generate(&model, &[1, 2, 3], 16, s, None, &Default::default());
    assert_eq!(run(&at(7)), run(&at(7)));
    assert_ne!(run(&at(7)), run(&at(8)), "another seed, other tokens");
    // top-k = 1 is greedy whatever the temperature.
    let greedy = Sampling {
        temperature: 0.0,
        top_k: 0,
        seed: 0,
    };
    let k1 = Sampling {
        temperature: 2.0,
        top_k: 1,
        seed: 3,
    };
    assert_eq!(run(&greedy), run(&k1));
    // A stop token ends generation after it.
    let first = run(&greedy)[0];
    let stopped = generate(
        &model,
        &[1, 2, 3],
        16,
        &greedy,
        Some(first),
        &Default::default(),
    );
    assert_eq!(stopped, vec![first]);
}

#[test]
fn generation_stops_at_the_models_context() {
    let mut model = model();
    model.config.max_position_embeddings = 16;
    assert_eq!(room_after(&model.config, 5), 11);
    assert_eq!(room_after(&model.config, 20), 0);
    let greedy = Sampling {
        temperature: 0.0,
        top_k: 0,
        seed: 0,
    };
    let prompt = [3u32, 14, 15, 92, 65];
    let new = generate(&model, &prompt, 100, &greedy, None, &Default::default());
    assert_eq!(
        new.len(),
        11,
        "5 prompt tokens + 11 new fill the 16 positions"
    );
    let within = generate(&model, &prompt, 7, &greedy, None, &Default::default());
    assert_eq!(
        within[..],
        new[..7],
        "a request within the context is unchanged"
    );
}
