//! The warm pool (issue 13, part 2), end to end on the emulators: idle nodes are stopped
//! instead of deleted (`idle-action = "stop"`), started again when builds come back, and an
//! instance that cannot start (its zone out of stock after an economical-mode stop) is replaced
//! within the same cycle.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::engine::{Harness, Setup, Template, agent_nodes, our_instances, wait_until};
use ecs_provisioner::engine::lifecycle::warm::STOPPED_PREFIX;
use ecs_provisioner::sim::jenkins::JobKind;

/// Runs `sim-agent`: see `tests/src/bin/e2e-provisioner.rs`.
const EXE: &str = env!("CARGO_BIN_EXE_e2e-provisioner");

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// One executor, up to 2 nodes, idle after 2 s, stopped rather than deleted; the init script
/// appends a line per run.
fn warm_template() -> Template {
    let mut linux = Template::new("linux", 1, 0, 2);
    linux.init_script = "echo ran >> init-runs";
    linux.extra = "idle-action = \"stop\"\nstopped-mode = \"stop-charging\"\nmax-stopped = 2".into();
    linux
}

fn completed(h: &Harness) -> usize {
    h.cluster.jenkins.stats().completed.len()
}

/// Waits until `id` is stopped in the cloud and its node kept offline as stopped.
async fn wait_stopped(h: &Harness, id: &str) {
    wait_until(&format!("{id} stopped, its node kept offline"), secs(60.0), || {
        let stopped = our_instances(&h.cluster).iter().any(|i| i.instance_id == id && i.stopped && i.status == "Stopped");
        let marked = agent_nodes(&h.cluster).iter().any(|n| {
            n.name.ends_with(id) && !n.connected && n.offline_message.as_deref().is_some_and(|m| m.starts_with(STOPPED_PREFIX))
        });
        stopped && marked
    }, || h.describe())
    .await;
}

/// A node that idles out is stopped, not deleted, and shown apart; the next build starts the
/// same instance (same id, no new RunInstances), whose agent comes back without the init
/// script running again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_start_cycle_reuses_the_same_instance() {
    let mut h = Harness::start(&Setup::new(EXE, vec![warm_template()])).await;
    h.spawn_loop();
    h.enqueue("linux", JobKind::Freestyle, 1, secs(0.3));
    wait_until("the first build ran", secs(60.0), || completed(&h) == 1, || h.describe()).await;
    let first = h.cluster.jenkins.stats().completed[0].node.clone();
    let id = our_instances(&h.cluster)[0].instance_id.clone();
    assert!(first.ends_with(&id), "{first} vs {id}");

    wait_stopped(&h, &id).await;
    wait_until("the report counts the node as stopped, apart", secs(10.0), || {
        let r = h.engine.last_report().unwrap();
        r.nodes.get("linux").and_then(|m| m.get("stopped")) == Some(&1) && !r.nodes["linux"].contains_key("online")
    }, || h.describe())
    .await;
    let metrics = h.engine.board.metrics_text();
    assert!(metrics.contains(r#"ecs_provisioner_nodes{template="linux",state="stopped"} 1"#), "{metrics}");

    let launches = h.cluster.ecs.counters().get("RunInstances").map_or(0, |c| c.calls);
    h.enqueue("linux", JobKind::Freestyle, 1, secs(0.3));
    wait_until("the second build ran", secs(60.0), || completed(&h) == 2, || h.describe()).await;
    let second = h.cluster.jenkins.stats().completed[1].clone();
    assert!(second.node.ends_with(&id) && second.result == "SUCCESS", "{second:?}");
    let ids: BTreeSet<String> = our_instances(&h.cluster).into_iter().map(|i| i.instance_id).collect();
    assert_eq!(ids, BTreeSet::from([id.clone()]), "started, not replaced");
    assert_eq!(h.cluster.ecs.counters().get("RunInstances").map_or(0, |c| c.calls), launches, "no new launch");
    assert!(h.cluster.ecs.counters().get("StartInstances").is_some_and(|c| c.calls >= 1));
    let runs = std::fs::read_to_string(h.cluster.dir.join("instances").join(&id).join("agent/init-runs")).unwrap();
    assert_eq!(runs.lines().collect::<Vec<_>>(), ["ran"], "the init script ran once");
    h.caps.assert_within(&h.config);
    h.shutdown().await;
}

/// After an economical-mode stop the instance's zone runs out of stock: StartInstances fails,
/// and in that same cycle the instance is deleted and a new one launched in another zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_falls_back_to_a_new_launch_in_the_same_cycle() {
    let mut h = Harness::start(&Setup::new(EXE, vec![warm_template()])).await;
    h.spawn_loop();
    h.enqueue("linux", JobKind::Freestyle, 1, secs(0.3));
    wait_until("the first build ran", secs(60.0), || completed(&h) == 1, || h.describe()).await;
    let stopped = our_instances(&h.cluster)[0].clone();
    wait_stopped(&h, &stopped.instance_id).await;

    // A fresh process driven cycle by cycle, so the fallback is seen within one cycle.
    h.restart_engine(|j| j).await;
    h.cluster.ecs.cloud().set_stock(&stopped.zone_id, &stopped.instance_type, 0);
    h.enqueue("linux", JobKind::Freestyle, 1, secs(0.3));
    // Cycles until one tries to start it (the queue shows the build within a cycle or two).
    let mut report = None;
    for _ in 0..50 {
        let r = h.engine.cycle(true).await;
        if !r.launch_errors.is_empty() || !r.started.is_empty() {
            report = Some(r);
            break;
        }
        tokio::time::sleep(secs(0.2)).await;
    }
    let Some(r) = report else { panic!("no cycle tried to start the stopped instance: {}", h.describe()) };
    assert!(r.started.is_empty(), "{r:?}");
    let failure = &r.launch_errors[0];
    assert_eq!((failure.code.as_str(), failure.capacity), ("OperationDenied.NoStock", true), "{r:?}");
    assert!(failure.error.contains("StartInstances"), "{r:?}");
    assert!(r.removed.contains(&stopped.instance_id), "the stopped instance was not deleted: {r:?}");
    let launched: Vec<_> = r.launched.iter().flat_map(|l| l.instance_ids.iter().map(move |id| (id, &l.zone))).collect();
    assert_eq!(launched.len(), 1, "{r:?}");
    assert_ne!(launched[0].1, &stopped.zone_id, "launched in the zone out of stock: {r:?}");

    h.spawn_loop();
    wait_until("the second build ran on the new instance", secs(60.0), || completed(&h) == 2, || h.describe()).await;
    assert!(h.cluster.jenkins.stats().completed[1].node.ends_with(launched[0].0.as_str()));
    wait_until("the out-of-stock instance and its node are gone", secs(30.0), || {
        our_instances(&h.cluster).iter().all(|i| i.instance_id != stopped.instance_id)
            && agent_nodes(&h.cluster).iter().all(|n| !n.name.ends_with(stopped.instance_id.as_str()))
    }, || h.describe())
    .await;
    h.caps.assert_within(&h.config);
    h.shutdown().await;
}
