//! An exclusive lock on a prepared folder while `prepare` writes it.
//!
//! `prepare.lock` is created with `create_new` and holds the owner's pid. A second
//! `prepare` on the same folder finds it and stops with [`DataError::Locked`] naming the
//! folder and the pid. A lock left by a process that is gone (on Linux, no `/proc/PID`)
//! is taken over with a warning: it is first renamed aside, and taken only if the renamed
//! file still holds the dead pid, so two processes that both see a stale lock do not both
//! win. Dropping the lock removes the file.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::warn;

use crate::error::{DataError, Result};

/// The lock file in a prepared folder.
pub const LOCK_FILE: &str = "prepare.lock";

/// Held while a folder is being prepared; removes `prepare.lock` on drop.
#[derive(Debug)]
pub struct PrepareLock {
    path: PathBuf,
}

impl PrepareLock {
    /// Takes the lock on `dir` (which must exist).
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        // Bounded: each round either takes the lock, fails, or removes one stale lock.
        for _ in 0..4 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(format!("{}\n", std::process::id()).as_bytes())
                        .and_then(|()| f.sync_all())
                        .map_err(|e| DataError::io(&path, "writing the lock file", e))?;
                    return Ok(PrepareLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = read_holder(&path);
                    match holder {
                        Some(pid) if pid_alive(pid) => {
                            return Err(DataError::Locked {
                                dir: dir.to_path_buf(),
                                pid,
                            })
                        }
                        _ => take_over_stale(&path, holder)?,
                    }
                }
                Err(e) => return Err(DataError::io(&path, "creating the lock file", e)),
            }
        }
        Err(DataError::Locked {
            dir: dir.to_path_buf(),
            pid: read_holder(&path).unwrap_or(0),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrepareLock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            warn!(file = %self.path.display(), error = %e, "could not remove the lock file");
        }
    }
}

/// The pid in a lock file. A file still empty after a second (its owner died between
/// creating and writing it) counts as stale: `None`.
fn read_holder(path: &Path) -> Option<u32> {
    for _ in 0..20 {
        match std::fs::read_to_string(path) {
            Ok(s) if !s.trim().is_empty() => return s.trim().parse().ok(),
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => return None,
        }
    }
    None
}

/// Whether process `pid` exists. Where that cannot be checked (not Linux), every holder
/// counts as alive, so a lock is never taken from a running process.
fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Moves a stale lock aside and deletes it, unless it turns out to be a fresh one.
fn take_over_stale(path: &Path, holder: Option<u32>) -> Result<()> {
    let aside = path.with_extension(format!("stale.{}.tmp", std::process::id()));
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        // Another process moved it first; try again from the start.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DataError::io(path, "moving a stale lock file aside", e)),
    }
    if read_holder(&aside) != holder {
        // A live process took the lock between our read and our rename: give it back.
        std::fs::rename(&aside, path)
            .map_err(|e| DataError::io(&aside, "restoring a lock file", e))?;
        return Ok(());
    }
    warn!(file = %path.display(), pid = ?holder,
        "taking over a lock left by a process that no longer runs");
    std::fs::remove_file(&aside).map_err(|e| DataError::io(&aside, "removing a stale lock", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid that is certainly not running: a child that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_live_lock_is_refused_with_the_folder_and_pid_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held = PrepareLock::acquire(dir.path()).unwrap();
        let me = std::process::id();
        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap(),
            format!("{me}\n")
        );
        let e = PrepareLock::acquire(dir.path()).unwrap_err();
        assert!(
            matches!(e, DataError::Locked { pid, .. } if pid == me),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&dir.path().display().to_string()) && msg.contains(&format!("pid {me}")),
            "{msg}"
        );
        drop(held);
        assert!(!dir.path().join(LOCK_FILE).exists());
        let again = PrepareLock::acquire(dir.path()).unwrap();
        drop(again);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_lock_of_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        assert!(!pid_alive(dead));
        std::fs::write(dir.path().join(LOCK_FILE), format!("{dead}\n")).unwrap();
        let lock = PrepareLock::acquire(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(lock.path()).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(lock);
        // Nothing is left behind: no lock, no renamed stale file.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
