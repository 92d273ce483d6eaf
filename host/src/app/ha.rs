//! `run` with `[ha]`: joins the election and puts the engine under it; without `[ha]`, marks
//! the board as the sole replica.

use std::sync::Arc;

use crate::adapters::leadership::{EtcdLeadership, export_role};
use crate::app::LiveEngine;
use crate::config::Config;
use crate::engine::board::ReplicaRole;
use crate::ha::{Elector, EtcdSettings};

/// This replica's default name: `<hostname>-<pid>`.
pub fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let host = if host.is_empty() { "localhost".to_owned() } else { host };
    format!("{host}-{}", std::process::id())
}

/// With `[ha]`: starts campaigning and gates the engine on the election (the engine then
/// observes from its first cycle, and acts only once elected). Without: the sole replica.
pub fn join(config: &Config, engine: &Arc<LiveEngine>) -> anyhow::Result<Option<Arc<Elector>>> {
    let Some(settings) = EtcdSettings::from_config(config, &default_replica_id())? else {
        engine.board.set_role(ReplicaRole { replica: default_replica_id(), role: "single".into(), acting: true, ..Default::default() });
        return Ok(None);
    };
    tracing::info!(replica = %settings.replica_id, endpoints = ?settings.endpoints, lease_ttl_s = settings.lease_ttl.as_secs(), "high availability: joining the election");
    let elector = Elector::start(settings);
    engine.set_leadership(Arc::new(EtcdLeadership(elector.clone())));
    export_role(elector.clone(), engine.clone());
    Ok(Some(elector))
}
