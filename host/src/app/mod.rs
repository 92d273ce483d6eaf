//! The commands: wiring the configuration to the engine and running it.

pub mod check;
pub mod demo;
pub mod demo_ha;
pub mod ha;
pub mod jenkins_history;
pub mod journal;
pub mod plan;
pub mod reload;
pub mod replay;
pub mod sim;
pub mod sole;
pub mod systemd;

pub use plan::{plan, render_plan};

use std::io::IsTerminal;
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
use crate::engine::Engine;
use crate::engine::board::{ApiCount, BuildInfo, PolicyInfo, Service};
use ecsp_http::RequestObserver;

/// The engine as the binary runs it.
pub type LiveEngine = Engine<EcsCloud, JenkinsAdapter, SshBootstrapper, WasmPolicy, WasmPolicy>;

/// Sets up tracing: human or JSON lines on stderr, `RUST_LOG` overriding `default_level`.
pub fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_wanted(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR")));
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Whether log lines get ANSI colours: only on a terminal, and never when `NO_COLOR` is set
/// to anything but the empty string (<https://no-color.org>). Files, pipes and the journal
/// get plain text.
pub fn colour_wanted(on_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    on_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Builds the engine for a configuration: clients, policy (with its fallback), bootstrapper.
pub fn wire(config: Arc<Config>) -> anyhow::Result<(Arc<LiveEngine>, EcsCloud)> {
    wire_with_board(config, Arc::new(crate::engine::board::Board::new()))
}

/// [`wire`], the engine recording on `board` (a reload keeps the running engine's).
pub fn wire_with_board(config: Arc<Config>, board: Arc<crate::engine::board::Board>) -> anyhow::Result<(Arc<LiveEngine>, EcsCloud)> {
    let cloud = EcsCloud::from_config(config.clone())?;
    let jenkins = JenkinsAdapter::from_config(&config)?;
    let bootstrapper = SshBootstrapper::from_config(config.clone(), Arc::new(cloud.clone()))?;
    let (policy, fallback) = WasmPolicy::load_with_fallback(&config.policy)
        .with_context(|| format!("loading policy {}", config.policy.source))?;
    let policy_info = policy.info(&config.policy.source)?;
    let decider = Decider { policy, fallback, on_error: config.policy.on_error };
    let shadow = match config.policy.shadow_config() {
        Some(settings) => {
            let (shadow, _) = WasmPolicy::load_with_fallback(&settings)
                .with_context(|| format!("loading the shadow policy {}", settings.source))?;
            Some(Arc::new(shadow) as Arc<dyn crate::engine::decide::PolicyPort>)
        }
        None => None,
    };
    let engine = Engine::with_board(config, cloud.clone(), jenkins, bootstrapper, decider, board);
    attach_board(&engine, &cloud, policy_info);
    engine.set_shadow(shadow);
    Ok((engine, cloud))
}

/// Tells the board what binary and policy run, and times every ECS and Jenkins request into
/// its metrics.
fn attach_board(engine: &Arc<LiveEngine>, cloud: &EcsCloud, policy: PolicyInfo) {
    let board = &engine.board;
    board.set_build_info(BuildInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        revision: option_env!("ECSP_GIT_REVISION").unwrap_or("unknown").into(),
        contracts: crate::policy::ACCEPTED_VERSIONS.split(", ").map(str::to_owned).collect(),
    });
    board.set_policy(policy);
    let observer = |service: Service| -> RequestObserver {
        let board = board.clone();
        Arc::new(move |action: &str, outcome: &'static str, elapsed: Duration| board.observe_request(service, action, outcome, elapsed))
    };
    cloud.client().observe_requests(observer(Service::Ecs));
    engine.jenkins().client().observe_requests(observer(Service::Jenkins));
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
/// memory for nothing. Large blocks are mapped on their own (see below). Call before the async
/// runtime starts its threads.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // A fixed threshold: blocks of 512 KiB and more (a listing's or a queue's JSON, a
        // fleet's models at 10,000 instances) are mapped on their own and unmapped when freed.
        // glibc's default raises the threshold to the largest block freed so far, after which
        // such blocks come from the arenas and their pages stay resident after the cycle.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 10);
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

/// Settings of `run`'s command line that win over the configuration file's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--shadow-policy`: `[policy] shadow`.
    pub shadow_policy: Option<String>,
}

impl Overrides {
    /// Reads the configuration file, then applies the command line's settings.
    pub fn load(&self, path: &Path) -> anyhow::Result<Config> {
        let mut config = Config::load(path)?;
        if let Some(shadow) = &self.shadow_policy {
            config.policy.shadow = Some(shadow.clone());
        }
        Ok(config)
    }
}

/// `run`: the daemon. Stops on SIGTERM or Ctrl-C after the current cycle, leaving the fleet
/// as it is (the next start adopts it). On SIGHUP it reads the configuration and the policy
/// again ([`reload::prepare`]); when they are good, the running engine finishes its cycle and
/// one wired from them takes over (adopting the fleet as a start does, on the same board);
/// when not, the running ones are kept and the error is logged.
/// `log_format` (the command line's) overrides the config file's `log-format`, and
/// `overrides` the other settings the command line gives, at start and on every reload.
pub async fn run(config_path: &Path, log_format: Option<LogFormat>, overrides: &Overrides) -> anyhow::Result<i32> {
    // Before anything else: a SIGTERM during start-up (loading and compiling the policy can
    // take seconds) then stops the process cleanly, instead of killing it by the default
    // action; a SIGHUP then waits for the loop.
    let stop = StopSignal::install()?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing a SIGHUP handler")?;
    let mut config = Arc::new(overrides.load(config_path)?);
    init_logging(log_format.unwrap_or(config.log_format), "info");
    for w in config.plaintext_warnings() {
        tracing::warn!("PLAINTEXT: {w}");
    }
    tracing::info!(policy = %config.policy.source, "starting: loading the policy");
    let wiring = tokio::task::spawn_blocking({
        let config = config.clone();
        move || wire(config)
    });
    let (mut engine, mut cloud) = tokio::select! {
        wired = wiring => wired.context("start-up task")??,
        _ = stop.requested() => {
            tracing::info!("stop requested during start-up; nothing was started");
            return Ok(0);
        }
    };
    let board = engine.board.clone();
    let mut journal = journal::start(&config)?;
    journal::attach(&engine, &journal);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (the `listen` setting)", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, controller = %config.controller_id, policy = %config.policy.source, "ecs-provisioner started");
    let elector = ha::join(&config, &engine)?;
    // Without [ha], one daemon per controller-id: a second one refuses to start.
    let sole = if elector.is_none() { Some(sole::SoleReplica::claim(&config).await?) } else { None };
    let serve = |listener: tokio::net::TcpListener| tokio::spawn(axum::serve(listener, crate::server::router(board.clone())).into_future());
    let mut server = serve(listener);
    let poll = config.poll_interval;
    let trimmer = tokio::spawn(async move {
        loop {
            tokio::time::sleep(poll).await;
            trim_heap();
        }
    });
    // The heartbeat stops the engine it started with when another daemon shows up; a
    // reloaded engine is not its: after a reload, a second daemon is still refused its start
    // by this one's live mark.
    let heartbeat = sole.map(|sole| sole.keep_beating(engine.clone()));
    systemd::ready("reconciling");
    let watchdog = systemd::spawn_watchdog(board.clone());
    loop {
        let stats = export_api_stats(&engine, &cloud);
        let mut cycles = tokio::spawn({
            let engine = engine.clone();
            async move { engine.run().await }
        });
        let mut ended = false;
        let next = loop {
            tokio::select! {
                _ = stop.requested() => break None,
                // Stopped from inside (the single-replica heartbeat).
                _ = &mut cycles => { ended = true; break None }
                _ = hangup.recv() => {
                    // A leader hands its engine to the election (ha::join); a reload would
                    // need a new election too. Not supported yet: restart the replica.
                    let prepared = if elector.is_some() {
                        Err(anyhow::anyhow!("reloading is not supported with [ha]: restart the replicas one at a time"))
                    } else {
                        reload::prepare(config_path, overrides, &config, &board).await
                    };
                    match prepared {
                        Ok(next) => break Some(next),
                        Err(e) => {
                            board.record_reload(false);
                            tracing::error!("reload refused, the running configuration and policy are kept: {e:#}");
                        }
                    }
                }
            }
        };
        if next.is_some() {
            systemd::reloading();
            tracing::info!("reload: finishing the current cycle");
        } else {
            systemd::stopping();
            tracing::info!("stop requested: finishing the current cycle");
            // A leader resigns first, at once: launches in flight are recorded in etcd, and
            // the next leader resends them with the same ClientToken.
            if let Some(elector) = &elector {
                elector.resign().await;
            }
        }
        engine.shutdown();
        if !ended {
            let _ = cycles.await;
        }
        stats.abort();
        let Some(next) = next else { break };
        if let Some(listener) = next.listener {
            server.abort();
            server = serve(listener);
        }
        if next.config.journal != config.journal {
            match journal::start(&next.config) {
                Ok(started) => journal = started,
                Err(e) => tracing::error!("[journal] changed but cannot be opened; the journal goes on as before: {e:#}"),
            }
        }
        journal::attach(&next.engine, &journal);
        (config, engine, cloud) = (next.config, next.engine, next.cloud);
        board.record_reload(true);
        tracing::info!(listen = %config.listen, policy = %config.policy.source, templates = config.templates.len(), "configuration and policy reloaded");
        systemd::ready("reconciling (reloaded)");
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    if let Some(heartbeat) = heartbeat {
        heartbeat.stop()?;
    }
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
    if crate::sim::agent::is_help_query(&args) {
        print!("{}", crate::sim::agent::USAGE);
        return Ok(0);
    }
    if crate::sim::agent::is_version_query(&args) {
        eprint!("{}", crate::sim::agent::JAVA_VERSION_BANNER);
        return Ok(0);
    }
    let args = crate::sim::agent::AgentArgs::parse(args)?;
    // The engine benchmark's in-process agents: hand over to the emulator and hold on.
    if let Some(socket) = std::env::var_os(crate::sim::agent_host::HANDOFF_ENV) {
        crate::sim::agent_host::hand_off(std::path::Path::new(&socket), &args)?;
    }
    crate::sim::agent::run(args).await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::colour_wanted;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour_wanted(true, None));
        assert!(!colour_wanted(false, None), "a pipe, a file or the journal");
        assert!(!colour_wanted(true, Some("1".into())), "NO_COLOR set");
        assert!(colour_wanted(true, Some("".into())), "NO_COLOR empty counts as unset");
    }
}
