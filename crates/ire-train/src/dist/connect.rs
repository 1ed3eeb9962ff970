//! Which engine a run uses and how a rank joins it: `dist.engine` resolved against the
//! launcher, the devices and the engines this build has ([`resolve_engine`], a pure function
//! with its tests), then the engine itself ([`connect`]).
//!
//! | processes | devices per process | `auto` gives | allowed |
//! |---|---|---|---|
//! | 1 | any | `local` | `local`; `mpi`/`nccl` with one device |
//! | N > 1 | 1 (`cuda:LOCAL_RANK` or the CPU) | `nccl` on CUDA, else `mpi` | `mpi`, `nccl` (CUDA) |
//! | N > 1 | several | — (one clear error: one device per process) | — |

use burn::prelude::*;

use crate::dist::engine::{Engine, Rank};
use crate::dist::launch::Launch;
use crate::dist::local::LocalEngine;
use crate::{DistSection, EngineKind, TrainError};

/// Whether this build has the MPI engine (`--features mpi`).
pub const HAS_MPI: bool = cfg!(feature = "mpi");
/// Whether this build has the NCCL engine (`--features cuda`).
pub const HAS_NCCL: bool = cfg!(feature = "cuda");

/// The engine for `asked` (`dist.engine`) in a job described by `launch`, with `devices`
/// per process, on CUDA or not; `None` parts of the build are errors that say how to build.
pub fn resolve_engine(
    asked: EngineKind,
    launch: &Launch,
    devices: usize,
    cuda: bool,
) -> Result<EngineKind, TrainError> {
    let key = "dist.engine";
    let (world, launcher) = (launch.world, launch.launcher);
    if world > 1 && devices != 1 {
        return Err(TrainError::config(
            "run.devices",
            format!(
                "one device per process: {launcher} started {world} processes and run.devices lists \
                 {devices}; each process trains on one device (cuda:LOCAL_RANK, or the CPU), so set \
                 run.devices to one entry and start one process per device"
            ),
        ));
    }
    let resolved = match (asked, world > 1) {
        (EngineKind::Auto, false) => EngineKind::Local,
        (EngineKind::Auto, true) if cuda => EngineKind::Nccl,
        (EngineKind::Auto, true) => EngineKind::Mpi,
        (EngineKind::Local, true) => {
            return Err(TrainError::config(
                key,
                format!(
                "\"local\" (threads of one process) cannot join the {world} processes {launcher} \
                     started; use \"mpi\" or \"nccl\", or \"auto\""
            ),
            ))
        }
        (kind, _) => kind,
    };
    if resolved != EngineKind::Local && devices > 1 {
        return Err(TrainError::config(
            key,
            format!("{resolved:?} runs one device per process; run.devices lists {devices} (use \"local\", or one process per device)").to_lowercase(),
        ));
    }
    match resolved {
        EngineKind::Mpi if !HAS_MPI => Err(TrainError::config(
            key,
            "MPI, but this `ire` was built without it: build with `cargo build --release --features mpi` \
             (needs an MPI library, e.g. `apt install libopenmpi-dev`, and libclang)",
        )),
        EngineKind::Nccl if !HAS_NCCL || !cuda => Err(TrainError::config(
            key,
            "NCCL runs on CUDA devices only: build with `--features cuda` and set run.devices = [\"cuda\"]; \
             CPU processes use \"mpi\"",
        )),
        kind => Ok(kind),
    }
}

/// Joins the engine `kind` (resolved) as `rank`, on `device`.
pub fn connect<B: Backend>(
    kind: EngineKind,
    launch: &Launch,
    rank: Rank,
    dist: &DistSection,
    device: &B::Device,
) -> Result<Box<dyn Engine<B>>, TrainError> {
    let _ = (launch, dist); // used by the engines of some builds only
    match kind {
        EngineKind::Local | EngineKind::Auto => Ok(Box::new(LocalEngine::<B>::join(rank, device)?)),
        #[cfg(feature = "mpi")]
        EngineKind::Mpi => Ok(Box::new(crate::dist::mpi::MpiEngine::<B>::init(
            launch, device,
        )?)),
        #[cfg(feature = "cuda")]
        EngineKind::Nccl => Ok(Box::new(crate::dist::nccl::NcclEngine::<B>::connect(
            launch, dist, device,
        )?)),
        #[allow(unreachable_patterns)]
        other => Err(TrainError::Collective(format!(
            "the {other:?} engine is not in this build"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::launch::Launcher;

    fn job(world: usize, launcher: Launcher) -> Launch {
        Launch {
            launcher,
            rank: 0,
            world,
            local_rank: 0,
            master: None,
        }
    }

    #[test]
    fn auto_is_local_for_one_process_and_nccl_or_mpi_for_several() {
        let one = Launch::single();
        assert_eq!(
            resolve_engine(EngineKind::Auto, &one, 2, false).unwrap(),
            EngineKind::Local
        );
        assert_eq!(
            resolve_engine(EngineKind::Auto, &one, 1, true).unwrap(),
            EngineKind::Local
        );
        let two = job(2, Launcher::Torchrun);
        match HAS_NCCL {
            true => assert_eq!(
                resolve_engine(EngineKind::Auto, &two, 1, true).unwrap(),
                EngineKind::Nccl
            ),
            false => assert!(resolve_engine(EngineKind::Auto, &two, 1, true).is_err()),
        }
        let cpu = resolve_engine(EngineKind::Auto, &job(2, Launcher::OpenMpi), 1, false);
        match HAS_MPI {
            true => assert_eq!(cpu.unwrap(), EngineKind::Mpi),
            false => assert!(cpu.unwrap_err().to_string().contains("--features mpi")),
        }
    }

    #[test]
    fn contradictory_setups_are_one_clear_error() {
        let two = job(2, Launcher::OpenMpi);
        let e = resolve_engine(EngineKind::Auto, &two, 2, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("run.devices")
                && e.contains("one device per process")
                && e.contains("2 processes"),
            "{e}"
        );
        let e = resolve_engine(EngineKind::Local, &two, 1, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dist.engine") && e.contains("cannot join the 2 processes"),
            "{e}"
        );
        let e = resolve_engine(EngineKind::Nccl, &Launch::single(), 1, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("CUDA devices only"), "{e}");
        let e = resolve_engine(EngineKind::Mpi, &Launch::single(), 2, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("one device per process"), "{e}");
    }
}
