//! The collective watchdog: a thread that ends the job when a collective has waited longer
//! than `dist.timeout_s`. A rank that dies is noticed by its launcher (mpirun ends the job),
//! but a rank that hangs, or a dead peer under torchrun and NCCL, would leave the others
//! waiting forever; PyTorch's NCCL watchdog is the model. The caller arms it around each
//! collective with what is being waited for; on expiry it runs `on_expiry` (which prints,
//! aborts the engine — `MPI_Abort`, `ncclCommAbort` — and exits the process).

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Called once, from the watchdog's thread, with the description of the collective that
/// timed out.
pub type OnExpiry = Box<dyn Fn(&str) + Send>;

#[derive(Default)]
struct State {
    armed: Option<(String, Instant)>,
    stop: bool,
}

/// A running watchdog; dropping it stops its thread.
pub struct Watchdog {
    shared: Arc<(Mutex<State>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Starts the thread.
    pub fn start(timeout: Duration, on_expiry: OnExpiry) -> Self {
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ire-collective-watchdog".into())
            .spawn(move || watch(&theirs, timeout, on_expiry))
            .ok();
        Self { shared, thread }
    }

    /// Starts the clock for the collective `what`.
    pub fn arm(&self, what: &str) {
        self.set(|s| s.armed = Some((what.to_string(), Instant::now())));
    }

    /// The collective finished.
    pub fn disarm(&self) {
        self.set(|s| s.armed = None);
    }

    fn set(&self, f: impl FnOnce(&mut State)) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut s) = lock.lock() {
            f(&mut s);
        }
        wake.notify_all();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.set(|s| s.stop = true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(shared: &(Mutex<State>, Condvar), timeout: Duration, on_expiry: OnExpiry) {
    let (lock, wake) = shared;
    let Ok(mut state) = lock.lock() else { return };
    loop {
        if state.stop {
            return;
        }
        let wait = match &state.armed {
            None => timeout,
            Some((what, since)) => match timeout.checked_sub(since.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => {
                    let what = what.clone();
                    state.armed = None;
                    drop(state);
                    on_expiry(&what);
                    let Ok(s) = lock.lock() else { return };
                    state = s;
                    continue;
                }
            },
        };
        state = match wake.wait_timeout(state, wait) {
            Ok((s, _)) => s,
            Err(_) => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn fires_once_for_a_collective_that_outlives_the_timeout_and_never_for_a_quick_one() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let dog = Watchdog::start(
            Duration::from_millis(200),
            Box::new(move |what| {
                let _ = tx.lock().unwrap().send(what.to_string());
            }),
        );
        for _ in 0..5 {
            dog.arm("quick");
            std::thread::sleep(Duration::from_millis(20));
            dog.disarm();
        }
        assert!(
            rx.recv_timeout(Duration::from_millis(400)).is_err(),
            "fired for a quick collective"
        );
        let started = Instant::now();
        dog.arm("gradient all-reduce of step 7");
        let what = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the watchdog did not fire");
        assert_eq!(what, "gradient all-reduce of step 7");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(
            rx.recv_timeout(Duration::from_millis(400)).is_err(),
            "fired twice"
        );
        drop(dog); // stops the thread
    }
}
