//! The warm pool: nodes whose instance this provisioner stopped (`idle-action = "stop"`) and
//! started again on demand.
//!
//! Its state lives where a restarted process finds it: the instance's status in the cloud and
//! its Jenkins node's offline message. A stopped node keeps its node offline with
//! [`STOPPED_PREFIX`]; a node being started carries [`STARTING_PREFIX`] and the start time,
//! which its launch timeout counts from, until its agent is online again.

use std::collections::BTreeMap;

use super::{Book, Chore, LISTING_GRACE_MS};
use crate::model::{AgentNode, BootstrapStatus, CloudInstance, CloudStatus, LOCK_RECYCLING, Node, NodeState, TemplateLimits};

/// The offline message of a node whose instance this provisioner stopped (or is stopping).
pub const STOPPED_PREFIX: &str = "ecs-provisioner: stopped";
/// The offline message of a node whose stopped instance this provisioner is starting again.
pub const STARTING_PREFIX: &str = "ecs-provisioner: starting";

/// The offline message given to a node when its instance is stopped.
pub fn stopped_reason(why: &str) -> String {
    format!("{STOPPED_PREFIX} ({why}); started again when builds need it")
}

/// The offline message given to a node when its instance is started, with the start time.
pub fn starting_reason(since_ms: u64) -> String {
    format!("{STARTING_PREFIX} since {since_ms}")
}

/// Where a warm-pool node is, as its Jenkins node says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Stopped, or on its way to stopped.
    Stopped,
    /// Being started since this instant (ms); `None` if the time cannot be read.
    Starting(Option<u64>),
}

/// The warm-pool mark of a node, if it carries one.
pub fn mark_of(agent: &AgentNode) -> Option<Mark> {
    let reason = agent.offline_reason.as_deref().filter(|_| agent.temporarily_offline)?;
    if reason.starts_with(STOPPED_PREFIX) {
        return Some(Mark::Stopped);
    }
    let since = reason.strip_prefix(STARTING_PREFIX)?;
    Some(Mark::Starting(since.trim().strip_prefix("since ").and_then(|t| t.trim().parse().ok())))
}

/// Whether the instance was launched from the template as it is configured now.
pub fn matches_template(inst: &CloudInstance, template: &TemplateLimits) -> bool {
    inst.fingerprint.as_deref() == Some(template.fingerprint.as_str())
}

/// The state of a node that carries a warm-pool mark, with the chores that move it along;
/// `None` for every other node (the ordinary lifecycle decides). Called once the instance is
/// known not to be terminating and its template to exist.
pub(crate) fn node_state(
    inst: &CloudInstance,
    agent: Option<&AgentNode>,
    template: &TemplateLimits,
    book: &Book,
    now_ms: u64,
    chores: &mut Vec<Chore>,
) -> Option<(NodeState, Option<String>)> {
    let mark = mark_of(agent?)?;
    let id = inst.instance_id.as_str();
    let terminate = |chores: &mut Vec<Chore>, reason: String| {
        chores.push(Chore::Terminate { instance_id: id.into(), reason: reason.clone() });
        Some((NodeState::Terminating, Some(reason)))
    };
    if inst.locks.iter().any(|l| l == LOCK_RECYCLING) {
        // A reclaimed spot instance: the ordinary rules fence and delete it.
        return None;
    }
    let down = matches!(inst.status, CloudStatus::Stopping | CloudStatus::Stopped);
    match mark {
        Mark::Starting(since) if !down || start_in_flight(book, id, now_ms) => {
            let since = since.or_else(|| book.starting.get(id).copied()).unwrap_or(now_ms);
            starting_state(inst, agent?, template, book, since, now_ms, chores)
        }
        _ if down && !matches_template(inst, template) => {
            terminate(chores, "template or image changed since launch: a stopped instance is deleted, not started".into())
        }
        _ if down => Some((NodeState::Stopped, None)),
        Mark::Stopped if book.draining.contains(id) => Some((NodeState::Draining, None)),
        Mark::Stopped if inst.status == CloudStatus::Running && !stop_in_flight(book, id, now_ms) => {
            // Marked, but the stop was never sent (a crash, or StopInstances failed).
            chores.push(Chore::Stop { instance_id: id.into() });
            Some((NodeState::Stopped, None))
        }
        // Started by someone else: wait until it runs, then stop it again.
        _ => Some((NodeState::Stopped, None)),
    }
}

/// A node being started: pending until the instance runs, then its agent is restarted; online
/// (and put back online in Jenkins) once the agent is connected. Past the launch timeout,
/// counted from the start, it is terminated like a launch.
fn starting_state(
    inst: &CloudInstance,
    agent: &AgentNode,
    template: &TemplateLimits,
    book: &Book,
    since_ms: u64,
    now_ms: u64,
    chores: &mut Vec<Chore>,
) -> Option<(NodeState, Option<String>)> {
    let id = inst.instance_id.as_str();
    if agent.online {
        chores.push(Chore::Unfence { instance_id: id.into() });
        return Some((NodeState::Online, None));
    }
    let deadline_ms = since_ms.saturating_add(template.launch_timeout_ms);
    let state = match (inst.status, book.bootstraps.get(id)) {
        (CloudStatus::Running, Some(BootstrapStatus::Failed(msg))) => {
            let reason = format!("agent restart after start failed: {msg}");
            chores.push(Chore::Terminate { instance_id: id.into(), reason: reason.clone() });
            return Some((NodeState::Terminating, Some(reason)));
        }
        (CloudStatus::Running, Some(BootstrapStatus::Running { .. })) => NodeState::Bootstrapping,
        (CloudStatus::Running, Some(BootstrapStatus::Done)) => NodeState::Connecting,
        (CloudStatus::Running, None) => {
            if inst.private_ip.is_some() && now_ms < deadline_ms {
                restart_agent(id, deadline_ms, chores);
            }
            NodeState::Running
        }
        _ => NodeState::Pending,
    };
    if now_ms >= deadline_ms {
        chores.retain(|c| !matches!(c, Chore::RestartAgent { instance_id, .. } if instance_id == id));
        let reason = format!("launch-timeout: still {} {}s after it was started", state.as_str(), now_ms.saturating_sub(since_ms) / 1000);
        chores.push(Chore::Terminate { instance_id: id.into(), reason: reason.clone() });
        return Some((NodeState::Terminating, Some(reason)));
    }
    Some((state, None))
}

/// How a started instance gets its agent back: over SSH, with the same bootstrap as a launch
/// (its init script marker keeps the init script from running again).
///
/// Hook for user-data launch: an instance launched with user data restarts its agent on boot by
/// itself, so for such a template this pushes nothing and the node waits in `running` until
/// its agent connects (or the launch timeout).
fn restart_agent(instance_id: &str, deadline_ms: u64, chores: &mut Vec<Chore>) {
    chores.push(Chore::RestartAgent { instance_id: instance_id.into(), deadline_ms });
}

/// Deletes the stopped nodes a template keeps beyond its `max-stopped` (0 when its idle action
/// is `delete`), oldest instances first.
pub(crate) fn cap_stopped(nodes: &mut [Node], templates: &[TemplateLimits], chores: &mut Vec<Chore>) {
    let mut stopped: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate().filter(|(_, n)| n.state == NodeState::Stopped) {
        stopped.entry(n.instance.template.as_str()).or_default().push(i);
    }
    let mut over = Vec::new();
    for (template, mut idx) in stopped {
        let max = templates.iter().find(|t| t.name == template).map_or(0, |t| t.max_stopped) as usize;
        if idx.len() <= max {
            continue;
        }
        idx.sort_by_key(|&i| (nodes[i].instance.created_ms, nodes[i].instance.instance_id.clone()));
        over.extend(idx[..idx.len() - max].iter().map(|&i| (i, max)));
    }
    for (i, max) in over {
        let reason = format!("more stopped instances than max-stopped {max}");
        let n = &mut nodes[i];
        chores.retain(|c| !matches!(c, Chore::Stop { instance_id } if instance_id == n.instance_id()));
        chores.push(Chore::Terminate { instance_id: n.instance_id().to_owned(), reason: reason.clone() });
        n.state = NodeState::Terminating;
        n.failure = Some(reason);
    }
}

/// A stop that the cloud accepted but the listing still shows running is sent again only
/// after this long (ms).
pub const STOP_RETRY_MS: u64 = 60_000;

/// Whether a stop this process sent may still be on its way (the view shows `Running`).
fn stop_in_flight(book: &Book, instance_id: &str, now_ms: u64) -> bool {
    book.stops_sent.get(instance_id).is_some_and(|t| now_ms.saturating_sub(*t) < STOP_RETRY_MS)
}

/// Whether the listing may still show a just-started instance as stopped.
pub(crate) fn start_in_flight(book: &Book, instance_id: &str, now_ms: u64) -> bool {
    book.starting.get(instance_id).is_some_and(|t| now_ms.saturating_sub(*t) < LISTING_GRACE_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::reconcile;
    use crate::model::node_name;

    const MIN: u64 = 60_000;

    fn tpl(max_stopped: u32) -> Vec<TemplateLimits> {
        vec![TemplateLimits {
            name: "linux".into(),
            min_nodes: 0,
            max_nodes: 10,
            launch_timeout_ms: 10 * MIN,
            reconnect_timeout_ms: 2 * MIN,
            max_uses: 0,
            max_stopped,
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
    fn marked(id: &str, reason: &str, online: bool) -> AgentNode {
        AgentNode {
            name: node_name("linux", id),
            online,
            temporarily_offline: true,
            offline_reason: Some(reason.into()),
            executors: 1,
            ..Default::default()
        }
    }

    #[test]
    fn a_stopped_node_waits_and_is_not_capacity() {
        let (nodes, chores) =
            reconcile(&[inst("i-1", CloudStatus::Stopped, 0)], &[marked("i-1", &stopped_reason("idle"), false)], &Book::default(), &tpl(2), MIN);
        assert_eq!((nodes[0].state, chores.len()), (NodeState::Stopped, 0));
        assert!(nodes[0].state.unusable() && !nodes[0].state.in_flight());
    }

    #[test]
    fn a_stopped_instance_of_an_older_template_is_deleted_not_kept() {
        let mut old = inst("i-1", CloudStatus::Stopped, 0);
        old.fingerprint = Some("older".into());
        let (nodes, chores) = reconcile(&[old], &[marked("i-1", &stopped_reason("idle"), false)], &Book::default(), &tpl(2), MIN);
        assert_eq!(nodes[0].state, NodeState::Terminating);
        assert!(matches!(&chores[..], [Chore::Terminate { reason, .. }] if reason.contains("template or image changed")), "{chores:?}");
    }

    #[test]
    fn a_stop_never_sent_is_sent_again() {
        let (nodes, chores) =
            reconcile(&[inst("i-1", CloudStatus::Running, 0)], &[marked("i-1", &stopped_reason("idle"), true)], &Book::default(), &tpl(2), MIN);
        assert_eq!(nodes[0].state, NodeState::Stopped);
        assert_eq!(chores, vec![Chore::Stop { instance_id: "i-1".into() }]);
    }

    #[test]
    fn a_stop_just_sent_is_not_sent_again_while_the_view_still_shows_running() {
        let running = [inst("i-1", CloudStatus::Running, 0)];
        let agents = [marked("i-1", &stopped_reason("idle"), false)];
        let mut book = Book::default();
        book.stops_sent.insert("i-1".into(), MIN);
        let (nodes, chores) = reconcile(&running, &agents, &book, &tpl(2), MIN + 1_000);
        assert_eq!((nodes[0].state, chores.len()), (NodeState::Stopped, 0), "{chores:?}");
        // Accepted but never carried out: sent again once the retry interval has passed.
        let (_, chores) = reconcile(&running, &agents, &book, &tpl(2), MIN + STOP_RETRY_MS);
        assert_eq!(chores, vec![Chore::Stop { instance_id: "i-1".into() }]);
    }

    #[test]
    fn a_started_instance_gets_its_agent_back_within_the_launch_timeout_from_the_start() {
        // Launched long ago: its age is no launch timeout; the start time is.
        let since = 100 * MIN;
        let agent = marked("i-1", &starting_reason(since), false);
        let running = [inst("i-1", CloudStatus::Running, 0)];
        let (nodes, chores) = reconcile(&running, std::slice::from_ref(&agent), &Book::default(), &tpl(2), since + MIN);
        assert_eq!(nodes[0].state, NodeState::Running);
        assert_eq!(chores, vec![Chore::RestartAgent { instance_id: "i-1".into(), deadline_ms: since + 10 * MIN }]);
        let (nodes, _) = reconcile(&[inst("i-1", CloudStatus::Starting, 0)], std::slice::from_ref(&agent), &Book::default(), &tpl(2), since + MIN);
        assert_eq!(nodes[0].state, NodeState::Pending);
        // Online again: put back online in Jenkins.
        let online = AgentNode { online: true, ..agent.clone() };
        let (nodes, chores) = reconcile(&running, &[online], &Book::default(), &tpl(2), since + MIN);
        assert_eq!((nodes[0].state, chores), (NodeState::Online, vec![Chore::Unfence { instance_id: "i-1".into() }]));
        // Past the launch timeout counted from the start: terminated.
        let (nodes, chores) = reconcile(&running, &[agent], &Book::default(), &tpl(2), since + 10 * MIN);
        assert_eq!(nodes[0].state, NodeState::Terminating);
        assert!(matches!(&chores[..], [Chore::Terminate { reason, .. }] if reason.starts_with("launch-timeout")), "{chores:?}");
    }

    #[test]
    fn a_start_that_did_not_happen_leaves_the_node_stopped() {
        let agent = marked("i-1", &starting_reason(MIN), false);
        let stopped = [inst("i-1", CloudStatus::Stopped, 0)];
        assert_eq!(reconcile(&stopped, std::slice::from_ref(&agent), &Book::default(), &tpl(2), 2 * MIN).0[0].state, NodeState::Stopped);
        // Started by this process a moment ago: the listing lags.
        let mut book = Book::default();
        book.starting.insert("i-1".into(), MIN);
        assert_eq!(reconcile(&stopped, &[agent], &book, &tpl(2), MIN + 1000).0[0].state, NodeState::Pending);
    }

    #[test]
    fn stopped_nodes_beyond_max_stopped_are_deleted_oldest_first() {
        let instances: Vec<_> = (1..=3).map(|i| inst(&format!("i-{i}"), CloudStatus::Stopped, i * MIN)).collect();
        let agents: Vec<_> = (1..=3).map(|i| marked(&format!("i-{i}"), &stopped_reason("idle"), false)).collect();
        let (nodes, chores) = reconcile(&instances, &agents, &Book::default(), &tpl(2), 10 * MIN);
        let states: Vec<_> = nodes.iter().map(|n| n.state).collect();
        assert_eq!(states, [NodeState::Terminating, NodeState::Stopped, NodeState::Stopped]);
        assert_eq!(chores, vec![Chore::Terminate { instance_id: "i-1".into(), reason: "more stopped instances than max-stopped 2".into() }]);
        // idle-action = "delete" (max 0): none is kept.
        assert_eq!(reconcile(&instances, &agents, &Book::default(), &tpl(0), 10 * MIN).1.len(), 3);
    }

    #[test]
    fn marks_are_read_only_from_nodes_marked_offline() {
        assert_eq!(mark_of(&marked("i-1", &starting_reason(42), false)), Some(Mark::Starting(Some(42))));
        assert_eq!(mark_of(&marked("i-1", "ecs-provisioner: starting since soon", false)), Some(Mark::Starting(None)));
        assert_eq!(mark_of(&marked("i-1", "disk space is too low", false)), None);
        let unmarked = AgentNode { temporarily_offline: false, ..marked("i-1", &stopped_reason("idle"), true) };
        assert_eq!(mark_of(&unmarked), None);
    }

    #[test]
    fn a_reclaim_notice_on_a_warm_pool_node_is_left_to_the_ordinary_rules() {
        let mut noticed = inst("i-1", CloudStatus::Running, 0);
        noticed.locks = vec![LOCK_RECYCLING.into()];
        let agents = [marked("i-1", &stopped_reason("idle"), true)];
        let (nodes, chores) = reconcile(&[noticed.clone()], &agents, &Book::default(), &tpl(2), MIN);
        assert_eq!((nodes[0].state, chores), (NodeState::Interrupted, vec![]), "fenced already by its mark: nothing to stop");
        // Any other lock changes nothing: the mark's stop is sent again.
        noticed.locks = vec!["financial".into()];
        let (nodes, chores) = reconcile(&[noticed], &agents, &Book::default(), &tpl(2), MIN);
        assert_eq!((nodes[0].state, chores), (NodeState::Stopped, vec![Chore::Stop { instance_id: "i-1".into() }]));
    }

    #[test]
    fn a_node_drained_for_its_stop_is_draining_until_its_instance_goes_down_then_stopped() {
        let agents = [marked("i-1", &stopped_reason("idle"), true)];
        let mut book = Book::default();
        book.draining.insert("i-1".into());
        let (nodes, chores) = reconcile(&[inst("i-1", CloudStatus::Running, 0)], &agents, &book, &tpl(2), MIN);
        assert_eq!((nodes[0].state, chores), (NodeState::Draining, vec![]), "the drain sends the stop, not a chore");
        let (nodes, chores) = reconcile(&[inst("i-1", CloudStatus::Stopping, 0)], &agents, &book, &tpl(2), MIN);
        assert_eq!((nodes[0].state, chores), (NodeState::Stopped, vec![]));
    }

    #[test]
    fn a_started_instance_follows_its_agent_restart_and_a_failed_restart_replaces_it() {
        let since = 100 * MIN;
        let agents = [marked("i-1", &starting_reason(since), false)];
        let running = [inst("i-1", CloudStatus::Running, 0)];
        let with = |status: BootstrapStatus| {
            let mut book = Book::default();
            book.bootstraps.insert("i-1".into(), status);
            let (nodes, chores) = reconcile(&running, &agents, &book, &tpl(2), since + MIN);
            (nodes[0].state, nodes[0].failure.clone(), chores)
        };
        assert_eq!(with(BootstrapStatus::Running { run: 1 }), (NodeState::Bootstrapping, None, vec![]));
        assert_eq!(with(BootstrapStatus::Done), (NodeState::Connecting, None, vec![]));
        let reason = "agent restart after start failed: no route".to_owned();
        assert_eq!(
            with(BootstrapStatus::Failed("no route".into())),
            (NodeState::Terminating, Some(reason.clone()), vec![Chore::Terminate { instance_id: "i-1".into(), reason }])
        );
        // No address yet: nothing to connect to, it waits.
        let no_ip = CloudInstance { private_ip: None, ..running[0].clone() };
        let (nodes, chores) = reconcile(&[no_ip], &agents, &Book::default(), &tpl(2), since + MIN);
        assert_eq!((nodes[0].state, chores), (NodeState::Running, vec![]));
    }

    #[test]
    fn a_start_past_its_launch_timeout_leaves_the_other_nodes_chores_alone() {
        let since = 100 * MIN;
        let instances = [inst("i-1", CloudStatus::Running, 0), inst("i-2", CloudStatus::Running, 0)];
        let agents = [marked("i-1", &stopped_reason("idle"), true), marked("i-2", &starting_reason(since), false)];
        let (nodes, chores) = reconcile(&instances, &agents, &Book::default(), &tpl(2), since + 10 * MIN);
        assert_eq!(nodes.iter().map(|n| n.state).collect::<Vec<_>>(), [NodeState::Stopped, NodeState::Terminating]);
        assert_eq!(
            chores,
            vec![
                Chore::Stop { instance_id: "i-1".into() },
                Chore::Terminate { instance_id: "i-2".into(), reason: "launch-timeout: still running 600s after it was started".into() },
            ]
        );
    }

    #[test]
    fn a_start_is_no_longer_waited_for_once_the_listing_grace_has_passed() {
        let agent = marked("i-1", &starting_reason(MIN), false);
        let stopped = [inst("i-1", CloudStatus::Stopped, 0)];
        let mut book = Book::default();
        book.starting.insert("i-1".into(), MIN);
        let state_at = |now| reconcile(&stopped, std::slice::from_ref(&agent), &book, &tpl(2), now).0[0].state;
        assert_eq!(state_at(MIN + LISTING_GRACE_MS - 1), NodeState::Pending);
        assert_eq!(state_at(MIN + LISTING_GRACE_MS), NodeState::Stopped);
    }
}
