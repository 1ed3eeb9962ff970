//! Whether the NCCL library can be loaded, and what to do when it cannot — before cudarc
//! touches it (cudarc panics on a missing library). The trap: cudarc 0.19 opens `libnccl.so`
//! and `libnccl.so.{CUDA major,12,11,10,9,1}` (and a few Windows-style names), never
//! `libnccl.so.2`, which is all that NCCL's runtime package (`libnccl2`) and the pip wheel
//! (`nvidia-nccl-cu*`) install. So when the library does not load, this module looks for any
//! `libnccl.so*` in the places the dynamic loader and pip use ([`search_dirs`]) and turns what
//! it finds into one error that says what to do ([`missing_message`]).
//!
//! The search is plain file-system work, tested on any machine; only `ensure_loadable`
//! (which asks cudarc itself) needs the `cuda` feature.

use std::path::{Path, PathBuf};

use crate::TrainError;

/// The file name NCCL's runtime package and the pip wheel install.
pub const RUNTIME_SONAME: &str = "libnccl.so.2";

/// What a search of the library folders found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// A file under one of the names cudarc opens (in a folder the loader did not search).
    pub loadable: Option<PathBuf>,
    /// A `libnccl.so.2` (or another `libnccl.so.*` cudarc does not open).
    pub runtime_only: Option<PathBuf>,
}

/// Folders that may hold NCCL, in order: `LD_LIBRARY_PATH`'s entries, the folders of the
/// `libnccl*` entries of `ldconfig -p`'s output, the standard library folders, and the pip
/// wheels' `nvidia/nccl/lib` under the Python prefixes (see [`python_prefixes`]).
pub fn search_dirs(
    ld_library_path: Option<&str>,
    ldconfig: Option<&str>,
    python_prefixes: &[PathBuf],
) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ld_library_path
        .unwrap_or("")
        .split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect();
    dirs.extend(ldconfig.map(parse_ldconfig).unwrap_or_default());
    for d in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
        "/usr/local/cuda/lib64",
        "/usr/local/nccl/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs.extend(python_nccl_dirs(python_prefixes));
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

/// The folders of the `libnccl*` libraries listed by `ldconfig -p` (lines like
/// `\tlibnccl.so.2 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnccl.so.2`).
pub fn parse_ldconfig(output: &str) -> Vec<PathBuf> {
    output
        .lines()
        .filter(|l| l.trim_start().starts_with("libnccl"))
        .filter_map(|l| l.split("=>").nth(1))
        .filter_map(|p| Path::new(p.trim()).parent().map(Path::to_path_buf))
        .collect()
}

/// The prefixes under which pip installs packages: the active virtualenv or conda
/// environment, the user's `~/.local`, `/usr/local` and `/usr`.
pub fn python_prefixes() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["VIRTUAL_ENV", "CONDA_PREFIX"]
        .iter()
        .filter_map(|v| std::env::var_os(v).map(PathBuf::from))
        .collect();
    if let Some(home) = std::env::var_os("HOME") {
        out.push(PathBuf::from(home).join(".local"));
    }
    out.extend(["/usr/local", "/usr", "/opt/conda"].map(PathBuf::from));
    out
}

/// `PREFIX/lib/python3*/{site,dist}-packages/nvidia/nccl/lib` folders that exist.
pub fn python_nccl_dirs(prefixes: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for prefix in prefixes {
        let Ok(entries) = std::fs::read_dir(prefix.join("lib")) else {
            continue;
        };
        let mut pythons: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path())
            .collect();
        pythons.sort();
        for py in pythons {
            for packages in ["site-packages", "dist-packages"] {
                let dir = py.join(packages).join("nvidia/nccl/lib");
                if dir.is_dir() {
                    out.push(dir);
                }
            }
        }
    }
    out
}

/// Looks for `candidates` (the names cudarc opens) and for any other `libnccl.so*` in `dirs`.
pub fn find(dirs: &[PathBuf], candidates: &[String]) -> Found {
    let mut found = Found::default();
    for dir in dirs {
        if found.loadable.is_none() {
            found.loadable = candidates.iter().map(|c| dir.join(c)).find(|p| p.exists());
        }
        if found.runtime_only.is_none() {
            found.runtime_only = other_nccl(dir, candidates);
        }
    }
    found
}

/// A `libnccl.so.*` in `dir` that is not one of `candidates` (`libnccl.so.2` first).
fn other_nccl(dir: &Path, candidates: &[String]) -> Option<PathBuf> {
    let runtime = dir.join(RUNTIME_SONAME);
    if runtime.exists() {
        return Some(runtime);
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("libnccl.so.") && !candidates.contains(n))
        .collect();
    names.sort();
    names.first().map(|n| dir.join(n))
}

/// The error text for a library that did not load: what was found and what to do.
pub fn missing_message(found: &Found, candidates: &[String]) -> String {
    let tried = candidates.join(", ");
    let head = format!("NCCL cannot be loaded (this build opens one of: {tried})");
    if let Some(path) = &found.loadable {
        let dir = path.parent().unwrap_or(Path::new("."));
        return format!(
            "{head}: {} exists but its folder is not on the library path: \
             export LD_LIBRARY_PATH={}:$LD_LIBRARY_PATH",
            path.display(),
            dir.display()
        );
    }
    if let Some(path) = &found.runtime_only {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_else(|| RUNTIME_SONAME.into());
        return format!(
            "{head}: only {name} ({}) was found, a name cudarc does not open. Either install \
             the development package (`apt install libnccl-dev`, which adds libnccl.so), or \
             make a link: `mkdir -p ~/.local/nccl && ln -sf {} ~/.local/nccl/libnccl.so && \
             export LD_LIBRARY_PATH=~/.local/nccl:$LD_LIBRARY_PATH`",
            path.display(),
            path.display()
        );
    }
    format!(
        "{head}: no libnccl was found on LD_LIBRARY_PATH, in ldconfig's cache, in the standard \
         folders or in a pip wheel (nvidia/nccl/lib). Install NCCL (`apt install libnccl2 \
         libnccl-dev`, or `pip install nvidia-nccl-cu12` and link its libnccl.so.2 as \
         libnccl.so on LD_LIBRARY_PATH), or use dist.engine = \"mpi\""
    )
}

/// Searches this machine (environment, `ldconfig -p`, Python prefixes) for NCCL.
pub fn search_here(candidates: &[String]) -> Found {
    let ld = std::env::var("LD_LIBRARY_PATH").ok();
    let ldconfig = ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"]
        .iter()
        .find_map(|exe| std::process::Command::new(exe).arg("-p").output().ok())
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let dirs = search_dirs(ld.as_deref(), ldconfig.as_deref(), &python_prefixes());
    find(&dirs, candidates)
}

/// `Ok` when `loads()` says the library loads; otherwise the error of [`missing_message`]
/// for what [`search_here`] finds.
pub fn check(loads: bool, candidates: &[String]) -> Result<(), TrainError> {
    match loads {
        true => Ok(()),
        false => Err(TrainError::Collective(missing_message(
            &search_here(candidates),
            candidates,
        ))),
    }
}

/// Runs `f` (a call into cudarc's NCCL), turning a panic into an error: cudarc panics when the
/// library cannot be loaded (then the error is [`missing_message`]'s) or lacks a symbol.
pub fn catch<T>(candidates: &[String], f: impl FnOnce() -> T) -> Result<T, TrainError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into());
        match text.contains("Unable to dynamically load") {
            true => TrainError::Collective(missing_message(&search_here(candidates), candidates)),
            false => TrainError::Collective(format!("NCCL (through cudarc) failed: {text}")),
        }
    })
}

/// The names cudarc opens for NCCL in this build.
#[cfg(feature = "cuda")]
pub fn cudarc_candidates() -> Vec<String> {
    cudarc::get_lib_name_candidates("nccl")
}

/// `Ok` when cudarc can load NCCL; otherwise the error that says what to do.
#[cfg(feature = "cuda")]
pub fn ensure_loadable() -> Result<(), TrainError> {
    let candidates = cudarc_candidates();
    // SAFETY: only tries `dlopen` on cudarc's candidate names (loading NCCL runs no code
    // of ours); the handles are dropped at once.
    let loads = catch(&candidates, || unsafe {
        cudarc::nccl::sys::is_culib_present()
    })?;
    check(loads, &candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        [
            "libnccl.so",
            "libnccl.so.13",
            "libnccl.so.12",
            "libnccl.so.1",
        ]
        .map(String::from)
        .to_vec()
    }

    fn touch(dir: &Path, name: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, b"").unwrap();
        p
    }

    #[test]
    fn only_the_runtime_soname_gives_the_link_advice() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().join("lib");
        let runtime = touch(&lib, RUNTIME_SONAME);
        let found = find(&[tmp.path().join("empty"), lib.clone()], &names());
        assert_eq!(found.loadable, None);
        assert_eq!(found.runtime_only.as_deref(), Some(runtime.as_path()));
        let m = missing_message(&found, &names());
        assert!(m.contains("libnccl-dev"), "{m}");
        assert!(m.contains(&format!("ln -sf {}", runtime.display())), "{m}");
        assert!(m.contains("LD_LIBRARY_PATH"), "{m}");
        assert!(m.contains("only libnccl.so.2 ("), "{m}");
    }

    #[test]
    fn a_loadable_name_off_the_path_says_which_folder_to_add() {
        let tmp = tempfile::tempdir().unwrap();
        let so = touch(tmp.path(), "libnccl.so");
        touch(tmp.path(), RUNTIME_SONAME);
        let found = find(&[tmp.path().to_path_buf()], &names());
        assert_eq!(found.loadable.as_deref(), Some(so.as_path()));
        let m = missing_message(&found, &names());
        assert!(
            m.contains(&format!("LD_LIBRARY_PATH={}:", tmp.path().display())),
            "{m}"
        );
        let none = missing_message(&Found::default(), &names());
        assert!(none.contains("no libnccl was found"), "{none}");
    }

    #[test]
    fn the_search_covers_the_library_path_ldconfig_and_pip_wheels() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp
            .path()
            .join("venv/lib/python3.11/site-packages/nvidia/nccl/lib");
        let runtime = touch(&wheel, RUNTIME_SONAME);
        touch(&tmp.path().join("venv/lib/python3.11"), "os.py");
        assert_eq!(
            python_nccl_dirs(&[tmp.path().join("venv")]),
            vec![wheel.clone()]
        );
        let ldconfig = "1 libs found in cache `/etc/ld.so.cache'\n\
            \tlibnccl.so.2 (libc6,x86-64) => /opt/nccl/lib/libnccl.so.2\n\
            \tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6\n";
        let dirs = search_dirs(Some("/a::/b"), Some(ldconfig), &[tmp.path().join("venv")]);
        assert_eq!(
            &dirs[..3],
            &[PathBuf::from("/a"), "/b".into(), "/opt/nccl/lib".into()]
        );
        assert_eq!(dirs.last(), Some(&wheel));
        let found = find(&[wheel], &names());
        assert_eq!(found.runtime_only, Some(runtime));
    }

    #[test]
    fn other_unopened_sonames_count_as_runtime_only() {
        let tmp = tempfile::tempdir().unwrap();
        let odd = touch(tmp.path(), "libnccl.so.2.21.5");
        touch(tmp.path(), "libnccl-net.so");
        let found = find(&[tmp.path().to_path_buf()], &names());
        assert_eq!(found.runtime_only.as_deref(), Some(odd.as_path()));
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn cudarc_is_asked_without_a_panic_and_never_opens_the_runtime_soname() {
        let names = cudarc_candidates();
        assert!(names.iter().any(|n| n == "libnccl.so"), "{names:?}");
        assert!(!names.iter().any(|n| n == RUNTIME_SONAME), "{names:?}");
        if let Err(e) = ensure_loadable() {
            let e = e.to_string();
            assert!(
                e.contains("NCCL cannot be loaded") && e.contains("libnccl.so"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_panic_in_cudarc_becomes_an_error() {
        let e = catch(&names(), || -> u8 { panic!("Missing symbol ncclFoo") })
            .unwrap_err()
            .to_string();
        assert!(e.contains("Missing symbol ncclFoo"), "{e}");
        let e = catch(&names(), || -> u8 {
            std::panic::panic_any(String::from(
                "Unable to dynamically load the \"nccl\" shared library",
            ))
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("NCCL cannot be loaded"), "{e}");
        assert_eq!(catch(&names(), || 7).unwrap(), 7);
    }
}
