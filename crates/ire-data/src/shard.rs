//! The token shard format: a 64-byte header and little-endian token ids; writing and mapping.
//!
//! ```text
//! offset  size  field
//!      0     8  magic  b"IRETOKS\0"
//!      8     4  format version (u32, 1)
//!     12     4  bytes per token (u32: 2 = u16 ids, 4 = u32 ids)
//!     16     8  token count (u64)
//!     24     8  vocab size (u64)
//!     32     4  end-of-text id (u32)
//!     36    28  zero
//!     64     …  token ids, little-endian, `token count × bytes per token` bytes
//! ```
//!
//! Documents are separated by the end-of-text id (appended after every document). u16 is
//! used while the vocab fits (≤ 65536 ids). Writers fill a `.tmp` file and rename it when
//! complete, so a shard file that exists is whole; readers check magic, version, dtype,
//! vocab and that the file size equals header + payload.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ire_core::fs::file_sha256;
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// Magic bytes at offset 0.
pub const MAGIC: [u8; 8] = *b"IRETOKS\0";
/// Current format version.
pub const FORMAT_VERSION: u32 = 1;
/// Header size in bytes.
pub const HEADER_BYTES: usize = 64;

/// Width of the stored ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    /// 2-byte ids (vocab ≤ 65536).
    U16,
    /// 4-byte ids.
    U32,
}

impl TokenDtype {
    /// u16 when every id of a `vocab_size` vocab fits, else u32.
    pub fn for_vocab(vocab_size: u64) -> Self {
        if vocab_size <= 1 << 16 {
            TokenDtype::U16
        } else {
            TokenDtype::U32
        }
    }

    /// Bytes per id.
    pub fn bytes(self) -> usize {
        match self {
            TokenDtype::U16 => 2,
            TokenDtype::U32 => 4,
        }
    }
}

/// The decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHeader {
    /// Id width.
    pub dtype: TokenDtype,
    /// Number of ids in the payload.
    pub tokens: u64,
    /// Vocab size of the tokenizer that wrote it.
    pub vocab_size: u64,
    /// End-of-text id.
    pub eot_id: u32,
}

impl ShardHeader {
    /// The 64 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut h = [0u8; HEADER_BYTES];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(self.dtype.bytes() as u32).to_le_bytes());
        h[16..24].copy_from_slice(&self.tokens.to_le_bytes());
        h[24..32].copy_from_slice(&self.vocab_size.to_le_bytes());
        h[32..36].copy_from_slice(&self.eot_id.to_le_bytes());
        h
    }

    /// Parses and checks a header; `file_len` must match the payload it announces.
    pub fn parse(path: &Path, bytes: &[u8], file_len: u64) -> Result<Self> {
        let corrupt = |expected: String, found: String| DataError::CorruptShard {
            path: path.to_path_buf(),
            expected,
            found,
        };
        if bytes.len() < HEADER_BYTES {
            return Err(corrupt(
                format!("a {HEADER_BYTES}-byte header"),
                format!("a {}-byte file", bytes.len()),
            ));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(b)
        };
        if bytes[0..8] != MAGIC {
            return Err(corrupt(
                format!("magic {MAGIC:?}"),
                format!("{:?}", &bytes[0..8]),
            ));
        }
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(corrupt(
                format!("format version {FORMAT_VERSION}"),
                format!("version {version}"),
            ));
        }
        let dtype = match u32_at(12) {
            2 => TokenDtype::U16,
            4 => TokenDtype::U32,
            w => return Err(corrupt("2 or 4 bytes per token".into(), format!("{w}"))),
        };
        let header = ShardHeader {
            dtype,
            tokens: u64_at(16),
            vocab_size: u64_at(24),
            eot_id: u32_at(32),
        };
        let want = header
            .tokens
            .checked_mul(dtype.bytes() as u64)
            .and_then(|p| p.checked_add(HEADER_BYTES as u64));
        if want != Some(file_len) {
            return Err(corrupt(
                format!(
                    "{} bytes ({HEADER_BYTES}-byte header + {} tokens × {} bytes)",
                    want.map(|w| w.to_string())
                        .unwrap_or_else(|| "overflowing".into()),
                    header.tokens,
                    dtype.bytes()
                ),
                format!("{file_len} bytes (truncated or padded)"),
            ));
        }
        if header.vocab_size == 0 || u64::from(header.eot_id) >= header.vocab_size {
            return Err(corrupt(
                "an end-of-text id below the vocab size".into(),
                format!("eot {} with vocab {}", header.eot_id, header.vocab_size),
            ));
        }
        if dtype == TokenDtype::U16 && header.vocab_size > 1 << 16 {
            return Err(corrupt(
                "u32 ids for a vocab above 65536".into(),
                format!("u16 ids with vocab {}", header.vocab_size),
            ));
        }
        Ok(header)
    }
}

/// `<path>.tmp`: where a shard is streamed before it is renamed into place (a leftover one is
/// removed when an interrupted preparation resumes).
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}

/// What a finished shard holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenShard {
    /// Final path.
    pub path: PathBuf,
    /// Token count.
    pub tokens: u64,
    /// Hex sha256 of the whole file.
    pub sha256: String,
}

/// Streams ids into `<path>.tmp`; [`ShardWriter::finish`] writes the header and renames.
pub struct ShardWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    header: ShardHeader,
    buf: Vec<u8>,
}

impl ShardWriter {
    /// Starts a shard for a `vocab_size` vocab (u16 or u32 ids accordingly).
    pub fn create(path: &Path, vocab_size: u64, eot_id: u32) -> Result<Self> {
        let tmp = tmp_path(path);
        let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, "creating", e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let header = ShardHeader {
            dtype: TokenDtype::for_vocab(vocab_size),
            tokens: 0,
            vocab_size,
            eot_id,
        };
        out.write_all(&[0u8; HEADER_BYTES])
            .map_err(|e| DataError::io(&tmp, "writing", e))?;
        Ok(ShardWriter {
            path: path.to_path_buf(),
            tmp,
            out,
            header,
            buf: Vec::new(),
        })
    }

    /// Appends ids (each must be below the vocab size).
    pub fn push(&mut self, ids: &[u32]) -> Result<()> {
        self.buf.clear();
        let vocab = self.header.vocab_size;
        if let Some(&bad) = ids.iter().find(|&&i| u64::from(i) >= vocab) {
            return Err(DataError::TokenOutOfRange {
                path: self.path.clone(),
                id: bad,
                vocab_size: vocab,
            });
        }
        match self.header.dtype {
            TokenDtype::U16 => ids
                .iter()
                .for_each(|&i| self.buf.extend_from_slice(&(i as u16).to_le_bytes())),
            TokenDtype::U32 => ids
                .iter()
                .for_each(|&i| self.buf.extend_from_slice(&i.to_le_bytes())),
        }
        self.out
            .write_all(&self.buf)
            .map_err(|e| DataError::io(&self.tmp, "writing", e))?;
        self.header.tokens += ids.len() as u64;
        Ok(())
    }

    /// Tokens written so far.
    pub fn tokens(&self) -> u64 {
        self.header.tokens
    }

    /// Final path of the shard.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the header, syncs, renames into place, hashes.
    pub fn finish(self) -> Result<WrittenShard> {
        let tmp = self.tmp.clone();
        let io = |e| DataError::io(&tmp, "writing", e);
        let mut file = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&self.header.to_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        let (_, sha256) = file_sha256(&tmp)?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| DataError::io(&tmp, format!("renaming to {}", self.path.display()), e))?;
        Ok(WrittenShard {
            path: self.path,
            tokens: self.header.tokens,
            sha256,
        })
    }
}

/// What one pass over a shard's bytes found (see [`Shard::scan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardScan {
    /// Hex sha256 of the whole file, header included.
    pub sha256: String,
    /// The first id not below the vocab size: (position in the shard, id).
    pub out_of_range: Option<(u64, u32)>,
}

/// Index and value of the first id in `payload` (whole ids) that is not below `vocab`.
fn first_out_of_range(payload: &[u8], dtype: TokenDtype, vocab: u64) -> Option<(usize, u32)> {
    match dtype {
        TokenDtype::U16 => payload
            .chunks_exact(2)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
            .enumerate()
            .find(|&(_, id)| u64::from(id) >= vocab),
        TokenDtype::U32 => payload
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .enumerate()
            .find(|&(_, id)| u64::from(id) >= vocab),
    }
}

/// A memory-mapped, validated shard.
pub struct Shard {
    path: PathBuf,
    header: ShardHeader,
    map: Mmap,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("path", &self.path)
            .field("header", &self.header)
            .finish()
    }
}

impl Shard {
    /// Maps `path` and checks its header against its size.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| DataError::io(path, "opening the shard", e))?;
        let len = file
            .metadata()
            .map_err(|e| DataError::io(path, "reading metadata", e))?
            .len();
        if len < HEADER_BYTES as u64 {
            return Err(DataError::CorruptShard {
                path: path.to_path_buf(),
                expected: format!("at least a {HEADER_BYTES}-byte header"),
                found: format!("a {len}-byte file"),
            });
        }
        // SAFETY: the mapping is read-only; shards are written to a temp file and renamed
        // into place, never modified in place, so the mapped bytes do not change under us.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(path, "mapping", e))?;
        let header = ShardHeader::parse(path, &map[..HEADER_BYTES], len)?;
        Ok(Shard {
            path: path.to_path_buf(),
            header,
            map,
        })
    }

    /// The header.
    pub fn header(&self) -> &ShardHeader {
        &self.header
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Token count.
    pub fn len(&self) -> u64 {
        self.header.tokens
    }

    /// Whether the shard holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.header.tokens == 0
    }

    /// Copies ids `[start, start + out.len())` into `out`. Panics if out of range (callers
    /// check ranges once, when the loader is built).
    pub fn read_into(&self, start: u64, out: &mut [u32]) {
        let payload = &self.map[HEADER_BYTES..];
        match self.header.dtype {
            TokenDtype::U16 => {
                let s = start as usize * 2;
                let bytes = &payload[s..s + out.len() * 2];
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = u32::from(u16::from_le_bytes([c[0], c[1]]));
                }
            }
            TokenDtype::U32 => {
                let s = start as usize * 4;
                let bytes = &payload[s..s + out.len() * 4];
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
        }
    }

    /// Hashes the whole file and finds the first id not below `vocab_size`, in one pass
    /// over the mapped bytes.
    pub fn scan(&self, vocab_size: u64) -> ShardScan {
        let mut h = Sha256::new();
        h.update(&self.map[..HEADER_BYTES]);
        let width = self.header.dtype.bytes();
        // Whole ids per chunk, so no id straddles two chunks.
        let chunk = (1 << 20) / width * width;
        let mut out_of_range = None;
        for (c, bytes) in self.map[HEADER_BYTES..].chunks(chunk).enumerate() {
            h.update(bytes);
            if out_of_range.is_none() {
                out_of_range = first_out_of_range(bytes, self.header.dtype, vocab_size)
                    .map(|(i, id)| ((c * (chunk / width) + i) as u64, id));
            }
        }
        ShardScan {
            sha256: hex::encode(h.finalize()),
            out_of_range,
        }
    }

    /// All ids (tests, small shards).
    pub fn to_vec(&self) -> Vec<u32> {
        let mut v = vec![0u32; self.len() as usize];
        self.read_into(0, &mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u16_and_u32_shards_round_trip_with_exact_sizes() {
        let dir = tempfile::tempdir().unwrap();
        for (vocab, width) in [(50257u64, 2u64), (100_000, 4)] {
            let p = dir.path().join(format!("s{vocab}.bin"));
            let mut w = ShardWriter::create(&p, vocab, 7).unwrap();
            w.push(&[1, 2, 3]).unwrap();
            w.push(&[(vocab - 1) as u32, 7]).unwrap();
            assert!(!p.exists(), "only the .tmp exists before finish");
            let done = w.finish().unwrap();
            assert_eq!(done.tokens, 5);
            assert_eq!(std::fs::metadata(&p).unwrap().len(), 64 + 5 * width);
            assert_eq!(done.sha256, file_sha256(&p).unwrap().1);
            let s = Shard::open(&p).unwrap();
            assert_eq!(s.to_vec(), vec![1, 2, 3, (vocab - 1) as u32, 7]);
            assert_eq!(s.header().eot_id, 7);
            assert_eq!(s.header().vocab_size, vocab);
            let mut mid = [0u32; 2];
            s.read_into(2, &mut mid);
            assert_eq!(mid, [3, (vocab - 1) as u32]);
        }
    }

    #[test]
    fn scan_hashes_the_file_and_finds_the_first_id_outside_the_vocab() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.bin");
        // 600 000 u16 ids: more than one 1 MiB chunk, so positions cross a chunk end.
        let ids: Vec<u32> = (0..600_000u32).map(|i| i % 1000).collect();
        let mut w = ShardWriter::create(&p, 1000, 0).unwrap();
        w.push(&ids).unwrap();
        let done = w.finish().unwrap();
        let s = Shard::open(&p).unwrap();
        assert_eq!(
            s.scan(1000),
            ShardScan {
                sha256: done.sha256.clone(),
                out_of_range: None
            }
        );
        // Against a smaller vocab the first offender is id 999 at position 999.
        assert_eq!(s.scan(999).out_of_range, Some((999, 999)));
        // An id past the first chunk (524 288 ids of 2 bytes).
        let mut bytes = std::fs::read(&p).unwrap();
        let pos = 550_000usize;
        bytes[HEADER_BYTES + pos * 2..HEADER_BYTES + pos * 2 + 2].copy_from_slice(&[0xFF, 0xFF]);
        std::fs::write(&p, &bytes).unwrap();
        let scan = Shard::open(&p).unwrap().scan(1000);
        assert_eq!(scan.out_of_range, Some((550_000, 65535)));
        assert_ne!(scan.sha256, done.sha256);
    }

    #[test]
    fn ids_outside_the_vocab_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ShardWriter::create(&dir.path().join("x.bin"), 100, 0).unwrap();
        let e = w.push(&[5, 100]).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::TokenOutOfRange {
                    id: 100,
                    vocab_size: 100,
                    ..
                }
            ),
            "{e}"
        );
    }
}
