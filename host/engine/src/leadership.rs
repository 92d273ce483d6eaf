//! Who may act, when several replicas run (high availability), and how a new leader picks up
//! the launches its predecessor left in flight.
//!
//! Without a [`Leadership`] the engine acts alone, as it always did. With one, each cycle
//! acts only if [`Leadership::may_act`] says so; otherwise it observes and decides (keeping the
//! offering cache warm) and acts on nothing. Every launch is recorded with the leadership
//! before it is sent, fenced on the leader's key, and the record stays until the cloud's
//! listing shows the instances: a new leader resends each record with its ClientToken, so a
//! batch the old leader sent creates nothing twice, and instances the listing does not show
//! yet are booked, so they count against the caps.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use futures::future::BoxFuture;

use super::decide::PolicyPort;
use super::model::Offering;
use super::ports::{BootstrapPort, CloudPort, JenkinsPort, LaunchRequest};
use super::{CycleReport, Engine};

/// The election, as the engine consults it.
pub trait Leadership: Send + Sync + 'static {
    /// Whether this replica may act now.
    fn may_act(&self) -> bool;
    /// Records a launch before it is sent, only while this replica leads; an error means the
    /// launch must not be sent.
    fn record_launch<'a>(&'a self, request: &'a LaunchRequest) -> BoxFuture<'a, anyhow::Result<()>>;
    /// Forgets the record of a launch whose instances the listing shows (or that failed).
    fn settle_launch<'a>(&'a self, launch_id: &'a str) -> BoxFuture<'a, ()>;
    /// Launch records nobody settled, oldest first.
    fn unsettled_launches(&self) -> BoxFuture<'_, anyhow::Result<Vec<LaunchRequest>>>;
}

/// Launches sent by this replica whose instances the listing does not show in full yet:
/// launch id -> instance ids.
#[derive(Debug, Default)]
pub(crate) struct Unsettled(pub(crate) BTreeMap<String, Vec<String>>);

impl<C, J, B, P, F> Engine<C, J, B, P, F>
where
    C: CloudPort,
    J: JenkinsPort,
    B: BootstrapPort,
    P: PolicyPort,
    F: PolicyPort,
{
    /// Puts the engine under a leadership: from then on it acts only while that allows.
    pub fn set_leadership(&self, leadership: std::sync::Arc<dyn Leadership>) {
        let _ = self.leadership.set(leadership);
    }

    /// Tells the loop that leadership was just won: the next cycle starts now, and acts.
    pub fn leadership_won(&self) {
        self.takeover.notify_one();
    }

    /// Whether this engine may act now (always, without a leadership).
    pub fn may_act(&self) -> bool {
        self.leadership.get().is_none_or(|l| l.may_act())
    }

    /// Called when this replica starts acting (a takeover): sends again every launch a
    /// previous leader recorded and did not settle, with the same ClientToken, and books the
    /// instances the cloud answers with.
    pub(crate) async fn resume_launches(&self) {
        let Some(leadership) = self.leadership.get() else { return };
        let requests = match leadership.unsettled_launches().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "takeover: cannot read the previous leader's launch records");
                return;
            }
        };
        for request in requests {
            match self.cloud.launch(&request).await {
                Ok(ids) => {
                    tracing::info!(launch_id = %request.launch_id, instances = ?ids, "takeover: launch left in flight by the previous leader resent with its ClientToken");
                    let offering = offering_of(&request);
                    let mut scratch = CycleReport::default();
                    let launched: Vec<(String, Option<String>)> =
                        ids.iter().map(|id| (id.clone(), request.user_data_node.as_ref().map(|n| n.name.clone()))).collect();
                    self.record_launch(&request.template, &offering, &launched, &mut scratch).await;
                    self.unsettled.lock().unwrap().0.insert(request.launch_id.clone(), ids);
                }
                Err(e) => {
                    tracing::warn!(launch_id = %request.launch_id, error = %e, "takeover: resending a recorded launch failed; dropping the record");
                    leadership.settle_launch(&request.launch_id).await;
                }
            }
        }
    }

    /// Settles the launches whose instances all appear in `listed`.
    pub(crate) async fn settle_listed(&self, listed: &BTreeSet<&str>) {
        let Some(leadership) = self.leadership.get() else { return };
        let done: Vec<String> = {
            let mut unsettled = self.unsettled.lock().unwrap();
            let done: Vec<String> =
                unsettled.0.iter().filter(|(_, ids)| ids.iter().all(|id| listed.contains(id.as_str()))).map(|(l, _)| l.clone()).collect();
            for l in &done {
                unsettled.0.remove(l);
            }
            done
        };
        for launch_id in done {
            leadership.settle_launch(&launch_id).await;
        }
    }
}

/// The offering a recorded launch went to, as far as booking it needs.
fn offering_of(r: &LaunchRequest) -> Offering {
    Offering {
        zone: r.zone.clone(),
        vswitch: r.vswitch.clone(),
        instance_type: r.instance_type.clone(),
        spot: r.spot,
        vcpus: 0,
        memory_mib: 0,
        free_ips: 0,
        price_per_hour: None,
        in_stock: true,
        last_failure: None,
    }
}
