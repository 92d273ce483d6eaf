//! High availability: replicas of one provisioner elect a leader through etcd, and only the
//! leader acts.
//!
//! **Owns** the etcd session (connection, lease, campaign, renewals), the answer to "may this
//! replica act now?" and the fenced records of launches in flight. **Must not** know the
//! engine: the binary wires [`Elector`] to the engine's leadership port.
//!
//! The leader renews its lease every quarter TTL and acts only while its last confirmed
//! renewal is younger than half the TTL: a leader cut off from etcd (or paused) stops acting
//! at least half a TTL before its lease can expire and another replica can win.

#![warn(missing_docs)]

mod connect;
mod session;
mod status;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use connect::EtcdSettings;
pub use status::{HaStatus, Role};

use session::Session;

/// One replica's seat in the election, run by a background task from [`Elector::start`].
pub struct Elector {
    settings: EtcdSettings,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What the election task and the callers share.
pub(crate) struct Shared {
    pub(crate) status: Mutex<HaStatus>,
    /// The session while this replica leads: the lease's renewals and the leader key.
    pub(crate) leading: Mutex<Option<Arc<Session>>>,
    /// Woken when the leader should give up at once (resign).
    pub(crate) resign: Notify,
}

impl Elector {
    /// Starts campaigning in the background: connects (retrying with backoff, the reason on
    /// [`Elector::status`] meanwhile), takes a lease and waits to be elected.
    pub fn start(settings: EtcdSettings) -> Arc<Elector> {
        let shared = Arc::new(Shared {
            status: Mutex::new(HaStatus::starting(&settings.replica_id)),
            leading: Mutex::new(None),
            resign: Notify::new(),
        });
        let stop = CancellationToken::new();
        let elector = Arc::new(Elector { settings: settings.clone(), shared: shared.clone(), stop: stop.clone(), task: Mutex::new(None) });
        let task = tokio::spawn(session::campaign_forever(settings, shared, stop));
        *elector.task.lock().unwrap() = Some(task);
        elector
    }

    /// Whether this replica may act now: it leads, and its last confirmed renewal is younger
    /// than half the lease.
    pub fn may_act(&self) -> bool {
        self.current().is_some_and(|s| s.confirmed_within(self.settings.lease_ttl / 2))
    }

    /// Role, leader and the reason nothing acts, for `/status`, `/healthz` and metrics.
    pub fn status(&self) -> HaStatus {
        let mut status = self.shared.status.lock().unwrap().clone();
        // A leader whose renewals are late says so: it has stopped acting.
        if status.role == Role::Leader && !self.may_act() {
            status.problem = Some(format!(
                "no lease renewal confirmed by etcd in the last {:.1} s (half the lease): not acting until one is",
                self.settings.lease_ttl.as_secs_f64() / 2.0
            ));
        }
        status
    }

    /// The lease TTL in force.
    pub fn lease_ttl(&self) -> Duration {
        self.settings.lease_ttl
    }

    /// Gives up leadership at once (revokes the lease, which deletes the leader key, so the
    /// next replica is elected without waiting for the TTL) and stops campaigning.
    pub async fn resign(&self) {
        let session = self.shared.leading.lock().unwrap().take();
        self.stop.cancel();
        self.shared.resign.notify_waiters();
        if let Some(session) = session {
            session.revoke().await;
        }
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }

    /// Leaves the election without resigning, as a crash would: stops renewing and
    /// campaigning; the lease expires after its TTL (the demo's crash).
    pub fn abandon(&self) {
        self.shared.leading.lock().unwrap().take();
        self.stop.cancel();
    }

    /// Records a launch before it is sent, only if this replica still holds the leader key
    /// (an etcd transaction compares it): a deposed leader gets an error and must not launch.
    /// The record outlives this replica, so that the next leader can resend the same request.
    pub async fn record_launch(&self, launch_id: &str, request: &[u8]) -> anyhow::Result<()> {
        let session = self.current().ok_or_else(|| anyhow::anyhow!("not the leader: launch not recorded"))?;
        session.put_fenced(&self.settings.launch_key(launch_id), request).await
    }

    /// Forgets a launch record once the cloud has answered.
    pub async fn settle_launch(&self, launch_id: &str) {
        if let Some(session) = self.current() {
            session.delete(&self.settings.launch_key(launch_id)).await;
        }
    }

    /// Launch records left by earlier leaders (launch id, request), oldest first.
    pub async fn unsettled_launches(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let session = self.current().ok_or_else(|| anyhow::anyhow!("not the leader"))?;
        session.list(&self.settings.launch_key("")).await
    }

    fn current(&self) -> Option<Arc<Session>> {
        self.shared.leading.lock().unwrap().clone()
    }
}

impl Drop for Elector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
