//! The office-hours policy run natively through the SDK harness.

use ecs_policy_sdk::builders::*;
use ecs_policy_sdk::{Level, testing};
use policy_office_hours::OfficeHours;

/// 2026-11-23 00:00 UTC, a Monday.
const MONDAY: u64 = 1_795_392_000_000;
const HOUR: u64 = 3_600_000;
const MIN: u64 = 60_000;

/// Weekdays 08:00-19:00 and Friday night 22:00-02:00, UTC+8.
const SETTINGS: &str = r#"{
    "timezone-offset-minutes": 480,
    "warm-up-minutes": 15,
    "windows": [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "19:00", "warm-nodes": {"linux": 2}},
        {"days": ["fri"], "start": "22:00", "end": "02:00", "warm-nodes": {"linux": 1, "gpu": 1}}
    ]
}"#;

/// Launches for `linux` at local time `local_ms` after Monday 00:00 UTC+8 (min-nodes 0, or `min`).
fn warm_launches(local_ms: u64, min: u32) -> u32 {
    let now = MONDAY + local_ms - 8 * HOUR;
    let snapshot = SnapshotBuilder::new(now)
        .template(TemplateBuilder::new("linux").min(min))
        .build();
    testing::run_scale(OfficeHours::default(), SETTINGS, &snapshot).launches_for("linux")
}

#[test]
fn warm_pool_inside_windows_only() {
    assert_eq!(warm_launches(9 * HOUR, 0), 2, "Monday 09:00");
    assert_eq!(
        warm_launches(7 * HOUR + 50 * MIN, 0),
        2,
        "Monday 07:50, within warm-up"
    );
    assert_eq!(warm_launches(7 * HOUR + 40 * MIN, 0), 0, "Monday 07:40");
    assert_eq!(warm_launches(19 * HOUR, 0), 0, "Monday 19:00, closed");
    assert_eq!(
        warm_launches(5 * 24 * HOUR + 10 * HOUR, 0),
        0,
        "Saturday 10:00"
    );
    assert_eq!(
        warm_launches(5 * 24 * HOUR + HOUR, 0),
        1,
        "Saturday 01:00, Friday night"
    );
    assert_eq!(
        warm_launches(24 * HOUR + HOUR, 0),
        0,
        "Tuesday 01:00: no Monday night window"
    );
    assert_eq!(
        warm_launches(5 * 24 * HOUR + 10 * HOUR, 1),
        1,
        "min-nodes holds outside windows"
    );
}

#[test]
fn outside_windows_idle_nodes_time_out() {
    // Two idle nodes, one past the 10-minute idle timeout.
    let snapshot_at = |local_hour: u64| {
        SnapshotBuilder::new(MONDAY + local_hour * HOUR - 8 * HOUR)
            .template(TemplateBuilder::new("linux").idle_timeout_secs(600))
            .node(NodeBuilder::online("i-1", "linux").idle_ms(30 * MIN))
            .node(NodeBuilder::online("i-2", "linux").idle_ms(5 * MIN))
            .build()
    };
    let evening = testing::run_scale(OfficeHours::default(), SETTINGS, &snapshot_at(20));
    assert_eq!(evening.removed_ids(), ["i-1"]);
    let morning = testing::run_scale(OfficeHours::default(), SETTINGS, &snapshot_at(10));
    assert!(
        morning.removals.is_empty(),
        "the warm pool keeps both: {morning:?}"
    );
}

#[test]
fn unknown_templates_are_logged() {
    let friday_night = MONDAY + 4 * 24 * HOUR + 23 * HOUR - 8 * HOUR;
    let snapshot = SnapshotBuilder::new(friday_night)
        .template(TemplateBuilder::new("linux"))
        .build();
    testing::run_scale(OfficeHours::default(), SETTINGS, &snapshot);
    let logs = ecs_policy_sdk::log::take_captured();
    assert_eq!(
        logs,
        [(
            Level::Warn,
            "warm-nodes names unknown template `gpu`".to_string()
        )]
    );
}

#[test]
fn settings_errors_name_the_key() {
    let cases = [
        (
            r#"{"windows": [{"start": "8am", "end": "19:00", "warm-nodes": {}}]}"#,
            "windows[0].start",
        ),
        (
            r#"{"windows": [{"days": ["monday"], "start": "08:00", "end": "19:00", "warm-nodes": {}}]}"#,
            "windows[0].days[0]",
        ),
        (
            r#"{"windows": [{"start": "08:00", "end": "08:00", "warm-nodes": {}}]}"#,
            "windows[0]",
        ),
        (
            r#"{"windows": [{"start": "08:00", "end": "09:00"}]}"#,
            "warm-nodes",
        ),
        (
            r#"{"timezone-offset-minutes": 900}"#,
            "timezone-offset-minutes",
        ),
    ];
    for (json, key) in cases {
        let err = testing::configure(OfficeHours::default(), json).unwrap_err();
        assert!(err.contains(key), "{json}: {err}");
    }
}
