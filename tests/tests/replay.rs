//! `policy trace generate`, `policy trace import` (from the Jenkins emulator) and `policy
//! replay` with real WebAssembly policies.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use ecs_provisioner::app::replay::{ReplayArgs, TraceCommand, replay_outcomes, trace_command};
use ecs_provisioner::jenkins::{InboundAgentSpec, NodeMode};
use ecs_provisioner::replay::trace::Build as TraceBuild;
use ecs_provisioner::sim::jenkins::{EnqueueRequest, JenkinsSim, JobKind, JobSpec};

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

/// An emulated controller with one online agent `l1` (label `linux`, one executor), and a
/// runtime that keeps it serving while the test imports from it.
fn controller_with_agent() -> (tokio::runtime::Runtime, JenkinsSim, tokio::sync::oneshot::Sender<()>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sim, stop) = rt.block_on(async {
        let sim = e2e::jenkins::start_sim().await;
        let spec = InboundAgentSpec {
            name: "l1".into(),
            description: "replay import".into(),
            num_executors: 1,
            remote_fs: "/w".into(),
            labels: vec!["linux".into()],
            mode: NodeMode::Normal,
        };
        e2e::jenkins::client(&sim).create_inbound_agent(&spec).await.unwrap();
        let agent = sim.handle().connect_in_process("l1", &sim.agent_secret("l1")).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(agent.hold(async move { stopped.await.unwrap_or(()) }));
        (sim, stop)
    });
    (rt, sim, stop)
}

fn import(argv: &[&str]) -> anyhow::Result<i32> {
    let mut all = vec!["trace", "import"];
    all.extend_from_slice(argv);
    trace_command(&Trace::parse_from(all).cmd)
}

#[test]
fn a_jenkins_build_history_imports_with_its_queue_waits_and_replays() {
    let (rt, sim, stop) = controller_with_agent();
    let job = |name: &str, kind, label: Option<&str>, duration_ms| {
        sim.define_job(JobSpec { name: name.into(), kind, label: label.map(str::to_owned), duration_ms });
        let req = EnqueueRequest { job: Some(name.into()), kind, label: label.map(str::to_owned), duration_ms, count: Some(1) };
        sim.enqueue(req).unwrap();
    };
    // One executor: each build waits for those before it.
    job("compile", JobKind::Freestyle, Some("linux"), 300);
    job("compile", JobKind::Freestyle, Some("linux"), 300);
    job("lint", JobKind::Freestyle, None, 200);
    job("deploy", JobKind::Pipeline, Some("linux"), 250);
    let done = |n: usize| rt.block_on(sim.wait_for_nodes(Duration::from_secs(20), |_| sim.stats().completed.len() == n));
    assert!(done(4), "{:#?}", sim.stats());
    // Running when imported: skipped.
    job("long", JobKind::Freestyle, Some("linux"), 600_000);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("imported.jsonl");
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{}\n", sim.token())).unwrap();
    let code = import(&["--jenkins", sim.base_url(), "--user", sim.user(), "--token-file", token.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(code.unwrap(), 0);

    // What the emulator measured: freestyle builds arrive when queued and run from their
    // start; a Pipeline run starts when triggered (its node block's wait is in its duration)
    // and its label is in its script, which Jenkins does not export.
    let stats = sim.stats();
    assert!(stats.completed.iter().any(|c| c.wait_ms >= 250), "builds waited for the one executor: {:#?}", stats.completed);
    let mut expected: Vec<TraceBuild> = stats
        .completed
        .iter()
        .map(|c| match c.kind {
            JobKind::Freestyle => TraceBuild { at_ms: c.enqueued_ms, label: c.label.clone(), duration_ms: c.finished_ms - c.started_ms },
            JobKind::Pipeline => TraceBuild { at_ms: c.enqueued_ms, label: None, duration_ms: c.finished_ms - c.enqueued_ms },
        })
        .collect();
    let key = |b: &TraceBuild| (b.at_ms, b.label.clone(), b.duration_ms);
    expected.sort_by_key(key);
    let trace = ecs_provisioner::app::replay::read_trace(&out).unwrap();
    let mut got = trace.builds.clone();
    got.sort_by_key(key);
    assert_eq!(got, expected);
    assert_eq!((trace.start_ms, trace.end_ms), (expected[0].at_ms, expected.iter().map(|b| b.at_ms).max().unwrap()));

    // `policy replay` takes the file and serves every build.
    let outcomes = replay_outcomes(&replay_args(dir.path(), &out, &["builtin:default"])).unwrap();
    let r = &outcomes[0].report;
    assert_eq!((r.builds, r.never_started, r.unservable), (4, 0, 0), "{r:#?}");
    let _ = stop.send(());
}

#[test]
fn an_unreachable_or_refusing_jenkins_is_named_and_nothing_is_written() {
    let (_rt, sim, _stop) = controller_with_agent();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.jsonl");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", l.local_addr().unwrap())
    };
    let e = format!("{:#}", import(&["--jenkins", &closed, "-o", out.to_str().unwrap()]).unwrap_err());
    assert!(e.contains(&format!("cannot reach Jenkins at {closed}api/json")) && e.contains("refused"), "{e}");
    assert!(!out.exists());

    let token = dir.path().join("token");
    std::fs::write(&token, "not-the-token").unwrap();
    let e = format!("{:#}", import(&["--jenkins", sim.base_url(), "--user", sim.user(), "--token-file", token.to_str().unwrap(), "-o", out.to_str().unwrap()]).unwrap_err());
    assert!(e.contains(&format!("{}api/json answered HTTP 401 Unauthorized", sim.base_url())), "{e}");
    assert!(!e.contains(sim.token()), "the token is never printed: {e}");
    assert!(!out.exists());

    // Not the root: the emulator's fallback answers 404.
    std::fs::write(&token, sim.token()).unwrap();
    let wrong = format!("{}jenkins/", sim.base_url());
    let e = format!("{:#}", import(&["--jenkins", &wrong, "--user", sim.user(), "--token-file", token.to_str().unwrap(), "-o", out.to_str().unwrap()]).unwrap_err());
    assert!(e.contains(&format!("{wrong}api/json answered HTTP 404 Not Found")), "{e}");
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only the token file: no temporary file is left");
}

#[test]
fn a_history_longer_than_a_page_is_read_whole() {
    let (rt, sim, stop) = controller_with_agent();
    sim.define_job(JobSpec { name: "quick".into(), kind: JobKind::Freestyle, label: None, duration_ms: 1 });
    let req = EnqueueRequest { job: Some("quick".into()), duration_ms: 1, count: Some(230), ..Default::default() };
    sim.enqueue(req).unwrap();
    assert!(rt.block_on(sim.wait_for_nodes(Duration::from_secs(30), |_| sim.stats().completed.len() == 230)));
    let dir = tempfile::tempdir().unwrap();
    let (out, token) = (dir.path().join("t.jsonl"), dir.path().join("token"));
    std::fs::write(&token, sim.token()).unwrap();
    import(&["--jenkins", sim.base_url(), "--user", sim.user(), "--token-file", token.to_str().unwrap(), "-o", out.to_str().unwrap()]).unwrap();
    let trace = ecs_provisioner::app::replay::read_trace(&out).unwrap();
    let mut got: Vec<u64> = trace.builds.iter().map(|b| b.at_ms).collect();
    let mut expected: Vec<u64> = sim.stats().completed.iter().map(|c| c.enqueued_ms).collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "three pages of 100, each build once");
    let _ = stop.send(());
}

/// A controller that is not the emulator: a folder holding a job (Jenkins' real shapes), a
/// Pipeline job whose build is malformed while `malformed` is set, and a path that answers a
/// login page.
async fn fake_controller(malformed: Arc<AtomicBool>) -> String {
    use axum::routing::get;
    let json = |v: serde_json::Value| ([("content-type", "application/json;charset=utf-8")], v.to_string());
    let app = axum::Router::new()
        .route("/api/json", get(move || async move {
            json(serde_json::json!({"_class": "hudson.model.Hudson", "jobs": [
                {"_class": "com.cloudbees.hudson.plugins.folder.Folder", "name": "team a", "jobs": [{"_class": "hudson.model.FreeStyleProject", "name": "x"}]},
                {"_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob", "name": "pipe"}]}))
        }))
        .route("/job/team%20a/api/json", get(move || async move {
            json(serde_json::json!({"_class": "com.cloudbees.hudson.plugins.folder.Folder", "jobs": [
                {"_class": "hudson.model.FreeStyleProject", "name": "build", "labelExpression": "linux"}]}))
        }))
        .route("/job/team%20a/job/build/api/json", get(move || async move {
            json(serde_json::json!({"_class": "hudson.model.FreeStyleProject", "allBuilds": [
                {"_class": "hudson.model.FreeStyleBuild", "number": 2, "timestamp": 5000, "duration": 70, "result": "FAILURE", "building": false,
                 "actions": [{"_class": "hudson.model.CauseAction"}, {}]},
                {"_class": "hudson.model.FreeStyleBuild", "number": 1, "timestamp": 4000, "duration": 60, "result": "SUCCESS", "building": false,
                 "actions": [{"_class": "jenkins.metrics.impl.TimeInQueueAction", "queuingDurationMillis": 1000}]}]}))
        }))
        .route("/job/pipe/api/json", get(move || async move {
            let duration = if malformed.load(Ordering::Relaxed) { serde_json::json!("long") } else { serde_json::json!(800) };
            json(serde_json::json!({"_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob", "allBuilds": [
                {"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun", "number": 9, "timestamp": 4500, "duration": duration, "result": "SUCCESS", "building": false,
                 "actions": [{"_class": "jenkins.metrics.impl.TimeInQueueAction", "queuingDurationMillis": 0}]}]}))
        }))
        .route("/login/api/json", get(|| async { ([("content-type", "text/html;charset=utf-8")], "<html>Sign in</html>") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[test]
fn folders_are_walked_and_bad_answers_are_named() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let malformed = Arc::new(AtomicBool::new(false));
    let url = rt.block_on(fake_controller(malformed.clone()));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.jsonl");
    import(&["--jenkins", &url, "-o", out.to_str().unwrap()]).unwrap();
    let trace = ecs_provisioner::app::replay::read_trace(&out).unwrap();
    let b = |at_ms, label: Option<&str>, duration_ms| TraceBuild { at_ms, label: label.map(str::to_owned), duration_ms };
    // The folder's job with its label; build #2 has no Metrics action (arrival = start); the
    // Pipeline job exports no label.
    assert_eq!(trace.builds, vec![b(3000, Some("linux"), 60), b(4500, None, 800), b(5000, Some("linux"), 70)]);
    assert_eq!((trace.start_ms, trace.end_ms), (3000, 5000));
    // A period: the trace spans it, builds outside are left out.
    let at = |ms: u64| time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap();
    import(&["--jenkins", &url, "--since", &at(2000), "--until", &at(4600), "-o", out.to_str().unwrap()]).unwrap();
    let trace = ecs_provisioner::app::replay::read_trace(&out).unwrap();
    assert_eq!((trace.start_ms, trace.end_ms, trace.builds.len()), (2000, 4600, 2));
    std::fs::remove_file(&out).unwrap();

    // A malformed build is named with its job and number.
    malformed.store(true, Ordering::Relaxed);
    let e = format!("{:#}", import(&["--jenkins", &url, "-o", out.to_str().unwrap()]).unwrap_err());
    assert!(e.contains("job \"pipe\", build #9: invalid type: string \"long\""), "{e}");
    assert!(!out.exists());
    // A login page is not JSON.
    let e = format!("{:#}", import(&["--jenkins", &format!("{url}login/"), "-o", out.to_str().unwrap()]).unwrap_err());
    assert!(e.contains(&format!("{url}login/api/json answered HTTP 200 OK with text/html;charset=utf-8, not JSON")), "{e}");
    assert!(!out.exists());
}

/// `policy replay --html` writes a page that a browser renders: headless Chromium shows the
/// table and three plots, each drawn with a line per policy and a legend naming them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_in_chromium_with_a_line_per_policy() {
    use e2e::browser::Browser;
    use fantoccini::Locator;

    let dir = tempfile::tempdir().unwrap();
    let trace = three_hours(dir.path());
    let candidate = e2e::policy::workspace_wasm("policy-office-hours");
    let mut args = replay_args(dir.path(), &trace, &["builtin:default", candidate.to_str().unwrap()]);
    let html = dir.path().join("report.html");
    args.html = Some(html.clone());
    assert_eq!(ecs_provisioner::app::replay::replay_command(&args).unwrap(), 0);

    let browser = Browser::start(&dir.path().join("chromium-profile")).await;
    let client = &browser.client;
    client.goto(&format!("file://{}", html.display())).await.expect("the page loads");
    assert_eq!(client.title().await.unwrap(), "Policy replay");
    let heading = client.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
    assert!(heading.contains("builtin:default vs ") && heading.contains("office_hours"), "heading: {heading}");
    let table = client.find(Locator::Id("table")).await.unwrap().text().await.unwrap();
    assert!(table.contains("queue wait p95") && table.contains("policy_office_hours"), "table: {table}");
    // What the browser laid out, not what the file says: each plot has a size on the page,
    // a line per policy, and a legend with both names.
    let plots = client
        .execute(
            "return [...document.querySelectorAll('figure.plot')].map(f => { \
               const svg = f.querySelector('svg'); const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0}; \
               return {caption: f.querySelector('figcaption').textContent, width: box.width, height: box.height, \
                       lines: svg ? [...svg.querySelectorAll('polyline')].filter(l => l.getAttribute('points').trim().split(/\\s+/).length > 10).length : 0, \
                       text: svg ? svg.textContent : ''}; })",
            vec![],
        )
        .await
        .unwrap();
    let plots = plots.as_array().expect("a list of plots");
    assert_eq!(plots.len(), 3, "{plots:#?}");
    for p in plots {
        assert!(p["width"].as_f64().unwrap() > 500.0 && p["height"].as_f64().unwrap() > 200.0, "laid out: {p}");
        assert!(p["lines"].as_u64().unwrap() >= 2, "a line per policy: {p}");
        let text = p["text"].as_str().unwrap();
        assert!(text.contains("builtin:default") && text.contains("office_hours"), "legend: {p}");
    }
    browser.keep_screenshot(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")), "replay-report.png").await;
}
