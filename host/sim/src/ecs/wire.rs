//! HTTP side of the emulator: the RPC endpoint (GET and POST on `/`), JSON/XML rendering with
//! the real error shape, fault injection at the door, and the JSON admin API under `/_admin/`.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::api;
use super::failure::ApiFailure;
use super::faults::{Faults, NoStockRule};
use super::state::{Cloud, RequestLogEntry};
use crate::now_ms;
use super::{auth, auth_v3, sessions};
use ecsp_ecs::signer::Params;

/// The axum application: RPC on `/`, admin API on `/_admin/...`.
pub(crate) fn router(cloud: Arc<Cloud>) -> axum::Router {
    axum::Router::new()
        .route("/", get(rpc).post(rpc))
        .route(
            "/_admin/faults",
            get(get_faults).put(put_faults).delete(clear_faults),
        )
        .route("/_admin/faults/no-stock", post(add_no_stock))
        .route("/_admin/counters", get(get_counters).delete(reset_counters))
        .route("/_admin/requests", get(get_requests))
        .route("/_admin/instances", get(get_instances))
        .route("/_admin/instances/{id}/release", post(release_instance))
        .route("/_admin/instances/{id}/reclaim", post(reclaim_instance))
        .route("/_admin/key-pairs", post(post_key_pair))
        .route("/_admin/stock", post(post_stock))
        .with_state(cloud)
}

fn parse_form(bytes: &[u8], into: &mut Params) {
    for (k, v) in form_urlencoded::parse(bytes) {
        into.insert(k.into_owned(), v.into_owned());
    }
}

async fn rpc(
    State(cloud): State<Arc<Cloud>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let latency = cloud.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    // Parameters come from the query and a form body together (reference §1.5).
    let mut query = Params::new();
    parse_form(uri.query().unwrap_or_default().as_bytes(), &mut query);
    let mut params = query.clone();
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if method == Method::POST && is_form {
        parse_form(&body, &mut params);
    }
    // Signature V3 names action and version in headers and answers JSON by default.
    let v3 = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth_v3::parse_authorization);
    if v3.is_some() {
        for (param, name) in [("Action", "x-acs-action"), ("Version", "x-acs-version")] {
            if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                params.insert(param.into(), v.to_string());
            }
        }
        params
            .entry("Format".into())
            .or_insert_with(|| "JSON".into());
    }
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let action = params.get("Action").cloned().unwrap_or_default();
    let xml = !params
        .get("Format")
        .is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let signature_method = if v3.is_some() {
        "ACS3-HMAC-SHA256"
    } else {
        "HMAC-SHA1"
    }
    .to_string();
    let outcome = match v3 {
        Some(Err(e)) => Err(e),
        Some(Ok(auth)) => {
            let ctx = auth_v3::V3Request {
                method: method.as_str(),
                auth,
                query: &query,
                headers: &headers,
                body: &body,
            };
            handle(&cloud, method.as_str(), &action, &params, Some(ctx))
        }
        None => handle(&cloud, method.as_str(), &action, &params, None),
    };
    let (status, code) = match &outcome {
        Ok(_) => (200, String::new()),
        Err(f) => (f.status, f.code.clone()),
    };
    let access_key_id = params.get("AccessKeyId").cloned().unwrap_or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("Credential=").nth(1))
            .map(|v| v.split(',').next().unwrap_or_default().to_string())
            .unwrap_or_default()
    });
    cloud.record(RequestLogEntry {
        seq: 0,
        time_ms: now_ms(),
        method: method.to_string(),
        action: action.clone(),
        access_key_id,
        signature_method,
        status,
        code,
        request_id: request_id.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        by_id: params.contains_key("InstanceIds"),
    });
    tracing::debug!(%action, %method, status, %request_id, "ECS emulator answered");
    let host_id = format!("ecs.{}.aliyuncs.com", cloud.config.region_id);
    render(outcome, &action, &request_id, &host_id, xml)
}

/// Authentication (V1 or V3), RAM denials, door faults (throttling, 5xx), then the action.
fn handle(
    cloud: &Cloud,
    method: &str,
    action: &str,
    params: &Params,
    v3: Option<auth_v3::V3Request<'_>>,
) -> Result<Value, ApiFailure> {
    {
        let mut inner = cloud.lock();
        let tolerance = cloud.config.timestamp_tolerance_secs;
        let key_id = match &v3 {
            Some(r) => r.auth.access_key_id.as_str(),
            None => params.get("AccessKeyId").map(String::as_str).unwrap_or_default(),
        };
        // An STS session is checked like a configured key, then for its expiry.
        let session = cloud.sessions.get(key_id);
        let session_account = session.as_ref().map(|s| [s.account.clone()]);
        let accounts = match &session_account {
            Some(one) => one.as_slice(),
            None => cloud.config.accounts.as_slice(),
        };
        let account = match v3 {
            Some(r) => auth_v3::verify(&r, accounts, tolerance, &mut inner.nonces)?,
            None => auth::verify(method, params, accounts, tolerance, &mut inner.nonces)?,
        };
        if let Some(s) = &session {
            sessions::check_not_expired(s)?;
        }
        if account.denied_actions.iter().any(|a| a == action) {
            return Err(ApiFailure::new(
                403,
                "Forbidden.RAM",
                "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
            ));
        }
        if let Some(doc) = &account.ram_policy {
            let policy = super::ram::RamPolicy::parse(doc)
                .map_err(|e| ApiFailure::new(500, "InternalError", format!("the emulator's RAM policy: {e}")))?;
            if !policy.allows(&ram_request(&cloud.config.region_id, &inner.p.instances, action, params)) {
                return Err(ApiFailure::new(
                    403,
                    "Forbidden.RAM",
                    "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
                ));
            }
        }
        let faults = inner.faults.clone();
        if let Some(retry_after_ms) = inner.rate.throttle(&faults, action, now_ms()) {
            return Err(ApiFailure {
                retry_after_ms,
                ..ApiFailure::new(
                    400,
                    "Throttling",
                    "Request was denied due to request throttling.",
                )
            });
        }
        let applies = faults.server_error_actions.is_empty()
            || faults.server_error_actions.iter().any(|a| a == action);
        if applies
            && faults.server_error_probability > 0.0
            && rand::random::<f64>() < faults.server_error_probability
        {
            return Err(if rand::random::<bool>() {
                ApiFailure::new(
                    503,
                    "ServiceUnavailable",
                    "The request has failed due to a temporary failure of the server.",
                )
            } else {
                ApiFailure::new(
                    500,
                    "InternalError",
                    "The request processing has failed due to some unknown error, exception or failure.",
                )
            });
        }
    }
    api::dispatch(cloud, action, params)
}

/// What RAM evaluates a request on: the action, the instances it names (`InstanceId.N`,
/// `InstanceId`) with their tags, and the tags it sets (`Tag.N.Key` / `Tag.N.Value`).
fn ram_request(region: &str, instances: &[super::state::SimInstance], action: &str, params: &Params) -> super::ram::Request {
    let service = if matches!(action, "DescribeVSwitches" | "DescribeVpcs") { "vpc" } else { "ecs" };
    let ids: Vec<&String> = (1..).map_while(|n| params.get(&format!("InstanceId.{n}"))).chain(params.get("InstanceId")).collect();
    let resources = ids
        .into_iter()
        .map(|id| super::ram::Resource {
            arn: format!("acs:ecs:{region}:{EMULATED_ACCOUNT_UID}:instance/{id}"),
            tags: instances.iter().find(|i| &i.instance_id == id).map(|i| i.tags.iter().cloned().collect()).unwrap_or_default(),
        })
        .collect();
    let request_tags = (1..)
        .map_while(|n| Some((params.get(&format!("Tag.{n}.Key"))?, params.get(&format!("Tag.{n}.Value")).cloned().unwrap_or_default())))
        .map(|(k, v)| (k.clone(), v))
        .collect();
    super::ram::Request { action: format!("{service}:{action}"), resources, request_tags }
}

/// The account UID in the ARNs RAM policies are matched against.
const EMULATED_ACCOUNT_UID: &str = "1234567890123456";

fn render(
    outcome: Result<Value, ApiFailure>,
    action: &str,
    request_id: &str,
    host_id: &str,
    xml: bool,
) -> Response {
    let (status, body, root, retry_after) = match outcome {
        Ok(mut v) => {
            if let Value::Object(map) = &mut v {
                map.insert("RequestId".into(), json!(request_id));
            }
            (200, v, format!("{action}Response"), None)
        }
        Err(f) => {
            let recommend = format!(
                "https://api.aliyun.com/troubleshoot?q={}&product=Ecs&requestId={request_id}",
                f.code
            );
            let v = json!({ "RequestId": request_id, "HostId": host_id, "Code": f.code, "Message": f.message, "Recommend": recommend });
            (f.status, v, "Error".to_string(), f.retry_after_ms)
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = if xml {
        let text = format!(
            "<?xml version='1.0' encoding='UTF-8'?>{}",
            to_xml(&root, &body)
        );
        (
            status,
            [(header::CONTENT_TYPE, "application/xml;charset=utf-8")],
            text,
        )
            .into_response()
    } else {
        (
            status,
            [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
            body.to_string(),
        )
            .into_response()
    };
    if let Some(ms) = retry_after {
        response.headers_mut().insert(
            "x-acs-retry-after",
            ms.to_string().parse().expect("digits are a valid header"),
        );
    }
    response
}

/// XML rendering of a JSON answer: objects become elements, arrays repeat their key.
fn to_xml(name: &str, v: &Value) -> String {
    fn escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }
    match v {
        Value::Object(map) => {
            let inner: String = map.iter().map(|(k, v)| to_xml(k, v)).collect();
            format!("<{name}>{inner}</{name}>")
        }
        Value::Array(items) => items.iter().map(|i| to_xml(name, i)).collect(),
        Value::String(s) => format!("<{name}>{}</{name}>", escape(s)),
        Value::Null => format!("<{name}/>"),
        other => format!("<{name}>{other}</{name}>"),
    }
}

type AdminResult = Result<Json<Value>, (StatusCode, String)>;

fn bad_request(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, e.to_string())
}

async fn get_faults(State(cloud): State<Arc<Cloud>>) -> Json<Faults> {
    Json(cloud.faults())
}

async fn put_faults(State(cloud): State<Arc<Cloud>>, Json(faults): Json<Faults>) -> AdminResult {
    cloud.set_faults(faults).map_err(bad_request)?;
    Ok(Json(json!({ "ok": true })))
}

async fn clear_faults(State(cloud): State<Arc<Cloud>>) -> AdminResult {
    cloud.set_faults(Faults::default()).map_err(bad_request)?;
    Ok(Json(json!({ "ok": true })))
}

async fn add_no_stock(
    State(cloud): State<Arc<Cloud>>,
    Json(rule): Json<NoStockRule>,
) -> AdminResult {
    let mut faults = cloud.faults();
    faults.no_stock.push(rule);
    cloud.set_faults(faults).map_err(bad_request)?;
    Ok(Json(json!({ "ok": true })))
}

async fn get_counters(State(cloud): State<Arc<Cloud>>) -> Json<Value> {
    Json(json!(cloud.counters()))
}

async fn reset_counters(State(cloud): State<Arc<Cloud>>) -> Json<Value> {
    cloud.reset_counters();
    Json(json!({ "ok": true }))
}

async fn get_requests(
    State(cloud): State<Arc<Cloud>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> AdminResult {
    let since = match q.get("since") {
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| bad_request(format!("since={s:?} is not a number")))?,
        None => 0,
    };
    Ok(Json(json!(cloud.request_log(since))))
}

async fn get_instances(State(cloud): State<Arc<Cloud>>) -> Json<Value> {
    Json(json!(cloud.instances()))
}

async fn release_instance(
    State(cloud): State<Arc<Cloud>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> AdminResult {
    if !cloud.release_instance(&id) {
        return Err((StatusCode::NOT_FOUND, format!("no live instance {id}")));
    }
    Ok(Json(json!({ "ok": true })))
}

#[derive(serde::Deserialize)]
struct ReclaimQuery {
    /// Milliseconds between the notice and the release (ECS gives about five minutes).
    #[serde(default = "default_notice_ms")]
    notice_ms: u64,
}

fn default_notice_ms() -> u64 {
    300_000
}

async fn reclaim_instance(
    State(cloud): State<Arc<Cloud>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<ReclaimQuery>,
) -> AdminResult {
    if !cloud.reclaim_instance(&id, q.notice_ms) {
        return Err((StatusCode::NOT_FOUND, format!("no live spot instance {id} without a reclaim notice")));
    }
    Ok(Json(json!({ "ok": true, "notice_ms": q.notice_ms })))
}

#[derive(serde::Deserialize)]
struct KeyPairBody {
    name: String,
    public_key: String,
}

async fn post_key_pair(State(cloud): State<Arc<Cloud>>, Json(k): Json<KeyPairBody>) -> AdminResult {
    let fingerprint = cloud
        .import_key_pair(&k.name, &k.public_key)
        .map_err(bad_request)?;
    Ok(Json(json!({ "name": k.name, "fingerprint": fingerprint })))
}

#[derive(serde::Deserialize)]
struct StockBody {
    zone_id: String,
    instance_type: String,
    count: u32,
}

async fn post_stock(State(cloud): State<Arc<Cloud>>, Json(s): Json<StockBody>) -> AdminResult {
    if cloud.config.instance_type(&s.instance_type).is_none() {
        return Err(bad_request(format!(
            "unknown instance_type {:?}",
            s.instance_type
        )));
    }
    cloud.set_stock(&s.zone_id, &s.instance_type, s.count);
    Ok(Json(json!({ "ok": true })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_rendering_repeats_list_items() {
        let v = json!({"RequestId": "r", "Regions": {"Region": [{"RegionId": "a"}, {"RegionId": "b&c"}]}});
        let x = to_xml("DescribeRegionsResponse", &v);
        assert!(x.contains("<Regions><Region><RegionId>a</RegionId></Region><Region><RegionId>b&amp;c</RegionId></Region></Regions>"), "{x}");
    }
}
