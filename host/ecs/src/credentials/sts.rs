//! A small client of STS (Security Token Service, API version 2015-04-01): `AssumeRole` signed
//! with a base credential, `AssumeRoleWithOIDC` authenticated by the OIDC token alone (as the
//! real API is: no signature), and `GetCallerIdentity` for `check`.
//!
//! Requests go as POST forms so the security token and the OIDC token never sit in a URL.
//! Throttling, 5xx answers and transport errors are retried briefly here; a refresh that still
//! fails is then handled by the credentials cache (`refresh`).
use std::time::Duration;

use backon::Retryable as _;
use serde::Deserialize;

use super::{Credentials, CredentialsError, Secret};
use crate::retry::RetryPolicy;
use crate::signer::{self, Params, SigningContext};

/// The STS API version every official SDK sends.
pub const STS_VERSION: &str = "2015-04-01";
/// The shortest session STS grants; the SDKs refuse shorter ones before asking.
pub const MIN_DURATION_SECS: u64 = 900;
/// The SDKs' default session length.
pub const DEFAULT_DURATION_SECS: u64 = 3600;

/// Where STS is, as the official libraries decide it: an explicit endpoint, else
/// `sts.{region}.aliyuncs.com` (`sts-vpc.` with VPC endpoints enabled) when a region is set,
/// else the central `sts.aliyuncs.com`. Hosts without a scheme get HTTPS.
pub fn endpoint_url(endpoint: Option<&str>, region: Option<&str>, vpc: bool) -> String {
    let prefix = if vpc { "sts-vpc" } else { "sts" };
    let url = match (endpoint, region) {
        (Some(e), _) if e.contains("://") => e.to_string(),
        (Some(host), _) => format!("https://{host}"),
        (None, Some(region)) => format!("https://{prefix}.{region}.aliyuncs.com"),
        (None, None) => "https://sts.aliyuncs.com".to_string(),
    };
    format!("{}/", url.trim_end_matches('/'))
}

/// A RAM role ARN, `acs:ram::<account id>:role/<role name>`, checked before any request so a
/// typo is reported against the setting that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArn(String);

impl RoleArn {
    /// Parses `value`; `setting` names where it came from (a variable, a file and key).
    pub fn parse(value: &str, setting: &str) -> Result<Self, CredentialsError> {
        let bad = |why: &str| {
            CredentialsError::invalid(
                setting,
                format!(
                    "{value:?} is not a RAM role ARN ({why}); expected acs:ram::<account id>:role/<role name>"
                ),
            )
        };
        let rest = value
            .strip_prefix("acs:ram::")
            .ok_or_else(|| bad("it must start with acs:ram::"))?;
        let (account, role) = rest
            .split_once(":role/")
            .ok_or_else(|| bad("`:role/` is missing"))?;
        if account.is_empty() || !account.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad("the account id must be digits"));
        }
        let name_ok = |c: char| c.is_ascii_alphanumeric() || "-_.@/".contains(c);
        if role.is_empty() || role.len() > 64 || !role.chars().all(name_ok) {
            return Err(bad("the role name must be 1-64 letters, digits or -_.@"));
        }
        Ok(Self(value.to_string()))
    }

    /// The ARN as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a role session name as STS does: 2-64 characters of letters, digits and `.@-_`.
pub fn check_session_name(value: &str, setting: &str) -> Result<(), CredentialsError> {
    let ok = (2..=64).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".@-_".contains(c));
    if ok {
        Ok(())
    } else {
        Err(CredentialsError::invalid(
            setting,
            format!("role session name {value:?} must be 2-64 letters, digits or .@-_"),
        ))
    }
}

/// Checks a session duration against the STS minimum.
pub fn check_duration(secs: u64, setting: &str) -> Result<(), CredentialsError> {
    if secs < MIN_DURATION_SECS {
        return Err(CredentialsError::invalid(
            setting,
            format!("session duration {secs} s is below the STS minimum of {MIN_DURATION_SECS} s"),
        ));
    }
    Ok(())
}

/// The session name used when none is configured (the SDKs use `credentials-<lang>-<time>`).
pub fn default_session_name() -> String {
    format!(
        "ecs-provisioner-{}",
        time::OffsetDateTime::now_utc().unix_timestamp()
    )
}

/// What the role session asks for, common to AssumeRole and AssumeRoleWithOIDC.
#[derive(Debug, Clone)]
pub struct RoleSession {
    /// The role to assume.
    pub role_arn: RoleArn,
    /// `RoleSessionName`: shows in the assumed identity's ARN.
    pub session_name: String,
    /// An inline policy narrowing the role's permissions.
    pub policy: Option<String>,
    /// `DurationSeconds`, at least [`MIN_DURATION_SECS`].
    pub duration_secs: u64,
}

impl RoleSession {
    fn params(&self, action: &str) -> Params {
        let mut p = Params::new();
        p.insert("Action".into(), action.into());
        p.insert("Version".into(), STS_VERSION.into());
        p.insert("Format".into(), "JSON".into());
        p.insert("RoleArn".into(), self.role_arn.as_str().into());
        p.insert("RoleSessionName".into(), self.session_name.clone());
        p.insert("DurationSeconds".into(), self.duration_secs.to_string());
        if let Some(policy) = &self.policy {
            p.insert("Policy".into(), policy.clone());
        }
        p
    }
}

/// Who a set of credentials is, per `GetCallerIdentity`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CallerIdentity {
    /// `Account`, `RAMUser` or `AssumedRoleUser`.
    #[serde(default)]
    pub identity_type: String,
    /// The account the identity belongs to.
    #[serde(default)]
    pub account_id: String,
    /// E.g. `acs:ram::<account>:assumed-role/<role>/<session>`.
    #[serde(default)]
    pub arn: String,
    /// The principal's id (`<role id>:<session>` for a role).
    #[serde(default)]
    pub principal_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SessionCredentials {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleAnswer {
    credentials: SessionCredentials,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message")]
    message: String,
    #[serde(rename = "RequestId")]
    request_id: String,
}

/// One failed attempt, and whether another may help.
struct Failure {
    error: CredentialsError,
    retryable: bool,
}

/// STS over HTTPS (or HTTP for the emulator).
#[derive(Clone)]
pub struct StsClient {
    http: reqwest::Client,
    endpoint: String,
    retry: RetryPolicy,
}

impl std::fmt::Debug for StsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsClient")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl StsClient {
    /// A client of the STS at `endpoint_url` (see [`endpoint_url`]); 5 s to connect and
    /// 10 s to answer, as the SDKs allow.
    pub fn new(endpoint_url: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("ecs-provisioner/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("reqwest client with static settings");
        Self {
            http,
            endpoint: endpoint_url.into(),
            retry: RetryPolicy {
                max_retries: 3,
                min_delay_ms: 200,
                max_delay_ms: 2_000,
                ..RetryPolicy::default()
            },
        }
    }

    /// Replaces the retry policy (tests shrink it).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The endpoint URL this client calls.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `AssumeRole` signed with `base`; the answer's credentials, with their expiration.
    pub async fn assume_role(
        &self,
        base: &Credentials,
        session: &RoleSession,
        external_id: Option<&str>,
    ) -> Result<Credentials, CredentialsError> {
        let mut params = session.params("AssumeRole");
        if let Some(id) = external_id {
            params.insert("ExternalId".into(), id.into());
        }
        let body = self.call("AssumeRole", &params, Some(base), &[]).await?;
        self.session_credentials("AssumeRole", &body)
    }

    /// `AssumeRoleWithOIDC`: unsigned, the OIDC token is the proof of identity.
    pub async fn assume_role_with_oidc(
        &self,
        session: &RoleSession,
        provider_arn: &str,
        token: &Secret,
    ) -> Result<Credentials, CredentialsError> {
        let mut params = session.params("AssumeRoleWithOIDC");
        params.insert("OIDCProviderArn".into(), provider_arn.into());
        params.insert("OIDCToken".into(), token.expose().into());
        params.insert("Timestamp".into(), signer::timestamp_now());
        let body = self
            .call("AssumeRoleWithOIDC", &params, None, &[token])
            .await?;
        self.session_credentials("AssumeRoleWithOIDC", &body)
    }

    /// `GetCallerIdentity`: who `creds` are.
    pub async fn get_caller_identity(
        &self,
        creds: &Credentials,
    ) -> Result<CallerIdentity, CredentialsError> {
        let mut params = Params::new();
        params.insert("Action".into(), "GetCallerIdentity".into());
        params.insert("Version".into(), STS_VERSION.into());
        let body = self
            .call("GetCallerIdentity", &params, Some(creds), &[])
            .await?;
        serde_json::from_str(&body)
            .map_err(|e| self.error("GetCallerIdentity", format!("unexpected answer: {e}")))
    }

    fn error(&self, action: &str, detail: impl Into<String>) -> CredentialsError {
        CredentialsError::Sts {
            action: action.into(),
            endpoint: self.endpoint.clone(),
            detail: detail.into(),
        }
    }

    fn session_credentials(
        &self,
        action: &str,
        body: &str,
    ) -> Result<Credentials, CredentialsError> {
        // Serde's message would quote the body, and the body holds the new secret.
        let answer: AssumeRoleAnswer = serde_json::from_str(body).map_err(|_| {
            self.error(action, "the answer lacks Credentials.{AccessKeyId,AccessKeySecret,SecurityToken,Expiration}")
        })?;
        let c = answer.credentials;
        let expiration = signer::parse_timestamp(&c.expiration)
            .ok_or_else(|| self.error(action, format!("bad Expiration {:?}", c.expiration)))?;
        let mut creds = Credentials::access_key(c.access_key_id, c.access_key_secret)
            .with_security_token(c.security_token);
        creds.expiration = Some(expiration);
        Ok(creds)
    }

    /// Sends one call with retries; returns the body of a 2xx answer.
    async fn call(
        &self,
        action: &str,
        params: &Params,
        signer_creds: Option<&Credentials>,
        extra_secrets: &[&Secret],
    ) -> Result<String, CredentialsError> {
        let attempt = || self.attempt(action, params, signer_creds, extra_secrets);
        attempt
            .retry(self.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(|f: &Failure| f.retryable)
            .notify(|f: &Failure, delay| {
                tracing::warn!(action, error = %f.error, ?delay, "retrying STS call");
            })
            .await
            .map_err(|f| f.error)
    }

    async fn attempt(
        &self,
        action: &str,
        params: &Params,
        signer_creds: Option<&Credentials>,
        extra_secrets: &[&Secret],
    ) -> Result<String, Failure> {
        let mut params = params.clone();
        if let Some(c) = signer_creds {
            let nonce = uuid::Uuid::new_v4().to_string();
            let timestamp = signer::timestamp_now();
            let ctx = SigningContext {
                method: "POST",
                nonce: &nonce,
                timestamp: &timestamp,
            };
            signer::sign(
                &mut params,
                &ctx,
                &c.access_key_id,
                c.access_key_secret.expose(),
                c.security_token.as_ref().map(Secret::expose),
            );
        }
        let res = self
            .http
            .post(&self.endpoint)
            .form(&params)
            .send()
            .await
            .map_err(|e| Failure {
                error: self.error(action, format!("cannot reach STS: {}", e.without_url())),
                retryable: true,
            })?;
        let status = res.status();
        let body = res.text().await.map_err(|e| Failure {
            error: self.error(action, format!("reading the answer: {}", e.without_url())),
            retryable: true,
        })?;
        tracing::debug!(action, status = status.as_u16(), "STS answered");
        if status.is_success() {
            return Ok(body);
        }
        let err: ErrorBody = serde_json::from_str(&body).unwrap_or_default();
        let code = if err.code.is_empty() {
            format!("HTTP{}", status.as_u16())
        } else {
            err.code
        };
        // The server's string-to-sign may carry the security token: keep only the verdict.
        let mut message = match err.message.split_once("server string to sign is:") {
            Some((head, _)) => head.trim().to_string(),
            None => err.message,
        };
        let mut secrets: Vec<&str> = extra_secrets.iter().map(|s| s.expose()).collect();
        if let Some(c) = signer_creds {
            secrets.push(c.access_key_secret.expose());
            if let Some(t) = &c.security_token {
                secrets.push(t.expose());
            }
        }
        for s in secrets.into_iter().filter(|s| !s.is_empty()) {
            message = message.replace(s, "<redacted>");
        }
        let retryable = code.starts_with("Throttling")
            || code == "ServiceUnavailable"
            || code == "InternalError"
            || status.is_server_error();
        Err(Failure {
            error: self.error(
                action,
                format!(
                    "{code}: {message} (HTTP {}, RequestId {})",
                    status.as_u16(),
                    err.request_id
                ),
            ),
            retryable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_sdks() {
        assert_eq!(endpoint_url(None, None, false), "https://sts.aliyuncs.com/");
        assert_eq!(
            endpoint_url(None, Some("cn-beijing"), false),
            "https://sts.cn-beijing.aliyuncs.com/"
        );
        assert_eq!(
            endpoint_url(None, Some("cn-beijing"), true),
            "https://sts-vpc.cn-beijing.aliyuncs.com/"
        );
        assert_eq!(
            endpoint_url(Some("http://127.0.0.1:1234"), Some("x"), true),
            "http://127.0.0.1:1234/"
        );
        assert_eq!(
            endpoint_url(Some("sts.example.com"), None, false),
            "https://sts.example.com/"
        );
    }

    #[test]
    fn role_arns_are_checked_and_errors_name_the_setting() {
        assert!(RoleArn::parse("acs:ram::1234567890123456:role/builder", "X").is_ok());
        for bad in [
            "builder",
            "acs:ram::12ab:role/x",
            "acs:ram::123:user/x",
            "arn:aws:iam::123:role/x",
            "acs:ram::123:role/",
        ] {
            let e = RoleArn::parse(bad, "ALIBABA_CLOUD_ROLE_ARN")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("ALIBABA_CLOUD_ROLE_ARN: "), "{e}");
            assert!(e.contains(bad), "{e}");
        }
        assert!(check_session_name("a", "k").is_err());
        assert!(check_session_name("ok.session@x-1", "k").is_ok());
        assert!(
            check_duration(899, "k")
                .unwrap_err()
                .to_string()
                .contains("900")
        );
    }
}
