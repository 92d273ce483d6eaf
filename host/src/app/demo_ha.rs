//! `demo --ha`: three replicas against one real etcd on the emulators. Builds flow on two
//! labels; once the first builds are done the leader crashes (its loop stops and its lease is
//! left to expire, as after a SIGKILL), another replica takes over, and every build still
//! completes. Needs the `etcd` binary (Debian: `apt-get install etcd-server`).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::LiveEngine;
use super::demo::DemoArgs;
use crate::ha::Elector;
use crate::sim::cluster::{Cluster, ClusterOptions};
use crate::sim::ecs::{SimConfig as EcsSimConfig, Timings};
use crate::sim::jenkins::{EnqueueRequest, JobKind};

const REPLICAS: usize = 3;
/// A short lease, so that the takeover after the crash shows within seconds.
const LEASE_TTL_S: u64 = 3;

const TEMPLATES: &str = r#"
[[template]]
name = "linux"
labels = ["linux"]
executors = 2
min-nodes = 1
max-nodes = 4
idle-timeout = "3s"
launch-timeout = "60s"
remote-fs = "agent"

[[template]]
name = "docker"
labels = ["docker"]
executors = 1
min-nodes = 0
max-nodes = 4
idle-timeout = "3s"
launch-timeout = "60s"
remote-fs = "agent"
"#;

/// An etcd child process on loopback ports, killed when dropped.
struct EtcdChild(Child);

impl Drop for EtcdChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_etcd(binary: &str, dir: &Path) -> anyhow::Result<(EtcdChild, String)> {
    let (client, peer) = (free_port()?, free_port()?);
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new(binary)
        .args(["--name", "demo", "--data-dir"])
        .arg(dir.join("etcd"))
        .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("demo={peer_url}"), "--log-level", "error"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("demo --ha starts a local etcd: cannot run {binary:?} (Debian: apt-get install etcd-server; or pass --etcd PATH)"))?;
    Ok((EtcdChild(child), format!("127.0.0.1:{client}")))
}

/// One replica: its engine, its seat in the election and its loop.
struct Replica {
    name: String,
    engine: Arc<LiveEngine>,
    elector: Arc<Elector>,
    runner: tokio::task::JoinHandle<()>,
}

/// Runs the demo with three replicas; 0 only if every build completed, the fleet went back to
/// its minimum and another replica took over after the leader's crash.
pub async fn run(args: &DemoArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("ecs-provisioner-demo-ha-").tempdir()?;
    let (_etcd, endpoint) = start_etcd(&args.etcd, dir.path())?;
    let ecs = EcsSimConfig { timings: Timings { pending_ms: 300, starting_ms: 500, stopping_ms: 300 }, ..EcsSimConfig::default() };
    let java = Some(std::env::current_exe()?);
    let cluster = Cluster::start(ClusterOptions { ecs, java, ..ClusterOptions::ephemeral(dir.path()) }).await?;

    let mut replicas = Vec::new();
    for i in 1..=REPLICAS {
        let name = format!("replica-{i}");
        let extra = format!(
            "[policy]\nsource = \"{}\"\n\n[ha]\nbackend = \"etcd\"\nendpoints = [\"{endpoint}\"]\nlease-ttl = \"{LEASE_TTL_S}s\"\nreplica-id = \"{name}\"\n",
            args.policy
        );
        let config = Arc::new(cluster.config("demo-ha", TEMPLATES, &extra)?);
        let (engine, _) = super::wire(config.clone())?;
        let elector = super::ha::join(&config, &engine)?.context("the demo's config has [ha]")?;
        let runner = tokio::spawn({
            let engine = engine.clone();
            async move { engine.run().await }
        });
        replicas.push(Replica { name, engine, elector, runner });
        // Launch ids carry the engine's start time in ms: one apart.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let leader = |replicas: &[Replica]| replicas.iter().position(|r| r.engine.may_act());
    let deadline = Instant::now() + args.timeout;
    let first = loop {
        if let Some(i) = leader(&replicas) {
            break i;
        }
        anyhow::ensure!(Instant::now() < deadline, "no replica was elected (etcd at {endpoint})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("{} leads; the other two observe and keep their caches warm", replicas[first].name);
    let builds = if args.quick { 4 } else { args.builds.min(12) };
    let build_ms = if args.quick { 1500 } else { args.build_time.as_millis() as u64 };
    for (label, kind) in [("linux", JobKind::Freestyle), ("docker", JobKind::Pipeline)] {
        cluster
            .jenkins
            .enqueue(EnqueueRequest { job: Some(format!("{label}-build")), kind, label: Some(label.into()), duration_ms: build_ms, count: Some(builds) })
            .map_err(anyhow::Error::msg)?;
    }
    let total = (builds * 2) as usize;

    // The crash: once the first builds complete, the leader's loop stops and its lease is
    // left to expire.
    while cluster.jenkins.stats().completed.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "no build completed in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let crashed = replicas.remove(first);
    crashed.engine.shutdown();
    crashed.runner.abort();
    crashed.elector.abandon();
    let crash_at = Instant::now();
    println!("{} crashed (its lease of {LEASE_TTL_S} s is left to expire) with {} of {total} builds done", crashed.name, cluster.jenkins.stats().completed.len());
    let next = loop {
        if let Some(i) = leader(&replicas) {
            break i;
        }
        anyhow::ensure!(Instant::now() < deadline, "no replica took over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let takeover = crash_at.elapsed();
    println!("{} took over after {:.1} s", replicas[next].name, takeover.as_secs_f64());

    let back_to_minimum = loop {
        let s = cluster.jenkins.stats();
        let report = replicas[next].engine.last_report();
        let count = |t: &str| report.as_ref().and_then(|r| r.nodes.get(t)).map(|m| m.values().sum::<u32>()).unwrap_or(0);
        if s.completed.len() >= total && s.queued == 0 && s.running == 0 && count("linux") == 1 && count("docker") == 0 {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let stats = cluster.jenkins.stats();
    let failed = stats.completed.iter().filter(|b| b.result != "SUCCESS").count();
    for r in &replicas {
        r.elector.resign().await;
        r.engine.shutdown();
    }
    for r in replicas {
        let _ = r.runner.await;
    }
    cluster.shutdown().await;
    let passed = back_to_minimum && failed == 0 && stats.completed.len() >= total;
    println!("\necs-provisioner demo --ha: {}", if passed { "PASSED" } else { "FAILED" });
    println!("  replicas   {REPLICAS} against one etcd, lease {LEASE_TTL_S} s");
    println!("  takeover   {:.1} s after the leader crashed", takeover.as_secs_f64());
    println!("  builds     {} of {total} completed, {failed} failed", stats.completed.len() - failed);
    println!("  fleet      {}", if back_to_minimum { "back to its minimum" } else { "NOT back to its minimum" });
    println!("  took       {:.1} s", started.elapsed().as_secs_f64());
    Ok(if passed { 0 } else { 1 })
}
