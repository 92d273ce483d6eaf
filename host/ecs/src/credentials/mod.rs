//! Where the AccessKey comes from: the same chain as the official SDKs (reference §6).
//!
//! Order of [`DefaultChain`]: explicit config (if given) → environment → aliyun CLI
//! `~/.aliyun/config.json` → shared credentials INI `~/.alibabacloud/credentials` → ECS instance
//! RAM role from instance metadata. The first source that is *configured* wins and is reused; a
//! source that is configured but broken is an error naming the file/variable, not a silent skip.
//!
//! Secrets live in [`Secret`], whose `Debug` prints `<redacted>` and which has no `Display`.
mod cli_config;
mod env;
mod profile_file;
mod ram_role;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

pub use cli_config::CliConfigProvider;
pub use env::{EnvLookup, EnvProvider};
pub use profile_file::ProfileFileProvider;
pub use ram_role::{DEFAULT_METADATA_BASE_URL, EcsRamRoleProvider};

/// A secret string: never printed by `Debug`, no `Display`, read only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is used (signing, the wire).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One set of credentials: an AccessKey pair, plus an STS token for temporary credentials.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Option<Secret>,
    /// When temporary credentials expire (RAM role); `None` for long-lived keys.
    pub expiration: Option<time::OffsetDateTime>,
    /// Which source supplied them, e.g. `environment` or `profile file ~/.alibabacloud/credentials [default]`.
    pub source: String,
}

impl Credentials {
    /// Long-lived AccessKey credentials.
    pub fn access_key(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            access_key_id: id.into(),
            access_key_secret: Secret::new(secret),
            security_token: None,
            expiration: None,
            source: "explicit".into(),
        }
    }

    /// Adds an STS security token (temporary credentials).
    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(Secret::new(token));
        self
    }

    fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &self.access_key_secret)
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expiration", &self.expiration)
            .field("source", &self.source)
            .finish()
    }
}

/// Why no credentials could be had. Messages name the source; they never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The source is simply not set up (no variables, no file): the chain tries the next one.
    #[error("{0}")]
    NotConfigured(String),
    /// The source is set up but wrong (bad file, missing key, unsupported mode): fix it.
    #[error("{source_name}: {detail}")]
    Invalid { source_name: String, detail: String },
    /// Instance metadata could not be read (not on ECS, no role attached, network).
    #[error("ECS instance metadata {url}: {detail}")]
    Metadata { url: String, detail: String },
    /// No source in the chain is configured.
    #[error(
        "no Alibaba Cloud credentials found; tried: {}. Set ALIBABA_CLOUD_ACCESS_KEY_ID and \
         ALIBABA_CLOUD_ACCESS_KEY_SECRET, configure `aliyun configure`, write \
         ~/.alibabacloud/credentials, or attach a RAM role to this ECS instance",
        tried.join("; ")
    )]
    NoneFound { tried: Vec<String> },
}

impl CredentialsError {
    fn invalid(source_name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Invalid {
            source_name: source_name.into(),
            detail: detail.into(),
        }
    }
}

/// A source of credentials. Providers with temporary credentials refresh them before expiry.
pub trait CredentialsProvider: Send + Sync + 'static {
    /// Current credentials (cached where the source is expensive).
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>>;
    /// Short description for messages, e.g. `environment`.
    fn describe(&self) -> String;
}

/// Fixed credentials (explicit configuration, tests).
#[derive(Debug, Clone)]
pub struct StaticProvider(pub Credentials);

impl CredentialsProvider for StaticProvider {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
    fn describe(&self) -> String {
        format!("{} credentials", self.0.source)
    }
}

/// Where the default chain looks; every field can be replaced for tests.
#[derive(Clone)]
pub struct ChainOptions {
    /// Environment variable lookup.
    pub env: EnvLookup,
    /// Home directory for `~/.aliyun/config.json` and `~/.alibabacloud/credentials`.
    pub home: Option<PathBuf>,
    /// Explicit profile name (overrides `ALIBABA_CLOUD_PROFILE`).
    pub profile: Option<String>,
    /// Instance metadata base URL (default `http://100.100.100.200`).
    pub metadata_base_url: String,
}

impl Default for ChainOptions {
    fn default() -> Self {
        Self {
            env: EnvLookup::process(),
            home: std::env::var_os("HOME").map(PathBuf::from),
            profile: None,
            metadata_base_url: DEFAULT_METADATA_BASE_URL.into(),
        }
    }
}

/// The official SDKs' default chain (reference §6.1).
pub struct DefaultChain {
    providers: Vec<Box<dyn CredentialsProvider>>,
    /// Index of the provider that worked last: reused without re-probing the others.
    last_used: Mutex<Option<usize>>,
}

impl DefaultChain {
    /// The chain with optional explicit credentials first.
    pub fn new(explicit: Option<Credentials>, options: ChainOptions) -> Self {
        let mut providers: Vec<Box<dyn CredentialsProvider>> = Vec::new();
        if let Some(c) = explicit {
            providers.push(Box::new(StaticProvider(c)));
        }
        let profile = options.profile.clone().or_else(|| {
            [
                "ALIBABA_CLOUD_PROFILE",
                "ALIBABACLOUD_PROFILE",
                "ALICLOUD_PROFILE",
            ]
            .iter()
            .find_map(|v| options.env.get(v))
        });
        providers.push(Box::new(EnvProvider::new(options.env.clone())));
        if !options.env.is_true("ALIBABA_CLOUD_CLI_PROFILE_DISABLED") {
            let path = options
                .env
                .get("ALIBABA_CLOUD_CONFIG_FILE")
                .map(PathBuf::from)
                .or_else(|| options.home.as_ref().map(|h| h.join(".aliyun/config.json")));
            if let Some(path) = path {
                providers.push(Box::new(CliConfigProvider::new(
                    path,
                    profile.clone(),
                    options.metadata_base_url.clone(),
                )));
            }
        }
        let ini = options
            .env
            .get("ALIBABA_CLOUD_CREDENTIALS_FILE")
            .or_else(|| options.env.get("ALICLOUD_SHARED_CREDENTIALS_FILE"))
            .map(PathBuf::from)
            .or_else(|| {
                // Go SDKs read `credentials`, the Python SDK `credentials.ini`: take whichever exists.
                let dir = options.home.as_ref()?.join(".alibabacloud");
                let ini = dir.join("credentials.ini");
                Some(if ini.exists() && !dir.join("credentials").exists() {
                    ini
                } else {
                    dir.join("credentials")
                })
            });
        if let Some(path) = ini {
            providers.push(Box::new(ProfileFileProvider::new(
                path,
                profile.clone(),
                options.metadata_base_url.clone(),
            )));
        }
        if !options.env.is_true("ALIBABA_CLOUD_ECS_METADATA_DISABLED") {
            let role = options
                .env
                .get("ALIBABA_CLOUD_ECS_METADATA")
                .or_else(|| options.env.get("ALICLOUD_ECS_ROLE_NAME"));
            providers.push(Box::new(
                EcsRamRoleProvider::new(options.metadata_base_url.clone(), role)
                    .imdsv1_disabled(options.env.is_true("ALIBABA_CLOUD_IMDSV1_DISABLED")),
            ));
        }
        Self {
            providers,
            last_used: Mutex::new(None),
        }
    }

    /// A chain from explicit providers, in order.
    pub fn from_providers(providers: Vec<Box<dyn CredentialsProvider>>) -> Self {
        Self {
            providers,
            last_used: Mutex::new(None),
        }
    }

    async fn resolve(&self) -> Result<Credentials, CredentialsError> {
        let last = *self.last_used.lock().expect("poisoned");
        if let Some(i) = last {
            return self.providers[i].credentials().await;
        }
        let mut tried = Vec::new();
        for (i, p) in self.providers.iter().enumerate() {
            match p.credentials().await {
                Ok(c) => {
                    *self.last_used.lock().expect("poisoned") = Some(i);
                    tracing::info!(source = %c.source, "using Alibaba Cloud credentials");
                    return Ok(c);
                }
                Err(CredentialsError::NotConfigured(why)) => tried.push(why),
                // The metadata service is the last resort: unreachable means "not on ECS".
                Err(e @ CredentialsError::Metadata { .. }) => tried.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        Err(CredentialsError::NoneFound { tried })
    }
}

impl CredentialsProvider for DefaultChain {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(self.resolve())
    }
    fn describe(&self) -> String {
        let names: Vec<String> = self.providers.iter().map(|p| p.describe()).collect();
        format!("default chain ({})", names.join(", "))
    }
}

/// Shared handle to any provider.
pub type SharedProvider = Arc<dyn CredentialsProvider>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_secrets() {
        let c = Credentials::access_key("LTAIexample", "very-secret-value")
            .with_security_token("sts-token-value");
        let dbg = format!("{c:?}");
        assert!(dbg.contains("LTAIexample"), "{dbg}");
        assert!(!dbg.contains("very-secret-value"), "{dbg}");
        assert!(!dbg.contains("sts-token-value"), "{dbg}");
        assert_eq!(format!("{:?}", Secret::new("x")), "<redacted>");
    }

    #[tokio::test]
    async fn chain_prefers_explicit_then_env_and_reports_all_sources_tried() {
        let env = EnvLookup::from_pairs(&[("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")]);
        let home = tempfile::tempdir().unwrap();
        let options = ChainOptions {
            env,
            home: Some(home.path().into()),
            profile: None,
            metadata_base_url: "http://127.0.0.1:9".into(),
        };
        let err = DefaultChain::new(None, options.clone())
            .credentials()
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CredentialsError::NoneFound { .. }), "{msg}");
        assert!(msg.contains("ALIBABA_CLOUD_ACCESS_KEY_ID"), "{msg}");
        assert!(msg.contains("config.json"), "{msg}");

        let explicit = Credentials::access_key("explicit-id", "s");
        let c = DefaultChain::new(Some(explicit), options)
            .credentials()
            .await
            .unwrap();
        assert_eq!(c.access_key_id, "explicit-id");
    }

    #[tokio::test]
    async fn chain_stops_at_a_broken_source() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".aliyun")).unwrap();
        std::fs::write(home.path().join(".aliyun/config.json"), "{not json").unwrap();
        let options = ChainOptions {
            env: EnvLookup::from_pairs(&[("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")]),
            home: Some(home.path().into()),
            profile: None,
            metadata_base_url: "http://127.0.0.1:9".into(),
        };
        let err = DefaultChain::new(None, options)
            .credentials()
            .await
            .unwrap_err();
        assert!(matches!(err, CredentialsError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}
