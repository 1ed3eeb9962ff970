//! The tokenizer wrapper: load (GPT-2 or any `tokenizer.json`), train a byte-level BPE,
//! encode documents in parallel, save, fingerprint.
//!
//! Documents are encoded as plain text: `<|endoftext|>` written inside a document is *not*
//! turned into the end-of-text id (like tiktoken's `encode_ordinary` in nanoGPT); only
//! `prepare` puts end-of-text ids between documents.
//!
//! Fast path: for byte-level BPE tokenizers with the GPT-2 split regex and no normalizer
//! (GPT-2 and every tokenizer `prepare` trains), documents are split with the `regex` crate
//! instead of `tokenizers`' fancy-regex (the `\s+(?!\S)` look-ahead is applied by hand) and
//! each piece's ids are cached per thread. Output is identical to `tokenizers`' own
//! encoding (tested on the embedded corpora); other tokenizers use `tokenizers` directly.

use std::path::{Path, PathBuf};

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Model};

use crate::error::{DataError, Result};

/// The end-of-text token of GPT-2 and of every tokenizer `prepare` trains.
pub const EOT_TOKEN: &str = "<|endoftext|>";

/// GPT-2's split regex without the look-ahead branch `\s+(?!\S)` (applied by hand).
const GPT2_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";
/// Pieces cached per thread before the cache is cleared.
const PIECE_CACHE_MAX: usize = 1 << 18;

/// GPT-2's byte → printable char table (`bytes_to_unicode`).
fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable =
            (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('\0')
        };
    }
    table
}

/// The byte-level BPE fast path (see the module docs).
struct FastBpe {
    bpe: BPE,
    split: regex::Regex,
    byte_char: [char; 256],
    /// Distinguishes tokenizers in the per-thread piece cache.
    key: u64,
}

/// Ids of pieces already encoded, and which tokenizer (`FastBpe::key`) they belong to.
type PieceCache = (u64, HashMap<Box<str>, Vec<u32>>);

thread_local! {
    static PIECE_CACHE: RefCell<PieceCache> = RefCell::new((0, HashMap::new()));
}

impl FastBpe {
    /// The fast path, if `tk` is a plain byte-level BPE with the GPT-2 regex.
    fn for_tokenizer(tk: &tokenizers::Tokenizer, sha256: &str) -> Option<Self> {
        let ModelWrapper::BPE(bpe) = tk.get_model() else {
            return None;
        };
        let Some(PreTokenizerWrapper::ByteLevel(bl)) = tk.get_pre_tokenizer() else {
            return None;
        };
        let plain = tk.get_normalizer().is_none()
            && !bl.add_prefix_space
            && bl.use_regex
            && bpe.dropout.is_none_or(|d| d == 0.0)
            && tk.get_added_tokens_decoder().values().all(|t| t.special);
        if !plain {
            return None;
        }
        let split = regex::Regex::new(GPT2_SPLIT).ok()?;
        let key = u64::from_str_radix(sha256.get(..16)?, 16).ok()?;
        Some(FastBpe {
            bpe: bpe.clone(),
            split,
            byte_char: byte_chars(),
            key,
        })
    }

    /// GPT-2 pieces of `text` (what `tokenizers`' ByteLevel split gives).
    fn pieces<'t>(
        &self,
        text: &'t str,
        mut f: impl FnMut(&'t str) -> tokenizers::Result<()>,
    ) -> tokenizers::Result<()> {
        let mut pos = 0;
        while pos < text.len() {
            let Some(m) = self.split.find_at(text, pos) else {
                return f(&text[pos..]);
            };
            if m.start() > pos {
                f(&text[pos..m.start()])?;
            }
            let mut end = m.end();
            let piece = m.as_str();
            // `\s+(?!\S)`: a whitespace run followed by a non-space leaves its last char
            // to the next piece (" word"), unless the run is a single char.
            if end < text.len() && piece.chars().all(char::is_whitespace) {
                let mut chars = piece.chars();
                if let (Some(last), Some(_)) = (chars.next_back(), chars.next()) {
                    end -= last.len_utf8();
                }
            }
            f(&text[m.start()..end])?;
            pos = end;
        }
        Ok(())
    }

    fn encode(&self, text: &str) -> tokenizers::Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len() / 3);
        PIECE_CACHE.with(|cell| {
            let mut cache = cell.borrow_mut();
            if cache.0 != self.key {
                cache.1.clear();
                cache.0 = self.key;
            }
            let map = &mut cache.1;
            let mut mapped = String::new();
            self.pieces(text, |piece| {
                if let Some(hit) = map.get(piece) {
                    ids.extend_from_slice(hit);
                    return Ok(());
                }
                mapped.clear();
                mapped.extend(piece.bytes().map(|b| self.byte_char[b as usize]));
                let piece_ids: Vec<u32> =
                    self.bpe.tokenize(&mapped)?.iter().map(|t| t.id).collect();
                ids.extend_from_slice(&piece_ids);
                if map.len() >= PIECE_CACHE_MAX {
                    map.clear();
                }
                map.insert(piece.into(), piece_ids);
                Ok(())
            })
        })?;
        Ok(ids)
    }
}

/// A `tokenizers` tokenizer with its end-of-text id, vocab size and file fingerprint.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    fast: Option<Arc<FastBpe>>,
    json: Vec<u8>,
    sha256: String,
    vocab_size: usize,
    eot_id: u32,
    origin: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("origin", &self.origin)
            .field("vocab_size", &self.vocab_size)
            .field("eot_id", &self.eot_id)
            .field("sha256", &self.sha256)
            .finish()
    }
}

fn tok_err(path: &Path, message: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let json =
            std::fs::read(path).map_err(|e| DataError::io(path, "reading the tokenizer", e))?;
        Self::from_json(json, path)
    }

    /// Parses `tokenizer.json` bytes; `origin` names them in errors.
    pub fn from_json(json: Vec<u8>, origin: &Path) -> Result<Self> {
        let mut inner = tokenizers::Tokenizer::from_bytes(&json).map_err(|e| tok_err(origin, e))?;
        let eot_id = inner
            .token_to_id(EOT_TOKEN)
            .ok_or_else(|| tok_err(origin, format!("has no {EOT_TOKEN} token")))?;
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .max()
            .map(|&m| m as usize + 1)
            .unwrap_or(0);
        inner.set_encode_special_tokens(true);
        let sha256 = ire_core::fs::sha256_hex(&json);
        Ok(Tokenizer {
            fast: FastBpe::for_tokenizer(&inner, &sha256).map(Arc::new),
            inner,
            sha256,
            json,
            vocab_size,
            eot_id,
            origin: origin.to_path_buf(),
        })
    }

    /// Trains a byte-level BPE with `vocab_size` tokens (256 byte tokens, `<|endoftext|>`
    /// = id 0, merges) on `docs`. Same documents → byte-identical `tokenizer.json`.
    pub fn train_bpe(docs: &[String], vocab_size: usize, min_frequency: u64) -> Result<Self> {
        let origin = PathBuf::from(format!("<trained bpe{vocab_size}>"));
        let mut tk = tokenizers::Tokenizer::new(ModelWrapper::BPE(BPE::default()));
        tk.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tk.with_post_processor(Some(ByteLevel::new(true, false, true)));
        tk.with_decoder(Some(ByteLevel::new(true, true, true)));
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(min_frequency)
            .show_progress(false)
            .special_tokens(vec![AddedToken::from(EOT_TOKEN, true)])
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        tk.train(&mut trainer, docs.iter())
            .map_err(|e| tok_err(&origin, e))?;
        let json = tk.to_string(false).map_err(|e| tok_err(&origin, e))?;
        Self::from_json(json.into_bytes(), &origin)
    }

    /// Ids of one document (no special tokens added, `<|endoftext|>` in the text stays text).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.fast {
            Some(fast) => fast.encode(text).map_err(|e| tok_err(&self.origin, e)),
            None => self.encode_reference(text),
        }
    }

    /// [`Tokenizer::encode`] through `tokenizers` itself, never the fast path (for checks).
    pub fn encode_reference(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| tok_err(&self.origin, e))
    }

    /// Ids of many documents, encoded in parallel on the rayon pool.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        texts.par_iter().map(|t| self.encode(t)).collect()
    }

    /// Text of `ids` (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| tok_err(&self.origin, e))
    }

    /// Whether [`Tokenizer::encode`] uses the byte-level BPE fast path.
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// Number of ids (largest id + 1, added tokens included): 50257 for GPT-2.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Id of `<|endoftext|>` (50256 for GPT-2, 0 for trained tokenizers).
    pub fn eot_id(&self) -> u32 {
        self.eot_id
    }

    /// Hex sha256 of the `tokenizer.json` bytes (what [`Tokenizer::save`] writes).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The `tokenizer.json` bytes, exactly as loaded or trained.
    pub fn json_bytes(&self) -> &[u8] {
        &self.json
    }

    /// Where it was loaded from (or `<trained bpeN>`).
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The `tokenizers` tokenizer (special-token matching in text switched off).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Writes the `tokenizer.json` bytes atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(ire_core::fs::write_atomic(path, &self.json)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Vec<String> {
        (0..400)
            .map(|i| {
                format!(
                    "The quick brown fox {i} jumps over the lazy dog. Dogs and foxes, {} times!",
                    i * 7
                )
            })
            .collect()
    }

    #[test]
    fn training_is_deterministic_and_round_trips() {
        let a = Tokenizer::train_bpe(&docs(), 400, 2).unwrap();
        let b = Tokenizer::train_bpe(&docs(), 400, 2).unwrap();
        assert_eq!(a.json_bytes(), b.json_bytes());
        assert_eq!(a.sha256(), b.sha256());
        assert_eq!(a.eot_id(), 0);
        assert_eq!(a.vocab_size(), 400);
        let text = "The lazy fox jumps, 12 times. ü€";
        let ids = a.encode(text).unwrap();
        assert!(ids
            .iter()
            .all(|&i| (i as usize) < a.vocab_size() && i != a.eot_id()));
        assert_eq!(a.decode(&ids).unwrap(), text);
        // "The quick" was seen 400 times: fewer ids than bytes.
        assert!(a.encode("The quick brown fox").unwrap().len() < 8);
    }

    #[test]
    fn eot_in_text_stays_text_and_saving_keeps_bytes() {
        let t = Tokenizer::train_bpe(&docs(), 300, 2).unwrap();
        let ids = t.encode("a<|endoftext|>b").unwrap();
        assert!(!ids.contains(&t.eot_id()), "{ids:?}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok.json");
        t.save(&p).unwrap();
        let back = Tokenizer::from_file(&p).unwrap();
        assert_eq!(back.sha256(), t.sha256());
        assert_eq!(
            back.encode("The quick").unwrap(),
            t.encode("The quick").unwrap()
        );
        assert_eq!(
            t.encode_batch(&["The quick", "lazy dog"]).unwrap(),
            vec![
                t.encode("The quick").unwrap(),
                t.encode("lazy dog").unwrap()
            ]
        );
    }

    #[test]
    fn a_tokenizer_without_eot_is_refused() {
        let mut tk = tokenizers::Tokenizer::new(ModelWrapper::BPE(BPE::default()));
        tk.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        let json = tk.to_string(false).unwrap();
        let err =
            Tokenizer::from_json(json.into_bytes(), Path::new("x/tokenizer.json")).unwrap_err();
        assert!(
            err.to_string().contains("x/tokenizer.json") && err.to_string().contains(EOT_TOKEN),
            "{err}"
        );
    }
}
