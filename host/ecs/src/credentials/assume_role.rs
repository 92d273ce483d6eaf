//! RAM role assumption (`RamRoleArn`, `ChainableRamRoleArn`, `type = ram_role_arn`): STS
//! `AssumeRole` signed with any base credential (an AccessKey, STS credentials, an instance
//! role, another assumed role), refreshed through the shared cache.
use futures::future::BoxFuture;

use super::refresh::RefreshCache;
use super::sts::{RoleSession, StsClient};
use super::{Credentials, CredentialsError, CredentialsProvider};

/// Credentials of a RAM role assumed with a base credential.
pub struct AssumeRoleProvider {
    base: Box<dyn CredentialsProvider>,
    session: RoleSession,
    external_id: Option<String>,
    sts: StsClient,
    /// Where the settings came from, e.g. `aliyun CLI config ... profile `x``.
    origin: String,
    cache: RefreshCache,
}

impl AssumeRoleProvider {
    /// Assumes `session`'s role with `base`'s credentials; `origin` names the settings.
    pub fn new(
        base: Box<dyn CredentialsProvider>,
        session: RoleSession,
        external_id: Option<String>,
        sts: StsClient,
        origin: impl Into<String>,
    ) -> Self {
        Self {
            base,
            session,
            external_id,
            sts,
            origin: origin.into(),
            cache: RefreshCache::default(),
        }
    }

    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let base = self.base.credentials().await?;
        let mut c = self
            .sts
            .assume_role(&base, &self.session, self.external_id.as_deref())
            .await
            .map_err(|e| CredentialsError::invalid(&self.origin, e.to_string()))?;
        c.source = format!(
            "{}: role {} assumed with {}",
            self.origin,
            self.session.role_arn.as_str(),
            base.source
        );
        c.provider = format!("ram_role_arn/{}", base.provider);
        tracing::debug!(role = self.session.role_arn.as_str(), expiration = ?c.expiration, "assumed RAM role");
        Ok(c)
    }
}

impl CredentialsProvider for AssumeRoleProvider {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(self.cache.get(|| self.fetch()))
    }
    fn describe(&self) -> String {
        format!(
            "{} (AssumeRole {})",
            self.origin,
            self.session.role_arn.as_str()
        )
    }
}
