//! The replay driver: the real engine, cycle after cycle, against the simulated world.
//!
//! The cycle pace is the daemon's own ([`ecsp_engine::pause_after`]): the poll interval when
//! all is quiet, 500 ms while nodes are on their way or builds wait. Between cycles the world
//! plays its timed events at their exact instants. Nothing sleeps: a month takes as long as
//! its cycles take to compute.
//!
//! Cycles that could only repeat the last one are skipped: after a cycle that did nothing
//! (no launch, removal, chore, error or unplaced node), while nothing changes in the
//! world, the next cycle is the first tick of the daemon's pace at or after the next change
//! ([`World::next_change_after`]), a launch hold's end, or one poll interval, whichever comes
//! first. So everything the world or the engine schedules is seen at the same tick as with
//! every cycle run; only a policy's own clock (an office-hours window) is seen up to one
//! poll interval late, as the daemon sees it when quiet. `Settings::every_tick` runs them all.
//! Skipped cycles count in the report's `cycles` and `clamps` as the repeats they would be.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use ecsp_config::Config;
use ecsp_engine::decide::{DecidedBy, Decider, PolicyPort};
use ecsp_engine::{CycleReport, Engine, pause_after};

use super::report::{self, PolicyReport};
use super::trace::Trace;
use super::world::{Delays, Shared, SimBootstrap, SimCloud, SimJenkins, World};

/// The replay's knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Boot, bootstrap and connect times.
    pub delays: Delays,
    /// Seed of every random delay.
    pub seed: u64,
    /// Builds waiting longer than this are counted apart.
    pub slow_after_ms: u64,
    /// The replay stops this long after the trace's end even if builds still wait.
    pub overrun_ms: u64,
    /// Points in each time series of the report (at most).
    pub samples: u32,
    /// Run every cycle of the daemon's pace, also those that could only repeat the last one.
    pub every_tick: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { delays: Delays::default(), seed: 1, slow_after_ms: 5 * 60_000, overrun_ms: 24 * 3_600_000, samples: 1500, every_tick: false }
    }
}

/// One point of the time series: what the fleet and the queue looked like.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Simulated time, ms since the Unix epoch.
    pub at_ms: u64,
    /// Builds waiting that a template can serve.
    pub queued: u32,
    /// Nodes on their way (requested to connecting).
    pub in_flight: u32,
    /// Nodes online running at least one build.
    pub busy: u32,
    /// Nodes online and idle.
    pub idle: u32,
    /// Nodes in any other state (offline, draining, terminating...).
    pub other: u32,
    /// Cost so far at the configured prices.
    pub cost: f64,
}

/// One policy's replay: the figures and the time series.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outcome {
    /// The figures.
    pub report: PolicyReport,
    /// The time series, evenly spaced.
    pub series: Vec<Sample>,
    /// Cycles the replay computed; the report's `cycles` also counts those it skipped
    /// because they could only repeat the last one.
    #[serde(skip)]
    pub computed_cycles: u64,
}

/// Replays `trace` with the engine deciding through `decider`.
///
/// Must run on a current-thread Tokio runtime: the engine's background tasks then run in the
/// same order every time, which keeps the result byte-for-byte reproducible.
pub async fn replay<P: PolicyPort, F: PolicyPort>(
    config: Arc<Config>,
    trace: &Trace,
    decider: Decider<P, F>,
    settings: &Settings,
) -> Outcome {
    let world = Shared(Arc::new(Mutex::new(World::new(&config, trace, settings.delays, settings.seed))));
    let clock = world.0.lock().unwrap().clock();
    let name = decider.policy.name().to_owned();
    let engine = Engine::with_clock(
        Arc::clone(&config),
        SimCloud(world.clone()),
        SimJenkins(world.clone()),
        SimBootstrap(world.clone()),
        decider,
        Arc::new(move || clock.load(Ordering::SeqCst)),
    );
    engine.offline();
    let mut r = PolicyReport { policy: name, slow_after_ms: settings.slow_after_ms, ..PolicyReport::default() };
    let span = (trace.end_ms - trace.start_ms).max(1);
    let sample_every = (span / u64::from(settings.samples.max(1))).max(1000);
    let mut series = Vec::new();
    let mut next_sample = trace.start_ms;
    let hard_end = trace.end_ms + settings.overrun_ms;
    let mut t = trace.start_ms;
    let mut computed = 0;
    loop {
        world.0.lock().unwrap().advance_to(t);
        let cycle = engine.cycle(true).await;
        // Let the bootstraps the cycle started reach the world before time moves on.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        engine.reap_tasks();
        computed += 1;
        let w = world.0.lock().unwrap();
        r.peak_nodes = r.peak_nodes.max(w.alive() as u64);
        let drained = t >= trace.end_ms && w.servable_queued() == 0 && w.running() == 0;
        if drained || t >= hard_end {
            tally(&mut r, &cycle, t, 1);
            while next_sample <= t {
                series.push(sample(&cycle, &w, &config, next_sample));
                next_sample += sample_every;
            }
            report::summarize(&mut r, w.builds(), &w.lives(), &config, trace.start_ms, t);
            r.calls = w.calls();
            break;
        }
        let pause = (pause_after(&cycle, config.poll_interval).as_millis() as u64).max(1);
        // Ticks of the daemon's pace until the next cycle worth computing: the skipped ones
        // would repeat this one, and are counted as such.
        let ticks = if settings.every_tick || !inert(&cycle) {
            1
        } else {
            let poll = (config.poll_interval.as_millis() as u64).max(pause);
            let holds = cycle.launch_holds.values().map(|h| h.until_ms).filter(|at| *at > t);
            let wake = w.next_change_after(t).into_iter().chain(holds).fold(t + poll, u64::min);
            (wake - t).div_ceil(pause).max(1)
        };
        tally(&mut r, &cycle, t, ticks);
        t += ticks * pause;
        // What this cycle saw holds until the next one: the samples up to it show it.
        while next_sample < t {
            series.push(sample(&cycle, &w, &config, next_sample));
            next_sample += sample_every;
        }
        drop(w);
    }
    engine.shutdown();
    Outcome { report: r, series, computed_cycles: computed }
}

/// Whether a cycle did nothing that its successor could follow up: then, while the world
/// stands still, the next cycles would only repeat it. A plan clamped to nothing qualifies
/// (the caps clamp it the same way next time); a launch that found no offering does not
/// (offerings cool down on the engine's own clock).
fn inert(c: &CycleReport) -> bool {
    c.enforced.launches.is_empty()
        && c.enforced.removals.is_empty()
        && c.policy_error.is_none()
        && c.launched.is_empty()
        && c.launch_errors.is_empty()
        && c.unplaced.is_empty()
        && c.removed.is_empty()
        && c.stopped.is_empty()
        && c.started.is_empty()
        && c.kept_busy.is_empty()
        && c.chores.is_empty()
        && c.errors.is_empty()
        && c.bootstrap_failures.is_empty()
}

/// Counts a cycle, and the `ticks - 1` skipped after it that would have repeated it.
fn tally(r: &mut PolicyReport, cycle: &CycleReport, t: u64, ticks: u64) {
    r.cycles += ticks;
    r.clamps += cycle.clamps.len() as u64 * ticks;
    if let Some(e) = &cycle.policy_error {
        r.policy_errors += 1;
        if r.first_policy_error.is_none() {
            let by = if cycle.decided_by == Some(DecidedBy::Fallback) { "; the fallback decided" } else { "" };
            r.first_policy_error = Some(format!("{} (simulated){by}: {e}", rfc3339(t)));
        }
    }
}

fn sample(cycle: &CycleReport, w: &World, config: &Config, at_ms: u64) -> Sample {
    let mut s = Sample { at_ms, queued: w.servable_queued() as u32, ..Sample::default() };
    for (state, n) in cycle.nodes.values().flat_map(|m| m.iter()) {
        match state.as_str() {
            "requested" | "pending" | "running" | "bootstrapping" | "connecting" => s.in_flight += n,
            "online" => {}
            _ => s.other += n,
        }
    }
    let online: u32 = cycle.nodes.values().filter_map(|m| m.get("online")).sum();
    s.busy = (w.busy_nodes() as u32).min(online);
    s.idle = online - s.busy;
    s.cost = report::usage(w.gone().iter().chain(&w.alive_lives()), config, at_ms).1.total;
    s
}

/// `2026-01-01T00:00:00Z` for ms since the Unix epoch.
pub fn rfc3339(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}
