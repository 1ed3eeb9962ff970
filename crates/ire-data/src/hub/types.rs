//! The hub types every part of `hub/` shares: a repo at a revision ([`HubRepo`]), the
//! client settings ([`HubOptions`]), a repo's file list at one commit ([`RepoListing`],
//! [`RemoteFile`]), where a snapshot lies in the cache, and the hint added to hub errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::{Repo, RepoType};

use crate::error::DataError;

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
    /// Show a download progress bar on a terminal (without one, or with this off, the progress
    /// is a log line every 10 s).
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

#[cfg(test)]
mod tests {
    use super::*;

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
