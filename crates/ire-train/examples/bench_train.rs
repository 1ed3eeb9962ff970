//! Training-step throughput of a Llama shape on a CPU backend (flex or ndarray), as
//! [`ire_train::bench::step_bench`] measures it (`ire bench step` is the same on the binary's
//! backend). Not a test: `tools/bench-train.sh`
//! runs it next to PyTorch on the same shape and prints the ratios.
//!
//! ```text
//! cargo run --release -p ire-train --example bench_train -- [--preset tiny] [--vocab V]
//!     [--seq 256] [--batch 8] [--steps 20] [--warmup 3] [--optim adamw|admire|both]
//!     [--backend flex|ndarray] [--profile]
//! ```
//!
//! Prints one JSON line: the median and mean step time (the mean includes the refresh steps,
//! so AdmIRE / AdamW compares means), tokens/s, peak RSS, and with `--profile` where the time
//! goes: the phases of the step and, inside forward + backward, each fused op (ms per step).
//! `--optim both` steps an AdamW and an AdmIRE run of the same model alternately (both see the
//! same machine load) and adds `admire_over_adamw`, the ratio of their mean step times.
//! Threads: RAYON_NUM_THREADS. Kernels: IRE_KERNELS (see `ire_llama::ops`).

use burn::backend::{Autodiff, Flex, NdArray};
use ire_llama::{LlamaConfig, Precision};
use ire_train::bench::{bench_optims, step_bench, StepBench, BENCH_OPTIMS};

struct Args {
    preset: String,
    vocab: Option<usize>,
    seq: usize,
    batch: usize,
    steps: usize,
    warmup: usize,
    optim: String,
    backend: String,
    profile: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        preset: "tiny".into(),
        vocab: None,
        seq: 256,
        batch: 8,
        steps: 20,
        warmup: 3,
        optim: "adamw".into(),
        backend: "flex".into(),
        profile: false,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        if flag == "--profile" {
            a.profile = true;
            continue;
        }
        let value = argv.next().ok_or(format!("{flag} needs a value"))?;
        let int = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag} takes an integer, got {v}"))
        };
        match flag.as_str() {
            "--preset" => a.preset = value,
            "--vocab" => a.vocab = Some(int(&value)?),
            "--seq" => a.seq = int(&value)?,
            "--batch" => a.batch = int(&value)?,
            "--steps" => a.steps = int(&value)?,
            "--warmup" => a.warmup = int(&value)?,
            "--optim" => a.optim = value,
            "--backend" => a.backend = value,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_train: {e}");
            std::process::exit(2);
        }
    };
    let mut model = match LlamaConfig::preset(&a.preset) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("bench_train: {e}");
            std::process::exit(2);
        }
    };
    if let Some(v) = a.vocab {
        model.vocab_size = v;
    }
    let settings = StepBench {
        model,
        seq: a.seq,
        batch: a.batch,
        steps: a.steps,
        warmup: a.warmup,
        optims: match bench_optims(&a.optim, &StepBench::default_optim()) {
            Ok(o) => o,
            Err(label) => {
                eprintln!("bench_train: --optim {label}: expected {BENCH_OPTIMS}");
                std::process::exit(2);
            }
        },
        lr: 1e-3,
        precision: Precision::F32,
        profile: a.profile,
        peak_flops: 3e11,
    };
    // As `ire_train::train` does before its first step.
    ire_llama::ops::cpu::tune();
    let line = match a.backend.as_str() {
        "ndarray" => step_bench::<Autodiff<NdArray>>(&settings, &Default::default()),
        _ => step_bench::<Autodiff<Flex>>(&settings, &Default::default()),
    };
    let mut line = match line {
        Ok(line) => line,
        Err(e) => {
            eprintln!("bench_train: {e}");
            std::process::exit(1);
        }
    };
    line["impl"] = format!("ire/{}", a.backend).into();
    line["preset"] = a.preset.into();
    println!("{line}");
}
