//! The simulated cloud and Jenkins a replay runs the engine against, in virtual time.
//!
//! One [`World`] holds both sides; [`SimCloud`], [`SimJenkins`] and [`SimBootstrap`] are the
//! engine's ports over it. Time moves only when the driver calls [`World::advance_to`], which
//! plays the timed events in order (arrivals, agents coming online, builds ending, reclaims)
//! and runs Jenkins' scheduler at each: a build starts at the exact virtual instant an
//! executor that can run it is free. Every random delay is drawn from a generator seeded by
//! the replay's seed and the instance's sequence number, so the order in which the engine's
//! tasks happen to call the ports never changes a result.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use ecsp_config::{Candidates, Config, NodeMode, StoppedModeConfig};
use ecsp_engine::model::{AgentNode, CloudInstance, CloudStatus, LOCK_RECYCLING};
use ecsp_engine::ports::{
    ActivityRecord, BootstrapPort, BootstrapTarget, CloudOffering, CloudPort, JenkinsPort, JenkinsView, LaunchError,
    LaunchRequest, NodeRegistration, TemplateQueue,
};
use ecsp_jenkins::label::LabelExpr;

use super::trace::{CloudEvent, Trace};

/// ECS deletes a reclaimed spot instance about five minutes after its notice.
pub const RECLAIM_NOTICE_MS: u64 = 5 * 60_000;

/// A delay drawn uniformly between two bounds (equal bounds: a fixed delay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Spread {
    /// Shortest, ms.
    pub min_ms: u64,
    /// Longest, ms.
    pub max_ms: u64,
}

impl Spread {
    /// A fixed delay.
    pub const fn fixed(ms: u64) -> Self {
        Spread { min_ms: ms, max_ms: ms }
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> u64 {
        if self.max_ms <= self.min_ms { self.min_ms } else { rng.random_range(self.min_ms..=self.max_ms) }
    }
}

impl std::str::FromStr for Spread {
    type Err = String;
    /// `45s`, or `30s..60s` (humantime durations).
    fn from_str(s: &str) -> Result<Self, String> {
        let ms = |p: &str| {
            humantime::parse_duration(p.trim())
                .map(|d| d.as_millis() as u64)
                .map_err(|e| format!("{p:?} is not a duration (e.g. 45s, 2m, 1500ms): {e}"))
        };
        match s.split_once("..") {
            Some((a, b)) => {
                let (min_ms, max_ms) = (ms(a)?, ms(b)?);
                if max_ms < min_ms {
                    return Err(format!("{s:?}: the upper bound is below the lower"));
                }
                Ok(Spread { min_ms, max_ms })
            }
            None => Ok(Spread::fixed(ms(s)?)),
        }
    }
}

/// How long the outside world takes, per instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Delays {
    /// RunInstances to `Running` with an IP.
    pub boot: Spread,
    /// SSH bootstrap: connect, init script, agent start.
    pub bootstrap: Spread,
    /// Agent started to online in Jenkins.
    pub connect: Spread,
}

impl Default for Delays {
    /// ECS documents a new pay-as-you-go instance as running within about a minute (we see
    /// 30–60 s); our SSH bootstrap with a short init script takes 10–20 s, and an inbound agent
    /// is online 2–5 s after it starts.
    fn default() -> Self {
        Delays { boot: Spread { min_ms: 30_000, max_ms: 60_000 }, bootstrap: Spread { min_ms: 10_000, max_ms: 20_000 }, connect: Spread { min_ms: 2_000, max_ms: 5_000 } }
    }
}

#[derive(Debug, Clone)]
struct Instance {
    template: String,
    zone: String,
    vswitch: String,
    instance_type: String,
    spot: bool,
    created_ms: u64,
    running_ms: u64,
    ip: Ipv4Addr,
    seq: u64,
    reclaim_notice: bool,
    /// The template's fingerprint at launch.
    fingerprint: String,
    /// Since when it is stopped (the warm pool), and whether in economical mode.
    stopped: Option<(u64, bool)>,
    /// Closed spans of economical-mode stops, in which only the disks are billed.
    unbilled: Vec<(u64, u64)>,
}

#[derive(Debug, Clone)]
struct Agent {
    instance_id: String,
    labels: Vec<String>,
    normal: bool,
    executors: u32,
    connected: bool,
    was_connected: bool,
    offline: Option<String>,
    running: Vec<usize>,
    idle_since_ms: Option<u64>,
    uses: u32,
    recorded: ActivityRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrive(usize),
    Online { node: String },
    Finish { node: String, build: usize },
    ReclaimNotice(usize),
    ReclaimDelete(String),
}

/// What happened to one build of the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildOutcome {
    /// Arrival, ms since the Unix epoch.
    pub arrived_ms: u64,
    /// Start on an executor, if it started.
    pub started_ms: Option<u64>,
    /// Its label expression, or `None`.
    pub label: Option<String>,
    /// The template whose nodes it asks for, or `None` if no template can serve it.
    pub template: Option<String>,
    /// Its instance was reclaimed under it.
    pub interrupted: bool,
}

/// One instance's life, for node-hours and cost.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceLife {
    /// Template.
    pub template: String,
    /// Spot or on-demand.
    pub spot: bool,
    /// Instance type.
    pub instance_type: String,
    /// Created, ms since the Unix epoch.
    pub created_ms: u64,
    /// Deleted, if it was.
    pub deleted_ms: Option<u64>,
    /// Spans stopped in economical mode (`stopped-mode = "stop-charging"`), billed for no
    /// compute; an open span ends at `None`.
    pub unbilled: Vec<(u64, Option<u64>)>,
}

impl InstanceLife {
    /// Billed hours up to `at_ms`: from creation to deletion (or `at_ms`), less the
    /// economical-mode stops.
    pub fn billed_hours(&self, at_ms: u64) -> f64 {
        let end = self.deleted_ms.unwrap_or(at_ms).min(at_ms);
        let life = end.saturating_sub(self.created_ms);
        let unbilled: u64 = self.unbilled.iter().map(|(from, to)| to.unwrap_or(end).min(end).saturating_sub(*from)).sum();
        life.saturating_sub(unbilled) as f64 / 3_600_000.0
    }
}

/// Calls the engine made on the simulated services.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Calls {
    /// Instances created.
    pub launched: u64,
    /// Launch requests refused for lack of stock.
    pub stockout_hits: u64,
    /// Instances the engine deleted.
    pub removed: u64,
    /// Spot instances the cloud reclaimed.
    pub reclaimed: u64,
    /// Instances the engine stopped (the warm pool).
    pub stopped: u64,
    /// Stopped instances the engine started again.
    pub started: u64,
}

/// Both simulated services and the clock.
pub struct World {
    clock: Arc<AtomicU64>,
    seed: u64,
    delays: Delays,
    templates: Vec<TemplateInfo>,
    catalog: Vec<CloudOffering>,
    stockouts: Vec<CloudEvent>,
    reclaims: Vec<CloudEvent>,
    /// Instances not deleted.
    instances: BTreeMap<String, Instance>,
    /// The lives of the deleted ones.
    gone: Vec<InstanceLife>,
    tokens: HashMap<String, Vec<String>>,
    seq: u64,
    agents: BTreeMap<String, Agent>,
    queue: Vec<usize>,
    builds: Vec<BuildOutcome>,
    durations: Vec<u64>,
    /// Each build's label expression, parsed once: the scheduler matches it at every event.
    exprs: Vec<Option<LabelExpr>>,
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    event_seq: u64,
    calls: Calls,
}

#[derive(Debug, Clone)]
struct TemplateInfo {
    name: String,
    labels: Vec<String>,
    normal: bool,
    executors: u32,
    fingerprint: String,
    idle_timeout_ms: u64,
    launch_timeout_ms: u64,
}

impl World {
    /// A world for this configuration and trace, with no instance yet, starting at the
    /// trace's start.
    pub fn new(config: &Config, trace: &Trace, delays: Delays, seed: u64) -> Self {
        let templates: Vec<TemplateInfo> = config
            .templates
            .iter()
            .map(|t| TemplateInfo {
                name: t.name().to_owned(),
                labels: t.labels.clone(),
                normal: matches!(t.mode, NodeMode::Normal),
                executors: t.executors.max(1),
                fingerprint: config.template_fingerprint(t),
                idle_timeout_ms: t.idle_timeout.as_millis() as u64,
                launch_timeout_ms: t.launch_timeout.as_millis() as u64,
            })
            .collect();
        let mut world = World {
            clock: Arc::new(AtomicU64::new(trace.start_ms)),
            seed,
            delays,
            catalog: catalog(config),
            templates,
            stockouts: trace.events.iter().filter(|e| matches!(e, CloudEvent::Stockout { .. })).cloned().collect(),
            reclaims: trace.events.iter().filter(|e| matches!(e, CloudEvent::Reclaim { .. })).cloned().collect(),
            instances: BTreeMap::new(),
            gone: Vec::new(),
            tokens: HashMap::new(),
            seq: 0,
            agents: BTreeMap::new(),
            queue: Vec::new(),
            builds: Vec::with_capacity(trace.builds.len()),
            durations: Vec::with_capacity(trace.builds.len()),
            exprs: Vec::with_capacity(trace.builds.len()),
            events: BinaryHeap::new(),
            event_seq: 0,
            calls: Calls::default(),
        };
        for (i, b) in trace.builds.iter().enumerate() {
            let expr = b.label.as_deref().map(LabelExpr::parse_lenient);
            let template = world.template_for(expr.as_ref());
            world.builds.push(BuildOutcome { arrived_ms: b.at_ms, started_ms: None, label: b.label.clone(), template, interrupted: false });
            world.durations.push(b.duration_ms);
            world.exprs.push(expr);
            world.schedule(b.at_ms, Event::Arrive(i));
        }
        for (i, e) in world.reclaims.clone().iter().enumerate() {
            world.schedule(e.at_ms(), Event::ReclaimNotice(i));
        }
        world
    }

    /// The virtual clock the engine reads.
    pub fn clock(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.clock)
    }

    /// Now, ms since the Unix epoch.
    pub fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    /// The first template, in config order, whose nodes can run a build with this label
    /// (unlabelled builds: the first in normal mode), as the Jenkins adapter assigns demand.
    fn template_for(&self, expr: Option<&LabelExpr>) -> Option<String> {
        self.templates.iter().find(|t| can_run(expr, &t.labels, t.normal)).map(|t| t.name.clone())
    }

    fn schedule(&mut self, at_ms: u64, event: Event) {
        self.event_seq += 1;
        self.events.push(Reverse((at_ms, self.event_seq, event)));
    }

    /// The time of the next timed event, if any.
    pub fn next_event_ms(&self) -> Option<u64> {
        self.events.peek().map(|Reverse((t, _, _))| *t)
    }

    /// The first instant after `t` at which the engine could see something new without acting
    /// itself: a timed event (an arrival, an agent online, a build ending, a reclaim), an
    /// instance reaching Running, a stock-out window opening or closing, an idle node reaching
    /// its template's idle timeout, or a node on its way reaching its launch timeout.
    pub fn next_change_after(&self, t: u64) -> Option<u64> {
        let template = |name: &str| self.templates.iter().find(|x| x.name == name);
        let running = self.instances.values().filter(|i| i.stopped.is_none()).map(|i| i.running_ms);
        let online: std::collections::HashSet<&str> =
            self.agents.values().filter(|a| a.connected).map(|a| a.instance_id.as_str()).collect();
        let launch_timeouts = self
            .instances
            .iter()
            .filter(|(id, i)| i.stopped.is_none() && !online.contains(id.as_str()))
            .filter_map(|(_, i)| template(&i.template).map(|x| i.created_ms + x.launch_timeout_ms));
        let idle_timeouts = self.agents.values().filter(|a| a.connected && a.running.is_empty()).filter_map(|a| {
            let since = a.idle_since_ms?;
            let i = self.instances.get(&a.instance_id)?;
            template(&i.template).map(|x| since + x.idle_timeout_ms)
        });
        let stockouts = self.stockouts.iter().flat_map(|e| match e {
            CloudEvent::Stockout { from_ms, until_ms, .. } => [*from_ms, *until_ms],
            CloudEvent::Reclaim { at_ms, .. } => [*at_ms, *at_ms],
        });
        self.next_event_ms()
            .into_iter()
            .chain(running)
            .chain(launch_timeouts)
            .chain(idle_timeouts)
            .chain(stockouts)
            .filter(|at| *at > t)
            .min()
    }

    /// Plays every event up to `t` in order and moves the clock to `t`.
    pub fn advance_to(&mut self, t: u64) {
        while let Some(Reverse((at, _, _))) = self.events.peek() {
            if *at > t {
                break;
            }
            let Reverse((at, _, event)) = self.events.pop().expect("peeked");
            self.clock.store(at.max(self.now()), Ordering::SeqCst);
            self.play(event);
        }
        self.clock.store(t.max(self.now()), Ordering::SeqCst);
    }

    fn play(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::Arrive(i) => self.queue.push(i),
            Event::Online { node } => {
                if let Some(a) = self.agents.get(&node)
                    && self.instances.contains_key(&a.instance_id)
                {
                    let a = self.agents.get_mut(&node).expect("present");
                    a.connected = true;
                    a.was_connected = true;
                    a.idle_since_ms = Some(now);
                }
            }
            Event::Finish { node, build } => {
                if let Some(a) = self.agents.get_mut(&node)
                    && let Some(pos) = a.running.iter().position(|b| *b == build)
                {
                    a.running.swap_remove(pos);
                    if a.running.is_empty() && a.connected {
                        a.idle_since_ms = Some(now);
                    }
                }
            }
            Event::ReclaimNotice(i) => {
                let CloudEvent::Reclaim { zone, instance_type, .. } = self.reclaims[i].clone() else { return };
                let hit: Vec<String> = self
                    .instances
                    .iter()
                    .filter(|(_, x)| {
                        x.spot && x.zone == zone && instance_type.as_ref().is_none_or(|t| *t == x.instance_type)
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in hit {
                    self.instances.get_mut(&id).expect("listed").reclaim_notice = true;
                    self.schedule(now + RECLAIM_NOTICE_MS, Event::ReclaimDelete(id));
                }
            }
            Event::ReclaimDelete(id) => {
                if self.instances.contains_key(&id) {
                    self.calls.reclaimed += 1;
                    self.delete_instance(&id, true);
                }
            }
        }
        self.dispatch();
    }

    /// Jenkins' scheduler: each queued build, oldest first, to the first free executor (by
    /// node name) that can run it.
    fn dispatch(&mut self) {
        let now = self.now();
        let mut i = 0;
        while i < self.queue.len() {
            let b = self.queue[i];
            let expr = self.exprs[b].as_ref();
            let free = self.agents.iter().find(|(_, a)| {
                a.connected && a.offline.is_none() && (a.running.len() as u32) < a.executors && can_run(expr, &a.labels, a.normal)
            });
            let Some((name, _)) = free else {
                i += 1;
                continue;
            };
            let name = name.clone();
            let a = self.agents.get_mut(&name).expect("found");
            a.running.push(b);
            a.uses += 1;
            a.idle_since_ms = None;
            self.builds[b].started_ms = Some(now);
            self.queue.remove(i);
            let end = now + self.durations[b];
            self.schedule(end, Event::Finish { node: name, build: b });
        }
    }

    fn delete_instance(&mut self, id: &str, by_cloud: bool) {
        let now = self.now();
        // Deleted instances leave the map the cycles look through: a month's replay launches
        // thousands, and only their bill is left to count.
        if let Some(mut i) = self.instances.remove(id) {
            if let Some((since, true)) = i.stopped.take() {
                i.unbilled.push((since, now));
            }
            self.gone.push(life(&i, Some(now)));
        }
        self.drop_agent(id, by_cloud);
    }

    /// The instance's agent loses its connection; its builds count as interrupted when the
    /// cloud took the instance.
    fn drop_agent(&mut self, id: &str, by_cloud: bool) {
        for a in self.agents.values_mut().filter(|a| a.instance_id == id) {
            a.connected = false;
            a.idle_since_ms = None;
            for b in a.running.drain(..) {
                if by_cloud {
                    self.builds[b].interrupted = true;
                }
            }
        }
    }

    /// The instances alive now as the cloud describes them; only those of `ids` when given.
    fn describe(&self, ids: Option<&[String]>) -> Vec<CloudInstance> {
        let now = self.now();
        self.instances
            .iter()
            .filter(|(id, _)| ids.is_none_or(|ids| ids.contains(id)))
            .map(|(id, i)| {
                let running = i.stopped.is_none() && now >= i.running_ms;
                let status = match (i.stopped, running) {
                    (Some(_), _) => CloudStatus::Stopped,
                    (None, true) => CloudStatus::Running,
                    (None, false) => CloudStatus::Pending,
                };
                CloudInstance {
                    instance_id: id.clone(),
                    template: i.template.clone(),
                    zone: i.zone.clone(),
                    vswitch: i.vswitch.clone(),
                    instance_type: i.instance_type.clone(),
                    spot: i.spot,
                    status,
                    private_ip: running.then_some(i.ip),
                    created_ms: Some(i.created_ms),
                    locks: if i.reclaim_notice { vec![LOCK_RECYCLING.to_owned()] } else { Vec::new() },
                    // Replays launch over SSH: nodes are named `<template>-<instance-id>`.
                    node: None,
                    fingerprint: Some(i.fingerprint.clone()),
                }
            })
            .collect()
    }

    /// Builds queued that some template could serve.
    pub fn servable_queued(&self) -> usize {
        self.queue.iter().filter(|b| self.builds[**b].template.is_some()).count()
    }

    /// Builds running now.
    pub fn running(&self) -> usize {
        self.agents.values().map(|a| a.running.len()).sum()
    }

    /// Nodes running at least one build now.
    pub fn busy_nodes(&self) -> usize {
        self.agents.values().filter(|a| !a.running.is_empty()).count()
    }

    /// Instances alive now (not deleted).
    pub fn alive(&self) -> usize {
        self.instances.len()
    }

    /// What happened to every build.
    pub fn builds(&self) -> &[BuildOutcome] {
        &self.builds
    }

    /// Every instance's life, the deleted ones first (in the order they went).
    pub fn lives(&self) -> Vec<InstanceLife> {
        self.gone.iter().cloned().chain(self.instances.values().map(|i| life(i, None))).collect()
    }

    /// The lives of the deleted instances, in the order they went.
    pub fn gone(&self) -> &[InstanceLife] {
        &self.gone
    }

    /// The lives of the instances not deleted.
    pub fn alive_lives(&self) -> Vec<InstanceLife> {
        self.instances.values().map(|i| life(i, None)).collect()
    }

    /// Counts of what the engine did to the simulated cloud.
    pub fn calls(&self) -> Calls {
        self.calls
    }

    fn rng_for(&self, seq: u64, purpose: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ purpose)
    }

    fn out_of_stock(&self, zone: &str, instance_type: &str, spot: bool) -> bool {
        let now = self.now();
        self.stockouts.iter().any(|e| match e {
            CloudEvent::Stockout { zone: z, instance_type: t, spot: s, from_ms, until_ms } => {
                z == zone
                    && t.as_deref().is_none_or(|t| t == instance_type)
                    && s.is_none_or(|s| s == spot)
                    && (*from_ms..*until_ms).contains(&now)
            }
            CloudEvent::Reclaim { .. } => false,
        })
    }
}

/// An instance's life as the bill sees it; `deleted_ms` is `None` while it lives.
fn life(i: &Instance, deleted_ms: Option<u64>) -> InstanceLife {
    InstanceLife {
        template: i.template.clone(),
        spot: i.spot,
        instance_type: i.instance_type.clone(),
        created_ms: i.created_ms,
        deleted_ms,
        unbilled: i
            .unbilled
            .iter()
            .map(|(from, to)| (*from, Some(*to)))
            .chain(i.stopped.filter(|(_, economical)| *economical).map(|(from, _)| (from, None)))
            .collect(),
    }
}

/// Whether a node with these labels (and mode) can run a build asking for `expr`.
fn can_run(expr: Option<&LabelExpr>, labels: &[String], normal: bool) -> bool {
    match expr {
        Some(e) => e.matches(labels),
        None => normal,
    }
}

/// The offerings the simulated cloud has: every zone, vswitch and instance type a template
/// names. A template that leaves one to discovery (`auto`) gets two zones of the region
/// (`<region>-a`, `<region>-b`), a vswitch per zone and `ecs.c7.large`.
fn catalog(config: &Config) -> Vec<CloudOffering> {
    let mut out: Vec<CloudOffering> = Vec::new();
    for t in &config.templates {
        let zones = match &t.zones {
            Candidates::List(z) => z.clone(),
            Candidates::Auto => vec![format!("{}-a", config.cloud.region), format!("{}-b", config.cloud.region)],
        };
        let types = match &t.instance_types {
            Candidates::List(x) => x.clone(),
            Candidates::Auto => vec!["ecs.c7.large".to_owned()],
        };
        for (zi, zone) in zones.iter().enumerate() {
            let vswitches = match &t.vswitches {
                // Listed vswitches are spread over the zones in order.
                Candidates::List(v) => v.iter().skip(zi).step_by(zones.len()).cloned().collect(),
                Candidates::Auto => vec![format!("vsw-{zone}")],
            };
            for vswitch in vswitches {
                for ty in &types {
                    if !out.iter().any(|o| o.zone == *zone && o.vswitch == vswitch && o.instance_type == *ty) {
                        let (vcpus, memory_mib) = shape_of(ty);
                        out.push(CloudOffering {
                            zone: zone.clone(),
                            vswitch: vswitch.clone(),
                            instance_type: ty.clone(),
                            vcpus,
                            memory_mib,
                            free_ips: 4000,
                            in_stock: true,
                            spot_in_stock: true,
                        });
                    }
                }
            }
        }
    }
    out
}

/// vCPUs and memory of an ECS type from its size suffix (`large` = 2 vCPUs, `xlarge` = 4,
/// `4xlarge` = 16...), at 4 GiB per vCPU; the policy sees these numbers only.
fn shape_of(instance_type: &str) -> (u32, u32) {
    let size = instance_type.rsplit('.').next().unwrap_or("");
    let vcpus = match size {
        "large" => 2,
        "xlarge" => 4,
        s => s.strip_suffix("xlarge").and_then(|n| n.parse::<u32>().ok()).map_or(2, |n| 4 * n),
    };
    (vcpus, vcpus * 4096)
}

/// A port over the shared world.
#[derive(Clone)]
pub struct Shared(pub Arc<Mutex<World>>);

/// [`CloudPort`] over the world.
pub struct SimCloud(pub Shared);
/// [`JenkinsPort`] over the world.
pub struct SimJenkins(pub Shared);
/// [`BootstrapPort`] over the world.
pub struct SimBootstrap(pub Shared);

impl CloudPort for SimCloud {
    async fn list_fleet(&self) -> anyhow::Result<Vec<CloudInstance>> {
        Ok(self.0.0.lock().unwrap().describe(None))
    }

    async fn describe_instances(&self, instance_ids: &[String]) -> anyhow::Result<Vec<CloudInstance>> {
        Ok(self.0.0.lock().unwrap().describe(Some(instance_ids)))
    }

    async fn discover_offerings(&self) -> anyhow::Result<Vec<CloudOffering>> {
        let w = self.0.0.lock().unwrap();
        Ok(w.catalog
            .iter()
            .map(|o| CloudOffering {
                in_stock: !w.out_of_stock(&o.zone, &o.instance_type, false),
                spot_in_stock: !w.out_of_stock(&o.zone, &o.instance_type, true),
                ..o.clone()
            })
            .collect())
    }

    async fn launch(&self, r: &LaunchRequest) -> Result<Vec<String>, LaunchError> {
        let mut w = self.0.0.lock().unwrap();
        if let Some(ids) = w.tokens.get(&r.client_token) {
            return Ok(ids.clone());
        }
        if w.out_of_stock(&r.zone, &r.instance_type, r.spot) {
            w.calls.stockout_hits += 1;
            return Err(LaunchError::Capacity {
                code: "OperationDenied.NoStock".into(),
                label: "OperationDenied.NoStock",
                message: format!("no {} stock of {} in {}", if r.spot { "spot" } else { "on-demand" }, r.instance_type, r.zone),
            });
        }
        let now = w.now();
        let mut ids = Vec::with_capacity(r.count as usize);
        for _ in 0..r.count {
            w.seq += 1;
            let seq = w.seq;
            let boot = w.delays.boot.draw(&mut w.rng_for(seq, 1));
            let id = format!("i-r{seq:08}");
            let fingerprint = w.templates.iter().find(|t| t.name == r.template).map_or_else(String::new, |t| t.fingerprint.clone());
            w.instances.insert(
                id.clone(),
                Instance {
                    template: r.template.clone(),
                    zone: r.zone.clone(),
                    vswitch: r.vswitch.clone(),
                    instance_type: r.instance_type.clone(),
                    spot: r.spot,
                    created_ms: now,
                    running_ms: now + boot,
                    ip: Ipv4Addr::from(0x0A00_0000 | (seq as u32 & 0x00FF_FFFF)),
                    seq,
                    reclaim_notice: false,
                    fingerprint,
                    stopped: None,
                    unbilled: Vec::new(),
                },
            );
            ids.push(id);
        }
        w.calls.launched += u64::from(r.count);
        w.tokens.insert(r.client_token.clone(), ids.clone());
        Ok(ids)
    }

    async fn console_output(&self, _instance_id: &str) -> anyhow::Result<String> {
        // The simulated instances boot no OS: they print nothing.
        Ok(String::new())
    }

    async fn stop(&self, instance_ids: &[String], mode: StoppedModeConfig) -> anyhow::Result<()> {
        let mut w = self.0.0.lock().unwrap();
        let now = w.now();
        for id in instance_ids {
            let Some(i) = w.instances.get_mut(id).filter(|i| i.stopped.is_none()) else { continue };
            i.stopped = Some((now, mode == StoppedModeConfig::StopCharging));
            w.calls.stopped += 1;
            // The OS shuts down: the agent's connection drops (the engine drained it first).
            w.drop_agent(id, false);
        }
        Ok(())
    }

    async fn start(&self, instance_id: &str) -> Result<(), LaunchError> {
        let mut w = self.0.0.lock().unwrap();
        let now = w.now();
        let Some(i) = w.instances.get(instance_id) else {
            return Err(LaunchError::Other {
                code: "InvalidInstanceId.NotFound".into(),
                label: "InvalidInstanceId.NotFound",
                message: format!("no instance {instance_id}"),
            });
        };
        let Some((since, economical)) = i.stopped else { return Ok(()) };
        let (zone, instance_type, spot, seq) = (i.zone.clone(), i.instance_type.clone(), i.spot, i.seq);
        // An economical-mode stop gave the compute back: the start needs stock again.
        if economical && w.out_of_stock(&zone, &instance_type, spot) {
            w.calls.stockout_hits += 1;
            return Err(LaunchError::Capacity {
                code: "OperationDenied.NoStock".into(),
                label: "OperationDenied.NoStock",
                message: format!("no stock to start {instance_id} in {zone}"),
            });
        }
        // A start boots the OS again, as long as a launch does (the image is on the disk).
        let boot = w.delays.boot.draw(&mut w.rng_for(seq ^ now, 3));
        let i = w.instances.get_mut(instance_id).expect("looked up above");
        if economical {
            i.unbilled.push((since, now));
        }
        i.stopped = None;
        i.running_ms = now + boot;
        w.calls.started += 1;
        Ok(())
    }

    async fn terminate(&self, instance_ids: &[String]) -> anyhow::Result<()> {
        let mut w = self.0.0.lock().unwrap();
        for id in instance_ids {
            if w.instances.contains_key(id) {
                w.calls.removed += 1;
                w.delete_instance(id, false);
            }
        }
        Ok(())
    }
}

impl JenkinsPort for SimJenkins {
    async fn observe(&self, now_ms: u64) -> anyhow::Result<JenkinsView> {
        let w = self.0.0.lock().unwrap();
        let mut queues: Vec<TemplateQueue> =
            w.templates.iter().map(|t| TemplateQueue { template: t.name.clone(), items: Vec::new() }).collect();
        let mut unmatched = 0;
        for &b in &w.queue {
            let build = &w.builds[b];
            match build.template.as_ref().and_then(|t| queues.iter_mut().find(|q| q.template == *t)) {
                Some(q) => q.items.push((b as u64 + 1, now_ms.saturating_sub(build.arrived_ms))),
                None => unmatched += 1,
            }
        }
        let agents = w
            .agents
            .iter()
            .map(|(name, a)| AgentNode {
                name: name.clone(),
                online: a.connected,
                temporarily_offline: a.offline.is_some(),
                offline_reason: a.offline.clone(),
                dropped: !a.connected && a.was_connected,
                idle_since_ms: a.idle_since_ms,
                idle_recorded_ms: a.recorded.idle_since_ms,
                uses_recorded: a.recorded.uses.as_ref().map_or(0, |(n, _)| *n),
                last_build: a.recorded.uses.as_ref().map(|(_, k)| k.clone()),
                executors: a.executors,
                busy_executors: a.running.len() as u32,
                idle_ms: a.idle_since_ms.map_or(0, |t| now_ms.saturating_sub(t)),
                uses: a.uses,
                // Only the decision journal reads the builds' identities; a replay has none.
                running: Vec::new(),
            })
            .collect();
        Ok(JenkinsView { queues, unmatched, agents })
    }

    async fn create_node(&self, node: &NodeRegistration) -> anyhow::Result<()> {
        let mut w = self.0.0.lock().unwrap();
        if w.agents.contains_key(&node.name) {
            return Ok(());
        }
        let t = w.templates.iter().find(|t| t.name == node.template).cloned();
        let Some(t) = t else { anyhow::bail!("no template {}", node.template) };
        w.agents.insert(
            node.name.clone(),
            Agent {
                instance_id: node.instance_id.clone(),
                labels: t.labels,
                normal: t.normal,
                executors: t.executors,
                connected: false,
                was_connected: false,
                offline: None,
                running: Vec::new(),
                idle_since_ms: None,
                uses: 0,
                recorded: ActivityRecord::default(),
            },
        );
        Ok(())
    }

    async fn agent_secret(&self, _name: &str) -> anyhow::Result<String> {
        Ok("replay".into())
    }

    async fn set_offline(&self, name: &str, offline: bool, reason: &str) -> anyhow::Result<()> {
        let mut w = self.0.0.lock().unwrap();
        if let Some(a) = w.agents.get_mut(name) {
            a.offline = offline.then(|| reason.to_owned());
        }
        if !offline {
            w.dispatch();
        }
        Ok(())
    }

    async fn is_idle(&self, name: &str) -> anyhow::Result<bool> {
        Ok(self.0.0.lock().unwrap().agents.get(name).is_none_or(|a| a.running.is_empty()))
    }

    async fn delete_node(&self, name: &str) -> anyhow::Result<()> {
        self.0.0.lock().unwrap().agents.remove(name);
        Ok(())
    }

    async fn record_activity(&self, name: &str, record: &ActivityRecord) -> anyhow::Result<()> {
        if let Some(a) = self.0.0.lock().unwrap().agents.get_mut(name) {
            a.recorded = record.clone();
        }
        Ok(())
    }
}

impl BootstrapPort for SimBootstrap {
    async fn bootstrap(&self, target: BootstrapTarget) -> anyhow::Result<()> {
        let mut w = self.0.0.lock().unwrap();
        let Some(seq) = w.instances.get(&target.instance_id).map(|i| i.seq) else {
            anyhow::bail!("instance {} is gone", target.instance_id)
        };
        let mut rng = w.rng_for(seq, 2);
        let delay = w.delays.bootstrap.draw(&mut rng) + w.delays.connect.draw(&mut rng);
        let at = w.now() + delay;
        w.schedule(at, Event::Online { node: target.node_name });
        Ok(())
    }

    fn instance_gone(&self, _instance_id: &str) {}
}
