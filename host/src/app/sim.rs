//! `sim`: the ECS, instance SSH and Jenkins emulators alone, for trying the provisioner (or
//! another client) against them. Prints a ready configuration for `run`.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::sim::cluster::{Cluster, ClusterOptions};
use crate::sim::ecs::SimConfig as EcsSimConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// ECS emulator description (TOML; see host/sim/src/ecs/example.toml). Default: a believable
    /// region with 3 zones, 2 vswitches each, 6 instance types.
    #[arg(long)]
    pub ecs_config: Option<PathBuf>,
    /// ECS (and VPC) API address.
    #[arg(long, default_value = "127.0.0.1:9101")]
    pub ecs_listen: SocketAddr,
    /// STS API address (AssumeRole, AssumeRoleWithOIDC, GetCallerIdentity).
    #[arg(long, default_value = "127.0.0.1:9103")]
    pub sts_listen: SocketAddr,
    /// Jenkins address.
    #[arg(long, default_value = "127.0.0.1:9102")]
    pub jenkins_listen: SocketAddr,
    /// Instance SSH address (port shared by every emulated instance's 127.x.y.z).
    #[arg(long, default_value = "0.0.0.0:9122")]
    pub ssh_listen: SocketAddr,
    /// The status page and metrics address (`listen`) of the configuration written for `run`.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub status_listen: SocketAddr,
    /// Where instance directories, keys and the printed config go.
    #[arg(long, default_value = "ecs-provisioner-sim")]
    pub dir: PathBuf,
}

/// The commands `sim` prints to try the emulators: each runs as printed (a test runs them).
pub fn commands(exe: &std::path::Path, config: &std::path::Path, jenkins: &str, status: SocketAddr) -> String {
    let jenkins = jenkins.trim_end_matches('/');
    format!(
        "A configuration for them: {config}\n\
         Run the provisioner:  {exe} run --config {config}\n\
         Its status page:      http://{status}/status\n\
         Enqueue builds:       curl -fsS -X POST -H 'Content-Type: application/json' -d '{{\"label\":\"linux\",\"duration_ms\":5000,\"count\":3}}' {jenkins}/_admin/enqueue\n",
        config = config.display(),
        exe = exe.display(),
    )
}

/// `sim`: the emulators until SIGTERM or Ctrl-C.
pub async fn run(args: SimArgs) -> anyhow::Result<i32> {
    let ecs = match &args.ecs_config {
        Some(p) => EcsSimConfig::load(p)?,
        None => EcsSimConfig::default(),
    };
    let dir = std::path::absolute(&args.dir)?;
    let cluster = Cluster::start(ClusterOptions {
        ecs,
        ecs_listen: args.ecs_listen,
        sts: crate::sim::sts::StsConfig::default(),
        sts_listen: args.sts_listen,
        jenkins_listen: args.jenkins_listen,
        ssh_listen: args.ssh_listen,
        dir: dir.clone(),
        java: Some(std::env::current_exe()?),
        in_process_agents: false,
        // Serves both launch modes: user-data agents need no sshd, but it does not hurt them.
        sshd: true,
    })
    .await?;
    let templates = r#"[[template]]
name = "linux"
labels = ["linux"]
executors = 2
max-nodes = 10
remote-fs = "agent"
"#;
    let config_path = dir.join("ecs-provisioner.toml");
    std::fs::write(&config_path, cluster.config_text_listening(args.status_listen, "sim", templates, "")?)?;
    println!("ECS emulator:     {}  (AccessKeyId {}, secret in {})", cluster.ecs.base_url(), cluster.ecs.credentials().access_key_id, cluster.secret_file.display());
    // An RRSA-style OIDC token, so role setups can be tried against the STS emulator.
    let sts = &cluster.sts;
    let provider = sts.config().oidc_providers.first().map(|p| p.name.clone()).unwrap_or_default();
    let role = sts.config().roles.first().map(|r| r.name.clone()).unwrap_or_default();
    let token_file = dir.join("oidc-token");
    std::fs::write(&token_file, sts.oidc_token(&provider, 24 * 3600))?;
    println!("STS emulator:     {}  (role {}, OIDC provider {}, a day's OIDC token in {})", sts.base_url(), sts.role_arn(&role), sts.oidc_provider_arn(&provider), token_file.display());
    println!("Jenkins emulator: {}  (user {}, token in {})", cluster.jenkins.base_url(), cluster.jenkins.user(), cluster.token_file.display());
    println!("Instance SSH:     port {} on each instance's 127.x.y.z (key {})", cluster.ssh.port(), cluster.key_file.display());
    print!("{}", commands(&std::env::current_exe()?, &config_path, cluster.jenkins.base_url(), args.status_listen));
    super::wait_for_stop_signal().await;
    cluster.shutdown().await;
    Ok(0)
}
