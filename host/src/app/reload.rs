//! SIGHUP: the configuration and the policy read again, checked in full before anything
//! changes. A refused reload keeps the running configuration and policy, and says why.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use super::{LiveEngine, Overrides};
use crate::adapters::cloud::EcsCloud;
use crate::config::Config;
use crate::engine::board::Board;

/// A new configuration, validated, with the engine it wires (policy loaded and compiled);
/// not yet running.
pub struct Prepared {
    /// The new configuration.
    pub config: Arc<Config>,
    /// Its engine, recording on the running one's board.
    pub engine: Arc<LiveEngine>,
    /// Its ECS client (the API statistics are read from it).
    pub cloud: EcsCloud,
    /// The status server's new listener, when `listen` changed.
    pub listener: Option<tokio::net::TcpListener>,
}

/// Reads `path` again, with the command line's `overrides`, and wires it: the same checks as
/// at start (the file, the policy, the clients, the `listen` address when it changed).
/// Nothing running is touched.
pub async fn prepare(path: &Path, overrides: &Overrides, running: &Config, board: &Arc<Board>) -> anyhow::Result<Prepared> {
    let config = Arc::new(overrides.load(path)?);
    if config.log_format != running.log_format {
        tracing::warn!("log-format changed: it applies at the next start, not on reload");
    }
    let listener = if config.listen == running.listen {
        None
    } else {
        let l = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {} (the new `listen` setting)", config.listen))?;
        Some(l)
    };
    let wiring = tokio::task::spawn_blocking({
        let (config, board) = (config.clone(), board.clone());
        move || super::wire_with_board(config, board)
    });
    let (engine, cloud) = wiring.await.context("reload task")?.with_context(|| format!("loading policy {}", config.policy.source))?;
    Ok(Prepared { config, engine, cloud, listener })
}
