//! What acting must do to the cloud and Jenkins, over the fake ports.

use std::sync::atomic::Ordering;

use super::*;
use crate::fakes::{TestEngine, engine};
use crate::now_ms;
use crate::model::{AgentNode, OfferingFailure, PlannedLaunch, PlannedRemoval};
use crate::ports::CloudOffering;

const LINUX: &str = "[[template]]\nname = \"linux\"\nlabels = [\"l\"]\nmax-nodes = 500\n";

fn offering(zone: &str) -> Offering {
    Offering {
        zone: zone.into(),
        vswitch: format!("vsw-{zone}"),
        instance_type: "ecs.a".into(),
        spot: false,
        vcpus: 2,
        memory_mib: 4096,
        free_ips: 1000,
        price_per_hour: None,
        in_stock: true,
        last_failure: None,
    }
}

/// Stores on-demand offerings in these zones in the engine's cache and returns them as a
/// cycle would read them.
fn discovered(e: &TestEngine, zones: &[&str], now: u64) -> Vec<Offering> {
    let d = zones
        .iter()
        .map(|z| CloudOffering {
            zone: (*z).into(),
            vswitch: format!("vsw-{z}"),
            instance_type: "ecs.a".into(),
            vcpus: 2,
            memory_mib: 4096,
            free_ips: 1000,
            in_stock: true,
            spot_in_stock: false,
        })
        .collect();
    let mut cache = e.offerings.lock().unwrap();
    cache.store(d, now);
    cache.all(&e.config.cloud, now).into_iter().filter(|o| !o.spot).collect()
}

fn plan_launch(template: &str, count: u32) -> Plan {
    Plan { launches: vec![PlannedLaunch { template: template.into(), count, reason: "test".into() }], removals: vec![] }
}

fn capacity(code: &str) -> LaunchError {
    LaunchError::Capacity { code: code.into(), label: "no-stock", message: "no stock".into() }
}

fn node(id: &str, state: NodeState, agent: Option<AgentNode>) -> Node {
    Node {
        instance: CloudInstance {
            instance_id: id.into(),
            template: "linux".into(),
            zone: "z1".into(),
            vswitch: "vsw-z1".into(),
            instance_type: "ecs.a".into(),
            spot: false,
            status: CloudStatus::Running,
            private_ip: Some("10.0.0.5".parse().unwrap()),
            created_ms: Some(1_000),
            locks: Vec::new(),
            node: None,
            fingerprint: None,
        },
        agent,
        state,
        failure: None,
    }
}

fn agent(id: &str) -> AgentNode {
    AgentNode { name: node_name("linux", id), online: true, executors: 1, ..Default::default() }
}

fn removal(id: &str) -> Plan {
    Plan { launches: vec![], removals: vec![PlannedRemoval { instance_id: id.into(), reason: "idle".into() }] }
}

#[tokio::test]
async fn launches_over_100_go_out_in_batches_of_100_and_every_instance_is_booked_and_registered() {
    let e = engine(LINUX);
    let mut report = CycleReport::default();
    e.launch(&plan_launch("linux", 250), &[], vec![offering("z1")], 1_000, &mut report).await;

    let sent = e.cloud.launches.lock().unwrap().clone();
    assert_eq!(sent.iter().map(|r| r.count).collect::<Vec<_>>(), [100, 100, 50]);
    assert!(sent.iter().all(|r| r.template == "linux" && r.zone == "z1" && r.vswitch == "vsw-z1" && r.instance_type == "ecs.a" && !r.spot));
    // Each batch has its own idempotency token and launch id: a retry of one never reuses another's.
    let tokens: BTreeSet<&str> = sent.iter().map(|r| r.client_token.as_str()).collect();
    assert_eq!(tokens.len(), 3);
    assert!(tokens.iter().all(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())), "{tokens:?}");
    let ids: BTreeSet<&str> = sent.iter().map(|r| r.launch_id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| i.starts_with("ctl-")), "{ids:?}");

    assert!(report.unplaced.is_empty(), "{:?}", report.unplaced);
    assert_eq!(report.launched.iter().map(|l| l.instance_ids.len()).sum::<usize>(), 250);
    let book = e.book.lock().unwrap();
    assert_eq!(book.launched.len(), 250, "every launched instance counts against the caps until listed");
    let i1 = &book.launched["i-1"];
    assert_eq!((i1.template.as_str(), i1.zone.as_str(), i1.status), ("linux", "z1", CloudStatus::Pending));
    assert!(i1.created_ms.is_some());
    let regs = e.jenkins.registrations.lock().unwrap();
    assert_eq!(regs.len(), 250);
    assert!(regs.iter().any(|r| r.name == "linux-i-1" && r.instance_id == "i-1" && r.zone == "z1" && r.instance_type == "ecs.a"));
}

#[tokio::test]
async fn a_launch_that_returns_fewer_instances_leaves_the_rest_unplaced() {
    let e = engine(LINUX);
    e.cloud.short_by.store(1, Ordering::Relaxed);
    let mut report = CycleReport::default();
    e.launch(&plan_launch("linux", 3), &[], vec![offering("z1")], 1_000, &mut report).await;
    assert_eq!(report.unplaced.get("linux"), Some(&1));
    assert_eq!(e.book.lock().unwrap().launched.len(), 2);
}

#[tokio::test]
async fn a_capacity_error_moves_the_rest_to_another_offering_in_the_same_cycle() {
    let e = engine(LINUX);
    let now = now_ms();
    let all = discovered(&e, &["z1", "z2"], now);
    e.cloud.refuse.lock().unwrap().insert("z1".into(), capacity("OperationDenied.NoStock"));
    let mut report = CycleReport::default();
    e.launch(&plan_launch("linux", 5), &[], all, now, &mut report).await;

    let sent: Vec<(String, u32)> = e.cloud.launches.lock().unwrap().iter().map(|r| (r.zone.clone(), r.count)).collect();
    assert_eq!(sent, [("z1".to_owned(), 5), ("z2".to_owned(), 5)]);
    // The second round offers only what has not failed in this cycle.
    let places = e.decider.policy.places.lock().unwrap().clone();
    assert_eq!(places, [(5, vec!["z1".to_owned(), "z2".to_owned()]), (5, vec!["z2".to_owned()])]);
    assert!(report.unplaced.is_empty());
    let f = &report.launch_errors[0];
    assert!(f.capacity && f.zone == "z1" && f.code == "OperationDenied.NoStock" && f.label == "no-stock", "{f:?}");
    // The failure is remembered for later cycles and for the policy.
    let later = e.offerings.lock().unwrap().all(&e.config.cloud, now + 1);
    let z1 = later.iter().find(|o| o.zone == "z1" && !o.spot).unwrap();
    assert_eq!(z1.last_failure.as_ref().map(|f| f.code.as_str()), Some("OperationDenied.NoStock"));
}

#[tokio::test]
async fn an_offering_that_failed_for_one_template_is_not_offered_to_the_next_in_the_same_cycle() {
    let e = engine(&format!("{LINUX}[[template]]\nname = \"win\"\nlabels = [\"w\"]\nmax-nodes = 5\n"));
    let now = now_ms();
    let all = discovered(&e, &["z1", "z2"], now);
    e.cloud.refuse.lock().unwrap().insert("z1".into(), capacity("OperationDenied.NoStock"));
    let plan = Plan {
        launches: vec![
            PlannedLaunch { template: "linux".into(), count: 1, reason: "r".into() },
            PlannedLaunch { template: "win".into(), count: 1, reason: "r".into() },
        ],
        removals: vec![],
    };
    let mut report = CycleReport::default();
    e.launch(&plan, &[], all, now, &mut report).await;
    let places = e.decider.policy.places.lock().unwrap().clone();
    assert_eq!(places.last(), Some(&(1, vec!["z2".to_owned()])), "{places:?}");
    assert_eq!(e.cloud.launches.lock().unwrap().len(), 3, "z1 once, then z2 for each template");
}

#[tokio::test]
async fn a_failure_from_an_earlier_cycle_is_left_to_the_policy_one_from_this_cycle_is_not_offered() {
    let e = engine(LINUX);
    let now = 50_000;
    let failed_at = |at_ms| OfferingFailure { code: "OperationDenied.NoStock".into(), at_ms };
    let all = vec![
        Offering { last_failure: Some(failed_at(now)), ..offering("z1") },
        Offering { last_failure: Some(failed_at(now - 1)), ..offering("z2") },
        offering("z3"),
    ];
    let mut report = CycleReport::default();
    e.launch(&plan_launch("linux", 1), &[], all, now, &mut report).await;
    let places = e.decider.policy.places.lock().unwrap().clone();
    assert_eq!(places, [(1, vec!["z2".to_owned(), "z3".to_owned()])]);
}

#[tokio::test]
async fn a_non_capacity_launch_error_is_reported_and_not_placed_elsewhere() {
    let e = engine(LINUX);
    let now = now_ms();
    let all = discovered(&e, &["z1", "z2"], now);
    let denied = LaunchError::Other { code: "Forbidden.RAM".into(), label: "forbidden", message: "not allowed".into() };
    e.cloud.refuse.lock().unwrap().insert("z1".into(), denied);
    let mut report = CycleReport::default();
    e.launch(&plan_launch("linux", 4), &[], all, now, &mut report).await;
    assert_eq!(e.cloud.launches.lock().unwrap().len(), 1);
    assert_eq!(e.decider.policy.places.lock().unwrap().len(), 1);
    assert_eq!(report.unplaced.get("linux"), Some(&4));
    let f = &report.launch_errors[0];
    assert!(!f.capacity && f.code == "Forbidden.RAM" && f.label == "forbidden" && f.error == "not allowed", "{f:?}");
    let later = e.offerings.lock().unwrap().all(&e.config.cloud, now + 1);
    assert!(later.iter().all(|o| o.last_failure.is_none()), "not a capacity error: no cooldown");
}

#[tokio::test]
async fn place_is_asked_at_most_four_times_per_template_and_cycle() {
    let e = engine(LINUX);
    let zones = ["z1", "z2", "z3", "z4", "z5", "z6"];
    let now = now_ms();
    let all = discovered(&e, &zones, now);
    for z in zones {
        e.cloud.refuse.lock().unwrap().insert(z.into(), capacity("OperationDenied.NoStock"));
    }
    let mut report = CycleReport::default();
    e.launch(&plan_launch("linux", 2), &[], all, now, &mut report).await;
    assert_eq!(e.decider.policy.places.lock().unwrap().len(), 4);
    assert_eq!(report.unplaced.get("linux"), Some(&2));
    assert_eq!(report.launch_errors.len(), 4);
}

#[tokio::test]
async fn place_is_shown_the_fleet_of_the_template_it_places_and_no_other() {
    let e = engine(&format!("{LINUX}[[template]]\nname = \"win\"\nlabels = [\"w\"]\nmax-nodes = 5\n"));
    let mut win = node("i-2", NodeState::Online, None);
    win.instance.template = "win".into();
    let nodes = [node("i-1", NodeState::Online, Some(agent("i-1"))), win, node("i-3", NodeState::Pending, None)];
    let plan = Plan {
        launches: vec![
            PlannedLaunch { template: "linux".into(), count: 1, reason: "r".into() },
            PlannedLaunch { template: "win".into(), count: 1, reason: "r".into() },
        ],
        removals: vec![],
    };
    e.launch(&plan, &nodes, vec![offering("z1")], 1_000, &mut CycleReport::default()).await;
    let fleets = e.decider.policy.fleets.lock().unwrap().clone();
    assert_eq!(fleets, [vec!["i-1".to_owned(), "i-3".to_owned()], vec!["i-2".to_owned()]]);
}

#[tokio::test]
async fn a_node_registration_that_fails_is_reported_and_the_instance_still_booked() {
    let e = engine(LINUX);
    e.jenkins.failing.lock().unwrap().insert("create");
    let mut report = CycleReport::default();
    e.launch(&plan_launch("linux", 1), &[], vec![offering("z1")], 1_000, &mut report).await;
    assert!(e.book.lock().unwrap().launched.contains_key("i-1"));
    assert!(report.errors.iter().any(|m| m.contains("creating node linux-i-1 failed")), "{:?}", report.errors);
}

fn used_up(id: &str, uses: u32) -> Node {
    node(id, NodeState::Online, Some(AgentNode { uses, ..agent(id) }))
}

#[tokio::test]
async fn a_node_that_ran_its_last_allowed_build_is_fenced_once() {
    let e = engine(&format!("{LINUX}max-uses = 2\n"));
    let nodes = [
        used_up("i-1", 2),
        used_up("i-2", 1),
        node("i-3", NodeState::Online, Some(AgentNode { uses: 3, temporarily_offline: true, ..agent("i-3") })),
        node("i-4", NodeState::Draining, Some(AgentNode { uses: 2, ..agent("i-4") })),
    ];
    let mut report = CycleReport::default();
    e.fence_used_up(&nodes, &mut report).await;
    assert_eq!(e.jenkins.log(), [format!("offline linux-i-1 {USED_UP_PREFIX} (max-uses 2); removed when idle")]);
    assert_eq!(report.chores, [("fence-used-up".to_owned(), "linux-i-1".to_owned(), "max-uses 2 reached".to_owned())]);

    let unlimited = engine(LINUX);
    unlimited.fence_used_up(&[used_up("i-1", 9)], &mut CycleReport::default()).await;
    assert!(unlimited.jenkins.log().is_empty(), "max-uses 0 means unlimited");

    e.jenkins.failing.lock().unwrap().insert("offline");
    let mut report = CycleReport::default();
    e.fence_used_up(&nodes, &mut report).await;
    assert!(report.chores.is_empty());
    assert!(report.errors[0].contains("fencing used-up node linux-i-1 failed"), "{:?}", report.errors);
}

#[tokio::test]
async fn an_idle_node_is_drained_then_its_instance_deleted() {
    let e = engine(LINUX);
    e.book.lock().unwrap().launched.insert("i-1".into(), node("i-1", NodeState::Online, None).instance);
    let mut report = CycleReport::default();
    e.remove(&removal("i-1"), &[node("i-1", NodeState::Online, Some(agent("i-1")))], &mut report).await;
    assert_eq!(
        e.jenkins.log(),
        [format!("offline linux-i-1 {REMOVING_PREFIX} (idle)"), "idle? linux-i-1".into(), "delete linux-i-1".into()]
    );
    assert_eq!(*e.cloud.terminated.lock().unwrap(), [vec!["i-1".to_owned()]]);
    assert_eq!(report.removed, ["i-1"]);
    assert_eq!(*e.bootstrapper.gone.lock().unwrap(), ["i-1"]);
    let book = e.book.lock().unwrap();
    assert!(book.terminating.contains_key("i-1") && !book.draining.contains("i-1") && !book.launched.contains_key("i-1"));
}

#[tokio::test]
async fn a_node_that_took_a_build_while_draining_is_put_back_online_and_kept() {
    let e = engine(LINUX);
    e.jenkins.busy.lock().unwrap().insert("linux-i-1".into());
    let mut report = CycleReport::default();
    e.remove(&removal("i-1"), &[node("i-1", NodeState::Online, Some(agent("i-1")))], &mut report).await;
    assert_eq!(e.jenkins.log(), [format!("offline linux-i-1 {REMOVING_PREFIX} (idle)"), "idle? linux-i-1".into(), "online linux-i-1".into()]);
    assert!(e.cloud.terminated.lock().unwrap().is_empty());
    assert_eq!(report.kept_busy, ["i-1"]);
    assert!(!e.book.lock().unwrap().draining.contains("i-1"), "no longer being removed");
}

#[tokio::test]
async fn a_node_someone_else_took_offline_stays_offline_when_it_is_kept() {
    let e = engine(LINUX);
    e.jenkins.busy.lock().unwrap().insert("linux-i-1".into());
    let offline = AgentNode { temporarily_offline: true, ..agent("i-1") };
    let mut report = CycleReport::default();
    e.remove(&removal("i-1"), &[node("i-1", NodeState::Offline, Some(offline))], &mut report).await;
    assert_eq!(e.jenkins.log(), ["idle? linux-i-1"]);
    assert_eq!(report.kept_busy, ["i-1"]);
}

#[tokio::test]
async fn an_instance_without_a_node_is_deleted_without_asking_jenkins() {
    let e = engine(LINUX);
    let mut report = CycleReport::default();
    e.remove(&removal("i-1"), &[node("i-1", NodeState::Running, None)], &mut report).await;
    assert!(e.jenkins.log().is_empty());
    assert_eq!(report.removed, ["i-1"]);
}

#[tokio::test]
async fn a_drain_that_fails_keeps_the_instance_and_reports_it() {
    let e = engine(LINUX);
    e.jenkins.failing.lock().unwrap().insert("delete");
    let mut report = CycleReport::default();
    e.remove(&removal("i-1"), &[node("i-1", NodeState::Online, Some(agent("i-1")))], &mut report).await;
    assert!(e.cloud.terminated.lock().unwrap().is_empty(), "a node still in Jenkins keeps its instance");
    assert!(report.errors[0].starts_with("draining i-1 failed"), "{:?}", report.errors);
    assert!(!e.book.lock().unwrap().draining.contains("i-1"));
}

#[tokio::test]
async fn a_failed_delete_stays_booked_as_terminating_for_a_retry() {
    let e = engine(LINUX);
    *e.cloud.fail_terminate.lock().unwrap() = true;
    let mut report = CycleReport::default();
    e.remove(&removal("i-1"), &[node("i-1", NodeState::Running, None)], &mut report).await;
    assert!(report.removed.is_empty());
    assert!(report.errors[0].starts_with("deleting 1 instance(s) failed"), "{:?}", report.errors);
    assert!(e.book.lock().unwrap().terminating.contains_key("i-1"));
    assert!(e.bootstrapper.gone.lock().unwrap().is_empty(), "the host key is kept while the instance may live");
}

#[tokio::test]
async fn a_terminate_chore_deletes_the_node_then_the_instance() {
    let e = engine(LINUX);
    let nodes = [node("i-1", NodeState::Online, Some(agent("i-1"))), node("i-2", NodeState::Running, None)];
    let chores = ["i-1", "i-2"].map(|id| Chore::Terminate { instance_id: id.into(), reason: "launch-timeout".into() }).to_vec();
    let mut report = CycleReport::default();
    e.do_chores(chores, &nodes, &mut report).await;
    assert_eq!(e.jenkins.log(), ["delete linux-i-1"], "only the instance with a node has one to delete");
    assert_eq!(*e.cloud.terminated.lock().unwrap(), [vec!["i-1".to_owned(), "i-2".to_owned()]]);
    assert_eq!(report.chores.len(), 2);
    assert_eq!(report.chores[0], ("terminate".into(), "i-1".into(), "launch-timeout".into()));
}

#[tokio::test]
async fn jenkins_chores_reach_the_right_node_and_failures_are_reported() {
    let e = engine(LINUX);
    let nodes = [node("i-1", NodeState::Running, None), node("i-2", NodeState::Interrupted, Some(agent("i-2")))];
    let record = crate::ports::ActivityRecord { idle_since_ms: Some(5), uses: None };
    let chores = vec![
        Chore::CreateNode { instance_id: "i-1".into() },
        Chore::Fence { instance_id: "i-2".into(), reason: "reclaim".into() },
        Chore::RecordActivity { instance_id: "i-2".into(), record: record.clone() },
        Chore::CreateNode { instance_id: "i-gone".into() },
        Chore::BookTerminating { instance_id: "i-3".into(), reason: "settling".into() },
    ];
    let mut report = CycleReport::default();
    e.do_chores(chores.clone(), &nodes, &mut report).await;
    let mut log = e.jenkins.log();
    log.sort();
    assert_eq!(log, ["create linux-i-1", "offline linux-i-2 reclaim", "record linux-i-2"]);
    let reg = e.jenkins.registrations.lock().unwrap()[0].clone();
    assert_eq!(reg, NodeRegistration { name: "linux-i-1".into(), template: "linux".into(), instance_id: "i-1".into(), zone: "z1".into(), instance_type: "ecs.a".into() });
    assert_eq!(*e.jenkins.records.lock().unwrap(), [("linux-i-2".to_owned(), record)]);
    assert!(e.book.lock().unwrap().terminating.get("i-3").is_some_and(|(r, _)| r == "settling"));
    assert!(e.cloud.terminated.lock().unwrap().is_empty(), "booking a termination sends no delete");
    assert!(!report.chores.iter().any(|c| c.0 == "record-activity"), "bookkeeping stays out of the report");
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let e = engine(LINUX);
    e.jenkins.failing.lock().unwrap().extend(["create", "offline", "record"]);
    let mut report = CycleReport::default();
    e.do_chores(chores, &nodes, &mut report).await;
    assert_eq!(report.errors.len(), 3, "{:?}", report.errors);
}

#[tokio::test]
async fn a_started_node_whose_agent_is_back_is_put_back_online_in_jenkins() {
    let e = engine(LINUX);
    let chores = vec![Chore::Unfence { instance_id: "i-1".into() }, Chore::Unfence { instance_id: "i-gone".into() }];
    let mut report = CycleReport::default();
    e.do_chores(chores.clone(), &[node("i-1", NodeState::Online, Some(agent("i-1")))], &mut report).await;
    assert_eq!(e.jenkins.log(), ["online linux-i-1"], "only the listed instance has a node to put online");
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    e.jenkins.failing.lock().unwrap().insert("online");
    let mut report = CycleReport::default();
    e.do_chores(chores, &[node("i-1", NodeState::Online, Some(agent("i-1")))], &mut report).await;
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
}

#[tokio::test]
async fn a_removal_left_half_done_by_an_earlier_process_is_finished_or_undone() {
    let e = engine(LINUX);
    e.jenkins.busy.lock().unwrap().insert("linux-i-2".into());
    let marked = |id: &str| node(id, NodeState::Draining, Some(AgentNode { temporarily_offline: true, ..agent(id) }));
    let nodes = [marked("i-1"), marked("i-2")];
    let chores = ["i-1", "i-2"].map(|id| Chore::ResumeDrain { instance_id: id.into() }).to_vec();
    let mut report = CycleReport::default();
    e.do_chores(chores, &nodes, &mut report).await;
    let mut log = e.jenkins.log();
    log.sort();
    assert_eq!(log, ["delete linux-i-1", "idle? linux-i-1", "idle? linux-i-2", "online linux-i-2"]);
    assert_eq!(*e.cloud.terminated.lock().unwrap(), [vec!["i-1".to_owned()]]);
    assert_eq!(report.kept_busy, ["i-2"]);

    let e = engine(LINUX);
    e.jenkins.failing.lock().unwrap().insert("idle?");
    let mut report = CycleReport::default();
    e.do_chores(vec![Chore::ResumeDrain { instance_id: "i-1".into() }], &nodes, &mut report).await;
    assert!(e.cloud.terminated.lock().unwrap().is_empty());
    assert!(report.errors[0].starts_with("finishing the removal of i-1 failed"), "{:?}", report.errors);
}

/// Waits for the engine's background bootstraps.
async fn bootstraps_done(e: &TestEngine) {
    let mut tasks = std::mem::take(&mut *e.tasks.lock().unwrap());
    while tasks.join_next().await.is_some() {}
}

#[tokio::test]
async fn a_bootstrap_gets_the_node_secret_and_the_launch_deadline_and_its_outcome_is_booked() {
    let e = engine(&format!("{LINUX}launch-timeout = \"10m\"\n"));
    let no_ip = Node { instance: CloudInstance { private_ip: None, ..node("i-2", NodeState::Running, None).instance }, ..node("i-2", NodeState::Running, None) };
    let nodes = [node("i-1", NodeState::Running, None), no_ip];
    let chores = ["i-1", "i-2"].map(|id| Chore::Bootstrap { instance_id: id.into() }).to_vec();
    e.do_chores(chores, &nodes, &mut CycleReport::default()).await;
    bootstraps_done(&e).await;
    let targets = e.bootstrapper.targets.lock().unwrap().clone();
    assert_eq!(targets.len(), 1, "no address, nothing to connect to");
    let t = &targets[0];
    assert_eq!((t.instance_id.as_str(), t.node_name.as_str(), t.secret.as_str()), ("i-1", "linux-i-1", "secret-of-linux-i-1"));
    assert_eq!(t.ip, "10.0.0.5".parse::<std::net::Ipv4Addr>().unwrap());
    let book = e.book.lock().unwrap();
    // The deadline moves by the (here about 0 ms) wait for a bootstrap slot.
    let waited = book.slot_waits["i-1"].waited_ms;
    assert!(waited < 1_000 && book.slot_waits["i-1"].queued_since_ms.is_none(), "{:?}", book.slot_waits);
    assert_eq!(t.deadline_ms, 1_000 + 600_000 + waited, "created + launch-timeout + the wait for a slot");
    assert_eq!(book.bootstraps.get("i-1"), Some(&BootstrapStatus::Done));
    assert!(book.holds.is_empty());
}

#[tokio::test]
async fn a_failed_bootstrap_is_booked_and_holds_the_template() {
    let e = engine(LINUX);
    *e.bootstrapper.fail.lock().unwrap() = Some("connection refused".into());
    let mut report = CycleReport::default();
    e.do_chores(vec![Chore::Bootstrap { instance_id: "i-1".into() }], &[node("i-1", NodeState::Running, None)], &mut report).await;
    bootstraps_done(&e).await;
    let book = e.book.lock().unwrap();
    assert_eq!(book.bootstraps.get("i-1"), Some(&BootstrapStatus::Failed("connection refused".into())));
    let hold = &book.holds["linux"];
    assert_eq!((hold.failures, hold.cause, hold.last_error.as_str()), (1, "unreachable", "connection refused"));
    assert_eq!(book.failed_bootstraps, [("linux".to_owned(), "unreachable")]);
}

#[tokio::test]
async fn a_dropped_agent_is_restarted_with_the_reconnect_deadline() {
    let e = engine(LINUX);
    let mut report = CycleReport::default();
    let chores = vec![Chore::Reconnect { instance_id: "i-1".into(), deadline_ms: 77_000 }];
    e.do_chores(chores, &[node("i-1", NodeState::Disconnected, Some(AgentNode { online: false, ..agent("i-1") }))], &mut report).await;
    bootstraps_done(&e).await;
    assert_eq!(e.bootstrapper.targets.lock().unwrap()[0].deadline_ms, 77_000);
    assert!(e.book.lock().unwrap().disconnected.contains_key("i-1"), "the reconnect timeout runs from the drop");
    assert_eq!(report.chores[0].0, "reconnect");
}

/// The test harness kills an agent while its first bootstrap waits to confirm it: the reconnect
/// starts a second bootstrap, and the first then fails ("agent not running"). That late
/// failure must not be booked over the second run, or the instance is terminated as "reconnect
/// failed" and its launches held.
#[tokio::test]
async fn a_bootstrap_superseded_by_a_reconnect_has_no_say_when_it_ends() {
    let e = engine(LINUX);
    let (first, second) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    e.bootstrapper.gates.lock().unwrap().extend([(first.clone(), Some("agent not running".to_owned())), (second.clone(), None)]);
    let mut report = CycleReport::default();
    e.do_chores(vec![Chore::Bootstrap { instance_id: "i-1".into() }], &[node("i-1", NodeState::Running, None)], &mut report).await;
    let dropped = node("i-1", NodeState::Disconnected, Some(AgentNode { online: false, ..agent("i-1") }));
    e.do_chores(vec![Chore::Reconnect { instance_id: "i-1".into(), deadline_ms: 77_000 }], &[dropped], &mut report).await;
    while e.bootstrapper.targets.lock().unwrap().len() < 2 {
        tokio::task::yield_now().await;
    }
    second.notify_one();
    while e.book.lock().unwrap().bootstraps.get("i-1") != Some(&BootstrapStatus::Done) {
        tokio::task::yield_now().await;
    }
    first.notify_one();
    bootstraps_done(&e).await;
    let book = e.book.lock().unwrap();
    assert_eq!(book.bootstraps.get("i-1"), Some(&BootstrapStatus::Done), "the second run's outcome stands");
    assert!(book.holds.is_empty() && book.failed_bootstraps.is_empty(), "a superseded failure holds nothing: {:?}", book.holds);
}

/// A bootstrap still running when the instance's bootstrap is forgotten (stopped into the warm
/// pool) does not book its outcome for an instance that no longer waits for it.
#[tokio::test]
async fn a_bootstrap_whose_instance_was_forgotten_books_nothing() {
    let e = engine(LINUX);
    let open = Arc::new(tokio::sync::Notify::new());
    e.bootstrapper.gates.lock().unwrap().push_back((open.clone(), Some("connection reset".to_owned())));
    e.do_chores(vec![Chore::Bootstrap { instance_id: "i-1".into() }], &[node("i-1", NodeState::Running, None)], &mut CycleReport::default()).await;
    while e.bootstrapper.targets.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    e.book.lock().unwrap().bootstraps.remove("i-1");
    open.notify_one();
    bootstraps_done(&e).await;
    let book = e.book.lock().unwrap();
    assert_eq!(book.bootstraps.get("i-1"), None);
    assert!(book.holds.is_empty());
}

/// Demand that comes while this process is stopping an instance of the template waits for it
/// (seconds) instead of launching (a boot and the init script); a stop sent too long ago, or
/// one this process did not send, is not waited for.
#[tokio::test]
async fn a_launch_waits_for_an_instance_this_process_is_stopping() {
    const WARM: &str = "[[template]]\nname = \"linux\"\nlabels = [\"l\"]\nmax-nodes = 500\nidle-action = \"stop\"\n";
    let e = engine(WARM);
    let fingerprint = e.config.template_fingerprint(e.config.template("linux").unwrap());
    let stopping = |id: &str| {
        let mut n = node(id, NodeState::Stopped, Some(agent(id)));
        n.instance.status = CloudStatus::Stopping;
        n.instance.fingerprint = Some(fingerprint.clone());
        n
    };
    let now = now_ms();
    let nodes = [stopping("i-ours"), stopping("i-old"), stopping("i-theirs")];
    {
        let mut book = e.book.lock().unwrap();
        book.stops_sent.insert("i-ours".into(), now - 1_000);
        book.stops_sent.insert("i-old".into(), now - crate::lifecycle::warm::STOP_RETRY_MS);
    }
    let mut report = CycleReport::default();
    e.launch(&plan_launch("linux", 3), &nodes, vec![offering("z1")], now, &mut report).await;
    let sent: Vec<u32> = e.cloud.launches.lock().unwrap().iter().map(|r| r.count).collect();
    assert_eq!(sent, [2], "one of three waits for i-ours; i-old's stop is stale, i-theirs is not ours to wait for");
    assert!(e.cloud.started.lock().unwrap().is_empty(), "nothing is Stopped yet: nothing to start");
}

/// An idle node of `idle-action = "stop"` whose agent restart is still confirming is marked
/// but not stopped yet: the bootstrap's outcome would land after the stop and pass for the
/// next start's. Once the bootstrap is done, the stop goes out.
#[tokio::test]
async fn a_node_is_not_stopped_while_its_agent_restart_is_confirming() {
    const WARM: &str = "[[template]]\nname = \"linux\"\nlabels = [\"l\"]\nmax-nodes = 500\nidle-action = \"stop\"\n";
    let e = engine(WARM);
    e.book.lock().unwrap().bootstraps.insert("i-1".into(), BootstrapStatus::Running { run: 1 });
    let mut report = CycleReport::default();
    let mut online = node("i-1", NodeState::Online, Some(agent("i-1")));
    online.instance.fingerprint = Some(e.config.template_fingerprint(e.config.template("linux").unwrap()));
    let nodes = [online];
    e.remove(&removal("i-1"), &nodes, &mut report).await;
    assert!(e.cloud.stopped.lock().unwrap().is_empty(), "not while the bootstrap runs");
    e.book.lock().unwrap().bootstraps.insert("i-1".into(), BootstrapStatus::Done);
    e.remove(&removal("i-1"), &nodes, &mut report).await;
    assert_eq!(*e.cloud.stopped.lock().unwrap(), [vec!["i-1".to_owned()]]);
}
