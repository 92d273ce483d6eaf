//! ECS emulator: the RPC API (ECS 2014-05-26 and VPC 2016-04-28 DescribeVSwitches) over HTTP on
//! loopback, verifying signatures like the real gateway, with a stateful cloud and fault
//! injection.
//!
//! - [`config`]: the cloud's shape ([`SimConfig`], TOML) and default believable region.
//! - [`state`]: instances (status clock, loopback IP, host key), stock, key pairs, tokens.
//! - [`faults`]: NoStock, throttling, 5xx, latency.
//! - `auth` / `auth_v3`: signature (V1 HMAC-SHA1, V3 ACS3-HMAC-SHA256), nonce and timestamp
//!   checks; `api`: the actions; `wire`: HTTP + admin API.
//!
//! Start one with [`EcsSim::start`] (ephemeral port) or [`serve`] (the `sim` command). The TOML
//! format is [`SimConfig`]; `example.toml` beside this file shows every key.
//!
//! Admin API (JSON, no signature; loopback only):
//!
//! | request | effect |
//! |---|---|
//! | `GET /_admin/faults`, `PUT /_admin/faults` ([`Faults`]), `DELETE /_admin/faults` | read / replace / clear faults |
//! | `POST /_admin/faults/no-stock` ([`NoStockRule`]) | add a stock-out |
//! | `POST /_admin/stock` `{"zone_id","instance_type","count"}` | set remaining stock |
//! | `GET /_admin/counters`, `DELETE /_admin/counters` | per-action calls/errors; reset (also the log) |
//! | `GET /_admin/requests?since=N` | request log entries after sequence number N |
//! | `GET /_admin/instances` | instances with status and IP |
//! | `POST /_admin/instances/{id}/release` | release an instance behind the provisioner's back (console) |
//! | `POST /_admin/instances/{id}/reclaim?notice_ms=N` | spot reclaim: the `Recycling` lock at once, released N ms later (default 300000) |
//! | `POST /_admin/key-pairs` `{"name","public_key"}` | register a key pair |
pub mod config;
pub mod faults;
pub mod ram;
pub mod sessions;
pub mod state;

mod api;
pub(crate) mod auth;
mod auth_v3;
mod disk;
mod failure;
pub(crate) mod nonce;
mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{Account, SimConfig, Timings};
pub use faults::{Faults, NoStockRule, ThrottleRule};
pub use sessions::{Session, Sessions};
pub use state::{ActionCounter, Cloud, InstanceView, RecordedRunInstances, RequestLogEntry};
pub use failure::ApiFailure;

use ecsp_ecs::credentials::Credentials;
use ecsp_ecs::{ClientConfig, RetryPolicy};
use crate::InstanceDirectory;

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
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "ECS emulator server stopped");
            }
        });
        tracing::info!(%addr, region = %cloud.config.region_id, "ECS emulator listening");
        Ok(Self {
            addr,
            cloud,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address the emulator listens on.
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

    /// The STS sessions this cloud honours (the STS emulator issues them).
    pub fn sessions(&self) -> Arc<Sessions> {
        self.cloud.sessions.clone()
    }

    /// The instance directory for the SSH emulator.
    pub fn directory(&self) -> Arc<dyn InstanceDirectory> {
        self.cloud.clone()
    }

    /// The fault rules in force.
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
        self.cloud
            .set_faults(f)
            .expect("no-stock rules are always valid");
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
        self.cloud
            .counters()
            .get(action)
            .map(|c| c.calls)
            .unwrap_or(0)
    }

    /// The requests in the log, oldest first (the log keeps the latest `request_log_capacity`).
    pub fn request_log(&self) -> Vec<RequestLogEntry> {
        self.cloud.request_log(0)
    }

    /// Every instance, as tests see it.
    pub fn instances(&self) -> Vec<InstanceView> {
        self.cloud.instances()
    }

    /// Every RunInstances received, in full, with its outcome.
    pub fn run_instances_log(&self) -> Vec<RecordedRunInstances> {
        self.cloud.run_instances_log()
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
    println!(
        "ECS emulator: {}  (AccessKeyId {}, region {})",
        sim.base_url(),
        a.access_key_id,
        sim.cloud.config.region_id
    );
    if let Some(task) = sim.task.take() {
        task.await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use ecsp_ecs::signer::{self, Params, SigningContext};

    async fn admin(
        sim: &EcsSim,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut req = reqwest::Client::new().request(method, format!("{}{path}", sim.base_url()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// A signed GET with `Format` as given (absent = the API's XML default).
    async fn signed_get(sim: &EcsSim, action: &str, format: Option<&str>) -> (u16, String) {
        let creds = sim.credentials();
        let mut p = Params::new();
        p.insert("Action".into(), action.into());
        p.insert("Version".into(), "2014-05-26".into());
        if let Some(f) = format {
            p.insert("Format".into(), f.into());
        }
        let nonce = uuid::Uuid::new_v4().to_string();
        let ts = signer::timestamp_now();
        signer::sign(
            &mut p,
            &SigningContext {
                method: "GET",
                nonce: &nonce,
                timestamp: &ts,
            },
            &creds.access_key_id,
            creds.access_key_secret.expose(),
            None,
        );
        if format.is_none() {
            // sign() defaults Format to JSON; re-sign without it to get the API default.
            p.remove("Format");
            let sts = signer::string_to_sign("GET", &p);
            p.insert(
                "Signature".into(),
                signer::signature(creds.access_key_secret.expose(), &sts),
            );
        }
        let res = reqwest::Client::new()
            .get(sim.base_url())
            .query(&p)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    #[tokio::test]
    async fn admin_api_injects_faults_and_reports_counters_log_and_instances() {
        let sim = EcsSim::start(SimConfig::instant()).await.unwrap();
        let (status, _) = admin(
            &sim,
            reqwest::Method::PUT,
            "/_admin/faults",
            Some(json!({"throttle": [{"action": "DescribeZones", "probability": 1.0}]})),
        )
        .await;
        assert_eq!(status, 200);
        let (status, body) = signed_get(&sim, "DescribeZones", Some("JSON")).await;
        assert_eq!(status, 400);
        let err: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(err["Code"], "Throttling");
        for key in ["RequestId", "HostId", "Message", "Recommend"] {
            assert!(err[key].is_string(), "error shape lacks {key}: {body}");
        }
        let (_, faults) = admin(&sim, reqwest::Method::GET, "/_admin/faults", None).await;
        assert!(faults.contains("DescribeZones"), "{faults}");
        admin(&sim, reqwest::Method::DELETE, "/_admin/faults", None).await;
        assert_eq!(
            signed_get(&sim, "DescribeZones", Some("json")).await.0,
            200,
            "Format is case-insensitive"
        );

        let (status, body) = admin(
            &sim,
            reqwest::Method::PUT,
            "/_admin/faults",
            Some(json!({"server_error_probability": 2.0})),
        )
        .await;
        assert_eq!(status, 400);
        assert!(body.contains("server_error_probability"), "{body}");

        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f t@t";
        assert_eq!(
            admin(
                &sim,
                reqwest::Method::POST,
                "/_admin/key-pairs",
                Some(json!({"name": "k", "public_key": key}))
            )
            .await
            .0,
            200
        );
        assert_eq!(
            admin(
                &sim,
                reqwest::Method::POST,
                "/_admin/key-pairs",
                Some(json!({"name": "bad", "public_key": "nope"}))
            )
            .await
            .0,
            400
        );
        assert_eq!(
            admin(
                &sim,
                reqwest::Method::POST,
                "/_admin/faults/no-stock",
                Some(json!({"zone_id": "cn-hangzhou-h"}))
            )
            .await
            .0,
            200
        );
        assert_eq!(sim.faults().no_stock.len(), 1);
        assert_eq!(
            admin(
                &sim,
                reqwest::Method::POST,
                "/_admin/stock",
                Some(json!({"zone_id": "cn-hangzhou-h", "instance_type": "nope", "count": 1}))
            )
            .await
            .0,
            400
        );

        let (_, counters) = admin(&sim, reqwest::Method::GET, "/_admin/counters", None).await;
        let counters: Value = serde_json::from_str(&counters).unwrap();
        assert_eq!(counters["DescribeZones"]["calls"], 2);
        assert_eq!(counters["DescribeZones"]["errors_by_code"]["Throttling"], 1);
        let (_, log) = admin(&sim, reqwest::Method::GET, "/_admin/requests?since=1", None).await;
        let log: Vec<Value> = serde_json::from_str(&log).unwrap();
        assert_eq!(log.len(), 1, "since filters by sequence number");
        assert_eq!(log[0]["code"], "");
        let (_, instances) = admin(&sim, reqwest::Method::GET, "/_admin/instances", None).await;
        assert_eq!(instances, "[]");
        assert_eq!(
            admin(
                &sim,
                reqwest::Method::POST,
                "/_admin/instances/i-nope/release",
                None
            )
            .await
            .0,
            404
        );
    }

    #[tokio::test]
    async fn injected_latency_delays_answers() {
        let sim = EcsSim::start(SimConfig::instant()).await.unwrap();
        sim.set_faults(Faults {
            latency_ms: 300,
            ..Faults::default()
        })
        .unwrap();
        let started = std::time::Instant::now();
        assert_eq!(
            signed_get(&sim, "DescribeRegions", Some("JSON")).await.0,
            200
        );
        assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    }

    /// A V3 (ACS3-HMAC-SHA256) request over HTTP, the way the newer SDKs send it.
    async fn v3_call(
        sim: &EcsSim,
        action: &str,
        query: &[(&str, &str)],
        secret: &str,
    ) -> (u16, Value) {
        use axum::http::{HeaderMap, HeaderValue};
        let creds = sim.credentials();
        let q: Params = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let host = sim.addr().to_string();
        let date = signer::timestamp_now();
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let body_hash = auth_v3::sha256_hex(b"");
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", host.as_str()),
            ("x-acs-action", action),
            ("x-acs-content-sha256", body_hash.as_str()),
            ("x-acs-date", date.as_str()),
            ("x-acs-signature-nonce", nonce.as_str()),
            ("x-acs-version", "2014-05-26"),
        ] {
            h.insert(k, HeaderValue::from_str(v).unwrap());
        }
        let signed: Vec<String> = h.keys().map(|k| k.to_string()).collect();
        let cr = auth_v3::canonical_request("POST", &q, &h, &signed, &body_hash);
        let sig = auth_v3::hmac_sha256_hex(secret, &auth_v3::string_to_sign(&cr));
        let mut sorted = signed.clone();
        sorted.sort();
        let authz = format!(
            "ACS3-HMAC-SHA256 Credential={},SignedHeaders={},Signature={sig}",
            creds.access_key_id,
            sorted.join(";")
        );
        h.remove("host");
        let res = reqwest::Client::new()
            .post(format!(
                "{}/?{}",
                sim.base_url(),
                signer::canonical_query(&q)
            ))
            .headers(h)
            .header("authorization", authz)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    #[tokio::test]
    async fn signature_v3_requests_are_verified() {
        let sim = EcsSim::start(SimConfig::instant()).await.unwrap();
        let secret = sim.credentials().access_key_secret.expose().to_string();
        let (status, body) = v3_call(
            &sim,
            "DescribeZones",
            &[("RegionId", "cn-hangzhou")],
            &secret,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["Zones"]["Zone"].as_array().map(Vec::len), Some(3));
        let (status, body) = v3_call(
            &sim,
            "DescribeZones",
            &[("RegionId", "cn-hangzhou")],
            "wrong",
        )
        .await;
        assert_eq!(
            (status, body["Code"].as_str()),
            (400, Some("SignatureDoesNotMatch")),
            "{body}"
        );
        assert_eq!(
            sim.request_log().last().map(|e| e.access_key_id.clone()),
            Some(sim.credentials().access_key_id)
        );
    }

    #[tokio::test]
    async fn xml_is_the_default_format() {
        let sim = EcsSim::start(SimConfig::instant()).await.unwrap();
        let (status, body) = signed_get(&sim, "DescribeRegions", None).await;
        assert_eq!(status, 200);
        assert!(
            body.contains("<DescribeRegionsResponse>")
                && body.contains("<Regions><Region>")
                && body.contains("<RegionId>cn-hangzhou</RegionId>"),
            "{body}"
        );
        let (status, body) = signed_get(&sim, "NoSuchAction", None).await;
        assert_eq!(status, 404);
        assert!(
            body.contains("<Error>") && body.contains("<Code>InvalidAction.NotFound</Code>"),
            "{body}"
        );
    }
}
