//! HTTP client for the Jenkins REST API: auth, CSRF crumbs, node and queue calls.
//!
//! Authenticates every request preemptively with Basic auth (Jenkins never negotiates).
//! API-token requests need no crumb (Jenkins >= 2.96); with a password the client fetches a
//! crumb once and replays it together with the session cookie it came with.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};
use serde::Deserialize;
use tokio::sync::Mutex;

use ecsp_http::{AGENT_JAR_MAX, BodyError, JENKINS_ANSWER_MAX, read_capped, read_text_capped};
use super::error::{JenkinsError, Op};
use super::model::{COMPUTER_TREE, Computer, ComputerSet, LabelInfo, QUEUE_IDS_TREE, QUEUE_TREE, Queue, QueueItem};

/// A secret string (API token or password) whose `Debug`/`Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself; call only where it is sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How the secret authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretKind {
    /// A Jenkins API token: no CSRF crumb needed.
    ApiToken,
    /// A password: POSTs need a crumb and the session cookie.
    Password,
}

/// User name and secret for Basic auth.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Jenkins user name.
    pub user: String,
    /// The user's API token or password.
    pub secret: Secret,
    /// Whether `secret` is an API token or a password.
    pub kind: SecretKind,
}

impl Credentials {
    /// User + API token (the recommended set-up).
    pub fn api_token(user: impl Into<String>, token: impl Into<String>) -> Self {
        Credentials {
            user: user.into(),
            secret: Secret::new(token),
            kind: SecretKind::ApiToken,
        }
    }

    /// User + password (needs crumbs; prefer an API token).
    pub fn password(user: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            user: user.into(),
            secret: Secret::new(password),
            kind: SecretKind::Password,
        }
    }

    /// User + API token read from the environment variable `var`.
    pub fn token_from_env(user: impl Into<String>, var: &str) -> Result<Self, JenkinsError> {
        let from = format!("environment variable {var}");
        let token = std::env::var(var).map_err(|e| JenkinsError::Credentials {
            from: from.clone(),
            reason: e.to_string(),
        })?;
        Self::checked(user, token.trim(), from)
    }

    /// User + API token read from a file (surrounding whitespace ignored).
    pub fn token_from_file(user: impl Into<String>, path: &Path) -> Result<Self, JenkinsError> {
        let from = format!("file {}", path.display());
        let token = std::fs::read_to_string(path).map_err(|e| JenkinsError::Credentials {
            from: from.clone(),
            reason: e.to_string(),
        })?;
        Self::checked(user, token.trim(), from)
    }

    fn checked(user: impl Into<String>, token: &str, from: String) -> Result<Self, JenkinsError> {
        if token.is_empty() {
            return Err(JenkinsError::Credentials {
                from,
                reason: "it is empty".into(),
            });
        }
        if token.chars().any(char::is_control) {
            return Err(JenkinsError::Credentials {
                from,
                reason: "it contains control characters".into(),
            });
        }
        Ok(Self::api_token(user, token))
    }

    fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.user, self.secret.expose());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// `NORMAL` takes any build; `EXCLUSIVE` only builds whose label expression matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum NodeMode {
    /// `NORMAL`: the node takes any build (the default).
    #[default]
    Normal,
    /// `EXCLUSIVE`: the node takes only builds whose label expression matches it.
    Exclusive,
}

impl NodeMode {
    /// The enum constant Jenkins binds (`Node.Mode`).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeMode::Normal => "NORMAL",
            NodeMode::Exclusive => "EXCLUSIVE",
        }
    }
}

/// A permanent inbound (WebSocket) agent to create.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundAgentSpec {
    /// Node name.
    pub name: String,
    /// Node description shown in the Jenkins UI (see [`describe_owned_instance`]).
    pub description: String,
    /// Number of executors on the node.
    pub num_executors: u32,
    /// Remote root directory on the agent (also its remoting work dir).
    pub remote_fs: String,
    /// Labels the node carries.
    pub labels: Vec<String>,
    /// Which builds the node takes.
    pub mode: NodeMode,
}

/// The node description the provisioner writes, carrying the instance facts an admin wants to
/// see in the Jenkins UI.
pub fn describe_instance(
    template: &str,
    instance_id: &str,
    zone: &str,
    instance_type: &str,
) -> String {
    format!(
        "ECS instance {instance_id} (template {template}, zone {zone}, type {instance_type}), managed by ecs-provisioner"
    )
}

/// Precedes the controller id at the end of an owned node's description.
pub const OWNER_MARKER: &str = "managed by ecs-provisioner controller ";

/// The description of a node this provisioner owns: the instance facts, then the controller id
/// (two provisioners may share one Jenkins; each must recognise only its own nodes).
pub fn describe_owned_instance(
    controller_id: &str,
    template: &str,
    instance_id: &str,
    zone: &str,
    instance_type: &str,
) -> String {
    format!(
        "ECS instance {instance_id} (template {template}, zone {zone}, type {instance_type}), {OWNER_MARKER}{controller_id}"
    )
}

/// The controller id a [`describe_owned_instance`] description names, if any. The id runs to
/// the first character a controller id cannot contain, so `ci` never matches `ci-2`.
pub fn owner_of(description: &str) -> Option<&str> {
    let (_, rest) = description.rsplit_once(OWNER_MARKER)?;
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|id| !id.is_empty())
}

/// Escapes text for an XML element.
fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Undoes XML escaping of element text: the five named entities and numeric references.
pub fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(j) = rest.find(';') else { break };
        let entity = &rest[1..j];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[j + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Encodes a node name as one URL path segment exactly as Jenkins' `Util.fullEncode` does:
/// everything except ASCII letters and digits is percent-encoded.
pub fn encode_segment(name: &str) -> String {
    utf8_percent_encode(name, NON_ALPHANUMERIC).to_string()
}

/// Checks a node name the way `Jenkins.checkGoodName` does.
pub fn check_node_name(name: &str) -> Result<(), JenkinsError> {
    let bad = |reason: String| {
        Err(JenkinsError::Invalid {
            what: "node name",
            reason,
        })
    };
    if name.trim().is_empty() {
        return bad("it is empty".into());
    }
    if name == "." || name == ".." {
        return bad(format!("{name:?} is reserved"));
    }
    if name.ends_with('.') {
        return bad(format!("{name:?} ends with '.'"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || "?*/\\%!@#$^&|<>[]:;".contains(*c))
    {
        return bad(format!("{name:?} contains the forbidden character {c:?}"));
    }
    Ok(())
}

#[derive(Clone)]
struct Crumb {
    field: String,
    value: String,
    cookie: Option<String>,
}

/// A Jenkins REST client. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct JenkinsClient {
    http: reqwest::Client,
    /// Root URL, always ending with `/`.
    base: String,
    credentials: Credentials,
    /// `None` = not fetched yet; `Some(None)` = Jenkins issues no crumbs.
    crumb: Mutex<Option<Option<Crumb>>>,
    /// Told each request's latency, once the daemon attaches its metrics.
    observer: std::sync::OnceLock<ecsp_http::RequestObserver>,
}

impl fmt::Debug for JenkinsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JenkinsClient")
            .field("base", &self.base)
            .field("user", &self.credentials.user)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CrumbAnswer {
    crumb: String,
    crumb_request_field: String,
}

/// A `temporarily offline` change the client made, or found already done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Changed {
    /// The client changed the state.
    Yes,
    /// The node already was in the wanted state.
    AlreadyThere,
}

/// The answer to [`JenkinsClient::agent_jar`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JarDownload {
    /// 304: the jar is the one of the `Last-Modified` sent.
    NotModified,
    /// The jar, with its `Last-Modified` header if the controller sent one.
    Fetched {
        /// The jar's bytes.
        bytes: Vec<u8>,
        /// The response's `Last-Modified` header, if sent.
        last_modified: Option<String>,
    },
}

/// How long the client waits for Jenkins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// For a TCP (and TLS) connection.
    pub connect: Duration,
    /// For the next bytes of an answer.
    pub read: Duration,
}

impl Default for Timeouts {
    /// 5 s to connect, 10 s of silence: a dead controller is reported within 20 s.
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(5), read: Duration::from_secs(10) }
    }
}

impl JenkinsClient {
    /// A client for the Jenkins at `base_url` (http or https; a missing trailing `/` is added),
    /// with the default timeouts ([`Timeouts::default`]).
    pub fn new(base_url: &str, credentials: Credentials) -> Result<Self, JenkinsError> {
        Self::with_timeouts(base_url, credentials, Timeouts::default())
    }

    /// [`JenkinsClient::new`] with the given connect and read timeouts.
    pub fn with_timeouts(base_url: &str, credentials: Credentials, timeouts: Timeouts) -> Result<Self, JenkinsError> {
        let bad = |reason: &str| JenkinsError::BadUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let url = reqwest::Url::parse(base_url).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("it must not have a query or fragment"));
        }
        let mut base = url.to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            // A whole-request bound too, so an endpoint that trickles bytes cannot hold a call.
            .timeout((timeouts.read * 3).max(Duration::from_secs(30)))
            // A redirect after a POST is Jenkins saying "done"; following it only costs a call.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(JenkinsClient {
            http,
            base,
            credentials,
            crumb: Mutex::new(None),
            observer: std::sync::OnceLock::new(),
        })
    }

    /// The root URL, ending with `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The user this client authenticates as.
    pub fn user(&self) -> &str {
        &self.credentials.user
    }

    /// Tells `observer` the latency of every request from now on, named by its operation
    /// (`list computers`, `create node`...), with the outcome `success` (2xx, 3xx, 304),
    /// `client-error` (4xx), `server-error` (5xx), `timeout` or `transport-error`. Only the
    /// first observer attached is kept.
    pub fn observe_requests(&self, observer: ecsp_http::RequestObserver) {
        let _ = self.observer.set(observer);
    }

    /// Sends a request, timing it for the observer.
    async fn dispatch(&self, req: RequestBuilder, op: Op) -> Result<Response, reqwest::Error> {
        let started = std::time::Instant::now();
        let result = req.send().await;
        if let Some(observe) = self.observer.get() {
            let outcome = match &result {
                Ok(r) if r.status().is_client_error() => "client-error",
                Ok(r) if r.status().is_server_error() => "server-error",
                Ok(_) => "success",
                Err(e) if e.is_timeout() => "timeout",
                Err(_) => "transport-error",
            };
            observe(op.what, outcome, started.elapsed());
        }
        result
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header(header::AUTHORIZATION, self.credentials.basic_header())
            // `why` texts are localised; the parser knows the English ones.
            .header(header::ACCEPT_LANGUAGE, "en")
    }

    /// Adds the crumb (and its session cookie) to a POST when password auth needs one.
    async fn with_crumb(&self, req: RequestBuilder) -> Result<RequestBuilder, JenkinsError> {
        if self.credentials.kind == SecretKind::ApiToken {
            return Ok(req);
        }
        let mut slot = self.crumb.lock().await;
        if slot.is_none() {
            *slot = Some(self.fetch_crumb().await?);
        }
        Ok(match slot.as_ref().and_then(|c| c.as_ref()) {
            Some(c) => {
                let req = req.header(c.field.as_str(), c.value.as_str());
                match &c.cookie {
                    Some(cookie) => req.header(header::COOKIE, cookie.as_str()),
                    None => req,
                }
            }
            None => req,
        })
    }

    async fn fetch_crumb(&self) -> Result<Option<Crumb>, JenkinsError> {
        let op = Op::CRUMB;
        let resp = self
            .dispatch(self.request(Method::GET, "crumbIssuer/api/json"), op)
            .await
            .map_err(|error| JenkinsError::Transport {
                op: op.what,
                error,
            })?;
        // Like python-jenkins: no crumb issuer (CSRF protection off) means no crumb needed.
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp, op, "crumb issuer").await?;
        let cookie: Vec<String> = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next().map(str::trim).map(str::to_string))
            .collect();
        let answer: CrumbAnswer = decode(resp, op).await?;
        Ok(Some(Crumb {
            field: answer.crumb_request_field,
            value: answer.crumb,
            cookie: (!cookie.is_empty()).then(|| cookie.join("; ")),
        }))
    }

    /// Maps a non-success status to an error naming the operation and permission.
    async fn check(&self, resp: Response, op: Op, what: &str) -> Result<Response, JenkinsError> {
        let status = resp.status();
        if status.is_success() || status.is_redirection() {
            return Ok(resp);
        }
        let body = ecsp_http::read_error_text(resp).await;
        let body = first_line(&body);
        let user = self.credentials.user.clone();
        Err(match status {
            StatusCode::UNAUTHORIZED => JenkinsError::Unauthorized { user, op: op.what },
            StatusCode::FORBIDDEN => JenkinsError::Forbidden {
                user,
                op: op.what,
                permission: op.permission,
                detail: if body.is_empty() {
                    String::new()
                } else {
                    format!(" (Jenkins said: {body})")
                },
            },
            StatusCode::NOT_FOUND => JenkinsError::NotFound {
                what: what.to_string(),
                op: op.what,
            },
            s => JenkinsError::Status {
                status: s.as_u16(),
                op: op.what,
                body,
            },
        })
    }

    async fn send(
        &self,
        req: RequestBuilder,
        op: Op,
        what: &str,
    ) -> Result<Response, JenkinsError> {
        let resp = self.dispatch(req, op).await.map_err(|error| JenkinsError::Transport {
            op: op.what,
            error,
        })?;
        self.check(resp, op, what).await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        op: Op,
        what: &str,
    ) -> Result<T, JenkinsError> {
        let resp = self.send(self.request(Method::GET, path), op, what).await?;
        // A redirected read means the URL is not the controller's root (or a login proxy).
        if resp.status().is_redirection() {
            let to = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            return Err(JenkinsError::Status {
                status: resp.status().as_u16(),
                op: op.what,
                body: format!(
                    "redirected to {to}: check the Jenkins URL (the root, with any context path)"
                ),
            });
        }
        decode(resp, op).await
    }

    /// Sends a POST (with a crumb when needed) and returns the raw answer. A crumb rejected
    /// because its session expired is fetched anew once.
    async fn post_raw(
        &self,
        path: &str,
        op: Op,
        form: Option<&[(&str, &str)]>,
    ) -> Result<Response, JenkinsError> {
        for attempt in 0..2 {
            let mut req = self.request(Method::POST, path);
            req = match form {
                Some(f) => req.form(f),
                None => req.header(header::CONTENT_LENGTH, "0"),
            };
            let req = self.with_crumb(req).await?;
            let resp = self.dispatch(req, op).await.map_err(|error| JenkinsError::Transport {
                op: op.what,
                error,
            })?;
            let stale_crumb = self.credentials.kind == SecretKind::Password
                && resp.status() == StatusCode::FORBIDDEN
                && attempt == 0;
            if !stale_crumb {
                return Ok(resp);
            }
            let body = ecsp_http::read_error_text(resp).await;
            if !body.contains("No valid crumb") {
                return Err(JenkinsError::Forbidden {
                    user: self.credentials.user.clone(),
                    op: op.what,
                    permission: op.permission,
                    detail: format!(" (Jenkins said: {})", first_line(&body)),
                });
            }
            *self.crumb.lock().await = None;
        }
        Err(JenkinsError::Forbidden {
            user: self.credentials.user.clone(),
            op: op.what,
            permission: op.permission,
            detail: " (Jenkins kept refusing the CSRF crumb)".into(),
        })
    }

    async fn post(
        &self,
        path: &str,
        op: Op,
        what: &str,
        form: Option<&[(&str, &str)]>,
    ) -> Result<Response, JenkinsError> {
        let resp = self.post_raw(path, op, form).await?;
        self.check(resp, op, what).await
    }

    /// Checks connectivity and credentials; returns the Jenkins version (`X-Jenkins` header).
    pub async fn version(&self) -> Result<String, JenkinsError> {
        let resp = self
            .send(
                self.request(Method::GET, "api/json?tree=mode"),
                Op::READ,
                "Jenkins root",
            )
            .await?;
        resp.headers()
            .get("X-Jenkins")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or(JenkinsError::Decode {
                op: Op::READ.what,
                reason: "no X-Jenkins header: is this URL a Jenkins controller?".into(),
            })
    }

    /// Creates a permanent inbound agent with a WebSocket JNLP launcher.
    pub async fn create_inbound_agent(&self, spec: &InboundAgentSpec) -> Result<(), JenkinsError> {
        check_node_name(&spec.name)?;
        if spec.num_executors == 0 {
            return Err(JenkinsError::Invalid {
                what: "executor count",
                reason: format!("node {:?} needs at least one executor", spec.name),
            });
        }
        let json = create_node_json(spec).to_string();
        let form = [
            ("name", spec.name.as_str()),
            ("type", "hudson.slaves.DumbSlave"),
            ("json", json.as_str()),
        ];
        let op = Op::CREATE_NODE;
        let resp = self
            .post_raw("computer/doCreateItem", op, Some(&form))
            .await?;
        if resp.status() == StatusCode::BAD_REQUEST {
            let body = ecsp_http::read_error_text(resp).await;
            if body.contains("already exists") {
                return Err(JenkinsError::AlreadyExists {
                    name: spec.name.clone(),
                });
            }
            return Err(JenkinsError::Status {
                status: 400,
                op: op.what,
                body: first_line(&body),
            });
        }
        self.check(resp, op, "computer/doCreateItem").await?;
        Ok(())
    }

    /// The inbound agent secret of a node, from `/computer/<name>/jenkins-agent.jnlp`.
    pub async fn agent_secret(&self, name: &str) -> Result<String, JenkinsError> {
        let op = Op::READ_SECRET;
        let path = format!("computer/{}/jenkins-agent.jnlp", encode_segment(name));
        let resp = self
            .send(
                self.request(Method::GET, &path),
                op,
                &format!("node {name:?}"),
            )
            .await?;
        let body = read_text(resp, op, JENKINS_ANSWER_MAX).await?;
        secret_from_jnlp(&body).map_err(|reason| JenkinsError::Decode {
            op: op.what,
            reason,
        })
    }

    /// The builds Jenkins records as run on node `name` (its `rssAll` feed; see
    /// [`super::node_builds`]), or `None` if there is no such node.
    pub async fn node_builds(
        &self,
        name: &str,
    ) -> Result<Option<Vec<super::node_builds::NodeBuild>>, JenkinsError> {
        let op = Op::READ_NODE_BUILDS;
        let path = format!("computer/{}/rssAll", encode_segment(name));
        let resp = match self
            .send(self.request(Method::GET, &path), op, &format!("node {name:?}"))
            .await
        {
            Ok(r) => r,
            Err(JenkinsError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let body = resp
            .text()
            .await
            .map_err(|error| JenkinsError::Transport {
                op: op.what,
                error,
            })?;
        super::node_builds::parse_rss_all(&body)
            .map(Some)
            .map_err(|reason| JenkinsError::Decode {
                op: op.what,
                reason,
            })
    }

    /// Downloads `<root>/jnlpJars/agent.jar`. With `if_modified_since` (a `Last-Modified`
    /// value from an earlier download) Jenkins answers 304 when the jar has not changed, which
    /// costs no transfer.
    pub async fn agent_jar(
        &self,
        if_modified_since: Option<&str>,
    ) -> Result<JarDownload, JenkinsError> {
        let op = Op::AGENT_JAR;
        let mut req = self
            .request(Method::GET, "jnlpJars/agent.jar")
            .timeout(Duration::from_secs(120));
        if let Some(since) = if_modified_since {
            req = req.header(header::IF_MODIFIED_SINCE, since);
        }
        let resp = self.dispatch(req, op).await.map_err(|error| JenkinsError::Transport {
            op: op.what,
            error,
        })?;
        if resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(JarDownload::NotModified);
        }
        let resp = self.check(resp, op, "jnlpJars/agent.jar").await?;
        if resp.status().is_redirection() {
            return Err(JenkinsError::Status {
                status: resp.status().as_u16(),
                op: op.what,
                body: "redirected: check the Jenkins URL (the root, with any context path)".into(),
            });
        }
        let last_modified = resp
            .headers()
            .get(header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_capped(resp, AGENT_JAR_MAX).await.map_err(|e| body_error(op, e))?;
        if bytes.is_empty() {
            return Err(JenkinsError::Decode {
                op: op.what,
                reason: "the controller served an empty agent.jar".into(),
            });
        }
        Ok(JarDownload::Fetched {
            bytes,
            last_modified,
        })
    }

    /// All computers (the built-in node included), with the fields [`Computer`] reads.
    pub async fn computers(&self) -> Result<Vec<Computer>, JenkinsError> {
        let set: ComputerSet = self
            .get_json(&COMPUTERS_PATH, Op::LIST_COMPUTERS, "computer list")
            .await?;
        Ok(set.computer)
    }

    /// One computer, or `None` if there is no node of that name.
    pub async fn computer(&self, name: &str) -> Result<Option<Computer>, JenkinsError> {
        let inner = COMPUTER_TREE
            .strip_prefix("computer[")
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(COMPUTER_TREE);
        let path = format!(
            "computer/{}/api/json?tree={}",
            encode_segment(name),
            query_encode(inner)
        );
        match self
            .get_json(&path, Op::READ_COMPUTER, &format!("node {name:?}"))
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(JenkinsError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Marks a node temporarily offline with `reason`, unless it already is.
    ///
    /// Jenkins' `toggleOffline` flips the state, so the client reads the state first.
    pub async fn take_offline(&self, name: &str, reason: &str) -> Result<Changed, JenkinsError> {
        let c = self
            .computer(name)
            .await?
            .ok_or_else(|| JenkinsError::NotFound {
                what: format!("node {name:?}"),
                op: Op::TAKE_OFFLINE.what,
            })?;
        if c.temporarily_offline {
            return Ok(Changed::AlreadyThere);
        }
        let path = format!(
            "computer/{}/toggleOffline?offlineMessage={}",
            encode_segment(name),
            query_encode(reason)
        );
        self.post(&path, Op::TAKE_OFFLINE, &format!("node {name:?}"), None)
            .await?;
        Ok(Changed::Yes)
    }

    /// Replaces the message of a node's temporarily-offline mark (`changeOfflineCause`),
    /// without bringing it online.
    pub async fn change_offline_cause(&self, name: &str, message: &str) -> Result<(), JenkinsError> {
        let path = format!("computer/{}/changeOfflineCause?offlineMessage={}", encode_segment(name), query_encode(message));
        self.post(&path, Op::TAKE_OFFLINE, &format!("node {name:?}"), None).await?;
        Ok(())
    }

    /// Clears a node's temporarily-offline mark, if it has one.
    pub async fn bring_online(&self, name: &str) -> Result<Changed, JenkinsError> {
        let c = self
            .computer(name)
            .await?
            .ok_or_else(|| JenkinsError::NotFound {
                what: format!("node {name:?}"),
                op: Op::BRING_ONLINE.what,
            })?;
        if !c.temporarily_offline {
            return Ok(Changed::AlreadyThere);
        }
        let path = format!(
            "computer/{}/toggleOffline?offlineMessage=",
            encode_segment(name)
        );
        self.post(&path, Op::BRING_ONLINE, &format!("node {name:?}"), None)
            .await?;
        Ok(Changed::Yes)
    }

    /// The node's description, changed by `edit`, written back the way python-jenkins'
    /// `reconfig_node` does it: `config.xml` read, changed, posted. Other settings are kept.
    pub async fn edit_node_description(&self, name: &str, edit: impl FnOnce(&str) -> String) -> Result<(), JenkinsError> {
        let path = format!("computer/{}/config.xml", encode_segment(name));
        let what = format!("node {name:?}");
        let op = Op::CONFIGURE_NODE;
        let xml = self
            .send(self.request(Method::GET, &path), op, &what)
            .await?;
        let xml = read_text(xml, op, JENKINS_ANSWER_MAX).await?;
        // Jenkins writes XML 1.1, which XML 1.0 parsers refuse; the element is found by hand
        // and replaced in place, so everything else stays byte for byte.
        let (start, end, old) = match (xml.find("<description>"), xml.find("</description>"), xml.find("<description/>")) {
            (Some(a), Some(b), _) if a < b => (a, b + "</description>".len(), xml_unescape(&xml[a + "<description>".len()..b])),
            (_, _, Some(a)) => (a, a + "<description/>".len(), String::new()),
            _ => {
                return Err(JenkinsError::Decode {
                    op: op.what,
                    reason: format!("config.xml of {what} has no <description> element"),
                });
            }
        };
        let body = format!("{}<description>{}</description>{}", &xml[..start], xml_text(&edit(&old)), &xml[end..]);
        let req = self
            .request(Method::POST, &path)
            .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body);
        let req = self.with_crumb(req).await?;
        self.send(req, op, &what).await.map(drop)
    }

    /// Deletes a node; `Ok(false)` if it did not exist (deleting is idempotent).
    pub async fn delete_node(&self, name: &str) -> Result<bool, JenkinsError> {
        let path = format!("computer/{}/doDelete", encode_segment(name));
        match self
            .post(&path, Op::DELETE_NODE, &format!("node {name:?}"), None)
            .await
        {
            Ok(_) => Ok(true),
            Err(JenkinsError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The build queue, in English, with the fields [`QueueItem`] reads.
    pub async fn queue(&self) -> Result<Vec<QueueItem>, JenkinsError> {
        let q: Queue = self.get_json(&QUEUE_PATH, Op::READ_QUEUE, "build queue").await?;
        Ok(q.items)
    }

    /// The ids of the queue's items that wait for an executor (buildable, not yet handed to
    /// one): a cheap read of [`QUEUE_IDS_TREE`] for watching the queue between cycles.
    pub async fn buildable_queue_ids(&self) -> Result<Vec<u64>, JenkinsError> {
        let q: Queue = self.get_json(&QUEUE_IDS_PATH, Op::READ_QUEUE, "build queue").await?;
        Ok(q.items.iter().filter(|i| i.waits_for_executor()).map(|i| i.id).collect())
    }

    /// Executor counts of a label expression (`/label/<expr>/api/json`).
    pub async fn label(&self, expr: &str) -> Result<LabelInfo, JenkinsError> {
        let path = format!(
            "label/{}/api/json?tree={}",
            encode_segment(expr),
            query_encode("name,idleExecutors,busyExecutors,totalExecutors,offline,nodes[nodeName]")
        );
        self.get_json(&path, Op::READ_LABEL, &format!("label {expr:?}"))
            .await
    }
}

/// The `json` form field of `doCreateItem` for a WebSocket inbound agent (reference §2.1).
pub fn create_node_json(spec: &InboundAgentSpec) -> serde_json::Value {
    serde_json::json!({
        "name": spec.name,
        "nodeDescription": spec.description,
        "numExecutors": spec.num_executors,
        "remoteFS": spec.remote_fs,
        "labelString": spec.labels.iter().map(|l| super::label::quote_label_string(l)).collect::<Vec<_>>().join(" "),
        "mode": spec.mode.as_str(),
        "launcher": {
            "$class": "hudson.slaves.JNLPLauncher",
            "webSocket": true,
            "workDirSettings": {"disabled": false, "workDirPath": "", "internalDir": "remoting", "failIfWorkDirIsMissing": false}
        },
        "retentionStrategy": {"$class": "hudson.slaves.RetentionStrategy$Always"},
        "nodeProperties": {"stapler-class-bag": "true"}
    })
}

/// The secret in a `jenkins-agent.jnlp`: the first `application-desc/argument`.
pub fn secret_from_jnlp(xml: &str) -> Result<String, String> {
    let doc = roxmltree::Document::parse(xml)
        .map_err(|e| format!("jenkins-agent.jnlp is not XML: {e}"))?;
    let desc = doc
        .descendants()
        .find(|n| n.has_tag_name("application-desc"))
        .ok_or("jenkins-agent.jnlp has no <application-desc>")?;
    let secret = desc
        .children()
        .find(|n| n.has_tag_name("argument"))
        .and_then(|n| n.text())
        .map(str::trim)
        .ok_or("jenkins-agent.jnlp has no <argument> in <application-desc>")?;
    if secret.is_empty() || !secret.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("the first <argument> of jenkins-agent.jnlp is not a hex secret".into());
    }
    Ok(secret.to_string())
}

/// The paths of the reads every cycle (and the queue watcher, ten times a second) makes, their
/// `tree` percent-encoded once: encoding them at each read was a few percent of a steady cycle.
static COMPUTERS_PATH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("computer/api/json?tree={}", query_encode(COMPUTER_TREE)));
static QUEUE_PATH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("queue/api/json?tree={}", query_encode(QUEUE_TREE)));
static QUEUE_IDS_PATH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("queue/api/json?tree={}", query_encode(QUEUE_IDS_TREE)));

fn query_encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fn first_line(body: &str) -> String {
    let line = body
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    line.chars().take(200).collect()
}

/// A capped read's failure as the client's error: too large is a decode error (not retried).
fn body_error(op: Op, e: BodyError) -> JenkinsError {
    match e {
        BodyError::Transport(error) => JenkinsError::Transport { op: op.what, error },
        e @ BodyError::TooLarge { .. } => JenkinsError::Decode { op: op.what, reason: e.to_string() },
    }
}

async fn read_text(resp: Response, op: Op, limit: usize) -> Result<String, JenkinsError> {
    read_text_capped(resp, limit).await.map_err(|e| body_error(op, e))
}

async fn decode<T: serde::de::DeserializeOwned>(resp: Response, op: Op) -> Result<T, JenkinsError> {
    let bytes = read_capped(resp, JENKINS_ANSWER_MAX).await.map_err(|e| body_error(op, e))?;
    serde_json::from_slice(&bytes).map_err(|e| JenkinsError::Decode {
        op: op.what,
        reason: format!("bad JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_debugs_as_a_redaction_marker_never_as_its_value() {
        let s = Secret::new("11e5c0ffee-token");
        // Says what it is (so a log line shows a secret was there), never what it holds.
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(<redacted>))");
    }

    #[test]
    fn node_names_encode_like_full_encode() {
        assert_eq!(encode_segment("linux-i-abc123"), "linux%2Di%2Dabc123");
        assert_eq!(encode_segment("a b+c"), "a%20b%2Bc");
        assert_eq!(encode_segment("ü"), "%C3%BC");
    }

    #[test]
    fn bad_node_names_are_refused() {
        for bad in ["", " ", ".", "..", "a/b", "a:b", "x."] {
            assert!(check_node_name(bad).is_err(), "{bad:?}");
        }
        check_node_name("linux-i-123").unwrap();
    }

    #[test]
    fn tokens_load_from_files_trimmed_and_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  11abcdef\n").unwrap();
        let c = Credentials::token_from_file("bob", &file).unwrap();
        assert_eq!(
            (c.secret.expose(), c.kind),
            ("11abcdef", SecretKind::ApiToken)
        );
        std::fs::write(&file, "\n").unwrap();
        let e = Credentials::token_from_file("bob", &file)
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty") && e.contains("token"), "{e}");
        let e = Credentials::token_from_file("bob", &dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
        let e = Credentials::token_from_env("bob", "ECSP_TEST_SURELY_UNSET_VARIABLE")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ECSP_TEST_SURELY_UNSET_VARIABLE"), "{e}");
    }

    #[test]
    fn secret_debug_is_redacted() {
        let c = Credentials::api_token("bob", "11deadbeef");
        assert!(!format!("{c:?}").contains("deadbeef"));
    }

    #[test]
    fn secret_is_first_argument_of_the_jnlp() {
        let xml = "<jnlp codebase='x'><application-desc><argument>abc123</argument><argument>n</argument>\
                   <argument>-webSocket</argument></application-desc></jnlp>";
        assert_eq!(secret_from_jnlp(xml).unwrap(), "abc123");
        assert!(
            secret_from_jnlp("<jnlp/>")
                .unwrap_err()
                .contains("application-desc")
        );
        assert!(secret_from_jnlp("not xml").unwrap_err().contains("not XML"));
    }

    #[test]
    fn owned_descriptions_name_exactly_their_controller() {
        let d = describe_owned_instance("ci-prod", "linux", "i-1", "cn-hangzhou-h", "ecs.g7.large");
        assert!(d.contains("i-1") && d.contains("cn-hangzhou-h") && d.contains("ecs.g7.large"));
        assert_eq!(owner_of(&d), Some("ci-prod"));
        assert_eq!(
            owner_of(&format!("{d}; edited by an admin")),
            Some("ci-prod")
        );
        assert_ne!(
            owner_of(&describe_owned_instance("ci-prod2", "l", "i", "z", "t")),
            Some("ci-prod")
        );
        // The unowned description and foreign text name no controller.
        assert_eq!(owner_of(&describe_instance("linux", "i-1", "z", "t")), None);
        assert_eq!(owner_of(OWNER_MARKER), None);
    }

    #[test]
    fn create_json_has_websocket_jnlp_launcher() {
        let spec = InboundAgentSpec {
            name: "t-i-1".into(),
            description: describe_instance("t", "i-1", "cn-hangzhou-h", "ecs.g7.large"),
            num_executors: 2,
            remote_fs: "/home/jenkins/agent".into(),
            labels: vec!["linux".into(), "docker".into()],
            mode: NodeMode::Exclusive,
        };
        let j = create_node_json(&spec);
        assert_eq!(j["launcher"]["$class"], "hudson.slaves.JNLPLauncher");
        assert_eq!(j["launcher"]["webSocket"], true);
        assert_eq!(j["labelString"], "linux docker");
        assert_eq!(j["mode"], "EXCLUSIVE");
        assert!(j["nodeDescription"].as_str().unwrap().contains("i-1"));
    }
}
