//! `prepare`: tokenize a source once into a prepared dataset folder; `PreparedDataset`: open it.
//!
//! Folder layout:
//!
//! ```text
//! tokenizer.json        the tokenizer used (GPT-2's bytes as downloaded, or the trained one)
//! train-00000.bin       token shards (see `shard`), documents separated by end-of-text
//! train-00000.json      the shard's record: written right after the shard, lets a killed run resume
//! val-00000.bin / .json
//! test-00000.bin / .json (sources with a test split)
//! prepare.lock          while a `prepare` writes the folder: its pid (see `lock`)
//! meta.json             source, tokenizer sha256, shards' sha256 + counts; written LAST ("done")
//! verified.json         shards checked against meta.json, by file identity (see `verify`)
//! ```
//!
//! A second run sees `meta.json` and returns at once. A run killed midway keeps every shard
//! that has its record; the next run re-reads the source, skips the documents those shards
//! hold (shards end at document boundaries) and writes the rest. Files are written to
//! `.tmp` and renamed. A folder prepared from another config is an error, never overwritten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::{DataConfig, DatasetSource, Split, TokenizerSpec};
use crate::error::{DataError, Result};
use crate::hub::{Hub, HubOptions, HubRepo};
use crate::lock::PrepareLock;
use crate::shard::{
    file_sha256, write_atomic, Shard, ShardWriter, TokenDtype, FORMAT_VERSION, HEADER_BYTES,
};
use crate::source::{split_rule, ResolvedSource, SourceFile, SplitRule};
use crate::tokenizer::{sha256_hex, Tokenizer};
use crate::verify::{verify_shards, Verification};

/// The "done" marker and description of a prepared dataset.
pub const META_FILE: &str = "meta.json";
/// The tokenizer stored with the shards.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Records which config and source a trained tokenizer came from (resume).
const TOKENIZER_RECORD: &str = "tokenizer.record.json";
/// Text per tokenization batch handed to the rayon pool.
const BATCH_TEXT_BYTES: usize = 4 << 20;

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
struct ShardRecord {
    config_fingerprint: String,
    tokenizer_sha256: String,
    source_commit: Option<String>,
    split: Split,
    index: usize,
    shard: ShardMeta,
    /// Documents of this split in this and all earlier shards.
    docs_end: u64,
    /// This is the split's final shard.
    last: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TokenizerRecord {
    config_fingerprint: String,
    source_commit: Option<String>,
    sha256: String,
    origin: String,
}

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

fn describe_config(cfg: &DataConfig) -> String {
    format!(
        "dataset {}, tokenizer {}, shard_tokens {}, split {}",
        serde_json::to_string(&cfg.dataset).unwrap_or_default(),
        cfg.tokenizer_spec().name(),
        cfg.shard_tokens,
        serde_json::to_string(&split_rule(cfg)).unwrap_or_default()
    )
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path, what: &'static str) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "reading", e))?;
    serde_json::from_slice(&bytes).map_err(|source| DataError::Json {
        path: path.to_path_buf(),
        what,
        source,
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value).map_err(|source| DataError::Json {
        path: path.to_path_buf(),
        what: "JSON to write",
        source,
    })?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

fn shard_name(split: Split, index: usize) -> String {
    format!("{}-{index:05}.bin", split.as_str())
}

fn record_name(split: Split, index: usize) -> String {
    format!("{}-{index:05}.json", split.as_str())
}

/// Prepares `cfg`'s dataset into `out` with hub settings from the environment
/// (`HF_HOME`, `HF_HUB_OFFLINE`, `HF_TOKEN`, …). See [`prepare_with`].
pub fn prepare(cfg: &DataConfig, out: &Path) -> Result<PreparedDataset> {
    prepare_with(cfg, out, &HubOptions::from_env())
}

/// Opens `out` when it holds a finished dataset of this config (`meta.json` present);
/// `None` when there is none yet; an error when it was prepared from another config.
fn open_prepared(
    cfg: &DataConfig,
    out: &Path,
    fingerprint: &str,
) -> Result<Option<PreparedDataset>> {
    let meta_path = out.join(META_FILE);
    if !meta_path.exists() {
        return Ok(None);
    }
    let meta: Meta = read_json(&meta_path, "meta.json")?;
    if meta.config_fingerprint != fingerprint {
        return Err(DataError::PreparedMismatch {
            path: meta_path,
            field: "config".into(),
            expected: describe_config(cfg),
            found: format!(
                "dataset {}, tokenizer {}, shard_tokens {}, split {}",
                serde_json::to_string(&meta.source).unwrap_or_default(),
                meta.tokenizer.spec.name(),
                meta.shard_tokens,
                serde_json::to_string(&meta.split_rule).unwrap_or_default()
            ),
        });
    }
    info!(dir = %out.display(), "already prepared (meta.json present); nothing to do");
    let mut ds = PreparedDataset::open(out)?;
    ds.preparation = Preparation::AlreadyPrepared;
    Ok(Some(ds))
}

/// Prepares `cfg`'s dataset into `out`: resolve and fetch the source, get or train the
/// tokenizer, tokenize in parallel into shards, write `meta.json` last.
///
/// Returns at once (no network) when `out/meta.json` exists for the same config; resumes
/// after the last finished shard of an interrupted run.
pub fn prepare_with(
    cfg: &DataConfig,
    out: &Path,
    hub_opts: &HubOptions,
) -> Result<PreparedDataset> {
    cfg.validate()?;
    let fingerprint = config_fingerprint(cfg);
    if let Some(ds) = open_prepared(cfg, out, &fingerprint)? {
        return Ok(ds);
    }
    std::fs::create_dir_all(out)
        .map_err(|e| DataError::io(out, "creating the prepared folder", e))?;
    // Held until this function returns; a second `prepare` on `out` stops with Locked.
    let _lock = PrepareLock::acquire(out)?;
    // Another process may have finished the folder between the check above and the lock.
    if let Some(ds) = open_prepared(cfg, out, &fingerprint)? {
        return Ok(ds);
    }
    remove_tmp_files(out)?;

    let hub = Hub::new(hub_opts.clone())?;
    let source = ResolvedSource::resolve(cfg, &hub)?;
    info!(dataset = %source.name, from = %source.describe(), files = source.files.len(), "source resolved");
    let tokenizer = obtain_tokenizer(cfg, &source, &hub, out, &fingerprint)?;
    tokenizer.save(&out.join(TOKENIZER_FILE))?;
    info!(
        vocab = tokenizer.vocab_size(),
        eot = tokenizer.eot_id(),
        sha256 = tokenizer.sha256(),
        "tokenizer ready"
    );

    let mut states = BTreeMap::new();
    for &split in &source.splits {
        states.insert(
            split,
            resume_split(out, split, &fingerprint, &tokenizer, &source)?,
        );
    }
    let resumed: usize = states.values().map(|s| s.shards.len()).sum();
    if resumed > 0 {
        info!(
            shards = resumed,
            "resuming: keeping finished shards of an earlier run"
        );
    }
    let new_shards = tokenize_source(cfg, &source, &tokenizer, out, &fingerprint, &mut states)?;

    let mut splits = BTreeMap::new();
    for (split, st) in &states {
        let tokens: u64 = st.shards.iter().map(|s| s.tokens).sum();
        if tokens == 0 {
            return Err(empty_split(*split, &source, cfg));
        }
        splits.insert(
            *split,
            SplitMeta {
                documents: st.docs_done,
                text_bytes: st.shards.iter().map(|s| s.text_bytes).sum(),
                tokens,
                shards: st.shards.clone(),
            },
        );
    }
    let meta = Meta {
        format_version: FORMAT_VERSION,
        created_by: format!("ire-data {}", env!("CARGO_PKG_VERSION")),
        config_fingerprint: fingerprint,
        dataset: source.name.clone(),
        source: cfg.dataset.clone(),
        repo: source.repo.clone(),
        revision: source.revision.clone(),
        commit: source.commit.clone(),
        files: source.files.clone(),
        split_rule: source.rule.clone(),
        tokenizer: TokenizerMeta {
            spec: cfg.tokenizer_spec(),
            file: TOKENIZER_FILE.into(),
            sha256: tokenizer.sha256().into(),
            vocab_size: tokenizer.vocab_size() as u64,
            eot_id: tokenizer.eot_id(),
            origin: tokenizer.origin().display().to_string(),
        },
        dtype: TokenDtype::for_vocab(tokenizer.vocab_size() as u64),
        shard_tokens: cfg.shard_tokens,
        splits,
    };
    write_json(&out.join(META_FILE), &meta)?;
    for (split, m) in &meta.splits {
        info!(%split, documents = m.documents, tokens = m.tokens, shards = m.shards.len(), "prepared");
    }
    let mut ds = PreparedDataset::open(out)?;
    ds.preparation = Preparation::Prepared {
        resumed_shards: resumed,
        new_shards,
    };
    Ok(ds)
}

fn empty_split(split: Split, source: &ResolvedSource, cfg: &DataConfig) -> DataError {
    let hint = match (&source.rule, split) {
        (SplitRule::Hashed { fraction, .. }, Split::Val) => format!(
            "no document was held out for validation (val_fraction = {fraction}); raise val_fraction or add documents"
        ),
        (SplitRule::EveryNth { n }, Split::Val) => format!(
            "fewer than {n} documents, so none went to validation; lower embedded_val_every"
        ),
        _ => format!("the source has no non-empty {split} documents"),
    };
    let path = match &cfg.dataset {
        DatasetSource::Local { path, .. } => path.clone(),
        _ => PathBuf::from(source.describe()),
    };
    DataError::EmptySplit {
        split: split.to_string(),
        path,
        hint,
    }
}

fn remove_tmp_files(out: &Path) -> Result<()> {
    let entries = std::fs::read_dir(out).map_err(|e| DataError::io(out, "listing", e))?;
    for entry in entries.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "tmp") {
            warn!(file = %p.display(), "removing an unfinished file of an interrupted run");
            std::fs::remove_file(&p).map_err(|e| DataError::io(&p, "removing", e))?;
        }
    }
    Ok(())
}

fn obtain_tokenizer(
    cfg: &DataConfig,
    source: &ResolvedSource,
    hub: &Hub,
    out: &Path,
    fingerprint: &str,
) -> Result<Tokenizer> {
    match cfg.tokenizer_spec() {
        TokenizerSpec::Gpt2 => {
            let repo = HubRepo::model("openai-community/gpt2", "main");
            let listing = hub.list(&repo)?;
            let path = hub.get(&listing, "tokenizer.json")?;
            let json = std::fs::read(&path)
                .map_err(|e| DataError::io(&path, "reading the tokenizer", e))?;
            Tokenizer::from_json(
                json,
                Path::new(&format!("{}@{}/tokenizer.json", repo.id, listing.commit)),
            )
        }
        TokenizerSpec::File(path) => Tokenizer::from_file(&path),
        TokenizerSpec::Train(t) => {
            let tok_path = out.join(TOKENIZER_FILE);
            let rec_path = out.join(TOKENIZER_RECORD);
            if tok_path.exists() && rec_path.exists() {
                let rec: TokenizerRecord = read_json(&rec_path, "tokenizer record")?;
                if rec.config_fingerprint == fingerprint && rec.source_commit == source.commit {
                    let json = std::fs::read(&tok_path)
                        .map_err(|e| DataError::io(&tok_path, "reading", e))?;
                    if sha256_hex(&json) == rec.sha256 {
                        info!("reusing the tokenizer trained by an earlier run");
                        return Tokenizer::from_json(json, Path::new(&rec.origin));
                    }
                }
            }
            let started = Instant::now();
            let mut docs = Vec::new();
            let mut bytes = 0u64;
            source.for_each_document(&[Split::Train], &mut |_, text| {
                bytes += text.len() as u64;
                docs.push(text);
                Ok(bytes < t.max_train_bytes)
            })?;
            if docs.is_empty() {
                return Err(empty_split(Split::Train, source, cfg));
            }
            info!(
                documents = docs.len(),
                bytes,
                vocab = t.vocab_size,
                "training the tokenizer"
            );
            let trained = Tokenizer::train_bpe(&docs, t.vocab_size, t.min_frequency)?;
            let origin = format!(
                "byte-level BPE {} trained on the first {} train documents ({} bytes) of {}",
                t.vocab_size,
                docs.len(),
                bytes,
                source.describe()
            );
            let tok = Tokenizer::from_json(trained.json_bytes().to_vec(), Path::new(&origin))?;
            tok.save(&tok_path)?;
            write_json(
                &rec_path,
                &TokenizerRecord {
                    config_fingerprint: fingerprint.into(),
                    source_commit: source.commit.clone(),
                    sha256: tok.sha256().into(),
                    origin,
                },
            )?;
            info!(secs = started.elapsed().as_secs_f32(), "tokenizer trained");
            Ok(tok)
        }
    }
}

/// Progress of one split: finished shards and the documents they hold.
#[derive(Debug, Default)]
struct SplitState {
    shards: Vec<ShardMeta>,
    docs_done: u64,
    finished: bool,
}

fn resume_split(
    out: &Path,
    split: Split,
    fingerprint: &str,
    tokenizer: &Tokenizer,
    source: &ResolvedSource,
) -> Result<SplitState> {
    let mut st = SplitState::default();
    let width = TokenDtype::for_vocab(tokenizer.vocab_size() as u64).bytes() as u64;
    for index in 0.. {
        let rec_path = out.join(record_name(split, index));
        if !rec_path.exists() {
            break;
        }
        let rec: ShardRecord = read_json(&rec_path, "shard record")?;
        let mismatch = |field: &str, expected: String, found: String| DataError::PreparedMismatch {
            path: rec_path.clone(),
            field: field.into(),
            expected,
            found,
        };
        if rec.config_fingerprint != fingerprint {
            return Err(mismatch(
                "config",
                fingerprint.into(),
                rec.config_fingerprint,
            ));
        }
        if rec.tokenizer_sha256 != tokenizer.sha256() {
            return Err(mismatch(
                "tokenizer (sha256)",
                tokenizer.sha256().into(),
                rec.tokenizer_sha256,
            ));
        }
        if rec.source_commit != source.commit {
            return Err(mismatch(
                "source commit",
                format!("{:?}", source.commit),
                format!("{:?}", rec.source_commit),
            ));
        }
        let bin = out.join(&rec.shard.file);
        let len = std::fs::metadata(&bin)
            .map_err(|e| DataError::io(&bin, "opening a finished shard", e))?
            .len();
        let want = HEADER_BYTES as u64 + rec.shard.tokens * width;
        if len != want {
            return Err(DataError::CorruptShard {
                path: bin,
                expected: format!("{want} bytes as recorded in {}", rec_path.display()),
                found: format!("{len} bytes"),
            });
        }
        st.docs_done = rec.docs_end;
        st.shards.push(rec.shard);
        if rec.last {
            st.finished = true;
            break;
        }
    }
    Ok(st)
}

/// An open shard plus the counts that go into its record.
struct OpenShard {
    writer: ShardWriter,
    documents: u64,
    text_bytes: u64,
}

struct Ctx<'a> {
    out: &'a Path,
    fingerprint: &'a str,
    tokenizer: &'a Tokenizer,
    commit: Option<String>,
}

fn close_shard(
    ctx: &Ctx,
    split: Split,
    st: &mut SplitState,
    open: OpenShard,
    last: bool,
) -> Result<()> {
    let index = st.shards.len();
    let written = open.writer.finish()?;
    let shard = ShardMeta {
        file: shard_name(split, index),
        tokens: written.tokens,
        documents: open.documents,
        text_bytes: open.text_bytes,
        sha256: written.sha256,
    };
    write_json(
        &ctx.out.join(record_name(split, index)),
        &ShardRecord {
            config_fingerprint: ctx.fingerprint.into(),
            tokenizer_sha256: ctx.tokenizer.sha256().into(),
            source_commit: ctx.commit.clone(),
            split,
            index,
            shard: shard.clone(),
            docs_end: st.docs_done,
            last,
        },
    )?;
    info!(file = %shard.file, tokens = shard.tokens, documents = shard.documents, "shard written");
    st.shards.push(shard);
    st.finished = last;
    Ok(())
}

fn progress_bar() -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} tokenizing {binary_bytes} of text ({binary_bytes_per_sec}) {msg} [{elapsed}]",
    ) {
        pb.set_style(style);
    }
    pb
}

/// Reads the source on a thread, tokenizes batches on the rayon pool, writes shards.
/// Returns the number of shards written.
fn tokenize_source(
    cfg: &DataConfig,
    source: &ResolvedSource,
    tokenizer: &Tokenizer,
    out: &Path,
    fingerprint: &str,
    states: &mut BTreeMap<Split, SplitState>,
) -> Result<usize> {
    let wanted: Vec<Split> = states
        .iter()
        .filter(|(_, s)| !s.finished)
        .map(|(k, _)| *k)
        .collect();
    if wanted.is_empty() {
        return Ok(0);
    }
    let ctx = Ctx {
        out,
        fingerprint,
        tokenizer,
        commit: source.commit.clone(),
    };
    let vocab = tokenizer.vocab_size() as u64;
    let eot = tokenizer.eot_id();
    let pb = progress_bar();
    let started = Instant::now();
    let mut seen: BTreeMap<Split, u64> = BTreeMap::new();
    let mut open: BTreeMap<Split, OpenShard> = BTreeMap::new();
    let mut new_shards = 0usize;
    let mut total_bytes = 0u64;
    let mut total_tokens = 0u64;

    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = sync_channel::<Vec<(Split, String)>>(2);
        let wanted_r = wanted.clone();
        let reader = scope.spawn(move || -> Result<()> {
            let mut batch = Vec::new();
            let mut bytes = 0usize;
            source.for_each_document(&wanted_r, &mut |split, text| {
                bytes += text.len();
                batch.push((split, text));
                if bytes >= BATCH_TEXT_BYTES {
                    bytes = 0;
                    if tx.send(std::mem::take(&mut batch)).is_err() {
                        return Ok(false);
                    }
                }
                Ok(true)
            })?;
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
            Ok(())
        });

        let mut work = || -> Result<()> {
            for batch in rx.iter() {
                // Documents already in finished shards of an earlier run are skipped.
                let mut todo: Vec<(Split, &str)> = Vec::with_capacity(batch.len());
                for (split, text) in &batch {
                    let n = seen.entry(*split).or_default();
                    *n += 1;
                    if *n > states.get(split).map_or(0, |s| s.docs_done) {
                        todo.push((*split, text.as_str()));
                    }
                }
                let texts: Vec<&str> = todo.iter().map(|(_, t)| *t).collect();
                let encoded = tokenizer.encode_batch(&texts)?;
                for ((split, text), ids) in todo.iter().zip(encoded) {
                    let st = states.entry(*split).or_default();
                    let shard = match open.entry(*split) {
                        std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::btree_map::Entry::Vacant(v) => v.insert(OpenShard {
                            writer: ShardWriter::create(
                                &out.join(shard_name(*split, st.shards.len())),
                                vocab,
                                eot,
                            )?,
                            documents: 0,
                            text_bytes: 0,
                        }),
                    };
                    shard.writer.push(&ids)?;
                    shard.writer.push(&[eot])?;
                    shard.documents += 1;
                    shard.text_bytes += text.len() as u64;
                    st.docs_done += 1;
                    total_bytes += text.len() as u64;
                    total_tokens += ids.len() as u64 + 1;
                    pb.inc(text.len() as u64);
                    if shard.writer.tokens() >= cfg.shard_tokens {
                        if let Some(full) = open.remove(split) {
                            close_shard(&ctx, *split, st, full, false)?;
                            new_shards += 1;
                        }
                    }
                }
                pb.set_message(format!("→ {total_tokens} tokens"));
            }
            Ok(())
        };
        let result = work();
        drop(rx);
        let read = reader.join().unwrap_or_else(|_| {
            Err(DataError::Loader(
                "the source reader thread panicked".into(),
            ))
        });
        result?;
        read
    })?;

    // Close the last shard of each split; a split whose last shard closed exactly at the
    // end gets its record marked final.
    for split in wanted {
        let st = states.entry(split).or_default();
        if let Some(last) = open.remove(&split) {
            close_shard(&ctx, split, st, last, true)?;
            new_shards += 1;
        } else if !st.shards.is_empty() {
            let index = st.shards.len() - 1;
            let rec_path = out.join(record_name(split, index));
            let mut rec: ShardRecord = read_json(&rec_path, "shard record")?;
            rec.last = true;
            write_json(&rec_path, &rec)?;
            st.finished = true;
        }
    }
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    info!(
        text_mb = total_bytes as f64 / 1e6,
        tokens = total_tokens,
        mb_per_s = format!("{:.1}", total_bytes as f64 / 1e6 / secs),
        "tokenized"
    );
    Ok(new_shards)
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
        let tok_sha = file_sha256(&tok_path)?;
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

    /// `n` fixed validation windows of `ctx` (+1) tokens, spread evenly over the val split.
    pub fn val_windows(&self, n: usize, ctx: usize) -> Result<crate::loader::Batch> {
        crate::loader::Loader::new(
            self,
            Split::Val,
            ctx,
            crate::config::SamplerKind::EpochPermutation,
            0,
        )?
        .val_windows(n)
    }
}
