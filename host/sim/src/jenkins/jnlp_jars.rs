//! `/jnlpJars/<name>`: the agent.jar the emulated controller serves.
//!
//! As in Jenkins, the path is an unprotected root action (anonymous may download it), but a
//! request that does send credentials must send valid ones (401 otherwise); `agent.jar`,
//! `slave.jar` and `remoting.jar` are the same file; the answer carries `Last-Modified` and a
//! conditional GET whose `If-Modified-Since` names it gets a 304. The content is known (see
//! [`default_agent_jar`]) and replaceable, to play a controller upgrade.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Shared;

/// The jar file the emulator serves, with its `Last-Modified` value.
pub(crate) struct JarFile {
    pub bytes: Arc<[u8]>,
    pub last_modified: String,
    /// Seconds since the epoch behind `last_modified` (each replacement moves it forward).
    pub modified_secs: i64,
}

impl JarFile {
    pub fn new(bytes: Arc<[u8]>, after_secs: Option<i64>) -> Self {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let modified_secs = after_secs.map_or(now, |prev| now.max(prev + 1));
        JarFile {
            bytes,
            last_modified: http_date(modified_secs),
            modified_secs,
        }
    }
}

/// The emulator's default agent.jar: 1 MiB of bytes derived from the Jenkins version (so the
/// hash is known, and an "upgrade" to another version serves different content), beginning
/// with a line that says what it is. About the size of a real agent.jar, so delivery is
/// tested with a file that spans many SSH packets.
pub fn default_agent_jar(version: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut out =
        format!("ecs-provisioner emulated agent.jar for Jenkins {version}\n").into_bytes();
    let mut counter = 0u64;
    while out.len() < 1 << 20 {
        let block = Sha256::new()
            .chain_update(version.as_bytes())
            .chain_update(counter.to_le_bytes())
            .finalize();
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(1 << 20);
    out
}

/// IMF-fixdate, as in `Last-Modified`.
fn http_date(unix_secs: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&format).unwrap_or_default()
}

/// `GET /jnlpJars/{name}`.
pub(crate) async fn serve(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    // Unprotected, but a wrong token is still refused (Jenkins' BasicHeaderProcessor).
    if headers.contains_key(header::AUTHORIZATION)
        && let Err(e) = super::routes::authenticate(&s, &headers)
    {
        return e.into_response();
    }
    if !matches!(name.as_str(), "agent.jar" | "slave.jar" | "remoting.jar") {
        // jenkins-cli.jar exists in Jenkins; the emulator has no CLI.
        return (
            StatusCode::NOT_FOUND,
            format!("{name} is not served by the Jenkins emulator"),
        )
            .into_response();
    }
    let (bytes, last_modified) = {
        let jar = s.agent_jar.lock().unwrap_or_else(|p| p.into_inner());
        (jar.bytes.clone(), jar.last_modified.clone())
    };
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok());
    let lm = HeaderValue::from_str(&last_modified).expect("an HTTP date is a valid header value");
    if since == Some(last_modified.as_str()) {
        s.jar_not_modified.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::NOT_MODIFIED, [(header::LAST_MODIFIED, lm)]).into_response();
    }
    s.jar_downloads.fetch_add(1, Ordering::Relaxed);
    let disposition =
        HeaderValue::from_str(&format!("attachment; filename={name}")).expect("plain file name");
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/java-archive"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (header::LAST_MODIFIED, lm),
        ],
        bytes.to_vec(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_jar_is_deterministic_per_version() {
        let a = default_agent_jar("2.541");
        assert_eq!(a.len(), 1 << 20);
        assert_eq!(a, default_agent_jar("2.541"));
        assert_ne!(a, default_agent_jar("2.542"));
        assert!(a.starts_with(b"ecs-provisioner emulated agent.jar for Jenkins 2.541\n"));
    }

    #[test]
    fn last_modified_is_an_http_date_that_moves_forward() {
        assert_eq!(http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
        let first = JarFile::new(Arc::from(&b"x"[..]), None);
        let second = JarFile::new(Arc::from(&b"y"[..]), Some(first.modified_secs));
        assert!(second.modified_secs > first.modified_secs);
        assert_ne!(first.last_modified, second.last_modified);
    }
}
