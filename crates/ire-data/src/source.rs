//! Turns a [`DatasetSource`] into files on disk and then into a stream of `(split, document)`.
//!
//! Hub sources are listed and fetched through [`crate::hub`] (file names are matched by
//! pattern, never hard-coded: shard names carry hashes). Splits come from the files
//! (Wikitext, Minipile), from the document index (OpenWebText and local files: a seeded hash
//! of the index holds out `val_fraction` of the documents, as nanoGPT's 0.0005 / seed 2357),
//! or, for the embedded corpora, from every n-th document. Numbered hub files
//! (`train-00003-of-00012…`) must all be present: a partial cache is an error, not a
//! smaller dataset.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::{Deserialize, Serialize};
use tracing::info;

use ire_core::splitmix64;

use crate::config::{DataConfig, DatasetSource, Split};
use crate::embedded::EmbeddedCorpus;
use crate::error::{DataError, Result};
use crate::hub::record::check_cached_complete;
use crate::hub::{matching, Hub, HubRepo, RepoListing};
use crate::parquet_text::read_parquet_text;
use crate::wikitext::ArticleJoiner;

/// How a file's rows or lines become documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileFormat {
    /// Wikitext parquet: one line per row, joined into articles.
    WikitextParquet,
    /// Parquet, one document per row of `column`.
    Parquet {
        /// Text column.
        column: String,
    },
    /// JSON lines, one document per line, text in `field`.
    Jsonl {
        /// Text field.
        field: String,
    },
    /// The whole file is one document.
    Text,
}

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Repo-relative name (hub) or the path as configured (local).
    pub name: String,
    /// Where it is on disk (the cache snapshot for hub files).
    #[serde(skip)]
    pub path: PathBuf,
    /// The split all its documents go to; `None` when the split is decided per document.
    pub split: Option<Split>,
    /// File size in bytes.
    pub bytes: u64,
    /// How to read it.
    pub format: FileFormat,
}

/// How documents are assigned to splits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitRule {
    /// Each file belongs to one split.
    ByFile,
    /// Document `i` is validation when `i % n == n - 1`.
    EveryNth {
        /// Period.
        n: u64,
    },
    /// Document `i` is validation when `hash(seed, i) < fraction` (see [`is_held_out`]).
    Hashed {
        /// Held-out fraction.
        fraction: f64,
        /// Seed.
        seed: u64,
    },
}

impl SplitRule {
    /// The split of document `index` (for rules that decide per document).
    pub fn split_of(&self, index: u64) -> Split {
        match *self {
            SplitRule::ByFile => Split::Train,
            SplitRule::EveryNth { n } => {
                if index % n == n - 1 {
                    Split::Val
                } else {
                    Split::Train
                }
            }
            SplitRule::Hashed { fraction, seed } => {
                if is_held_out(index, fraction, seed) {
                    Split::Val
                } else {
                    Split::Train
                }
            }
        }
    }
}

/// The split rule `cfg` gives its source (what `meta.json` records).
pub fn split_rule(cfg: &DataConfig) -> SplitRule {
    match &cfg.dataset {
        DatasetSource::Wikitext103 | DatasetSource::Wikitext2 | DatasetSource::Minipile => {
            SplitRule::ByFile
        }
        DatasetSource::Embedded | DatasetSource::MobyDick => SplitRule::EveryNth {
            n: cfg.embedded_val_every,
        },
        DatasetSource::OpenWebText { .. } | DatasetSource::Local { .. } => SplitRule::Hashed {
            fraction: cfg.val_fraction(),
            seed: cfg.split_seed,
        },
    }
}

/// The splits `cfg`'s source produces, in order.
pub fn source_splits(cfg: &DataConfig) -> Vec<Split> {
    match split_rule(cfg) {
        SplitRule::ByFile => vec![Split::Train, Split::Val, Split::Test],
        _ => vec![Split::Train, Split::Val],
    }
}

/// Whether document `index` is held out: a uniform in [0, 1) from `(seed, index)` is below `fraction`.
pub fn is_held_out(index: u64, fraction: f64, seed: u64) -> bool {
    let h = splitmix64(splitmix64(seed) ^ index);
    ((h >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < fraction
}

/// A source made concrete: its files (downloaded), its split rule, where it came from.
#[derive(Debug, Clone)]
pub struct ResolvedSource {
    /// Dataset name (`wikitext-103`, `local-x`, …).
    pub name: String,
    /// Hub repo id, for hub sources.
    pub repo: Option<String>,
    /// Revision asked for.
    pub revision: Option<String>,
    /// Commit it resolved to.
    pub commit: Option<String>,
    /// Input files in reading order (empty for embedded corpora).
    pub files: Vec<SourceFile>,
    /// Embedded corpus, if that is the source.
    pub embedded: Option<EmbeddedCorpus>,
    /// Split assignment.
    pub rule: SplitRule,
    /// Splits this source produces, in order.
    pub splits: Vec<Split>,
}

fn hub_split_files(
    hub: &Hub,
    listing: &RepoListing,
    folder: &str,
    format: &FileFormat,
) -> Result<Vec<SourceFile>> {
    let mut names = Vec::new();
    for (split, name) in [
        (Split::Train, "train"),
        (Split::Val, "validation"),
        (Split::Test, "test"),
    ] {
        let pattern = format!("{folder}/{name}-*.parquet");
        names.extend(matching(listing, &pattern)?.into_iter().map(|f| (split, f)));
    }
    let all: Vec<String> = names.iter().map(|(_, f)| f.clone()).collect();
    check_numbered_complete(listing, &all)?;
    check_offline_complete(hub, listing, &all)?;
    names
        .into_iter()
        .map(|(split, f)| hub_file(hub, listing, &f, Some(split), format.clone()))
        .collect()
}

/// Offline, checks that the files a recorded listing names are all cached (online, missing
/// files are downloaded instead).
fn check_offline_complete(hub: &Hub, listing: &RepoListing, names: &[String]) -> Result<()> {
    let o = hub.options();
    if o.offline {
        check_cached_complete(&o.cache_dir, listing, names)?;
    }
    Ok(())
}

/// Checks that numbered files (`…-00003-of-00012…`) are all there: for each prefix and
/// count N, indices 0..N. A cache filled by an interrupted download holds only some of
/// them, and reading it would silently give a truncated dataset.
pub fn check_numbered_complete(listing: &RepoListing, names: &[String]) -> Result<()> {
    // Built from a literal; compiling it cannot fail.
    let re = Regex::new(r"^(.*)-(\d+)-of-(\d+)").expect("valid numbered-file regex");
    let mut groups: BTreeMap<(String, usize, u64), BTreeSet<u64>> = BTreeMap::new();
    for name in names {
        let Some(c) = re.captures(name) else { continue };
        let (Ok(i), Ok(n)) = (c[2].parse::<u64>(), c[3].parse::<u64>()) else {
            continue;
        };
        groups
            .entry((c[1].to_string(), c[2].len(), n))
            .or_default()
            .insert(i);
    }
    let mut missing = Vec::new();
    for ((prefix, width, n), present) in &groups {
        let w = *width;
        for i in (0..*n).filter(|i| !present.contains(i)) {
            missing.push(format!("{prefix}-{i:0w$}-of-{n:0w$}*"));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let mut patterns: Vec<String> = groups.keys().map(|(p, _, _)| format!("{p}-*")).collect();
    patterns.dedup();
    Err(listing.incomplete(&missing, &patterns))
}

fn hub_file(
    hub: &Hub,
    listing: &RepoListing,
    name: &str,
    split: Option<Split>,
    format: FileFormat,
) -> Result<SourceFile> {
    let path = hub.get(listing, name)?;
    let bytes = std::fs::metadata(&path)
        .map_err(|e| DataError::io(&path, "reading metadata", e))?
        .len();
    Ok(SourceFile {
        name: name.into(),
        path,
        split,
        bytes,
        format,
    })
}

/// Whether a repo file is an OpenWebText train parquet shard (`*/train-*.parquet`,
/// `train-*.parquet`, or any parquet under a `train/` or `partial-train/` folder).
pub fn is_train_parquet(name: &str) -> bool {
    if !name.ends_with(".parquet") {
        return false;
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let base = parts.pop().unwrap_or_default();
    base.starts_with("train") || parts.iter().any(|p| *p == "train" || *p == "partial-train")
}

fn local_format(path: &Path, field: &str) -> FileFormat {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
    {
        Some(e) if e == "parquet" => FileFormat::Parquet {
            column: field.into(),
        },
        Some(e) if e == "jsonl" || e == "ndjson" => FileFormat::Jsonl {
            field: field.into(),
        },
        _ => FileFormat::Text,
    }
}

fn collect_local(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, "listing", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, "listing", e))?;
        let p = entry.path();
        let meta = std::fs::metadata(&p).map_err(|e| DataError::io(&p, "reading metadata", e))?;
        if meta.is_dir() {
            collect_local(&p, out)?;
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("txt" | "jsonl" | "ndjson" | "parquet")
        ) {
            out.push(p);
        }
    }
    Ok(())
}

/// The OpenWebText train parquet files of `listing`, all numbered parts present, fetched.
fn openwebtext_files(hub: &Hub, listing: &RepoListing) -> Result<Vec<SourceFile>> {
    let names: Vec<String> = listing
        .files
        .iter()
        .filter(|f| is_train_parquet(f))
        .cloned()
        .collect();
    if names.is_empty() {
        // Reuse the uniform "nothing matches" error.
        matching(listing, "*/train-*.parquet")?;
    }
    check_numbered_complete(listing, &names)?;
    check_offline_complete(hub, listing, &names)?;
    let format = FileFormat::Parquet {
        column: "text".into(),
    };
    names
        .iter()
        .map(|n| hub_file(hub, listing, n, None, format.clone()))
        .collect()
}

/// The local file `path`, or the `.txt`/`.jsonl`/`.ndjson`/`.parquet` files under the
/// folder `path` in sorted order; the text is in `text_field` (JSON lines, parquet).
fn local_files(path: &Path, text_field: &str) -> Result<Vec<SourceFile>> {
    let meta =
        std::fs::metadata(path).map_err(|e| DataError::io(path, "opening the local dataset", e))?;
    let paths = if meta.is_dir() {
        let mut v = Vec::new();
        collect_local(path, &mut v)?;
        v.sort();
        if v.is_empty() {
            return Err(DataError::NoMatchingFiles {
                source_name: path.display().to_string(),
                pattern: "**/*.{txt,jsonl,ndjson,parquet}".into(),
                count: 0,
                sample: String::new(),
            });
        }
        v
    } else {
        vec![path.to_path_buf()]
    };
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::metadata(&p)
                .map_err(|e| DataError::io(&p, "reading metadata", e))?
                .len();
            Ok(SourceFile {
                name: p.display().to_string(),
                format: local_format(&p, text_field),
                path: p,
                split: None,
                bytes,
            })
        })
        .collect()
}

impl ResolvedSource {
    /// Lists and fetches the files of `cfg.dataset` (nothing for the embedded corpora).
    pub fn resolve(cfg: &DataConfig, hub: &Hub) -> Result<Self> {
        match &cfg.dataset {
            DatasetSource::Wikitext103 | DatasetSource::Wikitext2 => {
                let folder = if cfg.dataset == DatasetSource::Wikitext103 {
                    "wikitext-103-raw-v1"
                } else {
                    "wikitext-2-raw-v1"
                };
                let repo = HubRepo::dataset("Salesforce/wikitext", "main");
                let listing = hub.list(&repo)?;
                let files = hub_split_files(hub, &listing, folder, &FileFormat::WikitextParquet)?;
                Ok(Self::from_hub(cfg, repo, files, listing))
            }
            DatasetSource::Minipile => {
                let repo = HubRepo::dataset("JeanKaddour/minipile", "main");
                let listing = hub.list(&repo)?;
                let format = FileFormat::Parquet {
                    column: "text".into(),
                };
                let files = hub_split_files(hub, &listing, "data", &format)?;
                Ok(Self::from_hub(cfg, repo, files, listing))
            }
            DatasetSource::OpenWebText { repo, revision } => {
                let repo = HubRepo::dataset(repo, revision);
                let listing = hub.list(&repo)?;
                let files = openwebtext_files(hub, &listing)?;
                Ok(Self::from_hub(cfg, repo, files, listing))
            }
            DatasetSource::Embedded | DatasetSource::MobyDick => {
                let corpus = if cfg.dataset == DatasetSource::Embedded {
                    EmbeddedCorpus::Sotu
                } else {
                    EmbeddedCorpus::MobyDick
                };
                Ok(Self::without_hub(cfg, Vec::new(), Some(corpus)))
            }
            DatasetSource::Local { path, text_field } => {
                Ok(Self::without_hub(cfg, local_files(path, text_field)?, None))
            }
        }
    }

    /// A hub source: `files` of `listing`, at the commit `repo.revision` resolved to.
    fn from_hub(
        cfg: &DataConfig,
        repo: HubRepo,
        files: Vec<SourceFile>,
        listing: RepoListing,
    ) -> Self {
        ResolvedSource {
            name: cfg.dataset.name(),
            repo: Some(repo.id),
            revision: Some(repo.revision),
            commit: Some(listing.commit),
            files,
            embedded: None,
            rule: split_rule(cfg),
            splits: source_splits(cfg),
        }
    }

    /// A source without a hub repo: local `files`, or an `embedded` corpus.
    fn without_hub(
        cfg: &DataConfig,
        files: Vec<SourceFile>,
        embedded: Option<EmbeddedCorpus>,
    ) -> Self {
        ResolvedSource {
            name: cfg.dataset.name(),
            repo: None,
            revision: None,
            commit: None,
            files,
            embedded,
            rule: split_rule(cfg),
            splits: source_splits(cfg),
        }
    }

    /// Where the text comes from, for messages (`Salesforce/wikitext@<commit>`, a path, …).
    pub fn describe(&self) -> String {
        match (&self.repo, &self.commit, self.embedded) {
            (Some(r), Some(c), _) => format!("{r}@{c}"),
            (_, _, Some(e)) => format!("embedded corpus {}", e.name()),
            _ => self
                .files
                .first()
                .map(|f| f.name.clone())
                .unwrap_or_else(|| self.name.clone()),
        }
    }

    /// Feeds every document of the `wanted` splits, in order, to `f(split, text)`.
    ///
    /// Empty (or whitespace-only) documents are dropped and not counted. Files of splits
    /// not wanted are not read when the split is decided per file. `f` returns `Ok(false)`
    /// to stop early.
    pub fn for_each_document(
        &self,
        wanted: &[Split],
        f: &mut dyn FnMut(Split, String) -> Result<bool>,
    ) -> Result<()> {
        let mut emit = Emit {
            rule: &self.rule,
            wanted,
            index: 0,
            f,
        };
        if let Some(corpus) = self.embedded {
            for doc in corpus.documents()? {
                if !emit.doc(None, doc)? {
                    return Ok(());
                }
            }
            return Ok(());
        }
        let mut joiner = ArticleJoiner::new();
        let mut joiner_split: Option<Split> = None;
        for file in &self.files {
            if let Some(s) = file.split {
                if !wanted.contains(&s) {
                    continue;
                }
            }
            // A Wikitext article never spans two splits: flush at a split change.
            if file.format == FileFormat::WikitextParquet && joiner_split != file.split {
                if let (Some(s), Some(doc)) = (joiner_split, joiner.finish()) {
                    if !emit.doc(Some(s), doc)? {
                        return Ok(());
                    }
                }
                joiner_split = file.split;
            }
            info!(file = %file.name, bytes = file.bytes, "reading");
            if !read_documents(file, &mut joiner, &mut emit)? {
                return Ok(());
            }
        }
        if let (Some(s), Some(doc)) = (joiner_split, joiner.finish()) {
            emit.doc(Some(s), doc)?;
        }
        Ok(())
    }
}

/// Where [`ResolvedSource::for_each_document`] sends documents: assigns a split to those
/// of per-document-rule files (by their index among them) and forwards those of the
/// wanted splits.
struct Emit<'a> {
    rule: &'a SplitRule,
    wanted: &'a [Split],
    /// Documents given a split by the rule so far.
    index: u64,
    f: &'a mut dyn FnMut(Split, String) -> Result<bool>,
}

impl Emit<'_> {
    /// One document of `split` (`None`: decided by the rule); `Ok(false)` to stop.
    /// Empty (or whitespace-only) documents are dropped and not counted.
    fn doc(&mut self, split: Option<Split>, text: String) -> Result<bool> {
        if text.trim().is_empty() {
            return Ok(true);
        }
        let split = match split {
            Some(s) => s,
            None => {
                let s = self.rule.split_of(self.index);
                self.index += 1;
                s
            }
        };
        if self.wanted.contains(&split) {
            (self.f)(split, text)
        } else {
            Ok(true)
        }
    }
}

/// Sends the documents of one file to `emit` (Wikitext rows through `joiner`, which keeps
/// an unfinished article for the next file); `Ok(false)` when `emit` said stop.
fn read_documents(file: &SourceFile, joiner: &mut ArticleJoiner, emit: &mut Emit) -> Result<bool> {
    Ok(match &file.format {
        FileFormat::WikitextParquet => {
            let mut go = true;
            read_parquet_text(&file.path, "text", |row| {
                if let Some(doc) = joiner.push(row.unwrap_or("")) {
                    go = emit.doc(file.split, doc)?;
                }
                Ok(go)
            })?;
            go
        }
        FileFormat::Parquet { column } => {
            let mut go = true;
            read_parquet_text(&file.path, column, |row| {
                if let Some(text) = row {
                    go = emit.doc(file.split, text.to_string())?;
                }
                Ok(go)
            })?;
            go
        }
        FileFormat::Jsonl { field } => {
            read_jsonl(&file.path, field, &mut |t| emit.doc(file.split, t))?
        }
        FileFormat::Text => {
            let bytes =
                std::fs::read(&file.path).map_err(|e| DataError::io(&file.path, "reading", e))?;
            let text = String::from_utf8(bytes).map_err(|e| DataError::Utf8 {
                path: file.path.clone(),
                location: format!("byte {}", e.utf8_error().valid_up_to()),
                source: e.utf8_error(),
            })?;
            emit.doc(file.split, text)?
        }
    })
}

/// Reads a JSONL file, calling `f` with the string field `field` of each non-blank line.
pub fn read_jsonl(
    path: &Path,
    field: &str,
    f: &mut dyn FnMut(String) -> Result<bool>,
) -> Result<bool> {
    let file = File::open(path).map_err(|e| DataError::io(path, "opening", e))?;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| DataError::io(path, format!("reading line {}", n + 1), e))?;
        if read == 0 {
            return Ok(true);
        }
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |found: String| DataError::Jsonl {
            path: path.to_path_buf(),
            line: n,
            field: field.into(),
            found,
        };
        let mut value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(format!("invalid JSON ({e})")))?;
        let text = match value.get_mut(field) {
            Some(serde_json::Value::String(s)) => std::mem::take(s),
            Some(other) => return Err(bad(format!("`{field}` is {}", kind(other)))),
            None => {
                let keys = value
                    .as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_else(|| kind(&value).to_string());
                return Err(bad(format!("no `{field}` (keys: {keys})")));
            }
        };
        if !f(text)? {
            return Ok(false);
        }
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_split_holds_out_the_requested_fraction_deterministically() {
        let rule = SplitRule::Hashed {
            fraction: 0.0005,
            seed: 2357,
        };
        let val: Vec<u64> = (0..200_000)
            .filter(|&i| rule.split_of(i) == Split::Val)
            .collect();
        // 0.0005 × 200000 = 100 expected; a binomial stays within ±40 of it.
        assert!((60..140).contains(&val.len()), "{}", val.len());
        let again: Vec<u64> = (0..200_000)
            .filter(|&i| rule.split_of(i) == Split::Val)
            .collect();
        assert_eq!(val, again);
        let other_seed = SplitRule::Hashed {
            fraction: 0.0005,
            seed: 1,
        };
        let val1: Vec<u64> = (0..200_000)
            .filter(|&i| other_seed.split_of(i) == Split::Val)
            .collect();
        assert_ne!(val, val1);
    }

    #[test]
    fn every_nth_rule_takes_indices_9_19_29() {
        let rule = SplitRule::EveryNth { n: 10 };
        let val: Vec<u64> = (0..35)
            .filter(|&i| rule.split_of(i) == Split::Val)
            .collect();
        assert_eq!(val, vec![9, 19, 29]);
    }

    #[test]
    fn openwebtext_train_files_are_recognised() {
        assert!(is_train_parquet("plain_text/train-00000-of-00080.parquet"));
        assert!(is_train_parquet("data/train-00003-of-00041-1a2b3c.parquet"));
        assert!(is_train_parquet("plain_text/partial-train/0000.parquet"));
        assert!(!is_train_parquet("plain_text/test-00000-of-00001.parquet"));
        assert!(!is_train_parquet("README.md"));
    }

    #[test]
    fn jsonl_reports_the_line_and_the_missing_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(&p, "{\"text\": \"a\"}\n\n{\"body\": \"b\"}\n").unwrap();
        let mut got = Vec::new();
        let err = read_jsonl(&p, "text", &mut |t| {
            got.push(t);
            Ok(true)
        })
        .unwrap_err();
        assert_eq!(got, vec!["a".to_string()]);
        let msg = err.to_string();
        assert!(matches!(err, DataError::Jsonl { line: 3, .. }), "{msg}");
        assert!(
            msg.contains("d.jsonl") && msg.contains("`text`") && msg.contains("body"),
            "{msg}"
        );
    }
}
