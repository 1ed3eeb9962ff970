//! The online hub path against a local HTTP server on 127.0.0.1 (std's TcpListener) that
//! stalls, drops connections, cuts bodies short or answers: listing timeouts, retries with
//! backoff, sizes from the listing, a finished `.part` used without a download, and file
//! downloads that stall, drop, end short or ignore `Range` being resumed to the right bytes,
//! and the recorded listing that lets an offline prepare see what a download left out.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ire_core::fs::sha256_hex;
use ire_data::hub::{Hub, HubRepo, RemoteFile};
use ire_data::{
    prepare_with, DataConfig, DataError, DatasetSource, HubOptions, Split, TokenizerSpec,
};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// What the server does with one connection.
enum Reply {
    /// Reads the request and says nothing for this long.
    Stall(Duration),
    /// Closes the connection without an answer.
    Drop,
    /// Announces the whole body, sends half of it, closes.
    Truncated(String),
    /// A complete answer.
    Respond(u16, String),
}

fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).is_ok_and(|n| n == 1) {
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn answer(s: &mut TcpStream, status: u16, body: &str, send: usize) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(&body.as_bytes()[..send]);
    let _ = s.flush();
}

/// Serves connection `n` as `reply(n)` says; returns the endpoint and the connection count.
fn serve(reply: impl Fn(usize) -> Reply + Send + 'static) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            read_head(&mut s);
            match reply(n) {
                Reply::Stall(d) => {
                    std::thread::spawn(move || {
                        std::thread::sleep(d);
                        drop(s);
                    });
                }
                Reply::Drop => drop(s),
                Reply::Truncated(body) => answer(&mut s, 200, &body, body.len() / 2),
                Reply::Respond(status, body) => answer(&mut s, status, &body, body.len()),
            }
        }
    });
    (endpoint, count)
}

fn online(cache: &Path, endpoint: &str) -> HubOptions {
    HubOptions {
        offline: false,
        endpoint: Some(endpoint.into()),
        timeout: Duration::from_millis(300),
        retries: 2,
        backoff_base: Duration::from_millis(50),
        ..HubOptions::offline(cache)
    }
}

fn repo() -> HubRepo {
    HubRepo::dataset("Org/data", "main")
}

/// A listing as the hub API gives it with `?blobs=true`.
fn listing_json(a: &[u8]) -> String {
    format!(
        r#"{{"_id":"x","id":"Org/data","sha":"{COMMIT}","siblings":[
            {{"rfilename":"data/b.txt","size":20,"blobId":"b10b"}},
            {{"rfilename":"data/a.parquet","size":{n},"blobId":"ffff",
              "lfs":{{"sha256":"{sha}","size":{n},"pointerSize":130}}}},
            {{"rfilename":"README.md"}}]}}"#,
        n = a.len(),
        sha = sha256_hex(a)
    )
}

#[test]
fn a_stalled_listing_times_out_and_is_retried_with_backoff() {
    let root = tempfile::tempdir().unwrap();
    let (endpoint, count) = serve(|_| Reply::Stall(Duration::from_secs(20)));
    let hub = Hub::new(online(root.path(), &endpoint)).unwrap();
    let t = Instant::now();
    let e = hub.list(&repo()).unwrap_err();
    let secs = t.elapsed().as_secs_f64();
    let msg = e.to_string();
    assert!(
        matches!(e, DataError::Hub { .. }) && msg.contains("after 3 attempts"),
        "{msg}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 3);
    // 3 × 0.3 s timeouts + 0.05 s + 0.1 s of backoff; far from the 20 s stall.
    assert!((1.0..5.0).contains(&secs), "{secs} s");
}

#[test]
fn a_listing_dropped_or_cut_short_is_retried_and_carries_sizes() {
    let root = tempfile::tempdir().unwrap();
    let json = listing_json(b"0123456789");
    let body = json.clone();
    let (endpoint, count) = serve(move |n| match n {
        0 => Reply::Drop,
        1 => Reply::Truncated(body.clone()),
        _ => Reply::Respond(200, body.clone()),
    });
    let hub = Hub::new(online(root.path(), &endpoint)).unwrap();
    let listing = hub.list(&repo()).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert_eq!(listing.commit, COMMIT);
    assert_eq!(
        listing.files,
        vec!["README.md", "data/a.parquet", "data/b.txt"]
    );
    assert_eq!(
        listing.remote["data/a.parquet"],
        RemoteFile {
            size: 10,
            blob: sha256_hex(b"0123456789")
        }
    );
    assert_eq!(listing.remote["data/b.txt"].blob, "b10b");
    assert!(!listing.remote.contains_key("README.md"));

    // A missing repo (404) is not retried.
    let (endpoint, count) = serve(|_| Reply::Respond(404, "{}".into()));
    let hub = Hub::new(online(root.path(), &endpoint)).unwrap();
    let msg = hub.list(&repo()).unwrap_err().to_string();
    assert!(msg.contains("after 1 attempts"), "{msg}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn a_finished_part_is_used_without_download_and_a_short_cached_file_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("hub");
    let a = b"0123456789".to_vec();
    let (endpoint, count) = serve({
        let json = listing_json(&a);
        move |_| Reply::Respond(200, json.clone())
    });
    // b.txt cached with 15 of its 20 bytes; a.parquet complete, but still `.part`.
    common::fake_hub_repo(&cache, &repo(), COMMIT, &[("data/b.txt", vec![b'b'; 15])]);
    std::fs::remove_file(cache.join("datasets--Org--data/refs/main")).unwrap();
    let blobs = cache.join("datasets--Org--data/blobs");
    let part = blobs.join(format!("{}.part", sha256_hex(&a)));
    std::fs::write(&part, &a).unwrap();

    let hub = Hub::new(online(&cache, &endpoint)).unwrap();
    let listing = hub.list(&repo()).unwrap();
    let path = hub.get(&listing, "data/a.parquet").unwrap();
    assert_eq!(
        path,
        cache.join(format!(
            "datasets--Org--data/snapshots/{COMMIT}/data/a.parquet"
        ))
    );
    assert_eq!(std::fs::read(&path).unwrap(), a);
    assert!(!part.exists() && blobs.join(sha256_hex(&a)).is_file());
    assert_eq!(
        std::fs::read_to_string(cache.join("datasets--Org--data/refs/main")).unwrap(),
        COMMIT
    );
    // Only the listing was asked for: no download.
    assert_eq!(count.load(Ordering::SeqCst), 1);

    let e = hub.get(&listing, "data/b.txt").unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            DataError::HubFileSize {
                expected: 20,
                found: 15,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("data/b.txt") && msg.contains("hf download Org/data --repo-type dataset"),
        "{msg}"
    );
}

/// What the CDN does with one body request.
#[derive(Clone, Copy)]
enum Cdn {
    /// Honours `Range` (206), sends `n` bytes of it, then says nothing for 20 s.
    Stall(usize),
    /// Honours `Range`, sends `n` bytes of it, closes.
    Drop(usize),
    /// Honours `Range` but announces and sends only `n` bytes: a clean, short answer.
    Short(usize),
    /// Ignores `Range`: 200 with the whole file.
    Whole,
    /// Honours `Range`: 206 with the rest of the file.
    Ranged,
}

/// `bytes=N-` of a request head.
fn range_start(head: &str) -> Option<u64> {
    let line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("range:"))?;
    let v = line.split_once('=')?.1;
    v.split('-').next()?.trim().parse().ok()
}

/// Serves the CDN's answer to a body request starting at `start`.
fn cdn_answer(mut s: TcpStream, file: &[u8], start: usize, how: Cdn) {
    let rest = &file[start.min(file.len())..];
    let (status, body, send) = match how {
        Cdn::Stall(n) | Cdn::Drop(n) => (206, rest, n.min(rest.len())),
        Cdn::Short(n) => (206, &rest[..n.min(rest.len())], n.min(rest.len())),
        Cdn::Whole => (200, file, file.len()),
        Cdn::Ranged => (206, rest, rest.len()),
    };
    let first = if status == 200 { 0 } else { start };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Range: bytes {first}-{}/{}\r\nConnection: close\r\n\r\n",
        body.len(),
        file.len().saturating_sub(1),
        file.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(&body[..send]);
    let _ = s.flush();
    if let Cdn::Stall(_) = how {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(20));
            drop(s);
        });
    }
}

/// A hub holding LFS files `files`: the API listing, the resolve answer (302 to the
/// absolute `/cdn/<name>`, as the hub sends LFS files to its CDN, with `x-linked-etag`, `x-linked-size`, `x-repo-commit`), and
/// the CDN answering body request `n` (over all files) as `cdn(n)` says. Returns the
/// endpoint and the `bytes=N-` start of every body request.
fn hub_server(
    files: Vec<(String, Vec<u8>)>,
    cdn: impl Fn(usize) -> Cdn + Send + 'static,
) -> (String, Arc<std::sync::Mutex<Vec<Option<u64>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let ranges = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = ranges.clone();
    let siblings: Vec<String> = files
        .iter()
        .map(|(name, b)| {
            format!(
                r#"{{"rfilename":"{name}","size":{n},"blobId":"ffff","lfs":{{"sha256":"{sha}","size":{n}}}}}"#,
                n = b.len(),
                sha = sha256_hex(b)
            )
        })
        .collect();
    let listing = format!(
        r#"{{"sha":"{COMMIT}","siblings":[{}]}}"#,
        siblings.join(",")
    );
    let base = endpoint.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let head = read_head(&mut s);
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            let file = files.iter().find(|(name, _)| path.ends_with(name.as_str()));
            if path.starts_with("/api/") {
                answer(&mut s, 200, &listing, listing.len());
            } else if let (true, Some((name, b))) = (path.contains("/resolve/"), file) {
                let head = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {base}/cdn/{name}\r\nx-linked-etag: \"{}\"\r\nx-linked-size: {}\r\nx-repo-commit: {COMMIT}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    sha256_hex(b),
                    b.len()
                );
                let _ = s.write_all(head.as_bytes());
            } else if let (true, Some((_, b))) = (path.starts_with("/cdn/"), file) {
                let start = range_start(&head);
                let n = {
                    let mut r = seen.lock().unwrap();
                    r.push(start);
                    r.len() - 1
                };
                cdn_answer(s, b, start.unwrap_or(0) as usize, cdn(n));
            } else {
                answer(&mut s, 404, "{}", 2);
            }
        }
    });
    (endpoint, ranges)
}

/// 64 KiB that no shifted copy of themselves matches.
fn file_bytes() -> Vec<u8> {
    (0..65536u32).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Downloads `data/a.parquet` from a hub whose CDN answers as `cdn`; returns the bytes
/// written in the cache and the `bytes=N-` start of each body request.
fn download(cdn: impl Fn(usize) -> Cdn + Send + 'static) -> (Vec<u8>, Vec<Option<u64>>) {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("hub");
    let a = file_bytes();
    let (endpoint, ranges) = hub_server(vec![("data/a.parquet".into(), a.clone())], cdn);
    let hub = Hub::new(online(&cache, &endpoint)).unwrap();
    let listing = hub.list(&repo()).unwrap();
    let path = hub.get(&listing, "data/a.parquet").unwrap();
    let root_dir = cache.join("datasets--Org--data");
    assert_eq!(
        path,
        root_dir.join(format!("snapshots/{COMMIT}/data/a.parquet"))
    );
    assert!(root_dir.join("blobs").join(sha256_hex(&a)).is_file());
    assert!(!root_dir
        .join(format!("blobs/{}.part", sha256_hex(&a)))
        .exists());
    assert_eq!(
        std::fs::read_to_string(root_dir.join("refs/main")).unwrap(),
        COMMIT
    );
    let got = std::fs::read(&path).unwrap();
    let ranges = ranges.lock().unwrap().clone();
    (got, ranges)
}

#[test]
fn a_stalled_download_times_out_and_resumes_from_the_part() {
    let t = Instant::now();
    let (got, ranges) = download(|n| {
        if n == 0 {
            Cdn::Stall(20_000)
        } else {
            Cdn::Ranged
        }
    });
    assert!(got == file_bytes(), "wrong bytes");
    assert_eq!(ranges, vec![Some(0), Some(20_000)]);
    // One 0.3 s read timeout and 0.05 s of backoff, not the 20 s stall.
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn a_dropped_download_resumes_and_a_short_clean_one_is_caught_by_its_size() {
    let (got, ranges) = download(|n| match n {
        0 => Cdn::Drop(10_000),
        1 => Cdn::Short(5_000),
        _ => Cdn::Ranged,
    });
    assert!(got == file_bytes(), "wrong bytes");
    assert_eq!(ranges, vec![Some(0), Some(10_000), Some(15_000)]);
}

#[test]
fn a_server_that_ignores_range_restarts_the_part() {
    let (got, ranges) = download(|n| {
        if n == 0 {
            Cdn::Drop(30_000)
        } else {
            Cdn::Whole
        }
    });
    assert!(got == file_bytes(), "wrong bytes");
    assert_eq!(ranges, vec![Some(0), Some(30_000)]);
}

#[test]
fn a_download_that_keeps_stalling_fails_after_the_retries() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("hub");
    let (endpoint, ranges) = hub_server(vec![("data/a.parquet".into(), file_bytes())], |_| {
        Cdn::Stall(1_000)
    });
    let hub = Hub::new(online(&cache, &endpoint)).unwrap();
    let listing = hub.list(&repo()).unwrap();
    let msg = hub.get(&listing, "data/a.parquet").unwrap_err().to_string();
    assert!(msg.contains("after 3 attempts"), "{msg}");
    // Each retry resumed where the previous attempt stopped.
    assert_eq!(
        *ranges.lock().unwrap(),
        vec![Some(0), Some(1_000), Some(2_000)]
    );
}

#[test]
fn prepare_downloads_through_the_resuming_client_and_then_works_offline() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("hub");
    let docs: Vec<String> = (0..300).map(|i| format!("Web page {i}.")).collect();
    let rows: Vec<&str> = docs.iter().map(|d| d.as_str()).collect();
    let (a, b) = rows.split_at(100);
    let files = vec![
        (
            "plain_text/train-00000-of-00002.parquet".to_string(),
            common::parquet_bytes(a, "text", 50),
        ),
        (
            "plain_text/train-00001-of-00002.parquet".to_string(),
            common::parquet_bytes(b, "text", 50),
        ),
    ];
    // The first body request stalls after 100 bytes; the rest are answered.
    let (endpoint, ranges) = hub_server(
        files,
        |n| {
            if n == 0 {
                Cdn::Stall(100)
            } else {
                Cdn::Ranged
            }
        },
    );
    let tok = root.path().join("gpt2.json");
    std::fs::write(&tok, common::gpt2_tokenizer_json()).unwrap();
    let cfg = DataConfig {
        dataset: DatasetSource::OpenWebText {
            repo: "Skylion007/openwebtext".into(),
            revision: "refs/pr/20".into(),
        },
        tokenizer: Some(TokenizerSpec::File(tok)),
        val_fraction: Some(0.1),
        ..Default::default()
    };
    let ds = prepare_with(&cfg, &root.path().join("a"), &online(&cache, &endpoint)).unwrap();
    let docs_of = |ds: &ire_data::PreparedDataset| {
        let m = ds.meta();
        m.splits.values().map(|s| s.documents).sum::<u64>()
    };
    assert_eq!(docs_of(&ds), 300);
    assert_eq!(*ranges.lock().unwrap(), vec![Some(0), Some(100), Some(0)]);

    // The cache is the standard layout: an offline prepare finds everything.
    let off = prepare_with(&cfg, &root.path().join("b"), &HubOptions::offline(&cache)).unwrap();
    assert_eq!(docs_of(&off), 300);
    assert_eq!(
        off.meta().splits[&Split::Train].tokens,
        ds.meta().splits[&Split::Train].tokens
    );
}

#[test]
fn an_offline_prepare_names_the_unnumbered_files_an_interrupted_download_left_out() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("hub");
    let docs: Vec<String> = (0..90).map(|i| format!("Page {i} of the web.")).collect();
    let rows: Vec<&str> = docs.iter().map(|d| d.as_str()).collect();
    let names = ["train-a.parquet", "train-b.parquet", "train-c.parquet"];
    let files: Vec<(String, Vec<u8>)> = names
        .iter()
        .zip(rows.chunks(30))
        .map(|(n, r)| {
            (
                format!("plain_text/{n}"),
                common::parquet_bytes(r, "text", 10),
            )
        })
        .collect();
    let (endpoint, _) = hub_server(files, |_| Cdn::Ranged);
    let owt = HubRepo::dataset("Skylion007/openwebtext", "refs/pr/20");
    // Online: the listing is recorded; the download stops after the first file.
    let hub = Hub::new(online(&cache, &endpoint)).unwrap();
    let listing = hub.list(&owt).unwrap();
    hub.get(&listing, "plain_text/train-a.parquet").unwrap();
    let record = ire_data::hub::record::record_path(&cache, &owt, COMMIT);
    assert!(record.is_file());

    let tok = root.path().join("gpt2.json");
    std::fs::write(&tok, common::gpt2_tokenizer_json()).unwrap();
    let cfg = DataConfig {
        dataset: DatasetSource::OpenWebText {
            repo: owt.id.clone(),
            revision: owt.revision.clone(),
        },
        tokenizer: Some(TokenizerSpec::File(tok)),
        val_fraction: Some(0.1),
        ..Default::default()
    };
    let offline = HubOptions::offline(&cache);
    let e = prepare_with(&cfg, &root.path().join("a"), &offline).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, DataError::IncompleteSource { count: 2, .. })
            && msg.contains("plain_text/train-b.parquet, plain_text/train-c.parquet")
            && msg.contains("--include 'plain_text/train-b.parquet'"),
        "{msg}"
    );

    // A damaged record is an error naming it, not a silently shorter listing.
    let good = std::fs::read(&record).unwrap();
    std::fs::write(&record, &good[..good.len() / 2]).unwrap();
    let msg = prepare_with(&cfg, &root.path().join("a"), &offline)
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&record.display().to_string()), "{msg}");

    // Without the record (a cache filled by other tools) the cached file alone is read:
    // the case the record exists for.
    std::fs::remove_file(&record).unwrap();
    let ds = prepare_with(&cfg, &root.path().join("b"), &offline).unwrap();
    let n: u64 = ds.meta().splits.values().map(|s| s.documents).sum();
    assert_eq!(n, 30);

    // Online again, the rest arrives and the record comes back: the offline prepare sees all.
    let hub = Hub::new(online(&cache, &endpoint)).unwrap();
    let listing = hub.list(&owt).unwrap();
    for n in names {
        hub.get(&listing, &format!("plain_text/{n}")).unwrap();
    }
    let ds = prepare_with(&cfg, &root.path().join("c"), &offline).unwrap();
    let n: u64 = ds.meta().splits.values().map(|s| s.documents).sum();
    assert_eq!(n, 90);
}
