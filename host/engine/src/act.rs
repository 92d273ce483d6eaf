//! Act: carry out the enforced plan and the lifecycle chores.
//!
//! Launches go out per offering in batches of up to 100, tagged in the same call, with an
//! idempotency token; a capacity error marks the offering failed and `place` is asked again for
//! the remainder within the same cycle. Removals drain first: offline in Jenkins, re-check
//! idle, delete the node, then delete the instances in one batch. Bootstraps run in background
//! tasks bounded by a semaphore.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::decide::PolicyPort;
use super::lifecycle::Chore;
use super::lifecycle::{REMOVING_PREFIX, USED_UP_PREFIX};
use super::model::{BootstrapStatus, CloudInstance, CloudStatus, Node, NodeState, Offering, Plan, node_name};
use super::offerings::{self, key_of};
use super::ports::{
    BootstrapPort, BootstrapTarget, CloudPort, JenkinsPort, LaunchError, LaunchRequest, NodeRegistration, UserDataNode,
};
use super::{CycleReport, Engine};

/// Instances per RunInstances call (the API's maximum Amount).
const MAX_BATCH: u32 = 100;
/// Times `place` is asked again after capacity errors, per template per cycle.
const MAX_PLACE_ROUNDS: usize = 4;
/// Jenkins calls in flight at once for chores and drains.
pub(crate) const JENKINS_CONCURRENCY: usize = 16;

/// Instances launched on one offering.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Launched {
    /// Template name.
    pub template: String,
    /// Zone launched in.
    pub zone: String,
    /// VSwitch attached to.
    pub vswitch: String,
    /// Instance type.
    pub instance_type: String,
    /// Spot instances when true.
    pub spot: bool,
    /// Ids of the instances created.
    pub instance_ids: Vec<String>,
}

/// A launch that failed, and where.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LaunchFailure {
    /// Template name.
    pub template: String,
    /// Zone tried.
    pub zone: String,
    /// Instance type tried.
    pub instance_type: String,
    /// Spot instances when true.
    pub spot: bool,
    /// Whether it was a capacity error (the offering is then avoided for a while).
    pub capacity: bool,
    /// The error code, e.g. `OperationDenied.NoStock`, as the cloud sent it.
    pub code: String,
    /// The code as a bounded metric label ([`LaunchError::label`]).
    pub label: &'static str,
    /// The error message.
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
            // The warm pool first: a started instance skips the boot and the init script.
            let mut remaining = l.count - self.start_stopped(template, nodes, l.count, &mut all, now, report).await;
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
                        let outcome = if template.launch == ecsp_config::LaunchMode::UserData {
                            self.launch_user_data(&l.template, &offering, amount).await
                        } else {
                            match self.launch_batch(&l.template, &offering, amount, None).await {
                                Ok(ids) => (ids.into_iter().map(|id| (id, None)).collect(), None),
                                Err(e) => (Vec::new(), Some(e)),
                            }
                        };
                        let (launched, error) = outcome;
                        if !launched.is_empty() {
                            self.record_launch(&l.template, &offering, &launched, report).await;
                            remaining = remaining.saturating_sub(launched.len() as u32);
                        }
                        match error {
                            None => left -= amount,
                            Some(e) => {
                                let capacity = matches!(e, LaunchError::Capacity { .. });
                                if let LaunchError::Capacity { code, .. } = &e {
                                    // Marked in the cache (for later cycles and the policy) and
                                    // re-read, so the next round and other templates see it.
                                    let mut cache = self.offerings.lock().unwrap();
                                    cache.mark_failed(key_of(&offering), code, now.max(self.clock_ms()));
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
                                    label: e.label(),
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

    /// One RunInstances call: `amount` instances of `template` on `o`.
    pub(crate) async fn launch_batch(
        &self,
        template: &str,
        o: &Offering,
        amount: u32,
        user_data_node: Option<UserDataNode>,
    ) -> Result<Vec<String>, LaunchError> {
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
            user_data_node,
        };
        let Some(leadership) = self.leadership.get() else { return self.cloud.launch(&request).await };
        // Recorded first, fenced on the leader key: a deposed leader sends nothing, and a
        // successor resends what was recorded with the same token.
        if let Err(e) = leadership.record_launch(&request).await {
            return Err(LaunchError::Other { code: "NotLeader".into(), label: "not-leader", message: format!("launch not sent: {e:#}") });
        }
        let result = self.cloud.launch(&request).await;
        match &result {
            Ok(ids) => {
                self.unsettled.lock().unwrap().0.insert(request.launch_id.clone(), ids.clone());
            }
            Err(_) => leadership.settle_launch(&request.launch_id).await,
        }
        result
    }

    /// Books the new instances and registers their Jenkins nodes at once. Each comes with its
    /// node when that was created before it (user-data launches).
    pub(crate) async fn record_launch(&self, template: &str, o: &Offering, launched: &[(String, Option<String>)], report: &mut CycleReport) {
        let now = self.clock_ms();
        let ids: Vec<String> = launched.iter().map(|(id, _)| id.clone()).collect();
        {
            let mut book = self.book.lock().unwrap();
            for (id, node) in launched {
                if let Some(node) = node {
                    book.pending_nodes.remove(node);
                }
                book.launched.insert(
                    id.clone(),
                    CloudInstance {
                        instance_id: id.clone(),
                        template: template.to_owned(),
                        zone: o.zone.clone(),
                        vswitch: o.vswitch.clone(),
                        instance_type: o.instance_type.clone(),
                        spot: o.spot,
                        status: CloudStatus::Pending,
                        private_ip: None,
                        created_ms: Some(now),
                        locks: Vec::new(),
                        // The adapter tags it with the template's current fingerprint.
                        fingerprint: self.config.template(template).map(|t| self.config.template_fingerprint(t)),
                        node: node.clone(),
                    },
                );
            }
        }
        let regs: Vec<NodeRegistration> = launched
            .iter()
            .filter(|(_, node)| node.is_none())
            .map(|(id, _)| NodeRegistration {
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
        tracing::info!(template, zone = %o.zone, instance_type = %o.instance_type, spot = o.spot, count = ids.len(), instances = ?ids, "launched");
        report.launched.push(Launched {
            template: template.to_owned(),
            zone: o.zone.clone(),
            vswitch: o.vswitch.clone(),
            instance_type: o.instance_type.clone(),
            spot: o.spot,
            instance_ids: ids,
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
                    .then(|| (n.node_name(), max))
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(targets)
            .map(|(name, max)| async move {
                let reason = format!("{USED_UP_PREFIX} (max-uses {max}); removed when idle");
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
        let by_id: HashMap<&str, &Node> = nodes.iter().map(|n| (n.instance_id(), n)).collect();
        let targets: Vec<(Node, String)> = plan
            .removals
            .iter()
            .filter_map(|r| by_id.get(r.instance_id.as_str()).map(|n| ((*n).clone(), r.reason.clone())))
            .collect();
        let (stops, targets) = self.split_stops(targets, nodes);
        self.stop_idle(stops, report).await;
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

    /// Offline, re-check idle, delete the node. `Ok(false)`: it took a build; put back online
    /// if this drain was what took it offline (a node someone else marked offline stays so).
    async fn drain(&self, n: &Node, reason: &str) -> anyhow::Result<bool> {
        let name = n.node_name();
        let Some(agent) = &n.agent else { return Ok(true) };
        let marked_by_us = !agent.temporarily_offline;
        if marked_by_us {
            self.jenkins.set_offline(&name, true, &format!("{REMOVING_PREFIX} ({reason})")).await?;
        }
        if !self.jenkins.is_idle(&name).await? {
            if marked_by_us {
                self.jenkins.set_offline(&name, false, "").await?;
            }
            tracing::info!(node = %name, "node took a build while draining; kept");
            return Ok(false);
        }
        self.jenkins.delete_node(&name).await?;
        tracing::info!(node = %name, reason, "Jenkins node deleted for removal");
        Ok(true)
    }

    /// Finishes a removal that a previous process left between "offline" and "delete":
    /// deletes the node and the instance if it is idle, or puts it back online if it runs a
    /// build (it took one just before it was marked).
    async fn resume_drain(&self, n: &Node) -> anyhow::Result<bool> {
        let name = n.node_name();
        if !self.jenkins.is_idle(&name).await? {
            self.jenkins.set_offline(&name, false, "").await?;
            tracing::info!(node = %name, "node left offline for removal runs a build; back online and kept");
            return Ok(false);
        }
        self.jenkins.delete_node(&name).await?;
        tracing::info!(node = %name, "Jenkins node deleted: finishing a removal an earlier run started");
        Ok(true)
    }

    /// Deletes instances in batches, booking them as terminating first.
    pub(crate) async fn terminate(&self, targets: Vec<(String, String)>, report: &mut CycleReport) {
        if targets.is_empty() {
            return;
        }
        let now = self.clock_ms();
        {
            let mut book = self.book.lock().unwrap();
            for (id, reason) in &targets {
                book.draining.remove(id);
                book.launched.remove(id);
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
        // One index, not a scan of every node per chore: a wave has a chore per node.
        let by_id: HashMap<&str, &Node> = nodes.iter().map(|n| (n.instance_id(), n)).collect();
        let by_id = &by_id;
        let mut chores = chores;
        self.explain_launch_timeouts(&mut chores, nodes, report).await;
        let mut terminate = Vec::new();
        let mut jenkins_work = Vec::new();
        let mut resume = Vec::new();
        let mut stops = Vec::new();
        for chore in chores {
            if !chore.is_bookkeeping() {
                report.chores.push(super::describe_chore(&chore));
            }
            match chore {
                Chore::Terminate { instance_id, reason } => {
                    if let Some(n) = by_id.get(instance_id.as_str()).copied()
                        && n.agent.is_some() {
                            jenkins_work.push(Chore::DeleteNode { name: n.node_name(), reason: reason.clone() });
                        }
                    terminate.push((instance_id, reason));
                }
                Chore::Bootstrap { instance_id } => {
                    if let Some(n) = by_id.get(instance_id.as_str()).copied() {
                        let launch_timeout =
                            self.config.template(n.template()).map_or(0, |t| t.launch_timeout.as_millis() as u64);
                        // An unknown creation time gives the bootstrap a full launch timeout from now.
                        self.spawn_bootstrap(n, n.instance.created_ms.unwrap_or_else(|| self.clock_ms()) + launch_timeout);
                    }
                }
                Chore::Reconnect { instance_id, deadline_ms } => {
                    if let Some(n) = by_id.get(instance_id.as_str()).copied() {
                        self.book.lock().unwrap().disconnected_since(&instance_id, self.clock_ms());
                        if self.config.template(n.template()).is_some_and(|t| t.launch == ecsp_config::LaunchMode::UserData) {
                            // Nothing connects into a user-data instance: its own loop restarts
                            // the agent; past the reconnect timeout the instance is replaced.
                            tracing::warn!(instance = %instance_id, "user-data agent dropped after being online; waiting for it to reconnect");
                        } else {
                            tracing::warn!(instance = %instance_id, "agent dropped after being online; restarting it");
                            self.spawn_bootstrap(n, deadline_ms);
                        }
                    }
                }
                Chore::RestartAgent { instance_id, deadline_ms } => {
                    if let Some(n) = by_id.get(instance_id.as_str()).copied() {
                        tracing::info!(instance = %instance_id, "started from the warm pool; restarting its agent");
                        self.spawn_bootstrap(n, deadline_ms);
                    }
                }
                Chore::Stop { instance_id } => stops.push(instance_id),
                Chore::BookTerminating { instance_id, reason } => {
                    self.book.lock().unwrap().terminating.insert(instance_id, (reason, self.clock_ms()));
                }
                Chore::ResumeDrain { instance_id } => {
                    if let Some(n) = by_id.get(instance_id.as_str()).copied() {
                        resume.push(n.clone());
                    }
                }
                other => jenkins_work.push(other),
            }
        }
        let results: Vec<_> = futures::stream::iter(jenkins_work)
            .map(|c| async move {
                let r = match &c {
                    Chore::CreateNode { instance_id } => match by_id.get(instance_id.as_str()).copied() {
                        Some(n) => {
                            self.jenkins
                                .create_node(&NodeRegistration {
                                    name: n.node_name(),
                                    template: n.template().to_owned(),
                                    instance_id: instance_id.clone(),
                                    zone: n.instance.zone.clone(),
                                    instance_type: n.instance.instance_type.clone(),
                                })
                                .await
                        }
                        None => Ok(()),
                    },
                    Chore::DeleteNode { name, reason } => {
                        let r = self.jenkins.delete_node(name).await;
                        if r.is_ok() {
                            tracing::info!(node = %name, reason = %reason, "Jenkins node deleted");
                        }
                        r
                    }
                    Chore::RecordActivity { instance_id, record } => match by_id.get(instance_id.as_str()).copied() {
                        Some(n) => self.jenkins.record_activity(&n.node_name(), record).await,
                        None => Ok(()),
                    },
                    Chore::Unfence { instance_id } => match by_id.get(instance_id.as_str()).copied() {
                        Some(n) => self.jenkins.set_offline(&node_name(n.template(), instance_id), false, "").await,
                        None => Ok(()),
                    },
                    Chore::Fence { instance_id, reason } => match by_id.get(instance_id.as_str()).copied() {
                        Some(n) => {
                            tracing::warn!(instance = %instance_id, reason = %reason, "fencing node: it takes no new build");
                            self.jenkins.set_offline(&n.node_name(), true, reason).await
                        }
                        None => Ok(()),
                    },
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
        self.resume_stops(stops, nodes, report).await;
        let resumed: Vec<_> = futures::stream::iter(resume)
            .map(|n| async move {
                let r = self.resume_drain(&n).await;
                (n, r)
            })
            .buffer_unordered(JENKINS_CONCURRENCY)
            .collect()
            .await;
        for (n, r) in resumed {
            match r {
                Ok(true) => terminate.push((n.instance_id().to_owned(), "removal finished after a restart".to_owned())),
                Ok(false) => report.kept_busy.push(n.instance_id().to_owned()),
                Err(e) => report.errors.push(format!("finishing the removal of {} failed: {e:#}", n.instance_id())),
            }
        }
        self.terminate(terminate, report).await;
    }

    /// Starts a background bootstrap; its outcome lands in the book for the next cycle.
    pub(crate) fn spawn_bootstrap(self: &Arc<Self>, n: &Node, deadline_ms: u64) {
        let Some(ip) = n.instance.private_ip else { return };
        let id = n.instance_id().to_owned();
        let template = n.template().to_owned();
        let run = {
            let mut book = self.book.lock().unwrap();
            book.slot_queued(&id, self.clock_ms());
            book.bootstrap_started(&id)
        };
        let engine = Arc::clone(self);
        let template_name = template.clone();
        self.tasks.lock().unwrap().spawn(async move {
            let _slot = engine.bootstrap_slots.acquire().await;
            // The wait for the slot was ours: the bootstrap's own deadline moves by as much.
            let deadline_ms = deadline_ms.saturating_add(engine.book.lock().unwrap().slot_acquired(&id, engine.clock_ms()));
            let started = std::time::Instant::now();
            let name = node_name(&template, &id);
            let result = async {
                let secret = engine.jenkins.agent_secret(&name).await?;
                engine
                    .bootstrapper
                    .bootstrap(BootstrapTarget { instance_id: id.clone(), template, ip, node_name: name, secret, deadline_ms })
                    .await
            }
            .await;
            let error = result.as_ref().err().map(|e| format!("{e:#}"));
            let status = error.clone().map_or(BootstrapStatus::Done, BootstrapStatus::Failed);
            let mut book = engine.book.lock().unwrap();
            if !book.bootstrap_ended(&id, run, status) {
                // A kill during the first bootstrap's agent check fails it after the reconnect
                // has started a new one: only the latest run speaks for the instance.
                tracing::info!(instance = %id, ?error, "a superseded bootstrap run ended; its outcome is dropped");
                return;
            }
            match (result, error) {
                (Err(e), Some(error)) => {
                    let cause = engine.bootstrapper.failure_cause(&e);
                    engine.board.observe_bootstrap(&template_name, cause, started.elapsed());
                    tracing::warn!(instance = %id, cause, %error, "bootstrap failed");
                    book.bootstrap_failed(&template_name, cause, &error, engine.clock_ms());
                }
                _ => engine.board.observe_bootstrap(&template_name, "success", started.elapsed()),
            }
            drop(book);
            engine.wake.notify_one();
        });
    }
}

#[cfg(test)]
mod tests;
