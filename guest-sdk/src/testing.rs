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
use crate::types::{Node, NodeState, Offering, PlaceRequest, Placement, ScalePlan, Snapshot};

/// Configure a fresh policy as the host does, returning it or the policy's error.
pub fn configure<P: Policy>(mut policy: P, settings: &str) -> Result<P, String> {
    policy.configure(settings)?;
    Ok(policy)
}

/// `configure` then `scale`, returning the policy's own error if either fails.
/// No invariant checks: use it to test errors.
pub fn try_scale<P: Policy>(policy: P, settings: &str, snapshot: &Snapshot) -> Result<ScalePlan, String> {
    clear_log();
    configure(policy, settings)?.scale(snapshot)
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
    let plan = try_scale(policy, settings, snapshot).unwrap_or_else(|e| panic!("policy failed: {e}"));
    let violations = scale_violations(snapshot, &plan);
    assert!(violations.is_empty(), "plan breaks host invariants:\n  {}\nplan: {plan:#?}", violations.join("\n  "));
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

/// Every way `plan` breaks the host's invariants for `snapshot` (empty when it breaks none):
/// launches only for known templates, within `max-nodes` and `max-total-nodes` counting every
/// node that is not terminating; removals only of known, live, non-busy nodes, each once, never
/// taking a template's live nodes (plus its launches) below `min-nodes`.
pub fn scale_violations(snapshot: &Snapshot, plan: &ScalePlan) -> Vec<String> {
    let mut out = Vec::new();
    let occupying = |t: &str| {
        snapshot.nodes_of(t).filter(|n| n.state != NodeState::Terminating).count() as u64
    };
    for launch in &plan.launches {
        if snapshot.template(&launch.template).is_none() {
            out.push(format!("launch for unknown template `{}`", launch.template));
        }
    }
    let mut removed = BTreeSet::new();
    for r in &plan.removals {
        match snapshot.nodes.iter().find(|n| n.instance_id == r.instance_id) {
            None => out.push(format!("removal of unknown node `{}`", r.instance_id)),
            Some(n) if n.busy_executors > 0 => out.push(format!("removal of busy node `{}`", r.instance_id)),
            Some(n) if !n.is_live() => out.push(format!("removal of {:?} node `{}`", n.state, r.instance_id)),
            Some(_) => {}
        }
        if !removed.insert(r.instance_id.as_str()) {
            out.push(format!("node `{}` removed twice", r.instance_id));
        }
    }
    let mut total = snapshot.nodes.iter().filter(|n| n.state != NodeState::Terminating).count() as u64;
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
        out.push(format!("{total} nodes after launches > max-total-nodes {}", snapshot.max_total_nodes));
    }
    out
}

/// Every way `placements` break the host's invariants (empty when they break none): offering
/// indices in range, no empty placement, no more nodes than asked, no more nodes per vswitch
/// than it has free IPs, and capacity types the template's spot mode allows.
pub fn place_violations(request: &PlaceRequest, offerings: &[Offering], placements: &[Placement]) -> Vec<String> {
    let mut out = Vec::new();
    let mut per_vswitch: BTreeMap<&str, (u64, u32)> = BTreeMap::new();
    for p in placements {
        let Some(o) = offerings.get(p.offering as usize) else {
            out.push(format!("offering index {} out of range ({} offered)", p.offering, offerings.len()));
            continue;
        };
        if p.count == 0 {
            out.push(format!("empty placement on offering {}", p.offering));
        }
        if o.spot && !request.template.spot.allows_spot() {
            out.push(format!("spot offering {} for on-demand template", p.offering));
        }
        if !o.spot && !request.template.spot.allows_on_demand() {
            out.push(format!("on-demand offering {} for spot-only template", p.offering));
        }
        let slot = per_vswitch.entry(o.vswitch.as_str()).or_insert((0, o.free_ips));
        slot.0 += u64::from(p.count);
        slot.1 = slot.1.min(o.free_ips);
    }
    for (vswitch, (placed, free)) in per_vswitch {
        if placed > u64::from(free) {
            out.push(format!("{placed} nodes in vswitch `{vswitch}` with {free} free IPs"));
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
