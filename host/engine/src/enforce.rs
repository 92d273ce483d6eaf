//! The hard invariants no policy can break.
//!
//! `enforce` takes the policy's plan and the observed fleet and returns the plan the host will
//! act on, plus every change it made. Caps count every node that exists or is in flight, so a
//! cap can never be exceeded by concurrent cycles or slow launches.

use std::collections::{BTreeMap, BTreeSet};

use super::lifecycle::LaunchHold;
use super::model::{Clamp, Node, NodeState, Plan, PlannedLaunch, TemplateLimits};

/// The limits a plan is checked against.
#[derive(Debug, Clone)]
pub struct Limits<'a> {
    /// Per-template limits.
    pub templates: &'a [TemplateLimits],
    /// Nodes allowed across all templates at once.
    pub max_total_nodes: u32,
    /// Nodes that may be launched in one cycle.
    pub max_launch_per_cycle: u32,
    /// Templates whose launches are held (failed bootstraps), and the time now.
    pub holds: &'a BTreeMap<String, LaunchHold>,
    /// Host clock, ms since the Unix epoch.
    pub now_ms: u64,
}

/// The plan the host will carry out, and what was changed to get there.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Enforced {
    /// The plan to carry out.
    pub plan: Plan,
    /// What was changed, and why.
    pub clamps: Vec<Clamp>,
}

/// Applies every invariant to `plan`.
pub fn enforce(plan: &Plan, nodes: &[Node], limits: &Limits<'_>) -> Enforced {
    let mut clamps = Vec::new();
    let by_id: BTreeMap<&str, &Node> = nodes.iter().map(|n| (n.instance_id(), n)).collect();

    // Nodes that count against caps, per template and in total. Terminating nodes are going
    // away but still exist; counting them too keeps the cap honest while deletes settle.
    // Stopped nodes are the exception: no capacity, capped apart by `max-stopped`; starting
    // one makes it count again, within the room a launch finds here.
    let mut count: BTreeMap<&str, u32> = BTreeMap::new();
    let capped = || nodes.iter().filter(|n| n.state != NodeState::Stopped);
    for n in capped() {
        *count.entry(n.template()).or_default() += 1;
    }
    let mut total: u32 = capped().count() as u32;

    // Removals first: they free no capacity this cycle (the instance is still there), but they
    // must not take a template below its minimum.
    let mut removals = Vec::new();
    let mut seen = BTreeSet::new();
    let mut remaining: BTreeMap<&str, u32> = BTreeMap::new();
    // Usable nodes only: removing an offline, disconnected or reclaimed node takes nothing
    // away from the minimum the template keeps ready.
    for n in nodes.iter().filter(|n| !n.state.unusable()) {
        *remaining.entry(n.template()).or_default() += 1;
    }
    for r in &plan.removals {
        if !seen.insert(r.instance_id.as_str()) {
            clamps.push(clamp("duplicate", format!("removal of {} listed twice", r.instance_id)));
            continue;
        }
        let Some(node) = by_id.get(r.instance_id.as_str()) else {
            clamps.push(clamp("unknown-node", format!("removal of {}: no such node of ours", r.instance_id)));
            continue;
        };
        if matches!(node.state, NodeState::Draining | NodeState::Terminating) {
            clamps.push(clamp("duplicate", format!("{} is already being removed", r.instance_id)));
            continue;
        }
        if node.busy() {
            clamps.push(clamp("busy-node", format!("{} is running a build; kept", r.instance_id)));
            continue;
        }
        if node.state.unusable() {
            removals.push(r.clone());
            continue;
        }
        let min = limits.templates.iter().find(|t| t.name == node.template()).map_or(0, |t| t.min_nodes);
        let left = remaining.entry(node.template()).or_default();
        if *left <= min {
            clamps.push(clamp(
                "min-nodes",
                format!("{}: template {} would fall below min-nodes {min}; kept", r.instance_id, node.template()),
            ));
            continue;
        }
        *left -= 1;
        removals.push(r.clone());
    }

    // Launches: known templates only, each within its own max, all within the total and the
    // per-cycle bound. Earlier templates (configuration order = preference) are served first.
    let mut launches = Vec::new();
    let mut budget = limits.max_launch_per_cycle;
    let mut merged: Vec<PlannedLaunch> = Vec::new();
    for l in &plan.launches {
        if l.count == 0 {
            continue;
        }
        match merged.iter_mut().find(|m| m.template == l.template) {
            Some(m) => {
                clamps.push(clamp("duplicate", format!("template {} launched twice; counts added", l.template)));
                m.count = m.count.saturating_add(l.count);
            }
            None => merged.push(l.clone()),
        }
    }
    for t in limits.templates {
        let Some(l) = merged.iter().find(|l| l.template == t.name) else { continue };
        if let Some(h) = limits.holds.get(&t.name).filter(|h| h.until_ms > limits.now_ms) {
            clamps.push(clamp(
                "launch-hold",
                format!(
                    "{}: {} asked, held for {}s more: {} bootstrap(s) failed in a row ({}: {})",
                    t.name,
                    l.count,
                    (h.until_ms - limits.now_ms).div_ceil(1000),
                    h.failures,
                    h.cause,
                    h.last_error
                ),
            ));
            continue;
        }
        let have = count.get(t.name.as_str()).copied().unwrap_or(0);
        let mut n = l.count;
        let room = t.max_nodes.saturating_sub(have);
        if n > room {
            clamps.push(clamp("template-max", format!("{}: {n} asked, {have} of max {} exist; {room} allowed", t.name, t.max_nodes)));
            n = room;
        }
        let room = limits.max_total_nodes.saturating_sub(total);
        if n > room {
            clamps.push(clamp("total-max", format!("{}: {n} asked, {total} of max-total-nodes {} exist; {room} allowed", t.name, limits.max_total_nodes)));
            n = room;
        }
        if n > budget {
            clamps.push(clamp("per-cycle", format!("{}: {n} asked, {budget} launches left this cycle", t.name)));
            n = budget;
        }
        if n > 0 {
            budget -= n;
            total += n;
            launches.push(PlannedLaunch { template: l.template.clone(), count: n, reason: l.reason.clone() });
        }
    }
    for l in &merged {
        if !limits.templates.iter().any(|t| t.name == l.template) {
            clamps.push(clamp("unknown-template", format!("launch for unknown template {:?} dropped", l.template)));
        }
    }
    Enforced { plan: Plan { launches, removals }, clamps }
}

fn clamp(rule: &'static str, detail: String) -> Clamp {
    Clamp { rule, detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AgentNode, CloudInstance, CloudStatus, PlannedRemoval};

    fn no_holds() -> BTreeMap<String, LaunchHold> {
        BTreeMap::new()
    }
    fn tpl(name: &str, min: u32, max: u32) -> TemplateLimits {
        TemplateLimits { name: name.into(), min_nodes: min, max_nodes: max, launch_timeout_ms: 600_000, reconnect_timeout_ms: 300_000, max_uses: 0, max_stopped: 0, fingerprint: String::new(), user_data: false }
    }
    fn node(id: &str, template: &str, state: NodeState, busy: u32) -> Node {
        Node {
            instance: CloudInstance {
                instance_id: id.into(),
                template: template.into(),
                zone: "z".into(),
                vswitch: "v".into(),
                instance_type: "t".into(),
                spot: false,
                status: CloudStatus::Running,
                private_ip: None,
                created_ms: Some(0),
                locks: Vec::new(),
                fingerprint: None,
                node: None,
            },
            agent: Some(AgentNode { busy_executors: busy, executors: 2, online: true, ..Default::default() }),
            state,
            failure: None,
        }
    }
    fn launch(t: &str, n: u32) -> PlannedLaunch {
        PlannedLaunch { template: t.into(), count: n, reason: "test".into() }
    }
    fn removal(id: &str) -> PlannedRemoval {
        PlannedRemoval { instance_id: id.into(), reason: "test".into() }
    }

    #[test]
    fn template_max_counts_nodes_in_flight() {
        let templates = [tpl("a", 0, 5)];
        let nodes = [node("i-1", "a", NodeState::Pending, 0), node("i-2", "a", NodeState::Requested, 0), node("i-3", "a", NodeState::Online, 1)];
        let limits = Limits { templates: &templates, max_total_nodes: 100, max_launch_per_cycle: 100, holds: &no_holds(), now_ms: 0 };
        let out = enforce(&Plan { launches: vec![launch("a", 10)], removals: vec![] }, &nodes, &limits);
        assert_eq!(out.plan.launches, vec![launch("a", 2)]);
        assert_eq!(out.clamps[0].rule, "template-max");
    }

    #[test]
    fn stopped_nodes_count_against_no_cap_and_can_be_removed() {
        let templates = [tpl("a", 1, 2)];
        let nodes = [node("i-1", "a", NodeState::Online, 0), node("i-2", "a", NodeState::Stopped, 0), node("i-3", "a", NodeState::Stopped, 0)];
        let limits = Limits { templates: &templates, max_total_nodes: 2, max_launch_per_cycle: 100, holds: &no_holds(), now_ms: 0 };
        let out = enforce(&Plan { launches: vec![launch("a", 5)], removals: vec![removal("i-2")] }, &nodes, &limits);
        // One running: room for one more under max-nodes 2 and max-total-nodes 2.
        assert_eq!(out.plan.launches, vec![launch("a", 1)]);
        // Not capacity: deleting it takes nothing from min-nodes 1.
        assert_eq!(out.plan.removals, vec![removal("i-2")]);
    }

    #[test]
    fn total_and_per_cycle_bounds_apply_in_template_order() {
        let templates = [tpl("a", 0, 50), tpl("b", 0, 50)];
        let limits = Limits { templates: &templates, max_total_nodes: 30, max_launch_per_cycle: 25, holds: &no_holds(), now_ms: 0 };
        let out = enforce(&Plan { launches: vec![launch("b", 20), launch("a", 20)], removals: vec![] }, &[], &limits);
        assert_eq!(out.plan.launches, vec![launch("a", 20), launch("b", 5)]);
        assert_eq!(out.clamps.iter().map(|c| c.rule).collect::<Vec<_>>(), vec!["total-max", "per-cycle"]);
        let limits = Limits { templates: &templates, max_total_nodes: 30, max_launch_per_cycle: 100, holds: &no_holds(), now_ms: 0 };
        let out = enforce(&Plan { launches: vec![launch("a", 20), launch("b", 20)], removals: vec![] }, &[], &limits);
        assert_eq!(out.plan.launches, vec![launch("a", 20), launch("b", 10)]);
        assert_eq!(out.clamps[0].rule, "total-max");
    }

    #[test]
    fn busy_unknown_and_below_minimum_removals_are_refused() {
        let templates = [tpl("a", 1, 5)];
        let nodes = [node("i-busy", "a", NodeState::Online, 1), node("i-idle1", "a", NodeState::Online, 0), node("i-idle2", "a", NodeState::Online, 0)];
        let limits = Limits { templates: &templates, max_total_nodes: 100, max_launch_per_cycle: 100, holds: &no_holds(), now_ms: 0 };
        let plan = Plan { launches: vec![], removals: vec![removal("i-busy"), removal("i-nope"), removal("i-idle1"), removal("i-idle2"), removal("i-idle1")] };
        let out = enforce(&plan, &nodes, &limits);
        // 3 nodes, min 1: two idle ones may go, the busy one stays.
        assert_eq!(out.plan.removals, vec![removal("i-idle1"), removal("i-idle2")]);
        let rules: Vec<_> = out.clamps.iter().map(|c| c.rule).collect();
        assert_eq!(rules, vec!["busy-node", "unknown-node", "duplicate"]);

        let nodes = [node("i-idle1", "a", NodeState::Online, 0)];
        let out = enforce(&Plan { launches: vec![], removals: vec![removal("i-idle1")] }, &nodes, &limits);
        assert!(out.plan.removals.is_empty());
        assert_eq!(out.clamps[0].rule, "min-nodes");
    }

    #[test]
    fn unknown_templates_and_duplicates_are_reported() {
        let templates = [tpl("a", 0, 10)];
        let limits = Limits { templates: &templates, max_total_nodes: 100, max_launch_per_cycle: 100, holds: &no_holds(), now_ms: 0 };
        let out = enforce(&Plan { launches: vec![launch("zzz", 3), launch("a", 2), launch("a", 1)], removals: vec![] }, &[], &limits);
        assert_eq!(out.plan.launches, vec![launch("a", 3)]);
        let rules: Vec<_> = out.clamps.iter().map(|c| c.rule).collect();
        assert_eq!(rules, vec!["duplicate", "unknown-template"]);
        assert!(out.clamps[1].detail.contains("\"zzz\""), "the unknown one is named: {:?}", out.clamps);
    }

    #[test]
    fn held_templates_launch_nothing_until_the_hold_ends() {
        let templates = [tpl("a", 0, 10), tpl("b", 0, 10)];
        let mut holds = no_holds();
        holds.insert(
            "a".into(),
            LaunchHold { failures: 3, until_ms: 20_000, cause: "host-key", last_error: "mismatch".into() },
        );
        let plan = Plan { launches: vec![launch("a", 2), launch("b", 1)], removals: vec![] };
        let limits = Limits { templates: &templates, max_total_nodes: 100, max_launch_per_cycle: 100, holds: &holds, now_ms: 10_000 };
        let out = enforce(&plan, &[], &limits);
        assert_eq!(out.plan.launches, vec![launch("b", 1)]);
        assert_eq!(out.clamps.len(), 1);
        assert_eq!(out.clamps[0].rule, "launch-hold");
        assert!(out.clamps[0].detail.contains("held for 10s more: 3 bootstrap(s) failed in a row (host-key: mismatch)"), "{:?}", out.clamps);
        let later = Limits { now_ms: 20_000, ..limits };
        assert_eq!(enforce(&plan, &[], &later).plan.launches, vec![launch("a", 2), launch("b", 1)]);
    }

    #[test]
    fn unusable_nodes_do_not_hold_up_the_minimum() {
        // min 2: two usable nodes stay; the offline and the disconnected one may go.
        let templates = [tpl("a", 2, 10)];
        let nodes = [
            node("i-1", "a", NodeState::Online, 0),
            node("i-2", "a", NodeState::Online, 0),
            node("i-3", "a", NodeState::Offline, 0),
            node("i-4", "a", NodeState::Disconnected, 0),
            node("i-5", "a", NodeState::Interrupted, 1),
        ];
        let limits = Limits { templates: &templates, max_total_nodes: 100, max_launch_per_cycle: 100, holds: &no_holds(), now_ms: 0 };
        let plan = Plan { launches: vec![], removals: ["i-1", "i-3", "i-4", "i-5"].map(removal).to_vec() };
        let out = enforce(&plan, &nodes, &limits);
        let removed: Vec<&str> = out.plan.removals.iter().map(|r| r.instance_id.as_str()).collect();
        assert_eq!(removed, ["i-3", "i-4"]);
        let rules: Vec<&str> = out.clamps.iter().map(|c| c.rule).collect();
        assert_eq!(rules, ["min-nodes", "busy-node"]);
    }

    #[test]
    fn nodes_being_removed_still_count_against_every_cap() {
        // Draining and terminating nodes still exist (and cost money) until the cloud has deleted
        // them: a cap that forgot them would launch replacements past it while deletes settle.
        let templates = [tpl("a", 0, 3), tpl("b", 0, 10)];
        let nodes = [
            node("i-1", "a", NodeState::Draining, 0),
            node("i-2", "a", NodeState::Terminating, 0),
            node("i-3", "a", NodeState::Online, 0),
            node("i-4", "b", NodeState::Terminating, 0),
            node("i-5", "b", NodeState::Draining, 0),
        ];
        let limits = Limits { templates: &templates, max_total_nodes: 6, max_launch_per_cycle: 100, holds: &no_holds(), now_ms: 0 };
        let out = enforce(&Plan { launches: vec![launch("a", 2), launch("b", 5)], removals: vec![] }, &nodes, &limits);
        // a: 3 of max 3 exist. b: 2 exist, but 5 of max-total 6 do: one more.
        assert_eq!(out.plan.launches, vec![launch("b", 1)]);
        let rules: Vec<&str> = out.clamps.iter().map(|c| c.rule).collect();
        assert_eq!(rules, ["template-max", "total-max"]);
        assert!(out.clamps[0].detail.contains("3 of max 3 exist"), "{:?}", out.clamps);
        assert!(out.clamps[1].detail.contains("5 of max-total-nodes 6"), "{:?}", out.clamps);
    }

    #[test]
    fn nodes_already_being_removed_are_not_removed_again() {
        let templates = [tpl("a", 0, 5)];
        let nodes = [node("i-1", "a", NodeState::Draining, 0), node("i-2", "a", NodeState::Terminating, 0)];
        let limits = Limits { templates: &templates, max_total_nodes: 100, max_launch_per_cycle: 100, holds: &no_holds(), now_ms: 0 };
        let out = enforce(&Plan { launches: vec![], removals: vec![removal("i-1"), removal("i-2")] }, &nodes, &limits);
        assert!(out.plan.removals.is_empty());
        assert_eq!(out.clamps.iter().map(|c| c.rule).collect::<Vec<_>>(), ["duplicate", "duplicate"]);
        assert!(out.clamps[0].detail.contains("already being removed"), "{:?}", out.clamps);
    }

    #[test]
    fn a_plan_that_exactly_fills_every_cap_is_carried_out_unclamped() {
        let templates = [tpl("a", 0, 3), tpl("b", 0, 10)];
        let nodes = [node("i-1", "a", NodeState::Online, 0)];
        // a: 1 + 2 = its max 3; total 1 + 2 + 3 = 6; 5 launches = the per-cycle bound.
        let limits = Limits { templates: &templates, max_total_nodes: 6, max_launch_per_cycle: 5, holds: &no_holds(), now_ms: 0 };
        let out = enforce(&Plan { launches: vec![launch("a", 2), launch("b", 3)], removals: vec![] }, &nodes, &limits);
        assert_eq!(out.plan.launches, vec![launch("a", 2), launch("b", 3)]);
        assert!(out.clamps.is_empty(), "{:?}", out.clamps);
    }

    #[test]
    fn removals_stop_at_the_minimum_however_many_are_asked() {
        let templates = [tpl("a", 2, 10)];
        let nodes = ["i-1", "i-2", "i-3", "i-4"].map(|id| node(id, "a", NodeState::Online, 0));
        let limits = Limits { templates: &templates, max_total_nodes: 100, max_launch_per_cycle: 100, holds: &no_holds(), now_ms: 0 };
        let plan = Plan { launches: vec![], removals: ["i-1", "i-2", "i-3", "i-4"].map(removal).to_vec() };
        let out = enforce(&plan, &nodes, &limits);
        assert_eq!(out.plan.removals, vec![removal("i-1"), removal("i-2")]);
        assert_eq!(out.clamps.iter().map(|c| c.rule).collect::<Vec<_>>(), ["min-nodes", "min-nodes"]);
    }

    #[test]
    fn a_busy_node_of_a_retired_template_is_never_removed() {
        // No template, no minimum: only the build protects it, and it must.
        let templates = [tpl("a", 0, 5)];
        let nodes = [node("i-busy", "retired", NodeState::Online, 1), node("i-idle", "retired", NodeState::Online, 0)];
        let limits = Limits { templates: &templates, max_total_nodes: 100, max_launch_per_cycle: 100, holds: &no_holds(), now_ms: 0 };
        let out = enforce(&Plan { launches: vec![], removals: vec![removal("i-busy"), removal("i-idle")] }, &nodes, &limits);
        assert_eq!(out.plan.removals, vec![removal("i-idle")]);
        assert_eq!(out.clamps.iter().map(|c| c.rule).collect::<Vec<_>>(), ["busy-node"]);
    }
}
