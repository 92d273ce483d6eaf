//! Replays with a native policy whose decisions can be worked out by hand.

use std::sync::Arc;

use ecsp_config::{Config, OnPolicyError, TemplateConfig};
use ecsp_engine::decide::{Decider, Observation, Placement, PolicyPort};
use ecsp_engine::model::{Node, NodeState, Offering, Plan, PlannedLaunch, PlannedRemoval};
use ecsp_replay::generate::{self, Shape};
use ecsp_replay::run::{Outcome, Settings, replay};
use ecsp_replay::trace::{Build, CloudEvent, Trace};
use ecsp_replay::world::{Delays, Spread};

const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn config(extra: &str) -> Arc<Config> {
    Arc::new(
        Config::parse(&format!(
            r#"controller-id = "replay"
poll-interval = "10s"
[cloud]
region = "cn-test"
vpc-id = "v"
security-group-id = "s"
image-id = "m"
key-pair-name = "k"
prices = {{ "ecs.c7.large" = 1.0 }}
spot-prices = {{ "ecs.c7.large" = 0.25 }}
[jenkins]
url = "http://x/"
user = "u"
[[template]]
name = "linux"
labels = ["linux"]
max-nodes = 10
zones = ["cn-test-a"]
instance-types = ["ecs.c7.large"]
idle-timeout = "60s"
{extra}
"#
        ))
        .unwrap(),
    )
}

/// Launches one node per queued build not already covered by a node on its way or idle, and
/// removes nodes idle for the template's idle timeout. Fails, when told to, from a given time.
struct ByHand {
    fail_from_ms: Option<u64>,
    name: &'static str,
    /// Places on spot offerings instead of on-demand ones.
    spot: bool,
}

impl PolicyPort for ByHand {
    fn name(&self) -> &str {
        self.name
    }

    fn scale(&self, obs: &Observation<'_>) -> anyhow::Result<Plan> {
        if self.fail_from_ms.is_some_and(|t| obs.now_ms >= t) {
            anyhow::bail!("told to fail");
        }
        let mut plan = Plan::default();
        for t in obs.templates {
            let nodes = obs.nodes.iter().filter(|n| n.template() == t.name());
            let coming = nodes.clone().filter(|n| n.state.in_flight() || (n.state == NodeState::Online && !n.busy())).count();
            let queued = obs.queues.iter().find(|q| q.template == t.name()).map_or(0, |q| q.items.len());
            if queued > coming {
                plan.launches.push(PlannedLaunch { template: t.name().into(), count: (queued - coming) as u32, reason: "queue".into() });
            }
            let idle_limit = t.idle_timeout.as_millis() as u64;
            for n in nodes.filter(|n| n.state == NodeState::Online && n.agent.as_ref().is_some_and(|a| a.busy_executors == 0 && a.idle_ms >= idle_limit)) {
                plan.removals.push(PlannedRemoval { instance_id: n.instance_id().into(), reason: "idle".into() });
            }
        }
        Ok(plan)
    }

    fn place(&self, _: u64, _: &TemplateConfig, count: u32, offerings: &[&Offering], _: &[&Node]) -> anyhow::Result<Vec<Placement>> {
        // The first offering of its capacity type, whatever failed there lately.
        Ok(offerings.iter().position(|o| o.spot == self.spot).map(|i| vec![(i, count)]).unwrap_or_default())
    }
}

fn fixed_delays() -> Settings {
    Settings {
        delays: Delays { boot: Spread::fixed(30_000), bootstrap: Spread::fixed(10_000), connect: Spread::fixed(5_000) },
        ..Settings::default()
    }
}

fn run(config: Arc<Config>, trace: &Trace, policy: ByHand, settings: &Settings) -> Outcome {
    let decider = Decider { policy, fallback: ByHand { fail_from_ms: None, name: "fallback", spot: false }, on_error: OnPolicyError::Fallback };
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(replay(config, trace, decider, settings))
}

#[test]
fn ten_builds_and_fixed_delays_give_the_waits_and_node_hours_worked_out_by_hand() {
    let trace = Trace {
        start_ms: T0,
        end_ms: T0 + 300_000,
        builds: (0..10).map(|_| Build { at_ms: T0, label: Some("linux".into()), duration_ms: 60_000 }).collect(),
        events: vec![],
    };
    let out = run(config(""), &trace, ByHand { fail_from_ms: None, name: "by-hand", spot: false }, &fixed_delays());
    let r = &out.report;
    // t0: the first cycle sees 10 queued builds and launches 10 instances. Cycles then come
    // every 500 ms (builds wait). At t0+30 s the instances run: that cycle creates the Jenkins
    // nodes and starts the bootstraps, which take 10 s + 5 s to connect: online at t0+45 s,
    // when the ten builds start. Wait: 45 s each.
    assert_eq!((r.wait.p50_ms, r.wait.max_ms, r.wait.builds), (45_000, 45_000, 10), "{r:#?}");
    // The builds end at t0+105 s; cycles now come every 10 s (nothing waits, nothing is on
    // its way): 105, 115, ... The cycle at t0+165 s sees them idle for 60 s and removes them.
    // Node-hours: 10 x 165 s = 0.458 h, at 1.0 an hour on demand.
    assert_eq!(r.calls.launched, 10);
    assert_eq!(r.calls.removed, 10);
    assert_eq!(r.node_hours.on_demand, 0.458, "{r:#?}");
    assert_eq!(r.node_hours.spot, 0.0);
    assert_eq!(r.cost.total, 0.46);
    assert_eq!(r.peak_nodes, 10);
    assert_eq!((r.never_started, r.unservable, r.waited_longer), (0, 0, 0));
    // Arrivals stop at t0+300 s; the first cycle after it, at t0+305 s, ends the replay.
    assert_eq!(r.simulated_ms, 305_000);
}

/// A bursty day of 300 linux builds of about two minutes.
fn bursty_day(seed: u64) -> Trace {
    generate::generate(&generate::Options {
        shape: Shape::Bursty,
        start_ms: T0,
        days: 1,
        builds: 300,
        labels: vec![("linux".into(), 1)],
        median_duration_ms: 120_000,
        seed,
    })
}

#[test]
fn the_same_trace_policy_and_seed_give_a_byte_identical_report() {
    let trace = bursty_day(3);
    let settings = Settings { seed: 9, ..Settings::default() };
    let once = serde_json::to_string(&run(config(""), &trace, ByHand { fail_from_ms: None, name: "p", spot: false }, &settings)).unwrap();
    let twice = serde_json::to_string(&run(config(""), &trace, ByHand { fail_from_ms: None, name: "p", spot: false }, &settings)).unwrap();
    assert_eq!(once, twice);
    let other_seed = serde_json::to_string(&run(config(""), &trace, ByHand { fail_from_ms: None, name: "p", spot: false }, &Settings { seed: 10, ..settings })).unwrap();
    assert_ne!(once, other_seed, "the seed drives the delays");
}

#[test]
fn a_policy_that_fails_mid_replay_is_named_with_the_simulated_time() {
    let trace = Trace {
        start_ms: T0,
        end_ms: T0 + 120_000,
        builds: vec![Build { at_ms: T0 + 60_000, label: Some("linux".into()), duration_ms: 10_000 }],
        events: vec![],
    };
    let out = run(config(""), &trace, ByHand { fail_from_ms: Some(T0 + 60_000), name: "fails.wasm", spot: false }, &fixed_delays());
    let r = &out.report;
    assert!(r.policy_errors > 0);
    let first = r.first_policy_error.as_deref().unwrap();
    assert!(first.starts_with("2026-01-01T00:01:00Z (simulated); the fallback decided: told to fail"), "{first}");
    assert_eq!(r.never_started, 0, "the fallback served the build");
}

#[test]
fn stock_outs_and_reclaims_are_played() {
    let trace = Trace {
        start_ms: T0,
        end_ms: T0 + 600_000,
        builds: vec![
            Build { at_ms: T0, label: Some("linux".into()), duration_ms: 400_000 },
            Build { at_ms: T0, label: Some("gpu".into()), duration_ms: 1_000 },
        ],
        events: vec![
            CloudEvent::Stockout { zone: "cn-test-a".into(), instance_type: None, spot: Some(true), from_ms: T0, until_ms: T0 + 20_000 },
            CloudEvent::Reclaim { at_ms: T0 + 120_000, zone: "cn-test-a".into(), instance_type: None },
        ],
    };
    let out = run(config("spot = \"spot-first\""), &trace, ByHand { fail_from_ms: None, name: "p", spot: true }, &fixed_delays());
    let r = &out.report;
    assert_eq!(r.unservable, 1, "no template serves gpu");
    // Spot is out of stock for the first 20 s, and this policy asks for the same spot offering
    // every cycle (500 ms apart while the build waits): 40 refusals, then a launch at t0+20 s,
    // online 45 s later. The reclaim notice at t0+120 s takes that instance at t0+420 s, under
    // the 400 s build that started at t0+65 s.
    assert_eq!(r.calls.stockout_hits, 40, "{r:#?}");
    assert_eq!(r.wait_by_label["linux"].max_ms, 65_000, "{r:#?}");
    assert_eq!(r.node_hours.on_demand, 0.0, "{r:#?}");
    assert_eq!((r.calls.reclaimed, r.interrupted), (1, 1), "{r:#?}");
    assert_eq!(r.never_started, 0);
    assert!(!out.series.is_empty());
}

/// Launches nothing, ever: a shadow that always disagrees when builds wait.
struct Idle;

impl PolicyPort for Idle {
    fn name(&self) -> &str {
        "idle-shadow"
    }
    fn scale(&self, _: &Observation<'_>) -> anyhow::Result<Plan> {
        Ok(Plan::default())
    }
    fn place(&self, _: u64, _: &TemplateConfig, _: u32, _: &[&Offering], _: &[&Node]) -> anyhow::Result<Vec<Placement>> {
        Ok(vec![])
    }
}

#[test]
fn a_shadow_policy_is_judged_every_cycle_and_never_acts() {
    use ecsp_engine::Engine;
    use ecsp_replay::world::{Shared, SimBootstrap, SimCloud, SimJenkins, World};
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;

    let trace = Trace {
        start_ms: T0,
        end_ms: T0 + 1000,
        builds: (0..5).map(|_| Build { at_ms: T0, label: Some("linux".into()), duration_ms: 1000 }).collect(),
        events: vec![],
    };
    let config = config("");
    let world = Shared(Arc::new(Mutex::new(World::new(&config, &trace, fixed_delays().delays, 1))));
    let clock = world.0.lock().unwrap().clock();
    let decider = Decider { policy: ByHand { fail_from_ms: None, name: "active", spot: false }, fallback: Idle, on_error: OnPolicyError::Hold };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let engine = Engine::with_clock(
            config,
            SimCloud(world.clone()),
            SimJenkins(world.clone()),
            SimBootstrap(world.clone()),
            decider,
            Arc::new(move || clock.load(Ordering::SeqCst)),
        );
        engine.set_shadow(Some(Arc::new(Idle)));
        world.0.lock().unwrap().advance_to(T0);
        let report = engine.cycle(true).await;
        let verdict = report.shadow.expect("judged");
        assert_eq!((verdict.policy.as_str(), verdict.outcome), ("idle-shadow", "differed"));
        assert_eq!(verdict.differences, ["launch linux: active 5, shadow 0"]);
        assert_eq!(world.0.lock().unwrap().calls().launched, 5, "the active plan was carried out, the shadow's not");
        let metrics = engine.board.metrics_text();
        assert!(metrics.contains("ecs_provisioner_shadow_decisions_total{outcome=\"differed\"} 1"), "{metrics}");
        assert_eq!(engine.board.status_json()["shadow"]["policy"], "idle-shadow");

        engine.set_shadow(None);
        assert!(engine.cycle(true).await.shadow.is_none());
    });
}

/// Skipping the cycles that could only repeat the last one changes nothing the report or
/// the plots show: launches, removals, waits, node-hours, clamps, cycles and every sample are
/// those of a replay that computes every cycle of the daemon's pace, in under half the
/// cycles. The policy here is clock-driven too (idle removals at the idle timeout), and the
/// trace has a stock-out and a reclaim.
#[test]
fn skipping_cycles_that_could_only_repeat_the_last_one_changes_no_figure() {
    let mut trace = bursty_day(5);
    trace.events = vec![
        CloudEvent::Stockout {
            zone: "cn-test-a".into(),
            instance_type: None,
            spot: Some(true),
            from_ms: T0 + 36_000_000,
            until_ms: T0 + 39_600_000,
        },
        CloudEvent::Reclaim {
            at_ms: T0 + 50_400_000,
            zone: "cn-test-a".into(),
            instance_type: None,
        },
    ];
    let policy = || ByHand {
        fail_from_ms: None,
        name: "p",
        spot: true,
    };
    let every = run(
        config("spot = \"spot-first\""),
        &trace,
        policy(),
        &Settings {
            every_tick: true,
            ..Settings::default()
        },
    );
    let skipping = run(config("spot = \"spot-first\""), &trace, policy(), &Settings::default());
    assert_eq!(every.computed_cycles, every.report.cycles);
    assert!(
        skipping.computed_cycles * 2 < every.computed_cycles,
        "skipping computed {} cycles, every tick {}",
        skipping.computed_cycles,
        every.computed_cycles
    );
    assert!(
        every.report.calls.launched > 20 && every.report.calls.removed > 20,
        "{:#?}",
        every.report
    );
    let figures = |o: &Outcome| serde_json::to_string_pretty(o).unwrap();
    assert_eq!(
        figures(&skipping),
        figures(&every),
        "the same report and plots, the skipped cycles included"
    );
}
