//! TensorBoard event files in `RUN_DIR/tb/`: the run's scalars (train and val loss, lr, gradient
//! norm, tokens/s, MFU, AdmIRE's mask fraction and κ_t) as TensorBoard reads them, so
//! `tensorboard --logdir runs/` (or `wandb sync --sync-tensorboard`) shows the curves.
//!
//! Written here rather than with a crate: the Rust TensorBoard writers on crates.io
//! (`tensorboard-rs`, `syntaxdot-summary`) are unmaintained since 2022 and pull a protobuf
//! runtime, while scalars need about a hundred lines. The format, from TensorFlow's
//! `record_writer.cc` and `event.proto`:
//!
//! - a file is a sequence of records `len: u64 LE | masked_crc32c(len): u32 LE | data |
//!   masked_crc32c(data): u32 LE`, where `masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`
//!   and crc32c is CRC-32 with the Castagnoli polynomial;
//! - each record's data is a protobuf `Event { double wall_time = 1; int64 step = 2;
//!   string file_version = 3 | Summary summary = 5 | SessionLog session_log = 7 }`, with
//!   `Summary { repeated Value value = 1 }`, `Value { string tag = 1; float simple_value = 2 }`
//!   and `SessionLog { SessionStatus status = 1 }` (START = 1);
//! - the first event of a file carries `file_version = "brain.Event:2"`.
//!
//! Resume: every start opens a new file (TensorBoard reads all files of the folder in name
//! order) whose second event is a `SessionLog START` at the first step this start will log;
//! TensorBoard then drops the earlier files' points at or after that step — the steps an
//! interrupted run logged after its last checkpoint, which the resumed run logs again (the
//! same rule as `metrics.jsonl`'s truncation; PyTorch's `SummaryWriter(purge_step=…)` does
//! the same).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::TrainError;

/// Appends scalar events to one event file.
pub struct EventWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl EventWriter {
    /// Creates a new event file in `dir` (created if missing) and writes its header: the file
    /// version, then a session start at `purge_from` (events of earlier files at this step or
    /// later are dropped by TensorBoard: pass the first step this run will log again).
    pub fn create(dir: &Path, purge_from: u64) -> Result<Self, TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "events.out.tfevents.{:010}.{}.{}.{}",
            now.as_secs(),
            ire_core::lock::host_name(),
            std::process::id(),
            now.subsec_nanos()
        );
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        let mut writer = Self { path, file };
        writer.write_event(&encode_event(wall_time(), 0, Payload::FileVersion))?;
        writer.write_event(&encode_event(
            wall_time(),
            purge_from,
            Payload::SessionStart,
        ))?;
        Ok(writer)
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event with `scalars` (tag, value) at `step`, flushed so that a crash loses
    /// nothing already written and TensorBoard sees it at once.
    pub fn scalars(&mut self, step: u64, scalars: &[(&str, f64)]) -> Result<(), TrainError> {
        if scalars.is_empty() {
            return Ok(());
        }
        self.write_event(&encode_event(wall_time(), step, Payload::Scalars(scalars)))
    }

    fn write_event(&mut self, event: &[u8]) -> Result<(), TrainError> {
        let record = frame_record(event);
        self.file
            .write_all(&record)
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What an event carries besides its time and step.
enum Payload<'a> {
    FileVersion,
    SessionStart,
    Scalars(&'a [(&'a str, f64)]),
}

/// The protobuf bytes of an `Event`.
fn encode_event(wall_time: f64, step: u64, payload: Payload) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(0x09); // field 1 (wall_time), fixed64
    out.extend_from_slice(&wall_time.to_le_bytes());
    out.push(0x10); // field 2 (step), varint
    put_varint(&mut out, step);
    match payload {
        Payload::FileVersion => put_bytes(&mut out, 0x1a, b"brain.Event:2"), // field 3
        Payload::SessionStart => put_bytes(&mut out, 0x3a, &[0x08, 0x01]), // field 7: status START
        Payload::Scalars(values) => {
            let mut summary = Vec::new();
            for (tag, value) in values {
                let mut v = Vec::new();
                put_bytes(&mut v, 0x0a, tag.as_bytes()); // Value.tag, field 1
                v.push(0x15); // Value.simple_value, field 2, fixed32
                v.extend_from_slice(&(*value as f32).to_le_bytes());
                put_bytes(&mut summary, 0x0a, &v); // Summary.value, field 1
            }
            put_bytes(&mut out, 0x2a, &summary); // field 5 (summary)
        }
    }
    out
}

/// A length-delimited field: its key byte, the length as a varint, the bytes.
fn put_bytes(out: &mut Vec<u8>, key: u8, bytes: &[u8]) {
    out.push(key);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One TFRecord: length, its masked CRC, the data, the data's masked CRC.
fn frame_record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0x82f6_3b78 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_values() {
        // The CRC catalogue's check value for CRC-32C, and RFC 3720's 32 zero bytes.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
    }

    #[test]
    fn the_masked_crc_matches_tensorboards_own() {
        // tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c (tensorboard 2.21).
        assert_eq!(masked_crc(b"abc"), 0x21f1_576e);
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn a_scalar_event_has_the_protobuf_bytes_of_event_proto() {
        let bytes = encode_event(1.5, 300, Payload::Scalars(&[("a", 2.0)]));
        let mut want = vec![0x09];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 0xac, 0x02]); // 300 = 0b10_0101100
                                                     // summary (field 5): one Value of 8 bytes: tag "a", simple_value 2.0f32
        want.extend_from_slice(&[0x2a, 10, 0x0a, 8, 0x0a, 1, b'a', 0x15]);
        want.extend_from_slice(&2.0f32.to_le_bytes());
        assert_eq!(bytes, want);
    }

    #[test]
    fn a_record_frames_its_data_with_length_and_checksums() {
        let record = frame_record(b"hello");
        assert_eq!(record.len(), 8 + 4 + 5 + 4);
        assert_eq!(&record[..8], &5u64.to_le_bytes());
        assert_eq!(
            &record[8..12],
            &masked_crc(&5u64.to_le_bytes()).to_le_bytes()
        );
        assert_eq!(&record[12..17], b"hello");
        assert_eq!(&record[17..], &masked_crc(b"hello").to_le_bytes());
    }

    #[test]
    fn a_file_starts_with_its_version_and_session_start_then_appends_scalars() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path(), 7).unwrap();
        w.scalars(7, &[("train/loss", 3.25)]).unwrap();
        w.scalars(8, &[]).unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let mut events = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            let data = &bytes[at + 12..at + 12 + len];
            let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
            assert_eq!(crc, masked_crc(data));
            events.push(data.to_vec());
            at += 16 + len;
        }
        assert_eq!(events.len(), 3, "version, session start, one scalar event");
        assert!(events[0].ends_with(b"brain.Event:2"));
        // Python's protobuf: Event(step=7, session_log=SessionLog(status=START)) without
        // wall_time serialises to 10 07 3a 02 08 01.
        assert!(events[1].ends_with(&[0x10, 7, 0x3a, 2, 0x08, 0x01]));
        assert!(events[2].windows(10).any(|w| w == b"train/loss"));
        assert!(events[2].ends_with(&3.25f32.to_le_bytes()));
    }
}
