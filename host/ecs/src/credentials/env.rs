//! Credentials from environment variables, with the legacy names the aliyun CLI and terraform
//! still read (reference §6.2).
use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{Credentials, CredentialsError, CredentialsProvider};

type LookupFn = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Variable lookup, replaceable so tests never touch the process environment.
#[derive(Clone)]
pub struct EnvLookup(Arc<LookupFn>);

impl EnvLookup {
    /// The process environment.
    pub fn process() -> Self {
        Self(Arc::new(|name| std::env::var(name).ok()))
    }
    /// A fixed set of variables.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self(Arc::new(move |name| map.get(name).cloned()))
    }
    /// The value of a variable, if set and not empty.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.is_empty())
    }
    /// First non-empty of several names, with the name that had it.
    pub fn first_of(&self, names: &[&'static str]) -> Option<(&'static str, String)> {
        names.iter().find_map(|n| self.get(n).map(|v| (*n, v)))
    }
    pub(crate) fn is_true(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

const ID_VARS: &[&str] = &[
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABACLOUD_ACCESS_KEY_ID",
    "ALICLOUD_ACCESS_KEY_ID",
    "ALICLOUD_ACCESS_KEY",
    "ACCESS_KEY_ID",
];
const SECRET_VARS: &[&str] = &[
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABACLOUD_ACCESS_KEY_SECRET",
    "ALICLOUD_ACCESS_KEY_SECRET",
    "ALICLOUD_SECRET_KEY",
    "ACCESS_KEY_SECRET",
];
const TOKEN_VARS: &[&str] = &[
    "ALIBABA_CLOUD_SECURITY_TOKEN",
    "ALIBABACLOUD_SECURITY_TOKEN",
    "ALICLOUD_SECURITY_TOKEN",
    "SECURITY_TOKEN",
];

/// `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` / `ALIBABA_CLOUD_SECURITY_TOKEN` and legacy names.
pub struct EnvProvider {
    env: EnvLookup,
}

impl EnvProvider {
    pub fn new(env: EnvLookup) -> Self {
        Self { env }
    }

    fn read(&self) -> Result<Credentials, CredentialsError> {
        let id = self.env.first_of(ID_VARS);
        let secret = self.env.first_of(SECRET_VARS);
        match (id, secret) {
            (None, None) => Err(CredentialsError::NotConfigured(
                "environment (ALIBABA_CLOUD_ACCESS_KEY_ID not set)".into(),
            )),
            (Some((name, _)), None) => Err(CredentialsError::invalid(
                "environment",
                format!("{name} is set but ALIBABA_CLOUD_ACCESS_KEY_SECRET is not"),
            )),
            (None, Some((name, _))) => Err(CredentialsError::invalid(
                "environment",
                format!("{name} is set but ALIBABA_CLOUD_ACCESS_KEY_ID is not"),
            )),
            (Some((id_var, id)), Some((_, secret))) => {
                let mut c = Credentials::access_key(id, secret)
                    .with_source(format!("environment ({id_var})"));
                if let Some((_, token)) = self.env.first_of(TOKEN_VARS) {
                    c = c.with_security_token(token);
                }
                Ok(c)
            }
        }
    }
}

impl CredentialsProvider for EnvProvider {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(async move { self.read() })
    }
    fn describe(&self) -> String {
        "environment".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn standard_names_with_sts_token() {
        let env = EnvLookup::from_pairs(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "id1"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret1"),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "tok1"),
        ]);
        let c = EnvProvider::new(env).credentials().await.unwrap();
        assert_eq!(c.access_key_id, "id1");
        assert_eq!(c.access_key_secret.expose(), "secret1");
        assert_eq!(c.security_token.unwrap().expose(), "tok1");
    }

    #[tokio::test]
    async fn legacy_names() {
        let env = EnvLookup::from_pairs(&[
            ("ALICLOUD_ACCESS_KEY", "old-id"),
            ("ALICLOUD_SECRET_KEY", "old-secret"),
        ]);
        let c = EnvProvider::new(env).credentials().await.unwrap();
        assert_eq!(c.access_key_id, "old-id");
        assert_eq!(c.access_key_secret.expose(), "old-secret");
        assert!(c.security_token.is_none());
        assert!(c.source.contains("ALICLOUD_ACCESS_KEY"));
    }

    #[tokio::test]
    async fn half_configured_is_an_error_without_the_secret() {
        let env = EnvLookup::from_pairs(&[("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "hush")]);
        let err = EnvProvider::new(env).credentials().await.unwrap_err();
        assert!(matches!(err, CredentialsError::Invalid { .. }));
        assert!(!err.to_string().contains("hush"));
        let none = EnvProvider::new(EnvLookup::from_pairs(&[]))
            .credentials()
            .await
            .unwrap_err();
        assert!(matches!(none, CredentialsError::NotConfigured(_)));
    }
}
