//! The Rust guest SDK (`ecs-policy-sdk`) embedded in the binary, so that `policy new` outside
//! an ecs-provisioner checkout writes a crate that builds with crates.io alone: the SDK is not
//! published yet. The scaffold gets it as `vendor/ecs-policy-sdk/`, a path dependency.
//!
//! The files are the checkout's own (`include_str!`), so the vendored SDK is the one this
//! binary was built and tested with; a test checks none of `guest-sdk/src` is left out.

use std::path::Path;

/// The SDK's sources, by path inside the vendored crate.
const SOURCES: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../../../guest-sdk/src/lib.rs")),
    ("src/bindings.rs", include_str!("../../../guest-sdk/src/bindings.rs")),
    ("src/builders.rs", include_str!("../../../guest-sdk/src/builders.rs")),
    ("src/export.rs", include_str!("../../../guest-sdk/src/export.rs")),
    ("src/log.rs", include_str!("../../../guest-sdk/src/log.rs")),
    ("src/policy.rs", include_str!("../../../guest-sdk/src/policy.rs")),
    ("src/settings.rs", include_str!("../../../guest-sdk/src/settings.rs")),
    ("src/testing.rs", include_str!("../../../guest-sdk/src/testing.rs")),
    ("src/types.rs", include_str!("../../../guest-sdk/src/types.rs")),
    ("src/defaults/mod.rs", include_str!("../../../guest-sdk/src/defaults/mod.rs")),
    ("src/defaults/capacity.rs", include_str!("../../../guest-sdk/src/defaults/capacity.rs")),
    ("src/defaults/fmt.rs", include_str!("../../../guest-sdk/src/defaults/fmt.rs")),
    ("src/defaults/place.rs", include_str!("../../../guest-sdk/src/defaults/place.rs")),
    ("src/defaults/scale.rs", include_str!("../../../guest-sdk/src/defaults/scale.rs")),
    ("wit/policy.wit", include_str!("../../../wit/policy.wit")),
];

/// The vendored crate's manifest: the checkout's uses workspace inheritance, which a crate on
/// its own cannot. The versions are the workspace's (a test compares them).
const MANIFEST: &str = r#"# ecs-policy-sdk, vendored by `ecs-provisioner policy new` until it is published on crates.io.
[package]
name = "ecs-policy-sdk"
description = "Write ecs-provisioner placement and scaling policies in Rust, compiled to WebAssembly components"
version = "{version}"
edition = "2024"
license = "Apache-2.0"
publish = false

[dependencies]
wit-bindgen = "0.61"
serde = { version = "1", features = ["derive"] }
serde_json = "1"
serde_path_to_error = "0.1"
"#;

/// Writes the SDK into `dir` (created): `Cargo.toml`, `src/`, and the contract in `wit/`.
pub fn write(dir: &Path) -> Result<(), String> {
    let manifest = MANIFEST.replace("{version}", env!("CARGO_PKG_VERSION"));
    let files = SOURCES.iter().map(|(path, text)| (*path, relocate(path, text))).chain([("Cargo.toml", manifest)]);
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// In the checkout the contract is `../wit` of the SDK; vendored it is the SDK's own `wit/`.
fn relocate(path: &str, text: &str) -> String {
    match path {
        "src/bindings.rs" => text.replacen(r#"path: "../wit","#, r#"path: "wit","#, 1),
        "src/lib.rs" => text.replacen(r#"include_str!("../../wit/policy.wit")"#, r#"include_str!("../wit/policy.wit")"#, 1),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
    }

    #[test]
    fn every_source_of_the_sdk_is_embedded() {
        fn rs_files(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    rs_files(&path, base, out);
                } else {
                    out.push(path.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let sdk = checkout().join("guest-sdk");
        let mut on_disk = Vec::new();
        rs_files(&sdk.join("src"), &sdk, &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = SOURCES.iter().filter(|(p, _)| p.starts_with("src/")).map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn the_manifest_names_the_checkouts_dependencies_at_the_workspaces_versions() {
        let sdk: toml::Table = std::fs::read_to_string(checkout().join("guest-sdk/Cargo.toml")).unwrap().parse().unwrap();
        let workspace: toml::Table = std::fs::read_to_string(checkout().join("Cargo.toml")).unwrap().parse().unwrap();
        let vendored: toml::Table = MANIFEST.replace("{version}", "0.1.0").parse().unwrap();
        let ws_deps = &workspace["workspace"]["dependencies"];
        let deps = sdk["dependencies"].as_table().unwrap();
        let vendored_deps = vendored["dependencies"].as_table().unwrap();
        assert_eq!(deps.keys().collect::<Vec<_>>(), vendored_deps.keys().collect::<Vec<_>>());
        let version = |v: &toml::Value| v.as_str().or_else(|| v.get("version")?.as_str()).map(str::to_owned);
        for (name, spec) in deps {
            let want = if spec.get("workspace").is_some() { version(&ws_deps[name.as_str()]) } else { version(spec) };
            assert_eq!(version(&vendored_deps[name.as_str()]), want, "{name}");
        }
    }

    #[test]
    fn the_vendored_sdk_finds_its_own_contract() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path()).unwrap();
        let bindings = std::fs::read_to_string(dir.path().join("src/bindings.rs")).unwrap();
        assert!(bindings.contains(r#"path: "wit","#), "{bindings}");
        assert!(dir.path().join("wit/policy.wit").is_file());
        let lib = std::fs::read_to_string(dir.path().join("src/lib.rs")).unwrap();
        assert!(!lib.contains("../../wit"), "the SDK's own test reads the vendored contract");
    }
}
