//! The aliyun CLI's `~/.aliyun/config.json` profiles (reference §6.4): modes `AK`, `StsToken`,
//! `EcsRamRole`, `RamRoleArn` (AssumeRole with the profile's AccessKey), `ChainableRamRoleArn`
//! (AssumeRole with another profile's credentials, `source_profile`) and `OIDC`.
use std::path::PathBuf;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::sts::{self, RoleArn, RoleSession};
use super::{
    AssumeRoleProvider, ChainOptions, Credentials, CredentialsError, CredentialsProvider,
    EcsRamRoleProvider, OidcRoleProvider, StaticProvider,
};

#[derive(Deserialize)]
struct CliConfig {
    #[serde(default)]
    current: String,
    #[serde(default)]
    profiles: Vec<CliProfile>,
}

#[derive(Deserialize, Clone)]
struct CliProfile {
    name: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    access_key_secret: String,
    #[serde(default)]
    sts_token: String,
    #[serde(default)]
    ram_role_name: String,
    #[serde(default)]
    ram_role_arn: String,
    #[serde(default)]
    ram_session_name: String,
    /// The Python library reads this name for OIDC sessions.
    #[serde(default)]
    role_session_name: String,
    #[serde(default)]
    expired_seconds: u64,
    #[serde(default)]
    policy: String,
    #[serde(default)]
    external_id: String,
    #[serde(default)]
    sts_region: String,
    #[serde(default)]
    sts_endpoint: String,
    #[serde(default)]
    enable_vpc: Option<bool>,
    #[serde(default)]
    source_profile: String,
    #[serde(default)]
    oidc_provider_arn: String,
    #[serde(default)]
    oidc_token_file: String,
}

fn non_empty(s: &str) -> Option<&str> {
    Some(s).filter(|s| !s.is_empty())
}

/// Reads a profile (explicit, else `current`) from the aliyun CLI configuration.
pub struct CliConfigProvider {
    path: PathBuf,
    profile: Option<String>,
    options: ChainOptions,
    /// The profile's provider, built on first use so role caches survive between calls.
    built: tokio::sync::OnceCell<Box<dyn CredentialsProvider>>,
}

impl CliConfigProvider {
    /// Reads `path`; `profile` overrides `current`; `options` give metadata and STS settings.
    pub fn new(path: PathBuf, profile: Option<String>, options: ChainOptions) -> Self {
        Self {
            path,
            profile,
            options,
            built: tokio::sync::OnceCell::new(),
        }
    }

    fn name(&self) -> String {
        format!("aliyun CLI config {}", self.path.display())
    }

    fn load(&self) -> Result<Box<dyn CredentialsProvider>, CredentialsError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CredentialsError::NotConfigured(format!(
                    "{} (not found)",
                    self.name()
                )));
            }
            Err(e) => return Err(CredentialsError::invalid(self.name(), e.to_string())),
        };
        let config: CliConfig = serde_json::from_str(&text)
            .map_err(|e| CredentialsError::invalid(self.name(), format!("not valid JSON: {e}")))?;
        let wanted = self
            .profile
            .clone()
            .unwrap_or_else(|| config.current.clone());
        self.build(&config, &wanted, &mut Vec::new())
    }

    /// The provider for profile `name`; `seen` guards `source_profile` loops.
    fn build(
        &self,
        config: &CliConfig,
        name: &str,
        seen: &mut Vec<String>,
    ) -> Result<Box<dyn CredentialsProvider>, CredentialsError> {
        if seen.iter().any(|s| s == name) {
            seen.push(name.into());
            return Err(CredentialsError::invalid(
                self.name(),
                format!("source_profile loop: {}", seen.join(" -> ")),
            ));
        }
        seen.push(name.into());
        let profile = config
            .profiles
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                CredentialsError::invalid(self.name(), format!("no profile named `{name}`"))
            })?;
        let source = format!("{} profile `{}`", self.name(), profile.name);
        let key = |k: &str| format!("{source} `{k}`");
        let require = |value: &str, k: &str| {
            non_empty(value).map(String::from).ok_or_else(|| {
                CredentialsError::invalid(&source, format!("mode {} needs `{k}`", profile.mode))
            })
        };
        let role_session = |session_name: &str| -> Result<RoleSession, CredentialsError> {
            let arn = require(&profile.ram_role_arn, "ram_role_arn")?;
            let session_name = non_empty(session_name)
                .map(String::from)
                .unwrap_or_else(sts::default_session_name);
            sts::check_session_name(&session_name, &key("ram_session_name"))?;
            let duration_secs = match profile.expired_seconds {
                0 => sts::DEFAULT_DURATION_SECS,
                n => n,
            };
            sts::check_duration(duration_secs, &key("expired_seconds"))?;
            Ok(RoleSession {
                role_arn: RoleArn::parse(&arn, &key("ram_role_arn"))?,
                session_name,
                policy: non_empty(&profile.policy).map(String::from),
                duration_secs,
            })
        };
        let sts = || {
            self.options.sts_client(
                non_empty(&profile.sts_endpoint),
                non_empty(&profile.sts_region),
                profile.enable_vpc,
            )
        };
        let access_key = || -> Result<Credentials, CredentialsError> {
            let c = Credentials::access_key(
                require(&profile.access_key_id, "access_key_id")?,
                require(&profile.access_key_secret, "access_key_secret")?,
            );
            Ok(c.with_source(source.clone()))
        };
        Ok(match profile.mode.as_str() {
            "AK" => Box::new(StaticProvider(access_key()?)),
            "StsToken" => {
                let token = require(&profile.sts_token, "sts_token")?;
                Box::new(StaticProvider(access_key()?.with_security_token(token)))
            }
            "EcsRamRole" => Box::new(EcsRamRoleProvider::new(
                self.options.metadata_base_url.clone(),
                non_empty(&profile.ram_role_name).map(String::from),
            )),
            "RamRoleArn" => Box::new(AssumeRoleProvider::new(
                Box::new(StaticProvider(access_key()?)),
                role_session(&profile.ram_session_name)?,
                non_empty(&profile.external_id).map(String::from),
                sts(),
                source.clone(),
            )),
            "ChainableRamRoleArn" => {
                let from = require(&profile.source_profile, "source_profile")?;
                let base = self.build(config, &from, seen)?;
                Box::new(AssumeRoleProvider::new(
                    base,
                    role_session(&profile.ram_session_name)?,
                    non_empty(&profile.external_id).map(String::from),
                    sts(),
                    source.clone(),
                ))
            }
            "OIDC" => {
                let session_name =
                    non_empty(&profile.ram_session_name).unwrap_or(&profile.role_session_name);
                Box::new(OidcRoleProvider::new(
                    role_session(session_name)?,
                    require(&profile.oidc_provider_arn, "oidc_provider_arn")?,
                    require(&profile.oidc_token_file, "oidc_token_file")?.into(),
                    key("oidc_token_file"),
                    sts(),
                    source.clone(),
                ))
            }
            other => {
                return Err(CredentialsError::invalid(
                    source,
                    format!(
                        "mode `{other}` is not supported; use AK, StsToken, EcsRamRole, RamRoleArn, \
                         ChainableRamRoleArn or OIDC"
                    ),
                ));
            }
        })
    }

    async fn read(&self) -> Result<Credentials, CredentialsError> {
        let provider = self.built.get_or_try_init(|| async { self.load() }).await?;
        provider.credentials().await
    }
}

impl CredentialsProvider for CliConfigProvider {
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

    const CONFIG: &str = r#"{
      "current": "AK",
      "profiles": [
        { "name": "AK", "mode": "AK", "access_key_id": "akid", "access_key_secret": "secret" },
        { "name": "StsToken", "mode": "StsToken", "access_key_id": "accessKeyId", "access_key_secret": "accessKeySecret", "sts_token": "stsToken" },
        { "name": "RamRoleArn", "mode": "RamRoleArn", "access_key_id": "akid", "access_key_secret": "secret", "ram_role_arn": "arn" },
        { "name": "EcsRamRole", "mode": "EcsRamRole", "ram_role_name": "rolename" },
        { "name": "Rsa", "mode": "RsaKeyPair", "key_pair_name": "k" },
        { "name": "LoopA", "mode": "ChainableRamRoleArn", "source_profile": "LoopB", "ram_role_arn": "acs:ram::1:role/a" },
        { "name": "LoopB", "mode": "ChainableRamRoleArn", "source_profile": "LoopA", "ram_role_arn": "acs:ram::1:role/b" }
      ]
    }"#;

    fn provider(profile: Option<&str>, base: &str) -> (tempfile::TempDir, CliConfigProvider) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, CONFIG).unwrap();
        let options = ChainOptions {
            env: super::super::EnvLookup::from_pairs(&[]),
            home: None,
            profile: None,
            metadata_base_url: base.into(),
            sts_endpoint: None,
        };
        (
            dir,
            CliConfigProvider::new(path, profile.map(String::from), options),
        )
    }

    #[tokio::test]
    async fn current_ak_and_sts_profiles() {
        let (_d, p) = provider(None, "");
        let c = p.credentials().await.unwrap();
        assert_eq!(c.access_key_id, "akid");
        assert!(c.security_token.is_none());
        let (_d, p) = provider(Some("StsToken"), "");
        let c = p.credentials().await.unwrap();
        assert_eq!(c.security_token.unwrap().expose(), "stsToken");
    }

    #[tokio::test]
    async fn unsupported_mode_bad_arn_and_loops_are_named() {
        let (_d, p) = provider(Some("Rsa"), "");
        let e = p.credentials().await.unwrap_err().to_string();
        assert!(
            e.contains("RsaKeyPair") && e.contains("not supported"),
            "{e}"
        );
        let (_d, p) = provider(Some("RamRoleArn"), "");
        let e = p.credentials().await.unwrap_err().to_string();
        assert!(
            e.contains("profile `RamRoleArn` `ram_role_arn`") && e.contains("not a RAM role ARN"),
            "{e}"
        );
        let (_d, p) = provider(Some("LoopA"), "");
        let e = p.credentials().await.unwrap_err().to_string();
        assert!(e.contains("LoopA -> LoopB -> LoopA"), "{e}");
    }
    // `EcsRamRole` profiles read the emulated metadata service in host/sim/tests/ram_role.rs.
}
