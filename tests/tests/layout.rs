//! The house rules that a compiler does not check: no import circle between the modules of
//! any host crate (scripts/import-cycles.py; crates themselves cannot form circles in cargo).

use std::path::Path;
use std::process::Command;

#[test]
fn no_import_circles_between_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new("python3")
        .arg(root.join("scripts/import-cycles.py"))
        .output()
        .expect("python3 runs scripts/import-cycles.py (installed by scripts/setup-test-deps.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("no import circles in 13 crates"), "the script must see every host crate: {text}");
}

/// The features of every dependency of the binary when it is built alone (`cargo run
/// --release -p ecs-provisioner -- demo`) are among those of a whole-workspace build (`cargo
/// build --release`), so the one reuses the other's compiled crates. Issue 12: a difference in
/// one build-time crate's features (indexmap) recompiled wasmtime for minutes.
#[test]
fn the_binary_alone_builds_with_the_workspace_features() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let features = |selection: &[&str]| -> std::collections::BTreeSet<String> {
        let out = Command::new(env!("CARGO"))
            .current_dir(root)
            // Not --offline: `--target all` reads the manifests of every platform's crates, which a
            // build for this one never downloaded (android_system_properties on a fresh machine).
            .args(["tree", "--locked", "-e", "normal,build", "--target", "all", "--prefix", "none"])
            .args(["--format", "{p} [{f}]"])
            .args(selection)
            .output()
            .expect("cargo tree runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim_end_matches(" (*)").to_owned()).collect()
    };
    let workspace = features(&["--workspace"]);
    let alone = features(&["-p", "ecs-provisioner"]);
    let differing: Vec<&String> = alone.difference(&workspace).collect();
    assert!(differing.is_empty(), "built alone, these get other features than in a workspace build: {differing:#?}");
}
