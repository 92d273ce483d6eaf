//! Temporary credentials of the RAM role attached to the ECS instance, from instance metadata
//! (reference §6.5): token-protected access (IMDSv2) with fallback to v1, cached and refreshed
//! 180 s before they expire.
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use time::OffsetDateTime;

use super::{Credentials, CredentialsError, CredentialsProvider};

/// The real instance metadata service.
pub const DEFAULT_METADATA_BASE_URL: &str = "http://100.100.100.200";
/// Refresh this long before the credentials expire (as credentials-go does).
const REFRESH_BEFORE: time::Duration = time::Duration::seconds(180);
const TOKEN_TTL_SECONDS: &str = "21600";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleCredentials {
    #[serde(default)]
    code: String,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    access_key_secret: String,
    #[serde(default)]
    security_token: String,
    #[serde(default)]
    expiration: String,
}

/// ECS instance RAM role credentials; the base URL is overridable so tests can serve metadata.
pub struct EcsRamRoleProvider {
    base_url: String,
    role_name: Option<String>,
    imdsv1_disabled: bool,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Option<Credentials>>,
}

impl EcsRamRoleProvider {
    /// `role_name = None` asks the metadata service which role is attached.
    pub fn new(base_url: impl Into<String>, role_name: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2))
            .build()
            .expect("reqwest client with static settings");
        Self {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            role_name,
            imdsv1_disabled: false,
            http,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// Fail instead of falling back to token-less metadata access.
    pub fn imdsv1_disabled(mut self, disabled: bool) -> Self {
        self.imdsv1_disabled = disabled;
        self
    }

    fn metadata_error(&self, path: &str, detail: impl Into<String>) -> CredentialsError {
        CredentialsError::Metadata {
            url: format!("{}{path}", self.base_url),
            detail: detail.into(),
        }
    }

    async fn token(&self) -> Result<Option<String>, CredentialsError> {
        let path = "/latest/api/token";
        let res = self
            .http
            .put(format!("{}{path}", self.base_url))
            .header("X-aliyun-ecs-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS)
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => {
                let t = r
                    .text()
                    .await
                    .map_err(|e| self.metadata_error(path, e.without_url().to_string()))?;
                Ok(Some(t.trim().to_string()))
            }
            Ok(r) if self.imdsv1_disabled => {
                Err(self.metadata_error(path, format!("HTTP {}", r.status())))
            }
            Err(e) if self.imdsv1_disabled => {
                Err(self.metadata_error(path, e.without_url().to_string()))
            }
            // credentials-go falls back to v1 access silently.
            _ => Ok(None),
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<String, CredentialsError> {
        let mut req = self.http.get(format!("{}{path}", self.base_url));
        if let Some(t) = token {
            req = req.header("X-aliyun-ecs-metadata-token", t);
        }
        let res = req
            .send()
            .await
            .map_err(|e| self.metadata_error(path, e.without_url().to_string()))?;
        let status = res.status();
        let body = res
            .text()
            .await
            .map_err(|e| self.metadata_error(path, e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(self.metadata_error(path, format!("HTTP {status}")));
        }
        Ok(body)
    }

    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let token = self.token().await?;
        let dir = "/latest/meta-data/ram/security-credentials/";
        let role = match &self.role_name {
            Some(r) => r.clone(),
            None => {
                let r = self.get(dir, token.as_deref()).await?.trim().to_string();
                if r.is_empty() {
                    return Err(
                        self.metadata_error(dir, "no RAM role is attached to this instance")
                    );
                }
                r
            }
        };
        let path = format!("{dir}{role}");
        let body = self.get(&path, token.as_deref()).await?;
        let rc: RoleCredentials = serde_json::from_str(&body)
            .map_err(|e| self.metadata_error(&path, format!("unexpected response: {e}")))?;
        if rc.code != "Success"
            || rc.access_key_id.is_empty()
            || rc.access_key_secret.is_empty()
            || rc.security_token.is_empty()
        {
            return Err(
                self.metadata_error(&path, format!("Code={:?}, credentials incomplete", rc.code))
            );
        }
        let expiration = crate::signer::parse_timestamp(&rc.expiration).ok_or_else(|| {
            self.metadata_error(&path, format!("bad Expiration {:?}", rc.expiration))
        })?;
        let mut c = Credentials::access_key(rc.access_key_id, rc.access_key_secret)
            .with_security_token(rc.security_token)
            .with_source(format!("ECS RAM role `{role}`"));
        c.expiration = Some(expiration);
        tracing::debug!(role = %role, expiration = %rc.expiration, "fetched RAM role credentials");
        Ok(c)
    }

    async fn cached(&self) -> Result<Credentials, CredentialsError> {
        let mut cache = self.cache.lock().await;
        let fresh = cache.as_ref().is_some_and(|c| {
            c.expiration
                .is_some_and(|exp| exp - OffsetDateTime::now_utc() > REFRESH_BEFORE)
        });
        if !fresh {
            *cache = Some(self.fetch().await?);
        }
        Ok(cache.clone().expect("just filled"))
    }
}

impl CredentialsProvider for EcsRamRoleProvider {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(self.cached())
    }
    fn describe(&self) -> String {
        format!("ECS instance RAM role ({})", self.base_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The tests that need a metadata service run against the emulated one, in
    // host/sim/tests/ram_role.rs.
    #[tokio::test]
    async fn unreachable_metadata_is_a_metadata_error() {
        let p = EcsRamRoleProvider::new("http://127.0.0.1:9", Some("r".into()));
        let e = p.credentials().await.unwrap_err();
        assert!(matches!(e, CredentialsError::Metadata { .. }), "{e}");
    }
}
