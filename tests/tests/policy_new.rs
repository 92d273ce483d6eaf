//! `policy new` scaffolds a crate that builds to wasm32-wasip2 and passes `policy test` out of
//! the box.

use e2e::policy::{cargo, wasm_target_dir, workspace_root};
use ecs_provisioner::policy::cli::{self, RuntimeArgs, TestArgs};
use ecs_provisioner::policy::scaffold;

#[test]
fn a_new_policy_builds_and_passes_its_fixtures() {
    // Outside the workspace, as a user would create it; the SDK by path.
    let dir = tempfile::tempdir().unwrap();
    let created = scaffold::create(
        "demo-policy",
        dir.path(),
        Some(&workspace_root().join("guest-sdk")),
    )
    .unwrap();
    assert!(!created.in_workspace);
    // The workspace's lock file pins the same dependency versions, so nothing new is resolved.
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        created.dir.join("Cargo.lock"),
    )
    .unwrap();
    let target = wasm_target_dir().join("standalone");
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
