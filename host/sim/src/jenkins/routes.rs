//! HTTP routes of the Jenkins emulator: auth, crumbs, permissions, and one handler per endpoint.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Json, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

use super::state::{EnqueueRequest, JobSpec, OfflineMark, node_from_form};
use crate::now_ms;
use super::{Shared, feed, history, jnlp_jars, random_hex, tree, wsagent};
use ecsp_jenkins::label::LabelExpr;

type Shr = State<Arc<Shared>>;
type Params = Query<HashMap<String, String>>;

const SESSION_COOKIE: &str = "JSESSIONID.sim";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(root_page))
        .route("/api/json", get(root_json))
        .route("/login", get(|| async { "login" }))
        .route("/me/api/json", get(whoami))
        .route("/crumbIssuer/api/json", get(crumb_issuer))
        .route("/computer", get(computer_page))
        .route("/computer/", get(computer_page))
        .route("/computer/api/json", get(computers))
        .route("/computer/doCreateItem", post(create_node))
        .route("/computer/{name}/", get(node_page))
        .route("/computer/{name}/api/json", get(node_json))
        .route("/computer/{name}/rssAll", get(node_rss_all))
        .route("/computer/{name}/config.xml", get(node_config).post(update_node_config))
        .route("/computer/{name}/jenkins-agent.jnlp", get(node_jnlp))
        .route("/computer/{name}/slave-agent.jnlp", get(node_jnlp))
        .route("/computer/{name}/toggleOffline", post(toggle_offline))
        .route(
            "/computer/{name}/changeOfflineCause",
            post(change_offline_cause),
        )
        .route("/computer/{name}/doDelete", post(delete_node))
        .route("/queue/api/json", get(queue))
        .route("/queue/item/{id}/api/json", get(queue_item))
        .route("/queue/cancelItem", post(cancel_item))
        .route("/label/{expr}/api/json", get(label))
        .route("/job/{name}/api/json", get(job_json))
        .route("/job/{name}/build", post(build_job))
        .route("/jnlpJars/{name}", get(jnlp_jars::serve))
        .route("/wsagents", get(wsagent::handshake))
        .route("/wsagents/", get(wsagent::handshake))
        .route("/_admin/jobs", post(admin_define_job))
        .route("/_admin/enqueue", post(admin_enqueue))
        .route("/_admin/stats", get(admin_stats))
        .route("/_admin/nodes", get(admin_nodes))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not Found") })
        .layer(axum::middleware::map_response_with_state(
            shared.clone(),
            add_version_header,
        ))
        .with_state(shared)
}

async fn add_version_header(State(s): Shr, mut resp: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&s.version) {
        resp.headers_mut().insert("X-Jenkins", v);
    }
    resp
}

// ---- authentication and authorisation ----

/// Who made a request.
pub(crate) struct Principal {
    pub user: String,
    pub admin: bool,
    pub by_password: bool,
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, msg.into()).into_response()
}

/// An HTTP error answer (status + plain-text body), small enough to return by value.
type Refusal = (StatusCode, String);

fn refuse(status: StatusCode, msg: impl Into<String>) -> Refusal {
    (status, msg.into())
}

/// Basic auth as Jenkins does it: no header → anonymous, who may read nothing (403);
/// a wrong secret → 401.
pub(crate) fn authenticate(s: &Shared, headers: &HeaderMap) -> Result<Principal, Refusal> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "Authentication required: anonymous is missing the Overall/Read permission",
        ));
    };
    let encoded = value
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("basic "))
        .map(|_| value[6..].trim());
    let decoded = encoded
        .and_then(|e| base64::engine::general_purpose::STANDARD.decode(e).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "Invalid authorization header"))?;
    let (name, secret) = decoded
        .split_once(':')
        .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "Invalid authorization header"))?;
    let invalid = || {
        refuse(
            StatusCode::UNAUTHORIZED,
            format!("Invalid password/token for user: {name}"),
        )
    };
    let user = s
        .users
        .iter()
        .find(|u| u.name == name)
        .ok_or_else(invalid)?;
    if secret == user.token {
        return Ok(Principal {
            user: user.name.clone(),
            admin: user.admin,
            by_password: false,
        });
    }
    if user.password.as_deref() == Some(secret) {
        return Ok(Principal {
            user: user.name.clone(),
            admin: user.admin,
            by_password: true,
        });
    }
    Err(invalid())
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

/// Authenticates a POST that needs `permission`; password logins also need a valid crumb
/// from the same session (API tokens are exempt, as since Jenkins 2.96).
fn authorize_post(s: &Shared, headers: &HeaderMap, permission: &str) -> Result<Principal, Refusal> {
    let p = authenticate(s, headers)?;
    if p.by_password {
        let expected = session_of(headers).map(|sess| s.lock().crumb_for(&p.user, &sess));
        let given = headers.get("Jenkins-Crumb").and_then(|v| v.to_str().ok());
        if expected.is_none() || given != expected.as_deref() {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "No valid crumb was included in the request",
            ));
        }
    }
    if !p.admin {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!("{} is missing the {permission} permission", p.user),
        ));
    }
    Ok(p)
}

/// Renders JSON, honouring `tree`.
fn json_response(value: Value, params: &HashMap<String, String>) -> Response {
    let value = match params.get("tree") {
        Some(t) => match tree::parse(t) {
            Ok(sel) => tree::apply(&value, &sel),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        },
        None => value,
    };
    Json(value).into_response()
}

fn redirect(status: StatusCode, to: &str) -> Response {
    Response::builder()
        .status(status)
        .header(header::LOCATION, to)
        .body(Body::empty())
        .expect("static response")
}

/// `(master)` and `(built-in)` name the built-in node.
fn is_built_in(name: &str) -> bool {
    matches!(name, "(master)" | "(built-in)" | "Built-In Node")
}

// ---- root ----

async fn root_page(State(s): Shr, headers: HeaderMap) -> Response {
    match authenticate(&s, &headers) {
        Ok(_) => "<html><body>Jenkins emulator</body></html>".into_response(),
        Err(e) => e.into_response(),
    }
}

async fn root_json(State(s): Shr, headers: HeaderMap, Query(q): Params) -> Response {
    if let Err(e) = authenticate(&s, &headers) {
        return e.into_response();
    }
    let st = s.lock();
    let mut v = st.root_json();
    // Asked for by a `tree`, jobs show what Stapler exports of them (`labelExpression`, the
    // build lists...); the build lists only when selected, as rendering them is the cost.
    if let Some(Ok(sel)) = q.get("tree").map(|t| tree::parse(t)) {
        let all = tree::selects(&sel, &["jobs", "allBuilds"]);
        let builds = all || tree::selects(&sel, &["jobs", "builds"]);
        let jobs: Vec<Value> = st
            .jobs
            .values()
            .map(|j| {
                let mut jv = st.job_json(j);
                if builds {
                    history::add_builds(&st, j, &mut jv, all);
                }
                jv
            })
            .collect();
        v["jobs"] = Value::Array(jobs);
    }
    drop(st);
    json_response(v, &q)
}

async fn whoami(State(s): Shr, headers: HeaderMap) -> Response {
    match authenticate(&s, &headers) {
        Ok(p) => Json(json!({"_class": "hudson.model.User", "absoluteUrl": format!("{}user/{}", s.lock().root_url, p.user), "fullName": p.user, "id": p.user})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn crumb_issuer(State(s): Shr, headers: HeaderMap) -> Response {
    let p = match authenticate(&s, &headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let (session, fresh) = match session_of(&headers) {
        Some(sess) => (sess, false),
        None => (random_hex(16), true),
    };
    let crumb = s.lock().crumb_for(&p.user, &session);
    let mut resp = Json(json!({"_class": "hudson.security.csrf.DefaultCrumbIssuer", "crumb": crumb, "crumbRequestField": "Jenkins-Crumb"})).into_response();
    if fresh
        && let Ok(v) =
            HeaderValue::from_str(&format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly"))
    {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

// ---- computers ----

async fn computer_page(State(s): Shr, headers: HeaderMap) -> Response {
    match authenticate(&s, &headers) {
        Ok(_) => "<html><body>Nodes</body></html>".into_response(),
        Err(e) => e.into_response(),
    }
}

async fn computers(State(s): Shr, headers: HeaderMap, Query(q): Params) -> Response {
    if let Err(e) = authenticate(&s, &headers) {
        return e.into_response();
    }
    let v = s.lock().computer_set_json();
    json_response(v, &q)
}

fn no_such_node(name: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("No such agent: {name}"))
}

async fn node_page(State(s): Shr, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(e) = authenticate(&s, &headers) {
        return e.into_response();
    }
    if is_built_in(&name) || s.lock().nodes.contains_key(&name) {
        format!("<html><body>{name}</body></html>").into_response()
    } else {
        no_such_node(&name)
    }
}

async fn node_json(
    State(s): Shr,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Params,
) -> Response {
    if let Err(e) = authenticate(&s, &headers) {
        return e.into_response();
    }
    let st = s.lock();
    let v = if is_built_in(&name) {
        st.built_in_json()
    } else {
        match st.nodes.get(&name) {
            Some(n) => st.computer_json(n),
            None => return no_such_node(&name),
        }
    };
    drop(st);
    json_response(v, &q)
}

async fn node_rss_all(State(s): Shr, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(e) = authenticate(&s, &headers) {
        return e.into_response();
    }
    match feed::rss_all(&s.lock(), &name) {
        Some(xml) => ([(header::CONTENT_TYPE, "application/atom+xml;charset=UTF-8")], xml).into_response(),
        None => no_such_node(&name),
    }
}

async fn node_config(State(s): Shr, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(e) = authenticate(&s, &headers) {
        return e.into_response();
    }
    let st = s.lock();
    match st.nodes.get(&name) {
        Some(n) => (
            [(header::CONTENT_TYPE, "application/xml")],
            st.config_xml(n),
        )
            .into_response(),
        None => no_such_node(&name),
    }
}

async fn update_node_config(State(s): Shr, headers: HeaderMap, Path(name): Path<String>, body: String) -> Response {
    if let Err(e) = authorize_post(&s, &headers, "Agent/Configure") {
        return e.into_response();
    }
    let mut st = s.lock();
    let Some(n) = st.nodes.get_mut(&name) else { return no_such_node(&name) };
    match super::state::update_node_from_xml(n, &body) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn node_jnlp(State(s): Shr, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let p = match authenticate(&s, &headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if !p.admin {
        return error(
            StatusCode::FORBIDDEN,
            format!("{} is missing the Agent/Connect permission", p.user),
        );
    }
    let st = s.lock();
    match st.nodes.get(&name) {
        Some(n) if n.is_inbound() => (
            [(header::CONTENT_TYPE, "application/x-java-jnlp-file")],
            st.jnlp(n),
        )
            .into_response(),
        _ => no_such_node(&name),
    }
}

async fn create_node(
    State(s): Shr,
    headers: HeaderMap,
    Query(q): Params,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    if let Err(e) = authorize_post(&s, &headers, "Agent/Create") {
        return e.into_response();
    }
    // Stapler reads `name`, `type` and `json` from the query string or the form body.
    let mut fields = q;
    if let Ok(Form(body)) = form {
        fields.extend(body);
    }
    let name = fields
        .get("name")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    let ty = fields.get("type").map(String::as_str).unwrap_or("");
    if !matches!(
        ty,
        "hudson.slaves.DumbSlave" | "hudson.slaves.DumbSlave$DescriptorImpl"
    ) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("No node type {ty:?}: this emulator knows hudson.slaves.DumbSlave"),
        );
    }
    let json: Value = match fields.get("json").map(|j| serde_json::from_str(j)) {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("Malformed json form field: {e}"),
            );
        }
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "This page expects a form submission but had only {}",
            );
        }
    };
    let node = match node_from_form(&name, &json) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let mut st = s.lock();
    if st.nodes.contains_key(&node.name) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("Agent called \u{2018}{}\u{2019} already exists", node.name),
        );
    }
    st.nodes.insert(node.name.clone(), node);
    drop(st);
    s.wake.notify_one();
    redirect(StatusCode::FOUND, ".")
}

fn set_offline(s: &Shared, name: &str, mark: Option<OfflineMark>) -> Response {
    let mut st = s.lock();
    match st.nodes.get_mut(name) {
        Some(n) => n.offline = mark,
        None => return no_such_node(name),
    }
    drop(st);
    s.wake.notify_one();
    redirect(StatusCode::FOUND, ".")
}

async fn toggle_offline(
    State(s): Shr,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Params,
) -> Response {
    let currently = s.lock().nodes.get(&name).map(|n| n.offline.is_some());
    let Some(currently) = currently else {
        return match authenticate(&s, &headers) {
            Ok(_) => no_such_node(&name),
            Err(e) => e.into_response(),
        };
    };
    // Clearing needs Connect, setting needs Disconnect (Computer.doToggleOffline).
    let permission = if currently {
        "Agent/Connect"
    } else {
        "Agent/Disconnect"
    };
    let p = match authorize_post(&s, &headers, permission) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let mark = (!currently).then(|| OfflineMark {
        message: q.get("offlineMessage").cloned().unwrap_or_default(),
        user: p.user,
        at_ms: now_ms(),
    });
    set_offline(&s, &name, mark)
}

async fn change_offline_cause(
    State(s): Shr,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Params,
) -> Response {
    let p = match authorize_post(&s, &headers, "Agent/Disconnect") {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let mark = OfflineMark {
        message: q.get("offlineMessage").cloned().unwrap_or_default(),
        user: p.user,
        at_ms: now_ms(),
    };
    set_offline(&s, &name, Some(mark))
}

async fn delete_node(State(s): Shr, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(e) = authorize_post(&s, &headers, "Agent/Delete") {
        return e.into_response();
    }
    let delay = s.delete_delay_ms.load(std::sync::atomic::Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let mut st = s.lock();
    if !st.nodes.contains_key(&name) {
        return no_such_node(&name);
    }
    st.abort_builds(&name, now_ms());
    if let Some(c) = st.nodes.remove(&name).and_then(|n| n.connection) {
        let _ = c.kick.send(true);
    }
    drop(st);
    s.wake.notify_one();
    redirect(StatusCode::FOUND, "..")
}

// ---- queue, labels, jobs ----

async fn queue(State(s): Shr, headers: HeaderMap, Query(q): Params) -> Response {
    if let Err(e) = authenticate(&s, &headers) {
        return e.into_response();
    }
    let v = s.lock().queue_json();
    json_response(v, &q)
}

async fn queue_item(
    State(s): Shr,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(q): Params,
) -> Response {
    if let Err(e) = authenticate(&s, &headers) {
        return e.into_response();
    }
    let st = s.lock();
    let v = if let Some(i) = st.queue.iter().find(|i| i.id == id) {
        st.queue_item_json(i)
    } else if let Some(l) = st.left.get(&id) {
        st.left_item_json(l)
    } else {
        return error(StatusCode::NOT_FOUND, format!("No queue item with id {id}"));
    };
    drop(st);
    json_response(v, &q)
}

async fn cancel_item(State(s): Shr, headers: HeaderMap, Query(q): Params) -> Response {
    if let Err(e) = authorize_post(&s, &headers, "Job/Cancel") {
        return e.into_response();
    }
    let Some(id) = q.get("id").and_then(|i| i.parse().ok()) else {
        return error(StatusCode::BAD_REQUEST, "cancelItem needs ?id=<queue id>");
    };
    s.lock().cancel(id);
    // Jenkins answers cancelItem with a redirect whether or not the item existed.
    redirect(StatusCode::FOUND, "..")
}

async fn label(
    State(s): Shr,
    headers: HeaderMap,
    Path(expr): Path<String>,
    Query(q): Params,
) -> Response {
    if let Err(e) = authenticate(&s, &headers) {
        return e.into_response();
    }
    // Jenkins.getLabel: unquote, parse, else one atom.
    let v = s.lock().label_json(&LabelExpr::parse_lenient(&expr));
    json_response(v, &q)
}

async fn job_json(
    State(s): Shr,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Params,
) -> Response {
    if let Err(e) = authenticate(&s, &headers) {
        return e.into_response();
    }
    let st = s.lock();
    let Some(job) = st.jobs.get(&name) else {
        return error(StatusCode::NOT_FOUND, format!("No job {name}"));
    };
    let mut v = st.job_json(job);
    // `allBuilds` is exported with visibility -2: only a `tree` that names it shows it.
    let all = matches!(q.get("tree").map(|t| tree::parse(t)), Some(Ok(sel)) if tree::selects(&sel, &["allBuilds"]));
    history::add_builds(&st, job, &mut v, all);
    drop(st);
    json_response(v, &q)
}

async fn build_job(State(s): Shr, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(e) = authorize_post(&s, &headers, "Job/Build") {
        return e.into_response();
    }
    let mut st = s.lock();
    let Some(id) = st.build_job(&name) else {
        return error(StatusCode::NOT_FOUND, format!("No job {name}"));
    };
    let location = format!("{}queue/item/{id}/", st.root_url);
    drop(st);
    s.wake.notify_one();
    redirect(StatusCode::CREATED, &location)
}

// ---- admin API (emulator only) ----

async fn admin_define_job(State(s): Shr, Json(spec): Json<JobSpec>) -> Response {
    if let Some(l) = &spec.label
        && let Err(e) = LabelExpr::parse(l)
    {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    s.lock().define_job(spec);
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_enqueue(State(s): Shr, Json(req): Json<EnqueueRequest>) -> Response {
    let ids = s.lock().enqueue(&req);
    match ids {
        Ok(ids) => {
            s.wake.notify_one();
            Json(json!({"ids": ids})).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn admin_stats(State(s): Shr) -> Response {
    Json(s.lock().stats()).into_response()
}

async fn admin_nodes(State(s): Shr) -> Response {
    Json(s.lock().node_views()).into_response()
}
