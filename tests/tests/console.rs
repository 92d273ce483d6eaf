//! The operator console and the metrics end to end: a daemon (`run`) launches a node for a
//! queued build on the emulators; headless Chromium, driven through chromedriver (WebDriver),
//! reads `/status` and finds the node's row and the decision told as a sentence, and a
//! screenshot is kept under the target dir; `/metrics` exposes the operators' metrics under
//! Prometheus' naming rules.
//!
//! Chromium and chromedriver come from Debian's packages (scripts/setup-test-deps.sh prints
//! ECSP_CHROMIUM and ECSP_CHROMEDRIVER).

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::browser::{Browser, free_port};
use e2e::engine::{Daemon, Setup, Template, agent_nodes, describe_cluster, enqueue, our_instances, start_cluster, wait_for, wait_until};
use ecs_provisioner::sim::cluster::Cluster;
use ecs_provisioner::sim::jenkins::JobKind;
use fantoccini::Locator;

const EXE: &str = env!("CARGO_BIN_EXE_e2e-provisioner");

/// A daemon on the emulators with one template (`linux`, 0 to 2 nodes), its status server on
/// a free port. Returns the daemon, its status URL and where its log goes.
async fn daemon(dir: &Path, cluster: &Cluster) -> (Daemon, String, PathBuf) {
    let setup = Setup::new(EXE, vec![Template::new("linux", 1, 0, 2)]);
    let port = free_port();
    let text = setup.config_text(cluster);
    assert!(text.contains("listen = \"127.0.0.1:0\""), "the cluster's listen line changed:\n{text}");
    let text = text.replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1);
    let config = dir.join("provisioner.toml");
    std::fs::write(&config, text).unwrap();
    let log = dir.join("daemon.log");
    (Daemon::start(Path::new(EXE), &config, &log), format!("http://127.0.0.1:{port}"), log)
}

/// Starts the daemon, queues one build and waits until the node launched for it is online.
/// Returns the instance id.
async fn launched_node(cluster: &Cluster, log: &Path) -> String {
    enqueue(cluster, "linux", JobKind::Freestyle, 1, Duration::from_secs(120));
    let describe = || format!("{}\n{}", describe_cluster(cluster), std::fs::read_to_string(log).unwrap_or_default());
    wait_until("a node for the queued build is online", Duration::from_secs(120), || agent_nodes(cluster).iter().any(|n| n.connected), describe).await;
    our_instances(cluster)[0].instance_id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_launched_node_and_the_decision_in_chromium() {
    let dir = tempfile::Builder::new().prefix("ecsp-e2e-console-").tempdir().unwrap();
    let cluster = start_cluster(dir.path(), Path::new(EXE)).await;
    let (_daemon, url, log) = daemon(dir.path(), &cluster).await;
    let id = launched_node(&cluster, &log).await;

    let browser = Browser::start(&dir.path().join("chromium-profile")).await;
    let client = &browser.client;

    // The console refreshes itself every 10 s; the decision is there from the launch on.
    client.goto(&format!("{url}/status")).await.expect("the console loads");
    assert_eq!(client.title().await.unwrap(), "ecs-provisioner");
    let row = client.find(Locator::Id(&format!("node-{id}"))).await.expect("the launched node has a row");
    let row = row.text().await.unwrap();
    assert!(row.contains("linux") && row.contains("cn-hangzhou-") && row.contains("ecs.c7.large"), "row: {row}");
    assert!(row.contains("online"), "row: {row}");
    let sentences = client.find_all(Locator::Css("li.sentence")).await.unwrap();
    let mut texts = Vec::new();
    for s in sentences {
        texts.push(s.text().await.unwrap());
    }
    assert!(
        texts.iter().any(|t| t.starts_with("launched 1 x linux in cn-hangzhou-") && t.contains(": 1 queued, 0 idle")),
        "decision sentences: {texts:?}"
    );
    let policy = client.find(Locator::Id("policy")).await.is_ok();
    assert!(policy, "the policy section renders");
    browser.keep_screenshot(Path::new(env!("CARGO_TARGET_TMPDIR")), "console.png").await;
    client.clone().close().await.unwrap();
    drop(browser);
    cluster.shutdown().await;
}

/// One metric family of the exposition: its type and its sample lines.
fn family<'a>(text: &'a str, name: &str) -> (Option<&'a str>, Vec<&'a str>) {
    let kind = text.lines().find_map(|l| l.strip_prefix(&format!("# TYPE {name} ")));
    let samples = text.lines().filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ', '_'])).collect();
    (kind, samples)
}

/// The value of the first sample line that starts with `prefix`.
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_what_operators_expect_under_prometheus_names() {
    let dir = tempfile::Builder::new().prefix("ecsp-e2e-metrics-").tempdir().unwrap();
    let cluster = start_cluster(dir.path(), Path::new(EXE)).await;
    let (_daemon, url, log) = daemon(dir.path(), &cluster).await;
    launched_node(&cluster, &log).await;
    // Launch-to-online is observed by the cycle that sees the agent online, the bootstrap when
    // its task ends: wait for both.
    let text = wait_for("launch-to-online and the bootstrap are observed", Duration::from_secs(30), || {
        let url = url.clone();
        async move {
            let text = reqwest::get(format!("{url}/metrics")).await.ok()?.text().await.ok()?;
            // The agent can be online before its bootstrap's SSH session has closed.
            let done = text.contains("ecs_provisioner_launch_to_online_seconds_count{template=\"linux\"} 1")
                && text.contains("ecs_provisioner_bootstrap_duration_seconds_count{template=\"linux\",outcome=\"success\"} 1");
            done.then_some(text)
        }
    }, || std::fs::read_to_string(&log).unwrap_or_default())
    .await;

    // Prometheus' rules: names of letters, digits and underscores; counters end in `_total`;
    // a unit is a suffix in base units (seconds, bytes); one `# EOF`.
    for l in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let name = l.split(['{', ' ']).next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad name in {l}");
        assert!(!name.contains("_ms") && !name.contains("millis"), "not a base unit: {l}");
    }
    for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = l.split_once(' ').unwrap();
        if kind == "counter" {
            assert!(text.contains(&format!("\n{name}_total")), "counter {name} has no _total sample");
        }
        if kind == "histogram" {
            assert!(name.ends_with("_seconds"), "histogram {name} is not in seconds");
        }
    }
    assert_eq!(text.matches("# EOF").count(), 1);

    let (kind, build) = family(&text, "ecs_provisioner_build_info");
    assert_eq!(kind, Some("gauge"));
    assert!(build.len() == 1 && build[0].contains("version=\"") && build[0].contains("contracts=\"0.2.x,0.1.x\"") && build[0].ends_with(" 1"), "{build:?}");
    for name in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"] {
        assert!(value(&text, &format!("{name} ")).is_some_and(|v| v > 0.0), "{name} missing or zero:\n{text}");
    }
    let last = value(&text, "ecs_provisioner_last_successful_cycle_timestamp_seconds ").expect("last successful cycle");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(last > now - 60.0 && last <= now + 1.0, "last successful cycle {last} vs now {now}");
    assert!(value(&text, "ecs_provisioner_cycle_duration_seconds_count ").is_some_and(|n| n >= 1.0), "{text}");
    for (prefix, what) in [
        ("ecs_provisioner_ecs_request_duration_seconds_count{action=\"RunInstances\",outcome=\"success\"} ", "RunInstances"),
        ("ecs_provisioner_ecs_request_duration_seconds_count{action=\"DescribeInstances\",outcome=\"success\"} ", "DescribeInstances"),
        ("ecs_provisioner_jenkins_request_duration_seconds_count{action=\"list computers\",outcome=\"success\"} ", "Jenkins computers"),
        ("ecs_provisioner_jenkins_request_duration_seconds_count{action=\"create node\",outcome=\"success\"} ", "Jenkins create node"),
        ("ecs_provisioner_bootstrap_duration_seconds_count{template=\"linux\",outcome=\"success\"} ", "bootstrap"),
    ] {
        assert!(value(&text, prefix).is_some_and(|n| n >= 1.0), "{what}: no `{prefix}` sample:\n{text}");
    }
    // The bootstrap takes real time (SSH, init script, agent start): more than a millisecond.
    let sum = value(&text, "ecs_provisioner_bootstrap_duration_seconds_sum{template=\"linux\",outcome=\"success\"} ").unwrap();
    assert!(sum > 0.001, "bootstrap time {sum}");
    cluster.shutdown().await;
}
