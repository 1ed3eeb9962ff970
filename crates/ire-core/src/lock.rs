//! One job per folder: [`DirLock`], an exclusive lock file that a process holds in a folder for
//! as long as it writes there (`prepare.lock` in a prepared dataset, `run.lock` in a run
//! directory).
//!
//! The lock file is created with `create_new` and names its [`Holder`] as `key=value` lines:
//!
//! ```text
//! pid=1234
//! host=gpu07
//! started=1796683263
//! ```
//!
//! (`started` in seconds since the Unix epoch; a file holding only a pid, as older ire wrote, is
//! read too). A second process finds the file and stops with [`LockError::Held`] naming the
//! folder, the file and the holder. A lock whose holder is gone — recorded on this host, and its
//! pid no longer running (on Linux, no `/proc/PID`) — is taken over with a warning naming it:
//! the file is first renamed aside, and taken only if the renamed file still names the same
//! holder, so two processes that both see a stale lock do not both win. A holder on another host
//! cannot be checked and always counts as alive. Dropping the lock removes the file.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::warn;

use crate::fs::IoError;
use crate::time::{now_unix, utc_rfc3339};

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process that is (or may be) alive holds the lock.
    #[error(
        "{}: in use by {holder} (lock file {}); wait for it to end, or, if that process is gone, \
         delete {}", dir.display(), file.display(), file.display()
    )]
    Held {
        /// The locked folder.
        dir: PathBuf,
        /// The lock file in it.
        file: PathBuf,
        /// Who holds it, as its lock file says (pid 0 when the file could not be read).
        holder: Holder,
    },
    /// The lock file could not be created, written, or moved aside.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// The process a lock file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// The host it runs on (`None` in a file from before hosts were recorded: this host).
    pub host: Option<String>,
    /// When it took the lock, in seconds since the Unix epoch (`None` if not recorded).
    pub started: Option<u64>,
}

impl Holder {
    /// This process, now.
    pub fn this_process() -> Self {
        Holder {
            pid: std::process::id(),
            host: Some(host_name()),
            started: Some(now_unix()),
        }
    }

    /// Reads a lock file's text: `key=value` lines (`pid` required; unknown keys ignored), or a
    /// bare pid (the old format). `None` when there is no pid to read.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Ok(pid) = text.parse() {
            return Some(Holder {
                pid,
                host: None,
                started: None,
            });
        }
        let (mut pid, mut host, mut started) = (None, None, None);
        for (key, value) in text.lines().filter_map(|l| l.split_once('=')) {
            let value = value.trim();
            match key.trim() {
                "pid" => pid = value.parse().ok(),
                "host" if !value.is_empty() => host = Some(value.to_string()),
                "started" => started = value.parse().ok(),
                _ => {}
            }
        }
        Some(Holder {
            pid: pid?,
            host,
            started,
        })
    }

    /// The lock file's text for this holder (newline-terminated: a reader takes a file without
    /// its last newline for one still being written).
    pub fn to_text(&self) -> String {
        let mut text = format!("pid={}\n", self.pid);
        if let Some(host) = &self.host {
            text.push_str(&format!("host={host}\n"));
        }
        if let Some(started) = self.started {
            text.push_str(&format!("started={started}\n"));
        }
        text
    }

    /// Whether the holder runs on another host than this one (then it cannot be checked).
    pub fn on_other_host(&self) -> bool {
        self.host.as_deref().is_some_and(|h| h != host_name())
    }

    /// Whether the holder may still run: on another host, always; here, while its pid exists.
    fn may_be_alive(&self) -> bool {
        self.on_other_host() || pid_alive(self.pid)
    }
}

/// `pid 1234 on host gpu07, started 2026-12-07T22:41:03Z`, and for a holder on another host a
/// note that it cannot be checked from here.
impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        match &self.host {
            Some(host) => write!(f, " on host {host}")?,
            None => write!(f, " (host not recorded)")?,
        }
        if let Some(started) = self.started {
            write!(f, ", started {}", utc_rfc3339(started))?;
        }
        if self.on_other_host() {
            write!(
                f,
                "; that is not this host ({}), so whether it still runs cannot be checked from here",
                host_name()
            )?;
        }
        Ok(())
    }
}

/// This machine's host name: `/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `unknown`.
pub fn host_name() -> String {
    let proc = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    proc.or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// An exclusive lock on a folder, held while this value lives; dropping it removes the file.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    holder: Holder,
}

impl DirLock {
    /// Takes the lock `dir/file_name` (`dir` must exist): creates the file naming this process,
    /// or takes over a stale one (see the module docs). A live holder is [`LockError::Held`].
    pub fn acquire(dir: &Path, file_name: &str) -> Result<Self, LockError> {
        let path = dir.join(file_name);
        let me = Holder::this_process();
        // Bounded: each round either takes the lock, fails, or removes one stale lock.
        for _ in 0..4 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    write_holder(file, &path, &me)?;
                    return Ok(DirLock { path, holder: me });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    match read_holder(&path) {
                        Some(h) if h.may_be_alive() => return Err(held(dir, &path, h)),
                        stale => take_over_stale(&path, stale)?,
                    }
                }
                Err(e) => return Err(IoError::new(&path, "creating the lock file", e).into()),
            }
        }
        let holder = read_holder(&path).unwrap_or(Holder {
            pid: 0,
            host: None,
            started: None,
        });
        Err(held(dir, &path, holder))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    /// Removes the lock file, unless it no longer names this process (someone deleted it and
    /// another process took the lock): that lock is not ours to remove.
    fn drop(&mut self) {
        let file = self.path.display();
        match read_holder(&self.path) {
            Some(h) if h == self.holder => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    warn!(%file, error = %e, "could not remove the lock file");
                }
            }
            Some(h) => warn!(%file, "the lock file now names {h}; leaving it in place"),
            None => warn!(%file, "the lock file was removed or emptied while this process held it"),
        }
    }
}

fn held(dir: &Path, file: &Path, holder: Holder) -> LockError {
    LockError::Held {
        dir: dir.to_path_buf(),
        file: file.to_path_buf(),
        holder,
    }
}

/// Writes `me` into the just-created lock file; on failure removes it again.
fn write_holder(mut file: std::fs::File, path: &Path, me: &Holder) -> Result<(), IoError> {
    let written = file
        .write_all(me.to_text().as_bytes())
        .and_then(|()| file.sync_all());
    written.map_err(|e| {
        let _ = std::fs::remove_file(path);
        IoError::new(path, "writing the lock file", e)
    })
}

/// The holder a lock file names. A file still empty or without its last newline after a
/// second (its owner died between creating and writing it) is read as it is: `None` when it
/// names no pid, which counts as stale. A missing file is `None` too.
fn read_holder(path: &Path) -> Option<Holder> {
    let mut text = String::new();
    for _ in 0..20 {
        text = std::fs::read_to_string(path).ok()?;
        if text.ends_with('\n') {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Holder::parse(&text)
}

/// Whether process `pid` exists on this host. Where that cannot be checked (not Linux), every
/// holder counts as alive, so a lock is never taken from a running process.
fn pid_alive(pid: u32) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    // A zombie (exited, not yet reaped: e.g. a rank aborted by mpirun in a container whose
    // init does not reap) still has /proc/PID; its state in /proc/PID/stat is `Z` (or `X`).
    match std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) {
        Ok(stat) => !matches!(process_state(&stat), Some('Z' | 'X')),
        Err(_) => false,
    }
}

/// The state letter of a `/proc/PID/stat` line (`PID (COMM) S ...`; COMM may hold spaces and
/// parentheses, so the state follows the last `)`).
fn process_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Moves a stale lock aside and deletes it, unless it turns out to be a fresh one.
fn take_over_stale(path: &Path, holder: Option<Holder>) -> Result<(), IoError> {
    let aside = path.with_extension(format!("stale.{}.tmp", std::process::id()));
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        // Another process moved it first; try again from the start.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(IoError::new(path, "moving a stale lock file aside", e)),
    }
    if read_holder(&aside) != holder {
        // A live process took the lock between our read and our rename: give it back.
        return std::fs::rename(&aside, path)
            .map_err(|e| IoError::new(&aside, "restoring a lock file", e));
    }
    let file = path.display();
    match &holder {
        Some(h) => warn!(%file, "taking over the lock left by {h}, which no longer runs"),
        None => warn!(%file, "taking over a lock file that names no process (its writer died)"),
    }
    std::fs::remove_file(&aside).map_err(|e| IoError::new(&aside, "removing a stale lock", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "job.lock";

    /// A pid that is certainly not running: a child that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    fn held_by(e: LockError) -> Holder {
        match e {
            LockError::Held { holder, .. } => holder,
            other => panic!("expected Held, got {other}"),
        }
    }

    #[test]
    fn the_state_of_a_proc_stat_line_is_read_after_the_command_name() {
        assert_eq!(process_state("31779 (ire) Z 1 31779 1 0"), Some('Z'));
        assert_eq!(process_state("7 (a (b) c) S 1 7"), Some('S'));
        assert_eq!(process_state("garbage"), None);
        assert!(pid_alive(std::process::id()));
    }

    #[test]
    fn a_live_lock_is_refused_naming_the_folder_pid_and_host_and_is_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held = DirLock::acquire(dir.path(), NAME).unwrap();
        assert_eq!(held.path(), dir.path().join(NAME));
        let me = std::process::id();
        let host = host_name();
        let text = std::fs::read_to_string(held.path()).unwrap();
        assert!(
            text.starts_with(&format!("pid={me}\nhost={host}\nstarted=")),
            "{text}"
        );

        let e = DirLock::acquire(dir.path(), NAME).unwrap_err();
        let msg = e.to_string();
        let dir_text = dir.path().display().to_string();
        for part in [&dir_text, &format!("pid {me} on host {host}, started 20")] {
            assert!(msg.contains(part.as_str()), "{part:?} not in {msg}");
        }
        assert!(!msg.contains("cannot be checked"), "{msg}");
        assert_eq!(held_by(e).pid, me);
        // Another file name in the same folder is another lock.
        drop(DirLock::acquire(dir.path(), "other.lock").unwrap());

        drop(held);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        drop(DirLock::acquire(dir.path(), NAME).unwrap());
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_lock_of_a_dead_process_on_this_host_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        assert!(!pid_alive(dead));
        let stale = Holder {
            pid: dead,
            host: Some(host_name()),
            started: Some(1),
        };
        std::fs::write(dir.path().join(NAME), stale.to_text()).unwrap();
        let lock = DirLock::acquire(dir.path(), NAME).unwrap();
        let now = Holder::parse(&std::fs::read_to_string(lock.path()).unwrap()).unwrap();
        assert_eq!(now.pid, std::process::id());
        drop(lock);
        // Nothing is left behind: no lock, no renamed stale file.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_holder_on_another_host_is_never_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NAME);
        // A pid that is gone here says nothing about a process on another machine.
        let remote = Holder {
            pid: dead_pid(),
            host: Some(format!("not-{}", host_name())),
            started: Some(1_796_683_263),
        };
        std::fs::write(&path, remote.to_text()).unwrap();
        let e = DirLock::acquire(dir.path(), NAME).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("started 2026-12-07T22:41:03Z"), "{msg}");
        assert!(msg.contains("cannot be checked from here"), "{msg}");
        assert_eq!(held_by(e), remote);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), remote.to_text());
    }

    #[test]
    fn an_old_pid_only_lock_file_is_read_as_a_holder_on_this_host() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        std::fs::write(dir.path().join(NAME), format!("{me}\n")).unwrap();
        let e = DirLock::acquire(dir.path(), NAME).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("pid {me} (host not recorded)")),
            "{e}"
        );
        let old = held_by(e);
        assert_eq!((old.pid, old.host, old.started), (me, None, None));
        assert!(!Holder::parse("7").unwrap().on_other_host());
    }

    #[test]
    fn lock_file_text_round_trips_and_text_without_a_pid_is_no_holder() {
        let me = Holder::this_process();
        assert_eq!(Holder::parse(&me.to_text()), Some(me));
        let extra = Holder::parse(" host = h \n pid = 42 \nnote=x\n").unwrap();
        assert_eq!((extra.pid, extra.host.as_deref()), (42, Some("h")));
        for bad in ["", "\n", "host=h\n", "pid=x\n", "garbage"] {
            assert_eq!(Holder::parse(bad), None, "{bad:?}");
        }
    }
}
