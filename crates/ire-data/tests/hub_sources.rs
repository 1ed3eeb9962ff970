//! Hub sources against a Hugging Face cache laid out like huggingface_hub's (refs/,
//! snapshots/ symlinked to blobs/), built in a temp dir; offline, never the network.

mod common;

use std::path::Path;

use ire_data::hub::{list_cached, HubRepo};
use ire_data::source::is_held_out;
use ire_data::{
    prepare_with, DataConfig, DataError, DatasetSource, HubOptions, Split, TokenizerSpec,
};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const GPT2_COMMIT: &str = "607a30d783dfa663caf39e06633721c8d4cfcd7e";

fn gpt2_in_cache(cache: &Path) {
    common::fake_hub_repo(
        cache,
        &HubRepo::model("openai-community/gpt2", "main"),
        GPT2_COMMIT,
        &[("tokenizer.json", common::gpt2_tokenizer_json())],
    );
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(|s| s.as_str()).collect()
}

fn pq(rows: &[&str]) -> Vec<u8> {
    common::parquet_bytes(rows, "text", 3)
}

#[test]
fn wikitext_103_rows_are_joined_into_articles_with_gpt2_from_the_cache() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("hub");
    let train0 = [
        "",
        " = Alpha = \n",
        "",
        " Alpha is first . \n",
        " = = History = = \n",
        " It began in 1990 . \n",
        "",
        " = Beta = \n",
        "",
    ];
    let train1 = [" Beta continues in the next shard . \n", ""];
    let val = ["", " = Gamma = \n", " Gamma . \n"];
    let test = [" = Delta = \n", " Delta . \n"];
    common::fake_hub_repo(
        &cache,
        &HubRepo::dataset("Salesforce/wikitext", "main"),
        COMMIT,
        &[
            ("README.md", b"# wikitext".to_vec()),
            (
                "wikitext-103-raw-v1/train-00000-of-00002.parquet",
                pq(&train0),
            ),
            (
                "wikitext-103-raw-v1/train-00001-of-00002.parquet",
                pq(&train1),
            ),
            (
                "wikitext-103-raw-v1/validation-00000-of-00001.parquet",
                pq(&val),
            ),
            ("wikitext-103-raw-v1/test-00000-of-00001.parquet", pq(&test)),
            (
                "wikitext-2-raw-v1/train-00000-of-00001.parquet",
                pq(&[" = Wrong = \n"]),
            ),
            (
                "wikitext-2-raw-v1/validation-00000-of-00001.parquet",
                pq(&[" = Wrong = \n"]),
            ),
            (
                "wikitext-2-raw-v1/test-00000-of-00001.parquet",
                pq(&[" = Wrong = \n"]),
            ),
        ],
    );
    gpt2_in_cache(&cache);
    let cfg = DataConfig::for_dataset(DatasetSource::Wikitext103);
    assert_eq!(cfg.tokenizer_spec(), TokenizerSpec::Gpt2);
    let ds = prepare_with(&cfg, &root.path().join("out"), &HubOptions::offline(&cache)).unwrap();
    let m = ds.meta();
    assert_eq!(m.repo.as_deref(), Some("Salesforce/wikitext"));
    assert_eq!(m.commit.as_deref(), Some(COMMIT));
    assert_eq!(
        m.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        vec![
            "wikitext-103-raw-v1/train-00000-of-00002.parquet",
            "wikitext-103-raw-v1/train-00001-of-00002.parquet",
            "wikitext-103-raw-v1/validation-00000-of-00001.parquet",
            "wikitext-103-raw-v1/test-00000-of-00001.parquet",
        ]
    );
    assert_eq!((ds.vocab_size(), ds.eot_id()), (50257, 50256));
    assert_eq!(
        m.tokenizer.origin,
        format!("openai-community/gpt2@{GPT2_COMMIT}/tokenizer.json")
    );
    assert_eq!(ds.splits(), vec![Split::Train, Split::Val, Split::Test]);
    assert_eq!(
        [Split::Train, Split::Val, Split::Test].map(|s| m.splits[&s].documents),
        [2, 1, 1]
    );
    let tok = ds.tokenizer().unwrap();
    let ids = |s: Split| -> Vec<u32> {
        ds.split_tokens(s)
            .unwrap()
            .shards()
            .iter()
            .flat_map(|x| x.to_vec())
            .collect()
    };
    assert_eq!(
        tok.decode(&ids(Split::Train)).unwrap(),
        concat!(
            " = Alpha = \n\n Alpha is first . \n = = History = = \n It began in 1990 . \n\n<|endoftext|>",
            " = Beta = \n\n Beta continues in the next shard . \n\n<|endoftext|>"
        )
    );
    let mut want_val = tok.encode(" = Gamma = \n Gamma . \n").unwrap();
    want_val.push(50256);
    assert_eq!(ids(Split::Val), want_val);
    assert_eq!(ds.meta().dtype, ire_data::shard::TokenDtype::U16);
}

#[test]
fn offline_with_nothing_cached_says_what_to_download() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let e = prepare_with(
        &DataConfig::for_dataset(DatasetSource::Wikitext103),
        &out,
        &HubOptions::offline(root.path().join("empty")),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DataError::Offline { .. }), "{msg}");
    assert!(
        msg.contains("HF_HUB_OFFLINE")
            && msg.contains("hf download Salesforce/wikitext --repo-type dataset"),
        "{msg}"
    );
    assert!(!out.join("meta.json").exists());

    // Dataset cached, GPT-2 tokenizer not: the error names the model repo and the file.
    let cache = root.path().join("hub");
    common::fake_hub_repo(
        &cache,
        &HubRepo::dataset("JeanKaddour/minipile", "main"),
        COMMIT,
        &[
            ("data/train-00000-of-00001-aaaa.parquet", pq(&["x"])),
            ("data/validation-00000-of-00001-bbbb.parquet", pq(&["y"])),
            ("data/test-00000-of-00001-cccc.parquet", pq(&["z"])),
        ],
    );
    let e = prepare_with(
        &DataConfig::for_dataset(DatasetSource::Minipile),
        &out,
        &HubOptions::offline(&cache),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("model openai-community/gpt2")
            && msg.contains("hf download openai-community/gpt2"),
        "{msg}"
    );
}

#[test]
fn minipile_shards_are_found_by_pattern_not_by_name() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("hub");
    let train_a: Vec<String> = (0..5).map(|i| format!("train doc {i}")).collect();
    let train_b: Vec<String> = (5..9).map(|i| format!("train doc {i}")).collect();
    common::fake_hub_repo(
        &cache,
        &HubRepo::dataset("JeanKaddour/minipile", "main"),
        COMMIT,
        &[
            (".gitattributes", b"*.parquet lfs".to_vec()),
            (
                "data/train-00001-of-00002-7d2c51e1b2d1f0e7.parquet",
                pq(&strs(&train_b)),
            ),
            (
                "data/train-00000-of-00002-35b47b2a3b9c8c1e.parquet",
                pq(&strs(&train_a)),
            ),
            (
                "data/validation-00000-of-00001-a2192e61a091cecb.parquet",
                pq(&["val one", "", "val two"]),
            ),
            (
                "data/test-00000-of-00001-010a6231c4b54d31.parquet",
                pq(&["test one"]),
            ),
        ],
    );
    gpt2_in_cache(&cache);
    let listing = list_cached(&cache, &HubRepo::dataset("JeanKaddour/minipile", "main")).unwrap();
    assert_eq!(listing.commit, COMMIT);
    assert_eq!(listing.files.len(), 5);
    assert_eq!(listing.files[0], ".gitattributes");
    let ds = prepare_with(
        &DataConfig::for_dataset(DatasetSource::Minipile),
        &root.path().join("out"),
        &HubOptions::offline(&cache),
    )
    .unwrap();
    let m = ds.meta();
    assert_eq!(
        m.files[0].name,
        "data/train-00000-of-00002-35b47b2a3b9c8c1e.parquet"
    );
    assert_eq!(
        m.files[1].name,
        "data/train-00001-of-00002-7d2c51e1b2d1f0e7.parquet"
    );
    // The empty validation row is dropped.
    assert_eq!(
        [Split::Train, Split::Val, Split::Test].map(|s| m.splits[&s].documents),
        [9, 2, 1]
    );
    let tok = ds.tokenizer().unwrap();
    let train: Vec<u32> = ds
        .split_tokens(Split::Train)
        .unwrap()
        .shards()
        .iter()
        .flat_map(|x| x.to_vec())
        .collect();
    let text = tok.decode(&train).unwrap();
    assert!(
        text.starts_with("train doc 0<|endoftext|>train doc 1<|endoftext|>"),
        "{text}"
    );
    assert!(text.ends_with("train doc 8<|endoftext|>"), "{text}");
}

#[test]
fn openwebtext_at_refs_pr_20_holds_out_validation_by_document_index() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("hub");
    let docs: Vec<String> = (0..1500)
        .map(|i| format!("Web page {i}: some text."))
        .collect();
    let (a, b) = docs.split_at(700);
    let repo = HubRepo::dataset("Skylion007/openwebtext", "refs/pr/20");
    let snap = common::fake_hub_repo(
        &cache,
        &repo,
        COMMIT,
        &[
            ("plain_text/train-00000-of-00002.parquet", pq(&strs(a))),
            ("plain_text/train-00001-of-00002.parquet", pq(&strs(b))),
        ],
    );
    assert!(cache
        .join("datasets--Skylion007--openwebtext/refs/refs/pr/20")
        .is_file());
    assert!(snap.ends_with(COMMIT));
    let tok_path = root.path().join("gpt2.json");
    std::fs::write(&tok_path, common::gpt2_tokenizer_json()).unwrap();
    let cfg = DataConfig {
        dataset: DatasetSource::OpenWebText {
            repo: "Skylion007/openwebtext".into(),
            revision: "refs/pr/20".into(),
        },
        tokenizer: Some(TokenizerSpec::File(tok_path)),
        val_fraction: Some(0.01),
        ..Default::default()
    };
    let ds = prepare_with(&cfg, &root.path().join("out"), &HubOptions::offline(&cache)).unwrap();
    let val_idx: Vec<usize> = (0..1500)
        .filter(|&i| is_held_out(i as u64, 0.01, 2357))
        .collect();
    assert!(!val_idx.is_empty());
    let m = ds.meta();
    assert_eq!(m.revision.as_deref(), Some("refs/pr/20"));
    assert_eq!(m.splits[&Split::Val].documents, val_idx.len() as u64);
    assert_eq!(
        m.splits[&Split::Train].documents,
        1500 - val_idx.len() as u64
    );
    let tok = ds.tokenizer().unwrap();
    let val: Vec<u32> = ds
        .split_tokens(Split::Val)
        .unwrap()
        .shards()
        .iter()
        .flat_map(|x| x.to_vec())
        .collect();
    let want: String = val_idx
        .iter()
        .map(|&i| format!("{}<|endoftext|>", docs[i]))
        .collect();
    assert_eq!(tok.decode(&val).unwrap(), want);
}

#[test]
fn a_partial_cache_is_an_error_naming_the_missing_files() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("hub");
    gpt2_in_cache(&cache);
    // Minipile with train shard 1 of 0..3 never downloaded.
    let minipile = HubRepo::dataset("JeanKaddour/minipile", "main");
    common::fake_hub_repo(
        &cache,
        &minipile,
        COMMIT,
        &[
            ("data/train-00000-of-00003-aaaa.parquet", pq(&["a"])),
            ("data/train-00002-of-00003-cccc.parquet", pq(&["c"])),
            ("data/validation-00000-of-00001-dddd.parquet", pq(&["v"])),
            ("data/test-00000-of-00001-eeee.parquet", pq(&["t"])),
        ],
    );
    let out = root.path().join("out");
    let e = prepare_with(
        &DataConfig::for_dataset(DatasetSource::Minipile),
        &out,
        &HubOptions::offline(&cache),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, DataError::IncompleteSource { count: 1, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("data/train-00001-of-00003*")
            && msg.contains(
                "hf download JeanKaddour/minipile --repo-type dataset --include 'data/test-*' \
                 --include 'data/train-*' --include 'data/validation-*'"
            ),
        "{msg}"
    );
    assert!(!out.join("meta.json").exists());

    // OpenWebText with 2 of 4 train files cached: both gaps are counted, named.
    let owt = HubRepo::dataset("Skylion007/openwebtext", "refs/pr/20");
    common::fake_hub_repo(
        &cache,
        &owt,
        COMMIT,
        &[
            ("plain_text/train-00000-of-00004.parquet", pq(&["a"])),
            ("plain_text/train-00002-of-00004.parquet", pq(&["c"])),
        ],
    );
    let owt_cfg = DataConfig {
        dataset: DatasetSource::OpenWebText {
            repo: owt.id.clone(),
            revision: owt.revision.clone(),
        },
        ..Default::default()
    };
    let e = prepare_with(&owt_cfg, &out, &HubOptions::offline(&cache)).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, DataError::IncompleteSource { count: 2, .. })
            && msg.contains("plain_text/train-00001-of-00004*, plain_text/train-00003-of-00004*"),
        "{msg}"
    );

    // The missing files arrive, one of them cut short: the parquet reader names it.
    let mut short = pq(&["b"]);
    short.truncate(short.len() / 2);
    common::fake_hub_repo(
        &cache,
        &minipile,
        COMMIT,
        &[("data/train-00001-of-00003-bbbb.parquet", short)],
    );
    let e = prepare_with(
        &DataConfig::for_dataset(DatasetSource::Minipile),
        &out,
        &HubOptions::offline(&cache),
    )
    .unwrap_err();
    assert!(
        matches!(e, DataError::Parquet { .. })
            && e.to_string()
                .contains("data/train-00001-of-00003-bbbb.parquet"),
        "{e}"
    );
}
