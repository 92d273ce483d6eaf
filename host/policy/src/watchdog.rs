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
//!
//! Threads are reused: starting one per call (clone, stack mapping, guard page, signal stack)
//! cost about a third of a replayed engine cycle. A call takes an idle thread of the runtime's
//! or starts one; a thread that has been idle for a minute, or finds enough others idle, ends.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
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

/// Counts the abandoned calls of one runtime that are still running, and keeps its idle
/// evaluation threads.
#[derive(Debug, Default)]
pub struct Watchdog {
    stuck: Arc<AtomicUsize>,
    threads: Arc<Threads>,
}

/// A call as a thread runs it.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// Idle threads beyond this end at once instead of waiting for work.
const MAX_IDLE_THREADS: usize = 8;
/// An idle thread waits this long for work, then ends.
const IDLE_THREAD_LIFE: Duration = Duration::from_secs(60);

/// The idle evaluation threads: each waits on its own channel for one job at a time.
#[derive(Debug, Default)]
struct Threads {
    idle: Mutex<Vec<Idle>>,
    next_id: AtomicUsize,
}

/// An idle thread: where to hand it a job, and who it is (to take itself off the list).
#[derive(Debug)]
struct Idle {
    id: usize,
    jobs: mpsc::SyncSender<Job>,
}

impl Threads {
    /// Runs `job` on an idle thread, or on a new one when none is idle.
    fn start(self: &Arc<Self>, job: Job) -> std::io::Result<()> {
        let mut job = job;
        loop {
            let Some(thread) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
                break;
            };
            // A thread taken off the list waits for its job (see `serve`): the send fails only
            // if it died, and then the job comes back to try the next one.
            match thread.jobs.try_send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::TrySendError::Full(j) | mpsc::TrySendError::Disconnected(j)) => job = j,
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let threads = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("policy-eval".into())
            .spawn(move || {
                job();
                serve(&threads, id);
            })?;
        Ok(())
    }
}

/// A thread's life after its first job: back on the idle list, the next job, and so on until
/// it has been idle too long, there are enough idle threads, or the runtime is gone (its list
/// dropped, and with it the thread's channel).
fn serve(threads: &std::sync::Weak<Threads>, id: usize) {
    loop {
        let (tx, rx) = mpsc::sync_channel::<Job>(1);
        {
            let Some(pool) = threads.upgrade() else {
                return;
            };
            let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() >= MAX_IDLE_THREADS {
                return;
            }
            idle.push(Idle { id, jobs: tx });
        }
        let job = match rx.recv_timeout(IDLE_THREAD_LIFE) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let Some(pool) = threads.upgrade() else {
                    return;
                };
                let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
                match idle.iter().position(|t| t.id == id) {
                    // Still listed: nobody is about to hand it a job.
                    Some(at) => {
                        idle.swap_remove(at);
                        return;
                    }
                    // Taken off the list by a caller: its job is on the way (or the caller
                    // dropped the channel, and the job went to another thread).
                    None => {
                        drop(idle);
                        match rx.recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        }
                    }
                }
            }
        };
        job();
    }
}

impl Watchdog {
    /// Abandoned calls still running.
    pub fn stuck(&self) -> usize {
        self.stuck.load(Ordering::SeqCst)
    }

    /// Runs `call` on an evaluation thread and waits at most `deadline` for its result.
    /// `name` says what the call is when no thread can be started for it.
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
        self.threads
            .start(Box::new(move || {
                // A panic is carried to the caller, who resumes it, rather than lost; the
                // thread goes on serving.
                let value = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
                // The receiver is gone when the caller gave up: nothing to deliver.
                let _ = tx.send(value);
                if theirs.swap(DONE, Ordering::SeqCst) == ABANDONED {
                    counter.fetch_sub(1, Ordering::SeqCst);
                }
            }))
            .map_err(|e| Refusal::Spawn(format!("{name}: {e}")))?;
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
    fn calls_in_a_row_reuse_one_thread_and_calls_at_once_get_their_own() {
        let w = Watchdog::default();
        let first = w
            .run("t", Duration::from_secs(5), || std::thread::current().id())
            .unwrap();
        // The first call's thread lists itself idle just after answering.
        let until = Instant::now() + Duration::from_secs(5);
        while w.threads.idle.lock().unwrap().is_empty() && Instant::now() < until {
            std::thread::yield_now();
        }
        let second = w
            .run("t", Duration::from_secs(5), || std::thread::current().id())
            .unwrap();
        assert_eq!(first, second, "a call in a row starts no new thread");
        // Two calls inside at once: each needs a thread of its own.
        let both = Arc::new(std::sync::Barrier::new(2));
        let w = Arc::new(w);
        let other = {
            let (w, both) = (w.clone(), both.clone());
            std::thread::spawn(move || {
                w.run("t", Duration::from_secs(5), move || {
                    both.wait();
                    std::thread::current().id()
                })
            })
        };
        let mine = w.run("t", Duration::from_secs(5), move || {
            both.wait();
            std::thread::current().id()
        });
        assert_ne!(mine.unwrap(), other.join().unwrap().unwrap());
    }

    #[test]
    fn a_panicking_call_is_resumed_in_the_caller_and_its_thread_serves_on() {
        let w = Watchdog::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            w.run("t", Duration::from_secs(5), || -> u8 { panic!("inside") })
        }));
        assert!(r.is_err(), "the panic reaches the caller");
        assert_eq!(w.run("t", Duration::from_secs(5), || 5), Ok(5));
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
