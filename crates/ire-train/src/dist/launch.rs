//! The launchers' environment contracts: which launcher started this process (torchrun,
//! Slurm's srun, OpenMPI's or MPICH's mpirun, or none), this process's rank, the world size,
//! its local rank on the node and the rendezvous address. Read once at start
//! ([`Launch::from_env`]); every check is a pure function of the variables, so it is tested
//! without a launcher.
//!
//! | launcher | rank | world | local rank | rendezvous |
//! |---|---|---|---|---|
//! | torchrun | `RANK` | `WORLD_SIZE` | `LOCAL_RANK` | `MASTER_ADDR`, `MASTER_PORT` |
//! | OpenMPI mpirun | `OMPI_COMM_WORLD_RANK` | `OMPI_COMM_WORLD_SIZE` | `OMPI_COMM_WORLD_LOCAL_RANK` | MPI |
//! | MPICH mpirun | `PMI_RANK` | `PMI_SIZE` | `MPI_LOCALRANKID` | MPI |
//! | srun | `SLURM_PROCID` | `SLURM_STEP_NUM_TASKS` | `SLURM_LOCALID` | `MASTER_ADDR` (the sbatch script sets it) |
//!
//! The order of detection matters where variables overlap: torchrun and mpirun run inside
//! Slurm allocations (so `SLURM_*` is set there too, describing the allocation), and srun
//! with PMI sets `PMI_RANK`. Slurm counts only inside an srun step (`SLURM_STEP_NUM_TASKS`):
//! the batch script itself is not one of the job's ranks.

use std::fmt;

use crate::TrainError;

/// What started this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// Started directly (`ire train`): one process.
    None,
    /// PyTorch's `torchrun` (or anything setting its variables).
    Torchrun,
    /// Slurm's `srun`.
    Slurm,
    /// OpenMPI's `mpirun`/`mpiexec`.
    OpenMpi,
    /// MPICH's (Hydra) `mpirun`/`mpiexec`.
    Mpich,
}

impl Launcher {
    /// Whether the processes were started by an MPI launcher (MPI itself is then the
    /// rendezvous).
    pub fn is_mpi(self) -> bool {
        matches!(self, Launcher::OpenMpi | Launcher::Mpich)
    }
}

impl fmt::Display for Launcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Launcher::None => "none",
            Launcher::Torchrun => "torchrun",
            Launcher::Slurm => "srun",
            Launcher::OpenMpi => "mpirun (OpenMPI)",
            Launcher::Mpich => "mpirun (MPICH)",
        })
    }
}

/// This process's place in the job, as its launcher describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// What started the process.
    pub launcher: Launcher,
    /// This process's rank in `0..world`.
    pub rank: usize,
    /// Number of processes in the job.
    pub world: usize,
    /// Rank on this node (picks the GPU: `cuda:LOCAL_RANK`).
    pub local_rank: usize,
    /// `MASTER_ADDR` and `MASTER_PORT`, when set (torchrun sets both; srun jobs export them).
    pub master: Option<(String, u16)>,
}

impl Default for Launch {
    fn default() -> Self {
        Self::single()
    }
}

impl Launch {
    /// A process started without a launcher.
    pub fn single() -> Self {
        Launch {
            launcher: Launcher::None,
            rank: 0,
            world: 1,
            local_rank: 0,
            master: None,
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, TrainError> {
        Self::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads the launcher variables through `var` (a lookup that returns a set, non-empty
    /// variable).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, TrainError> {
        let get = |name: &str| -> Result<Option<usize>, TrainError> {
            var(name).map(|v| parse_count(name, &v)).transpose()
        };
        let (launcher, rank, world, local) = if var("RANK").is_some() || var("WORLD_SIZE").is_some()
        {
            (
                Launcher::Torchrun,
                get("RANK")?,
                get("WORLD_SIZE")?,
                get("LOCAL_RANK")?,
            )
        } else if var("OMPI_COMM_WORLD_SIZE").is_some() {
            let (r, w) = (get("OMPI_COMM_WORLD_RANK")?, get("OMPI_COMM_WORLD_SIZE")?);
            (Launcher::OpenMpi, r, w, get("OMPI_COMM_WORLD_LOCAL_RANK")?)
        } else if var("SLURM_STEP_NUM_TASKS").is_some() && var("SLURM_PROCID").is_some() {
            let (r, w) = (get("SLURM_PROCID")?, get("SLURM_STEP_NUM_TASKS")?);
            (Launcher::Slurm, r, w, get("SLURM_LOCALID")?)
        } else if var("PMI_SIZE").is_some() {
            (
                Launcher::Mpich,
                get("PMI_RANK")?,
                get("PMI_SIZE")?,
                get("MPI_LOCALRANKID")?,
            )
        } else {
            return Ok(Self::single());
        };
        let vars = rank_vars(launcher);
        let (Some(rank), Some(world)) = (rank, world) else {
            return Err(launch_error(
                launcher,
                format!("{} and {} must both be set", vars.0, vars.1),
            ));
        };
        if world == 0 || rank >= world {
            return Err(launch_error(
                launcher,
                format!("{}={rank} is not below {}={world}", vars.0, vars.1),
            ));
        }
        let master = master(&var)?;
        Ok(Launch {
            launcher,
            rank,
            world,
            // Without a local rank every process is taken to be alone on its node.
            local_rank: local.unwrap_or(0),
            master,
        })
    }
}

/// The names of the rank and world variables of `launcher`, for error messages.
fn rank_vars(launcher: Launcher) -> (&'static str, &'static str) {
    match launcher {
        Launcher::Torchrun => ("RANK", "WORLD_SIZE"),
        Launcher::OpenMpi => ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        Launcher::Slurm => ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS"),
        Launcher::Mpich => ("PMI_RANK", "PMI_SIZE"),
        Launcher::None => ("-", "-"),
    }
}

fn parse_count(name: &str, value: &str) -> Result<usize, TrainError> {
    value.trim().parse().map_err(|_| {
        TrainError::config(
            &format!("environment variable {name}"),
            format!("a non-negative integer, got `{value}`"),
        )
    })
}

fn master(var: &impl Fn(&str) -> Option<String>) -> Result<Option<(String, u16)>, TrainError> {
    match (var("MASTER_ADDR"), var("MASTER_PORT")) {
        (Some(addr), Some(port)) => {
            let port = port.trim().parse().map_err(|_| {
                TrainError::config(
                    "environment variable MASTER_PORT",
                    format!("a TCP port, got `{port}`"),
                )
            })?;
            Ok(Some((addr, port)))
        }
        (Some(addr), None) => Ok(Some((addr, DEFAULT_MASTER_PORT))),
        _ => Ok(None),
    }
}

/// `MASTER_PORT` when only `MASTER_ADDR` is set (torchrun's default port).
pub const DEFAULT_MASTER_PORT: u16 = 29500;

fn launch_error(launcher: Launcher, message: String) -> TrainError {
    TrainError::config(&format!("the {launcher} environment"), message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Launch, TrainError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Launch::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn no_launcher_is_one_process() {
        assert_eq!(launch(&[("HOME", "/root")]).unwrap(), Launch::single());
        // The batch script of an sbatch job is not an srun step.
        let batch = launch(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4")]).unwrap();
        assert_eq!(batch, Launch::single());
    }

    #[test]
    fn each_launcher_is_read_from_its_own_variables() {
        let t = launch(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node7"),
            ("MASTER_PORT", "29400"),
        ])
        .unwrap();
        assert_eq!(
            (t.launcher, t.rank, t.world, t.local_rank),
            (Launcher::Torchrun, 3, 8, 1)
        );
        assert_eq!(t.master, Some(("node7".into(), 29400)));
        let o = launch(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ])
        .unwrap();
        assert_eq!(
            (o.launcher, o.rank, o.world, o.local_rank, o.master),
            (Launcher::OpenMpi, 1, 2, 1, None)
        );
        let s = launch(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_STEP_NUM_TASKS", "16"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "1"),
            ("MASTER_ADDR", "n01"),
        ])
        .unwrap();
        assert_eq!(
            (s.launcher, s.rank, s.world, s.local_rank),
            (Launcher::Slurm, 5, 16, 1)
        );
        assert_eq!(s.master, Some(("n01".into(), DEFAULT_MASTER_PORT)));
        let m = launch(&[
            ("PMI_RANK", "2"),
            ("PMI_SIZE", "4"),
            ("MPI_LOCALRANKID", "0"),
        ])
        .unwrap();
        assert_eq!(
            (m.launcher, m.rank, m.world, m.local_rank),
            (Launcher::Mpich, 2, 4, 0)
        );
    }

    #[test]
    fn overlapping_variables_resolve_to_the_innermost_launcher() {
        // mpirun inside a Slurm allocation, within an srun step of one task.
        let o = launch(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("SLURM_PROCID", "0"),
            ("SLURM_STEP_NUM_TASKS", "1"),
        ])
        .unwrap();
        assert_eq!((o.launcher, o.rank, o.world), (Launcher::OpenMpi, 1, 2));
        // srun with PMI sets PMI_RANK too: Slurm is named.
        let s = launch(&[
            ("SLURM_PROCID", "1"),
            ("SLURM_STEP_NUM_TASKS", "2"),
            ("PMI_RANK", "1"),
            ("PMI_SIZE", "2"),
        ])
        .unwrap();
        assert_eq!(s.launcher, Launcher::Slurm);
    }

    #[test]
    fn contradictory_or_malformed_variables_are_one_clear_error() {
        let e = launch(&[("RANK", "1")]).unwrap_err().to_string();
        assert!(e.contains("torchrun") && e.contains("WORLD_SIZE"), "{e}");
        let e = launch(&[("RANK", "2"), ("WORLD_SIZE", "2")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("RANK=2 is not below WORLD_SIZE=2"), "{e}");
        let e = launch(&[("OMPI_COMM_WORLD_RANK", "x"), ("OMPI_COMM_WORLD_SIZE", "2")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("OMPI_COMM_WORLD_RANK") && e.contains("`x`"),
            "{e}"
        );
        let e = launch(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "http"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("MASTER_PORT") && e.contains("`http`"), "{e}");
    }
}
