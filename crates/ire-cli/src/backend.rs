//! The backend the binary computes on: burn-flex on CPU, or CUDA with `--features cuda`, and
//! the parsing of `run.devices` entries into devices of that backend.

use anyhow::bail;

/// Backend for inference-only commands (`score`, `init`).
#[cfg(not(feature = "cuda"))]
pub type Backend = burn::backend::Flex;
/// Backend for inference-only commands (`score`, `init`).
#[cfg(feature = "cuda")]
pub type Backend = burn::backend::Cuda;

/// Backend for training (an `ire_optim::TrainBackend`).
pub type Training = burn::backend::Autodiff<Backend>;

/// Device type of [`Backend`].
pub type Device = burn::tensor::Device<Backend>;

/// Peak FLOP/s stated for a CPU process that does not measure (a rank other than 0 of a
/// multi-process job, which reports no MFU); rank 0 and `ire bench` measure ([`peak_flops`],
/// [`bench_peak_flops`]).
#[cfg(not(feature = "cuda"))]
pub const DEFAULT_PEAK_FLOPS: f64 = 3.0e11;
/// Peak FLOP/s of one device for the MFU estimate when the config gives none (H100 TF32).
#[cfg(feature = "cuda")]
pub const DEFAULT_PEAK_FLOPS: f64 = 4.95e14;

/// The peak FLOP/s of one device that a run's MFU is measured against, and where it comes
/// from: `metrics.peak_flops` when the config sets it; on CUDA the stated [`DEFAULT_PEAK_FLOPS`];
/// on the CPU this machine's f32 GEMM peak on the run's threads, measured now and written into
/// `cfg` when this process is the whole job, so the run's config.toml records it and a resumed
/// run reads it back instead of measuring again. Only rank 0 reports MFU, so the other ranks of
/// a multi-process job do not measure (their GEMMs would slow rank 0's).
pub fn peak_flops(cfg: &mut ire_train::RunConfig, world: usize, rank: usize) -> (f64, String) {
    if let Some(peak) = cfg.metrics.peak_flops {
        let why = "metrics.peak_flops of the config; a CPU run records its measured peak there";
        return (peak, why.into());
    }
    if cfg!(feature = "cuda") {
        let why = "default for CUDA: H100 TF32 dense; set metrics.peak_flops for another GPU";
        return (DEFAULT_PEAK_FLOPS, why.into());
    }
    if rank != 0 {
        return (DEFAULT_PEAK_FLOPS, "unused: rank 0 reports MFU".into());
    }
    let (peak, threads) = ire_llama::ops::kernels::gemm::measure_peak_flops();
    if world == 1 {
        cfg.metrics.peak_flops = Some(peak);
        let why = format!("measured: f32 GEMM on {threads} threads, recorded in the run's config");
        return (peak, why);
    }
    (
        peak,
        format!("measured: f32 GEMM on {threads} threads, this process"),
    )
}

/// `ire bench`'s peak FLOP/s of one device: `--peak-flops` when given, else the stated CUDA
/// default, else this CPU's f32 GEMM peak measured now — the figure `ire train` uses.
pub fn bench_peak_flops(given: Option<f64>) -> f64 {
    match given {
        Some(peak) => peak,
        None if cfg!(feature = "cuda") => DEFAULT_PEAK_FLOPS,
        None => ire_llama::ops::kernels::gemm::measure_peak_flops().0,
    }
}

/// The device commands run on by default (`cuda:0` on the CUDA build, checked usable).
pub fn default_device() -> anyhow::Result<Device> {
    #[cfg(feature = "cuda")]
    let device = parse_device("cuda:0")?;
    #[cfg(not(feature = "cuda"))]
    let device = Default::default();
    Ok(device)
}

/// Parses `run.devices`: `"cpu"` entries on the CPU build, `"cuda:N"` on the CUDA build.
pub fn parse_devices(names: &[String]) -> anyhow::Result<Vec<Device>> {
    names.iter().map(|n| parse_device(n)).collect()
}

/// The devices of this process: `run.devices`, except that each process of a multi-process
/// job on CUDA takes `cuda:LOCAL_RANK` (the launchers' convention), whatever index the one
/// entry names — the config is the same file on every rank.
pub fn process_devices(
    names: &[String],
    launch: &ire_train::dist::Launch,
) -> anyhow::Result<Vec<Device>> {
    match names {
        [one] if launch.world > 1 && one.starts_with("cuda") => {
            let mine = format!("cuda:{}", launch.local_rank);
            tracing::debug!(
                "run.devices = [\"{one}\"]: rank {} uses {mine}",
                launch.rank
            );
            parse_devices(&[mine])
        }
        _ => parse_devices(names),
    }
}

#[cfg(not(feature = "cuda"))]
fn parse_device(name: &str) -> anyhow::Result<Device> {
    match name {
        "cpu" => Ok(Default::default()),
        other => bail!("run.devices: `{other}` is not a device of this CPU build; expected \"cpu\" (build with --features cuda for \"cuda:N\")"),
    }
}

#[cfg(feature = "cuda")]
fn parse_device(name: &str) -> anyhow::Result<Device> {
    // `"cuda"` is `cuda:0` (and, under a launcher, `cuda:LOCAL_RANK`: see `process_devices`).
    let index = match name {
        "cuda" => Some(0),
        _ => name
            .strip_prefix("cuda:")
            .and_then(|i| i.parse::<usize>().ok()),
    };
    match index {
        Some(i) => {
            let device = burn::backend::cuda::CudaDevice::new(i);
            probe(name, i, &device)?;
            Ok(device)
        }
        None => {
            bail!("run.devices: `{name}` is not a device of this CUDA build; expected \"cuda:N\" (or \"cuda\")")
        }
    }
}

/// Checks `cuda:index` before training touches it, so that a missing driver, a missing device
/// or a failing runtime is one error line instead of a panic in one of CubeCL's threads:
/// 1. load the driver library and count its GPUs (cudarc, which panics when libcuda is absent);
/// 2. allocate one element on the device and read it back through Burn.
#[cfg(feature = "cuda")]
fn probe(name: &str, index: usize, device: &Device) -> anyhow::Result<()> {
    use cudarc::driver::result as cu;
    let advice =
        "Check that the NVIDIA driver is installed and loaded (`nvidia-smi` lists the GPUs)";
    let count = match quiet_catch(|| cu::init().and_then(|()| cu::device::get_count())) {
        Err(why) => {
            let why = why.split(" - searched").next().unwrap_or_default();
            bail!("run.devices: `{name}` cannot be used: no CUDA driver ({why}). {advice}")
        }
        Ok(Err(e)) => bail!("run.devices: `{name}` cannot be used: the CUDA driver failed to start ({e:?}). {advice}"),
        Ok(Ok(n)) => n as usize,
    };
    if index >= count {
        let have = match count {
            0 => "no GPU".to_string(),
            1 => "1 GPU (cuda:0)".to_string(),
            n => format!("{n} GPUs (cuda:0 to cuda:{})", n - 1),
        };
        bail!("run.devices: `{name}` does not exist: the CUDA driver sees {have}");
    }
    let alloc = || burn::tensor::Tensor::<Backend, 1>::zeros([1], device).into_data();
    if let Err(why) = quiet_catch(alloc) {
        bail!("run.devices: `{name}` cannot be used: {why}. {advice}");
    }
    Ok(())
}

/// Runs `f`, turning a panic — in this thread or in a worker thread it waits on, like CubeCL's
/// device runtime — into the first line of the first panic's message. The default hook's
/// report is silenced meanwhile.
#[cfg(feature = "cuda")]
fn quiet_catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    use std::panic::{catch_unwind, set_hook, take_hook, AssertUnwindSafe};
    use std::sync::{Arc, Mutex};
    let first = Arc::new(Mutex::new(None::<String>));
    let seen = Arc::clone(&first);
    let hook = take_hook();
    set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or("a panic").to_string();
        if let Ok(mut first) = seen.lock() {
            first.get_or_insert(message);
        }
    }));
    let result = catch_unwind(AssertUnwindSafe(f));
    set_hook(hook);
    result.map_err(|_| {
        let message = first.lock().ok().and_then(|mut m| m.take());
        let message = message.unwrap_or_else(|| "the CUDA runtime panicked".into());
        message
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    })
}
