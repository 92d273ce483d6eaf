//! ECS emulator: the RPC API (ECS 2014-05-26 and VPC 2016-04-28 DescribeVSwitches) over HTTP on
//! loopback, verifying signatures like the real gateway, with a stateful cloud and fault
//! injection.
//!
//! - [`config`]: the cloud's shape ([`SimConfig`], TOML) and default believable region.
//! - [`state`]: instances (status clock, loopback IP, host key), stock, key pairs, tokens.
//! - [`faults`]: NoStock, throttling, 5xx, latency.
//! - `auth`: signature/nonce/timestamp checks; `api`: the actions; `wire`: HTTP + admin API.
//!
//! Start one with [`EcsSim::start`] (ephemeral port) or [`serve`] (the `sim` command).
pub mod config;
pub mod faults;
pub mod state;

mod api;
mod auth;
mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{Account, SimConfig, Timings};
pub use faults::{Faults, NoStockRule, ThrottleRule};
pub use state::{ActionCounter, Cloud, InstanceView, RequestLogEntry};
pub use wire::ApiFailure;

use crate::ecs::credentials::Credentials;
use crate::ecs::{ClientConfig, RetryPolicy};
use crate::sim::InstanceDirectory;

/// A running ECS emulator. Dropping it (or [`EcsSim::shutdown`]) stops the server.
pub struct EcsSim {
    addr: SocketAddr,
    cloud: Arc<Cloud>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl EcsSim {
    /// Starts on `127.0.0.1` with an ephemeral port.
    pub async fn start(config: SimConfig) -> anyhow::Result<Self> {
        Self::bind(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `listen`.
    pub async fn bind(config: SimConfig, listen: SocketAddr) -> anyhow::Result<Self> {
        let cloud = Arc::new(Cloud::new(config)?);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("ECS emulator cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = wire::router(cloud.clone());
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::error!(error = %e, "ECS emulator server stopped");
            }
        });
        tracing::info!(%addr, region = %cloud.config.region_id, "ECS emulator listening");
        Ok(Self { addr, cloud, stop: Some(stop), task: Some(task) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` — the endpoint for ECS and VPC alike.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The first configured AccessKey.
    pub fn credentials(&self) -> Credentials {
        let a = &self.cloud.config.accounts[0];
        Credentials::access_key(&a.access_key_id, &a.access_key_secret)
    }

    /// Client settings pointing at this emulator (fast retries).
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(&self.cloud.config.region_id).with_endpoint(self.base_url());
        c.retry = RetryPolicy::fast();
        c
    }

    /// The cloud state (also an [`InstanceDirectory`] for the SSH emulator).
    pub fn cloud(&self) -> Arc<Cloud> {
        self.cloud.clone()
    }

    /// The instance directory for the SSH emulator.
    pub fn directory(&self) -> Arc<dyn InstanceDirectory> {
        self.cloud.clone()
    }

    pub fn faults(&self) -> Faults {
        self.cloud.faults()
    }

    /// Replaces the active faults.
    pub fn set_faults(&self, faults: Faults) -> anyhow::Result<()> {
        self.cloud.set_faults(faults)
    }

    /// Makes launches matching the rule fail with `OperationDenied.NoStock`.
    pub fn add_no_stock(&self, rule: NoStockRule) {
        let mut f = self.cloud.faults();
        f.no_stock.push(rule);
        self.cloud.set_faults(f).expect("no-stock rules are always valid");
    }

    /// Registers an SSH key pair usable as `KeyPairName`.
    pub fn import_key_pair(&self, name: &str, public_key: &str) -> Result<String, ApiFailure> {
        self.cloud.import_key_pair(name, public_key)
    }

    /// Per-action request counters.
    pub fn counters(&self) -> BTreeMap<String, ActionCounter> {
        self.cloud.counters()
    }

    /// Calls of one action (0 if never called).
    pub fn calls(&self, action: &str) -> u64 {
        self.cloud.counters().get(action).map(|c| c.calls).unwrap_or(0)
    }

    pub fn request_log(&self) -> Vec<RequestLogEntry> {
        self.cloud.request_log(0)
    }

    pub fn instances(&self) -> Vec<InstanceView> {
        self.cloud.instances()
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EcsSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves the emulator on `listen` until the process ends: what `ecs-provisioner sim` runs.
/// Use [`EcsSim::bind`] instead to also hand [`EcsSim::directory`] to the SSH emulator.
pub async fn serve(config: SimConfig, listen: SocketAddr) -> anyhow::Result<()> {
    let mut sim = EcsSim::bind(config, listen).await?;
    let a = &sim.cloud.config.accounts[0];
    println!("ECS emulator: {}  (AccessKeyId {}, region {})", sim.base_url(), a.access_key_id, sim.cloud.config.region_id);
    if let Some(task) = sim.task.take() {
        task.await?;
    }
    Ok(())
}
