//! Shards checked before use: sha256 against `meta.json` and every id below the vocab, in
//! one pass, remembered in a stamp file so that later opens skip the pass.
//!
//! `verified.json` in the prepared folder maps each verified shard file to the sha256 and
//! vocab size it was checked against and to the file's identity at that time (size, mtime,
//! ctime, inode). A shard whose identity or recorded hash changed since is checked again;
//! one that did not is trusted. Writing in place changes mtime and ctime, and a replaced
//! file has a new inode, so the stamp cannot vouch for changed bytes (short of a file
//! system that lies about times). The stamp is a cache: unreadable or unwritable, it is
//! ignored with a warning and the shards are checked on every open. Nothing is ever
//! deleted here; a damaged shard is one [`DataError::DamagedShard`] naming the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::{DataError, Result};
use crate::format::ShardMeta;
use crate::shard::Shard;

/// The stamp file in a prepared folder.
pub const STAMP_FILE: &str = "verified.json";
const STAMP_VERSION: u32 = 1;

/// The identity of a file on disk: changes when its bytes are rewritten or it is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileKey {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: u64,
    /// Status-change time, ns since the epoch (0 where the platform has none).
    pub ctime_ns: u64,
    /// Inode number (0 where the platform has none).
    pub inode: u64,
}

impl FileKey {
    /// The key of `path` now.
    pub fn of(path: &Path) -> Result<Self> {
        let m = std::fs::metadata(path).map_err(|e| DataError::io(path, "reading metadata", e))?;
        let mtime_ns = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        #[cfg(unix)]
        let (ctime_ns, inode) = {
            use std::os::unix::fs::MetadataExt;
            let ns = (m.ctime() as u64).wrapping_mul(1_000_000_000) + m.ctime_nsec() as u64;
            (ns, m.ino())
        };
        #[cfg(not(unix))]
        let (ctime_ns, inode) = (0, 0);
        Ok(FileKey {
            size: m.len(),
            mtime_ns,
            ctime_ns,
            inode,
        })
    }
}

/// One verified shard in the stamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StampEntry {
    /// The sha256 the file matched (from `meta.json`).
    pub sha256: String,
    /// Every id was below this vocab size.
    pub vocab_size: u64,
    /// The file as it was when checked.
    pub file: FileKey,
}

/// `verified.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// Stamp format version.
    pub version: u32,
    /// Shard file name → what was verified.
    pub shards: BTreeMap<String, StampEntry>,
}

impl Stamp {
    /// Reads `dir/verified.json`; a missing or unreadable stamp is empty (with a warning).
    pub fn read(dir: &Path) -> Self {
        let path = dir.join(STAMP_FILE);
        let Ok(bytes) = std::fs::read(&path) else {
            return Stamp::default();
        };
        match serde_json::from_slice::<Stamp>(&bytes) {
            Ok(s) if s.version == STAMP_VERSION => s,
            Ok(s) => {
                warn!(file = %path.display(), version = s.version, "unknown stamp version; re-verifying the shards");
                Stamp::default()
            }
            Err(e) => {
                warn!(file = %path.display(), error = %e, "unreadable stamp; re-verifying the shards");
                Stamp::default()
            }
        }
    }

    /// Writes `dir/verified.json` atomically through a temp name of its own (two
    /// processes opening one folder do not share a temp file); failure only warns.
    fn write(&self, dir: &Path) {
        let path = dir.join(STAMP_FILE);
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{STAMP_FILE}.{}.{n}.tmp", std::process::id()));
        let written = serde_json::to_vec_pretty(self)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            warn!(file = %path.display(), error = %e,
                "cannot record verified shards (read-only folder?); they will be checked again next time");
        }
    }
}

/// What one verification did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Shard files hashed and range-checked now, in order.
    pub checked: Vec<String>,
    /// Shard files the stamp vouched for.
    pub trusted: usize,
}

/// Checks `shards` (meta entry and open shard) of the folder `dir` against sha256 and
/// `vocab_size`; skips those the stamp vouches for unless `force`. Records what passed.
pub fn verify_shards(
    dir: &Path,
    shards: &[(&ShardMeta, &Shard)],
    vocab_size: u64,
    force: bool,
) -> Result<Verification> {
    let old = Stamp::read(dir);
    let mut stamp = Stamp {
        version: STAMP_VERSION,
        shards: BTreeMap::new(),
    };
    let mut todo = Vec::new();
    for &(meta, shard) in shards {
        let key = FileKey::of(shard.path())?;
        let entry = StampEntry {
            sha256: meta.sha256.clone(),
            vocab_size,
            file: key,
        };
        if !force && old.shards.get(&meta.file) == Some(&entry) {
            stamp.shards.insert(meta.file.clone(), entry);
        } else {
            todo.push((meta, shard, entry));
        }
    }
    let trusted = stamp.shards.len();
    if !todo.is_empty() {
        let bytes: u64 = todo.iter().map(|(_, _, e)| e.file.size).sum();
        info!(
            shards = todo.len(),
            mb = bytes as f64 / 1e6,
            "verifying shards (sha256, id range)"
        );
    }
    let results: Vec<Result<()>> = todo
        .par_iter()
        .map(|(meta, shard, _)| check_one(dir, meta, shard, vocab_size))
        .collect();
    // Shards that passed are recorded even when another one failed.
    let mut first_err = None;
    let mut checked = Vec::new();
    for ((meta, _, entry), r) in todo.into_iter().zip(results) {
        match r {
            Ok(()) => {
                checked.push(meta.file.clone());
                stamp.shards.insert(meta.file.clone(), entry);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if stamp != old {
        stamp.write(dir);
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(Verification { checked, trusted }),
    }
}

fn check_one(dir: &Path, meta: &ShardMeta, shard: &Shard, vocab_size: u64) -> Result<()> {
    let scan = shard.scan(vocab_size);
    let problem = match (scan.out_of_range, scan.sha256 == meta.sha256) {
        (None, true) => return Ok(()),
        (Some((pos, id)), _) => format!(
            "token id {id} at position {pos} is not below the vocab size {vocab_size} \
             (sha256 {}, meta.json records {})",
            scan.sha256, meta.sha256
        ),
        (None, false) => format!(
            "sha256 {}, but meta.json records {} (the bytes changed after prepare)",
            scan.sha256, meta.sha256
        ),
    };
    Err(DataError::DamagedShard {
        path: shard.path().to_path_buf(),
        problem,
        dir: PathBuf::from(dir),
    })
}
