//! The rendezvous of a multi-process job without MPI: rank 0 hands [`ID_BYTES`] opaque bytes
//! (the NCCL unique id) to every other rank over one TCP port. Rank 0 listens on
//! `0.0.0.0:port` ([`bind`], [`serve`]); each other rank connects to `MASTER_ADDR:port`,
//! retrying until the timeout, says who it is and gets the bytes ([`fetch`]).
//!
//! The port is `dist.rendezvous_port`, or `MASTER_PORT + 1`: never `MASTER_PORT` itself, where
//! torchrun's agent already listens ([`port_for`]). A peer's hello carries its rank, the world
//! size and a job token ([`job_token`]: the world size, the master address and port, and the
//! launcher's run id when there is one), so a process of another job, a rank out of range or
//! a rank already served is refused with a message sent back to it. std::net only.
//!
//! Wire format (little-endian): hello = `IRE1`, rank u32, world u32, token u64; reply = `0`
//! then the bytes, or `1`, a u16 length and the refusal in UTF-8.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::TrainError;

/// Length of what rank 0 hands out (an `ncclUniqueId`).
pub const ID_BYTES: usize = 128;

const MAGIC: &[u8; 4] = b"IRE1";
const HELLO_BYTES: usize = 20;
const RETRY: Duration = Duration::from_millis(200);

/// The launcher variables that name one job; the first one set joins the [`job_token`].
pub const RUN_ID_VARS: [&str; 3] = ["IRE_RUN_ID", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID"];

/// Where the ranks of one job meet, and how long they wait for each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meeting {
    /// Rank 0's host, as the others reach it (`MASTER_ADDR`).
    pub host: String,
    /// The rendezvous port ([`port_for`]).
    pub port: u16,
    /// This process's rank.
    pub rank: usize,
    /// Number of ranks.
    pub world: usize,
    /// The job token every rank must present ([`job_token`]).
    pub token: u64,
    /// How long rank 0 waits for everyone, and the others for rank 0.
    pub timeout: Duration,
}

/// The rendezvous port: `configured` (`dist.rendezvous_port`), else `MASTER_PORT + 1`.
pub fn port_for(configured: Option<u16>, master_port: u16) -> Result<u16, TrainError> {
    let key = "dist.rendezvous_port";
    let port = match configured {
        Some(p) => p,
        None => master_port.checked_add(1).ok_or_else(|| {
            TrainError::config(
                key,
                format!("MASTER_PORT is {master_port}, so MASTER_PORT + 1 is no port: set one"),
            )
        })?,
    };
    match port {
        0 => Err(TrainError::config(key, "a TCP port from 1 to 65535, got 0")),
        p if p == master_port => Err(TrainError::config(
            key,
            format!(
                "{p} is MASTER_PORT, where torchrun's agent listens: pick another port (the \
                 default is MASTER_PORT + 1)"
            ),
        )),
        p => Ok(p),
    }
}

/// The token of a job: FNV-1a over the world size, the master address and port, and
/// `run_id` (a launcher's job id, see [`RUN_ID_VARS`]). Equal on every rank of one job.
pub fn job_token(world: usize, host: &str, master_port: u16, run_id: Option<&str>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x0100_0000_01b3); // field separator
    };
    eat(&(world as u64).to_le_bytes());
    eat(host.as_bytes());
    eat(&master_port.to_le_bytes());
    eat(run_id.unwrap_or("").as_bytes());
    h
}

/// The first of [`RUN_ID_VARS`] set in this process's environment.
pub fn run_id_from_env() -> Option<String> {
    RUN_ID_VARS
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// Hands `bytes` out (rank 0) or fetches rank 0's (every other rank).
pub fn share(meeting: &Meeting, bytes: &[u8; ID_BYTES]) -> Result<[u8; ID_BYTES], TrainError> {
    if meeting.world <= 1 {
        return Ok(*bytes);
    }
    match meeting.rank {
        0 => {
            let listener = bind(meeting.port)?;
            serve(&listener, meeting, bytes)?;
            Ok(*bytes)
        }
        _ => fetch(meeting),
    }
}

/// Rank 0's listening socket on `0.0.0.0:port`.
pub fn bind(port: u16) -> Result<TcpListener, TrainError> {
    TcpListener::bind(("0.0.0.0", port)).map_err(|e| {
        TrainError::Collective(format!(
            "rank 0 cannot listen on 0.0.0.0:{port} for the rendezvous ({e}): the port is taken \
             or not allowed; set dist.rendezvous_port (or MASTER_PORT) to a free port"
        ))
    })
}

/// Rank 0: serves `bytes` to the other `meeting.world - 1` ranks on `listener`; returns when
/// each has been served once, or fails at the timeout naming the ranks that never came.
pub fn serve(
    listener: &TcpListener,
    meeting: &Meeting,
    bytes: &[u8; ID_BYTES],
) -> Result<(), TrainError> {
    let deadline = Instant::now() + meeting.timeout;
    let mut served = vec![false; meeting.world];
    served[0] = true;
    listener
        .set_nonblocking(true)
        .map_err(|e| serve_error(meeting, &format!("setting up the listener: {e}")))?;
    while served.iter().any(|s| !s) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Err(not_everyone_came(meeting, &served));
        };
        match listener.accept() {
            Ok((stream, _)) => {
                // A peer that fails mid-conversation simply connects again.
                let _ = answer(stream, meeting, bytes, &mut served, left);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(RETRY / 10),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(serve_error(
                    meeting,
                    &format!("accepting a connection: {e}"),
                ))
            }
        }
    }
    Ok(())
}

/// Reads one hello on `stream` and answers it: the bytes, or a refusal.
fn answer(
    mut stream: TcpStream,
    meeting: &Meeting,
    bytes: &[u8; ID_BYTES],
    served: &mut [bool],
    left: Duration,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let patience = left.clamp(Duration::from_millis(1), Duration::from_secs(10));
    stream.set_read_timeout(Some(patience))?;
    stream.set_write_timeout(Some(patience))?;
    let mut hello = [0u8; HELLO_BYTES];
    stream.read_exact(&mut hello)?;
    match check_hello(&hello, meeting, served) {
        Ok(rank) => {
            let mut reply = vec![0u8];
            reply.extend_from_slice(bytes);
            stream.write_all(&reply)?;
            stream.flush()?;
            served[rank] = true;
            Ok(())
        }
        Err(why) => {
            let why = why.as_bytes();
            let len = why.len().min(u16::MAX as usize);
            let mut reply = vec![1u8];
            reply.extend_from_slice(&(len as u16).to_le_bytes());
            reply.extend_from_slice(&why[..len]);
            stream.write_all(&reply)
        }
    }
}

/// The rank a valid hello announces, or why it is refused.
fn check_hello(
    hello: &[u8; HELLO_BYTES],
    meeting: &Meeting,
    served: &[bool],
) -> Result<usize, String> {
    let word =
        |at: usize| u32::from_le_bytes([hello[at], hello[at + 1], hello[at + 2], hello[at + 3]]);
    if &hello[..4] != MAGIC {
        return Err("not an ire rendezvous hello (another program on this port?)".into());
    }
    let (rank, world) = (word(4) as usize, word(8) as usize);
    let mut token = [0u8; 8];
    token.copy_from_slice(&hello[12..20]);
    let token = u64::from_le_bytes(token);
    if world != meeting.world {
        return Err(format!(
            "this process says the job has {world} ranks, rank 0 says {}: all ranks must be \
             started by the same launcher command",
            meeting.world
        ));
    }
    if token != meeting.token {
        return Err(format!(
            "wrong job token: this process belongs to another job (a different MASTER_ADDR, \
             MASTER_PORT or run id than rank 0's, which listens on port {})",
            meeting.port
        ));
    }
    if rank == 0 || rank >= meeting.world {
        return Err(format!(
            "rank {rank} is not one of ranks 1..{} of this job",
            meeting.world - 1
        ));
    }
    if served[rank] {
        return Err(format!(
            "rank {rank} has already joined: two processes were given the same rank"
        ));
    }
    Ok(rank)
}

fn serve_error(meeting: &Meeting, what: &str) -> TrainError {
    TrainError::Collective(format!(
        "rank 0, rendezvous on 0.0.0.0:{}: {what}",
        meeting.port
    ))
}

fn not_everyone_came(meeting: &Meeting, served: &[bool]) -> TrainError {
    let missing: Vec<String> = (0..served.len())
        .filter(|&r| !served[r])
        .map(|r| r.to_string())
        .collect();
    serve_error(
        meeting,
        &format!(
            "rank(s) {} did not come within {} s: check that all {} ranks were started, that \
             they see MASTER_ADDR={} and the same port, and that no firewall blocks port {}",
            missing.join(", "),
            meeting.timeout.as_secs_f64(),
            meeting.world,
            meeting.host,
            meeting.port
        ),
    )
}

/// Every rank but 0: connects to rank 0 (retrying until the timeout) and returns its bytes.
pub fn fetch(meeting: &Meeting) -> Result<[u8; ID_BYTES], TrainError> {
    let deadline = Instant::now() + meeting.timeout;
    let mut last = String::from("no attempt finished");
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Err(unreachable(meeting, &last));
        };
        match attempt(meeting, left) {
            Ok(Ok(bytes)) => return Ok(bytes),
            Ok(Err(refusal)) => {
                return Err(TrainError::Collective(format!(
                    "rank {}: rank 0 at {}:{} refused this process: {refusal}",
                    meeting.rank, meeting.host, meeting.port
                )))
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(RETRY.min(left));
    }
}

/// One connection: `Ok(Ok(bytes))`, `Ok(Err(refusal))`, or an I/O error worth a retry.
fn attempt(meeting: &Meeting, left: Duration) -> std::io::Result<Result<[u8; ID_BYTES], String>> {
    let addr = resolve(&meeting.host, meeting.port)?;
    let mut stream = TcpStream::connect_timeout(&addr, left.min(Duration::from_secs(2)))?;
    stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
    stream.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
    let mut hello = Vec::with_capacity(HELLO_BYTES);
    hello.extend_from_slice(MAGIC);
    hello.extend_from_slice(&(meeting.rank as u32).to_le_bytes());
    hello.extend_from_slice(&(meeting.world as u32).to_le_bytes());
    hello.extend_from_slice(&meeting.token.to_le_bytes());
    stream.write_all(&hello)?;
    let mut status = [0u8; 1];
    stream.read_exact(&mut status)?;
    if status[0] == 0 {
        let mut bytes = [0u8; ID_BYTES];
        stream.read_exact(&mut bytes)?;
        return Ok(Ok(bytes));
    }
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut why = vec![0u8; u16::from_le_bytes(len) as usize];
    stream.read_exact(&mut why)?;
    Ok(Err(String::from_utf8_lossy(&why).into_owned()))
}

fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} resolves to no address"),
        )
    })
}

fn unreachable(meeting: &Meeting, last: &str) -> TrainError {
    TrainError::Collective(format!(
        "rank {}: could not get the NCCL id from rank 0 at {}:{} within {} s (last error: \
         {last}): check that MASTER_ADDR={} is reachable from this node, that port {} is free on \
         rank 0's node and not firewalled (dist.rendezvous_port changes it), and that all {} \
         ranks were started",
        meeting.rank,
        meeting.host,
        meeting.port,
        meeting.timeout.as_secs_f64(),
        meeting.host,
        meeting.port,
        meeting.world
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meeting(port: u16, rank: usize, world: usize, timeout_ms: u64) -> Meeting {
        Meeting {
            host: "127.0.0.1".into(),
            port,
            rank,
            world,
            token: job_token(world, "127.0.0.1", 29500, Some("test")),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    fn id() -> [u8; ID_BYTES] {
        std::array::from_fn(|i| (i * 7 + 3) as u8)
    }

    /// A listener on a free port of 127.0.0.1, and the port.
    fn listen() -> (TcpListener, u16) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    #[test]
    fn every_rank_gets_rank_0s_bytes() {
        let (listener, port) = listen();
        let peers: Vec<_> = (1..3)
            .map(|r| std::thread::spawn(move || fetch(&meeting(port, r, 3, 10_000))))
            .collect();
        serve(&listener, &meeting(port, 0, 3, 10_000), &id()).unwrap();
        for p in peers {
            assert_eq!(p.join().unwrap().unwrap(), id());
        }
    }

    #[test]
    fn peers_retry_until_rank_0_listens() {
        let (listener, port) = listen();
        drop(listener);
        let peer = std::thread::spawn(move || fetch(&meeting(port, 1, 2, 10_000)));
        std::thread::sleep(Duration::from_millis(500));
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        serve(&listener, &meeting(port, 0, 2, 10_000), &id()).unwrap();
        assert_eq!(peer.join().unwrap().unwrap(), id());
    }

    #[test]
    fn a_peer_of_another_job_is_refused_and_rank_0_waits_for_the_right_one() {
        let (listener, port) = listen();
        let rank0 =
            std::thread::spawn(move || serve(&listener, &meeting(port, 0, 2, 10_000), &id()));
        let mut stranger = meeting(port, 1, 2, 10_000);
        stranger.token = job_token(2, "127.0.0.1", 29500, Some("another job"));
        let e = fetch(&stranger).unwrap_err().to_string();
        assert!(
            e.contains("refused") && e.contains("wrong job token"),
            "{e}"
        );
        assert_eq!(fetch(&meeting(port, 1, 2, 10_000)).unwrap(), id());
        rank0.join().unwrap().unwrap();
    }

    #[test]
    fn duplicate_and_out_of_range_ranks_are_refused() {
        let (listener, port) = listen();
        let rank0 =
            std::thread::spawn(move || serve(&listener, &meeting(port, 0, 3, 10_000), &id()));
        let bad = fetch(&meeting(port, 3, 3, 10_000)).unwrap_err().to_string();
        assert!(bad.contains("rank 3 is not one of ranks 1..2"), "{bad}");
        let world = {
            let mut m = meeting(port, 1, 4, 10_000);
            m.token = meeting(port, 1, 3, 0).token;
            fetch(&m).unwrap_err().to_string()
        };
        assert!(world.contains("4 ranks, rank 0 says 3"), "{world}");
        assert_eq!(fetch(&meeting(port, 1, 3, 10_000)).unwrap(), id());
        let dup = fetch(&meeting(port, 1, 3, 10_000)).unwrap_err().to_string();
        assert!(dup.contains("rank 1 has already joined"), "{dup}");
        assert_eq!(fetch(&meeting(port, 2, 3, 10_000)).unwrap(), id());
        rank0.join().unwrap().unwrap();
    }

    #[test]
    fn a_peer_that_reaches_no_one_fails_in_time_with_what_to_check() {
        let (listener, port) = listen();
        drop(listener);
        let started = Instant::now();
        let e = fetch(&meeting(port, 2, 3, 600)).unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            e.contains(&format!("127.0.0.1:{port}"))
                && e.contains("rank 2")
                && e.contains("MASTER_ADDR")
                && e.contains("all 3 ranks were started"),
            "{e}"
        );
    }

    #[test]
    fn rank_0_names_the_ranks_that_never_came() {
        let (listener, port) = listen();
        let e = serve(&listener, &meeting(port, 0, 3, 300), &id())
            .unwrap_err()
            .to_string();
        assert!(e.contains("rank(s) 1, 2 did not come"), "{e}");
    }

    #[test]
    fn the_port_is_never_master_port_and_tokens_tell_jobs_apart() {
        assert_eq!(port_for(None, 29500).unwrap(), 29501);
        assert_eq!(port_for(Some(40000), 29500).unwrap(), 40000);
        let e = port_for(Some(29500), 29500).unwrap_err().to_string();
        assert!(e.contains("torchrun"), "{e}");
        assert!(port_for(None, u16::MAX).is_err());
        let t = job_token(2, "node1", 29500, None);
        assert_eq!(t, job_token(2, "node1", 29500, None));
        assert_ne!(t, job_token(3, "node1", 29500, None));
        assert_ne!(t, job_token(2, "node2", 29500, None));
        assert_ne!(t, job_token(2, "node1", 29500, Some("42")));
    }
}
