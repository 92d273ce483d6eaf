//! Act: carry out the enforced plan and the lifecycle chores.
//!
//! Launches go out per offering in batches of up to 100, tagged in the same call, with an
//! idempotency token; a capacity error marks the offering failed and `place` is asked again for
//! the remainder within the same cycle. Removals drain first: offline in Jenkins, re-check
//! idle, delete the node, then delete the instances in one batch. Bootstraps run in background
//! tasks bounded by a semaphore.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::decide::PolicyPort;
use super::lifecycle::Chore;
use super::model::{BootstrapStatus, Node, NodeState, Offering, Plan, node_name};
use super::offerings::{self, key_of};
use super::ports::{BootstrapPort, BootstrapTarget, CloudPort, JenkinsPort, LaunchError, LaunchRequest, NodeRegistration};
use super::{CycleReport, Engine, now_ms};

/// Instances per RunInstances call (the API's maximum Amount).
const MAX_BATCH: u32 = 100;
/// Times `place` is asked again after capacity errors, per template per cycle.
const MAX_PLACE_ROUNDS: usize = 4;
/// Jenkins calls in flight at once for chores and drains.
const JENKINS_CONCURRENCY: usize = 16;

/// Instances launched on one offering.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Launched {
    pub template: String,
    pub zone: String,
    pub vswitch: String,
    pub instance_type: String,
    pub spot: bool,
    pub instance_ids: Vec<String>,
}

/// A launch that failed, and where.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LaunchFailure {
    pub template: String,
    pub zone: String,
    pub instance_type: String,
    pub spot: bool,
    pub capacity: bool,
    /// The error code, e.g. `OperationDenied.NoStock`.
    pub code: String,
    pub error: String,
}

impl<C, J, B, P, F> Engine<C, J, B, P, F>
where
    C: CloudPort,
    J: JenkinsPort,
    B: BootstrapPort,
    P: PolicyPort,
    F: PolicyPort,
{
    /// Launches what the plan asks for, template by template.
    pub(crate) async fn launch(&self, plan: &Plan, nodes: &[Node], mut all: Vec<Offering>, now: u64, report: &mut CycleReport) {
        for l in &plan.launches {
            let Some(template) = self.config.template(&l.template) else { continue };
            let fleet: Vec<&Node> = nodes.iter().filter(|n| n.template() == l.template).collect();
            let mut remaining = l.count;
            let mut failed_here: BTreeSet<offerings::OfferingKey> = BTreeSet::new();
            for _round in 0..MAX_PLACE_ROUNDS {
                if remaining == 0 {
                    break;
                }
                // Offerings that failed in this cycle are not offered again in it.
                let open: Vec<&Offering> = offerings::for_template(&all, template)
                    .into_iter()
                    .filter(|o| !failed_here.contains(&key_of(o)) && o.last_failure.as_ref().is_none_or(|f| f.at_ms < now))
                    .collect();
                if open.is_empty() {
                    break;
                }
                let decision = self.decider.place(now, template, remaining, &open, &fleet);
                if let Some(e) = &decision.error {
                    report.errors.push(format!("place for {}: {e}", l.template));
                }
                let placements: Vec<(Offering, u32)> =
                    decision.value.iter().filter(|(_, c)| *c > 0).map(|(i, c)| (open[*i].clone(), *c)).collect();
                if placements.is_empty() {
                    break;
                }
                let mut any_capacity_error = false;
                for (offering, count) in placements {
                    let mut left = count;
                    while left > 0 {
                        let amount = left.min(MAX_BATCH);
                        match self.launch_batch(&l.template, &offering, amount).await {
                            Ok(ids) => {
                                let got = ids.len() as u32;
                                self.record_launch(&l.template, &offering, &ids, report).await;
                                remaining = remaining.saturating_sub(got);
                                left -= amount;
                            }
                            Err(e) => {
                                let capacity = matches!(e, LaunchError::Capacity { .. });
                                if let LaunchError::Capacity { code, .. } = &e {
                                    // Marked in the cache (for later cycles and the policy) and
                                    // re-read, so the next round and other templates see it.
                                    let mut cache = self.offerings.lock().unwrap();
                                    cache.mark_failed(key_of(&offering), code, now.max(now_ms()));
                                    all = cache.all(&self.config.cloud, now);
                                    any_capacity_error = true;
                                }
                                failed_here.insert(key_of(&offering));
                                tracing::warn!(template = %l.template, zone = %offering.zone, instance_type = %offering.instance_type, spot = offering.spot, error = %e, "launch failed");
                                report.launch_errors.push(LaunchFailure {
                                    template: l.template.clone(),
                                    zone: offering.zone.clone(),
                                    instance_type: offering.instance_type.clone(),
                                    spot: offering.spot,
                                    capacity,
                                    code: e.code().to_owned(),
                                    error: e.to_string(),
                                });
                                break;
                            }
                        }
                    }
                }
                if !any_capacity_error {
                    break;
                }
            }
            if remaining > 0 {
                report.unplaced.insert(l.template.clone(), remaining);
            }
        }
    }

    async fn launch_batch(&self, template: &str, o: &Offering, amount: u32) -> Result<Vec<String>, LaunchError> {
        let seq = self.launch_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let launch_id = format!("{}-{}-{seq}", self.config.controller_id, self.run_id);
        // Deterministic per launch: the client's retries of this call reuse it, so a retried
        // RunInstances never launches twice.
        let digest = Sha256::digest(format!("{launch_id}/{template}/{}/{}/{}/{}/{amount}", o.zone, o.vswitch, o.instance_type, o.spot));
        let client_token: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let request = LaunchRequest {
            template: template.to_owned(),
            zone: o.zone.clone(),
            vswitch: o.vswitch.clone(),
            instance_type: o.instance_type.clone(),
            spot: o.spot,
            count: amount,
            client_token,
            launch_id,
        };
        self.cloud.launch(&request).await
    }

    /// Books the new instances and registers their Jenkins nodes at once.
    async fn record_launch(&self, template: &str, o: &Offering, ids: &[String], report: &mut CycleReport) {
        let now = now_ms();
        {
            let mut book = self.book.lock().unwrap();
            for id in ids {
                book.launched.insert(id.clone(), now);
            }
        }
        let regs: Vec<NodeRegistration> = ids
            .iter()
            .map(|id| NodeRegistration {
                name: node_name(template, id),
                template: template.to_owned(),
                instance_id: id.clone(),
                zone: o.zone.clone(),
                instance_type: o.instance_type.clone(),
            })
            .collect();
        // Owned items: a stream over borrowed ones is not `Send` enough for `tokio::spawn`.
        let results: Vec<_> = futures::stream::iter(regs)
            .map(|r| async move {
                let res = self.jenkins.create_node(&r).await;
                (r, res)
            })
            .buffer_unordered(JENKINS_CONCURRENCY)
            .collect()
            .await;
        for (r, res) in results {
            if let Err(e) = res {
                // The next cycle's lifecycle pass retries: the instance has no node yet.
                report.errors.push(format!("creating node {} failed: {e:#}", r.name));
            }
        }
        tracing::info!(template, zone = %o.zone, instance_type = %o.instance_type, spot = o.spot, count = ids.len(), "launched");
        report.launched.push(Launched {
            template: template.to_owned(),
            zone: o.zone.clone(),
            vswitch: o.vswitch.clone(),
            instance_type: o.instance_type.clone(),
            spot: o.spot,
            instance_ids: ids.to_vec(),
        });
    }

    /// Nodes that have run their last allowed build (`max-uses`) take no other: each is marked
    /// temporarily offline as soon as that build is seen, so Jenkins cannot hand it a queued
    /// build when it finishes; the policy retires it once it is idle. Without this, a one-shot
    /// agent ran a second build whenever builds were waiting as its first one ended.
    pub(crate) async fn fence_used_up(&self, nodes: &[Node], report: &mut CycleReport) {
        let targets: Vec<(String, u32)> = nodes
            .iter()
            .filter_map(|n| {
                let max = self.config.template(n.template())?.max_uses;
                let a = n.agent.as_ref()?;
                (n.state == NodeState::Online && max > 0 && a.uses >= max && !a.temporarily_offline)
                    .then(|| (node_name(n.template(), n.instance_id()), max))
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(targets)
            .map(|(name, max)| async move {
                let reason = format!("ecs-provisioner: used up (max-uses {max}); removed when idle");
                let r = self.jenkins.set_offline(&name, true, &reason).await;
                (name, max, r)
            })
            .buffer_unordered(JENKINS_CONCURRENCY)
            .collect()
            .await;
        for (name, max, r) in results {
            match r {
                Ok(()) => report.chores.push(("fence-used-up".into(), name, format!("max-uses {max} reached"))),
                Err(e) => report.errors.push(format!("fencing used-up node {name} failed: {e:#}")),
            }
        }
    }

    /// Drains and deletes the plan's removals.
    pub(crate) async fn remove(&self, plan: &Plan, nodes: &[Node], report: &mut CycleReport) {
        let targets: Vec<(Node, String)> = plan
            .removals
            .iter()
            .filter_map(|r| nodes.iter().find(|n| n.instance_id() == r.instance_id).map(|n| (n.clone(), r.reason.clone())))
            .collect();
        {
            let mut book = self.book.lock().unwrap();
            for (n, _) in &targets {
                book.draining.insert(n.instance_id().to_owned());
            }
        }
        let drained: Vec<_> = futures::stream::iter(targets)
            .map(|(n, reason)| async move {
                let result = self.drain(&n, &reason).await;
                (n, reason, result)
            })
            .buffer_unordered(JENKINS_CONCURRENCY)
            .collect()
            .await;
        let mut delete = Vec::new();
        for (n, reason, result) in drained {
            let id = n.instance_id().to_owned();
            match result {
                Ok(true) => delete.push((id, reason)),
                Ok(false) => {
                    self.book.lock().unwrap().draining.remove(&id);
                    report.kept_busy.push(id);
                }
                Err(e) => {
                    self.book.lock().unwrap().draining.remove(&id);
                    report.errors.push(format!("draining {id} failed: {e:#}"));
                }
            }
        }
        self.terminate(delete, report).await;
    }

    /// Offline, re-check idle, delete the node. `Ok(false)`: it took a build; put back online.
    async fn drain(&self, n: &Node, reason: &str) -> anyhow::Result<bool> {
        let name = node_name(n.template(), n.instance_id());
        if n.agent.is_some() {
            self.jenkins.set_offline(&name, true, &format!("ecs-provisioner: removing ({reason})")).await?;
            if !self.jenkins.is_idle(&name).await? {
                self.jenkins.set_offline(&name, false, "").await?;
                tracing::info!(node = %name, "node took a build while draining; kept");
                return Ok(false);
            }
            self.jenkins.delete_node(&name).await?;
        }
        Ok(true)
    }

    /// Deletes instances in batches, booking them as terminating first.
    async fn terminate(&self, targets: Vec<(String, String)>, report: &mut CycleReport) {
        if targets.is_empty() {
            return;
        }
        let now = now_ms();
        {
            let mut book = self.book.lock().unwrap();
            for (id, reason) in &targets {
                book.draining.remove(id);
                book.terminating.insert(id.clone(), (reason.clone(), now));
            }
        }
        let ids: Vec<String> = targets.iter().map(|(id, _)| id.clone()).collect();
        match self.cloud.terminate(&ids).await {
            Ok(()) => {
                for (id, reason) in targets {
                    self.bootstrapper.instance_gone(&id);
                    tracing::info!(instance = %id, reason = %reason, "terminated");
                    report.removed.push(id);
                }
            }
            // Booked as terminating: the lifecycle pass re-sends the delete later.
            Err(e) => report.errors.push(format!("deleting {} instance(s) failed: {e:#}", ids.len())),
        }
    }

    /// Housekeeping from the lifecycle pass.
    pub(crate) async fn do_chores(self: &Arc<Self>, chores: Vec<Chore>, nodes: &[Node], report: &mut CycleReport) {
        let mut terminate = Vec::new();
        let mut jenkins_work = Vec::new();
        for chore in chores {
            report.chores.push(super::describe_chore(&chore));
            match chore {
                Chore::Terminate { instance_id, reason } => {
                    if let Some(n) = nodes.iter().find(|n| n.instance_id() == instance_id)
                        && n.agent.is_some() {
                            jenkins_work.push(Chore::DeleteNode { name: node_name(n.template(), &instance_id), reason: reason.clone() });
                        }
                    terminate.push((instance_id, reason));
                }
                Chore::Bootstrap { instance_id } => {
                    if let Some(n) = nodes.iter().find(|n| n.instance_id() == instance_id) {
                        self.spawn_bootstrap(n);
                    }
                }
                other => jenkins_work.push(other),
            }
        }
        let results: Vec<_> = futures::stream::iter(jenkins_work)
            .map(|c| async move {
                let r = match &c {
                    Chore::CreateNode { instance_id } => match nodes.iter().find(|n| n.instance_id() == instance_id) {
                        Some(n) => {
                            self.jenkins
                                .create_node(&NodeRegistration {
                                    name: node_name(n.template(), instance_id),
                                    template: n.template().to_owned(),
                                    instance_id: instance_id.clone(),
                                    zone: n.instance.zone.clone(),
                                    instance_type: n.instance.instance_type.clone(),
                                })
                                .await
                        }
                        None => Ok(()),
                    },
                    Chore::DeleteNode { name, .. } => self.jenkins.delete_node(name).await,
                    _ => Ok(()),
                };
                (c, r)
            })
            .buffer_unordered(JENKINS_CONCURRENCY)
            .collect()
            .await;
        for (c, r) in results {
            if let Err(e) = r {
                report.errors.push(format!("{:?} failed: {e:#}", super::describe_chore(&c)));
            }
        }
        self.terminate(terminate, report).await;
    }

    /// Starts a background bootstrap; its outcome lands in the book for the next cycle.
    fn spawn_bootstrap(self: &Arc<Self>, n: &Node) {
        let Some(ip) = n.instance.private_ip else { return };
        let id = n.instance_id().to_owned();
        let template = n.template().to_owned();
        let launch_timeout = self.config.template(&template).map_or(0, |t| t.launch_timeout.as_millis() as u64);
        self.book.lock().unwrap().bootstraps.insert(id.clone(), BootstrapStatus::Running);
        let engine = Arc::clone(self);
        let deadline_ms = n.instance.created_ms + launch_timeout;
        self.tasks.lock().unwrap().spawn(async move {
            let _slot = engine.bootstrap_slots.acquire().await;
            let name = node_name(&template, &id);
            let result = async {
                let secret = engine.jenkins.agent_secret(&name).await?;
                engine
                    .bootstrapper
                    .bootstrap(BootstrapTarget { instance_id: id.clone(), template, ip, node_name: name, secret, deadline_ms })
                    .await
            }
            .await;
            let status = match result {
                Ok(()) => BootstrapStatus::Done,
                Err(e) => {
                    tracing::warn!(instance = %id, error = %format!("{e:#}"), "bootstrap failed");
                    BootstrapStatus::Failed(format!("{e:#}"))
                }
            };
            engine.book.lock().unwrap().bootstraps.insert(id, status);
            engine.wake.notify_one();
        });
    }
}
