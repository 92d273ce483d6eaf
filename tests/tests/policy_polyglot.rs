//! Policies in Python and JavaScript (issue 14): each SDK's native tests (pytest, node --test),
//! the example policies natively and as components built by `policy build` against their
//! Rust twins' fixtures, the generated bindings kept in step with the WIT, and `policy new`
//! for each language scaffolded outside the checkout, tested, built, run by `policy test` and
//! put in charge of `plan` against the emulators.
//!
//! The toolchains come from scripts/setup-test-deps.sh; a missing one fails, naming it.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use e2e::policy::{built_policy, cached_runtime, run_ok, setup_env, workspace_root};
use ecs_provisioner::app;
use ecs_provisioner::engine::decide::DecidedBy;
use ecs_provisioner::policy::lang::Language;
use ecs_provisioner::policy::{PolicySource, fixture, scaffold_script};
use ecs_provisioner::sim::cluster::{Cluster, ClusterOptions};
use ecs_provisioner::sim::jenkins::{EnqueueRequest, JobKind};

fn pytest(dir: &Path) -> String {
    let out = run_ok(
        Command::new(setup_env("ECSP_PYTHON"))
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .arg(dir)
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        &format!("pytest {}", dir.display()),
    );
    assert!(out.contains(" passed") && !out.contains("skipped"), "{out}");
    out
}

fn node_test(dir: &Path) -> String {
    if dir.join("package.json").exists() && !dir.join("node_modules").exists() {
        run_ok(
            Command::new("npm").current_dir(dir).args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ]),
            "npm install",
        );
    }
    let out = run_ok(
        Command::new("node")
            .current_dir(dir)
            .args(["--test", "test/"])
            .env("ECSP_NODE_MODULES", setup_env("ECSP_NODE_MODULES")),
        &format!("node --test in {}", dir.display()),
    );
    assert!(
        out.contains("# fail 0") && out.contains("# skipped 0") && !out.contains("# pass 0"),
        "{out}"
    );
    out
}

/// `policy test` on `wasm` with `fixtures`: every case passes, and there are `cases`.
fn policy_test(wasm: &Path, fixtures: &Path, cases: usize) {
    let policy = cached_runtime()
        .prepare(&PolicySource::Path(wasm.to_owned()))
        .unwrap_or_else(|e| panic!("{}: {e}", wasm.display()));
    let mut out = Vec::new();
    let summary = fixture::run(&policy, &[fixtures.to_owned()], &mut out).unwrap();
    let out = String::from_utf8_lossy(&out);
    assert_eq!((summary.passed, summary.failed), (cases, 0), "{out}");
}

fn fixture_cases(dir: &Path) -> usize {
    fixture::expand(&[dir.to_owned()])
        .unwrap()
        .iter()
        .map(|f| fixture::load_file(f).unwrap().len())
        .sum()
}

#[test]
fn python_sdk_passes_its_tests_and_decides_like_the_rust_defaults() {
    let out = pytest(&workspace_root().join("guest-sdk/python/tests"));
    // Every case of policies/default/fixtures runs against the Python defaults.
    let cases = fixture_cases(&workspace_root().join("policies/default/fixtures"));
    assert!(out.contains(&format!("{} passed", cases + 8)), "{out}");
}

#[test]
fn javascript_sdk_passes_its_tests_and_decides_like_the_rust_defaults() {
    let out = node_test(&workspace_root().join("guest-sdk/js"));
    let cases = fixture_cases(&workspace_root().join("policies/default/fixtures"));
    assert!(out.contains(&format!("# pass {}", cases + 7)), "{out}");
}

#[test]
fn cost_aware_in_python_passes_its_rust_twins_fixtures_natively_and_as_a_component() {
    let dir = workspace_root().join("policies/cost-aware-py");
    let twin = workspace_root().join("policies/cost-aware/fixtures");
    assert_eq!(
        std::fs::canonicalize(dir.join("fixtures")).unwrap(),
        std::fs::canonicalize(&twin).unwrap()
    );
    let out = pytest(&dir.join("tests"));
    let cases = fixture_cases(&twin);
    assert!(out.contains(&format!("{} passed", cases + 4)), "{out}");
    policy_test(&built_policy(&dir), &twin, cases);
}

#[test]
fn office_hours_in_javascript_passes_its_rust_twins_fixtures_natively_and_as_a_component() {
    let dir = workspace_root().join("policies/office-hours-js");
    let twin = workspace_root().join("policies/office-hours/fixtures");
    assert_eq!(
        std::fs::canonicalize(dir.join("fixtures")).unwrap(),
        std::fs::canonicalize(&twin).unwrap()
    );
    let out = node_test(&dir);
    let cases = fixture_cases(&twin);
    assert!(out.contains(&format!("# pass {}", cases + 3)), "{out}");
    policy_test(&built_policy(&dir), &twin, cases);
}

/// guest-sdk/python/native and guest-sdk/js/types are generated from wit/policy.wit and
/// committed (native tests need no toolchain to import them): they must match the WIT.
#[test]
fn generated_bindings_match_the_wit() {
    let tmp = tempfile::tempdir().unwrap();
    let py = tmp.path().join("py");
    run_ok(
        Command::new(setup_env("ECSP_COMPONENTIZE_PY"))
            .arg("-d")
            .arg(workspace_root().join("wit"))
            .args(["-w", "policy-module", "bindings"])
            .arg(&py),
        "componentize-py bindings",
    );
    let js = tmp.path().join("js");
    run_ok(
        Command::new("node")
            .arg(workspace_root().join("guest-sdk/js/scripts/generate-types.mjs"))
            .arg(&js)
            .env("ECSP_NODE_MODULES", setup_env("ECSP_NODE_MODULES")),
        "generate-types.mjs",
    );
    let pairs = [
        (
            py.join("wit_world"),
            workspace_root().join("guest-sdk/python/native/wit_world"),
        ),
        (
            py.join("componentize_py_types.py"),
            workspace_root().join("guest-sdk/python/native/componentize_py_types.py"),
        ),
        (js.clone(), workspace_root().join("guest-sdk/js/types")),
    ];
    for (fresh, committed) in pairs {
        for file in files_under(&fresh) {
            let target = match file.strip_prefix(&fresh).unwrap() {
                rel if rel.as_os_str().is_empty() => committed.clone(),
                rel => committed.join(rel),
            };
            let want = std::fs::read_to_string(&file).unwrap();
            let have = std::fs::read_to_string(&target).unwrap_or_default();
            assert!(
                want == have,
                "{} is out of date with wit/policy.wit: regenerate it (see guest-sdk/python/README.md, guest-sdk/js/README.md)",
                target.display()
            );
        }
    }
}

fn files_under(p: &Path) -> Vec<std::path::PathBuf> {
    if p.is_file() {
        return vec![p.to_owned()];
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        out.extend(files_under(&e.unwrap().path()));
    }
    out
}

/// `policy new --lang python` outside the checkout: its pytest passes, `policy build` builds
/// it, and its fixtures pass under `policy test`.
#[test]
fn a_new_python_policy_tests_builds_and_passes_its_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let created = scaffold_script::create(
        Language::Python,
        "demo-py",
        dir.path(),
        Some(&workspace_root().join("guest-sdk/python")),
    )
    .unwrap();
    pytest(&created.dir.join("tests"));
    let wasm = built_policy(&created.dir);
    assert_eq!(wasm, created.dir.join("build/demo-py.wasm"));
    policy_test(&wasm, &created.dir.join("fixtures"), 4);
    plans_with(&wasm);
}

/// `policy new --lang javascript` outside the checkout: its node --test passes, `policy
/// build` builds it, and its fixtures pass under `policy test`.
#[test]
fn a_new_javascript_policy_tests_builds_and_passes_its_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let created = scaffold_script::create(
        Language::Javascript,
        "demo-js",
        dir.path(),
        Some(&workspace_root().join("guest-sdk/js")),
    )
    .unwrap();
    node_test(&created.dir);
    let wasm = built_policy(&created.dir);
    policy_test(&wasm, &created.dir.join("fixtures"), 4);
    plans_with(&wasm);
}

const PLAN_TEMPLATE: &str = r#"
[[template]]
name = "linux"
labels = ["linux"]
executors = 2
max-nodes = 4
instance-types = ["ecs.c7.large"]
remote-fs = "agent"
agent-command = "true {secret_file}"
"#;

/// `plan` (one observation and decision, no action) against the emulators with the policy at
/// `wasm` in charge: 5 builds queued for 2-executor nodes make it launch 3, and the policy
/// itself decided (not the fallback).
fn plans_with(wasm: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::start(ClusterOptions::ephemeral(dir.path()))
            .await
            .expect("emulators");
        let policy = format!("[policy]\nsource = {:?}\n", wasm.display().to_string());
        let config = Arc::new(cluster.config("plan", PLAN_TEMPLATE, &policy).unwrap());
        let (engine, _) = app::wire(config).unwrap();
        // The first observation creates the template's anchor node so Jenkins names the label.
        engine.cycle(false).await;
        cluster
            .jenkins
            .enqueue(EnqueueRequest {
                job: Some("j".into()),
                kind: JobKind::Freestyle,
                label: Some("linux".into()),
                duration_ms: 1000,
                count: Some(5),
            })
            .unwrap();
        let report = engine.cycle(false).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(
            report.decided_by,
            Some(DecidedBy::Policy),
            "{:?}",
            report.policy_error
        );
        let text = app::render_plan(&report);
        assert!(text.contains("Would launch 3 x linux"), "{text}");
        assert_eq!(cluster.ecs.calls("RunInstances"), 0, "plan never launches");
        cluster.shutdown().await;
    });
}
