//! The ECS instance metadata service, as far as the RAM role credentials need it: the IMDSv2
//! token, the attached role's name, and short-lived STS credentials for it.
//!
//! Like the real service it refuses credential reads without the `X-aliyun-ecs-metadata-token`
//! header, and its credentials expire `ttl` after they are handed out, so providers' refresh
//! rules can be tested.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use time::OffsetDateTime;

const TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";

/// A running metadata service on loopback. It stops when dropped.
pub struct MetadataService {
    /// `http://127.0.0.1:<port>`: what a provider takes as its base URL.
    pub base_url: String,
    /// Credential reads served so far; the n-th read hands out `STS.id-n`, `role-secret-n`
    /// and `role-token-n`.
    pub fetches: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Role {
    name: String,
    ttl: Duration,
    fetches: Arc<AtomicU32>,
}

impl MetadataService {
    /// Serves role `role`, whose credentials expire `ttl` after each read.
    pub async fn start(role: &str, ttl: Duration) -> std::io::Result<Self> {
        let state = Role { name: role.into(), ttl, fetches: Arc::new(AtomicU32::new(0)) };
        let fetches = state.fetches.clone();
        let app = axum::Router::new()
            .route("/latest/api/token", put(|| async { "imds-token-1" }))
            .route("/latest/meta-data/ram/security-credentials/", get(role_name))
            .route("/latest/meta-data/ram/security-credentials/{role}", get(role_credentials))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { base_url, fetches, task })
    }

    /// How many credential reads were served.
    pub fn fetch_count(&self) -> u32 {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for MetadataService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn role_name(State(r): State<Role>, h: HeaderMap) -> Result<String, StatusCode> {
    if h.get(TOKEN_HEADER).is_none() {
        return Err(StatusCode::UNAUTHORIZED);
    }
    Ok(r.name)
}

async fn role_credentials(
    State(r): State<Role>,
    Path(role): Path<String>,
    h: HeaderMap,
) -> Result<axum::Json<serde_json::Value>, StatusCode> {
    if h.get(TOKEN_HEADER).is_none() {
        return Err(StatusCode::UNAUTHORIZED);
    }
    if role != r.name {
        return Err(StatusCode::NOT_FOUND);
    }
    let n = r.fetches.fetch_add(1, Ordering::SeqCst) + 1;
    let expires = OffsetDateTime::now_utc() + r.ttl;
    Ok(axum::Json(serde_json::json!({
        "AccessKeyId": format!("STS.id-{n}"),
        "AccessKeySecret": format!("role-secret-{n}"),
        "SecurityToken": format!("role-token-{n}"),
        "Expiration": ecsp_ecs::signer::format_timestamp(expires),
        "LastUpdated": ecsp_ecs::signer::timestamp_now(),
        "Code": "Success"
    })))
}
