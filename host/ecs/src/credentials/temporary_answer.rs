//! The JSON answer that hands out temporary credentials, shared by the instance metadata
//! service (RAM role) and credentials URIs, which use the same format:
//! `{"Code": "Success", "AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"}`.

use serde::Deserialize;

use super::Credentials;

/// One answer, as sent.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TemporaryAnswer {
    #[serde(default)]
    code: String,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    access_key_secret: String,
    #[serde(default)]
    security_token: String,
    #[serde(default)]
    expiration: String,
}

impl TemporaryAnswer {
    /// The credentials it carries, with their expiry, or what is wrong with it (for the
    /// caller's error, which names the source).
    pub(crate) fn into_credentials(self) -> Result<Credentials, String> {
        if self.code != "Success"
            || self.access_key_id.is_empty()
            || self.access_key_secret.is_empty()
            || self.security_token.is_empty()
        {
            return Err(format!(
                "Code={:?}; AccessKeyId, AccessKeySecret and SecurityToken are all required",
                self.code
            ));
        }
        let expiration = crate::signer::parse_timestamp(&self.expiration)
            .ok_or_else(|| format!("bad Expiration {:?}", self.expiration))?;
        let mut c = Credentials::access_key(self.access_key_id, self.access_key_secret)
            .with_security_token(self.security_token);
        c.expiration = Some(expiration);
        Ok(c)
    }
}
