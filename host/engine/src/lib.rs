//! The reconcile loop: observe -> decide -> enforce -> act.
//!
//! **Owns** the node lifecycle, the hard invariants and the board every cycle is recorded on.
//! **Must not** perform I/O except through its ports ([`ports`], [`decide::PolicyPort`]):
//! the adapters that talk to ECS, Jenkins, SSH and the policy runtime live in the
//! `ecs-provisioner` crate, so this crate depends on none of those clients.
//!
//! Each cycle reads the cloud and Jenkins concurrently, merges them into node states
//! (`lifecycle`), asks the policy (`decide`), clamps its plan to the hard invariants
//! (`enforce`) and carries it out (`act`). Slow work — SSH bootstraps — runs in background
//! tasks whose progress the next cycle reads, so nothing blocks decisions.

#![warn(missing_docs)]

pub mod act;
pub mod board;
pub mod console;
pub mod decide;
pub mod enforce;
pub mod fleet;
#[cfg(test)]
mod fakes;
pub mod leadership;
pub mod lifecycle;
pub mod model;
pub mod offerings;
pub mod ports;
mod warm_act;
pub mod user_data;
pub mod shadow;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use ecsp_config::Config;

use decide::{DecidedBy, Decider, Observation, PolicyPort};
use enforce::{Limits, enforce};
use fleet::FleetView;
use lifecycle::{Book, Chore, reconcile};
use model::{Clamp, Node, Plan, TemplateLimits};
use offerings::OfferingCache;
use ports::{BootstrapPort, CloudPort, JenkinsPort, TemplateQueue};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Where the engine reads the time, ms since the Unix epoch: the wall clock ([`now_ms`]) in
/// production, a virtual clock in a replay, so that the same engine code runs in both.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What one cycle saw, decided and did: for `plan`, `/status`, metrics and tests.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CycleReport {
    /// Cycle number, counting from 1 in this process.
    pub cycle: u64,
    /// When the cycle ran, ms since the Unix epoch.
    pub at_ms: u64,
    /// Nodes per template and state after observation.
    pub nodes: BTreeMap<String, BTreeMap<String, u32>>,
    /// Queued builds per template.
    pub queued: BTreeMap<String, u32>,
    /// Queued builds no template can serve.
    pub unmatched_queued: u32,
    /// Longest queue wait per template, ms.
    pub oldest_wait_ms: BTreeMap<String, u64>,
    /// The policy's plan before enforcement.
    pub proposed: Plan,
    /// The plan carried out.
    pub enforced: Plan,
    /// Changes enforcement made to the proposed plan.
    pub clamps: Vec<Clamp>,
    /// Which policy decided; `None` if the cycle did not get as far as deciding.
    pub decided_by: Option<DecidedBy>,
    /// The policy's error, when it failed.
    pub policy_error: Option<String>,
    /// Time spent deciding, microseconds.
    pub policy_micros: u64,
    /// Instances launched: (template, zone, instance type, spot, ids).
    pub launched: Vec<act::Launched>,
    /// Capacity and other launch errors, with the offering.
    pub launch_errors: Vec<act::LaunchFailure>,
    /// Nodes the placement could not fit anywhere.
    pub unplaced: BTreeMap<String, u32>,
    /// Instances removed (drained and deleted).
    pub removed: Vec<String>,
    /// Instances stopped into the warm pool (`idle-action = "stop"`) instead of deleted.
    pub stopped: Vec<String>,
    /// Stopped instances started again for this cycle's launches.
    pub started: Vec<String>,
    /// Removals abandoned because the node took a build meanwhile.
    pub kept_busy: Vec<String>,
    /// Housekeeping done: (kind, target, reason).
    pub chores: Vec<(String, String, String)>,
    /// Errors that did not stop the cycle.
    pub errors: Vec<String>,
    /// Bootstraps that failed since the previous cycle: (template, cause).
    pub bootstrap_failures: Vec<(String, &'static str)>,
    /// Templates whose launches are held back after failed bootstraps.
    pub launch_holds: BTreeMap<String, lifecycle::LaunchHold>,
    /// Every node after observation, one row each (for the console).
    pub node_rows: Vec<console::NodeRow>,
    /// How long the cycle took, microseconds.
    pub duration_micros: u64,
    /// How the shadow policy's plan compared, when one is set (`[policy] shadow`).
    pub shadow: Option<shadow::ShadowVerdict>,
    /// Every queued build a template serves: (template, queue item id, queued since, ms).
    /// For the decision journal; not on `/status`, where a long queue would swamp it.
    #[serde(skip)]
    pub queue_items: Vec<(String, u64, u64)>,
    /// Every build running on a node of ours: (instance id, template, build key, started ms).
    #[serde(skip)]
    pub running_builds: Vec<(String, String, String, u64)>,
}

/// Called with every cycle's report (the decision journal): it must return at once.
pub type CycleHook = Arc<dyn Fn(&CycleReport) + Send + Sync>;

/// The running provisioner.
pub struct Engine<C, J, B, P, F>
where
    C: CloudPort,
    J: JenkinsPort,
    B: BootstrapPort,
    P: PolicyPort,
    F: PolicyPort,
{
    pub(crate) config: Arc<Config>,
    /// The templates' limits, worked out once: the configuration never changes under an
    /// engine (a reload wires a new one), and a fingerprint costs a digest per template.
    limits: Vec<TemplateLimits>,
    pub(crate) cloud: Arc<C>,
    pub(crate) jenkins: Arc<J>,
    pub(crate) bootstrapper: Arc<B>,
    pub(crate) decider: Arc<Decider<P, F>>,
    pub(crate) book: Arc<Mutex<Book>>,
    pub(crate) offerings: Mutex<OfferingCache>,
    /// The last full listing plus what lookups by id learned since.
    pub(crate) fleet: Mutex<FleetView>,
    /// Woken when the queue watcher sees new buildable items: decide now.
    pub(crate) demand: Arc<Notify>,
    pub(crate) bootstrap_slots: Arc<Semaphore>,
    /// Woken when a background bootstrap finishes, so the next cycle comes sooner.
    pub(crate) wake: Arc<Notify>,
    pub(crate) cycle: std::sync::atomic::AtomicU64,
    /// Distinguishes this process's launch ids (and so ClientTokens) from a previous one's.
    pub(crate) run_id: u64,
    pub(crate) tasks: Mutex<tokio::task::JoinSet<()>>,
    pub(crate) last_report: Mutex<Option<CycleReport>>,
    /// Called with every cycle's report ([`Engine::on_cycle`]).
    on_cycle: Mutex<Option<CycleHook>>,
    /// Whether cycles are recorded on the board and kept as the last report ([`Engine::offline`]).
    recorded: std::sync::atomic::AtomicBool,
    /// Where every cycle is recorded for /metrics and /status.
    pub board: Arc<board::Board>,
    pub(crate) stop: CancellationToken,
    /// Launch batches sent by this process.
    pub(crate) launch_seq: std::sync::atomic::AtomicU64,
    /// The election this replica takes part in, if any ([`Engine::set_leadership`]).
    pub(crate) leadership: OnceLock<Arc<dyn leadership::Leadership>>,
    /// Launches recorded with the leadership and not yet seen in the listing.
    pub(crate) unsettled: Mutex<leadership::Unsettled>,
    /// Whether the previous cycle acted: a change is a takeover or a stand-down.
    pub(crate) acting: std::sync::atomic::AtomicBool,
    /// Woken when this replica may act now and did not (a takeover): the next cycle starts
    /// at once, so that a takeover acts within a cycle of being elected.
    pub(crate) takeover: Notify,
    pub(crate) clock: Clock,
    /// A candidate policy that decides every cycle without acting (shadow mode).
    pub(crate) shadow: Mutex<Option<Arc<dyn PolicyPort>>>,
}

impl<C, J, B, P, F> Engine<C, J, B, P, F>
where
    C: CloudPort,
    J: JenkinsPort,
    B: BootstrapPort,
    P: PolicyPort,
    F: PolicyPort,
{
    /// An engine over these ports and this decider, with a fresh status board; [`Engine::run`] starts its loop.
    pub fn new(config: Arc<Config>, cloud: C, jenkins: J, bootstrapper: B, decider: Decider<P, F>) -> Arc<Self> {
        Self::with_board(config, cloud, jenkins, bootstrapper, decider, Arc::new(board::Board::new()))
    }

    /// Like [`Engine::new`], reading the time from `clock` (a replay's virtual time).
    pub fn with_clock(
        config: Arc<Config>,
        cloud: C,
        jenkins: J,
        bootstrapper: B,
        decider: Decider<P, F>,
        clock: Clock,
    ) -> Arc<Self> {
        Self::assemble(config, cloud, jenkins, bootstrapper, decider, Arc::new(board::Board::new()), clock)
    }

    /// [`Engine::new`] recording on an existing board: a reloaded configuration's engine
    /// keeps the metrics and history of the one it replaces.
    pub fn with_board(
        config: Arc<Config>,
        cloud: C,
        jenkins: J,
        bootstrapper: B,
        decider: Decider<P, F>,
        board: Arc<board::Board>,
    ) -> Arc<Self> {
        Self::assemble(config, cloud, jenkins, bootstrapper, decider, board, Arc::new(now_ms))
    }

    fn assemble(
        config: Arc<Config>,
        cloud: C,
        jenkins: J,
        bootstrapper: B,
        decider: Decider<P, F>,
        board: Arc<board::Board>,
        clock: Clock,
    ) -> Arc<Self> {
        let slots = config.ssh.concurrency.max(1);
        board.set_poll_interval(config.poll_interval);
        let limits = limits_of(&config);
        let engine = Arc::new(Engine {
            config,
            limits,
            cloud: Arc::new(cloud),
            jenkins: Arc::new(jenkins),
            bootstrapper: Arc::new(bootstrapper),
            decider: Arc::new(decider),
            book: Arc::new(Mutex::new(Book::default())),
            offerings: Mutex::new(OfferingCache::default()),
            fleet: Mutex::new(FleetView::default()),
            demand: Arc::new(Notify::new()),
            bootstrap_slots: Arc::new(Semaphore::new(slots)),
            wake: Arc::new(Notify::new()),
            cycle: 0.into(),
            // With the pid: replicas (high availability) started in the same millisecond differ.
            run_id: clock() * 1000 + u64::from(std::process::id() % 1000),
            tasks: Mutex::new(tokio::task::JoinSet::new()),
            last_report: Mutex::new(None),
            on_cycle: Mutex::new(None),
            recorded: std::sync::atomic::AtomicBool::new(true),
            board,
            stop: CancellationToken::new(),
            launch_seq: 0.into(),
            leadership: OnceLock::new(),
            unsettled: Mutex::default(),
            acting: false.into(),
            takeover: Notify::new(),
            clock,
            shadow: Mutex::new(None),
        });
        engine.board.set_templates(engine.template_limits());
        engine
    }

    /// The template limits the invariants use.
    pub fn template_limits(&self) -> Vec<TemplateLimits> {
        self.limits.clone()
    }

    /// The Jenkins port, for wiring (the daemon attaches its request metrics to the client).
    pub fn jenkins(&self) -> &J {
        &self.jenkins
    }

    /// Sets (or clears) the shadow policy: it decides every cycle on the same snapshot as the
    /// active one, its plan is compared and recorded (`CycleReport::shadow`), and never acted on.
    pub fn set_shadow(&self, policy: Option<Arc<dyn PolicyPort>>) {
        *self.shadow.lock().unwrap() = policy;
    }

    /// An engine nobody watches (a replay's): cycles no longer update the metrics board or
    /// the last report, each cycle's report is only returned. Those two copies of every
    /// report were a sixth of a replayed cycle.
    pub fn offline(&self) {
        self.recorded.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Has `hook` called with every cycle's report from now on (the decision journal).
    pub fn on_cycle(&self, hook: CycleHook) {
        *self.on_cycle.lock().unwrap() = Some(hook);
    }

    /// The most recent cycle's report.
    pub fn last_report(&self) -> Option<CycleReport> {
        self.last_report.lock().unwrap().clone()
    }

    /// Asks the loop to stop after the current cycle. In-flight bootstraps are abandoned;
    /// the next process resumes them (the fleet is left as it is).
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Runs cycles until `shutdown`. A cycle error is logged and the loop goes on.
    ///
    /// The cloud is listed in full once per poll interval; the cycles in between (sooner while
    /// nodes are on their way, at once when the queue watcher sees new demand) look up by id
    /// only the instances whose status is changing.
    pub async fn run(self: &Arc<Self>) {
        let poll = self.config.poll_interval;
        let watcher = tokio::spawn(watch_queue(self.jenkins.clone(), self.demand.clone(), self.stop.clone()));
        while !self.stop.is_cancelled() {
            let started = tokio::time::Instant::now();
            let acting = self.may_act();
            self.hand_over(acting).await;
            let full = self.fleet.lock().unwrap().listing_due(self.clock_ms(), poll.as_millis() as u64);
            let report = self.cycle_with(full, acting).await;
            let pause = pause_after(&report, poll);
            // Counted from the cycle's start, so a long cycle (a large fleet) does not stretch
            // the period: a queue change is read within one poll interval.
            tokio::select! {
                _ = tokio::time::sleep_until(started + pause) => {}
                // New demand is decided on at once, from the last fleet view plus the launches
                // booked since: it does not wait for a listing.
                _ = self.demand.notified() => {}
                _ = self.wake.notified() => {
                    // Bootstraps finish in bursts (dozens a second at scale): one cycle per
                    // burst, at the in-flight pace, unless new demand comes first.
                    tokio::select! {
                        _ = tokio::time::sleep_until(started + pause.min(Duration::from_millis(500))) => {}
                        _ = self.demand.notified() => {}
                        _ = self.stop.cancelled() => {}
                    }
                }
                _ = self.takeover.notified() => {}
                _ = self.stop.cancelled() => {}
            }
            self.reap_tasks();
        }
        watcher.abort();
        self.tasks.lock().unwrap().abort_all();
        tracing::info!("engine stopped; fleet left as it is");
    }

    /// Follows a change of role: a takeover resends the previous leader's launches in flight;
    /// a stand-down abandons this replica's bootstraps and forgets what it was doing, so that
    /// if it leads again it starts from what it observes, as a restarted process does.
    async fn hand_over(&self, acting: bool) {
        let was = self.acting.swap(acting, std::sync::atomic::Ordering::SeqCst);
        if self.leadership.get().is_none() || acting == was {
            return;
        }
        if acting {
            tracing::info!("hand-over: acting from this cycle on");
            self.board.record_takeover(self.clock_ms());
            self.resume_launches().await;
        } else {
            tracing::warn!("hand-over: not (or no longer surely) the leader: acting on nothing");
            self.tasks.lock().unwrap().abort_all();
            *self.book.lock().unwrap() = Book::default();
            self.unsettled.lock().unwrap().0.clear();
        }
    }

    /// Reaps finished background tasks (bootstraps); their outcome is already in the book. The
    /// loop does this after each cycle; a replay that drives cycles itself calls it too.
    pub fn reap_tasks(&self) {
        while self.tasks.lock().unwrap().try_join_next().is_some() {}
    }

    /// One reconcile cycle over a full listing of the cloud. With `act = false` it only
    /// observes and decides (`plan`).
    pub async fn cycle(self: &Arc<Self>, act: bool) -> CycleReport {
        self.cycle_with(true, act).await
    }

    /// One reconcile cycle: over a full listing (`full`), or over the last one plus lookups by
    /// id of the instances whose status is changing.
    async fn cycle_with(self: &Arc<Self>, full: bool, act: bool) -> CycleReport {
        let n = self.cycle.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let now = self.clock_ms();
        let mut report = CycleReport { cycle: n, at_ms: now, ..Default::default() };
        let templates = self.template_limits();

        // Observe, concurrently.
        let refresh = self.offerings.lock().unwrap().stale(now, self.config.cloud.offerings_ttl.as_millis() as u64);
        let lookup = if full {
            Vec::new()
        } else {
            let book = self.book.lock().unwrap();
            let launched = book.launched.iter().map(|(id, i)| (id, i.created_ms.unwrap_or(0)));
            self.fleet.lock().unwrap().to_look_up(launched, now)
        };
        let (described, view, discovered) = tokio::join!(
            async {
                if full {
                    self.cloud.list_fleet().await.map(Some)
                } else if lookup.is_empty() {
                    Ok(None)
                } else {
                    self.cloud.describe_instances(&lookup).await.map(Some)
                }
            },
            self.jenkins.observe(now),
            async {
                if refresh { Some(self.cloud.discover_offerings().await) } else { None }
            }
        );
        let fleet = {
            let mut fleet = self.fleet.lock().unwrap();
            match described {
                Ok(Some(listed)) if full => fleet.apply_listing(now, listed, self.clock_ms()),
                Ok(Some(found)) => fleet.apply_lookup(&lookup, found, now),
                Ok(None) => {}
                Err(e) if full => {
                    report.errors.push(format!("listing the fleet failed: {e:#}"));
                    drop(fleet);
                    return self.finish(report);
                }
                // The launches stay counted from the book; the next lookup or listing tries again.
                Err(e) => report.errors.push(format!("looking up {} instances by id failed: {e:#}", lookup.len())),
            }
            fleet.instances()
        };
        let view = match view {
            Ok(v) => v,
            Err(e) => {
                report.errors.push(format!("reading Jenkins failed: {e:#}"));
                return self.finish(report);
            }
        };
        match discovered {
            Some(Ok(d)) => self.offerings.lock().unwrap().store(d, now),
            Some(Err(e)) => report.errors.push(format!("discovering offerings failed (using the cache): {e:#}")),
            None => {}
        }
        let offerings = self.offerings.lock().unwrap().all(&self.config.cloud, now);

        let (nodes, chores) = {
            let mut book = self.book.lock().unwrap();
            let listed: BTreeSet<&str> = fleet.iter().map(|i| i.instance_id.as_str()).collect();
            book.prune(&listed, now);
            let (nodes, chores) = reconcile(&fleet, &view.agents, &book, &templates, now);
            report_strangers(&mut book, &listed, &view.agents, &templates);
            for n in nodes.iter().filter(|n| n.agent.as_ref().is_some_and(|a| a.online)) {
                if book.seen_online.insert(n.instance_id().to_owned()) {
                    book.bootstrap_worked(n.template());
                }
                if book.disconnected.remove(n.instance_id()).is_some() {
                    tracing::info!(instance = %n.instance_id(), "agent reconnected");
                }
            }
            report_unknown_locks(&mut book, &fleet);
            report.bootstrap_failures = std::mem::take(&mut book.failed_bootstraps);
            report.launch_holds = book.holds.iter().filter(|(_, h)| h.until_ms > now).map(|(t, h)| (t.clone(), h.clone())).collect();
            (nodes, chores)
        };
        let journaled = self.on_cycle.lock().unwrap().is_some();
        summarize(&mut report, &nodes, &view.queues, view.unmatched, journaled);
        if act {
            self.settle_listed(&fleet.iter().map(|i| i.instance_id.as_str()).collect()).await;
        }

        // Decide.
        let obs = Observation {
            now_ms: now,
            templates: &self.config.templates,
            queues: &view.queues,
            unmatched: view.unmatched,
            nodes: &nodes,
            offerings: &offerings,
            max_total_nodes: self.config.cloud.max_total_nodes,
        };
        let decision = self.decider.scale(&obs);
        report.decided_by = Some(decision.by);
        report.policy_error = decision.error.clone();
        report.policy_micros = decision.elapsed.as_micros() as u64;
        report.proposed = decision.value.clone();
        let shadow = self.shadow.lock().unwrap().clone();
        if let Some(shadow) = shadow {
            report.shadow = Some(shadow::judge(shadow.as_ref(), &obs, &decision.value));
        }

        // Enforce.
        let holds = self.book.lock().unwrap().holds.clone();
        let limits = Limits {
            templates: &templates,
            max_total_nodes: self.config.cloud.max_total_nodes,
            max_launch_per_cycle: self.config.cloud.max_launch_per_cycle,
            holds: &holds,
            now_ms: now,
        };
        let enforced = enforce(&decision.value, &nodes, &limits);
        for c in &enforced.clamps {
            tracing::info!(rule = c.rule, detail = %c.detail, "plan clamped");
        }
        report.enforced = enforced.plan.clone();
        report.clamps = enforced.clamps;

        // Act, unless leadership was lost while observing and deciding.
        if act && self.may_act() {
            self.fence_used_up(&nodes, &mut report).await;
            self.do_chores(chores, &nodes, &mut report).await;
            self.launch(&enforced.plan, &nodes, offerings, now, &mut report).await;
            self.remove(&enforced.plan, &nodes, &mut report).await;
        } else {
            report.chores = chores.iter().filter(|c| !c.is_bookkeeping()).map(describe_chore).collect();
        }
        self.finish(report)
    }

    /// The engine's time, ms since the Unix epoch (see [`Clock`]).
    pub(crate) fn clock_ms(&self) -> u64 {
        (self.clock)()
    }

    fn finish(&self, mut report: CycleReport) -> CycleReport {
        // The start is in whole ms: this reads up to 1 ms long, below the histogram's first bucket.
        let micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        report.duration_micros = micros.saturating_sub(report.at_ms * 1000);
        for e in &report.errors {
            tracing::warn!(cycle = report.cycle, error = %e, "cycle error");
        }
        if !self.recorded.load(std::sync::atomic::Ordering::Relaxed) {
            return report;
        }
        self.board.record(&report);
        if let Some(hook) = self.on_cycle.lock().unwrap().as_ref() {
            hook(&report);
        }
        *self.last_report.lock().unwrap() = Some(report.clone());
        report
    }
}

/// Reads the queue's buildable item ids every [`watch_pause`] and wakes the loop (`demand`)
/// when one appears that the previous read did not have (or, at the first read, when any
/// waits): a queue change is decided on within
/// about that pause, not at the next cycle. A failed read is logged once per run of failures;
/// the cycles read Jenkins anyway.
async fn watch_queue<J: JenkinsPort>(jenkins: Arc<J>, demand: Arc<Notify>, stop: CancellationToken) {
    let mut known: Option<std::collections::HashSet<u64>> = None;
    let mut failing = false;
    loop {
        let pause = watch_pause(known.as_ref().map_or(0, |k| k.len()));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => return,
        }
        match jenkins.queued_ids(now_ms()).await {
            Ok(ids) => {
                failing = false;
                let ids: std::collections::HashSet<u64> = ids.into_iter().collect();
                // The first read has nothing to compare with: items there may have come after
                // the last cycle read the queue, so any at all are worth one cycle.
                let news = known.as_ref().map_or(!ids.is_empty(), |k| ids.iter().any(|id| !k.contains(id)));
                if news {
                    demand.notify_one();
                }
                known = Some(ids);
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %format!("{e:#}"), "the queue watcher cannot read the Jenkins queue; new demand waits for the next cycle");
                }
            }
        }
    }
}

/// How often the queue watcher reads the Jenkins queue while it is short.
pub const QUEUE_WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// The watcher's pause before its next read, given how many items the last read found
/// waiting: [`QUEUE_WATCH_INTERVAL`] while fewer than 1,000 wait, one interval more per
/// thousand, at most 1 s. A read costs Jenkins and this host in proportion to the queue (at
/// 9,000 waiting items, ten reads a second were most of what an emulated controller did in a
/// 10,000-node wave), and a long queue is demand the loop already serves, cycling every
/// 500 ms while nodes are on their way; an empty queue, where new demand is news, is read
/// every 100 ms.
pub fn watch_pause(waiting: usize) -> Duration {
    let intervals = 1 + (waiting / 1000).min(9) as u32;
    QUEUE_WATCH_INTERVAL * intervals
}

/// The template limits the invariants use, from the configuration.
fn limits_of(config: &Config) -> Vec<TemplateLimits> {
    config
        .templates
        .iter()
        .map(|t| TemplateLimits {
            name: t.name().to_owned(),
            min_nodes: t.min_nodes,
            max_nodes: t.max_nodes,
            launch_timeout_ms: t.launch_timeout.as_millis() as u64,
            reconnect_timeout_ms: t.reconnect_timeout().as_millis() as u64,
            max_uses: t.max_uses,
            max_stopped: if t.idle_action == ecsp_config::IdleAction::Stop { t.max_stopped() } else { 0 },
            fingerprint: config.template_fingerprint(t),
            user_data: t.launch == ecsp_config::LaunchMode::UserData,
        })
        .collect()
}

/// How long the loop waits after a cycle before the next one (a replay keeps the same pace).
///
/// While nodes are on their way or builds wait, it looks again soon (500 ms at most): what
/// changes next (an instance running, an agent online) should not wait a whole poll interval.
pub fn pause_after(report: &CycleReport, poll: Duration) -> Duration {
    let in_flight = report.nodes.values().flat_map(|m| m.iter()).any(|(state, n)| {
        // Offline (an admin's mark), interrupted (the cloud's notice) and stopped (the warm pool) nodes can stay
        // so for minutes with nothing for the host to do: no reason to look faster.
        *n > 0 && !matches!(state.as_str(), "online" | "offline" | "interrupted" | "stopped")
    }) || report.queued.values().any(|n| *n > 0);
    if in_flight { poll.min(Duration::from_millis(500)) } else { poll }
}

/// Warns once about each node that looks like ours (name and description) but whose instance
/// this process never saw listed with our controller tag nor launched: it is left alone, since
/// a description proves nothing. Forgets proven instances with nothing left to clean up.
fn report_strangers(book: &mut Book, listed: &BTreeSet<&str>, agents: &[model::AgentNode], templates: &[TemplateLimits]) {
    let ids: BTreeSet<&str> =
        agents.iter().filter_map(|a| lifecycle::parse_node_name(&a.name, templates).map(|(_, id)| id)).collect();
    book.forget_settled(listed, &ids);
    let names: BTreeSet<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    book.strangers_reported.retain(|name| names.contains(name.as_str()));
    for a in agents {
        let Some((_, id)) = lifecycle::parse_node_name(&a.name, templates) else { continue };
        // User-data nodes precede their instance: the lifecycle pass judges them.
        if model::is_launch_key(id) {
            continue;
        }
        if !listed.contains(id) && !book.known_ours.contains(id) && book.strangers_reported.insert(a.name.clone()) {
            tracing::warn!(
                node = %a.name,
                instance = %id,
                "node claims to be ours, but its instance was never listed with our controller tag nor launched by \
                 this process: left alone (delete it by hand if it is a leftover)"
            );
        }
    }
}

/// Fills the report's counts and rows; the queue items and running builds only for a journal
/// (`journaled`), since a replay's millions of cycles would pay for them in vain.
fn summarize(report: &mut CycleReport, nodes: &[Node], queues: &[TemplateQueue], unmatched: u32, journaled: bool) {
    report.node_rows = nodes.iter().map(console::NodeRow::of).collect();
    for n in nodes {
        *report
            .nodes
            .entry(n.template().to_owned())
            .or_default()
            .entry(n.state.as_str().to_owned())
            .or_default() += 1;
    }
    if journaled {
        report.running_builds = nodes
            .iter()
            .filter_map(|n| Some((n, n.agent.as_ref()?)))
            .flat_map(|(n, a)| a.running.iter().map(|(key, at)| (n.instance_id().to_owned(), n.template().to_owned(), key.clone(), *at)))
            .collect();
    }
    for q in queues {
        if journaled {
            report.queue_items.extend(q.items.iter().map(|(id, waited)| (q.template.clone(), *id, report.at_ms.saturating_sub(*waited))));
        }
        report.queued.insert(q.template.clone(), q.items.len() as u32);
        report.oldest_wait_ms.insert(q.template.clone(), q.items.iter().map(|(_, w)| *w).max().unwrap_or(0));
    }
    report.unmatched_queued = unmatched;
}

fn describe_chore(c: &Chore) -> (String, String, String) {
    match c {
        Chore::CreateNode { instance_id } => ("create-node".into(), instance_id.clone(), String::new()),
        Chore::Bootstrap { instance_id } => ("bootstrap".into(), instance_id.clone(), String::new()),
        Chore::Reconnect { instance_id, .. } => ("reconnect".into(), instance_id.clone(), "agent dropped; restarting it".into()),
        Chore::Terminate { instance_id, reason } => ("terminate".into(), instance_id.clone(), reason.clone()),
        Chore::BookTerminating { instance_id, reason } => ("adopt-termination".into(), instance_id.clone(), reason.clone()),
        Chore::Fence { instance_id, reason } => ("fence".into(), instance_id.clone(), reason.clone()),
        Chore::ResumeDrain { instance_id } => ("resume-drain".into(), instance_id.clone(), "found offline for removal".into()),
        Chore::DeleteNode { name, reason } => ("delete-node".into(), name.clone(), reason.clone()),
        Chore::Stop { instance_id } => ("stop".into(), instance_id.clone(), "marked stopped; stopping its instance".into()),
        Chore::RestartAgent { instance_id, .. } => ("restart-agent".into(), instance_id.clone(), "started from the warm pool".into()),
        Chore::Unfence { instance_id } => ("unfence".into(), instance_id.clone(), "started node's agent is online".into()),
        Chore::RecordActivity { instance_id, record } => ("record-activity".into(), instance_id.clone(), format!("{record:?}")),
    }
}

/// Logs each lock reason the host does not act on, once per instance: ECS locks instances for
/// overdue payments or security reasons too, and only `Recycling` (a spot reclaim) is ours to
/// handle.
fn report_unknown_locks(book: &mut Book, fleet: &[model::CloudInstance]) {
    for i in fleet {
        for lock in i.locks.iter().filter(|l| *l != model::LOCK_RECYCLING) {
            if book.locks_reported.insert((i.instance_id.clone(), lock.clone())) {
                tracing::warn!(instance = %i.instance_id, lock = %lock, "instance has an operation lock the provisioner does not act on");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_watcher_reads_a_short_queue_every_100_ms_and_a_long_one_less_often() {
        let ms = |waiting| watch_pause(waiting).as_millis();
        assert_eq!((ms(0), ms(1), ms(999)), (100, 100, 100));
        assert_eq!((ms(1000), ms(2500), ms(9000)), (200, 300, 1000));
        assert_eq!((ms(10_000), ms(usize::MAX)), (1000, 1000), "never slower than once a second");
    }

    #[tokio::test]
    async fn the_queue_watcher_wakes_the_loop_for_items_at_its_first_read_and_for_new_ones_only() {
        let jenkins = Arc::new(fakes::FakeJenkins::default());
        jenkins.queue.lock().unwrap().push(7);
        let (demand, stop) = (Arc::new(Notify::new()), CancellationToken::new());
        let watcher = tokio::spawn(watch_queue(jenkins.clone(), demand.clone(), stop.clone()));
        let woken = |within_ms| {
            let demand = demand.clone();
            async move { tokio::time::timeout(Duration::from_millis(within_ms), demand.notified()).await.is_ok() }
        };
        // Item 7 may have come after the last cycle's read: the first read alone must say so.
        assert!(woken(2_000).await, "items at the first read wake the loop");
        assert!(!woken(500).await, "the same items again are no news");
        jenkins.queue.lock().unwrap().push(8);
        assert!(woken(2_000).await, "a new item wakes the loop");
        stop.cancel();
        watcher.await.unwrap();
    }
}
