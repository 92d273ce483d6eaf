//! Bootstraps per second: the full bootstrap (connect, init marker, secret, detached agent,
//! confirmation) against OpenSSH's sshd on loopback, then against the instance SSH emulator.
//!
//! `cargo bench -p ecs-provisioner --bench ssh_bootstrap`. Knobs (environment):
//! `ECSP_BENCH_N` bootstraps (default 200), `ECSP_BENCH_CONCURRENCY` (default 16),
//! `ECSP_BENCH_CONFIRM_MS` agent confirmation delay (default 0; the product default is 1000, a
//! pure wait that adds latency but no work). Needs sshd: scripts/setup-test-deps.sh.

// The sshd launcher of the end-to-end tests, shared by path (the e2e crate depends on this one).
#[path = "../../tests/src/ssh.rs"]
#[allow(dead_code)]
mod sshd_support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecs_provisioner::sim::{EmulatedInstance, InstanceDirectory};
use ecs_provisioner::ssh::{
    BootstrapSpec, ClientKey, HostKeyVerifier, KnownHosts, SshClientConfig, bootstrap, keys,
};
use sshd_support::{AgentReaper, Sshd, current_user, keygen};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    label: &'static str,
    n: usize,
    concurrency: usize,
    wall: Duration,
    latencies: Vec<Duration>,
    steps: Vec<(&'static str, Duration)>,
}

impl Run {
    fn print(&self) {
        let mut l = self.latencies.clone();
        l.sort();
        let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
        println!(
            "{}: {} bootstraps, concurrency {}, {:.2?} wall -> {:.1} bootstraps/s; latency p50 {:.1?} p95 {:.1?} max {:.1?}",
            self.label,
            self.n,
            self.concurrency,
            self.wall,
            self.n as f64 / self.wall.as_secs_f64(),
            pct(0.5),
            pct(0.95),
            l[l.len() - 1]
        );
        let mut names: Vec<&str> = Vec::new();
        for (s, _) in &self.steps {
            if !names.contains(s) {
                names.push(s);
            }
        }
        let means: Vec<String> = names
            .iter()
            .map(|name| {
                let d: Vec<Duration> = self
                    .steps
                    .iter()
                    .filter(|(s, _)| s == name)
                    .map(|(_, d)| *d)
                    .collect();
                format!("{name} {:.1?}", d.iter().sum::<Duration>() / d.len() as u32)
            })
            .collect();
        println!("  mean per step: {}", means.join(", "));
    }
}

async fn run(
    label: &'static str,
    specs: Vec<BootstrapSpec>,
    config: Arc<SshClientConfig>,
    concurrency: usize,
) -> Run {
    let n = specs.len();
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for spec in specs {
        let (config, limit) = (config.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            let t = Instant::now();
            let report = bootstrap(&spec, &config)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            (t.elapsed(), report.steps)
        });
    }
    let mut latencies = Vec::new();
    let mut steps = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (latency, s) = r.unwrap();
        latencies.push(latency);
        steps.extend(s);
    }
    Run {
        label,
        n,
        concurrency,
        wall: started.elapsed(),
        latencies,
        steps,
    }
}

struct Instances(Mutex<Vec<EmulatedInstance>>);
impl InstanceDirectory for Instances {
    fn instance_by_ip(&self, ip: Ipv4Addr) -> Option<EmulatedInstance> {
        self.0.lock().unwrap().iter().find(|i| i.ip == ip).cloned()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_or("ECSP_BENCH_N", 200) as usize;
    let concurrency = env_or("ECSP_BENCH_CONCURRENCY", 16) as usize;
    let confirm = Duration::from_millis(env_or("ECSP_BENCH_CONFIRM_MS", 0));
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents");
    let reaper = AgentReaper::new(dir.path());
    let key = keygen(dir.path(), "id_ed25519", "ed25519", "");
    let sshd = Sshd::start(&[&key.public_line]);
    let known_hosts = Arc::new(KnownHosts::open(dir.path().join("known_hosts")).unwrap());
    let client_key = ClientKey::load(&key.private_path, None).unwrap();
    let config = Arc::new(SshClientConfig::new(
        client_key,
        HostKeyVerifier::AcceptNew(known_hosts),
    ));
    let spec = |id: String, ip: Ipv4Addr, port: u16, work_dir: String| {
        let mut s = BootstrapSpec::new(
            id.clone(),
            IpAddr::V4(ip),
            format!("bench-{id}"),
            "http://127.0.0.1:8080/",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            Instant::now() + Duration::from_secs(120),
        );
        s.user = current_user();
        s.port = port.to_string();
        s.work_dir = work_dir;
        s.init_script = Some("echo init $ECSP_INSTANCE_ID".into());
        s.agent_command = "exec sleep 600".into();
        s.agent_confirm_delay = confirm;
        s
    };

    println!(
        "SSH bootstrap benchmark ({} cores, confirm delay {confirm:?})",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let specs = (0..n)
        .map(|i| {
            let id = format!("i-bench{i:04}");
            let wd = format!("{}/{id}", agents.display());
            spec(id, Ipv4Addr::LOCALHOST, sshd.port(), wd)
        })
        .collect();
    run("OpenSSH sshd", specs, config.clone(), concurrency)
        .await
        .print();
    reaper.kill_all();
    drop(sshd);

    let root = dir.path().join("emulator");
    let instances: Vec<EmulatedInstance> = (0..n)
        .map(|i| EmulatedInstance {
            instance_id: format!("i-emu{i:04}"),
            ip: Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250) as u8 + 1),
            authorized_key: key.public_line.clone(),
            host_key_pem: keys::private_key_pem(&keys::generate_ed25519("bench")),
            running: true,
            data_disks: Vec::new(),
        })
        .collect();
    let directory = Arc::new(Instances(Mutex::new(instances.clone())));
    let emulator = ecs_provisioner::sim::ssh::start(
        directory,
        ecs_provisioner::sim::ssh::SshEmulatorConfig::new(&root),
    )
    .await
    .unwrap();
    let specs = instances
        .iter()
        .map(|i| {
            let wd = format!("{}/agent", emulator.instance_dir(&i.instance_id).display());
            spec(i.instance_id.clone(), i.ip, emulator.port(), wd)
        })
        .collect();
    run("instance SSH emulator", specs, config, concurrency)
        .await
        .print();
    emulator.shutdown().await;
    reaper.kill_all();
}
