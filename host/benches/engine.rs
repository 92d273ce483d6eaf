//! The engine at scale, against the zero-delay emulators: the performance targets of issue 6.
//!
//! The emulators (ECS with instant status transitions, instance SSH, Jenkins) run in this
//! process; the provisioner runs as its own process (`ecs-provisioner run`), so its CPU time and
//! resident memory are its own, read from `/proc/<pid>`. Every agent is a real `ecs-provisioner
//! sim-agent` process started over SSH by the provisioner's bootstrap, connecting to the Jenkins
//! emulator over WebSocket — nothing on the provisioner's path is short-cut.
//!
//! Phases:
//! 1. `N` builds (default 1,000) are queued on one label whose template has one executor per
//!    node; the builds run for hours, so every build needs its own agent. Measured until `N`
//!    agents are online: the provisioner's CPU time (user + sys of all its threads, from the
//!    enqueue to the last agent online), wall time, RunInstances calls.
//! 2. Steady state with `N` instances (all builds running, nothing queued): ECS calls per cycle
//!    over several cycles (the emulator's counters; cycles from the provisioner's `/metrics`),
//!    CPU per cycle.
//! 3. Queue change -> RunInstances: one more build is queued at a random point of the cycle;
//!    latency from the enqueue to the emulator receiving RunInstances (its request log: answer
//!    time minus handling time). Repeated; each new agent comes online before the next sample.
//! 4. Resident memory of the provisioner (VmRSS now, VmHWM peak) at `N` instances.
//!
//! `cargo bench -p ecs-provisioner --bench engine`. Knobs (environment): `ECSP_BENCH_NODES`
//! (default 1000), `ECSP_BENCH_SSH_CONCURRENCY` (default 32, the product default),
//! `ECSP_BENCH_SAMPLES` latency samples (default 8), `ECSP_BENCH_STEADY_CYCLES` (default 8), `ECSP_BENCH_TIMEOUT_S` for
//! phase 1 (default 600), `ECSP_BENCH_LOG` provisioner log file (default: in the temp dir).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ecs_provisioner::sim::cluster::{Cluster, ClusterOptions};
use ecs_provisioner::sim::jenkins::{EnqueueRequest, JobKind};

const PROVISIONER: &str = env!("CARGO_BIN_EXE_ecs-provisioner");
const TEMPLATE: &str = "bench";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// CPU time (user, sys) of a process, all threads, in seconds.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / tck;
    // Fields 14 (utime) and 15 (stime), counted from the state field (3).
    (field(11), field(12))
}

fn cpu_total(pid: u32) -> f64 {
    let (u, s) = cpu_seconds(pid);
    u + s
}

fn status_field(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// (VmRSS, VmHWM, Threads) of a process, KiB / count.
fn memory(pid: u32) -> (u64, u64, u64) {
    (status_field(pid, "VmRSS:"), status_field(pid, "VmHWM:"), status_field(pid, "Threads:"))
}

/// How the resident memory splits: anonymous (heap, stacks) and file-backed (the program's
/// own code and data, shared with every process running it).
fn rss_split(pid: u32) -> String {
    format!("anon {:.1} MiB + file {:.1} MiB", mib(status_field(pid, "RssAnon:")), mib(status_field(pid, "RssFile:")))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The provisioner's `cycles` counter from `/metrics`.
async fn cycles(http: &reqwest::Client, port: u16) -> Option<u64> {
    let text = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines()
        .find(|l| l.starts_with("ecs_provisioner_cycles_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

async fn wait_cycles(http: &reqwest::Client, port: u16, at_least: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(c) = cycles(http, port).await {
            if c >= at_least || Instant::now() >= deadline {
                return c;
            }
        } else if Instant::now() >= deadline {
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Agents of the bench template connected to Jenkins.
fn online_agents(cluster: &Cluster) -> usize {
    let prefix = format!("{TEMPLATE}-i-");
    cluster.jenkins.nodes().iter().filter(|n| n.name.starts_with(&prefix) && n.connected).count()
}

/// The provisioner's last cycle report (nodes, queue, chores) and the intervals between its
/// recent cycles, from `/status.json`.
async fn status_line(http: &reqwest::Client, port: u16) -> String {
    let Ok(resp) = http.get(format!("http://127.0.0.1:{port}/status.json")).send().await else { return "no status".into() };
    let Ok(v) = resp.json::<serde_json::Value>().await else { return "bad status".into() };
    let l = &v["latest"];
    format!(
        "cycle {} at {}: nodes {}, queued {}, chores {}, errors {}",
        l["cycle"],
        l["at_ms"],
        l["nodes"],
        l["queued"],
        l["chores"].as_array().map_or(0, Vec::len),
        l["errors"].as_array().map_or(0, Vec::len)
    )
}

fn ecs_calls(cluster: &Cluster) -> BTreeMap<String, u64> {
    cluster.ecs.counters().into_iter().map(|(a, c)| (a, c.calls)).collect()
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(a, n)| (a.clone(), n - before.get(a).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Kills the agents started on the emulated instances: processes whose working directory is an
/// instance directory under `root` (one pass over /proc, instead of one per instance).
fn kill_agents(root: &std::path::Path) -> usize {
    let mut killed = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if let Ok(cwd) = std::fs::read_link(e.path().join("cwd"))
            && cwd.starts_with(root)
            // SAFETY: kill(2) has no memory-safety preconditions.
            && unsafe { libc::kill(pid, libc::SIGKILL) } == 0
        {
            killed += 1;
        }
    }
    killed
}

struct Provisioner {
    child: Child,
}

impl Provisioner {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Provisioner {
    fn drop(&mut self) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let code = runtime.block_on(run());
    std::process::exit(code);
}

async fn run() -> i32 {
    let n = env_or("ECSP_BENCH_NODES", 1000) as u32;
    let ssh_concurrency = env_or("ECSP_BENCH_SSH_CONCURRENCY", 32);
    let samples = env_or("ECSP_BENCH_SAMPLES", 8) as u32;
    let steady_cycles = env_or("ECSP_BENCH_STEADY_CYCLES", 8);
    let timeout = Duration::from_secs(env_or("ECSP_BENCH_TIMEOUT_S", 600));

    println!("engine benchmark: {n} nodes, ssh concurrency {ssh_concurrency}, load average {} ({} CPUs)", load_average(), std::thread::available_parallelism().map_or(0, |n| n.get()));
    let dir = tempfile::Builder::new().prefix("ecsp-engine-bench-").tempdir().expect("temp dir");
    // The instances' `java` (which the bootstrap checks) is the provisioner's own `sim-agent`.
    let java = Some(std::path::PathBuf::from(PROVISIONER));
    let cluster = Cluster::start(ClusterOptions { java, ..ClusterOptions::ephemeral(dir.path()) }).await.expect("starting the emulators");

    // One executor per node and builds that outlast the benchmark: every queued build needs its
    // own agent, and none goes idle. Room above N for the latency samples.
    let max_nodes = n + samples + 10;
    let templates = format!(
        r#"[[template]]
name = "{TEMPLATE}"
labels = ["{TEMPLATE}"]
executors = 1
min-nodes = 0
max-nodes = {max_nodes}
idle-timeout = "1h"
launch-timeout = "10m"
remote-fs = "agent"
init-script = "echo provisioned by ecs-provisioner > motd"
agent-command = "{PROVISIONER} sim-agent -url {{jenkins_url}} -name {{node_name}} -secret @{{secret_file}} -webSocket -workDir {{work_dir}}"
"#
    );
    let port = free_port();
    let text = cluster
        .config_text("bench", &templates, &format!("concurrency = {ssh_concurrency}\n"))
        .expect("config")
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""))
        .replace(
            "capacity-cooldown = \"60s\"\n",
            &format!("capacity-cooldown = \"60s\"\nmax-total-nodes = {max_nodes}\nmax-launch-per-cycle = {max_nodes}\n"),
        );
    let config_path = dir.path().join("ecs-provisioner.toml");
    std::fs::write(&config_path, &text).expect("writing the config");
    let poll = Duration::from_secs(1);
    assert!(text.contains("poll-interval = \"1s\""), "the cluster config's poll interval changed");

    let log_path = std::env::var("ECSP_BENCH_LOG").map(std::path::PathBuf::from).unwrap_or_else(|_| dir.path().join("provisioner.log"));
    let log = std::fs::File::create(&log_path).expect("log file");
    let started = Instant::now();
    let provisioner = Provisioner {
        child: Command::new(PROVISIONER)
            .args(["run", "--config"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting ecs-provisioner run"),
    };
    let pid = provisioner.pid();
    let http = reqwest::Client::new();
    let c0 = wait_cycles(&http, port, 3, Duration::from_secs(60)).await;
    let (rss_idle, _, threads_idle) = memory(pid);
    println!(
        "provisioner pid {pid} up: {c0} cycles in {:.1?}, CPU {:.2}s, RSS {:.1} MiB ({}), {threads_idle} threads (log: {})",
        started.elapsed(),
        cpu_total(pid),
        mib(rss_idle),
        rss_split(pid),
        log_path.display()
    );

    // Phase 1: N queued builds -> N agents online.
    let calls0 = ecs_calls(&cluster);
    let cpu0 = cpu_seconds(pid);
    let cycles0 = cycles(&http, port).await.unwrap_or(0);
    let t0 = Instant::now();
    cluster
        .jenkins
        .enqueue(EnqueueRequest {
            job: Some("bench-build".into()),
            kind: JobKind::Freestyle,
            label: Some(TEMPLATE.into()),
            duration_ms: 6 * 3600 * 1000,
            count: Some(n),
        })
        .expect("enqueue");
    let mut first_run: Option<Duration> = None;
    let mut last_print = Instant::now();
    let mut peak_rss = 0;
    let mut online = 0;
    while online < n as usize && t0.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(100)).await;
        online = online_agents(&cluster);
        peak_rss = peak_rss.max(memory(pid).0);
        if first_run.is_none() && cluster.ecs.calls("RunInstances") > calls0.get("RunInstances").copied().unwrap_or(0) {
            first_run = Some(t0.elapsed());
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            let s = cluster.jenkins.stats();
            println!(
                "  {:>5.1}s: {online} agents online, {} queued, {} running; instances {}; provisioner CPU {:.1}s, RSS {:.1} MiB; load {}",
                t0.elapsed().as_secs_f64(),
                s.queued,
                s.running,
                cluster.ecs.instances().len(),
                cpu_total(pid) - cpu0.0 - cpu0.1,
                mib(memory(pid).0),
                load_average()
            );
        }
    }
    let wall1 = t0.elapsed();
    let cpu1 = cpu_seconds(pid);
    let cycles1 = cycles(&http, port).await.unwrap_or(0);
    let calls1 = diff(&ecs_calls(&cluster), &calls0);
    let run_instances = calls1.get("RunInstances").copied().unwrap_or(0);
    let host1 = (cpu1.0 - cpu0.0) + (cpu1.1 - cpu0.1);
    let reached = online >= n as usize;
    println!("\n== 1. {n} queued builds -> {online} agents online{}", if reached { "" } else { " (TIMED OUT)" });
    println!("  wall {:.1}s (first RunInstances after {:.0?}), {} cycles", wall1.as_secs_f64(), first_run.unwrap_or_default(), cycles1 - cycles0);
    println!(
        "  provisioner CPU {host1:.2}s (user {:.2}s + sys {:.2}s)  target < 30s: {}",
        cpu1.0 - cpu0.0,
        cpu1.1 - cpu0.1,
        if reached && host1 < 30.0 { "MET" } else { "MISSED" }
    );
    println!("  RunInstances calls {run_instances}  target <= 12: {}", if run_instances <= 12 { "MET" } else { "MISSED" });
    let launched = cluster.ecs.instances().len();
    println!("  instances launched {launched} for {n} builds{}", if launched > n as usize { " (OVER-LAUNCH)" } else { "" });
    println!("  ECS calls: {calls1:?}");
    let (rss1, hwm1, threads1) = memory(pid);
    println!("  RSS now {:.1} MiB ({}), peak {:.1} MiB, {threads1} threads", mib(rss1), rss_split(pid), mib(hwm1.max(peak_rss)));
    if !reached {
        let killed = kill_agents(dir.path());
        println!("  (killed {killed} agent processes)");
        return 1;
    }

    // Phase 2: steady state. Agents connect before their bootstrap has confirmed them (the
    // confirmation waits a second), and each finished bootstrap wakes a cycle: let those pass.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settle = cycles(&http, port).await.unwrap_or(0) + 2;
    wait_cycles(&http, port, settle, Duration::from_secs(30)).await;
    let calls_a = ecs_calls(&cluster);
    let cpu_a = cpu_total(pid);
    let cyc_a = cycles(&http, port).await.unwrap_or(0);
    let ta = Instant::now();
    println!("  first {} (metrics: {cyc_a} cycles)", status_line(&http, port).await);
    let cyc_b = wait_cycles(&http, port, cyc_a + steady_cycles, Duration::from_secs(steady_cycles * 5 + 10)).await;
    // The counters are read right after the cycle counter moved: the last cycle's calls are in.
    let calls_b = ecs_calls(&cluster);
    let cpu_b = cpu_total(pid);
    let span = ta.elapsed();
    let steady = diff(&calls_b, &calls_a);
    let total: u64 = steady.values().sum();
    let ncyc = (cyc_b - cyc_a).max(1);
    let per_cycle = total as f64 / ncyc as f64;
    println!("\n== 2. steady state with {} instances ({} online agents)", cluster.ecs.instances().len(), online_agents(&cluster));
    println!("  {ncyc} cycles in {:.1}s: {total} ECS calls = {per_cycle:.2} per cycle  target <= 11: {}", span.as_secs_f64(), if per_cycle <= 11.0 { "MET" } else { "MISSED" });
    println!("  by action: {steady:?}");
    println!("  last {}", status_line(&http, port).await);
    println!("  provisioner CPU {:.3}s per cycle ({:.1}% of one core)", (cpu_b - cpu_a) / ncyc as f64, 100.0 * (cpu_b - cpu_a) / span.as_secs_f64());
    let (rss2, hwm2, _) = memory(pid);
    println!("  RSS {:.1} MiB (peak so far {:.1} MiB)", mib(rss2), mib(hwm2));

    // Phase 3: queue change -> RunInstances.
    println!("\n== 3. queue change -> RunInstances ({samples} samples, poll interval {poll:?})");
    let mut latencies = Vec::new();
    for (i, expected) in (0..samples).zip(n as usize..) {
        // Steady first: the previous sample's agent online and its cycles settled.
        let deadline = Instant::now() + Duration::from_secs(60);
        while online_agents(&cluster) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let c = cycles(&http, port).await.unwrap_or(0);
        wait_cycles(&http, port, c + 1, Duration::from_secs(10)).await;
        // A random point of the cycle.
        let delay = Duration::from_millis((rand::random::<f64>() * poll.as_millis() as f64) as u64);
        tokio::time::sleep(delay).await;
        let since = cluster.ecs.cloud().request_log(0).last().map_or(0, |e| e.seq);
        let enqueued = now_ms();
        cluster
            .jenkins
            .enqueue(EnqueueRequest {
                job: Some("bench-latency".into()),
                kind: JobKind::Freestyle,
                label: Some(TEMPLATE.into()),
                duration_ms: 6 * 3600 * 1000,
                count: Some(1),
            })
            .expect("enqueue");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = None;
        while got.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
            got = cluster
                .ecs
                .cloud()
                .request_log(since)
                .into_iter()
                .find(|e| e.action == "RunInstances")
                .map(|e| e.time_ms.saturating_sub(e.duration_ms).saturating_sub(enqueued));
        }
        match got {
            Some(ms) => {
                println!("  sample {}: enqueued {:>4} ms after a cycle, RunInstances after {ms} ms", i + 1, delay.as_millis());
                latencies.push(ms);
            }
            None => println!("  sample {}: no RunInstances within 30 s", i + 1),
        }
    }
    latencies.sort_unstable();
    let bound = poll.as_millis() as u64 + 100;
    let worst = latencies.last().copied().unwrap_or(u64::MAX);
    if !latencies.is_empty() {
        println!(
            "  latency min {} ms, median {} ms, max {worst} ms  target < {bound} ms: {}",
            latencies[0],
            latencies[latencies.len() / 2],
            if worst < bound && latencies.len() == samples as usize { "MET" } else { "MISSED" }
        );
    }

    // Phase 4: memory at N instances.
    let (rss4, hwm4, threads4) = memory(pid);
    let peak = hwm4.max(peak_rss);
    println!("\n== 4. provisioner memory at {} instances", cluster.ecs.instances().len());
    println!(
        "  RSS {:.1} MiB ({}), peak (VmHWM) {:.1} MiB, {threads4} threads  target < 64 MiB: {}",
        mib(rss4),
        rss_split(pid),
        mib(peak),
        if peak < 64 * 1024 { "MET" } else { "MISSED" }
    );
    println!("  provisioner CPU since start {:.1}s over {:.0}s; load average {}", cpu_total(pid), started.elapsed().as_secs_f64(), load_average());

    drop(provisioner);
    let killed = kill_agents(dir.path());
    println!("\n(stopped the provisioner, killed {killed} agent processes)");
    0
}
