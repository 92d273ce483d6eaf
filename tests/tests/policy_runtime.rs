//! The policy runtime against the probe guest (tests/policy-guests/probe): every kind of
//! answer and misbehaviour ends as the right typed error, and the runtime keeps working.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tracing_subscriber::layer::SubscriberExt as _;

use e2e::policy::{echo_v0_1_wasm, load, load_in, probe_wasm, roomy_limits, roomy_runtime, runtime, test_limits};
use ecs_provisioner::policy::fixture;
use ecs_provisioner::policy::{
    Cause, Demand, Function, Limits, LoadedFrom, Node, NodeState, Offering, PlaceRequest, PolicyRuntime,
    QueuedItem, Snapshot, SpotMode, Template,
};

fn template(name: &str) -> Template {
    Template {
        name: name.into(),
        labels: vec!["linux".into()],
        executors: 2,
        min_nodes: 0,
        max_nodes: 10,
        idle_timeout_secs: 600,
        max_uses: 0,
        spot: SpotMode::OnDemand,
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        now_ms: 1_700_000_123_456,
        templates: vec![template("linux")],
        demand: vec![Demand {
            template: "linux".into(),
            queued: 3,
            oldest_wait_ms: 900,
            items: (1..=3)
                .map(|id| QueuedItem {
                    id,
                    wait_ms: 300 * id,
                })
                .collect(),
        }],
        unmatched_queued: 0,
        nodes: vec![Node {
            instance_id: "i-idle".into(),
            template: "linux".into(),
            zone: "cn-hangzhou-h".into(),
            instance_type: "ecs.c7.large".into(),
            spot: false,
            state: NodeState::Online,
            busy_executors: 0,
            idle_ms: 5_000,
            age_ms: 60_000,
            uses: 1,
            failure: None,
            offline_reason: None,
        }],
        offerings: offerings(),
        max_total_nodes: 20,
    }
}

fn offerings() -> Vec<Offering> {
    ["cn-hangzhou-h", "cn-hangzhou-i"]
        .into_iter()
        .map(|zone| Offering {
            zone: zone.into(),
            vswitch: format!("vsw-{zone}"),
            instance_type: "ecs.c7.large".into(),
            spot: false,
            vcpus: 2,
            memory_mib: 4096,
            free_ips: 100,
            price_per_hour: Some(0.2),
            in_stock: true,
            last_failure: None,
        })
        .collect()
}

fn request(count: u32) -> PlaceRequest {
    PlaceRequest {
        now_ms: 1_700_000_123_456,
        template: template("linux"),
        count,
    }
}

/// The probe spinning in a runtime of `limits` whose fuel cannot run out first: only the
/// deadline stops it. With the default fuel (about 200 ms of spinning) a loaded machine can
/// delay the epoch ticker past that, and the call ends out of fuel instead (seen in a full
/// run of the suite).
fn unlimited_fuel_spinner(limits: Limits) -> ecs_provisioner::policy::Policy {
    let rt = Arc::new(PolicyRuntime::new(Limits { fuel: 1 << 62, ..limits }).unwrap());
    load_in(&rt, &probe_wasm(), r#"{"mode":"spin"}"#).expect("probe loads")
}

fn probe(mode: &str) -> ecs_provisioner::policy::Policy {
    load(&probe_wasm(), &format!(r#"{{"mode":"{mode}"}}"#)).expect("probe loads")
}

/// A good evaluation in the shared runtime, to show it survived whatever came before.
fn still_works() {
    let plan = probe("ok")
        .scale(&snapshot())
        .expect("a good policy still evaluates");
    assert_eq!(plan.launches.len(), 1);
}

#[test]
fn a_good_answer_comes_back_typed_and_validated() {
    let p = probe("ok");
    assert_eq!(p.contract_version(), "0.2.0");
    let plan = p.scale(&snapshot()).unwrap();
    assert_eq!(
        (plan.launches[0].template.as_str(), plan.launches[0].count),
        ("linux", 3)
    );
    assert_eq!(plan.removals[0].instance_id, "i-idle");
    let placements = p.place(&request(3), &offerings(), &[]).unwrap();
    let counts: Vec<(u32, u32)> = placements.iter().map(|p| (p.offering, p.count)).collect();
    assert_eq!(counts, [(0, 2), (1, 1)]);
}

#[test]
fn a_guest_error_is_reported_with_policy_and_function() {
    let err = probe("reject").scale(&snapshot()).unwrap_err();
    assert_eq!(
        (err.function, &err.cause),
        (
            Some(Function::Scale),
            &Cause::Rejected("probe says no".into())
        )
    );
    assert_eq!(
        err.to_string(),
        "policy `policy_probe`: scale: returned an error: probe says no"
    );
    let err = probe("reject")
        .place(&request(1), &offerings(), &[])
        .unwrap_err();
    assert_eq!(err.function, Some(Function::Place));
}

#[test]
fn bad_settings_fail_at_load_naming_the_setting() {
    let err = load(&probe_wasm(), r#"{"mode":"bad-setting"}"#).unwrap_err();
    assert_eq!(err.function, Some(Function::Configure));
    assert_eq!(err.kind(), "rejected");
    assert!(err.to_string().contains("setting `mode`"), "{err}");
}

#[test]
fn a_panic_is_a_trap_quoting_the_panic_message() {
    let err = probe("panic").scale(&snapshot()).unwrap_err();
    assert_eq!(err.kind(), "trap", "{err}");
    assert!(
        err.to_string().contains("probe panicked on purpose"),
        "{err}"
    );
    still_works();
}

#[test]
fn an_endless_loop_times_out_at_the_deadline() {
    let spin = unlimited_fuel_spinner(test_limits());
    let started = Instant::now();
    let err = spin.scale(&snapshot()).unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.cause, Cause::Timeout(test_limits().deadline), "{err}");
    assert_eq!(err.function, Some(Function::Scale));
    // Contained: bounded by the deadline, not hung (generous slack for a busy 2-core box).
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let err = spin
        .place(&request(1), &offerings(), &[])
        .unwrap_err();
    assert_eq!(err.kind(), "timeout");
    still_works();
}

#[test]
fn a_memory_bomb_hits_the_cap() {
    // A long deadline, so the cap (not a slow, loaded machine) is what stops the bomb.
    let bomb = load_in(&roomy_runtime(), &probe_wasm(), r#"{"mode":"bomb"}"#).unwrap();
    let err = bomb.scale(&snapshot()).unwrap_err();
    match err.cause {
        Cause::MemoryCap { cap, requested } => {
            assert_eq!(cap, roomy_limits().memory_bytes);
            assert!(requested > cap);
        }
        ref other => panic!("expected a memory cap error, got {other:?} ({err})"),
    }
    assert!(
        err.to_string()
            .contains("exceeded the memory cap of 32 MiB"),
        "{err}"
    );
    assert!(
        load_in(&roomy_runtime(), &probe_wasm(), "{}")
            .unwrap()
            .scale(&snapshot())
            .is_ok()
    );
    still_works();
}

#[test]
fn a_log_flood_is_rate_limited_and_the_call_completes() {
    // 10,000 lines of 5 KB per call: under the shared runtime's 100 ms wall-clock backstop a
    // loaded machine can time the flood out; roomy limits (5 s) leave the rate limit and the
    // fuel budget as what is tested. A runtime and a policy name of its own: the log budget
    // and the dropped-lines count are this test's alone.
    const NAME: &str = "log-flood-probe";
    let rt = Arc::new(PolicyRuntime::new(roomy_limits()).unwrap());
    let policy = rt.load_bytes(NAME, &std::fs::read(probe_wasm()).unwrap(), r#"{"mode":"log-flood"}"#).unwrap();
    let dropped = || {
        ecs_provisioner::policy::log::dropped_lines().into_iter().find(|(n, _)| n == NAME).map_or(0, |(_, d)| d)
    };
    let kept = Arc::new(Mutex::new(Vec::<String>::new()));
    let flood = || {
        let layer = KeptLines(kept.clone());
        let plan = tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            policy.scale(&snapshot()).expect("logging never fails")
        });
        assert_eq!(plan.launches[0].count, 3);
        std::mem::take(&mut *kept.lock().unwrap())
    };

    // First call: the per-call limit (50) keeps the first 50 lines, each cut to 1 KiB.
    let first = flood();
    assert_eq!(first.len(), 50);
    assert_eq!(dropped(), 9_950);
    for (i, line) in first.iter().enumerate() {
        assert!(line.starts_with(&format!("line {i} xxx")), "{line:.40}");
        assert!(line.len() <= 1100 && line.ends_with("…[truncated]"), "{} bytes: {line:.40}…", line.len());
    }
    // Second call at once: the budget across calls (bursts of 60, 120 a minute) has 10 lines
    // left, plus what refilled meanwhile (2 a second).
    let second = flood();
    assert!((10..=25).contains(&second.len()), "{} lines kept", second.len());
    assert!(second[0].starts_with("line 0 "), "{:.40}", second[0]);
    assert_eq!(dropped(), 9_950 + 10_000 - second.len() as u64);
}

/// The message of every `policy` log line written on this thread.
struct KeptLines(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for KeptLines {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message<'a>(&'a mut String);
        impl tracing::field::Visit for Message<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    *self.0 = format!("{value:?}");
                }
            }
        }
        if event.metadata().target() == "policy" {
            let mut text = String::new();
            event.record(&mut Message(&mut text));
            self.0.lock().unwrap().push(text);
        }
    }
}

#[test]
fn invalid_output_says_what_and_where() {
    let err = probe("unknown-template").scale(&snapshot()).unwrap_err();
    assert_eq!(err.kind(), "invalid-output");
    assert!(
        err.to_string()
            .ends_with("launches[0]: unknown template `nope` (known: linux)"),
        "{err}"
    );
    let err = probe("bad-offering")
        .place(&request(1), &offerings(), &[])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("placements[0]: offering index 9 out of range (there are 2 offerings)"),
        "{err}"
    );
    let err = probe("too-many")
        .place(&request(2), &offerings(), &[])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("placements total 3 nodes but only 2 were requested"),
        "{err}"
    );
}

#[test]
fn the_sandbox_is_empty_and_deterministic() {
    let p = probe("sandbox");
    let s = snapshot();
    let reason = p.scale(&s).unwrap().launches[0].reason.clone();
    // The wall clock reads the input's now-ms; no environment, no arguments, no filesystem.
    assert!(
        reason.starts_with(&format!("clock={} ", s.now_ms)),
        "{reason}"
    );
    assert!(
        reason.contains(" env=0 ") && reason.ends_with(" root=false"),
        "{reason}"
    );
    // Randomness (here: std's HashMap seed) is seeded, so the same input gives the same output.
    assert_eq!(p.scale(&s).unwrap().launches[0].reason, reason);
}

#[test]
fn garbage_is_a_load_error() {
    let err = runtime()
        .load_bytes("garbage", b"\0asm\x01\0\0\0junk", "{}")
        .unwrap_err();
    assert_eq!((err.kind(), err.function), ("load", None));
    assert!(
        err.to_string()
            .starts_with("policy `garbage`: cannot load: not a valid component"),
        "{err}"
    );
    let err = runtime()
        .load(
            &ecs_provisioner::policy::PolicySource::parse("/nonexistent/x.wasm"),
            "{}",
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot read /nonexistent/x.wasm"),
        "{err}"
    );
}

#[test]
fn evaluations_run_concurrently() {
    // Volume: four threads share one policy, 25 evaluations each, all fine.
    let p = probe("ok");
    let s = snapshot();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| (0..25).all(|_| p.scale(&s).is_ok())))
            .collect();
        assert!(handles.into_iter().all(|h| h.join().unwrap()));
    });

    // Overlap: two evaluations on two threads are inside the guest at the same moment. Each
    // logs; the first line of each waits in the log handler (up to 10 s) for a line of the
    // other thread. Evaluations that were serialized (one lock around them) never meet.
    let rt = Arc::new(PolicyRuntime::new(roomy_limits()).unwrap());
    let flood = rt.load_bytes("concurrency-probe", &std::fs::read(probe_wasm()).unwrap(), r#"{"mode":"log-flood"}"#).unwrap();
    let meeting = Arc::new(Meeting::default());
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (flood, s, meeting) = (&flood, &s, meeting.clone());
                scope.spawn(move || {
                    let layer = MeetingLayer(meeting);
                    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || flood.scale(s))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(*meeting.met.lock().unwrap(), "two evaluations were never in the guest at once: they ran one after the other");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

/// Where the first log line of each thread waits for another thread's.
#[derive(Default)]
struct Meeting {
    /// Threads waiting now.
    inside: Mutex<usize>,
    met: Mutex<bool>,
    seen: Mutex<std::collections::HashSet<std::thread::ThreadId>>,
    changed: Condvar,
}

struct MeetingLayer(Arc<Meeting>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for MeetingLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let m = &self.0;
        if event.metadata().target() != "policy" || !m.seen.lock().unwrap().insert(std::thread::current().id()) {
            return;
        }
        let mut inside = m.inside.lock().unwrap();
        *inside += 1;
        m.changed.notify_all();
        let met = || *m.met.lock().unwrap();
        let (mut inside, _) =
            m.changed.wait_timeout_while(inside, Duration::from_secs(10), |n| *n < 2 && !met()).unwrap();
        if *inside >= 2 {
            *m.met.lock().unwrap() = true;
        }
        *inside -= 1;
    }
}

#[test]
fn compiled_components_are_cached_and_a_bad_cache_entry_is_recompiled() {
    let bytes = std::fs::read(probe_wasm()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let limits = ecs_provisioner::policy::Limits {
        max_instances: 2,
        ..test_limits()
    };
    let fresh = || {
        PolicyRuntime::new(limits.clone())
            .unwrap()
            .with_cache_dir(dir.path())
    };
    let (_, first) = fresh().component("probe", &bytes).unwrap();
    assert_eq!(first.from, LoadedFrom::Compiled);
    let (_, second) = fresh().component("probe", &bytes).unwrap();
    assert_eq!(second.from, LoadedFrom::Cache);
    // Corrupt every cached artifact: the next load recompiles instead of failing.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not a compiled component").unwrap();
    }
    let rt = std::sync::Arc::new(fresh());
    let p = rt.load_bytes("probe", &bytes, "{}").unwrap();
    assert_eq!(p.load_info().from, LoadedFrom::Compiled);
    assert!(p.scale(&snapshot()).is_ok());
    assert_eq!(
        fresh().component("probe", &bytes).unwrap().1.from,
        LoadedFrom::Cache
    );
}

#[test]
fn fixture_runs_report_pass_and_fail_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.toml");
    std::fs::write(
        &file,
        r#"
[snapshot]
templates = [{ name = "linux" }]
nodes = [{ instance-id = "i-7", idle-ms = 10 }, { instance-id = "i-8" }]

[[case]]
name = "launches what is queued"
snapshot.demand = [{ queued = 4 }]
expect = { launch = { linux = 4 }, remove = ["i-7"], remove-excludes = ["i-8"] }

[[case]]
name = "wrong on purpose"
snapshot.demand = [{ queued = 2 }]
expect = { launch = { linux = 5 }, remove-includes = ["i-8"] }

[[case]]
name = "guest error expected"
settings = { mode = "reject" }
expect.error = "probe says no"

[[case]]
name = "round robin"
function = "place"
request = { count = 3 }
offerings = [{ zone = "a" }, { zone = "b", spot = true }]
expect = { placed = 3, per-zone = { a = 2, b = 1 }, spot = 1, placements = [{ offering = 0, count = 2 }, { offering = 1, count = 1 }] }
"#,
    )
    .unwrap();
    let p = probe("ok");
    let mut out = Vec::new();
    let summary = fixture::run(&p, &[dir.path().to_owned()], &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!((summary.passed, summary.failed), (3, 1), "{out}");
    assert!(
        out.contains("PASS") && out.contains("launches what is queued"),
        "{out}"
    );
    assert!(
        out.contains("FAIL") && out.contains("wrong on purpose"),
        "{out}"
    );
    assert!(out.contains("launch.linux: expected 5, got 2"), "{out}");
    assert!(
        out.contains("remove-includes: `i-8` is not removed"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("3 passed, 1 failed"), "{out}");

    // The CLI entry point turns a failure into a non-zero exit code.
    let args = ecs_provisioner::policy::cli::TestArgs {
        policy: probe_wasm().display().to_string(),
        fixtures: vec![file],
        runtime: ecs_provisioner::policy::cli::RuntimeArgs {
            memory_mib: 64,
            fuel: ecs_provisioner::policy::DEFAULT_FUEL,
            deadline_ms: 200,
            no_cache: true,
            cache_dir: None,
            keep_resident_kib: 2048,
        },
    };
    assert_eq!(
        ecs_provisioner::policy::cli::test(&args, &mut Vec::new()),
        1
    );
}

#[test]
fn bench_reports_every_figure() {
    let args = ecs_provisioner::policy::cli::BenchArgs {
        policy: probe_wasm().display().to_string(),
        nodes: 30,
        queued: 40,
        offerings: 6,
        iterations: 5,
        settings: "{}".into(),
        json: true,
        runtime: ecs_provisioner::policy::cli::RuntimeArgs {
            memory_mib: 64,
            fuel: ecs_provisioner::policy::DEFAULT_FUEL,
            deadline_ms: 1000,
            no_cache: true,
            cache_dir: None,
            keep_resident_kib: 2048,
        },
    };
    let mut out = Vec::new();
    assert_eq!(ecs_provisioner::policy::cli::bench(&args, &mut out), 0);
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["shape"]["nodes"], 30);
    assert_eq!(
        report["plan_launches"], 40,
        "the probe launches what is queued: {report}"
    );
    assert_eq!(report["placed"], 50);
    for key in ["compile_ms", "cached_load_ms"] {
        assert!(report[key].as_f64().unwrap() > 0.0, "{key}: {report}");
    }
    for key in ["instantiate", "scale", "place"] {
        let p = &report[key];
        assert!(
            p["p50_us"].as_f64().unwrap() > 0.0 && p["p99_us"].as_f64() >= p["p50_us"].as_f64(),
            "{key}: {report}"
        );
    }
    assert!(report["peak_memory_bytes"].as_u64().unwrap() > 0);
}

/// A policy built for contract 0.1.0 loads and runs on the 0.2.0 host: the states 0.2.0
/// added reach it as 0.1.0 states that are not capacity, with the reason in `failure`; its
/// answers (removals, placements, log lines) come back in the host's terms.
#[test]
fn a_contract_0_1_policy_is_served_through_conversions() {
    let p = load(&echo_v0_1_wasm(), "{}").expect("a 0.1.0 policy loads");
    assert_eq!(p.contract_version(), "0.1.0");
    let mut s = snapshot();
    let base = s.nodes[0].clone();
    let node = |id: &str, state: NodeState, offline_reason: Option<&str>| Node {
        instance_id: id.into(),
        state,
        offline_reason: offline_reason.map(Into::into),
        ..base.clone()
    };
    s.nodes = vec![
        node("i-on", NodeState::Online, None),
        node("i-off", NodeState::Offline, Some("disk space is too low")),
        node("i-gone", NodeState::Disconnected, None),
        node("i-spot", NodeState::Interrupted, None),
    ];
    let plan = p.scale(&s).expect("scale");
    assert_eq!(
        plan.launches[0].reason,
        "i-on=online(),i-off=draining(offline: disk space is too low),\
         i-gone=terminating(disconnected: the agent dropped),\
         i-spot=terminating(interrupted: the cloud is reclaiming the spot instance)"
    );
    let removed: Vec<&str> = plan.removals.iter().map(|r| r.instance_id.as_str()).collect();
    assert_eq!(removed, ["i-off"]);
    let placed = p.place(&request(2), &offerings(), &s.nodes).expect("place");
    assert_eq!(placed.iter().map(|p| (p.offering, p.count)).collect::<Vec<_>>(), [(0, 1), (1, 1)]);
}

/// Issue 20, item 2: a cached artifact is native code loaded without re-verification, so the
/// cache directory is created 0700, and one that another user owns or that group or others
/// can write is not used: an artifact planted there is never loaded.
#[test]
fn the_compile_cache_is_private_or_not_used() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let bytes = std::fs::read(probe_wasm()).unwrap();
    let limits = ecs_provisioner::policy::Limits { max_instances: 2, ..test_limits() };
    let root = tempfile::tempdir().unwrap();
    let with_cache = |dir: &std::path::Path| PolicyRuntime::new(limits.clone()).unwrap().with_cache_dir(dir);

    // Created 0700; the second load comes from it.
    let good = root.path().join("deep/policies");
    let rt = with_cache(&good);
    assert_eq!(rt.cache_dir(), Some(good.as_path()));
    assert_eq!(std::fs::metadata(&good).unwrap().mode() & 0o777, 0o700);
    assert_eq!(rt.component("probe", &bytes).unwrap().1.from, LoadedFrom::Compiled);
    assert_eq!(with_cache(&good).component("probe", &bytes).unwrap().1.from, LoadedFrom::Cache);

    // The same valid artifact, planted in a directory others can write: not loaded.
    let shared = root.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    for entry in std::fs::read_dir(&good).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), shared.join(entry.file_name())).unwrap();
    }
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let rt = with_cache(&shared);
    assert_eq!(rt.cache_dir(), None, "a world-writable cache directory is refused");
    assert_eq!(rt.component("probe", &bytes).unwrap().1.from, LoadedFrom::Compiled, "the planted artifact was loaded");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o720)).unwrap();
    assert_eq!(with_cache(&shared).cache_dir(), None, "a group-writable cache directory is refused");

    // Private directory, but an artifact others can write: recompiled, not loaded.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(&shared).unwrap() {
        std::fs::set_permissions(entry.unwrap().path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    assert_eq!(with_cache(&shared).component("probe", &bytes).unwrap().1.from, LoadedFrom::Compiled);

    // Owned by another user: as root, a directory given to `nobody`; otherwise `/`, which
    // belongs to root.
    let foreign = if unsafe { libc::geteuid() } == 0 {
        let dir = root.path().join("foreign");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        dir
    } else {
        std::path::PathBuf::from("/")
    };
    assert_ne!(std::fs::metadata(&foreign).unwrap().uid(), unsafe { libc::geteuid() });
    assert_eq!(with_cache(&foreign).cache_dir(), None, "a directory of another user is refused");
}

/// Issue 20, item 2: `policy bench` cached its artifact in `/tmp/ecsp-policy-bench-<pid>`,
/// a name anyone can predict and create first, and loaded what it found there. It now uses a
/// private directory with a random name, and removes it: a directory planted at the old name
/// is neither used nor touched.
#[test]
fn policy_bench_caches_in_a_private_temporary_directory() {
    let planted = std::env::temp_dir().join(format!("ecsp-policy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::write(planted.join("planted.cwasm"), b"planted by someone else").unwrap();
    let shape = ecs_provisioner::policy::bench::Shape { nodes: 5, queued: 5, offerings: 2 };
    let report = ecs_provisioner::policy::bench::run(&probe_wasm().display().to_string(), "{}", shape, 2, &test_limits());
    let planted_still_there = planted.join("planted.cwasm").exists();
    let _ = std::fs::remove_dir_all(&planted);
    let report = report.expect("bench runs");
    assert!(planted_still_there, "the bench removed (so used) a directory someone else made");
    let used = std::path::Path::new(&report.cache_dir);
    assert_ne!(used, planted.as_path());
    assert!(used.starts_with(std::env::temp_dir()), "{}", report.cache_dir);
    assert!(!used.exists(), "left behind: {}", report.cache_dir);
    assert!(report.cached_load_ms > 0.0);
}

/// `watchdog_thread = false` (what `policy replay` sets): the evaluation runs on the caller's
/// thread, and fuel and the deadline still stop a guest that never returns.
#[test]
fn without_the_watchdog_thread_evaluations_run_inline_and_are_still_bounded() {
    let rt = Arc::new(PolicyRuntime::new(Limits { watchdog_thread: false, ..test_limits() }).unwrap());
    let policy = load_in(&rt, &probe_wasm(), r#"{"mode":"ok"}"#).unwrap();
    let caller = std::thread::current().id();
    let ran_on = policy.guarded(Function::Scale, |_| Ok(std::thread::current().id())).unwrap();
    assert_eq!(ran_on, caller, "no hand-off to an evaluation thread");
    let inline = policy.guarded(Function::Scale, |p| p.scale(&snapshot())).unwrap();
    assert_eq!(inline, probe("ok").scale(&snapshot()).unwrap(), "the same answer as through the watchdog");
    let spinning = unlimited_fuel_spinner(Limits { watchdog_thread: false, ..test_limits() });
    let started = Instant::now();
    let err = spinning.guarded(Function::Scale, |p| p.scale(&snapshot())).unwrap_err();
    assert_eq!(err.cause, Cause::Timeout(test_limits().deadline), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
