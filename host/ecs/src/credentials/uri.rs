//! Credentials served over HTTP by a sidecar (`ALIBABA_CLOUD_CREDENTIALS_URI`), in the official
//! format: `GET <uri>` answers `{"Code": "Success", "AccessKeyId", "AccessKeySecret",
//! "SecurityToken", "Expiration": "2006-01-02T15:04:05Z"}`. Refreshed through the shared cache.
use std::time::Duration;

use futures::future::BoxFuture;
use super::temporary_answer::TemporaryAnswer;

use super::refresh::RefreshCache;
use super::{Credentials, CredentialsError, CredentialsProvider};

/// The variable the official libraries read.
pub const URI_VAR: &str = "ALIBABA_CLOUD_CREDENTIALS_URI";

/// Temporary credentials from a credentials URI.
pub struct CredentialsUriProvider {
    uri: reqwest::Url,
    /// The setting that holds the URI, for errors.
    setting: String,
    http: reqwest::Client,
    cache: RefreshCache,
}

impl CredentialsUriProvider {
    /// Checks the URI now; `setting` names where it came from.
    pub fn new(uri: &str, setting: impl Into<String>) -> Result<Self, CredentialsError> {
        let setting = setting.into();
        let parsed = reqwest::Url::parse(uri)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                CredentialsError::invalid(
                    &setting,
                    format!("{uri:?} is not an http:// or https:// URL"),
                )
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .expect("reqwest client with static settings");
        Ok(Self {
            uri: parsed,
            setting,
            http,
            cache: RefreshCache::default(),
        })
    }

    /// The URI without its query, which may carry a secret.
    fn shown(&self) -> String {
        let mut u = self.uri.clone();
        u.set_query(None);
        u.to_string()
    }

    fn error(&self, detail: impl Into<String>) -> CredentialsError {
        CredentialsError::invalid(
            format!("{} ({})", self.setting, self.shown()),
            detail.into(),
        )
    }

    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let res = self
            .http
            .get(self.uri.clone())
            .send()
            .await
            .map_err(|e| self.error(format!("cannot reach it: {}", e.without_url())))?;
        let status = res.status();
        let body = res
            .text()
            .await
            .map_err(|e| self.error(format!("reading the answer: {}", e.without_url())))?;
        if !status.is_success() {
            return Err(self.error(format!("HTTP {status}")));
        }
        // Never quote the body: it holds the secret.
        let a: TemporaryAnswer = serde_json::from_str(&body)
            .map_err(|_| self.error("the answer is not the credentials JSON"))?;
        let mut c = a.into_credentials().map_err(|e| self.error(e))?.with_source(format!(
            "credentials URI {} ({})",
            self.shown(),
            self.setting
        ));
        c.provider = "credential_uri".into();
        Ok(c)
    }
}

impl CredentialsProvider for CredentialsUriProvider {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(self.cache.get(|| self.fetch()))
    }
    fn describe(&self) -> String {
        format!("credentials URI {}", self.shown())
    }
}
