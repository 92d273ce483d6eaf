//! What the cloud and Jenkins send is not trusted (issue 20): each test puts a hostile
//! endpoint ([`HostileEcs`], a proxy in front of the ECS emulator, or on its own) where the
//! provisioner expects ECS or Jenkins, and checks that nothing it sends gets further than it
//! should: forged error codes stay out of `/metrics`, endless listings and huge answers are
//! refused, malformed instance ids and unreadable creation times are never acted on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use e2e::engine::{Harness, Setup, Template, agent_nodes, our_instances, wait_until};
use e2e::hostile::{HostileEcs, Params, Step};
use ecs_provisioner::ecs::credentials::{Credentials, StaticProvider};
use ecs_provisioner::ecs::{ClientConfig, EcsClient, InstanceFilter};
use ecs_provisioner::jenkins::JenkinsClient;
use ecs_provisioner::sim::jenkins::JobKind;
use serde_json::{Value, json};

/// Runs `sim-agent`: see `tests/src/bin/e2e-provisioner.rs`.
const EXE: &str = env!("CARGO_BIN_EXE_e2e-provisioner");

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn action(p: &Params) -> &str {
    p.get("Action").map_or("", String::as_str)
}

fn ecs_error(code: &str) -> String {
    json!({ "Code": code, "Message": "refused by the hostile endpoint", "RequestId": "HOSTILE" }).to_string()
}

/// A harness whose `[cloud] endpoint` is `proxy`, forwarding to the emulator.
async fn harness_behind(proxy: &HostileEcs, mut setup: Setup) -> Harness {
    setup.ecs_endpoint = Some(proxy.url());
    let h = Harness::start(&setup).await;
    proxy.set_upstream(&h.cluster.ecs.base_url());
    h
}

/// A client of the hostile endpoint alone (no emulator behind it).
fn client_of(proxy: &HostileEcs) -> EcsClient {
    let config = ClientConfig::new("cn-hangzhou").with_endpoint(proxy.url());
    EcsClient::new(config, Arc::new(StaticProvider(Credentials::access_key("LTAIhostile", "secret")))).unwrap()
}

/// Item 1: the ECS `Code` of a failed launch reached a Prometheus label as it was, and a
/// crafted one wrote its own lines into `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_error_code_cannot_write_metrics_lines() {
    const FORGED: &str = "Evil\"} 1\necs_provisioner_removals_total 31337\n# x{a=\"";
    let proxy = HostileEcs::start(|p| match action(p) {
        "RunInstances" => Step::Reply(400, ecs_error(FORGED)),
        _ => Step::Forward,
    })
    .await;
    let h = harness_behind(&proxy, Setup::new(EXE, vec![Template::new("linux", 1, 1, 2)])).await;
    let report = h.engine.cycle(true).await;
    assert_eq!(report.launch_errors.len(), 1, "{report:?}");
    assert_eq!(report.launch_errors[0].code, FORGED, "the report keeps the code as the cloud sent it");

    let text = h.engine.board.metrics_text();
    assert!(!text.contains("31337"), "a forged line reached /metrics:\n{text}");
    assert!(!text.contains("Evil"), "the forged code became a label value:\n{text}");
    assert!(text.contains("ecs_provisioner_launch_failures_total{code=\"other\"} 1"), "{text}");
    assert!(text.lines().any(|l| l == "ecs_provisioner_removals_total 0"), "{text}");
    h.shutdown().await;
}

/// A launch error that is not about capacity ends the template's launches for the cycle: it
/// is reported (not as capacity), the offering is not marked failed, and no other offering
/// is tried, since the same request fails everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_capacity_launch_error_is_reported_not_placed_elsewhere() {
    let proxy = HostileEcs::start(|p| match action(p) {
        "RunInstances" => Step::Reply(400, ecs_error("InvalidParameter")),
        _ => Step::Forward,
    })
    .await;
    let h = harness_behind(&proxy, Setup::new(EXE, vec![Template::new("linux", 1, 1, 4)])).await;
    let report = h.engine.cycle(true).await;
    assert_eq!(proxy.requests("RunInstances").len(), 1, "tried once, not on the other zones: {report:?}");
    let failure = &report.launch_errors[..];
    assert_eq!(failure.len(), 1, "{report:?}");
    assert!(!failure[0].capacity && failure[0].code == "InvalidParameter", "{failure:?}");
    assert_eq!(report.unplaced.get("linux"), Some(&1), "{report:?}");
    // Not a capacity mark: the next cycle tries the same offering again.
    let zone = proxy.requests("RunInstances")[0]["ZoneId"].clone();
    h.engine.cycle(true).await;
    let runs = proxy.requests("RunInstances");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["ZoneId"], zone, "the offering was not cooled down");
    assert!(h.engine.board.metrics_text().contains("ecs_provisioner_launch_failures_total{code=\"InvalidParameter\"} 2"));
    h.shutdown().await;
}

/// RunInstances takes at most 100 instances: a launch of 150 goes out as 100 + 50. The
/// hostile endpoint answers the launches itself (with well-formed ids) so that no 150
/// instances have to boot, and shows one vswitch only, so that all 150 go to one offering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_over_100_go_out_in_batches_of_100() {
    let next = Arc::new(AtomicU64::new(0));
    let proxy = HostileEcs::start(move |p| match action(p) {
        "RunInstances" => {
            let amount: u64 = p["Amount"].parse().unwrap();
            let ids: Vec<String> = (0..amount).map(|_| format!("i-batch{:06}", next.fetch_add(1, Ordering::Relaxed))).collect();
            Step::Reply(200, json!({ "RequestId": "R", "InstanceIdSets": { "InstanceIdSet": ids } }).to_string())
        }
        "DescribeVSwitches" => Step::Rewrite(Box::new(|status, body| {
            let mut v: Value = serde_json::from_str(&body).unwrap();
            v["VSwitches"]["VSwitch"].as_array_mut().unwrap().truncate(1);
            (status, v.to_string())
        })),
        _ => Step::Forward,
    })
    .await;
    let mut setup = Setup::new(EXE, vec![Template::new("linux", 1, 150, 200)]);
    setup.cloud_extra = "max-total-nodes = 200\nmax-launch-per-cycle = 200".into();
    let h = harness_behind(&proxy, setup).await;
    let report = h.engine.cycle(true).await;
    let amounts: Vec<String> = proxy.requests("RunInstances").iter().map(|p| p["Amount"].clone()).collect();
    assert_eq!(amounts, ["100", "50"], "{report:?}");
    let launched: usize = report.launched.iter().map(|l| l.instance_ids.len()).sum();
    assert_eq!(launched, 150);
    h.shutdown().await;
}

/// Item 4: a listing whose NextToken comes back, or that never ends, is refused with an
/// error that says so, instead of looping for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_stops_on_a_repeated_token_and_past_the_page_limit() {
    let page = |token: String| {
        let instance = json!({ "InstanceId": "i-page0001", "Status": "Running", "CreationTime": "2026-01-01T00:00Z" });
        Step::Reply(200, json!({ "RequestId": "R", "Instances": { "Instance": [instance] }, "NextToken": token }).to_string())
    };
    let proxy = HostileEcs::start(move |_| page("same".into())).await;
    let err = client_of(&proxy).describe_instances(&InstanceFilter::default()).await.unwrap_err();
    assert!(err.to_string().contains("NextToken \"same\" came back a second time"), "{err}");
    assert_eq!(proxy.requests("DescribeInstances").len(), 2);

    let n = Arc::new(AtomicU64::new(0));
    let proxy = HostileEcs::start(move |_| page(format!("t{}", n.fetch_add(1, Ordering::Relaxed)))).await;
    let err = client_of(&proxy).describe_instances(&InstanceFilter::default()).await.unwrap_err();
    assert!(err.to_string().contains("past 1000 pages"), "{err}");
    assert_eq!(proxy.requests("DescribeInstances").len(), 1000);
}

/// Item 4: answers larger than the cap are refused, from ECS and from Jenkins, without
/// reading them whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_answers_are_refused() {
    let proxy = HostileEcs::start(|_| Step::Endless(20 << 20)).await;
    let err = client_of(&proxy).describe_instances(&InstanceFilter::default()).await.unwrap_err();
    assert_eq!(err.code, "ResponseTooLarge", "{err}");
    assert!(err.to_string().contains("larger than 16777216 bytes"), "{err}");
    assert_eq!(proxy.requests("DescribeInstances").len(), 1, "not retried");

    let jenkins = HostileEcs::start(|_| Step::Endless(40 << 20)).await;
    let client = JenkinsClient::new(&format!("{}/", jenkins.url()), ecs_provisioner::jenkins::Credentials::api_token("u", "t")).unwrap();
    let err = client.computers().await.unwrap_err();
    assert!(err.to_string().contains("larger than 33554432 bytes"), "{err}");
}

/// Item 4: instance ids go into node names, known_hosts lines and paths. A malformed one,
/// listed with our tag or returned by RunInstances, is never acted on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_instance_ids_are_never_acted_on() {
    const BAD: &str = "i-x/../../etc;touch pwned";
    let hostile = Arc::new(AtomicBool::new(false));
    let proxy = HostileEcs::start({
        let hostile = hostile.clone();
        move |p| {
            if !hostile.load(Ordering::Relaxed) {
                return Step::Forward;
            }
            match action(p) {
                "RunInstances" => Step::Reply(200, json!({ "RequestId": "R", "InstanceIdSets": { "InstanceIdSet": [BAD] } }).to_string()),
                // Our real instances, plus a copy of the first under the malformed id.
                "DescribeInstances" => Step::Rewrite(Box::new(|status, body| {
                    let mut v: Value = serde_json::from_str(&body).unwrap();
                    let list = v["Instances"]["Instance"].as_array_mut().unwrap();
                    if let Some(mut copy) = list.first().cloned() {
                        copy["InstanceId"] = json!(BAD);
                        list.push(copy);
                    }
                    (status, v.to_string())
                })),
                _ => Step::Forward,
            }
        }
    })
    .await;
    let mut h = harness_behind(&proxy, Setup::new(EXE, vec![Template::new("linux", 1, 1, 3)])).await;
    h.spawn_loop();
    wait_until("one node online", secs(60.0), || agent_nodes(&h.cluster).iter().any(|n| n.connected), || h.describe()).await;
    hostile.store(true, Ordering::Relaxed);
    h.enqueue("linux", JobKind::Freestyle, 2, secs(3.0));
    tokio::time::sleep(secs(4.0)).await;
    let report = h.engine.last_report().unwrap();
    assert!(
        !proxy.requests("RunInstances").is_empty(),
        "a launch was tried while the endpoint was hostile: {}",
        h.describe()
    );
    assert!(agent_nodes(&h.cluster).iter().all(|n| !n.name.contains("etc")), "{}", h.describe());
    assert!(report.chores.iter().all(|(_, target, _)| !target.contains("etc")), "{report:?}");
    assert_eq!(report.nodes["linux"].values().sum::<u32>(), 1, "the malformed instance is not a node: {report:?}");
    assert!(proxy.requests("DeleteInstances").iter().all(|p| !p.values().any(|v| v.contains("etc"))));
    assert!(proxy.requests("GetInstanceConsoleOutput").iter().all(|p| !p.values().any(|v| v.contains("etc"))));
    h.shutdown().await;
}

/// Item 4: an unreadable `CreationTime` was read as 0 (1970), so a healthy instance was
/// terminated for its launch timeout on first sight. Unknown is not ancient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_creation_time_does_not_terminate_a_healthy_instance() {
    let proxy = HostileEcs::start(|p| match action(p) {
        "DescribeInstances" => Step::Rewrite(Box::new(|status, body| {
            let mut v: Value = serde_json::from_str(&body).unwrap();
            for i in v["Instances"]["Instance"].as_array_mut().into_iter().flatten() {
                i["CreationTime"] = json!("the day before yesterday");
            }
            (status, v.to_string())
        })),
        _ => Step::Forward,
    })
    .await;
    let mut linux = Template::new("linux", 1, 1, 2);
    linux.launch_timeout = "20s";
    let mut h = harness_behind(&proxy, Setup::new(EXE, vec![linux])).await;
    h.spawn_loop();
    wait_until("the node is online", secs(60.0), || agent_nodes(&h.cluster).iter().any(|n| n.connected), || h.describe()).await;
    assert_eq!(h.cluster.ecs.calls("DeleteInstances"), 0, "terminated: {}", h.describe());
    assert_eq!(our_instances(&h.cluster).len(), 1);
    h.shutdown().await;
}

/// Item 3: a node named like ours and described as ours, made by hand (or by anyone with
/// Agent/Create), was deleted within seconds. A description proves nothing: only a node whose
/// instance this process saw listed with our tag, or launched, is ever deleted. A node of ours
/// whose instance is deleted behind the provisioner's back still goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_only_claims_to_be_ours_is_left_alone() {
    use ecs_provisioner::jenkins::client::describe_owned_instance;
    use ecs_provisioner::jenkins::{InboundAgentSpec, NodeMode};

    let mut h = Harness::start(&Setup::new(EXE, vec![Template::new("linux", 1, 1, 3)])).await;
    h.spawn_loop();
    wait_until("one node online", secs(60.0), || agent_nodes(&h.cluster).iter().any(|n| n.connected), || h.describe()).await;
    let fake = "i-bp1impostor00000000001";
    let impostor = format!("linux-{fake}");
    let description = describe_owned_instance(e2e::engine::CONTROLLER, "linux", fake, "cn-hangzhou-h", "ecs.c7.large");
    h.jenkins_admin()
        .client()
        .create_inbound_agent(&InboundAgentSpec {
            name: impostor.clone(),
            description,
            num_executors: 1,
            remote_fs: "agent".into(),
            labels: vec!["somebody-else".into()],
            mode: NodeMode::Exclusive,
        })
        .await
        .expect("creating the impostor node");

    let ours = our_instances(&h.cluster)[0].instance_id.clone();
    let ecs = EcsClient::new(h.cluster.ecs.client_config(), Arc::new(StaticProvider(h.cluster.ecs.credentials()))).unwrap();
    ecs.delete_instances(std::slice::from_ref(&ours), true).await.expect("deleting our instance behind its back");
    wait_until("the node of the deleted instance is gone", secs(30.0), || {
        agent_nodes(&h.cluster).iter().all(|n| !n.name.ends_with(&ours))
    }, || h.describe())
    .await;
    let cycles = h.engine.last_report().unwrap().cycle;
    wait_until("five more cycles", secs(30.0), || h.engine.last_report().unwrap().cycle >= cycles + 5, || h.describe()).await;
    assert!(agent_nodes(&h.cluster).iter().any(|n| n.name == impostor), "the impostor node was deleted: {}", h.describe());
    h.shutdown().await;
}
