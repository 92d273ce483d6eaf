//! Temporary credentials this cloud honours besides its configured AccessKeys: the sessions
//! the STS emulator issues (`sim::sts`). A request signed with one is checked like any other
//! (signature, `SecurityToken`), then refused with `InvalidSecurityToken.Expired` once the
//! session is over, as the real gateway does.
use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

use super::config::Account;
use super::failure::ApiFailure;

/// One issued session.
#[derive(Debug, Clone)]
pub struct Session {
    /// `STS.`-prefixed AccessKeyId, secret, token, and the role's denied actions.
    pub account: Account,
    /// When the session ends (the `Expiration` STS answered).
    pub expires_at: OffsetDateTime,
    /// `acs:ram::<account>:assumed-role/<role>/<session name>`.
    pub arn: String,
    /// `<role id>:<session name>`.
    pub principal_id: String,
}

/// Sessions by AccessKeyId, shared by the ECS and STS emulators.
#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    /// Records a new session.
    pub fn issue(&self, session: Session) {
        let mut map = self.0.lock().expect("sessions lock poisoned");
        // Forget sessions long over so a long-running emulator does not grow without bound.
        let cutoff = OffsetDateTime::now_utc() - time::Duration::hours(1);
        map.retain(|_, s| s.expires_at > cutoff);
        map.insert(session.account.access_key_id.clone(), session);
    }

    /// The session with this AccessKeyId, expired or not.
    pub fn get(&self, access_key_id: &str) -> Option<Session> {
        self.0
            .lock()
            .expect("sessions lock poisoned")
            .get(access_key_id)
            .cloned()
    }

    /// Issued sessions (expired ones included until they are forgotten).
    pub fn len(&self) -> usize {
        self.0.lock().expect("sessions lock poisoned").len()
    }

    /// Whether no session was issued (or all were forgotten).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The refusal for a request made with a session that is over (checked after its signature).
pub(crate) fn check_not_expired(session: &Session) -> Result<(), ApiFailure> {
    if OffsetDateTime::now_utc() >= session.expires_at {
        return Err(ApiFailure::new(
            400,
            "InvalidSecurityToken.Expired",
            "Specified SecurityToken is expired.",
        ));
    }
    Ok(())
}
