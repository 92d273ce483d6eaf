//! The default policy run natively through the SDK harness.

use ecs_policy_sdk::builders::*;
use ecs_policy_sdk::testing::{self, placed_per_offering};
use ecs_policy_sdk::{NodeState, SpotMode};
use policy_default::DefaultPolicy;

const NOW: u64 = 1_763_900_000_000;
const MIN: u64 = 60_000;

#[test]
fn settings_are_validated_by_name() {
    assert!(testing::configure(DefaultPolicy::default(), "").is_ok());
    assert!(testing::configure(DefaultPolicy::default(), r#"{"cooldown-secs": 60}"#).is_ok());
    let err =
        testing::configure(DefaultPolicy::default(), r#"{"cooldown-secs": "5m"}"#).unwrap_err();
    assert!(err.starts_with("setting `cooldown-secs`"), "{err}");
    let err = testing::configure(DefaultPolicy::default(), r#"{"cooldown": 60}"#).unwrap_err();
    assert!(err.contains("unknown field `cooldown`"), "{err}");
}

#[test]
fn scales_a_mixed_fleet() {
    let snapshot = SnapshotBuilder::new(NOW)
        .template(
            TemplateBuilder::new("linux")
                .executors(2)
                .min(1)
                .max(6)
                .idle_timeout_secs(600),
        )
        .template(
            TemplateBuilder::new("win")
                .executors(1)
                .max(4)
                .idle_timeout_secs(300),
        )
        .queued("linux", 9, 4 * MIN)
        .node(NodeBuilder::online("i-l1", "linux").busy(2))
        .node(NodeBuilder::new("i-l2", "linux", NodeState::Pending))
        .node(NodeBuilder::online("i-w1", "win").idle_ms(6 * MIN))
        .node(NodeBuilder::online("i-w2", "win").idle_ms(2 * MIN))
        .build();
    let plan = testing::run_scale(DefaultPolicy::default(), "{}", &snapshot);
    // 9 queued - 2 in flight = 7 executors = 4 nodes: just the room max-nodes 6 leaves.
    assert_eq!(plan.launches_for("linux"), 4);
    assert_eq!(plan.launches_for("win"), 0);
    assert_eq!(plan.removed_ids(), ["i-w1"]);
    assert!(
        ecs_policy_sdk::log::take_captured().is_empty(),
        "the default policy is quiet"
    );
}

#[test]
fn cooldown_setting_decides_when_a_failed_offering_is_retried() {
    let offerings = [
        OfferingBuilder::new("cn-hangzhou-h", "vsw-h", "ecs.c7.large")
            .failed("OperationDenied.NoStock", NOW - 2 * MIN)
            .build(),
        OfferingBuilder::new("cn-hangzhou-i", "vsw-i", "ecs.c7.large")
            .free_ips(1)
            .build(),
    ];
    let request = place_request(
        NOW,
        TemplateBuilder::new("linux").spot(SpotMode::OnDemand),
        3,
    );
    let default = testing::run_place(DefaultPolicy::default(), "{}", &request, &offerings, &[]);
    assert_eq!(
        placed_per_offering(&default),
        [(1, 1)].into(),
        "5-minute cooldown: only 1 IP elsewhere"
    );
    let short = testing::run_place(
        DefaultPolicy::default(),
        r#"{"cooldown-secs": 60}"#,
        &request,
        &offerings,
        &[],
    );
    assert_eq!(placed_per_offering(&short), [(0, 2), (1, 1)].into());
}
