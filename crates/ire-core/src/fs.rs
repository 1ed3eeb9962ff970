//! Durable files: an atomic write that survives a crash or a power loss, a folder fsync, and
//! sha256 of bytes and of files. Checkpoints, prepared data, exported models and run records
//! are all written through [`write_atomic`].

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// An I/O failure, with the file and what was being done to it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {action}: {source}", path.display())]
pub struct IoError {
    /// The file or folder.
    pub path: PathBuf,
    /// What was being done (`"writing"`, `"renaming to …"`).
    pub action: String,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    /// The path, and the OS error with the action folded into its message: for crates whose
    /// own error type keeps `{ path, source }`.
    pub fn into_parts(self) -> (PathBuf, std::io::Error) {
        let message = format!("{}: {}", self.action, self.source);
        (self.path, std::io::Error::new(self.source.kind(), message))
    }

    pub(crate) fn new(path: &Path, action: impl Into<String>, source: std::io::Error) -> Self {
        Self {
            path: path.to_path_buf(),
            action: action.into(),
            source,
        }
    }
}

/// `<path>.<pid>.tmp`: the sibling a file is written to before it is renamed into place
/// (the process id keeps two processes writing the same file apart).
pub fn tmp_sibling(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{}.tmp", std::process::id()));
    PathBuf::from(s)
}

/// Writes `bytes` to `path` atomically and durably: a temporary sibling is written and
/// fsynced, renamed over `path`, and the folder is fsynced, so neither a crash nor a power
/// loss leaves a half-written file (or a lost rename) under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let tmp = tmp_sibling(path);
    let mut file = File::create(&tmp).map_err(|e| IoError::new(&tmp, "creating", e))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| IoError::new(&tmp, "writing", e))?;
    drop(file);
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(IoError::new(
            &tmp,
            format!("renaming to {}", path.display()),
            e,
        ));
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// fsyncs a folder, so the renames and creations inside it survive a power loss.
pub fn sync_dir(dir: &Path) -> Result<(), IoError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| IoError::new(dir, "syncing the folder", e))
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Size and hex sha256 of a file, streamed in 1 MiB blocks.
pub fn file_sha256(path: &Path) -> Result<(u64, String), IoError> {
    let mut file = File::open(path).map_err(|e| IoError::new(path, "opening", e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| IoError::new(path, "reading", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the file itself: {names:?}");
    }

    #[test]
    fn a_failed_write_names_the_file_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-folder").join("a.json");
        let e = write_atomic(&missing, b"x").unwrap_err();
        assert!(e.to_string().contains("no-such-folder"), "{e}");
        assert_eq!(e.action, "creating");
    }

    #[test]
    fn sha256_of_bytes_and_of_a_file_agree_with_the_standard_vectors() {
        // FIPS 180-2's "abc".
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), abc);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(file_sha256(&path).unwrap(), (3, abc.to_string()));
        // Longer than one read block.
        let big = vec![7u8; (1 << 20) + 3];
        std::fs::write(&path, &big).unwrap();
        assert_eq!(
            file_sha256(&path).unwrap(),
            (big.len() as u64, sha256_hex(&big))
        );
    }
}
