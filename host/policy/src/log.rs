//! The policy's `log` import: escaping, per-evaluation and across-time rate limits, and the
//! count of dropped lines.
//!
//! Each line is bounded and escaped with [`bounds::text`], so a CR or LF in a message can
//! never start a line that looks like the host's own. Two limits apply:
//!
//! - per evaluation, at most [`Limits::max_log_lines`] lines (a runaway loop in one call);
//! - per policy across time, a token bucket of [`Limits::log_burst`] lines refilled at
//!   [`Limits::log_lines_per_minute`], shared by every evaluation of the policy (a policy that
//!   logs a little in every call still cannot flood the log over hours).
//!
//! Dropped lines are counted per policy ([`dropped_lines`], exported as the metric
//! `ecs_provisioner_policy_log_lines_dropped_total`) and reported in a warning at most once a
//! minute per policy (the first drop at once), so the report cannot flood the log either.
//!
//! [`Limits::max_log_lines`]: super::Limits::max_log_lines
//! [`Limits::log_burst`]: super::Limits::log_burst
//! [`Limits::log_lines_per_minute`]: super::Limits::log_lines_per_minute

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::bindings::Level;
use super::bounds;

/// The across-time budget of one policy's log lines: a token bucket.
#[derive(Debug)]
pub(crate) struct LogBudget {
    bucket: Mutex<Bucket>,
    per_second: f64,
    burst: f64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Lines dropped since the last warning, and when that was.
    unreported: u64,
    reported: Option<Instant>,
}

/// How often dropped lines are reported, at most.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl LogBudget {
    /// A full bucket of `burst` lines, refilled at `per_minute` lines a minute.
    pub(crate) fn new(per_minute: u32, burst: u32) -> Self {
        LogBudget {
            bucket: Mutex::new(Bucket {
                tokens: f64::from(burst),
                refilled: Instant::now(),
                unreported: 0,
                reported: None,
            }),
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst),
        }
    }

    /// Takes one line's token; false when the bucket is empty.
    pub(crate) fn take(&self, now: Instant) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.refilled = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl LogBudget {
    /// Adds `dropped` lines to the report; returns the count to warn about now, if a warning
    /// is due (the first one, then at most one per [`REPORT_EVERY`]).
    fn due_report(&self, dropped: u64, now: Instant) -> Option<u64> {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        b.unreported += dropped;
        let due = b.unreported > 0
            && b.reported
                .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
        due.then(|| {
            b.reported = Some(now);
            std::mem::take(&mut b.unreported)
        })
    }
}

/// Lines dropped so far in this process, per policy name.
fn dropped_registry() -> &'static Mutex<BTreeMap<String, u64>> {
    static DROPPED: OnceLock<Mutex<BTreeMap<String, u64>>> = OnceLock::new();
    DROPPED.get_or_init(Default::default)
}

/// Log lines dropped by the rate limits since the process started, per policy name (for
/// the `ecs_provisioner_policy_log_lines_dropped_total` metric).
pub fn dropped_lines() -> Vec<(String, u64)> {
    let map = dropped_registry().lock().unwrap_or_else(|e| e.into_inner());
    map.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

/// The `log` state of one evaluation.
pub(crate) struct LogState {
    policy: Arc<str>,
    budget: Arc<LogBudget>,
    pub(crate) lines: u32,
    pub(crate) suppressed: u32,
    max_lines: u32,
    /// The last `error`-level line (bounded), quoted in trap errors: guest SDKs log panics there.
    pub(crate) last_error: Option<String>,
}

impl LogState {
    pub(crate) fn new(policy: Arc<str>, budget: Arc<LogBudget>, max_lines: u32) -> Self {
        LogState {
            policy,
            budget,
            lines: 0,
            suppressed: 0,
            max_lines,
            last_error: None,
        }
    }

    /// Handles one line from the guest: rate-limit, then bound, escape and write. A dropped
    /// line costs a counter increment and nothing else, so a flood stays cheap.
    pub(crate) fn write(&mut self, level: Level, message: &str) {
        if level == Level::Error {
            self.last_error = Some(bounds::text(message));
        }
        if self.lines >= self.max_lines || !self.budget.take(Instant::now()) {
            self.suppressed += 1;
            return;
        }
        self.lines += 1;
        let message = bounds::text(message);
        let policy = &*self.policy;
        // tracing needs the level at compile time, hence one macro per level.
        match level {
            Level::Trace => tracing::trace!(target: "policy", policy, "{message}"),
            Level::Debug => tracing::debug!(target: "policy", policy, "{message}"),
            Level::Info => tracing::info!(target: "policy", policy, "{message}"),
            Level::Warn => tracing::warn!(target: "policy", policy, "{message}"),
            Level::Error => tracing::error!(target: "policy", policy, "{message}"),
        }
    }

    /// Called once the evaluation is over: counts the lines the limits dropped, and reports
    /// them when a report is due.
    pub(crate) fn finish(&self) {
        if self.suppressed > 0 {
            let mut map = dropped_registry().lock().unwrap_or_else(|e| e.into_inner());
            *map.entry(self.policy.to_string()).or_default() += u64::from(self.suppressed);
        }
        if let Some(dropped) = self
            .budget
            .due_report(u64::from(self.suppressed), Instant::now())
        {
            tracing::warn!(policy = %self.policy, dropped,
                "policy log lines dropped by the rate limit (reported at most once a minute)");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_bucket_refills_over_time_up_to_its_burst() {
        let budget = LogBudget::new(60, 3); // one line a second, bursts of 3
        let t0 = Instant::now();
        assert!((0..3).all(|_| budget.take(t0)));
        assert!(!budget.take(t0), "burst used up");
        assert!(!budget.take(t0 + Duration::from_millis(500)));
        assert!(
            budget.take(t0 + Duration::from_millis(1600)),
            "refilled one"
        );
        assert!(!budget.take(t0 + Duration::from_millis(1700)));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(3600);
        assert!((0..3).all(|_| budget.take(later)));
        assert!(!budget.take(later));
    }

    #[test]
    fn lines_are_limited_per_evaluation_and_across_evaluations() {
        let budget = Arc::new(LogBudget::new(0, 8)); // never refills: 8 lines in all
        let name: Arc<str> = "log-test-policy".into();
        let mut first = LogState::new(name.clone(), budget.clone(), 5);
        for i in 0..12 {
            first.write(Level::Info, &format!("line {i}"));
        }
        assert_eq!(
            (first.lines, first.suppressed),
            (5, 7),
            "per-evaluation cap"
        );
        first.finish();
        let mut second = LogState::new(name.clone(), budget, 5);
        for i in 0..5 {
            second.write(Level::Info, &format!("line {i}"));
        }
        assert_eq!(
            (second.lines, second.suppressed),
            (3, 2),
            "the shared budget had 3 left"
        );
        second.finish();
        let dropped = dropped_lines();
        let ours = dropped
            .iter()
            .find(|(p, _)| p == "log-test-policy")
            .unwrap();
        assert_eq!(ours.1, 9);
    }

    #[test]
    fn drops_are_reported_at_once_then_at_most_once_a_minute() {
        let budget = LogBudget::new(60, 1);
        let t0 = Instant::now();
        assert_eq!(
            budget.due_report(0, t0),
            None,
            "nothing dropped, nothing to say"
        );
        assert_eq!(
            budget.due_report(5, t0),
            Some(5),
            "the first drop is reported at once"
        );
        assert_eq!(budget.due_report(7, t0 + Duration::from_secs(10)), None);
        assert_eq!(budget.due_report(1, t0 + Duration::from_secs(59)), None);
        assert_eq!(
            budget.due_report(2, t0 + Duration::from_secs(60)),
            Some(10),
            "the minute's total"
        );
        assert_eq!(budget.due_report(0, t0 + Duration::from_secs(200)), None);
    }

    #[test]
    fn error_lines_are_remembered_bounded_and_escaped() {
        let mut log = LogState::new("p".into(), Arc::new(LogBudget::new(600, 100)), 50);
        log.write(Level::Error, &format!("panicked\nat {}", "x".repeat(5000)));
        let last = log.last_error.unwrap();
        assert!(last.starts_with("panicked\\nat xxx"), "{last}");
        assert!(last.len() <= bounds::MAX_TEXT_BYTES + bounds::TRUNCATED.len());
    }
}
