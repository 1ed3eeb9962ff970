//! The reader of a prepared folder: [`PreparedDataset::open`] checks `meta.json`, the
//! tokenizer and every shard header, verifies the shards (see [`crate::verify`]) and maps
//! them; [`SplitTokens`] is one split's token stream across its shards.
//!
//! `PreparedDataset::val_windows` is defined beside the loader it uses (`loader.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Split;
use crate::error::{DataError, Result};
use crate::format::{read_json, Meta, ShardMeta, META_FILE};
use crate::shard::{Shard, FORMAT_VERSION};
use crate::tokenizer::Tokenizer;
use crate::verify::{verify_shards, Verification};
use ire_core::fs::file_sha256;

/// What `prepare` / `open` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preparation {
    /// Opened with [`PreparedDataset::open`].
    Opened,
    /// `prepare` found `meta.json` for the same config and did nothing.
    AlreadyPrepared,
    /// `prepare` wrote shards; `resumed_shards` were kept from an interrupted run.
    Prepared {
        /// Shards kept from an earlier, interrupted run.
        resumed_shards: usize,
        /// Shards written by this run.
        new_shards: usize,
    },
}

/// The token stream of one split: its mapped shards, end to end.
#[derive(Debug)]
pub struct SplitTokens {
    shards: Vec<Shard>,
    starts: Vec<u64>,
    total: u64,
}

impl SplitTokens {
    /// Builds the stream from shards in order.
    pub fn new(shards: Vec<Shard>) -> Self {
        let mut starts = Vec::with_capacity(shards.len());
        let mut total = 0;
        for s in &shards {
            starts.push(total);
            total += s.len();
        }
        SplitTokens {
            shards,
            starts,
            total,
        }
    }

    /// Tokens in the split.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The shards.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Copies tokens `[start, start + out.len())` of the stream (across shard ends) into `out`.
    /// Panics when out of range; the loader checks ranges when it is built.
    pub fn read_into(&self, start: u64, out: &mut [u32]) {
        let mut pos = start;
        let mut filled = 0usize;
        let mut i = self.starts.partition_point(|&s| s <= pos).saturating_sub(1);
        while filled < out.len() {
            let shard = &self.shards[i];
            let off = pos - self.starts[i];
            let take = ((shard.len() - off) as usize).min(out.len() - filled);
            shard.read_into(off, &mut out[filled..filled + take]);
            filled += take;
            pos += take as u64;
            i += 1;
        }
    }
}

/// Maps one shard of a prepared folder and checks its header against `meta.json`.
fn open_shard(dir: &Path, meta: &Meta, s: &ShardMeta) -> Result<Shard> {
    let path = dir.join(&s.file);
    let shard = Shard::open(&path)?;
    let h = *shard.header();
    let vocab_err = |what, expected: u64, found: u64| DataError::VocabMismatch {
        path: path.clone(),
        what,
        expected_from: format!("{} (tokenizer {})", META_FILE, meta.tokenizer.file),
        expected,
        found,
    };
    if h.vocab_size != meta.tokenizer.vocab_size {
        return Err(vocab_err(
            "vocab size",
            meta.tokenizer.vocab_size,
            h.vocab_size,
        ));
    }
    if h.eot_id != meta.tokenizer.eot_id {
        return Err(vocab_err(
            "end-of-text id",
            u64::from(meta.tokenizer.eot_id),
            u64::from(h.eot_id),
        ));
    }
    if h.tokens != s.tokens || h.dtype != meta.dtype {
        return Err(DataError::CorruptShard {
            path,
            expected: format!("{} {:?} tokens as meta.json records", s.tokens, meta.dtype),
            found: format!("{} {:?} tokens", h.tokens, h.dtype),
        });
    }
    Ok(shard)
}

/// A prepared dataset folder, opened and checked; its splits are memory-mapped.
#[derive(Debug)]
pub struct PreparedDataset {
    dir: PathBuf,
    meta: Meta,
    splits: BTreeMap<Split, Arc<SplitTokens>>,
    preparation: Preparation,
    verification: Verification,
}

impl PreparedDataset {
    /// Opens `dir`: reads `meta.json`, checks the tokenizer's sha256 and every shard's
    /// header (magic, version, dtype, vocab size, end-of-text id, token count, file size)
    /// against it, and maps the shards. Shards not yet verified, or changed since, are
    /// hashed and range-checked (see [`crate::verify`]): a damaged one is
    /// [`DataError::DamagedShard`]; nothing is deleted.
    pub fn open(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(META_FILE);
        if !meta_path.exists() {
            return Err(DataError::NotPrepared {
                path: dir.to_path_buf(),
            });
        }
        let meta: Meta = read_json(&meta_path, "meta.json")?;
        if meta.format_version != FORMAT_VERSION {
            return Err(DataError::CorruptShard {
                path: meta_path,
                expected: format!("format version {FORMAT_VERSION}"),
                found: format!("format version {}", meta.format_version),
            });
        }
        let tok_path = dir.join(&meta.tokenizer.file);
        let (_, tok_sha) = file_sha256(&tok_path)?;
        if tok_sha != meta.tokenizer.sha256 {
            return Err(DataError::Checksum {
                path: tok_path,
                expected: meta.tokenizer.sha256.clone(),
                found: tok_sha,
            });
        }
        let mut opened = Vec::with_capacity(meta.splits.len());
        for (split, sm) in &meta.splits {
            let shards = sm
                .shards
                .iter()
                .map(|s| open_shard(dir, &meta, s))
                .collect::<Result<Vec<_>>>()?;
            opened.push((*split, shards));
        }
        let pairs: Vec<(&ShardMeta, &Shard)> = meta
            .splits
            .values()
            .zip(&opened)
            .flat_map(|(sm, (_, shards))| sm.shards.iter().zip(shards))
            .collect();
        let verification = verify_shards(dir, &pairs, meta.tokenizer.vocab_size, false)?;
        let splits = opened
            .into_iter()
            .map(|(split, shards)| (split, Arc::new(SplitTokens::new(shards))))
            .collect();
        Ok(PreparedDataset {
            dir: dir.to_path_buf(),
            meta,
            splits,
            preparation: Preparation::Opened,
            verification,
        })
    }

    /// The dataset as `prepare` reports it: opened, and what the run did.
    pub(crate) fn with_preparation(mut self, preparation: Preparation) -> Self {
        self.preparation = preparation;
        self
    }

    /// The parsed `meta.json`.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What `prepare` did (or [`Preparation::Opened`]).
    pub fn preparation(&self) -> Preparation {
        self.preparation
    }

    /// Tokenizer vocab size (50257 for GPT-2; the model may pad it, e.g. to 50304).
    pub fn vocab_size(&self) -> usize {
        self.meta.tokenizer.vocab_size as usize
    }

    /// End-of-text id.
    pub fn eot_id(&self) -> u32 {
        self.meta.tokenizer.eot_id
    }

    /// Path of the stored `tokenizer.json`.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(&self.meta.tokenizer.file)
    }

    /// Loads the stored tokenizer and checks its vocab size and end-of-text id against `meta.json`.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let path = self.tokenizer_path();
        let tok = Tokenizer::from_file(&path)?;
        let err = |what, expected: u64, found: u64| DataError::VocabMismatch {
            path: path.clone(),
            what,
            expected_from: META_FILE.into(),
            expected,
            found,
        };
        if tok.vocab_size() as u64 != self.meta.tokenizer.vocab_size {
            return Err(err(
                "vocab size",
                self.meta.tokenizer.vocab_size,
                tok.vocab_size() as u64,
            ));
        }
        if tok.eot_id() != self.meta.tokenizer.eot_id {
            return Err(err(
                "end-of-text id",
                u64::from(self.meta.tokenizer.eot_id),
                u64::from(tok.eot_id()),
            ));
        }
        Ok(tok)
    }

    /// Splits present, in order.
    pub fn splits(&self) -> Vec<Split> {
        self.splits.keys().copied().collect()
    }

    /// Tokens in `split` (0 if absent).
    pub fn num_tokens(&self, split: Split) -> u64 {
        self.splits.get(&split).map_or(0, |s| s.len())
    }

    /// The mapped token stream of `split`.
    pub fn split_tokens(&self, split: Split) -> Result<Arc<SplitTokens>> {
        self.splits
            .get(&split)
            .cloned()
            .ok_or_else(|| DataError::NoSuchSplit {
                path: self.dir.clone(),
                split: split.to_string(),
                available: self
                    .splits
                    .keys()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Shard files hashed and range-checked by this open (empty when the stamp in
    /// `verified.json` vouched for every shard), and how many were trusted.
    pub fn verification(&self) -> &Verification {
        &self.verification
    }

    /// Checks every shard again (sha256 against `meta.json`, ids below the vocab),
    /// ignoring the stamp, and records the result.
    pub fn verify(&self) -> Result<()> {
        let pairs: Vec<(&ShardMeta, &Shard)> = self
            .meta
            .splits
            .iter()
            .filter_map(|(split, sm)| Some((sm, self.splits.get(split)?)))
            .flat_map(|(sm, st)| sm.shards.iter().zip(st.shards()))
            .collect();
        verify_shards(&self.dir, &pairs, self.meta.tokenizer.vocab_size, true).map(|_| ())
    }
}
