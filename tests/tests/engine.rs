//! The provisioning engine end to end (issue 6, "Done when"): the live adapters against the
//! ECS, instance-SSH and Jenkins emulators, agents as real child processes.

use std::time::Duration;

use e2e::engine::{Harness, Setup, Template, assert_builds_succeeded, wait_until};
use ecs_provisioner::sim::jenkins::JobKind;

/// Runs `sim-agent` (and the daemon, in the crash test): see `tests/src/bin/e2e-provisioner.rs`.
const EXE: &str = env!("CARGO_BIN_EXE_e2e-provisioner");

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Queued builds on two labels: agents are launched, bootstrapped over SSH, connect, run every
/// build, and the fleet goes back to each template's minimum after the idle timeout — with no
/// cap exceeded at any sampled moment (max-total-nodes 5 is below what demand asks for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_on_two_labels_and_returns_to_minimum() {
    let mut setup = Setup::new(EXE, vec![Template::new("linux", 2, 1, 3), Template::new("docker", 1, 0, 3)]);
    setup.cloud_extra = "max-total-nodes = 5".into();
    let mut h = Harness::start(&setup).await;
    h.spawn_loop();
    h.enqueue("linux", JobKind::Freestyle, 6, secs(1.5));
    h.enqueue("docker", JobKind::Pipeline, 4, secs(1.0));

    wait_until("all 10 builds completed", secs(90.0), || {
        let s = h.cluster.jenkins.stats();
        s.completed.len() == 10 && s.queued == 0 && s.running == 0
    }, || h.describe())
    .await;
    assert_builds_succeeded(&h.cluster, 10);
    let stats = h.cluster.jenkins.stats();
    for b in &stats.completed {
        let label = b.label.as_deref().unwrap_or_default();
        assert!(b.node.starts_with(&format!("{label}-i-")), "build {b:?} ran on another template's node");
    }
    wait_until("the fleet is back to its minimum", secs(60.0), || h.at_minimum(), || h.describe()).await;

    let totals = h.engine.board.totals();
    assert!(totals.launched >= 3, "{totals:?}");
    assert!(totals.removed >= 2, "{totals:?}");
    let (accepted, _) = h.cluster.ssh.connection_counts();
    assert!(accepted > 0, "no agent was bootstrapped over SSH");
    h.caps.assert_within(&h.config);
    let seen = h.caps.seen();
    assert!(seen.total >= 4, "demand should have grown the fleet near its caps: {seen:?}");
    h.shutdown().await;
}
