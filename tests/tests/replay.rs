//! `policy trace generate` and `policy replay` with real WebAssembly policies.

use std::path::Path;

use clap::Parser;
use ecs_provisioner::app::replay::{ReplayArgs, TraceCommand, replay_outcomes, trace_command};

const CONFIG: &str = r#"controller-id = "replay"
[cloud]
region = "cn-test"
vpc-id = "v"
security-group-id = "s"
image-id = "m"
key-pair-name = "k"
prices = { "ecs.c7.large" = 0.5 }
spot-prices = { "ecs.c7.large" = 0.1 }
[jenkins]
url = "http://127.0.0.1:1/"
user = "u"
[[template]]
name = "linux"
labels = ["linux"]
max-nodes = 20
zones = ["cn-test-a", "cn-test-b"]
instance-types = ["ecs.c7.large"]
idle-timeout = "5m"
[[template]]
name = "windows"
labels = ["windows"]
executors = 2
max-nodes = 5
mode = "exclusive"
zones = ["cn-test-a"]
instance-types = ["ecs.c7.xlarge"]
spot = "spot-first"
"#;

#[derive(Parser)]
struct Replay {
    #[command(flatten)]
    args: ReplayArgs,
}

#[derive(Parser)]
struct Trace {
    #[command(subcommand)]
    cmd: TraceCommand,
}

fn generate(dir: &Path, extra: &[&str]) -> std::path::PathBuf {
    let out = dir.join("trace.jsonl");
    let mut argv = vec!["trace", "generate", "--shape", "bursty", "--days", "2", "--builds", "600", "--label", "linux=3", "--label", "windows=1", "--label", "gpu=1", "--median-duration", "3m", "--seed", "5", "-o"];
    argv.push(out.to_str().unwrap());
    argv.extend_from_slice(extra);
    assert_eq!(trace_command(&Trace::parse_from(argv).cmd).unwrap(), 0);
    out
}

fn replay_args(dir: &Path, trace: &Path, policies: &[&str]) -> ReplayArgs {
    let config = dir.join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut argv = vec!["replay".to_owned(), trace.display().to_string(), "-c".into(), config.display().to_string()];
    for p in policies {
        argv.push("--policy".into());
        argv.push((*p).into());
    }
    Replay::parse_from(argv).args
}

/// Three hours of a steady workload (about 300 builds on three labels), written where
/// `policy replay` reads it: long enough for launches, idle removals and a gpu build no
/// template serves, short enough for a debug build.
fn three_hours(dir: &Path) -> std::path::PathBuf {
    use ecs_provisioner::replay::generate::{Options, Shape, generate};
    let mut trace = generate(&Options {
        shape: Shape::Steady,
        start_ms: 1_767_571_200_000, // 2026-01-05T00:00:00Z
        days: 1,
        builds: 2400,
        labels: vec![("linux".into(), 6), ("windows".into(), 2), ("gpu".into(), 1)],
        median_duration_ms: 180_000,
        seed: 5,
    });
    trace.end_ms = trace.start_ms + 3 * 3_600_000;
    trace.builds.retain(|b| b.at_ms <= trace.end_ms);
    let path = dir.join("three-hours.jsonl");
    trace.write(std::fs::File::create(&path).unwrap()).unwrap();
    path
}

#[test]
fn the_default_policy_serves_a_generated_workload_and_the_report_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let trace = three_hours(dir.path());
    let args = replay_args(dir.path(), &trace, &["builtin:default", "builtin:default"]);
    let outcomes = replay_outcomes(&args).unwrap();
    assert_eq!(outcomes.len(), 2);
    let r = &outcomes[0].report;
    assert_eq!(r.policy, "builtin:default");
    assert!(r.builds > 250, "{}", r.builds);
    assert!(r.unservable > 0, "gpu builds match no template: {r:#?}");
    assert_eq!(r.never_started, 0, "{r:#?}");
    assert_eq!(r.policy_errors, 0, "{r:#?}");
    assert!(r.calls.launched > 0 && r.calls.removed > 0, "{r:#?}");
    assert!(r.peak_nodes <= 25, "caps: 20 + 5, got {}", r.peak_nodes);
    // A new node takes at least boot + bootstrap + connect (42 s) and the default policy
    // launches for what waits: some builds wait that long, and none waits for ever.
    assert!(r.wait.max_ms >= 42_000 && r.wait.max_ms < 3_600_000, "{:?}", r.wait);
    assert!(r.wait_by_label.contains_key("linux") && r.wait_by_label.contains_key("windows"));
    assert!(r.cost.total > 0.0 && r.node_hours.total > 0.0);
    // Both threads replayed the same policy: the same figures, and the same bytes when run again.
    assert_eq!(outcomes[0], outcomes[1]);
    let again = replay_outcomes(&replay_args(dir.path(), &trace, &["builtin:default"])).unwrap();
    assert_eq!(serde_json::to_string(&outcomes[0]).unwrap(), serde_json::to_string(&again[0]).unwrap());
    // The HTML page is whole and holds a plot per figure, one line per policy.
    let page = ecs_provisioner::replay::html::page(&outcomes, "table").unwrap();
    assert_eq!(page.matches("<svg").count(), 3, "three plots");
    assert!(page.contains("builtin:default") && page.trim_end().ends_with("</html>"));
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let trace = generate(dir.path(), &[]);
    let mut text = std::fs::read_to_string(&trace).unwrap();
    text.push_str("{\"build\":{\"at_ms\":1767571200000,\"label\":\"linux\"}}\n");
    let lines = text.lines().count();
    std::fs::write(&trace, &text).unwrap();
    let e = format!("{:#}", replay_outcomes(&replay_args(dir.path(), &trace, &["builtin:default"])).unwrap_err());
    assert!(e.contains("trace.jsonl is not a valid trace") && e.contains(&format!("line {lines}: missing field `duration_ms`")), "{e}");

    let good = generate(dir.path(), &[]);
    let e = format!("{:#}", replay_outcomes(&replay_args(dir.path(), &good, &["no/such/policy.wasm"])).unwrap_err());
    assert!(e.contains("cannot load the policy no/such/policy.wasm"), "{e}");

    // A trace that cannot be written leaves nothing behind.
    let out = dir.path().join("missing-dir").join("t.jsonl");
    let argv = ["trace", "generate", "--days", "1", "--builds", "10", "-o", out.to_str().unwrap()];
    assert!(trace_command(&Trace::parse_from(argv).cmd).is_err());
    assert!(!out.exists());
}
