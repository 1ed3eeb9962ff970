//! The backend the binary computes on: burn-flex on CPU, or CUDA with `--features cuda`, and
//! the parsing of `run.devices` entries into devices of that backend.

use anyhow::bail;

/// Backend for inference-only commands (`score`, `init`).
#[cfg(not(feature = "cuda"))]
pub type Backend = burn::backend::Flex;
/// Backend for inference-only commands (`score`, `init`).
#[cfg(feature = "cuda")]
pub type Backend = burn::backend::Cuda;

/// Backend for training.
pub type TrainBackend = burn::backend::Autodiff<Backend>;

/// Device type of [`Backend`].
pub type Device = burn::tensor::Device<Backend>;

/// Peak FLOP/s of one device for the MFU estimate when the config gives none.
#[cfg(not(feature = "cuda"))]
pub const DEFAULT_PEAK_FLOPS: f64 = 3.0e11;
/// Peak FLOP/s of one device for the MFU estimate when the config gives none (H100 TF32).
#[cfg(feature = "cuda")]
pub const DEFAULT_PEAK_FLOPS: f64 = 4.95e14;

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

#[cfg(not(feature = "cuda"))]
fn parse_device(name: &str) -> anyhow::Result<Device> {
    match name {
        "cpu" => Ok(Default::default()),
        other => bail!("run.devices: `{other}` is not a device of this CPU build; expected \"cpu\" (build with --features cuda for \"cuda:N\")"),
    }
}

#[cfg(feature = "cuda")]
fn parse_device(name: &str) -> anyhow::Result<Device> {
    match name
        .strip_prefix("cuda:")
        .and_then(|i| i.parse::<usize>().ok())
    {
        Some(i) => {
            let device = burn::backend::cuda::CudaDevice::new(i);
            probe(name, &device)?;
            Ok(device)
        }
        None => {
            bail!("run.devices: `{name}` is not a device of this CUDA build; expected \"cuda:N\"")
        }
    }
}

/// Allocates one element on `device` and reads it back, turning the panic Burn's CUDA runtime
/// raises for a missing driver or device index into one error line (the panic message is
/// kept; the default hook's backtrace banner is silenced for the probe).
#[cfg(feature = "cuda")]
fn probe(name: &str, device: &Device) -> anyhow::Result<()> {
    use std::panic::{catch_unwind, set_hook, take_hook, AssertUnwindSafe};
    let hook = take_hook();
    set_hook(Box::new(|_| {}));
    let result = catch_unwind(AssertUnwindSafe(|| {
        burn::tensor::Tensor::<Backend, 1>::zeros([1], device).into_data()
    }));
    set_hook(hook);
    let Err(payload) = result else {
        return Ok(());
    };
    let why = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the CUDA runtime panicked".into());
    bail!(
        "run.devices: `{name}` cannot be used: {}. Check that the NVIDIA driver is loaded \
         (`nvidia-smi`) and that the index is below the number of GPUs it lists",
        why.lines().next().unwrap_or_default().trim()
    )
}
