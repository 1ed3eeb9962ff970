//! `ire bench`: dataset-free measurements on this binary's backend (the CPU, or the GPU of a
//! CUDA build), each printed as one JSON line: `step` times the training step of a Llama shape,
//! `tau` checks AdmIRE's exact threshold on the device against a host sort. `tools/gpu-check.sh`
//! runs both on a lent GPU next to PyTorch.

use anyhow::{bail, Context};
use ire_llama::{LlamaConfig, Precision};
use ire_train::bench::{step_bench, tau_check, BenchOptim, StepBench};

/// Arguments of `ire bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// Training-step throughput of a preset shape on fixed pseudo-random tokens.
    Step(StepArgs),
    /// The exact k-th smallest (AdmIRE's τ) of N values on the device vs a host sort.
    Tau(TauArgs),
}

#[derive(clap::Args, Debug)]
struct StepArgs {
    /// Model shape: tiny, 60m, 119m or 229m.
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Replace the preset's vocabulary size.
    #[arg(long)]
    vocab: Option<usize>,
    /// Sequence length.
    #[arg(long, default_value_t = 256)]
    seq: usize,
    /// Sequences per step (one device's micro-batch).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// adamw, admire, or both (stepped alternately; adds admire_over_adamw).
    #[arg(long, default_value = "both")]
    optim: String,
    /// f32 or bf16.
    #[arg(long, default_value = "f32")]
    precision: String,
    /// "cpu" on the CPU build, "cuda:N" on the CUDA build.
    #[arg(long, default_value = default_device())]
    device: String,
    /// Peak FLOP/s of the device for MFU (default: the build's).
    #[arg(long)]
    peak_flops: Option<f64>,
    /// Milliseconds per step by phase and by fused op (one optimizer only).
    #[arg(long)]
    profile: bool,
}

#[derive(clap::Args, Debug)]
struct TauArgs {
    /// How many values.
    #[arg(long, default_value_t = 10_000_000)]
    values: usize,
    /// "cpu" on the CPU build, "cuda:N" on the CUDA build.
    #[arg(long, default_value = default_device())]
    device: String,
}

fn default_device() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda:0"
    } else {
        "cpu"
    }
}

/// Runs `ire bench`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let line = match args.what {
        What::Step(a) => step(a)?,
        What::Tau(a) => {
            let device = one_device(&a.device)?;
            let mut out = tau_check::<crate::backend::Backend>(a.values, &device);
            out["device"] = a.device.into();
            out
        }
    };
    println!("{line}");
    Ok(())
}

fn step(a: StepArgs) -> anyhow::Result<serde_json::Value> {
    let mut model = LlamaConfig::preset(&a.preset)
        .with_context(|| format!("--preset {}: expected tiny, 60m, 119m or 229m", a.preset))?;
    if let Some(v) = a.vocab {
        model.vocab_size = v;
    }
    let optim = match a.optim.as_str() {
        "adamw" => BenchOptim::AdamW,
        "admire" => BenchOptim::Admire,
        "both" => BenchOptim::Both,
        other => bail!("--optim {other}: expected adamw, admire or both"),
    };
    let precision = match a.precision.as_str() {
        "f32" => Precision::F32,
        "bf16" => Precision::Bf16,
        other => bail!("--precision {other}: expected f32 or bf16"),
    };
    if a.steps == 0 || a.batch == 0 || a.seq == 0 {
        bail!("--steps, --batch and --seq must be at least 1");
    }
    let device = one_device(&a.device)?;
    ire_llama::ops::cpu::tune();
    let settings = StepBench {
        model,
        seq: a.seq,
        batch: a.batch,
        steps: a.steps,
        warmup: a.warmup,
        which: optim,
        optim: StepBench::default_optim(),
        lr: 1e-3,
        precision,
        profile: a.profile,
        peak_flops: a.peak_flops.unwrap_or(crate::backend::DEFAULT_PEAK_FLOPS),
    };
    let mut out = step_bench::<crate::backend::Training>(&settings, &device)?;
    out["impl"] = "ire".into();
    out["preset"] = a.preset.into();
    out["device"] = a.device.into();
    Ok(out)
}

fn one_device(name: &str) -> anyhow::Result<crate::backend::Device> {
    let mut devices = crate::backend::parse_devices(&[name.to_string()])?;
    Ok(devices.remove(0))
}
