//! Helpers for policy tests: build guest crates to wasm32-wasip2 once per test process and
//! share one policy runtime.
//!
//! Guests build in their own target directory (`$CARGO_TARGET_DIR/wasm-guests`, or
//! `target/wasm-guests`, shared with host/build.rs) so the nested cargo never waits on the lock of the outer
//! `cargo test`, as Spin's SDK tests do. Builds are serialised by a process-wide mutex and
//! remembered, so each crate is built (and each component compiled) once per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use ecs_provisioner::policy::{Limits, Policy, PolicyRuntime};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Target directory for guest builds: the one host/build.rs builds the builtin policy in,
/// so the wasm dependencies compile once.
pub fn wasm_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("wasm-guests")
}

fn built() -> &'static Mutex<HashMap<String, PathBuf>> {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    BUILT.get_or_init(Default::default)
}

/// Builds workspace package `package` (e.g. `policy-default`, `hostile-trap`) with the
/// workspace's `wasm` profile and returns the component's path. Panics with cargo's output
/// if the build fails.
pub fn workspace_wasm(package: &str) -> PathBuf {
    let key = format!("ws:{package}");
    let mut built = built().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(&key) {
        return p.clone();
    }
    let target = wasm_target_dir();
    cargo(
        &workspace_root(),
        &[
            "build",
            "-p",
            package,
            "--target",
            "wasm32-wasip2",
            "--profile",
            "wasm",
        ],
        &target,
    );
    let wasm = target
        .join("wasm32-wasip2/wasm")
        .join(format!("{}.wasm", package.replace('-', "_")));
    assert!(wasm.exists(), "{} was not produced", wasm.display());
    built.insert(key, wasm.clone());
    wasm
}

/// Builds a standalone guest crate (its own workspace) in release mode and returns the
/// component's path; `crate_dir` is absolute or relative to the workspace root.
pub fn standalone_wasm(crate_dir: &Path, lib_name: &str) -> PathBuf {
    let dir = workspace_root().join(crate_dir);
    let key = format!("dir:{}", dir.display());
    let mut built = built().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(&key) {
        return p.clone();
    }
    let target = wasm_target_dir().join("standalone");
    cargo(
        &dir,
        &["build", "--release", "--target", "wasm32-wasip2"],
        &target,
    );
    let wasm = target
        .join("wasm32-wasip2/release")
        .join(format!("{lib_name}.wasm"));
    assert!(wasm.exists(), "{} was not produced", wasm.display());
    built.insert(key, wasm.clone());
    wasm
}

/// The test probe policy (`tests/policy-guests/probe`), whose behaviour its settings choose.
pub fn probe_wasm() -> PathBuf {
    standalone_wasm(Path::new("tests/policy-guests/probe"), "policy_probe")
}

/// A policy built against the frozen contract 0.1.0 (`tests/policy-guests/echo-v0-1`).
pub fn echo_v0_1_wasm() -> PathBuf {
    standalone_wasm(
        Path::new("tests/policy-guests/echo-v0-1"),
        "policy_echo_v0_1",
    )
}

/// Runs cargo in `dir` with `args` and `--target-dir target`, in an environment cleaned of
/// what the outer `cargo test` set. Panics with cargo's stderr on failure.
pub fn cargo(dir: &Path, args: &[&str], target: &Path) {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(dir)
        .args(args)
        .arg("--target-dir")
        .arg(target);
    clean_env(&mut cmd);
    let out = cmd.output().expect("cannot run cargo");
    assert!(
        out.status.success(),
        "cargo {} in {} failed:\n{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes the variables cargo sets for the test process and flags meant for the host target.
pub fn clean_env(cmd: &mut Command) {
    const KEEP: &[&str] = &[
        "CARGO_HOME",
        "CARGO_NET_OFFLINE",
        "CARGO_HTTP_TIMEOUT",
        "CARGO_TARGET_DIR",
    ];
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let drop = (key.starts_with("CARGO_")
            && !KEEP.contains(&key)
            && !key.starts_with("CARGO_REGISTRIES_"))
            || key.starts_with("RUSTC_")
            || matches!(
                key,
                "RUSTFLAGS" | "RUSTDOCFLAGS" | "CARGO" | "MAKEFLAGS" | "MFLAGS"
            );
        if drop {
            cmd.env_remove(key);
        }
    }
}

/// A runtime with default limits except a shorter deadline (tests of hostile policies should
/// not wait 200 ms per case), shared by the whole test process. Its instance pool is large
/// enough for tests running in parallel.
pub fn runtime() -> Arc<PolicyRuntime> {
    static RT: OnceLock<Arc<PolicyRuntime>> = OnceLock::new();
    RT.get_or_init(|| Arc::new(PolicyRuntime::new(test_limits()).expect("policy runtime")))
        .clone()
}

/// The limits of [`runtime`].
pub fn test_limits() -> Limits {
    Limits {
        deadline: std::time::Duration::from_millis(100),
        max_instances: 32,
        ..Limits::default()
    }
}

/// A runtime for memory-cap tests: a smaller cap (32 MiB) and a long deadline (5 s), so a
/// guest racing towards the cap on a loaded machine hits the cap, not the deadline.
pub fn roomy_runtime() -> Arc<PolicyRuntime> {
    static RT: OnceLock<Arc<PolicyRuntime>> = OnceLock::new();
    RT.get_or_init(|| Arc::new(PolicyRuntime::new(roomy_limits()).expect("policy runtime")))
        .clone()
}

/// The limits of [`roomy_runtime`].
pub fn roomy_limits() -> Limits {
    Limits {
        memory_bytes: 32 << 20,
        deadline: std::time::Duration::from_secs(5),
        max_instances: 4,
        ..Limits::default()
    }
}

/// Loads a component file with `settings` into the shared [`runtime`], compiling each file
/// once per process (later loads reuse the compiled policy through `with_settings`).
pub fn load(wasm: &Path, settings: &str) -> Result<Policy, ecs_provisioner::policy::PolicyError> {
    load_in(&runtime(), wasm, settings)
}

/// [`load`] into another runtime (compiled once per runtime and file).
pub fn load_in(
    rt: &Arc<PolicyRuntime>,
    wasm: &Path,
    settings: &str,
) -> Result<Policy, ecs_provisioner::policy::PolicyError> {
    static LOADED: OnceLock<Mutex<HashMap<(usize, PathBuf), Policy>>> = OnceLock::new();
    let loaded = LOADED.get_or_init(Default::default);
    let key = (Arc::as_ptr(rt) as usize, wasm.to_owned());
    let cached = loaded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned();
    if let Some(p) = cached {
        return p.with_settings(settings);
    }
    let base = rt.prepare(&ecs_provisioner::policy::PolicySource::Path(
        wasm.to_owned(),
    ))?;
    loaded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, base.clone());
    base.with_settings(settings)
}

/// The value of a variable `scripts/setup-test-deps.sh` prints; panics naming the script when
/// it is unset, so a missing toolchain fails the test instead of skipping it.
pub fn setup_env(var: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{var} is not set: run `eval \"$(scripts/setup-test-deps.sh | sed 's/^/export /')\"` \
             (it installs componentize-py, pytest, componentize-js and esbuild, pinned) or scripts/test.sh"
        )
    })
}

/// Builds the Python or JavaScript (or Rust) policy in `dir` (absolute, or relative to the
/// workspace root) with `policy build`, once per process, and compiles it into the default
/// compiled-policy cache as `policy build` does, so engines loading it later start at once.
/// Panics with the build's error.
pub fn built_policy(dir: &Path) -> PathBuf {
    use ecs_provisioner::policy::build::{Toolchains, build};
    let dir = workspace_root().join(dir);
    let key = format!("build:{}", dir.display());
    let mut built = built().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(&key) {
        return p.clone();
    }
    setup_env("ECSP_COMPONENTIZE_PY");
    setup_env("ECSP_NODE_MODULES");
    let out = build(&dir, &Toolchains::from_env())
        .unwrap_or_else(|e| panic!("policy build {}: {e}", dir.display()));
    cached_runtime()
        .prepare(&ecs_provisioner::policy::PolicySource::Path(
            out.wasm.clone(),
        ))
        .unwrap_or_else(|e| panic!("{}: {e}", out.wasm.display()));
    built.insert(key, out.wasm.clone());
    out.wasm
}

/// A runtime with the test limits that caches compiled components in the default cache
/// directory, as `policy build` and `run` do: a 10-20 MB Python or JavaScript component is
/// compiled once per machine, not once per test process.
pub fn cached_runtime() -> Arc<PolicyRuntime> {
    static RT: OnceLock<Arc<PolicyRuntime>> = OnceLock::new();
    RT.get_or_init(|| {
        let mut rt = PolicyRuntime::new(test_limits()).expect("policy runtime");
        if let Some(dir) = PolicyRuntime::default_cache_dir() {
            rt = rt.with_cache_dir(dir);
        }
        Arc::new(rt)
    })
    .clone()
}

/// Runs `cmd` (in an environment cleaned of the outer cargo's variables) and returns its
/// output; panics with both streams when it fails.
pub fn run_ok(cmd: &mut Command, what: &str) -> String {
    clean_env(cmd);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}
