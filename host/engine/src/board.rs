//! The engine's output: every cycle's report, kept for `/status`, folded into Prometheus
//! metrics, and the loop's health. The engine writes it; the status server only reads it.

use std::collections::{BTreeMap, VecDeque};
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
use crate::console::{Decision, History, Sample};
use crate::model::{NodeState, TemplateLimits};

type Labels = Vec<(String, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Recent cycles kept for the status page.
const RECENT: usize = 20;
/// Recent errors kept for the console.
const RECENT_ERRORS: usize = 50;

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
    shadow_decisions: Family<Labels, Counter>,
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
    /// SIGHUP reloads of the configuration and policy, by outcome.
    reloads: Family<Labels, Counter>,
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
    history: Mutex<History>,
    templates: Mutex<Vec<TemplateLimits>>,
    policy: Mutex<Option<PolicyInfo>>,
    build: Mutex<Option<BuildInfo>>,
    build_info: Family<Labels, Gauge>,
    last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    cycle_seconds: Histogram,
    ecs_request_seconds: Histograms,
    jenkins_request_seconds: Histograms,
    bootstrap_seconds: Histograms,
    launch_to_online_seconds: Histograms,
    /// Instances launched by this process and not yet seen online: (template, launch cycle's ms).
    awaiting_online: Mutex<BTreeMap<String, (String, u64)>>,
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

/// The loaded policy, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyInfo {
    /// `[policy] source`: a file path or `builtin:default`.
    pub source: String,
    /// SHA-256 of the component's bytes, hex.
    pub sha256: String,
    /// The contract version the component exports.
    pub contract: String,
}

/// What binary this is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuildInfo {
    /// The package version.
    pub version: String,
    /// The source revision it was built from, when known.
    pub revision: String,
    /// Policy contract versions this binary serves.
    pub contracts: Vec<String>,
}

/// Which service a request went to, for the request latency metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The ECS API.
    Ecs,
    /// The Jenkins controller.
    Jenkins,
}

/// Everything the console shows, read in one go.
#[derive(Debug, Clone)]
pub struct ConsoleView {
    /// When this view was taken, ms since the epoch.
    pub now_ms: u64,
    /// When the board was created, ms since the epoch.
    pub started_ms: u64,
    /// Whether the loop is alive.
    pub health: Health,
    /// The latest cycle, if one ran.
    pub latest: Option<CycleReport>,
    /// The configured templates' limits.
    pub templates: Vec<TemplateLimits>,
    /// Recent decisions, newest first.
    pub decisions: Vec<Decision>,
    /// Fleet samples of the last hour, oldest first.
    pub samples: Vec<Sample>,
    /// Recent errors (ms since the epoch, text), newest first.
    pub errors: Vec<(u64, String)>,
    /// The loaded policy, once the daemon says.
    pub policy: Option<PolicyInfo>,
    /// What binary this is, once the daemon says.
    pub build: Option<BuildInfo>,
    /// This replica's part in the election, when the app has said (high availability).
    pub replica: Option<ReplicaRole>,
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
            shadow_decisions: Family::default(),
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
            reloads: Family::default(),
            last_cycle_done_ms: AtomicU64::new(0),
            poll_interval_ms: AtomicU64::new(0),
            started_ms: crate::now_ms(),
            registry: Registry::default(),
            leader: Gauge::default(),
            role: Mutex::default(),
            acting_since_ms: AtomicU64::new(0),
            history: Mutex::default(),
            templates: Mutex::default(),
            policy: Mutex::default(),
            build: Mutex::default(),
            build_info: Family::default(),
            last_success: Gauge::default(),
            // 1 ms to 33 s: an emulated cycle takes milliseconds, one over a thousand nodes seconds.
            cycle_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            ecs_request_seconds: Family::new_with_constructor(request_histogram),
            jenkins_request_seconds: Family::new_with_constructor(request_histogram),
            bootstrap_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.25, 2.0, 14))),
            launch_to_online_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.5, 2.0, 14))),
            awaiting_online: Mutex::default(),
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
        registry.register(
            "shadow_decisions",
            "Shadow-policy verdicts by outcome (agreed, differed, failed) against the active policy's plan",
            b.shadow_decisions.clone(),
        );
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
        registry.register(
            "config_reloads",
            "Reloads of the configuration and policy (SIGHUP), by outcome (success, failure)",
            b.reloads.clone(),
        );
        registry.register("leader", "1 while this replica may act (it leads, or runs without [ha]), 0 otherwise", b.leader.clone());
        registry.register("build_info", "The running binary (always 1): version, source revision, policy contracts served", b.build_info.clone());
        registry.register(
            "last_successful_cycle_timestamp_seconds",
            "When the last cycle that observed, decided and met no error ran (Unix time)",
            b.last_success.clone(),
        );
        registry.register("cycle_duration_seconds", "Time one reconcile cycle took", b.cycle_seconds.clone());
        registry.register(
            "ecs_request_duration_seconds",
            "ECS API request latency by action and outcome (each HTTP request, retries included)",
            b.ecs_request_seconds.clone(),
        );
        registry.register(
            "jenkins_request_duration_seconds",
            "Jenkins request latency by action and outcome",
            b.jenkins_request_seconds.clone(),
        );
        registry.register(
            "bootstrap_duration_seconds",
            "SSH bootstrap time (secret, connect, init script, agent start) by template and outcome",
            b.bootstrap_seconds.clone(),
        );
        registry.register(
            "launch_to_online_seconds",
            "From the cycle that launched an instance to the cycle that saw its agent online, by template",
            b.launch_to_online_seconds.clone(),
        );
        Board { registry, ..b }
    }

    /// Says what binary this is: `ecs_provisioner_build_info` and the console's daemon section.
    pub fn set_build_info(&self, build: BuildInfo) {
        self.build_info
            .get_or_create(&vec![
                ("version".into(), build.version.clone()),
                ("revision".into(), build.revision.clone()),
                ("contracts".into(), build.contracts.join(",")),
            ])
            .set(1);
        *self.build.lock().unwrap() = Some(build);
    }

    /// Says which policy is loaded (shown by the console).
    pub fn set_policy(&self, policy: PolicyInfo) {
        *self.policy.lock().unwrap() = Some(policy);
    }

    /// Says what the templates' limits are (shown by the console).
    pub fn set_templates(&self, templates: Vec<TemplateLimits>) {
        *self.templates.lock().unwrap() = templates;
    }

    /// Records one request to ECS or Jenkins. `action` and `outcome` must come from closed sets
    /// (the caller's own names), never from the network: they become label values.
    pub fn observe_request(&self, service: Service, action: &str, outcome: &str, elapsed: Duration) {
        let family = match service {
            Service::Ecs => &self.ecs_request_seconds,
            Service::Jenkins => &self.jenkins_request_seconds,
        };
        family
            .get_or_create(&vec![("action".into(), action.into()), ("outcome".into(), outcome.into())])
            .observe(elapsed.as_secs_f64());
    }

    /// Records one finished bootstrap: `outcome` is `success` or the failure's bounded cause.
    pub fn observe_bootstrap(&self, template: &str, outcome: &str, elapsed: Duration) {
        self.bootstrap_seconds
            .get_or_create(&vec![("template".into(), template.into()), ("outcome".into(), outcome.into())])
            .observe(elapsed.as_secs_f64());
    }

    /// Times launches to their agents' first online cycle: launched ids wait until a later
    /// report shows them online, and are forgotten if they disappear first.
    fn time_launches(&self, r: &CycleReport) {
        let mut waiting = self.awaiting_online.lock().unwrap();
        if !waiting.is_empty() {
            let rows: BTreeMap<&str, NodeState> = r.node_rows.iter().map(|n| (n.instance_id.as_str(), n.state)).collect();
            waiting.retain(|id, (template, launched_ms)| match rows.get(id.as_str()) {
                Some(NodeState::Online | NodeState::Offline) => {
                    let secs = r.at_ms.saturating_sub(*launched_ms) as f64 / 1e3;
                    self.launch_to_online_seconds.get_or_create(&vec![("template".into(), template.clone())]).observe(secs);
                    false
                }
                Some(state) => state.in_flight(),
                None => false,
            });
        }
        for l in &r.launched {
            for id in &l.instance_ids {
                waiting.insert(id.clone(), (l.template.clone(), r.at_ms));
            }
        }
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
            self.decisions.get_or_create(&vec![("by".into(), by.as_str().into())]).inc();
            self.policy_seconds.observe(r.policy_micros as f64 / 1e6);
        }
        if let Some(v) = &r.shadow {
            self.shadow_decisions.get_or_create(&vec![("outcome".into(), v.outcome.into())]).inc();
        }
        self.cycle_errors.inc_by(r.errors.len() as u64);
        self.cycle_seconds.observe(r.duration_micros as f64 / 1e6);
        if r.errors.is_empty() && r.decided_by.is_some() {
            self.last_success.set(r.at_ms as f64 / 1e3);
        }
        self.time_launches(r);
        self.history.lock().unwrap().record(r);
        {
            let mut errors = self.recent_errors.lock().unwrap();
            for e in r.errors.iter().chain(r.policy_error.iter()) {
                errors.push_back((r.at_ms, e.clone()));
            }
            while errors.len() > RECENT_ERRORS {
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

    /// Counts a reload of the configuration and policy: applied, or refused and the running
    /// ones kept.
    pub fn record_reload(&self, applied: bool) {
        let outcome = if applied { "success" } else { "failure" };
        self.reloads.get_or_create(&vec![("outcome".into(), outcome.into())]).inc();
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

    /// The board's metrics without the closing `# EOF`, for an exposition that adds others.
    pub fn encode_metrics(&self, out: &mut String) {
        prometheus_client::encoding::text::encode_registry(out, &self.registry).expect("writing to a String cannot fail");
    }

    /// Everything the console shows, taken at once.
    pub fn console(&self) -> ConsoleView {
        let now_ms = crate::now_ms();
        let history = self.history.lock().unwrap();
        ConsoleView {
            now_ms,
            started_ms: self.started_ms,
            health: self.health(now_ms),
            latest: self.recent.lock().unwrap().back().cloned(),
            templates: self.templates.lock().unwrap().clone(),
            decisions: history.decisions(),
            samples: history.samples(),
            errors: self.recent_errors.lock().unwrap().iter().rev().cloned().collect(),
            policy: self.policy.lock().unwrap().clone(),
            build: self.build.lock().unwrap().clone(),
            replica: self.role(),
        }
    }

    /// The status as JSON: the latest fleet and demand, the last plans and recent errors.
    pub fn status_json(&self) -> serde_json::Value {
        let recent = self.recent.lock().unwrap();
        let errors = self.recent_errors.lock().unwrap();
        serde_json::json!({
            "started_ms": self.started_ms,
            "replica": self.role(),
            "acting_since_ms": Some(self.acting_since_ms.load(Ordering::SeqCst)).filter(|ms| *ms > 0),
            "policy": *self.policy.lock().unwrap(),
            "build": *self.build.lock().unwrap(),
            "decisions": self.history.lock().unwrap().decisions(),
            "health": self.health(crate::now_ms()),
            "latest": recent.back(),
            "recent_plans": recent.iter().rev().filter(|r| !r.enforced.launches.is_empty() || !r.enforced.removals.is_empty() || !r.clamps.is_empty()).map(|r| serde_json::json!({
                "cycle": r.cycle, "at_ms": r.at_ms, "decided_by": r.decided_by,
                "proposed": r.proposed, "enforced": r.enforced, "clamps": r.clamps,
            })).collect::<Vec<_>>(),
            "shadow": recent.iter().rev().find_map(|r| r.shadow.as_ref()).map(|v| serde_json::json!({
                "policy": v.policy,
                "last": v,
                "last_difference": recent.iter().rev().find(|r| r.shadow.as_ref().is_some_and(|v| v.outcome != "agreed"))
                    .map(|r| serde_json::json!({"cycle": r.cycle, "at_ms": r.at_ms, "verdict": r.shadow})),
            })),
            "recent_errors": errors.iter().rev().map(|(at, e)| serde_json::json!({"at_ms": at, "error": e})).collect::<Vec<_>>(),
        })
    }
}

/// 1 ms to 33 s: a local emulator answers in a millisecond, the clients time out at 30 s.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
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
