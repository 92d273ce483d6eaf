//! Jenkins emulator: the REST subset the provisioner and python-jenkins use, the real queue
//! `why` rules, the `/wsagents/` inbound-agent handshake, and a scheduler that runs queued
//! builds on matching online executors.
//!
//! Finished builds are kept per job (the newest 1000) and shown as Jenkins shows them:
//! `/job/<name>/api/json` lists `builds` (and `allBuilds` when a `tree` names it), and the
//! root's `jobs` carry them when a `tree` selects them. Each finished build has the Metrics
//! plugin's `TimeInQueueAction`, whose `queuingDurationMillis` is the wait the scheduler
//! measured (see `history`).
//!
//! Start it with [`JenkinsSim::start`] (tests, demo) or [`serve`] (the `sim` command). Builds
//! are queued through `/job/<name>/build` (python-jenkins' `build_job`) or the admin API:
//!
//! | admin endpoint (no auth, loopback only) | body / answer |
//! |---|---|
//! | `POST /_admin/jobs` | [`JobSpec`] JSON: defines a job |
//! | `POST /_admin/enqueue` | [`EnqueueRequest`] JSON → `{"ids": [...]}` |
//! | `GET /_admin/stats` | [`SimStats`] JSON (finished builds with queue waits) |
//! | `GET /_admin/nodes` | a JSON list of [`SimNodeView`] |

mod feed;
mod history;
mod jnlp_jars;
mod routes;
mod state;
pub mod tree;
mod wsagent;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use jnlp_jars::default_agent_jar;
pub use wsagent::InProcessAgent;
pub use state::{CompletedBuild, EnqueueRequest, JobKind, JobSpec, SimNodeView, SimStats};

use ecsp_jenkins::client::encode_segment;

/// A user the emulator accepts.
#[derive(Clone, Debug)]
pub struct SimUser {
    /// User name.
    pub name: String,
    /// API token (Basic auth secret; POSTs need no crumb).
    pub token: String,
    /// Password (Basic auth secret; POSTs need a crumb from the same session).
    pub password: Option<String>,
    /// Admins may do everything; others only read (Overall/Read).
    pub admin: bool,
}

/// How to start the emulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Users accepted.
    pub users: Vec<SimUser>,
    /// Sent as `X-Jenkins`.
    pub version: String,
    /// Executors of the built-in node (the recommended set-up has none).
    pub built_in_executors: u32,
    /// The agent.jar served at `/jnlpJars/agent.jar`; `None`: [`default_agent_jar`] of
    /// `version`.
    pub agent_jar: Option<Vec<u8>>,
}

impl SimConfig {
    /// One admin user with the given API token, listening on `bind` (the `sim` command).
    pub fn with_admin(bind: SocketAddr, user: impl Into<String>, token: impl Into<String>) -> Self {
        SimConfig {
            bind,
            users: vec![SimUser {
                name: user.into(),
                token: token.into(),
                password: None,
                admin: true,
            }],
            ..SimConfig::default()
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            users: vec![SimUser {
                name: "admin".into(),
                token: random_hex(17),
                password: None,
                admin: true,
            }],
            version: "2.541".into(),
            built_in_executors: 0,
            agent_jar: None,
        }
    }
}

pub(crate) struct Shared {
    pub state: Mutex<state::State>,
    /// Wakes the scheduler when the queue or the nodes change.
    pub wake: Notify,
    pub users: Vec<SimUser>,
    pub version: String,
    /// Fault: node deletions answer only after this many milliseconds.
    pub delete_delay_ms: std::sync::atomic::AtomicU64,
    /// What `/jnlpJars/agent.jar` serves.
    pub agent_jar: Mutex<jnlp_jars::JarFile>,
    /// `/jnlpJars/...` answers with the jar (200) and without it (304).
    pub jar_downloads: AtomicU64,
    pub jar_not_modified: AtomicU64,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, state::State> {
        // A panic while holding the lock leaves consistent-enough data for an emulator.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// The agent side of a running emulator, for in-process agents (`sim::agent_host`).
#[derive(Clone)]
pub struct AgentPort {
    shared: Arc<Shared>,
}

impl AgentPort {
    /// The agent.jar served now.
    pub fn agent_jar(&self) -> Arc<[u8]> {
        self.shared.agent_jar.lock().unwrap_or_else(|p| p.into_inner()).bytes.clone()
    }
    /// Connects an inbound agent without a socket, after the handshake's checks.
    pub fn connect_in_process(&self, name: &str, secret: &str) -> Result<wsagent::InProcessAgent, String> {
        wsagent::connect_in_process(&self.shared, name, secret)
    }
}

/// A running emulator. Dropping it stops the server.
pub struct JenkinsSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    base_url: String,
    user: SimUser,
    tasks: Vec<JoinHandle<()>>,
}

impl JenkinsSim {
    /// Binds, starts the HTTP server and the scheduler, and returns at once.
    pub async fn start(config: SimConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}/");
        let user =
            config.users.first().cloned().ok_or_else(|| {
                std::io::Error::other("the Jenkins emulator needs at least one user")
            })?;
        let mut key = [0u8; 32];
        key.iter_mut().for_each(|b| *b = rand::random());
        let shared = Arc::new(Shared {
            state: Mutex::new(state::State::new(
                base_url.clone(),
                key,
                config.built_in_executors,
            )),
            wake: Notify::new(),
            users: config.users,
            agent_jar: Mutex::new(jnlp_jars::JarFile::new(
                config.agent_jar.unwrap_or_else(|| default_agent_jar(&config.version)).into(),
                None,
            )),
            jar_downloads: AtomicU64::new(0),
            jar_not_modified: AtomicU64::new(0),
            version: config.version,
            delete_delay_ms: 0.into(),
        });
        let app = routes::router(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "Jenkins emulator stopped");
            }
        });
        let scheduler = tokio::spawn(run_scheduler(shared.clone()));
        tracing::info!(url = %base_url, "Jenkins emulator listening");
        Ok(JenkinsSim {
            shared,
            addr,
            base_url,
            user,
            tasks: vec![server, scheduler],
        })
    }

    /// Root URL, ending with `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The first configured user's name.
    pub fn user(&self) -> &str {
        &self.user.name
    }
    /// The first configured user's API token.
    pub fn token(&self) -> &str {
        &self.user.token
    }
    /// The agent.jar served now.
    pub fn agent_jar(&self) -> Arc<[u8]> {
        self.shared.agent_jar.lock().unwrap_or_else(|p| p.into_inner()).bytes.clone()
    }
    /// Serves another agent.jar from now on (as after a controller upgrade), with a later
    /// `Last-Modified`.
    pub fn set_agent_jar(&self, bytes: Vec<u8>) {
        let mut jar = self.shared.agent_jar.lock().unwrap_or_else(|p| p.into_inner());
        *jar = jnlp_jars::JarFile::new(bytes.into(), Some(jar.modified_secs));
    }
    /// How often `/jnlpJars/...` sent the jar (200), and answered 304 Not Modified.
    pub fn agent_jar_requests(&self) -> (u64, u64) {
        (self.shared.jar_downloads.load(Ordering::Relaxed), self.shared.jar_not_modified.load(Ordering::Relaxed))
    }
    /// Defines (or redefines) a job.
    pub fn define_job(&self, spec: JobSpec) {
        self.shared.lock().define_job(spec);
    }
    /// Queues builds directly; returns their queue ids.
    pub fn enqueue(&self, req: EnqueueRequest) -> Result<Vec<u64>, String> {
        let ids = self.shared.lock().enqueue(&req)?;
        self.shared.wake.notify_one();
        Ok(ids)
    }
    /// Finished builds and counters.
    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats()
    }
    /// All agent nodes.
    pub fn nodes(&self) -> Vec<SimNodeView> {
        self.shared.lock().node_views()
    }
    /// The secret an inbound agent of that name must present.
    pub fn agent_secret(&self, node: &str) -> String {
        self.shared.lock().secret_of(node)
    }
    /// What the benchmark's in-process agents (`sim::agent_host`) connect through.
    pub fn handle(&self) -> AgentPort {
        AgentPort { shared: self.shared.clone() }
    }
    /// The `/computer/<name>/` URL of a node.
    pub fn node_url(&self, node: &str) -> String {
        format!("{}computer/{}/", self.base_url, encode_segment(node))
    }
    /// Waits until `pred` holds for the node list, or the timeout passes.
    pub async fn wait_for_nodes(
        &self,
        timeout: Duration,
        pred: impl Fn(&[SimNodeView]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(&self.nodes()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    /// Fault: node deletions (`doDelete`) answer only after `delay`, as on a busy controller.
    /// It widens the window of a drain between "offline" and "delete", so crash tests can
    /// kill the provisioner inside it.
    pub fn set_delete_delay(&self, delay: Duration) {
        self.shared.delete_delay_ms.store(delay.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Expires every web session, so that crumbs issued so far stop working (as after a
    /// controller restart); API tokens are unaffected.
    pub fn expire_sessions(&self) {
        self.shared.lock().session_epoch += 1;
    }
    /// Stops the server and the scheduler.
    pub fn stop(mut self) {
        self.abort();
    }
    fn abort(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        // Hang up connected agents so that they notice.
        for n in self.shared.lock().nodes.values_mut() {
            if let Some(c) = n.connection.take() {
                let _ = c.kick.send(true);
            }
        }
    }
}

impl Drop for JenkinsSim {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Runs the emulator until `shutdown` completes (the `sim` command). Logs the URL and user.
pub async fn serve(
    config: SimConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let sim = JenkinsSim::start(config).await?;
    tracing::info!(url = %sim.base_url(), user = %sim.user(), "Jenkins emulator ready (API token not logged; see the configuration)");
    shutdown.await;
    sim.stop();
    Ok(())
}

async fn run_scheduler(shared: Arc<Shared>) {
    loop {
        let next_end = shared.lock().step(crate::now_ms());
        // Sleep until the next build ends, or something changes; never longer than 250 ms.
        let wait = next_end.map_or(250, |end| end.saturating_sub(crate::now_ms()).clamp(1, 250));
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn config() -> SimConfig {
        let admin = SimUser {
            name: "admin".into(),
            token: "t0k".into(),
            password: Some("pw".into()),
            admin: true,
        };
        SimConfig {
            users: vec![admin],
            ..SimConfig::default()
        }
    }

    #[tokio::test]
    async fn auth_crumbs_tree_and_admin_api_over_http() {
        let sim = JenkinsSim::start(config()).await.unwrap();
        let http = reqwest::Client::new();
        let url = |p: &str| format!("{}{p}", sim.base_url());

        // Anonymous: 403, yet the X-Jenkins header is there. Wrong token: 401.
        let r = http.get(url("api/json")).send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["X-Jenkins"], "2.541");
        assert_eq!(
            http.get(url("api/json"))
                .basic_auth("admin", Some("bad"))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );

        // Password POSTs need a crumb from the same session; token POSTs do not.
        let post = |path: &str| http.post(url(path)).basic_auth("admin", Some("pw"));
        let r = post("job/none/build").send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("No valid crumb"));
        let r = http
            .get(url("crumbIssuer/api/json"))
            .basic_auth("admin", Some("pw"))
            .send()
            .await
            .unwrap();
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let crumb: Value = r.json().await.unwrap();
        let r = post("job/none/build")
            .header("Jenkins-Crumb", crumb["crumb"].as_str().unwrap())
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "past the crumb check, the job is unknown");
        let r = http
            .post(url("job/none/build"))
            .basic_auth("admin", Some("t0k"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);

        // Admin API: enqueue, then the queue shows it; `tree` trims the answer.
        let r = http
            .post(url("_admin/enqueue"))
            .json(&json!({"label": "linux && docker", "kind": "pipeline", "count": 2}))
            .send()
            .await
            .unwrap();
        let ids: Value = r.json().await.unwrap();
        assert_eq!(ids["ids"].as_array().unwrap().len(), 2);
        let r = http
            .post(url("_admin/enqueue"))
            .json(&json!({"label": "a &&"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let q: Value = http
            .get(url("queue/api/json?tree=items[id,why]"))
            .basic_auth("admin", Some("t0k"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let item = &q["items"][0];
        assert_eq!(
            item.as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>(),
            vec!["_class", "id", "why"]
        );
        assert_eq!(item["why"], "Waiting for next available executor");
        let stats: Value = http
            .get(url("_admin/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stats["queued"], 2);
    }

    #[tokio::test]
    async fn build_history_over_http_honours_tree() {
        let sim = JenkinsSim::start(config()).await.unwrap();
        let node = state::node_from_form("l1", &json!({"remoteFS": "/w", "labelString": "linux", "numExecutors": 1})).unwrap();
        sim.shared.lock().nodes.insert("l1".into(), node);
        let agent = sim.handle().connect_in_process("l1", &sim.agent_secret("l1")).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(agent.hold(async move { stopped.await.unwrap_or(()) }));
        sim.define_job(JobSpec { name: "fs".into(), kind: JobKind::Freestyle, label: Some("linux".into()), duration_ms: 50 });
        let ids = sim.enqueue(EnqueueRequest { job: Some("fs".into()), label: Some("linux".into()), duration_ms: 50, count: Some(2), ..Default::default() }).unwrap();
        assert!(sim.wait_for_nodes(Duration::from_secs(5), |_| sim.stats().completed.len() == 2).await);
        let http = reqwest::Client::new();
        let get = |p: &str| http.get(format!("{}{p}", sim.base_url())).basic_auth("admin", Some("t0k")).send();

        let tree = "jobs[name,labelExpression,builds[number,queueId,builtOn,actions[queuingDurationMillis]]{0,1}]";
        let root: Value = get(&format!("api/json?tree={tree}")).await.unwrap().json().await.unwrap();
        let waits: Vec<u64> = sim.stats().completed.iter().map(|c| c.wait_ms).collect();
        assert_eq!(
            root,
            json!({"_class": "hudson.model.Hudson", "jobs": [{"_class": "hudson.model.FreeStyleProject", "name": "fs", "labelExpression": "linux",
                "builds": [{"_class": "hudson.model.FreeStyleBuild", "number": 2, "queueId": ids[1], "builtOn": "l1",
                    "actions": [{"_class": "hudson.model.CauseAction"}, {"_class": "jenkins.metrics.impl.TimeInQueueAction", "queuingDurationMillis": waits[1]}]}]}]})
        );
        assert!(waits[1] >= 40, "the second build waited for the first: {waits:?}");
        // Without a tree the root lists jobs without builds; a job shows `builds`, not `allBuilds`.
        let root: Value = get("api/json").await.unwrap().json().await.unwrap();
        assert!(root["jobs"][0].get("builds").is_none(), "{root}");
        let job: Value = get("job/fs/api/json").await.unwrap().json().await.unwrap();
        assert_eq!(job["builds"].as_array().unwrap().len(), 2);
        assert!(job.get("allBuilds").is_none());
        let job: Value = get("job/fs/api/json?tree=allBuilds[number,result]").await.unwrap().json().await.unwrap();
        assert_eq!(job["allBuilds"], json!([{"_class": "hudson.model.FreeStyleBuild", "number": 2, "result": "SUCCESS"}, {"_class": "hudson.model.FreeStyleBuild", "number": 1, "result": "SUCCESS"}]));
        assert_eq!(get("job/nope/api/json?tree=builds[number]").await.unwrap().status(), 404);
        let _ = stop.send(());
    }
}
