//! Helpers for the engine's end-to-end tests: the three emulators plus a provisioner engine
//! wired to them exactly as `ecs-provisioner run` wires itself, a watcher that samples the
//! emulated cloud for cap violations, and polling with failure messages that show the state.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecs_provisioner::config::{Config, IdleAction};
use ecs_provisioner::engine::Engine;
use ecs_provisioner::engine::lifecycle::warm::STOPPED_PREFIX;
use ecs_provisioner::adapters::cloud::{EcsCloud, TAG_CONTROLLER, TAG_NODE, TAG_TEMPLATE};
use ecs_provisioner::adapters::jenkins::JenkinsAdapter;
use ecs_provisioner::adapters::policy::WasmPolicy;
use ecs_provisioner::adapters::ssh::SshBootstrapper;
use ecs_provisioner::engine::decide::Decider;
use ecs_provisioner::engine::ports::JenkinsPort;
use ecs_provisioner::sim::cluster::{Cluster, ClusterOptions};
use ecs_provisioner::sim::ecs::{InstanceView, SimConfig as EcsSimConfig, Timings};
use ecs_provisioner::sim::jenkins::{EnqueueRequest, JobKind, SimNodeView, SimStats};

/// The controller id every test provisioner runs as.
pub const CONTROLLER: &str = "e2e";

/// The engine over the live adapters, with the Jenkins side replaceable by a test wrapper.
pub type TestEngine<J> = Engine<EcsCloud, J, SshBootstrapper, WasmPolicy, WasmPolicy>;

/// One `[[template]]`: the knobs the tests vary; the rest is fixed (three zones, one cheap
/// instance type, on-demand, the default agent command: `java -jar agent.jar`, where the
/// emulated instances' `java` is `exe sim-agent`, which runs only with the delivered jar).
#[derive(Debug, Clone)]
pub struct Template {
    pub name: &'static str,
    pub label: &'static str,
    pub executors: u32,
    pub min: u32,
    pub max: u32,
    pub idle_timeout: &'static str,
    pub max_uses: u32,
    pub launch_timeout: &'static str,
    pub init_script: &'static str,
    /// `spot`: `on-demand` (default), `spot-first` or `spot-only`.
    pub spot: &'static str,
    /// More keys of the table (launch settings, `reconnect-timeout`...), TOML lines.
    pub extra: String,
}

impl Template {
    pub fn new(name: &'static str, executors: u32, min: u32, max: u32) -> Self {
        Template {
            name,
            label: name,
            executors,
            min,
            max,
            idle_timeout: "2s",
            max_uses: 0,
            launch_timeout: "60s",
            init_script: "echo provisioned > provisioned.txt",
            spot: "on-demand",
            extra: String::new(),
        }
    }

    /// The TOML table.
    pub fn toml(&self) -> String {
        format!(
            r#"
[[template]]
name = "{name}"
labels = ["{label}"]
executors = {executors}
min-nodes = {min}
max-nodes = {max}
max-uses = {max_uses}
idle-timeout = "{idle}"
launch-timeout = "{launch_timeout}"
zones = ["cn-hangzhou-h", "cn-hangzhou-i", "cn-hangzhou-j"]
instance-types = ["ecs.c7.large"]
remote-fs = "agent"
init-script = "{init_script}"
spot = "{spot}"
{extra}
"#,
            name = self.name,
            label = self.label,
            executors = self.executors,
            min = self.min,
            max = self.max,
            max_uses = self.max_uses,
            idle = self.idle_timeout,
            launch_timeout = self.launch_timeout,
            init_script = self.init_script,
            spot = self.spot,
            extra = self.extra,
        )
    }
}

/// What a test cluster and its provisioner look like.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Runs `sim-agent` (the instances' `java`) and `run` (the `e2e-provisioner` binary).
    pub exe: PathBuf,
    pub templates: Vec<Template>,
    /// Extra top-level tables (`[policy]` ...).
    pub extra: String,
    /// Extra keys of `[cloud]` (`max-total-nodes = 5` ...).
    pub cloud_extra: String,
    /// ECS status timings (default: [`start_cluster`]'s).
    pub timings: Option<Timings>,
    /// `[cloud] endpoint` instead of the emulator's (a [`crate::hostile::HostileEcs`] proxy).
    pub ecs_endpoint: Option<String>,
    /// `poll-interval` instead of the cluster's 1 s.
    pub poll_interval: Option<&'static str>,
    /// Agents hosted by the emulators instead of one process each (`sim::agent_host`).
    pub in_process_agents: bool,
    /// Whether the emulated instances run an sshd (default true; user-data fleets need none).
    pub sshd: bool,
}

impl Setup {
    pub fn new(exe: impl Into<PathBuf>, templates: Vec<Template>) -> Self {
        Setup {
            exe: exe.into(),
            templates,
            extra: String::new(),
            cloud_extra: String::new(),
            timings: None,
            ecs_endpoint: None,
            poll_interval: None,
            in_process_agents: false,
            sshd: true,
        }
    }

    /// The provisioner's configuration file for `cluster`.
    pub fn config_text(&self, cluster: &Cluster) -> String {
        let templates: String = self.templates.iter().map(Template::toml).collect();
        let text = cluster.config_text(CONTROLLER, &templates, &self.extra).expect("cluster config text");
        // `[cloud]` is written by the cluster; its extra keys go right into that table.
        let anchor = "capacity-cooldown = \"60s\"\n";
        assert!(text.contains(anchor), "the cluster's [cloud] table changed:\n{text}");
        let text = text.replacen(anchor, &format!("{anchor}{}\n", self.cloud_extra), 1);
        let poll = "poll-interval = \"1s\"";
        assert!(text.contains(poll), "the cluster's poll interval line changed:\n{text}");
        let text = text.replacen(poll, &format!("poll-interval = \"{}\"", self.poll_interval.unwrap_or("1s")), 1);
        match &self.ecs_endpoint {
            Some(url) => {
                let ours = format!("endpoint = \"{}\"", cluster.ecs.base_url());
                assert!(text.contains(&ours), "the cluster's endpoint line changed:\n{text}");
                text.replacen(&ours, &format!("endpoint = \"{url}\""), 1)
            }
            None => text,
        }
    }
}

/// Starts the emulators: ECS with short (but not zero) status transitions, so that launches
/// spend a little time pending and starting as real ones do; `java` (the `e2e-provisioner`
/// binary) plays the instances' Java.
pub async fn start_cluster(dir: &Path, java: &Path) -> Cluster {
    start_cluster_with(dir, DEFAULT_TIMINGS, java).await
}

/// [`start_cluster`]'s ECS status timings.
pub const DEFAULT_TIMINGS: Timings = Timings { pending_ms: 200, starting_ms: 300, stopping_ms: 300 };

/// [`start_cluster`] with other ECS status timings.
pub async fn start_cluster_with(dir: &Path, timings: Timings, java: &Path) -> Cluster {
    start_cluster_from(ClusterOptions { ecs: EcsSimConfig { timings, ..EcsSimConfig::instant() }, ..ClusterOptions::ephemeral(dir) }, java).await
}

/// Starts the emulators with `options`, `java` playing the instances' Java.
pub async fn start_cluster_from(options: ClusterOptions, java: &Path) -> Cluster {
    Cluster::start(ClusterOptions { java: Some(java.to_owned()), ..options }).await.expect("emulators start")
}

/// Emulators + an engine built like `app::wire` builds it, with the Jenkins port optionally
/// wrapped by the test. The loop runs only if the test starts it ([`Harness::spawn_loop`]);
/// otherwise the test drives cycles itself with `engine.cycle(true)`.
pub struct Harness<J: JenkinsPort = JenkinsAdapter> {
    pub cluster: Cluster,
    pub config: Arc<Config>,
    pub engine: Arc<TestEngine<J>>,
    pub caps: CapWatch,
    runner: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Harness<JenkinsAdapter> {
    pub async fn start(setup: &Setup) -> Self {
        Self::start_with(setup, |j| j).await
    }
}

impl<J: JenkinsPort> Harness<J> {
    pub async fn start_with(setup: &Setup, wrap: impl FnOnce(JenkinsAdapter) -> J) -> Self {
        log_to_test_output();
        let dir = tempfile::Builder::new().prefix("ecsp-e2e-").tempdir().expect("temp dir");
        let timings = setup.timings.unwrap_or(DEFAULT_TIMINGS);
        let options = ClusterOptions {
            ecs: EcsSimConfig { timings, ..EcsSimConfig::instant() },
            sshd: setup.sshd,
            in_process_agents: setup.in_process_agents,
            ..ClusterOptions::ephemeral(dir.path())
        };
        let cluster = start_cluster_from(options, &setup.exe).await;
        let text = setup.config_text(&cluster);
        let config = Arc::new(Config::parse(&text).unwrap_or_else(|e| panic!("config: {e}\n{text}")));
        let engine = build_engine(&config, wrap);
        let caps = CapWatch::start(&cluster);
        Harness { cluster, config, engine, caps, runner: None, _dir: dir }
    }

    /// Replaces the engine with a fresh one on the same emulators, as a restarted process
    /// would be: nothing remembered. The loop, if it ran, is stopped first.
    pub async fn restart_engine(&mut self, wrap: impl FnOnce(JenkinsAdapter) -> J) {
        self.engine.shutdown();
        if let Some(r) = self.runner.take() {
            let _ = r.await;
        }
        self.engine = build_engine(&self.config, wrap);
    }

    /// A Jenkins client of its own (`.client()`), as an administrator would use.
    pub fn jenkins_admin(&self) -> JenkinsAdapter {
        JenkinsAdapter::from_config(&self.config).expect("Jenkins adapter")
    }

    /// Runs the reconcile loop in the background until [`Harness::shutdown`].
    pub fn spawn_loop(&mut self) {
        let engine = self.engine.clone();
        self.runner = Some(tokio::spawn(async move { engine.run().await }));
    }

    /// Queues `count` builds of `duration` on `label`.
    pub fn enqueue(&self, label: &str, kind: JobKind, count: u32, duration: Duration) {
        enqueue(&self.cluster, label, kind, count, duration);
    }

    /// The state a failure message shows: last cycle, builds, instances, nodes.
    pub fn describe(&self) -> String {
        let report = self.engine.last_report().map(|r| {
            // A stale report means the loop is stuck in a cycle, not that the cycle decided so.
            let age_ms = ecs_provisioner::engine::now_ms().saturating_sub(r.at_ms);
            format!("(taken {age_ms} ms ago) {}", serde_json::to_string(&r).unwrap_or_default())
        });
        format!(
            "last report: {}\n{}",
            report.unwrap_or_else(|| "none".into()),
            describe_cluster(&self.cluster)
        )
    }

    /// Whether every template is back at its minimum: that many instances, all running, each
    /// with an online Jenkins node of ours, and no other node of ours.
    pub fn at_minimum(&self) -> bool {
        at_minimum(&self.cluster, &self.config)
    }

    /// Stops the loop, the cap watcher and the emulators (which kills every agent process).
    pub async fn shutdown(mut self) {
        self.engine.shutdown();
        if let Some(r) = self.runner.take() {
            let _ = r.await;
        }
        self.caps.stop();
        // The engine holds no part of the cluster; the emulators go last.
        self.cluster.shutdown().await;
    }
}

/// An engine over the live adapters, wired as `app::wire` wires it.
fn build_engine<J: JenkinsPort>(config: &Arc<Config>, wrap: impl FnOnce(JenkinsAdapter) -> J) -> Arc<TestEngine<J>> {
    let cloud = EcsCloud::from_config(config.clone()).expect("ECS adapter");
    let jenkins = wrap(JenkinsAdapter::from_config(config).expect("Jenkins adapter"));
    let bootstrapper = SshBootstrapper::from_config(config.clone(), Arc::new(cloud.clone())).expect("SSH bootstrapper");
    let (policy, fallback) = WasmPolicy::load_with_fallback(&config.policy).expect("policy loads");
    let decider = Decider { policy, fallback, on_error: config.policy.on_error };
    Engine::new(config.clone(), cloud, jenkins, bootstrapper, decider)
}

/// Queues `count` builds of `duration` on `label` in the Jenkins emulator.
pub fn enqueue(cluster: &Cluster, label: &str, kind: JobKind, count: u32, duration: Duration) {
    cluster
        .jenkins
        .enqueue(EnqueueRequest {
            job: Some(format!("{label}-{kind:?}").to_lowercase()),
            kind,
            label: Some(label.to_owned()),
            duration_ms: duration.as_millis() as u64,
            count: Some(count),
        })
        .expect("enqueue");
}

/// Instances of this controller still listed by the emulated cloud (any status, including
/// `Stopping` after a delete: they still count against caps).
pub fn our_instances(cluster: &Cluster) -> Vec<InstanceView> {
    cluster.ecs.instances().into_iter().filter(|i| tag(i, TAG_CONTROLLER) == Some(CONTROLLER)).collect()
}

pub fn tag<'a>(i: &'a InstanceView, key: &str) -> Option<&'a str> {
    i.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Agent nodes named like ours (`<template>-i-…`, or `<template>-u-…` for user-data
/// launches); anchors and the built-in node excluded.
pub fn agent_nodes(cluster: &Cluster) -> Vec<SimNodeView> {
    cluster.jenkins.nodes().into_iter().filter(|n| n.name.contains("-i-") || n.name.contains("-u-")).collect()
}

/// The Jenkins node of an instance: named in its node tag (user-data launches), else
/// `<template>-<instance-id>`.
pub fn node_name_of(i: &InstanceView) -> String {
    match tag(i, TAG_NODE) {
        Some(node) => node.to_owned(),
        None => format!("{}-{}", tag(i, TAG_TEMPLATE).unwrap_or("?"), i.instance_id),
    }
}

/// See [`Harness::at_minimum`].
pub fn at_minimum(cluster: &Cluster, config: &Config) -> bool {
    let instances = our_instances(cluster);
    let nodes = agent_nodes(cluster);
    let mut expected_nodes = 0;
    for t in &config.templates {
        let (stopped, mine): (Vec<&InstanceView>, Vec<&InstanceView>) =
            instances.iter().filter(|i| tag(i, TAG_TEMPLATE) == Some(t.name())).partition(|i| i.stopped);
        if mine.len() != t.min_nodes as usize || mine.iter().any(|i| i.status != "Running") {
            return false;
        }
        // The warm pool at rest: stopped, within max-stopped, each node kept offline as stopped.
        let max_stopped = if t.idle_action == IdleAction::Stop { t.max_stopped() as usize } else { 0 };
        if stopped.len() > max_stopped || stopped.iter().any(|i| i.status != "Stopped") {
            return false;
        }
        for i in &stopped {
            let name = format!("{}-{}", t.name(), i.instance_id);
            let marked = |n: &SimNodeView| n.offline_message.as_deref().is_some_and(|m| m.starts_with(STOPPED_PREFIX));
            if !nodes.iter().any(|n| n.name == name && !n.connected && marked(n)) {
                return false;
            }
        }
        expected_nodes += stopped.len();
        for i in mine {
            let name = node_name_of(i);
            if !nodes.iter().any(|n| n.name == name && n.connected && !n.temporarily_offline) {
                return false;
            }
        }
        expected_nodes += t.min_nodes as usize;
    }
    instances.len() == expected_nodes && nodes.len() == expected_nodes
}

/// Builds, instances and nodes, for failure messages.
pub fn describe_cluster(cluster: &Cluster) -> String {
    let stats: SimStats = cluster.jenkins.stats();
    let instances: Vec<String> = our_instances(cluster)
        .iter()
        .map(|i| format!("{}({},{})", i.instance_id, tag(i, TAG_TEMPLATE).unwrap_or("?"), i.status))
        .collect();
    let nodes: Vec<String> = agent_nodes(cluster)
        .iter()
        .map(|n| format!("{}(connected={},offline={},busy={})", n.name, n.connected, n.temporarily_offline, n.busy))
        .collect();
    let failed = stats.completed.iter().filter(|b| b.result != "SUCCESS").count();
    format!(
        "builds: {} queued, {} running, {} completed ({} failed)\ninstances: {instances:?}\nnodes: {nodes:?}",
        stats.queued,
        stats.running,
        stats.completed.len(),
        failed
    )
}

/// Sends the engine's, the SSH bootstrap's and the emulators' log lines to the test's captured
/// output, so that a failed test shows what the provisioner did (`ECSP_TEST_LOG` overrides
/// the filter). Once per test binary; the tokio workers of each test inherit its capture.
pub fn log_to_test_output() {
    let filter = std::env::var("ECSP_TEST_LOG").unwrap_or_else(|_| "warn,ecsp_engine=info,ecsp_ssh=info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}

/// Polls `ok` every 100 ms until it holds; panics after `timeout` with `what` and `describe()`.
pub async fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool, describe: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    loop {
        if ok() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}\n{}", describe());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`wait_until`] for an async check that returns a value once it holds.
pub async fn wait_for<T, F: Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
    describe: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}\n{}", describe());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Samples the emulated cloud every ~100 ms and keeps the largest number of our instances
/// seen at once, per template tag and in total: what "no cap ever exceeded" is checked on.
/// Instances stopped by StopInstances (the warm pool) are counted apart, against `max-stopped`.
pub struct CapWatch {
    seen: Arc<Mutex<CapsSeen>>,
    task: tokio::task::JoinHandle<()>,
}

/// The largest fleet seen at one sample.
#[derive(Debug, Clone, Default)]
pub struct CapsSeen {
    pub per_template: BTreeMap<String, usize>,
    pub stopped_per_template: BTreeMap<String, usize>,
    pub total: usize,
    pub samples: u64,
}

impl CapWatch {
    pub fn start(cluster: &Cluster) -> Self {
        let cloud = cluster.ecs.cloud();
        let seen = Arc::new(Mutex::new(CapsSeen::default()));
        let out = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let mut now: BTreeMap<String, usize> = BTreeMap::new();
                let mut stopped: BTreeMap<String, usize> = BTreeMap::new();
                let mut total = 0;
                for i in cloud.instances() {
                    if tag(&i, TAG_CONTROLLER) != Some(CONTROLLER) {
                        continue;
                    }
                    if i.stopped {
                        *stopped.entry(tag(&i, TAG_TEMPLATE).unwrap_or("?").to_owned()).or_default() += 1;
                        continue;
                    }
                    *now.entry(tag(&i, TAG_TEMPLATE).unwrap_or("?").to_owned()).or_default() += 1;
                    total += 1;
                }
                {
                    let mut s = out.lock().unwrap();
                    for (t, n) in now {
                        let m = s.per_template.entry(t).or_default();
                        *m = (*m).max(n);
                    }
                    for (t, n) in stopped {
                        let m = s.stopped_per_template.entry(t).or_default();
                        *m = (*m).max(n);
                    }
                    s.total = s.total.max(total);
                    s.samples += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        CapWatch { seen, task }
    }

    pub fn seen(&self) -> CapsSeen {
        self.seen.lock().unwrap().clone()
    }

    /// Panics if a template's `max-nodes` or `max-total-nodes` was ever exceeded.
    pub fn assert_within(&self, config: &Config) {
        let seen = self.seen();
        assert!(seen.samples > 10, "the cap watcher hardly ran: {seen:?}");
        for t in &config.templates {
            let max = seen.per_template.get(t.name()).copied().unwrap_or(0);
            assert!(max <= t.max_nodes as usize, "template {} reached {max} instances, max-nodes {}: {seen:?}", t.name(), t.max_nodes);
            let stopped = seen.stopped_per_template.get(t.name()).copied().unwrap_or(0);
            let max_stopped = if t.idle_action == IdleAction::Stop { t.max_stopped() as usize } else { 0 };
            assert!(stopped <= max_stopped, "template {} had {stopped} stopped instances, max-stopped {max_stopped}: {seen:?}", t.name());
        }
        assert!(
            seen.total <= config.cloud.max_total_nodes as usize,
            "{} instances at once, max-total-nodes {}: {seen:?}",
            seen.total,
            config.cloud.max_total_nodes
        );
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for CapWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every build completed successfully and `expected` of them did.
pub fn assert_builds_succeeded(cluster: &Cluster, expected: usize) {
    let stats = cluster.jenkins.stats();
    let failed: Vec<_> = stats.completed.iter().filter(|b| b.result != "SUCCESS").collect();
    assert!(failed.is_empty(), "failed builds: {failed:?}");
    assert_eq!(stats.completed.len(), expected, "{}", describe_cluster(cluster));
    assert_eq!((stats.queued, stats.running), (0, 0));
}

/// The daemon as a child process (`run --config FILE`), its log kept in a file. SIGKILLed
/// when dropped, so a failing test leaves no daemon behind.
pub struct Daemon {
    child: std::process::Child,
}

impl Daemon {
    /// Starts `exe run --config CONFIG`, appending its output to `log`.
    pub fn start(exe: &Path, config: &Path, log: &Path) -> Daemon {
        Self::start_with(exe, config, &[], log)
    }

    /// [`Daemon::start`] with more arguments after the configuration (`--shadow-policy ...`).
    pub fn start_with(exe: &Path, config: &Path, args: &[&std::ffi::OsStr], log: &Path) -> Daemon {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("daemon log");
        let child = std::process::Command::new(exe)
            .args(["run", "--config"])
            .arg(config)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting the daemon");
        Daemon { child }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` (SIGTERM, SIGSTOP, SIGCONT...).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0, "kill({}, {signal})", self.pid());
    }

    /// The exit status, if the daemon has exited within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for the exit: the daemon finishes its cycle and its journal.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.child.wait().expect("reaping the daemon")
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping the daemon");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
