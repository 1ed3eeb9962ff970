//! The online half of the hub client (`hub/mod.rs`): a listing that cannot hang (timeout, retries with
//! exponential backoff) and carries each file's size and blob name, a size check of every
//! file against it, and a finished `.part` turned into the cached file without a download.
//!
//! The listing asks the hub API with `?blobs=true`, which gives each file's size and its
//! blob name in the cache (the LFS sha256, else the git blob id: what huggingface_hub and
//! hf-hub name `blobs/<etag>`). Downloads are in `download.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::api::sync::Api;
use serde::Deserialize;
use tracing::{info, warn};

use super::types::{snapshot_dir, HubRepo, RemoteFile, RepoListing};
use crate::error::{DataError, Result};

#[derive(Deserialize)]
struct ApiInfo {
    sha: String,
    siblings: Vec<ApiSibling>,
}

#[derive(Deserialize)]
struct ApiSibling {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, rename = "blobId")]
    blob_id: Option<String>,
    #[serde(default)]
    lfs: Option<ApiLfs>,
}

#[derive(Deserialize)]
struct ApiLfs {
    sha256: String,
    size: u64,
}

/// Delay before retry `n` (0-based): `base · 2ⁿ`, at most `base · 8` (1, 2, 4, 8, 8 … s).
pub fn backoff(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1 << n.min(3))
}

/// One listing request; `Err((message, retry))`.
fn fetch_listing(
    api: &Api,
    repo: &HubRepo,
    timeout: Duration,
) -> std::result::Result<RepoListing, (String, bool)> {
    let response = match api
        .repo(repo.hf())
        .info_request()
        .query("blobs", "true")
        .timeout(timeout)
        .call()
    {
        Ok(r) => r,
        Err(e) => {
            let msg = e.to_string();
            // Client errors other than timeout / rate limit will not change on retry.
            let status = e.into_response().map_or(0, |r| r.status());
            let retry = !(400..500).contains(&status) || status == 408 || status == 429;
            return Err((msg, retry));
        }
    };
    let body = response
        .into_string()
        .map_err(|e| (format!("reading the listing: {e}"), true))?;
    let parsed: ApiInfo = serde_json::from_str(&body)
        .map_err(|e| (format!("unexpected listing from the hub: {e}"), true))?;
    let mut remote = BTreeMap::new();
    for s in &parsed.siblings {
        let (size, blob) = match (&s.lfs, s.size, &s.blob_id) {
            (Some(l), _, _) => (l.size, l.sha256.clone()),
            (None, Some(size), Some(id)) => (size, id.clone()),
            _ => continue,
        };
        remote.insert(s.rfilename.clone(), RemoteFile { size, blob });
    }
    let mut files: Vec<String> = parsed.siblings.into_iter().map(|s| s.rfilename).collect();
    files.sort();
    Ok(RepoListing {
        repo: repo.clone(),
        commit: parsed.sha,
        files,
        remote,
    })
}

/// Lists `repo` online: each attempt limited to `timeout`, up to `retries` more attempts
/// after `backoff(base, n)`. The error message says how many attempts were made.
pub fn list_online(
    api: &Api,
    repo: &HubRepo,
    timeout: Duration,
    retries: u32,
    base: Duration,
) -> std::result::Result<RepoListing, String> {
    let mut attempt = 0;
    loop {
        match fetch_listing(api, repo, timeout) {
            Ok(l) => return Ok(l),
            Err((msg, retry)) if retry && attempt < retries => {
                let wait = backoff(base, attempt);
                warn!(repo = %repo.id, error = %msg, wait_s = wait.as_secs_f32(), "listing failed; retrying");
                std::thread::sleep(wait);
                attempt += 1;
            }
            Err((msg, _)) => return Err(format!("{msg} (after {} attempts)", attempt + 1)),
        }
    }
}

/// Checks a local copy of `file` against the listing's size.
pub fn check_size(listing: &RepoListing, file: &str, path: &Path) -> Result<()> {
    let Some(r) = listing.remote.get(file) else {
        return Ok(());
    };
    let found = std::fs::metadata(path)
        .map_err(|e| DataError::io(path, "reading metadata", e))?
        .len();
    if found == r.size {
        return Ok(());
    }
    let repo = &listing.repo;
    Err(DataError::HubFileSize {
        path: path.to_path_buf(),
        file: format!("{}@{} {file}", repo.id, listing.commit),
        expected: r.size,
        found,
        command: repo.download_command(&[file.to_string()]),
    })
}

/// When the blob of `file` is in the cache, or its `.part` is complete, puts it in place
/// (`.part` renamed to the blob, snapshot link, ref) and returns the snapshot path.
pub fn finish_cached(cache: &Path, listing: &RepoListing, file: &str) -> Result<Option<PathBuf>> {
    match listing.remote.get(file) {
        Some(r) => finish_part(cache, listing, file, r),
        None => Ok(None),
    }
}

/// [`finish_cached`] for the blob `r` (from the listing, or from a download's metadata):
/// `None` when neither `blobs/<blob>` nor a `.part` of `r.size` bytes is there.
pub fn finish_part(
    cache: &Path,
    listing: &RepoListing,
    file: &str,
    r: &RemoteFile,
) -> Result<Option<PathBuf>> {
    let root = cache.join(listing.repo.cache_folder());
    let blob = root.join("blobs").join(&r.blob);
    let part = root.join("blobs").join(format!("{}.part", r.blob));
    if !blob.is_file() {
        let part_len = std::fs::metadata(&part).map(|m| m.len()).ok();
        if part_len != Some(r.size) {
            return Ok(None);
        }
        info!(
            file,
            "a finished download (.part) was left in the cache; using it"
        );
        std::fs::rename(&part, &blob)
            .map_err(|e| DataError::io(&part, format!("renaming to {}", blob.display()), e))?;
    }
    let link = snapshot_dir(cache, &listing.repo, &listing.commit).join(file);
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, "creating", e))?;
    }
    // snapshots/<commit>/<a/b/file> → ../../(../..)blobs/<blob>, as huggingface_hub links.
    let up = file.matches('/').count() + 2;
    let target: PathBuf = std::iter::repeat_n("..", up)
        .collect::<PathBuf>()
        .join("blobs")
        .join(&r.blob);
    link_or_copy(&target, &blob, &link)?;
    if listing.repo.revision != listing.commit {
        let ref_path = root.join("refs").join(&listing.repo.revision);
        if let Some(dir) = ref_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, "creating", e))?;
        }
        std::fs::write(&ref_path, &listing.commit)
            .map_err(|e| DataError::io(&ref_path, "writing", e))?;
    }
    Ok(Some(link))
}

/// Makes `link` point at the blob (a relative symlink where the platform has them),
/// replacing a dangling link left there.
fn link_or_copy(target: &Path, blob: &Path, link: &Path) -> Result<()> {
    if std::fs::symlink_metadata(link).is_ok() {
        std::fs::remove_file(link)
            .map_err(|e| DataError::io(link, "replacing a dangling link", e))?;
    }
    link_blob(target, blob, link).map_err(|e| DataError::io(link, "linking the cached file", e))
}

#[cfg(unix)]
fn link_blob(target: &Path, _blob: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn link_blob(_target: &Path, blob: &Path, link: &Path) -> std::io::Result<()> {
    std::fs::copy(blob, link).map(|_| ())
}
