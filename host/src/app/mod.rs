//! The commands: wiring the configuration to the engine and running it.

pub mod check;
pub mod demo;
pub mod demo_ha;
pub mod ha;
pub mod sim;
pub mod sole;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{Config, LogFormat};
use crate::adapters::cloud::EcsCloud;
use crate::adapters::jenkins::JenkinsAdapter;
use crate::adapters::policy::WasmPolicy;
use crate::adapters::ssh::SshBootstrapper;
use crate::engine::decide::Decider;
use crate::engine::model::NodeState;
use crate::engine::{CycleReport, Engine};
use crate::engine::board::ApiCount;

/// The engine as the binary runs it.
pub type LiveEngine = Engine<EcsCloud, JenkinsAdapter, SshBootstrapper, WasmPolicy, WasmPolicy>;

/// Sets up tracing: human or JSON lines on stderr, `RUST_LOG` overriding `default_level`.
pub fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Builds the engine for a configuration: clients, policy (with its fallback), bootstrapper.
pub fn wire(config: Arc<Config>) -> anyhow::Result<(Arc<LiveEngine>, EcsCloud)> {
    let cloud = EcsCloud::from_config(config.clone())?;
    let jenkins = JenkinsAdapter::from_config(&config)?;
    let bootstrapper = SshBootstrapper::from_config(config.clone(), Arc::new(cloud.clone()))?;
    let (policy, fallback) = WasmPolicy::load_with_fallback(&config.policy)
        .with_context(|| format!("loading policy {}", config.policy.source))?;
    let decider = Decider { policy, fallback, on_error: config.policy.on_error };
    let engine = Engine::new(config, cloud.clone(), jenkins, bootstrapper, decider);
    Ok((engine, cloud))
}

/// Copies the ECS client's per-action counters into the metrics, every few seconds.
pub fn export_api_stats(engine: &Arc<LiveEngine>, cloud: &EcsCloud) -> tokio::task::JoinHandle<()> {
    let board = engine.board.clone();
    let client = cloud.client().clone();
    tokio::spawn(async move {
        loop {
            let counts: Vec<ApiCount> = client
                .stats()
                .into_iter()
                .map(|s| ApiCount { action: s.action, calls: s.calls, retries: s.retries })
                .collect();
            board.record_api(&counts);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

/// Limits glibc to two malloc arenas. By default each thread that meets contention gets its
/// own arena (up to 8 per core), and each keeps the high-water mark of what passed through it:
/// for a daemon whose cycles allocate and free the same few megabytes, that is resident
/// memory for nothing. Call before the async runtime starts its threads.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Gives the heap's free pages back to the OS. Each cycle allocates and frees its reads of
/// the fleet and of Jenkins (at 1,000 instances: a few MiB of JSON and models), bootstraps
/// hold SSH buffers while they run; glibc keeps what was freed below its arenas' tops.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `run`: the daemon. Stops on SIGTERM or Ctrl-C after the current cycle, leaving the fleet
/// as it is (the next start adopts it).
/// `log_format` (the command line's) overrides the config file's `log-format`.
pub async fn run(config_path: &Path, log_format: Option<LogFormat>) -> anyhow::Result<i32> {
    // Before anything else: a SIGTERM during start-up (loading and compiling the policy can
    // take seconds) then stops the process cleanly, instead of killing it by the default action.
    let stop = StopSignal::install()?;
    let config = Arc::new(Config::load(config_path)?);
    init_logging(log_format.unwrap_or(config.log_format), "info");
    for w in config.plaintext_warnings() {
        tracing::warn!("PLAINTEXT: {w}");
    }
    tracing::info!(policy = %config.policy.source, "starting: loading the policy");
    let wiring = tokio::task::spawn_blocking({
        let config = config.clone();
        move || wire(config)
    });
    let (engine, cloud) = tokio::select! {
        wired = wiring => wired.context("start-up task")??,
        _ = stop.requested() => {
            tracing::info!("stop requested during start-up; nothing was started");
            return Ok(0);
        }
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (the `listen` setting)", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, controller = %config.controller_id, policy = %config.policy.source, "ecs-provisioner started");
    let elector = ha::join(&config, &engine)?;
    // Without [ha], one daemon per controller-id: a second one refuses to start.
    let sole = if elector.is_none() { Some(sole::SoleReplica::claim(&config).await?) } else { None };
    let server = tokio::spawn(axum::serve(listener, crate::server::router(engine.board.clone())).into_future());
    let stats = export_api_stats(&engine, &cloud);
    let poll = config.poll_interval;
    let trimmer = tokio::spawn(async move {
        loop {
            tokio::time::sleep(poll).await;
            trim_heap();
        }
    });
    let heartbeat = sole.map(|sole| sole.keep_beating(engine.clone()));
    let stopper = engine.clone();
    tokio::spawn(async move {
        stop.requested().await;
        tracing::info!("stop requested: finishing the current cycle");
        // A leader resigns first, at once: launches in flight are recorded in etcd, and the
        // next leader resends them with the same ClientToken.
        if let Some(elector) = elector {
            elector.resign().await;
        }
        stopper.shutdown();
    });
    engine.run().await;
    if let Some(heartbeat) = heartbeat {
        heartbeat.stop()?;
    }
    stats.abort();
    trimmer.abort();
    server.abort();
    Ok(0)
}

/// SIGTERM and SIGINT handlers, installed when made: from then on neither signal kills the
/// process by its default action.
struct StopSignal {
    token: tokio_util::sync::CancellationToken,
}

impl StopSignal {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
        let token = tokio_util::sync::CancellationToken::new();
        let cancel = token.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            cancel.cancel();
        });
        Ok(StopSignal { token })
    }

    /// Resolves once a stop was requested (at once if it already was).
    async fn requested(&self) {
        self.token.cancelled().await
    }
}

/// Waits for SIGTERM or SIGINT.
pub async fn wait_for_stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `plan`: one observe + decide, no action.
pub async fn plan(config_path: &Path, json: bool) -> anyhow::Result<i32> {
    let config = Arc::new(Config::load(config_path)?);
    let (engine, _) = wire(config)?;
    let report = engine.cycle(false).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_plan(&report));
    }
    Ok(if report.errors.is_empty() { 0 } else { 1 })
}

/// The human form of a plan.
pub fn render_plan(r: &CycleReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{:<16} {:>7} {:>9} {:>7} {:>7}", "TEMPLATE", "QUEUED", "IN-FLIGHT", "ONLINE", "OTHER");
    let mut templates: Vec<&String> = r.nodes.keys().chain(r.queued.keys()).collect();
    templates.sort();
    templates.dedup();
    for t in templates {
        let states = r.nodes.get(t);
        let get = |s: &str| states.and_then(|m| m.get(s)).copied().unwrap_or(0);
        let in_flight: u32 = NodeState::ALL.iter().filter(|s| s.in_flight()).map(|s| get(s.as_str())).sum();
        let online = get("online");
        let other = get("draining") + get("terminating");
        let _ = writeln!(out, "{:<16} {:>7} {:>9} {:>7} {:>7}", t, r.queued.get(t).copied().unwrap_or(0), in_flight, online, other);
    }
    let by = r.decided_by.map(|b| format!("{b:?}").to_lowercase()).unwrap_or_else(|| "nobody".into());
    let _ = writeln!(out, "\nDecided by: {by} ({} µs)", r.policy_micros);
    if let Some(e) = &r.policy_error {
        let _ = writeln!(out, "Policy error: {e}");
    }
    if r.enforced.launches.is_empty() && r.enforced.removals.is_empty() {
        let _ = writeln!(out, "Would do nothing.");
    }
    for l in &r.enforced.launches {
        let _ = writeln!(out, "Would launch {} x {}: {}", l.count, l.template, l.reason);
    }
    for rm in &r.enforced.removals {
        let _ = writeln!(out, "Would remove {}: {}", rm.instance_id, rm.reason);
    }
    for c in &r.clamps {
        let _ = writeln!(out, "Clamped ({}): {}", c.rule, c.detail);
    }
    for (kind, target, reason) in &r.chores {
        let _ = writeln!(out, "Housekeeping: {kind} {target} {reason}");
    }
    for e in &r.errors {
        let _ = writeln!(out, "Error: {e}");
    }
    out
}

/// `check`: every item pass/fail with a hint.
pub async fn check(config_path: &Path) -> anyhow::Result<i32> {
    let results = check::run(config_path).await;
    let mut failed = 0;
    for r in &results {
        let verdict = match (r.ok, r.warning) {
            (false, _) => "FAIL",
            (true, true) => "WARN",
            (true, false) => "PASS",
        };
        println!("{verdict} {:<28} {}", r.item, r.detail);
        if r.warning
            && let Some(h) = &r.hint
        {
            println!("     hint: {h}");
        }
        if !r.ok {
            failed += 1;
            if let Some(h) = &r.hint {
                println!("     hint: {h}");
            }
        }
    }
    println!("\n{} passed, {} failed", results.len() - failed, failed);
    Ok(if failed == 0 { 0 } else { 1 })
}

/// `sim-agent`: an emulated inbound agent.
pub async fn sim_agent(args: Vec<String>) -> anyhow::Result<i32> {
    if crate::sim::agent::is_version_query(&args) {
        eprint!("{}", crate::sim::agent::JAVA_VERSION_BANNER);
        return Ok(0);
    }
    let args = crate::sim::agent::AgentArgs::parse(args)?;
    crate::sim::agent::run(args).await?;
    Ok(0)
}
