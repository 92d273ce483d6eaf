//! Demand to agent online: a stopped instance started from the warm pool against a new launch
//! (issue 13), on the emulators with boot delays of the order real ECS shows.
//!
//! Emulated delays: a new instance is `Pending` for `ECSP_BENCH_PENDING_MS` (default 15 s) and
//! `Starting` for `ECSP_BENCH_STARTING_MS` (default 10 s); a started stopped instance goes through
//! `Starting` only. Both templates run the same init script, `sleep ECSP_BENCH_INIT_S` (default
//! 15 s, a small image's tool install), which a started instance does not run again. Each sample
//! queues one build and times the enqueue to its node's agent connected in Jenkins; the
//! provisioner loop runs in this process as `ecs-provisioner run` would run it.
//!
//! `cargo bench -p e2e --bench warm_start`; `ECSP_BENCH_SAMPLES` (default 2) samples of each.

use std::time::{Duration, Instant};

use e2e::engine::{Harness, Setup, Template, agent_nodes, our_instances, tag, wait_until};
use ecs_provisioner::adapters::cloud::TAG_TEMPLATE;
use ecs_provisioner::sim::ecs::Timings;
use ecs_provisioner::sim::jenkins::JobKind;

const EXE: &str = env!("CARGO_BIN_EXE_e2e-provisioner");

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Queues one build on `label` and returns the time until a node of `template` is connected.
async fn demand_to_online(h: &Harness, label: &str, template: &str) -> Duration {
    let before = h.cluster.jenkins.stats().completed.len();
    let started = Instant::now();
    h.enqueue(label, JobKind::Freestyle, 1, Duration::from_millis(200));
    wait_until("an agent online", Duration::from_secs(300), || {
        agent_nodes(&h.cluster).iter().any(|n| n.name.starts_with(&format!("{template}-i-")) && n.connected)
    }, || h.describe())
    .await;
    let took = started.elapsed();
    wait_until("the build ran", Duration::from_secs(60), || h.cluster.jenkins.stats().completed.len() > before, || h.describe()).await;
    took
}

/// Waits until the template has no connected node (deleted or stopped after idling out).
async fn idle_out(h: &Harness, template: &str) {
    wait_until("the node idled out", Duration::from_secs(120), || {
        // A deleted instance is gone; a stopped one stays, stopped.
        let stopped_or_gone = our_instances(&h.cluster)
            .iter()
            .filter(|i| tag(i, TAG_TEMPLATE) == Some(template))
            .all(|i| i.stopped && i.status == "Stopped");
        stopped_or_gone && !agent_nodes(&h.cluster).iter().any(|n| n.name.starts_with(&format!("{template}-i-")) && n.connected)
    }, || h.describe())
    .await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // RUST_LOG=info shows the provisioner loop's log (it runs in this process).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    }
    let samples = env_u64("ECSP_BENCH_SAMPLES", 2);
    let timings = Timings {
        pending_ms: env_u64("ECSP_BENCH_PENDING_MS", 15_000),
        starting_ms: env_u64("ECSP_BENCH_STARTING_MS", 10_000),
        stopping_ms: 3_000,
    };
    let init = format!("sleep {}", env_u64("ECSP_BENCH_INIT_S", 15));
    let init: &'static str = Box::leak(init.into_boxed_str());
    let mut fresh = Template::new("fresh", 1, 0, 1);
    let mut warm = Template::new("warm", 1, 0, 1);
    for t in [&mut fresh, &mut warm] {
        t.init_script = init;
        t.launch_timeout = "300s";
    }
    warm.extra = "idle-action = \"stop\"\nmax-stopped = 1".into();
    let mut setup = Setup::new(EXE, vec![fresh, warm]);
    setup.timings = Some(timings);
    let mut h = Harness::start(&setup).await;
    h.spawn_loop();

    let mut launch = Vec::new();
    for _ in 0..samples {
        launch.push(demand_to_online(&h, "fresh", "fresh").await);
        idle_out(&h, "fresh").await;
    }
    // The warm pool's first instance is a launch too; only the starts after it are timed.
    demand_to_online(&h, "warm", "warm").await;
    idle_out(&h, "warm").await;
    let mut start = Vec::new();
    for _ in 0..samples {
        start.push(demand_to_online(&h, "warm", "warm").await);
        idle_out(&h, "warm").await;
    }
    let starts = h.cluster.ecs.counters().get("StartInstances").map_or(0, |c| c.calls);
    h.shutdown().await;

    let show = |d: &[Duration]| d.iter().map(|d| format!("{:.1} s", d.as_secs_f64())).collect::<Vec<_>>().join(", ");
    let mean = |d: &[Duration]| d.iter().map(Duration::as_secs_f64).sum::<f64>() / d.len().max(1) as f64;
    println!("emulated delays: pending {} ms, starting {} ms; init script `{init}`", timings.pending_ms, timings.starting_ms);
    println!("new launch, demand -> agent online: {} (mean {:.1} s)", show(&launch), mean(&launch));
    println!("warm start, demand -> agent online: {} (mean {:.1} s); StartInstances calls: {starts}", show(&start), mean(&start));
}
