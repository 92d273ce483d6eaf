//! The emulated controller's state: nodes, jobs, queue, running and finished builds, the real
//! `why` rules and the scheduler step. Pure data; the HTTP layer locks it briefly per request.

use std::collections::{BTreeMap, HashMap, VecDeque};

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use ecsp_jenkins::client::{NodeMode, encode_segment};
use ecsp_jenkins::label::{LabelExpr, split_label_string};

use crate::now_ms;

/// Kind of job, which decides the queue item's shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// A freestyle job: the queued task is the job and exports `labelExpression`.
    #[default]
    Freestyle,
    /// A Pipeline whose `node('label')` block waits: the queued task is a
    /// `PlaceholderTask` that exports no label; only `why` names it.
    Pipeline,
}

/// A job the emulator knows (created by the admin API or implicitly by an enqueue).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Job name.
    pub name: String,
    /// Freestyle (the default) or Pipeline.
    #[serde(default)]
    pub kind: JobKind,
    /// Label expression (`None`: any node).
    #[serde(default)]
    pub label: Option<String>,
    /// How long each build runs.
    #[serde(default = "default_duration")]
    pub duration_ms: u64,
}

fn default_duration() -> u64 {
    1_000
}

/// A request to put builds in the queue directly (not deduplicated like `/job/x/build`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnqueueRequest {
    /// Job name; defaults to `adhoc-<kind>`. Created if unknown.
    #[serde(default)]
    pub job: Option<String>,
    /// Job kind if the job is created; freestyle by default.
    #[serde(default)]
    pub kind: JobKind,
    /// Label expression the builds need (`None`: any node).
    #[serde(default)]
    pub label: Option<String>,
    /// How long each build runs, ms (default 1000).
    #[serde(default = "default_duration")]
    pub duration_ms: u64,
    /// How many builds (default 1).
    #[serde(default)]
    pub count: Option<u32>,
}

/// A finished build, with its queue wait.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CompletedBuild {
    /// Queue item id the build had.
    pub queue_id: u64,
    /// Job name.
    pub job: String,
    /// What kind of job it was (freestyle-type builds appear in a node's history).
    pub kind: JobKind,
    /// Build number.
    pub number: u64,
    /// Node it ran on.
    pub node: String,
    /// Label expression it needed.
    pub label: Option<String>,
    /// When it was queued, ms since the Unix epoch.
    pub enqueued_ms: u64,
    /// When it started, ms since the Unix epoch.
    pub started_ms: u64,
    /// When it finished, ms since the Unix epoch.
    pub finished_ms: u64,
    /// `started_ms - enqueued_ms`.
    pub wait_ms: u64,
    /// `SUCCESS`, or `FAILURE` when the agent went away mid-build.
    pub result: String,
}

/// Counters and finished builds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SimStats {
    /// Items in the queue now.
    pub queued: usize,
    /// Builds running now.
    pub running: usize,
    /// Builds finished so far.
    pub completed: Vec<CompletedBuild>,
    /// Mean queue wait of the finished builds, ms.
    pub mean_wait_ms: u64,
    /// Longest queue wait of the finished builds, ms.
    pub max_wait_ms: u64,
}

/// A node as tests see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimNodeView {
    /// Node name.
    pub name: String,
    /// Node description.
    pub description: String,
    /// Labels the node carries.
    pub labels: Vec<String>,
    /// Number of executors.
    pub num_executors: u32,
    /// `NORMAL` or `EXCLUSIVE`.
    pub mode: NodeMode,
    /// Whether an agent is connected.
    pub connected: bool,
    /// Whether the node is marked temporarily offline.
    pub temporarily_offline: bool,
    /// The offline message, while marked temporarily offline.
    pub offline_message: Option<String>,
    /// Executors running a build.
    pub busy: u32,
    /// Whether the node's launcher was created with `webSocket` set.
    pub web_socket: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct OfflineMark {
    pub message: String,
    pub user: String,
    pub at_ms: u64,
}

#[derive(Debug)]
pub(crate) struct Connection {
    pub id: u64,
    pub cookie: String,
    /// Closing it tells the socket task to hang up (node deleted).
    pub kick: tokio::sync::watch::Sender<bool>,
}

#[derive(Clone, Debug)]
pub(crate) struct Running {
    pub queue_id: u64,
    pub job: String,
    pub kind: JobKind,
    pub number: u64,
    pub label: Option<String>,
    pub enqueued_ms: u64,
    pub started_ms: u64,
    pub ends_ms: u64,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    pub description: String,
    pub num_executors: u32,
    pub remote_fs: String,
    pub labels: Vec<String>,
    pub mode: NodeMode,
    pub launcher_class: String,
    pub web_socket: bool,
    pub offline: Option<OfflineMark>,
    pub connection: Option<Connection>,
    /// Why the last connection ended (`OfflineCause$ChannelTermination`), until the agent
    /// connects again. None for a node that never connected.
    pub dropped: Option<String>,
    pub executors: Vec<Option<Running>>,
}

impl Node {
    pub fn online(&self) -> bool {
        self.connection.is_some() && self.offline.is_none()
    }
    pub fn is_inbound(&self) -> bool {
        self.launcher_class == "hudson.slaves.JNLPLauncher"
    }
    /// Labels as Jenkins assigns them: the configured ones plus the node's own name.
    pub fn assigned_labels(&self) -> Vec<String> {
        let mut l = self.labels.clone();
        l.push(self.name.clone());
        l.sort();
        l.dedup();
        l
    }
    pub fn has_label(&self, expr: &LabelExpr) -> bool {
        expr.matches_with(&|a| a == self.name || self.labels.iter().any(|l| l == a))
    }
    fn busy(&self) -> u32 {
        self.executors.iter().filter(|e| e.is_some()).count() as u32
    }
    fn can_take(&self, label: Option<&LabelExpr>) -> bool {
        match label {
            Some(l) => self.has_label(l),
            None => self.mode == NodeMode::Normal,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Job {
    pub spec: JobSpec,
    pub next_build: u64,
    /// Finished builds, oldest first; at most [`BUILDS_KEPT`].
    pub history: VecDeque<CompletedBuild>,
}

#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub id: u64,
    pub job: String,
    pub kind: JobKind,
    pub label: Option<String>,
    pub duration_ms: u64,
    pub in_queue_since: u64,
    /// Pipeline runs get their number when they start, before their `node {}` block queues.
    pub run_number: Option<u64>,
    /// `label` parsed once (the scheduler evaluates it against every node).
    pub expr: Option<LabelExpr>,
}

/// A queue item that has left the queue (started), as `/queue/item/<id>/` shows for a while.
#[derive(Clone, Debug)]
pub(crate) struct LeftItem {
    pub item: Item,
    pub number: u64,
}

/// The whole emulated controller.
pub(crate) struct State {
    pub root_url: String,
    key: [u8; 32],
    pub nodes: BTreeMap<String, Node>,
    pub jobs: BTreeMap<String, Job>,
    pub queue: Vec<Item>,
    pub left: HashMap<u64, LeftItem>,
    left_order: VecDeque<u64>,
    pub next_queue_id: u64,
    pub completed: Vec<CompletedBuild>,
    pub next_conn_id: u64,
    pub built_in_executors: u32,
    /// Bumped to expire every web session (and so every crumb), as a controller restart does.
    pub session_epoch: u64,
}


/// U+2018 / U+2019 around a name, as Jenkins' messages quote.
fn q(s: &str) -> String {
    format!("\u{2018}{s}\u{2019}")
}

/// How Jenkins names a label in messages: an atom's raw name, an expression's normal form.
fn label_name(e: &LabelExpr) -> String {
    match e {
        LabelExpr::Atom(a) => a.clone(),
        e => e.name(),
    }
}

const LEFT_ITEMS_KEPT: usize = 10_000;
/// Finished builds kept per job (older ones are discarded, as by a build discarder), so a long
/// benchmark does not grow without bound.
pub const BUILDS_KEPT: usize = 1000;

impl State {
    pub fn new(root_url: String, key: [u8; 32], built_in_executors: u32) -> Self {
        State {
            root_url,
            key,
            nodes: BTreeMap::new(),
            jobs: BTreeMap::new(),
            queue: Vec::new(),
            left: HashMap::new(),
            left_order: VecDeque::new(),
            next_queue_id: 1,
            completed: Vec::new(),
            next_conn_id: 1,
            built_in_executors,
            session_epoch: 0,
        }
    }

    /// The inbound agent secret: HMAC-SHA256 of the node name, hex (as `JnlpAgentReceiver`).
    pub fn secret_of(&self, node: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(node.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A keyed hash for crumbs (user + session).
    pub fn crumb_for(&self, user: &str, session: &str) -> String {
        self.secret_of(&format!("crumb:{};{user};{session}", self.session_epoch))
    }

    pub fn define_job(&mut self, spec: JobSpec) {
        match self.jobs.get_mut(&spec.name) {
            Some(j) => j.spec = spec,
            None => {
                self.jobs.insert(
                    spec.name.clone(),
                    Job {
                        spec,
                        next_build: 1,
                        history: VecDeque::new(),
                    },
                );
            }
        }
    }

    fn next_number(&mut self, job: &str) -> u64 {
        let j = self.jobs.get_mut(job).expect("job exists");
        let n = j.next_build;
        j.next_build += 1;
        n
    }

    /// Queues one build of a known job; returns the queue id.
    pub fn enqueue_job(
        &mut self,
        job: &str,
        label: Option<String>,
        kind: JobKind,
        duration_ms: u64,
    ) -> u64 {
        let id = self.next_queue_id;
        self.next_queue_id += 1;
        let run_number = (kind == JobKind::Pipeline).then(|| self.next_number(job));
        let expr = label
            .as_deref()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(LabelExpr::parse_lenient);
        self.queue.push(Item {
            id,
            job: job.to_string(),
            kind,
            label,
            duration_ms,
            in_queue_since: now_ms(),
            run_number,
            expr,
        });
        id
    }

    /// `/job/<name>/build`: a freestyle job already waiting in the queue is not queued twice.
    pub fn build_job(&mut self, job: &str) -> Option<u64> {
        let spec = self.jobs.get(job)?.spec.clone();
        if spec.kind == JobKind::Freestyle
            && let Some(existing) = self.queue.iter().find(|i| i.job == job)
        {
            return Some(existing.id);
        }
        Some(self.enqueue_job(job, spec.label, spec.kind, spec.duration_ms))
    }

    pub fn enqueue(&mut self, req: &EnqueueRequest) -> Result<Vec<u64>, String> {
        if let Some(l) = &req.label {
            LabelExpr::parse(l).map_err(|e| e.to_string())?;
        }
        let job = req.job.clone().unwrap_or_else(|| {
            format!(
                "adhoc-{}",
                if req.kind == JobKind::Pipeline {
                    "pipeline"
                } else {
                    "freestyle"
                }
            )
        });
        if !self.jobs.contains_key(&job) {
            self.define_job(JobSpec {
                name: job.clone(),
                kind: req.kind,
                label: req.label.clone(),
                duration_ms: req.duration_ms,
            });
        }
        Ok((0..req.count.unwrap_or(1))
            .map(|_| self.enqueue_job(&job, req.label.clone(), req.kind, req.duration_ms))
            .collect())
    }

    /// Removes an item from the queue (`/queue/cancelItem`).
    pub fn cancel(&mut self, id: u64) -> bool {
        let before = self.queue.len();
        self.queue.retain(|i| i.id != id);
        before != self.queue.len()
    }

    /// The `why` text and `stuck` flag of a buildable item (reference §5.5, in order).
    pub fn why(&self, item: &Item) -> (String, bool) {
        let declared = item.expr.clone();
        let stuck_label = declared
            .as_ref()
            .is_some_and(|l| !self.nodes.values().any(|n| n.online() && n.has_label(l)));
        // "no master/agent. pointless to talk about nodes"
        let label = if self.nodes.is_empty() {
            None
        } else {
            declared
        };
        let Some(label) = label else {
            // An unlabelled item facing idle executors it may not use gets the nodes' own
            // reasons, at most 5, joined by "; " (CompositeCauseOfBlockage).
            let reserved: Vec<String> = self
                .nodes
                .values()
                .filter(|n| {
                    n.online() && n.mode == NodeMode::Exclusive && n.busy() < n.num_executors
                })
                .take(5)
                .map(|n| {
                    format!(
                        "{} is reserved for jobs with matching label expression",
                        q(&n.name)
                    )
                })
                .collect();
            if reserved.is_empty() {
                return ("Waiting for next available executor".into(), stuck_label);
            }
            return (reserved.join("; "), stuck_label);
        };
        let matching: Vec<&Node> = self
            .nodes
            .values()
            .filter(|n| n.has_label(&label))
            .collect();
        let offline = !matching.iter().any(|n| n.online());
        let why = match (offline, matching.len()) {
            (true, 1) => format!("{} is offline", q(&matching[0].name)),
            (true, 0) => format!(
                "There are no nodes with the label {}",
                q(&label_name(&label))
            ),
            (true, _) => format!("All nodes of label {} are offline", q(&label_name(&label))),
            (false, 1) => format!(
                "Waiting for next available executor on {}",
                q(&matching[0].name)
            ),
            (false, _) => format!(
                "Waiting for next available executor on {}",
                q(&label_name(&label))
            ),
        };
        (why, stuck_label)
    }

    /// One scheduler step at `now`: finish due builds, then hand buildable items (FIFO) to idle
    /// executors of online nodes that can take them. Returns the earliest pending end time.
    pub fn step(&mut self, now: u64) -> Option<u64> {
        let mut done = Vec::new();
        for node in self.nodes.values_mut() {
            for slot in node.executors.iter_mut() {
                if slot.as_ref().is_some_and(|r| r.ends_ms <= now) {
                    let r = slot.take().expect("checked");
                    done.push(finished(r, &node.name, now, "SUCCESS"));
                }
            }
        }
        for build in done {
            self.record(build);
        }
        // Only nodes with a free executor can take anything; usually there are few.
        let mut free: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.online() && n.executors.iter().any(Option::is_none))
            .map(|n| n.name.clone())
            .collect();
        let mut i = 0;
        while i < self.queue.len() && !free.is_empty() {
            let label = self.queue[i].expr.as_ref();
            let target = free
                .iter()
                .position(|name| self.nodes[name].can_take(label));
            let Some(pos) = target else {
                i += 1;
                continue;
            };
            let target = free[pos].clone();
            let item = self.queue.remove(i);
            let number = match item.run_number {
                Some(n) => n,
                None => self.next_number(&item.job),
            };
            let node = self.nodes.get_mut(&target).expect("found above");
            let now_full = node.executors.iter().filter(|e| e.is_none()).count() == 1;
            let slot = node
                .executors
                .iter_mut()
                .find(|e| e.is_none())
                .expect("found above");
            *slot = Some(Running {
                queue_id: item.id,
                job: item.job.clone(),
                kind: item.kind,
                number,
                label: item.label.clone(),
                enqueued_ms: item.in_queue_since,
                started_ms: now,
                ends_ms: now + item.duration_ms,
            });
            if now_full {
                free.remove(pos);
            }
            self.left_order.push_back(item.id);
            self.left.insert(item.id, LeftItem { item, number });
            if self.left_order.len() > LEFT_ITEMS_KEPT
                && let Some(oldest) = self.left_order.pop_front()
            {
                self.left.remove(&oldest);
            }
        }
        self.nodes
            .values()
            .flat_map(|n| n.executors.iter().flatten())
            .map(|r| r.ends_ms)
            .min()
    }

    /// Fails the builds of a node that lost its agent or was deleted.
    pub fn abort_builds(&mut self, node: &str, now: u64) {
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        let aborted: Vec<Running> = n.executors.iter_mut().filter_map(Option::take).collect();
        for r in aborted {
            self.record(finished(r, node, now, "FAILURE"));
        }
    }

    /// Books a finished build: in the stats, and in its job's bounded history.
    fn record(&mut self, build: CompletedBuild) {
        if let Some(job) = self.jobs.get_mut(&build.job) {
            job.history.push_back(build.clone());
            if job.history.len() > BUILDS_KEPT {
                job.history.pop_front();
            }
        }
        self.completed.push(build);
    }

    pub fn stats(&self) -> SimStats {
        let waits: Vec<u64> = self.completed.iter().map(|c| c.wait_ms).collect();
        SimStats {
            queued: self.queue.len(),
            running: self.nodes.values().map(|n| n.busy() as usize).sum(),
            completed: self.completed.clone(),
            mean_wait_ms: if waits.is_empty() {
                0
            } else {
                waits.iter().sum::<u64>() / waits.len() as u64
            },
            max_wait_ms: waits.iter().copied().max().unwrap_or(0),
        }
    }

    pub fn node_views(&self) -> Vec<SimNodeView> {
        self.nodes
            .values()
            .map(|n| SimNodeView {
                name: n.name.clone(),
                description: n.description.clone(),
                labels: n.labels.clone(),
                num_executors: n.num_executors,
                mode: n.mode,
                connected: n.connection.is_some(),
                temporarily_offline: n.offline.is_some(),
                offline_message: n.offline.as_ref().map(|o| o.message.clone()),
                busy: n.busy(),
                web_socket: n.web_socket,
            })
            .collect()
    }

    // ---- JSON rendering, shaped like Stapler's output ----

    pub(crate) fn build_url(&self, job: &str, number: u64) -> String {
        format!("{}job/{}/{}/", self.root_url, encode_segment(job), number)
    }

    fn executable_json(&self, r: &Running) -> Value {
        let class = match r.kind {
            JobKind::Freestyle => run_class(r.kind),
            JobKind::Pipeline => {
                "org.jenkinsci.plugins.workflow.support.steps.ExecutorStepExecution$PlaceholderTask$PlaceholderExecutable"
            }
        };
        json!({"_class": class, "number": r.number, "url": self.build_url(&r.job, r.number), "timestamp": r.started_ms,
               "building": true, "queueId": r.queue_id})
    }

    fn executors_json(&self, executors: &[Option<Running>], now: u64) -> Value {
        Value::Array(
            executors
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let progress = e.as_ref().map_or(-1, |r| {
                        let total = (r.ends_ms - r.started_ms).max(1);
                        (((now.saturating_sub(r.started_ms)) * 100 / total).min(99)) as i64
                    });
                    json!({"_class": "hudson.model.Executor", "currentExecutable": e.as_ref().map(|r| self.executable_json(r)),
                           "idle": e.is_none(), "likelyStuck": false, "number": i, "progress": progress})
                })
                .collect(),
        )
    }

    pub fn built_in_json(&self) -> Value {
        let execs: Vec<Option<Running>> = vec![None; self.built_in_executors as usize];
        json!({
            "_class": "hudson.model.Hudson$MasterComputer",
            "actions": [], "assignedLabels": [{"name": "built-in"}], "description": "the Jenkins controller's built-in node",
            "displayName": "Built-In Node", "executors": self.executors_json(&execs, now_ms()),
            "icon": "symbol-computer", "iconClassName": "symbol-computer", "idle": true, "jnlpAgent": false,
            "launchSupported": true, "loadStatistics": {"_class": "hudson.model.Label$1"}, "manualLaunchAllowed": true,
            "monitorData": {}, "numExecutors": self.built_in_executors, "offline": false, "offlineCause": null,
            "offlineCauseReason": "", "oneOffExecutors": [], "temporarilyOffline": false
        })
    }

    pub fn computer_json(&self, n: &Node) -> Value {
        let now = now_ms();
        let offline = !n.online();
        // A user's mark wins, as in Jenkins; otherwise a broken channel leaves its cause.
        let dropped = n.dropped.as_ref().filter(|_| n.connection.is_none());
        let offline_cause = n
            .offline
            .as_ref()
            .map(|m| {
                json!({"_class": "hudson.slaves.OfflineCause$UserCause", "timestamp": m.at_ms,
                   "description": format!("Disconnected by {}{}", m.user, if m.message.is_empty() { String::new() } else { format!(" : {}", m.message) })})
            })
            .or_else(|| {
                dropped.map(|why| json!({"_class": "hudson.slaves.OfflineCause$ChannelTermination", "description": why}))
            });
        let offline_cause_reason = match (&n.offline, dropped) {
            (Some(m), _) => m.message.clone(),
            (None, Some(why)) => why.clone(),
            (None, None) => String::new(),
        };
        json!({
            "_class": "hudson.slaves.SlaveComputer",
            "actions": [],
            "assignedLabels": n.assigned_labels().iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
            "description": n.description,
            "displayName": n.name,
            "executors": self.executors_json(&n.executors, now),
            "icon": if offline { "symbol-computer-offline" } else { "symbol-computer" },
            "iconClassName": if offline { "symbol-computer-offline" } else { "symbol-computer" },
            "idle": n.busy() == 0,
            "jnlpAgent": n.is_inbound(),
            "launchSupported": !n.is_inbound(),
            "loadStatistics": {"_class": "hudson.model.Label$1"},
            "manualLaunchAllowed": true,
            "monitorData": {},
            "numExecutors": n.num_executors,
            "offline": offline,
            "offlineCause": offline_cause,
            "offlineCauseReason": offline_cause_reason,
            "oneOffExecutors": [],
            "temporarilyOffline": n.offline.is_some(),
            "absoluteRemotePath": if n.connection.is_some() { Value::String(n.remote_fs.clone()) } else { Value::Null },
        })
    }

    pub fn computer_set_json(&self) -> Value {
        let mut computers = vec![self.built_in_json()];
        computers.extend(self.nodes.values().map(|n| self.computer_json(n)));
        let total: u32 = self
            .nodes
            .values()
            .filter(|n| n.online())
            .map(|n| n.num_executors)
            .sum::<u32>()
            + self.built_in_executors;
        let busy: u32 = self.nodes.values().map(|n| n.busy()).sum();
        json!({"_class": "hudson.model.ComputerSet", "busyExecutors": busy, "computer": computers,
               "displayName": "Nodes", "totalExecutors": total})
    }

    fn task_json(&self, item: &Item) -> Value {
        match item.kind {
            JobKind::Freestyle => json!({
                "_class": "hudson.model.FreeStyleProject", "name": item.job,
                "url": format!("{}job/{}/", self.root_url, encode_segment(&item.job)),
                "color": "notbuilt", "labelExpression": item.label,
            }),
            JobKind::Pipeline => {
                let run = format!("{} #{}", item.job, item.run_number.unwrap_or(0));
                json!({
                    "_class": "org.jenkinsci.plugins.workflow.support.steps.ExecutorStepExecution$PlaceholderTask",
                    "name": format!("part of {run}"), "fullDisplayName": format!("part of {run}"),
                    "url": self.build_url(&item.job, item.run_number.unwrap_or(0)),
                })
            }
        }
    }

    pub fn queue_item_json(&self, item: &Item) -> Value {
        self.queue_item_json_with(item, self.why(item))
    }

    fn queue_item_json_with(&self, item: &Item, (why, stuck): (String, bool)) -> Value {
        json!({
            "_class": "hudson.model.Queue$BuildableItem",
            "actions": [{"_class": "hudson.model.CauseAction", "causes": [{"_class": "hudson.model.Cause$UserIdCause", "shortDescription": "Started by user admin"}]}],
            "blocked": false, "buildable": true, "id": item.id, "inQueueSince": item.in_queue_since,
            "params": "", "stuck": stuck, "task": self.task_json(item),
            "url": format!("queue/item/{}/", item.id), "why": why,
            "buildableStartMilliseconds": item.in_queue_since, "pending": false,
        })
    }

    pub fn left_item_json(&self, l: &LeftItem) -> Value {
        json!({
            "_class": "hudson.model.Queue$LeftItem", "actions": [], "blocked": false, "buildable": false,
            "id": l.item.id, "inQueueSince": l.item.in_queue_since, "params": "", "stuck": false,
            "task": self.task_json(&l.item), "url": format!("queue/item/{}/", l.item.id), "why": null,
            "cancelled": false,
            "executable": {"_class": run_class(l.item.kind), "number": l.number, "url": self.build_url(&l.item.job, l.number)},
        })
    }

    pub fn queue_json(&self) -> Value {
        // `why` depends only on the label and the nodes: work it out once per label.
        let mut whys: HashMap<Option<String>, (String, bool)> = HashMap::new();
        // Jenkins lists buildable items newest first.
        let items: Vec<Value> = self
            .queue
            .iter()
            .rev()
            .map(|i| {
                let why = whys
                    .entry(i.label.clone())
                    .or_insert_with(|| self.why(i))
                    .clone();
                self.queue_item_json_with(i, why)
            })
            .collect();
        json!({"_class": "hudson.model.Queue", "discoverableItems": [], "items": items})
    }

    pub fn label_json(&self, expr: &LabelExpr) -> Value {
        let nodes: Vec<&Node> = self.nodes.values().filter(|n| n.has_label(expr)).collect();
        let online: Vec<&&Node> = nodes.iter().filter(|n| n.online()).collect();
        let total: u32 = online.iter().map(|n| n.num_executors).sum();
        let busy: u32 = online.iter().map(|n| n.busy()).sum();
        json!({
            "_class": label_class(expr),
            "actions": [], "busyExecutors": busy, "clouds": [], "description": null,
            "idleExecutors": total - busy, "loadStatistics": {"_class": "hudson.model.Label$1"},
            "name": label_name(expr), "nodes": nodes.iter().map(|n| json!({"_class": "hudson.slaves.DumbSlave", "nodeName": n.name,
                "nodeDescription": n.description, "numExecutors": n.num_executors, "mode": n.mode.as_str(),
                "assignedLabels": n.assigned_labels().iter().map(|l| json!({"name": l})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            "offline": online.is_empty(), "tiedJobs": [], "totalExecutors": total, "propertiesList": [],
        })
    }

    pub fn job_json(&self, job: &Job) -> Value {
        let class = match job.spec.kind {
            JobKind::Freestyle => "hudson.model.FreeStyleProject",
            JobKind::Pipeline => "org.jenkinsci.plugins.workflow.job.WorkflowJob",
        };
        let mut v = json!({"_class": class, "name": job.spec.name, "fullName": job.spec.name,
            "url": format!("{}job/{}/", self.root_url, encode_segment(&job.spec.name)),
            "buildable": true, "color": "notbuilt", "nextBuildNumber": job.next_build,
            "inQueue": self.queue.iter().any(|i| i.job == job.spec.name)});
        if job.spec.kind == JobKind::Freestyle {
            v["labelExpression"] = json!(job.spec.label);
        }
        v
    }

    pub fn root_json(&self) -> Value {
        json!({
            "_class": "hudson.model.Hudson", "assignedLabels": [{"name": "built-in"}], "mode": "NORMAL",
            "nodeDescription": "the Jenkins controller's built-in node", "nodeName": "",
            "numExecutors": self.built_in_executors, "description": null,
            "jobs": self.jobs.values().map(|j| json!({"_class": if j.spec.kind == JobKind::Pipeline { "org.jenkinsci.plugins.workflow.job.WorkflowJob" } else { "hudson.model.FreeStyleProject" },
                "name": j.spec.name, "url": format!("{}job/{}/", self.root_url, encode_segment(&j.spec.name)), "color": "notbuilt"})).collect::<Vec<_>>(),
            "quietingDown": false, "slaveAgentPort": -1, "url": self.root_url, "useCrumbs": true, "useSecurity": true, "views": [],
        })
    }

    /// `jenkins-agent.jnlp` for a node (reference §3.1).
    pub fn jnlp(&self, n: &Node) -> String {
        let mut args = vec![self.secret_of(&n.name), n.name.clone()];
        if n.web_socket {
            args.push("-webSocket".into());
        }
        args.extend([
            "-workDir".into(),
            n.remote_fs.clone(),
            "-internalDir".into(),
            "remoting".into(),
            "-url".into(),
            self.root_url.clone(),
        ]);
        let args: String = args
            .iter()
            .map(|a| format!("<argument>{}</argument>", xml_escape(a)))
            .collect();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<jnlp codebase=\"{root}computer/{enc}/\" spec=\"1.0+\">\
             <information><title>Agent for {name}</title><vendor>Jenkins project</vendor></information>\
             <security><all-permissions/></security><resources><j2se version=\"1.8+\"/>\
             <jar href=\"{root}jnlpJars/remoting.jar\"/></resources>\
             <application-desc main-class=\"hudson.remoting.jnlp.Main\">{args}</application-desc></jnlp>",
            root = xml_escape(&self.root_url),
            enc = encode_segment(&n.name),
            name = xml_escape(&n.name),
        )
    }

    /// `config.xml` of a node, as XStream writes a `DumbSlave`.
    pub fn config_xml(&self, n: &Node) -> String {
        format!(
            "<?xml version='1.1' encoding='UTF-8'?>\n<slave>\n  <name>{}</name>\n  <description>{}</description>\n  \
             <remoteFS>{}</remoteFS>\n  <numExecutors>{}</numExecutors>\n  <mode>{}</mode>\n  \
             <retentionStrategy class=\"hudson.slaves.RetentionStrategy$Always\"/>\n  <launcher class=\"{}\">\n    \
             <workDirSettings>\n      <disabled>false</disabled>\n      <internalDir>remoting</internalDir>\n      \
             <failIfWorkDirIsMissing>false</failIfWorkDirIsMissing>\n    </workDirSettings>\n    <webSocket>{}</webSocket>\n  \
             </launcher>\n  <label>{}</label>\n  <nodeProperties/>\n</slave>\n",
            xml_escape(&n.name),
            xml_escape(&n.description),
            xml_escape(&n.remote_fs),
            n.num_executors,
            n.mode.as_str(),
            xml_escape(&n.launcher_class),
            n.web_socket,
            xml_escape(&n.labels.join(" ")),
        )
    }
}

fn run_class(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Freestyle => "hudson.model.FreeStyleBuild",
        JobKind::Pipeline => "org.jenkinsci.plugins.workflow.job.WorkflowRun",
    }
}

fn label_class(e: &LabelExpr) -> &'static str {
    match e {
        LabelExpr::Atom(_) => "hudson.model.labels.LabelAtom",
        LabelExpr::Not(_) => "hudson.model.labels.LabelExpression$Not",
        LabelExpr::And(..) => "hudson.model.labels.LabelExpression$And",
        LabelExpr::Or(..) => "hudson.model.labels.LabelExpression$Or",
        LabelExpr::Implies(..) => "hudson.model.labels.LabelExpression$Implies",
        LabelExpr::Iff(..) => "hudson.model.labels.LabelExpression$Iff",
        LabelExpr::Paren(_) => "hudson.model.labels.LabelExpression$Paren",
    }
}

fn finished(r: Running, node: &str, now: u64, result: &str) -> CompletedBuild {
    CompletedBuild {
        queue_id: r.queue_id,
        job: r.job,
        kind: r.kind,
        number: r.number,
        node: node.to_string(),
        label: r.label,
        enqueued_ms: r.enqueued_ms,
        started_ms: r.started_ms,
        finished_ms: now,
        wait_ms: r.started_ms.saturating_sub(r.enqueued_ms),
        result: result.to_string(),
    }
}

pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Applies a posted `config.xml` to a node, as `Computer.updateByXml` does: the element must
/// be a `<slave>` of the same name; description, executors, remote directory, mode and labels
/// are taken from it.
pub(crate) fn update_node_from_xml(n: &mut Node, xml: &str) -> Result<(), String> {
    let element = |tag: &str| -> Option<String> {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        if xml.contains(&format!("<{tag}/>")) {
            return Some(String::new());
        }
        let a = xml.find(&open)? + open.len();
        let b = a + xml[a..].find(&close)?;
        Some(ecsp_jenkins::client::xml_unescape(&xml[a..b]))
    };
    if !xml.contains("<slave>") {
        return Err("Node types do not match: expected a <slave> document".into());
    }
    if element("name").is_some_and(|name| name != n.name) {
        return Err(format!("the posted config.xml names another node than {:?}", n.name));
    }
    let num_executors = match element("numExecutors") {
        Some(v) => v.trim().parse::<u32>().map_err(|_| format!("numExecutors {v:?} is not a number"))?,
        None => n.num_executors,
    };
    if num_executors == 0 {
        return Err("Invalid agent configuration for ‘numExecutors’: the number of executors must be at least 1".into());
    }
    let mode = match element("mode").as_deref() {
        None => n.mode,
        Some("NORMAL") => NodeMode::Normal,
        Some("EXCLUSIVE") => NodeMode::Exclusive,
        Some(other) => return Err(format!("No enum constant hudson.model.Node.Mode.{other}")),
    };
    if let Some(d) = element("description") {
        n.description = d;
    }
    if let Some(fs) = element("remoteFS") {
        n.remote_fs = fs;
    }
    if let Some(l) = element("label") {
        n.labels = split_label_string(&l);
    }
    n.mode = mode;
    if num_executors != n.num_executors {
        n.executors.resize_with(num_executors as usize, || None);
        n.num_executors = num_executors;
    }
    Ok(())
}

/// Parses a node's creation form (`doCreateItem`'s `json`) into a node, with Jenkins' checks.
pub(crate) fn node_from_form(name: &str, json: &Value) -> Result<Node, String> {
    ecsp_jenkins::client::check_node_name(name).map_err(|e| e.to_string())?;
    let str_of = |k: &str| {
        json.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    // The UI posts numbers as strings; python-jenkins as numbers.
    let num_executors = match json.get("numExecutors") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 1,
    };
    if num_executors == 0 {
        return Err("Invalid agent configuration for ‘numExecutors’: the number of executors must be at least 1".into());
    }
    let remote_fs = str_of("remoteFS");
    if remote_fs.trim().is_empty() {
        return Err("Remote directory is mandatory".into());
    }
    let mode = match str_of("mode").as_str() {
        "" | "NORMAL" => NodeMode::Normal,
        "EXCLUSIVE" => NodeMode::Exclusive,
        other => return Err(format!("No enum constant hudson.model.Node.Mode.{other}")),
    };
    let launcher = json.get("launcher");
    // Stapler reads `stapler-class` then `$class`; `$class` wins. No launcher = JNLPLauncher.
    let launcher_class = launcher
        .and_then(|l| l.get("$class").or_else(|| l.get("stapler-class")))
        .and_then(Value::as_str)
        .unwrap_or("hudson.slaves.JNLPLauncher")
        .to_string();
    let web_socket = launcher
        .and_then(|l| l.get("webSocket"))
        .is_some_and(|w| w.as_bool() == Some(true) || w.as_str() == Some("true"));
    Ok(Node {
        name: name.trim().to_string(),
        description: str_of("nodeDescription"),
        num_executors: num_executors as u32,
        remote_fs,
        labels: split_label_string(&str_of("labelString")),
        mode,
        launcher_class,
        web_socket,
        offline: None,
        connection: None,
        dropped: None,
        executors: (0..num_executors).map(|_| None).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::new("http://127.0.0.1:1/".into(), [7; 32], 0)
    }

    fn add(s: &mut State, name: &str, labels: &str, connected: bool) {
        let mut n = node_from_form(
            name,
            &json!({"remoteFS": "/w", "labelString": labels, "numExecutors": 1}),
        )
        .unwrap();
        if connected {
            let (kick, _) = tokio::sync::watch::channel(false);
            n.connection = Some(Connection {
                id: 0,
                cookie: String::new(),
                kick,
            });
        }
        s.nodes.insert(name.into(), n);
    }

    fn why_of(s: &mut State, label: Option<&str>) -> (String, bool) {
        let id = s
            .enqueue(&EnqueueRequest {
                label: label.map(str::to_string),
                kind: JobKind::Pipeline,
                ..Default::default()
            })
            .unwrap()[0];
        let item = s.queue.iter().find(|i| i.id == id).unwrap().clone();
        s.cancel(id);
        s.why(&item)
    }

    #[test]
    fn why_rules_follow_jenkins() {
        let mut s = state();
        // Zero agents: never a label, but stuck.
        assert_eq!(
            why_of(&mut s, Some("linux")),
            ("Waiting for next available executor".into(), true)
        );
        add(&mut s, "a1", "linux docker", false);
        assert_eq!(why_of(&mut s, Some("linux")).0, "‘a1’ is offline");
        assert_eq!(
            why_of(&mut s, Some("windows")).0,
            "There are no nodes with the label ‘windows’"
        );
        add(&mut s, "a2", "linux", false);
        assert_eq!(why_of(&mut s, Some("linux && docker")).0, "‘a1’ is offline");
        assert_eq!(
            why_of(&mut s, Some("linux")).0,
            "All nodes of label ‘linux’ are offline"
        );
        add(&mut s, "a3", "linux", true);
        assert_eq!(
            why_of(&mut s, Some("linux")),
            (
                "Waiting for next available executor on ‘linux’".into(),
                false
            )
        );
        assert_eq!(
            why_of(&mut s, Some("a3")).0,
            "Waiting for next available executor on ‘a3’"
        );
        assert_eq!(
            why_of(&mut s, Some("linux&&!docker")).0,
            "Waiting for next available executor on ‘linux&&!docker’"
        );
        assert_eq!(
            why_of(&mut s, None).0,
            "Waiting for next available executor"
        );
        // Idle exclusive nodes refuse unlabelled items and say so.
        s.nodes.get_mut("a3").unwrap().mode = NodeMode::Exclusive;
        assert_eq!(
            why_of(&mut s, None).0,
            "‘a3’ is reserved for jobs with matching label expression"
        );
    }

    #[test]
    fn scheduler_runs_matching_builds_fifo() {
        let mut s = state();
        add(&mut s, "l1", "linux", true);
        let ids = s
            .enqueue(&EnqueueRequest {
                label: Some("linux".into()),
                duration_ms: 100,
                count: Some(2),
                ..Default::default()
            })
            .unwrap();
        s.enqueue(&EnqueueRequest {
            label: Some("windows".into()),
            ..Default::default()
        })
        .unwrap();
        let t0 = now_ms();
        assert_eq!(s.step(t0), Some(t0 + 100));
        assert_eq!(
            s.queue.len(),
            2,
            "one linux build runs, one waits, windows waits"
        );
        assert_eq!(
            s.nodes["l1"].executors[0].as_ref().unwrap().queue_id,
            ids[0]
        );
        s.step(t0 + 100);
        assert_eq!(s.completed.len(), 1);
        assert_eq!(
            s.nodes["l1"].executors[0].as_ref().unwrap().queue_id,
            ids[1]
        );
    }
}
