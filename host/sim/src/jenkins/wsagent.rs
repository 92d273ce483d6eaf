//! `/wsagents/`: the WebSocket inbound-agent handshake (`jenkins.agents.WebSocketAgents`).
//!
//! Checks `Node-Name`, `Secret-Key` and `X-Remoting-Capability` (400 if one is missing),
//! 400 "no such agent", 403 for a wrong secret, then upgrades. The node is online while the
//! socket stays open; the remoting protocol itself is not spoken (pings are answered).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::state::Connection;
use crate::now_ms;
use super::{Shared, random_hex};

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Equal-time comparison of secrets.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub(crate) async fn handshake(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let (Some(name), Some(secret), Some(_capability)) = (
        header(&headers, "Node-Name"),
        header(&headers, "Secret-Key"),
        header(&headers, "X-Remoting-Capability"),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            "This endpoint is only for use from agent.jar in WebSocket mode",
        )
            .into_response();
    };
    let name = name.to_string();
    {
        let st = s.lock();
        let Some(node) = st.nodes.get(&name) else {
            return (StatusCode::BAD_REQUEST, "no such agent").into_response();
        };
        if !same_secret(secret, &st.secret_of(&name)) {
            return StatusCode::FORBIDDEN.into_response();
        }
        if !node.is_inbound() {
            return (
                StatusCode::BAD_REQUEST,
                format!("{name} is not an inbound agent"),
            )
                .into_response();
        }
        // A live connection is only replaced by the peer holding its cookie (a reconnect).
        if let Some(c) = &node.connection
            && header(&headers, "Connection-Cookie") != Some(c.cookie.as_str())
        {
            return (
                StatusCode::CONFLICT,
                format!(
                    "{name} is already connected to this controller. Rejecting this connection."
                ),
            )
                .into_response();
        }
    }
    let Ok(ws) = ws else {
        return (
            StatusCode::BAD_REQUEST,
            "expected a WebSocket upgrade request",
        )
            .into_response();
    };
    let cookie = random_hex(16);
    let session_cookie = cookie.clone();
    let shared = s.clone();
    let mut resp = ws
        .on_upgrade(move |socket| serve_agent(shared, name, session_cookie, socket))
        .into_response();
    let h = resp.headers_mut();
    h.insert(
        "X-Remoting-Capability",
        HeaderValue::from_static("rO0ABXNyABpodWRzb24ucmVtb3RpbmcuQ2FwYWJpbGl0eQ=="),
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.insert("Connection-Cookie", v);
    }
    resp
}

/// Holds the node online while the socket is open.
async fn serve_agent(s: Arc<Shared>, name: String, cookie: String, mut socket: WebSocket) {
    let Some((id, mut kicked)) = attach(&s, &name, cookie) else { return };
    tracing::debug!(node = %name, "emulated agent connected");
    let mut keepalive = tokio::time::interval(Duration::from_secs(30));
    keepalive.tick().await;
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Ping(p))) => { let _ = socket.send(Message::Pong(p)).await; }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = kicked.changed() => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
            _ = keepalive.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() { break; }
            }
        }
    }
    detach(&s, &name, id, "Connection was broken: the agent's WebSocket closed");
    tracing::debug!(node = %name, "emulated agent disconnected");
}

/// Marks the node connected (kicking an older connection out); returns the connection's id
/// and what tells it it was kicked. `None` if the node is gone.
fn attach(s: &Shared, name: &str, cookie: String) -> Option<(u64, tokio::sync::watch::Receiver<bool>)> {
    let (kick, kicked) = tokio::sync::watch::channel(false);
    let id = {
        let mut st = s.lock();
        let id = st.next_conn_id;
        st.next_conn_id += 1;
        let node = st.nodes.get_mut(name)?;
        if let Some(old) = node.connection.replace(Connection { id, cookie, kick }) {
            let _ = old.kick.send(true);
        }
        node.dropped = None;
        id
    };
    s.wake.notify_one();
    Some((id, kicked))
}

/// The connection `id` ended: the node drops (its builds abort) unless a newer one replaced it.
fn detach(s: &Shared, name: &str, id: u64, why: &str) {
    let mut st = s.lock();
    let mine = st
        .nodes
        .get(name)
        .and_then(|n| n.connection.as_ref())
        .is_some_and(|c| c.id == id);
    if mine {
        st.abort_builds(name, now_ms());
        if let Some(n) = st.nodes.get_mut(name) {
            n.connection = None;
            n.dropped = Some(why.to_owned());
        }
    }
    drop(st);
    s.wake.notify_one();
}

/// An agent connected without a socket (the benchmark's in-process agents, see
/// `sim::agent_host`): online until [`InProcessAgent::hold`]'s future ends or a newer
/// connection replaces it.
pub struct InProcessAgent {
    shared: Arc<Shared>,
    name: String,
    id: u64,
    kicked: tokio::sync::watch::Receiver<bool>,
}

/// The checks of the WebSocket handshake (node exists, secret, inbound, not connected), then
/// the node is connected.
pub(crate) fn connect_in_process(s: &Arc<Shared>, name: &str, secret: &str) -> Result<InProcessAgent, String> {
    {
        let st = s.lock();
        let node = st.nodes.get(name).ok_or_else(|| format!("no such agent: {name}"))?;
        if !same_secret(secret, &st.secret_of(name)) {
            return Err(format!("wrong secret for {name}"));
        }
        if !node.is_inbound() {
            return Err(format!("{name} is not an inbound agent"));
        }
        if node.connection.is_some() {
            return Err(format!("{name} is already connected to this controller"));
        }
    }
    let (id, kicked) = attach(s, name, random_hex(16)).ok_or_else(|| format!("no such agent: {name}"))?;
    Ok(InProcessAgent { shared: s.clone(), name: name.to_owned(), id, kicked })
}

impl InProcessAgent {
    /// Keeps the node online until `until` completes or the connection is replaced.
    pub async fn hold(mut self, until: impl std::future::Future<Output = ()>) {
        tokio::select! {
            _ = until => {}
            _ = self.kicked.changed() => {}
        }
        detach(&self.shared, &self.name, self.id, "Connection was broken: the in-process agent's process ended");
    }
}
