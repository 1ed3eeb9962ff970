//! The listing record: what an online listing said a commit holds, kept in the cache so that an
//! offline run can tell a complete cached snapshot from a partial one.
//!
//! An offline listing walks `snapshots/<commit>/`, which only shows the files that did arrive:
//! an interrupted download of un-numbered files (no `-00003-of-00012` to count on) would read as a
//! smaller dataset. So every successful online listing writes
//! `<cache>/<repo folder>/ire-listings/<commit>.json` (file names, sizes and blob names, atomic),
//! and an offline listing of that commit takes its file list and sizes from there: a missing file
//! is then an [`DataError::IncompleteSource`] naming it, and a short one fails the size check.
//! A cache filled by `hf download` alone has no record and is listed as before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::types::{snapshot_dir, HubRepo, RemoteFile, RepoListing};
use crate::error::{DataError, Result};
use ire_core::fs::write_atomic;

#[derive(Serialize, Deserialize)]
struct Record {
    repo: String,
    commit: String,
    files: BTreeMap<String, RecordedFile>,
}

#[derive(Serialize, Deserialize)]
struct RecordedFile {
    size: u64,
    blob: String,
}

/// `<cache>/<repo folder>/ire-listings/<commit>.json`.
pub fn record_path(cache_dir: &Path, repo: &HubRepo, commit: &str) -> PathBuf {
    cache_dir
        .join(repo.cache_folder())
        .join("ire-listings")
        .join(format!("{commit}.json"))
}

/// Writes the record of an online listing (nothing when it carries no sizes).
pub fn write_record(cache_dir: &Path, listing: &RepoListing) -> Result<()> {
    if listing.remote.is_empty() {
        return Ok(());
    }
    let path = record_path(cache_dir, &listing.repo, &listing.commit);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, "creating", e))?;
    }
    let record = Record {
        repo: listing.repo.id.clone(),
        commit: listing.commit.clone(),
        files: listing
            .remote
            .iter()
            .map(|(name, r)| {
                let f = RecordedFile {
                    size: r.size,
                    blob: r.blob.clone(),
                };
                (name.clone(), f)
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&record).map_err(|source| DataError::Json {
        path: path.clone(),
        what: "listing record",
        source,
    })?;
    Ok(write_atomic(&path, &bytes)?)
}

/// The recorded files of `commit`, if an online listing of it was recorded; an unreadable
/// record is an error naming it (delete it to list the cache without it).
pub fn read_record(
    cache_dir: &Path,
    repo: &HubRepo,
    commit: &str,
) -> Result<Option<BTreeMap<String, RemoteFile>>> {
    let path = record_path(cache_dir, repo, commit);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DataError::io(&path, "reading", e)),
    };
    let record: Record = serde_json::from_slice(&bytes).map_err(|source| DataError::Json {
        path: path.clone(),
        what: "listing record (written by ire; delete it to list the cache without it)",
        source,
    })?;
    if record.commit != commit || record.repo != repo.id {
        return Err(DataError::Hub {
            repo: repo.describe(),
            revision: repo.revision.clone(),
            action: format!("reading the listing record {}", path.display()),
            message: format!(
                "it records {}@{}, not {}@{commit}; delete it to list the cache without it",
                record.repo, record.commit, repo.id
            ),
        });
    }
    let files = record.files.into_iter().map(|(name, f)| {
        let r = RemoteFile {
            size: f.size,
            blob: f.blob,
        };
        (name, r)
    });
    Ok(Some(files.collect()))
}

/// Checks that every one of `names` is in the cached snapshot (or its blob is): an offline
/// listing from a record names files an interrupted download never fetched.
pub fn check_cached_complete(
    cache_dir: &Path,
    listing: &RepoListing,
    names: &[String],
) -> Result<()> {
    let snapshot = snapshot_dir(cache_dir, &listing.repo, &listing.commit);
    let blobs = cache_dir.join(listing.repo.cache_folder()).join("blobs");
    let present = |name: &String| {
        snapshot.join(name).is_file()
            || listing
                .remote
                .get(name)
                .is_some_and(|r| blobs.join(&r.blob).is_file())
    };
    let missing: Vec<String> = names.iter().filter(|n| !present(n)).cloned().collect();
    match missing.is_empty() {
        true => Ok(()),
        false => Err(listing.incomplete(&missing, &missing)),
    }
}
