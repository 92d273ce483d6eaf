//! The shared credentials INI file (`~/.alibabacloud/credentials`, reference §6.3).
//!
//! ```ini
//! [default]
//! type = access_key
//! access_key_id = ...
//! access_key_secret = ...
//!
//! [ecs]
//! type = ecs_ram_role
//! role_name = EcsRamRoleTest
//!
//! [ram]
//! type = ram_role_arn
//! access_key_id = ...
//! access_key_secret = ...
//! role_arn = acs:ram::123456789012:role/builder
//! role_session_name = session_name   # optional; also policy, external_id, sts_region, enable_vpc
//!
//! [oidc]
//! type = oidc_role_arn
//! role_arn = acs:ram::123456789012:role/builder
//! oidc_provider_arn = acs:ram::123456789012:oidc-provider/ack
//! oidc_token_file_path = /var/run/secrets/tokens/oidc-token
//! ```
use std::path::PathBuf;

use futures::future::BoxFuture;

use super::sts::{self, RoleArn, RoleSession};
use super::{
    AssumeRoleProvider, ChainOptions, Credentials, CredentialsError, CredentialsProvider,
    EcsRamRoleProvider, OidcRoleProvider, StaticProvider,
};

/// Reads one profile (section) of the shared credentials file.
pub struct ProfileFileProvider {
    path: PathBuf,
    profile: String,
    options: ChainOptions,
    /// Built on first use for the role types so their caches survive between calls.
    role: tokio::sync::OnceCell<Box<dyn CredentialsProvider>>,
}

impl ProfileFileProvider {
    /// `profile` defaults to `default`.
    pub fn new(path: PathBuf, profile: Option<String>, options: ChainOptions) -> Self {
        Self {
            path,
            profile: profile.unwrap_or_else(|| "default".into()),
            options,
            role: tokio::sync::OnceCell::new(),
        }
    }

    fn name(&self) -> String {
        format!(
            "credentials file {} [{}]",
            self.path.display(),
            self.profile
        )
    }

    async fn read(&self) -> Result<Credentials, CredentialsError> {
        if let Some(role) = self.role.get() {
            return role.credentials().await;
        }
        if !self.path.exists() {
            return Err(CredentialsError::NotConfigured(format!(
                "credentials file {} (not found)",
                self.path.display()
            )));
        }
        let ini = ini::Ini::load_from_file(&self.path)
            .map_err(|e| CredentialsError::invalid(self.name(), format!("cannot parse: {e}")))?;
        let section = ini.section(Some(self.profile.as_str())).ok_or_else(|| {
            CredentialsError::invalid(self.name(), format!("no section [{}]", self.profile))
        })?;
        let get = |key: &str| {
            section
                .get(key)
                // The Python SDK strips `# comment` tails from values.
                .map(|v| v.split(" #").next().unwrap_or_default().trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let require = |key: &str| {
            get(key)
                .ok_or_else(|| CredentialsError::invalid(self.name(), format!("missing `{key}`")))
        };
        if get("enable").is_some_and(|v| v.eq_ignore_ascii_case("false")) {
            return Err(CredentialsError::NotConfigured(format!(
                "{} (enable = false)",
                self.name()
            )));
        }
        match get("type").as_deref() {
            Some("access_key") | None => {
                let c = Credentials::access_key(
                    require("access_key_id")?,
                    require("access_key_secret")?,
                )
                .with_source(self.name());
                Ok(match get("security_token") {
                    Some(t) => c.with_security_token(t),
                    None => c,
                })
            }
            Some("ecs_ram_role") => {
                let role = EcsRamRoleProvider::new(
                    self.options.metadata_base_url.clone(),
                    get("role_name"),
                );
                self.use_role(Box::new(role)).await
            }
            Some(kind @ ("ram_role_arn" | "oidc_role_arn")) => {
                let key = |k: &str| format!("{} `{k}`", self.name());
                let session_name =
                    get("role_session_name").unwrap_or_else(sts::default_session_name);
                sts::check_session_name(&session_name, &key("role_session_name"))?;
                let session = RoleSession {
                    role_arn: RoleArn::parse(&require("role_arn")?, &key("role_arn"))?,
                    session_name,
                    policy: get("policy"),
                    duration_secs: sts::DEFAULT_DURATION_SECS,
                };
                let vpc = get("enable_vpc").map(|v| v.eq_ignore_ascii_case("true"));
                let sts = self
                    .options
                    .sts_client(None, get("sts_region").as_deref(), vpc);
                let provider: Box<dyn CredentialsProvider> = if kind == "ram_role_arn" {
                    let base = Credentials::access_key(
                        require("access_key_id")?,
                        require("access_key_secret")?,
                    )
                    .with_source(self.name());
                    Box::new(AssumeRoleProvider::new(
                        Box::new(StaticProvider(base)),
                        session,
                        get("external_id"),
                        sts,
                        self.name(),
                    ))
                } else {
                    Box::new(OidcRoleProvider::new(
                        session,
                        require("oidc_provider_arn")?,
                        require("oidc_token_file_path")?.into(),
                        key("oidc_token_file_path"),
                        sts,
                        self.name(),
                    ))
                };
                self.use_role(provider).await
            }
            Some(other) => Err(CredentialsError::invalid(
                self.name(),
                format!(
                    "`type = {other}` is not supported; use access_key, ecs_ram_role, \
                     ram_role_arn or oidc_role_arn"
                ),
            )),
        }
    }

    /// Keeps `provider` for later calls (its cache) and asks it for credentials.
    async fn use_role(
        &self,
        provider: Box<dyn CredentialsProvider>,
    ) -> Result<Credentials, CredentialsError> {
        self.role
            .get_or_init(|| async { provider })
            .await
            .credentials()
            .await
    }
}

impl CredentialsProvider for ProfileFileProvider {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(self.read())
    }
    fn describe(&self) -> String {
        self.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_options() -> ChainOptions {
        ChainOptions {
            env: super::super::EnvLookup::from_pairs(&[]),
            home: None,
            profile: None,
            metadata_base_url: "http://127.0.0.1:9".into(),
            sts_endpoint: None,
        }
    }

    const FILE: &str = "[default]\nenable = true\ntype = access_key\naccess_key_id = foo\naccess_key_secret = bar\n\n\
        [other]\ntype = access_key\naccess_key_id = id2 # comment\naccess_key_secret = s2\n\n\
        [rsa]\ntype = rsa_key_pair\npublic_key_id = x\n\n\
        [badarn]\ntype = ram_role_arn\naccess_key_id = a\naccess_key_secret = b\nrole_arn = role/builder\n";

    fn provider(profile: Option<&str>) -> (tempfile::TempDir, ProfileFileProvider) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, FILE).unwrap();
        let p = ProfileFileProvider::new(path, profile.map(String::from), test_options());
        (dir, p)
    }

    #[tokio::test]
    async fn default_and_named_profiles() {
        let (_d, p) = provider(None);
        let c = p.credentials().await.unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.access_key_secret.expose()),
            ("foo", "bar")
        );
        let (_d, p) = provider(Some("other"));
        let c = p.credentials().await.unwrap();
        assert_eq!(c.access_key_id, "id2");
    }

    #[tokio::test]
    async fn unsupported_type_and_missing_profile_are_named() {
        let (_d, p) = provider(Some("rsa"));
        let e = p.credentials().await.unwrap_err().to_string();
        assert!(e.contains("rsa_key_pair") && e.contains("[rsa]"), "{e}");
        let (_d, p) = provider(Some("badarn"));
        let e = p.credentials().await.unwrap_err().to_string();
        assert!(
            e.contains("[badarn] `role_arn`") && e.contains("role/builder"),
            "{e}"
        );
        let (_d, p) = provider(Some("nope"));
        let e = p.credentials().await.unwrap_err().to_string();
        assert!(e.contains("no section [nope]"), "{e}");
    }

    #[tokio::test]
    async fn missing_file_is_not_configured() {
        let p = ProfileFileProvider::new("/nonexistent/credentials".into(), None, test_options());
        assert!(matches!(
            p.credentials().await,
            Err(CredentialsError::NotConfigured(_))
        ));
    }
}
