//! `{ local = PATH }` sources: text files, JSONL, parquet, folders; and their bad inputs.

mod common;

use std::path::Path;

use ire_data::source::is_held_out;
use ire_data::{
    prepare_with, DataConfig, DataError, DatasetSource, HubOptions, Split, TokenizerSpec,
};

fn cfg(path: &Path, text_field: &str, tok: &Path, val_fraction: f64) -> DataConfig {
    cfg_seed(path, text_field, tok, val_fraction, 1)
}

fn cfg_seed(
    path: &Path,
    text_field: &str,
    tok: &Path,
    val_fraction: f64,
    split_seed: u64,
) -> DataConfig {
    DataConfig {
        dataset: DatasetSource::Local {
            path: path.to_path_buf(),
            text_field: text_field.into(),
        },
        tokenizer: Some(TokenizerSpec::File(tok.to_path_buf())),
        val_fraction: Some(val_fraction),
        split_seed,
        ..Default::default()
    }
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let tok = root.path().join("gpt2.json");
    std::fs::write(&tok, common::gpt2_tokenizer_json()).unwrap();
    (root, tok)
}

fn run(root: &Path, c: &DataConfig) -> Result<ire_data::PreparedDataset, DataError> {
    prepare_with(c, &root.join("out"), &HubOptions::offline(root.join("hub")))
}

#[test]
fn a_folder_mixes_txt_jsonl_and_parquet_in_path_order() {
    let (root, tok) = setup();
    let corpus = root.path().join("corpus");
    std::fs::create_dir_all(corpus.join("b")).unwrap();
    std::fs::write(corpus.join("a.txt"), "First file, one document.\n").unwrap();
    std::fs::write(
        corpus.join("b/c.jsonl"),
        "{\"content\": \"json one\", \"id\": 1}\n\n{\"content\": \"json two\"}\n",
    )
    .unwrap();
    std::fs::write(
        corpus.join("b/d.parquet"),
        common::parquet_bytes(&["pq one", "pq two", "pq three"], "content", 2),
    )
    .unwrap();
    std::fs::write(corpus.join("notes.md"), "ignored: not .txt/.jsonl/.parquet").unwrap();
    // The first seed that sends 2 of the 6 documents to validation.
    let held = |seed: u64| -> Vec<usize> {
        (0..6)
            .filter(|&i| is_held_out(i as u64, 0.3, seed))
            .collect()
    };
    let seed = (0..1000u64).find(|&s| held(s).len() == 2).unwrap();
    let val = held(seed);
    let ds = run(root.path(), &cfg_seed(&corpus, "content", &tok, 0.3, seed)).unwrap();
    let docs = [
        "First file, one document.\n",
        "json one",
        "json two",
        "pq one",
        "pq two",
        "pq three",
    ];
    let files: Vec<String> = ds
        .meta()
        .files
        .iter()
        .map(|f| {
            Path::new(&f.name)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(files, vec!["a.txt", "c.jsonl", "d.parquet"]);
    let tokz = ds.tokenizer().unwrap();
    let text = |s: Split| {
        tokz.decode(
            &ds.split_tokens(s)
                .unwrap()
                .shards()
                .iter()
                .flat_map(|x| x.to_vec())
                .collect::<Vec<_>>(),
        )
        .unwrap()
    };
    let want = |in_val: bool| -> String {
        (0..6)
            .filter(|i| val.contains(i) == in_val)
            .map(|i| format!("{}<|endoftext|>", docs[i]))
            .collect()
    };
    assert_eq!(text(Split::Train), want(false));
    assert_eq!(text(Split::Val), want(true));
}

#[test]
fn a_parquet_without_the_text_column_names_the_columns_it_has() {
    let (root, tok) = setup();
    let p = root.path().join("d.parquet");
    std::fs::write(&p, common::parquet_bytes(&["a", "b"], "body", 10)).unwrap();
    let e = run(root.path(), &cfg(&p, "text", &tok, 0.5)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DataError::MissingColumn { .. }), "{msg}");
    assert!(
        msg.contains("d.parquet") && msg.contains("`text`") && msg.contains("found: body"),
        "{msg}"
    );
}

#[test]
fn an_unreadable_parquet_is_named() {
    let (root, tok) = setup();
    let p = root.path().join("broken.parquet");
    let mut bytes = common::parquet_bytes(&["a", "b"], "text", 10);
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&p, &bytes).unwrap();
    let e = run(root.path(), &cfg(&p, "text", &tok, 0.5)).unwrap_err();
    assert!(
        matches!(e, DataError::Parquet { .. }) && e.to_string().contains("broken.parquet"),
        "{e}"
    );
    std::fs::write(&p, b"not parquet at all").unwrap();
    let e = run(root.path(), &cfg(&p, "text", &tok, 0.5)).unwrap_err();
    assert!(
        matches!(e, DataError::Parquet { .. }) && e.to_string().contains("unreadable parquet"),
        "{e}"
    );
}

#[test]
fn empty_sources_and_empty_splits_are_errors() {
    let (root, tok) = setup();
    // An empty folder.
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = run(root.path(), &cfg(&empty, "text", &tok, 0.5)).unwrap_err();
    assert!(
        matches!(e, DataError::NoMatchingFiles { .. }) && e.to_string().contains("empty"),
        "{e}"
    );
    // Only whitespace documents: train is empty.
    let blank = root.path().join("blank.txt");
    std::fs::write(&blank, " \n\n").unwrap();
    let e = run(root.path(), &cfg(&blank, "text", &tok, 0.5)).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, DataError::EmptySplit { split, .. } if split == "train"),
        "{msg}"
    );
    assert!(msg.contains("blank.txt"), "{msg}");
    // Three documents and a tiny fraction: nothing held out for validation.
    let three = root.path().join("three.jsonl");
    std::fs::write(
        &three,
        "{\"text\":\"a\"}\n{\"text\":\"b\"}\n{\"text\":\"c\"}\n",
    )
    .unwrap();
    let e = run(root.path(), &cfg(&three, "text", &tok, 0.0001)).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, DataError::EmptySplit { split, .. } if split == "val"),
        "{msg}"
    );
    assert!(msg.contains("val_fraction = 0.0001"), "{msg}");
    // A missing path.
    let e = run(
        root.path(),
        &cfg(&root.path().join("nope"), "text", &tok, 0.5),
    )
    .unwrap_err();
    assert!(
        matches!(e, DataError::Io { .. }) && e.to_string().contains("nope"),
        "{e}"
    );
}

#[test]
fn a_tokenizer_file_without_eot_is_refused_by_prepare() {
    let (root, _) = setup();
    let bad = root.path().join("bad-tokenizer.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let txt = root.path().join("x.txt");
    std::fs::write(&txt, "hello").unwrap();
    let e = run(root.path(), &cfg(&txt, "text", &bad, 0.5)).unwrap_err();
    assert!(
        matches!(e, DataError::Tokenizer { .. }) && e.to_string().contains("bad-tokenizer.json"),
        "{e}"
    );
}

#[test]
fn one_shard_per_document_and_a_rerun_after_the_last_shard_only_writes_meta() {
    let (root, tok) = setup();
    let p = root.path().join("docs.jsonl");
    let lines: String = (0..8)
        .map(|i| format!("{{\"text\": \"document number {i}\"}}\n"))
        .collect();
    std::fs::write(&p, lines).unwrap();
    let held = |seed: u64| -> usize { (0..8).filter(|&i| is_held_out(i, 0.25, seed)).count() };
    let seed = (0..1000u64).find(|&s| held(s) == 2).unwrap();
    let mut c = cfg_seed(&p, "text", &tok, 0.25, seed);
    c.shard_tokens = 1; // every document closes its own shard
    let ds = run(root.path(), &c).unwrap();
    let m = ds.meta();
    assert_eq!(m.splits[&Split::Train].shards.len(), 6);
    assert_eq!(m.splits[&Split::Val].shards.len(), 2);
    // "document number 3" = 3 GPT-2 tokens, + end-of-text.
    assert!(m
        .splits
        .values()
        .flat_map(|s| &s.shards)
        .all(|s| s.tokens == 4 && s.documents == 1));
    let out = root.path().join("out");
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("train-00005.json")).unwrap()).unwrap();
    assert_eq!(rec["last"], true);
    assert_eq!(rec["docs_end"], 6);
    // Killed after the last shard, before meta.json: the rerun only writes meta.json.
    std::fs::remove_file(out.join("meta.json")).unwrap();
    let again = run(root.path(), &c).unwrap();
    assert_eq!(
        again.preparation(),
        ire_data::Preparation::Prepared {
            resumed_shards: 8,
            new_shards: 0
        }
    );
    assert_eq!(again.meta().splits, ds.meta().splits);
}
