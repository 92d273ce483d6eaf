//! `policy replay` and `policy trace`: what-if replays of a workload, and the traces they read
//! (generated, or imported from a Jenkins controller).

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use super::jenkins_history::Controller;
use crate::adapters::policy::WasmPolicy;
use crate::config::Config;
use crate::engine::decide::Decider;
use crate::replay::generate::{self, Shape};
use crate::replay::import::{self, Window};
use crate::replay::run::{Outcome, Settings, replay};
use crate::replay::trace::Trace;
use crate::replay::world::{Delays, Spread};

/// `policy replay TRACE --policy A.wasm [--policy B.wasm ...]`
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The trace: JSON lines, from `policy trace generate` (docs/replay.md has the format).
    pub trace: PathBuf,
    /// Configuration file: templates, limits, prices and poll interval, as `run` reads them.
    #[arg(short, long, default_value = "ecs-provisioner.toml")]
    pub config: PathBuf,
    /// A policy to replay (a .wasm file or builtin:default); repeat to compare several, which
    /// run in parallel. Default: the configuration's `[policy] source`.
    #[arg(long = "policy", value_name = "POLICY")]
    pub policies: Vec<String>,
    /// RunInstances to Running: a duration or a range drawn uniformly (`30s..60s`).
    #[arg(long, default_value = "30s..60s")]
    pub boot: Spread,
    /// SSH bootstrap time (init script, agent start).
    #[arg(long, default_value = "10s..20s")]
    pub bootstrap: Spread,
    /// Agent started to online in Jenkins.
    #[arg(long, default_value = "2s..5s")]
    pub connect: Spread,
    /// Seed of the random delays: the same trace, policy and seed give the same report.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Count builds that waited longer than this.
    #[arg(long, default_value = "5m")]
    pub slow_after: humantime::Duration,
    /// Run every cycle at the daemon's pace, also those that could only repeat the last one
    /// (slower; docs/replay.md says what skipping them changes: a policy's own clock
    /// thresholds are seen up to one poll interval late).
    #[arg(long)]
    pub every_tick: bool,
    /// Print the reports as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML page with the table and plots (queued builds, nodes
    /// and cost over time, one line per policy).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// `policy trace ...`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TraceCommand {
    /// Generate a seeded synthetic workload.
    Generate(GenerateArgs),
    /// Build a trace from a Jenkins controller's build history (REST API) or from the
    /// decision journal `run` keeps.
    Import(ImportArgs),
}

/// `policy trace import --jenkins URL | --journal DIR`
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["jenkins", "journal"])))]
pub struct ImportArgs {
    /// The controller's root URL, with any context path.
    #[arg(long, value_name = "URL")]
    pub jenkins: Option<String>,
    /// A decision journal directory (`[journal] dir`; docs/journal.md).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["user", "token_file", "config"])]
    pub journal: Option<PathBuf>,
    /// The user whose API token is in --token-file.
    #[arg(long, requires = "token_file")]
    pub user: Option<String>,
    /// A file holding the user's API token.
    #[arg(long, value_name = "FILE", requires = "user")]
    pub token_file: Option<PathBuf>,
    /// Without --user: take the user and token from this configuration's [jenkins] section
    /// (token-env or token-file), as `run` does. Neither: read anonymously.
    #[arg(short, long, value_name = "FILE", conflicts_with = "user")]
    pub config: Option<PathBuf>,
    /// Only builds that entered the queue at or after this time (RFC 3339); the trace starts
    /// here. Default: the first build's arrival.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only builds that entered the queue at or before this time (RFC 3339); the trace ends
    /// here. Default: the last build's arrival.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Where to write the trace (written whole or not at all).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// `policy trace generate`
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// steady, diurnal, bursty or release-day.
    #[arg(long, default_value = "diurnal")]
    pub shape: Shape,
    /// Length, days.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Number of builds.
    #[arg(long, default_value_t = 50_000)]
    pub builds: u32,
    /// A label expression and its weight, `linux=3`; repeat. None: unlabelled builds.
    #[arg(long = "label", value_name = "LABEL=WEIGHT", value_parser = parse_weighted)]
    pub labels: Vec<(String, u32)>,
    /// Median build duration.
    #[arg(long, default_value = "5m")]
    pub median_duration: humantime::Duration,
    /// Start of the period (RFC 3339).
    #[arg(long, default_value = "2026-01-05T00:00:00Z")]
    pub start: String,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the trace (written whole or not at all).
    #[arg(short, long)]
    pub output: PathBuf,
}

fn parse_weighted(s: &str) -> Result<(String, u32), String> {
    let (label, weight) = s.rsplit_once('=').unwrap_or((s, "1"));
    let weight: u32 = weight.parse().map_err(|_| format!("{s:?}: the weight after '=' must be a whole number"))?;
    crate::jenkins::label::LabelExpr::parse(label).map_err(|e| format!("{label:?} is not a label expression: {e}"))?;
    Ok((label.to_owned(), weight))
}

/// Reads a trace file, naming the file and line on error.
pub fn read_trace(path: &Path) -> anyhow::Result<Trace> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open the trace {}", path.display()))?;
    Trace::read(BufReader::new(file)).with_context(|| format!("{} is not a valid trace", path.display()))
}

/// The settings `policy replay`'s flags describe.
pub fn settings(args: &ReplayArgs) -> Settings {
    Settings {
        delays: Delays { boot: args.boot, bootstrap: args.bootstrap, connect: args.connect },
        seed: args.seed,
        slow_after_ms: args.slow_after.as_millis() as u64,
        every_tick: args.every_tick,
        ..Settings::default()
    }
}

/// Replays the trace with each policy, in parallel (one thread each); outcomes in the order
/// the policies were given.
pub fn replay_outcomes(args: &ReplayArgs) -> anyhow::Result<Vec<Outcome>> {
    let config = Arc::new(Config::load(&args.config)?);
    let trace = read_trace(&args.trace)?;
    let sources = if args.policies.is_empty() { vec![config.policy.source.clone()] } else { args.policies.clone() };
    let settings = settings(args);
    // Load every policy first: a bad path fails before any replay starts.
    let mut deciders = Vec::new();
    for source in &sources {
        let mut policy_config = config.policy.clone();
        policy_config.source = source.clone();
        let (policy, fallback) =
            WasmPolicy::load_for_replay(&policy_config).with_context(|| format!("cannot load the policy {source}"))?;
        deciders.push(Decider { policy, fallback, on_error: config.policy.on_error });
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = deciders
            .into_iter()
            .map(|decider| {
                let (config, trace, settings) = (Arc::clone(&config), &trace, &settings);
                s.spawn(move || -> anyhow::Result<Outcome> {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    Ok(rt.block_on(replay(config, trace, decider, settings)))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a replay thread panicked")).collect()
    })
}

/// `policy replay --json`'s document: the settings and one report per policy.
pub fn replay_json(args: &ReplayArgs, outcomes: &[Outcome]) -> serde_json::Value {
    let reports: Vec<_> = outcomes.iter().map(|o| &o.report).collect();
    serde_json::json!({ "settings": settings_json(&settings(args)), "policies": reports })
}

/// Runs `policy replay`: one report per policy, side by side.
pub fn replay_command(args: &ReplayArgs) -> anyhow::Result<i32> {
    let outcomes = replay_outcomes(args)?;
    let reports: Vec<_> = outcomes.iter().map(|o| o.report.clone()).collect();
    let table = crate::replay::report::table(&reports);
    if let Some(path) = &args.html {
        let page = crate::replay::html::page(&outcomes, &table).map_err(anyhow::Error::msg)?;
        write_whole(path, |out| out.write_all(page.as_bytes()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&replay_json(args, &outcomes))?);
    } else {
        print!("{table}");
    }
    Ok(0)
}

fn settings_json(s: &Settings) -> serde_json::Value {
    serde_json::json!({ "delays": s.delays, "seed": s.seed, "slow_after_ms": s.slow_after_ms })
}

/// Runs `policy trace ...`.
pub fn trace_command(cmd: &TraceCommand) -> anyhow::Result<i32> {
    match cmd {
        TraceCommand::Generate(a) => {
            let start = time::OffsetDateTime::parse(&a.start, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("--start {:?} is not an RFC 3339 time (e.g. 2026-01-05T00:00:00Z)", a.start))?;
            let trace = generate::generate(&generate::Options {
                shape: a.shape,
                start_ms: (start.unix_timestamp_nanos() / 1_000_000) as u64,
                days: a.days,
                builds: a.builds,
                labels: a.labels.clone(),
                median_duration_ms: a.median_duration.as_millis() as u64,
                seed: a.seed,
            });
            write_whole(&a.output, |out| trace.write(out))?;
            println!("wrote {} builds over {} days to {}", trace.builds.len(), a.days, a.output.display());
            Ok(0)
        }
        TraceCommand::Import(a) => import_command(a),
    }
}

/// `policy trace import --journal DIR`: the builds the journal saw, within the window.
fn import_journal(dir: &Path, window: &Window, output: &Path) -> anyhow::Result<i32> {
    let files = crate::journal::read_dir(dir)?;
    let (mut trace, summary) = crate::replay::from_journal::trace_from_journal(&files)
        .with_context(|| format!("cannot make a trace of the journal in {}", dir.display()))?;
    let before = trace.builds.len();
    trace.builds.retain(|b| window.contains(b.at_ms));
    if trace.builds.is_empty() {
        anyhow::bail!("no build in the journal in {} arrived {}", dir.display(), window.describe());
    }
    trace.start_ms = window.since_ms.unwrap_or(trace.start_ms);
    trace.end_ms = window.until_ms.unwrap_or(trace.end_ms).max(trace.start_ms);
    trace.events.retain(|e| e.at_ms() >= trace.start_ms && e.at_ms() <= trace.end_ms);
    write_whole(output, |out| trace.write(out))?;
    println!(
        "wrote {} builds from {} cycles of {} journal files to {} ({} paired with their queue item, {} started unqueued, {} never started given their template's median duration, {} dropped, {} outside the period)",
        trace.builds.len(),
        summary.cycles,
        files.len(),
        output.display(),
        summary.paired,
        summary.unqueued,
        summary.never_started,
        summary.dropped,
        before - trace.builds.len(),
    );
    Ok(0)
}

/// `policy trace import`: reads the whole history first, so that a failure writes nothing.
fn import_command(a: &ImportArgs) -> anyhow::Result<i32> {
    let window = Window { since_ms: a.since.as_deref().map(|t| epoch_ms("--since", t)).transpose()?, until_ms: a.until.as_deref().map(|t| epoch_ms("--until", t)).transpose()? };
    if let (Some(s), Some(u)) = (window.since_ms, window.until_ms)
        && u < s
    {
        anyhow::bail!("--until is before --since");
    }
    let Some(url) = &a.jenkins else {
        let dir = a.journal.as_ref().expect("clap requires --jenkins or --journal");
        return import_journal(dir, &window, &a.output);
    };
    let credentials = match (&a.user, &a.token_file, &a.config) {
        (Some(user), Some(file), _) => Some(crate::jenkins::Credentials::token_from_file(user, file)?),
        (_, _, Some(config)) => Some(crate::adapters::jenkins::credentials_from_config(&Config::load(config)?.jenkins)?),
        _ => None,
    };
    let controller = Controller::new(url, credentials)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let jobs = rt.block_on(controller.history(window.since_ms))?;
    let imported = import::to_trace(&jobs, window).with_context(|| format!("cannot import the build history of {url}"))?;
    if imported.without_queue_time > 0 {
        eprintln!(
            "warning: {} of {} builds carry no queue time (the Metrics plugin's TimeInQueueAction is absent): their arrival times are their start times, so their replayed waits start from zero",
            imported.without_queue_time,
            imported.trace.builds.len()
        );
    }
    if let Some(first) = imported.unlabelled_jobs.first() {
        eprintln!(
            "warning: {} jobs export no label expression (Pipeline jobs name theirs in the script), e.g. {first:?}: their builds are imported unlabelled",
            imported.unlabelled_jobs.len()
        );
    }
    write_whole(&a.output, |out| imported.trace.write(out))?;
    println!(
        "wrote {} builds of {} jobs to {} ({} running and {} outside the period skipped)",
        imported.trace.builds.len(),
        jobs.len(),
        a.output.display(),
        imported.running,
        imported.outside
    );
    Ok(0)
}

fn epoch_ms(flag: &str, time: &str) -> anyhow::Result<u64> {
    let t = time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{flag} {time:?} is not an RFC 3339 time (e.g. 2026-01-05T00:00:00Z)"))?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| anyhow::anyhow!("{flag} {time:?} is before 1970"))
}

/// Writes a file whole or not at all: into a temporary file beside it, then renamed.
fn write_whole(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    {
        let mut out = std::io::BufWriter::new(tmp.as_file_mut());
        write(&mut out).with_context(|| format!("writing {}", path.display()))?;
        out.flush()?;
    }
    tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
