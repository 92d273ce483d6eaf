//! Demand-driven scaling: the default `scale`.

use std::collections::BTreeMap;

use super::fmt;
use crate::types::{Launch, Node, NodeState, Removal, ScalePlan, Snapshot, Template};

/// Knobs for [`scale_with`]. `ScaleOptions::default()` is exactly [`scale`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScaleOptions {
    /// Extra warm pool per template name: the template keeps at least
    /// `max(min-nodes, warm_nodes[name])` live nodes. Names of unknown templates are ignored.
    pub warm_nodes: BTreeMap<String, u32>,
}

/// The default scaling decision; see [`scale_with`] for the rules.
pub fn scale(snapshot: &Snapshot) -> ScalePlan {
    scale_with(snapshot, &ScaleOptions::default())
}

/// Demand-driven scaling, per template in configuration order.
///
/// **Launches.** In-flight capacity is the executors of nodes still requested, pending,
/// running, bootstrapping or connecting; idle executors are the free executors of online
/// nodes that have not reached max uses. The template needs
/// `ceil((queued - idle - in flight) / executors)` nodes for its demand, and at least enough to
/// bring its live nodes (in flight or online, not retiring) up to its floor (`min-nodes`, or a
/// larger warm pool from `options`). The launch is capped by `max-nodes` minus the template's
/// nodes (all but terminating ones) and by `max-total-nodes` minus all nodes and the launches
/// already planned for earlier templates.
///
/// **Removals.** Idle online nodes that reached `max-uses` are retired. Idle online nodes
/// idle for at least `idle-timeout-secs` are removed longest-idle first, never taking the
/// live count below the floor, and keeping enough idle nodes to serve the template's queued
/// builds. Nodes that serve no build are not live, so they never hold the floor up: an idle
/// `interrupted` node (spot reclaim notice) is removed at once, and an idle `offline` node
/// (marked offline by an administrator or a Jenkins monitor) once it has been idle for
/// `idle-timeout-secs`. A busy node is never removed.
///
/// Every launch and removal carries its reason.
pub fn scale_with(snapshot: &Snapshot, options: &ScaleOptions) -> ScalePlan {
    let mut plan = ScalePlan::empty();
    let mut total_room = snapshot
        .max_total_nodes
        .saturating_sub(count(&snapshot.nodes, |n| {
            n.state.occupies()
        }));
    for template in &snapshot.templates {
        let floor = options
            .warm_nodes
            .get(&template.name)
            .map_or(template.min_nodes, |&warm| warm.max(template.min_nodes));
        let counts = Counts::of(snapshot, template);
        if let Some(launch) = launch(
            template,
            &counts,
            floor,
            total_room,
            snapshot.max_total_nodes,
        ) {
            total_room -= launch.count;
            plan.launches.push(launch);
        }
        plan.removals
            .extend(removals(snapshot, template, &counts, floor));
    }
    plan
}

/// What one template's nodes add up to right now.
struct Counts {
    executors: u32,
    queued: u32,
    /// Nodes in any state but terminating or stopped: what `max-nodes` counts.
    occupying: u32,
    /// In flight or online, minus idle used-up nodes about to be retired.
    live: u32,
    in_flight_executors: u64,
    idle_executors: u64,
}

impl Counts {
    fn of(snapshot: &Snapshot, template: &Template) -> Self {
        // A template with 0 executors is a configuration error; count it as 1 rather than
        // divide by zero.
        let executors = template.executors.max(1);
        let nodes: Vec<&Node> = snapshot.nodes_of(&template.name).collect();
        let retiring = nodes.iter().filter(|n| retires(n, template)).count() as u32;
        let in_flight = nodes.iter().filter(|n| n.state.is_in_flight()).count() as u64;
        let idle_executors = nodes
            .iter()
            .filter(|n| n.state == NodeState::Online && !n.used_up(template.max_uses))
            .map(|n| u64::from(executors.saturating_sub(n.busy_executors)))
            .sum();
        Counts {
            executors,
            queued: snapshot.queued_for(&template.name),
            occupying: nodes
                .iter()
                .filter(|n| n.state.occupies())
                .count() as u32,
            live: (nodes.iter().filter(|n| n.is_live()).count() as u32).saturating_sub(retiring),
            in_flight_executors: in_flight * u64::from(executors),
            idle_executors,
        }
    }
}

fn count(nodes: &[Node], pred: impl Fn(&Node) -> bool) -> u32 {
    nodes.iter().filter(|n| pred(n)).count() as u32
}

/// Idle, online, and out of uses: due for retirement.
fn retires(node: &Node, template: &Template) -> bool {
    node.is_idle() && node.used_up(template.max_uses)
}

fn launch(t: &Template, c: &Counts, floor: u32, total_room: u32, max_total: u32) -> Option<Launch> {
    let covered = c.idle_executors + c.in_flight_executors;
    let uncovered = u64::from(c.queued).saturating_sub(covered);
    let for_demand = uncovered
        .div_ceil(u64::from(c.executors))
        .min(u64::from(u32::MAX)) as u32;
    let for_floor = floor.saturating_sub(c.live);
    let wanted = for_demand.max(for_floor);
    let room = t.max_nodes.saturating_sub(c.occupying);
    let count = wanted.min(room).min(total_room);
    if count == 0 {
        return None;
    }
    let mut why = Vec::new();
    if for_demand > 0 {
        why.push(format!(
            "{} queued, {}, {} in flight",
            c.queued,
            fmt::count(c.idle_executors, "idle executor"),
            c.in_flight_executors
        ));
    }
    if for_floor > for_demand {
        why.push(format!("keep {floor} warm ({} live)", c.live));
    }
    if count < wanted {
        why.push(if room < total_room {
            format!("{wanted} wanted, capped by max-nodes {}", t.max_nodes)
        } else {
            format!("{wanted} wanted, capped by max-total-nodes {max_total}")
        });
    }
    Some(Launch {
        template: t.name.clone(),
        count,
        reason: why.join("; "),
    })
}

fn removals(snapshot: &Snapshot, t: &Template, c: &Counts, floor: u32) -> Vec<Removal> {
    let mut out: Vec<Removal> = snapshot
        .nodes_of(&t.name)
        .filter(|n| retires(n, t))
        .map(|n| Removal {
            instance_id: n.instance_id.clone(),
            reason: format!(
                "ran {} (max-uses {})",
                fmt::count(n.uses.into(), "build"),
                t.max_uses
            ),
        })
        .collect();
    let timeout_ms = t.idle_timeout_secs.saturating_mul(1000);
    for n in snapshot.nodes_of(&t.name).filter(|n| n.busy_executors == 0) {
        let reason = match n.state {
            NodeState::Interrupted => "spot reclaim notice".to_owned(),
            NodeState::Offline if t.idle_timeout_secs > 0 && n.idle_ms >= timeout_ms => format!(
                "offline ({}) and idle {}",
                n.offline_reason.as_deref().unwrap_or("no reason given"),
                fmt::duration(n.idle_ms)
            ),
            _ => continue,
        };
        out.push(Removal {
            instance_id: n.instance_id.clone(),
            reason,
        });
    }
    if t.idle_timeout_secs == 0 {
        return out;
    }
    let mut idle: Vec<&Node> = snapshot
        .nodes_of(&t.name)
        .filter(|n| n.is_idle() && !n.used_up(t.max_uses) && n.idle_ms >= timeout_ms)
        .collect();
    // Longest idle first; the instance id makes ties deterministic.
    idle.sort_by(|a, b| {
        b.idle_ms
            .cmp(&a.idle_ms)
            .then_with(|| a.instance_id.cmp(&b.instance_id))
    });
    // Idle nodes that queued builds could still use stay (Jenkins is about to hand them work).
    let kept_for_queue = c.queued.div_ceil(c.executors) as usize;
    let above_floor = c.live.saturating_sub(floor) as usize;
    let n = idle.len().saturating_sub(kept_for_queue).min(above_floor);
    out.extend(idle[..n].iter().map(|node| Removal {
        instance_id: node.instance_id.clone(),
        reason: format!(
            "idle {} (idle-timeout {})",
            fmt::duration(node.idle_ms),
            fmt::duration(timeout_ms)
        ),
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::*;
    use crate::testing::scale_violations;

    const MIN: u64 = 60_000;

    fn linux() -> TemplateBuilder {
        TemplateBuilder::new("linux")
            .executors(2)
            .max(10)
            .idle_timeout_secs(600)
    }

    fn plan(snapshot: SnapshotBuilder) -> ScalePlan {
        let snapshot = snapshot.build();
        let plan = scale(&snapshot);
        assert_eq!(scale_violations(&snapshot, &plan), Vec::<String>::new());
        plan
    }

    #[test]
    fn launches_for_demand_not_covered_by_idle_or_in_flight() {
        let p = plan(
            SnapshotBuilder::new(0)
                .template(linux())
                .queued("linux", 7, MIN)
                .node(NodeBuilder::online("i-1", "linux").busy(1))
                .node(NodeBuilder::new("i-2", "linux", NodeState::Bootstrapping)),
        );
        // 7 queued - 1 idle executor - 2 in flight = 4 executors = 2 nodes.
        assert_eq!(p.launches_for("linux"), 2);
        assert_eq!(
            p.launches[0].reason,
            "7 queued, 1 idle executor, 2 in flight"
        );
        assert!(p.removals.is_empty());
    }

    #[test]
    fn keeps_the_floor_without_adding_it_to_demand() {
        let t = linux().min(3);
        assert_eq!(
            plan(SnapshotBuilder::new(0).template(t.clone())).launches_for("linux"),
            3
        );
        let p = plan(
            SnapshotBuilder::new(0)
                .template(t.clone())
                .queued("linux", 8, MIN),
        );
        assert_eq!(
            p.launches_for("linux"),
            4,
            "demand already covers the minimum"
        );
        // Draining nodes do not count towards the minimum; warm pools raise it.
        let snap = SnapshotBuilder::new(0)
            .template(t)
            .node(NodeBuilder::new("i-1", "linux", NodeState::Draining))
            .build();
        let warm = ScaleOptions {
            warm_nodes: [("linux".to_string(), 5)].into(),
        };
        assert_eq!(scale_with(&snap, &warm).launches_for("linux"), 5);
        assert!(
            scale_with(&snap, &warm).launches[0]
                .reason
                .contains("keep 5 warm (0 live)")
        );
    }

    #[test]
    fn caps_by_template_and_total_maximum() {
        let p = plan(
            SnapshotBuilder::new(0)
                .template(linux().max(3))
                .template(TemplateBuilder::new("win").max(10))
                .queued("linux", 20, MIN)
                .queued("win", 20, MIN)
                .node(NodeBuilder::online("i-1", "linux").busy(2))
                .node(NodeBuilder::new("i-0", "linux", NodeState::Terminating))
                .max_total_nodes(6),
        );
        assert_eq!(p.launches_for("linux"), 2);
        assert!(
            p.launches[0].reason.ends_with("capped by max-nodes 3"),
            "{}",
            p.launches[0].reason
        );
        assert_eq!(p.launches_for("win"), 3);
        assert!(
            p.launches[1]
                .reason
                .ends_with("capped by max-total-nodes 6"),
            "{}",
            p.launches[1].reason
        );
    }

    #[test]
    fn stopped_nodes_take_no_room_and_are_kept() {
        // Two stopped nodes (the warm pool) and max-nodes 2: demand still launches 2, which
        // the host serves by starting them; nothing removes them.
        let p = plan(
            SnapshotBuilder::new(0)
                .template(linux().max(2))
                .queued("linux", 4, MIN)
                .node(NodeBuilder::new("i-1", "linux", NodeState::Stopped))
                .node(NodeBuilder::new("i-2", "linux", NodeState::Stopped))
                .max_total_nodes(2),
        );
        assert_eq!(p.launches_for("linux"), 2);
        assert!(p.removals.is_empty(), "{:?}", p.removals);
    }

    #[test]
    fn removes_longest_idle_beyond_the_floor() {
        let p = plan(
            SnapshotBuilder::new(0)
                .template(linux().min(2))
                .node(NodeBuilder::online("i-1", "linux").idle_ms(11 * MIN))
                .node(NodeBuilder::online("i-2", "linux").idle_ms(13 * MIN))
                .node(NodeBuilder::online("i-3", "linux").idle_ms(12 * MIN))
                .node(NodeBuilder::online("i-4", "linux").idle_ms(9 * MIN))
                .node(NodeBuilder::online("i-5", "linux").busy(1)),
        );
        assert_eq!(p.removed_ids(), ["i-2", "i-3", "i-1"]);
        assert_eq!(p.removals[0].reason, "idle 13m (idle-timeout 10m)");
        let p = plan(
            SnapshotBuilder::new(0)
                .template(linux().min(3))
                .node(NodeBuilder::online("i-1", "linux").idle_ms(11 * MIN))
                .node(NodeBuilder::online("i-2", "linux").idle_ms(13 * MIN))
                .node(NodeBuilder::online("i-3", "linux").idle_ms(12 * MIN))
                .node(NodeBuilder::new("i-4", "linux", NodeState::Pending)),
        );
        assert_eq!(p.removed_ids(), ["i-2"], "never below min-nodes");
    }

    #[test]
    fn no_idle_removal_when_queued_builds_could_use_the_node() {
        let p = plan(
            SnapshotBuilder::new(0)
                .template(linux().idle_timeout_secs(60))
                .queued("linux", 2, MIN)
                .node(NodeBuilder::online("i-1", "linux").idle_ms(5 * MIN))
                .node(NodeBuilder::online("i-2", "linux").idle_ms(3 * MIN)),
        );
        assert_eq!(
            p.removed_ids(),
            ["i-1"],
            "one 2-executor node serves the 2 queued builds"
        );
        assert!(p.launches.is_empty());
        let never = plan(
            SnapshotBuilder::new(0)
                .template(linux().idle_timeout_secs(0))
                .node(NodeBuilder::online("i-1", "linux").idle_ms(500 * MIN)),
        );
        assert!(never.removals.is_empty(), "idle-timeout 0 never idles out");
    }

    #[test]
    fn retires_idle_used_up_nodes_and_replaces_the_floor() {
        let p = plan(
            SnapshotBuilder::new(0)
                .template(linux().min(1).max_uses(1))
                .node(NodeBuilder::online("i-1", "linux").uses(1))
                .node(NodeBuilder::online("i-2", "linux").uses(1).busy(1)),
        );
        assert_eq!(p.removed_ids(), ["i-1"]);
        assert_eq!(p.removals[0].reason, "ran 1 build (max-uses 1)");
        // i-2 is busy and used up: live, but its free executor takes no new build.
        assert!(p.launches.is_empty());
        let p = plan(
            SnapshotBuilder::new(0)
                .template(linux().min(1).max_uses(1))
                .queued("linux", 1, MIN)
                .node(NodeBuilder::online("i-1", "linux").uses(1)),
        );
        assert_eq!(p.removed_ids(), ["i-1"]);
        assert_eq!(p.launches_for("linux"), 1);
    }

    #[test]
    fn unusable_nodes_are_replaced_and_removed_when_idle() {
        let snapshot = SnapshotBuilder::new(0)
            .template(linux().min(2))
            .node(NodeBuilder::online("i-1", "linux"))
            .node(NodeBuilder::online("i-2", "linux").offline("disk space is too low").idle_ms(11 * MIN))
            .node(NodeBuilder::new("i-3", "linux", NodeState::Interrupted))
            .node(NodeBuilder::new("i-4", "linux", NodeState::Interrupted).busy(1))
            .node(NodeBuilder::new("i-5", "linux", NodeState::Disconnected));
        let p = plan(snapshot);
        // Only i-1 is live: one launch brings the template back to its minimum of 2.
        assert_eq!(p.launches_for("linux"), 1, "{p:?}");
        let mut removed: Vec<&str> = p.removals.iter().map(|r| r.instance_id.as_str()).collect();
        removed.sort();
        assert_eq!(removed, ["i-2", "i-3"], "{p:?}");
        let offline = p.removals.iter().find(|r| r.instance_id == "i-2").unwrap();
        assert!(offline.reason.contains("disk space is too low"), "{offline:?}");
    }

    #[test]
    fn an_offline_node_stays_until_its_idle_timeout() {
        let snapshot = SnapshotBuilder::new(0)
            .template(linux())
            .node(NodeBuilder::online("i-1", "linux").offline("maintenance").idle_ms(MIN));
        assert!(plan(snapshot).removals.is_empty());
    }
}
