//! OIDC role assumption (RRSA on ACK, `OIDC` CLI mode, `type = oidc_role_arn`): STS
//! `AssumeRoleWithOIDC` with the token read from a file. The file is read again at every
//! refresh because the platform rotates it.
use std::path::PathBuf;

use futures::future::BoxFuture;

use super::env::EnvLookup;
use super::refresh::RefreshCache;
use super::sts::{self, RoleArn, RoleSession, StsClient};
use super::{Credentials, CredentialsError, CredentialsProvider, Secret};

/// Variables of the environment OIDC source, as the official libraries name them.
pub const ROLE_ARN_VAR: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub const PROVIDER_ARN_VAR: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub const TOKEN_FILE_VAR: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
pub const SESSION_NAME_VAR: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";

/// Credentials of a RAM role assumed with an OIDC token.
pub struct OidcRoleProvider {
    session: RoleSession,
    provider_arn: String,
    token_file: PathBuf,
    /// The setting that names the token file (a variable, or a file and key), for errors.
    token_file_setting: String,
    sts: StsClient,
    origin: String,
    cache: RefreshCache,
}

impl OidcRoleProvider {
    /// Assumes `session`'s role with the token in `token_file` (named by `token_file_setting`
    /// in errors) for the OIDC provider `provider_arn`.
    pub fn new(
        session: RoleSession,
        provider_arn: String,
        token_file: PathBuf,
        token_file_setting: impl Into<String>,
        sts: StsClient,
        origin: impl Into<String>,
    ) -> Self {
        Self {
            session,
            provider_arn,
            token_file,
            token_file_setting: token_file_setting.into(),
            sts,
            origin: origin.into(),
            cache: RefreshCache::default(),
        }
    }

    /// The environment source: configured when any of the three variables is set (the
    /// libraries need all three; a partial setup is an error naming what is missing, not a
    /// silent skip), `NotConfigured` when none is.
    pub fn from_env(env: &EnvLookup, sts: StsClient) -> Result<Self, CredentialsError> {
        let role = env.get(ROLE_ARN_VAR);
        let provider = env.get(PROVIDER_ARN_VAR);
        let file = env.get(TOKEN_FILE_VAR);
        let (role, provider, file) = match (role, provider, file) {
            (Some(r), Some(p), Some(f)) => (r, p, f),
            // ALIBABA_CLOUD_ROLE_ARN alone also serves other sources: not an OIDC setup.
            (_, None, None) => {
                return Err(CredentialsError::NotConfigured(format!(
                    "OIDC ({TOKEN_FILE_VAR} not set)"
                )));
            }
            (r, p, f) => {
                let missing: Vec<&str> = [
                    (ROLE_ARN_VAR, r.is_none()),
                    (PROVIDER_ARN_VAR, p.is_none()),
                    (TOKEN_FILE_VAR, f.is_none()),
                ]
                .iter()
                .filter(|(_, m)| *m)
                .map(|(v, _)| *v)
                .collect();
                return Err(CredentialsError::invalid(
                    "environment OIDC",
                    format!(
                        "{} not set (all three OIDC variables are needed)",
                        missing.join(" and ")
                    ),
                ));
            }
        };
        let session_name = env
            .get(SESSION_NAME_VAR)
            .unwrap_or_else(sts::default_session_name);
        sts::check_session_name(&session_name, SESSION_NAME_VAR)?;
        let session = RoleSession {
            role_arn: RoleArn::parse(&role, ROLE_ARN_VAR)?,
            session_name,
            policy: None,
            duration_secs: sts::DEFAULT_DURATION_SECS,
        };
        Ok(Self::new(
            session,
            provider,
            PathBuf::from(file),
            TOKEN_FILE_VAR,
            sts,
            format!("environment OIDC ({TOKEN_FILE_VAR})"),
        ))
    }

    fn read_token(&self) -> Result<Secret, CredentialsError> {
        let text = std::fs::read_to_string(&self.token_file).map_err(|e| {
            CredentialsError::invalid(
                &self.token_file_setting,
                format!(
                    "cannot read the OIDC token file {}: {e}",
                    self.token_file.display()
                ),
            )
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(CredentialsError::invalid(
                &self.token_file_setting,
                format!("the OIDC token file {} is empty", self.token_file.display()),
            ));
        }
        Ok(Secret::new(token))
    }

    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let token = self.read_token()?;
        let mut c = self
            .sts
            .assume_role_with_oidc(&self.session, &self.provider_arn, &token)
            .await
            .map_err(|e| CredentialsError::invalid(&self.origin, e.to_string()))?;
        c.source = format!(
            "{}: role {} assumed with the OIDC token in {}",
            self.origin,
            self.session.role_arn.as_str(),
            self.token_file.display()
        );
        c.provider = "oidc_role_arn".into();
        Ok(c)
    }
}

impl CredentialsProvider for OidcRoleProvider {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(self.cache.get(|| self.fetch()))
    }
    fn describe(&self) -> String {
        format!(
            "{} (AssumeRoleWithOIDC {})",
            self.origin,
            self.session.role_arn.as_str()
        )
    }
}
