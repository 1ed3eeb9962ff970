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

/// The device commands run on by default.
pub fn default_device() -> Device {
    Default::default()
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
        Some(i) => Ok(burn::backend::cuda::CudaDevice::new(i)),
        None => {
            bail!("run.devices: `{name}` is not a device of this CUDA build; expected \"cuda:N\"")
        }
    }
}
