//! The resource limits of one policy evaluation: memory, fuel, time, instances, log volume
//! and answer size. Shared by the runtime, which configures wasmtime with them, and the
//! sandbox, which enforces them inside each store.

use std::time::Duration;

/// Resource limits applied to every policy evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Linear memory a policy may grow to, in bytes (default 64 MiB).
    pub memory_bytes: u64,
    /// The policy's CPU budget per call (`configure`, `scale`, `place`), in wasmtime fuel:
    /// about one unit per wasm instruction, so the same policy on the same input always
    /// uses the same fuel, however busy the machine. Default [`DEFAULT_FUEL`].
    pub fuel: u64,
    /// Wall-clock backstop per call, enforced with epochs (default 5 s). Fuel is the budget;
    /// this only catches what fuel cannot, and is generous so that a policy within its fuel
    /// is never cut off on a loaded machine. Precision is one `epoch_tick`.
    pub deadline: Duration,
    /// Period of the epoch ticker thread (default 5 ms).
    pub epoch_tick: Duration,
    /// Evaluations that may run at once (instance pool size, default 16). One more fails with
    /// an `instantiate` error rather than waiting.
    pub max_instances: u32,
    /// Log lines a policy may write per evaluation before the rest are dropped (default 50).
    pub max_log_lines: u32,
    /// Log lines a policy may write per minute across evaluations (default 120), refilling a
    /// bucket of `log_burst` lines.
    pub log_lines_per_minute: u32,
    /// Log lines a quiet policy may write at once (default 60).
    pub log_burst: u32,
    /// Most bytes the host copies out of the guest at once: one `log` call's arguments, or
    /// one function's whole answer (default 1 MiB). Set as the store's hostcall fuel.
    pub max_answer_bytes: usize,
    /// Bytes of each pooled memory slot kept resident and zeroed with memset between
    /// evaluations instead of being returned to the kernel (default 2 MiB): cheaper than
    /// page-faulting the same pages back in on every evaluation.
    pub keep_resident_bytes: usize,
    /// Whether each evaluation runs on a watchdog thread ([`crate::watchdog`]; the default)
    /// or on the caller's. Offline callers (a replay's million evaluations) may run inline:
    /// fuel and the epoch deadline still stop guest code, and what only the watchdog guards
    /// against, a host call that never returns, would hang the caller instead of the daemon.
    /// The hand-off costs two thread wake-ups per evaluation, a quarter of a replayed cycle.
    pub watchdog_thread: bool,
}

/// Default fuel per call: 2,000,000,000 units, about 200 ms of tight computation on the
/// reference machine (2-core AMD EPYC, some 10 units per ns; docs/benchmarks.md), over 500
/// times what the default policy's `scale` uses at 1,000 nodes and 5,000 queued builds.
pub const DEFAULT_FUEL: u64 = 2_000_000_000;

/// Default wall-clock backstop per call: 5 s, several times what the whole default fuel
/// takes on a 2-core machine at load average 8 (docs/benchmarks.md).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            fuel: DEFAULT_FUEL,
            deadline: DEFAULT_DEADLINE,
            epoch_tick: Duration::from_millis(5),
            max_instances: 16,
            max_log_lines: 50,
            log_lines_per_minute: 120,
            log_burst: 60,
            max_answer_bytes: 1 << 20,
            keep_resident_bytes: 2 << 20,
            watchdog_thread: true,
        }
    }
}

impl Limits {
    /// How long a caller waits for a whole evaluation (instantiate, `configure`, the call)
    /// before the watchdog abandons it: both calls' deadlines plus one second.
    pub fn watchdog(&self) -> Duration {
        self.deadline * 2 + Duration::from_secs(1)
    }
}
