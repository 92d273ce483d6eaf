//! `demo`: the whole system on the embedded emulators.
//!
//! ECS, instance SSH and Jenkins emulators start in this process; the engine runs with the
//! built-in policy; builds are queued on two labels while one zone is out of stock. The demo
//! shows the fleet live and ends with a summary. It exits 0 only if every build completed and
//! the fleet went back to its minimum.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sim::cluster::{Cluster, ClusterOptions};
use crate::sim::ecs::{NoStockRule, SimConfig as EcsSimConfig, Timings};
use crate::sim::jenkins::{EnqueueRequest, JobKind};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Builds queued per label.
    #[arg(long, default_value_t = 12)]
    pub builds: u32,
    /// How long each build runs.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    pub build_time: Duration,
    /// A short run (fewer, shorter builds), as CI runs it.
    #[arg(long)]
    pub quick: bool,
    /// Policy to run instead of the built-in default (a .wasm path).
    #[arg(long, default_value = "builtin:default")]
    pub policy: String,
    /// Give up after this long.
    #[arg(long, default_value = "240s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// How agents start: `ssh` (the host connects in) or `user-data` (the instances start
    /// their own agents from cloud-init; the emulated instances run no sshd at all).
    #[arg(long, value_enum, default_value_t = DemoLaunch::Ssh)]
    pub launch: DemoLaunch,
    /// Three replicas against one local etcd; the leader crashes midway and another takes over.
    #[arg(long)]
    pub ha: bool,
    /// The etcd binary `--ha` starts (Debian: etcd-server).
    #[arg(long, default_value = "etcd")]
    pub etcd: String,
}

/// `demo --launch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DemoLaunch {
    /// SSH bootstrap.
    Ssh,
    /// cloud-init user data; no SSH listener.
    UserData,
}

/// What the demo ends with.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoSummary {
    pub passed: bool,
    pub launch: DemoLaunch,
    /// SSH connections the instances accepted (0 with `--launch user-data`: nothing listens).
    pub ssh_connections: u64,
    pub builds_queued: u32,
    pub builds_completed: usize,
    pub builds_failed: usize,
    pub queue_wait_p50_ms: u64,
    pub queue_wait_p95_ms: u64,
    pub instances_launched: u64,
    pub instances_removed: u64,
    pub launch_failures: u64,
    pub policy_fallbacks: u64,
    pub cycles: u64,
    pub ecs_api_calls: u64,
    pub ecs_api_calls_by_action: std::collections::BTreeMap<String, u64>,
    pub fleet_back_to_minimum: bool,
    pub out_of_stock_zone: String,
    pub elapsed_ms: u64,
}

const TEMPLATES: &str = r#"
[[template]]
name = "linux"
labels = ["linux"]
executors = 2
min-nodes = 1
max-nodes = 6
idle-timeout = "{idle}"
launch-timeout = "60s"
launch = "{launch}"
remote-fs = "agent"
init-script = "echo provisioned by ecs-provisioner > motd"

[[template]]
name = "docker"
labels = ["docker"]
executors = 1
min-nodes = 0
max-nodes = 6
idle-timeout = "{idle}"
launch-timeout = "60s"
launch = "{launch}"
spot = "spot-first"
remote-fs = "agent"
"#;

pub async fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let summary = demo(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(if summary.passed { 0 } else { 1 })
}

/// Runs the demo and returns its summary.
pub async fn demo(args: &DemoArgs) -> anyhow::Result<DemoSummary> {
    let (builds, build_time, idle) = if args.quick {
        (args.builds.min(6), args.build_time.min(Duration::from_secs(2)), "3s")
    } else {
        (args.builds, args.build_time, "6s")
    };
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("ecs-provisioner-demo-").tempdir()?;
    let ecs = EcsSimConfig { timings: Timings { pending_ms: 300, starting_ms: 500, stopping_ms: 300 }, ..EcsSimConfig::default() };
    let stock_out_zone = ecs.zones.first().map(|z| z.zone_id.clone()).unwrap_or_default();
    // The emulated instances' `java` is this program's `sim-agent`: the default agent command
    // runs as it would on a real image.
    let java = Some(std::env::current_exe()?);
    let sshd = args.launch == DemoLaunch::Ssh;
    let cluster = Cluster::start(ClusterOptions { ecs, java, sshd, ..ClusterOptions::ephemeral(dir.path()) }).await?;

    let launch = if sshd { "ssh" } else { "user-data" };
    let templates = TEMPLATES.replace("{idle}", idle).replace("{launch}", launch);
    let extra = format!("[policy]\nsource = \"{}\"\n", args.policy);
    let config = Arc::new(cluster.config("demo", &templates, &extra)?);
    let (engine, cloud) = super::wire(config.clone())?;
    let stats = super::export_api_stats(&engine, &cloud);
    let runner = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run().await })
    };
    // Stock runs out after the offerings were discovered (and cached): the first zone refuses
    // every launch from now on, and each cycle must place the remainder elsewhere at once.
    while engine.board.totals().cycles == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.ecs.add_no_stock(NoStockRule { zone_id: Some(stock_out_zone.clone()), instance_type: None, spot_only: false });

    // Two waves per label, the second while the first runs.
    let enqueue = |label: &str, kind: JobKind, count: u32| {
        cluster.jenkins.enqueue(EnqueueRequest {
            job: Some(format!("{label}-build")),
            kind,
            label: Some(label.to_owned()),
            duration_ms: build_time.as_millis() as u64,
            count: Some(count),
        })
    };
    let first = builds / 2;
    enqueue("linux", JobKind::Freestyle, first).map_err(anyhow::Error::msg)?;
    enqueue("docker", JobKind::Pipeline, first).map_err(anyhow::Error::msg)?;
    let mut second_wave = Some(Instant::now() + build_time);
    let total = builds * 2;

    let progress = Progress::new(total, args.json);
    let deadline = Instant::now() + args.timeout;
    let mut back_to_minimum = false;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if second_wave.is_some_and(|at| Instant::now() >= at) {
            enqueue("linux", JobKind::Freestyle, builds - first).map_err(anyhow::Error::msg)?;
            enqueue("docker", JobKind::Pipeline, builds - first).map_err(anyhow::Error::msg)?;
            second_wave = None;
        }
        let sim = cluster.jenkins.stats();
        let report = engine.last_report();
        let fleet = |t: &str| -> u32 { report.as_ref().and_then(|r| r.nodes.get(t)).map(|m| m.values().sum()).unwrap_or(0) };
        let online = |t: &str| -> u32 {
            report.as_ref().and_then(|r| r.nodes.get(t)).and_then(|m| m.get("online")).copied().unwrap_or(0)
        };
        progress.update(sim.completed.len() as u64, sim.queued as u64, sim.running as u64, &[("linux", fleet("linux"), online("linux")), ("docker", fleet("docker"), online("docker"))]);
        let all_done = second_wave.is_none() && sim.completed.len() as u32 >= total && sim.queued == 0 && sim.running == 0;
        if all_done {
            back_to_minimum = config.templates.iter().all(|t| {
                let n = fleet(t.name());
                n == t.min_nodes && online(t.name()) == t.min_nodes
            });
            if back_to_minimum {
                break;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    progress.finish();
    engine.shutdown();
    let _ = runner.await;
    stats.abort();

    let sim = cluster.jenkins.stats();
    let mut waits: Vec<u64> = sim.completed.iter().map(|b| b.wait_ms).collect();
    waits.sort_unstable();
    let pct = |p: f64| -> u64 {
        if waits.is_empty() { 0 } else { waits[((waits.len() - 1) as f64 * p).round() as usize] }
    };
    let failed = sim.completed.iter().filter(|b| b.result != "SUCCESS").count();
    let totals = engine.board.totals();
    let by_action: std::collections::BTreeMap<String, u64> =
        cluster.ecs.counters().into_iter().map(|(a, c)| (a, c.calls)).collect();
    let summary = DemoSummary {
        passed: back_to_minimum && failed == 0 && sim.completed.len() as u32 >= total && (sshd || !cluster.ssh.sshd()),
        launch: args.launch,
        ssh_connections: cluster.ssh.connection_counts().0,
        builds_queued: total,
        builds_completed: sim.completed.len() - failed,
        builds_failed: failed,
        queue_wait_p50_ms: pct(0.50),
        queue_wait_p95_ms: pct(0.95),
        instances_launched: totals.launched,
        instances_removed: totals.removed,
        launch_failures: totals.launch_failures,
        policy_fallbacks: totals.fallbacks,
        cycles: totals.cycles,
        ecs_api_calls: by_action.values().sum(),
        ecs_api_calls_by_action: by_action,
        fleet_back_to_minimum: back_to_minimum,
        out_of_stock_zone: stock_out_zone,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    cluster.shutdown().await;
    Ok(summary)
}

fn print_summary(s: &DemoSummary) {
    println!();
    println!("ecs-provisioner demo: {}", if s.passed { "PASSED" } else { "FAILED" });
    println!("  launch            {}, {} SSH connection(s) into instances", if s.launch == DemoLaunch::Ssh { "ssh" } else { "user-data (no sshd)" }, s.ssh_connections);
    println!("  builds            {} of {} completed, {} failed", s.builds_completed, s.builds_queued, s.builds_failed);
    println!("  queue wait        p50 {:.1}s, p95 {:.1}s", s.queue_wait_p50_ms as f64 / 1000.0, s.queue_wait_p95_ms as f64 / 1000.0);
    println!("  instances         {} launched, {} removed", s.instances_launched, s.instances_removed);
    println!("  stock-out         zone {} out of stock: {} launch(es) failed there and were placed elsewhere", s.out_of_stock_zone, s.launch_failures);
    println!("  policy fallbacks  {}", s.policy_fallbacks);
    println!("  ECS API calls     {} in {} cycles: {}", s.ecs_api_calls, s.cycles, s.ecs_api_calls_by_action.iter().map(|(a, n)| format!("{a} {n}")).collect::<Vec<_>>().join(", "));
    println!("  fleet             {}", if s.fleet_back_to_minimum { "back to its minimum" } else { "NOT back to its minimum" });
    println!("  took              {:.1}s", s.elapsed_ms as f64 / 1000.0);
}

/// Live progress: bars on a terminal, a line every few seconds otherwise.
struct Progress {
    bars: Option<(indicatif::MultiProgress, indicatif::ProgressBar, Vec<indicatif::ProgressBar>)>,
    quiet: bool,
    last_line: std::sync::Mutex<Instant>,
}

impl Progress {
    fn new(total: u32, quiet: bool) -> Self {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let multi = indicatif::MultiProgress::new();
            let style = indicatif::ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> ");
            let builds = multi.add(indicatif::ProgressBar::new(u64::from(total)).with_style(style.clone()).with_prefix("builds"));
            let fleets = ["linux", "docker"]
                .iter()
                .map(|t| multi.add(indicatif::ProgressBar::new(6).with_style(style.clone()).with_prefix(format!("{t} nodes"))))
                .collect();
            (multi, builds, fleets)
        });
        Progress { bars, quiet, last_line: std::sync::Mutex::new(Instant::now()) }
    }

    fn update(&self, completed: u64, queued: u64, running: u64, fleets: &[(&str, u32, u32)]) {
        if let Some((_, builds, bars)) = &self.bars {
            builds.set_position(completed);
            builds.set_message(format!("{queued} queued, {running} running"));
            for ((_, n, online), bar) in fleets.iter().zip(bars) {
                bar.set_position(u64::from(*n));
                bar.set_message(format!("{online} online"));
            }
        } else if !self.quiet {
            let mut last = self.last_line.lock().unwrap();
            if last.elapsed() >= Duration::from_secs(2) {
                *last = Instant::now();
                let fleet: Vec<String> = fleets.iter().map(|(t, n, o)| format!("{t} {n} nodes ({o} online)")).collect();
                eprintln!("builds {completed} done, {queued} queued, {running} running | {}", fleet.join(" | "));
            }
        }
    }

    fn finish(&self) {
        if let Some((multi, builds, bars)) = &self.bars {
            builds.finish();
            for b in bars {
                b.finish();
            }
            let _ = multi.clear();
        }
    }
}
