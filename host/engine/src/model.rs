//! The engine's own view of the world: what it observed, what it decided.
//!
//! These types sit between the outside services (ECS, Jenkins, SSH) and the policy contract, so
//! that the reconcile logic can be read and tested without either.

use std::net::Ipv4Addr;

/// Where a node is in its life (mirrors the WIT `node-state`; docs/lifecycle.md has the
/// table of what each state means and how it is left). Every state but `stopped` counts against
/// caps: an instance costs money and holds an IP until the cloud has deleted it; stopped ones
/// have their own cap, `max-stopped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// Launched by this process; the cloud's listing does not show it yet.
    Requested,
    /// The instance exists but is not yet running.
    Pending,
    /// The instance runs with an IP; the bootstrap has not started yet.
    Running,
    /// The SSH bootstrap (init script, agent start) is in progress.
    Bootstrapping,
    /// The agent was started; waiting for Jenkins to see it online.
    Connecting,
    /// The agent is online in Jenkins and accepts builds.
    Online,
    /// Connected, but marked temporarily offline by someone else (admin, monitor).
    Offline,
    /// Was online; the agent dropped. Restarted, or terminated after `reconnect-timeout`.
    Disconnected,
    /// The cloud announced a spot reclaim: fenced in Jenkins, going away.
    Interrupted,
    /// Being removed by this provisioner: offline in Jenkins, about to be deleted.
    Draining,
    /// Stopped (or stopping) by this provisioner as a warm pool (`idle-action = "stop"`): its
    /// node is kept offline with a reason. Not capacity and not counted against `max-nodes`;
    /// started again on demand before any new launch.
    Stopped,
    /// Instance deletion requested (after a removal, a failure or a launch timeout).
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
        matches!(self, Self::Offline | Self::Disconnected | Self::Interrupted | Self::Draining | Self::Stopped | Self::Terminating)
    }
    /// The kebab-case name, as in the policy contract and the status page (`online`, `draining`...).
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
            Self::Stopped => "stopped",
            Self::Terminating => "terminating",
        }
    }
    /// Every state, in lifecycle order.
    pub const ALL: [NodeState; 12] = [
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
        Self::Stopped,
        Self::Terminating,
    ];
}

/// Status of an instance as ECS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudStatus {
    /// ECS `Pending`.
    Pending,
    /// ECS `Starting`.
    Starting,
    /// ECS `Running`.
    Running,
    /// ECS `Stopping`.
    Stopping,
    /// ECS `Stopped`.
    Stopped,
    /// Any other status (e.g. `Deleted` while the delete settles).
    Other,
}

impl CloudStatus {
    /// Reads an ECS `Status` value; unknown values become [`CloudStatus::Other`].
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
    /// ECS instance id.
    pub instance_id: String,
    /// From the template tag.
    pub template: String,
    /// Zone the instance runs in.
    pub zone: String,
    /// VSwitch the instance is attached to.
    pub vswitch: String,
    /// Instance type.
    pub instance_type: String,
    /// Whether it is a spot instance.
    pub spot: bool,
    /// Status as ECS reports it.
    pub status: CloudStatus,
    /// Primary private IP, once assigned.
    pub private_ip: Option<Ipv4Addr>,
    /// Creation time, ms since the Unix epoch; `None` when the cloud gave a time that cannot be
    /// read. An unknown age never runs out a launch timeout: a healthy instance must not be
    /// terminated because of a garbled field.
    pub created_ms: Option<u64>,
    /// `OperationLocks.LockReason` values (e.g. `Recycling`: a spot reclaim notice).
    pub locks: Vec<String>,
    /// The template fingerprint tagged at launch (`ecsp_config::Config::template_fingerprint`);
    /// `None` when untagged. A stopped instance whose fingerprint is not its template's
    /// current one is deleted, not started.
    pub fingerprint: Option<String>,
    /// The Jenkins node it was launched for, when that node was created before the instance
    /// (user-data launches, named by [`user_data_node_name`]; read from the instance's node
    /// tag). `None`: the node is `<template>-<instance-id>`.
    pub node: Option<String>,
}

impl CloudInstance {
    /// The name of its Jenkins node.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| node_name(&self.template, &self.instance_id))
    }
}

/// The lock ECS sets on a spot instance it will reclaim, about five minutes ahead.
pub const LOCK_RECYCLING: &str = "Recycling";

/// One Jenkins agent node of ours (named `<template>-<instance-id>`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentNode {
    /// Jenkins node name (`<template>-<instance-id>`).
    pub name: String,
    /// Connected (Jenkins has a channel to the agent), whether or not marked offline.
    pub online: bool,
    /// Marked temporarily offline in Jenkins (by anyone), whether connected or not.
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
    /// Executors configured on the node.
    pub executors: u32,
    /// Executors running a build now.
    pub busy_executors: u32,
    /// Milliseconds the node has run nothing while connected, marked offline or not (0 while
    /// busy or disconnected).
    pub idle_ms: u64,
    /// Builds the node has started.
    pub uses: u32,
    /// The builds running now, as far as Jenkins shows them: (key, start time in ms).
    pub running: Vec<(String, u64)>,
}

/// How a bootstrap the engine started is going.
#[derive(Debug, Clone, PartialEq)]
pub enum BootstrapStatus {
    /// Still running: the run's number ([`crate::lifecycle::Book::bootstrap_started`]), so
    /// that a run a later one superseded cannot book its outcome.
    Running {
        /// The run's number.
        run: u64,
    },
    /// Finished successfully.
    Done,
    /// Failed, with the reason.
    Failed(String),
}

/// A template as the engine needs it for decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateLimits {
    /// Template name.
    pub name: String,
    /// Nodes to keep at least (`min-nodes`).
    pub min_nodes: u32,
    /// Nodes allowed at most (`max-nodes`).
    pub max_nodes: u32,
    /// How long a launch may take to come online before it counts as failed, ms (`launch-timeout`).
    pub launch_timeout_ms: u64,
    /// How long an agent that dropped may take to come back before its instance is replaced.
    pub reconnect_timeout_ms: u64,
    /// Builds a node may run (0 = unlimited): counts are recorded only where they matter.
    pub max_uses: u32,
    /// Stopped instances kept at most: `max-stopped` with `idle-action = "stop"`, else 0.
    pub max_stopped: u32,
    /// The template's current fingerprint (see [`CloudInstance::fingerprint`]).
    pub fingerprint: String,
    /// `launch = "user-data"`: the instance starts (and restarts) its own agent; the host never
    /// bootstraps it.
    pub user_data: bool,
}

/// One node as the engine sees it after merging cloud, Jenkins and its own bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The instance as the cloud lists it.
    pub instance: CloudInstance,
    /// Its Jenkins node, if one exists.
    pub agent: Option<AgentNode>,
    /// Lifecycle state, derived from cloud, Jenkins and the engine's bookkeeping.
    pub state: NodeState,
    /// Why the node is terminating, when it is (e.g. `launch-timeout`, `bootstrap-failed`).
    pub failure: Option<String>,
}

impl Node {
    /// ECS instance id.
    pub fn instance_id(&self) -> &str {
        &self.instance.instance_id
    }
    /// Template the node was launched for.
    pub fn template(&self) -> &str {
        &self.instance.template
    }
    /// The name of its Jenkins node.
    pub fn node_name(&self) -> String {
        self.instance.node_name()
    }
    /// Whether any executor of its agent is running a build.
    pub fn busy(&self) -> bool {
        self.agent.as_ref().is_some_and(|a| a.busy_executors > 0)
    }
}

/// The Jenkins node name of an instance.
pub fn node_name(template: &str, instance_id: &str) -> String {
    format!("{template}-{instance_id}")
}

/// Whether `id` is a well-formed ECS instance id: `i-` and 1 to 62 ASCII letters or digits.
///
/// Ids come from the network and end up in node names, known_hosts lines, file paths and log
/// lines, so anything else is refused at the edge and never acted on.
pub fn is_instance_id(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|rest| (1..=62).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Whether `key` is a well-formed user-data launch key ([`user_data_node_name`]): `u-`, then
/// the creation time (ms since the Unix epoch) in 11 hex digits, then 8 more hex digits.
pub fn is_launch_key(key: &str) -> bool {
    key.strip_prefix("u-").is_some_and(|rest| rest.len() == 19 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// When the node of a user-data launch key was created (ms since the Unix epoch).
pub fn launch_key_time(key: &str) -> Option<u64> {
    is_launch_key(key).then(|| u64::from_str_radix(&key[2..13], 16).ok()).flatten()
}

/// The Jenkins node of a user-data launch: `<template>-u-<created ms, 11 hex><8 hex>`. It is
/// created before its instance exists (RunInstances carries its secret), so it cannot carry the
/// instance id; the instance carries the node's name in a tag instead. The creation time in the
/// name lets a restarted process tell a launch that may still be landing from a stale node.
pub fn user_data_node_name(template: &str, created_ms: u64, unique: u32) -> String {
    format!("{template}-u-{:011x}{unique:08x}", created_ms & 0xfff_ffff_ffff)
}

/// Splits a name made by [`node_name`] or [`user_data_node_name`] into (template, instance id or
/// launch key) when the template is one of `templates` and the rest is a well-formed instance
/// id ([`is_instance_id`]) or launch key ([`is_launch_key`]). The longest matching template
/// wins, so `linux` and `linux-big` never claim each other's nodes.
pub fn split_node_name<'a, 't>(name: &'a str, templates: impl IntoIterator<Item = &'t str>) -> Option<(&'a str, &'a str)> {
    templates
        .into_iter()
        .filter_map(|t| {
            let id = name.strip_prefix(t)?.strip_prefix('-')?;
            (is_instance_id(id) || is_launch_key(id)).then_some((&name[..t.len()], id))
        })
        .max_by_key(|(t, _)| t.len())
}

/// Launch `count` nodes for a template.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlannedLaunch {
    /// Template name.
    pub template: String,
    /// How many nodes to add.
    pub count: u32,
    /// Why, in a few words (from the policy).
    pub reason: String,
}

/// Remove one node.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlannedRemoval {
    /// ECS instance id of the node.
    pub instance_id: String,
    /// Why, in a few words (from the policy).
    pub reason: String,
}

/// What the policy decided, in engine terms.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Plan {
    /// Nodes to add, per template.
    pub launches: Vec<PlannedLaunch>,
    /// Nodes to remove.
    pub removals: Vec<PlannedRemoval>,
}

/// One change the host made to a policy's plan, and why. Logged and counted, never silent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Clamp {
    /// Which invariant: `template-max`, `total-max`, `per-cycle`, `busy-node`, `min-nodes`,
    /// `unknown-template`, `unknown-node`, `duplicate`.
    pub rule: &'static str,
    /// What was clamped and how, for logs and the status page.
    pub detail: String,
}

/// A capacity error seen on an offering.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OfferingFailure {
    /// Alibaba Cloud error code, e.g. `OperationDenied.NoStock`.
    pub code: String,
    /// When it happened, ms since the Unix epoch.
    pub at_ms: u64,
}

/// One launchable offering as policies see it: zone x vswitch x type x capacity type.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Offering {
    /// Zone, e.g. `cn-hangzhou-h`.
    pub zone: String,
    /// VSwitch in that zone the instance would attach to.
    pub vswitch: String,
    /// Instance type, e.g. `ecs.c7.large`.
    pub instance_type: String,
    /// Spot capacity when true, on-demand otherwise.
    pub spot: bool,
    /// vCPUs of the instance type.
    pub vcpus: u32,
    /// Memory of the instance type, MiB.
    pub memory_mib: u32,
    /// Free private IP addresses left in the vswitch.
    pub free_ips: u32,
    /// Hourly price in the account's currency, when known.
    pub price_per_hour: Option<f64>,
    /// Whether the cloud reports stock for this type in this zone.
    pub in_stock: bool,
    /// The most recent capacity error for this offering, if any.
    pub last_failure: Option<OfferingFailure>,
}
