//! Shared helpers for the end-to-end tests.
pub mod jenkins;
pub mod policy;
pub mod credentials;
pub mod ecs;
pub mod ssh;
pub mod engine;
pub mod etcd;
pub mod hostile;
pub mod browser;

/// The test virtualenv's Python interpreter (`$ECSP_PYTHON`, else the venv that
/// scripts/setup-test-deps.sh creates), checked to import `modules`. Panics — failing the test,
/// never skipping it — when it is missing, naming what to run.
pub fn python_with(modules: &[&str]) -> std::path::PathBuf {
    let path = std::env::var_os("ECSP_PYTHON").map(std::path::PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default();
        home.join(".cache/ecs-provisioner/venv/bin/python")
    });
    let hint = "run scripts/setup-test-deps.sh (and export the ECSP_PYTHON it prints)";
    assert!(path.exists(), "Python interpreter {} not found: {hint}", path.display());
    let probe = std::process::Command::new(&path)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {hint}", path.display()));
    assert!(
        probe.status.success(),
        "{} cannot import {} ({}): {hint}",
        path.display(),
        modules.join(", "),
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    path
}
