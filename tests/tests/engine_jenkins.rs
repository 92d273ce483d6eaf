//! The engine's Jenkins port (`JenkinsAdapter`) against the Jenkins emulator, through a proxy
//! that records every request so the tests can count what one cycle costs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::jenkins::{client, eventually, now_ms, start_sim};
use ecs_provisioner::config::Config;
use ecs_provisioner::adapters::jenkins::JenkinsAdapter;
use ecs_provisioner::engine::model::AgentNode;
use ecs_provisioner::engine::ports::{JenkinsPort, NodeRegistration};
use ecs_provisioner::jenkins::client::{describe_instance, describe_owned_instance};
use ecs_provisioner::jenkins::{InboundAgentSpec, NodeMode};
use ecs_provisioner::sim::agent::{AgentArgs, run_until};
use ecs_provisioner::sim::jenkins::{EnqueueRequest, JenkinsSim, JobKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The bytes a client sent on one connection.
type Log = Arc<Mutex<Vec<u8>>>;

/// A TCP proxy in front of the emulator that keeps every byte clients send, to list the HTTP
/// requests they made.
struct Recorder {
    url: String,
    /// Client-to-server bytes, one buffer per connection.
    streams: Arc<Mutex<Vec<Log>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let streams: Arc<Mutex<Vec<Log>>> = Arc::default();
        let all = streams.clone();
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let log = Log::default();
                all.lock().unwrap().push(log.clone());
                tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut up_r, mut up_w) = up.into_split();
                    let (mut down_r, mut down_w) = down.into_split();
                    let answers = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut up_r, &mut down_w).await;
                    });
                    let mut buf = [0u8; 8192];
                    // Logged before it is forwarded: once a client has its answer, the
                    // request is in the log.
                    while let Ok(n @ 1..) = down_r.read(&mut buf).await {
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                        if up_w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = up_w.shutdown().await;
                    let _ = answers.await;
                });
            }
        });
        Recorder { url, streams, task }
    }

    /// `METHOD /path?query` of every request since the last call (bodies are form- or
    /// URL-encoded, so no body line ends like a request line).
    fn take(&self) -> Vec<String> {
        let mut requests = Vec::new();
        for log in self.streams.lock().unwrap().iter() {
            let bytes = std::mem::take(&mut *log.lock().unwrap());
            for line in String::from_utf8_lossy(&bytes).split("\r\n") {
                if let Some(request) = line.strip_suffix(" HTTP/1.1") {
                    requests.push(request.to_owned());
                }
            }
        }
        requests
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn count(requests: &[String], prefix: &str) -> usize {
    requests.iter().filter(|r| r.starts_with(prefix)).count()
}

const LIST_COMPUTERS: &str = "GET /computer/api/json?";
const LIST_QUEUE: &str = "GET /queue/api/json?";

/// A configuration for `url` whose API token is in a file under `dir`.
fn config(url: &str, token: &str, dir: &tempfile::TempDir) -> Config {
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let text = format!(
        r#"
controller-id = "ci-prod"

[cloud]
region = "cn-hangzhou"
vpc-id = "vpc-1"
security-group-id = "sg-1"
image-id = "m-1"
key-pair-name = "jenkins"

[jenkins]
url = "{url}"
user = "admin"
token-file = {token_file:?}

[[template]]
name = "linux"
labels = ["linux", "docker"]
mode = "exclusive"
executors = 2
remote-fs = "/home/jenkins/agent"
max-nodes = 10

[[template]]
name = "win"
labels = ["windows"]
mode = "exclusive"
max-nodes = 10
"#
    );
    Config::parse(&text).unwrap()
}

/// The emulator, a recording proxy in front of it and an adapter talking through the proxy.
async fn setup() -> (JenkinsSim, Recorder, JenkinsAdapter, tempfile::TempDir) {
    let sim = start_sim().await;
    let recorder = Recorder::start(sim.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let adapter = JenkinsAdapter::from_config(&config(&recorder.url, sim.token(), &dir)).unwrap();
    (sim, recorder, adapter, dir)
}

fn enqueue(sim: &JenkinsSim, kind: JobKind, label: &str, duration_ms: u64) -> u64 {
    let req = EnqueueRequest {
        kind,
        label: Some(label.into()),
        duration_ms,
        ..Default::default()
    };
    sim.enqueue(req).unwrap()[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_reads_once_creates_anchors_once_and_maps_demand() {
    let (sim, recorder, adapter, _dir) = setup().await;
    recorder.take();

    // No node at all: a Pipeline item's label is unknowable, a freestyle one's is not.
    let free_linux = enqueue(&sim, JobKind::Freestyle, "linux && docker", 60_000);
    let pipe_win = enqueue(&sim, JobKind::Pipeline, "windows", 60_000);
    let view = adapter.observe(now_ms()).await.unwrap();
    let requests = recorder.take();
    assert_eq!(
        (
            count(&requests, LIST_COMPUTERS),
            count(&requests, LIST_QUEUE)
        ),
        (1, 1),
        "{requests:#?}"
    );
    assert_eq!(
        count(&requests, "POST /computer/doCreateItem"),
        2,
        "{requests:#?}"
    );
    let ids = |v: &ecs_provisioner::engine::ports::JenkinsView, t: usize| {
        v.queues[t]
            .items
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (
            view.queues[0].template.as_str(),
            view.queues[1].template.as_str()
        ),
        ("linux", "win")
    );
    assert_eq!(
        (ids(&view, 0), ids(&view, 1), view.unmatched),
        (vec![free_linux], vec![], 1)
    );
    assert!(view.agents.is_empty());
    let anchors: Vec<_> = sim
        .nodes()
        .into_iter()
        .filter(|n| n.temporarily_offline && !n.connected)
        .map(|n| n.name)
        .collect();
    assert_eq!(anchors, vec!["linux-anchor", "win-anchor"]);

    // With the anchors, Jenkins names the labels. The next cycle costs exactly two reads.
    let pipe_linux = enqueue(&sim, JobKind::Pipeline, "linux", 60_000);
    let view = adapter.observe(now_ms()).await.unwrap();
    let mut requests = recorder.take();
    requests.sort();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(
        requests[0].starts_with(LIST_COMPUTERS) && requests[1].starts_with(LIST_QUEUE),
        "{requests:#?}"
    );
    assert_eq!(
        (ids(&view, 0), ids(&view, 1), view.unmatched),
        (vec![free_linux, pipe_linux], vec![pipe_win], 0)
    );
    let waits: Vec<u64> = view.queues[0].items.iter().map(|(_, w)| *w).collect();
    assert!(waits[0] >= waits[1], "oldest first: {waits:?}");
    assert_eq!(sim.nodes().len(), 2, "nothing re-created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_lifecycle_through_the_port() {
    let (sim, _recorder, adapter, _dir) = setup().await;
    let c = client(&sim);
    let foreign = |name: &str, description: String| InboundAgentSpec {
        name: name.into(),
        description,
        num_executors: 1,
        remote_fs: "/tmp".into(),
        labels: vec!["linux".into()],
        mode: NodeMode::Exclusive,
    };
    // Same name pattern, but another provisioner's node, and one that names no controller.
    c.create_inbound_agent(&foreign(
        "linux-i-other",
        describe_owned_instance("ci-other", "linux", "i-other", "z", "t"),
    ))
    .await
    .unwrap();
    c.create_inbound_agent(&foreign(
        "linux-i-legacy",
        describe_instance("linux", "i-legacy", "z", "t"),
    ))
    .await
    .unwrap();

    let name = "linux-i-0001";
    let reg = NodeRegistration {
        name: name.into(),
        template: "linux".into(),
        instance_id: "i-0001".into(),
        zone: "cn-hangzhou-h".into(),
        instance_type: "ecs.g7.large".into(),
    };
    adapter.create_node(&reg).await.unwrap();
    adapter
        .create_node(&reg)
        .await
        .expect("creating an existing node succeeds");
    let bad = NodeRegistration {
        name: "linux-x".into(),
        ..reg.clone()
    };
    let e = format!("{:#}", adapter.create_node(&bad).await.unwrap_err());
    assert!(e.contains("linux-x"), "{e}");
    let node = sim.nodes().into_iter().find(|n| n.name == name).unwrap();
    assert_eq!(
        (node.labels.clone(), node.num_executors, node.mode),
        (
            vec!["docker".into(), "linux".into()],
            2,
            NodeMode::Exclusive
        )
    );
    assert!(
        node.web_socket
            && node.description.contains("ci-prod")
            && node.description.contains("i-0001"),
        "{node:?}"
    );

    let agent_of = |view: ecs_provisioner::engine::ports::JenkinsView| -> Option<AgentNode> {
        let names: Vec<&str> = view.agents.iter().map(|a| a.name.as_str()).collect();
        assert!(
            names.is_empty() || names == [name],
            "only our node is an agent: {names:?}"
        );
        view.agents.into_iter().next()
    };
    let a = agent_of(adapter.observe(now_ms()).await.unwrap()).unwrap();
    assert_eq!((a.online, a.executors, a.idle_ms), (false, 2, 0));

    // The agent connects with the secret the port reads.
    let secret = adapter.agent_secret(name).await.unwrap();
    assert_eq!(secret, sim.agent_secret(name));
    let e = format!(
        "{:#}",
        adapter.agent_secret("linux-i-none").await.unwrap_err()
    );
    assert!(e.contains("linux-i-none"), "{e}");
    let args = [
        "-url",
        sim.base_url(),
        "-name",
        name,
        "-secret",
        &secret,
        "-webSocket",
    ];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut args = AgentArgs::parse(args.iter().map(|s| s.to_string())).unwrap();
    args.jar = Some(e2e::jenkins::controller_jar(
        &sim,
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
    ));
    let agent = tokio::spawn(run_until(args, async move {
        let _ = stopped.await;
    }));
    let a = eventually(Duration::from_secs(10), "the agent online", || async {
        agent_of(adapter.observe(now_ms()).await.unwrap()).filter(|a| a.online)
    })
    .await;
    assert_eq!(
        (a.busy_executors, a.uses, a.temporarily_offline),
        (0, 0, false)
    );
    let idle = eventually(Duration::from_secs(5), "idle time to grow", || async {
        agent_of(adapter.observe(now_ms()).await.unwrap()).filter(|a| a.idle_ms >= 100)
    })
    .await;
    assert!(idle.online && idle.busy_executors == 0);

    // A build runs on it: busy, used once, not idle.
    enqueue(&sim, JobKind::Pipeline, "linux", 800);
    let a = eventually(Duration::from_secs(10), "the build to start", || async {
        agent_of(adapter.observe(now_ms()).await.unwrap()).filter(|a| a.busy_executors == 1)
    })
    .await;
    assert_eq!((a.uses, a.idle_ms), (1, 0));
    assert!(!adapter.is_idle(name).await.unwrap());
    eventually(Duration::from_secs(10), "the build to end", || async {
        adapter.is_idle(name).await.unwrap().then_some(())
    })
    .await;
    let a = agent_of(adapter.observe(now_ms()).await.unwrap()).unwrap();
    assert_eq!((a.online, a.busy_executors, a.uses), (true, 0, 1));

    // Draining: offline (twice is fine), still connected; its idle time runs on (a node
    // marked offline still costs money, and an administrator's mark must not keep it forever);
    // then back.
    for _ in 0..2 {
        adapter
            .set_offline(name, true, "ecs-provisioner: removing (test)")
            .await
            .unwrap();
    }
    assert!(
        sim.nodes()
            .iter()
            .any(|n| n.name == name && n.temporarily_offline && n.connected)
    );
    let before = a.idle_since_ms;
    let a = agent_of(adapter.observe(now_ms()).await.unwrap()).unwrap();
    assert_eq!(
        (a.online, a.temporarily_offline, a.idle_since_ms),
        (true, true, before)
    );
    assert!(before.is_some(), "idle since the build ended");
    for _ in 0..2 {
        adapter.set_offline(name, false, "").await.unwrap();
    }
    assert!(
        sim.nodes()
            .iter()
            .any(|n| n.name == name && !n.temporarily_offline)
    );

    // Deleting twice is fine; a missing node is idle and no longer an agent.
    adapter.delete_node(name).await.unwrap();
    adapter.delete_node(name).await.unwrap();
    assert!(adapter.is_idle(name).await.unwrap());
    assert_eq!(agent_of(adapter.observe(now_ms()).await.unwrap()), None);
    let e = format!(
        "{:#}",
        adapter.set_offline(name, true, "x").await.unwrap_err()
    );
    assert!(e.contains(name), "{e}");
    // The other nodes were left alone.
    assert!(
        ["linux-i-other", "linux-i-legacy"]
            .iter()
            .all(|n| sim.nodes().iter().any(|v| v.name == *n))
    );

    drop(stop);
    agent.await.unwrap().unwrap();
}
