//! Per-action call counters, read by the metrics exporter and by benchmarks.
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Counters of one API action since the client was built.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ActionStats {
    pub action: String,
    /// Logical calls made by the caller (one per method call / page).
    pub calls: u64,
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Requests that were retries.
    pub retries: u64,
    /// Requests answered with a throttling error.
    pub throttled: u64,
    /// Calls that finally failed (after retries).
    pub errors: u64,
    /// Final failures by error code.
    pub errors_by_code: BTreeMap<String, u64>,
}

/// Thread-safe counters keyed by action.
#[derive(Debug, Default)]
pub struct Stats(Mutex<BTreeMap<String, ActionStats>>);

impl Stats {
    fn with(&self, action: &str, f: impl FnOnce(&mut ActionStats)) {
        let mut map = self.0.lock().expect("stats lock poisoned");
        let entry = map
            .entry(action.to_string())
            .or_insert_with(|| ActionStats {
                action: action.to_string(),
                ..Default::default()
            });
        f(entry);
    }

    pub(crate) fn call(&self, action: &str) {
        self.with(action, |s| s.calls += 1);
    }
    pub(crate) fn request(&self, action: &str, is_retry: bool) {
        self.with(action, |s| {
            s.requests += 1;
            if is_retry {
                s.retries += 1;
            }
        });
    }
    pub(crate) fn throttled(&self, action: &str) {
        self.with(action, |s| s.throttled += 1);
    }
    pub(crate) fn error(&self, action: &str, code: &str) {
        self.with(action, |s| {
            s.errors += 1;
            *s.errors_by_code.entry(code.to_string()).or_default() += 1;
        });
    }

    /// A snapshot of all counters, sorted by action.
    pub fn snapshot(&self) -> Vec<ActionStats> {
        self.0
            .lock()
            .expect("stats lock poisoned")
            .values()
            .cloned()
            .collect()
    }
}
