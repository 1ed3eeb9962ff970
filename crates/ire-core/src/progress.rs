//! Progress of a long command, one mechanism for every command: an indicatif bar when stderr is
//! a terminal, and otherwise a plain `tracing` line every so many steps or seconds, whichever
//! comes first (logs kept in files — nohup, Slurm — get lines, not bar redraws).
//!
//! A line reads `PREFIX POS/TOTAL  MESSAGE  elapsed 2m10s  ETA 15m40s`; the caller gives the
//! prefix (`step`, `sharpness step-000100: gradient`) and the message. Work of unknown size
//! (total 0) reads `PREFIX  MESSAGE  elapsed 2m10s`, under a spinner on a terminal. With a bar, the same
//! lines are still emitted on their cadence under the target [`FILE_ONLY_TARGET`], which a
//! log file keeps and the terminal's layer leaves out (the bar shows them there). Log lines
//! written to the terminal while a bar is drawn go through [`suspend`], so they print above it.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// The `tracing` target of progress lines that only a log file should keep (a bar shows them
/// on the terminal).
pub const FILE_ONLY_TARGET: &str = "ire_core::progress::bar";

/// The bar being drawn, if any, so that other output can be printed above it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `f` (a write to stderr) with the active bar, if any, cleared for its duration.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = ACTIVE.lock().ok().and_then(|b| b.clone());
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// Whether stderr is a terminal (a bar can be drawn there).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// When a plain progress line is due: every `steps` steps (0: not by steps) or every `seconds`
/// seconds, whichever comes first. The first and the last position always get one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cadence {
    /// A line every this many steps; 0 counts time only.
    pub steps: u64,
    /// A line at least this often, in seconds.
    pub seconds: f64,
}

impl Default for Cadence {
    /// Every 30 seconds.
    fn default() -> Self {
        Self {
            steps: 0,
            seconds: 30.0,
        }
    }
}

/// One command's progress towards `total` (see the module docs).
pub struct Progress {
    prefix: String,
    total: u64,
    start: u64,
    /// The last position this process reaches (`total` unless it stops early).
    end: u64,
    cadence: Cadence,
    bar: Option<ProgressBar>,
    started: Instant,
    /// The position and time of the last line, once one was written.
    last_line: Option<(u64, Instant)>,
    /// Positions are bytes: lines show `12.3/100.0 MB`.
    bytes: bool,
}

impl Progress {
    /// Progress from `start` (a resumed run's step) to `total` (0: unknown), with a bar when
    /// `bar` is true (callers pass [`stderr_is_terminal`], or false when asked for no bar).
    pub fn new(prefix: &str, start: u64, total: u64, cadence: Cadence, bar: bool) -> Self {
        let bar = bar.then(|| {
            let (pb, template) = match total {
                0 => (
                    ProgressBar::new_spinner(),
                    "{spinner} {prefix}  {msg}  [{elapsed}]",
                ),
                _ => (
                    ProgressBar::new(total).with_position(start),
                    "{bar:30} {prefix} {pos}/{len}  {msg}  [{elapsed} < {eta}]",
                ),
            };
            let pb = match ProgressStyle::with_template(template) {
                Ok(style) => pb.with_style(style),
                Err(_) => pb,
            };
            let pb = pb.with_prefix(prefix.to_string());
            if let Ok(mut active) = ACTIVE.lock() {
                *active = Some(pb.clone());
            }
            pb
        });
        Self {
            prefix: prefix.to_string(),
            total,
            start,
            end: total,
            cadence,
            bar,
            started: Instant::now(),
            last_line: None,
            bytes: false,
        }
    }

    /// Positions count bytes: lines read `12.3/100.0 MB`, the bar shows sizes and a rate.
    pub fn in_bytes(mut self) -> Self {
        self.bytes = true;
        if let Some(bar) = &self.bar {
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:30} {prefix} {bytes}/{total_bytes} ({bytes_per_sec})  {msg}  [{elapsed} < {eta}]",
            ) {
                bar.set_style(style);
            }
        }
        self
    }

    /// Stops at `end` before `total` (a run stopped early): `end` gets a line too.
    pub fn ending_at(mut self, end: u64) -> Self {
        self.end = end.min(self.total);
        self
    }

    /// Progress of a command: a bar on a terminal, else a line every 10 seconds.
    pub fn command(prefix: &str, total: u64) -> Self {
        let cadence = Cadence {
            steps: 0,
            seconds: 10.0,
        };
        Self::new(prefix, 0, total, cadence, stderr_is_terminal())
    }

    /// Moves to `pos`; `message` (called only when shown) is the bar's message and the
    /// middle of the line. Returns whether a line was written now (callers that average over
    /// the time between lines start a new window then).
    pub fn update(&mut self, pos: u64, message: impl FnOnce() -> String) -> bool {
        let now = Instant::now();
        let due = self.due(pos, now);
        if self.bar.is_none() && !due {
            return false;
        }
        let message = message();
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
            bar.set_message(message.clone());
        }
        if !due {
            return false;
        }
        let line = self.line(pos, &message, now);
        match self.bar {
            Some(_) => tracing::info!(target: FILE_ONLY_TARGET, "{line}"),
            None => tracing::info!("{line}"),
        }
        self.last_line = Some((pos, now));
        true
    }

    /// Whether a line is due at `pos` (see [`Cadence`]).
    fn due(&self, pos: u64, now: Instant) -> bool {
        let Some((last_pos, last_time)) = self.last_line else {
            return true;
        };
        let by_steps = self.cadence.steps > 0 && pos >= last_pos + self.cadence.steps;
        let by_time = now.duration_since(last_time).as_secs_f64() >= self.cadence.seconds;
        (self.total > 0 && pos >= self.end) || by_steps || by_time
    }

    /// `PREFIX POS/TOTAL  MESSAGE  elapsed E  ETA T`, the ETA from the mean pace since the
    /// start (of this process; a resumed run counts from its checkpoint).
    fn line(&self, pos: u64, message: &str, now: Instant) -> String {
        let elapsed = now.duration_since(self.started);
        if self.total == 0 {
            let elapsed = format_duration(elapsed);
            return format!("{}  {message}  elapsed {elapsed}", self.prefix);
        }
        let done = pos.saturating_sub(self.start);
        let left = self.total.saturating_sub(pos);
        let eta = match done {
            0 => "?".to_string(),
            _ => format_duration(elapsed.mul_f64(left as f64 / done as f64)),
        };
        let mut line = match self.bytes {
            true => format!(
                "{} {:.1}/{:.1} MB",
                self.prefix,
                pos as f64 / 1e6,
                self.total as f64 / 1e6
            ),
            false => format!("{} {pos}/{}", self.prefix, self.total),
        };
        if !message.is_empty() {
            line.push_str("  ");
            line.push_str(message);
        }
        line.push_str(&format!(
            "  elapsed {}  ETA {eta}",
            format_duration(elapsed)
        ));
        line
    }

    /// Clears the bar (lines need no ending).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if let Ok(mut active) = ACTIVE.lock() {
                *active = None;
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A duration as people read it: `42s`, `2m10s`, `3h05m`, `2d04h`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}

/// A count with thousands separators: `8,210`, `1,234,567`.
pub fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_seconds_minutes_hours_and_days() {
        assert_eq!(format_duration(Duration::from_millis(400)), "0s");
        assert_eq!(format_duration(Duration::from_secs(42)), "42s");
        assert_eq!(format_duration(Duration::from_secs(130)), "2m10s");
        assert_eq!(
            format_duration(Duration::from_secs(3 * 3600 + 5 * 60 + 59)),
            "3h05m"
        );
        assert_eq!(
            format_duration(Duration::from_secs(2 * 86_400 + 4 * 3600)),
            "2d04h"
        );
    }

    #[test]
    fn counts_get_a_comma_every_three_digits() {
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(8_210), "8,210");
        assert_eq!(format_count(1_234_567), "1,234,567");
    }

    #[test]
    fn lines_come_at_the_first_position_every_n_steps_and_at_the_end() {
        let cadence = Cadence {
            steps: 4,
            seconds: 1e9,
        };
        let mut p = Progress::new("step", 2, 12, cadence, false);
        let shown: Vec<u64> = (3..=12).filter(|&s| p.update(s, String::new)).collect();
        assert_eq!(shown, vec![3, 7, 11, 12]);
    }

    #[test]
    fn a_zero_second_cadence_writes_every_update_and_the_line_has_its_parts() {
        let cadence = Cadence {
            steps: 0,
            seconds: 0.0,
        };
        let mut p = Progress::new("probe", 0, 10, cadence, false);
        assert!((1..=3).all(|s| p.update(s, String::new)));
        let line = p.line(5, "loss 1.0000", p.started + Duration::from_secs(10));
        assert_eq!(line, "probe 5/10  loss 1.0000  elapsed 10s  ETA 10s");
        assert!(p.line(0, "", p.started).ends_with("ETA ?"));
    }

    #[test]
    fn byte_positions_read_as_megabytes() {
        let p = Progress::new(
            "downloading a.parquet:",
            0,
            80_000_000,
            Cadence::default(),
            false,
        )
        .in_bytes();
        let line = p.line(20_000_000, "", p.started + Duration::from_secs(5));
        assert_eq!(
            line,
            "downloading a.parquet: 20.0/80.0 MB  elapsed 5s  ETA 15s"
        );
    }

    #[test]
    fn work_of_unknown_size_gets_lines_by_time_without_a_total() {
        let cadence = Cadence {
            steps: 0,
            seconds: 1e9,
        };
        let mut p = Progress::new("tokenizing", 0, 0, cadence, false);
        let shown: Vec<u64> = (1..=5).filter(|&s| p.update(s, String::new)).collect();
        assert_eq!(shown, vec![1], "the first, then only by time");
        let line = p.line(5, "5 MB of text", p.started + Duration::from_secs(70));
        assert_eq!(line, "tokenizing  5 MB of text  elapsed 1m10s");
    }
}
