//! Jenkins: our client, python-jenkins and the emulated agent against the Jenkins emulator.

use std::time::Duration;

use e2e::jenkins::{
    client, controller_jar, eventually, now_ms, python, python_dir, start_sim, templates,
};
use ecs_provisioner::jenkins::{
    ActivityTracker, Changed, Credentials, InboundAgentSpec, JenkinsClient, JenkinsError, NodeMode,
    compute_demand, describe_instance, ensure_anchors,
};
use ecs_provisioner::sim::agent::{AgentArgs, AgentError, connect_once, run_until};
use ecs_provisioner::sim::jenkins::{
    EnqueueRequest, JenkinsSim, JobKind, JobSpec, SimConfig, SimUser,
};

fn agent_spec(name: &str, labels: &[&str]) -> InboundAgentSpec {
    InboundAgentSpec {
        name: name.into(),
        description: describe_instance("linux", "i-001", "cn-hangzhou-h", "ecs.g7.large"),
        num_executors: 1,
        remote_fs: "/home/jenkins/agent".into(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        mode: NodeMode::Normal,
    }
}

fn agent_args(sim: &JenkinsSim, name: &str, secret: &str) -> AgentArgs {
    let args = [
        "-url",
        sim.base_url(),
        "-name",
        name,
        "-secret",
        secret,
        "-webSocket",
    ];
    let mut args = AgentArgs::parse(args.iter().map(|s| s.to_string())).unwrap();
    // The emulated agent runs only from the jar the controller serves.
    args.jar = Some(controller_jar(
        sim,
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
    ));
    args
}

/// Starts an emulated agent in the background; dropping the sender stops it.
fn spawn_agent(
    args: AgentArgs,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), AgentError>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_until(args, async move {
        let _ = stopped.await;
    }));
    (stop, task)
}

async fn wait_connected(sim: &JenkinsSim, name: &str, connected: bool) {
    let ok = sim
        .wait_for_nodes(Duration::from_secs(10), |ns| {
            ns.iter()
                .any(|n| n.name == name && n.connected == connected)
        })
        .await;
    assert!(ok, "node {name} connected={connected} never happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_jenkins_works_against_the_emulator() {
    let py = python();
    let sim = start_sim().await;
    let c = client(&sim);
    sim.define_job(JobSpec {
        name: "py-job".into(),
        kind: JobKind::Freestyle,
        label: Some("linux".into()),
        duration_ms: 100,
    });
    c.create_inbound_agent(&agent_spec("py-online", &["online-only"]))
        .await
        .unwrap();
    let secret = c.agent_secret("py-online").await.unwrap();
    let (stop, agent) = spawn_agent(agent_args(&sim, "py-online", &secret));
    wait_connected(&sim, "py-online", true).await;

    let script = python_dir().join("jenkins_client_check.py");
    let out = tokio::process::Command::new(py)
        .arg(&script)
        .env("JENKINS_URL", sim.base_url())
        .env("JENKINS_USER", sim.user())
        .env("JENKINS_TOKEN", sim.token())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("checks ok"), "{stdout}");
    drop(stop);
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_manages_nodes_against_the_emulator() {
    let sim = start_sim().await;
    let c = client(&sim);
    assert_eq!(c.version().await.unwrap(), "2.541");

    // A name that needs encoding in the URL path.
    let name = "linux i-001+x";
    let spec = agent_spec(name, &["linux", "docker"]);
    c.create_inbound_agent(&spec).await.unwrap();
    assert!(matches!(
        c.create_inbound_agent(&spec).await,
        Err(JenkinsError::AlreadyExists { .. })
    ));
    assert_eq!(c.agent_secret(name).await.unwrap(), sim.agent_secret(name));
    let view = sim.nodes().into_iter().find(|n| n.name == name).unwrap();
    assert!(
        view.web_socket
            && view.description.contains("i-001")
            && view.description.contains("cn-hangzhou-h")
    );

    let comp = c.computer(name).await.unwrap().unwrap();
    assert_eq!(
        comp.labels().collect::<Vec<_>>(),
        vec!["docker", "linux", name]
    );
    assert!(comp.offline && !comp.temporarily_offline && comp.idle);
    assert_eq!(comp.num_executors, 1);

    assert_eq!(
        c.take_offline(name, "draining").await.unwrap(),
        Changed::Yes
    );
    assert_eq!(
        c.take_offline(name, "draining").await.unwrap(),
        Changed::AlreadyThere
    );
    let comp = c.computer(name).await.unwrap().unwrap();
    assert!(comp.temporarily_offline);
    assert_eq!(comp.offline_cause_reason.as_deref(), Some("draining"));
    assert_eq!(c.bring_online(name).await.unwrap(), Changed::Yes);
    assert_eq!(c.bring_online(name).await.unwrap(), Changed::AlreadyThere);

    let all = c.computers().await.unwrap();
    assert!(all.iter().any(|c| c.is_built_in()));
    assert!(all.iter().any(|c| c.display_name == name));

    assert!(c.delete_node(name).await.unwrap());
    assert!(!c.delete_node(name).await.unwrap());
    assert!(c.computer(name).await.unwrap().is_none());
    assert!(matches!(
        c.agent_secret(name).await,
        Err(JenkinsError::NotFound { .. })
    ));
    assert!(matches!(
        c.take_offline(name, "x").await,
        Err(JenkinsError::NotFound { .. })
    ));

    let label = c.label("linux&&docker").await.unwrap();
    assert!(label.offline && label.nodes.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_name_the_missing_permission() {
    let admin = SimUser {
        name: "admin".into(),
        token: "11aa".into(),
        password: Some("pw".into()),
        admin: true,
    };
    let reader = SimUser {
        name: "reader".into(),
        token: "22bb".into(),
        password: None,
        admin: false,
    };
    let sim = JenkinsSim::start(SimConfig {
        users: vec![admin, reader],
        ..SimConfig::default()
    })
    .await
    .unwrap();

    let reader =
        JenkinsClient::new(sim.base_url(), Credentials::api_token("reader", "22bb")).unwrap();
    reader.computers().await.unwrap();
    let err = reader
        .create_inbound_agent(&agent_spec("n1", &["linux"]))
        .await
        .unwrap_err();
    assert!(matches!(err, JenkinsError::Forbidden { .. }), "{err}");
    assert!(err.to_string().contains("Agent/Create"), "{err}");
    let admin_client = JenkinsClient::new(sim.base_url(), Credentials::api_token("admin", "11aa")).unwrap();
    admin_client.create_inbound_agent(&agent_spec("n0", &["linux"])).await.unwrap();
    let err = reader.edit_node_description("n0", |d| format!("{d}!")).await.unwrap_err();
    assert!(matches!(err, JenkinsError::Forbidden { .. }) && err.to_string().contains("Agent/Configure"), "{err}");
    admin_client.edit_node_description("n0", |d| format!("{d}; idle since 7")).await.unwrap();
    let n0 = admin_client.computer("n0").await.unwrap().unwrap();
    assert!(n0.description.as_deref().unwrap().ends_with("; idle since 7"), "{n0:?}");
    assert!(admin_client.delete_node("n0").await.unwrap());

    let wrong =
        JenkinsClient::new(sim.base_url(), Credentials::api_token("admin", "nope")).unwrap();
    let err = wrong.computers().await.unwrap_err();
    assert!(matches!(err, JenkinsError::Unauthorized { .. }), "{err}");

    // A password login works only with a crumb and its session cookie; the client does both.
    let by_password =
        JenkinsClient::new(sim.base_url(), Credentials::password("admin", "pw")).unwrap();
    by_password
        .create_inbound_agent(&agent_spec("n1", &["linux"]))
        .await
        .unwrap();
    // After the session expires the old crumb is refused; the client fetches a new one.
    sim.expire_sessions();
    assert_eq!(
        by_password.take_offline("n1", "x").await.unwrap(),
        Changed::Yes
    );
    assert!(by_password.delete_node("n1").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulated_agent_connects_with_the_right_secret_only() {
    let sim = start_sim().await;
    let c = client(&sim);
    c.create_inbound_agent(&agent_spec("a1", &["linux"]))
        .await
        .unwrap();
    let secret = c.agent_secret("a1").await.unwrap();

    match connect_once(&agent_args(&sim, "a1", "0123abcd"), None).await {
        Err(AgentError::Refused { status: 403, .. }) => {}
        other => panic!("wrong secret must get 403, got {:?}", other.map(|_| ())),
    }
    match connect_once(&agent_args(&sim, "nobody", &secret), None).await {
        Err(AgentError::Refused { status: 400, body }) => {
            assert!(body.contains("no such agent"), "{body}")
        }
        other => panic!("unknown node must get 400, got {:?}", other.map(|_| ())),
    }
    assert!(!sim.nodes()[0].connected);

    // The secret comes from a file, as on a VM: `-secret @file`.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, &secret).unwrap();
    let work = dir.path().join("work");
    // `java -jar agent.jar` finds the jar beside it: in the work directory.
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("agent.jar"), &*sim.agent_jar()).unwrap();
    let args = AgentArgs::parse(
        [
            "-url",
            sim.base_url(),
            "-name",
            "a1",
            "-secret",
            &format!("@{}", file.display()),
            "-webSocket",
            "-workDir",
            work.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string()),
    )
    .unwrap();
    let (stop, agent) = spawn_agent(args);
    wait_connected(&sim, "a1", true).await;
    assert!(work.join("remoting").is_dir());
    assert!(
        !c.computer("a1").await.unwrap().unwrap().offline,
        "online while connected"
    );
    match connect_once(&agent_args(&sim, "a1", &secret), None).await {
        Err(AgentError::Refused { status: 409, .. }) => {}
        other => panic!(
            "a second agent must be refused, got {:?}",
            other.map(|_| ())
        ),
    }

    // Dropped by the controller (node deleted), the agent retries with backoff and comes back
    // once the node exists again.
    assert!(c.delete_node("a1").await.unwrap());
    assert!(
        sim.wait_for_nodes(Duration::from_secs(5), |ns| ns.is_empty())
            .await
    );
    c.create_inbound_agent(&agent_spec("a1", &["linux"]))
        .await
        .unwrap();
    wait_connected(&sim, "a1", true).await;

    drop(stop);
    agent.await.unwrap().unwrap();
    wait_connected(&sim, "a1", false).await;
    assert!(c.computer("a1").await.unwrap().unwrap().offline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_anchors_scheduler_and_activity_end_to_end() {
    let sim = start_sim().await;
    let c = client(&sim);
    let ts = templates();
    let enqueue = |kind, label: &str, duration_ms| {
        sim.enqueue(EnqueueRequest {
            kind,
            label: Some(label.into()),
            duration_ms,
            ..Default::default()
        })
        .unwrap()[0]
    };

    // Zero agents: a Pipeline item's label is unknowable, a freestyle one's is not.
    let pipe_win = enqueue(JobKind::Pipeline, "windows", 100);
    let free_linux = enqueue(JobKind::Freestyle, "linux && docker", 100);
    let d = compute_demand(
        &c.queue().await.unwrap(),
        &c.computers().await.unwrap(),
        &ts,
        now_ms(),
    );
    assert_eq!(
        d.per_template[0]
            .items
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        vec![free_linux]
    );
    assert_eq!(d.unmatched, 1);

    // Anchors make Jenkins name the labels; creating them twice changes nothing.
    let report = ensure_anchors(&c, &ts, &c.computers().await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        report.created,
        vec!["linux-anchor", "big-anchor", "win-anchor"]
    );
    let report = ensure_anchors(&c, &ts, &c.computers().await.unwrap())
        .await
        .unwrap();
    assert_eq!(report.ok.len(), 3);
    assert!(report.created.is_empty() && report.recreated.is_empty());

    let pipe_large = enqueue(JobKind::Pipeline, "linux && large", 100);
    let pipe_linux = enqueue(JobKind::Pipeline, "linux", 100);
    let pipe_gpu = enqueue(JobKind::Pipeline, "gpu", 100);
    let queue = c.queue().await.unwrap();
    // The watcher's cheap read names the same waiting items as the full one.
    let mut waiting: Vec<u64> = queue.iter().filter(|i| i.waits_for_executor()).map(|i| i.id).collect();
    let mut cheap = c.buildable_queue_ids().await.unwrap();
    waiting.sort_unstable();
    cheap.sort_unstable();
    assert!(cheap.contains(&pipe_gpu) && cheap.contains(&pipe_win), "{cheap:?}");
    assert_eq!(cheap, waiting);
    let why = |id| {
        queue
            .iter()
            .find(|i| i.id == id)
            .unwrap()
            .why
            .clone()
            .unwrap()
    };
    assert_eq!(why(pipe_win), "‘win-anchor’ is offline");
    assert_eq!(why(pipe_large), "‘big-anchor’ is offline");
    assert_eq!(why(pipe_linux), "All nodes of label ‘linux’ are offline");
    assert_eq!(why(pipe_gpu), "There are no nodes with the label ‘gpu’");
    let d = compute_demand(&queue, &c.computers().await.unwrap(), &ts, now_ms());
    let ids = |t: usize| {
        d.per_template[t]
            .items
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(0), vec![free_linux, pipe_linux]);
    assert_eq!(ids(1), vec![pipe_large]);
    assert_eq!(ids(2), vec![pipe_win]);
    assert_eq!(d.unmatched, 1, "gpu fits no template");

    // A real agent of template `linux` comes online and runs the linux builds.
    let node = "linux-i-001";
    c.create_inbound_agent(&agent_spec(node, &["linux", "docker"]))
        .await
        .unwrap();
    let secret = c.agent_secret(node).await.unwrap();
    let (stop, agent) = spawn_agent(agent_args(&sim, node, &secret));
    let tracker = std::sync::Mutex::new(ActivityTracker::new());
    // Single-node case: while the one executor is busy, an item for the node's own label
    // waits "on ‘linux-i-001’", which maps back to the node's template.
    let long = enqueue(JobKind::Pipeline, node, 600);
    let waiting = enqueue(JobKind::Pipeline, node, 100);
    let queue = eventually(
        Duration::from_secs(10),
        "the single-node message",
        || async {
            let q = c.queue().await.unwrap();
            let computers = c.computers().await.unwrap();
            tracker.lock().unwrap().observe(&computers, now_ms());
            let w = q.iter().find(|i| i.id == waiting)?.why.clone()?;
            (w == format!("Waiting for next available executor on ‘{node}’")).then_some(q)
        },
    )
    .await;
    let d = compute_demand(&queue, &c.computers().await.unwrap(), &ts, now_ms());
    assert!(
        d.per_template[0]
            .items
            .iter()
            .any(|i| i.id == waiting && i.label.as_deref() == Some(node))
    );

    let stats = eventually(
        Duration::from_secs(20),
        "the linux builds to finish",
        || async {
            let computers = c.computers().await.unwrap();
            tracker.lock().unwrap().observe(&computers, now_ms());
            let s = sim.stats();
            let done: Vec<u64> = s.completed.iter().map(|b| b.queue_id).collect();
            [free_linux, pipe_linux, long, waiting]
                .iter()
                .all(|id| done.contains(id))
                .then_some(s)
        },
    )
    .await;
    assert!(
        stats
            .completed
            .iter()
            .all(|b| b.node == node && b.result == "SUCCESS")
    );
    assert!(
        stats
            .completed
            .iter()
            .any(|b| b.queue_id == waiting && b.wait_ms >= 400),
        "waited for the long build"
    );
    let computers = c.computers().await.unwrap();
    let mut tracker = tracker.into_inner().unwrap();
    tracker.observe(&computers, now_ms());
    let activity = tracker.get(node).unwrap();
    assert!(
        activity.builds_started >= 2,
        "tracker saw builds: {activity:?}"
    );
    assert!(activity.idle_since_ms.is_some(), "idle after the builds");
    // Anchor repair: one lost its offline mark, another has the wrong labels.
    c.bring_online("win-anchor").await.unwrap();
    c.delete_node("big-anchor").await.unwrap();
    let mut wrong = agent_spec("big-anchor", &["linux"]);
    wrong.description = "stale".into();
    c.create_inbound_agent(&wrong).await.unwrap();
    let report = ensure_anchors(&c, &ts, &c.computers().await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        (report.re_offlined, report.recreated),
        (
            vec!["win-anchor".to_string()],
            vec!["big-anchor".to_string()]
        )
    );
    let big = c.computer("big-anchor").await.unwrap().unwrap();
    assert!(big.temporarily_offline && big.labels().any(|l| l == "large"));
    // Anchors never run anything.
    assert!(
        sim.nodes()
            .iter()
            .filter(|n| n.name.ends_with("-anchor"))
            .all(|n| !n.connected && n.temporarily_offline)
    );

    drop(stop);
    agent.await.unwrap().unwrap();
}

/// `/jnlpJars/agent.jar` as Jenkins serves it: anonymous may download it, a wrong token is
/// refused, the known content comes with `Last-Modified`, and a conditional GET gets a 304.
#[tokio::test]
async fn emulator_serves_agent_jar_like_jenkins() {
    let sim = start_sim().await;
    let url = format!("{}jnlpJars/agent.jar", sim.base_url());
    let http = reqwest::Client::new();
    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 200);
    assert_eq!(
        anonymous.headers()["content-disposition"],
        "attachment; filename=agent.jar"
    );
    let last_modified = anonymous.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(last_modified.ends_with(" GMT"), "{last_modified}");
    assert_eq!(&anonymous.bytes().await.unwrap()[..], &*sim.agent_jar());
    assert!(
        sim.agent_jar()
            .starts_with(b"ecs-provisioner emulated agent.jar for Jenkins ")
    );

    let wrong = http
        .get(&url)
        .basic_auth(sim.user(), Some("not-the-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = http
        .get(&url)
        .basic_auth(sim.user(), Some(sim.token()))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    let cached = http
        .get(&url)
        .header("If-Modified-Since", &last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    let other = http
        .get(format!("{}jnlpJars/jenkins-cli.jar", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

/// The host's cache: one download, then conditional requests (304, no transfer) while the jar
/// is unchanged; the new jar after a controller upgrade; concurrent callers share a download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_jar_cache_downloads_once_and_follows_an_upgrade() {
    use ecs_provisioner::jenkins::agent_jar::{AgentJarCache, sha256_hex};
    let sim = start_sim().await;
    let fresh = AgentJarCache::new(client(&sim), Duration::from_secs(3600));
    let (a, b) = tokio::join!(fresh.current(), fresh.current());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        std::sync::Arc::ptr_eq(&a, &b),
        "concurrent callers share one jar"
    );
    assert_eq!(a.sha256, sha256_hex(&sim.agent_jar()));
    assert_eq!(
        sim.agent_jar_requests(),
        (1, 0),
        "one download for two callers"
    );
    fresh.current().await.unwrap();
    assert_eq!(sim.agent_jar_requests(), (1, 0), "fresh: no request at all");

    let revalidating = AgentJarCache::new(client(&sim), Duration::ZERO);
    let first = revalidating.current().await.unwrap();
    let second = revalidating.current().await.unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    assert_eq!(
        sim.agent_jar_requests(),
        (2, 1),
        "the second look was a 304"
    );

    sim.set_agent_jar(b"the agent.jar of a newer Jenkins".to_vec());
    let upgraded = revalidating.current().await.unwrap();
    assert_eq!(&upgraded.bytes[..], b"the agent.jar of a newer Jenkins");
    assert_ne!(upgraded.sha256, first.sha256);

    // A wrong token is an error that says so (no jar was cached yet).
    let bad =
        JenkinsClient::new(sim.base_url(), Credentials::api_token(sim.user(), "wrong")).unwrap();
    let err = AgentJarCache::new(bad, Duration::ZERO)
        .current()
        .await
        .unwrap_err();
    assert!(matches!(err, JenkinsError::Unauthorized { .. }), "{err}");
}

/// The emulated agent starts only from the controller's jar: a missing or different jar is
/// refused before it connects, naming both hashes.
#[tokio::test]
async fn emulated_agent_refuses_a_jar_the_controller_does_not_serve() {
    let sim = start_sim().await;
    let c = client(&sim);
    c.create_inbound_agent(&agent_spec("j1", &["linux"]))
        .await
        .unwrap();
    let secret = c.agent_secret("j1").await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    let mut args = agent_args(&sim, "j1", &secret);
    args.jar = Some(dir.path().join("missing.jar"));
    let err = run_until(args.clone(), std::future::pending())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AgentError::AgentJar(_)) && err.to_string().contains("no agent.jar at"),
        "{err}"
    );

    let stale = dir.path().join("stale.jar");
    std::fs::write(&stale, b"an older agent.jar").unwrap();
    args.jar = Some(stale);
    let err = run_until(args, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is not the agent.jar the controller serves"),
        "{err}"
    );
    assert!(!sim.nodes()[0].connected);

    // `java -Xmx64m -jar agent.jar ARGS`: the JVM options are skipped, the jar is the one named.
    let jar = controller_jar(&sim, dir.path());
    let java_style = AgentArgs::parse(
        [
            "-Xmx64m",
            "-Dx=y",
            "-jar",
            jar.to_str().unwrap(),
            "-url",
            sim.base_url(),
            "-name",
            "j1",
            "-secret",
            &secret,
            "-webSocket",
        ]
        .iter()
        .map(|s| s.to_string()),
    )
    .unwrap();
    assert_eq!(java_style.jar.as_deref(), Some(jar.as_path()));
    let (stop, agent) = spawn_agent(java_style);
    wait_connected(&sim, "j1", true).await;
    drop(stop);
    agent.await.unwrap().unwrap();
}
