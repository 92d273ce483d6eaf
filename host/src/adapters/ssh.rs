//! `BootstrapPort` over the russh bootstrapper: fills a `BootstrapSpec` from the template and
//! the instance.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::launch::LaunchProfile;
use crate::config::{Config, ConnectVia, HostKeyPolicyConfig};
use crate::ecs::{EcsClient, InstanceFilter};
use crate::adapters::cloud::client_from_config;
use crate::engine::now_ms;
use crate::engine::ports::{BootstrapPort, BootstrapTarget};
use crate::jenkins::AgentJarCache;
use crate::ssh::data_disks::DiskMount;
use crate::ssh::{self, BootstrapSpec, JarUpload, ClientKey, ConsoleOutputSource, HostKeyPolicy, HostKeyVerifier, KnownHosts, PassphraseSource, SshClientConfig};

/// Bootstraps instances over SSH with the configured key and host-key policy.
pub struct SshBootstrapper {
    /// Per template: its key (its `ssh-private-key`, else `[ssh] private-key`) and the
    /// host-key policy.
    ssh: BTreeMap<String, SshClientConfig>,
    /// The pins of `accept-new`, to forget deleted instances (else the file only grows).
    known_hosts: Option<Arc<KnownHosts>>,
    config: Arc<Config>,
    jenkins_url: String,
    /// The controller's agent.jar, delivered to every instance.
    agent_jar: Arc<AgentJarCache>,
    /// Looks up public IPs (`connect-via = "public-ip"`) and data disks (mount points); none when no template needs either.
    ecs: Option<EcsClient>,
}

impl SshBootstrapper {
    /// `ssh` holds each template's client settings (all share one host-key verifier);
    /// `agent_jar` serves the jar to deliver (see [`agent_jar_cache`]).
    pub fn new(ssh: BTreeMap<String, SshClientConfig>, config: Arc<Config>, agent_jar: Arc<AgentJarCache>) -> Self {
        let jenkins_url = config.jenkins.agent_url.clone().unwrap_or_else(|| config.jenkins.url.clone());
        let known_hosts = ssh.values().find_map(|c| match &c.host_keys {
            HostKeyVerifier::AcceptNew(k) => Some(k.clone()),
            _ => None,
        });
        let ecs = None;
        SshBootstrapper { ssh, known_hosts, config, jenkins_url, agent_jar, ecs }
    }

    /// Loads each template's key (its `ssh-private-key`, else `[ssh] private-key`) and sets up
    /// the host-key policy from `[ssh]`. `console` serves `strict`.
    pub fn from_config(config: Arc<Config>, console: Arc<dyn ConsoleOutputSource>) -> anyhow::Result<Self> {
        let s = &config.ssh;
        let passphrase = s.passphrase_env.clone().map(PassphraseSource::Env);
        let mut keys: BTreeMap<PathBuf, ClientKey> = BTreeMap::new();
        let mut key_of = BTreeMap::new();
        for t in &config.templates {
            let (path, setting) = match (&t.ssh_private_key, &s.private_key) {
                (Some(p), _) => (p, format!("template {}: ssh-private-key", t.name())),
                (None, Some(p)) => (p, "ssh.private-key".to_string()),
                (None, None) => anyhow::bail!(
                    "template {}: no SSH key: set [ssh] private-key or the template's ssh-private-key (the private half of its key pair)",
                    t.name()
                ),
            };
            if !keys.contains_key(path) {
                let key = ClientKey::load(path, passphrase.as_ref()).map_err(|e| anyhow::anyhow!("{setting}: {e}"))?;
                keys.insert(path.clone(), key);
            }
            key_of.insert(t.name().to_string(), path.clone());
        }
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
        let agent_jar = Arc::new(agent_jar_cache(&config)?);
        let ssh = key_of.into_iter().map(|(t, path)| (t, SshClientConfig::new(keys[&path].clone(), verifier.clone()))).collect();
        let public = config.templates.iter().any(|t| config.launch_profile(t).connect_via() == ConnectVia::PublicIp);
        let mounts = config.templates.iter().any(|t| config.launch_profile(t).data_disks().iter().any(|d| d.mount_point.is_some()));
        let ecs = if public || mounts {
            Some(client_from_config(&config).context("connect-via = \"public-ip\" and data-disk mount points look instances up in ECS")?)
        } else {
            None
        };
        Ok(SshBootstrapper { ecs, ..SshBootstrapper::new(ssh, config, agent_jar) })
    }
}

/// Whether an agent command runs Java: `{java}`, or a `java` program word.
fn runs_java(agent_command: &str) -> bool {
    agent_command.contains("{java}") || agent_command.split_whitespace().any(|w| w == "java" || w.ends_with("/java"))
}

/// The agent.jar cache for `[jenkins]`: `<agent-url or url>jnlpJars/agent.jar`, with the API
/// token, revalidated every minute.
pub fn agent_jar_cache(config: &Config) -> anyhow::Result<AgentJarCache> {
    let j = &config.jenkins;
    let (url, key) = match &j.agent_url {
        Some(u) => (u, "jenkins.agent-url"),
        None => (&j.url, "jenkins.url"),
    };
    let client = super::jenkins::client_from_config(j, url).context(key)?;
    Ok(AgentJarCache::new(client, AgentJarCache::DEFAULT_REVALIDATE_AFTER))
}

impl SshBootstrapper {
    /// The public IP ECS gave an instance (one DescribeInstances, at bootstrap time only).
    async fn public_ip(&self, instance_id: &str) -> anyhow::Result<Ipv4Addr> {
        let ecs = self.ecs.as_ref().context("no ECS client for connect-via = \"public-ip\"")?;
        let filter = InstanceFilter { instance_ids: vec![instance_id.to_string()], ..Default::default() };
        let found = ecs.describe_instances(&filter).await.with_context(|| format!("looking up the public IP of {instance_id}"))?;
        found
            .first()
            .and_then(|i| i.public_ip_address.0.first())
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
            .with_context(|| format!("instance {instance_id} has no public IP (connect-via = \"public-ip\" needs internet-max-bandwidth-out above 0)"))
    }
}

impl SshBootstrapper {
    /// The data disks of `instance_id` that the profile gives a mount point, with their ECS
    /// ids (one DescribeDisks). Disks are matched to `data-disks` entries by attachment order
    /// (`DataDisk.N` gets the N-th data device), and each must have the entry's category and
    /// size: a mismatch fails rather than formatting the wrong disk.
    async fn disk_mounts(&self, instance_id: &str, profile: &LaunchProfile) -> anyhow::Result<Vec<DiskMount>> {
        let wanted = profile.data_disks();
        if wanted.iter().all(|d| d.mount_point.is_none()) {
            return Ok(Vec::new());
        }
        let ecs = self.ecs.as_ref().context("no ECS client to look up data disks")?;
        let mut found: Vec<_> = ecs
            .describe_disks(instance_id)
            .await
            .with_context(|| format!("looking up the data disks of {instance_id}"))?
            .into_iter()
            .filter(|d| d.kind == "data")
            .collect();
        found.sort_by(|a, b| (a.device.len(), &a.device).cmp(&(b.device.len(), &b.device)));
        if found.len() < wanted.len() {
            anyhow::bail!("instance {instance_id} has {} data disks, its template lists {}", found.len(), wanted.len());
        }
        let mut mounts = Vec::new();
        for (n, (want, disk)) in wanted.iter().zip(&found).enumerate() {
            let Some(mount_point) = &want.mount_point else { continue };
            if disk.category != want.category || disk.size != want.size_gib {
                anyhow::bail!(
                    "instance {instance_id}: data disk {} at {} is {} {} GiB, but data-disks entry {} is {} {} GiB; not formatting it",
                    disk.disk_id, disk.device, disk.category, disk.size, n + 1, want.category, want.size_gib
                );
            }
            mounts.push(DiskMount { disk_id: disk.disk_id.clone(), mount_point: mount_point.clone() });
        }
        Ok(mounts)
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
        let profile = self.config.launch_profile(t);
        let ip: IpAddr = match profile.connect_via() {
            ConnectVia::PrivateIp => target.ip.into(),
            ConnectVia::PublicIp => self.public_ip(&target.instance_id).await?.into(),
        };
        let mut spec = BootstrapSpec::new(
            &target.instance_id,
            ip,
            &target.node_name,
            &self.jenkins_url,
            &target.secret,
            Instant::now() + left,
        );
        spec.user = profile.ssh_user.clone();
        spec.port = profile.ssh_port.to_string();
        spec.work_dir = t.remote_fs.clone();
        spec.agent_command = t.agent_command.clone();
        // Java is checked when the agent command runs it; a command that starts something else
        // (a container, a wrapper script) is left to its own checks.
        spec.java = runs_java(&t.agent_command).then(|| t.java_path.clone());
        spec.jvm_options = t.jvm_options.clone();
        spec.java_min_version = (t.java_min_version > 0).then_some(t.java_min_version);
        spec.image_id = Some(profile.image_id.clone());
        spec.data_disks = self.disk_mounts(&target.instance_id, &profile).await?;
        let jar = self.agent_jar.current().await.with_context(|| format!("cannot get agent.jar from {}", self.agent_jar.url()))?;
        spec.agent_jar = Some(JarUpload { bytes: jar.bytes.clone(), sha256: jar.sha256.clone() });
        spec.init_script = (!t.init_script.trim().is_empty()).then(|| t.init_script.clone());
        // The init script may take as long as the launch allows, no longer.
        spec.init_script_timeout = left.max(Duration::from_secs(1));
        let ssh = self.ssh.get(&target.template).with_context(|| format!("template {} has no SSH settings", target.template))?;
        let report = ssh::bootstrap(&spec, ssh).await?;
        tracing::info!(instance = %target.instance_id, total_ms = report.total.as_millis() as u64, init = ?report.init_script,
            agent_jar = ?report.agent_jar, java = report.java_version.as_deref().unwrap_or("?"), "bootstrapped");
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
            Some(BootstrapError::JavaMissing { .. } | BootstrapError::JavaTooOld { .. }) => "java",
            Some(BootstrapError::DataDisk { .. }) => "data-disk",
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

#[cfg(test)]
mod tests {
    use super::runs_java;

    #[test]
    fn java_is_checked_only_for_commands_that_run_it() {
        assert!(runs_java("{java} {jvm_options} -jar {agent_jar} -url {jenkins_url}"));
        assert!(runs_java("exec java -jar agent.jar"));
        assert!(runs_java("/opt/jdk/bin/java -jar agent.jar"));
        assert!(!runs_java("docker run jenkins/inbound-agent -secret @{secret_file}"));
        assert!(!runs_java("./start-javascript-agent.sh {secret_file}"));
    }
}
