//! The engine at scale, against the zero-delay emulators: the performance targets of issues 6
//! and 18, each printed as MET or MISSED.
//!
//! The emulators (ECS with instant status transitions, instance SSH, Jenkins) run in this
//! process; the provisioner runs as its own process (`ecs-provisioner run`), so its CPU time and
//! resident memory are its own, read from `/proc/<pid>`. Every agent is started over SSH by the
//! provisioner's bootstrap. Up to 2,000 nodes each agent is a real `ecs-provisioner sim-agent`
//! process connecting to the Jenkins emulator over WebSocket; above (10,000 agent processes
//! need ~30 GB) the agents are hosted in this process (`sim::agent_host`): the `sim-agent`
//! hands over and becomes a `sleep`. That changes only the agent side (this process's memory
//! and CPU, the machine's load); nothing on the provisioner's path is short-cut.
//!
//! Phases:
//! 1. `N` builds (default 1,000) are queued on one label whose template has one executor per
//!    node; the builds run for hours, so every build needs its own agent. Measured until `N`
//!    agents are online: the provisioner's CPU time (user + sys of all its threads, from the
//!    enqueue to the last agent online), wall time, RunInstances calls.
//! 2. Steady state with `N` instances (all builds running, nothing queued): ECS calls per cycle
//!    over several cycles (the emulator's counters; cycles from the provisioner's `/metrics`),
//!    CPU per cycle.
//! 3. Queue change -> RunInstances: one more build is queued at a random point of the poll
//!    interval; latency from the enqueue to the emulator receiving RunInstances (its request
//!    log: answer time minus handling time). Repeated; each new agent comes online before the
//!    next sample. The policy's `scale` time of every cycle seen meanwhile (`/status.json`).
//! 4. Resident memory of the provisioner (VmRSS now, VmHWM peak) at `N` instances.
//!
//! `cargo bench -p ecs-provisioner --bench engine`. Knobs (environment): `ECSP_BENCH_NODES`
//! (default 1000), `ECSP_BENCH_POLL_S` poll interval (default 10, the product default),
//! `ECSP_BENCH_IN_PROCESS_AGENTS` (0/1; default 1 above 2,000 nodes),
//! `ECSP_BENCH_SSH_CONCURRENCY` (default 32, the product default), `ECSP_BENCH_SAMPLES`
//! latency samples (default 50), `ECSP_BENCH_STEADY_CYCLES` (default 3), `ECSP_BENCH_TIMEOUT_S`
//! for phase 1 (default 600 + 0.1 s per node), `ECSP_BENCH_LOG` provisioner log file (default:
//! in the temp dir), `ECSP_BENCH_PERF` a file for `perf record` of the steady cycles.

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

/// The issue's targets at `n` nodes: its own numbers at 1,000 and 10,000, scaled linearly
/// from 1,000 at other sizes (printed as such).
struct Targets {
    run_instances: u64,
    describe_instances: u64,
    wave_cpu_s: f64,
    calls_per_cycle: f64,
    memory_mib: f64,
    steady_cpu_ms: f64,
}

fn targets(n: u32) -> Targets {
    let k = n as f64 / 1000.0;
    Targets {
        run_instances: (12.0 * k).ceil() as u64,
        describe_instances: (60.0 * k).ceil() as u64,
        wave_cpu_s: 3.0 * k,
        calls_per_cycle: if n == 1000 { 10.0 } else { (n as f64 / 100.0).ceil() + 1.0 },
        memory_mib: if n >= 10_000 { 150.0 } else { 64.0 },
        steady_cpu_ms: 100.0,
    }
}

/// One row of the results: figure, measured, target, MET or MISSED.
fn row(rows: &mut Vec<String>, figure: &str, measured: String, target: String, met: bool) {
    let line = format!("  {:<46} {:<44} {:<14} {}", figure, measured, target, if met { "MET" } else { "MISSED" });
    println!("{line}");
    rows.push(line);
}

/// p-th percentile (0..=100) of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Raises the open-file limit to its hard maximum: the emulators hold a socket per agent.
#[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` on every target.
fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
        l.rlim_cur as u64
    }
}

/// The policy's `scale` time (µs) of the cycle `/status.json` shows last, with its number.
async fn last_policy_micros(http: &reqwest::Client, port: u16) -> Option<(u64, u64)> {
    let v = http.get(format!("http://127.0.0.1:{port}/status.json")).send().await.ok()?.json::<serde_json::Value>().await.ok()?;
    Some((v["latest"]["cycle"].as_u64()?, v["latest"]["policy_micros"].as_u64()?))
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
    wait_cycles_every(http, port, at_least, timeout, Duration::from_millis(20)).await.0
}

/// [`wait_cycles`], reading `/metrics` every `every`; also says how many reads it took.
async fn wait_cycles_every(http: &reqwest::Client, port: u16, at_least: u64, timeout: Duration, every: Duration) -> (u64, u32) {
    let deadline = Instant::now() + timeout;
    let mut reads = 0;
    loop {
        reads += 1;
        if let Some(c) = cycles(http, port).await {
            if c >= at_least || Instant::now() >= deadline {
                return (c, reads);
            }
        } else if Instant::now() >= deadline {
            return (0, reads);
        }
        tokio::time::sleep(every).await;
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
    let samples = env_or("ECSP_BENCH_SAMPLES", 50) as u32;
    let steady_cycles = env_or("ECSP_BENCH_STEADY_CYCLES", 3);
    let timeout = Duration::from_secs(env_or("ECSP_BENCH_TIMEOUT_S", 600 + n as u64 / 10));
    let poll_s = env_or("ECSP_BENCH_POLL_S", 10).max(1);
    let in_process_agents = env_or("ECSP_BENCH_IN_PROCESS_AGENTS", u64::from(n > 2000)) == 1;
    let fds = raise_fd_limit();
    let target = targets(n);
    let scaled = if n == 1000 || n == 10_000 { "" } else { " (targets scaled from 1,000)" };

    println!(
        "engine benchmark: {n} nodes{scaled}, poll interval {poll_s}s, {} agents, ssh concurrency {ssh_concurrency}, load average {} ({} CPUs), open files {fds}",
        if in_process_agents { "in-process" } else { "process-per" },
        load_average(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let dir = tempfile::Builder::new().prefix("ecsp-engine-bench-").tempdir().expect("temp dir");
    // The instances' `java` (which the bootstrap checks) is the provisioner's own `sim-agent`.
    let java = Some(std::path::PathBuf::from(PROVISIONER));
    let cluster = Cluster::start(ClusterOptions { java, in_process_agents, ..ClusterOptions::ephemeral(dir.path()) })
        .await
        .expect("starting the emulators");
    let mut rows = Vec::new();

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
        .replace("poll-interval = \"1s\"", &format!("poll-interval = \"{poll_s}s\""))
        .replace(
            "capacity-cooldown = \"60s\"\n",
            &format!("capacity-cooldown = \"60s\"\nmax-total-nodes = {max_nodes}\nmax-launch-per-cycle = {max_nodes}\n"),
        );
    let config_path = dir.path().join("ecs-provisioner.toml");
    std::fs::write(&config_path, &text).expect("writing the config");
    let poll = Duration::from_secs(poll_s);
    assert!(text.contains(&format!("poll-interval = \"{poll_s}s\"")), "the cluster config's poll interval changed");

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
    let seq0 = cluster.ecs.cloud().request_log(0).last().map_or(0, |e| e.seq);
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
    println!("  provisioner CPU {host1:.2}s (user {:.2}s + sys {:.2}s)", cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
    let describes = calls1.get("DescribeInstances").copied().unwrap_or(0);
    let lookups = cluster.ecs.cloud().request_log(seq0).iter().filter(|e| e.action == "DescribeInstances" && e.by_id).count();
    println!("  DescribeInstances {describes}: {} listing pages + {lookups} lookups by id", describes as usize - lookups);
    row(&mut rows, &format!("{n} queued -> online: RunInstances"), format!("{run_instances}"), format!("<= {}", target.run_instances), reached && run_instances <= target.run_instances);
    row(&mut rows, &format!("{n} queued -> online: provisioner CPU"), format!("{host1:.2} s (wall {:.1} s)", wall1.as_secs_f64()), format!("< {:.1} s", target.wave_cpu_s), reached && host1 < target.wave_cpu_s);
    row(&mut rows, "DescribeInstances while they came online", format!("{describes}"), format!("<= {}", target.describe_instances), reached && describes <= target.describe_instances);
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
    wait_cycles(&http, port, settle, poll * 3 + Duration::from_secs(10)).await;
    println!("  first {}", status_line(&http, port).await);
    // The window runs from right after one cycle to right after `steady_cycles` more, and the
    // benchmark reads almost nothing of the provisioner inside it: reading `/metrics` every
    // 20 ms, as the other phases do, cost more CPU than the cycles (a steady-state profile at
    // 1,000 nodes: 40% of the samples encoding /metrics). It sleeps through most of the window
    // and then reads every 250 ms; those reads are counted and their cost measured below.
    let settled = wait_cycles(&http, port, settle + 1, poll * 2 + Duration::from_secs(10)).await;
    let calls_a = ecs_calls(&cluster);
    let cpu_a = cpu_total(pid);
    let cyc_a = settled;
    let ta = Instant::now();
    // `ECSP_BENCH_PERF=<file>`: perf samples the provisioner over these steady cycles.
    let perf = std::env::var("ECSP_BENCH_PERF").ok().and_then(|out| {
        Command::new("perf").args(["record", "-F", "999", "--call-graph", "dwarf,16384", "-o", &out, "-p", &pid.to_string()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()
    });
    tokio::time::sleep((poll * steady_cycles as u32).saturating_sub(Duration::from_secs(1))).await;
    let (cyc_b, reads) =
        wait_cycles_every(&http, port, cyc_a + steady_cycles, poll * 2 + Duration::from_secs(10), Duration::from_millis(250)).await;
    // The counters are read right after the cycle counter moved: the last cycle's calls are in.
    let calls_b = ecs_calls(&cluster);
    let cpu_b = cpu_total(pid);
    if let Some(mut perf) = perf {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(perf.id() as i32, libc::SIGINT) };
        let _ = perf.wait();
    }
    let span = ta.elapsed();
    let steady = diff(&calls_b, &calls_a);
    let total: u64 = steady.values().sum();
    let ncyc = (cyc_b - cyc_a).max(1);
    let per_cycle = total as f64 / ncyc as f64;
    println!("\n== 2. steady state with {} instances ({} online agents)", cluster.ecs.instances().len(), online_agents(&cluster));
    println!("  {ncyc} cycles in {:.1}s: {total} ECS calls = {per_cycle:.2} per cycle", span.as_secs_f64());
    println!("  by action: {steady:?}");
    println!("  last {}", status_line(&http, port).await);
    // What one read of /metrics costs the provisioner, to say what the window's reads added.
    // 100 reads: the kernel accounts CPU time in 10 ms ticks.
    let cpu_c = cpu_total(pid);
    for _ in 0..100 {
        cycles(&http, port).await;
    }
    let read_ms = 1000.0 * (cpu_total(pid) - cpu_c) / 100.0;
    let steady_cpu_ms = 1000.0 * (cpu_b - cpu_a) / ncyc as f64;
    println!(
        "  provisioner CPU {steady_cpu_ms:.1} ms per cycle ({:.1}% of one core), including the queue watcher's reads and {reads} reads of /metrics by this benchmark at {read_ms:.1} ms each",
        100.0 * (cpu_b - cpu_a) / span.as_secs_f64()
    );
    row(&mut rows, &format!("ECS calls per steady cycle at {n}"), format!("{per_cycle:.2}"), format!("<= {}", target.calls_per_cycle), per_cycle <= target.calls_per_cycle);
    row(&mut rows, &format!("steady-cycle CPU at {n}"), format!("{steady_cpu_ms:.1} ms"), format!("< {} ms", target.steady_cpu_ms), steady_cpu_ms < target.steady_cpu_ms);
    let (rss2, hwm2, _) = memory(pid);
    println!("  RSS {:.1} MiB (peak so far {:.1} MiB)", mib(rss2), mib(hwm2));

    // Phase 3: queue change -> RunInstances.
    println!("\n== 3. queue change -> RunInstances ({samples} samples, poll interval {poll:?}, queue watched every 100 ms)");
    let mut latencies = Vec::new();
    let mut policy_micros = BTreeMap::new();
    for (i, expected) in (0..samples).zip(n as usize..) {
        // Steady first: the previous sample's agent online and its cycles settled.
        let deadline = Instant::now() + Duration::from_secs(60);
        while online_agents(&cluster) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        if let Some((cycle, micros)) = last_policy_micros(&http, port).await {
            policy_micros.insert(cycle, micros);
        }
        // A random point of the second: the queue watcher reads the queue every 100 ms.
        let delay = Duration::from_millis((rand::random::<f64>() * 1000.0) as u64);
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
                println!("  sample {}: RunInstances after {ms} ms", i + 1);
                latencies.push(ms);
            }
            None => println!("  sample {}: no RunInstances within 30 s", i + 1),
        }
    }
    latencies.sort_unstable();
    if !latencies.is_empty() {
        println!(
            "  latency over {} samples: min {} ms, p50 {} ms, p99 {} ms, max {} ms",
            latencies.len(),
            latencies[0],
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0),
            latencies[latencies.len() - 1]
        );
    }
    let p99 = percentile(&latencies, 99.0);
    row(
        &mut rows,
        &format!("queue change -> RunInstances at {n}"),
        format!("p99 {p99} ms over {}/{samples} samples", latencies.len()),
        "p99 < 300 ms".into(),
        latencies.len() == samples as usize && samples >= 50 && p99 < 300,
    );
    let mut scale: Vec<u64> = policy_micros.values().copied().collect();
    scale.sort_unstable();
    row(
        &mut rows,
        &format!("policy scale at {n} (default policy)"),
        format!("p99 {:.2} ms over {} cycles (p50 {:.2})", percentile(&scale, 99.0) as f64 / 1000.0, scale.len(), percentile(&scale, 50.0) as f64 / 1000.0),
        "p99 < 10 ms".into(),
        !scale.is_empty() && percentile(&scale, 99.0) < 10_000,
    );

    // Phase 4: memory at N instances.
    let (rss4, hwm4, threads4) = memory(pid);
    let peak = hwm4.max(peak_rss);
    println!("\n== 4. provisioner memory at {} instances", cluster.ecs.instances().len());
    println!("  RSS {:.1} MiB ({}), peak (VmHWM) {:.1} MiB, {threads4} threads", mib(rss4), rss_split(pid), mib(peak));
    row(
        &mut rows,
        &format!("resident memory at {n}"),
        format!("{:.1} MiB, peak {:.1} MiB", mib(rss4), mib(peak)),
        format!("< {} MiB", target.memory_mib),
        mib(peak) < target.memory_mib,
    );
    println!("  provisioner CPU since start {:.1}s over {:.0}s; load average {}", cpu_total(pid), started.elapsed().as_secs_f64(), load_average());

    println!("\n== summary at {n} nodes{scaled} (load average now {})", load_average());
    for r in &rows {
        println!("{r}");
    }
    drop(provisioner);
    let killed = kill_agents(dir.path());
    println!("\n(stopped the provisioner, killed {killed} agent processes)");
    0
}
