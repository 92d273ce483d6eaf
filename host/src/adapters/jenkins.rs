//! [`JenkinsPort`] over the Jenkins REST client.
//!
//! One `observe` is one computer listing and one queue listing, read concurrently: anchors are
//! checked against that listing (Jenkins is only called when one needs repair), demand comes
//! from the queue, and our agents are the nodes named `<template>-i-…` whose description names
//! this controller id. Two provisioners may share one Jenkins; neither ever sees the other's
//! nodes as its own.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::Context as _;

use crate::config::{self, Config, TemplateConfig};
use crate::engine::model::{AgentNode, is_launch_key, node_name, split_node_name};
use crate::engine::ports::{JenkinsPort, JenkinsView, NodeRegistration, TemplateQueue};
use super::activity_record::{activity_of, with_activity};
use crate::engine::ports::ActivityRecord;
use crate::jenkins::client::{describe_owned_instance, owner_of};
use crate::jenkins::node_builds::NodeBuild;
use crate::jenkins::{
    ActivityTracker, Computer, Credentials, InboundAgentSpec, JenkinsClient, JenkinsError,
    NodeMode, TemplateLabels, compute_demand, ensure_anchors,
};

/// What a template's nodes are registered with.
#[derive(Debug, Clone, PartialEq)]
struct NodeTemplate {
    name: String,
    labels: Vec<String>,
    executors: u32,
    remote_fs: String,
    mode: NodeMode,
    /// `max-uses` (0: unlimited): its nodes' build histories are read each observation.
    max_uses: u32,
}

impl NodeTemplate {
    fn from_config(t: &TemplateConfig) -> Self {
        NodeTemplate {
            name: t.name().to_owned(),
            labels: t.labels.clone(),
            executors: t.executors,
            remote_fs: t.remote_fs.clone(),
            mode: match t.mode {
                config::NodeMode::Normal => NodeMode::Normal,
                config::NodeMode::Exclusive => NodeMode::Exclusive,
            },
            max_uses: t.max_uses,
        }
    }
}

/// The template a node named `<template>-i-…` belongs to (the longest matching name wins).
fn template_of<'a>(name: &str, templates: &'a [NodeTemplate]) -> Option<&'a NodeTemplate> {
    let (template, _) = split_node_name(name, templates.iter().map(|t| t.name.as_str()))?;
    templates.iter().find(|t| t.name == template)
}

/// Whether a computer is an agent of ours: the name pattern alone is not enough, since another
/// provisioner on the same Jenkins names its nodes the same way.
fn is_ours(c: &Computer, controller_id: &str, templates: &[NodeTemplate]) -> bool {
    !c.is_built_in()
        && template_of(&c.display_name, templates).is_some()
        && c.description.as_deref().and_then(owner_of) == Some(controller_id)
}

/// Executors running something. Jenkins hides `currentExecutable` from a user without Job/Read
/// on the build, but the executor's `idle` still tells.
fn busy_executors(c: &Computer) -> u32 {
    c.executors
        .iter()
        .chain(&c.one_off_executors)
        .filter(|e| !e.idle || e.current_executable.is_some())
        .count() as u32
}

/// The builds a computer's executors run whose `currentExecutable` Jenkins shows: (key, start).
fn running_builds(c: &Computer) -> Vec<(String, u64)> {
    c.executors
        .iter()
        .chain(&c.one_off_executors)
        .filter_map(|e| e.current_executable.as_ref())
        .filter_map(|x| Some((x.key(), x.timestamp?)))
        .collect()
}

/// Connected and running nothing, marked offline or not: the state an idle timeout measures.
/// A node someone marked offline still costs money, so its idle time runs too.
fn available(c: &Computer) -> bool {
    c.connected() && c.idle && busy_executors(c) == 0
}

/// Longest offline message kept: it is free text from Jenkins, shown to policies and on /status.
const OFFLINE_REASON_MAX: usize = 256;

/// Activity Jenkins does not export, carried from one observation to the next.
#[derive(Default)]
struct Activity {
    /// Builds started per node.
    tracker: ActivityTracker,
    /// Since when each of our nodes has been [`available`]. The tracker's idle-since also runs
    /// while a node is not yet connected; counting that would let a slow bootstrap eat the
    /// idle timeout of a node that has only just come online.
    available_since: HashMap<String, u64>,
}

impl Activity {
    /// Takes one computer listing and returns our agents (`ours` filters it), sorted by name.
    fn observe(
        &mut self,
        computers: &[Computer],
        ours: impl Fn(&Computer) -> bool,
        now_ms: u64,
    ) -> Vec<AgentNode> {
        let mine: Vec<(&Computer, ActivityRecord)> = computers
            .iter()
            .filter(|c| ours(c))
            .map(|c| (c, c.description.as_deref().map(activity_of).unwrap_or_default()))
            .collect();
        // Nodes first seen by this process go on from what an earlier one recorded in them.
        for (c, record) in &mine {
            if let Some((uses, last)) = &record.uses {
                self.tracker.seed(&c.display_name, now_ms, *uses, last);
            }
        }
        self.tracker.observe(computers, now_ms);
        let mut since = HashMap::new();
        let mut agents: Vec<AgentNode> = mine
            .into_iter()
            .map(|(c, record)| {
                let name = c.display_name.clone();
                let recorded = record.idle_since_ms.filter(|&t| t <= now_ms);
                let activity = self.tracker.get(&name);
                // First sight in this process of an idle node: its idle time runs from what
                // the node records (an earlier process wrote it), not from now.
                let available_since = available(c).then(|| {
                    self.available_since.get(&name).copied().or(recorded).unwrap_or(now_ms)
                });
                if let Some(s) = available_since {
                    since.insert(name.clone(), s);
                }
                AgentNode {
                    online: c.connected(),
                    temporarily_offline: c.temporarily_offline,
                    offline_reason: c
                        .offline_cause_reason
                        .as_deref()
                        .filter(|r| c.temporarily_offline && !r.is_empty())
                        .map(|r| bounded(r, OFFLINE_REASON_MAX)),
                    dropped: c.dropped(),
                    idle_since_ms: available_since,
                    idle_recorded_ms: recorded,
                    uses_recorded: record.uses.map_or(0, |(n, _)| n),
                    last_build: activity.and_then(|a| a.last_build.clone()),
                    executors: c.num_executors,
                    busy_executors: busy_executors(c),
                    idle_ms: available_since.map_or(0, |s| now_ms.saturating_sub(s)),
                    uses: activity.map_or(0, |a| a.builds_started),
                    running: running_builds(c),
                    name,
                }
            })
            .collect();
        self.available_since = since;
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        agents
    }
}

/// `s` cut to at most `max` bytes on a char boundary, control characters replaced.
fn bounded(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The engine's Jenkins side, over one [`JenkinsClient`].
pub struct JenkinsAdapter {
    client: JenkinsClient,
    controller_id: String,
    templates: Vec<NodeTemplate>,
    /// The same templates as demand and anchors need them.
    labels: Vec<TemplateLabels>,
    activity: Mutex<Activity>,
    /// Jenkins refused a node description change (no Agent/Configure): not tried again.
    idle_records_refused: std::sync::atomic::AtomicBool,
    /// Builds each node's Jenkins history (`rssAll`) listed at its last successful read, for
    /// a cycle where the read fails.
    recorded_builds: Mutex<HashMap<String, u32>>,
}

/// Build histories read at once (one request per node of a `max-uses` template).
const HISTORY_READS_AT_ONCE: usize = 8;

/// A client for `url` (`[jenkins] url` or `agent-url`) with `[jenkins]`'s credentials and
/// timeouts.
pub fn client_from_config(j: &crate::config::JenkinsConfig, url: &str) -> anyhow::Result<JenkinsClient> {
    let timeouts = crate::jenkins::Timeouts { connect: j.connect_timeout, read: j.read_timeout };
    Ok(JenkinsClient::with_timeouts(url, credentials_from_config(j)?, timeouts)?)
}

/// The user and API token of `[jenkins]` (`token-env` or `token-file`).
pub fn credentials_from_config(j: &crate::config::JenkinsConfig) -> anyhow::Result<Credentials> {
    Ok(match (&j.token_env, &j.token_file) {
        (Some(var), _) => Credentials::token_from_env(&j.user, var)?,
        (None, Some(path)) => Credentials::token_from_file(&j.user, path)?,
        (None, None) => anyhow::bail!(
            "jenkins: set token-env or token-file to give the API token of user {:?}",
            j.user
        ),
    })
}

impl JenkinsAdapter {
    /// An adapter for the nodes of `controller_id` built from `templates` (config order).
    pub fn new(client: JenkinsClient, controller_id: &str, templates: &[TemplateConfig]) -> Self {
        let templates: Vec<NodeTemplate> =
            templates.iter().map(NodeTemplate::from_config).collect();
        let labels = templates
            .iter()
            .map(|t| TemplateLabels {
                name: t.name.clone(),
                labels: t.labels.clone(),
                mode: t.mode,
            })
            .collect();
        JenkinsAdapter {
            client,
            controller_id: controller_id.to_owned(),
            templates,
            labels,
            activity: Mutex::new(Activity::default()),
            idle_records_refused: false.into(),
            recorded_builds: Mutex::new(HashMap::new()),
        }
    }

    /// An adapter from the configuration: `[jenkins]` gives the URL, the user and where the
    /// API token is (`token-env` or `token-file`); an error names what is missing.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let j = &config.jenkins;
        let client = client_from_config(j, &j.url).context("jenkins.url")?;
        Ok(Self::new(client, &config.controller_id, &config.templates))
    }

    /// The client, for calls the port does not cover (`check`, diagnostics).
    pub fn client(&self) -> &JenkinsClient {
        &self.client
    }

    /// Counts the uses of nodes of `max-uses` templates from the builds Jenkins records for
    /// them (`rssAll`): a build shorter than a poll shows there, and the history outlives this
    /// process. A node's uses are the larger of that count and the polled one (Pipeline runs
    /// are not in the history: polling and the node's activity record count those). Only
    /// connected nodes not yet used up are read: one request each per observation.
    async fn count_recorded_builds(&self, agents: &mut [AgentNode]) {
        use futures::StreamExt as _;
        {
            // What earlier reads found still counts (the history only grows).
            let recorded = self.recorded_builds.lock().unwrap();
            for a in agents.iter_mut() {
                a.uses = a.uses.max(recorded.get(&a.name).copied().unwrap_or(0));
            }
        }
        let limited: Vec<String> = agents
            .iter()
            .filter(|a| {
                a.online
                    && template_of(&a.name, &self.templates)
                        .is_some_and(|t| t.max_uses > 0 && a.uses < t.max_uses)
            })
            .map(|a| a.name.clone())
            .collect();
        if limited.is_empty() {
            return;
        }
        type History = Result<Option<Vec<NodeBuild>>, JenkinsError>;
        let read: Vec<(String, History)> =
            futures::stream::iter(limited)
                .map(|name| async move {
                    let builds = self.client.node_builds(&name).await;
                    (name, builds)
                })
                .buffer_unordered(HISTORY_READS_AT_ONCE)
                .collect()
                .await;
        let mut recorded = self.recorded_builds.lock().unwrap();
        let names: std::collections::HashSet<&str> = agents.iter().map(|a| a.name.as_str()).collect();
        recorded.retain(|name, _| names.contains(name.as_str()));
        let mut newest: HashMap<String, String> = HashMap::new();
        for (name, builds) in read {
            match builds {
                Ok(Some(builds)) => {
                    let n = builds.len() as u32;
                    let seen = recorded.entry(name.clone()).or_default();
                    *seen = (*seen).max(n);
                    if let Some(b) = builds.first() {
                        newest.insert(name, b.key());
                    }
                }
                Ok(None) => {} // deleted since the listing
                Err(e) => tracing::warn!(node = %name, error = %e,
                    "cannot read the node's build history; its uses come from polling this cycle"),
            }
        }
        for a in agents.iter_mut() {
            if let Some(&n) = recorded.get(&a.name)
                && n > a.uses
            {
                a.uses = n;
                if let Some(key) = newest.remove(&a.name) {
                    a.last_build = Some(key);
                }
            }
        }
    }
}

impl JenkinsAdapter {
    /// The queued builds no template serves, read afresh (for `plan`'s text; the cycle's
    /// report only counts them).
    pub async fn unmatched_builds(&self, now_ms: u64) -> anyhow::Result<Vec<crate::jenkins::UnmatchedItem>> {
        let computers = self.client.computers().await.context("reading the Jenkins computers")?;
        let queue = self.client.queue().await.context("reading the Jenkins queue")?;
        Ok(compute_demand(&queue, &computers, &self.labels, now_ms).unmatched_items)
    }
}

impl JenkinsPort for JenkinsAdapter {
    async fn observe(&self, now_ms: u64) -> anyhow::Result<JenkinsView> {
        // Computers first, then the queue, never concurrently: a build that starts between
        // the two reads then shows as a free (or in-flight) executor and no queued item, which
        // under-counts demand for one cycle. The other order (or a race between the two) can
        // show it both queued and on a busy node, which launches a node nobody needs.
        let computers = self.client.computers().await.context("reading the Jenkins computers")?;
        let queue = self.client.queue().await.context("reading the Jenkins queue")?;
        let mut agents = self.activity.lock().unwrap().observe(
            &computers,
            |c| is_ours(c, &self.controller_id, &self.templates),
            now_ms,
        );
        self.count_recorded_builds(&mut agents).await;
        // A broken anchor only blurs demand for Pipeline builds; it must not stop the cycle
        // (removals, housekeeping), so it is logged and retried next cycle.
        match ensure_anchors(&self.client, &self.labels, &computers).await {
            Ok(r) => {
                if !(r.created.is_empty() && r.recreated.is_empty() && r.re_offlined.is_empty()) {
                    tracing::info!(created = ?r.created, recreated = ?r.recreated, re_offlined = ?r.re_offlined, "anchor nodes repaired");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot create or repair the anchor nodes"),
        }
        let demand = compute_demand(&queue, &computers, &self.labels, now_ms);
        let queues = demand
            .per_template
            .into_iter()
            .map(|d| TemplateQueue {
                template: d.template,
                items: d.items.into_iter().map(|i| (i.id, i.wait_ms)).collect(),
            })
            .collect();
        Ok(JenkinsView {
            queues,
            unmatched: demand.unmatched,
            agents,
        })
    }

    async fn queued_ids(&self, _now_ms: u64) -> anyhow::Result<Vec<u64>> {
        self.client.buildable_queue_ids().await.context("reading the Jenkins queue")
    }

    async fn create_node(&self, node: &NodeRegistration) -> anyhow::Result<()> {
        let t = self
            .templates
            .iter()
            .find(|t| t.name == node.template)
            .with_context(|| {
                format!(
                    "creating Jenkins node {}: template {:?} is not configured",
                    node.name, node.template
                )
            })?;
        // Any other name would never be listed as ours again: it would be created every cycle.
        // A user-data node is named from its launch (it precedes its instance).
        let named = split_node_name(&node.name, [node.template.as_str()]);
        anyhow::ensure!(
            named.is_some_and(|(_, id)| id == node.instance_id || is_launch_key(id)),
            "creating Jenkins node {}: the name must be `<template>-<ECS instance id>` or `<template>-<user-data launch key>` ({:?} for instance {:?})",
            node.name,
            node_name(&node.template, &node.instance_id),
            node.instance_id
        );
        let spec = InboundAgentSpec {
            name: node.name.clone(),
            description: describe_owned_instance(
                &self.controller_id,
                &node.template,
                &node.instance_id,
                &node.zone,
                &node.instance_type,
            ),
            num_executors: t.executors,
            remote_fs: t.remote_fs.clone(),
            labels: t.labels.clone(),
            mode: t.mode,
        };
        match self.client.create_inbound_agent(&spec).await {
            // Already there: a retry after a lost answer, or a cycle after a restart.
            Ok(()) | Err(JenkinsError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("creating Jenkins node {}", node.name)),
        }
    }

    async fn agent_secret(&self, name: &str) -> anyhow::Result<String> {
        self.client
            .agent_secret(name)
            .await
            .with_context(|| format!("reading the agent secret of Jenkins node {name}"))
    }

    async fn set_offline(&self, name: &str, offline: bool, reason: &str) -> anyhow::Result<()> {
        // Both calls read the state first and change it only when needed: idempotent.
        let changed = if offline {
            self.client.take_offline(name, reason).await
        } else {
            self.client.bring_online(name).await
        };
        changed.map(drop).with_context(|| {
            let what = if offline {
                "temporarily offline"
            } else {
                "back online"
            };
            format!("marking Jenkins node {name} {what}")
        })
    }

    async fn set_offline_reason(&self, name: &str, reason: &str) -> anyhow::Result<()> {
        self.client.change_offline_cause(name, reason).await.with_context(|| format!("marking Jenkins node {name} offline: {reason}"))
    }

    async fn is_idle(&self, name: &str) -> anyhow::Result<bool> {
        let c = self
            .client
            .computer(name)
            .await
            .with_context(|| format!("checking whether Jenkins node {name} is idle"))?;
        // A node that is gone runs nothing.
        Ok(c.is_none_or(|c| c.idle && busy_executors(&c) == 0))
    }

    async fn record_activity(&self, name: &str, record: &ActivityRecord) -> anyhow::Result<()> {
        use std::sync::atomic::Ordering;
        if self.idle_records_refused.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self.client.edit_node_description(name, |d| with_activity(d, record)).await {
            // Said once, then not tried again: idle times then start over at each restart.
            Err(e @ JenkinsError::Forbidden { .. }) => {
                self.idle_records_refused.store(true, Ordering::Relaxed);
                Err(anyhow::Error::new(e).context(
                    "recording idle times and build counts in the Jenkins nodes is refused (they then restart from zero at each restart of the provisioner); grant Agent/Configure to keep them",
                ))
            }
            r => r.with_context(|| format!("recording the activity of Jenkins node {name}")),
        }
    }

    async fn delete_node(&self, name: &str) -> anyhow::Result<()> {
        self.client
            .delete_node(name)
            .await
            .map(drop)
            .with_context(|| format!("deleting Jenkins node {name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jenkins::client::describe_instance;
    use crate::jenkins::model::{Executable, Executor};

    const CONFIG: &str = r#"
controller-id = "ci-prod"

[cloud]
region = "cn-hangzhou"
vpc-id = "vpc-1"
security-group-id = "sg-1"
image-id = "m-1"
key-pair-name = "jenkins"

[jenkins]
url = "http://127.0.0.1:8080/"
user = "admin"
JENKINS_TOKEN_LINE

[[template]]
name = "linux"
labels = ["linux", "docker"]
mode = "exclusive"
executors = 2
remote-fs = "/home/jenkins"
max-nodes = 10

[[template]]
name = "linux-big"
labels = ["linux", "large"]
max-nodes = 10
"#;

    fn config(token_line: &str) -> Config {
        Config::parse(&CONFIG.replace("JENKINS_TOKEN_LINE", token_line)).unwrap()
    }

    fn templates() -> Vec<NodeTemplate> {
        config("")
            .templates
            .iter()
            .map(NodeTemplate::from_config)
            .collect()
    }

    fn agent(name: &str, owner: &str) -> Computer {
        Computer {
            class: "hudson.slaves.SlaveComputer".into(),
            display_name: name.into(),
            description: Some(describe_owned_instance(owner, "linux", "i-1", "z", "t")),
            idle: true,
            num_executors: 2,
            executors: vec![
                Executor {
                    number: 0,
                    idle: true,
                    current_executable: None
                };
                2
            ],
            absolute_remote_path: Some("/home/jenkins".into()),
            ..Default::default()
        }
    }

    fn running(c: &mut Computer, build: u64) {
        c.idle = false;
        c.executors[0] = Executor {
            number: 0,
            idle: false,
            current_executable: Some(Executable {
                url: Some("job/a/".into()),
                number: Some(build),
                timestamp: None,
            }),
        };
    }

    #[test]
    fn templates_map_from_the_config() {
        let t = templates();
        assert_eq!(
            t[0],
            NodeTemplate {
                name: "linux".into(),
                labels: vec!["linux".into(), "docker".into()],
                executors: 2,
                remote_fs: "/home/jenkins".into(),
                mode: NodeMode::Exclusive,
                max_uses: 0,
            }
        );
        assert_eq!(t[1].mode, NodeMode::Normal);
    }

    #[test]
    fn ours_means_our_name_pattern_and_our_controller() {
        let t = templates();
        let ours = |c: &Computer| is_ours(c, "ci-prod", &t);
        assert!(ours(&agent("linux-i-1", "ci-prod")));
        assert_eq!(
            template_of("linux-big-i-1", &t).unwrap().name,
            "linux-big",
            "longest name wins"
        );
        assert!(
            !ours(&agent("linux-i-1", "ci-staging")),
            "another controller's node"
        );
        assert!(!ours(&agent("linux-i-1", "ci-prod2")));
        assert!(
            !ours(&agent("linux-anchor", "ci-prod")),
            "anchors are not agents"
        );
        assert!(!ours(&agent("windows-i-1", "ci-prod")), "unknown template");
        assert!(!ours(&agent("linux-i-", "ci-prod")));
        let mut unowned = agent("linux-i-1", "ci-prod");
        unowned.description = Some(describe_instance("linux", "i-1", "z", "t"));
        assert!(
            !ours(&unowned),
            "a description without a controller id is nobody's"
        );
        unowned.description = None;
        assert!(!ours(&unowned));
    }

    #[test]
    fn agents_map_busy_idle_and_uses() {
        let t = templates();
        let ours = |c: &Computer| is_ours(c, "ci-prod", &t);
        let mut a = Activity::default();

        // Created but not connected yet: offline, never idle.
        let mut c = agent("linux-i-1", "ci-prod");
        c.offline = true;
        c.absolute_remote_path = None;
        let foreign = agent("linux-i-2", "ci-other");
        let seen = a.observe(&[c.clone(), foreign.clone()], ours, 1_000);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(
            (seen[0].online, seen[0].idle_ms, seen[0].executors),
            (false, 0, 2)
        );

        // Connected at 60 s: idle time counts from then, not from creation.
        c.offline = false;
        c.absolute_remote_path = Some("/home/jenkins".into());
        assert_eq!(a.observe(&[c.clone()], ours, 60_000)[0].idle_ms, 0);
        let n = &a.observe(&[c.clone()], ours, 65_000)[0];
        assert_eq!(
            (n.online, n.idle_ms, n.busy_executors, n.uses),
            (true, 5_000, 0, 0)
        );

        // A build runs: busy, used once, not idle; it stays one use across listings.
        running(&mut c, 1);
        a.observe(&[c.clone()], ours, 66_000);
        let n = &a.observe(&[c.clone()], ours, 67_000)[0];
        assert_eq!((n.busy_executors, n.uses, n.idle_ms), (1, 1, 0));

        // Without Job/Read Jenkins hides the build, but the executor is still busy.
        c.executors[0].current_executable = None;
        assert_eq!(a.observe(&[c.clone()], ours, 68_000)[0].busy_executors, 1);

        // Idle again from 70 s; marked offline by an admin, its idle time runs on (it still
        // costs money), and the admin's message is kept.
        c = agent("linux-i-1", "ci-prod");
        a.observe(&[c.clone()], ours, 70_000);
        assert_eq!(a.observe(&[c.clone()], ours, 71_000)[0].idle_ms, 1_000);
        c.temporarily_offline = true;
        c.offline = true;
        c.offline_cause_reason = Some("disk space\nlow".into());
        let n = &a.observe(&[c.clone()], ours, 72_000)[0];
        assert_eq!(
            (n.online, n.temporarily_offline, n.idle_ms, n.dropped),
            (true, true, 2_000, false),
            "marked but connected"
        );
        assert_eq!(n.offline_reason.as_deref(), Some("disk space low"), "control characters replaced");
        c.absolute_remote_path = None;
        let n = &a.observe(&[c.clone()], ours, 73_000)[0];
        assert!(!n.online, "marked and disconnected");
        assert_eq!((n.idle_ms, n.dropped), (0, false), "marked, so not a dropped agent");

        // The channel broke: Jenkins keeps its cause, which tells a dropped agent from one
        // that never connected.
        c.temporarily_offline = false;
        c.offline_cause_reason = Some("Connection was broken".into());
        c.offline_cause = Some(crate::jenkins::model::OfflineCause {
            class: "hudson.slaves.OfflineCause$ChannelTermination".into(),
            description: Some("Connection was broken".into()),
        });
        let n = &a.observe(&[c.clone()], ours, 74_000)[0];
        assert_eq!((n.online, n.dropped, n.offline_reason.as_deref()), (false, true, None));
    }

    #[test]
    fn from_config_names_the_missing_token() {
        let err = |line: &str| {
            JenkinsAdapter::from_config(&config(line))
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap()
        };
        let e = err(r#"token-env = "ECSP_TEST_SURELY_UNSET_TOKEN_VARIABLE""#);
        assert!(e.contains("ECSP_TEST_SURELY_UNSET_TOKEN_VARIABLE"), "{e}");
        let e = err(r#"token-file = "/nonexistent/ecsp-token""#);
        assert!(e.contains("/nonexistent/ecsp-token"), "{e}");
        let e = err("");
        assert!(e.contains("token-env") && e.contains("token-file"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "11abc\n").unwrap();
        let a = JenkinsAdapter::from_config(&config(&format!(
            "token-file = {:?}",
            file.to_str().unwrap()
        )))
        .unwrap();
        assert_eq!(
            (a.client().base_url(), a.client().user()),
            ("http://127.0.0.1:8080/", "admin")
        );
        assert_eq!(a.controller_id, "ci-prod");
        assert_eq!(a.labels.len(), 2);
    }

    #[test]
    fn activity_recorded_in_the_description_outlives_the_process() {
        let t = templates();
        let ours = |c: &Computer| is_ours(c, "ci-prod", &t);
        let mut c = agent("linux-i-1", "ci-prod");
        let base = c.description.clone().unwrap();
        let record = ActivityRecord { idle_since_ms: Some(40_000), uses: Some((2, "job/a/#9".into())) };
        c.description = Some(with_activity(&base, &record));
        assert!(ours(&c), "the record does not hide the owner");
        assert_eq!(activity_of(c.description.as_deref().unwrap()), record);
        // A fresh process first sees the node at 100 s: idle since 40 s, two builds, as recorded.
        let n = &Activity::default().observe(&[c.clone()], ours, 100_000)[0];
        assert_eq!((n.idle_ms, n.idle_since_ms, n.idle_recorded_ms), (60_000, Some(40_000), Some(40_000)));
        assert_eq!((n.uses, n.uses_recorded), (2, 2));
        // A record from the future (clock skew) is not believed.
        let future = ActivityRecord { idle_since_ms: Some(900_000), uses: None };
        c.description = Some(with_activity(c.description.as_deref().unwrap(), &future));
        let n = &Activity::default().observe(&[c], ours, 100_000)[0];
        assert_eq!((n.idle_ms, n.idle_recorded_ms, n.uses), (0, None, 0));
        assert_eq!(with_activity(&with_activity("d", &record), &future), with_activity("d", &future), "replaced, not appended");
    }
}
