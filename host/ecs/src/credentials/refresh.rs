//! The one cache every temporary-credentials source uses (instance role, AssumeRole, OIDC,
//! credentials URI), so they all refresh and back off by the same rules:
//!
//! - credentials are reused until `REFRESH_BEFORE` (180 s, as credentials-go) before they
//!   expire — or, for credentials that live less than three times that, until two thirds of
//!   their lifetime, so short-lived ones are not fetched again on every call;
//! - a failed refresh while the cached credentials are still valid keeps them, logs a warning
//!   and waits before trying again (1 s, doubling up to 60 s), rather than hammering a
//!   throttled or broken service; once they have expired, the failure is the caller's error.
use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;

use super::{Credentials, CredentialsError};

/// Refresh this long before the credentials expire (as credentials-go does).
pub(crate) const REFRESH_BEFORE: time::Duration = time::Duration::seconds(180);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

struct Cached {
    credentials: Credentials,
    /// When to fetch new ones.
    refresh_at: OffsetDateTime,
    /// When they stop working.
    expires_at: OffsetDateTime,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    /// After a failed refresh: no new attempt before this.
    retry_at: Option<OffsetDateTime>,
    backoff: Duration,
}

/// Cached temporary credentials with refresh-before-expiry and backoff (see the module docs).
#[derive(Default)]
pub(crate) struct RefreshCache {
    state: tokio::sync::Mutex<State>,
}

/// When credentials fetched at `now` and expiring at `expires` should be refreshed.
fn refresh_time(now: OffsetDateTime, expires: OffsetDateTime) -> OffsetDateTime {
    let window = REFRESH_BEFORE.min((expires - now) / 3);
    expires - window.max(time::Duration::ZERO)
}

impl RefreshCache {
    /// The cached credentials, or new ones from `fetch` when they are due (see module docs).
    /// `fetch` must return credentials with an `expiration`; without one they are kept for good.
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<Credentials, CredentialsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Credentials, CredentialsError>>,
    {
        let mut state = self.state.lock().await;
        let now = OffsetDateTime::now_utc();
        if let Some(c) = &state.cached {
            let still_valid = now < c.expires_at;
            if now < c.refresh_at || (still_valid && state.retry_at.is_some_and(|t| now < t)) {
                return Ok(c.credentials.clone());
            }
        }
        match fetch().await {
            Ok(credentials) => {
                let expires_at = credentials
                    .expiration
                    .unwrap_or(OffsetDateTime::now_utc() + time::Duration::days(36_500));
                state.cached = Some(Cached {
                    refresh_at: refresh_time(now, expires_at),
                    expires_at,
                    credentials: credentials.clone(),
                });
                state.retry_at = None;
                state.backoff = Duration::ZERO;
                Ok(credentials)
            }
            Err(e) => {
                let now = OffsetDateTime::now_utc();
                let Some(c) = state.cached.as_ref().filter(|c| now < c.expires_at) else {
                    return Err(e);
                };
                let credentials = c.credentials.clone();
                let expires_at = c.expires_at;
                let backoff = if state.backoff.is_zero() {
                    FIRST_BACKOFF
                } else {
                    (state.backoff * 2).min(MAX_BACKOFF)
                };
                state.backoff = backoff;
                state.retry_at = Some(now + backoff);
                tracing::warn!(
                    source = %credentials.source,
                    error = %e,
                    retry_in = ?backoff,
                    expires_in = ?(expires_at - now),
                    "refreshing credentials failed; keeping the current ones until they expire"
                );
                Ok(credentials)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn expiring_in(secs: i64, n: u32) -> Credentials {
        let mut c = Credentials::access_key(format!("STS.{n}"), "s").with_source("test");
        c.expiration = Some(OffsetDateTime::now_utc() + time::Duration::seconds(secs));
        c
    }

    #[test]
    fn refresh_window_is_180s_or_a_third_of_a_short_lifetime() {
        let now = OffsetDateTime::now_utc();
        let hour = now + time::Duration::hours(1);
        assert_eq!(refresh_time(now, hour), hour - time::Duration::seconds(180));
        let short = now + time::Duration::seconds(9);
        assert_eq!(refresh_time(now, short), now + time::Duration::seconds(6));
        let past = now - time::Duration::seconds(1);
        assert_eq!(refresh_time(now, past), past);
    }

    #[tokio::test]
    async fn reuses_until_due_then_fetches_again() {
        let cache = RefreshCache::default();
        let n = AtomicU32::new(0);
        let fetch = || async { Ok(expiring_in(3, n.fetch_add(1, Ordering::SeqCst) + 1)) };
        assert_eq!(cache.get(fetch).await.unwrap().access_key_id, "STS.1");
        assert_eq!(cache.get(fetch).await.unwrap().access_key_id, "STS.1");
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert_eq!(cache.get(fetch).await.unwrap().access_key_id, "STS.2");
    }

    #[tokio::test]
    async fn failed_refresh_keeps_valid_credentials_and_backs_off() {
        let cache = RefreshCache::default();
        let first = cache
            .get(|| async { Ok(expiring_in(300, 1)) })
            .await
            .unwrap();
        assert_eq!(first.access_key_id, "STS.1");
        {
            // Make the cached credentials due for refresh while still valid.
            let mut s = cache.state.lock().await;
            let c = s.cached.as_mut().unwrap();
            c.refresh_at = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        }
        let attempts = AtomicU32::new(0);
        let failing = || async {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err(CredentialsError::invalid("sts", "Throttling"))
        };
        assert_eq!(cache.get(failing).await.unwrap().access_key_id, "STS.1");
        // Within the backoff: no new attempt.
        assert_eq!(cache.get(failing).await.unwrap().access_key_id, "STS.1");
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        tokio::time::sleep(FIRST_BACKOFF + Duration::from_millis(50)).await;
        assert_eq!(cache.get(failing).await.unwrap().access_key_id, "STS.1");
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert_eq!(cache.state.lock().await.backoff, FIRST_BACKOFF * 2);
        // After the backoff, a success replaces the credentials and resets it.
        tokio::time::sleep(FIRST_BACKOFF * 2 + Duration::from_millis(50)).await;
        let fresh = cache
            .get(|| async { Ok(expiring_in(300, 2)) })
            .await
            .unwrap();
        assert_eq!(fresh.access_key_id, "STS.2");
        let s = cache.state.lock().await;
        assert!(s.retry_at.is_none() && s.backoff.is_zero());
    }

    #[tokio::test]
    async fn failure_after_expiry_is_an_error() {
        let cache = RefreshCache::default();
        cache
            .get(|| async { Ok(expiring_in(-1, 1)) })
            .await
            .unwrap();
        let e = cache
            .get(|| async { Err(CredentialsError::invalid("sts", "down")) })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("down"), "{e}");
    }
}
