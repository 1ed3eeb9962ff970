//! Property tests: random byte-level mutations and truncations of every file a run reads back —
//! the model's safetensors and config, the optimizer state, the trainer state, the run config,
//! the checkpoint manifest, the metrics log, the prepared token shards, tokenizer and
//! `meta.json` — never panic, always give a typed error naming the file (or, for a mutation that
//! leaves a file valid, a value); the checkpoint manifest and the shards' recorded hashes catch
//! every change of a checkpoint file or a shard. Seeded, so a failure reproduces; each case
//! prints its mutation.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use ire_optim::Optimizer;
use ire_train::checkpoint::{self, checkpoint_path};
use ire_train::metrics::read_metrics;
use ire_train::{train, RunConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod common;
use common::*;

const CASES_PER_FILE: usize = 24;

/// One mutation of a file's bytes.
#[derive(Debug)]
enum Mutation {
    Truncate(usize),
    Flip { at: usize, mask: u8 },
    Overwrite { at: usize, len: usize },
    Append(usize),
}

impl Mutation {
    fn random(rng: &mut StdRng, len: usize) -> Self {
        match rng.random_range(0..4) {
            0 => Mutation::Truncate(rng.random_range(0..len.max(1))),
            1 => Mutation::Flip {
                at: rng.random_range(0..len.max(1)),
                mask: rng.random_range(1..=255),
            },
            2 => Mutation::Overwrite {
                at: rng.random_range(0..len.max(1)),
                len: rng.random_range(1..64),
            },
            _ => Mutation::Append(rng.random_range(1..64)),
        }
    }

    fn apply(&self, bytes: &[u8], rng: &mut StdRng) -> Vec<u8> {
        let mut out = bytes.to_vec();
        match *self {
            Mutation::Truncate(n) => out.truncate(n),
            Mutation::Flip { at, mask } => {
                if let Some(b) = out.get_mut(at) {
                    *b ^= mask;
                }
            }
            Mutation::Overwrite { at, len } => {
                for b in out.iter_mut().skip(at).take(len) {
                    *b = rng.random();
                }
            }
            Mutation::Append(n) => out.extend((0..n).map(|_| rng.random::<u8>())),
        }
        out
    }
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        match path.is_dir() {
            true => copy_dir(&path, &target),
            false => {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }
}

/// Reads the checkpoint at `dir` the way resume does, part by part; `Err` is a typed error's
/// text. A panic fails the test (with the case printed by the caller).
fn read_back(dir: &Path, run: &Path) -> Vec<Result<(), String>> {
    let device = Default::default();
    let cfg = config(run, &run.join("data"), "admire", 2, 1, 4);
    let mut optim = Optimizer::<B>::new(&cfg.optim, 2).unwrap();
    vec![
        ire_llama::load_hf::<Flex>(dir, &device)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        optim
            .load(&dir.join(checkpoint::OPTIMIZER_DIR), &device)
            .map_err(|e| e.to_string()),
        checkpoint::read_state(dir)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        RunConfig::load(&dir.join(checkpoint::RUN_CONFIG_FILE), &[])
            .map(|_| ())
            .map_err(|e| e.to_string()),
    ]
}

fn relative_files(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        match path.is_dir() {
            true => relative_files(&path, base, out),
            false => out.push(path.strip_prefix(base).unwrap().to_path_buf()),
        }
    }
}

/// One mutated copy of a folder: which file, the case's description, its new and old bytes.
struct Case<'a> {
    file: &'a Path,
    what: String,
    bytes: Vec<u8>,
    original: &'a [u8],
}

/// For `cases` random mutations of each of `files` (relative to `source`): copies `source` to
/// `work`, writes the mutated file there, and calls `check` (panics inside are reported with the
/// case).
fn for_each_mutation(
    source: &Path,
    files: &[PathBuf],
    seed: u64,
    cases: usize,
    work: &Path,
    mut check: impl FnMut(&Case),
) {
    let mut rng = StdRng::seed_from_u64(seed);
    for file in files {
        let original = std::fs::read(source.join(file)).unwrap();
        for case in 0..cases {
            let mutation = Mutation::random(&mut rng, original.len());
            let bytes = mutation.apply(&original, &mut rng);
            if bytes == original {
                continue;
            }
            let _ = std::fs::remove_dir_all(work);
            copy_dir(source, work);
            std::fs::write(work.join(file), &bytes).unwrap();
            let what = format!("{} case {case}: {mutation:?}", file.display());
            check(&Case {
                file,
                what,
                bytes,
                original: &original,
            });
        }
    }
}

#[test]
fn mutated_checkpoint_files_give_typed_errors_and_never_pass_verification() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let cfg = config(&run, &tmp.path().join("data"), "admire", 2, 1, 4);
    train::<B>(cfg, devices(1), opts(false, None), peak()).unwrap();
    let good = checkpoint_path(&run, 4);
    let mut files = Vec::new();
    relative_files(&good, &good, &mut files);
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    let work = tmp.path().join("work");
    for_each_mutation(&good, &files, 7, CASES_PER_FILE, &work, |case| {
        let what = &case.what;
        let results = std::panic::catch_unwind(|| read_back(&work, &run))
            .unwrap_or_else(|_| panic!("{what}: reading the checkpoint panicked"));
        for err in results.into_iter().filter_map(Result::err) {
            assert!(!err.is_empty(), "{what}: empty error");
        }
        let name = case.file.file_name().unwrap().to_string_lossy();
        if name == checkpoint::MANIFEST_FILE {
            // A mutated manifest either fails to parse (naming itself) or records sizes and
            // hashes the files do not have (naming the file); only one that parses to the same
            // manifest (added whitespace) may pass.
            let same = serde_json::from_slice::<checkpoint::Manifest>(&case.bytes).ok()
                == serde_json::from_slice::<checkpoint::Manifest>(case.original).ok();
            assert!(same || checkpoint::verify(&work).is_err(), "{what}: passed");
            return;
        }
        let err = checkpoint::verify(&work)
            .expect_err(&format!("{what}: verification passed"))
            .to_string();
        assert!(
            err.contains(name.as_ref()),
            "{what}: the error does not name the file: {err}"
        );
    });
}

#[test]
fn mutated_metrics_logs_give_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let cfg = config(&run, &tmp.path().join("data"), "adamw", 2, 1, 4);
    train::<B>(cfg, devices(1), opts(false, None), peak()).unwrap();
    let path = run.join("metrics.jsonl");
    let original = std::fs::read(&path).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    for case in 0..4 * CASES_PER_FILE {
        let mutation = Mutation::random(&mut rng, original.len());
        let bytes = mutation.apply(&original, &mut rng);
        std::fs::write(&path, &bytes).unwrap();
        let what = format!("metrics.jsonl case {case}: {mutation:?}");
        let result = std::panic::catch_unwind(|| read_metrics(&path))
            .unwrap_or_else(|_| panic!("{what}: reading panicked"));
        if let Err(e) = result {
            let e = e.to_string();
            assert!(e.contains("metrics.jsonl"), "{what}: {e}");
        }
    }
}

#[test]
fn mutated_prepared_data_gives_typed_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(&tmp.path().join("run"), &data, "adamw", 2, 1, 4);
    ire_data::prepare(&cfg.data, &data).unwrap();
    let mut files = Vec::new();
    relative_files(&data, &data, &mut files);
    // What opening a prepared folder reads: meta.json, the tokenizer, the shards (the shards'
    // `.json` records only serve an interrupted prepare; verified.json is the check's stamp).
    files.retain(|f| {
        let name = f.to_string_lossy();
        name == "meta.json" || name == "tokenizer.json" || name.ends_with(".bin")
    });
    files.sort();
    assert!(files.iter().any(|f| f.ends_with("meta.json")), "{files:?}");
    let work = tmp.path().join("work");
    for_each_mutation(&data, &files, 13, CASES_PER_FILE, &work, |case| {
        let what = &case.what;
        let name = case.file.file_name().unwrap().to_string_lossy().to_string();
        // Every byte of a shard and of the tokenizer is covered by a hash in meta.json.
        let hashed = name != "meta.json";
        let result = std::panic::catch_unwind(|| {
            ire_data::PreparedDataset::open(&work).and_then(|d| d.tokenizer().map(|_| ()))
        })
        .unwrap_or_else(|_| panic!("{what}: opening the prepared data panicked"));
        match result {
            Err(e) => {
                // A changed record in meta.json may show as the file it describes.
                let e = e.to_string();
                let named = match hashed {
                    true => e.contains(&name),
                    false => files.iter().any(|f| e.contains(&*f.to_string_lossy())),
                };
                assert!(named, "{what}: the error does not name the file: {e}");
            }
            Ok(()) => assert!(!hashed, "{what}: a damaged file was accepted"),
        }
    });
}
