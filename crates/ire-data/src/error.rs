//! The crate's one error type: every failure names the file (or repo) and what was expected.

use std::path::PathBuf;

/// Result with [`DataError`] as the error.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Everything that can go wrong between a config and a batch.
///
/// Variants carry the path (or hub repo) involved and, where it applies, what was
/// expected and what was found, so that the message alone tells what to fix.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file system call failed.
    #[error("{path}: {action}: {source}")]
    Io {
        /// File or folder involved.
        path: PathBuf,
        /// What was being done ("reading", "creating", "renaming to …").
        action: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A shard's header or size does not match the format.
    #[error("{path}: not a valid token shard: expected {expected}, found {found}")]
    CorruptShard {
        /// The shard file.
        path: PathBuf,
        /// What the format requires.
        expected: String,
        /// What the file holds.
        found: String,
    },

    /// A file's sha256 differs from the one recorded in `meta.json`.
    #[error(
        "{path}: checksum mismatch: meta.json records sha256 {expected}, the file has {found}"
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Recorded sha256.
        expected: String,
        /// Actual sha256.
        found: String,
    },

    /// Tokenizer, `meta.json` and shard headers disagree on the vocabulary.
    #[error("{path}: {what} mismatch: expected {expected} (from {expected_from}), found {found}")]
    VocabMismatch {
        /// The file whose value is wrong.
        path: PathBuf,
        /// "vocab size" or "end-of-text id".
        what: &'static str,
        /// Where the expected value comes from.
        expected_from: String,
        /// Expected value.
        expected: u64,
        /// Value found in `path`.
        found: u64,
    },

    /// A prepared shard's bytes differ from what `prepare` wrote (sha256 or id range).
    #[error(
        "{path}: damaged token shard: {problem}. Training on it would feed wrong tokens. \
         Nothing was deleted: remove the prepared folder {dir} and run `ire prepare` again"
    )]
    DamagedShard {
        /// The shard file.
        path: PathBuf,
        /// What is wrong (an id out of range, a sha256 mismatch).
        problem: String,
        /// The prepared folder.
        dir: PathBuf,
    },

    /// A token id in the stream is not below the vocabulary size.
    #[error("{path}: token id {id} is not below the vocab size {vocab_size}")]
    TokenOutOfRange {
        /// Shard being written.
        path: PathBuf,
        /// The offending id.
        id: u32,
        /// The vocabulary size.
        vocab_size: u64,
    },

    /// A split ended up with no documents or no tokens.
    #[error("split `{split}` of {path} is empty: {hint}")]
    EmptySplit {
        /// The split ("train", "val", "test").
        split: String,
        /// The source or prepared folder.
        path: PathBuf,
        /// What to change.
        hint: String,
    },

    /// A split holds too few tokens for the requested windows.
    #[error("{path}: split `{split}` has {tokens} tokens, too few for {needed}")]
    NotEnoughTokens {
        /// Prepared dataset folder.
        path: PathBuf,
        /// The split.
        split: String,
        /// Tokens in the split.
        tokens: u64,
        /// What was asked for, in words ("one window of 1025 tokens").
        needed: String,
    },

    /// The split does not exist in the prepared dataset.
    #[error("{path}: no split `{split}` (prepared splits: {available})")]
    NoSuchSplit {
        /// Prepared dataset folder.
        path: PathBuf,
        /// Requested split.
        split: String,
        /// Splits that exist.
        available: String,
    },

    /// A parquet file lacks the text column (or it is not a UTF-8 string column).
    #[error(
        "{path}: no usable text column `{column}`: expected {expected}; columns found: {found}"
    )]
    MissingColumn {
        /// The parquet file.
        path: PathBuf,
        /// Column that was looked for.
        column: String,
        /// What the column must be.
        expected: String,
        /// Columns the file has.
        found: String,
    },

    /// The parquet reader failed (not a parquet file, truncated, bad page …).
    #[error("{path}: unreadable parquet file: {source}")]
    Parquet {
        /// The parquet file.
        path: PathBuf,
        /// The parquet crate's error.
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// Text that is not valid UTF-8.
    #[error("{path}: {location} is not valid UTF-8: {source}")]
    Utf8 {
        /// The file.
        path: PathBuf,
        /// Row, line or byte range.
        location: String,
        /// Decoder error.
        #[source]
        source: std::str::Utf8Error,
    },

    /// A JSONL line is not an object with the text field.
    #[error("{path}: line {line}: expected a JSON object with a string field `{field}`: {found}")]
    Jsonl {
        /// The JSONL file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Text field name.
        field: String,
        /// What the line holds instead.
        found: String,
    },

    /// A JSON file (meta.json, shard record) does not parse.
    #[error("{path}: invalid {what}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the file should hold.
        what: &'static str,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },

    /// A hub repo is not in the cache while `HF_HUB_OFFLINE` is set.
    #[error(
        "HF_HUB_OFFLINE is set and {repo} (revision `{revision}`) is not in the Hugging Face cache \
         {cache}: {missing}. Download it first with `{command}` (same HF_HOME), or unset HF_HUB_OFFLINE"
    )]
    Offline {
        /// Repo id with its type, e.g. "dataset Salesforce/wikitext".
        repo: String,
        /// Branch, tag or commit.
        revision: String,
        /// The hub cache folder that was searched.
        cache: PathBuf,
        /// What is missing (ref, snapshot, file).
        missing: String,
        /// An `hf download …` command that fills the cache.
        command: String,
    },

    /// A hub request failed.
    #[error("{repo} (revision `{revision}`): {action} failed: {message}")]
    Hub {
        /// Repo id with its type.
        repo: String,
        /// Branch, tag or commit.
        revision: String,
        /// What was attempted.
        action: String,
        /// The client's error, with a hint where one helps.
        message: String,
    },

    /// Source files missing from the cache: gaps in numbered files (`…-00003-of-00012…`), or
    /// files a recorded listing names (`hub/record.rs`): a partial download.
    #[error(
        "{source_name}: {count} file(s) missing, e.g. {missing}: the cache holds only part \
         of the dataset (an interrupted download?). Fetch the rest with `{command}`"
    )]
    IncompleteSource {
        /// Repo, revision and commit.
        source_name: String,
        /// How many files are missing.
        count: usize,
        /// The first few missing names (patterns: the hash suffix is unknown).
        missing: String,
        /// An `hf download …` command that fetches them.
        command: String,
    },

    /// A cached or downloaded hub file's size differs from the hub's listing.
    #[error(
        "{path}: {file} has {found} bytes, the hub lists {expected}: the cached copy is \
         incomplete or damaged. Delete that file (and its blob) and run again, or fetch it with `{command}`"
    )]
    HubFileSize {
        /// The local file.
        path: PathBuf,
        /// Repo, commit and file name.
        file: String,
        /// Size in the listing.
        expected: u64,
        /// Size on disk.
        found: u64,
        /// An `hf download …` command for it.
        command: String,
    },

    /// No file in a source matches the expected pattern.
    #[error("{source_name}: no file matches `{pattern}` ({count} files listed{sample})")]
    NoMatchingFiles {
        /// Repo or folder.
        source_name: String,
        /// The glob that was matched.
        pattern: String,
        /// How many files were listed.
        count: usize,
        /// A few of the listed names.
        sample: String,
    },

    /// A tokenizer file cannot be loaded, trained or used.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The tokenizer file (or `<trained>`).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A config value is out of range.
    #[error("data config: `{field}`: {message}")]
    Config {
        /// Field name.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },

    /// The output folder already holds (part of) a dataset prepared from another config.
    #[error(
        "{path} holds a dataset prepared with a different {field}: found {found}, this config gives \
         {expected}; choose another prepared_dir or remove that folder yourself"
    )]
    PreparedMismatch {
        /// The file that records the other config.
        path: PathBuf,
        /// What differs.
        field: String,
        /// Value from this config.
        expected: String,
        /// Value on disk.
        found: String,
    },

    /// Another live `prepare` (or one on another host) holds the folder's lock file.
    #[error(
        "{dir}: another `ire prepare` ({holder}) is writing this folder (lock file prepare.lock); \
         wait for it to finish, or, if process {} is not a prepare of this folder, delete {dir}/prepare.lock",
        holder.pid
    )]
    Locked {
        /// The prepared folder.
        dir: PathBuf,
        /// Who holds the lock: pid (0 if unreadable), host, start time.
        holder: ire_core::Holder,
    },

    /// A prepared dataset folder lacks `meta.json` (never prepared, or interrupted).
    #[error("{path}: no meta.json: the dataset is not prepared (or preparing it did not finish); run `ire prepare`")]
    NotPrepared {
        /// The folder.
        path: PathBuf,
    },

    /// Invalid data-parallel layout or batch request.
    #[error("loader: {0}")]
    Loader(String),
}

impl DataError {
    /// Shorthand for [`DataError::Io`].
    pub fn io(path: impl Into<PathBuf>, action: impl Into<String>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            action: action.into(),
            source,
        }
    }

    /// Shorthand for [`DataError::Config`].
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        DataError::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<ire_core::LockError> for DataError {
    /// The prepared folder's lock (`prepare.lock`): held is [`DataError::Locked`].
    fn from(e: ire_core::LockError) -> Self {
        match e {
            ire_core::LockError::Held { dir, holder, .. } => DataError::Locked { dir, holder },
            ire_core::LockError::Io(e) => e.into(),
        }
    }
}

impl From<ire_core::IoError> for DataError {
    fn from(e: ire_core::IoError) -> Self {
        DataError::Io {
            path: e.path,
            action: e.action,
            source: e.source,
        }
    }
}
