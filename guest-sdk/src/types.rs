//! Friendly names for the contract's types, plus small helpers on them.
//!
//! The types are generated from `wit/policy.wit`; every field is documented there and in the
//! generated rustdoc. Field names are the WIT names in `snake_case`.

use crate::bindings::ecs_provisioner::policy::host;
use crate::bindings::exports::ecs_provisioner::policy::policy as wit;

/// Everything `scale` may look at, observed at one instant.
pub type Snapshot = wit::Snapshot;
/// A node template: one kind of Jenkins agent.
pub type Template = wit::Template;
/// Queued builds that one template can serve.
pub type Demand = wit::Demand;
/// One queued Jenkins build.
pub type QueuedItem = wit::QueuedItem;
/// A node (ECS instance + Jenkins agent) of this provisioner.
pub type Node = wit::Node;
/// Where a node is in its life.
pub type NodeState = wit::NodeState;
/// One place a node can be launched: zone x vswitch x instance type x capacity type.
pub type Offering = wit::Offering;
/// A recent capacity error of an offering.
pub type Failure = wit::Failure;
/// Spot or on-demand, per template.
pub type SpotMode = wit::SpotMode;
/// What `scale` decided.
pub type ScalePlan = wit::ScalePlan;
/// Launch nodes for one template.
pub type Launch = wit::Launch;
/// Remove one node.
pub type Removal = wit::Removal;
/// Ask to turn a count into concrete launches.
pub type PlaceRequest = wit::PlaceRequest;
/// Launch `count` nodes on one offering (an index into the offerings passed to `place`).
pub type Placement = wit::Placement;
/// Severity of a log line.
pub type Level = host::Level;
/// Optional parts of the `scale` snapshot; see [`Policy::reads`](crate::Policy::reads).
pub type SnapshotParts = host::SnapshotParts;

/// `snapshot` as the host sends it to a policy that reads only `parts`: the parts left out
/// are empty lists (each demand keeps its counts and loses its items). The SDKs' test
/// harnesses call it, so a policy's unit tests see what it will see in the host.
pub fn trimmed(snapshot: &Snapshot, parts: SnapshotParts) -> Snapshot {
    let keep = |part| parts.contains(part);
    let mut s = snapshot.clone();
    if !keep(SnapshotParts::NODES) {
        s.nodes.clear();
    }
    if !keep(SnapshotParts::QUEUED_ITEMS) {
        s.demand.iter_mut().for_each(|d| d.items.clear());
    }
    if !keep(SnapshotParts::OFFERINGS) {
        s.offerings.clear();
    }
    s
}

impl NodeState {
    /// The state's name in the contract: `requested`, `pending`, ..., `terminating`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Requested => "requested",
            NodeState::Pending => "pending",
            NodeState::Running => "running",
            NodeState::Bootstrapping => "bootstrapping",
            NodeState::Connecting => "connecting",
            NodeState::Online => "online",
            NodeState::Offline => "offline",
            NodeState::Disconnected => "disconnected",
            NodeState::Interrupted => "interrupted",
            NodeState::Draining => "draining",
            NodeState::Terminating => "terminating",
            NodeState::Stopped => "stopped",
        }
    }

    /// Capacity still on its way: requested, pending, running, bootstrapping or connecting.
    pub fn is_in_flight(self) -> bool {
        matches!(
            self,
            NodeState::Requested
                | NodeState::Pending
                | NodeState::Running
                | NodeState::Bootstrapping
                | NodeState::Connecting
        )
    }

    /// Counts against `max-nodes` and `max-total-nodes`: every state but terminating (the
    /// default policy's view: going away) and stopped (the warm pool, capped by `max-stopped`).
    pub fn occupies(self) -> bool {
        !matches!(self, NodeState::Terminating | NodeState::Stopped)
    }

    /// On its way out because the host is removing it: draining or terminating. The host
    /// refuses to remove such a node again.
    pub fn is_leaving(self) -> bool {
        matches!(self, NodeState::Draining | NodeState::Terminating)
    }

    /// Runs no build now and will not by itself: offline (marked by someone else),
    /// disconnected, interrupted (spot reclaim), draining or terminating. Such a node does not
    /// count towards a template's minimum; it still counts against `max-nodes`.
    pub fn is_unusable(self) -> bool {
        matches!(
            self,
            NodeState::Offline
                | NodeState::Disconnected
                | NodeState::Interrupted
                | NodeState::Draining
                | NodeState::Terminating
                | NodeState::Stopped
        )
    }
}

impl Node {
    /// In flight or online: capacity that serves builds now or soon.
    pub fn is_live(&self) -> bool {
        !self.state.is_unusable()
    }

    /// Online with no build running.
    pub fn is_idle(&self) -> bool {
        self.state == NodeState::Online && self.busy_executors == 0
    }

    /// Whether the node has run `max_uses` builds (never, when `max_uses` is 0).
    pub fn used_up(&self, max_uses: u32) -> bool {
        max_uses > 0 && self.uses >= max_uses
    }
}

impl Offering {
    /// Hourly price per vCPU, when the price is known and the type has vCPUs.
    pub fn price_per_vcpu(&self) -> Option<f64> {
        match (self.price_per_hour, self.vcpus) {
            (Some(price), vcpus) if vcpus > 0 && price.is_finite() => Some(price / vcpus as f64),
            _ => None,
        }
    }

    /// Whether a capacity error was seen less than `cooldown_ms` before `now_ms`.
    /// A failure stamped in the future (clock skew) counts as recent.
    pub fn failed_recently(&self, now_ms: u64, cooldown_ms: u64) -> bool {
        self.last_failure
            .as_ref()
            .is_some_and(|f| f.at_ms > now_ms || now_ms - f.at_ms < cooldown_ms)
    }

    /// In stock, with a free IP, and no capacity error within `cooldown_ms` of `now_ms`.
    pub fn is_usable(&self, now_ms: u64, cooldown_ms: u64) -> bool {
        self.in_stock && self.free_ips > 0 && !self.failed_recently(now_ms, cooldown_ms)
    }
}

impl SpotMode {
    /// Whether nodes of this template may run on spot instances.
    pub fn allows_spot(self) -> bool {
        !matches!(self, SpotMode::OnDemand)
    }

    /// Whether nodes of this template may run on on-demand instances.
    pub fn allows_on_demand(self) -> bool {
        !matches!(self, SpotMode::SpotOnly)
    }
}

impl Snapshot {
    /// The template with this name.
    pub fn template(&self, name: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.name == name)
    }

    /// Builds queued for this template (0 when it has no demand entry).
    pub fn queued_for(&self, template: &str) -> u32 {
        self.demand
            .iter()
            .filter(|d| d.template == template)
            .map(|d| d.queued)
            .sum()
    }

    /// The nodes launched for this template, in any state.
    pub fn nodes_of<'a>(&'a self, template: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.iter().filter(move |n| n.template == template)
    }
}

impl ScalePlan {
    /// An empty plan: launch nothing, remove nothing.
    pub fn empty() -> Self {
        ScalePlan {
            launches: Vec::new(),
            removals: Vec::new(),
        }
    }

    /// Nodes this plan launches for `template`, summed over its launches.
    pub fn launches_for(&self, template: &str) -> u32 {
        self.launches
            .iter()
            .filter(|l| l.template == template)
            .map(|l| l.count)
            .sum()
    }

    /// Nodes this plan launches in total.
    pub fn total_launches(&self) -> u32 {
        self.launches.iter().map(|l| l.count).sum()
    }

    /// Instance ids this plan removes, in plan order.
    pub fn removed_ids(&self) -> Vec<&str> {
        self.removals
            .iter()
            .map(|r| r.instance_id.as_str())
            .collect()
    }

    /// Whether this plan removes the node with this instance id.
    pub fn removes(&self, instance_id: &str) -> bool {
        self.removals.iter().any(|r| r.instance_id == instance_id)
    }
}
