//! `prepare` end to end on the vendored Moby-Dick (no network): counts, determinism,
//! idempotency, resume after a kill, and refusal of damaged or foreign folders.

mod common;

use std::path::Path;

use ire_data::dataset::Preparation;
use ire_data::embedded::EmbeddedCorpus;
use ire_data::format::Meta;
use ire_data::{
    prepare_with, DataConfig, DataError, DatasetSource, HubOptions, PreparedDataset, Split,
    TokenizerSpec, TrainTokenizer,
};

fn cfg() -> DataConfig {
    DataConfig {
        dataset: DatasetSource::MobyDick,
        tokenizer: Some(TokenizerSpec::Train(TrainTokenizer {
            vocab_size: 1024,
            ..Default::default()
        })),
        shard_tokens: 60_000,
        ..Default::default()
    }
}

fn offline(dir: &Path) -> HubOptions {
    HubOptions::offline(dir.join("no-hub-cache"))
}

fn shard_ids(ds: &PreparedDataset, split: Split) -> Vec<u32> {
    ds.split_tokens(split)
        .unwrap()
        .shards()
        .iter()
        .flat_map(|s| s.to_vec())
        .collect()
}

fn prepared(root: &Path) -> PreparedDataset {
    prepare_with(&cfg(), &root.join("out"), &offline(root)).unwrap()
}

#[test]
fn moby_dick_prepares_into_exact_documents_and_tokens() {
    let root = tempfile::tempdir().unwrap();
    let ds = prepared(root.path());
    assert!(matches!(
        ds.preparation(),
        Preparation::Prepared {
            resumed_shards: 0,
            ..
        }
    ));
    let meta = ds.meta();
    // 138 documents; every 10th (indices 9, 19, …, 129) is validation: 13.
    assert_eq!(meta.splits[&Split::Train].documents, 125);
    assert_eq!(meta.splits[&Split::Val].documents, 13);
    assert_eq!(ds.splits(), vec![Split::Train, Split::Val]);
    assert_eq!((ds.vocab_size(), ds.eot_id()), (1024, 0));
    assert_eq!(meta.dtype, ire_data::shard::TokenDtype::U16);

    // The stream is exactly encode(doc) + [eot] for each document, in order.
    let tok = ds.tokenizer().unwrap();
    let docs = EmbeddedCorpus::MobyDick.documents().unwrap();
    let mut want_train = Vec::new();
    let mut want_val = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let target = if i % 10 == 9 {
            &mut want_val
        } else {
            &mut want_train
        };
        target.extend(tok.encode(d).unwrap());
        target.push(0);
    }
    let train = shard_ids(&ds, Split::Train);
    assert_eq!(train, want_train);
    assert_eq!(shard_ids(&ds, Split::Val), want_val);
    assert_eq!(train.iter().filter(|&&t| t == 0).count(), 125);
    assert_eq!(ds.num_tokens(Split::Train), train.len() as u64);
    assert_eq!(
        meta.splits[&Split::Train].text_bytes,
        docs.iter()
            .enumerate()
            .filter(|(i, _)| i % 10 != 9)
            .map(|(_, d)| d.len() as u64)
            .sum::<u64>()
    );
    // Shards close at the first document end past 60 000 tokens.
    let shards = &meta.splits[&Split::Train].shards;
    assert!(shards.len() >= 3, "{}", shards.len());
    for s in &shards[..shards.len() - 1] {
        assert!(s.tokens >= 60_000, "{s:?}");
    }
    let head = tok.decode(&train[..12]).unwrap();
    assert!(head.len() > 12 && docs[0].starts_with(&head), "{head}");
    ds.verify().unwrap();

    // Same input → byte-identical tokenizer and shards in another folder.
    let other = prepare_with(&cfg(), &root.path().join("again"), &offline(root.path())).unwrap();
    assert_eq!(other.meta().tokenizer.sha256, meta.tokenizer.sha256);
    assert_eq!(other.meta().splits, meta.splits);
}

#[test]
fn a_second_run_returns_at_once_and_another_config_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let ds = prepared(root.path());
    let out = root.path().join("out");
    let meta_bytes = std::fs::read(out.join("meta.json")).unwrap();
    let t = std::time::Instant::now();
    let again = prepared(root.path());
    assert_eq!(again.preparation(), Preparation::AlreadyPrepared);
    assert!(t.elapsed().as_secs_f32() < 2.0);
    assert_eq!(std::fs::read(out.join("meta.json")).unwrap(), meta_bytes);
    assert_eq!(again.meta(), ds.meta());

    let files_before = common::file_names(&out);
    let mut other = cfg();
    other.shard_tokens = 1000;
    let e = prepare_with(&other, &out, &offline(root.path())).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DataError::PreparedMismatch { .. }), "{msg}");
    assert!(
        msg.contains("shard_tokens 1000") && msg.contains("shard_tokens 60000"),
        "{msg}"
    );
    assert_eq!(common::file_names(&out), files_before, "nothing deleted");
}

#[test]
fn an_interrupted_run_resumes_after_its_last_finished_shard() {
    let root = tempfile::tempdir().unwrap();
    let full = prepared(root.path());
    let src = root.path().join("out");
    let dst = root.path().join("killed");
    std::fs::create_dir(&dst).unwrap();
    // The state after a kill while writing train shard 2: meta.json absent, shards 0-1 and
    // their records present, a half-written temp file, the trained tokenizer kept.
    for f in [
        "tokenizer.json",
        "tokenizer.record.json",
        "train-00000.bin",
        "train-00000.json",
        "train-00001.bin",
        "train-00001.json",
    ] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    std::fs::write(dst.join("train-00002.bin.tmp"), b"IRETOKS\0partial").unwrap();
    let resumed = prepare_with(&cfg(), &dst, &offline(root.path())).unwrap();
    let total = full
        .meta()
        .splits
        .values()
        .map(|s| s.shards.len())
        .sum::<usize>();
    assert_eq!(
        resumed.preparation(),
        Preparation::Prepared {
            resumed_shards: 2,
            new_shards: total - 2
        }
    );
    assert_eq!(resumed.meta().splits, full.meta().splits);
    assert!(!dst.join("train-00002.bin.tmp").exists());
    resumed.verify().unwrap();
}

fn patch(path: &Path, offset: usize, bytes: &[u8]) {
    let mut b = std::fs::read(path).unwrap();
    b[offset..offset + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, b).unwrap();
}

#[test]
fn damaged_shards_are_reported_with_the_file_and_nothing_is_deleted() {
    let root = tempfile::tempdir().unwrap();
    prepared(root.path());
    let out = root.path().join("out");
    let shard = out.join("train-00001.bin");
    let good = std::fs::read(&shard).unwrap();
    let names = common::file_names(&out);

    // Truncated: header and size disagree.
    std::fs::write(&shard, &good[..good.len() - 2]).unwrap();
    let e = PreparedDataset::open(&out).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, DataError::CorruptShard { .. })
            && msg.contains("train-00001.bin")
            && msg.contains("truncated"),
        "{msg}"
    );

    // Bad magic.
    std::fs::write(&shard, &good).unwrap();
    patch(&shard, 0, b"GARBAGE!");
    let e = PreparedDataset::open(&out).unwrap_err();
    assert!(
        matches!(e, DataError::CorruptShard { .. }) && e.to_string().contains("magic"),
        "{e}"
    );

    // Header from another tokenizer: vocab 2048 instead of 1024.
    std::fs::write(&shard, &good).unwrap();
    patch(&shard, 24, &2048u64.to_le_bytes());
    let e = PreparedDataset::open(&out).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            DataError::VocabMismatch {
                expected: 1024,
                found: 2048,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("train-00001.bin") && msg.contains("vocab size"),
        "{msg}"
    );

    // A flipped bit in the last token: headers fine, checksum not; open refuses it.
    std::fs::write(&shard, &good).unwrap();
    let last = good.len() - 1;
    patch(&shard, last, &[good[last] ^ 1]);
    let e = PreparedDataset::open(&out).unwrap_err();
    assert!(
        matches!(e, DataError::DamagedShard { .. })
            && e.to_string().contains("train-00001.bin")
            && e.to_string().contains("sha256"),
        "{e}"
    );

    // A replaced tokenizer.json.
    std::fs::write(&shard, &good).unwrap();
    let tok = out.join("tokenizer.json");
    let tok_good = std::fs::read(&tok).unwrap();
    std::fs::write(&tok, b"{}").unwrap();
    let e = PreparedDataset::open(&out).unwrap_err();
    assert!(
        matches!(e, DataError::Checksum { .. }) && e.to_string().contains("tokenizer.json"),
        "{e}"
    );
    std::fs::write(&tok, tok_good).unwrap();

    // prepare on the damaged-then-repaired folder is a no-op, and nothing was deleted.
    std::fs::write(&shard, &good).unwrap();
    assert_eq!(common::file_names(&out), names);
    assert!(names.contains(&"verified.json".to_string()), "{names:?}");
    PreparedDataset::open(&out).unwrap().verify().unwrap();

    // A folder that was never prepared.
    let e = PreparedDataset::open(root.path()).unwrap_err();
    assert!(matches!(e, DataError::NotPrepared { .. }), "{e}");
    let meta: Meta =
        serde_json::from_slice(&std::fs::read(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta.dataset, "moby-dick");
}

#[test]
fn the_default_embedded_config_prepares_sotu() {
    // The trainer's default: embedded SOTU, BPE 8192 trained during prepare.
    let root = tempfile::tempdir().unwrap();
    let cfg = DataConfig::default();
    let ds = prepare_with(&cfg, &root.path().join("sotu"), &offline(root.path())).unwrap();
    let m = ds.meta();
    assert_eq!(
        (
            m.splits[&Split::Train].documents,
            m.splits[&Split::Val].documents
        ),
        (210, 23)
    );
    assert_eq!(ds.vocab_size(), 8192);
    // Exact counts (the trained tokenizer is deterministic): 9.7 MB of train text at
    // ≈ 4.9 bytes per token. A change here means the tokenizer or the corpus changed.
    let (train, val) = (ds.num_tokens(Split::Train), ds.num_tokens(Split::Val));
    assert_eq!((train, val), (1_993_801, 214_617), "{train} {val}");
    assert!(ds.val_windows(64, 256).is_ok());
}

/// Shards of the prepared Moby-Dick, in meta.json order.
fn shard_files(ds: &PreparedDataset) -> Vec<String> {
    ds.meta()
        .splits
        .values()
        .flat_map(|s| s.shards.iter().map(|m| m.file.clone()))
        .collect()
}

#[test]
fn a_shard_overwritten_with_ids_outside_the_vocab_is_refused_and_kept() {
    let root = tempfile::tempdir().unwrap();
    prepared(root.path());
    let out = root.path().join("out");
    let shard = out.join("train-00001.bin");
    // 16 bytes of 0xFF from token 50 on: u16 ids 65535, far above the vocab of 1024.
    patch(&shard, 64 + 100, &[0xFF; 16]);
    let damaged = std::fs::read(&shard).unwrap();
    let names = common::file_names(&out);

    let e = PreparedDataset::open(&out).unwrap_err();
    let msg = e.to_string();
    match &e {
        DataError::DamagedShard { path, .. } => assert_eq!(path, &shard),
        other => panic!("expected DamagedShard, got {other}"),
    }
    assert!(
        msg.contains("token id 65535 at position 50 is not below the vocab size 1024")
            && msg.contains("ire prepare")
            && msg.contains("Nothing was deleted"),
        "{msg}"
    );
    // The trainer's path (prepare on a prepared folder, then the loader) stops the same way.
    let e = prepare_with(&cfg(), &out, &offline(root.path())).unwrap_err();
    assert!(
        matches!(e, DataError::DamagedShard { ref path, .. } if *path == shard),
        "{e}"
    );
    // The shard is still there, bytes as they were; no file appeared or vanished.
    assert_eq!(std::fs::read(&shard).unwrap(), damaged);
    assert_eq!(common::file_names(&out), names);
}

#[test]
fn a_shard_with_changed_ids_inside_the_vocab_is_caught_by_its_hash() {
    let root = tempfile::tempdir().unwrap();
    prepared(root.path());
    let out = root.path().join("out");
    let shard = out.join("val-00000.bin");
    let good = std::fs::read(&shard).unwrap();
    let mtime = std::fs::metadata(&shard).unwrap().modified().unwrap();
    // Ids 1, 2, 3, 4 (all < 1024) over tokens 10..14; same size; mtime set back afterwards.
    patch(&shard, 64 + 20, &[1, 0, 2, 0, 3, 0, 4, 0]);
    let file = std::fs::File::options().write(true).open(&shard).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    assert_eq!(std::fs::metadata(&shard).unwrap().len(), good.len() as u64);

    let e = PreparedDataset::open(&out).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, DataError::DamagedShard { ref path, .. } if *path == shard),
        "{msg}"
    );
    assert!(
        msg.contains("val-00000.bin")
            && msg.contains("meta.json records")
            && msg.contains("sha256"),
        "{msg}"
    );
    assert!(shard.exists());
    // Restored bytes open again.
    std::fs::write(&shard, &good).unwrap();
    assert_eq!(
        PreparedDataset::open(&out).unwrap().verification().checked,
        vec!["val-00000.bin".to_string()]
    );
}

#[test]
fn an_unchanged_dataset_is_hashed_once_and_a_rewritten_shard_again() {
    let root = tempfile::tempdir().unwrap();
    let first = prepared(root.path());
    let out = root.path().join("out");
    let all = shard_files(&first);
    assert!(all.len() >= 4, "{all:?}");
    // prepare's own open verified every shard and stamped each one.
    assert_eq!(first.verification().checked, all);
    let stamp_path = out.join("verified.json");
    let stamp: ire_data::verify::Stamp =
        serde_json::from_slice(&std::fs::read(&stamp_path).unwrap()).unwrap();
    assert_eq!(
        stamp.shards.keys().cloned().collect::<Vec<_>>().len(),
        all.len()
    );
    let train1 = &stamp.shards["train-00001.bin"];
    assert_eq!(
        train1.sha256,
        first.meta().splits[&Split::Train].shards[1].sha256
    );
    assert_eq!(train1.vocab_size, 1024);
    let stamp_bytes = std::fs::read(&stamp_path).unwrap();

    // Second open: nothing hashed, the stamp untouched.
    let second = PreparedDataset::open(&out).unwrap();
    assert!(second.verification().checked.is_empty());
    assert_eq!(second.verification().trusted, all.len());
    assert_eq!(std::fs::read(&stamp_path).unwrap(), stamp_bytes);

    // A shard rewritten (same bytes, new mtime) is hashed again, alone.
    let shard = out.join("train-00001.bin");
    std::fs::write(&shard, std::fs::read(&shard).unwrap()).unwrap();
    let third = PreparedDataset::open(&out).unwrap();
    assert_eq!(
        third.verification().checked,
        vec!["train-00001.bin".to_string()]
    );
    assert_eq!(third.verification().trusted, all.len() - 1);

    // An unreadable stamp is ignored: everything is checked and the stamp rewritten.
    std::fs::write(&stamp_path, b"not json").unwrap();
    let fourth = PreparedDataset::open(&out).unwrap();
    assert_eq!(fourth.verification().checked, all);
    assert!(serde_json::from_slice::<ire_data::verify::Stamp>(
        &std::fs::read(&stamp_path).unwrap()
    )
    .is_ok());
    // verify() always re-checks, stamp or not.
    fourth.verify().unwrap();
}

#[test]
fn a_prepare_on_a_locked_folder_stops_and_a_dead_holders_lock_is_taken_over() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let lock = out.join("prepare.lock");

    // A live holder (this very process, on this host): refused, nothing written.
    let me = ire_core::Holder::this_process();
    std::fs::write(&lock, me.to_text()).unwrap();
    let e = prepare_with(&cfg(), &out, &offline(root.path())).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, DataError::Locked { holder, .. } if *holder == me),
        "{msg}"
    );
    let names_holder = format!("pid {} on host {}", me.pid, ire_core::lock::host_name());
    assert!(
        msg.contains(&out.display().to_string()) && msg.contains(&names_holder),
        "{msg}"
    );
    assert_eq!(common::file_names(&out), vec!["prepare.lock".to_string()]);

    // A holder that has exited (a lock file of the old, pid-only format): its lock is taken
    // over, the folder prepared, the lock released at the end.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(&lock, format!("{dead}\n")).unwrap();
    let ds = prepare_with(&cfg(), &out, &offline(root.path())).unwrap();
    assert!(matches!(ds.preparation(), Preparation::Prepared { .. }));
    assert!(!lock.exists());
    assert_eq!(ds.meta().splits[&Split::Val].documents, 13);
}
