//! A hostile ECS endpoint: a small HTTP proxy in front of the ECS emulator that answers some
//! requests itself (forged error codes, endless pages, malformed ids, huge bodies) and passes
//! the rest through unchanged. The client's signature covers only the parameters, so a
//! forwarded request still verifies at the emulator.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// The parameters of one request (query and form together).
pub type Params = BTreeMap<String, String>;

/// What the proxy does with one request.
pub enum Step {
    /// Pass it to the emulator and its answer back.
    Forward,
    /// Answer with this status and JSON body instead.
    Reply(u16, String),
    /// Pass it on, then answer with what the function makes of the emulator's answer.
    Rewrite(Box<dyn FnOnce(u16, String) -> (u16, String) + Send>),
    /// Answer 200 with this many bytes, streamed without a `Content-Length`.
    Endless(usize),
}

type Rule = dyn Fn(&Params) -> Step + Send + Sync;

struct Shared {
    upstream: Mutex<Option<String>>,
    rule: Box<Rule>,
    seen: Mutex<Vec<Params>>,
    http: reqwest::Client,
}

/// A running hostile proxy.
pub struct HostileEcs {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl HostileEcs {
    /// Listens on a free loopback port; requests fail until [`HostileEcs::set_upstream`].
    pub async fn start(rule: impl Fn(&Params) -> Step + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            upstream: Mutex::new(None),
            rule: Box::new(rule),
            seen: Mutex::new(Vec::new()),
            http: reqwest::Client::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback({
            let shared = shared.clone();
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let shared = shared.clone();
                async move { handle(&shared, method, uri, headers, body).await }
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HostileEcs { addr, shared, task }
    }

    /// The URL to configure as `[cloud] endpoint`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where forwarded requests go (the emulator's base URL).
    pub fn set_upstream(&self, url: &str) {
        *self.shared.upstream.lock().unwrap() = Some(url.trim_end_matches('/').to_owned());
    }

    /// The parameters of every request with this `Action`, in order.
    pub fn requests(&self, action: &str) -> Vec<Params> {
        self.shared.seen.lock().unwrap().iter().filter(|p| p.get("Action").map(String::as_str) == Some(action)).cloned().collect()
    }
}

impl Drop for HostileEcs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(shared: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut params: Params = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    params.extend(form_urlencoded::parse(&body).into_owned());
    shared.seen.lock().unwrap().push(params.clone());
    let step = (shared.rule)(&params);
    let forward = || async {
        let upstream = shared.upstream.lock().unwrap().clone().expect("the proxy's upstream is not set");
        let mut req = shared.http.request(method.clone(), format!("{upstream}{uri}"));
        if let Some(ct) = headers.get("content-type") {
            req = req.header("content-type", ct.clone());
        }
        let res = req.body(body.clone()).send().await.expect("the emulator answers");
        let status = res.status().as_u16();
        (status, res.text().await.unwrap_or_default())
    };
    let (status, text) = match step {
        Step::Forward => forward().await,
        Step::Reply(status, text) => (status, text),
        Step::Rewrite(f) => {
            let (status, text) = forward().await;
            f(status, text)
        }
        Step::Endless(n) => {
            let chunk = Bytes::from(vec![b' '; 64 << 10]);
            let chunks = n.div_ceil(chunk.len());
            let stream = futures::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
            return Response::builder().status(200).body(Body::from_stream(stream)).unwrap();
        }
    };
    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], text).into_response()
}
