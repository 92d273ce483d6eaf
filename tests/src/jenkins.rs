//! Helpers for the Jenkins tests: the emulator, a client for it, the Python interpreter.

use std::path::PathBuf;
use std::time::Duration;

use ecs_provisioner::jenkins::{Credentials, JenkinsClient, NodeMode, TemplateLabels};
use ecs_provisioner::sim::jenkins::{JenkinsSim, SimConfig};

/// Starts an emulator on an ephemeral loopback port with one admin user.
pub async fn start_sim() -> JenkinsSim {
    JenkinsSim::start(SimConfig::default())
        .await
        .expect("start the Jenkins emulator")
}

/// A client for the emulator, authenticated with the admin's API token.
pub fn client(sim: &JenkinsSim) -> JenkinsClient {
    JenkinsClient::new(
        sim.base_url(),
        Credentials::api_token(sim.user(), sim.token()),
    )
    .expect("client")
}

/// Writes the agent.jar `sim` serves into `dir` (named by its hash, so tests share it) and
/// returns its path: what an emulated agent must run from (`-jar`) to be allowed to start.
pub fn controller_jar(sim: &JenkinsSim, dir: &std::path::Path) -> PathBuf {
    let bytes = sim.agent_jar();
    let path = dir.join(format!(
        "agent-{}.jar",
        ecs_provisioner::jenkins::agent_jar::sha256_hex(&bytes)
    ));
    if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
        let tmp = dir.join(format!("{}.tmp{}", path.display(), std::process::id()));
        std::fs::write(&tmp, &bytes).expect("write the controller's agent.jar");
        std::fs::rename(&tmp, &path).expect("move the controller's agent.jar into place");
    }
    path
}

/// The Python interpreter with python-jenkins installed. Fails (never skips) when missing.
pub fn python() -> PathBuf {
    crate::python_with(&["jenkins"])
}

/// The Python test scripts' directory.
pub fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// Three templates used by the demand tests, in config order.
pub fn templates() -> Vec<TemplateLabels> {
    let t = |name: &str, labels: &[&str], mode| TemplateLabels {
        name: name.into(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        mode,
    };
    vec![
        t("linux", &["linux", "docker"], NodeMode::Exclusive),
        t("big", &["linux", "docker", "large"], NodeMode::Normal),
        t("win", &["windows"], NodeMode::Exclusive),
    ]
}

/// Polls `f` every 20 ms until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Epoch milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
