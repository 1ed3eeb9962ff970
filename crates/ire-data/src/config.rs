//! Serde config of the data pipeline: which text, which tokenizer, where the shards go.
//!
//! ```toml
//! [data]
//! dataset = "wikitext-103"          # or "wikitext-2", "minipile", "openwebtext", "embedded", "moby-dick"
//! # dataset = { local = "corpus/", text_field = "text" }
//! # dataset = { openwebtext = { repo = "dvruette/openwebtext", revision = "main" } }
//! tokenizer = "gpt2"                # or { file = "tok.json" } or { train = { vocab_size = 8192 } }
//! shard_tokens = 100_000_000
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{DataError, Result};

/// Default repo of the OpenWebText parquet files.
pub const OPENWEBTEXT_REPO: &str = "Skylion007/openwebtext";
/// Default revision of [`OPENWEBTEXT_REPO`]: the parquet conversion (the main branch holds a loading script).
pub const OPENWEBTEXT_REVISION: &str = "refs/pr/20";
/// nanoGPT's OpenWebText validation fraction.
pub const NANOGPT_VAL_FRACTION: f64 = 0.0005;
/// nanoGPT's OpenWebText split seed.
pub const NANOGPT_SPLIT_SEED: u64 = 2357;

/// Where the text comes from.
///
/// In TOML a plain string names a built-in source; a table selects a local path or
/// overrides the OpenWebText repo:
/// `"wikitext-103"`, `"wikitext-2"`, `"minipile"`, `"openwebtext"`, `"embedded"`, `"moby-dick"`,
/// `{ local = PATH, text_field = "text" }`, `{ openwebtext = { repo = …, revision = … } }`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum DatasetSource {
    /// `Salesforce/wikitext`, config `wikitext-103-raw-v1` (≈ 103M words; train/validation/test).
    Wikitext103,
    /// `Salesforce/wikitext`, config `wikitext-2-raw-v1` (≈ 2M words; train/validation/test).
    Wikitext2,
    /// `JeanKaddour/minipile` (≈ 1M documents; train/validation/test).
    Minipile,
    /// OpenWebText parquet files (train only; validation is held out by document index).
    OpenWebText {
        /// Hub dataset repo.
        repo: String,
        /// Branch, tag, `refs/pr/N` or commit.
        revision: String,
    },
    /// The vendored State of the Union addresses (233 documents, 10.8 MB), no network.
    #[default]
    Embedded,
    /// The vendored *Moby-Dick* (138 chapters, 1.2 MB), no network.
    MobyDick,
    /// Local files: `.txt` (one document per file), `.jsonl` (one document per line),
    /// `.parquet` (one document per row), or a folder of them.
    Local {
        /// File or folder.
        path: PathBuf,
        /// JSON field / parquet column holding the text.
        text_field: String,
    },
}

impl DatasetSource {
    /// Short name used in folder names and logs (`wikitext-103`, `local-corpus`, …).
    pub fn name(&self) -> String {
        match self {
            DatasetSource::Wikitext103 => "wikitext-103".into(),
            DatasetSource::Wikitext2 => "wikitext-2".into(),
            DatasetSource::Minipile => "minipile".into(),
            DatasetSource::OpenWebText { .. } => "openwebtext".into(),
            DatasetSource::Embedded => "embedded".into(),
            DatasetSource::MobyDick => "moby-dick".into(),
            DatasetSource::Local { path, .. } => {
                let stem = path
                    .file_stem()
                    .map(|s| sanitize(&s.to_string_lossy()))
                    .unwrap_or_default();
                if stem.is_empty() {
                    "local".into()
                } else {
                    format!("local-{stem}")
                }
            }
        }
    }

    /// Whether the text ships inside the crate (no network, tokenizer trained by default).
    pub fn is_embedded(&self) -> bool {
        matches!(self, DatasetSource::Embedded | DatasetSource::MobyDick)
    }

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "wikitext-103" => DatasetSource::Wikitext103,
            "wikitext-2" => DatasetSource::Wikitext2,
            "minipile" => DatasetSource::Minipile,
            "openwebtext" => DatasetSource::OpenWebText {
                repo: OPENWEBTEXT_REPO.into(),
                revision: OPENWEBTEXT_REVISION.into(),
            },
            "embedded" => DatasetSource::Embedded,
            "moby-dick" => DatasetSource::MobyDick,
            _ => return None,
        })
    }
}

const SOURCE_NAMES: &[&str] = &[
    "wikitext-103",
    "wikitext-2",
    "minipile",
    "openwebtext",
    "embedded",
    "moby-dick",
    "local",
];

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

impl Serialize for DatasetSource {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            DatasetSource::OpenWebText { repo, revision } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(
                    "openwebtext",
                    &OpenWebTextOptions {
                        repo: repo.clone(),
                        revision: revision.clone(),
                    },
                )?;
                m.end()
            }
            DatasetSource::Local { path, text_field } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("local", path)?;
                m.serialize_entry("text_field", text_field)?;
                m.end()
            }
            other => s.serialize_str(&other.name()),
        }
    }
}

/// The schema of the TOML forms above (serde is hand-written for this type, so the derive
/// cannot see them); `ire config` and docs/config.md show it.
impl schemars::JsonSchema for DatasetSource {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DatasetSource".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "enum": ["wikitext-103", "wikitext-2", "minipile", "openwebtext", "embedded", "moby-dick"] },
                { "title": "{ local = PATH, text_field = \"text\" }", "type": "object" },
                { "title": "{ openwebtext = { repo = …, revision = … } }", "type": "object" }
            ]
        })
    }
}

/// The table form `{ openwebtext = { repo = …, revision = … } }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenWebTextOptions {
    /// Hub dataset repo holding the parquet files.
    #[serde(default = "default_owt_repo")]
    repo: String,
    /// Revision of that repo.
    #[serde(default = "default_owt_revision")]
    revision: String,
}

fn default_owt_repo() -> String {
    OPENWEBTEXT_REPO.into()
}
fn default_owt_revision() -> String {
    OPENWEBTEXT_REVISION.into()
}
fn default_text_field() -> String {
    "text".into()
}

impl<'de> Deserialize<'de> for DatasetSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DatasetSource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a dataset name (\"wikitext-103\", \"wikitext-2\", \"minipile\", \"openwebtext\", \
                     \"embedded\", \"moby-dick\") or a table { local = PATH } / { openwebtext = { repo, revision } }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
                DatasetSource::from_name(v).ok_or_else(|| E::unknown_variant(v, SOURCE_NAMES))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut local: Option<PathBuf> = None;
                let mut text_field: Option<String> = None;
                let mut owt: Option<OpenWebTextOptions> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "local" => local = Some(map.next_value()?),
                        "text_field" => text_field = Some(map.next_value()?),
                        "openwebtext" => owt = Some(map.next_value()?),
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["local", "text_field", "openwebtext"],
                            ))
                        }
                    }
                }
                match (local, owt) {
                    (Some(path), None) => Ok(DatasetSource::Local {
                        path,
                        text_field: text_field.unwrap_or_else(default_text_field),
                    }),
                    (None, Some(o)) if text_field.is_none() => Ok(DatasetSource::OpenWebText {
                        repo: o.repo,
                        revision: o.revision,
                    }),
                    (None, Some(_)) => {
                        Err(de::Error::custom("`text_field` only goes with `local`"))
                    }
                    (Some(_), Some(_)) => Err(de::Error::custom(
                        "a dataset table has either `local` or `openwebtext`, not both",
                    )),
                    (None, None) => Err(de::Error::missing_field("local")),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Which tokenizer turns text into ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum TokenizerSpec {
    /// GPT-2's byte-level BPE (`openai-community/gpt2`, `tokenizer.json`): 50257 tokens,
    /// `<|endoftext|>` = 50256. The paper's setting (the model pads the vocab to 50304).
    Gpt2,
    /// A `tokenizer.json` (Hugging Face `tokenizers` format) on disk; it must have `<|endoftext|>`.
    File(PathBuf),
    /// Train a byte-level BPE on the train split while preparing, stored with the shards.
    Train(TrainTokenizer),
}

impl TokenizerSpec {
    /// Short name used in folder names (`gpt2`, `bpe8192`, `file-<stem>`).
    pub fn name(&self) -> String {
        match self {
            TokenizerSpec::Gpt2 => "gpt2".into(),
            TokenizerSpec::Train(t) => format!("bpe{}", t.vocab_size),
            TokenizerSpec::File(p) => format!(
                "file-{}",
                sanitize(
                    &p.file_stem()
                        .map(|s| s.to_string_lossy())
                        .unwrap_or_default()
                )
            ),
        }
    }
}

/// Settings of a tokenizer trained by `prepare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainTokenizer {
    /// Vocabulary size, `<|endoftext|>` and the 256 byte tokens included (≥ 258).
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    /// A pair must occur this often to be merged.
    #[serde(default = "default_min_frequency")]
    pub min_frequency: u64,
    /// Train on at most this many bytes of train-split text (the first documents).
    #[serde(default = "default_max_train_bytes")]
    pub max_train_bytes: u64,
}

impl Default for TrainTokenizer {
    fn default() -> Self {
        TrainTokenizer {
            vocab_size: default_vocab_size(),
            min_frequency: default_min_frequency(),
            max_train_bytes: default_max_train_bytes(),
        }
    }
}

fn default_vocab_size() -> usize {
    8192
}
fn default_min_frequency() -> u64 {
    2
}
fn default_max_train_bytes() -> u64 {
    100_000_000
}

/// How global sample indices map to windows (the samplers are in `loader`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// Uniform random start offsets over the whole split (nanoGPT).
    #[default]
    RandomWindows,
    /// A seeded permutation of non-overlapping windows per epoch.
    EpochPermutation,
}

/// Everything `prepare` and the loader need to know about the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The text source; default `"embedded"` (State of the Union addresses, no network).
    #[serde(default)]
    pub dataset: DatasetSource,
    /// The tokenizer; unset means `{ train = { vocab_size = 8192 } }` for the embedded corpora
    /// and `"gpt2"` for every other source.
    #[serde(default)]
    pub tokenizer: Option<TokenizerSpec>,
    /// Folder of the prepared shards; unset means `data/<dataset>-<tokenizer>`
    /// (e.g. `data/wikitext-103-gpt2`), relative to the working directory.
    #[serde(default)]
    pub prepared_dir: Option<PathBuf>,
    /// A shard is closed at the first document end at or after this many tokens.
    #[serde(default = "default_shard_tokens")]
    pub shard_tokens: u64,
    /// Fraction of documents held out for validation by sources without a validation split
    /// (OpenWebText, local files); unset means 0.0005 for OpenWebText (nanoGPT) and 0.01 for
    /// local files. Ignored by sources that have their own split.
    #[serde(default)]
    pub val_fraction: Option<f64>,
    /// Seed of that held-out split (nanoGPT used 2357).
    #[serde(default = "default_split_seed")]
    pub split_seed: u64,
    /// Documents of the embedded corpora with `index % embedded_val_every == embedded_val_every - 1`
    /// go to validation (default 10: 23 of the 233 addresses, like Wikitext-2's ≈ 10 %).
    #[serde(default = "default_embedded_val_every")]
    pub embedded_val_every: u64,
    /// How training windows are drawn: `"random-windows"` (nanoGPT's uniform offsets,
    /// default) or `"epoch-permutation"` (each non-overlapping window once per epoch).
    #[serde(default)]
    pub sampler: SamplerKind,
}

fn default_shard_tokens() -> u64 {
    100_000_000
}
fn default_split_seed() -> u64 {
    NANOGPT_SPLIT_SEED
}
fn default_embedded_val_every() -> u64 {
    10
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: DatasetSource::default(),
            tokenizer: None,
            prepared_dir: None,
            shard_tokens: default_shard_tokens(),
            val_fraction: None,
            split_seed: default_split_seed(),
            embedded_val_every: default_embedded_val_every(),
            sampler: SamplerKind::default(),
        }
    }
}

impl DataConfig {
    /// A config for `dataset` with every other field at its default.
    pub fn for_dataset(dataset: DatasetSource) -> Self {
        DataConfig {
            dataset,
            ..Default::default()
        }
    }

    /// The tokenizer after defaults (see [`DataConfig::tokenizer`]).
    pub fn tokenizer_spec(&self) -> TokenizerSpec {
        match &self.tokenizer {
            Some(t) => t.clone(),
            None if self.dataset.is_embedded() => TokenizerSpec::Train(TrainTokenizer::default()),
            None => TokenizerSpec::Gpt2,
        }
    }

    /// The validation fraction after defaults, for sources that hold out documents by index.
    pub fn val_fraction(&self) -> f64 {
        match (self.val_fraction, &self.dataset) {
            (Some(f), _) => f,
            (None, DatasetSource::OpenWebText { .. }) => NANOGPT_VAL_FRACTION,
            (None, _) => 0.01,
        }
    }

    /// `prepared_dir`, or `data/<dataset>-<tokenizer>` under `root`.
    pub fn prepared_dir_in(&self, root: &Path) -> PathBuf {
        match &self.prepared_dir {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => root.join(p),
            None => root.join("data").join(format!(
                "{}-{}",
                self.dataset.name(),
                self.tokenizer_spec().name()
            )),
        }
    }

    /// `prepared_dir`, or `data/<dataset>-<tokenizer>` relative to the working directory.
    pub fn prepared_dir(&self) -> PathBuf {
        self.prepared_dir_in(Path::new(""))
    }

    /// Checks ranges; `prepare` calls it first.
    pub fn validate(&self) -> Result<()> {
        if self.shard_tokens == 0 {
            return Err(DataError::config("shard_tokens", "must be at least 1"));
        }
        let f = self.val_fraction();
        if !(0.0..1.0).contains(&f) || f.is_nan() {
            return Err(DataError::config(
                "val_fraction",
                format!("must be in [0, 1), got {f}"),
            ));
        }
        if self.embedded_val_every < 2 {
            return Err(DataError::config(
                "embedded_val_every",
                format!("must be at least 2, got {}", self.embedded_val_every),
            ));
        }
        if let TokenizerSpec::Train(t) = self.tokenizer_spec() {
            if t.vocab_size < 258 {
                return Err(DataError::config(
                    "tokenizer.train.vocab_size",
                    format!(
                        "must be at least 258 (256 bytes + <|endoftext|> + one merge), got {}",
                        t.vocab_size
                    ),
                ));
            }
            if t.max_train_bytes == 0 {
                return Err(DataError::config(
                    "tokenizer.train.max_train_bytes",
                    "must be at least 1",
                ));
            }
        }
        if let DatasetSource::Local { text_field, .. } = &self.dataset {
            if text_field.is_empty() {
                return Err(DataError::config("dataset.text_field", "must not be empty"));
            }
        }
        Ok(())
    }
}

/// A split of a prepared dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training tokens.
    Train,
    /// Validation tokens (Wikitext/Minipile "validation", or held out by `prepare`).
    Val,
    /// Test tokens, where the source has them.
    Test,
}

impl Split {
    /// All splits in file order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// `"train"`, `"val"`, `"test"`: the shard file prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrap {
        data: DataConfig,
    }

    fn parse(s: &str) -> std::result::Result<DataConfig, toml::de::Error> {
        toml::from_str::<Wrap>(s).map(|w| w.data)
    }

    #[test]
    fn every_source_form_parses_from_toml() {
        let cases: Vec<(&str, DatasetSource)> = vec![
            ("\"wikitext-103\"", DatasetSource::Wikitext103),
            ("\"wikitext-2\"", DatasetSource::Wikitext2),
            ("\"minipile\"", DatasetSource::Minipile),
            (
                "\"openwebtext\"",
                DatasetSource::OpenWebText {
                    repo: "Skylion007/openwebtext".into(),
                    revision: "refs/pr/20".into(),
                },
            ),
            ("\"embedded\"", DatasetSource::Embedded),
            ("\"moby-dick\"", DatasetSource::MobyDick),
            (
                "{ local = \"corpus/a.jsonl\" }",
                DatasetSource::Local {
                    path: "corpus/a.jsonl".into(),
                    text_field: "text".into(),
                },
            ),
            (
                "{ text_field = \"content\", local = \"c\" }",
                DatasetSource::Local {
                    path: "c".into(),
                    text_field: "content".into(),
                },
            ),
            (
                "{ openwebtext = { repo = \"dvruette/openwebtext\" } }",
                DatasetSource::OpenWebText {
                    repo: "dvruette/openwebtext".into(),
                    revision: "refs/pr/20".into(),
                },
            ),
        ];
        for (toml_value, want) in cases {
            let cfg = parse(&format!("[data]\ndataset = {toml_value}\n")).unwrap();
            assert_eq!(cfg.dataset, want, "{toml_value}");
            // Round trip through JSON (meta.json) and TOML.
            let json = serde_json::to_string(&cfg).unwrap();
            assert_eq!(serde_json::from_str::<DataConfig>(&json).unwrap(), cfg);
            let back = toml::to_string(&cfg).unwrap();
            assert_eq!(toml::from_str::<DataConfig>(&back).unwrap(), cfg, "{back}");
        }
    }

    #[test]
    fn defaults_follow_the_dataset() {
        let cfg = parse("[data]\n").unwrap();
        assert_eq!(cfg.dataset, DatasetSource::Embedded);
        assert_eq!(
            cfg.tokenizer_spec(),
            TokenizerSpec::Train(TrainTokenizer {
                vocab_size: 8192,
                min_frequency: 2,
                max_train_bytes: 100_000_000
            })
        );
        assert_eq!(cfg.shard_tokens, 100_000_000);
        assert_eq!(cfg.prepared_dir(), PathBuf::from("data/embedded-bpe8192"));

        let owt = parse("[data]\ndataset = \"openwebtext\"\n").unwrap();
        assert_eq!(owt.tokenizer_spec(), TokenizerSpec::Gpt2);
        assert_eq!(owt.val_fraction(), 0.0005);
        assert_eq!(owt.split_seed, 2357);
        assert_eq!(owt.prepared_dir(), PathBuf::from("data/openwebtext-gpt2"));

        let local = parse("[data]\ndataset = { local = \"/x/my corpus.jsonl\" }\n").unwrap();
        assert_eq!(local.val_fraction(), 0.01);
        assert_eq!(
            local.prepared_dir(),
            PathBuf::from("data/local-my-corpus-gpt2")
        );
    }

    #[test]
    fn the_paper_configs_data_sections_parse() {
        let cfg = parse(
            "[data]\ndataset = \"wikitext-2\"\ntokenizer = \"gpt2\"\nsampler = \"epoch-permutation\"\n",
        )
        .unwrap();
        assert_eq!(cfg.dataset, DatasetSource::Wikitext2);
        assert_eq!(cfg.sampler, SamplerKind::EpochPermutation);
        assert_eq!(cfg.prepared_dir(), PathBuf::from("data/wikitext-2-gpt2"));
        let cfg = parse("[data]\ndataset = \"minipile\"\nprepared_dir = \"/fast/mp\"\n").unwrap();
        assert_eq!(cfg.sampler, SamplerKind::RandomWindows);
        assert_eq!(cfg.prepared_dir(), PathBuf::from("/fast/mp"));
    }

    #[test]
    fn tokenizer_forms_parse() {
        let t = |s: &str| {
            parse(&format!("[data]\ntokenizer = {s}\n"))
                .unwrap()
                .tokenizer_spec()
        };
        assert_eq!(t("\"gpt2\""), TokenizerSpec::Gpt2);
        assert_eq!(
            t("{ file = \"tok.json\" }"),
            TokenizerSpec::File("tok.json".into())
        );
        assert_eq!(
            t("{ train = { vocab_size = 4096 } }"),
            TokenizerSpec::Train(TrainTokenizer {
                vocab_size: 4096,
                ..Default::default()
            })
        );
        assert_eq!(t("{ train = { vocab_size = 4096 } }").name(), "bpe4096");
    }

    #[test]
    fn unknown_names_and_fields_are_rejected() {
        let e = parse("[data]\ndataset = \"wikitext-3\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("wikitext-3") && e.contains("wikitext-103"),
            "{e}"
        );
        let e = parse("[data]\ndataset = { local = \"x\", colum = \"t\" }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("colum"), "{e}");
        let e = parse("[data]\nshard_token = 5\n").unwrap_err().to_string();
        assert!(e.contains("shard_token"), "{e}");
        let e = parse("[data]\ndataset = { openwebtext = { repo = \"a/b\", rev = \"x\" } }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rev"), "{e}");
    }

    #[test]
    fn validate_rejects_out_of_range_values() {
        let mut cfg = DataConfig::default();
        cfg.validate().unwrap();
        cfg.shard_tokens = 0;
        assert!(
            matches!(cfg.validate(), Err(DataError::Config { field, .. }) if field == "shard_tokens")
        );
        let mut cfg = DataConfig {
            val_fraction: Some(1.0),
            ..Default::default()
        };
        assert!(
            matches!(cfg.validate(), Err(DataError::Config { field, .. }) if field == "val_fraction")
        );
        cfg.val_fraction = None;
        cfg.tokenizer = Some(TokenizerSpec::Train(TrainTokenizer {
            vocab_size: 100,
            ..Default::default()
        }));
        assert!(
            matches!(cfg.validate(), Err(DataError::Config { field, .. }) if field.contains("vocab_size"))
        );
    }
}
