//! `BootstrapPort` over the russh bootstrapper: fills a `BootstrapSpec` from the template and
//! the instance.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::{Config, HostKeyPolicyConfig};
use crate::engine::now_ms;
use crate::engine::ports::{BootstrapPort, BootstrapTarget};
use crate::ssh::{self, BootstrapSpec, ClientKey, ConsoleOutputSource, HostKeyPolicy, HostKeyVerifier, KnownHosts, PassphraseSource, SshClientConfig};

/// Bootstraps instances over SSH with the configured key and host-key policy.
pub struct SshBootstrapper {
    ssh: SshClientConfig,
    /// The pins of `accept-new`, to forget deleted instances (else the file only grows).
    known_hosts: Option<Arc<KnownHosts>>,
    config: Arc<Config>,
    jenkins_url: String,
}

impl SshBootstrapper {
    pub fn new(ssh: SshClientConfig, config: Arc<Config>) -> Self {
        let jenkins_url = config.jenkins.agent_url.clone().unwrap_or_else(|| config.jenkins.url.clone());
        let known_hosts = match &ssh.host_keys {
            HostKeyVerifier::AcceptNew(k) => Some(k.clone()),
            _ => None,
        };
        SshBootstrapper { ssh, known_hosts, config, jenkins_url }
    }

    /// Loads the key and sets up the host-key policy from `[ssh]`. `console` serves `strict`.
    pub fn from_config(config: Arc<Config>, console: Arc<dyn ConsoleOutputSource>) -> anyhow::Result<Self> {
        let s = &config.ssh;
        let key_path = s.private_key.as_ref().context("ssh.private-key is not set: name the key pair's private key file")?;
        let passphrase = s.passphrase_env.clone().map(PassphraseSource::Env);
        let key = ClientKey::load(key_path, passphrase.as_ref()).map_err(|e| anyhow::anyhow!("ssh.private-key: {e}"))?;
        let policy = match s.host_key_policy {
            HostKeyPolicyConfig::AcceptNew => HostKeyPolicy::AcceptNew,
            HostKeyPolicyConfig::Strict => HostKeyPolicy::Strict,
            HostKeyPolicyConfig::Off => HostKeyPolicy::Off,
        };
        let known_hosts = match policy {
            HostKeyPolicy::AcceptNew => {
                let path = s.known_hosts.clone().unwrap_or_else(default_known_hosts);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).with_context(|| format!("ssh.known-hosts: cannot create {}", dir.display()))?;
                }
                Some(Arc::new(KnownHosts::open(&path).map_err(|e| anyhow::anyhow!("ssh.known-hosts {}: {e}", path.display()))?))
            }
            _ => None,
        };
        let verifier = HostKeyVerifier::new(policy, known_hosts, Some(console)).map_err(|e| anyhow::anyhow!("ssh.host-key-policy: {e}"))?;
        Ok(SshBootstrapper::new(SshClientConfig::new(key, verifier), config))
    }
}

/// `$XDG_STATE_HOME/ecs-provisioner/known_hosts`, else `~/.local/state/ecs-provisioner/known_hosts`.
fn default_known_hosts() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("ecs-provisioner/known_hosts")
}

impl BootstrapPort for SshBootstrapper {
    async fn bootstrap(&self, target: BootstrapTarget) -> anyhow::Result<()> {
        let t = self
            .config
            .template(&target.template)
            .with_context(|| format!("template {} is not configured", target.template))?;
        let left = Duration::from_millis(target.deadline_ms.saturating_sub(now_ms()));
        let mut spec = BootstrapSpec::new(
            &target.instance_id,
            target.ip.into(),
            &target.node_name,
            &self.jenkins_url,
            &target.secret,
            Instant::now() + left,
        );
        spec.user = self.config.ssh.user.clone();
        spec.port = self.config.ssh.port.to_string();
        spec.work_dir = t.remote_fs.clone();
        spec.agent_command = t.agent_command.clone();
        spec.init_script = (!t.init_script.trim().is_empty()).then(|| t.init_script.clone());
        // The init script may take as long as the launch allows, no longer.
        spec.init_script_timeout = left.max(Duration::from_secs(1));
        let report = ssh::bootstrap(&spec, &self.ssh).await?;
        tracing::info!(instance = %target.instance_id, total_ms = report.total.as_millis() as u64, init = ?report.init_script, "bootstrapped");
        Ok(())
    }

    fn failure_cause(&self, error: &anyhow::Error) -> &'static str {
        use crate::ssh::{BootstrapError, SshError};
        match error.downcast_ref::<BootstrapError>() {
            Some(BootstrapError::Ssh(SshError::HostKey { .. })) => "host-key",
            Some(BootstrapError::Ssh(SshError::Unreachable { .. })) => "unreachable",
            Some(BootstrapError::Ssh(SshError::AuthRejected { .. })) => "auth",
            Some(BootstrapError::Ssh(SshError::Timeout { .. })) => "timeout",
            Some(BootstrapError::InitScriptFailed { .. }) => "init-script",
            Some(BootstrapError::AgentNotRunning { .. }) => "agent-start",
            _ => "other",
        }
    }

    fn instance_gone(&self, instance_id: &str) {
        if let Some(k) = &self.known_hosts
            && let Err(e) = k.forget(instance_id) {
                tracing::warn!(instance = instance_id, error = %e, "could not forget the pinned host key");
            }
    }
}
