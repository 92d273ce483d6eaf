//! User-data launches end to end (issue 13, part 1): agents that start themselves from
//! cloud-init, on instances that run no sshd at all. The ECS emulator runs each instance's user
//! data as a real `sh` in the instance's directory when it first boots; the agents it starts
//! dial out to the Jenkins emulator over WebSocket.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use e2e::engine::{Harness, Setup, Template, agent_nodes, assert_builds_succeeded, node_name_of, our_instances, wait_for, wait_until};
use ecs_provisioner::adapters::cloud::TAG_NODE;
use ecs_provisioner::sim::jenkins::JobKind;

/// Runs `sim-agent` (the instances' `java`): see `tests/src/bin/e2e-provisioner.rs`.
const EXE: &str = env!("CARGO_BIN_EXE_e2e-provisioner");

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn user_data_setup(template: Template) -> Setup {
    let mut setup = Setup::new(EXE, vec![template]);
    setup.sshd = false;
    setup
}

fn user_data_template(min: u32, max: u32) -> Template {
    let mut t = Template::new("linux", 1, min, max);
    t.extra = "launch = \"user-data\"".into();
    t
}

/// Builds queued on a user-data template: instances are launched with the node's script in
/// their user data, their agents connect by themselves, run every build, and the fleet goes
/// back to its minimum — while no sshd runs anywhere and no SSH connection is ever made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_data_fleet_scales_up_and_down_with_no_ssh_listener() {
    let mut h = Harness::start(&user_data_setup(user_data_template(0, 3))).await;
    assert!(!h.cluster.ssh.sshd(), "the instances must run no sshd");
    h.spawn_loop();
    h.enqueue("linux", JobKind::Freestyle, 5, secs(1.5));

    // While agents run: the secret file is the node's own, readable by its owner only, and the
    // init script ran (the script really ran on the instance).
    let (instance, dir) = wait_for("a user-data agent online", secs(60.0), || async {
        let nodes = agent_nodes(&h.cluster);
        our_instances(&h.cluster).into_iter().find_map(|i| {
            let online = nodes.iter().any(|n| n.name == node_name_of(&i) && n.connected);
            let dir = h.cluster.ssh.instance_dir(&i.instance_id).join("agent");
            (online && dir.join("provisioned.txt").exists()).then_some((i, dir))
        })
    }, || h.describe())
    .await;
    let node = node_name_of(&instance);
    assert!(node.starts_with("linux-u-"), "user-data nodes are named from their launch: {node}");
    let secret_file = dir.join(".ecs-provisioner/agent-secret");
    let mode = std::fs::metadata(&secret_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", secret_file.display());
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    assert_eq!(secret.trim(), h.cluster.jenkins.agent_secret(&node), "the file holds this node's secret");

    wait_until("every build completed", secs(90.0), || {
        let s = h.cluster.jenkins.stats();
        s.completed.len() == 5 && s.queued == 0 && s.running == 0
    }, || h.describe())
    .await;
    wait_until("the fleet back at its minimum (0), no node left", secs(60.0), || h.at_minimum(), || h.describe()).await;

    assert_builds_succeeded(&h.cluster, 5);
    let totals = h.engine.board.totals();
    assert!(totals.launched >= 2, "demand for 5 builds scaled the fleet up: {totals:?}");
    assert_eq!(totals.removed, totals.launched, "and back down: {totals:?}");
    // One RunInstances per instance, each with its node's user data and node tag.
    let runs: Vec<_> = h.cluster.ecs.run_instances_log().into_iter().filter(|r| r.code.is_empty()).collect();
    assert_eq!(runs.len() as u64, totals.launched);
    for r in &runs {
        assert_eq!(r.params.get("Amount").map(String::as_str), Some("1"), "{:?}", r.params);
        assert!(r.params.contains_key("UserData"), "{:?}", r.params);
        assert!(r.params.values().any(|v| v == TAG_NODE), "the node tag: {:?}", r.params);
        assert_eq!(r.params.get("HttpTokens").map(String::as_str), Some("required"), "metadata hardened by default");
    }
    assert_eq!(h.cluster.ssh.connection_counts(), (0, 0), "nothing ever connected into an instance");
    assert!(h.cluster.ssh.logins().is_empty());
    h.caps.assert_within(&h.config);
    h.shutdown().await;
}

/// An agent that never connects (here its init script fails, so it is never started): the
/// instance is terminated at its launch timeout, and the reason — in the cycle's errors, which
/// `/status` shows, and in the log — carries the tail of the instance's console output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_data_agent_that_never_connects_is_terminated_with_the_console_tail() {
    let mut t = user_data_template(1, 1);
    t.launch_timeout = "10s";
    t.init_script = "echo mounting /dev/vdb; echo 'mount: /dev/vdb: no such device' >&2; exit 32";
    let mut h = Harness::start(&user_data_setup(t)).await;
    h.spawn_loop();

    let first = wait_for("the first instance launched", secs(30.0), || async {
        our_instances(&h.cluster).into_iter().next()
    }, || h.describe())
    .await;
    let node = node_name_of(&first);
    // ECS gives creation times to the minute, read as the minute's end: the 10 s timeout runs
    // out 10 to 70 s after the launch.
    let error = wait_for("its launch timeout, with the console tail", secs(100.0), || async {
        let status = h.engine.board.status_json();
        status["recent_errors"].as_array().into_iter().flatten().filter_map(|e| e["error"].as_str()).find(|e| e.contains(&first.instance_id)).map(str::to_owned)
    }, || h.describe())
    .await;
    assert!(error.contains("launch-timeout"), "{error}");
    assert!(error.contains("mount: /dev/vdb: no such device"), "the init script's error from the console: {error}");
    assert!(error.contains("the init script failed"), "{error}");
    let html = ecs_provisioner::server::status_html(&h.engine.board);
    assert!(html.contains("mount: /dev/vdb: no such device"), "shown on /status");

    wait_until("the instance and its node deleted", secs(20.0), || {
        !our_instances(&h.cluster).iter().any(|i| i.instance_id == first.instance_id)
            && !agent_nodes(&h.cluster).iter().any(|n| n.name == node)
    }, || h.describe())
    .await;
    // The agent never connected, so no build could run, and nothing ever connected in.
    assert_eq!(h.cluster.ssh.connection_counts(), (0, 0));
    h.caps.assert_within(&h.config);
    h.shutdown().await;
}
