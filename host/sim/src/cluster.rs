//! All the emulators (ECS with its STS, Jenkins, instance SSH) in one process, wired together,
//! plus a provisioner configuration that points at them: what `demo`, `sim` and the end-to-end
//! tests run on.
//!
//! The ECS emulator is the instance directory of the SSH emulator (each instance answers SSH at
//! its own 127.x.y.z address), and a reaper kills an instance's processes (its agent) when the
//! instance is deleted, as deleting a real VM would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use ecsp_config::Config;
use ecsp_ssh::keys::{generate_ed25519, private_key_pem, public_key_line};

use super::ecs::{EcsSim, SimConfig as EcsSimConfig};
use super::jenkins::{JenkinsSim, SimConfig as JenkinsSimConfig};
use super::ssh::{SshEmulatorConfig, SshEmulatorHandle};
use super::sts::{StsConfig, StsSim};

/// The key pair name the cluster registers in the ECS emulator.
pub const KEY_PAIR: &str = "ecs-provisioner-demo";

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// ECS emulator settings.
    pub ecs: EcsSimConfig,
    /// Where the ECS emulator listens.
    pub ecs_listen: SocketAddr,
    /// The STS emulator: roles and OIDC providers of the emulated account.
    pub sts: StsConfig,
    /// Where the STS emulator listens.
    pub sts_listen: SocketAddr,
    /// Where the Jenkins emulator listens.
    pub jenkins_listen: SocketAddr,
    /// Where the instance SSH emulator listens.
    pub ssh_listen: SocketAddr,
    /// Instance home directories, keys, secrets and the known-hosts file live here.
    pub dir: PathBuf,
    /// The program (with a `sim-agent` command) that plays `java` on the instances; `None`:
    /// the instances have no Java (see `sim::ssh`).
    pub java: Option<PathBuf>,
    /// Agents hosted in this process instead of one `sim-agent` process each (the engine
    /// benchmark at 10,000 nodes; see `sim::agent_host`).
    pub in_process_agents: bool,
    /// Whether the instances run an sshd; `false`: nothing listens for SSH (user-data fleets).
    pub sshd: bool,
}

impl ClusterOptions {
    /// Ephemeral ports, instant instance transitions, files under `dir`.
    pub fn ephemeral(dir: impl Into<PathBuf>) -> Self {
        ClusterOptions {
            ecs: EcsSimConfig::instant(),
            ecs_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            sts: StsConfig::default(),
            sts_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            jenkins_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ssh_listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            dir: dir.into(),
            java: None,
            in_process_agents: false,
            sshd: true,
        }
    }
}

/// A running cluster of emulators.
pub struct Cluster {
    /// The ECS emulator.
    pub ecs: EcsSim,
    /// STS of the emulated account; ECS honours the sessions it issues.
    pub sts: StsSim,
    /// The Jenkins emulator.
    pub jenkins: JenkinsSim,
    /// The instance SSH emulator.
    pub ssh: Arc<SshEmulatorHandle>,
    /// The cluster's directory (homes, keys, secrets, known-hosts).
    pub dir: PathBuf,
    /// Private key of the registered key pair.
    pub key_file: PathBuf,
    /// File holding the emulated account's AccessKey secret.
    pub secret_file: PathBuf,
    /// File holding the Jenkins API token.
    pub token_file: PathBuf,
    reaper: tokio::task::JoinHandle<()>,
    agent_host: Option<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    /// Starts ECS, instance SSH and Jenkins emulators and registers a fresh key pair.
    pub async fn start(options: ClusterOptions) -> anyhow::Result<Cluster> {
        let dir = options.dir.clone();
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let ecs = EcsSim::bind(options.ecs, options.ecs_listen).await?;
        let sts = StsSim::bind(options.sts, &ecs, options.sts_listen).await.context("starting the STS emulator")?;
        let jenkins = JenkinsSim::start(JenkinsSimConfig { bind: options.jenkins_listen, ..JenkinsSimConfig::default() })
            .await
            .context("starting the Jenkins emulator")?;
        let mut ssh_config = SshEmulatorConfig::new(dir.join("instances"));
        ssh_config.listen = options.ssh_listen;
        ssh_config.java = options.java.clone();
        let agent_host = if options.in_process_agents {
            let socket = dir.join("agent-handoff.sock");
            let task = super::agent_host::serve(&socket, &jenkins).context("starting the in-process agent host")?;
            ssh_config.agent_handoff = Some(socket);
            Some(task)
        } else {
            None
        };
        ssh_config.sshd = options.sshd;
        let ssh = Arc::new(super::ssh::start(ecs.directory(), ssh_config).await.context("starting the SSH emulator")?);

        let key = generate_ed25519("ecs-provisioner-demo");
        let key_file = dir.join("id_ed25519");
        write_private(&key_file, &private_key_pem(&key))?;
        ecs.import_key_pair(KEY_PAIR, &public_key_line(&key))
            .map_err(|e| anyhow::anyhow!("registering the key pair: {e:?}"))?;
        let secret_file = dir.join("access-key-secret");
        write_private(&secret_file, ecs.credentials().access_key_secret.expose())?;
        let token_file = dir.join("jenkins-token");
        write_private(&token_file, jenkins.token())?;

        // Deleting an instance stops what ran on it; booting one runs its user data.
        let cloud = ecs.cloud();
        let ssh_for_reaper = ssh.clone();
        let reaper = tokio::spawn(async move {
            let mut alive = std::collections::BTreeSet::<String>::new();
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                super::cloud_init::run_due(&cloud, &ssh_for_reaper);
                let now: std::collections::BTreeSet<String> = cloud
                    .instances()
                    .into_iter()
                    .filter(|i| i.status != "Deleted" && i.status != "Stopped")
                    .map(|i| i.instance_id)
                    .collect();
                for gone in alive.difference(&now) {
                    ssh_for_reaper.kill_instance_processes(gone);
                }
                alive = now;
            }
        });
        Ok(Cluster { ecs, sts, jenkins, ssh, dir, key_file, secret_file, token_file, reaper, agent_host })
    }

    /// A provisioner configuration for this cluster: `[cloud]`, `[jenkins]`, `[ssh]` filled
    /// in, followed by `templates_toml` (one or more `[[template]]` tables, whose
    /// `agent-command` may use `{exe}` for this program's path) and `extra_toml`.
    pub fn config(&self, controller_id: &str, templates_toml: &str, extra_toml: &str) -> anyhow::Result<Config> {
        let text = self.config_text(controller_id, templates_toml, extra_toml)?;
        Config::parse(&text).map_err(|e| anyhow::anyhow!("cluster config: {e}\n{text}"))
    }

    /// The configuration text [`Cluster::config`] parses; its status server listens on any
    /// free loopback port.
    pub fn config_text(&self, controller_id: &str, templates_toml: &str, extra_toml: &str) -> anyhow::Result<String> {
        self.config_text_listening("127.0.0.1:0".parse().expect("a socket address"), controller_id, templates_toml, extra_toml)
    }

    /// [`Cluster::config_text`] with the status server (`listen`) on `listen`.
    pub fn config_text_listening(
        &self,
        listen: std::net::SocketAddr,
        controller_id: &str,
        templates_toml: &str,
        extra_toml: &str,
    ) -> anyhow::Result<String> {
        let ecs = self.ecs.cloud();
        let cfg = &ecs.config;
        let vpc = cfg.vswitches.first().map(|v| v.vpc_id.clone()).context("the ECS emulator has no vswitch")?;
        let sg = cfg.security_groups.first().map(|s| s.security_group_id.clone()).context("no security group")?;
        let image = cfg.images.first().map(|i| i.image_id.clone()).context("no image")?;
        let exe = std::env::current_exe().context("locating this program")?;
        let templates = templates_toml.replace("{exe}", &exe.display().to_string());
        Ok(format!(
            r#"controller-id = "{controller_id}"
poll-interval = "1s"
listen = "{listen}"

[cloud]
region = "{region}"
endpoint = "{endpoint}"
sts-endpoint = "{sts}"
vpc-id = "{vpc}"
security-group-id = "{sg}"
image-id = "{image}"
key-pair-name = "{KEY_PAIR}"
capacity-cooldown = "60s"

[cloud.credentials]
source = "static"
access-key-id = "{akid}"
secret-file = "{secret}"

[jenkins]
url = "{jenkins}"
user = "{user}"
token-file = "{token}"

[ssh]
user = "root"
port = {ssh_port}
private-key = "{key}"
host-key-policy = "accept-new"
known-hosts = "{known_hosts}"

{extra_toml}

{templates}

# The decision journal stays with the cluster's other files.
[journal]
dir = "{journal}"
"#,
            region = cfg.region_id,
            endpoint = self.ecs.base_url(),
            sts = self.sts.base_url(),
            akid = self.ecs.credentials().access_key_id,
            secret = toml_path(&self.secret_file),
            jenkins = self.jenkins.base_url(),
            user = self.jenkins.user(),
            token = toml_path(&self.token_file),
            ssh_port = self.ssh.port(),
            key = toml_path(&self.key_file),
            known_hosts = toml_path(&self.dir.join("known_hosts")),
            journal = toml_path(&self.dir.join("journal")),
        ))
    }

    /// Stops the emulators and every process started on emulated instances.
    pub async fn shutdown(self) {
        // The reaper holds a clone of the SSH handle: wait until the aborted task has dropped
        // it, or `try_unwrap` fails and every agent process outlives the cluster.
        self.reaper.abort();
        if let Some(host) = &self.agent_host {
            host.abort();
        }
        let _ = self.reaper.await;
        match Arc::try_unwrap(self.ssh) {
            Ok(ssh) => ssh.shutdown().await,
            Err(ssh) => tracing::warn!(
                holders = Arc::strong_count(&ssh),
                "the SSH emulator is still shared; instance processes are left running"
            ),
        }
        self.jenkins.stop();
        self.sts.shutdown().await;
        self.ecs.shutdown().await;
    }
}

fn toml_path(p: &Path) -> String {
    p.display().to_string().replace('\\', "\\\\").replace('"', "\\\"")
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}
