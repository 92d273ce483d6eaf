//! The records of a journal file, format `ecsp-journal` version 1: a [`Header`] line, then one
//! [`Cycle`] line per cycle.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use ecsp_engine::CycleReport;

/// The `format` of every journal file's first line.
pub const FORMAT: &str = "ecsp-journal";
/// The version this build writes and reads. A reader refuses a newer one by name.
pub const VERSION: u32 = 1;

/// The first line of a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`] when written by this build.
    pub version: u32,
    /// `controller-id` of the provisioner that wrote it.
    pub controller_id: String,
    /// When the file was started, ms since the Unix epoch.
    pub started_ms: u64,
    /// Each template's label expression (its labels joined by `&&`), so that a trace made from
    /// the journal asks for the nodes the builds asked for.
    pub templates: BTreeMap<String, String>,
}

/// One cycle. Queue items and builds appear when first seen (`arrivals`, `build_starts`) and
/// when gone (`build_ends`), not in every cycle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cycle {
    /// Cycle number in the writing process.
    pub cycle: u64,
    /// When it ran, ms since the Unix epoch.
    pub at_ms: u64,
    /// `policy`, `fallback` or `hold`; absent if the cycle did not get as far as deciding.
    pub decided_by: Option<String>,
    /// Whether the policy failed (its message is not kept: it is the policy's free text).
    pub policy_failed: bool,
    /// Queued builds per template.
    pub queued: BTreeMap<String, u32>,
    /// Queued builds no template can serve.
    pub unmatched_queued: u32,
    /// Nodes per template and state.
    pub nodes: BTreeMap<String, BTreeMap<String, u32>>,
    /// What the policy proposed: nodes to launch per template, and instances to remove.
    pub proposed: PlanRecord,
    /// The plan after the host's invariants.
    pub enforced: PlanRecord,
    /// The invariants that changed the plan (`template-max`, `per-cycle`, ...), one per clamp.
    pub clamps: Vec<String>,
    /// Launches: template, offering and the instance ids.
    pub launched: Vec<LaunchRecord>,
    /// Launches that failed: template, offering and the cloud's error code.
    pub launch_failed: Vec<LaunchFailureRecord>,
    /// Nodes the placement could not fit, per template.
    pub unplaced: BTreeMap<String, u32>,
    /// Instances deleted.
    pub removed: Vec<String>,
    /// Instances stopped into the warm pool.
    pub stopped: Vec<String>,
    /// Stopped instances started again.
    pub started: Vec<String>,
    /// Errors that did not stop the cycle (counted; their text stays in the log).
    pub errors: u32,
    /// Queue items a template serves, first seen this cycle.
    pub arrivals: Vec<Arrival>,
    /// Builds first seen running on a node of ours this cycle.
    pub build_starts: Vec<BuildStart>,
    /// Builds seen running before and not any more: ended (or their node went away).
    pub build_ends: Vec<BuildEnd>,
}

/// A plan without the policy's reasons.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanRecord {
    /// Nodes to launch per template.
    pub launch: BTreeMap<String, u32>,
    /// Instances to remove.
    pub remove: Vec<String>,
}

/// A launch that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchRecord {
    /// Template.
    pub template: String,
    /// Zone.
    pub zone: String,
    /// Instance type.
    pub instance_type: String,
    /// Spot capacity.
    pub spot: bool,
    /// Instances created.
    pub instance_ids: Vec<String>,
}

/// A launch that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchFailureRecord {
    /// Template.
    pub template: String,
    /// Zone.
    pub zone: String,
    /// Instance type.
    pub instance_type: String,
    /// Spot capacity.
    pub spot: bool,
    /// Whether the cloud lacked capacity (no stock, quota): the offering was avoided a while.
    pub capacity: bool,
    /// The cloud's error code, e.g. `OperationDenied.NoStock`.
    pub code: String,
}

/// A queue item first seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arrival {
    /// The template that serves it.
    pub template: String,
    /// Jenkins' queue item id.
    pub queue_id: u64,
    /// When it entered the queue, ms since the Unix epoch (Jenkins' `inQueueSince`).
    pub since_ms: u64,
}

/// A build first seen running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildStart {
    /// The build: the first 16 hex digits of the SHA-256 of its URL and number.
    pub build: String,
    /// The instance whose node runs it.
    pub instance_id: String,
    /// That node's template.
    pub template: String,
    /// When it started, ms since the Unix epoch (Jenkins' `timestamp`).
    pub at_ms: u64,
}

/// A build no longer seen running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildEnd {
    /// As in [`BuildStart::build`].
    pub build: String,
    /// The first cycle that did not see it, ms since the Unix epoch: the end is at most one
    /// cycle earlier.
    pub at_ms: u64,
}

/// The queue items and builds of the previous cycle, to tell what is new and what is gone.
#[derive(Debug, Default)]
pub struct Seen {
    queue: BTreeSet<u64>,
    builds: BTreeSet<String>,
}

/// The digest that names a build in the journal (its URL may name a customer's project).
pub fn build_digest(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Cycle {
    /// The record of `report`; `seen` carries the previous cycle's queue and builds.
    pub fn of(report: &CycleReport, seen: &mut Seen) -> Cycle {
        let plan = |p: &ecsp_engine::model::Plan| {
            let mut launch = BTreeMap::new();
            for l in &p.launches {
                *launch.entry(l.template.clone()).or_default() += l.count;
            }
            PlanRecord { launch, remove: p.removals.iter().map(|r| r.instance_id.clone()).collect() }
        };
        let arrivals = report
            .queue_items
            .iter()
            .filter(|(_, id, _)| !seen.queue.contains(id))
            .map(|(template, id, since)| Arrival { template: template.clone(), queue_id: *id, since_ms: *since })
            .collect();
        seen.queue = report.queue_items.iter().map(|(_, id, _)| *id).collect();
        let running: BTreeMap<String, &(String, String, String, u64)> =
            report.running_builds.iter().map(|b| (build_digest(&b.2), b)).collect();
        let build_starts = running
            .iter()
            .filter(|(digest, _)| !seen.builds.contains(*digest))
            .map(|(digest, (instance, template, _, at))| BuildStart {
                build: digest.clone(),
                instance_id: instance.clone(),
                template: template.clone(),
                at_ms: *at,
            })
            .collect();
        let build_ends = seen
            .builds
            .iter()
            .filter(|d| !running.contains_key(*d))
            .map(|d| BuildEnd { build: d.clone(), at_ms: report.at_ms })
            .collect();
        seen.builds = running.into_keys().collect();
        Cycle {
            cycle: report.cycle,
            at_ms: report.at_ms,
            decided_by: report.decided_by.map(|d| d.as_str().to_owned()),
            policy_failed: report.policy_error.is_some(),
            queued: report.queued.clone(),
            unmatched_queued: report.unmatched_queued,
            nodes: report.nodes.clone(),
            proposed: plan(&report.proposed),
            enforced: plan(&report.enforced),
            clamps: report.clamps.iter().map(|c| c.rule.to_owned()).collect(),
            launched: report
                .launched
                .iter()
                .map(|l| LaunchRecord {
                    template: l.template.clone(),
                    zone: l.zone.clone(),
                    instance_type: l.instance_type.clone(),
                    spot: l.spot,
                    instance_ids: l.instance_ids.clone(),
                })
                .collect(),
            launch_failed: report
                .launch_errors
                .iter()
                .map(|f| LaunchFailureRecord {
                    template: f.template.clone(),
                    zone: f.zone.clone(),
                    instance_type: f.instance_type.clone(),
                    spot: f.spot,
                    capacity: f.capacity,
                    code: f.code.clone(),
                })
                .collect(),
            unplaced: report.unplaced.clone(),
            removed: report.removed.clone(),
            stopped: report.stopped.clone(),
            started: report.started.clone(),
            errors: report.errors.len() as u32,
            arrivals,
            build_starts,
            build_ends,
        }
    }
}
