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
//! ```
use std::path::PathBuf;

use futures::future::BoxFuture;

use super::{Credentials, CredentialsError, CredentialsProvider, EcsRamRoleProvider};

/// Reads one profile (section) of the shared credentials file.
pub struct ProfileFileProvider {
    path: PathBuf,
    profile: String,
    metadata_base_url: String,
    /// Built on first use for `type = ecs_ram_role` so its cache survives between calls.
    role: tokio::sync::OnceCell<EcsRamRoleProvider>,
}

impl ProfileFileProvider {
    /// `profile` defaults to `default`.
    pub fn new(path: PathBuf, profile: Option<String>, metadata_base_url: String) -> Self {
        Self {
            path,
            profile: profile.unwrap_or_else(|| "default".into()),
            metadata_base_url,
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
                let role =
                    EcsRamRoleProvider::new(self.metadata_base_url.clone(), get("role_name"));
                let role = self.role.get_or_init(|| async { role }).await;
                role.credentials().await
            }
            Some(other) => Err(CredentialsError::invalid(
                self.name(),
                format!("`type = {other}` is not supported; use access_key or ecs_ram_role"),
            )),
        }
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

    const FILE: &str = "[default]\nenable = true\ntype = access_key\naccess_key_id = foo\naccess_key_secret = bar\n\n\
        [other]\ntype = access_key\naccess_key_id = id2 # comment\naccess_key_secret = s2\n\n\
        [rsa]\ntype = rsa_key_pair\npublic_key_id = x\n";

    fn provider(profile: Option<&str>) -> (tempfile::TempDir, ProfileFileProvider) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, FILE).unwrap();
        let p =
            ProfileFileProvider::new(path, profile.map(String::from), "http://127.0.0.1:9".into());
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
        let (_d, p) = provider(Some("nope"));
        let e = p.credentials().await.unwrap_err().to_string();
        assert!(e.contains("no section [nope]"), "{e}");
    }

    #[tokio::test]
    async fn missing_file_is_not_configured() {
        let p = ProfileFileProvider::new("/nonexistent/credentials".into(), None, String::new());
        assert!(matches!(
            p.credentials().await,
            Err(CredentialsError::NotConfigured(_))
        ));
    }
}
