//! Act for the warm pool: stop idle nodes instead of deleting them, start stopped ones before
//! launching new ones, and finish stops a crash or an error left undone.
//!
//! A stop is a removal that keeps the instance: the node is drained as for a delete, but marked
//! [`warm::STOPPED_PREFIX`] and kept offline in Jenkins, and the instance is stopped. A start
//! marks the node [`warm::STARTING_PREFIX`] with the time first, so that a restarted process
//! counts the launch timeout from the start; the lifecycle then restarts the agent.

use std::collections::HashMap;

use futures::StreamExt;

use super::decide::PolicyPort;
use super::model::{BootstrapStatus, Node, NodeState, Offering, node_name};
use super::offerings::OfferingKey;
use super::ports::{BootstrapPort, CloudPort, JenkinsPort, LaunchError};
use super::lifecycle::warm;
use super::{CycleReport, Engine, act::LaunchFailure};
use ecsp_config::{IdleAction, TemplateConfig};

/// Nodes to remove, each with its reason.
type Targets = Vec<(Node, String)>;

/// Jenkins and ECS calls in flight at once for stops and starts.
const CONCURRENCY: usize = 16;

impl<C, J, B, P, F> Engine<C, J, B, P, F>
where
    C: CloudPort,
    J: JenkinsPort,
    B: BootstrapPort,
    P: PolicyPort,
    F: PolicyPort,
{
    /// Splits removals into (to stop, to delete): an idle online node of a template with
    /// `idle-action = "stop"` is stopped while the template has room under `max-stopped`,
    /// unless it is used up (`max-uses`) or was launched from an older version of its template.
    pub(crate) fn split_stops(&self, targets: Targets, nodes: &[Node]) -> (Targets, Targets) {
        // Stopped nodes per template, counted once and kept up to date as stops are chosen:
        // a scan of the fleet per target would be quadratic in a wave of removals.
        let mut stopped: HashMap<&str, usize> = HashMap::new();
        for m in nodes.iter().filter(|m| m.state == NodeState::Stopped) {
            *stopped.entry(m.template()).or_default() += 1;
        }
        let mut stop: Targets = Vec::new();
        let mut delete = Vec::new();
        for (n, reason) in targets {
            let Some(t) = self.config.template(n.template()).filter(|t| t.idle_action == IdleAction::Stop) else {
                delete.push((n, reason));
                continue;
            };
            let count = stopped.get(t.name()).copied().unwrap_or(0);
            if (t.max_stopped() as usize) > count && self.stoppable(&n) {
                *stopped.entry(t.name()).or_default() += 1;
                stop.push((n, reason));
            } else {
                delete.push((n, reason));
            }
        }
        (stop, delete)
    }

    fn stoppable(&self, n: &Node) -> bool {
        let Some(t) = self.config.template(n.template()) else { return false };
        let used_up = t.max_uses > 0 && n.agent.as_ref().is_some_and(|a| a.uses >= t.max_uses);
        n.state == NodeState::Online && !used_up && n.instance.fingerprint.as_deref() == Some(self.config.template_fingerprint(t).as_str())
    }

    /// Drains the nodes like a removal, marks them stopped in Jenkins and stops their instances.
    pub(crate) async fn stop_idle(&self, targets: Targets, report: &mut CycleReport) {
        if targets.is_empty() {
            return;
        }
        {
            let mut book = self.book.lock().unwrap();
            for (n, _) in &targets {
                book.draining.insert(n.instance_id().to_owned());
            }
        }
        let drained: Vec<_> = futures::stream::iter(targets)
            .map(|(n, reason)| async move {
                let r = self.mark_stopped(&n, &reason).await;
                (n, r)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut ready = Vec::new();
        for (n, r) in drained {
            let id = n.instance_id().to_owned();
            self.book.lock().unwrap().draining.remove(&id);
            match r {
                Ok(true) => ready.push(n),
                Ok(false) => report.kept_busy.push(id),
                Err(e) => report.errors.push(format!("draining {id} to stop it failed: {e:#}")),
            }
        }
        self.send_stops(ready, report).await;
    }

    /// Offline with the stopped mark, then re-check idle. `Ok(false)`: it took a build; back online.
    async fn mark_stopped(&self, n: &Node, reason: &str) -> anyhow::Result<bool> {
        let name = node_name(n.template(), n.instance_id());
        self.jenkins.set_offline_reason(&name, &warm::stopped_reason(reason)).await?;
        if !self.jenkins.is_idle(&name).await? {
            self.jenkins.set_offline(&name, false, "").await?;
            tracing::info!(node = %name, "node took a build while draining to stop; kept");
            return Ok(false);
        }
        Ok(true)
    }

    /// Stops the instances of nodes already marked stopped, per stopped mode. A failure leaves
    /// them marked: the lifecycle sends the stop again next cycle.
    async fn send_stops(&self, nodes: Vec<Node>, report: &mut CycleReport) {
        let mut by_mode: Vec<(ecsp_config::StoppedModeConfig, Vec<String>)> = Vec::new();
        for n in nodes {
            // Its agent restart (after a start) is still confirming: stopping now would let
            // that bootstrap's outcome land after the stop and pass for the next start's. The
            // node stays marked; the lifecycle sends the stop again next cycle.
            if matches!(self.book.lock().unwrap().bootstraps.get(n.instance_id()), Some(BootstrapStatus::Running { .. })) {
                continue;
            }
            let Some(t) = self.config.template(n.template()) else { continue };
            let id = n.instance_id().to_owned();
            {
                // The agent that ran before the stop is gone with it: a start restarts it afresh.
                let mut book = self.book.lock().unwrap();
                book.bootstraps.remove(&id);
                book.seen_online.remove(&id);
                book.disconnected.remove(&id);
                book.starting.remove(&id);
            }
            match by_mode.iter_mut().find(|(m, _)| *m == t.stopped_mode) {
                Some((_, ids)) => ids.push(id),
                None => by_mode.push((t.stopped_mode, vec![id])),
            }
        }
        for (mode, ids) in by_mode {
            match self.cloud.stop(&ids, mode).await {
                Ok(()) => {
                    let now = self.clock_ms();
                    self.book.lock().unwrap().stops_sent.extend(ids.iter().map(|id| (id.clone(), now)));
                    for id in ids {
                        tracing::info!(instance = %id, ?mode, "stopped into the warm pool");
                        report.stopped.push(id);
                    }
                }
                Err(e) => report.errors.push(format!("stopping {} instance(s) failed: {e:#}", ids.len())),
            }
        }
    }

    /// Finishes stops the lifecycle found marked but not sent: once the node is idle.
    pub(crate) async fn resume_stops(&self, ids: Vec<String>, nodes: &[Node], report: &mut CycleReport) {
        let by_id: HashMap<&str, &Node> = nodes.iter().map(|n| (n.instance_id(), n)).collect();
        let targets: Vec<Node> = ids.iter().filter_map(|id| by_id.get(id.as_str()).map(|n| (*n).clone())).collect();
        let checked: Vec<_> = futures::stream::iter(targets)
            .map(|n| async move {
                let idle = self.jenkins.is_idle(&node_name(n.template(), n.instance_id())).await;
                (n, idle)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut ready = Vec::new();
        for (n, idle) in checked {
            match idle {
                Ok(true) => ready.push(n),
                // Marked offline, so it takes no new build: stopped once this one ends.
                Ok(false) => {}
                Err(e) => report.errors.push(format!("checking {} before its stop failed: {e:#}", n.instance_id())),
            }
        }
        self.send_stops(ready, report).await;
    }

    /// Starts up to `count` stopped instances of `template` (those listed as stopped, with an
    /// up-to-date fingerprint) and returns how many of `count` the warm pool covers: those
    /// started, plus those this process is stopping right now (the stop sent less than
    /// [`warm::STOP_RETRY_MS`] ago), which a cycle starts as soon as they are `Stopped`: seconds
    /// away, where a launch takes a boot and the init script. An instance whose zone is out of
    /// stock is deleted and its offering marked failed, so the launch that follows in this
    /// cycle goes elsewhere.
    pub(crate) async fn start_stopped(
        &self,
        template: &TemplateConfig,
        nodes: &[Node],
        count: u32,
        all: &mut Vec<Offering>,
        now: u64,
        report: &mut CycleReport,
    ) -> u32 {
        let fingerprint = self.config.template_fingerprint(template);
        // Owned: a stream over borrowed nodes is not `Send` enough for `tokio::spawn`.
        let mut candidates: Vec<Node> = nodes
            .iter()
            .filter(|n| {
                n.template() == template.name()
                    && n.state == NodeState::Stopped
                    && n.instance.status == super::model::CloudStatus::Stopped
                    && n.agent.is_some()
                    && n.instance.fingerprint.as_deref() == Some(fingerprint.as_str())
            })
            .cloned()
            .collect();
        let stopping = {
            let book = self.book.lock().unwrap();
            nodes
                .iter()
                .filter(|n| {
                    n.template() == template.name()
                        && n.state == NodeState::Stopped
                        && n.instance.status == super::model::CloudStatus::Stopping
                        && n.instance.fingerprint.as_deref() == Some(fingerprint.as_str())
                        && book.stops_sent.get(n.instance_id()).is_some_and(|t| now.saturating_sub(*t) < warm::STOP_RETRY_MS)
                })
                .count() as u32
        };
        let waiting = stopping.min(count);
        if waiting > 0 {
            tracing::info!(template = template.name(), instances = waiting, "waiting for stopping instances of the warm pool instead of launching");
        }
        let count = count - waiting;
        if count == 0 || candidates.is_empty() {
            return waiting;
        }
        // The most recently launched first: the freshest machines go back to work.
        candidates.sort_by_key(|n| std::cmp::Reverse((n.instance.created_ms, n.instance_id().to_owned())));
        candidates.truncate(count as usize);
        let results: Vec<_> = futures::stream::iter(candidates)
            .map(|n| async move {
                let name = node_name(n.template(), n.instance_id());
                let started = self.clock_ms();
                let r = match self.jenkins.set_offline_reason(&name, &warm::starting_reason(started)).await {
                    Ok(()) => self.cloud.start(n.instance_id()).await,
                    Err(e) => Err(LaunchError::Other { code: "Jenkins".into(), label: "other", message: format!("{e:#}") }),
                };
                (n, started, r)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut started_count = 0;
        let mut out_of_stock = Vec::new();
        for (n, started, r) in results {
            let id = n.instance_id().to_owned();
            match r {
                Ok(()) => {
                    started_count += 1;
                    {
                        let mut book = self.book.lock().unwrap();
                        book.starting.insert(id.clone(), started);
                        book.stops_sent.remove(&id);
                        // Whatever ran before the stop says nothing about this start's agent.
                        book.bootstraps.remove(&id);
                    }
                    tracing::info!(template = template.name(), instance = %id, "started from the warm pool");
                    report.started.push(id);
                }
                Err(e) => {
                    let capacity = matches!(e, LaunchError::Capacity { .. });
                    tracing::warn!(instance = %id, error = %e, "starting a stopped instance failed");
                    report.launch_errors.push(LaunchFailure {
                        template: template.name().to_owned(),
                        zone: n.instance.zone.clone(),
                        instance_type: n.instance.instance_type.clone(),
                        spot: n.instance.spot,
                        capacity,
                        code: e.code().to_owned(),
                        label: e.label(),
                        error: format!("StartInstances {id}: {e}"),
                    });
                    if capacity {
                        let key: OfferingKey =
                            (n.instance.zone.clone(), n.instance.vswitch.clone(), n.instance.instance_type.clone(), n.instance.spot);
                        let mut cache = self.offerings.lock().unwrap();
                        cache.mark_failed(key, e.code(), now.max(self.clock_ms()));
                        *all = cache.all(&self.config.cloud, now);
                        drop(cache);
                        out_of_stock.push((n, e.code().to_owned()));
                    }
                }
            }
        }
        // Out of stock where it stands: deleted, and a new launch elsewhere takes its place.
        let mut delete = Vec::new();
        for (n, code) in out_of_stock {
            let name = node_name(n.template(), n.instance_id());
            match self.jenkins.delete_node(&name).await {
                Ok(()) => delete.push((n.instance_id().to_owned(), format!("StartInstances failed ({code}): deleted, launching elsewhere"))),
                Err(e) => report.errors.push(format!("deleting node {name} of an instance that cannot start failed: {e:#}")),
            }
        }
        self.terminate(delete, report).await;
        started_count + waiting
    }
}
