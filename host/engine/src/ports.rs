//! What the engine needs from the outside world, stated as narrowly as it uses it.
//!
//! Production implements these over the ECS client, the Jenkins client and the SSH bootstrapper
//! (`adapters`); every test runs the same adapters against the emulators. Keeping the
//! engine behind these traits keeps the reconcile logic readable: it never sees a request.

use std::future::Future;
use std::net::Ipv4Addr;

use ecsp_config::StoppedModeConfig;

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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LaunchRequest {
    /// Template name.
    pub template: String,
    /// Zone to launch in.
    pub zone: String,
    /// VSwitch to attach to.
    pub vswitch: String,
    /// Instance type.
    pub instance_type: String,
    /// Spot instances when true, on-demand otherwise.
    pub spot: bool,
    /// How many instances.
    pub count: u32,
    /// Idempotency token: retrying the same request never launches twice.
    pub client_token: String,
    /// Launch id tagged on the instances, for tracing a batch end to end.
    pub launch_id: String,
    /// User-data launches (always one instance): the node created for it, whose agent the
    /// instance starts itself.
    pub user_data_node: Option<UserDataNode>,
}

/// The Jenkins node a user-data launch starts an agent for. Its `Debug` hides the secret.
///
/// With `[ha]` it is part of the launch record kept in etcd, so that a new leader can resend
/// the launch whole: protect etcd as the agent secrets' store (TLS and auth; docs/configuration.md).
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UserDataNode {
    /// Jenkins node name ([`super::model::user_data_node_name`]); tagged on the instance.
    pub name: String,
    /// The node's inbound-agent secret, rendered into the user data.
    pub secret: String,
}

impl std::fmt::Debug for UserDataNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserDataNode").field("name", &self.name).field("secret", &"<redacted>").finish()
    }
}

/// Why a launch failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LaunchError {
    /// No capacity on this offering (NoStock, zone not on sale, vswitch out of IPs, quota...):
    /// try elsewhere and avoid it for a while.
    #[error("{code}: {message}")]
    Capacity {
        /// The error code as the cloud sent it.
        code: String,
        /// The code as a bounded metric label (see [`LaunchError::label`]).
        label: &'static str,
        /// What went wrong, for logs and the report.
        message: String,
    },
    /// Anything else; the cycle gives up on this launch and reports the error.
    #[error("{message}")]
    Other {
        /// The error code as the cloud sent it (or the host's own for local refusals).
        code: String,
        /// The code as a bounded metric label (see [`LaunchError::label`]).
        label: &'static str,
        /// What went wrong, for logs and the report.
        message: String,
    },
}

impl LaunchError {
    /// The error code (the cloud's, or the host's own for local refusals). It is the cloud's
    /// text: free-form and unbounded, so metrics never use it.
    pub fn code(&self) -> &str {
        match self {
            LaunchError::Capacity { code, .. } | LaunchError::Other { code, .. } => code,
        }
    }

    /// The code as a metric label: one of a closed set of known codes, or `other`, chosen by
    /// the adapter that knows the cloud's codes. A hostile endpoint's `Code` copied into a
    /// label could write any line into `/metrics`.
    pub fn label(&self) -> &'static str {
        match self {
            LaunchError::Capacity { label, .. } | LaunchError::Other { label, .. } => label,
        }
    }
}

/// One zone x vswitch x instance type the cloud can launch, before spot/on-demand split.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudOffering {
    /// Zone.
    pub zone: String,
    /// VSwitch in that zone.
    pub vswitch: String,
    /// Instance type.
    pub instance_type: String,
    /// vCPUs of the instance type.
    pub vcpus: u32,
    /// Memory of the instance type, MiB.
    pub memory_mib: u32,
    /// Free private IP addresses left in the vswitch.
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
    /// Those of `instance_ids` that exist and carry our controller tag, asked by id (100 ids
    /// per call): the cheap look between full listings at instances whose status is changing.
    fn describe_instances(&self, instance_ids: &[String]) -> impl Future<Output = anyhow::Result<Vec<CloudInstance>>> + Send;
    /// Zones x vswitches x instance types with stock and free IPs, for the configured VPC.
    fn discover_offerings(&self) -> impl Future<Output = anyhow::Result<Vec<CloudOffering>>> + Send;
    /// Launches instances on one offering, tagged in the same call. Returns their ids.
    fn launch(&self, request: &LaunchRequest) -> impl Future<Output = Result<Vec<String>, LaunchError>> + Send;
    /// Deletes instances (force), in batches of at most 100.
    fn terminate(&self, instance_ids: &[String]) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Stops running instances, keeping their disks (the warm pool), in `mode`.
    fn stop(&self, instance_ids: &[String], mode: StoppedModeConfig) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Starts one stopped instance. The zone being out of stock (after an economical-mode
    /// stop) is a [`LaunchError::Capacity`].
    fn start(&self, instance_id: &str) -> impl Future<Output = Result<(), LaunchError>> + Send;
    /// The instance's console output (`GetInstanceConsoleOutput`, decoded): what a user-data
    /// agent that never came online printed.
    fn console_output(&self, instance_id: &str) -> impl Future<Output = anyhow::Result<String>> + Send;
}

/// Demand for one template: queued item ids and their waits, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateQueue {
    /// Template name.
    pub template: String,
    /// (queue item id, ms waited)
    pub items: Vec<(u64, u64)>,
}

/// What the engine reads from Jenkins each cycle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JenkinsView {
    /// Demand per template.
    pub queues: Vec<TemplateQueue>,
    /// Buildable queue items no template can serve (or whose label cannot be known).
    pub unmatched: u32,
    /// Agent nodes owned by this provisioner (anchors excluded).
    pub agents: Vec<AgentNode>,
}

/// Facts about an instance that its Jenkins node description records.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRegistration {
    /// Jenkins node name.
    pub name: String,
    /// Template the instance was launched for.
    pub template: String,
    /// ECS instance id.
    pub instance_id: String,
    /// Zone the instance runs in.
    pub zone: String,
    /// Instance type.
    pub instance_type: String,
}

/// The Jenkins side.
pub trait JenkinsPort: Send + Sync + 'static {
    /// Queue per template and our agents, in one consistent read.
    fn observe(&self, now_ms: u64) -> impl Future<Output = anyhow::Result<JenkinsView>> + Send;
    /// Ids of the queue's buildable items, read on a short interval to notice new demand
    /// between cycles. The default reads the whole view; adapters read only the queue.
    fn queued_ids(&self, now_ms: u64) -> impl Future<Output = anyhow::Result<Vec<u64>>> + Send {
        async move {
            let view = self.observe(now_ms).await?;
            Ok(view.queues.iter().flat_map(|q| q.items.iter().map(|(id, _)| *id)).collect())
        }
    }
    /// Creates the permanent inbound agent node for an instance (idempotent).
    fn create_node(&self, node: &NodeRegistration) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The agent secret of a node.
    fn agent_secret(&self, name: &str) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// Marks a node temporarily offline (so it takes no new build) or back online.
    fn set_offline(&self, name: &str, offline: bool, reason: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Marks a node temporarily offline with `reason`, replacing the message it has (the warm
    /// pool's marks move a node from stopped to starting). By default [`JenkinsPort::set_offline`],
    /// which leaves an existing message alone.
    fn set_offline_reason(&self, name: &str, reason: &str) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.set_offline(name, true, reason)
    }
    /// Whether a node is running nothing right now (fresh read, not the cycle's snapshot).
    fn is_idle(&self, name: &str) -> impl Future<Output = anyhow::Result<bool>> + Send;
    /// Deletes a node (idempotent: a missing node is fine).
    fn delete_node(&self, name: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Records in the node itself since when it has been idle and how many builds it started,
    /// so that a restarted process goes on from there (Jenkins exports neither).
    fn record_activity(&self, name: &str, record: &ActivityRecord) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Everything a bootstrap needs about one instance. Its `Debug` hides the agent secret.
#[derive(Clone)]
pub struct BootstrapTarget {
    /// ECS instance id.
    pub instance_id: String,
    /// Template the instance was launched for.
    pub template: String,
    /// Address SSH connects to.
    pub ip: Ipv4Addr,
    /// Jenkins node name the agent connects as.
    pub node_name: String,
    /// The node's inbound-agent secret.
    pub secret: String,
    /// Give up at this instant (ms since the Unix epoch): the launch deadline.
    pub deadline_ms: u64,
}

impl std::fmt::Debug for BootstrapTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapTarget")
            .field("instance_id", &self.instance_id)
            .field("template", &self.template)
            .field("ip", &self.ip)
            .field("node_name", &self.node_name)
            .field("secret", &"<redacted>")
            .field("deadline_ms", &self.deadline_ms)
            .finish()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_target_debug_redacts_the_agent_secret() {
        let t = BootstrapTarget {
            instance_id: "i-1".into(),
            template: "linux".into(),
            ip: Ipv4Addr::LOCALHOST,
            node_name: "linux-i-1".into(),
            secret: "0123456789abcdef-agent-secret".into(),
            deadline_ms: 7,
        };
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("agent-secret"), "{dbg}");
        assert!(dbg.contains("<redacted>") && dbg.contains("linux-i-1") && dbg.contains("i-1"), "{dbg}");
        assert!(!format!("{t:#?}").contains("agent-secret"));
    }
}
