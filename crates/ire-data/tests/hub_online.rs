//! The online hub path against a local HTTP server on 127.0.0.1 (std's TcpListener) that
//! stalls, drops connections, cuts bodies short or answers: listing timeouts, retries with
//! backoff, sizes from the listing, a finished `.part` used without a download.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ire_data::hub::{Hub, HubRepo, RemoteFile};
use ire_data::tokenizer::sha256_hex;
use ire_data::{DataError, HubOptions};

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

fn read_head(s: &mut TcpStream) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).is_ok_and(|n| n == 1) {
        head.push(b[0]);
    }
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
