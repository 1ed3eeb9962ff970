//! Data pipeline throughput: full `prepare` MB/s, tokenization MB/s (against Python
//! `tokenizers`), and loader tokens/s.
//!
//! ```text
//! cargo run --release -p ire-data --example bench_data
//! ```
//!
//! Text: the embedded State of the Union corpus (10.8 MB); tokenizer: GPT-2 (test fixture).
//! Threads: `IRE_BENCH_THREADS` (default 2). The Python figure comes from
//! `IRE_PY_TOKENIZE_MBPS` if set, else from running `tools/bench_tokenize.py` with
//! `IRE_BENCH_PYTHON` (default `.venv/bin/python`, then `python3`) on the same text.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ire_data::embedded::EmbeddedCorpus;
use ire_data::{
    prepare_with, DataConfig, DataParallel, DatasetSource, HubOptions, Loader, LoaderState,
    Prefetcher, SamplerKind, Split, Tokenizer, TokenizerSpec,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = std::env::var("IRE_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()?;
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo_root = crate_dir.join("../..");
    let tmp = tempfile::tempdir()?;

    // GPT-2 tokenizer and the text, also written out for the Python script.
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(
        crate_dir.join("tests/fixtures/gpt2-tokenizer.json.gz"),
    )?)
    .read_to_end(&mut json)?;
    let tok_path = tmp.path().join("gpt2-tokenizer.json");
    std::fs::write(&tok_path, &json)?;
    let tok = Tokenizer::from_file(&tok_path)?;
    let text = EmbeddedCorpus::Sotu.text()?;
    let text_path = tmp.path().join("sotu.txt");
    std::fs::write(&text_path, &text)?;
    let docs: Vec<&str> = text.split(ire_data::embedded::DOC_SEPARATOR).collect();
    let mb = text.len() as f64 / 1e6;
    let profile = if cfg!(debug_assertions) {
        "dev (deps at opt-level 3)"
    } else {
        "release"
    };
    println!("ire-data bench: {threads} threads, {profile} build, text = embedded SOTU ({} documents, {mb:.2} MB), tokenizer = GPT-2", docs.len());

    // 1. Full prepare first, while the tokenizer's piece cache is cold: read, tokenize,
    //    write shards + checksums.
    let cfg = DataConfig {
        dataset: DatasetSource::Embedded,
        tokenizer: Some(TokenizerSpec::File(tok_path.clone())),
        ..Default::default()
    };
    let out = tmp.path().join("prepared");
    let t = Instant::now();
    let ds = prepare_with(&cfg, &out, &HubOptions::offline(tmp.path().join("hub")))?;
    let secs = t.elapsed().as_secs_f64();
    let total: u64 = ds.splits().iter().map(|s| ds.num_tokens(*s)).sum();
    println!("prepare (embedded SOTU, GPT-2, end to end, cold): {:.2} MB/s ({total} tokens in {secs:.2} s)", mb / secs);

    // 2. Tokenization: first pass and best of 3, as the Python script measures.
    let mut times = Vec::new();
    let mut tokens = 0usize;
    for _ in 0..3 {
        let t = Instant::now();
        let ids = tok.encode_batch(&docs)?;
        times.push(t.elapsed().as_secs_f64());
        tokens = ids.iter().map(Vec::len).sum();
    }
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let rust_mbps = mb / best;
    println!(
        "tokenize (Tokenizer::encode_batch): {rust_mbps:.2} MB/s best of 3, {:.2} MB/s 2nd pass ({tokens} tokens, {:.2} M tokens/s)",
        mb / times[1],
        tokens as f64 / best / 1e6
    );

    // The same through `tokenizers`' own encode (fancy-regex split, no piece cache), one pass.
    let t = Instant::now();
    {
        use rayon::prelude::*;
        docs.par_iter()
            .map(|d| tok.encode_reference(d))
            .collect::<Result<Vec<_>, _>>()?;
    }
    println!(
        "tokenize via tokenizers' encode_fast (no fast path, Rust): {:.2} MB/s",
        mb / t.elapsed().as_secs_f64()
    );

    let py = match std::env::var("IRE_PY_TOKENIZE_MBPS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
    {
        Some(v) => Some((v, "IRE_PY_TOKENIZE_MBPS".to_string())),
        None => python_mbps(&repo_root, &tok_path, &text_path, threads),
    };
    match py {
        Some((py, from)) => println!(
            "python tokenizers encode_batch: {py:.2} MB/s best of 3 ({from}) -> ratio rust/python = {:.2}x",
            rust_mbps / py
        ),
        None => println!("python figure unavailable (set IRE_PY_TOKENIZE_MBPS or install tokenizers in .venv)"),
    }

    // 3. Loader: batches of 16 × 1024 from the mapped shards.
    let (b, ctx) = (16usize, 1024usize);
    for sampler in [SamplerKind::RandomWindows, SamplerKind::EpochPermutation] {
        let loader = Loader::new(&ds, Split::Train, ctx, sampler, 1337)?;
        let n = 2000u64;
        let t = Instant::now();
        let mut check = 0u64;
        for i in 0..n {
            let batch = loader.batch(i * b as u64, b)?;
            check = check.wrapping_add(u64::from(batch.inputs[0]));
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "loader {sampler:?} batch({b}x{ctx}): {:.1} M tokens/s ({:.0} batches/s, checksum {check})",
            (n * (b * ctx) as u64) as f64 / s / 1e6,
            n as f64 / s
        );
    }
    let loader = Loader::new(&ds, Split::Train, ctx, SamplerKind::RandomWindows, 1337)?;
    let mut p = Prefetcher::new(loader, DataParallel::single(b), LoaderState::default(), 8)?;
    let n = 2000u64;
    let t = Instant::now();
    for _ in 0..n {
        p.next_micro()?;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "prefetcher next_micro({b}x{ctx}): {:.1} M tokens/s ({:.1} us per batch)",
        (n * (b * ctx) as u64) as f64 / s / 1e6,
        s / n as f64 * 1e6
    );
    let v = Instant::now();
    ds.val_windows(64, ctx)?;
    println!(
        "val_windows(64, {ctx}): {:.2} ms",
        v.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// Runs tools/bench_tokenize.py on the same tokenizer and text; returns its MB/s.
fn python_mbps(root: &Path, tok: &Path, text: &Path, threads: usize) -> Option<(f64, String)> {
    let script = root.join("tools/bench_tokenize.py");
    let candidates: Vec<PathBuf> = match std::env::var("IRE_BENCH_PYTHON") {
        Ok(p) => vec![PathBuf::from(p)],
        Err(_) => vec![root.join(".venv/bin/python"), PathBuf::from("python3")],
    };
    for py in candidates {
        let out = Command::new(&py)
            .arg(&script)
            .arg("--tokenizer")
            .arg(tok)
            .arg("--text")
            .arg(text)
            .env("RAYON_RS_NUM_THREADS", threads.to_string())
            .output();
        let Ok(out) = out else { continue };
        if !out.status.success() {
            continue;
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        if let Some(v) = stdout
            .lines()
            .find_map(|l| l.strip_prefix("MBPS "))
            .and_then(|v| v.trim().parse().ok())
        {
            return Some((v, format!("{} tools/bench_tokenize.py", py.display())));
        }
    }
    None
}
