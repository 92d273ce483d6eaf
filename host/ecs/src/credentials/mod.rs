//! Where the AccessKey comes from: the same chain as the official SDKs (reference §6).
//!
//! Order of [`DefaultChain`] (that of the official libraries): explicit config (if given) →
//! environment AccessKey → environment OIDC (`ALIBABA_CLOUD_OIDC_TOKEN_FILE`...) → aliyun CLI
//! `~/.aliyun/config.json` → shared credentials INI `~/.alibabacloud/credentials` → ECS instance
//! RAM role from instance metadata → `ALIBABA_CLOUD_CREDENTIALS_URI`. The first source that is
//! *configured* wins and is reused; a source that is configured but broken is an error naming
//! the file/variable, not a silent skip. Temporary credentials (roles, OIDC, URI) are cached
//! and refreshed by one set of rules (`refresh`).
//!
//! Secrets live in [`Secret`], whose `Debug` prints `<redacted>` and which has no `Display`.
mod assume_role;
mod cli_config;
mod env;
mod lazy;
mod oidc;
mod profile_file;
mod ram_role;
mod refresh;
pub mod sts;
mod temporary_answer;
mod uri;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

pub use assume_role::AssumeRoleProvider;
pub use cli_config::CliConfigProvider;
pub use env::{EnvLookup, EnvProvider};
pub use lazy::LazyProvider;
pub use oidc::OidcRoleProvider;
pub use profile_file::ProfileFileProvider;
pub use ram_role::{DEFAULT_METADATA_BASE_URL, EcsRamRoleProvider};
pub use sts::StsClient;
pub use uri::CredentialsUriProvider;

/// A secret string: never printed by `Debug`, no `Display`, read only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
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
    /// AccessKey id (not secret; appears in signed requests).
    pub access_key_id: String,
    /// AccessKey secret, used to sign requests.
    pub access_key_secret: Secret,
    /// STS security token for temporary credentials (sent as `SecurityToken`); `None` for long-lived keys.
    pub security_token: Option<Secret>,
    /// When temporary credentials expire (RAM role); `None` for long-lived keys.
    pub expiration: Option<time::OffsetDateTime>,
    /// Which source supplied them, e.g. `environment` or `profile file ~/.alibabacloud/credentials [default]`.
    pub source: String,
    /// The official libraries' name for the provider that made them: `static_ak`,
    /// `static_sts`, `env`, `oidc_role_arn`, `ecs_ram_role`, `credential_uri`, or
    /// `ram_role_arn/<base>` for a role assumed with `<base>` credentials.
    pub provider: String,
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
            provider: "static_ak".into(),
        }
    }

    /// Adds an STS security token (temporary credentials).
    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(Secret::new(token));
        if self.provider == "static_ak" {
            self.provider = "static_sts".into();
        }
        self
    }

    /// Whether these are the credentials of an assumed RAM role (AssumeRole or OIDC).
    pub fn is_assumed_role(&self) -> bool {
        self.provider.starts_with("ram_role_arn") || self.provider == "oidc_role_arn"
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
            .field("provider", &self.provider)
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
    Invalid {
        /// The credentials source (variable, file or profile) that is wrong.
        source_name: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Instance metadata could not be read (not on ECS, no role attached, network).
    #[error("ECS instance metadata {url}: {detail}")]
    Metadata {
        /// The metadata URL that was asked.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// STS refused or could not be reached (the detail never holds a secret).
    #[error("STS {action} at {endpoint}: {detail}")]
    Sts {
        /// The STS action, e.g. `AssumeRole`.
        action: String,
        /// The STS endpoint called.
        endpoint: String,
        /// STS's code and message, or the transport error.
        detail: String,
    },
    /// No source in the chain is configured.
    #[error(
        "no Alibaba Cloud credentials found; tried: {}. Set ALIBABA_CLOUD_ACCESS_KEY_ID and \
         ALIBABA_CLOUD_ACCESS_KEY_SECRET (or the OIDC variables ALIBABA_CLOUD_ROLE_ARN, \
         ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE), configure `aliyun \
         configure`, write ~/.alibabacloud/credentials, attach a RAM role to this ECS instance, \
         or set ALIBABA_CLOUD_CREDENTIALS_URI",
        tried.join("; ")
    )]
    NoneFound {
        /// Every source the chain tried, in order, with why each gave nothing.
        tried: Vec<String>,
    },
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
    /// STS endpoint for every role source, overriding profiles and the region rule
    /// (private endpoints, the emulator); see [`sts::endpoint_url`].
    pub sts_endpoint: Option<String>,
}

impl Default for ChainOptions {
    fn default() -> Self {
        Self {
            env: EnvLookup::process(),
            home: std::env::var_os("HOME").map(PathBuf::from),
            profile: None,
            metadata_base_url: DEFAULT_METADATA_BASE_URL.into(),
            sts_endpoint: None,
        }
    }
}

impl ChainOptions {
    /// The STS client for a source: [`ChainOptions::sts_endpoint`], else the source's own
    /// endpoint, else its region or `ALIBABA_CLOUD_STS_REGION`, with `sts-vpc.` when the
    /// source or `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED` asks for it.
    pub fn sts_client(
        &self,
        endpoint: Option<&str>,
        region: Option<&str>,
        vpc: Option<bool>,
    ) -> StsClient {
        let region = region
            .map(String::from)
            .or_else(|| self.env.get("ALIBABA_CLOUD_STS_REGION"));
        let vpc = vpc.unwrap_or_else(|| self.env.is_true("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED"));
        StsClient::new(sts::endpoint_url(
            self.sts_endpoint.as_deref().or(endpoint),
            region.as_deref(),
            vpc,
        ))
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
        let (env, sts) = (options.env.clone(), options.sts_client(None, None, None));
        providers.push(Box::new(LazyProvider::new("environment OIDC", move || {
            Ok(Box::new(OidcRoleProvider::from_env(&env, sts.clone())?))
        })));
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
                    options.clone(),
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
                options.clone(),
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
        // Last, and only when set, as in the official libraries.
        if let Some(uri) = options.env.get(uri::URI_VAR) {
            providers.push(Box::new(LazyProvider::new("credentials URI", move || {
                Ok(Box::new(CredentialsUriProvider::new(&uri, uri::URI_VAR)?))
            })));
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
            sts_endpoint: None,
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
            sts_endpoint: None,
        };
        let err = DefaultChain::new(None, options)
            .credentials()
            .await
            .unwrap_err();
        assert!(matches!(err, CredentialsError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}
