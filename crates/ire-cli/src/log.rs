//! Where `ire`'s log goes. Always stderr: coloured only when stderr is a terminal and `NO_COLOR`
//! is unset or empty, printed above a progress bar when one is drawn. And, once `ire train`
//! knows its run directory (after the config is read; a config error only reaches stderr),
//! `RUN/train.log`: every log line without colour, including the progress lines a bar stands
//! for on the terminal, appended (never truncated), with a header line at each start and the
//! run's closing line (summary or error). Only rank 0 of a multi-process job writes it: the
//! other ranks' messages reach it through rank 0 (`rank R failed: …`) and their own stderr.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use ire_core::progress::{self, FILE_ONLY_TARGET};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The run's log file name, in the run directory.
pub const RUN_LOG_FILE: &str = "train.log";

/// The run's log file, once opened.
static FILE: Mutex<Option<File>> = Mutex::new(None);

/// Sets up logging: stderr now, the run's file once [`open_run_log`] names it.
pub fn init() {
    let level = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(use_colour())
        .with_writer(|| AboveBar)
        .with_filter(level().and(filter_fn(|m| m.target() != FILE_ONLY_TARGET)));
    let file = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(|| RunLog)
        .with_filter(level());
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .init();
}

/// Colour on stderr: only a terminal gets it, and `NO_COLOR` (any non-empty value) turns it
/// off (no-color.org).
fn use_colour() -> bool {
    colour(progress::stderr_is_terminal(), std::env::var_os("NO_COLOR"))
}

/// Colour for a stderr that is (or is not) a `terminal`, given `NO_COLOR`'s value.
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Opens `RUN_DIR/train.log` for appending (creating the folder) and writes the header line
/// of this start: the time, fresh or resumed, the process and the command line.
pub fn open_run_log(run_dir: &Path, resume: bool) -> anyhow::Result<()> {
    let path = run_dir.join(RUN_LOG_FILE);
    let open = || -> std::io::Result<File> {
        std::fs::create_dir_all(run_dir)?;
        OpenOptions::new().create(true).append(true).open(&path)
    };
    let file = open().with_context(|| format!("opening the run's log {}", path.display()))?;
    if let Ok(mut slot) = FILE.lock() {
        *slot = Some(file);
    }
    let how = if resume { "resume" } else { "fresh start" };
    let command: Vec<String> = std::env::args().skip(1).map(|a| quoted(&a)).collect();
    write_line(&format!(
        "==== {how}: ire {} (pid {}, ire {}) ====",
        command.join(" "),
        std::process::id(),
        env!("CARGO_PKG_VERSION")
    ));
    Ok(())
}

/// Appends `text` as one timestamped line to the run's log, when one is open.
pub fn write_line(text: &str) {
    let now = ire_core::time::utc_rfc3339(ire_core::time::now_unix());
    let _ = RunLog.write_all(format!("{now}  {text}\n").as_bytes());
}

/// An argument as a shell would need it (quoted when it holds a space or a quote).
fn quoted(arg: &str) -> String {
    match arg.contains([' ', '"', '\'']) || arg.is_empty() {
        true => format!("'{}'", arg.replace('\'', "'\\''")),
        false => arg.to_string(),
    }
}

/// stderr, with the progress bar (if any) cleared while a line is printed.
struct AboveBar;

impl Write for AboveBar {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        progress::suspend(|| std::io::stderr().write(buf))
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        progress::suspend(|| std::io::stderr().write_all(buf))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The run's log file; writes are dropped until it is opened (one `write_all` per line, under
/// the lock, so lines from several threads never mix).
struct RunLog;

impl Write for RunLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match FILE.lock() {
            Ok(mut slot) => match slot.as_mut() {
                Some(file) => file.write_all(buf),
                None => Ok(()),
            },
            Err(_) => Ok(()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_needs_a_terminal_and_no_non_empty_no_color() {
        assert!(colour(true, None));
        assert!(
            colour(true, Some("".into())),
            "an empty NO_COLOR is unset (no-color.org)"
        );
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None), "a file or a pipe gets no colour");
    }

    #[test]
    fn arguments_with_spaces_or_quotes_are_quoted_for_the_shell() {
        assert_eq!(quoted("run.dir=runs/x"), "run.dir=runs/x");
        assert_eq!(quoted("run.name=\"a b\""), "'run.name=\"a b\"'");
        assert_eq!(quoted("it's"), "'it'\\''s'");
        assert_eq!(quoted(""), "''");
    }
}
