//! SIGHUP reloads the configuration and the policy (issue 12): a broken file is refused and
//! the running configuration kept, with the reason logged; a good one takes over without a
//! restart. Both are counted in `ecs_provisioner_config_reloads_total`.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::engine::Daemon;
use ecs_provisioner::sim::cluster::{Cluster, ClusterOptions};
use ecs_provisioner::sim::jenkins::{EnqueueRequest, JobKind};

/// Runs the daemon (`run`): see `tests/src/bin/e2e-provisioner.rs`.
const EXE: &str = env!("CARGO_BIN_EXE_e2e-provisioner");

const LINUX: &str = r#"
[[template]]
name = "linux"
labels = ["linux"]
max-nodes = 2
remote-fs = "agent"
agent-command = "true {secret_file}"
"#;

const BIG: &str = r#"
[[template]]
name = "big"
labels = ["big-mem"]
max-nodes = 1
remote-fs = "agent"
agent-command = "true {secret_file}"
"#;

/// `run --config path` with `more` arguments, its log in `log`.
fn daemon(path: &Path, more: &[&std::ffi::OsStr], log: &Path) -> Daemon {
    Daemon::start_with(Path::new(EXE), path, more, log)
}

/// A loopback address with a port free for the daemon's status server.
fn free_listen() -> std::net::SocketAddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("127.0.0.1:{port}").parse().unwrap()
}

async fn get(url: &str) -> String {
    match reqwest::get(url).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Polls until `f` holds, with what was last seen in the panic message.
async fn wait_for<T>(what: &str, log: &Path, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "never {what}; log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of counter `name{outcome="..."}` on a /metrics page; 0 when absent.
fn counter(metrics: &str, name: &str, outcome: &str) -> u32 {
    let prefix = format!("{name}{{outcome=\"{outcome}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |v| v.trim().parse().unwrap())
}

fn reloads(metrics: &str, outcome: &str) -> u32 {
    counter(metrics, "ecs_provisioner_config_reloads_total", outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_good_configuration_and_keeps_the_running_one_on_a_bad() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(ClusterOptions::ephemeral(dir.path())).await.unwrap();
    let listen = free_listen();
    let base = format!("http://{listen}");
    let path = dir.path().join("config.toml");
    let good = cluster.config_text_listening(listen, "reload", LINUX, "").unwrap();
    std::fs::write(&path, &good).unwrap();
    let log = dir.path().join("run.log");
    let daemon = daemon(&path, &[], &log);
    // A build only a template the running configuration lacks can serve.
    cluster
        .jenkins
        .enqueue(EnqueueRequest { job: Some("mem".into()), kind: JobKind::Freestyle, label: Some("big-mem".into()), duration_ms: 60_000, count: Some(1) })
        .unwrap();
    let status = format!("{base}/status.json");
    wait_for("a cycle that sees the build unmatched", &log, async || {
        let s: serde_json::Value = serde_json::from_str(&get(&status).await).ok()?;
        (s["latest"]["unmatched_queued"] == 1).then_some(())
    })
    .await;

    // A wrong type: refused, named, counted; the daemon goes on with what it has.
    std::fs::write(&path, good.replace("max-nodes = 2", "max-nodes = \"two\"")).unwrap();
    daemon.signal(libc::SIGHUP);
    let metrics = format!("{base}/metrics");
    wait_for("a refused reload counted", &log, async || {
        let m = get(&metrics).await;
        (reloads(&m, "failure") == 1).then_some(m)
    })
    .await;
    let said = std::fs::read_to_string(&log).unwrap();
    let at = said.find("reload refused").unwrap_or_else(|| panic!("{said}"));
    let line = said[..at].rsplit('\n').next().unwrap();
    assert!(line.contains("ERROR"), "{line}");
    // The toml error quotes the line, then names the key path.
    assert!(said[at..].contains("template[0].max-nodes: invalid type"), "{said}");
    let before = get(&status).await;
    let cycle_before: serde_json::Value = serde_json::from_str(&before).unwrap();
    wait_for("cycles going on after the refused reload", &log, async || {
        let s: serde_json::Value = serde_json::from_str(&get(&status).await).ok()?;
        (s["latest"]["cycle"].as_u64()? > cycle_before["latest"]["cycle"].as_u64()?).then_some(())
    })
    .await;

    // A good file with the second template: it takes over and serves the waiting build.
    let bigger = cluster.config_text_listening(listen, "reload", &format!("{LINUX}{BIG}"), "").unwrap();
    std::fs::write(&path, &bigger).unwrap();
    daemon.signal(libc::SIGHUP);
    wait_for("the reloaded configuration to queue the build for \"big\"", &log, async || {
        let s: serde_json::Value = serde_json::from_str(&get(&status).await).ok()?;
        (s["latest"]["queued"]["big"] == 1 || s["latest"]["nodes"]["big"].is_object()).then_some(())
    })
    .await;
    let m = get(&metrics).await;
    assert_eq!((reloads(&m, "success"), reloads(&m, "failure")), (1, 1), "{m}");
    assert!(std::fs::read_to_string(&log).unwrap().contains("configuration and policy reloaded"));
    drop(daemon);
    cluster.shutdown().await;
}

/// Shadow mode from the command line (issue 15): `run --shadow-policy` loads the candidate
/// with `[policy] shadow-settings`, judges it every cycle without acting on it, and keeps it
/// across a reload (the file names no shadow; the flag still wins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_policy_from_the_command_line_is_judged_every_cycle_never_acts_and_survives_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(ClusterOptions::ephemeral(dir.path())).await.unwrap();
    let listen = free_listen();
    let base = format!("http://{listen}");
    // The candidate keeps one linux node warm around the clock; the active default policy,
    // with nothing queued, keeps none. So every cycle they differ by one launch.
    let shadow = e2e::policy::workspace_wasm("policy-office-hours");
    let settings = r#"[policy.shadow-settings]
windows = [
  { start = "00:00", end = "13:00", warm-nodes = { linux = 1 } },
  { start = "12:00", end = "01:00", warm-nodes = { linux = 1 } },
]
"#;
    let path = dir.path().join("config.toml");
    std::fs::write(&path, cluster.config_text_listening(listen, "shadow", LINUX, settings).unwrap()).unwrap();
    let log = dir.path().join("run.log");
    let daemon = daemon(&path, &["--shadow-policy".as_ref(), shadow.as_os_str()], &log);
    let status = format!("{base}/status.json");
    let metrics = format!("{base}/metrics");
    let differed = |m: &str| counter(m, "ecs_provisioner_shadow_decisions_total", "differed");
    let verdict = wait_for("three cycles where the shadow differed", &log, async || {
        let s: serde_json::Value = serde_json::from_str(&get(&status).await).ok()?;
        (differed(&get(&metrics).await) >= 3).then_some(s)
    })
    .await;
    let last = &verdict["shadow"]["last"];
    assert_eq!(last["outcome"], "differed", "{verdict:#}");
    assert_eq!(last["differences"][0], "launch linux: active 0, shadow 1", "{verdict:#}");
    // The shadow never acts: nothing was launched.
    assert!(cluster.ecs.instances().is_empty(), "the shadow's plan was acted on");

    // A reload of a file without `shadow`: the command line's shadow stays.
    daemon.signal(libc::SIGHUP);
    wait_for("the reload", &log, async || (reloads(&get(&metrics).await, "success") == 1).then_some(())).await;
    let before = differed(&get(&metrics).await);
    wait_for("the shadow judged after the reload", &log, async || (differed(&get(&metrics).await) > before).then_some(())).await;
    assert!(cluster.ecs.instances().is_empty(), "the shadow's plan was acted on");
    drop(daemon);
    cluster.shutdown().await;
}
