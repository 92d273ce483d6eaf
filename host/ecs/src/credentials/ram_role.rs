//! Temporary credentials of the RAM role attached to the ECS instance, from instance metadata
//! (reference §6.5): token-protected access (IMDSv2) with fallback to v1, cached and refreshed
//! by the rules every temporary source shares (`refresh`).
use std::time::Duration;

use super::refresh::RefreshCache;
use super::{Credentials, CredentialsError, CredentialsProvider};
use futures::future::BoxFuture;
use super::temporary_answer::TemporaryAnswer;

/// The real instance metadata service.
pub const DEFAULT_METADATA_BASE_URL: &str = "http://100.100.100.200";
const TOKEN_TTL_SECONDS: &str = "21600";

/// ECS instance RAM role credentials; the base URL is overridable so tests can serve metadata.
pub struct EcsRamRoleProvider {
    base_url: String,
    role_name: Option<String>,
    imdsv1_disabled: bool,
    http: reqwest::Client,
    cache: RefreshCache,
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
            cache: RefreshCache::default(),
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
        let answer: TemporaryAnswer = serde_json::from_str(&body)
            .map_err(|e| self.metadata_error(&path, format!("unexpected response: {e}")))?;
        let mut c = answer
            .into_credentials()
            .map_err(|e| self.metadata_error(&path, e))?
            .with_source(format!("ECS RAM role `{role}`"));
        c.provider = "ecs_ram_role".into();
        tracing::debug!(role = %role, expiration = ?c.expiration, "fetched RAM role credentials");
        Ok(c)
    }
}

impl CredentialsProvider for EcsRamRoleProvider {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(self.cache.get(|| self.fetch()))
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
