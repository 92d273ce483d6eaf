//! `check` and `plan` against the emulators: every check item passes on a good setup and names
//! the problem on a bad one; `plan` decides without touching anything.

use std::sync::Arc;

use ecs_provisioner::app;
use ecs_provisioner::sim::cluster::{Cluster, ClusterOptions};
use ecs_provisioner::sim::ecs::SimConfig as EcsSimConfig;
use ecs_provisioner::sim::jenkins::{EnqueueRequest, JenkinsSim, JobKind, SimConfig, SimUser};

const TEMPLATE: &str = r#"
[[template]]
name = "linux"
labels = ["linux"]
executors = 2
max-nodes = 4
instance-types = ["ecs.c7.large"]
remote-fs = "agent"
agent-command = "true {secret_file}"
data-disks = [{ category = "cloud_essd", size-gib = 100 }]
"#;

/// Runs the daemon (`run`): see `tests/src/bin/e2e-provisioner.rs`.
const EXE: &str = env!("CARGO_BIN_EXE_e2e-provisioner");

const ARM_IMAGE: &str = "aliyun_3_arm64_20G_alibase_20240528.vhd";

async fn cluster(dir: &std::path::Path) -> Cluster {
    Cluster::start(ClusterOptions::ephemeral(dir)).await.expect("cluster starts")
}

fn by_item<'a>(results: &'a [app::check::CheckResult], item: &str) -> &'a app::check::CheckResult {
    results.iter().find(|r| r.item == item).unwrap_or_else(|| panic!("no check item {item:?}: {results:#?}"))
}

/// Every item passes on a good setup, and the throw-away node is gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_every_item_against_a_good_setup() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path()).await;
    let path = dir.path().join("config.toml");
    std::fs::write(&path, cluster.config_text("check", TEMPLATE, "").unwrap()).unwrap();

    let results = app::check::run(&path).await;
    for expected in [
        "configuration", "policy", "credentials", "region", "image (linux)", "security groups (linux)", "key pair (linux)",
        "ssh key (linux)", "vswitches (linux)", "instance types (linux)", "image architecture (linux)", "disk categories (linux)",
        "RunInstances (DryRun) (linux)", "jenkins", "jenkins node create/delete", "agent.jar", "websocket agent endpoint",
    ] {
        by_item(&results, expected);
    }
    let failed: Vec<_> = results.iter().filter(|r| !r.ok).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let ssh_key = by_item(&results, "ssh key (linux)");
    assert!(ssh_key.detail.contains("is the private half of"), "{results:#?}");
    // The emulator gives ECS' fingerprint form, MD5 of the key blob in hex, which was compared.
    let key = ecs_provisioner::ssh::ClientKey::load(&cluster.key_file, None).unwrap();
    let md5 = ecs_provisioner::ssh::keys::ecs_fingerprint(key.public_key());
    assert!(md5.len() == 32 && ssh_key.detail.contains(&format!("ECS fingerprint {md5}")), "{ssh_key:?}");
    assert!(by_item(&results, "disk categories (linux)").detail.contains("cloud_essd on sale"), "{results:#?}");
    assert_eq!(cluster.ecs.instances().len(), 0, "the dry run launched nothing");
    let dry_runs = cluster.ecs.run_instances_log();
    assert!(!dry_runs.is_empty() && dry_runs.iter().all(|r| r.code == "DryRunOperation" && r.params["DataDisk.1.Category"] == "cloud_essd"), "{dry_runs:#?}");
    assert!(cluster.jenkins.nodes().iter().all(|n| !n.name.starts_with("ecs-provisioner-check")), "the throw-away node was left behind");
    cluster.shutdown().await;
}

/// Each item fails on its own mistake, with a hint naming the key to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    // Zone j sells no cloud_auto disks.
    let mut ecs = EcsSimConfig::instant();
    ecs.zones.iter_mut().filter(|z| z.zone_id.ends_with('j')).for_each(|z| z.disk_categories.retain(|c| c != "cloud_auto"));
    let cluster = Cluster::start(ClusterOptions { ecs, ..ClusterOptions::ephemeral(dir.path()) }).await.unwrap();
    let path = dir.path().join("config.toml");
    let text = cluster
        .config_text("check", TEMPLATE, "")
        .unwrap()
        .replace("key-pair-name = \"ecs-provisioner-demo\"", "key-pair-name = \"no-such-pair\"");
    std::fs::write(&path, &text).unwrap();
    // A wrong AccessKey secret: the signature check tells it apart from other failures.
    std::fs::write(&cluster.secret_file, "not-the-secret").unwrap();
    let results = app::check::run(&path).await;
    let credentials = by_item(&results, "credentials");
    assert!(!credentials.ok);
    assert_eq!(credentials.hint.as_deref(), Some("the AccessKey secret is wrong"), "{credentials:?}");
    std::fs::write(&cluster.secret_file, cluster.ecs.credentials().access_key_secret.expose()).unwrap();

    // Three templates, each wrong in its own ways; Jenkins through a user that may only read,
    // agents pointed at a path that is not the controller.
    let other_key = ecs_provisioner::ssh::keys::generate_ed25519("not-the-pair");
    let other_key_file = dir.path().join("other_key");
    std::fs::write(&other_key_file, ecs_provisioner::ssh::keys::private_key_pem(&other_key)).unwrap();
    let readonly = JenkinsSim::start(SimConfig {
        users: vec![SimUser { name: "reader".into(), token: "reader-token".into(), password: None, admin: false }],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    std::fs::write(&cluster.token_file, "reader-token").unwrap();
    let templates = format!(
        r#"
[[template]]
name = "arm"
labels = ["arm"]
max-nodes = 1
instance-types = ["ecs.c7.large"]
image-id = "{ARM_IMAGE}"
key-pair-name = "ecs-provisioner-demo"
ssh-private-key = "{other}"

[[template]]
name = "bad"
labels = ["bad"]
max-nodes = 1
instance-types = ["ecs.c7.large"]
zones = ["cn-hangzhou-j"]
image-id = "m-missing"
security-group-ids = ["sg-missing"]
data-disks = [{{ category = "cloud_auto", size-gib = 50 }}]

[[template]]
name = "nowhere"
labels = ["nowhere"]
max-nodes = 1
zones = ["cn-hangzhou-z"]
"#,
        other = other_key_file.display()
    );
    let text = cluster
        .config_text("check", &templates, "")
        .unwrap()
        .replacen("key-pair-name = \"ecs-provisioner-demo\"\n", "key-pair-name = \"no-such-pair\"\n", 1)
        .replace(cluster.jenkins.base_url(), readonly.base_url())
        .replace(&format!("user = \"{}\"", cluster.jenkins.user()), "user = \"reader\"\nagent-url = \"http://127.0.0.1:1/nojenkins/\"");
    std::fs::write(&path, &text).unwrap();
    let results = app::check::run(&path).await;
    let failed = |item: &str, detail: &str, hint: &str| {
        let r = by_item(&results, item);
        assert!(!r.ok, "{item} should fail: {r:?}");
        assert!(r.detail.contains(detail), "{item}: detail {:?} lacks {detail:?}", r.detail);
        assert!(r.hint.as_deref().unwrap_or_default().contains(hint), "{item}: hint {:?} lacks {hint:?}", r.hint);
    };
    let passed = |item: &str| assert!(by_item(&results, item).ok, "{item} should pass: {:?}", by_item(&results, item));

    passed("image (arm)");
    failed("image architecture (arm)", "is arm64 but ecs.c7.large is X86", "template \"arm\" an image-id");
    passed("key pair (arm)");
    failed("ssh key (arm)", "is not the private half of key pair ecs-provisioner-demo", "template \"arm\" ssh-private-key");
    let other_md5 = ecs_provisioner::ssh::keys::ecs_fingerprint(&ecs_provisioner::ssh::keys::parse_public_key(&ecs_provisioner::ssh::keys::public_key_line(&other_key)).unwrap());
    assert!(by_item(&results, "ssh key (arm)").detail.contains(&format!("MD5 {other_md5}")), "{:?}", by_item(&results, "ssh key (arm)"));
    failed("RunInstances (DryRun) (arm)", "ImageNotSupportInstanceType", "template \"arm\"");

    failed("image (bad)", "m-missing not found", "template \"bad\" image-id");
    failed("security groups (bad)", "sg-missing", "template \"bad\" security-group-id(s)");
    failed("key pair (bad)", "no-such-pair not found", "[cloud] key-pair-name");
    failed("disk categories (bad)", "data disk cloud_auto in cn-hangzhou-j", "data-disks");
    failed("RunInstances (DryRun) (bad)", "InvalidImageId.NotFound", "template \"bad\"");

    failed("vswitches (nowhere)", "no vswitch matches", "template \"nowhere\" zones");
    failed("instance types (nowhere)", "none in stock", "template \"nowhere\" instance-types or zones");

    passed("jenkins");
    failed("jenkins node create/delete", "Agent/Create", "Agent/Create");
    failed("agent.jar", "agent.jar", "[jenkins] agent-url");
    failed("websocket agent endpoint", "wsagents/", "[jenkins] agent-url");
    assert_eq!(cluster.ecs.instances().len(), 0);

    // A broken config file fails the first item with the key and line.
    std::fs::write(&path, text.replace("max-nodes = 1\nzones = [\"cn-hangzhou-z\"]", "max-nodes = 1\nmax-node = 5")).unwrap();
    let results = app::check::run(&path).await;
    assert!(!results[0].ok && results[0].detail.contains("max-node"), "{:?}", results[0]);
    readonly.stop();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_decides_without_acting() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path()).await;
    let config = Arc::new(cluster.config("plan", TEMPLATE, "").unwrap());
    let (engine, _) = app::wire(config).unwrap();

    // The first observation creates the template's anchor node so Jenkins names the label.
    engine.cycle(false).await;
    cluster
        .jenkins
        .enqueue(EnqueueRequest { job: Some("j".into()), kind: JobKind::Freestyle, label: Some("linux".into()), duration_ms: 1000, count: Some(5) })
        .unwrap();
    let report = engine.cycle(false).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.queued.get("linux"), Some(&5));
    // 5 builds on 2-executor nodes: 3 nodes.
    assert_eq!(report.enforced.launches.len(), 1, "{report:#?}");
    assert_eq!(report.enforced.launches[0].count, 3);
    let text = app::render_plan(&report);
    assert!(text.contains("Would launch 3 x linux"), "{text}");
    assert_eq!(cluster.ecs.calls("RunInstances"), 0, "plan never launches");
    assert!(cluster.ecs.instances().is_empty());
    cluster.shutdown().await;
}

/// Issue 20, item 5: a plain-http Jenkins URL to a host other than loopback sends the token
/// and agent secrets in the clear. `check` says so (WARN, not a failure) and `run` logs it at
/// start; loopback (the emulators, a local TLS proxy) is quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_endpoints_to_remote_hosts_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path()).await;
    let local = dir.path().join("local.toml");
    let text = cluster.config_text("check", TEMPLATE, "").unwrap();
    std::fs::write(&local, &text).unwrap();
    assert!(ecs_provisioner::config::Config::load(&local).unwrap().plaintext_warnings().is_empty());

    // 0.0.0.0 is not a loopback address, yet connecting to it fails at once: no waiting on a
    // remote host in a test.
    let jenkins = format!("url = \"{}\"", cluster.jenkins.base_url());
    assert!(text.contains(&jenkins), "{text}");
    let remote = dir.path().join("remote.toml");
    std::fs::write(&remote, text.replace(&jenkins, "url = \"http://0.0.0.0:1/\"")).unwrap();
    let results = app::check::run(&remote).await;
    let warning = by_item(&results, "plaintext");
    assert!(warning.ok && warning.warning, "{warning:?}");
    assert!(warning.detail.contains("jenkins.url \"http://0.0.0.0:1/\" is plain http"), "{warning:?}");
    assert!(warning.detail.contains("API token"), "{warning:?}");

    let log = dir.path().join("run.log");
    let mut daemon = std::process::Command::new(EXE)
        .args(["run", "--config"])
        .arg(&remote)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting the daemon");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = String::new();
    while std::time::Instant::now() < deadline && !seen.contains("PLAINTEXT") {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        seen = std::fs::read_to_string(&log).unwrap_or_default();
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let line = seen.lines().find(|l| l.contains("PLAINTEXT")).unwrap_or_else(|| panic!("no warning at start:\n{seen}"));
    assert!(line.contains("WARN") && line.contains("jenkins.url"), "{line}");
    cluster.shutdown().await;
}

/// Issue 12: a silent endpoint held `check` for 192 s (6 attempts of 30 s). With the default
/// connect and read timeouts and retry budget, a silent and a refusing ECS and Jenkins are
/// each reported within 20 s, the cause said plainly and once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_silent_and_dead_endpoints_within_20_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path()).await;
    // Accepts connections (the kernel completes the handshake) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/", silent.local_addr().unwrap());
    let refusing_url = {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        format!("http://127.0.0.1:{port}/")
    };
    let good = cluster.config_text("check", TEMPLATE, "").unwrap();
    for (url, cause) in [(&silent_url, "no answer within the timeout"), (&refusing_url, "connection refused")] {
        let text = good
            .replace(&format!("endpoint = \"{}\"", cluster.ecs.base_url()), &format!("endpoint = \"{url}\""))
            .replace(&format!("url = \"{}\"", cluster.jenkins.base_url()), &format!("url = \"{url}\""));
        assert_ne!(text, good);
        let path = dir.path().join("config.toml");
        std::fs::write(&path, &text).unwrap();
        let started = std::time::Instant::now();
        let results = app::check::run(&path).await;
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(20), "{url}: check took {took:?}");
        let ecs = by_item(&results, "credentials");
        assert!(!ecs.ok && ecs.detail.contains(cause), "{ecs:?}");
        let jenkins = by_item(&results, "jenkins");
        assert!(!jenkins.ok, "{jenkins:?}");
        assert!(jenkins.detail.starts_with(&format!("cannot reach Jenkins at {url}api/json")), "{jenkins:?}");
        assert!(jenkins.detail.ends_with(cause), "{jenkins:?}");
        assert_eq!(jenkins.detail.matches(url.as_str()).count(), 1, "{jenkins:?}");
    }
    drop(silent);
    cluster.shutdown().await;
}
