//! The engine's own view of the world: what it observed, what it decided.
//!
//! These types sit between the outside services (ECS, Jenkins, SSH) and the policy contract, so
//! that the reconcile logic can be read and tested without either.

use std::net::Ipv4Addr;

/// Where a node is in its life (mirrors the WIT `node-state`; docs/lifecycle.md has the
/// table of what each state means and how it is left). Every state counts against caps: an
/// instance costs money and holds an IP until the cloud has deleted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// Launched by this process; the cloud's listing does not show it yet.
    Requested,
    Pending,
    Running,
    Bootstrapping,
    Connecting,
    Online,
    /// Connected, but marked temporarily offline by someone else (admin, monitor).
    Offline,
    /// Was online; the agent dropped. Restarted, or terminated after `reconnect-timeout`.
    Disconnected,
    /// The cloud announced a spot reclaim: fenced in Jenkins, going away.
    Interrupted,
    Draining,
    Terminating,
}

impl NodeState {
    /// Capacity on its way: will run builds once it is online.
    pub fn in_flight(self) -> bool {
        matches!(self, Self::Requested | Self::Pending | Self::Running | Self::Bootstrapping | Self::Connecting)
    }
    /// Nodes that are not, and will not by themselves become, capacity: removing one never
    /// takes a template's usable nodes below its minimum.
    pub fn unusable(self) -> bool {
        matches!(self, Self::Offline | Self::Disconnected | Self::Interrupted | Self::Draining | Self::Terminating)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Bootstrapping => "bootstrapping",
            Self::Connecting => "connecting",
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Disconnected => "disconnected",
            Self::Interrupted => "interrupted",
            Self::Draining => "draining",
            Self::Terminating => "terminating",
        }
    }
    pub const ALL: [NodeState; 11] = [
        Self::Requested,
        Self::Pending,
        Self::Running,
        Self::Bootstrapping,
        Self::Connecting,
        Self::Online,
        Self::Offline,
        Self::Disconnected,
        Self::Interrupted,
        Self::Draining,
        Self::Terminating,
    ];
}

/// Status of an instance as ECS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudStatus {
    Pending,
    Starting,
    Running,
    Stopping,
    Stopped,
    /// Any other status (e.g. `Deleted` while the delete settles).
    Other,
}

impl CloudStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "Pending" => Self::Pending,
            "Starting" => Self::Starting,
            "Running" => Self::Running,
            "Stopping" => Self::Stopping,
            "Stopped" => Self::Stopped,
            _ => Self::Other,
        }
    }
}

/// One instance of ours, as the cloud lists it (filtered by our controller tag).
#[derive(Debug, Clone, PartialEq)]
pub struct CloudInstance {
    pub instance_id: String,
    /// From the template tag.
    pub template: String,
    pub zone: String,
    pub vswitch: String,
    pub instance_type: String,
    pub spot: bool,
    pub status: CloudStatus,
    pub private_ip: Option<Ipv4Addr>,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// `OperationLocks.LockReason` values (e.g. `Recycling`: a spot reclaim notice).
    pub locks: Vec<String>,
}

/// The lock ECS sets on a spot instance it will reclaim, about five minutes ahead.
pub const LOCK_RECYCLING: &str = "Recycling";

/// One Jenkins agent node of ours (named `<template>-<instance-id>`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentNode {
    pub name: String,
    /// Connected (Jenkins has a channel to the agent), whether or not marked offline.
    pub online: bool,
    pub temporarily_offline: bool,
    /// Jenkins' `offlineCauseReason` when marked offline (the offline message).
    pub offline_reason: Option<String>,
    /// Not connected, and Jenkins says the channel to the agent broke: it was connected once.
    pub dropped: bool,
    /// Since when (ms) the node has run nothing while connected; None while busy or away.
    pub idle_since_ms: Option<u64>,
    /// The idle-since time recorded in the node's description (kept across restarts).
    pub idle_recorded_ms: Option<u64>,
    /// The build count recorded in the node's description (kept across restarts).
    pub uses_recorded: u32,
    /// The key of the last build counted in `uses`.
    pub last_build: Option<String>,
    pub executors: u32,
    pub busy_executors: u32,
    /// Milliseconds the node has run nothing while connected, marked offline or not (0 while
    /// busy or disconnected).
    pub idle_ms: u64,
    /// Builds the node has started.
    pub uses: u32,
}

/// How a bootstrap the engine started is going.
#[derive(Debug, Clone, PartialEq)]
pub enum BootstrapStatus {
    Running,
    Done,
    Failed(String),
}

/// A template as the engine needs it for decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateLimits {
    pub name: String,
    pub min_nodes: u32,
    pub max_nodes: u32,
    pub launch_timeout_ms: u64,
    /// How long an agent that dropped may take to come back before its instance is replaced.
    pub reconnect_timeout_ms: u64,
    /// Builds a node may run (0 = unlimited): counts are recorded only where they matter.
    pub max_uses: u32,
}

/// One node as the engine sees it after merging cloud, Jenkins and its own bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub instance: CloudInstance,
    pub agent: Option<AgentNode>,
    pub state: NodeState,
    pub failure: Option<String>,
}

impl Node {
    pub fn instance_id(&self) -> &str {
        &self.instance.instance_id
    }
    pub fn template(&self) -> &str {
        &self.instance.template
    }
    pub fn busy(&self) -> bool {
        self.agent.as_ref().is_some_and(|a| a.busy_executors > 0)
    }
}

/// The Jenkins node name of an instance.
pub fn node_name(template: &str, instance_id: &str) -> String {
    format!("{template}-{instance_id}")
}

/// Splits a name made by [`node_name`] into (template, instance id) when the template is one
/// of `templates` and the rest looks like an instance id (`i-...`). The longest matching
/// template wins, so `linux` and `linux-big` never claim each other's nodes.
pub fn split_node_name<'a, 't>(name: &'a str, templates: impl IntoIterator<Item = &'t str>) -> Option<(&'a str, &'a str)> {
    templates
        .into_iter()
        .filter_map(|t| {
            let id = name.strip_prefix(t)?.strip_prefix('-')?;
            (id.len() > 2 && id.starts_with("i-")).then_some((&name[..t.len()], id))
        })
        .max_by_key(|(t, _)| t.len())
}

/// Launch `count` nodes for a template.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlannedLaunch {
    pub template: String,
    pub count: u32,
    pub reason: String,
}

/// Remove one node.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlannedRemoval {
    pub instance_id: String,
    pub reason: String,
}

/// What the policy decided, in engine terms.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Plan {
    pub launches: Vec<PlannedLaunch>,
    pub removals: Vec<PlannedRemoval>,
}

/// One change the host made to a policy's plan, and why. Logged and counted, never silent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Clamp {
    /// Which invariant: `template-max`, `total-max`, `per-cycle`, `busy-node`, `min-nodes`,
    /// `unknown-template`, `unknown-node`, `duplicate`.
    pub rule: &'static str,
    pub detail: String,
}

/// A capacity error seen on an offering.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OfferingFailure {
    pub code: String,
    pub at_ms: u64,
}

/// One launchable offering as policies see it: zone x vswitch x type x capacity type.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Offering {
    pub zone: String,
    pub vswitch: String,
    pub instance_type: String,
    pub spot: bool,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub free_ips: u32,
    pub price_per_hour: Option<f64>,
    pub in_stock: bool,
    pub last_failure: Option<OfferingFailure>,
}
