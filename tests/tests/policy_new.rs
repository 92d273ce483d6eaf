//! `policy new` scaffolds a crate that builds to wasm32-wasip2 and passes `policy test` out of
//! the box.

use e2e::policy::{cargo, wasm_target_dir, workspace_root};
use ecs_provisioner::policy::cli::{self, RuntimeArgs, TestArgs};
use ecs_provisioner::policy::scaffold;

/// Issue 12: outside a checkout, with only crates.io, a new policy builds and passes its own
/// tests and its fixtures: the SDK (not published yet) comes vendored from the binary.
#[test]
fn a_new_policy_outside_the_checkout_builds_and_passes_its_tests_and_fixtures() {
    // Outside the checkout, as a user would create it, and no --sdk-path.
    let dir = tempfile::tempdir().unwrap();
    assert!(!dir.path().starts_with(workspace_root()));
    let created = scaffold::create("demo-policy", dir.path(), None).unwrap();
    assert!(!created.in_workspace);
    let manifest = std::fs::read_to_string(created.dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains(r#"ecs-policy-sdk = { path = "vendor/ecs-policy-sdk" }"#), "{manifest}");
    // The workspace's lock file pins the same crates.io versions, so nothing new is resolved;
    // no path in it leads back into the checkout (cargo drops the entries nothing uses).
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        created.dir.join("Cargo.lock"),
    )
    .unwrap();
    let target = wasm_target_dir().join("standalone");
    // The scaffold's own unit test, natively.
    cargo(&created.dir, &["test", "--quiet"], &target);
    cargo(
        &created.dir,
        &["build", "--release", "--target", "wasm32-wasip2"],
        &target,
    );
    let wasm = target
        .join("wasm32-wasip2/release")
        .join(created.wasm_file_name());

    let args = TestArgs {
        policy: wasm.display().to_string(),
        fixtures: vec![created.dir.join("fixtures")],
        runtime: RuntimeArgs {
            memory_mib: 64,
            fuel: ecs_provisioner::policy::DEFAULT_FUEL,
            deadline_ms: 200,
            no_cache: true,
            cache_dir: None,
            keep_resident_kib: 2048,
        },
    };
    let mut out = Vec::new();
    let code = cli::test(&args, &mut out);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.trim_end().ends_with("4 passed, 0 failed"), "{out}");
}
