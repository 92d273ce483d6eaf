//! agent.jar as the controller serves it, cached by content hash.
//!
//! Agents must run the remoting jar of their controller: after a Jenkins upgrade the controller
//! serves a new one, and an old agent may be refused. So the cache asks the controller again
//! once `revalidate_after` has passed (a conditional GET: a 304 costs no transfer) and swaps in
//! the new jar when its hash differs. Concurrent callers share one download.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::client::{JarDownload, JenkinsClient};
use super::error::JenkinsError;

/// One agent.jar and its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentJar {
    /// The jar's bytes.
    pub bytes: Arc<[u8]>,
    /// Lower-case hex SHA-256 of `bytes`.
    pub sha256: String,
}

impl AgentJar {
    /// Wraps jar bytes, computing their hash.
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        let bytes = bytes.into();
        let sha256 = sha256_hex(&bytes);
        AgentJar { bytes, sha256 }
    }
}

impl std::fmt::Debug for AgentJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentJar")
            .field("len", &self.bytes.len())
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Cached {
    jar: Arc<AgentJar>,
    last_modified: Option<String>,
    checked: Instant,
}

/// The controller's agent.jar, downloaded once and revalidated now and then.
pub struct AgentJarCache {
    client: JenkinsClient,
    revalidate_after: Duration,
    cached: Mutex<Option<Cached>>,
}

impl AgentJarCache {
    /// How long a downloaded jar is used before the controller is asked again.
    pub const DEFAULT_REVALIDATE_AFTER: Duration = Duration::from_secs(60);

    /// A cache over `client`, whose root URL is the one agents use (`agent-url`, else `url`).
    pub fn new(client: JenkinsClient, revalidate_after: Duration) -> Self {
        AgentJarCache {
            client,
            revalidate_after,
            cached: Mutex::new(None),
        }
    }

    /// The URL the jar comes from.
    pub fn url(&self) -> String {
        format!("{}jnlpJars/agent.jar", self.client.base_url())
    }

    /// The jar the controller serves now (from the cache while it is fresh). If the controller
    /// cannot be reached but a jar was downloaded before, that one is returned (with a warning):
    /// the controller being briefly away must not stop bootstraps.
    pub async fn current(&self) -> Result<Arc<AgentJar>, JenkinsError> {
        let mut slot = self.cached.lock().await;
        if let Some(c) = slot.as_ref()
            && c.checked.elapsed() < self.revalidate_after
        {
            return Ok(c.jar.clone());
        }
        let since = slot.as_ref().and_then(|c| c.last_modified.clone());
        match self.client.agent_jar(since.as_deref()).await {
            Ok(JarDownload::NotModified) => {
                let c = slot
                    .as_mut()
                    .expect("a 304 answers a conditional request, sent only with a cached jar");
                c.checked = Instant::now();
                Ok(c.jar.clone())
            }
            Ok(JarDownload::Fetched {
                bytes,
                last_modified,
            }) => {
                let jar = AgentJar::new(bytes);
                match slot.as_ref() {
                    Some(old) if old.jar.sha256 == jar.sha256 => {}
                    Some(old) => {
                        tracing::info!(old = %old.jar.sha256, new = %jar.sha256, url = %self.url(),
                        "the controller serves a new agent.jar (upgraded?); delivering the new one from now on")
                    }
                    None => {
                        tracing::info!(sha256 = %jar.sha256, bytes = jar.bytes.len(), url = %self.url(), "downloaded agent.jar")
                    }
                }
                let jar = match slot.take() {
                    // Same content: keep the one allocation every bootstrap shares.
                    Some(old) if old.jar.sha256 == jar.sha256 => old.jar,
                    _ => Arc::new(jar),
                };
                *slot = Some(Cached {
                    jar: jar.clone(),
                    last_modified,
                    checked: Instant::now(),
                });
                Ok(jar)
            }
            Err(e) => match slot.as_ref() {
                Some(c) => {
                    tracing::warn!(error = %e, sha256 = %c.jar.sha256, "cannot revalidate agent.jar; delivering the cached one");
                    Ok(c.jar.clone())
                }
                None => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_lower_case_hex_sha256() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let jar = AgentJar::new(b"abc".to_vec());
        assert_eq!(jar.sha256, sha256_hex(b"abc"));
        assert!(
            !format!("{jar:?}").contains("97, 98"),
            "Debug prints the length, not the bytes"
        );
    }
}
