//! The cost-aware policy run natively through the SDK harness.

use ecs_policy_sdk::builders::*;
use ecs_policy_sdk::testing::{self, placed_per_offering};
use ecs_policy_sdk::{Offering, SpotMode};
use policy_cost_aware::CostAware;

const NOW: u64 = 1_763_900_000_000;

/// Index: 0 on-demand 0.10/vCPU, 1 on-demand 0.075/vCPU (other zone), 2 spot 0.03/vCPU with
/// 2 IPs, 3 spot 0.02/vCPU out of stock, 4 spot with no price.
fn offerings() -> Vec<Offering> {
    vec![
        OfferingBuilder::new("cn-hangzhou-h", "vsw-h", "ecs.c7.large")
            .vcpus(2)
            .price(0.20)
            .build(),
        OfferingBuilder::new("cn-hangzhou-i", "vsw-i", "ecs.c7.xlarge")
            .vcpus(4)
            .price(0.30)
            .build(),
        OfferingBuilder::new("cn-hangzhou-j", "vsw-j", "ecs.c7.large")
            .spot(true)
            .price(0.06)
            .free_ips(2)
            .build(),
        OfferingBuilder::new("cn-hangzhou-k", "vsw-k", "ecs.c7.large")
            .spot(true)
            .price(0.04)
            .out_of_stock()
            .build(),
        OfferingBuilder::new("cn-hangzhou-h", "vsw-h2", "ecs.g7.large")
            .spot(true)
            .build(),
    ]
}

fn place(settings: &str, mode: SpotMode, count: u32) -> Vec<(u32, u32)> {
    let request = place_request(NOW, TemplateBuilder::new("linux").spot(mode), count);
    let out = testing::run_place(CostAware::default(), settings, &request, &offerings(), &[]);
    placed_per_offering(&out).into_iter().collect()
}

#[test]
fn settings_are_checked() {
    let err =
        testing::configure(CostAware::default(), r#"{"max-price-per-vcpu": -1}"#).unwrap_err();
    assert!(err.contains("max-price-per-vcpu"), "{err}");
    let err = testing::configure(CostAware::default(), r#"{"unpriced": "first"}"#).unwrap_err();
    assert!(err.starts_with("setting `unpriced`"), "{err}");
    assert!(testing::configure(CostAware::default(), r#"{"max-nodes-per-offering": 0}"#).is_err());
}

#[test]
fn cheapest_per_vcpu_first_without_spreading() {
    assert_eq!(
        place("{}", SpotMode::OnDemand, 5),
        [(1, 5)],
        "0.075 beats 0.10 per vCPU"
    );
}

#[test]
fn spot_before_on_demand_when_the_template_allows_it() {
    // Cheapest spot (index 2, 2 IPs), then unpriced spot, then on-demand.
    assert_eq!(place("{}", SpotMode::SpotFirst, 4), [(2, 2), (4, 2)]);
    assert_eq!(
        place(r#"{"unpriced": "skip"}"#, SpotMode::SpotFirst, 4),
        [(1, 2), (2, 2)]
    );
    let no_fallback = r#"{"unpriced": "skip", "on-demand-fallback": false}"#;
    assert_eq!(place(no_fallback, SpotMode::SpotFirst, 4), [(2, 2)]);
    assert_eq!(
        place(r#"{"unpriced": "skip"}"#, SpotMode::SpotOnly, 4),
        [(2, 2)]
    );
}

#[test]
fn price_ceiling_and_per_offering_cap() {
    assert_eq!(
        place(r#"{"max-price-per-vcpu": 0.08}"#, SpotMode::OnDemand, 3),
        [(1, 3)]
    );
    assert_eq!(
        place(r#"{"max-price-per-vcpu": 0.05}"#, SpotMode::OnDemand, 3),
        []
    );
    let fleet = [NodeBuilder::online("i-1", "linux")
        .zone("cn-hangzhou-i")
        .instance_type("ecs.c7.xlarge")
        .build()];
    let request = place_request(NOW, TemplateBuilder::new("linux"), 5);
    let out = testing::run_place(
        CostAware::default(),
        r#"{"max-nodes-per-offering": 3}"#,
        &request,
        &offerings(),
        &fleet,
    );
    assert_eq!(placed_per_offering(&out), [(0, 3), (1, 2)].into());
}

#[test]
fn idle_nodes_go_most_expensive_first() {
    let snapshot = SnapshotBuilder::new(NOW)
        .template(TemplateBuilder::new("linux").min(1).idle_timeout_secs(60))
        .node(
            NodeBuilder::online("i-cheap", "linux")
                .zone("cn-hangzhou-j")
                .spot(true)
                .idle_ms(900_000),
        )
        .node(
            NodeBuilder::online("i-dear", "linux")
                .zone("cn-hangzhou-i")
                .instance_type("ecs.c7.xlarge")
                .idle_ms(70_000),
        )
        .node(
            NodeBuilder::online("i-mid", "linux")
                .zone("cn-hangzhou-h")
                .idle_ms(80_000),
        )
        .offering(offerings()[0].clone())
        .offering(offerings()[1].clone())
        .offering(offerings()[2].clone())
        .build();
    let plan = testing::run_scale(CostAware::default(), "{}", &snapshot);
    // The default would remove the two longest idle (i-cheap, i-mid); cost-aware keeps the cheap one.
    assert_eq!(plan.removed_ids(), ["i-dear", "i-mid"]);
    assert!(
        plan.removals[0].reason.ends_with("0.300/h"),
        "{}",
        plan.removals[0].reason
    );
}
