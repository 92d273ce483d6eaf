//! The parts of Jenkins' JSON API the provisioner reads, as typed values.
//!
//! Every field is optional or defaulted on the wire: a `tree` filter or missing permissions
//! leave fields out, and a missing field must not fail a whole listing.

use serde::Deserialize;

/// The `tree` the client asks `/computer/api/json` for: everything [`Computer`] reads.
pub const COMPUTER_TREE: &str = "computer[_class,displayName,description,idle,offline,temporarilyOffline,\
offlineCauseReason,offlineCause[description],numExecutors,assignedLabels[name],\
executors[number,idle,currentExecutable[url,number,timestamp]],\
oneOffExecutors[number,idle,currentExecutable[url,number,timestamp]],absoluteRemotePath]";

/// The `tree` the client asks `/queue/api/json` for: everything [`QueueItem`] reads.
pub const QUEUE_TREE: &str = "items[_class,id,buildable,blocked,stuck,pending,inQueueSince,\
buildableStartMilliseconds,why,task[_class,name,url,labelExpression]]";

/// The `tree` of a cheap queue read: only what says an item waits for an executor. The queue
/// watcher reads it every 100 ms, and at 1,000 queued items the full [`QUEUE_TREE`] (reasons,
/// tasks, label expressions) is most of the bytes.
pub const QUEUE_IDS_TREE: &str = "items[id,buildable,pending]";

/// One computer from `/computer/api/json` (the built-in node included).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Computer {
    /// Java class of the computer (`_class`), e.g. `hudson.slaves.SlaveComputer`.
    #[serde(rename = "_class")]
    pub class: String,
    /// The node name (the built-in node shows "Built-In Node").
    pub display_name: String,
    /// Node description; `None` if not exported.
    pub description: Option<String>,
    /// No executor is running anything.
    pub idle: bool,
    /// Temporarily offline or not connected.
    pub offline: bool,
    /// Marked offline by a user (or by us); says nothing about the connection.
    pub temporarily_offline: bool,
    /// Text of the offline cause (`offlineCauseReason`); `None` if not exported.
    pub offline_cause_reason: Option<String>,
    /// Why the node is offline: a user's mark (`OfflineCause$UserCause`), a broken channel
    /// (`OfflineCause$ChannelTermination`), ... Null for a node that never connected.
    pub offline_cause: Option<OfflineCause>,
    /// Number of executors configured (`numExecutors`).
    pub num_executors: u32,
    /// Labels of the node (`assignedLabels`), its own name included.
    pub assigned_labels: Vec<LabelName>,
    /// The node's regular executors.
    pub executors: Vec<Executor>,
    /// The node's one-off (flyweight) executors (`oneOffExecutors`), e.g. for Pipeline bodies.
    pub one_off_executors: Vec<Executor>,
    /// The agent's root directory: non-null only while a channel exists (and the caller has
    /// Agent/Connect), so the one exported hint that a temporarily-offline node is connected.
    pub absolute_remote_path: Option<String>,
}

/// `offlineCause`: the class says what kind of cause it is.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct OfflineCause {
    /// Java class of the cause (`_class`), e.g. `hudson.slaves.OfflineCause$UserCause`.
    #[serde(rename = "_class")]
    pub class: String,
    /// Text of the cause, exported for simple causes only.
    pub description: Option<String>,
}

impl Computer {
    /// True for the controller's own node, which the provisioner never manages.
    pub fn is_built_in(&self) -> bool {
        self.class.ends_with("MasterComputer") || self.class.ends_with("BuiltInComputer")
    }

    /// The node's label names (Jenkins includes the node's own name).
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.assigned_labels.iter().map(|l| l.name.as_str())
    }

    /// The builds running on this computer right now, one per busy executor.
    pub fn running(&self) -> impl Iterator<Item = &Executable> {
        self.executors
            .iter()
            .chain(&self.one_off_executors)
            .filter_map(|e| e.current_executable.as_ref())
    }

    /// Whether an agent is connected, whatever its offline mark says. Without Agent/Connect
    /// Jenkins hides the path, and a marked node then counts as disconnected.
    pub fn connected(&self) -> bool {
        !self.offline || self.absolute_remote_path.is_some()
    }

    /// Not connected now, but connected before: Jenkins keeps a cause for the broken channel
    /// (a node that never connected has none), and no one marked it offline.
    pub fn dropped(&self) -> bool {
        !self.connected() && !self.temporarily_offline && self.offline_cause.is_some()
    }

    /// Busy executors, counting one-off (flyweight) ones.
    pub fn busy_executors(&self) -> u32 {
        self.running().count() as u32
    }
}

/// `{"name": ...}` as in `assignedLabels`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct LabelName {
    /// The label name.
    pub name: String,
}

/// One executor of a computer.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Executor {
    /// Executor number on its computer.
    pub number: u32,
    /// Whether the executor runs nothing.
    pub idle: bool,
    /// What it runs (`currentExecutable`); `None` when idle or when the caller lacks Item/Read on it.
    pub current_executable: Option<Executable>,
}

/// What an executor runs: a build, or a Pipeline `node {}` block's placeholder.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Executable {
    /// The build's URL as Jenkins exports it.
    pub url: Option<String>,
    /// The build number.
    pub number: Option<u64>,
    /// The build's `timestamp`, epoch milliseconds.
    pub timestamp: Option<u64>,
}

impl Executable {
    /// A key that identifies this build across listings.
    pub fn key(&self) -> String {
        format!(
            "{}#{}",
            self.url.as_deref().unwrap_or(""),
            self.number.unwrap_or(0)
        )
    }
}

/// One item of `/queue/api/json`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueItem {
    /// Java class of the item (`_class`), e.g. `hudson.model.Queue$BuildableItem`.
    #[serde(rename = "_class")]
    pub class: String,
    /// Queue item id.
    pub id: u64,
    /// Whether the item is waiting only for an executor.
    pub buildable: bool,
    /// Whether the item is blocked (e.g. by a running build of the same job).
    pub blocked: bool,
    /// Jenkins thinks the item is stuck: its label is offline, or it has waited far longer than expected.
    pub stuck: bool,
    /// The item has been handed to an executor but has not started yet.
    pub pending: bool,
    /// Epoch ms the item entered the queue.
    pub in_queue_since: u64,
    /// Epoch ms the item became buildable (`buildableStartMilliseconds`); only for blocked and buildable items.
    pub buildable_start_milliseconds: Option<u64>,
    /// The English (`Accept-Language: en`) reason it waits.
    pub why: Option<String>,
    /// The queued task.
    pub task: Task,
}

impl QueueItem {
    /// Waits for an executor and has none yet: demand for a node. The cycle's demand and the
    /// queue watcher both count items by this test, so they agree on what is new demand.
    pub fn waits_for_executor(&self) -> bool {
        self.buildable && !self.pending
    }
}

/// The queued task: a job, or a Pipeline `node {}` placeholder.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Task {
    /// Java class of the task (`_class`).
    #[serde(rename = "_class")]
    pub class: String,
    /// Task name (job name, or a Pipeline step's placeholder name).
    pub name: String,
    /// The task's URL as Jenkins exports it; `None` if absent.
    pub url: Option<String>,
    /// Present (possibly null) only for `AbstractProject`s such as freestyle jobs.
    #[serde(deserialize_with = "present")]
    pub label_expression: Option<Option<String>>,
}

/// Keeps "present but null" apart from "absent" (absent stays `None` through `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `/label/<expr>/api/json`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct LabelInfo {
    /// The label expression.
    pub name: String,
    /// Executors of the label's nodes that are online or connecting and accept tasks (`idleExecutors`).
    pub idle_executors: u32,
    /// Busy executors of the label's nodes (`busyExecutors`).
    pub busy_executors: u32,
    /// Executors of the label's online nodes (`totalExecutors`).
    pub total_executors: u32,
    /// True if no node of the label is online, including when it has no nodes.
    pub offline: bool,
    /// Nodes carrying the label.
    pub nodes: Vec<LabelNode>,
}

/// A node as listed under a label.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct LabelNode {
    /// Node name (`nodeName`).
    pub node_name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ComputerSet {
    pub computer: Vec<Computer>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct Queue {
    pub items: Vec<QueueItem>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_expression_presence_is_kept() {
        let free: Task = serde_json::from_str(r#"{"name":"f","labelExpression":null}"#).unwrap();
        assert_eq!(free.label_expression, Some(None));
        let pipe: Task = serde_json::from_str(r#"{"name":"p"}"#).unwrap();
        assert_eq!(pipe.label_expression, None);
        let lab: Task = serde_json::from_str(r#"{"name":"f","labelExpression":"linux"}"#).unwrap();
        assert_eq!(lab.label_expression, Some(Some("linux".into())));
    }
}
