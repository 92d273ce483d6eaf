//! STS emulator (Security Token Service, 2015-04-01) beside the ECS emulator: `AssumeRole`,
//! `AssumeRoleWithOIDC` and `GetCallerIdentity` over HTTP on loopback, with the ECS emulator's
//! signature checks and error shape. The sessions it issues go into the ECS emulator's
//! [`Sessions`](crate::ecs::Sessions), so ECS accepts them until they expire and refuses
//! them after (`InvalidSecurityToken.Expired`).
//!
//! - [`config`]: account, roles (trust, external id, denied ECS actions), OIDC providers,
//!   faults (throttling, `NoPermission`, expired OIDC tokens), short session lifetimes.
//! - [`oidc_token`]: the JWT claims checked, and minting tokens for tests.
//! - `api`: the actions; `state`: faults, nonces, request log.
//!
//! Admin API (JSON, no signature): `GET`/`PUT`/`DELETE /_admin/faults` ([`StsFaults`]),
//! `GET /_admin/requests` (the request log).
pub mod config;
pub mod oidc_token;

mod api;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

pub use config::{OidcProviderSpec, RoleSpec, StsConfig, StsFaults};
pub use state::StsLogEntry;

use ecsp_ecs::signer::Params;
use crate::ecs::EcsSim;
use state::StsState;

/// A running STS emulator. Dropping it stops the server.
pub struct StsSim {
    addr: SocketAddr,
    state: Arc<StsState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl StsSim {
    /// Starts on an ephemeral loopback port for the account `ecs` emulates.
    pub async fn start(config: StsConfig, ecs: &EcsSim) -> anyhow::Result<Self> {
        Self::bind(config, ecs, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `listen`; callers authenticate with `ecs`'s AccessKeys or STS sessions.
    pub async fn bind(config: StsConfig, ecs: &EcsSim, listen: SocketAddr) -> anyhow::Result<Self> {
        config.validate()?;
        let accounts = ecs.cloud().config.accounts.clone();
        let state = Arc::new(StsState::new(config, accounts, ecs.sessions()));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("STS emulator cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/", get(rpc).post(rpc))
            .route(
                "/_admin/faults",
                get(get_faults).put(put_faults).delete(clear_faults),
            )
            .route("/_admin/requests", get(get_requests))
            .with_state(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "STS emulator server stopped");
            }
        });
        tracing::info!(%addr, "STS emulator listening");
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`: the STS endpoint.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The configuration, with the faults now in force.
    pub fn config(&self) -> StsConfig {
        self.state.config()
    }

    /// The ARN of a configured role.
    pub fn role_arn(&self, role: &str) -> String {
        self.state.config().role_arn(role)
    }

    /// The ARN of a configured OIDC provider.
    pub fn oidc_provider_arn(&self, provider: &str) -> String {
        self.state.config().oidc_provider_arn(provider)
    }

    /// A token of a configured OIDC provider, valid for `ttl_secs` (negative: expired).
    pub fn oidc_token(&self, provider: &str, ttl_secs: i64) -> String {
        let config = self.state.config();
        let p = config
            .oidc_providers
            .iter()
            .find(|p| p.name == provider)
            .expect("a configured OIDC provider");
        let aud = p.client_ids.first().cloned().unwrap_or_default();
        oidc_token::mint(
            &p.issuer,
            &aud,
            "system:serviceaccount:ci:ecs-provisioner",
            ttl_secs,
        )
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: StsFaults) -> anyhow::Result<()> {
        self.state.set_faults(faults)
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<StsLogEntry> {
        self.state.log()
    }

    /// Successful calls of `action`.
    pub fn successes(&self, action: &str) -> usize {
        self.state
            .log()
            .iter()
            .filter(|e| e.action == action && e.code.is_empty())
            .count()
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

impl Drop for StsSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn parse_form(bytes: &[u8], into: &mut Params) {
    for (k, v) in form_urlencoded::parse(bytes) {
        into.insert(k.into_owned(), v.into_owned());
    }
}

async fn rpc(State(sts): State<Arc<StsState>>, method: Method, uri: Uri, body: Bytes) -> Response {
    // Parameters from the query and a form body together, as the ECS gateway takes them.
    let mut params = Params::new();
    parse_form(uri.query().unwrap_or_default().as_bytes(), &mut params);
    if method == Method::POST {
        parse_form(&body, &mut params);
    }
    let action = params.get("Action").cloned().unwrap_or_default();
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let outcome = api::dispatch(&sts, method.as_str(), &params);
    let key_id = params.get("AccessKeyId").cloned().unwrap_or_default();
    let (status, body) = match outcome {
        Ok(mut v) => {
            sts.record(&action, &key_id, "");
            v["RequestId"] = json!(request_id);
            (StatusCode::OK, v)
        }
        Err(f) => {
            sts.record(&action, &key_id, &f.code);
            let v = json!({
                "RequestId": request_id,
                "HostId": "sts.aliyuncs.com",
                "Code": f.code,
                "Message": f.message,
                "Recommend": format!("https://api.aliyun.com/troubleshoot?q={}&product=Sts&requestId={request_id}", f.code),
            });
            (
                StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                v,
            )
        }
    };
    tracing::debug!(%action, status = status.as_u16(), %request_id, "STS emulator answered");
    (
        status,
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

async fn get_faults(State(sts): State<Arc<StsState>>) -> Json<StsFaults> {
    Json(sts.config().faults)
}

async fn put_faults(
    State(sts): State<Arc<StsState>>,
    Json(f): Json<StsFaults>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    sts.set_faults(f)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(Json(json!({ "ok": true })))
}

async fn clear_faults(State(sts): State<Arc<StsState>>) -> Json<serde_json::Value> {
    sts.set_faults(StsFaults::default())
        .expect("no faults are valid");
    Json(json!({ "ok": true }))
}

async fn get_requests(State(sts): State<Arc<StsState>>) -> Json<Vec<StsLogEntry>> {
    Json(sts.log())
}
