//! The aliyun CLI's `~/.aliyun/config.json` profiles (reference §6.4): modes `AK`, `StsToken`
//! and `EcsRamRole`.
use std::path::PathBuf;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{Credentials, CredentialsError, CredentialsProvider, EcsRamRoleProvider};

#[derive(Deserialize)]
struct CliConfig {
    #[serde(default)]
    current: String,
    #[serde(default)]
    profiles: Vec<CliProfile>,
}

#[derive(Deserialize)]
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
}

/// Reads a profile (explicit, else `current`) from the aliyun CLI configuration.
pub struct CliConfigProvider {
    path: PathBuf,
    profile: Option<String>,
    metadata_base_url: String,
    role: tokio::sync::OnceCell<EcsRamRoleProvider>,
}

impl CliConfigProvider {
    pub fn new(path: PathBuf, profile: Option<String>, metadata_base_url: String) -> Self {
        Self {
            path,
            profile,
            metadata_base_url,
            role: tokio::sync::OnceCell::new(),
        }
    }

    fn name(&self) -> String {
        format!("aliyun CLI config {}", self.path.display())
    }

    async fn read(&self) -> Result<Credentials, CredentialsError> {
        if let Some(role) = self.role.get() {
            return role.credentials().await;
        }
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
        let wanted = self.profile.clone().unwrap_or(config.current);
        let profile = config
            .profiles
            .into_iter()
            .find(|p| p.name == wanted)
            .ok_or_else(|| {
                CredentialsError::invalid(self.name(), format!("no profile named `{wanted}`"))
            })?;
        let source = format!("{} profile `{}`", self.name(), profile.name);
        let missing = |key: &str| {
            CredentialsError::invalid(&source, format!("mode {} needs `{key}`", profile.mode))
        };
        match profile.mode.as_str() {
            "AK" | "StsToken" => {
                if profile.access_key_id.is_empty() {
                    return Err(missing("access_key_id"));
                }
                if profile.access_key_secret.is_empty() {
                    return Err(missing("access_key_secret"));
                }
                let c = Credentials::access_key(&profile.access_key_id, &profile.access_key_secret)
                    .with_source(source.clone());
                if profile.mode == "StsToken" {
                    if profile.sts_token.is_empty() {
                        return Err(missing("sts_token"));
                    }
                    return Ok(c.with_security_token(&profile.sts_token));
                }
                Ok(c)
            }
            "EcsRamRole" => {
                let role_name = Some(profile.ram_role_name).filter(|r| !r.is_empty());
                let role = EcsRamRoleProvider::new(self.metadata_base_url.clone(), role_name);
                self.role
                    .get_or_init(|| async { role })
                    .await
                    .credentials()
                    .await
            }
            other => Err(CredentialsError::invalid(
                source,
                format!("mode `{other}` is not supported; use AK, StsToken or EcsRamRole"),
            )),
        }
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
        { "name": "EcsRamRole", "mode": "EcsRamRole", "ram_role_name": "rolename" }
      ]
    }"#;

    fn provider(profile: Option<&str>, base: &str) -> (tempfile::TempDir, CliConfigProvider) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, CONFIG).unwrap();
        (
            dir,
            CliConfigProvider::new(path, profile.map(String::from), base.into()),
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
    async fn unsupported_mode_is_named() {
        let (_d, p) = provider(Some("RamRoleArn"), "");
        let e = p.credentials().await.unwrap_err().to_string();
        assert!(
            e.contains("RamRoleArn") && e.contains("not supported"),
            "{e}"
        );
    }
    // `EcsRamRole` profiles read the emulated metadata service in host/sim/tests/ram_role.rs.
}
