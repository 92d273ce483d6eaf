//! A native test harness: run a policy the way the host does, without wasm, and check its
//! output against the host's hard invariants.
//!
//! ```
//! use ecs_policy_sdk::{Policy, builders::*, testing};
//!
//! #[derive(Default)]
//! struct Mine;
//! impl Policy for Mine {}
//!
//! let snapshot = SnapshotBuilder::new(0)
//!     .template(TemplateBuilder::new("linux").executors(2).max(10))
//!     .queued("linux", 5, 1_000)
//!     .build();
//! let plan = testing::run_scale(Mine, "{}", &snapshot);
//! assert_eq!(plan.launches_for("linux"), 3);
//! ```
//!
//! Whatever the policy logs during a call can be read afterwards with
//! [`log::take_captured`](crate::log::take_captured) (native builds).

use std::collections::{BTreeMap, BTreeSet};

use crate::policy::Policy;
use crate::types::{Node, Offering, PlaceRequest, Placement, ScalePlan, Snapshot};

/// Configure a fresh policy as the host does, returning it or the policy's error.
pub fn configure<P: Policy>(mut policy: P, settings: &str) -> Result<P, String> {
    policy.configure(settings)?;
    Ok(policy)
}

/// `configure` then `scale`, returning the policy's own error if either fails.
/// No invariant checks: use it to test errors.
pub fn try_scale<P: Policy>(
    policy: P,
    settings: &str,
    snapshot: &Snapshot,
) -> Result<ScalePlan, String> {
    clear_log();
    let policy = configure(policy, settings)?;
    // What the host would send: only the parts the policy declared.
    policy.scale(&crate::types::trimmed(snapshot, policy.reads()))
}

/// `configure` then `place`, returning the policy's own error if either fails.
/// No invariant checks: use it to test errors.
pub fn try_place<P: Policy>(
    policy: P,
    settings: &str,
    request: &PlaceRequest,
    offerings: &[Offering],
    fleet: &[Node],
) -> Result<Vec<Placement>, String> {
    clear_log();
    configure(policy, settings)?.place(request, offerings, fleet)
}

/// `configure` then `scale`; panics with a clear message if either fails or the plan breaks
/// one of the host's invariants (see [`scale_violations`]).
#[track_caller]
pub fn run_scale<P: Policy>(policy: P, settings: &str, snapshot: &Snapshot) -> ScalePlan {
    let plan =
        try_scale(policy, settings, snapshot).unwrap_or_else(|e| panic!("policy failed: {e}"));
    let violations = scale_violations(snapshot, &plan);
    assert!(
        violations.is_empty(),
        "plan breaks host invariants:\n  {}\nplan: {plan:#?}",
        violations.join("\n  ")
    );
    plan
}

/// `configure` then `place`; panics with a clear message if either fails or the placements
/// break one of the host's invariants (see [`place_violations`]).
#[track_caller]
pub fn run_place<P: Policy>(
    policy: P,
    settings: &str,
    request: &PlaceRequest,
    offerings: &[Offering],
    fleet: &[Node],
) -> Vec<Placement> {
    let placements = try_place(policy, settings, request, offerings, fleet)
        .unwrap_or_else(|e| panic!("policy failed: {e}"));
    let violations = place_violations(request, offerings, &placements);
    assert!(
        violations.is_empty(),
        "placements break host invariants:\n  {}\nplacements: {placements:#?}",
        violations.join("\n  ")
    );
    placements
}

/// Every way `plan` breaks the host's rules for `snapshot` (empty when it breaks none). The
/// host rejects a malformed plan whole (unknown template or node, a template launched twice, a
/// node removed twice) and clamps one that breaks a limit; this checks both kinds:
/// at most one launch per known template, within `max-nodes` and `max-total-nodes` counting every
/// node that is not terminating or stopped; removals only of known, live, non-busy nodes, each once, never
/// taking a template's live nodes (plus its launches) below `min-nodes`.
pub fn scale_violations(snapshot: &Snapshot, plan: &ScalePlan) -> Vec<String> {
    let mut out = Vec::new();
    let occupying = |t: &str| {
        snapshot
            .nodes_of(t)
            .filter(|n| n.state.occupies())
            .count() as u64
    };
    let mut launched = BTreeSet::new();
    for launch in &plan.launches {
        if snapshot.template(&launch.template).is_none() {
            out.push(format!("launch for unknown template `{}`", launch.template));
        }
        if !launched.insert(launch.template.as_str()) {
            out.push(format!(
                "template `{}` launched more than once (one launch per template)",
                launch.template
            ));
        }
    }
    let mut removed = BTreeSet::new();
    for r in &plan.removals {
        match snapshot
            .nodes
            .iter()
            .find(|n| n.instance_id == r.instance_id)
        {
            None => out.push(format!("removal of unknown node `{}`", r.instance_id)),
            Some(n) if n.busy_executors > 0 => {
                out.push(format!("removal of busy node `{}`", r.instance_id))
            }
            Some(n) if n.state.is_leaving() => out.push(format!(
                "removal of {} node `{}`",
                n.state.as_str(),
                r.instance_id
            )),
            Some(_) => {}
        }
        if !removed.insert(r.instance_id.as_str()) {
            out.push(format!("node `{}` removed twice", r.instance_id));
        }
    }
    let mut total = snapshot
        .nodes
        .iter()
        .filter(|n| n.state.occupies())
        .count() as u64;
    for t in &snapshot.templates {
        let launched = u64::from(plan.launches_for(&t.name));
        total += launched;
        if occupying(&t.name) + launched > u64::from(t.max_nodes) {
            out.push(format!(
                "template `{}`: {} nodes + {launched} launched > max-nodes {}",
                t.name,
                occupying(&t.name),
                t.max_nodes
            ));
        }
        let live = snapshot.nodes_of(&t.name).filter(|n| n.is_live()).count() as u64;
        let gone = snapshot
            .nodes_of(&t.name)
            .filter(|n| n.is_live() && removed.contains(n.instance_id.as_str()))
            .count() as u64;
        if gone > 0 && live - gone + launched < u64::from(t.min_nodes) {
            out.push(format!(
                "template `{}`: removing {gone} of {live} live nodes (+{launched} launched) goes below min-nodes {}",
                t.name, t.min_nodes
            ));
        }
    }
    if total > u64::from(snapshot.max_total_nodes) {
        out.push(format!(
            "{total} nodes after launches > max-total-nodes {}",
            snapshot.max_total_nodes
        ));
    }
    out
}

/// Every way `placements` break the host's rules (empty when they break none): offering
/// indices in range and each used at most once, no empty placement, no more nodes than asked, no more nodes per vswitch
/// than it has free IPs, and capacity types the template's spot mode allows.
pub fn place_violations(
    request: &PlaceRequest,
    offerings: &[Offering],
    placements: &[Placement],
) -> Vec<String> {
    let mut out = Vec::new();
    let mut per_vswitch: BTreeMap<&str, (u64, u32)> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for p in placements {
        if !seen.insert(p.offering) {
            out.push(format!(
                "offering {} placed on more than once (one placement per offering)",
                p.offering
            ));
        }
        let Some(o) = offerings.get(p.offering as usize) else {
            out.push(format!(
                "offering index {} out of range ({} offered)",
                p.offering,
                offerings.len()
            ));
            continue;
        };
        if p.count == 0 {
            out.push(format!("empty placement on offering {}", p.offering));
        }
        if o.spot && !request.template.spot.allows_spot() {
            out.push(format!(
                "spot offering {} for on-demand template",
                p.offering
            ));
        }
        if !o.spot && !request.template.spot.allows_on_demand() {
            out.push(format!(
                "on-demand offering {} for spot-only template",
                p.offering
            ));
        }
        let slot = per_vswitch
            .entry(o.vswitch.as_str())
            .or_insert((0, o.free_ips));
        slot.0 += u64::from(p.count);
        slot.1 = slot.1.min(o.free_ips);
    }
    for (vswitch, (placed, free)) in per_vswitch {
        if placed > u64::from(free) {
            out.push(format!(
                "{placed} nodes in vswitch `{vswitch}` with {free} free IPs"
            ));
        }
    }
    let total = total_placed(placements);
    if total > u64::from(request.count) {
        out.push(format!("{total} nodes placed, {} asked", request.count));
    }
    out
}

/// Nodes placed in total.
pub fn total_placed(placements: &[Placement]) -> u64 {
    placements.iter().map(|p| u64::from(p.count)).sum()
}

/// Nodes placed per zone (placements with bad indices are skipped).
pub fn placed_per_zone(placements: &[Placement], offerings: &[Offering]) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for p in placements {
        if let Some(o) = offerings.get(p.offering as usize) {
            *out.entry(o.zone.clone()).or_default() += p.count;
        }
    }
    out
}

/// Nodes placed per offering index (placements naming the same index are added up).
pub fn placed_per_offering(placements: &[Placement]) -> BTreeMap<u32, u32> {
    let mut out = BTreeMap::new();
    for p in placements {
        *out.entry(p.offering).or_default() += p.count;
    }
    out
}

fn clear_log() {
    #[cfg(not(target_arch = "wasm32"))]
    crate::log::take_captured();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::*;
    use crate::types::{Launch, NodeState, Removal, SpotMode};

    fn launch(t: &str, count: u32) -> Launch {
        Launch {
            template: t.into(),
            count,
            reason: "r".into(),
        }
    }
    fn removal(id: &str) -> Removal {
        Removal {
            instance_id: id.into(),
            reason: "r".into(),
        }
    }

    /// Counts what `scale` received, in the plan's launch count.
    struct Counter(crate::SnapshotParts);
    impl Policy for Counter {
        fn reads(&self) -> crate::SnapshotParts {
            self.0
        }
        fn scale(&self, s: &Snapshot) -> Result<ScalePlan, String> {
            let items: usize = s.demand.iter().map(|d| d.items.len()).sum();
            let queued: u32 = s.demand.iter().map(|d| d.queued).sum();
            let seen = [s.nodes.len(), items, s.offerings.len(), queued as usize];
            Ok(ScalePlan {
                launches: vec![launch(&format!("{seen:?}"), 0)],
                removals: vec![],
            })
        }
    }

    #[test]
    fn scale_gets_only_the_declared_parts_like_in_the_host() {
        let snapshot = SnapshotBuilder::new(0)
            .template(TemplateBuilder::new("linux"))
            .queued("linux", 3, 1000)
            .node(NodeBuilder::online("i-1", "linux"))
            .offering(OfferingBuilder::new("z", "vsw", "t"))
            .build();
        let seen = |parts| {
            try_scale(Counter(parts), "{}", &snapshot).unwrap().launches[0]
                .template
                .clone()
        };
        use crate::SnapshotParts as P;
        assert_eq!(seen(P::all()), "[1, 3, 1, 3]");
        assert_eq!(
            seen(P::NODES),
            "[1, 0, 0, 3]",
            "counts stay, items and offerings go"
        );
        assert_eq!(seen(P::QUEUED_ITEMS | P::OFFERINGS), "[0, 3, 1, 3]");
    }

    #[test]
    fn scale_violations_name_each_broken_rule() {
        let snapshot = SnapshotBuilder::new(0)
            .template(TemplateBuilder::new("linux").min(1).max(3))
            .node(NodeBuilder::online("i-1", "linux").busy(1))
            .node(NodeBuilder::online("i-2", "linux"))
            .node(NodeBuilder::new("i-3", "linux", NodeState::Terminating))
            .max_total_nodes(3)
            .build();
        let plan = ScalePlan {
            launches: vec![launch("linux", 1), launch("linux", 1), launch("win", 1)],
            removals: vec![
                removal("i-1"),
                removal("i-3"),
                removal("i-9"),
                removal("i-2"),
                removal("i-2"),
            ],
        };
        let v = scale_violations(&snapshot, &plan);
        let expected = [
            "template `linux` launched more than once",
            "unknown template `win`",
            "removal of busy node `i-1`",
            "removal of terminating node `i-3`",
            "unknown node `i-9`",
            "`i-2` removed twice",
            "2 nodes + 2 launched > max-nodes 3",
            "4 nodes after launches > max-total-nodes 3",
        ];
        for e in expected {
            assert!(v.iter().any(|m| m.contains(e)), "no `{e}` in {v:#?}");
        }
        let below = ScalePlan {
            launches: vec![],
            removals: vec![removal("i-2")],
        };
        let snapshot = SnapshotBuilder::new(0)
            .template(TemplateBuilder::new("linux").min(1))
            .node(NodeBuilder::online("i-2", "linux"))
            .build();
        assert!(scale_violations(&snapshot, &below)[0].contains("below min-nodes 1"));
        let replaced = ScalePlan {
            launches: vec![launch("linux", 1)],
            removals: vec![removal("i-2")],
        };
        assert_eq!(scale_violations(&snapshot, &replaced), Vec::<String>::new());
    }

    #[test]
    fn place_violations_name_each_broken_rule() {
        let offerings = [
            OfferingBuilder::new("a", "vsw-a", "t").free_ips(2).build(),
            OfferingBuilder::new("a", "vsw-a", "t")
                .spot(true)
                .free_ips(2)
                .build(),
        ];
        let request = place_request(0, TemplateBuilder::new("linux").spot(SpotMode::OnDemand), 3);
        let p = |offering, count| Placement { offering, count };
        let v = place_violations(&request, &offerings, &[p(0, 2), p(0, 0), p(1, 1), p(5, 1)]);
        let expected = [
            "offering 0 placed on more than once",
            "empty placement on offering 0",
            "spot offering 1 for on-demand template",
            "offering index 5 out of range",
            "3 nodes in vswitch `vsw-a` with 2 free IPs",
        ];
        for e in expected {
            assert!(v.iter().any(|m| m.contains(e)), "no `{e}` in {v:#?}");
        }
        assert!(
            place_violations(&request, &offerings, &[p(0, 4)])
                .iter()
                .any(|m| m.contains("4 nodes placed, 3 asked"))
        );
    }
}
