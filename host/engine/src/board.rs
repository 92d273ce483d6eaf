//! The engine's output: every cycle's report, kept for `/status`, folded into Prometheus
//! metrics, and the loop's health. The engine writes it; the status server only reads it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::CycleReport;
use crate::model::NodeState;

type Labels = Vec<(String, String)>;

/// Recent cycles kept for the status page.
const RECENT: usize = 20;

/// `/healthz` fails when the last completed cycle is older than this many poll intervals.
/// Cycles start at most one poll interval apart; five leaves room for a slow cloud API or a
/// policy held to its wall-clock limit, and still tells a stuck loop within a minute at the
/// default 10 s interval.
pub const STALE_AFTER_POLLS: u32 = 5;

/// Everything the server shows.
pub struct Board {
    registry: Registry,
    nodes: Family<Labels, Gauge>,
    queued: Family<Labels, Gauge>,
    oldest_wait: Family<Labels, Gauge>,
    launches: Family<Labels, Counter>,
    launch_failures: Family<Labels, Counter>,
    bootstrap_failures: Family<Labels, Counter>,
    removals: Counter,
    clamps: Family<Labels, Counter>,
    decisions: Family<Labels, Counter>,
    policy_seconds: Histogram,
    api_calls: Family<Labels, Counter>,
    api_retries: Family<Labels, Counter>,
    cycles: Counter,
    cycle_errors: Counter,
    // Unlabelled twins of labelled counters, for `totals` (not exported).
    launched_total: Counter,
    launch_failures_total: Counter,
    clamps_total: Counter,
    api_seen: Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
    recent: Mutex<VecDeque<CycleReport>>,
    recent_errors: Mutex<VecDeque<(u64, String)>>,
    policy_log_dropped: Family<Labels, Counter>,
    policy_log_dropped_seen: Mutex<std::collections::BTreeMap<String, u64>>,
    /// When the last cycle completed (ms since the epoch; 0 before the first).
    last_cycle_done_ms: AtomicU64,
    /// The engine's poll interval, in ms (0 until the engine says).
    poll_interval_ms: AtomicU64,
    /// When the board was created, ms since the Unix epoch.
    pub started_ms: u64,
    /// 1 while this replica may act (it leads, or runs alone), 0 otherwise.
    leader: Gauge,
    /// This replica's role, when the app has said.
    role: Mutex<Option<ReplicaRole>>,
    /// When this replica's engine last began acting after not acting (a takeover), ms.
    acting_since_ms: AtomicU64,
}

/// This replica's part in the election (high availability), for `/status`, `/metrics` and
/// `/healthz`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaRole {
    /// This replica's name.
    pub replica: String,
    /// `single` (no `[ha]`), `starting`, `follower` or `leader`.
    pub role: String,
    /// Whether it may act now.
    pub acting: bool,
    /// The leader's name, when known.
    pub leader: Option<String>,
    /// Since when that leader leads (ms since the Unix epoch), when known.
    pub leader_since_ms: Option<u64>,
    /// Why this replica cannot take part in the election, if it cannot: `/healthz` fails with it.
    pub problem: Option<String>,
}

/// Whether the reconcile loop is alive, as `/healthz` and `/status` report it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    /// Whether the reconcile loop is alive.
    pub ok: bool,
    /// Why not, or what is fine.
    pub reason: String,
    /// When the last cycle completed (ms since the epoch), if one has.
    pub last_cycle_done_ms: Option<u64>,
    /// Age past which the loop counts as stuck, ms ([`STALE_AFTER_POLLS`] poll intervals).
    pub stale_after_ms: u64,
}

/// What the engine has done since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Reconcile cycles run.
    pub cycles: u64,
    /// Instances launched.
    pub launched: u64,
    /// Failed launches.
    pub launch_failures: u64,
    /// Instances removed.
    pub removed: u64,
    /// Scale decisions made by the fallback policy.
    pub fallbacks: u64,
    /// Scale decisions held (nothing decided).
    pub holds: u64,
    /// Policy plans changed by a hard invariant.
    pub clamps: u64,
    /// Errors met in cycles.
    pub errors: u64,
}

/// Calls and retries of one API action so far (cumulative).
#[derive(Debug, Clone)]
pub struct ApiCount {
    /// API action, e.g. `RunInstances`.
    pub action: String,
    /// Calls made.
    pub calls: u64,
    /// Retries made.
    pub retries: u64,
}

impl Default for Board {
    fn default() -> Self {
        Self::new()
    }
}

impl Board {
    /// An empty board, with its Prometheus metrics registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ecs_provisioner");
        let b = Board {
            nodes: Family::default(),
            queued: Family::default(),
            oldest_wait: Family::default(),
            launches: Family::default(),
            launch_failures: Family::default(),
            bootstrap_failures: Family::default(),
            removals: Counter::default(),
            clamps: Family::default(),
            decisions: Family::default(),
            policy_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            api_calls: Family::default(),
            api_retries: Family::default(),
            cycles: Counter::default(),
            cycle_errors: Counter::default(),
            launched_total: Counter::default(),
            launch_failures_total: Counter::default(),
            clamps_total: Counter::default(),
            api_seen: Mutex::default(),
            recent: Mutex::default(),
            recent_errors: Mutex::default(),
            policy_log_dropped: Family::default(),
            policy_log_dropped_seen: Mutex::default(),
            last_cycle_done_ms: AtomicU64::new(0),
            poll_interval_ms: AtomicU64::new(0),
            started_ms: crate::now_ms(),
            registry: Registry::default(),
            leader: Gauge::default(),
            role: Mutex::default(),
            acting_since_ms: AtomicU64::new(0),
        };
        registry.register("nodes", "Nodes by template and lifecycle state", b.nodes.clone());
        registry.register("queued_builds", "Queued builds by template", b.queued.clone());
        registry.register("queue_oldest_wait_seconds", "Longest queue wait by template", b.oldest_wait.clone());
        registry.register("launches", "Instances launched by template", b.launches.clone());
        registry.register("launch_failures", "Failed launches by error code", b.launch_failures.clone());
        registry.register(
            "bootstrap_failures",
            "Failed bootstraps by template and cause (host-key, unreachable, auth, init-script, agent-start, timeout, other)",
            b.bootstrap_failures.clone(),
        );
        registry.register("removals", "Instances removed", b.removals.clone());
        registry.register("clamps", "Policy plans changed by a hard invariant, by rule", b.clamps.clone());
        registry.register("decisions", "Scale decisions by who decided (policy, fallback, hold)", b.decisions.clone());
        registry.register("policy_seconds", "Time spent in the policy per scale decision", b.policy_seconds.clone());
        registry.register("api_calls", "Cloud API calls by action", b.api_calls.clone());
        registry.register("api_retries", "Cloud API retries by action", b.api_retries.clone());
        registry.register("cycles", "Reconcile cycles run", b.cycles.clone());
        registry.register("cycle_errors", "Errors met in cycles", b.cycle_errors.clone());
        registry.register(
            "policy_log_lines_dropped",
            "Policy log lines dropped by the per-call and per-minute limits, by policy",
            b.policy_log_dropped.clone(),
        );
        registry.register("leader", "1 while this replica may act (it leads, or runs without [ha]), 0 otherwise", b.leader.clone());
        Board { registry, ..b }
    }

    /// Records one cycle.
    pub fn record(&self, r: &CycleReport) {
        self.cycles.inc();
        for (template, states) in &r.nodes {
            for s in NodeState::ALL {
                let n = states.get(s.as_str()).copied().unwrap_or(0);
                self.nodes.get_or_create(&vec![("template".into(), template.clone()), ("state".into(), s.as_str().into())]).set(n.into());
            }
        }
        for (template, n) in &r.queued {
            self.queued.get_or_create(&vec![("template".into(), template.clone())]).set((*n).into());
        }
        for (template, ms) in &r.oldest_wait_ms {
            self.oldest_wait.get_or_create(&vec![("template".into(), template.clone())]).set((*ms / 1000) as i64);
        }
        for l in &r.launched {
            self.launches.get_or_create(&vec![("template".into(), l.template.clone())]).inc_by(l.instance_ids.len() as u64);
            self.launched_total.inc_by(l.instance_ids.len() as u64);
        }
        for f in &r.launch_errors {
            // The code is the cloud's free text: only a known one becomes a label value.
            self.launch_failures.get_or_create(&vec![("code".into(), f.label.into())]).inc();
            self.launch_failures_total.inc();
        }
        for (template, cause) in &r.bootstrap_failures {
            self.bootstrap_failures
                .get_or_create(&vec![("template".into(), template.clone()), ("cause".into(), (*cause).into())])
                .inc();
        }
        self.removals.inc_by(r.removed.len() as u64);
        for c in &r.clamps {
            self.clamps.get_or_create(&vec![("rule".into(), c.rule.into())]).inc();
            self.clamps_total.inc();
        }
        if let Some(by) = r.decided_by {
            let by = serde_json::to_value(by).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            self.decisions.get_or_create(&vec![("by".into(), by)]).inc();
            self.policy_seconds.observe(r.policy_micros as f64 / 1e6);
        }
        self.cycle_errors.inc_by(r.errors.len() as u64);
        {
            let mut errors = self.recent_errors.lock().unwrap();
            for e in r.errors.iter().chain(r.policy_error.iter()) {
                errors.push_back((r.at_ms, e.clone()));
            }
            while errors.len() > RECENT {
                errors.pop_front();
            }
        }
        let mut recent = self.recent.lock().unwrap();
        recent.push_back(r.clone());
        while recent.len() > RECENT {
            recent.pop_front();
        }
        self.last_cycle_done_ms.store(crate::now_ms(), Ordering::SeqCst);
    }

    /// Tells the board how often cycles run, which sets when `/healthz` calls the loop stuck.
    pub fn set_poll_interval(&self, poll: Duration) {
        self.poll_interval_ms.store(poll.as_millis() as u64, Ordering::SeqCst);
    }

    /// Records this replica's role; the `leader` metric follows `role.acting`.
    pub fn set_role(&self, role: ReplicaRole) {
        self.leader.set(i64::from(role.acting));
        *self.role.lock().unwrap() = Some(role);
    }

    /// Records that the engine began acting at `ms` (it took over).
    pub fn record_takeover(&self, ms: u64) {
        self.acting_since_ms.store(ms, Ordering::SeqCst);
    }

    /// This replica's role, when set.
    pub fn role(&self) -> Option<ReplicaRole> {
        self.role.lock().unwrap().clone()
    }

    /// Whether the loop is alive at `now_ms`: unhealthy when no cycle has completed for
    /// [`STALE_AFTER_POLLS`] poll intervals (counted from start-up before the first cycle).
    pub fn health(&self, now_ms: u64) -> Health {
        let poll = self.poll_interval_ms.load(Ordering::SeqCst);
        let stale_after_ms = poll * u64::from(STALE_AFTER_POLLS);
        let done = self.last_cycle_done_ms.load(Ordering::SeqCst);
        let last_cycle_done_ms = (done > 0).then_some(done);
        let age = now_ms.saturating_sub(if done > 0 { done } else { self.started_ms });
        let problem = self.role.lock().unwrap().as_ref().and_then(|r| r.problem.clone());
        let (ok, reason) = if let Some(problem) = problem {
            (false, problem)
        } else if poll == 0 {
            (true, "no reconcile loop attached".to_owned())
        } else if age <= stale_after_ms {
            (true, format!("last cycle completed {:.1} s ago", age as f64 / 1e3))
        } else if done == 0 {
            (false, format!(
                "no cycle has completed in the {:.1} s since start-up (limit {} poll intervals = {:.1} s)",
                age as f64 / 1e3, STALE_AFTER_POLLS, stale_after_ms as f64 / 1e3
            ))
        } else {
            (false, format!(
                "the last cycle completed {:.1} s ago, more than {} poll intervals ({:.1} s): the reconcile loop is stuck",
                age as f64 / 1e3, STALE_AFTER_POLLS, stale_after_ms as f64 / 1e3
            ))
        };
        Health { ok, reason, last_cycle_done_ms, stale_after_ms }
    }

    /// Folds the policy runtime's cumulative dropped-log-line counts (policy name, total)
    /// into their metric. The caller bounds the names; they are the host's own (a file stem
    /// or `builtin:...`).
    pub fn record_policy_log_drops(&self, totals: impl IntoIterator<Item = (String, u64)>) {
        let mut seen = self.policy_log_dropped_seen.lock().unwrap();
        for (policy, total) in totals {
            let before = seen.get(&policy).copied().unwrap_or(0);
            self.policy_log_dropped.get_or_create(&vec![("policy".into(), policy.clone())]).inc_by(total.saturating_sub(before));
            seen.insert(policy, total.max(before));
        }
    }

    /// Folds cumulative per-action API counts into the counters.
    pub fn record_api(&self, counts: &[ApiCount]) {
        let mut seen = self.api_seen.lock().unwrap();
        for c in counts {
            let (calls, retries) = seen.get(&c.action).copied().unwrap_or((0, 0));
            let labels = vec![("action".to_owned(), c.action.clone())];
            self.api_calls.get_or_create(&labels).inc_by(c.calls.saturating_sub(calls));
            self.api_retries.get_or_create(&labels).inc_by(c.retries.saturating_sub(retries));
            seen.insert(c.action.clone(), (c.calls.max(calls), c.retries.max(retries)));
        }
    }

    /// Totals since start, read back from the counters.
    pub fn totals(&self) -> Totals {
        let decided = |by: &str| self.decisions.get_or_create(&vec![("by".to_owned(), by.to_owned())]).get();
        let launched = self.launched_total.get();
        Totals {
            cycles: self.cycles.get(),
            launched,
            launch_failures: self.launch_failures_total.get(),
            removed: self.removals.get(),
            fallbacks: decided("fallback"),
            holds: decided("hold"),
            clamps: self.clamps_total.get(),
            errors: self.cycle_errors.get(),
        }
    }

    /// The Prometheus text exposition.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// The status as JSON: the latest fleet and demand, the last plans and recent errors.
    pub fn status_json(&self) -> serde_json::Value {
        let recent = self.recent.lock().unwrap();
        let errors = self.recent_errors.lock().unwrap();
        serde_json::json!({
            "started_ms": self.started_ms,
            "replica": self.role(),
            "acting_since_ms": Some(self.acting_since_ms.load(Ordering::SeqCst)).filter(|ms| *ms > 0),
            "health": self.health(crate::now_ms()),
            "latest": recent.back(),
            "recent_plans": recent.iter().rev().filter(|r| !r.enforced.launches.is_empty() || !r.enforced.removals.is_empty() || !r.clamps.is_empty()).map(|r| serde_json::json!({
                "cycle": r.cycle, "at_ms": r.at_ms, "decided_by": r.decided_by,
                "proposed": r.proposed, "enforced": r.enforced, "clamps": r.clamps,
            })).collect::<Vec<_>>(),
            "recent_errors": errors.iter().rev().map(|(at, e)| serde_json::json!({"at_ms": at, "error": e})).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Clamp, Plan, PlannedLaunch};

    #[test]
    fn metrics_and_status_reflect_recorded_cycles() {
        let board = Board::new();
        let mut r = CycleReport { cycle: 7, ..Default::default() };
        r.nodes.entry("linux".into()).or_default().insert("online".into(), 3);
        r.queued.insert("linux".into(), 5);
        r.enforced = Plan { launches: vec![PlannedLaunch { template: "linux".into(), count: 2, reason: "5 queued".into() }], removals: vec![] };
        r.clamps.push(Clamp { rule: "template-max", detail: "x".into() });
        r.decided_by = Some(crate::decide::DecidedBy::Fallback);
        r.errors.push("boom <b>".into());
        r.launch_errors.push(crate::act::LaunchFailure {
            template: "linux".into(),
            zone: "z".into(),
            instance_type: "t".into(),
            spot: false,
            capacity: true,
            code: "OperationDenied.NoStock".into(),
            label: "OperationDenied.NoStock",
            error: "RunInstances failed: OperationDenied.NoStock: no stock (RequestId X)".into(),
        });
        r.oldest_wait_ms.insert("linux".into(), 12_000);
        board.record(&r);
        board.record_api(&[ApiCount { action: "RunInstances".into(), calls: 3, retries: 1 }]);
        board.record_api(&[ApiCount { action: "RunInstances".into(), calls: 5, retries: 1 }]);

        let text = board.metrics_text();
        assert!(text.contains(r#"ecs_provisioner_nodes{template="linux",state="online"} 3"#), "{text}");
        assert!(text.contains(r#"ecs_provisioner_queued_builds{template="linux"} 5"#), "{text}");
        assert!(text.contains(r#"ecs_provisioner_queue_oldest_wait_seconds{template="linux"} 12"#), "{text}");
        assert!(text.contains(r#"ecs_provisioner_clamps_total{rule="template-max"} 1"#), "{text}");
        assert!(text.contains(r#"ecs_provisioner_decisions_total{by="fallback"} 1"#), "{text}");
        assert!(text.contains(r#"ecs_provisioner_launch_failures_total{code="OperationDenied.NoStock"} 1"#), "{text}");
        assert!(text.contains(r#"ecs_provisioner_api_calls_total{action="RunInstances"} 5"#), "{text}");
        assert!(text.contains(r#"ecs_provisioner_api_retries_total{action="RunInstances"} 1"#), "{text}");

        let t = board.totals();
        assert_eq!((t.cycles, t.launched, t.launch_failures, t.fallbacks, t.clamps, t.errors), (1, 0, 1, 1, 1, 1));

        let json = board.status_json();
        assert_eq!(json["latest"]["cycle"], 7);
        assert_eq!(json["recent_plans"][0]["enforced"]["launches"][0]["count"], 2);
    }

    #[test]
    fn health_fails_when_the_last_cycle_is_older_than_the_limit() {
        let board = Board::new();
        assert!(board.health(board.started_ms + 3_600_000).ok, "no loop attached: nothing to judge");
        board.set_poll_interval(Duration::from_secs(2));
        let t0 = board.started_ms;
        assert!(board.health(t0 + 9_000).ok, "within 5 polls of start-up");
        let h = board.health(t0 + 11_000);
        assert!(!h.ok && h.reason.contains("no cycle has completed"), "{h:?}");
        board.record(&CycleReport::default());
        let done = board.health(crate::now_ms()).last_cycle_done_ms.unwrap();
        assert!(board.health(done + 10_000).ok);
        let h = board.health(done + 10_001);
        assert!(!h.ok && h.reason.contains("more than 5 poll intervals (10.0 s)"), "{h:?}");
        assert_eq!(h.stale_after_ms, 10_000);
        assert_eq!(board.status_json()["health"]["ok"], true, "the real clock is within the limit");
    }
}
