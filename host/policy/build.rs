//! Builds `policies/default` to wasm32-wasip2 and embeds it, so `builtin:default` needs no
//! extra build step. Also records the wasmtime version for the compiled-policy cache key.
//!
//! The nested `cargo build` uses its own target directory, `wasm-guests` inside the target
//! directory (so it never waits on the lock held by the outer build) and an environment cleaned of what the outer cargo sets for
//! build scripts. Escape hatches:
//! - `ECSP_BUILTIN_POLICY_WASM=/path/policy.wasm` embeds a prebuilt component instead;
//! - `ECSP_SKIP_BUILTIN_POLICY=1` embeds nothing (`builtin:default` then fails to load,
//!   saying why).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    // host/policy -> the workspace root.
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("host/policy sits two levels below the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(env("OUT_DIR"));
    let out = out_dir.join("policy-default.wasm");

    println!(
        "cargo:rustc-env=ECSP_WASMTIME_VERSION={}",
        wasmtime_version(&root)
    );
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    for p in ["policies/default", "guest-sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=ECSP_BUILTIN_POLICY_WASM");
    println!("cargo:rerun-if-env-changed=ECSP_SKIP_BUILTIN_POLICY");

    let note = if let Some(prebuilt) = std::env::var_os("ECSP_BUILTIN_POLICY_WASM") {
        std::fs::copy(&prebuilt, &out)
            .unwrap_or_else(|e| panic!("ECSP_BUILTIN_POLICY_WASM={prebuilt:?}: {e}"));
        "prebuilt".to_owned()
    } else if std::env::var_os("ECSP_SKIP_BUILTIN_POLICY").is_some() {
        std::fs::write(&out, b"").unwrap();
        "ECSP_SKIP_BUILTIN_POLICY was set at build time".to_owned()
    } else if !root.join("policies/default/Cargo.toml").exists() {
        println!(
            "cargo:warning=policies/default is missing: building without the builtin default policy"
        );
        std::fs::write(&out, b"").unwrap();
        "policies/default was missing at build time".to_owned()
    } else {
        let wasm = build_default_policy(&root);
        std::fs::copy(&wasm, &out).unwrap();
        "built from policies/default".to_owned()
    };
    println!("cargo:rustc-env=ECSP_BUILTIN_POLICY_NOTE={note}");
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// Runs `cargo build -p policy-default --target wasm32-wasip2 --profile wasm` in a separate
/// target directory and returns the component's path.
fn build_default_policy(root: &Path) -> PathBuf {
    // Shared with the guest builds of the policy tests (tests/src/policy.rs), so wasm
    // dependencies are compiled once: `$CARGO_TARGET_DIR/wasm-guests` or `target/wasm-guests`.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "-p",
            "policy-default",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "wasm",
            "--target-dir",
        ])
        .arg(&target_dir);
    clean_env(&mut cmd);
    let output = cmd.output().expect("cannot run cargo for policies/default");
    if !output.status.success() {
        panic!(
            "building policies/default to wasm32-wasip2 failed (set ECSP_SKIP_BUILTIN_POLICY=1 to build without it):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let wasm = target_dir.join("wasm32-wasip2/wasm/policy_default.wasm");
    assert!(
        wasm.exists(),
        "cargo succeeded but {} is missing",
        wasm.display()
    );
    wasm
}

/// Removes what the outer cargo sets for build scripts and what would make the nested build
/// behave differently (flags for another target, a clippy or coverage wrapper, the jobserver).
pub fn clean_env(cmd: &mut Command) {
    const KEEP: &[&str] = &["CARGO_HOME", "CARGO_NET_OFFLINE", "CARGO_HTTP_TIMEOUT"];
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let drop = (key.starts_with("CARGO_")
            && !KEEP.contains(&key)
            && !key.starts_with("CARGO_REGISTRIES_"))
            || key.starts_with("RUSTC_")
            || key.starts_with("DEP_")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTDOC"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
                    | "MAKEFLAGS"
                    | "MFLAGS"
                    | "CARGO"
            );
        if drop {
            cmd.env_remove(key);
        }
    }
}

/// The wasmtime version in Cargo.lock (the cache key needs the exact one).
fn wasmtime_version(root: &Path) -> String {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasmtime\""
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \""))
        {
            return v.trim_end_matches('"').to_owned();
        }
    }
    "unknown".to_owned()
}
