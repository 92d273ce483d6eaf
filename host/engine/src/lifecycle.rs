//! Instance lifecycle: merges what the cloud lists, what Jenkins shows and what this process
//! started into one state per node, and lists the chores that move nodes along.
//!
//! State lives in the cloud (tags) and in Jenkins (node names), so this runs the same way on a
//! fresh start as in steady state: after a crash it adopts running agents, resumes half-done
//! bootstraps, terminates instances stuck past their launch timeout and deletes nodes whose
//! instance is gone. The only memory kept here (`Book`) is what neither service can tell us.

pub mod warm;

use std::collections::{BTreeMap, BTreeSet};

use super::ports::ActivityRecord;
use super::model::{
    AgentNode, BootstrapStatus, CloudInstance, CloudStatus, LOCK_RECYCLING, Node, NodeState, TemplateLimits, launch_key_time,
    split_node_name,
};

/// The offline message this provisioner gives a node it is removing. A node found offline with
/// it (after a crash between "offline" and "delete") is drained again, not left offline.
pub const REMOVING_PREFIX: &str = "ecs-provisioner: removing";
/// How the reason of an instance terminated for its launch timeout starts.
pub const LAUNCH_TIMEOUT: &str = "launch-timeout";
/// The offline message of a node that ran its last allowed build (`max-uses`).
pub const USED_UP_PREFIX: &str = "ecs-provisioner: used up";
/// The offline message of a node whose spot instance the cloud is reclaiming.
pub const RECLAIM_REASON: &str = "ecs-provisioner: spot reclaim notice; the cloud takes this instance within minutes";

/// What this process remembers between cycles.
#[derive(Debug, Default)]
pub struct Book {
    /// Bootstraps this process started, by instance id.
    pub bootstraps: BTreeMap<String, BootstrapStatus>,
    /// The last bootstrap run number handed out: a run that a later one superseded (a
    /// reconnect while the first bootstrap was still confirming its agent) ends without a say.
    pub last_bootstrap_run: u64,
    /// Nodes being drained for removal.
    pub draining: BTreeSet<String>,
    /// Instances whose deletion was requested: reason and when (ms).
    pub terminating: BTreeMap<String, (String, u64)>,
    /// Instances whose agent has been online at least once.
    pub seen_online: BTreeSet<String>,
    /// Instances this process launched, as launched (`created_ms` = when): the cloud's listing
    /// may lag behind, and until it shows them they are `requested` nodes that count against
    /// every cap.
    pub launched: BTreeMap<String, CloudInstance>,
    /// Stopped instances this process started again, and when (ms): the listing may lag.
    pub starting: BTreeMap<String, u64>,
    /// Stops this process sent, and when (ms): until the listing or a lookup shows the
    /// instance stopping, it still says `Running`, and the stop is not sent again.
    pub stops_sent: BTreeMap<String, u64>,
    /// Agents that dropped after being online, and since when (ms).
    pub disconnected: BTreeMap<String, u64>,
    /// Lock reasons already reported, per instance: an unknown one is logged once, not acted on.
    pub locks_reported: BTreeSet<(String, String)>,
    /// Templates whose launches are held back after bootstraps failed in a row.
    pub holds: BTreeMap<String, LaunchHold>,
    /// Bootstrap failures since the last cycle read them: (template, cause).
    pub failed_bootstraps: Vec<(String, &'static str)>,
    /// Instances proven ours in this process: listed with our controller tag, or launched by
    /// it. Only their Jenkins nodes are ever deleted once the instance is gone; a node whose
    /// description alone claims it is ours is left alone (anyone can write a description).
    pub known_ours: BTreeSet<String>,
    /// Nodes that look like ours but whose instance this process never saw: warned about once.
    pub strangers_reported: BTreeSet<String>,
    /// Nodes of user-data launches whose RunInstances is in flight, and since when (ms): they
    /// have no instance yet and must not be deleted as if it were gone.
    pub pending_nodes: BTreeMap<String, u64>,
    /// How long instances' bootstraps waited for one of this process's bootstrap slots (`[ssh]
    /// concurrency`). That time is the provisioner's, not the instance's: the launch and
    /// reconnect timeouts do not count it. Without this, 10,000 launches at once (bootstraps
    /// at ~12 a second) timed out 2,100 healthy instances that were only waiting their turn.
    pub slot_waits: BTreeMap<String, SlotWait>,
}

/// An instance's waits for a bootstrap slot (see [`Book::slot_waits`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotWait {
    /// Since when (ms) a bootstrap of the instance waits for a slot, if one does now.
    pub queued_since_ms: Option<u64>,
    /// Waits that have ended, summed (ms): since launch, or since the agent dropped.
    pub waited_ms: u64,
}

/// Launches of one template held back because its bootstraps keep failing (a host key that
/// never matches, an image without the agent's runtime...): without it every failure is
/// replaced at once, one instance every few seconds, for as long as builds wait.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LaunchHold {
    /// Bootstraps failed in a row.
    pub failures: u32,
    /// No launch before this instant (ms).
    pub until_ms: u64,
    /// The last failure's cause (`host-key`, `unreachable`, ...).
    pub cause: &'static str,
    /// The last failure, cut to 512 bytes.
    pub last_error: String,
}

/// The first hold after a failed bootstrap; it doubles with each further failure in a row.
const HOLD_FIRST_MS: u64 = 5_000;
/// The longest hold.
const HOLD_MAX_MS: u64 = 300_000;

impl Book {
    /// Records a failed bootstrap of `template` and holds its launches: 5 s after the first
    /// failure, doubling with each one in a row, at most 5 minutes.
    pub fn bootstrap_failed(&mut self, template: &str, cause: &'static str, error: &str, now_ms: u64) {
        let failures = self.holds.get(template).map_or(0, |h| h.failures) + 1;
        let hold = HOLD_FIRST_MS.saturating_mul(1 << (failures - 1).min(16)).min(HOLD_MAX_MS);
        let mut end = error.len().min(512);
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        self.holds.insert(
            template.to_owned(),
            LaunchHold { failures, until_ms: now_ms + hold, cause, last_error: error[..end].to_owned() },
        );
        self.failed_bootstraps.push((template.to_owned(), cause));
    }

    /// Starts a bootstrap run of `id`, superseding any still under way; returns its number.
    pub fn bootstrap_started(&mut self, id: &str) -> u64 {
        self.last_bootstrap_run += 1;
        let run = self.last_bootstrap_run;
        self.bootstraps.insert(id.to_owned(), BootstrapStatus::Running { run });
        run
    }

    /// Books how run `run` of `id` ended, unless a later run superseded it or the instance's
    /// bootstrap was forgotten meanwhile (stopped, gone). Returns whether it was booked.
    pub fn bootstrap_ended(&mut self, id: &str, run: u64, status: BootstrapStatus) -> bool {
        let current = self.bootstraps.get(id) == Some(&BootstrapStatus::Running { run });
        if current {
            self.bootstraps.insert(id.to_owned(), status);
        }
        current
    }

    /// A bootstrap of `id` starts waiting for a slot.
    pub fn slot_queued(&mut self, id: &str, now_ms: u64) {
        self.slot_waits.entry(id.to_owned()).or_default().queued_since_ms = Some(now_ms);
    }

    /// A bootstrap of `id` got its slot; returns how long it waited (ms).
    pub fn slot_acquired(&mut self, id: &str, now_ms: u64) -> u64 {
        let wait = self.slot_waits.entry(id.to_owned()).or_default();
        let waited = wait.queued_since_ms.take().map_or(0, |since| now_ms.saturating_sub(since));
        wait.waited_ms = wait.waited_ms.saturating_add(waited);
        waited
    }

    /// The provisioner's own share of `id`'s time, which its timeouts leave out: `None` while
    /// a bootstrap of it waits for a slot (no timeout runs out meanwhile), else the ms its
    /// bootstraps waited.
    pub fn own_delay_ms(&self, id: &str) -> Option<u64> {
        match self.slot_waits.get(id) {
            Some(SlotWait { queued_since_ms: Some(_), .. }) => None,
            Some(wait) => Some(wait.waited_ms),
            None => Some(0),
        }
    }

    /// The agent of `id` dropped: waits from before count no more (its launch is over).
    pub fn disconnected_since(&mut self, id: &str, now_ms: u64) {
        if !self.disconnected.contains_key(id) {
            self.disconnected.insert(id.to_owned(), now_ms);
            if let Some(wait) = self.slot_waits.get_mut(id) {
                wait.waited_ms = 0;
            }
        }
    }

    /// A node of `template` came online: its bootstraps work again.
    pub fn bootstrap_worked(&mut self, template: &str) {
        self.holds.remove(template);
    }
}

impl Book {
    /// Forgets instances the cloud no longer lists. A launch stays until the listing shows it
    /// or its listing grace has passed, since a fresh instance may not be listed yet; once
    /// listed, the listing speaks for it (an instance deleted after that is gone, not late).
    pub fn prune(&mut self, listed: &BTreeSet<&str>, now_ms: u64) {
        self.known_ours.extend(listed.iter().map(|id| (*id).to_owned()));
        self.known_ours.extend(self.launched.keys().cloned());
        self.bootstraps.retain(|id, _| listed.contains(id.as_str()));
        self.draining.retain(|id| listed.contains(id.as_str()));
        self.terminating.retain(|id, _| listed.contains(id.as_str()));
        self.seen_online.retain(|id| listed.contains(id.as_str()));
        self.disconnected.retain(|id, _| listed.contains(id.as_str()));
        self.starting.retain(|id, _| listed.contains(id.as_str()));
        self.stops_sent.retain(|id, _| listed.contains(id.as_str()));
        self.locks_reported.retain(|(id, _)| listed.contains(id.as_str()));
        self.slot_waits.retain(|id, _| listed.contains(id.as_str()));
        self.launched
            .retain(|id, i| !listed.contains(id.as_str()) && !past_listing_grace(i, now_ms));
    }

    /// Forgets proven instances that are neither listed nor have a node left: nothing of theirs
    /// remains to clean up, so the set stays as small as the fleet.
    pub fn forget_settled(&mut self, listed: &BTreeSet<&str>, node_ids: &BTreeSet<&str>) {
        self.known_ours.retain(|id| listed.contains(id.as_str()) || node_ids.contains(id.as_str()) || self.launched.contains_key(id));
    }
}

/// A step that moves a node along its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chore {
    /// Register the Jenkins node for an instance that has none.
    CreateNode {
        /// The instance whose node to register.
        instance_id: String,
    },
    /// Bootstrap (or resume bootstrapping) a running instance.
    Bootstrap {
        /// The instance to bootstrap.
        instance_id: String,
    },
    /// Restart the agent of a node that dropped; give up at `deadline_ms`.
    Reconnect {
        /// The instance whose agent dropped.
        instance_id: String,
        /// When to give up and replace the instance (ms since the Unix epoch).
        deadline_ms: u64,
    },
    /// Delete the instance (and its node), recording why.
    Terminate {
        /// The instance to delete.
        instance_id: String,
        /// Why, for the log and the cycle report.
        reason: String,
    },
    /// Remember an instance found already being deleted (after a restart), without deleting
    /// it again; the delete is re-sent only if it is still listed after the retry period.
    BookTerminating {
        /// The instance being deleted.
        instance_id: String,
        /// Why it is being deleted.
        reason: String,
    },
    /// Mark a node temporarily offline so that it starts no new build.
    Fence {
        /// The instance whose node to take offline.
        instance_id: String,
        /// The offline reason shown in Jenkins.
        reason: String,
    },
    /// Finish a removal a previous process started: re-check idle, delete node and instance.
    ResumeDrain {
        /// The instance whose removal to finish.
        instance_id: String,
    },
    /// Delete a Jenkins node of ours whose instance no longer exists.
    DeleteNode {
        /// The Jenkins node's name.
        name: String,
        /// Why it is deleted, for the log and the cycle report.
        reason: String,
    },
    /// Stop the instance of a node marked stopped whose stop was never sent (warm pool).
    Stop {
        /// The instance to stop.
        instance_id: String,
    },
    /// Restart the agent of an instance started again from the warm pool; give up at
    /// `deadline_ms`.
    RestartAgent {
        /// The started instance.
        instance_id: String,
        /// Its launch deadline, counted from the start (ms since the Unix epoch).
        deadline_ms: u64,
    },
    /// Put a started node back online in Jenkins: its agent is connected again.
    Unfence {
        /// The instance whose node to put back online.
        instance_id: String,
    },
    /// Write into the node since when it has been idle and how many builds it started, so a
    /// restart keeps its idle time and its `max-uses` count.
    RecordActivity {
        /// The instance whose node to write to.
        instance_id: String,
        /// What to record.
        record: ActivityRecord,
    },
}

impl Chore {
    /// Bookkeeping written at every idle start or build: left out of the cycle's report (and
    /// so of `plan` and `/status`), which lists what moves nodes along.
    pub fn is_bookkeeping(&self) -> bool {
        matches!(self, Chore::RecordActivity { .. })
    }
}

/// Re-sends a delete this long after the last attempt if the instance is still listed.
const TERMINATE_RETRY_MS: u64 = 60_000;
/// A node whose instance is missing from the listing is left alone this long after launch,
/// and a launch the listing does not show yet is counted as `requested` this long, because
/// the cloud's listing is eventually consistent.
pub const LISTING_GRACE_MS: u64 = 120_000;

/// Whether a launch booked by this process is older than the listing grace. Launches are
/// always booked with their time; one without counts as past it.
fn past_listing_grace(launched: &CloudInstance, now_ms: u64) -> bool {
    launched.created_ms.is_none_or(|t| now_ms.saturating_sub(t) >= LISTING_GRACE_MS)
}

/// Merges the three views into nodes and chores. Pure: same input, same output.
pub fn reconcile(
    instances: &[CloudInstance],
    agents: &[AgentNode],
    book: &Book,
    templates: &[TemplateLimits],
    now_ms: u64,
) -> (Vec<Node>, Vec<Chore>) {
    let agents_by_name: BTreeMap<&str, &AgentNode> = agents.iter().map(|a| (a.name.as_str(), a)).collect();
    let mut nodes = Vec::with_capacity(instances.len());
    let mut chores = Vec::new();
    let mut matched_agents = BTreeSet::new();

    for inst in instances {
        let name = inst.node_name();
        let agent = agents_by_name.get(name.as_str()).copied();
        if agent.is_some() {
            matched_agents.insert(name);
        }
        let template = templates.iter().find(|t| t.name == inst.template);
        let (state, failure) = node_state(inst, agent, template, book, now_ms, &mut chores);
        if let Some(a) = agent.filter(|_| matches!(state, NodeState::Online | NodeState::Offline)) {
            let counts_uses = template.is_some_and(|t| t.max_uses > 0);
            let new_idle = a.idle_since_ms.is_some() && a.idle_since_ms != a.idle_recorded_ms;
            let new_use = counts_uses && a.uses > a.uses_recorded;
            if new_idle || new_use {
                let uses = a.last_build.clone().filter(|_| counts_uses && a.uses > 0).map(|k| (a.uses, k));
                let record = ActivityRecord { idle_since_ms: a.idle_since_ms, uses };
                chores.push(Chore::RecordActivity { instance_id: inst.instance_id.clone(), record });
            }
        }
        nodes.push(Node { instance: inst.clone(), agent: agent.cloned(), state, failure });
    }

    // Launches the listing does not show yet: capacity that exists, counted against the caps.
    let listed: BTreeSet<&str> = instances.iter().map(|i| i.instance_id.as_str()).collect();
    for (id, launched) in &book.launched {
        if listed.contains(id.as_str()) || past_listing_grace(launched, now_ms) {
            continue;
        }
        let name = launched.node_name();
        let agent = agents_by_name.get(name.as_str()).copied();
        if agent.is_some() {
            matched_agents.insert(name);
        }
        nodes.push(Node { instance: launched.clone(), agent: agent.cloned(), state: NodeState::Requested, failure: None });
    }
    warm::cap_stopped(&mut nodes, templates, &mut chores);

    // Nodes of ours without an instance: the instance died or was deleted behind our back.
    // Only a node whose instance this process has proven ours (listed with our tag, or
    // launched by it) is deleted: a description is free text anyone can write.
    for a in agents {
        if matched_agents.contains(&a.name) {
            continue;
        }
        let Some((template, instance_id)) = parse_node_name(&a.name, templates) else { continue };
        if let Some(created) = launch_key_time(instance_id) {
            // A user-data node: created before its instance, so no instance proves it ours. It
            // stays while its launch is in flight (this process) or may still be landing in the
            // listing (a previous process's); after that nothing will ever connect as it.
            let in_flight = book.pending_nodes.contains_key(&a.name);
            if !in_flight && now_ms.saturating_sub(created) >= LISTING_GRACE_MS && a.busy_executors == 0 && !a.online {
                chores.push(Chore::DeleteNode {
                    name: a.name.clone(),
                    reason: format!("user-data node of template {template}: its launch failed or its instance is gone"),
                });
            }
            continue;
        }
        let recently_launched = book.launched.get(instance_id).is_some_and(|i| !past_listing_grace(i, now_ms));
        if !recently_launched && a.busy_executors == 0 && book.known_ours.contains(instance_id) {
            chores.push(Chore::DeleteNode {
                name: a.name.clone(),
                reason: format!("instance {instance_id} of template {template} no longer exists"),
            });
        }
    }
    (nodes, chores)
}

/// One listed instance's state and failure reason; pushes the chores that move it along.
/// The rules are tried in order; docs/lifecycle.md has them as a table.
fn node_state(
    inst: &CloudInstance,
    agent: Option<&AgentNode>,
    template: Option<&TemplateLimits>,
    book: &Book,
    now_ms: u64,
    chores: &mut Vec<Chore>,
) -> (NodeState, Option<String>) {
    let id = inst.instance_id.as_str();
    let terminate = |chores: &mut Vec<Chore>, reason: String| {
        chores.push(Chore::Terminate { instance_id: id.into(), reason: reason.clone() });
        (NodeState::Terminating, Some(reason))
    };
    let reclaiming = inst.locks.iter().any(|l| l == LOCK_RECYCLING);
    let stopped = matches!(inst.status, CloudStatus::Stopping | CloudStatus::Stopped | CloudStatus::Other);

    if let Some((reason, at)) = book.terminating.get(id) {
        if now_ms.saturating_sub(*at) >= TERMINATE_RETRY_MS {
            chores.push(Chore::Terminate { instance_id: id.into(), reason: reason.clone() });
        }
        return (NodeState::Terminating, Some(reason.clone()));
    }
    let Some(template) = template else {
        let reason = format!("template {:?} is no longer configured", inst.template);
        if agent.is_none_or(|a| a.busy_executors == 0) {
            return terminate(chores, reason);
        }
        return (NodeState::Terminating, Some(reason));
    };
    if let Some(warm) = warm::node_state(inst, agent, template, book, now_ms, chores) {
        return warm;
    }
    if stopped {
        if reclaiming {
            return terminate(chores, "spot instance reclaimed by the cloud".to_owned());
        }
        if agent.is_none() && !book.launched.contains_key(id) {
            // No node and not launched by this process: the previous process drained it and
            // sent the delete (node first, then instance); the cloud is still settling it.
            let reason = "being deleted (found stopping after a restart)".to_owned();
            chores.push(Chore::BookTerminating { instance_id: id.into(), reason: reason.clone() });
            return (NodeState::Terminating, Some(reason));
        }
        return terminate(chores, "instance stopped outside the provisioner".to_owned());
    }
    if reclaiming {
        if agent.is_some_and(|a| !a.temporarily_offline) {
            chores.push(Chore::Fence { instance_id: id.into(), reason: RECLAIM_REASON.to_owned() });
        }
        return (NodeState::Interrupted, Some("spot reclaim notice: the cloud takes the instance within minutes".into()));
    }
    if book.draining.contains(id) {
        return (NodeState::Draining, None);
    }
    if let Some(a) = agent.filter(|a| a.temporarily_offline && offline_reason_starts(a, REMOVING_PREFIX)) {
        // Marked for removal by a process that stopped before deleting it.
        if a.busy_executors == 0 || !a.online {
            chores.push(Chore::ResumeDrain { instance_id: id.into() });
        }
        return (NodeState::Draining, None);
    }

    let connected = agent.filter(|a| a.online);
    if let Some(a) = connected {
        // A used-up node stays `online` (fenced): the policy retires it once it is idle.
        let fenced_by_us = offline_reason_starts(a, USED_UP_PREFIX) || offline_reason_starts(a, RECLAIM_REASON);
        if a.temporarily_offline && !fenced_by_us {
            return (NodeState::Offline, None);
        }
        return (NodeState::Online, None);
    }
    if agent.is_none() {
        chores.push(Chore::CreateNode { instance_id: id.into() });
    }
    if matches!(inst.status, CloudStatus::Pending | CloudStatus::Starting) {
        return launch_deadline(inst, NodeState::Pending, template, book, now_ms, chores);
    }
    // A user-data instance starts its own agent: nothing to bootstrap, it is connecting.
    let waiting = if template.user_data { NodeState::Connecting } else { NodeState::Running };
    let Some(a) = agent else {
        if !template.user_data && inst.private_ip.is_some() && !book.bootstraps.contains_key(id) {
            chores.push(Chore::Bootstrap { instance_id: id.into() });
        }
        return launch_deadline(inst, waiting, template, book, now_ms, chores);
    };

    // Registered, not connected: on its way, or dropped after being online.
    if book.seen_online.contains(id) || book.disconnected.contains_key(id) || a.dropped {
        // Waiting for a bootstrap slot of ours is not the agent's failing to come back.
        let away_ms = |since: u64| book.own_delay_ms(id).map(|own| now_ms.saturating_sub(since).saturating_sub(own));
        return match (book.disconnected.get(id), book.bootstraps.get(id)) {
            (Some(since), _) if away_ms(*since).is_some_and(|away| away >= template.reconnect_timeout_ms) => terminate(chores, format!(
                "agent disconnected for {}s and did not come back (reconnect-timeout)",
                now_ms.saturating_sub(*since) / 1000
            )),
            (Some(_), Some(BootstrapStatus::Failed(msg))) => terminate(chores, format!("reconnect failed: {msg}")),
            (Some(_), _) => (NodeState::Disconnected, None),
            (None, _) => {
                chores.push(Chore::Reconnect { instance_id: id.into(), deadline_ms: now_ms + template.reconnect_timeout_ms });
                (NodeState::Disconnected, None)
            }
        };
    }
    let state = match book.bootstraps.get(id) {
        Some(BootstrapStatus::Running { .. }) => NodeState::Bootstrapping,
        Some(BootstrapStatus::Done) => NodeState::Connecting,
        Some(BootstrapStatus::Failed(msg)) => return terminate(chores, format!("bootstrap failed: {msg}")),
        None => {
            // Fresh, or adopted after a restart: (re)bootstrap. The init script's marker file
            // keeps a resumed bootstrap from running it twice.
            if !template.user_data && inst.private_ip.is_some() {
                chores.push(Chore::Bootstrap { instance_id: id.into() });
            }
            waiting
        }
    };
    launch_deadline(inst, state, template, book, now_ms, chores)
}

/// Terminates a node still not online past its launch timeout.
fn launch_deadline(
    inst: &CloudInstance,
    state: NodeState,
    template: &TemplateLimits,
    book: &Book,
    now_ms: u64,
    chores: &mut Vec<Chore>,
) -> (NodeState, Option<String>) {
    // An unknown creation time is an unknown age: never a reason to terminate. Nor is the time
    // its bootstraps waited for a slot of ours (see `Book::slot_waits`).
    let Some(age) = inst.created_ms.map(|t| now_ms.saturating_sub(t)) else { return (state, None) };
    let Some(own) = book.own_delay_ms(&inst.instance_id) else { return (state, None) };
    if book.seen_online.contains(&inst.instance_id) || age.saturating_sub(own) <= template.launch_timeout_ms {
        return (state, None);
    }
    // A bootstrap chore for this node would race the delete.
    chores.retain(|c| !matches!(c, Chore::Bootstrap { instance_id } if *instance_id == inst.instance_id));
    let mut reason = format!("{LAUNCH_TIMEOUT}: still {} after {}s", state.as_str(), age / 1000);
    if own > 0 {
        reason.push_str(&format!(" ({}s of it waiting for a bootstrap slot, not counted)", own / 1000));
    }
    chores.push(Chore::Terminate { instance_id: inst.instance_id.clone(), reason: reason.clone() });
    (NodeState::Terminating, Some(reason))
}

fn offline_reason_starts(a: &AgentNode, prefix: &str) -> bool {
    a.offline_reason.as_deref().is_some_and(|r| r.starts_with(prefix))
}

/// Splits `<template>-<instance-id>` when the template is ours (see [`split_node_name`]).
pub fn parse_node_name<'a>(name: &'a str, templates: &[TemplateLimits]) -> Option<(&'a str, &'a str)> {
    split_node_name(name, templates.iter().map(|t| t.name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::node_name;

    const MIN: u64 = 60_000;

    fn tpl() -> Vec<TemplateLimits> {
        vec![TemplateLimits {
            name: "linux".into(),
            min_nodes: 0,
            max_nodes: 10,
            launch_timeout_ms: 10 * MIN,
            reconnect_timeout_ms: 2 * MIN,
            max_uses: 0,
            max_stopped: 2,
            fingerprint: "fp".into(),
            user_data: false,
        }]
    }
    fn inst(id: &str, status: CloudStatus, created_ms: u64) -> CloudInstance {
        CloudInstance {
            instance_id: id.into(),
            template: "linux".into(),
            zone: "z".into(),
            vswitch: "v".into(),
            instance_type: "t".into(),
            spot: false,
            status,
            private_ip: Some("127.1.0.1".parse().unwrap()),
            created_ms: Some(created_ms),
            locks: Vec::new(),
            fingerprint: Some("fp".into()),
            node: None,
        }
    }
    fn agent(id: &str, online: bool) -> AgentNode {
        AgentNode { name: node_name("linux", id), online, executors: 1, ..Default::default() }
    }

    #[test]
    fn fresh_running_instance_gets_a_node_and_a_bootstrap() {
        let (nodes, chores) = reconcile(&[inst("i-1", CloudStatus::Running, 0)], &[], &Book::default(), &tpl(), MIN);
        assert_eq!(nodes[0].state, NodeState::Running);
        assert_eq!(
            chores,
            vec![Chore::CreateNode { instance_id: "i-1".into() }, Chore::Bootstrap { instance_id: "i-1".into() }]
        );
    }

    #[test]
    fn pending_instance_gets_its_node_but_no_bootstrap_yet() {
        let (nodes, chores) = reconcile(&[inst("i-1", CloudStatus::Starting, 0)], &[], &Book::default(), &tpl(), MIN);
        assert_eq!(nodes[0].state, NodeState::Pending);
        assert_eq!(chores, vec![Chore::CreateNode { instance_id: "i-1".into() }]);
    }

    #[test]
    fn states_follow_bootstrap_progress_and_jenkins() {
        let mut book = Book::default();
        book.bootstraps.insert("i-1".into(), BootstrapStatus::Running { run: 1 });
        book.bootstraps.insert("i-2".into(), BootstrapStatus::Done);
        book.bootstraps.insert("i-3".into(), BootstrapStatus::Done);
        book.draining.insert("i-4".into());
        let instances: Vec<_> = ["i-1", "i-2", "i-3", "i-4"].iter().map(|i| inst(i, CloudStatus::Running, 0)).collect();
        let agents = [agent("i-1", false), agent("i-2", false), agent("i-3", true), agent("i-4", true)];
        let (nodes, chores) = reconcile(&instances, &agents, &book, &tpl(), MIN);
        let states: Vec<_> = nodes.iter().map(|n| n.state).collect();
        assert_eq!(states, vec![NodeState::Bootstrapping, NodeState::Connecting, NodeState::Online, NodeState::Draining]);
        assert!(chores.is_empty(), "{chores:?}");
    }

    #[test]
    fn adoption_after_restart_resumes_bootstrap_and_keeps_online_agents() {
        // Empty book = a restarted process.
        let instances = [inst("i-1", CloudStatus::Running, 0), inst("i-2", CloudStatus::Running, 0)];
        let agents = [agent("i-1", false), agent("i-2", true)];
        let (nodes, chores) = reconcile(&instances, &agents, &Book::default(), &tpl(), 2 * MIN);
        assert_eq!(nodes[1].state, NodeState::Online);
        assert_eq!(chores, vec![Chore::Bootstrap { instance_id: "i-1".into() }]);
    }

    #[test]
    fn launch_timeout_terminates_with_a_reason() {
        let mut book = Book::default();
        book.bootstraps.insert("i-1".into(), BootstrapStatus::Done);
        let (nodes, chores) =
            reconcile(&[inst("i-1", CloudStatus::Running, 0)], &[agent("i-1", false)], &book, &tpl(), 11 * MIN);
        assert_eq!(nodes[0].state, NodeState::Terminating);
        assert_eq!(nodes[0].failure.as_deref(), Some("launch-timeout: still connecting after 660s"));
        assert!(matches!(&chores[0], Chore::Terminate { instance_id, .. } if instance_id == "i-1"));
    }

    #[test]
    fn time_spent_waiting_for_a_bootstrap_slot_of_ours_is_not_counted_against_the_launch_timeout() {
        // Launched at 0; the launch timeout is 10 minutes. Its bootstrap waits for a slot from 1 min.
        let mut book = Book::default();
        book.bootstrap_started("i-1");
        book.slot_queued("i-1", MIN);
        let at = |book: &Book, now| reconcile(&[inst("i-1", CloudStatus::Running, 0)], &[agent("i-1", false)], book, &tpl(), now);
        let (nodes, chores) = at(&book, 15 * MIN);
        assert_eq!((nodes[0].state, chores.len()), (NodeState::Bootstrapping, 0), "still waiting its turn at 15 min");
        // The slot came at 14 min: 13 minutes were ours, so at 20 min it has taken 7.
        assert_eq!(book.slot_acquired("i-1", 14 * MIN), 13 * MIN);
        assert_eq!(at(&book, 20 * MIN).0[0].state, NodeState::Bootstrapping);
        let (nodes, chores) = at(&book, 24 * MIN);
        assert_eq!(nodes[0].state, NodeState::Terminating);
        assert_eq!(
            nodes[0].failure.as_deref(),
            Some("launch-timeout: still bootstrapping after 1440s (780s of it waiting for a bootstrap slot, not counted)")
        );
        assert!(matches!(&chores[0], Chore::Terminate { instance_id, .. } if instance_id == "i-1"));
    }

    #[test]
    fn a_reconnect_waiting_for_a_bootstrap_slot_is_not_timed_out_and_launch_waits_do_not_carry_over() {
        // The reconnect timeout is 2 minutes. The launch's bootstrap had waited 3 minutes.
        let mut book = Book::default();
        book.slot_queued("i-1", 0);
        book.slot_acquired("i-1", 3 * MIN);
        book.seen_online.insert("i-1".into());
        book.disconnected_since("i-1", 10 * MIN);
        book.bootstrap_started("i-1");
        book.slot_queued("i-1", 10 * MIN);
        let dropped = AgentNode { dropped: true, ..agent("i-1", false) };
        let at = |book: &Book, now| reconcile(&[inst("i-1", CloudStatus::Running, 0)], std::slice::from_ref(&dropped), book, &tpl(), now);
        assert_eq!(at(&book, 15 * MIN).0[0].state, NodeState::Disconnected, "queued for a slot: no timeout");
        // The slot came at 14 min: away 1 minute by 15 min, 2.5 by 16.5.
        book.slot_acquired("i-1", 14 * MIN);
        assert_eq!(at(&book, 15 * MIN).0[0].state, NodeState::Disconnected);
        assert_eq!(at(&book, 16 * MIN + MIN / 2).0[0].state, NodeState::Terminating);
        // Without the reset at the disconnect, the launch's 3 minutes would still be subtracted.
        assert_eq!(book.slot_waits["i-1"].waited_ms, 4 * MIN);
    }

    #[test]
    fn failed_bootstrap_terminates() {
        let mut book = Book::default();
        book.bootstraps.insert("i-1".into(), BootstrapStatus::Failed("init script exited 3".into()));
        let (nodes, chores) = reconcile(&[inst("i-1", CloudStatus::Running, 0)], &[agent("i-1", false)], &book, &tpl(), MIN);
        assert_eq!(nodes[0].state, NodeState::Terminating);
        assert_eq!(
            chores,
            vec![Chore::Terminate { instance_id: "i-1".into(), reason: "bootstrap failed: init script exited 3".into() }]
        );
    }

    #[test]
    fn nodes_without_instances_are_deleted_after_the_listing_grace() {
        let mut book = Book::default();
        book.known_ours.insert("i-gone".into());
        book.launched.insert("i-new".into(), inst("i-new", CloudStatus::Pending, MIN));
        let agents = [agent("i-gone", false), agent("i-new", false), AgentNode { name: "linux-anchor".into(), ..Default::default() }];
        let (nodes, chores) = reconcile(&[], &agents, &book, &tpl(), MIN + 1000);
        assert_eq!(nodes.iter().map(|n| (n.instance_id(), n.state)).collect::<Vec<_>>(), [("i-new", NodeState::Requested)]);
        assert_eq!(
            chores,
            vec![Chore::DeleteNode {
                name: "linux-i-gone".into(),
                reason: "instance i-gone of template linux no longer exists".into()
            }]
        );
    }

    #[test]
    fn stopped_instances_and_removed_templates_are_terminated() {
        let mut other = inst("i-2", CloudStatus::Running, 0);
        other.template = "retired".into();
        let (nodes, chores) =
            reconcile(&[inst("i-1", CloudStatus::Stopped, 0), other], &[agent("i-1", false)], &Book::default(), &tpl(), MIN);
        assert!(nodes.iter().all(|n| n.state == NodeState::Terminating));
        assert_eq!(nodes[0].failure.as_deref(), Some("instance stopped outside the provisioner"));
        assert_eq!(chores.len(), 2);
        assert!(chores.iter().all(|c| matches!(c, Chore::Terminate { .. })), "{chores:?}");
    }

    fn offline(id: &str, reason: &str) -> AgentNode {
        AgentNode { temporarily_offline: true, offline_reason: Some(reason.into()), ..agent(id, true) }
    }

    #[test]
    fn a_node_someone_else_marked_offline_is_offline_not_online() {
        let instances = [inst("i-1", CloudStatus::Running, 0)];
        let (nodes, chores) = reconcile(&instances, &[offline("i-1", "disk space is too low")], &Book::default(), &tpl(), MIN);
        assert_eq!(nodes[0].state, NodeState::Offline);
        assert!(chores.is_empty(), "{chores:?}");
        // Fenced by us after its last allowed build: still online, for the policy to retire.
        let used_up = offline("i-1", &format!("{USED_UP_PREFIX} (max-uses 1); removed when idle"));
        assert_eq!(reconcile(&instances, &[used_up], &Book::default(), &tpl(), MIN).0[0].state, NodeState::Online);
    }

    #[test]
    fn a_removal_left_half_done_by_a_crash_is_finished() {
        let instances = [inst("i-1", CloudStatus::Running, 0)];
        let marked = offline("i-1", &format!("{REMOVING_PREFIX} (idle 10m)"));
        let (nodes, chores) = reconcile(&instances, std::slice::from_ref(&marked), &Book::default(), &tpl(), MIN);
        assert_eq!(nodes[0].state, NodeState::Draining);
        assert_eq!(chores, vec![Chore::ResumeDrain { instance_id: "i-1".into() }]);
        // Also when the agent went away meanwhile.
        let gone = AgentNode { online: false, ..marked };
        assert_eq!(reconcile(&instances, &[gone], &Book::default(), &tpl(), MIN).1, vec![Chore::ResumeDrain { instance_id: "i-1".into() }]);
    }

    #[test]
    fn an_agent_that_dropped_is_restarted_then_replaced() {
        let instances = [inst("i-1", CloudStatus::Running, 0)];
        let mut book = Book::default();
        book.seen_online.insert("i-1".into());
        book.bootstraps.insert("i-1".into(), BootstrapStatus::Done);
        let now = 30 * MIN;
        let (nodes, chores) = reconcile(&instances, &[agent("i-1", false)], &book, &tpl(), now);
        assert_eq!(nodes[0].state, NodeState::Disconnected);
        assert_eq!(chores, vec![Chore::Reconnect { instance_id: "i-1".into(), deadline_ms: now + 2 * MIN }]);

        // Restarting: no new chore until the reconnect timeout.
        book.disconnected.insert("i-1".into(), now);
        book.bootstraps.insert("i-1".into(), BootstrapStatus::Done);
        let (nodes, chores) = reconcile(&instances, &[agent("i-1", false)], &book, &tpl(), now + MIN);
        assert_eq!((nodes[0].state, chores.len()), (NodeState::Disconnected, 0));
        let (nodes, chores) = reconcile(&instances, &[agent("i-1", false)], &book, &tpl(), now + 2 * MIN);
        assert_eq!(nodes[0].state, NodeState::Terminating);
        assert_eq!(
            nodes[0].failure.as_deref(),
            Some("agent disconnected for 120s and did not come back (reconnect-timeout)")
        );
        assert!(matches!(&chores[..], [Chore::Terminate { .. }]), "{chores:?}");

        // A failed restart replaces it at once.
        book.bootstraps.insert("i-1".into(), BootstrapStatus::Failed("no route".into()));
        let (_, chores) = reconcile(&instances, &[agent("i-1", false)], &book, &tpl(), now + 1000);
        assert_eq!(chores, vec![Chore::Terminate { instance_id: "i-1".into(), reason: "reconnect failed: no route".into() }]);
    }

    #[test]
    fn a_dropped_agent_is_recognised_after_a_restart() {
        // Empty book (a new process), an old instance, and Jenkins keeping a broken-channel
        // cause: not a launch that timed out, an agent to restart.
        let dropped = AgentNode { dropped: true, ..agent("i-1", false) };
        let (nodes, chores) = reconcile(&[inst("i-1", CloudStatus::Running, 0)], &[dropped], &Book::default(), &tpl(), 60 * MIN);
        assert_eq!(nodes[0].state, NodeState::Disconnected);
        assert!(matches!(&chores[..], [Chore::Reconnect { .. }]), "{chores:?}");
    }

    #[test]
    fn launches_the_listing_does_not_show_yet_are_requested_nodes() {
        let mut book = Book::default();
        book.launched.insert("i-new".into(), inst("i-new", CloudStatus::Pending, MIN));
        let (nodes, chores) = reconcile(&[], &[], &book, &tpl(), MIN + 5_000);
        assert_eq!(nodes.len(), 1);
        assert_eq!((nodes[0].instance_id(), nodes[0].state), ("i-new", NodeState::Requested));
        assert!(chores.is_empty());
        // Listed: its real state. Never listed within the grace: forgotten.
        let (nodes, _) = reconcile(&[inst("i-new", CloudStatus::Pending, MIN)], &[], &book, &tpl(), MIN + 5_000);
        assert_eq!(nodes.iter().map(|n| n.state).collect::<Vec<_>>(), [NodeState::Pending]);
        assert!(reconcile(&[], &[], &book, &tpl(), MIN + LISTING_GRACE_MS).0.is_empty());
    }

    #[test]
    fn a_reclaim_notice_fences_the_node_and_the_reclaim_terminates_it() {
        let mut noticed = inst("i-1", CloudStatus::Running, 0);
        noticed.spot = true;
        noticed.locks = vec![LOCK_RECYCLING.into()];
        let (nodes, chores) = reconcile(&[noticed.clone()], &[agent("i-1", true)], &Book::default(), &tpl(), MIN);
        assert_eq!(nodes[0].state, NodeState::Interrupted);
        assert_eq!(chores, vec![Chore::Fence { instance_id: "i-1".into(), reason: RECLAIM_REASON.into() }]);
        // Fenced already: nothing more to do until the cloud takes it.
        let fenced = offline("i-1", RECLAIM_REASON);
        assert!(reconcile(std::slice::from_ref(&noticed), std::slice::from_ref(&fenced), &Book::default(), &tpl(), MIN).1.is_empty());
        noticed.status = CloudStatus::Stopping;
        let (nodes, chores) = reconcile(&[noticed], &[fenced], &Book::default(), &tpl(), MIN);
        assert_eq!(nodes[0].failure.as_deref(), Some("spot instance reclaimed by the cloud"));
        assert!(matches!(&chores[..], [Chore::Terminate { .. }]), "{chores:?}");
    }

    #[test]
    fn an_unknown_lock_changes_nothing() {
        let mut locked = inst("i-1", CloudStatus::Running, 0);
        locked.locks = vec!["financial".into()];
        let (nodes, chores) = reconcile(&[locked], &[agent("i-1", true)], &Book::default(), &tpl(), MIN);
        assert_eq!((nodes[0].state, chores.len()), (NodeState::Online, 0));
    }

    #[test]
    fn a_restart_does_not_misread_its_own_deletions() {
        // Node deleted, instance delete sent, then the process restarted: the instance is
        // still settling. It is booked, not deleted again nor blamed on someone else.
        let (nodes, chores) = reconcile(&[inst("i-1", CloudStatus::Stopping, 0)], &[], &Book::default(), &tpl(), MIN);
        assert_eq!(nodes[0].state, NodeState::Terminating);
        assert_eq!(
            chores,
            vec![Chore::BookTerminating {
                instance_id: "i-1".into(),
                reason: "being deleted (found stopping after a restart)".into()
            }]
        );
    }

    #[test]
    fn launch_holds_double_per_failure_and_end_when_a_node_comes_online() {
        let mut book = Book::default();
        let holds: Vec<u64> = (0..9)
            .map(|_| {
                book.bootstrap_failed("linux", "host-key", "host key mismatch", 1_000);
                book.holds["linux"].until_ms - 1_000
            })
            .collect();
        assert_eq!(holds, [5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
        assert_eq!(book.failed_bootstraps.len(), 9);
        book.bootstrap_worked("linux");
        assert!(book.holds.is_empty());
    }

    #[test]
    fn only_the_latest_bootstrap_run_of_an_instance_books_its_outcome() {
        let mut book = Book::default();
        let first = book.bootstrap_started("i-1");
        let second = book.bootstrap_started("i-1");
        assert_ne!(first, second);
        assert!(!book.bootstrap_ended("i-1", first, BootstrapStatus::Failed("agent not running".into())));
        assert_eq!(book.bootstraps["i-1"], BootstrapStatus::Running { run: second }, "the second run is still under way");
        assert!(book.bootstrap_ended("i-1", second, BootstrapStatus::Done));
        assert_eq!(book.bootstraps["i-1"], BootstrapStatus::Done);
        assert!(!book.bootstrap_ended("i-1", second, BootstrapStatus::Failed("twice".into())), "a run ends once");
        let other = book.bootstrap_started("i-2");
        book.bootstraps.remove("i-2");
        assert!(!book.bootstrap_ended("i-2", other, BootstrapStatus::Done), "forgotten meanwhile");
        assert_eq!(book.bootstraps.get("i-2"), None);
    }

    #[test]
    fn terminate_is_resent_only_after_a_while() {
        let mut book = Book::default();
        book.terminating.insert("i-1".into(), ("idle".into(), MIN));
        let instances = [inst("i-1", CloudStatus::Running, 0)];
        assert!(reconcile(&instances, &[], &book, &tpl(), MIN + 1000).1.is_empty());
        assert_eq!(reconcile(&instances, &[], &book, &tpl(), 2 * MIN).1.len(), 1);
    }

    #[test]
    fn book_forgets_instances_that_are_gone() {
        let mut book = Book::default();
        for id in ["i-1", "i-2"] {
            book.bootstrap_started(id);
            book.terminating.insert(id.into(), ("x".into(), 0));
            book.seen_online.insert(id.into());
            book.launched.insert(id.into(), inst(id, CloudStatus::Pending, 0));
        }
        book.launched.insert("i-new".into(), inst("i-new", CloudStatus::Pending, 10 * MIN));
        book.prune(&["i-1"].into_iter().collect(), 10 * MIN);
        assert_eq!(book.bootstraps.keys().collect::<Vec<_>>(), ["i-1"]);
        assert_eq!(book.terminating.keys().collect::<Vec<_>>(), ["i-1"]);
        assert_eq!(book.seen_online.iter().collect::<Vec<_>>(), ["i-1"]);
        assert_eq!(
            book.launched.keys().collect::<Vec<_>>(),
            ["i-new"],
            "a fresh launch waits for the listing; a listed one is the listing's"
        );
        // Listed once, then deleted: not a launch the listing lags behind any more.
        book.prune(&["i-new"].into_iter().collect(), 10 * MIN + 1);
        assert!(reconcile(&[], &[], &book, &tpl(), 10 * MIN + 2).0.is_empty());
    }

    fn user_data_tpl() -> Vec<TemplateLimits> {
        let mut t = tpl();
        t[0].user_data = true;
        t
    }

    #[test]
    fn a_user_data_instance_is_never_bootstrapped_and_waits_for_its_agent() {
        let node = crate::model::user_data_node_name("linux", MIN, 7);
        let mut running = inst("i-1", CloudStatus::Running, MIN);
        running.node = Some(node.clone());
        let waiting = AgentNode { name: node.clone(), executors: 1, ..Default::default() };
        let (nodes, chores) = reconcile(std::slice::from_ref(&running), std::slice::from_ref(&waiting), &Book::default(), &user_data_tpl(), MIN + 5_000);
        assert_eq!((nodes[0].state, nodes[0].agent.as_ref().map(|a| a.name.as_str())), (NodeState::Connecting, Some(node.as_str())));
        assert!(chores.is_empty(), "nothing to bootstrap, no node to create: {chores:?}");
        // Past its launch timeout it is terminated like any other launch.
        let (_, chores) = reconcile(&[running], &[waiting], &Book::default(), &user_data_tpl(), 20 * MIN);
        assert!(matches!(&chores[..], [Chore::Terminate { reason, .. }] if reason.starts_with(LAUNCH_TIMEOUT)), "{chores:?}");
    }

    #[test]
    fn a_user_data_node_waits_for_its_launch_and_is_deleted_once_it_cannot_land() {
        let created = 10 * MIN;
        let node = crate::model::user_data_node_name("linux", created, 1);
        let waiting = AgentNode { name: node.clone(), executors: 1, ..Default::default() };
        let mut book = Book::default();
        book.pending_nodes.insert(node.clone(), created);
        // RunInstances in flight: kept however long it takes.
        let (_, chores) = reconcile(&[], std::slice::from_ref(&waiting), &book, &user_data_tpl(), created + 10 * MIN);
        assert!(chores.is_empty(), "{chores:?}");
        // A restarted process (empty book): kept while a launch may still be landing.
        let fresh = Book::default();
        let (_, chores) = reconcile(&[], std::slice::from_ref(&waiting), &fresh, &user_data_tpl(), created + LISTING_GRACE_MS - 1);
        assert!(chores.is_empty(), "{chores:?}");
        // After that nothing will ever connect as it: deleted.
        let (_, chores) = reconcile(&[], std::slice::from_ref(&waiting), &fresh, &user_data_tpl(), created + LISTING_GRACE_MS);
        assert!(matches!(&chores[..], [Chore::DeleteNode { name, .. }] if *name == node), "{chores:?}");
        // Its instance listed with the node tag: matched, not deleted.
        let mut listed = inst("i-1", CloudStatus::Running, created);
        listed.node = Some(node.clone());
        let (nodes, chores) = reconcile(&[listed], &[waiting], &fresh, &user_data_tpl(), created + 20 * MIN);
        assert_eq!(nodes[0].agent.as_ref().map(|a| a.name.clone()), Some(node));
        assert!(chores.iter().all(|c| !matches!(c, Chore::DeleteNode { .. })), "{chores:?}");
    }

    #[test]
    fn a_dropped_user_data_agent_is_waited_for_then_replaced() {
        let node = crate::model::user_data_node_name("linux", 0, 1);
        let mut running = inst("i-1", CloudStatus::Running, 0);
        running.node = Some(node.clone());
        let dropped = AgentNode { name: node, dropped: true, executors: 1, ..Default::default() };
        let mut book = Book::default();
        book.seen_online.insert("i-1".into());
        let (nodes, chores) = reconcile(std::slice::from_ref(&running), std::slice::from_ref(&dropped), &book, &user_data_tpl(), 30 * MIN);
        assert_eq!(nodes[0].state, NodeState::Disconnected);
        assert!(matches!(&chores[..], [Chore::Reconnect { .. }]), "{chores:?}");
        book.disconnected.insert("i-1".into(), 30 * MIN);
        let (_, chores) = reconcile(&[running], &[dropped], &book, &user_data_tpl(), 32 * MIN);
        assert!(matches!(&chores[..], [Chore::Terminate { reason, .. }] if reason.contains("reconnect-timeout")), "{chores:?}");
    }

    #[test]
    fn node_names_parse_only_for_our_templates() {
        let t = tpl();
        assert_eq!(parse_node_name("linux-i-abc", &t), Some(("linux", "i-abc")));
        assert_eq!(parse_node_name("linux-anchor", &t), None);
        assert_eq!(parse_node_name("windows-i-abc", &t), None);
        assert_eq!(parse_node_name("linux-i-", &t), None, "no instance id after the prefix");
        let ud = crate::model::user_data_node_name("linux", 0x18c_0000_0000, 0xabc);
        assert_eq!(parse_node_name(&ud, &t), Some(("linux", "u-18c0000000000000abc")));
        assert_eq!(crate::model::launch_key_time("u-18c0000000000000abc"), Some(0x18c_0000_0000));
        assert_eq!(parse_node_name("linux-u-xyz", &t), None, "not a launch key");
        let mut t = tpl();
        t.push(TemplateLimits {
            name: "linux-big".into(),
            min_nodes: 0,
            max_nodes: 1,
            launch_timeout_ms: 1,
            reconnect_timeout_ms: 1,
            max_uses: 0,
            max_stopped: 0,
            fingerprint: String::new(),
            user_data: false,
        });
        assert_eq!(parse_node_name("linux-big-i-abc", &t), Some(("linux-big", "i-abc")));
    }

    #[test]
    fn a_busy_node_of_a_retired_template_is_kept_until_its_build_ends() {
        let mut retired = inst("i-1", CloudStatus::Running, 0);
        retired.template = "gone".into();
        let mut busy = AgentNode { name: node_name("gone", "i-1"), online: true, executors: 1, busy_executors: 1, ..Default::default() };
        let (nodes, chores) = reconcile(&[retired.clone()], &[busy.clone()], &Book::default(), &tpl(), MIN);
        assert_eq!(nodes[0].state, NodeState::Terminating);
        assert_eq!(chores, vec![], "running a build: not terminated");
        busy.busy_executors = 0;
        let (_, chores) = reconcile(&[retired], &[busy], &Book::default(), &tpl(), MIN);
        assert_eq!(
            chores,
            vec![Chore::Terminate { instance_id: "i-1".into(), reason: "template \"gone\" is no longer configured".into() }]
        );
    }

    #[test]
    fn an_unknown_creation_time_never_runs_out_the_launch_timeout() {
        let mut unknown = inst("i-1", CloudStatus::Starting, 0);
        unknown.created_ms = None;
        let (nodes, chores) = reconcile(&[unknown], &[], &Book::default(), &tpl(), 1_000 * MIN);
        assert_eq!(nodes[0].state, NodeState::Pending);
        assert_eq!(chores, vec![Chore::CreateNode { instance_id: "i-1".into() }]);
        // The same instance with a known, old creation time is past its launch timeout.
        let (_, chores) = reconcile(&[inst("i-1", CloudStatus::Starting, 0)], &[], &Book::default(), &tpl(), 1_000 * MIN);
        assert!(chores.iter().any(|c| matches!(c, Chore::Terminate { .. })), "{chores:?}");
    }

    #[test]
    fn a_node_is_deleted_only_when_its_instance_was_proven_ours() {
        // A node named and described like ours, for an instance this process never listed
        // with our tag nor launched: an impostor (or a leftover from before a restart). Kept.
        let agents = [agent("i-impostor", false), agent("i-gone", false)];
        let mut book = Book::default();
        book.known_ours.insert("i-gone".into());
        let (_, chores) = reconcile(&[], &agents, &book, &tpl(), MIN);
        assert_eq!(
            chores,
            vec![Chore::DeleteNode { name: "linux-i-gone".into(), reason: "instance i-gone of template linux no longer exists".into() }]
        );
        // Malformed ids are never ours, whatever else is known.
        book.known_ours.insert("i-x/../y".into());
        let odd = AgentNode { name: "linux-i-x/../y".into(), ..Default::default() };
        let (_, chores) = reconcile(&[], &[odd], &book, &tpl(), MIN);
        assert_eq!(chores, vec![]);
    }

    #[test]
    fn proven_instances_are_remembered_from_the_listing_and_launches_and_forgotten_when_settled() {
        let mut book = Book::default();
        book.launched.insert("i-new".into(), inst("i-new", CloudStatus::Pending, MIN));
        book.prune(&["i-listed"].into(), MIN);
        assert_eq!(book.known_ours, ["i-listed".to_owned(), "i-new".to_owned()].into());
        // i-listed is gone from the listing but still has a node; i-new is still booked.
        book.forget_settled(&BTreeSet::new(), &["i-listed"].into());
        assert_eq!(book.known_ours, ["i-listed".to_owned(), "i-new".to_owned()].into());
        book.launched.clear();
        book.forget_settled(&BTreeSet::new(), &BTreeSet::new());
        assert!(book.known_ours.is_empty());
    }

    #[test]
    fn a_long_bootstrap_error_is_kept_cut_to_512_bytes_on_a_character_boundary() {
        let mut book = Book::default();
        book.bootstrap_failed("linux", "unreachable", &"x".repeat(600), 0);
        assert_eq!(book.holds["linux"].last_error, "x".repeat(512));
        // A two-byte character across the 512th byte is left out whole, not split.
        book.bootstrap_failed("linux", "unreachable", &format!("{}é and more", "x".repeat(511)), 0);
        assert_eq!(book.holds["linux"].last_error, "x".repeat(511));
    }

    /// The chores of one running instance whose agent is connected and idle, as `a` says.
    fn activity_chores(max_uses: u32, a: AgentNode) -> Vec<Chore> {
        let mut t = tpl();
        t[0].max_uses = max_uses;
        reconcile(&[inst("i-1", CloudStatus::Running, 0)], &[a], &Book::default(), &t, MIN).1
    }

    fn record(idle_since_ms: Option<u64>, uses: Option<(u32, &str)>) -> Vec<Chore> {
        let record = ActivityRecord { idle_since_ms, uses: uses.map(|(n, k)| (n, k.to_owned())) };
        vec![Chore::RecordActivity { instance_id: "i-1".into(), record }]
    }

    #[test]
    fn a_node_idle_since_a_time_not_yet_recorded_gets_it_recorded_and_only_counted_uses_with_it() {
        let built = AgentNode { uses: 3, last_build: Some("job/a/3".into()), ..agent("i-1", true) };
        let idle = AgentNode { idle_since_ms: Some(5), ..built.clone() };
        // max-uses 0: builds are not counted, so none is recorded.
        assert_eq!(activity_chores(0, idle.clone()), record(Some(5), None));
        assert_eq!(activity_chores(2, idle.clone()), record(Some(5), Some((3, "job/a/3"))));
        // Recorded already: nothing to write, whatever the build count when uses are not counted.
        let recorded = AgentNode { idle_recorded_ms: Some(5), ..idle };
        assert_eq!(activity_chores(0, recorded), vec![]);
        // Busy (no idle time) and nothing recorded: nothing to write either.
        assert_eq!(activity_chores(0, AgentNode { idle_recorded_ms: Some(5), ..built }), vec![]);
    }

    #[test]
    fn a_node_that_started_a_build_since_the_last_record_gets_its_count_recorded_when_uses_are_capped() {
        let busy = AgentNode { uses: 1, last_build: Some("job/a/1".into()), ..agent("i-1", true) };
        assert_eq!(activity_chores(2, busy.clone()), record(None, Some((1, "job/a/1"))));
        assert_eq!(activity_chores(0, busy.clone()), vec![], "max-uses 0: builds are not counted");
        let recorded = AgentNode { uses: 2, uses_recorded: 2, ..busy.clone() };
        assert_eq!(activity_chores(2, recorded), vec![], "the count is recorded already");
        // A count of 0 (seeded from an old record) carries no build key.
        let none_yet = AgentNode { uses: 0, idle_since_ms: Some(9), ..busy };
        assert_eq!(activity_chores(2, none_yet), record(Some(9), None));
    }

    #[test]
    fn a_node_of_a_launch_past_the_listing_grace_and_never_listed_is_deleted() {
        let mut book = Book::default();
        book.known_ours.insert("i-lost".into());
        // Not pruned yet: the book still holds the launch, but the grace is over.
        book.launched.insert("i-lost".into(), inst("i-lost", CloudStatus::Pending, MIN));
        let (nodes, chores) = reconcile(&[], &[agent("i-lost", false)], &book, &tpl(), MIN + LISTING_GRACE_MS);
        assert!(nodes.is_empty(), "{nodes:?}");
        assert_eq!(
            chores,
            vec![Chore::DeleteNode { name: "linux-i-lost".into(), reason: "instance i-lost of template linux no longer exists".into() }]
        );
    }

    #[test]
    fn a_half_done_removal_is_not_resumed_while_the_node_runs_a_build_online() {
        let instances = [inst("i-1", CloudStatus::Running, 0)];
        let busy = AgentNode { busy_executors: 1, ..offline("i-1", &format!("{REMOVING_PREFIX} (idle 10m)")) };
        let (nodes, chores) = reconcile(&instances, std::slice::from_ref(&busy), &Book::default(), &tpl(), MIN);
        assert_eq!((nodes[0].state, chores), (NodeState::Draining, vec![]));
        // Its agent gone, the build cannot go on: resumed.
        let gone = AgentNode { online: false, ..busy };
        assert_eq!(reconcile(&instances, &[gone], &Book::default(), &tpl(), MIN).1, vec![Chore::ResumeDrain { instance_id: "i-1".into() }]);
    }

    #[test]
    fn an_instance_without_a_node_is_bootstrapped_only_over_ssh_with_an_address_and_once() {
        let create = vec![Chore::CreateNode { instance_id: "i-1".into() }];
        let running = inst("i-1", CloudStatus::Running, 0);
        let (nodes, chores) = reconcile(std::slice::from_ref(&running), &[], &Book::default(), &user_data_tpl(), MIN);
        assert_eq!((nodes[0].state, &chores), (NodeState::Connecting, &create), "a user-data instance starts its own agent");
        let no_ip = CloudInstance { private_ip: None, ..running.clone() };
        let (nodes, chores) = reconcile(&[no_ip], &[], &Book::default(), &tpl(), MIN);
        assert_eq!((nodes[0].state, &chores), (NodeState::Running, &create), "no address to connect to");
        let mut book = Book::default();
        book.bootstraps.insert("i-1".into(), BootstrapStatus::Running { run: 1 });
        let (nodes, chores) = reconcile(&[running], &[], &book, &tpl(), MIN);
        assert_eq!((nodes[0].state, &chores), (NodeState::Running, &create), "its bootstrap is running already");
    }

    #[test]
    fn a_launch_timeout_cancels_only_the_bootstrap_of_the_node_it_terminates() {
        let instances = [inst("i-1", CloudStatus::Running, 10 * MIN), inst("i-2", CloudStatus::Running, 0)];
        let (nodes, chores) = reconcile(&instances, &[], &Book::default(), &tpl(), 11 * MIN);
        assert_eq!(nodes.iter().map(|n| n.state).collect::<Vec<_>>(), [NodeState::Running, NodeState::Terminating]);
        assert_eq!(
            chores,
            vec![
                Chore::CreateNode { instance_id: "i-1".into() },
                Chore::Bootstrap { instance_id: "i-1".into() },
                Chore::CreateNode { instance_id: "i-2".into() },
                Chore::Terminate { instance_id: "i-2".into(), reason: "launch-timeout: still running after 660s".into() },
            ]
        );
    }
}
