//! The writing half of `prepare`: documents in, token shards and their records out.
//!
//! [`resume_splits`] keeps the finished shards of an interrupted run. [`tokenize_source`]
//! reads the source on a thread ([`send_batches`]), tokenizes batches of documents on the
//! rayon pool and appends them to one open shard per split ([`ShardSink`]); a shard is
//! closed (file, then its record) at the first document end at or past `shard_tokens`.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::time::Instant;

use ire_core::progress::{format_count, Progress};
use tracing::info;

use crate::config::{DataConfig, Split};
use crate::error::{DataError, Result};
use crate::format::{read_json, record_name, shard_name, write_json, ShardMeta, ShardRecord};
use crate::shard::{ShardWriter, TokenDtype, HEADER_BYTES};
use crate::source::ResolvedSource;
use crate::tokenizer::Tokenizer;

/// Text per tokenization batch handed to the rayon pool.
const BATCH_TEXT_BYTES: usize = 4 << 20;

/// Documents as the reader thread hands them over: `(split, text)` in source order.
type DocBatch = Vec<(Split, String)>;

/// Progress of one split: finished shards and the documents they hold.
#[derive(Debug, Default)]
pub(crate) struct SplitState {
    pub(crate) shards: Vec<ShardMeta>,
    pub(crate) docs_done: u64,
    pub(crate) finished: bool,
}

/// The state of every split of `source` after what an interrupted run left in `out`, and
/// how many finished shards that kept.
pub(crate) fn resume_splits(
    out: &Path,
    fingerprint: &str,
    tokenizer: &Tokenizer,
    source: &ResolvedSource,
) -> Result<(BTreeMap<Split, SplitState>, usize)> {
    let mut states = BTreeMap::new();
    for &split in &source.splits {
        states.insert(
            split,
            resume_split(out, split, fingerprint, tokenizer, source)?,
        );
    }
    let resumed: usize = states.values().map(|s| s.shards.len()).sum();
    if resumed > 0 {
        info!(
            shards = resumed,
            "resuming: keeping finished shards of an earlier run"
        );
    }
    Ok((states, resumed))
}

/// The finished shards of `split` that an interrupted run left in `out`, checked against
/// this run's config, tokenizer and source commit and against their files' sizes.
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

/// What every shard record of this run says besides the shard itself.
struct RecordInfo<'a> {
    out: &'a Path,
    fingerprint: &'a str,
    tokenizer: &'a Tokenizer,
    commit: Option<String>,
}

/// Finishes `open` as shard number `st.shards.len()` of `split` and writes its record.
fn close_shard(
    info: &RecordInfo,
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
        &info.out.join(record_name(split, index)),
        &ShardRecord {
            config_fingerprint: info.fingerprint.into(),
            tokenizer_sha256: info.tokenizer.sha256().into(),
            source_commit: info.commit.clone(),
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

/// The progress shown while tokenizing (a spinner on a terminal, else a line every 10 s).
fn progress() -> Progress {
    Progress::command("tokenizing", 0)
}

/// Reads the source on a thread, tokenizes batches on the rayon pool, writes shards.
/// Returns the number of shards written.
pub(crate) fn tokenize_source(
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
    let info = RecordInfo {
        out,
        fingerprint,
        tokenizer,
        commit: source.commit.clone(),
    };
    let mut sink = ShardSink::new(info, cfg.shard_tokens);
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = sync_channel::<DocBatch>(2);
        let wanted_r = &wanted;
        let reader = scope.spawn(move || send_batches(source, wanted_r, tx));
        let result = rx
            .iter()
            .try_for_each(|batch| sink.write_batch(&batch, states));
        drop(rx);
        let read = reader.join().unwrap_or_else(|_| {
            Err(DataError::Loader(
                "the source reader thread panicked".into(),
            ))
        });
        result?;
        read
    })?;
    sink.finish(&wanted, states)
}

/// The reader thread: sends the `wanted` splits' documents in batches of about
/// [`BATCH_TEXT_BYTES`] of text; stops early when the receiver is gone.
fn send_batches(source: &ResolvedSource, wanted: &[Split], tx: SyncSender<DocBatch>) -> Result<()> {
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    source.for_each_document(wanted, &mut |split, text| {
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
}

/// The writing side of [`tokenize_source`]: one open shard per split, totals, progress.
struct ShardSink<'a> {
    info: RecordInfo<'a>,
    shard_tokens: u64,
    vocab: u64,
    eot: u32,
    progress: Progress,
    started: Instant,
    /// Documents received per split, those in finished shards of an earlier run included.
    seen: BTreeMap<Split, u64>,
    open: BTreeMap<Split, OpenShard>,
    new_shards: usize,
    total_bytes: u64,
    total_tokens: u64,
}

impl<'a> ShardSink<'a> {
    fn new(info: RecordInfo<'a>, shard_tokens: u64) -> Self {
        ShardSink {
            shard_tokens,
            vocab: info.tokenizer.vocab_size() as u64,
            eot: info.tokenizer.eot_id(),
            info,
            progress: progress(),
            started: Instant::now(),
            seen: BTreeMap::new(),
            open: BTreeMap::new(),
            new_shards: 0,
            total_bytes: 0,
            total_tokens: 0,
        }
    }

    /// Tokenizes the documents of `batch` not yet written and appends them.
    fn write_batch(
        &mut self,
        batch: &[(Split, String)],
        states: &mut BTreeMap<Split, SplitState>,
    ) -> Result<()> {
        let todo = self.not_yet_written(batch, states);
        let texts: Vec<&str> = todo.iter().map(|(_, t)| *t).collect();
        let encoded = self.info.tokenizer.encode_batch(&texts)?;
        for ((split, text), ids) in todo.iter().zip(encoded) {
            let st = states.entry(*split).or_default();
            self.append(*split, text, &ids, st)?;
        }
        let (bytes, tokens) = (self.total_bytes, self.total_tokens);
        let rate = bytes as f64 / 1e6 / self.started.elapsed().as_secs_f64().max(1e-9);
        self.progress.update(bytes, || {
            let mb = bytes as f64 / 1e6;
            let tokens = format_count(tokens);
            format!("{mb:.1} MB of text → {tokens} tokens ({rate:.1} MB/s)")
        });
        Ok(())
    }

    /// The documents of `batch` that are not in finished shards of an earlier run (those
    /// are skipped: each split's first `docs_done` documents).
    fn not_yet_written<'b>(
        &mut self,
        batch: &'b [(Split, String)],
        states: &BTreeMap<Split, SplitState>,
    ) -> Vec<(Split, &'b str)> {
        let mut todo = Vec::with_capacity(batch.len());
        for (split, text) in batch {
            let n = self.seen.entry(*split).or_default();
            *n += 1;
            if *n > states.get(split).map_or(0, |s| s.docs_done) {
                todo.push((*split, text.as_str()));
            }
        }
        todo
    }

    /// Appends one tokenized document and an end-of-text to the open shard of `split`
    /// (opening one if there is none); closes the shard once it holds `shard_tokens`.
    fn append(&mut self, split: Split, text: &str, ids: &[u32], st: &mut SplitState) -> Result<()> {
        let shard = match self.open.entry(split) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert(OpenShard {
                writer: ShardWriter::create(
                    &self.info.out.join(shard_name(split, st.shards.len())),
                    self.vocab,
                    self.eot,
                )?,
                documents: 0,
                text_bytes: 0,
            }),
        };
        shard.writer.push(ids)?;
        shard.writer.push(&[self.eot])?;
        shard.documents += 1;
        shard.text_bytes += text.len() as u64;
        st.docs_done += 1;
        self.total_bytes += text.len() as u64;
        self.total_tokens += ids.len() as u64 + 1;
        if shard.writer.tokens() >= self.shard_tokens {
            if let Some(full) = self.open.remove(&split) {
                close_shard(&self.info, split, st, full, false)?;
                self.new_shards += 1;
            }
        }
        Ok(())
    }

    /// Closes the last shard of each split; a split whose last shard closed exactly at the
    /// end gets its record marked final. Returns the number of shards written.
    fn finish(
        mut self,
        wanted: &[Split],
        states: &mut BTreeMap<Split, SplitState>,
    ) -> Result<usize> {
        for &split in wanted {
            let st = states.entry(split).or_default();
            if let Some(last) = self.open.remove(&split) {
                close_shard(&self.info, split, st, last, true)?;
                self.new_shards += 1;
            } else if !st.shards.is_empty() {
                mark_last(self.info.out, split, st)?;
            }
        }
        self.progress.finish();
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        info!(
            text_mb = self.total_bytes as f64 / 1e6,
            tokens = self.total_tokens,
            mb_per_s = format!("{:.1}", self.total_bytes as f64 / 1e6 / secs),
            "tokenized"
        );
        Ok(self.new_shards)
    }
}

/// Marks the record of `split`'s last finished shard final: the split ended right at a
/// shard end.
fn mark_last(out: &Path, split: Split, st: &mut SplitState) -> Result<()> {
    let index = st.shards.len() - 1;
    let rec_path = out.join(record_name(split, index));
    let mut rec: ShardRecord = read_json(&rec_path, "shard record")?;
    rec.last = true;
    write_json(&rec_path, &rec)?;
    st.finished = true;
    Ok(())
}
