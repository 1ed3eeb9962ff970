//! Shared by the trainer's integration tests: a run small enough to train in about a second per
//! step on 2 cores, on the vendored Moby-Dick corpus, and readers for its results.
#![allow(dead_code)]

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use ire_llama::params::named_values;
use ire_train::checkpoint::checkpoint_path;
use ire_train::metrics::{read_metrics, MetricLine};
use ire_train::{RunConfig, TrainOptions};

pub type B = Autodiff<Flex>;

/// A run small enough to train in about a second per step on 2 cores; `optim` is `admire`,
/// `adamw`, or a base with or without `+ire` (`muon+ire`).
pub fn config(
    dir: &Path,
    data: &Path,
    optim: &str,
    micro: usize,
    devices: usize,
    total: usize,
) -> RunConfig {
    let devices = vec!["\"cpu\""; devices].join(", ");
    // AdamW and AdmIRE in the older spelling (the recorded runs'), the other bases in the
    // current one, with IRE for `<base>+ire`.
    let optim = match optim {
        "admire" => "name = \"admire\"\nkappa = 4.0\ngamma = 0.6\ninterval = 2".to_string(),
        "adamw" => "name = \"adamw\"".to_string(),
        other => match other.strip_suffix("+ire") {
            Some(base) => format!("base = \"{base}\"\n\n[optim.ire]\ninterval = 2"),
            None => format!("base = \"{other}\""),
        },
    };
    let text = format!(
        r#"
[run]
name = "test"
dir = "{dir}"
seed = 3
devices = [{devices}]

[model]
preset = "tiny"
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
vocab_size = 384

[data]
dataset = "moby-dick"
tokenizer = {{ train = {{ vocab_size = 384 }} }}
prepared_dir = "{data}"

[optim]
{optim}

[schedule]
lr_max = 3e-3
warmup = 2
total = {total}

[batch]
micro_batch = {micro}
seq_len = 16

[eval]
interval = 2
windows = 4

[checkpoint]
interval = 2
keep = 2
"#,
        dir = dir.display(),
        data = data.display()
    );
    RunConfig::parse(&text, "test.toml", &[]).unwrap()
}

pub fn devices(n: usize) -> Vec<burn::tensor::Device<Flex>> {
    vec![Default::default(); n]
}

pub fn opts(resume: bool, stop_at: Option<usize>) -> TrainOptions {
    TrainOptions {
        resume,
        stop_at,
        ..Default::default()
    }
}

pub fn deterministic(run: &Path) -> Vec<MetricLine> {
    read_metrics(&run.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .map(MetricLine::deterministic_part)
        .collect()
}

pub fn weights(run: &Path, step: usize) -> Vec<(String, Vec<f32>)> {
    let model =
        ire_llama::load_hf::<Flex>(&checkpoint_path(run, step), &Default::default()).unwrap();
    named_values::<Flex, _>(&model)
        .into_iter()
        .map(|(p, v)| (p.name, v))
        .collect()
}

pub fn peak() -> f64 {
    3e11
}

/// The largest relative difference `|x − y| / (1e-3 + |x|)` between two runs' weights (names
/// must match, in order).
pub fn worst_relative_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    let mut worst = 0.0f32;
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        for (x, y) in va.iter().zip(vb) {
            worst = worst.max((x - y).abs() / (1e-3 + x.abs()));
        }
    }
    worst
}
