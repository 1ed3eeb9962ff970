//! The prepared folder's format: its file names, `meta.json` and the per-shard and
//! tokenizer records (the types and their JSON), and the config fingerprint that names
//! the folder's identity. Written by `prepare`, read by `dataset`.
//!
//! Folder layout:
//!
//! ```text
//! tokenizer.json        the tokenizer used (GPT-2's bytes as downloaded, or the trained one)
//! train-00000.bin       token shards (see `shard`), documents separated by end-of-text
//! train-00000.json      the shard's record: written right after the shard, lets a killed run resume
//! val-00000.bin / .json
//! test-00000.bin / .json (sources with a test split)
//! prepare.lock          while a `prepare` writes the folder: its pid, host and start time
//!                       (`ire_core::lock::DirLock`)
//! meta.json             source, tokenizer sha256, shards' sha256 + counts; written LAST ("done")
//! verified.json         shards checked against meta.json, by file identity (see `verify`)
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{DataConfig, DatasetSource, Split, TokenizerSpec};
use crate::error::{DataError, Result};
use crate::shard::{TokenDtype, FORMAT_VERSION};
use crate::source::{split_rule, SourceFile, SplitRule};
use ire_core::fs::{sha256_hex, write_atomic};

/// The "done" marker and description of a prepared dataset.
pub const META_FILE: &str = "meta.json";
/// Present while a `prepare` writes the folder (`ire_core::lock::DirLock`).
pub const LOCK_FILE: &str = "prepare.lock";
/// The tokenizer stored with the shards.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Records which config and source a trained tokenizer came from (resume).
pub(crate) const TOKENIZER_RECORD: &str = "tokenizer.record.json";

/// `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Shard format version (see `shard`).
    pub format_version: u32,
    /// `ire-data <version>`.
    pub created_by: String,
    /// sha256 of the config fields that decide the tokens (see [`config_fingerprint`]).
    pub config_fingerprint: String,
    /// Dataset name, e.g. `wikitext-103`.
    pub dataset: String,
    /// The source as configured.
    pub source: DatasetSource,
    /// Hub repo of the text, if any.
    pub repo: Option<String>,
    /// Revision asked for.
    pub revision: Option<String>,
    /// Commit the revision resolved to.
    pub commit: Option<String>,
    /// Input files in reading order.
    pub files: Vec<SourceFile>,
    /// How documents were split.
    pub split_rule: SplitRule,
    /// The tokenizer.
    pub tokenizer: TokenizerMeta,
    /// Id width in the shards.
    pub dtype: TokenDtype,
    /// Configured tokens per shard.
    pub shard_tokens: u64,
    /// Per split: counts and shards.
    pub splits: BTreeMap<Split, SplitMeta>,
}

/// The tokenizer part of `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerMeta {
    /// As configured (after defaults).
    pub spec: TokenizerSpec,
    /// File name in the folder (`tokenizer.json`).
    pub file: String,
    /// sha256 of that file.
    pub sha256: String,
    /// Number of ids.
    pub vocab_size: u64,
    /// End-of-text id.
    pub eot_id: u32,
    /// Where it came from (`openai-community/gpt2@<commit>`, a path, or `trained on …`).
    pub origin: String,
}

/// One split in `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitMeta {
    /// Documents (each followed by one end-of-text).
    pub documents: u64,
    /// UTF-8 bytes of text tokenized.
    pub text_bytes: u64,
    /// Tokens, end-of-text ids included.
    pub tokens: u64,
    /// Shards in order.
    pub shards: Vec<ShardMeta>,
}

/// One shard in `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// File name in the folder.
    pub file: String,
    /// Tokens.
    pub tokens: u64,
    /// Documents.
    pub documents: u64,
    /// Text bytes.
    pub text_bytes: u64,
    /// sha256 of the file.
    pub sha256: String,
}

/// Written beside each finished shard (`train-00000.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ShardRecord {
    pub(crate) config_fingerprint: String,
    pub(crate) tokenizer_sha256: String,
    pub(crate) source_commit: Option<String>,
    pub(crate) split: Split,
    pub(crate) index: usize,
    pub(crate) shard: ShardMeta,
    /// Documents of this split in this and all earlier shards.
    pub(crate) docs_end: u64,
    /// This is the split's final shard.
    pub(crate) last: bool,
}

/// Written beside a trained tokenizer (`tokenizer.record.json`): which config and source it
/// came from, so that a resumed run can reuse it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TokenizerRecord {
    pub(crate) config_fingerprint: String,
    pub(crate) source_commit: Option<String>,
    pub(crate) sha256: String,
    pub(crate) origin: String,
}

/// The config fields that decide the tokens, hashed (the prepared folder's identity).
pub fn config_fingerprint(cfg: &DataConfig) -> String {
    #[derive(Serialize)]
    struct Fp<'a> {
        format_version: u32,
        dataset: &'a DatasetSource,
        tokenizer: TokenizerSpec,
        shard_tokens: u64,
        split_rule: SplitRule,
    }
    let fp = Fp {
        format_version: FORMAT_VERSION,
        dataset: &cfg.dataset,
        tokenizer: cfg.tokenizer_spec(),
        shard_tokens: cfg.shard_tokens,
        split_rule: split_rule(cfg),
    };
    // Serializing plain data cannot fail; an empty string would only make a mismatch.
    sha256_hex(serde_json::to_string(&fp).unwrap_or_default().as_bytes())
}

/// Reads one of the folder's JSON files (`what` names it in errors).
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
    what: &'static str,
) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "reading", e))?;
    serde_json::from_slice(&bytes).map_err(|source| DataError::Json {
        path: path.to_path_buf(),
        what,
        source,
    })
}

/// Writes one of the folder's JSON files atomically, pretty-printed with a final newline.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value).map_err(|source| DataError::Json {
        path: path.to_path_buf(),
        what: "JSON to write",
        source,
    })?;
    s.push('\n');
    Ok(write_atomic(path, s.as_bytes())?)
}

/// `train-00000.bin`: the file name of shard `index` of `split`.
pub(crate) fn shard_name(split: Split, index: usize) -> String {
    format!("{}-{index:05}.bin", split.as_str())
}

/// `train-00000.json`: the file name of the record of shard `index` of `split`.
pub(crate) fn record_name(split: Split, index: usize) -> String {
    format!("{}-{index:05}.json", split.as_str())
}
