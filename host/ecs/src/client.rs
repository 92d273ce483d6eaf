//! The signed HTTP transport: one [`EcsClient::call`] signs, sends, classifies and retries.
//! Typed actions (`actions/`) are thin layers on top.
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::Retryable as _;
use serde::de::DeserializeOwned;

use super::credentials::{Credentials, SharedProvider};
use super::error::{CapacityDetail, EcsError, ErrorKind, classify};
use super::retry::RetryPolicy;
use super::signer::{self, Params, SigningContext};
use super::stats::{ActionStats, Stats};

/// Which API product an action belongs to: decides `Version` and endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// ECS, `Version=2014-05-26`.
    Ecs,
    /// VPC, `Version=2016-04-28`, its own endpoint.
    Vpc,
}

impl Api {
    /// The API `Version` parameter: `2014-05-26` for ECS, `2016-04-28` for VPC.
    pub fn version(self) -> &'static str {
        match self {
            Api::Ecs => "2014-05-26",
            Api::Vpc => "2016-04-28",
        }
    }
}

/// HTTP method used for RPC calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// Parameters in the URL query.
    Get,
    /// Parameters in an `application/x-www-form-urlencoded` body (keeps the STS token out of URLs).
    #[default]
    Post,
}

/// Client settings; deserialisable so the host config can embed them (`[ecs]` in TOML):
/// only `region_id` is required.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Region, e.g. `cn-hangzhou`; sent as `RegionId`.
    pub region_id: String,
    /// ECS endpoint override (`https://ecs-vpc.cn-hangzhou.aliyuncs.com`, `http://127.0.0.1:PORT`).
    #[serde(default)]
    pub ecs_endpoint: Option<String>,
    /// VPC endpoint override.
    #[serde(default)]
    pub vpc_endpoint: Option<String>,
    /// HTTP method for calls; POST by default.
    #[serde(default)]
    pub method: HttpMethod,
    /// Whole-request timeout, seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Connect timeout, seconds.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Read timeout, milliseconds: the longest wait for the next bytes of an answer, so a
    /// silent endpoint is given up on long before the whole-request timeout.
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// Retry and backoff settings; [`RetryPolicy::default`] when absent.
    #[serde(default)]
    pub retry: RetryPolicy,
}

fn default_timeout_secs() -> u64 {
    30
}
fn default_connect_timeout_secs() -> u64 {
    5
}
fn default_read_timeout_ms() -> u64 {
    10_000
}

impl ClientConfig {
    /// Defaults for a region: public regional endpoints, POST, 30 s timeout, default retries.
    pub fn new(region_id: impl Into<String>) -> Self {
        Self {
            region_id: region_id.into(),
            ecs_endpoint: None,
            vpc_endpoint: None,
            method: HttpMethod::Post,
            timeout_secs: default_timeout_secs(),
            connect_timeout_secs: default_connect_timeout_secs(),
            read_timeout_ms: default_read_timeout_ms(),
            retry: RetryPolicy::default(),
        }
    }

    /// Points both ECS and VPC at one base URL (the emulator serves both).
    pub fn with_endpoint(mut self, base_url: impl Into<String>) -> Self {
        let url = base_url.into();
        self.ecs_endpoint = Some(url.clone());
        self.vpc_endpoint = Some(url);
        self
    }

    /// The base URL for an API: the override, else the regional public endpoint
    /// (`ecs.{region}.aliyuncs.com`, `vpc.{region}.aliyuncs.com`, reference §5) over HTTPS.
    pub fn endpoint(&self, api: Api) -> String {
        let (over, product) = match api {
            Api::Ecs => (&self.ecs_endpoint, "ecs"),
            Api::Vpc => (&self.vpc_endpoint, "vpc"),
        };
        let url = match over {
            Some(u) if u.contains("://") => u.clone(),
            Some(host) => format!("https://{host}"),
            None => format!("https://{product}.{}.aliyuncs.com", self.region_id),
        };
        format!("{}/", url.trim_end_matches('/'))
    }
}

/// The HTTP client could not be built (TLS backend initialisation).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the ECS HTTP client: {0}")]
pub struct ClientBuildError(String);

/// Signed, retrying client for the ECS and VPC RPC APIs. Cheap to clone.
#[derive(Clone)]
pub struct EcsClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    credentials: SharedProvider,
    stats: Stats,
    /// Told each request's latency, once the daemon attaches its metrics.
    observer: std::sync::OnceLock<ecsp_http::RequestObserver>,
}

impl std::fmt::Debug for EcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcsClient")
            .field("region_id", &self.inner.config.region_id)
            .field("ecs_endpoint", &self.inner.config.endpoint(Api::Ecs))
            .field("credentials", &self.inner.credentials.describe())
            .finish()
    }
}

/// What came back from the server on one attempt.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    #[serde(rename = "Code", alias = "code")]
    code: String,
    #[serde(rename = "Message", alias = "message")]
    message: String,
    #[serde(rename = "RequestId", alias = "requestId")]
    request_id: String,
}

impl EcsClient {
    /// Builds a client; fails only if the TLS backend cannot initialise.
    pub fn new(
        config: ClientConfig,
        credentials: SharedProvider,
    ) -> Result<Self, ClientBuildError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs))
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .read_timeout(Duration::from_millis(config.read_timeout_ms))
            .user_agent(concat!("ecs-provisioner/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientBuildError(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                credentials,
                stats: Stats::default(),
                observer: std::sync::OnceLock::new(),
            }),
        })
    }

    /// A client with fixed credentials.
    pub fn with_credentials(
        config: ClientConfig,
        credentials: Credentials,
    ) -> Result<Self, ClientBuildError> {
        Self::new(
            config,
            Arc::new(super::credentials::StaticProvider(credentials)),
        )
    }

    /// The settings the client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The credentials the next call would sign with (for `check`: which source, whose).
    pub async fn current_credentials(&self) -> Result<Credentials, super::credentials::CredentialsError> {
        self.inner.credentials.credentials().await
    }

    /// Per-action counters of calls, requests, retries and errors.
    pub fn stats(&self) -> Vec<ActionStats> {
        self.inner.stats.snapshot()
    }

    /// Tells `observer` the latency of every request from now on (retries each count), with
    /// the outcome `success` or the error's class ([`ErrorKind::label`]). Only the first
    /// observer attached is kept.
    pub fn observe_requests(&self, observer: ecsp_http::RequestObserver) {
        let _ = self.inner.observer.set(observer);
    }

    /// Calls an action and decodes its JSON answer. `RegionId` is added unless present.
    pub async fn call<T: DeserializeOwned>(
        &self,
        api: Api,
        action: &str,
        params: Params,
    ) -> Result<T, EcsError> {
        self.call_for(api, action, params, CapacityDetail::default())
            .await
    }

    /// Like [`call`](Self::call), naming the offering a capacity error would be about.
    pub(crate) async fn call_for<T: DeserializeOwned>(
        &self,
        api: Api,
        action: &str,
        mut params: Params,
        offering: CapacityDetail,
    ) -> Result<T, EcsError> {
        let stats = &self.inner.stats;
        stats.call(action);
        params.insert("Action".into(), action.into());
        params.insert("Version".into(), api.version().into());
        params
            .entry("RegionId".into())
            .or_insert_with(|| self.inner.config.region_id.clone());
        let attempts = AtomicU32::new(0);
        let started = std::time::Instant::now();
        let retry = &self.inner.config.retry;
        let attempt = || async {
            let n = attempts.fetch_add(1, Ordering::SeqCst);
            stats.request(action, n > 0);
            let started = std::time::Instant::now();
            let r = self.attempt::<T>(api, action, &params, &offering).await;
            if let Some(observe) = self.inner.observer.get() {
                observe(action, r.as_ref().map_or_else(|e| e.kind.label(), |_| "success"), started.elapsed());
            }
            if let Err(e) = &r
                && e.kind == ErrorKind::Throttling
            {
                stats.throttled(action);
            }
            r
        };
        let result = attempt
            .retry(self.inner.config.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(|e: &EcsError| e.is_retryable())
            .adjust(|e: &EcsError, delay| {
                let delay = match (e.retry_after, delay) {
                    // The server said how long to wait: do not come back sooner.
                    (Some(after), Some(d)) => Some(d.max(after)),
                    (_, d) => d,
                };
                // Past the retry budget the error is reported as it is.
                delay.filter(|d| retry.within_budget(started, *d))
            })
            .notify(|e: &EcsError, delay| {
                tracing::warn!(action, code = %e.code, request_id = ?e.request_id, ?delay, "retrying ECS call");
            })
            .await;
        result.map_err(|mut e| {
            e.attempts = attempts.load(Ordering::SeqCst);
            stats.error(action, &e.code);
            tracing::debug!(action, code = %e.code, request_id = ?e.request_id, attempts = e.attempts, "ECS call failed");
            e
        })
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        api: Api,
        action: &str,
        params: &Params,
        offering: &CapacityDetail,
    ) -> Result<T, EcsError> {
        let creds = self
            .inner
            .credentials
            .credentials()
            .await
            .map_err(|e| EcsError::from_credentials(action, e))?;
        let mut signed = params.clone();
        let method = self.inner.config.method;
        let method_name = match method {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        };
        let nonce = uuid::Uuid::new_v4().to_string();
        let timestamp = signer::timestamp_now();
        let ctx = SigningContext {
            method: method_name,
            nonce: &nonce,
            timestamp: &timestamp,
        };
        let our_sts = signer::sign(
            &mut signed,
            &ctx,
            &creds.access_key_id,
            creds.access_key_secret.expose(),
            creds.security_token.as_ref().map(|t| t.expose()),
        );
        let answer = self.send(api, action, method, &signed).await?;
        if (200..300).contains(&answer.status) {
            return serde_json::from_str(&answer.body).map_err(|e| {
                let request_id = serde_json::from_str::<ErrorBody>(&answer.body)
                    .ok()
                    .map(|b| b.request_id);
                EcsError {
                    request_id: request_id.filter(|r| !r.is_empty()),
                    http_status: Some(answer.status),
                    ..EcsError::local(
                        action,
                        "Decode",
                        format!("unexpected response: {e}"),
                        ErrorKind::Decode,
                    )
                }
            });
        }
        Err(self.server_error(action, &answer, &our_sts, &creds, offering))
    }

    async fn send(
        &self,
        api: Api,
        action: &str,
        method: HttpMethod,
        params: &Params,
    ) -> Result<Answer, EcsError> {
        let url = self.inner.config.endpoint(api);
        let req = match method {
            HttpMethod::Get => self.inner.http.get(&url).query(params),
            HttpMethod::Post => self.inner.http.post(&url).form(params),
        };
        let transport = |e: reqwest::Error| {
            // The endpoint, never the request's URL: with GET its query carries the STS token.
            let cause = ecsp_http::transport_cause(&e);
            EcsError::local(action, "Transport", format!("cannot reach {url}: {cause}"), ErrorKind::Transient)
        };
        let res = req.send().await.map_err(transport)?;
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get("x-acs-retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        let body = match ecsp_http::read_text_capped(res, ecsp_http::ECS_ANSWER_MAX).await {
            Ok(body) => body,
            Err(ecsp_http::BodyError::Transport(e)) => return Err(transport(e)),
            // Not retried: the same request would get the same answer.
            Err(e @ ecsp_http::BodyError::TooLarge { .. }) => {
                return Err(EcsError::local(action, "ResponseTooLarge", format!("{e} ({url})"), ErrorKind::Decode));
            }
        };
        tracing::debug!(action, status, "ECS answered");
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    fn server_error(
        &self,
        action: &str,
        answer: &Answer,
        our_sts: &str,
        creds: &Credentials,
        offering: &CapacityDetail,
    ) -> EcsError {
        let body: ErrorBody = serde_json::from_str(&answer.body).unwrap_or_default();
        let code = if body.code.is_empty() {
            format!("HTTP{}", answer.status)
        } else {
            body.code
        };
        let mut kind = classify(&code, answer.status, || offering.clone());
        let mut message = body.message;
        if let ErrorKind::Signature { .. } = kind {
            // The message carries the server's string-to-sign, which may include the STS token:
            // compare, then keep only the verdict.
            let server_sts = message
                .split_once("server string to sign is:")
                .map(|(_, s)| s.trim());
            let secret_wrong = server_sts == Some(our_sts);
            kind = ErrorKind::Signature { secret_wrong };
            message = match server_sts {
                Some(_) if secret_wrong => {
                    "signature mismatch; server string-to-sign equals ours".into()
                }
                Some(_) => "signature mismatch; server string-to-sign differs from ours".into(),
                None => "signature mismatch".into(),
            };
        }
        // Belt and braces: a server echoing a secret must not put it in our error.
        message = message.replace(creds.access_key_secret.expose(), "<redacted>");
        if let Some(t) = &creds.security_token {
            message = message.replace(t.expose(), "<redacted>");
        }
        EcsError {
            action: action.into(),
            request_id: Some(body.request_id).filter(|r| !r.is_empty()),
            http_status: Some(answer.status),
            code,
            message,
            kind,
            attempts: 1,
            retry_after: answer.retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_toml_with_defaults() {
        let c: ClientConfig = toml::from_str(
            "region_id = \"cn-beijing\"\nmethod = \"GET\"\n[retry]\nmax_retries = 2\n",
        )
        .unwrap();
        assert_eq!(c.method, HttpMethod::Get);
        assert_eq!(
            (c.timeout_secs, c.retry.max_retries, c.retry.min_delay_ms),
            (30, 2, 200)
        );
        let e = toml::from_str::<ClientConfig>("region_id = \"x\"\ntimeout = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("timeout"), "{e}");
    }

    #[test]
    fn endpoints_default_to_regional_https_and_accept_overrides() {
        let c = ClientConfig::new("cn-shanghai");
        assert_eq!(
            c.endpoint(Api::Ecs),
            "https://ecs.cn-shanghai.aliyuncs.com/"
        );
        assert_eq!(
            c.endpoint(Api::Vpc),
            "https://vpc.cn-shanghai.aliyuncs.com/"
        );
        let mut c = c.with_endpoint("http://127.0.0.1:8080/");
        assert_eq!(c.endpoint(Api::Vpc), "http://127.0.0.1:8080/");
        c.ecs_endpoint = Some("ecs-vpc.cn-shanghai.aliyuncs.com".into());
        assert_eq!(
            c.endpoint(Api::Ecs),
            "https://ecs-vpc.cn-shanghai.aliyuncs.com/"
        );
    }
}
