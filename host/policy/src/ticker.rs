//! The epoch ticker: a thread that advances the engine's epoch every `tick` while at least one
//! store exists, so epoch deadlines (the wall-clock budget of a call) fire.
//!
//! It ticks only while stores are alive. An always-on 5 ms ticker woke 2,000 times per 10 s
//! poll interval in a daemon whose policy runs a few milliseconds per cycle, about 29 ms of
//! CPU per cycle at 1,000 nodes (docs/benchmarks.md, "Engine at scale"). Deadlines are set
//! relative to the current epoch when a store is made, so a ticker paused between
//! evaluations loses nothing: it is running again before the guest runs. An abandoned
//! evaluation (see `watchdog`) keeps its store, and so keeps the ticker going until it ends.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use wasmtime::Engine;

/// How long a paused ticker waits before it checks whether its engine is gone.
const PAUSED_CHECK: Duration = Duration::from_secs(1);

/// The ticker's shared state: how many stores are alive.
#[derive(Debug, Default)]
pub(crate) struct Ticker {
    live_stores: Mutex<usize>,
    woken: Condvar,
}

/// Keeps the ticker running while it lives; one per store.
#[derive(Debug)]
pub(crate) struct Ticking(Arc<Ticker>);

impl Ticker {
    /// Starts the thread that advances `engine`'s epoch every `tick` while a [`Ticking`] is
    /// alive. It ends once the engine is dropped. Without it deadlines never fire: a failed
    /// start is logged loudly, and the host stays up.
    pub(crate) fn start(engine: &Engine, tick: Duration) -> Arc<Ticker> {
        let ticker = Arc::new(Ticker::default());
        let (engine, state) = (engine.weak(), Arc::downgrade(&ticker));
        let spawned = std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || run(engine, state, tick));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the policy epoch ticker: policy time budgets are not enforced");
        }
        ticker
    }

    /// Marks a store as alive until the returned value is dropped.
    pub(crate) fn ticking(self: &Arc<Self>) -> Ticking {
        let mut n = self.live_stores.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        if *n == 1 {
            self.woken.notify_all();
        }
        Ticking(self.clone())
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        *self.live_stores.lock().unwrap()
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        let mut n = self.0.live_stores.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
    }
}

/// The ticker thread: waits while no store is alive, ticks while one is.
fn run(engine: wasmtime::EngineWeak, state: Weak<Ticker>, tick: Duration) {
    loop {
        let Some(ticker) = state.upgrade() else { return };
        {
            let n = ticker.live_stores.lock().unwrap_or_else(|p| p.into_inner());
            if *n == 0 {
                // Woken by the first new store, or after a while to see whether all is gone.
                drop(ticker.woken.wait_timeout(n, PAUSED_CHECK));
                continue;
            }
        }
        drop(ticker);
        std::thread::sleep(tick);
        match engine.upgrade() {
            Some(engine) => engine.increment_epoch(),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        Engine::new(&config).unwrap()
    }

    /// The epoch as a store sees it: a deadline of 1 tick set now has passed once it moved.
    fn epoch_moved_within(engine: &Engine, wait: Duration) -> bool {
        let mut store = wasmtime::Store::new(engine, ());
        store.set_epoch_deadline(1);
        let module = wasmtime::Module::new(engine, "(module (func (export \"f\")))").unwrap();
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let f = instance.get_typed_func::<(), ()>(&mut store, "f").unwrap();
        std::thread::sleep(wait);
        // An epoch check at function entry traps once the deadline has passed.
        f.call(&mut store, ()).is_err()
    }

    #[test]
    fn ticks_only_while_a_store_is_alive() {
        let engine = engine();
        let ticker = Ticker::start(&engine, Duration::from_millis(1));
        assert!(!epoch_moved_within(&engine, Duration::from_millis(50)), "no store alive: the epoch must stay");
        let ticking = ticker.ticking();
        assert_eq!(ticker.live(), 1);
        assert!(epoch_moved_within(&engine, Duration::from_millis(50)), "a store alive: the epoch must move");
        drop(ticking);
        assert_eq!(ticker.live(), 0);
        // Let a tick already under way land, then the epoch must stand still again.
        std::thread::sleep(Duration::from_millis(20));
        assert!(!epoch_moved_within(&engine, Duration::from_millis(50)), "the last store gone: the epoch must stay");
    }
}
