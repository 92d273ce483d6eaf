//! Reading HTTP answers with a size cap (used by the ECS and Jenkins clients).
//!
//! ECS and Jenkins answers are read whole before they are decoded; without a cap, a broken or
//! hostile endpoint (or a proxy in between) could make the daemon buffer any amount of memory.
//! The caps are far above what a real answer needs (see each constant).

mod transport;
pub use transport::{request_target, transport_cause};

/// The largest ECS or VPC answer read: a page of 100 instances is about 300 KiB, a console
/// output at most 64 KiB of base64.
pub const ECS_ANSWER_MAX: usize = 16 << 20;
/// The largest Jenkins JSON or XML answer read: the computer listing of a controller with a
/// few thousand agents is a few MiB.
pub const JENKINS_ANSWER_MAX: usize = 32 << 20;
/// The largest `agent.jar` downloaded (the real one is about 1.5 MiB).
pub const AGENT_JAR_MAX: usize = 64 << 20;
/// The part of an error answer kept for its message.
pub const ERROR_BODY_MAX: usize = 64 << 10;

/// Told how long each request a client sent took: (action, outcome, time). Both names come
/// from the client's closed sets (ECS action names, Jenkins operations; `success` or an error
/// class), never from the network, so they can be metric labels.
pub type RequestObserver = std::sync::Arc<dyn Fn(&str, &'static str, std::time::Duration) + Send + Sync>;

/// Why a capped read failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The answer is (or announces itself as) larger than the cap.
    #[error("the answer is larger than {limit} bytes; refused")]
    TooLarge { limit: usize },
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// The body of `resp`, at most `limit` bytes; a larger one is an error, found as soon as the
/// `Content-Length` or the bytes received pass the cap (the rest is never read).
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// [`read_capped`] as text (invalid UTF-8 replaced, as `Response::text` does).
pub async fn read_text_capped(resp: reqwest::Response, limit: usize) -> Result<String, BodyError> {
    let bytes = read_capped(resp, limit).await?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// The start of an error answer, at most [`ERROR_BODY_MAX`] bytes, for a message; whatever
/// cannot be read is left out.
pub async fn read_error_text(mut resp: reqwest::Response) -> String {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = ERROR_BODY_MAX - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= ERROR_BODY_MAX {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
