//! One hub file into the HF cache over ire's own HTTP agent, so that a download cannot hang.
//!
//! hf-hub's agent has no connect or read timeout and cannot be given one, so a CDN connection
//! that stops sending would hang `ire prepare`. Here each connect and each read is limited to
//! [`HubOptions::timeout`]; a failed request is retried `retries` more times after
//! [`backoff`], and a retry resumes `blobs/<etag>.part` with `Range: bytes=N-` (a server that
//! ignores the range and answers 200 restarts it). A body that ends cleanly but short is
//! caught by comparing the `.part` with the size the hub announced, and resumed the same way.
//!
//! Blob name and size are found as hf-hub (and huggingface_hub) find them: a GET with
//! `Range: bytes=0-0` on `{endpoint}/{repo}/resolve/{commit}/{file}` that follows only relative
//! redirects, read for `x-linked-etag` (else `etag`), `x-linked-size` (else the
//! `Content-Range` total) and `x-repo-commit`. The listed commit is asked for, not the branch,
//! so the file belongs to the listed snapshot even if the branch moves meanwhile. The token is
//! `HF_TOKEN`, else `$HF_HOME/token` (hf-hub's lookup), sent as `Authorization: Bearer` and
//! kept across redirects to the same host only. `blobs/<etag>.lock` (flock, as hf-hub) keeps
//! two processes off one blob; the finished `.part` goes into the cache by [`finish_part`].

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ire_core::Progress;
use tracing::{info, warn};
use ureq::{Agent, AgentBuilder, RedirectAuthHeaders, Response};

use super::fetch::{backoff, finish_part};
use super::types::{hint, HubOptions, RemoteFile, RepoListing};
use crate::error::{DataError, Result};

/// Downloads hub files into the cache with timeouts, retries and resume.
pub(crate) struct Downloader {
    /// Follows redirects (the hub sends LFS files to its CDN).
    agent: Agent,
    /// For the metadata request, whose headers are the hub's own, not the CDN's.
    no_redirect: Agent,
    endpoint: String,
    token: Option<String>,
    retries: u32,
    backoff_base: Duration,
    progress: bool,
}

/// A failed attempt: what happened, and whether trying again may help.
struct Failure {
    message: String,
    retry: bool,
}

impl Failure {
    fn retry(message: String) -> Self {
        Failure {
            message,
            retry: true,
        }
    }

    fn fatal(message: String) -> Self {
        Failure {
            message,
            retry: false,
        }
    }
}

/// A request error; client errors other than timeout and rate limit are not retried.
fn failure(e: Box<ureq::Error>) -> Failure {
    let retry = match e.as_ref() {
        ureq::Error::Status(code, _) => !(400..500).contains(code) || *code == 408 || *code == 429,
        ureq::Error::Transport(_) => true,
    };
    Failure {
        message: e.to_string(),
        retry,
    }
}

fn agent(timeout: Duration, redirects: u32) -> Agent {
    AgentBuilder::new()
        .timeout_connect(timeout)
        .timeout_read(timeout)
        .timeout_write(timeout)
        .redirects(redirects)
        .redirect_auth_headers(RedirectAuthHeaders::SameHost)
        .try_proxy_from_env(true)
        .user_agent(concat!("ire/", env!("CARGO_PKG_VERSION")))
        .build()
}

impl Downloader {
    /// A downloader for the hub `opts` name (endpoint, token, timeout, retries).
    pub(crate) fn new(opts: &HubOptions) -> Self {
        let endpoint = opts.endpoint.as_deref().unwrap_or("https://huggingface.co");
        let token = opts
            .token
            .clone()
            .or_else(|| hf_hub::Cache::new(opts.cache_dir.clone()).token());
        Downloader {
            agent: agent(opts.timeout, 5),
            no_redirect: agent(opts.timeout, 0),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            retries: opts.retries,
            backoff_base: opts.backoff_base,
            progress: opts.progress,
        }
    }

    /// Downloads `file` of the listed snapshot into `cache`; returns its snapshot path.
    pub(crate) fn fetch(&self, cache: &Path, listing: &RepoListing, file: &str) -> Result<PathBuf> {
        let repo = &listing.repo;
        let err = |action: &str, message: String| DataError::Hub {
            repo: repo.describe(),
            revision: repo.revision.clone(),
            action: format!("{action} {file}"),
            message: hint(&message),
        };
        let url = format!(
            "{}/{}/resolve/{}/{file}",
            self.endpoint,
            repo.hf().url(),
            listing.commit
        );
        let (blob, size) = self
            .retrying(file, || self.metadata(&url, &listing.commit))
            .map_err(|m| err("asking the hub about", m))?;
        let size = size
            .or_else(|| listing.remote.get(file).map(|r| r.size))
            .ok_or_else(|| err("sizing", "no x-linked-size or Content-Range".into()))?;
        let remote = RemoteFile { size, blob };
        let blobs = cache.join(repo.cache_folder()).join("blobs");
        std::fs::create_dir_all(&blobs).map_err(|e| DataError::io(&blobs, "creating", e))?;
        let _lock = lock_blob(&blobs.join(format!("{}.lock", remote.blob)))?;
        if !blobs.join(&remote.blob).is_file() {
            let part = blobs.join(format!("{}.part", remote.blob));
            let mut progress = self.progress(file, size);
            info!(repo = %repo.id, file, bytes = size, "downloading");
            self.retrying(file, || self.fetch_part(&url, &part, size, &mut progress))
                .map_err(|m| err("downloading", m))?;
            progress.finish();
        }
        finish_part(cache, listing, file, &remote)?
            .ok_or_else(|| err("finishing", "the downloaded .part is gone".into()))
    }

    /// Runs `attempt` until it succeeds, fails for good, or `retries` more attempts failed.
    fn retrying<T>(
        &self,
        file: &str,
        mut attempt: impl FnMut() -> std::result::Result<T, Failure>,
    ) -> std::result::Result<T, String> {
        let mut n = 0;
        loop {
            match attempt() {
                Ok(v) => return Ok(v),
                Err(f) if f.retry && n < self.retries => {
                    let wait = backoff(self.backoff_base, n);
                    warn!(file, error = %f.message, wait_s = wait.as_secs_f32(), "download failed; retrying");
                    std::thread::sleep(wait);
                    n += 1;
                }
                Err(f) => return Err(format!("{} (after {} attempts)", f.message, n + 1)),
            }
        }
    }

    fn get(
        &self,
        agent: &Agent,
        url: &str,
        range: &str,
    ) -> std::result::Result<Response, Box<ureq::Error>> {
        let mut req = agent.get(url).set("Range", range);
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        req.call().map_err(Box::new)
    }

    /// Blob name (etag) and size (if announced) of the file at `url`.
    fn metadata(
        &self,
        url: &str,
        commit: &str,
    ) -> std::result::Result<(String, Option<u64>), Failure> {
        let mut url = url.to_string();
        let mut response = self
            .get(&self.no_redirect, &url, "bytes=0-0")
            .map_err(failure)?;
        // Relative redirects stay on the hub (a renamed repo); the CDN's are not followed.
        for _ in 0..5 {
            let next = match response.header("location") {
                Some(loc) if (300..400).contains(&response.status()) && loc.starts_with('/') => {
                    format!("{}{loc}", origin(&url))
                }
                _ => break,
            };
            url = next;
            response = self
                .get(&self.no_redirect, &url, "bytes=0-0")
                .map_err(failure)?;
        }
        let etag = response
            .header("x-linked-etag")
            .or_else(|| response.header("etag"))
            .map(|e| e.replace('"', ""))
            .unwrap_or_default();
        // The etag names a file under blobs/: refuse anything but a plain name.
        if etag.is_empty() || !etag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(Failure::fatal(format!(
                "no usable ETag from {url}: `{etag}`"
            )));
        }
        if let Some(c) = response.header("x-repo-commit").filter(|c| *c != commit) {
            return Err(Failure::fatal(format!(
                "{url} is at commit {c}, not {commit}"
            )));
        }
        let size = response
            .header("x-linked-size")
            .and_then(|s| s.trim().parse().ok())
            .or_else(|| total_of(response.header("content-range")?));
        Ok((etag, size))
    }

    /// One attempt at completing `part` (`size` bytes), resuming from what it holds.
    fn fetch_part(
        &self,
        url: &str,
        part: &Path,
        size: u64,
        progress: &mut Progress,
    ) -> std::result::Result<(), Failure> {
        let local = |e: std::io::Error| Failure::fatal(format!("{}: {e}", part.display()));
        let mut out = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(part)
            .map_err(local)?;
        let mut start = out.metadata().map_err(local)?.len();
        if start > size {
            start = 0; // longer than the file: not a prefix of it
        }
        if start == size {
            return Ok(());
        }
        let response = match self.get(&self.agent, url, &format!("bytes={start}-")) {
            Ok(r) => r,
            Err(e) if matches!(*e, ureq::Error::Status(416, _)) => {
                out.set_len(0).map_err(local)?;
                return Err(Failure::retry(format!(
                    "the server refused bytes={start}- (416); restarting"
                )));
            }
            Err(e) => return Err(failure(e)),
        };
        let from = resume_offset(&response, start)?;
        out.set_len(from).map_err(local)?;
        out.seek(SeekFrom::Start(from)).map_err(local)?;
        copy_body(response.into_reader(), &mut out, (from, progress), &local)?;
        let len = out.metadata().map_err(local)?.len();
        if len > size {
            out.set_len(0).map_err(local)?;
        }
        match len.cmp(&size) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => Err(Failure::retry(format!(
                "the body ended after {len} of {size} bytes"
            ))),
            std::cmp::Ordering::Greater => Err(Failure::retry(format!(
                "the body ran to {len} bytes, past the {size} announced"
            ))),
        }
    }

    /// The download's progress: a bar on a terminal (when `progress` is on), else a line
    /// every 10 s.
    fn progress(&self, file: &str, size: u64) -> Progress {
        let bar = self.progress && ire_core::progress::stderr_is_terminal();
        let cadence = ire_core::Cadence {
            steps: 0,
            seconds: 10.0,
        };
        Progress::new(&format!("downloading {file}:"), 0, size, cadence, bar).in_bytes()
    }
}

/// Where the body of an answer to `bytes={start}-` begins: `start` for a 206 that says so,
/// 0 for a 200 (the server ignored the range).
fn resume_offset(response: &Response, start: u64) -> std::result::Result<u64, Failure> {
    match response.status() {
        200 => {
            if start > 0 {
                warn!(
                    start,
                    "the server ignored the Range header; downloading from the start"
                );
            }
            Ok(0)
        }
        206 => match response.header("content-range").and_then(first_of) {
            Some(first) if first != start => Err(Failure::retry(format!(
                "asked for bytes={start}-, got a range from {first}"
            ))),
            _ => Ok(start),
        },
        s => Err(Failure::retry(format!(
            "unexpected status {s} for bytes={start}-"
        ))),
    }
}

/// Appends the body to `out`, which holds `at` bytes, and shows the progress; a read error
/// (timeout, closed connection) may be retried.
fn copy_body(
    mut body: impl Read,
    out: &mut File,
    (mut at, progress): (u64, &mut Progress),
    local: &dyn Fn(std::io::Error) -> Failure,
) -> std::result::Result<(), Failure> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::retry(format!("reading the body: {e}"))),
        };
        out.write_all(&buf[..n]).map_err(local)?;
        at += n as u64;
        progress.update(at, String::new);
    }
}

/// `bytes 0-0/1234` → 1234.
fn total_of(content_range: &str) -> Option<u64> {
    content_range.rsplit('/').next()?.trim().parse().ok()
}

/// `bytes 100-1233/1234` → 100.
fn first_of(content_range: &str) -> Option<u64> {
    let range = content_range.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

/// `scheme://host[:port]` of `url`.
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    url[after..].find('/').map_or(url, |i| &url[..after + i])
}

/// Takes `blobs/<etag>.lock`; waits (saying so) while another process downloads the blob.
fn lock_blob(path: &Path) -> Result<File> {
    let f = File::create(path).map_err(|e| DataError::io(path, "creating", e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => {
            info!(lock = %path.display(), "another process is downloading this file; waiting");
            f.lock().map_err(|e| DataError::io(path, "locking", e))?;
            Ok(f)
        }
        Err(TryLockError::Error(e)) => Err(DataError::io(path, "locking", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_and_origin_are_parsed() {
        assert_eq!(total_of("bytes 0-0/1234"), Some(1234));
        assert_eq!(total_of("bytes 0-0/*"), None);
        assert_eq!(first_of("bytes 100-1233/1234"), Some(100));
        assert_eq!(first_of("items 1-2/3"), None);
        assert_eq!(origin("http://127.0.0.1:81/a/b?c"), "http://127.0.0.1:81");
        assert_eq!(origin("https://huggingface.co"), "https://huggingface.co");
    }
}
