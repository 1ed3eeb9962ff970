//! Hugging Face hub access: list and fetch repo files through the standard HF cache.
//!
//! Online, repos are listed through `hf-hub` and files downloaded by ire's own client
//! (timeouts, retries, resume from `.part`, progress: a bar, or log lines without a terminal;
//! `HF_TOKEN` or the token file for gated repos; see `download.rs`) into the cache shared with
//! Python's `huggingface_hub`:
//! `$HF_HOME/hub/datasets--Org--Name/{refs/<revision>, snapshots/<commit>/<file>, blobs/}`.
//! With `HF_HUB_OFFLINE=1` nothing touches the network: the revision is resolved through
//! `refs/<revision>` and files are read from `snapshots/<commit>/`, which is also how files
//! are listed. Anything missing gives one [`DataError::Offline`] that says how to fetch it.
//! Online listings and downloads are bounded in time, retried with backoff and checked
//! against the listed sizes; see [`fetch`]. What an online listing found is recorded in the
//! cache for offline runs ([`record`]); the types all of these share are in [`types`].

mod download;
pub mod fetch;
pub mod record;
pub mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::Cache;
use tracing::warn;

use crate::error::{DataError, Result};
use download::Downloader;
use fetch::{check_size, finish_cached, list_online};
use record::{read_record, write_record};
use types::hint;
pub use types::{snapshot_dir, HubOptions, HubRepo, RemoteFile, RepoKind, RepoListing};

/// Hub client over the HF cache; offline or online per [`HubOptions`].
pub struct Hub {
    opts: HubOptions,
    /// hf-hub's client, for listings; `None` when offline.
    api: Option<Api>,
    /// ire's downloader; `None` when offline.
    files: Option<Downloader>,
}

impl Hub {
    /// A client; builds no network connection when offline.
    pub fn new(opts: HubOptions) -> Result<Self> {
        let api = if opts.offline {
            None
        } else {
            let mut b = ApiBuilder::from_cache(Cache::new(opts.cache_dir.clone()));
            if opts.token.is_some() {
                b = b.with_token(opts.token.clone());
            }
            if let Some(e) = &opts.endpoint {
                b = b.with_endpoint(e.clone());
            }
            Some(b.build().map_err(|e| DataError::Hub {
                repo: "hub".into(),
                revision: String::new(),
                action: "creating the HTTP client".into(),
                message: e.to_string(),
            })?)
        };
        let files = api.as_ref().map(|_| Downloader::new(&opts));
        Ok(Hub { opts, api, files })
    }

    /// The options in force.
    pub fn options(&self) -> &HubOptions {
        &self.opts
    }

    /// Lists the repo's files at its revision (from the cache when offline).
    ///
    /// Online, a failed listing falls back to a cached snapshot of the same revision (with
    /// a warning) so that a flaky network does not stop a run whose files are all cached.
    pub fn list(&self, repo: &HubRepo) -> Result<RepoListing> {
        let Some(api) = &self.api else {
            return list_cached(&self.opts.cache_dir, repo);
        };
        let o = &self.opts;
        match list_online(api, repo, o.timeout, o.retries, o.backoff_base) {
            Ok(listing) => {
                if let Err(e) = write_record(&o.cache_dir, &listing) {
                    warn!(error = %e, "could not record the listing in the cache");
                }
                Ok(listing)
            }
            Err(e) => match list_cached(&self.opts.cache_dir, repo) {
                Ok(cached) => {
                    warn!(repo = %repo.id, revision = %repo.revision, error = %e,
                        "listing the repo failed; using the cached snapshot {}", cached.commit);
                    Ok(cached)
                }
                Err(_) => Err(DataError::Hub {
                    repo: repo.describe(),
                    revision: repo.revision.clone(),
                    action: "listing files".into(),
                    message: hint(&e),
                }),
            },
        }
    }

    /// Local path of `file` at the listed commit, downloading it into the cache if needed.
    pub fn get(&self, listing: &RepoListing, file: &str) -> Result<PathBuf> {
        let repo = &listing.repo;
        let cached = snapshot_dir(&self.opts.cache_dir, repo, &listing.commit).join(file);
        if cached.is_file() {
            check_size(listing, file, &cached)?;
            return Ok(cached);
        }
        if let Some(path) = finish_cached(&self.opts.cache_dir, listing, file)? {
            check_size(listing, file, &path)?;
            return Ok(path);
        }
        let Some(files) = &self.files else {
            return Err(DataError::Offline {
                repo: repo.describe(),
                revision: repo.revision.clone(),
                cache: self.opts.cache_dir.clone(),
                missing: format!("file {file} of snapshot {}", listing.commit),
                command: repo.download_command(&[file.to_string()]),
            });
        };
        let path = files.fetch(&self.opts.cache_dir, listing, file)?;
        check_size(listing, file, &path)?;
        Ok(path)
    }
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Resolves `repo.revision` to a commit through `refs/<revision>` in the cache.
pub fn cached_commit(cache_dir: &Path, repo: &HubRepo) -> Result<String> {
    if is_commit_hash(&repo.revision) {
        return Ok(repo.revision.clone());
    }
    let offline = |missing: String| DataError::Offline {
        repo: repo.describe(),
        revision: repo.revision.clone(),
        cache: cache_dir.to_path_buf(),
        missing,
        command: repo.download_command(&[]),
    };
    let ref_path = cache_dir
        .join(repo.cache_folder())
        .join("refs")
        .join(&repo.revision);
    let commit = std::fs::read_to_string(&ref_path)
        .map_err(|_| offline(format!("no ref file {}", ref_path.display())))?;
    let commit = commit.trim().to_string();
    if !is_commit_hash(&commit) {
        return Err(offline(format!(
            "ref file {} holds `{commit}`, not a 40-hex commit",
            ref_path.display()
        )));
    }
    Ok(commit)
}

/// Lists the cached snapshot of `repo.revision`: the files and sizes an online listing of that
/// commit recorded ([`record`]), else what `snapshots/<commit>/` holds.
pub fn list_cached(cache_dir: &Path, repo: &HubRepo) -> Result<RepoListing> {
    let commit = cached_commit(cache_dir, repo)?;
    let dir = snapshot_dir(cache_dir, repo, &commit);
    if !dir.is_dir() {
        return Err(DataError::Offline {
            repo: repo.describe(),
            revision: repo.revision.clone(),
            cache: cache_dir.to_path_buf(),
            missing: format!("no snapshot folder {}", dir.display()),
            command: repo.download_command(&[]),
        });
    }
    if let Some(remote) = read_record(cache_dir, repo, &commit)? {
        return Ok(RepoListing {
            repo: repo.clone(),
            commit,
            files: remote.keys().cloned().collect(),
            remote,
        });
    }
    let mut files = Vec::new();
    walk(&dir, &dir, &mut files)?;
    files.sort();
    Ok(RepoListing {
        repo: repo.clone(),
        commit,
        files,
        remote: BTreeMap::new(),
    })
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, "listing", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, "listing", e))?;
        let path = entry.path();
        // metadata() follows the snapshot symlinks into blobs/; a dangling link is skipped.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            if let Ok(rel) = path.strip_prefix(root) {
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    Ok(())
}

/// Glob match where `*` matches any run of characters except `/`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn rec(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => {
                let mut i = 0;
                loop {
                    if rec(rest, &n[i..]) {
                        return true;
                    }
                    if i == n.len() || n[i] == b'/' {
                        return false;
                    }
                    i += 1;
                }
            }
            Some((c, rest)) => n.first() == Some(c) && rec(rest, &n[1..]),
        }
    }
    rec(pattern.as_bytes(), name.as_bytes())
}

/// Files of `listing` matching `pattern`, sorted; [`DataError::NoMatchingFiles`] if none.
pub fn matching(listing: &RepoListing, pattern: &str) -> Result<Vec<String>> {
    let found: Vec<String> = listing
        .files
        .iter()
        .filter(|f| glob_match(pattern, f))
        .cloned()
        .collect();
    if found.is_empty() {
        let sample: Vec<&str> = listing.files.iter().take(5).map(|s| s.as_str()).collect();
        return Err(DataError::NoMatchingFiles {
            source_name: format!(
                "{}@{} ({})",
                listing.repo.id, listing.repo.revision, listing.commit
            ),
            pattern: pattern.into(),
            count: listing.files.len(),
            sample: if sample.is_empty() {
                String::new()
            } else {
                format!(": {}", sample.join(", "))
            },
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_star_stays_within_one_folder() {
        assert!(glob_match(
            "data/train-*.parquet",
            "data/train-00000-of-00002-a1b2.parquet"
        ));
        assert!(!glob_match(
            "data/train-*.parquet",
            "data/validation-00000.parquet"
        ));
        assert!(!glob_match(
            "data/train-*.parquet",
            "data/train-x/y.parquet"
        ));
        assert!(glob_match("*/train-*", "plain_text/train-0001.parquet"));
        assert!(!glob_match("train-*.parquet", "data/train-1.parquet"));
    }
}
