//! Instance lifecycle: merges what the cloud lists, what Jenkins shows and what this process
//! started into one state per node, and lists the chores that move nodes along.
//!
//! State lives in the cloud (tags) and in Jenkins (node names), so this runs the same way on a
//! fresh start as in steady state: after a crash it adopts running agents, resumes half-done
//! bootstraps, terminates instances stuck past their launch timeout and deletes nodes whose
//! instance is gone. The only memory kept here (`Book`) is what neither service can tell us.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{AgentNode, BootstrapStatus, CloudInstance, CloudStatus, Node, NodeState, TemplateLimits, node_name, split_node_name};

/// What this process remembers between cycles.
#[derive(Debug, Default)]
pub struct Book {
    /// Bootstraps this process started, by instance id.
    pub bootstraps: BTreeMap<String, BootstrapStatus>,
    /// Nodes being drained for removal.
    pub draining: BTreeSet<String>,
    /// Instances whose deletion was requested: reason and when (ms).
    pub terminating: BTreeMap<String, (String, u64)>,
    /// Instances whose agent has been online at least once.
    pub seen_online: BTreeSet<String>,
    /// Instances this process launched, and when (ms): the cloud's listing may lag behind.
    pub launched: BTreeMap<String, u64>,
}

impl Book {
    /// Forgets instances the cloud no longer lists (launches stay until their listing grace
    /// has passed, since a fresh instance may not be listed yet).
    pub fn prune(&mut self, listed: &BTreeSet<&str>, now_ms: u64) {
        self.bootstraps.retain(|id, _| listed.contains(id.as_str()));
        self.draining.retain(|id| listed.contains(id.as_str()));
        self.terminating.retain(|id, _| listed.contains(id.as_str()));
        self.seen_online.retain(|id| listed.contains(id.as_str()));
        self.launched.retain(|id, at| listed.contains(id.as_str()) || now_ms.saturating_sub(*at) < LISTING_GRACE_MS);
    }
}

/// A step that moves a node along its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chore {
    /// Register the Jenkins node for an instance that has none.
    CreateNode { instance_id: String },
    /// Bootstrap (or resume bootstrapping) a running instance.
    Bootstrap { instance_id: String },
    /// Delete the instance (and its node), recording why.
    Terminate { instance_id: String, reason: String },
    /// Delete a Jenkins node of ours whose instance no longer exists.
    DeleteNode { name: String, reason: String },
}

/// Re-sends a delete this long after the last attempt if the instance is still listed.
const TERMINATE_RETRY_MS: u64 = 60_000;
/// A node whose instance is missing from the listing is left alone this long after launch,
/// because the cloud's listing is eventually consistent.
const LISTING_GRACE_MS: u64 = 120_000;

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
        let id = inst.instance_id.as_str();
        let name = node_name(&inst.template, id);
        let agent = agents_by_name.get(name.as_str()).copied();
        if agent.is_some() {
            matched_agents.insert(name.clone());
        }
        let template = templates.iter().find(|t| t.name == inst.template);
        let age = now_ms.saturating_sub(inst.created_ms);
        let mut failure = None;

        let state = if let Some((reason, at)) = book.terminating.get(id) {
            failure = Some(reason.clone());
            if now_ms.saturating_sub(*at) >= TERMINATE_RETRY_MS {
                chores.push(Chore::Terminate { instance_id: id.into(), reason: reason.clone() });
            }
            NodeState::Terminating
        } else if template.is_none() {
            let reason = format!("template {:?} is no longer configured", inst.template);
            if agent.is_none_or(|a| a.busy_executors == 0) {
                chores.push(Chore::Terminate { instance_id: id.into(), reason: reason.clone() });
            }
            failure = Some(reason);
            NodeState::Terminating
        } else if matches!(inst.status, CloudStatus::Stopping | CloudStatus::Stopped | CloudStatus::Other) {
            // Stopped behind our back: a reclaimed spot instance, or someone in the console.
            let reason = "instance stopped outside the provisioner (spot reclaim?)".to_owned();
            chores.push(Chore::Terminate { instance_id: id.into(), reason: reason.clone() });
            failure = Some(reason);
            NodeState::Terminating
        } else if book.draining.contains(id) {
            NodeState::Draining
        } else {
            let state = match (inst.status, agent) {
                (_, Some(a)) if a.online => NodeState::Online,
                (CloudStatus::Pending | CloudStatus::Starting, _) => NodeState::Pending,
                (_, None) => NodeState::Running,
                (_, Some(_)) => match book.bootstraps.get(id) {
                    Some(BootstrapStatus::Running) => NodeState::Bootstrapping,
                    Some(BootstrapStatus::Done) => NodeState::Connecting,
                    Some(BootstrapStatus::Failed(_)) | None => NodeState::Running,
                },
            };
            if agent.is_none() {
                chores.push(Chore::CreateNode { instance_id: id.into() });
            }
            if let Some(BootstrapStatus::Failed(msg)) = book.bootstraps.get(id).filter(|_| state != NodeState::Online) {
                let reason = format!("bootstrap failed: {msg}");
                chores.push(Chore::Terminate { instance_id: id.into(), reason: reason.clone() });
                failure = Some(reason);
                NodeState::Terminating
            } else if state == NodeState::Running && inst.private_ip.is_some() && !book.bootstraps.contains_key(id) {
                // Fresh, adopted after a restart, or an agent that went away: (re)bootstrap.
                // The init script's marker file keeps a resumed bootstrap from running it twice.
                chores.push(Chore::Bootstrap { instance_id: id.into() });
                state
            } else if state != NodeState::Online
                && !book.seen_online.contains(id)
                && age > template.map_or(u64::MAX, |t| t.launch_timeout_ms)
            {
                let reason = format!(
                    "launch-timeout: still {} after {}s",
                    state.as_str(),
                    age / 1000
                );
                chores.push(Chore::Terminate { instance_id: id.into(), reason: reason.clone() });
                failure = Some(reason);
                NodeState::Terminating
            } else {
                state
            }
        };
        nodes.push(Node { instance: inst.clone(), agent: agent.cloned(), state, failure });
    }

    // Nodes of ours without an instance: the instance died or was deleted behind our back.
    for a in agents {
        if matched_agents.contains(&a.name) {
            continue;
        }
        let Some((template, instance_id)) = parse_node_name(&a.name, templates) else { continue };
        let recently_launched = book
            .launched
            .get(instance_id)
            .is_some_and(|at| now_ms.saturating_sub(*at) < LISTING_GRACE_MS);
        if !recently_launched && a.busy_executors == 0 {
            chores.push(Chore::DeleteNode {
                name: a.name.clone(),
                reason: format!("instance {instance_id} of template {template} no longer exists"),
            });
        }
    }
    (nodes, chores)
}

/// Splits `<template>-<instance-id>` when the template is ours (see [`split_node_name`]).
pub fn parse_node_name<'a>(name: &'a str, templates: &[TemplateLimits]) -> Option<(&'a str, &'a str)> {
    split_node_name(name, templates.iter().map(|t| t.name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn tpl() -> Vec<TemplateLimits> {
        vec![TemplateLimits { name: "linux".into(), min_nodes: 0, max_nodes: 10, launch_timeout_ms: 10 * MIN }]
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
            created_ms,
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
        book.bootstraps.insert("i-1".into(), BootstrapStatus::Running);
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
        book.launched.insert("i-new".into(), MIN);
        let agents = [agent("i-gone", false), agent("i-new", false), AgentNode { name: "linux-anchor".into(), ..Default::default() }];
        let (_, chores) = reconcile(&[], &agents, &book, &tpl(), MIN + 1000);
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
            reconcile(&[inst("i-1", CloudStatus::Stopped, 0), other], &[], &Book::default(), &tpl(), MIN);
        assert!(nodes.iter().all(|n| n.state == NodeState::Terminating));
        assert_eq!(chores.len(), 2);
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
            book.bootstraps.insert(id.into(), BootstrapStatus::Done);
            book.terminating.insert(id.into(), ("x".into(), 0));
            book.seen_online.insert(id.into());
            book.launched.insert(id.into(), 0);
        }
        book.launched.insert("i-new".into(), 10 * MIN);
        book.prune(&["i-1"].into_iter().collect(), 10 * MIN);
        assert_eq!(book.bootstraps.keys().collect::<Vec<_>>(), ["i-1"]);
        assert_eq!(book.terminating.keys().collect::<Vec<_>>(), ["i-1"]);
        assert_eq!(book.seen_online.iter().collect::<Vec<_>>(), ["i-1"]);
        assert_eq!(book.launched.keys().collect::<Vec<_>>(), ["i-1", "i-new"], "a fresh launch waits for the listing");
    }

    #[test]
    fn node_names_parse_only_for_our_templates() {
        let t = tpl();
        assert_eq!(parse_node_name("linux-i-abc", &t), Some(("linux", "i-abc")));
        assert_eq!(parse_node_name("linux-anchor", &t), None);
        assert_eq!(parse_node_name("windows-i-abc", &t), None);
        assert_eq!(parse_node_name("linux-i-", &t), None, "no instance id after the prefix");
        let mut t = tpl();
        t.push(TemplateLimits { name: "linux-big".into(), min_nodes: 0, max_nodes: 1, launch_timeout_ms: 1 });
        assert_eq!(parse_node_name("linux-big-i-abc", &t), Some(("linux-big", "i-abc")));
    }
}
