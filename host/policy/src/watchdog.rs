//! The watchdog: a policy call runs on a thread of its own and the caller waits for it with a
//! deadline. Past the deadline the caller goes on and the call is abandoned.
//!
//! Fuel and the epoch deadline stop guest code; the sandbox has no host call that blocks
//! (see `clocks`). The watchdog is the last line for anything else (a wasmtime or WASI bug,
//! a host call we did not foresee): whatever happens inside, the caller gets an answer within
//! the deadline. An abandoned call keeps its own thread and its own store, and holds no lock
//! of the caller's; it ends when its code does. The number of abandoned calls still running
//! is capped per runtime, so a policy that wedges every call cannot pile up threads: past the
//! cap, calls are refused at once until the stuck ones end.
//!
//! Waiting inside a tokio multi-thread runtime goes through `block_in_place`, so the worker's
//! other tasks move to another worker while this one waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Abandoned calls allowed to run at once before new calls are refused.
pub const MAX_ABANDONED: usize = 4;

/// Why the watchdog gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The call did not return within the deadline and was abandoned.
    Abandoned(Duration),
    /// Too many earlier calls are still stuck; this one was not started.
    TooManyStuck(usize),
    /// No thread could be started.
    Spawn(String),
}

/// Counts the abandoned calls of one runtime that are still running.
#[derive(Debug, Default)]
pub struct Watchdog {
    stuck: Arc<AtomicUsize>,
}

impl Watchdog {
    /// Abandoned calls still running.
    pub fn stuck(&self) -> usize {
        self.stuck.load(Ordering::SeqCst)
    }

    /// Runs `call` on a new thread and waits at most `deadline` for its result.
    pub fn run<T: Send + 'static>(
        &self,
        name: &str,
        deadline: Duration,
        call: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Refusal> {
        let stuck = self.stuck();
        if stuck >= MAX_ABANDONED {
            return Err(Refusal::TooManyStuck(stuck));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        // Who finished first: the call (DONE) or the caller's patience (ABANDONED).
        let state = Arc::new(AtomicU8::new(RUNNING));
        let (theirs, counter) = (state.clone(), self.stuck.clone());
        std::thread::Builder::new()
            .name(format!("policy-{name}"))
            .spawn(move || {
                // A panic is carried to the caller, who resumes it, rather than lost.
                let value = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
                // The receiver is gone when the caller gave up: nothing to deliver.
                let _ = tx.send(value);
                if theirs.swap(DONE, Ordering::SeqCst) == ABANDONED {
                    counter.fetch_sub(1, Ordering::SeqCst);
                }
            })
            .map_err(|e| Refusal::Spawn(e.to_string()))?;
        let delivered =
            |v: std::thread::Result<T>| v.unwrap_or_else(|p| std::panic::resume_unwind(p));
        if let Ok(v) = wait(|| rx.recv_timeout(deadline)) {
            return Ok(delivered(v));
        }
        // Counted before it is marked, so the thread's decrement can never come first.
        self.stuck.fetch_add(1, Ordering::SeqCst);
        match state.compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => Err(Refusal::Abandoned(deadline)),
            Err(_) => {
                // It finished just after the timeout; its answer is in the channel.
                self.stuck.fetch_sub(1, Ordering::SeqCst);
                rx.recv()
                    .map(delivered)
                    .map_err(|_| Refusal::Abandoned(deadline))
            }
        }
    }
}

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

/// Blocks on `f`, telling a tokio multi-thread runtime first so its worker is not held.
fn wait<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_quick_call_answers() {
        let w = Watchdog::default();
        assert_eq!(w.run("t", Duration::from_secs(5), || 7), Ok(7));
        assert_eq!(w.stuck(), 0);
    }

    #[test]
    fn a_stuck_call_is_abandoned_at_the_deadline_and_uncounted_when_it_ends() {
        let w = Watchdog::default();
        let (release, gate) = mpsc::channel::<()>();
        let started = Instant::now();
        let r = w.run("t", Duration::from_millis(100), move || {
            let _ = gate.recv(); // a host call that blocks until released
            1
        });
        let took = started.elapsed();
        assert_eq!(r, Err(Refusal::Abandoned(Duration::from_millis(100))));
        assert!(took < Duration::from_secs(3), "waited {took:?}");
        assert_eq!(w.stuck(), 1);
        release.send(()).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while w.stuck() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(w.stuck(), 0, "the released call is no longer counted");
    }

    #[test]
    fn too_many_stuck_calls_refuse_new_ones_at_once() {
        let w = Watchdog::default();
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        for _ in 0..MAX_ABANDONED {
            let gate = gate.clone();
            let r = w.run("t", Duration::from_millis(20), move || {
                let _ = gate.lock().unwrap().recv();
            });
            assert!(matches!(r, Err(Refusal::Abandoned(_))));
        }
        let started = Instant::now();
        assert_eq!(
            w.run("t", Duration::from_secs(60), || ()),
            Err(Refusal::TooManyStuck(MAX_ABANDONED))
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(release); // every stuck call ends
        let until = Instant::now() + Duration::from_secs(10);
        while w.stuck() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(w.stuck(), 0);
        assert_eq!(w.run("t", Duration::from_secs(5), || 3), Ok(3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_does_not_hold_a_runtime_worker() {
        let w = Watchdog::default();
        let ticker = tokio::spawn(async {
            let mut n = 0;
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                n += 1;
            }
            n
        });
        let r = w.run("t", Duration::from_millis(300), || {
            std::thread::sleep(Duration::from_secs(2));
        });
        assert!(matches!(r, Err(Refusal::Abandoned(_))));
        assert_eq!(ticker.await.unwrap(), 10);
    }
}
