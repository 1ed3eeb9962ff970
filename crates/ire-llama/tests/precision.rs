//! Mixed precision on the CPU backend (burn-flex computes bf16): the bf16 model's loss and
//! gradients track the f32 model's, every gradient reaches the f32 parameters as finite f32,
//! the logits come back in f32, and the f32 path is the model without casts. Debug builds of
//! Flex assert equal dtypes in binary ops, so a forgotten cast fails here.

use burn::backend::{Autodiff, Flex};
use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::DType;
use ire_llama::{InitScheme, Llama, LlamaConfig, Precision};

type AD = Autodiff<Flex>;
type Grads = <AD as burn::tensor::backend::AutodiffBackend>::Gradients;

fn config(tied: bool) -> LlamaConfig {
    LlamaConfig {
        vocab_size: 211,
        hidden_size: 64,
        intermediate_size: 96,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 32,
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
        tie_word_embeddings: tied,
        initializer_range: 0.02,
    }
}

/// Two rows of 24 tokens, and the same shifted by one as targets.
fn batch() -> (Tensor<AD, 2, Int>, Tensor<AD, 2, Int>) {
    let seq: Vec<i64> = (0..50).map(|i| (i * 37 + 11) % 211).collect();
    let rows = |off: usize| {
        let flat: Vec<i64> = [&seq[off..off + 24], &seq[off + 25..off + 49]].concat();
        Tensor::<AD, 1, Int>::from_ints(flat.as_slice(), &Default::default()).reshape([2, 24])
    };
    (rows(0), rows(1))
}

/// Each parameter's name, gradient (as f64) and the gradient's dtype.
fn gradients(model: &Llama<AD>, grads: &Grads) -> Vec<(String, Vec<f64>, DType)> {
    struct V<'a> {
        path: Vec<String>,
        grads: &'a Grads,
        out: Vec<(String, Vec<f64>, DType)>,
    }
    impl ModuleVisitor<AD> for V<'_> {
        fn enter_module(&mut self, n: &str, _: &str) {
            self.path.push(n.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<AD, D>>) {
            let g = p
                .val()
                .grad(self.grads)
                .expect("every parameter has a gradient");
            let dtype = g.dtype();
            let values = g.into_data().convert::<f64>().to_vec().unwrap();
            self.out.push((self.path.join("."), values, dtype));
        }
    }
    let mut v = V {
        path: vec![],
        grads,
        out: vec![],
    };
    model.visit(&mut v);
    v.out
}

fn loss_and_grads(model: &Llama<AD>) -> (f64, Vec<(String, Vec<f64>, DType)>) {
    let (inputs, targets) = batch();
    let loss = model.loss(inputs, targets);
    assert_eq!(loss.dtype(), DType::F32, "the loss is computed in f32");
    let value = loss.clone().into_scalar() as f64;
    let grads = loss.backward();
    (value, gradients(model, &grads))
}

#[test]
fn bf16_loss_and_gradients_track_f32_and_reach_the_f32_parameters_as_f32() {
    for tied in [false, true] {
        // Torch's init draws the embedding from N(0, 1), which as a tied head gives logits of
        // O(10); HF's N(0, 0.02) keeps the tied model's loss near ln V like the untied one's.
        let init = if tied {
            InitScheme::Hf
        } else {
            InitScheme::Torch
        };
        let model = Llama::<AD>::init(&config(tied), init, 7, &Default::default()).unwrap();
        let (l32, g32) = loss_and_grads(&model);
        let (l16, g16) = loss_and_grads(&model.with_precision(Precision::Bf16));
        // bf16 has an 8-bit mantissa (relative rounding 2⁻⁹ ≈ 0.2 %); the loss is a mean of
        // f32 log-softmaxes over bf16 logits, so it moves by far less than that.
        assert!(
            l32 > 5.0 && l32 < 6.0,
            "tied={tied}: f32 loss {l32} (≈ ln 211)"
        );
        // Measured: 3e-5 relative (5.69338 vs 5.69321 untied).
        assert!(
            (l16 - l32).abs() < 5e-4 * l32,
            "tied={tied}: bf16 loss {l16} vs f32 {l32}"
        );
        assert_ne!(l16, l32, "tied={tied}: bf16 must actually round something");
        assert_eq!(g32.len(), g16.len());
        for ((name, a, _), (_, b, dtype)) in g32.iter().zip(&g16) {
            assert_eq!(*dtype, DType::F32, "{name}: gradient of an f32 parameter");
            assert!(
                b.iter().all(|x| x.is_finite()),
                "{name}: non-finite gradient"
            );
            let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let (na, nb) = (norm(a), norm(b));
            let cosine = dot / (na * nb);
            let rel = (nb - na).abs() / na;
            // Measured: cosine ≥ 0.99995, norms within 0.3 %; bounds with room to spare.
            assert!(cosine > 0.998, "tied={tied} {name}: cosine {cosine}");
            assert!(rel < 0.02, "tied={tied} {name}: norm {nb} vs {na}");
        }
    }
}

#[test]
fn logits_come_back_in_f32_and_f32_precision_changes_nothing() {
    let model =
        Llama::<Flex>::init(&config(false), InitScheme::Torch, 3, &Default::default()).unwrap();
    let (inputs, _) = batch();
    let inputs = inputs.inner();
    let plain = model.forward(inputs.clone());
    let f32 = model
        .clone()
        .with_precision(Precision::F32)
        .forward(inputs.clone());
    let bf16 = model.with_precision(Precision::Bf16).forward(inputs);
    assert_eq!(bf16.dtype(), DType::F32);
    let (plain, f32, bf16) = (values(plain), values(f32), values(bf16));
    assert_eq!(plain, f32, "Precision::F32 is the model without casts");
    let worst = plain
        .iter()
        .zip(&bf16)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    // Logits are O(1); bf16 rounding of activations and weights moves them by O(1e-2)
    // (measured: 0.009).
    assert!(
        worst > 0.0 && worst < 0.05,
        "largest bf16 logit error {worst}"
    );
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn values(t: Tensor<Flex, 3>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}
