//! `prepare`, the writer: tokenize a source once into a prepared dataset folder. It resolves
//! the source, gets or trains the tokenizer, runs the shard pipeline (`tokenize.rs`) and
//! writes `meta.json` last; the folder's format is [`crate::format`], its reader
//! [`crate::dataset`].
//!
//! A second run sees `meta.json` and returns at once. A run killed midway keeps every shard
//! that has its record; the next run re-reads the source, skips the documents those shards
//! hold (shards end at document boundaries) and writes the rest. Files are written to
//! `.tmp` and renamed. A folder prepared from another config is an error, never overwritten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tracing::{info, warn};

use crate::config::{DataConfig, DatasetSource, Split, TokenizerSpec, TrainTokenizer};
use crate::dataset::{Preparation, PreparedDataset};
use crate::error::{DataError, Result};
use crate::format::{
    config_fingerprint, read_json, write_json, Meta, SplitMeta, TokenizerMeta, TokenizerRecord,
    LOCK_FILE, META_FILE, TOKENIZER_FILE, TOKENIZER_RECORD,
};
use crate::hub::{Hub, HubOptions, HubRepo};
use crate::shard::{TokenDtype, FORMAT_VERSION};
use crate::source::{split_rule, ResolvedSource, SplitRule};
use crate::tokenize::{resume_splits, tokenize_source, SplitState};
use crate::tokenizer::Tokenizer;
use ire_core::fs::sha256_hex;
use ire_core::DirLock;

/// The token-deciding fields of `cfg`, for a mismatch message.
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
    let _lock = DirLock::acquire(out, LOCK_FILE)?;
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

    let (mut states, resumed) = resume_splits(out, &fingerprint, &tokenizer, &source)?;
    let new_shards = tokenize_source(cfg, &source, &tokenizer, out, &fingerprint, &mut states)?;
    let meta = build_meta(cfg, &source, &tokenizer, fingerprint, &states)?;
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

/// `meta.json` of the finished folder; an empty split is an error.
fn build_meta(
    cfg: &DataConfig,
    source: &ResolvedSource,
    tokenizer: &Tokenizer,
    fingerprint: String,
    states: &BTreeMap<Split, SplitState>,
) -> Result<Meta> {
    let mut splits = BTreeMap::new();
    for (split, st) in states {
        let tokens: u64 = st.shards.iter().map(|s| s.tokens).sum();
        if tokens == 0 {
            return Err(empty_split(*split, source, cfg));
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
    Ok(Meta {
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
    })
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
        TokenizerSpec::Train(t) => train_tokenizer(cfg, &t, source, out, fingerprint),
    }
}

/// The tokenizer an earlier run of this config trained on this source, if its record says
/// so and the file still has the recorded sha256.
fn reuse_trained(
    tok_path: &Path,
    rec_path: &Path,
    source: &ResolvedSource,
    fingerprint: &str,
) -> Result<Option<Tokenizer>> {
    if tok_path.exists() && rec_path.exists() {
        let rec: TokenizerRecord = read_json(rec_path, "tokenizer record")?;
        if rec.config_fingerprint == fingerprint && rec.source_commit == source.commit {
            let json =
                std::fs::read(tok_path).map_err(|e| DataError::io(tok_path, "reading", e))?;
            if sha256_hex(&json) == rec.sha256 {
                info!("reusing the tokenizer trained by an earlier run");
                return Tokenizer::from_json(json, Path::new(&rec.origin)).map(Some);
            }
        }
    }
    Ok(None)
}

/// Trains a byte-level BPE on the first train documents (up to `max_train_bytes`) and
/// stores it with its record; reuses the one an interrupted run trained.
fn train_tokenizer(
    cfg: &DataConfig,
    t: &TrainTokenizer,
    source: &ResolvedSource,
    out: &Path,
    fingerprint: &str,
) -> Result<Tokenizer> {
    let tok_path = out.join(TOKENIZER_FILE);
    let rec_path = out.join(TOKENIZER_RECORD);
    if let Some(tok) = reuse_trained(&tok_path, &rec_path, source, fingerprint)? {
        return Ok(tok);
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
