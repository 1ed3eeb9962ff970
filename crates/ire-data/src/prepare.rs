//! `prepare`: tokenize a source once into a prepared dataset folder (the format is in
//! [`crate::format`]; [`crate::dataset`] reads it).
//!
//! A second run sees `meta.json` and returns at once. A run killed midway keeps every shard
//! that has its record; the next run re-reads the source, skips the documents those shards
//! hold (shards end at document boundaries) and writes the rest. Files are written to
//! `.tmp` and renamed. A folder prepared from another config is an error, never overwritten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use tracing::{info, warn};

use crate::config::{DataConfig, DatasetSource, Split, TokenizerSpec};
use crate::dataset::{Preparation, PreparedDataset};
use crate::error::{DataError, Result};
use crate::format::{
    config_fingerprint, read_json, record_name, shard_name, write_json, Meta, ShardMeta,
    ShardRecord, SplitMeta, TokenizerMeta, TokenizerRecord, META_FILE, TOKENIZER_FILE,
    TOKENIZER_RECORD,
};
use crate::hub::{Hub, HubOptions, HubRepo};
use crate::lock::PrepareLock;
use crate::shard::{ShardWriter, TokenDtype, FORMAT_VERSION, HEADER_BYTES};
use crate::source::{split_rule, ResolvedSource, SplitRule};
use crate::tokenizer::{sha256_hex, Tokenizer};

/// Text per tokenization batch handed to the rayon pool.
const BATCH_TEXT_BYTES: usize = 4 << 20;

fn describe_config(cfg: &DataConfig) -> String {
    format!(
        "dataset {}, tokenizer {}, shard_tokens {}, split {}",
        serde_json::to_string(&cfg.dataset).unwrap_or_default(),
        cfg.tokenizer_spec().name(),
        cfg.shard_tokens,
        serde_json::to_string(&split_rule(cfg)).unwrap_or_default()
    )
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
    let ds = PreparedDataset::open(out)?;
    Ok(Some(ds.with_preparation(Preparation::AlreadyPrepared)))
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
    let ds = PreparedDataset::open(out)?;
    Ok(ds.with_preparation(Preparation::Prepared {
        resumed_shards: resumed,
        new_shards,
    }))
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
