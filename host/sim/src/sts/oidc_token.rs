//! OIDC tokens as the emulated STS reads them: a JWT whose claims (`iss`, `aud`, `sub`, `exp`)
//! are checked. The emulator holds no identity-provider keys, so the signature part is not
//! verified; [`mint`] makes tokens for tests and the `sim` command.
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// The claims STS looks at.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// Issuer: must be the OIDC provider's.
    pub iss: String,
    #[serde(default)]
    /// Audience: one of the provider's client ids.
    pub aud: String,
    #[serde(default)]
    /// Subject, e.g. a Kubernetes service account.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    #[serde(default)]
    /// Issued at, seconds since the epoch.
    pub iat: i64,
}

/// A token for `issuer` that expires `ttl_secs` from now (negative: already expired).
pub fn mint(issuer: &str, audience: &str, subject: &str, ttl_secs: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"emulated"}"#);
    let claims = Claims {
        iss: issuer.into(),
        aud: audience.into(),
        sub: subject.into(),
        exp: now + ttl_secs,
        iat: now,
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialise"));
    let signature = URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
    format!("{header}.{payload}.{signature}")
}

/// The claims of a token; `None` when it is not a JWT.
pub fn claims(token: &str) -> Option<Claims> {
    let mut parts = token.trim().split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_read_back() {
        let t = mint(
            "https://issuer",
            "sts.aliyuncs.com",
            "system:serviceaccount:ci:builder",
            60,
        );
        let c = claims(&t).unwrap();
        assert_eq!(
            (c.iss.as_str(), c.aud.as_str()),
            ("https://issuer", "sts.aliyuncs.com")
        );
        assert!(c.exp > c.iat);
        assert!(claims("not-a-jwt").is_none());
        assert!(claims("a.b.c").is_none());
    }
}
