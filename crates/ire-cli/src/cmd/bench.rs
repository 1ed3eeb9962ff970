//! `ire bench`: dataset-free measurements on this binary's backend (the CPU, or the GPU of a
//! CUDA build), each printed as one JSON line: `step` times the training step of a Llama shape,
//! `tau` checks AdmIRE's exact threshold on the device against a host sort, `allreduce` sums
//! known values through a collective engine (NCCL on the CUDA build) and checks them.
//! `tools/gpu-check.sh` runs them on a lent GPU next to PyTorch.

use anyhow::{bail, Context};
use ire_llama::{LlamaConfig, Precision};
use ire_train::bench::{bench_optims, step_bench, tau_check, StepBench, BENCH_OPTIMS};
use ire_train::dist::{self, check::allreduce_check, Launch, Rank};
use ire_train::{DistSection, EngineKind};

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
    /// Known values summed over the launcher's processes (NCCL on the CUDA build), checked
    /// against the host sum and timed; exits non-zero on a mismatch. One process alone, or
    /// under torchrun / mpirun / srun.
    Allreduce(AllreduceArgs),
}

#[derive(clap::Args, Debug)]
struct AllreduceArgs {
    /// Bucket sizes in MiB.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256")]
    sizes_mib: Vec<usize>,
    /// Timed sums per size (after the checked one).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// auto, local, mpi or nccl (default: nccl on the CUDA build, auto on the CPU build).
    #[arg(long, default_value = default_engine())]
    engine: String,
    /// Device; default cuda:LOCAL_RANK on the CUDA build, cpu on the CPU build.
    #[arg(long)]
    device: Option<String>,
    /// Seconds the ranks wait for each other at the rendezvous.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// Rendezvous port (default MASTER_PORT + 1).
    #[arg(long)]
    rendezvous_port: Option<u16>,
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
    /// The optimizers, stepped alternately: adamw, admire (adamw+ire), sgd, sgd+ire, lion,
    /// lion+ire, muon, muon+ire, both (adamw,admire; adds admire_over_adamw) or all (every base
    /// alone and with IRE), comma-separated; several add `runs` (each one's step time against
    /// the first's).
    #[arg(long, default_value = "both")]
    optim: String,
    /// f32 or bf16.
    #[arg(long, default_value = "f32")]
    precision: String,
    /// "cpu" on the CPU build, "cuda:N" on the CUDA build.
    #[arg(long, default_value = default_device())]
    device: String,
    /// Peak FLOP/s of the device for MFU (default: on CPU this machine's f32 GEMM peak, measured
    /// as `ire train` does; on CUDA 4.95e14, H100 TF32 dense).
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

fn default_engine() -> &'static str {
    if cfg!(feature = "cuda") {
        "nccl"
    } else {
        "auto"
    }
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
        What::Allreduce(a) => return allreduce(a),
    };
    println!("{line}");
    Ok(())
}

/// `ire bench allreduce`: joins the engine as the launcher says, checks, prints rank 0's line.
fn allreduce(a: AllreduceArgs) -> anyhow::Result<()> {
    let asked = match a.engine.as_str() {
        "auto" => EngineKind::Auto,
        "local" => EngineKind::Local,
        "mpi" => EngineKind::Mpi,
        "nccl" => EngineKind::Nccl,
        other => bail!("--engine {other}: expected auto, local, mpi or nccl"),
    };
    let launch = Launch::from_env()?;
    let name = a.device.unwrap_or_else(|| match cfg!(feature = "cuda") {
        true => format!("cuda:{}", launch.local_rank),
        false => "cpu".into(),
    });
    let device = one_device(&name)?;
    let kind = dist::resolve_engine(asked, &launch, 1, cfg!(feature = "cuda"))?;
    let settings = DistSection {
        engine: kind,
        timeout_s: a.timeout_s,
        rendezvous_port: a.rendezvous_port,
        processes: launch.world,
        ..DistSection::default()
    };
    let rank = Rank {
        index: launch.rank,
        world: launch.world,
    };
    let engine = dist::connect::<crate::backend::Backend>(kind, &launch, rank, &settings, &device)?;
    let sizes: Vec<usize> = a.sizes_mib.iter().map(|m| m << 20).collect();
    let mut out = allreduce_check(engine.as_ref(), &device, &sizes, a.reps)?;
    engine.finish()?;
    out["device"] = name.into();
    out["launcher"] = launch.launcher.to_string().into();
    if rank.is_main() {
        println!("{out}");
    }
    if out["ok"] != serde_json::Value::Bool(true) {
        bail!(
            "the all-reduce gave wrong sums (rank {}): {out}",
            rank.index
        );
    }
    Ok(())
}

fn step(a: StepArgs) -> anyhow::Result<serde_json::Value> {
    let mut model = LlamaConfig::preset(&a.preset)
        .with_context(|| format!("--preset {}: expected tiny, 60m, 119m or 229m", a.preset))?;
    if let Some(v) = a.vocab {
        model.vocab_size = v;
    }
    let optims = bench_optims(&a.optim, &StepBench::default_optim())
        .map_err(|label| anyhow::anyhow!("--optim {label}: expected {BENCH_OPTIMS}"))?;
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
        optims,
        lr: 1e-3,
        precision,
        profile: a.profile,
        peak_flops: crate::backend::bench_peak_flops(a.peak_flops),
    };
    let mut out = step_bench::<crate::backend::Training>(&settings, &device)?;
    out["impl"] = "ire".into();
    out["preset"] = a.preset.into();
    out["device"] = a.device.into();
    out["peak_flops"] = settings.peak_flops.into();
    Ok(out)
}

fn one_device(name: &str) -> anyhow::Result<crate::backend::Device> {
    let mut devices = crate::backend::parse_devices(&[name.to_string()])?;
    Ok(devices.remove(0))
}
