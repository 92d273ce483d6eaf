//! Retry policy: bounded exponential backoff with jitter (via `backon`) for throttling and
//! transient errors. Capacity, credential and request errors are never retried.
use std::time::Duration;

use backon::ExponentialBuilder;

/// The default retry budget: with the default 10 s read timeout, a silent endpoint is
/// reported after one attempt, a refused connection after five quick retries, both
/// well within 20 s.
pub const DEFAULT_RETRY_BUDGET_MS: u64 = 8_000;

/// How hard to retry. The defaults suit the real cloud; tests shrink the delays.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = never retry).
    pub max_retries: usize,
    /// First backoff delay, in milliseconds.
    pub min_delay_ms: u64,
    /// Upper bound of one backoff delay, in milliseconds.
    pub max_delay_ms: u64,
    /// Retry budget, in milliseconds: no retry starts later than this after the first
    /// attempt did, so a dead or silent endpoint is reported within about the budget plus one
    /// read timeout, however many retries `max_retries` allows.
    pub budget_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            min_delay_ms: 200,
            max_delay_ms: 10_000,
            budget_ms: DEFAULT_RETRY_BUDGET_MS,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// Fast retries for tests against the emulator.
    pub fn fast() -> Self {
        Self {
            max_retries: 5,
            min_delay_ms: 5,
            max_delay_ms: 50,
            budget_ms: DEFAULT_RETRY_BUDGET_MS,
        }
    }

    /// Whether a retry after `delay` still starts within the budget counted from `started`.
    pub(crate) fn within_budget(&self, started: std::time::Instant, delay: Duration) -> bool {
        started.elapsed() + delay <= Duration::from_millis(self.budget_ms)
    }

    /// The backoff schedule: doubling from `min_delay`, capped at `max_delay`, with random
    /// jitter so many clients throttled together do not retry in lockstep.
    pub(crate) fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.min_delay_ms))
            .with_max_delay(Duration::from_millis(
                self.max_delay_ms.max(self.min_delay_ms),
            ))
            .with_max_times(self.max_retries)
            .with_factor(2.0)
            .with_jitter()
    }
}
