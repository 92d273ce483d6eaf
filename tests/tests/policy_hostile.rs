//! Hostile policies (tests/hostile/*): each is contained with a clear typed error within its
//! budget, and a good policy evaluates normally in the same runtime afterwards.

use std::time::{Duration, Instant};

use e2e::policy::{
    load, load_in, roomy_limits, roomy_runtime, runtime, test_limits, workspace_wasm,
};
use ecs_provisioner::policy::bench::{Shape, synthetic_snapshot};
use ecs_provisioner::policy::{Cause, Function, PlaceRequest, Policy, PolicySource, Snapshot};

fn snapshot() -> Snapshot {
    synthetic_snapshot(Shape {
        nodes: 20,
        queued: 30,
        offerings: 8,
    })
}

fn request(s: &Snapshot) -> PlaceRequest {
    PlaceRequest {
        now_ms: s.now_ms,
        template: s.templates[0].clone(),
        count: 3,
    }
}

fn hostile(name: &str) -> Policy {
    load(&workspace_wasm(&format!("hostile-{name}")), "{}")
        .unwrap_or_else(|e| panic!("hostile-{name} loads: {e}"))
}

/// The default policy, evaluated in the same shared runtime after the hostile one.
fn good_policy_still_works() {
    let good = load(&workspace_wasm("policy-default"), "{}").expect("policy-default loads");
    let s = snapshot();
    good.scale(&s).expect("the default policy still scales");
    good.place(&request(&s), &s.offerings, &[])
        .expect("the default policy still places");
}

#[test]
fn infinite_loop_times_out() {
    let p = hostile("infinite-loop");
    let started = Instant::now();
    let err = p.scale(&snapshot()).unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        (err.function, &err.cause),
        (
            Some(Function::Scale),
            &Cause::Timeout(test_limits().deadline)
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("ran past its wall-clock time budget of 100 ms"),
        "{err}"
    );
    // Bounded by the deadline rather than hanging (slack for a loaded 2-core machine).
    assert!(took < Duration::from_secs(5), "took {took:?}");
    good_policy_still_works();
}

#[test]
fn memory_bomb_hits_the_cap() {
    // With the 100 ms test deadline a loaded machine may time the bomb out first; the roomy
    // runtime's long deadline makes the memory cap the limit that stops it.
    let bomb = load_in(
        &roomy_runtime(),
        &workspace_wasm("hostile-memory-bomb"),
        "{}",
    )
    .expect("loads");
    let err = bomb.scale(&snapshot()).unwrap_err();
    assert_eq!(err.function, Some(Function::Scale));
    let cap = roomy_limits().memory_bytes;
    assert!(
        matches!(err.cause, Cause::MemoryCap { cap: c, requested } if c == cap && requested > cap),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("exceeded the memory cap of 32 MiB"),
        "{err}"
    );
    // The same bomb under the shared runtime is stopped too, by whichever limit comes first.
    let err = hostile("memory-bomb").scale(&snapshot()).unwrap_err();
    assert!(matches!(err.kind(), "memory-cap" | "timeout"), "{err}");
    good_policy_still_works();
}

#[test]
fn trap_is_a_trap_with_the_panic_message() {
    let p = hostile("trap");
    let s = snapshot();
    let err = p.scale(&s).unwrap_err();
    assert_eq!(
        (err.kind(), err.function),
        ("trap", Some(Function::Scale)),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("hostile-trap: deliberate panic in scale"),
        "{err}"
    );
    let err = p.place(&request(&s), &s.offerings, &[]).unwrap_err();
    assert_eq!(
        (err.kind(), err.function),
        ("trap", Some(Function::Place)),
        "{err}"
    );
    assert!(err.to_string().contains("unreachable"), "{err}");
    good_policy_still_works();
}

#[test]
fn nonsense_is_invalid_output() {
    let p = hostile("nonsense");
    let s = snapshot();
    let err = p.scale(&s).unwrap_err();
    assert_eq!(err.kind(), "invalid-output", "{err}");
    assert!(
        err.to_string()
            .contains("launches[0]: unknown template `no-such-template`"),
        "{err}"
    );
    let err = p.place(&request(&s), &s.offerings, &[]).unwrap_err();
    assert_eq!(err.kind(), "invalid-output", "{err}");
    assert!(
        err.to_string()
            .contains("placements[0]: offering index 8 out of range (there are 8 offerings)"),
        "{err}"
    );
    good_policy_still_works();
}

#[test]
fn wrong_version_names_both_versions() {
    let wasm = workspace_wasm("hostile-wrong-version");
    let err = runtime().load(&PolicySource::Path(wasm), "{}").unwrap_err();
    assert_eq!(err.kind(), "incompatible-contract");
    assert_eq!(
        err.to_string(),
        "policy `hostile_wrong_version` was built for contract ecs-provisioner:policy@0.3.0; this host accepts 0.2.x, 0.1.x"
    );
    good_policy_still_works();
}

// ---------------------------------------------------------------------------------------
// Issue 10: a policy can neither wedge the daemon nor flood it. The guests below are built
// from the WIT with plain wit-bindgen (tests/hostile/{sleeper,huge,chatty,cpu-heavy}).
// ---------------------------------------------------------------------------------------

use std::sync::{Arc, OnceLock};

use ecs_provisioner::policy::bounds::{MAX_TEXT_BYTES, TRUNCATED};
use ecs_provisioner::policy::{Limits, PolicyRuntime};

/// The longest a bounded text can be.
const BOUNDED: usize = MAX_TEXT_BYTES + TRUNCATED.len();

/// A runtime whose only binding limit is fuel: a small budget (20 M, a few ms of CPU) and
/// a wall-clock backstop (30 s) no test gets near, so "stopped" here means "out of fuel".
fn fuel_runtime() -> Arc<PolicyRuntime> {
    static RT: OnceLock<Arc<PolicyRuntime>> = OnceLock::new();
    RT.get_or_init(|| {
        Arc::new(
            PolicyRuntime::new(Limits {
                fuel: 20_000_000,
                deadline: Duration::from_secs(30),
                max_instances: 8,
                ..Limits::default()
            })
            .expect("runtime"),
        )
    })
    .clone()
}

/// Default limits but a wall-clock backstop (30 s) that a loaded test machine never reaches:
/// what stops a guest here is the limit under test, not the clock.
fn patient_runtime() -> Arc<PolicyRuntime> {
    static RT: OnceLock<Arc<PolicyRuntime>> = OnceLock::new();
    RT.get_or_init(|| {
        Arc::new(
            PolicyRuntime::new(Limits {
                deadline: Duration::from_secs(30),
                max_instances: 8,
                ..Limits::default()
            })
            .expect("runtime"),
        )
    })
    .clone()
}

fn guest(name: &str, settings: &str) -> Policy {
    load_in(
        &patient_runtime(),
        &workspace_wasm(&format!("hostile-{name}")),
        settings,
    )
    .unwrap_or_else(|e| panic!("hostile-{name} loads with {settings}: {e}"))
}

/// No control character and no more than `max` bytes: nothing that could forge a log line
/// or bloat what the host keeps.
fn assert_bounded(what: &str, text: &str, max: usize) {
    assert!(
        text.len() <= max,
        "{what}: {} bytes > {max}: {}",
        text.len(),
        &text[..200.min(text.len())]
    );
    assert!(
        !text.chars().any(char::is_control),
        "{what} holds a control character: {text:?}"
    );
}

#[test]
fn sleeping_in_any_function_returns_at_once() {
    let s = snapshot();
    for at in ["configure", "scale", "place"] {
        let settings = format!(r#"{{"in": "{at}", "how": "sleep", "secs": 3600}}"#);
        let started = Instant::now();
        let p = guest("sleeper", &settings); // load runs configure
        p.scale(&s).unwrap_or_else(|e| panic!("{at}: {e}"));
        p.place(&request(&s), &s.offerings, &[])
            .unwrap_or_else(|e| panic!("{at}: {e}"));
        let took = started.elapsed();
        // An hour asked for; the sleep is a no-op (the margin is for a loaded machine).
        assert!(
            took < Duration::from_secs(10),
            "sleeping in {at} took {took:?}"
        );
    }
}

#[test]
fn waiting_for_the_clock_runs_out_of_fuel_in_every_function() {
    let wasm = workspace_wasm("hostile-sleeper");
    let rt = fuel_runtime();
    let s = snapshot();
    for (at, function) in [
        ("configure", Function::Configure),
        ("scale", Function::Scale),
        ("place", Function::Place),
    ] {
        let settings = format!(r#"{{"in": "{at}", "how": "wait-clock", "secs": 1}}"#);
        let started = Instant::now();
        let err = match load_in(&rt, &wasm, &settings) {
            Err(e) => e,
            Ok(p) if at == "scale" => p.scale(&s).unwrap_err(),
            Ok(p) => p.place(&request(&s), &s.offerings, &[]).unwrap_err(),
        };
        assert_eq!(
            (err.function, &err.cause),
            (Some(function), &Cause::OutOfFuel(20_000_000)),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("used up its CPU budget of 20000000 fuel"),
            "{err}"
        );
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "{at}: {took:?}");
    }
}

#[test]
fn a_huge_err_is_refused_before_it_is_copied() {
    let s = snapshot();
    let started = Instant::now();
    let err = guest("huge", r#"{"what": "err"}"#).scale(&s).unwrap_err();
    assert_eq!(
        (err.kind(), err.function),
        ("answer-too-large", Some(Function::Scale)),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "policy `hostile_huge`: scale: handed the host more than 1 MiB at once; nothing of it was kept"
    );
    let err = guest("huge", r#"{"what": "place-err"}"#)
        .place(&request(&s), &s.offerings, &[])
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.function),
        ("answer-too-large", Some(Function::Place)),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // Below the answer cap, the text is copied but only its first KiB kept, escaped.
    let err = guest("huge", r#"{"what": "err", "kib": 300}"#)
        .scale(&s)
        .unwrap_err();
    assert_eq!(err.kind(), "rejected");
    let Cause::Rejected(text) = &err.cause else {
        unreachable!()
    };
    assert_bounded("the Err text", text, BOUNDED);
    assert!(
        text.starts_with("huge\\n2026-01-01") && text.ends_with(TRUNCATED),
        "{text}"
    );
    good_policy_still_works();
}

#[test]
fn huge_reasons_are_cut_and_huge_names_fail_with_bounded_errors() {
    let s = snapshot();
    let plan = guest("huge", r#"{"what": "reason", "kib": 300}"#)
        .scale(&s)
        .expect("a plan with a long reason is fine");
    let reason = &plan.launches[0].reason;
    assert_bounded("the reason", reason, BOUNDED);
    assert!(reason.ends_with(TRUNCATED));
    for what in ["template", "instance-id"] {
        let err = guest("huge", &format!(r#"{{"what": "{what}", "kib": 300}}"#))
            .scale(&s)
            .unwrap_err();
        assert_eq!(err.kind(), "invalid-output", "{err}");
        assert_bounded(what, &err.to_string(), 8 * 1024);
        // The same at 40 MiB is refused whole.
        let err = guest("huge", &format!(r#"{{"what": "{what}"}}"#))
            .scale(&s)
            .unwrap_err();
        assert_eq!(err.kind(), "answer-too-large", "{err}");
    }
}

#[test]
fn chatty_logs_are_limited_across_calls_and_a_huge_line_is_refused() {
    use ecs_provisioner::policy::log::dropped_lines;
    let dropped = || {
        dropped_lines()
            .into_iter()
            .find(|(p, _)| p == "hostile_chatty")
            .map_or(0, |(_, n)| n)
    };
    let before = dropped();
    let p = guest("chatty", r#"{"lines": 200}"#);
    let s = snapshot();
    p.scale(&s).expect("chatter is not an error");
    // configure and scale each logged 200: at most 50 per evaluation pass.
    assert!(
        dropped() >= before + 2 * 150,
        "dropped {} -> {}",
        before,
        dropped()
    );
    let err = guest("chatty", r#"{"lines": 0, "huge-line-kib": 2048}"#)
        .scale(&s)
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.function),
        ("answer-too-large", Some(Function::Scale)),
        "{err}"
    );
}

/// Rounds of the CPU-heavy guest's loop that use about 70% of the default fuel budget per
/// call: legal, and heavy.
fn heavy_rounds() -> u64 {
    // Measured fuel per round, from a small run, scaled to the target.
    static ROUNDS: OnceLock<u64> = OnceLock::new();
    *ROUNDS.get_or_init(|| {
        let probe = 100_000;
        let p = guest("cpu-heavy", &format!(r#"{{"rounds": {probe}}}"#));
        let base = guest("cpu-heavy", r#"{"rounds": 0}"#)
            .scale_measured(&snapshot())
            .1
            .fuel_used;
        let used = p.scale_measured(&snapshot()).1.fuel_used;
        let per_round = (used - base) as f64 / probe as f64;
        (0.7 * Limits::default().fuel as f64 / per_round) as u64
    })
}

#[test]
fn fuel_is_deterministic_and_reported() {
    let p = guest("cpu-heavy", r#"{"rounds": 200000}"#);
    let s = snapshot();
    let a = p.scale_measured(&s).1.fuel_used;
    let b = p.scale_measured(&s).1.fuel_used;
    assert_eq!(a, b, "the same call on the same input uses the same fuel");
    assert!(a > 200_000, "{a}");
}

/// Busy threads that keep every core loaded while they live: load average well above 8 on
/// this 2-core machine when combined with the policy's own thread.
struct Load(
    Arc<std::sync::atomic::AtomicBool>,
    Vec<std::thread::JoinHandle<()>>,
);

impl Load {
    fn start(threads: usize) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handles = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 1u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Load(stop, handles)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in self.1.drain(..) {
            let _ = h.join();
        }
    }
}

/// Held by the tests that load the machine on purpose or run the daemon: one at a time, so
/// the load each of them means to create is the load it gets (two load tests side by side
/// would make load average 16, not 8), and daemons are not starved by another test's load.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// [`serial`] for a test outside any async runtime.
fn serial_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.blocking_lock()
}

#[test]
fn a_legal_cpu_heavy_policy_is_never_cut_off_under_load() {
    let _serial = serial_blocking();
    // The default limits: the default fuel and the default wall-clock backstop.
    let rt = Arc::new(
        PolicyRuntime::new(Limits {
            max_instances: 4,
            ..Limits::default()
        })
        .unwrap(),
    );
    let rounds = heavy_rounds();
    let p = load_in(
        &rt,
        &workspace_wasm("hostile-cpu-heavy"),
        &format!(r#"{{"rounds": {rounds}}}"#),
    )
    .unwrap();
    let s = snapshot();
    let _load = Load::start(8);
    for i in 0..3 {
        let started = Instant::now();
        let (r, stats) = p.scale_measured(&s);
        let plan = r.unwrap_or_else(|e| {
            panic!(
                "call {i} under load was cut off after {:?}: {e}",
                started.elapsed()
            )
        });
        assert!(!plan.launches.is_empty());
        let share = stats.fuel_used as f64 / Limits::default().fuel as f64;
        assert!((0.6..0.8).contains(&share), "fuel share {share}");
        eprintln!(
            "cpu-heavy call {i} under load: {:?}, {:.0}% of the fuel",
            started.elapsed(),
            share * 100.0
        );
    }
}

// ---- `policy test` and `policy bench` on the hostile guests -----------------------------

#[test]
fn policy_test_reports_every_hostile_case_promptly() {
    use ecs_provisioner::policy::cli::{RuntimeArgs, TestArgs, test};
    let dir = tempfile::tempdir().unwrap();
    let fixtures = [
        (
            "sleeper",
            r#"
[[case]]
name = "sleep in configure"
function = "configure"
settings = { in = "configure", how = "sleep", secs = 3600 }
[[case]]
name = "sleep in scale"
settings = { in = "scale", how = "sleep", secs = 3600 }
[[case]]
name = "sleep in place"
function = "place"
settings = { in = "place", how = "sleep", secs = 3600 }
offerings = [{ zone = "cn-hangzhou-h" }]
[[case]]
name = "wait for the clock in configure"
function = "configure"
settings = { in = "configure", how = "wait-clock", secs = 1 }
expect.error-kind = "out-of-fuel"
[[case]]
name = "wait for the clock in scale"
settings = { in = "scale", how = "wait-clock", secs = 1 }
expect.error-kind = "out-of-fuel"
[[case]]
name = "wait for the clock in place"
function = "place"
settings = { in = "place", how = "wait-clock", secs = 1 }
expect.error-kind = "out-of-fuel"
"#,
        ),
        (
            "huge",
            r#"
[snapshot]
templates = [{ name = "linux" }]
[[case]]
name = "40 MiB Err"
settings = { what = "err" }
expect.error-kind = "answer-too-large"
[[case]]
name = "40 MiB place Err"
function = "place"
settings = { what = "place-err" }
expect.error-kind = "answer-too-large"
[[case]]
name = "300 KiB reason"
settings = { what = "reason", kib = 300 }
[[case]]
name = "300 KiB template name"
settings = { what = "template", kib = 300 }
expect.error-kind = "invalid-output"
"#,
        ),
        (
            "chatty",
            r#"
[[case]]
name = "flood"
settings = { lines = 500 }
[[case]]
name = "a 2 MiB line"
settings = { lines = 0, huge-line-kib = 2048 }
expect.error-kind = "answer-too-large"
"#,
        ),
        (
            "cpu-heavy",
            r#"
[snapshot]
templates = [{ name = "linux" }]
demand = [{ template = "linux", queued = 4 }]
[[case]]
name = "heavy but legal"
settings = { rounds = 2000000 }
expect.launch = { linux = 2 }
"#,
        ),
    ];
    for (name, text) in fixtures {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let args = TestArgs {
            policy: workspace_wasm(&format!("hostile-{name}"))
                .display()
                .to_string(),
            fixtures: vec![path],
            runtime: RuntimeArgs {
                memory_mib: 64,
                fuel: 100_000_000,
                deadline_ms: 5_000,
                no_cache: true,
                cache_dir: None,
                keep_resident_kib: 2048,
            },
        };
        let started = Instant::now();
        let mut out = Vec::new();
        let code = test(&args, &mut out);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(code, 0, "policy test on hostile-{name}:\n{out}");
        assert_bounded(
            &format!("policy test output for {name}"),
            &out.replace('\n', " "),
            64 << 10,
        );
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(60),
            "policy test on hostile-{name} took {took:?}"
        );
    }
}

#[test]
fn policy_bench_reports_fuel_and_stops_on_a_waiting_guest() {
    use ecs_provisioner::policy::bench::run;
    let limits = Limits {
        max_instances: 4,
        ..Limits::default()
    };
    let shape = Shape {
        nodes: 20,
        queued: 30,
        offerings: 8,
    };
    let heavy = workspace_wasm("hostile-cpu-heavy").display().to_string();
    let report = run(&heavy, r#"{"rounds": 100000}"#, shape, 3, &limits).expect("bench runs");
    assert_eq!(report.fuel_budget, limits.fuel);
    assert!(
        report.scale_fuel > 100_000 && report.place_fuel > 100_000,
        "{report:?}"
    );
    assert!(
        report.to_string().contains("fuel used by scale"),
        "{report}"
    );
    let sleeper = workspace_wasm("hostile-sleeper").display().to_string();
    let started = Instant::now();
    let small = Limits {
        fuel: 20_000_000,
        ..limits
    };
    let err = run(
        &sleeper,
        r#"{"in": "scale", "how": "wait-clock"}"#,
        shape,
        3,
        &small,
    )
    .unwrap_err();
    assert_eq!(err.kind(), "out-of-fuel", "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

// ---- `plan` and a running daemon on the emulators ---------------------------------------

use std::io::{Read, Write as _};
use std::path::Path;

use ecs_provisioner::app;
use ecs_provisioner::sim::cluster::{Cluster, ClusterOptions};

const EXE: &str = env!("CARGO_BIN_EXE_e2e-provisioner");

const TEMPLATE: &str = r#"
[[template]]
name = "linux"
labels = ["linux"]
executors = 2
max-nodes = 2
instance-types = ["ecs.c7.large"]
remote-fs = "agent"
agent-command = "true {secret_file}"
"#;

/// The `[policy]` table for hostile guest `name` with inline-table `settings`.
fn policy_toml(name: &str, settings: &str, extra: &str) -> String {
    let wasm = workspace_wasm(&format!("hostile-{name}"));
    format!(
        "[policy]\nsource = \"{}\"\nsettings = {settings}\n{extra}\n",
        wasm.display()
    )
}

/// The hostile cases run against `plan` and the daemon: (what, guest, settings, decided by).
fn daemon_cases() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    vec![
        (
            "sleep in configure",
            "sleeper",
            r#"{ in = "configure", how = "sleep", secs = 3600 }"#,
            "policy",
        ),
        (
            "sleep in scale",
            "sleeper",
            r#"{ in = "scale", how = "sleep", secs = 3600 }"#,
            "policy",
        ),
        (
            "wait for the clock in scale",
            "sleeper",
            r#"{ in = "scale", how = "wait-clock", secs = 1 }"#,
            "fallback",
        ),
        ("40 MiB Err", "huge", r#"{ what = "err" }"#, "fallback"),
        (
            "300 KiB reason",
            "huge",
            r#"{ what = "reason", kib = 300 }"#,
            "policy",
        ),
        (
            "40 MiB template name",
            "huge",
            r#"{ what = "template" }"#,
            "fallback",
        ),
        (
            "log flood with control characters",
            "chatty",
            r#"{ lines = 1000 }"#,
            "policy",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_decides_promptly_with_bounded_output_for_every_hostile_guest() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(ClusterOptions::ephemeral(dir.path()))
        .await
        .expect("emulators");
    for (what, name, settings, by) in daemon_cases() {
        let config = Arc::new(
            cluster
                .config("plan", TEMPLATE, &policy_toml(name, settings, ""))
                .unwrap(),
        );
        let started = Instant::now();
        let (engine, _) = app::wire(config).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let report = engine.cycle(false).await;
        let took = started.elapsed();
        eprintln!(
            "plan, {what}: decided by {:?} in {:.1} ms (load and plan {took:?})",
            report.decided_by,
            report.policy_micros as f64 / 1e3
        );
        assert!(took < Duration::from_secs(30), "{what}: plan took {took:?}");
        let decided = format!("{:?}", report.decided_by.expect("decided")).to_lowercase();
        assert_eq!(decided, by, "{what}: {:?}", report.policy_error);
        let text = app::render_plan(&report);
        assert_bounded(&format!("{what}: plan"), &text.replace('\n', " "), 16 << 10);
        let json = serde_json::to_string(&report).unwrap();
        assert!(
            json.len() < 32 << 10,
            "{what}: plan --json is {} bytes",
            json.len()
        );
        if let Some(e) = &report.policy_error {
            assert_bounded(&format!("{what}: policy error"), e, 8 << 10);
        }
    }
    cluster.shutdown().await;
}

/// The daemon as a child process (`run --config FILE`), its stderr in a file.
struct Daemon {
    child: std::process::Child,
    log: std::path::PathBuf,
    port: u16,
}

impl Daemon {
    fn start(dir: &Path, config_text: &str) -> Daemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text = config_text.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
        assert!(
            text.contains(&format!(":{port}\"")),
            "the cluster config's listen line changed"
        );
        let config = dir.join(format!("daemon-{port}.toml"));
        std::fs::write(&config, text).unwrap();
        let log = dir.join(format!("daemon-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(EXE)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("starting the daemon");
        Daemon { child, log, port }
    }

    /// `GET path` over plain HTTP/1.0: (status, body), or None while nothing answers.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let status = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
        Some((status, body))
    }

    /// A counter or gauge from /metrics (the sum over its label sets).
    fn metric(&self, name: &str) -> f64 {
        let Some((200, text)) = self.get("/metrics") else {
            return 0.0;
        };
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Peak resident memory so far (VmHWM), MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// SIGTERM, then how long the daemon took to exit (panics past `within`).
    fn terminate(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "the daemon exited with {status}:\n{}",
                    tail(&self.log_text())
                );
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "the daemon ignored SIGTERM for {within:?}:\n{}",
                tail(&self.log_text())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(4000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Polls every 200 ms until `ok` holds; panics with `what` after `timeout`.
async fn wait(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one daemon run measured.
#[derive(Debug)]
struct Run {
    cycles: f64,
    seconds: f64,
    peak_rss_mib: f64,
    log_bytes: usize,
    log: String,
    /// /metrics just before SIGTERM.
    metrics: String,
    stop: Duration,
}

impl Run {
    /// A counter from the metrics, for the label set that contains `labels` (0 if absent).
    fn counter(&self, name: &str, labels: &str) -> f64 {
        self.metrics
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Runs the daemon with `policy` until it completed `cycles` more cycles after start-up,
/// checking /healthz on the way; then SIGTERM.
async fn run_daemon(
    dir: &Path,
    cluster: &Cluster,
    what: &str,
    policy: &str,
    cycles: f64,
) -> (Run, Daemon) {
    let text = cluster.config_text("hostile", TEMPLATE, policy).unwrap();
    let mut d = Daemon::start(dir, &text);
    let started = Instant::now();
    wait(
        &format!("{what}: the daemon's first cycle"),
        Duration::from_secs(60),
        || d.metric("ecs_provisioner_cycles_total") >= 1.0,
    )
    .await;
    wait(
        &format!("{what}: {cycles} cycles"),
        Duration::from_secs(60),
        || {
            let (code, body) = d.get("/healthz").unwrap_or((0, String::new()));
            assert_eq!(code, 200, "{what}: /healthz says {body}");
            d.metric("ecs_provisioner_cycles_total") >= cycles
        },
    )
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let (code, status) = d.get("/status.json").expect("/status.json answers");
    assert_eq!(code, 200);
    assert!(
        status.len() < 256 << 10,
        "{what}: /status.json is {} bytes",
        status.len()
    );
    let run_cycles = d.metric("ecs_provisioner_cycles_total");
    let metrics = d.get("/metrics").map(|(_, m)| m).unwrap_or_default();
    let peak_rss_mib = d.peak_rss_mib();
    let stop = d.terminate(Duration::from_secs(20));
    let log = d.log_text();
    let r = Run {
        cycles: run_cycles,
        seconds,
        peak_rss_mib,
        log_bytes: log.len(),
        log,
        metrics,
        stop,
    };
    eprintln!(
        "{what}: {} cycles in {:.1} s, peak RSS {:.1} MiB, log {} bytes, stopped {:?} after SIGTERM",
        r.cycles, r.seconds, r.peak_rss_mib, r.log_bytes, r.stop
    );
    (r, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_keeps_cycling_small_and_quiet_with_every_hostile_guest() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(ClusterOptions::ephemeral(dir.path()))
        .await
        .expect("emulators");
    for (what, name, settings, by) in daemon_cases() {
        // Across time the log may take 60 lines a minute in bursts of 10: a few seconds of
        // a flood at 1000 lines a call shows the limit holding over many calls.
        let limits = "log-lines-per-minute = 60\nlog-burst = 10";
        let (run, _) = run_daemon(
            dir.path(),
            &cluster,
            what,
            &policy_toml(name, settings, limits),
            5.0,
        )
        .await;
        // 100 MB = 95.4 MiB; the 40 MiB guests' own linear memory counts.
        assert!(
            run.peak_rss_mib * 1.048_576 < 100.0,
            "{what}: peak RSS {:.1} MiB",
            run.peak_rss_mib
        );
        assert!(
            run.log_bytes < 256 << 10,
            "{what}: {} bytes of log:\n{}",
            run.log_bytes,
            tail(&run.log)
        );
        let decisions = run.counter("ecs_provisioner_decisions_total", "");
        let ours = run.counter("ecs_provisioner_decisions_total", &format!("by=\"{by}\""));
        assert!(
            decisions >= 5.0 && ours == decisions,
            "{what}: {ours} of {decisions} decisions by {by}:\n{}",
            run.metrics
        );
        // No line of the log starts with what a guest forged.
        assert!(
            !run.log
                .lines()
                .any(|l| l.starts_with("2026-01-01T00:00:00")),
            "{what}: a forged log line:\n{}",
            tail(&run.log)
        );
        if name == "chatty" {
            let lines = run.log.matches("FORGED-HOST-LINE").count();
            // 10 at once plus one a second; never the 50 per call the per-call cap allows.
            let allowed = 10.0 + run.seconds + 3.0;
            assert!(
                lines >= 1 && (lines as f64) <= allowed,
                "{what}: {lines} policy lines in {:.1} s (allowed {allowed})",
                run.seconds
            );
            assert!(
                run.log
                    .contains("policy log lines dropped by the rate limit"),
                "{what}"
            );
            let dropped = run.counter(
                "ecs_provisioner_policy_log_lines_dropped_total",
                "policy=\"hostile_chatty\"",
            );
            assert!(
                dropped >= 1000.0,
                "{what}: {dropped} dropped lines counted:\n{}",
                run.metrics
            );
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_reports_a_forced_wedge_and_recovers() {
    let _serial = serial().await;
    use ecs_provisioner::sim::ecs::Faults;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(ClusterOptions::ephemeral(dir.path()))
        .await
        .expect("emulators");
    let d = Daemon::start(
        dir.path(),
        &cluster.config_text("wedge", TEMPLATE, "").unwrap(),
    );
    wait("the first cycle", Duration::from_secs(60), || {
        d.metric("ecs_provisioner_cycles_total") >= 2.0
    })
    .await;
    assert_eq!(d.get("/healthz").map(|(c, _)| c), Some(200));

    // The wedge: every cloud call now takes 25 s, so the cycle awaiting the fleet list
    // stalls far past 5 poll intervals (5 s in this config); /healthz must say so within
    // the 20 s that leaves (generous: the machine is loaded).
    cluster
        .ecs
        .set_faults(Faults {
            latency_ms: 25_000,
            ..Faults::default()
        })
        .unwrap();
    let wedged_at = Instant::now();
    let mut seen = None;
    wait(
        "/healthz to report the wedge",
        Duration::from_secs(20),
        || {
            seen = d.get("/healthz").filter(|(c, _)| *c == 503);
            seen.is_some()
        },
    )
    .await;
    let (_, body) = seen.unwrap();
    assert!(
        body.contains("stuck") && body.contains("more than 5 poll intervals (5.0 s)"),
        "{body}"
    );
    let (_, status) = d.get("/status.json").unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["health"]["ok"], false, "{status}");
    assert!(
        status["health"]["reason"]
            .as_str()
            .unwrap()
            .contains("the reconcile loop is stuck"),
        "{status}"
    );
    eprintln!(
        "/healthz reported the wedge {:?} after it began",
        wedged_at.elapsed()
    );

    cluster.ecs.set_faults(Faults::default()).unwrap();
    wait("/healthz to recover", Duration::from_secs(60), || {
        d.get("/healthz").is_some_and(|(c, _)| c == 200)
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_never_cuts_off_a_legal_cpu_heavy_policy_under_load() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(ClusterOptions::ephemeral(dir.path()))
        .await
        .expect("emulators");
    let rounds = heavy_rounds();
    let policy = policy_toml("cpu-heavy", &format!("{{ rounds = {rounds} }}"), "");
    let load = Load::start(8);
    let (run, _) = run_daemon(dir.path(), &cluster, "cpu-heavy under load", &policy, 5.0).await;
    drop(load);
    let by_policy = run.counter("ecs_provisioner_decisions_total", "by=\"policy\"");
    let all = run.counter("ecs_provisioner_decisions_total", "");
    assert!(
        all >= 5.0 && by_policy == all,
        "{by_policy} of {all} decisions by the policy:\n{}",
        run.metrics
    );
    assert!(
        run.peak_rss_mib * 1.048_576 < 100.0,
        "peak RSS {:.1} MiB",
        run.peak_rss_mib
    );
    cluster.shutdown().await;
}
