//! What the engine needs from the outside world, stated as narrowly as it uses it.
//!
//! Production implements these over the ECS client, the Jenkins client and the SSH bootstrapper
//! (`adapters`); every test runs the same adapters against the emulators. Keeping the
//! engine behind these traits keeps the reconcile logic readable: it never sees a request.

use std::future::Future;
use std::net::Ipv4Addr;

use super::model::{AgentNode, CloudInstance};

/// What a node has done, kept where it survives a restart of this process (the Jenkins
/// adapter writes it into the node's description), so that a restarted process goes on from
/// there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivityRecord {
    /// Since when the node has been idle (ms since the Unix epoch).
    pub idle_since_ms: Option<u64>,
    /// Builds started, and the key of the last one counted.
    pub uses: Option<(u32, String)>,
}

/// A launch on one offering.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchRequest {
    pub template: String,
    pub zone: String,
    pub vswitch: String,
    pub instance_type: String,
    pub spot: bool,
    pub count: u32,
    /// Idempotency token: retrying the same request never launches twice.
    pub client_token: String,
    /// Launch id tagged on the instances, for tracing a batch end to end.
    pub launch_id: String,
}

/// Why a launch failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LaunchError {
    /// No capacity on this offering (NoStock, zone not on sale, vswitch out of IPs, quota...):
    /// try elsewhere and avoid it for a while.
    #[error("{code}: {message}")]
    Capacity { code: String, message: String },
    /// Anything else; the cycle gives up on this launch and reports the error.
    #[error("{message}")]
    Other { code: String, message: String },
}

impl LaunchError {
    /// The error code (the cloud's, or the host's own for local refusals): a bounded metric label.
    pub fn code(&self) -> &str {
        match self {
            LaunchError::Capacity { code, .. } | LaunchError::Other { code, .. } => code,
        }
    }
}

/// One zone x vswitch x instance type the cloud can launch, before spot/on-demand split.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudOffering {
    pub zone: String,
    pub vswitch: String,
    pub instance_type: String,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub free_ips: u32,
    /// On-demand stock in this zone.
    pub in_stock: bool,
    /// Spot stock in this zone.
    pub spot_in_stock: bool,
}

/// The ECS side.
pub trait CloudPort: Send + Sync + 'static {
    /// Every instance tagged with our controller id (paged, never per instance).
    fn list_fleet(&self) -> impl Future<Output = anyhow::Result<Vec<CloudInstance>>> + Send;
    /// Zones x vswitches x instance types with stock and free IPs, for the configured VPC.
    fn discover_offerings(&self) -> impl Future<Output = anyhow::Result<Vec<CloudOffering>>> + Send;
    /// Launches instances on one offering, tagged in the same call. Returns their ids.
    fn launch(&self, request: &LaunchRequest) -> impl Future<Output = Result<Vec<String>, LaunchError>> + Send;
    /// Deletes instances (force), in batches of at most 100.
    fn terminate(&self, instance_ids: &[String]) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Demand for one template: queued item ids and their waits, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateQueue {
    pub template: String,
    /// (queue item id, ms waited)
    pub items: Vec<(u64, u64)>,
}

/// What the engine reads from Jenkins each cycle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JenkinsView {
    pub queues: Vec<TemplateQueue>,
    pub unmatched: u32,
    /// Agent nodes owned by this provisioner (anchors excluded).
    pub agents: Vec<AgentNode>,
}

/// Facts about an instance that its Jenkins node description records.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRegistration {
    pub name: String,
    pub template: String,
    pub instance_id: String,
    pub zone: String,
    pub instance_type: String,
}

/// The Jenkins side.
pub trait JenkinsPort: Send + Sync + 'static {
    /// Queue per template and our agents, in one consistent read.
    fn observe(&self, now_ms: u64) -> impl Future<Output = anyhow::Result<JenkinsView>> + Send;
    /// Creates the permanent inbound agent node for an instance (idempotent).
    fn create_node(&self, node: &NodeRegistration) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The agent secret of a node.
    fn agent_secret(&self, name: &str) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// Marks a node temporarily offline (so it takes no new build) or back online.
    fn set_offline(&self, name: &str, offline: bool, reason: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Whether a node is running nothing right now (fresh read, not the cycle's snapshot).
    fn is_idle(&self, name: &str) -> impl Future<Output = anyhow::Result<bool>> + Send;
    /// Deletes a node (idempotent: a missing node is fine).
    fn delete_node(&self, name: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Records in the node itself since when it has been idle and how many builds it started,
    /// so that a restarted process goes on from there (Jenkins exports neither).
    fn record_activity(&self, name: &str, record: &ActivityRecord) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Everything a bootstrap needs about one instance.
#[derive(Debug, Clone)]
pub struct BootstrapTarget {
    pub instance_id: String,
    pub template: String,
    pub ip: Ipv4Addr,
    pub node_name: String,
    pub secret: String,
    /// Give up at this instant (ms since the Unix epoch): the launch deadline.
    pub deadline_ms: u64,
}

/// The SSH side.
pub trait BootstrapPort: Send + Sync + 'static {
    /// Connects, runs the init script once, writes the secret, starts the agent.
    fn bootstrap(&self, target: BootstrapTarget) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The instance was deleted: drop what was kept for it (its pinned host key).
    fn instance_gone(&self, instance_id: &str);
    /// A bounded label for why a bootstrap failed: `host-key`, `unreachable`, `auth`,
    /// `init-script`, `agent-start`, `timeout` or `other` (metrics and the launch hold).
    fn failure_cause(&self, error: &anyhow::Error) -> &'static str {
        let _ = error;
        "other"
    }
}
