//! Stopping on a signal: SIGINT (Ctrl-C), SIGTERM (what schedulers send first) and SIGHUP set a
//! flag that the training loop checks once per step (all ranks agree on it), so the run
//! finishes the step, writes a checkpoint and exits with [`EXIT_INTERRUPTED`]. A second signal
//! exits at once with [`EXIT_KILLED`], without a checkpoint.

use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status of `ire train` stopped by a signal after writing its checkpoint: the run can be
/// continued with `ire train --resume RUN_DIR` (75 = `EX_TEMPFAIL`, "try again later").
pub const EXIT_INTERRUPTED: u8 = 75;
/// Exit status after a second signal: no checkpoint of the current step was written (the
/// previous checkpoints are intact).
pub const EXIT_KILLED: u8 = 130;

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler for SIGINT, SIGTERM and SIGHUP (once per process).
pub fn install_stop_handler() {
    let _ = ctrlc::set_handler(|| {
        if STOP_REQUESTED.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond signal: exiting without a checkpoint");
            std::process::exit(EXIT_KILLED as i32);
        }
        eprintln!(
            "\nsignal received: finishing this step, writing a checkpoint, then exiting \
             (send it again to exit at once)"
        );
    });
}

/// Whether a stop was requested (by a signal, or by [`request_stop`]).
pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}

/// Asks the running loop to stop after the current step, as a signal would.
pub fn request_stop() {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}
