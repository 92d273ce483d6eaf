//! `policy build [DIR]`: build a policy's component with its language's pinned toolchain,
//! then compile it for this host into the compiled-policy cache, so that `run` and `plan`
//! start without a long Cranelift compile (a Python or JavaScript component is 10-20 MB).
//!
//! - Rust: `cargo build --release --target wasm32-wasip2`.
//! - Python: `componentize-py componentize <entry>` with the policy's directory and the SDK
//!   on the path.
//! - JavaScript: `npm install` (links the SDK named in package.json) when `node_modules` lacks
//!   it, esbuild bundles the entry into one module (componentize-js resolves no packages),
//!   then `componentize-js` with the WASI features the host does not link (http) disabled.
//!
//! A Python or JavaScript component is rebuilt only when a source (the policy's files, the
//! SDK's, the WIT) is newer than it: componentize-py and componentize-js do not build
//! byte-identical components twice, and each new component costs a fresh compile for the host.
//!
//! The tools come from `ECSP_COMPONENTIZE_PY` and `ECSP_NODE_MODULES` (printed by
//! `scripts/setup-test-deps.sh`, which installs the pinned versions), else from `PATH`.
//! The WIT is the one this host embeds, so a policy builds outside a checkout too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::lang::{Language, Project};

/// The contract this host serves newest, as text: what Python and JavaScript policies are
/// built against.
const POLICY_WIT: &str = include_str!("../../../wit/policy.wit");

/// The WASI features componentize-js must leave out: the host links no `wasi:http`.
const JS_DISABLED_FEATURES: [&str; 2] = ["http", "fetch-event"];

/// Where the build tools are.
#[derive(Debug, Clone, Default)]
pub struct Toolchains {
    /// componentize-py; `ECSP_COMPONENTIZE_PY` or `componentize-py` on PATH when unset.
    pub componentize_py: Option<PathBuf>,
    /// A node_modules with esbuild and componentize-js; `ECSP_NODE_MODULES` when unset.
    pub node_modules: Option<PathBuf>,
}

impl Toolchains {
    /// Tools from the environment (`ECSP_COMPONENTIZE_PY`, `ECSP_NODE_MODULES`).
    pub fn from_env() -> Self {
        Toolchains {
            componentize_py: std::env::var_os("ECSP_COMPONENTIZE_PY").map(PathBuf::from),
            node_modules: std::env::var_os("ECSP_NODE_MODULES").map(PathBuf::from),
        }
    }

    fn componentize_py(&self) -> Result<PathBuf, String> {
        tool(
            self.componentize_py.clone(),
            "componentize-py",
            "ECSP_COMPONENTIZE_PY",
        )
    }

    fn node_bin(&self, name: &str) -> Result<PathBuf, String> {
        let pinned = self
            .node_modules
            .as_ref()
            .map(|d| d.join(".bin").join(name));
        tool(pinned, name, "ECSP_NODE_MODULES")
    }
}

/// The given path if it exists, else `name` found on PATH; the error names the setup script.
fn tool(given: Option<PathBuf>, name: &str, var: &str) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return if p.exists() {
            Ok(p)
        } else {
            Err(format!(
                "{name} not found at {} (from {var}): run scripts/setup-test-deps.sh, which installs the pinned version",
                p.display()
            ))
        };
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            format!(
                "{name} not found: set {var} as scripts/setup-test-deps.sh prints it (the script installs the pinned version), or put {name} on PATH"
            )
        })
}

/// A built component.
#[derive(Debug, Clone)]
pub struct Built {
    /// The component file.
    pub wasm: PathBuf,
    /// The policy's language.
    pub language: Language,
    /// Wall time of the build.
    pub took: Duration,
}

/// Builds the policy in `dir` with its language's toolchain.
pub fn build(dir: &Path, tools: &Toolchains) -> Result<Built, String> {
    let project = Project::open(dir)?;
    let started = Instant::now();
    let wasm = match &project {
        Project::Rust { dir, name } => build_rust(dir, name)?,
        Project::Script { dir, manifest } => {
            let out = dir.join("build");
            let wit = out.join("wit");
            std::fs::create_dir_all(&wit).map_err(|e| format!("{}: {e}", wit.display()))?;
            // Rewritten only when it changed, so that its time stamp marks a new contract.
            let wit_file = wit.join("policy.wit");
            if std::fs::read_to_string(&wit_file).ok().as_deref() != Some(POLICY_WIT) {
                std::fs::write(&wit_file, POLICY_WIT)
                    .map_err(|e| format!("{}: {e}", wit.display()))?;
            }
            let wasm = out.join(format!("{}.wasm", manifest.name));
            match manifest.language {
                Language::Python => {
                    let sdk = python_sdk(dir, manifest.sdk.as_deref())?;
                    if !up_to_date(&wasm, &[dir, &sdk]) {
                        build_python(dir, &manifest.entry, &sdk, &wit, &wasm, tools)?
                    }
                }
                Language::Javascript => {
                    let sdk = dir.join("node_modules/ecs-policy-sdk/src");
                    if !up_to_date(&wasm, &[dir, &sdk]) {
                        build_js(dir, &manifest.entry, &wit, &wasm, tools)?
                    }
                }
                Language::Rust => unreachable!("Project::open refuses a Rust policy.toml"),
            }
            wasm
        }
    };
    Ok(Built {
        wasm,
        language: project.language(),
        took: started.elapsed(),
    })
}

/// Whether `wasm` exists and is newer than every file under `sources` (the build output and
/// `node_modules` aside, except the WIT this build wrote into `build/wit`).
fn up_to_date(wasm: &Path, sources: &[&Path]) -> bool {
    let Ok(built) = std::fs::metadata(wasm).and_then(|m| m.modified()) else {
        return false;
    };
    fn newest(p: &Path, top: bool) -> Option<std::time::SystemTime> {
        let meta = std::fs::metadata(p).ok()?;
        if meta.is_file() {
            return meta.modified().ok();
        }
        let mut latest = None;
        for entry in std::fs::read_dir(p).ok()?.flatten() {
            let name = entry.file_name();
            let skip = matches!(
                name.to_str(),
                Some("node_modules" | "__pycache__" | ".pytest_cache")
            ) || (top && name == "build");
            if !skip {
                latest = latest.max(newest(&entry.path(), false));
            }
        }
        latest
    }
    let wit = wasm.parent().map(|b| b.join("wit/policy.wit"));
    sources
        .iter()
        .filter_map(|s| newest(s, true))
        .chain(wit.and_then(|w| newest(&w, false)))
        .all(|t| t < built)
}

fn build_rust(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target);
    run(cmd, "cargo build")?;
    Ok(target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_"))))
}

/// The Python SDK's source directory: the manifest's `sdk`, else `guest-sdk/python/src` of an
/// ecs-provisioner checkout above `dir`.
fn python_sdk(dir: &Path, given: Option<&Path>) -> Result<PathBuf, String> {
    let sdk = match given {
        Some(p) => dir.join(p),
        None => dir
            .ancestors()
            .map(|a| a.join("guest-sdk/python/src"))
            .find(|p| p.join("ecs_policy").is_dir())
            .ok_or("policy.toml has no `sdk` and no ecs-provisioner checkout is above the policy: set `sdk` to guest-sdk/python/src")?,
    };
    if sdk.join("ecs_policy").is_dir() {
        Ok(sdk)
    } else {
        Err(format!(
            "the Python SDK is not at {} (policy.toml `sdk` names the directory holding ecs_policy/)",
            sdk.display()
        ))
    }
}

fn build_python(
    dir: &Path,
    entry: &str,
    sdk: &Path,
    wit: &Path,
    wasm: &Path,
    tools: &Toolchains,
) -> Result<(), String> {
    let mut cmd = Command::new(tools.componentize_py()?);
    cmd.current_dir(dir)
        .arg("-d")
        .arg(wit)
        .args(["-w", "policy-module", "componentize", entry, "-p"])
        .arg(dir)
        .arg("-p")
        .arg(sdk)
        .arg("-o")
        .arg(wasm);
    run(cmd, "componentize-py")
}

fn build_js(
    dir: &Path,
    entry: &str,
    wit: &Path,
    wasm: &Path,
    tools: &Toolchains,
) -> Result<(), String> {
    if dir.join("package.json").exists() && !dir.join("node_modules").exists() {
        let mut npm = Command::new("npm");
        npm.current_dir(dir)
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"]);
        run(npm, "npm install")?;
    }
    let bundle = wasm.with_extension("bundle.js");
    let mut esbuild = Command::new(tools.node_bin("esbuild")?);
    esbuild
        .current_dir(dir)
        .args([
            entry,
            "--bundle",
            "--format=esm",
            "--platform=neutral",
            "--external:ecs-provisioner:*",
            "--log-level=warning",
        ])
        .arg(format!("--outfile={}", bundle.display()));
    run(esbuild, "esbuild")?;
    let mut componentize = Command::new(tools.node_bin("componentize-js")?);
    componentize
        .current_dir(dir)
        .arg("--wit")
        .arg(wit)
        .args(["-n", "policy-module", "-d"])
        .args(JS_DISABLED_FEATURES)
        .arg("-o")
        .arg(wasm)
        .arg(&bundle);
    run(componentize, "componentize-js")
}

/// Runs `cmd`; on failure the error carries the end of its output.
fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what} ({:?}): {e}", cmd.get_program()))?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "{what} failed ({}):\n{}",
        out.status,
        tail.join("\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_name_the_setup_script() {
        let err = tool(
            Some("/nonexistent/componentize-py".into()),
            "componentize-py",
            "ECSP_COMPONENTIZE_PY",
        )
        .unwrap_err();
        assert!(
            err.contains("scripts/setup-test-deps.sh") && err.contains("ECSP_COMPONENTIZE_PY"),
            "{err}"
        );
        let err = Toolchains::default()
            .node_bin("no-such-tool-ecsp")
            .unwrap_err();
        assert!(
            err.contains("ECSP_NODE_MODULES") && err.contains("scripts/setup-test-deps.sh"),
            "{err}"
        );
    }

    #[test]
    fn a_component_newer_than_its_sources_is_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("policy.py");
        std::fs::write(&src, "x").unwrap();
        let wasm = dir.path().join("build/p.wasm");
        assert!(!up_to_date(&wasm, &[dir.path()]), "nothing built yet");
        std::thread::sleep(Duration::from_millis(20));
        std::fs::create_dir_all(wasm.parent().unwrap()).unwrap();
        std::fs::write(&wasm, "wasm").unwrap();
        assert!(up_to_date(&wasm, &[dir.path()]));
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&src, "y").unwrap();
        assert!(!up_to_date(&wasm, &[dir.path()]), "a source changed");
    }

    #[test]
    fn the_embedded_wit_is_the_newest_contract() {
        assert!(POLICY_WIT.contains(&format!(
            "package ecs-provisioner:policy@{};",
            super::super::bindings::CONTRACT_VERSION
        )));
    }
}
