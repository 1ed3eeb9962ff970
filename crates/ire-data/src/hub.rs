//! Hugging Face hub access: list and fetch repo files through the standard HF cache.
//!
//! Online, repos are listed through `hf-hub` and files downloaded by ire's own client
//! (timeouts, retries, resume from `.part`, progress bars, `HF_TOKEN` or the token file for
//! gated repos; see `hub_download.rs`) into the cache shared with Python's `huggingface_hub`:
//! `$HF_HOME/hub/datasets--Org--Name/{refs/<revision>, snapshots/<commit>/<file>, blobs/}`.
//! With `HF_HUB_OFFLINE=1` nothing touches the network: the revision is resolved through
//! `refs/<revision>` and files are read from `snapshots/<commit>/`, which is also how files
//! are listed. Anything missing gives one [`DataError::Offline`] that says how to fetch it.
//! Online listings and downloads are bounded in time, retried with backoff and checked
//! against the listed sizes; see [`crate::hub_fetch`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::{Cache, Repo, RepoType};
use tracing::warn;

use crate::error::{DataError, Result};
use crate::hub_download::Downloader;
use crate::hub_fetch::{check_size, finish_cached, list_online};
use crate::hub_record::{read_record, write_record};

/// Kind of hub repo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// A model repo (`models--…` in the cache).
    Model,
    /// A dataset repo (`datasets--…` in the cache).
    Dataset,
}

/// A repo at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRepo {
    /// `org/name`.
    pub id: String,
    /// Model or dataset.
    pub kind: RepoKind,
    /// Branch, tag, `refs/pr/N` or a 40-hex commit.
    pub revision: String,
}

impl HubRepo {
    /// A dataset repo at `revision`.
    pub fn dataset(id: &str, revision: &str) -> Self {
        HubRepo {
            id: id.into(),
            kind: RepoKind::Dataset,
            revision: revision.into(),
        }
    }

    /// A model repo at `revision`.
    pub fn model(id: &str, revision: &str) -> Self {
        HubRepo {
            id: id.into(),
            kind: RepoKind::Model,
            revision: revision.into(),
        }
    }

    /// Folder of this repo in the cache: `datasets--Org--Name` / `models--Org--Name`.
    pub fn cache_folder(&self) -> String {
        let prefix = match self.kind {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        };
        format!("{prefix}--{}", self.id.replace('/', "--"))
    }

    /// "dataset Org/Name" for messages.
    pub fn describe(&self) -> String {
        match self.kind {
            RepoKind::Model => format!("model {}", self.id),
            RepoKind::Dataset => format!("dataset {}", self.id),
        }
    }

    /// An `hf download` command that puts `include` (globs) of this repo in the cache.
    /// (`huggingface-cli download` was removed in huggingface_hub 1.0; `hf` replaces it.)
    pub fn download_command(&self, include: &[String]) -> String {
        let mut cmd = format!("hf download {}", self.id);
        if self.kind == RepoKind::Dataset {
            cmd.push_str(" --repo-type dataset");
        }
        if self.revision != "main" {
            cmd.push_str(&format!(" --revision {}", self.revision));
        }
        for pat in include {
            cmd.push_str(&format!(" --include '{pat}'"));
        }
        cmd
    }

    pub(crate) fn hf(&self) -> Repo {
        let kind = match self.kind {
            RepoKind::Model => RepoType::Model,
            RepoKind::Dataset => RepoType::Dataset,
        };
        Repo::with_revision(self.id.clone(), kind, self.revision.clone())
    }
}

/// How to reach the hub; [`HubOptions::from_env`] reads the usual `HF_*` variables.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// The hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// Never use the network (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Access token (`HF_TOKEN`; else `hf-hub` reads `$HF_HOME/token`).
    pub token: Option<String>,
    /// Hub URL (`HF_ENDPOINT`), default `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// Show download progress bars (they stay hidden when stderr is not a terminal).
    pub progress: bool,
    /// Limit on one listing request (connect + answer), and on a download's connect and each
    /// of its reads; default 30 s.
    pub timeout: Duration,
    /// Further attempts after a failed listing, or a failed download of one file; default 4.
    pub retries: u32,
    /// First wait between attempts, doubled each time up to 8×; default 1 s (1, 2, 4, 8 s).
    pub backoff_base: Duration,
}

impl HubOptions {
    /// Options from `HF_HUB_CACHE`, `HF_HOME`, `HF_HUB_OFFLINE`, `HF_TOKEN`, `HF_ENDPOINT`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let cache_dir = if let Some(c) = var("HF_HUB_CACHE") {
            PathBuf::from(c)
        } else if let Some(h) = var("HF_HOME") {
            PathBuf::from(h).join("hub")
        } else if let Some(home) = var("HOME") {
            PathBuf::from(home).join(".cache/huggingface/hub")
        } else {
            PathBuf::from(".cache/huggingface/hub")
        };
        let offline = var("HF_HUB_OFFLINE")
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false);
        HubOptions {
            cache_dir,
            offline,
            token: var("HF_TOKEN"),
            endpoint: var("HF_ENDPOINT"),
            progress: true,
            ..Self::offline(PathBuf::new())
        }
    }

    /// Offline options over `cache_dir` (tests, air-gapped machines).
    pub fn offline(cache_dir: impl Into<PathBuf>) -> Self {
        HubOptions {
            cache_dir: cache_dir.into(),
            offline: true,
            token: None,
            endpoint: None,
            progress: false,
            timeout: Duration::from_secs(30),
            retries: 4,
            backoff_base: Duration::from_secs(1),
        }
    }
}

/// A repo's file list at one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoListing {
    /// The repo and the revision asked for.
    pub repo: HubRepo,
    /// The commit the revision resolved to.
    pub commit: String,
    /// Repo-relative paths with `/` separators, sorted.
    pub files: Vec<String>,
    /// Size and blob name per file, from an online listing (empty from the cache).
    pub remote: BTreeMap<String, RemoteFile>,
}

impl RepoListing {
    /// The error for `missing` files of this listing (the first few named, all counted), with
    /// an `hf download` command including `include`.
    pub(crate) fn incomplete(&self, missing: &[String], include: &[String]) -> DataError {
        let repo = &self.repo;
        DataError::IncompleteSource {
            source_name: format!("{}@{} ({})", repo.id, repo.revision, self.commit),
            count: missing.len(),
            missing: missing
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            command: repo.download_command(include),
        }
    }
}

/// What the hub says about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Bytes.
    pub size: u64,
    /// Its name under `blobs/` in the cache (LFS sha256, else git blob id).
    pub blob: String,
}

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

/// `msg` with what to do about it: a token for 401/403, else offline mode.
pub(crate) fn hint(msg: &str) -> String {
    if msg.contains("401") || msg.contains("403") {
        format!("{msg} (gated or private repo: set HF_TOKEN, or log in with `hf auth login`)")
    } else {
        format!("{msg} (no network? with the files cached, set HF_HUB_OFFLINE=1)")
    }
}

/// `<cache>/<repo folder>/snapshots/<commit>`.
pub fn snapshot_dir(cache_dir: &Path, repo: &HubRepo, commit: &str) -> PathBuf {
    cache_dir
        .join(repo.cache_folder())
        .join("snapshots")
        .join(commit)
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
/// commit recorded (`hub_record.rs`), else what `snapshots/<commit>/` holds.
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

    #[test]
    fn cache_folder_and_command_follow_huggingface_hub() {
        let r = HubRepo::dataset("Salesforce/wikitext", "main");
        assert_eq!(r.cache_folder(), "datasets--Salesforce--wikitext");
        assert_eq!(
            r.download_command(&["wikitext-103-raw-v1/*".into()]),
            "hf download Salesforce/wikitext --repo-type dataset --include 'wikitext-103-raw-v1/*'"
        );
        let o = HubRepo::dataset("Skylion007/openwebtext", "refs/pr/20");
        assert_eq!(
            o.download_command(&[]),
            "hf download Skylion007/openwebtext --repo-type dataset --revision refs/pr/20"
        );
        assert_eq!(
            HubRepo::model("openai-community/gpt2", "main")
                .download_command(&["tokenizer.json".into()]),
            "hf download openai-community/gpt2 --include 'tokenizer.json'"
        );
        assert_eq!(
            HubRepo::model("openai-community/gpt2", "main").cache_folder(),
            "models--openai-community--gpt2"
        );
    }
}
