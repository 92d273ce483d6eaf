//! The election task: connect, lease, campaign, lead until the lease is lost, again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etcd_client::{Client, Compare, CompareOp, GetOptions, LeaderKey, ProclaimOptions, Txn, TxnOp};
use tokio_util::sync::CancellationToken;

use crate::connect::EtcdSettings;
use crate::status::{Candidacy, Role};
use crate::Shared;

/// Time allowed for one etcd request (the campaign excepted: it waits to be elected).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Backoff between attempts to reach etcd: doubles from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(5));

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A lease held in etcd, and the leader key once elected on it.
pub(crate) struct Session {
    client: Client,
    lease: i64,
    /// When the last renewal etcd confirmed was sent: the lease lasts at least a TTL from then.
    confirmed: Mutex<Instant>,
    leader: Mutex<Option<LeaderKey>>,
}

impl Session {
    /// Whether a renewal sent less than `within` ago was confirmed.
    pub(crate) fn confirmed_within(&self, within: Duration) -> bool {
        self.confirmed.lock().unwrap().elapsed() < within
    }

    /// Revokes the lease: etcd deletes the leader key with it, at once.
    pub(crate) async fn revoke(&self) {
        let mut client = self.client.clone();
        match tokio::time::timeout(REQUEST_TIMEOUT, client.lease_revoke(self.lease)).await {
            Ok(Ok(_)) => tracing::info!("resigned: lease revoked, the next replica takes over now"),
            Ok(Err(e)) => tracing::warn!(error = %e, "resigning: revoking the lease failed; the next replica takes over when it expires"),
            Err(_) => tracing::warn!("resigning: etcd did not answer; the next replica takes over when the lease expires"),
        }
    }

    /// Puts `value` at `key` if this session's leader key still exists.
    pub(crate) async fn put_fenced(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let leader = self.leader.lock().unwrap().clone().ok_or_else(|| anyhow::anyhow!("not elected"))?;
        let txn = Txn::new()
            .when([Compare::create_revision(leader.key().to_vec(), CompareOp::Equal, leader.rev())])
            .and_then([TxnOp::put(key, value.to_vec(), None)]);
        let mut client = self.client.clone();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, client.txn(txn))
            .await
            .map_err(|_| anyhow::anyhow!("etcd did not answer within {} s", REQUEST_TIMEOUT.as_secs()))??;
        if !answer.succeeded() {
            anyhow::bail!("this replica's leader key is gone from etcd: it no longer leads");
        }
        Ok(())
    }

    pub(crate) async fn delete(&self, key: &str) {
        let mut client = self.client.clone();
        let error = match tokio::time::timeout(REQUEST_TIMEOUT, client.delete(key, None)).await {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "etcd did not answer".to_owned(),
        };
        tracing::warn!(key, error, "cannot delete a launch record; the next leader resends it (its token makes that harmless)");
    }

    /// Keys and values below `prefix`, oldest first.
    pub(crate) async fn list(&self, prefix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let mut client = self.client.clone();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, client.get(prefix, Some(GetOptions::new().with_prefix())))
            .await
            .map_err(|_| anyhow::anyhow!("etcd did not answer"))??;
        let mut kvs: Vec<_> = answer.kvs().iter().map(|kv| (kv.create_revision(), kv.key_str().unwrap_or("").to_owned(), kv.value().to_vec())).collect();
        kvs.sort();
        Ok(kvs.into_iter().map(|(_, k, v)| (k.strip_prefix(prefix).unwrap_or(&k).to_owned(), v)).collect())
    }
}

/// Runs the election until `stop`: each round connects, takes a lease, campaigns and leads
/// until the lease is lost.
pub(crate) async fn campaign_forever(settings: EtcdSettings, shared: Arc<Shared>, stop: CancellationToken) {
    let mut backoff = BACKOFF.0;
    while !stop.is_cancelled() {
        match round(&settings, &shared, &stop, &mut backoff).await {
            Ok(()) => {}
            Err(e) => {
                let text = format!("{e:#}");
                tracing::warn!(error = %text, retry_in_ms = backoff.as_millis() as u64, "etcd: not taking part in the election; nothing acts here");
                set(&shared, |s| {
                    s.role = Role::Starting;
                    s.problem = Some(text.clone());
                });
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => {}
                }
                backoff = (backoff * 2).min(BACKOFF.1);
            }
        }
    }
}

fn set(shared: &Shared, f: impl FnOnce(&mut crate::HaStatus)) {
    f(&mut shared.status.lock().unwrap());
}

/// One round: connect, lease, campaign, lead until the lease is lost (or `stop`).
async fn round(settings: &EtcdSettings, shared: &Arc<Shared>, stop: &CancellationToken, backoff: &mut Duration) -> anyhow::Result<()> {
    let mut client = settings.connect().await?;
    let ttl = settings.lease_ttl.as_secs() as i64;
    let sent = Instant::now();
    let lease = tokio::time::timeout(REQUEST_TIMEOUT, client.lease_grant(ttl, None))
        .await
        .map_err(|_| anyhow::anyhow!("etcd did not grant a lease within {} s", REQUEST_TIMEOUT.as_secs()))??
        .id();
    *backoff = BACKOFF.0;
    let session = Arc::new(Session { client: client.clone(), lease, confirmed: Mutex::new(sent), leader: Mutex::new(None) });
    set(shared, |s| {
        s.role = Role::Follower;
        s.problem = None;
    });
    tracing::info!(replica = %settings.replica_id, election = %settings.election(), "etcd: campaigning");
    let lost = CancellationToken::new();
    let renewals = tokio::spawn(renew(session.clone(), settings.lease_ttl, lost.clone()));
    let watcher = tokio::spawn(watch_leader(client.clone(), settings.clone(), shared.clone(), lost.clone()));
    let result = lead(settings, shared, stop, &session, &lost).await;
    lost.cancel();
    renewals.abort();
    watcher.abort();
    shared.leading.lock().unwrap().take();
    if stop.is_cancelled() {
        return Ok(());
    }
    result
}

/// Campaigns, then leads until the lease is lost or `stop`.
async fn lead(settings: &EtcdSettings, shared: &Arc<Shared>, stop: &CancellationToken, session: &Arc<Session>, lost: &CancellationToken) -> anyhow::Result<()> {
    let mut client = session.client.clone();
    let candidacy = serde_json::to_vec(&Candidacy { replica: settings.replica_id.clone(), since_ms: None })?;
    let elected = tokio::select! {
        r = client.campaign(settings.election(), candidacy, session.lease) => r?,
        _ = lost.cancelled() => anyhow::bail!("lease lost while campaigning"),
        _ = stop.cancelled() => return Ok(()),
    };
    let key = elected.leader().cloned().ok_or_else(|| anyhow::anyhow!("etcd elected this replica without a leader key"))?;
    let since = now_ms();
    let previous = shared.status.lock().unwrap().leader.clone();
    let value = serde_json::to_vec(&Candidacy { replica: settings.replica_id.clone(), since_ms: Some(since) })?;
    // Only for /status on the other replicas: losing it changes nothing about who leads.
    match tokio::time::timeout(REQUEST_TIMEOUT, client.proclaim(value, Some(ProclaimOptions::new().with_leader(key.clone())))).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "etcd: could not record since when this replica leads"),
        Err(_) => tracing::warn!("etcd: could not record since when this replica leads (no answer)"),
    }
    *session.leader.lock().unwrap() = Some(key);
    set(shared, |s| {
        s.role = Role::Leader;
        s.leader = Some(settings.replica_id.clone());
        s.leader_since_ms = Some(since);
        s.problem = None;
    });
    *shared.leading.lock().unwrap() = Some(session.clone());
    tracing::info!(replica = %settings.replica_id, previous = previous.as_deref().unwrap_or("none"), "hand-over: this replica is now the leader");
    tokio::select! {
        _ = lost.cancelled() => {
            shared.leading.lock().unwrap().take();
            set(shared, |s| s.role = Role::Follower);
            tracing::warn!(replica = %settings.replica_id, "hand-over: lease lost, this replica no longer leads");
            anyhow::bail!("lease lost")
        }
        _ = shared.resign.notified() => Ok(()),
        _ = stop.cancelled() => Ok(()),
    }
}

/// Renews the lease every quarter TTL. Only a renewal etcd confirms moves `confirmed`; a
/// renewal unanswered for a quarter TTL reopens the stream. Cancels `lost` once the lease is
/// certainly gone: etcd says so, or no renewal was confirmed for a whole TTL.
async fn renew(session: Arc<Session>, ttl: Duration, lost: CancellationToken) {
    let every = ttl / 4;
    let mut client = session.client.clone();
    'stream: loop {
        if session.confirmed.lock().unwrap().elapsed() >= ttl {
            tracing::warn!("etcd: no lease renewal confirmed for a whole TTL; the lease is lost");
            lost.cancel();
            return;
        }
        let opened = tokio::time::timeout(every, client.lease_keep_alive(session.lease)).await;
        let (mut keeper, mut stream) = match opened {
            Ok(Ok(pair)) => pair,
            _ => {
                tokio::time::sleep(every / 2).await;
                continue 'stream;
            }
        };
        loop {
            let sent = Instant::now();
            if keeper.keep_alive().await.is_err() {
                continue 'stream;
            }
            match tokio::time::timeout(every, stream.message()).await {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                    *session.confirmed.lock().unwrap() = sent;
                }
                Ok(Ok(Some(_))) => {
                    tracing::warn!("etcd: the lease has expired");
                    lost.cancel();
                    return;
                }
                // Unanswered or broken: a late answer on this stream could not be told from a
                // fresh one, so open a new stream.
                _ => continue 'stream,
            }
            if session.confirmed.lock().unwrap().elapsed() >= ttl {
                continue 'stream;
            }
            tokio::time::sleep_until((sent + every).into()).await;
        }
    }
}

/// Keeps the status's leader and since-when current, and logs each hand-over seen.
async fn watch_leader(mut client: Client, settings: EtcdSettings, shared: Arc<Shared>, lost: CancellationToken) {
    let mut seen: Option<String> = None;
    while !lost.is_cancelled() {
        if let Ok(Ok(answer)) = tokio::time::timeout(REQUEST_TIMEOUT, client.leader(settings.election())).await
            && let Some(kv) = answer.kv()
            && let Ok(c) = serde_json::from_slice::<Candidacy>(kv.value())
        {
            if seen.as_deref() != Some(c.replica.as_str()) {
                if c.replica != settings.replica_id {
                    tracing::info!(leader = %c.replica, previous = seen.as_deref().unwrap_or("none"), "hand-over: another replica leads");
                }
                seen = Some(c.replica.clone());
            }
            let mine = c.replica == settings.replica_id;
            set(&shared, |s| {
                if !mine || s.role == Role::Leader {
                    s.leader = Some(c.replica.clone());
                    s.leader_since_ms = c.since_ms.or(s.leader_since_ms.filter(|_| mine));
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
