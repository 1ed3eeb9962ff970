//! ire-data turns text into token shards and shards into batches.
//!
//! # Pipeline
//!
//! ```text
//! DataConfig ──prepare()──► source (hub / embedded / local) ──► documents
//!                           tokenizer (GPT-2 / file / trained BPE)   │ rayon, parallel
//!                                                                    ▼
//!              prepared folder: tokenizer.json, train-00000.bin …, val-…, meta.json (last)
//!                                                                    │ PreparedDataset::open (mmap, checked)
//!                                                                    ▼
//!              Loader (random windows | epoch permutation, by global sample index)
//!                 └─ Prefetcher (background thread, rank/world/micro-batch/accum) ─► Batch
//! ```
//!
//! * [`DataConfig`] (serde, TOML) picks the [`DatasetSource`] — `"wikitext-103"`,
//!   `"wikitext-2"`, `"minipile"`, `"openwebtext"`, `"embedded"`, `"moby-dick"`,
//!   `{ local = PATH }` — and the [`TokenizerSpec`].
//! * [`prepare`](fn@prepare) tokenizes once into a folder of binary shards ([`shard`]
//!   format: 64-byte header, u16/u32 little-endian ids, documents separated by end-of-text)
//!   and writes `meta.json` last (the folder's files and records: [`format`](mod@format)).
//!   It is idempotent, resumes after a kill, and writes atomically.
//! * [`PreparedDataset::open`] ([`dataset`]) checks and memory-maps a prepared folder; the
//!   first open verifies every shard (sha256 from `meta.json`, ids below the vocab) and
//!   records it in `verified.json`, so later opens skip unchanged shards ([`verify`]).
//! * [`Loader::batch`] is a pure function of `(seed, global sample index)`; the
//!   [`Prefetcher`] slices the global stream for data parallelism and builds batches
//!   ahead; [`LoaderState`] (`next_sample`) is all a checkpoint keeps.
//! * [`PreparedDataset::val_windows`] gives a fixed evaluation set.
//!
//! # Sources
//!
//! Hub datasets come through [`hub`] and the standard Hugging Face cache (`HF_HOME`,
//! shared with Python; `HF_HUB_OFFLINE=1` reads only the cache; `HF_TOKEN` for gated repos):
//! Wikitext-103/-2 (`Salesforce/wikitext`, rows joined back into articles), Minipile
//! (`JeanKaddour/minipile`), OpenWebText (`Skylion007/openwebtext` at `refs/pr/20`, its
//! parquet conversion; validation held out by document index, fraction 0.0005, seed 2357
//! as in nanoGPT). Parquet is read row group by row group without arrow ([`parquet_text`]).
//!
//! The default source is `embedded`: the 233 State of the Union addresses (1790–2021,
//! public domain, 10.8 MB of text, ≈ Wikitext-2's size) compiled into the crate, so that
//! training works with no network at all; every 10th address is validation. Its default
//! tokenizer is a byte-level BPE of 8192 tokens trained on the train split during
//! `prepare` (deterministic: same text, byte-identical `tokenizer.json`). `moby-dick`
//! (1.2 MB) is a smaller embedded corpus for smoke tests. See [`embedded`].
//!
//! # Tokenizer
//!
//! GPT-2's byte-level BPE (50257 ids, `<|endoftext|>` = 50256; the model pads its vocab to
//! 50304) is the paper's setting and the default for every non-embedded source.
//! [`Tokenizer`] wraps `tokenizers` with `encode_batch`, `vocab_size`, `eot_id`, `save`,
//! `sha256`.
//!
//! # Modules and layering
//!
//! A module uses only modules above it in this list (no import cycles):
//!
//! ```text
//! error                      the crate's error type
//! config, shard, embedded,   leaves (error only): the serde config (SamplerKind included), the
//!   wikitext, parquet_text   shard file, the vendored corpora, the Wikitext article joiner,
//!                            the parquet text reader
//! tokenizer                  shard
//! hub/types                  the hub types shared by the files below
//! hub/fetch, hub/record      hub/types (record: shard)
//! hub/download               hub/types, hub/fetch
//! hub (hub/mod.rs)           hub/*: the Hub client
//! source                     config, embedded, hub, hub/record, parquet_text, wikitext
//! format                     config, shard, source, tokenizer: meta.json and the records
//! verify                     format, shard
//! dataset                    config, format, shard, tokenizer, verify: the reader
//! loader                     config, dataset
//! tokenize                   config, format, shard, source, tokenizer: the shard pipeline
//! prepare                    config, dataset, format, hub, shard, source, tokenize,
//!                            tokenizer: the writer (the folder lock is `ire_core::DirLock`)
//! ```

#![warn(missing_docs)]

pub mod config;
pub mod dataset;
pub mod embedded;
pub mod error;
pub mod format;
pub mod hub;
pub mod loader;
pub mod parquet_text;
pub mod prepare;
pub mod shard;
pub mod source;
mod tokenize;
pub mod tokenizer;
pub mod verify;
pub mod wikitext;

pub use config::{DataConfig, DatasetSource, SamplerKind, Split, TokenizerSpec, TrainTokenizer};
pub use dataset::{Preparation, PreparedDataset};
pub use error::{DataError, Result};
pub use format::Meta;
pub use hub::HubOptions;
pub use loader::{Batch, DataParallel, Loader, LoaderState, Prefetcher};
pub use prepare::{prepare, prepare_with};
pub use tokenizer::Tokenizer;
