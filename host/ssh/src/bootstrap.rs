//! Bootstrap: turn a running instance into a started Jenkins agent over SSH.
//!
//! Steps, on one SSH connection: `connect` (retries until the deadline) -> `prepare` (work and
//! state directories; the agent secret through stdin into a 0600 file; read the init marker) ->
//! `mount-data-disks` (when data disks have mount points: see [`super::data_disks`]) ->
//! `init-script` (once per instance) -> `java-and-jar` (`java -version`; the hash of the
//! agent.jar already there) -> `upload-agent-jar` (only when it differs: through stdin into a
//! temporary file, hash checked on the instance, then an atomic rename) -> `start-agent`
//! (detached) -> `confirm-agent` (still alive after a short delay). Each remote command costs a
//! login-shell start on the instance, so steps are grouped to keep them few.
//!
//! Everything the host keeps on the instance lives in `{work_dir}/.ecs-provisioner/`:
//! `init.done` (marker), `init.started` (the PID of the shell running the init script),
//! `init-script`, `agent-secret`, `agent.pid`, `agent.log`; the jar itself is
//! `{work_dir}/agent.jar`.
//!
//! The init script runs to success once per instance, never twice at the same time. A run
//! records its PID in `init.started` before the script starts, and `init.done` after it
//! succeeds. A run that finds `init.done` does nothing. One that finds `init.started` naming a
//! live process (a bootstrap cut short by a killed daemon leaves the script running on the
//! instance) waits for it, within the same `init-script-timeout`: if it succeeded, done;
//! if not, the script runs again. A script that failed, or was killed, runs again.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::client::{OutputStream, RemoteExit, SshClientConfig, SshSession, SshTarget, connect};
use super::data_disks::{self, DiskMount, DiskOutcome, DiskProblem};
use super::error::SshError;
use super::template::{render, render_with_words, sh_quote};

/// Default login user.
pub const DEFAULT_USER: &str = "root";
/// Default sshd port.
pub const DEFAULT_PORT: &str = "22";
/// Default agent working directory (the Jenkins node's remote FS).
pub const DEFAULT_WORK_DIR: &str = "/home/jenkins/agent";
/// Default agent command: run the delivered agent.jar as a WebSocket inbound agent reading its
/// secret from the file (`-secret @file`), never from the command line.
pub const DEFAULT_AGENT_COMMAND: &str = "{java} {jvm_options} -jar {agent_jar} -url {jenkins_url} \
     -secret @{secret_file} -name {node_name} -webSocket -workDir {work_dir}";
/// Default Java launcher.
pub const DEFAULT_JAVA: &str = "java";
/// Oldest Java the controller's agents run on by default (Jenkins 2.463 and later need 17).
pub const DEFAULT_JAVA_MIN_VERSION: u32 = 17;

/// Shell snippet printing the SHA-256 of the file named by `$1` (empty if it cannot): GNU and
/// busybox have `sha256sum`, BSDs and macOS `shasum`.
const SHA256_FN: &str = r#"sha256() { { sha256sum "$1" 2>/dev/null || shasum -a 256 "$1" 2>/dev/null; } | cut -d' ' -f1; }"#;

/// A jar to deliver: its bytes and their SHA-256 (lower-case hex).
#[derive(Clone, PartialEq, Eq)]
pub struct JarUpload {
    /// The jar's contents.
    pub bytes: Arc<[u8]>,
    /// SHA-256 of `bytes`, lower-case hex; checked on the instance after upload.
    pub sha256: String,
}

impl fmt::Debug for JarUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JarUpload")
            .field("len", &self.bytes.len())
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// Shell function `alive PID`: the process exists and is not a zombie. `kill -0` alone
/// succeeds on zombies, which is what a dead agent becomes where PID 1 does not reap orphans
/// (containers). Falls back to `kill -0` where there is no /proc.
const ALIVE_FN: &str = r#"alive() { kill -0 "$1" 2>/dev/null || return 1; st=$(cat "/proc/$1/stat" 2>/dev/null) || return 0; case "${st##*) }" in Z*|X*) return 1;; esac; return 0; }"#;

/// Lines of init-script or agent output kept for error messages.
const TAIL_LINES: usize = 20;

/// Everything needed to bootstrap one instance. The engine fills it from the template's
/// config (the template strings) and the instance (the facts).
///
/// Placeholders (`{{`/`}}` for literal braces):
/// - `user`, `port`: `{instance_id}`, `{node_name}`, `{ip}`
/// - `work_dir`: the above and `{user}`; a relative path is relative to the login user's home
///   directory (handy for the instance SSH emulator, where each instance's home is its own
///   directory) and is made absolute on the instance before the agent command is rendered
/// - `agent_command`: all of the above and `{jenkins_url}`, `{work_dir}`, `{secret_file}`,
///   `{agent_jar}` (`{work_dir}/agent.jar`), `{java}` (the Java launcher) and `{jvm_options}`
///   (several words); values are inserted shell-quoted. It runs under `sh -c` in `work_dir`,
///   detached (`nohup setsid`, output to `.ecs-provisioner/agent.log`).
///
/// The init script is not templated (shell scripts use braces); it runs in `work_dir` with
/// `ECSP_INSTANCE_ID`, `ECSP_NODE_NAME`, `ECSP_WORK_DIR` and `ECSP_JENKINS_URL` in its
/// environment, through its `#!` line if it has one, else through `sh`.
#[derive(Clone)]
pub struct BootstrapSpec {
    /// ECS instance id.
    pub instance_id: String,
    /// The address SSH connects to: the instance's private IP, or its public one when the
    /// template says `connect-via = "public-ip"`.
    pub ip: IpAddr,
    /// Jenkins node name (`<template>-<instance-id>`).
    pub node_name: String,
    /// Jenkins root URL; a trailing `/` is added if missing.
    pub jenkins_url: String,
    /// The node's inbound-agent secret. Never logged, never on a command line.
    pub agent_secret: String,
    /// Login user (template).
    pub user: String,
    /// sshd port (template, must render to a number).
    pub port: String,
    /// Agent working directory (template; relative = under the login user's home).
    pub work_dir: String,
    /// Agent command (template).
    pub agent_command: String,
    /// The Java launcher `{java}` stands for. `Some`: it is also checked (`<java> -version`)
    /// after the init script and before the agent starts, failing the bootstrap with a clear
    /// reason when there is no Java. `None`: `{java}` is `java`, unchecked.
    pub java: Option<String>,
    /// JVM options `{jvm_options}` stands for.
    pub jvm_options: Vec<String>,
    /// With `java` checked: the oldest feature release accepted (17 for `17.0.9`); an older
    /// one, or a banner naming none, fails the bootstrap. `None`: any version.
    pub java_min_version: Option<u32>,
    /// agent.jar to deliver to `{work_dir}/agent.jar` (skipped when the same jar is there).
    pub agent_jar: Option<JarUpload>,
    /// The instance's image, named when Java is missing.
    pub image_id: Option<String>,
    /// Data disks to format (if blank) and mount before the init script runs.
    pub data_disks: Vec<DiskMount>,
    /// Script run once per instance before the agent starts.
    pub init_script: Option<String>,
    /// Give up connecting at this instant (the launch deadline).
    pub deadline: Instant,
    /// Time limit of the init script.
    pub init_script_timeout: Duration,
    /// How long the agent must stay alive after its start to count as started.
    pub agent_confirm_delay: Duration,
}

impl fmt::Debug for BootstrapSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapSpec")
            .field("instance_id", &self.instance_id)
            .field("ip", &self.ip)
            .field("node_name", &self.node_name)
            .field("jenkins_url", &self.jenkins_url)
            .field("agent_secret", &"<redacted>")
            .field("user", &self.user)
            .field("port", &self.port)
            .field("work_dir", &self.work_dir)
            .field("agent_command", &self.agent_command)
            .field("java", &self.java)
            .field("jvm_options", &self.jvm_options)
            .field("java_min_version", &self.java_min_version)
            .field("agent_jar", &self.agent_jar)
            .field("image_id", &self.image_id)
            .field("data_disks", &self.data_disks)
            .field("init_script", &self.init_script.as_ref().map(|s| s.len()))
            .finish_non_exhaustive()
    }
}

impl BootstrapSpec {
    /// A spec with the default templates, no init script, no jar to deliver, no Java check (and
    /// Java 17 as the oldest accepted once one is set), a 15-minute init-script limit and a 1-second agent confirmation delay.
    pub fn new(
        instance_id: impl Into<String>,
        ip: IpAddr,
        node_name: impl Into<String>,
        jenkins_url: impl Into<String>,
        agent_secret: impl Into<String>,
        deadline: Instant,
    ) -> Self {
        Self {
            instance_id: instance_id.into(),
            ip,
            node_name: node_name.into(),
            jenkins_url: jenkins_url.into(),
            agent_secret: agent_secret.into(),
            user: DEFAULT_USER.into(),
            port: DEFAULT_PORT.into(),
            work_dir: DEFAULT_WORK_DIR.into(),
            agent_command: DEFAULT_AGENT_COMMAND.into(),
            java: None,
            jvm_options: Vec::new(),
            java_min_version: Some(DEFAULT_JAVA_MIN_VERSION),
            agent_jar: None,
            image_id: None,
            data_disks: Vec::new(),
            init_script: None,
            deadline,
            init_script_timeout: Duration::from_secs(15 * 60),
            agent_confirm_delay: Duration::from_secs(1),
        }
    }

    /// Renders the templates for this instance.
    pub fn resolve(&self) -> Result<ResolvedBootstrap, BootstrapError> {
        let err = |field: &'static str, reason: String| BootstrapError::Template {
            instance_id: self.instance_id.clone(),
            field,
            reason,
        };
        let ip = self.ip.to_string();
        let mut jenkins_url = self.jenkins_url.clone();
        if !jenkins_url.ends_with('/') {
            jenkins_url.push('/');
        }
        let mut vars = vec![
            ("instance_id", self.instance_id.as_str()),
            ("node_name", self.node_name.as_str()),
            ("ip", ip.as_str()),
        ];
        let user = render(&self.user, &vars, false).map_err(|e| err("user", e))?;
        if user.is_empty() || user.chars().any(|c| c.is_whitespace()) {
            return Err(err("user", format!("{user:?} is not a user name")));
        }
        let port = render(&self.port, &vars, false).map_err(|e| err("port", e))?;
        let port: u16 = port
            .trim()
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| err("port", format!("{port:?} is not a TCP port (1-65535)")))?;
        vars.push(("user", user.as_str()));
        let work_dir = render(&self.work_dir, &vars, false).map_err(|e| err("work_dir", e))?;
        let work_dir = match work_dir.trim_end_matches('/') {
            "" if work_dir.starts_with('/') => "/".to_string(),
            trimmed => trimmed.to_string(),
        };
        if work_dir.is_empty() || work_dir.contains('\n') {
            return Err(err(
                "work_dir",
                format!("{work_dir:?} is not a directory path"),
            ));
        }
        let state_dir = format!("{work_dir}/.ecs-provisioner");
        let secret_file = format!("{state_dir}/agent-secret");
        let agent_jar = format!("{work_dir}/agent.jar");
        let java = self.java.clone().unwrap_or_else(|| DEFAULT_JAVA.into());
        if java.trim().is_empty() || java.contains('\n') {
            return Err(err("java", format!("{java:?} is not a program path")));
        }
        vars.extend([
            ("jenkins_url", jenkins_url.as_str()),
            ("work_dir", work_dir.as_str()),
            ("secret_file", secret_file.as_str()),
            ("agent_jar", agent_jar.as_str()),
            ("java", java.as_str()),
        ]);
        let words: [(&str, &[String]); 1] = [("jvm_options", &self.jvm_options)];
        let agent_command = render_with_words(&self.agent_command, &vars, &words, true)
            .map_err(|e| err("agent_command", e))?;
        if agent_command.trim().is_empty() {
            return Err(err("agent_command", "is empty".into()));
        }
        Ok(ResolvedBootstrap {
            user,
            port,
            jenkins_url,
            work_dir,
            state_dir,
            secret_file,
            agent_jar,
            java,
            agent_command,
        })
    }
}

/// Checks the templates of a config with sample values (for `check`), so a typo fails at
/// load time, not at the first launch.
pub fn check_templates(
    user: &str,
    port: &str,
    work_dir: &str,
    agent_command: &str,
) -> Result<(), BootstrapError> {
    let mut spec = BootstrapSpec::new(
        "i-sample",
        IpAddr::from([10, 0, 0, 1]),
        "tpl-i-sample",
        "http://jenkins.example/",
        "",
        Instant::now(),
    );
    spec.user = user.into();
    spec.port = port.into();
    spec.work_dir = work_dir.into();
    spec.agent_command = agent_command.into();
    spec.resolve().map(|_| ())
}

/// The templates rendered for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedBootstrap {
    /// Login user, rendered.
    pub user: String,
    /// sshd port, rendered and parsed (1-65535).
    pub port: u16,
    /// Jenkins root URL, ending in `/`.
    pub jenkins_url: String,
    /// Agent working directory, rendered, without a trailing `/` (relative = under the login user's home).
    pub work_dir: String,
    /// `{work_dir}/.ecs-provisioner`.
    pub state_dir: String,
    /// `{state_dir}/agent-secret`.
    pub secret_file: String,
    /// `{work_dir}/agent.jar`.
    pub agent_jar: String,
    /// The Java launcher.
    pub java: String,
    /// The agent command line, placeholders replaced.
    pub agent_command: String,
}

impl ResolvedBootstrap {
    /// Path of the init-once marker.
    pub fn init_marker(&self) -> String {
        format!("{}/init.done", self.state_dir)
    }
    /// Path of the file naming the PID of the shell running the init script.
    pub fn init_started(&self) -> String {
        format!("{}/init.started", self.state_dir)
    }
    /// Path of the agent pid file.
    pub fn pid_file(&self) -> String {
        format!("{}/agent.pid", self.state_dir)
    }
    /// Path of the agent log.
    pub fn agent_log(&self) -> String {
        format!("{}/agent.log", self.state_dir)
    }
}

/// Whether the init script ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitScriptOutcome {
    /// The template has none.
    NotConfigured,
    /// It ran and succeeded (the marker is now set).
    Ran,
    /// The marker says it already ran on this instance.
    Skipped,
}

/// What became of agent.jar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JarDelivery {
    /// No jar to deliver.
    NotConfigured,
    /// Uploaded now, hash checked on the instance.
    Uploaded,
    /// The same jar (same SHA-256) was already there.
    AlreadyPresent,
}

/// How the agent came to be running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStart {
    /// Started now, with this pid.
    Started {
        /// The agent's process id.
        pid: u32,
    },
    /// An agent from an earlier bootstrap is still running (left alone: it may be running a
    /// build).
    AlreadyRunning {
        /// The running agent's process id.
        pid: u32,
    },
}

/// What a bootstrap did and how long each step took.
#[derive(Debug, Clone)]
pub struct BootstrapReport {
    /// ECS instance id.
    pub instance_id: String,
    /// The agent's working directory, absolute (the Jenkins node's remote FS should match).
    pub work_dir: String,
    /// Connection attempts until sshd answered.
    pub connect_attempts: u32,
    /// Whether the init script ran.
    pub init_script: InitScriptOutcome,
    /// Each data disk with a mount point and what was done to it, in order.
    pub data_disks: Vec<(String, DiskOutcome)>,
    /// What became of agent.jar.
    pub agent_jar: JarDelivery,
    /// First line of `java -version` when Java was checked.
    pub java_version: Option<String>,
    /// How the agent came to be running, with its pid.
    pub agent: AgentStart,
    /// `(step, duration)` in order: connect, prepare, init-script (when it ran), java-and-jar
    /// (when there is a Java check or a jar), upload-agent-jar (when uploaded), start-agent,
    /// confirm-agent (when started now).
    pub steps: Vec<(&'static str, Duration)>,
    /// Wall time of the whole bootstrap.
    pub total: Duration,
}

/// Why a bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// A template did not render.
    #[error("instance {instance_id}: bootstrap setting {field}: {reason}")]
    Template {
        /// ECS instance id.
        instance_id: String,
        /// The setting that did not render, e.g. `port` or `work_dir`.
        field: &'static str,
        /// Why it did not render.
        reason: String,
    },
    /// Connecting or talking to the instance failed.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// A data disk could not be found, formatted or mounted.
    #[error("instance {instance_id}: {problem}; check the template's data-disks mount-point and the image (blkid, mkfs.ext4, mountpoint and sudo for a non-root user)")]
    DataDisk {
        /// The instance bootstrapped.
        instance_id: String,
        /// Which disk, and why.
        problem: DiskProblem,
    },
    /// The init script failed; the marker is not set, so it runs again next time.
    #[error("instance {instance_id}: init script failed ({exit}); last output:\n{}", last_lines.join("\n"))]
    InitScriptFailed {
        /// ECS instance id.
        instance_id: String,
        /// How the script ended.
        exit: RemoteExit,
        /// The last lines the script printed.
        last_lines: Vec<String>,
    },
    /// One of the host's own commands failed.
    #[error("instance {instance_id}: step '{step}' failed ({exit}): {output}")]
    StepFailed {
        /// ECS instance id.
        instance_id: String,
        /// The step that failed, e.g. `prepare`.
        step: &'static str,
        /// How the command ended.
        exit: RemoteExit,
        /// The command's stderr, or a note on its unexpected stdout.
        output: String,
    },
    /// `java -version` failed after the init script: the image has no (usable) Java.
    #[error("instance {instance_id}: no Java on image {image}: `{java} -version` failed ({exit}){}; install a JRE 17+ on the image or in init-script, or set java-path", if output.is_empty() { String::new() } else { format!(": {output}") })]
    JavaMissing {
        /// ECS instance id.
        instance_id: String,
        /// The instance's image id, or `(unknown)`.
        image: String,
        /// The Java launcher that was checked.
        java: String,
        /// How `<java> -version` ended.
        exit: RemoteExit,
        /// What `<java> -version` printed; may be empty.
        output: String,
    },
    /// `java -version` worked but names a release older than required, or none at all.
    #[error("instance {instance_id}: Java on image {image} is {}; the agents need Java {required} or later: install a newer JRE on the image or in init-script, point java-path at one, or lower java-min-version", match major { Some(m) => format!("too old: `{java} -version` says {version:?} (Java {m})"), None => format!("of unknown version: `{java} -version` printed {version:?}") })]
    JavaTooOld {
        /// The instance bootstrapped.
        instance_id: String,
        /// Its image.
        image: String,
        /// The Java launcher run.
        java: String,
        /// The banner's version line (or first line).
        version: String,
        /// Its feature release, if it names one.
        major: Option<u32>,
        /// `java_min_version`.
        required: u32,
    },
    /// The uploaded agent.jar did not arrive intact (or could not be hashed on the instance).
    #[error(
        "instance {instance_id}: agent.jar arrived at {path} with sha256 {got:?}, expected {expected} (the image needs sha256sum or shasum)"
    )]
    AgentJarCorrupt {
        /// ECS instance id.
        instance_id: String,
        /// Where the jar was written on the instance.
        path: String,
        /// The SHA-256 of the jar sent.
        expected: String,
        /// What the instance reported as the SHA-256 (whatever its hash command printed).
        got: String,
    },
    /// The agent died right after it was started.
    #[error("instance {instance_id}: the agent exited right after its start; last lines of {log}:\n{}", last_lines.join("\n"))]
    AgentNotRunning {
        /// ECS instance id.
        instance_id: String,
        /// Path of the agent log on the instance.
        log: String,
        /// The last lines of the agent log.
        last_lines: Vec<String>,
    },
}

impl BootstrapError {
    /// The instance the error is about.
    pub fn instance_id(&self) -> Option<&str> {
        match self {
            BootstrapError::Ssh(e) => e.instance_id(),
            BootstrapError::Template { instance_id, .. }
            | BootstrapError::InitScriptFailed { instance_id, .. }
            | BootstrapError::DataDisk { instance_id, .. }
            | BootstrapError::StepFailed { instance_id, .. }
            | BootstrapError::JavaMissing { instance_id, .. }
            | BootstrapError::JavaTooOld { instance_id, .. }
            | BootstrapError::AgentJarCorrupt { instance_id, .. }
            | BootstrapError::AgentNotRunning { instance_id, .. } => Some(instance_id),
        }
    }
}

/// Bootstraps one instance: connect (retrying until `spec.deadline`), run the init script once,
/// write the agent secret, start the agent detached and confirm it runs. Safe to call again
/// for the same instance (after a crash or a lost connection): the init script does not run
/// twice and a running agent is left alone.
pub async fn bootstrap(
    spec: &BootstrapSpec,
    ssh: &SshClientConfig,
) -> Result<BootstrapReport, BootstrapError> {
    let plan = spec.resolve()?;
    let span = tracing::info_span!("bootstrap", instance_id = %spec.instance_id);
    run_steps(spec, &plan, ssh).instrument(span).await
}

async fn run_steps(
    spec: &BootstrapSpec,
    plan: &ResolvedBootstrap,
    ssh: &SshClientConfig,
) -> Result<BootstrapReport, BootstrapError> {
    let started = Instant::now();
    let mut steps = Vec::new();
    let mut clock = Instant::now();
    let mut lap = |steps: &mut Vec<(&'static str, Duration)>, name: &'static str| {
        steps.push((name, clock.elapsed()));
        clock = Instant::now();
    };

    let target = SshTarget {
        instance_id: spec.instance_id.clone(),
        addr: SocketAddr::new(spec.ip, plan.port),
        user: plan.user.clone(),
    };
    let session = connect(&target, ssh, spec.deadline).await?;
    lap(&mut steps, "connect");

    let result = async {
        let (init_done, absolute_work_dir) = prepare(&session, spec, plan).await?;
        lap(&mut steps, "prepare");
        // A relative work dir is now known in full: render the agent command with it.
        let absolute;
        let plan = if plan.work_dir.starts_with('/') {
            plan
        } else {
            let mut spec = spec.clone();
            spec.work_dir = absolute_work_dir.replace('{', "{{").replace('}', "}}");
            absolute = spec.resolve()?;
            &absolute
        };

        let disks = if spec.data_disks.is_empty() {
            Vec::new()
        } else {
            let outcomes = mount_data_disks(&session, spec).await?;
            lap(&mut steps, "mount-data-disks");
            spec.data_disks.iter().map(|d| d.disk_id.clone()).zip(outcomes).collect()
        };

        let init_script = match (&spec.init_script, init_done) {
            (None, _) => InitScriptOutcome::NotConfigured,
            (Some(_), true) => {
                tracing::info!("init script already ran on this instance (marker present)");
                InitScriptOutcome::Skipped
            }
            (Some(script), false) => {
                run_init_script(&session, spec, plan, script).await?;
                lap(&mut steps, "init-script");
                InitScriptOutcome::Ran
            }
        };

        let (java_version, jar_present) = check_java_and_jar(&session, spec, plan).await?;
        if spec.java.is_some() || spec.agent_jar.is_some() {
            lap(&mut steps, "java-and-jar");
        }
        let agent_jar = match (&spec.agent_jar, jar_present) {
            (None, _) => JarDelivery::NotConfigured,
            (Some(_), true) => JarDelivery::AlreadyPresent,
            (Some(jar), false) => {
                upload_agent_jar(&session, spec, plan, jar).await?;
                lap(&mut steps, "upload-agent-jar");
                JarDelivery::Uploaded
            }
        };

        let agent = start_agent(&session, spec, plan).await?;
        lap(&mut steps, "start-agent");
        if let AgentStart::Started { pid } = agent {
            tokio::time::sleep(spec.agent_confirm_delay).await;
            confirm_agent(&session, spec, plan, pid).await?;
            lap(&mut steps, "confirm-agent");
        }
        Ok::<_, BootstrapError>((
            init_script,
            disks,
            agent_jar,
            java_version,
            agent,
            plan.work_dir.clone(),
        ))
    }
    .await;
    let connect_attempts = session.attempts();
    session.close().await;
    let (init_script, data_disks, agent_jar, java_version, agent, work_dir) = result?;
    let report = BootstrapReport {
        instance_id: spec.instance_id.clone(),
        work_dir,
        connect_attempts,
        init_script,
        data_disks,
        agent_jar,
        java_version,
        agent,
        steps,
        total: started.elapsed(),
    };
    tracing::info!(?report.agent, ?report.init_script, ?report.agent_jar, total = ?report.total, "bootstrap done");
    Ok(report)
}

/// Creates the directories, writes the secret from stdin (`umask 077`: the file is 0600 from
/// its creation on, and is replaced atomically); returns whether the init marker is set and
/// the absolute work directory.
async fn prepare(
    session: &SshSession,
    spec: &BootstrapSpec,
    plan: &ResolvedBootstrap,
) -> Result<(bool, String), BootstrapError> {
    let command = format!(
        "mkdir -p {w} {s} && chmod 700 {s} && umask 077 && rm -f {t} && cat > {t} && chmod 600 {t} \
         && mv -f {t} {f} && if [ -e {m} ]; then echo init-done; else echo init-pending; fi \
         && cd {w} && pwd",
        w = sh_quote(&plan.work_dir),
        s = sh_quote(&plan.state_dir),
        t = sh_quote(&format!("{}.tmp", plan.secret_file)),
        f = sh_quote(&plan.secret_file),
        m = sh_quote(&plan.init_marker()),
    );
    let out = session
        .run("prepare", &command, Some(spec.agent_secret.as_bytes()))
        .await?;
    let stdout = out.stdout_text();
    if !out.exit.success() {
        return Err(step_failed(spec, "prepare", out.exit, &out.stderr));
    }
    let mut lines = stdout.lines();
    let init_done = match lines.next() {
        Some("init-done") => Some(true),
        Some("init-pending") => Some(false),
        _ => None,
    };
    match (init_done, lines.next()) {
        (Some(done), Some(dir)) if dir.starts_with('/') => Ok((done, dir.to_string())),
        _ => Err(BootstrapError::StepFailed {
            instance_id: spec.instance_id.clone(),
            step: "prepare",
            exit: out.exit,
            output: format!("unexpected output {:?}", stdout.trim()),
        }),
    }
}

/// Formats (if blank) and mounts the data disks, one command for all of them.
async fn mount_data_disks(
    session: &SshSession,
    spec: &BootstrapSpec,
) -> Result<Vec<DiskOutcome>, BootstrapError> {
    // Waiting for devices and mkfs on large disks take longer than one quick step.
    let timeout = Duration::from_secs(600).min(
        spec.deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(90)),
    );
    let out = session
        .exec(
            "mount-data-disks",
            &data_disks::command(&spec.data_disks),
            None,
            timeout,
            &mut |_, _| {},
        )
        .await?;
    if !out.exit.success() {
        return Err(step_failed(spec, "mount-data-disks", out.exit, &out.stderr));
    }
    let outcomes = data_disks::parse(&spec.data_disks, &out.stdout_text()).map_err(|problem| {
        BootstrapError::DataDisk {
            instance_id: spec.instance_id.clone(),
            problem,
        }
    })?;
    for (d, o) in spec.data_disks.iter().zip(&outcomes) {
        tracing::info!(disk = %d.disk_id, mount_point = %d.mount_point, formatted = o.formatted, mounted = o.mounted, "data disk ready");
    }
    Ok(outcomes)
}

/// Uploads the script through stdin, runs it in the work dir (output streamed to the log) and
/// sets the marker only if it succeeded. An earlier run still going (its bootstrap was cut
/// short) is waited for instead of started again alongside: see the module's documentation.
async fn run_init_script(
    session: &SshSession,
    spec: &BootstrapSpec,
    plan: &ResolvedBootstrap,
    script: &str,
) -> Result<(), BootstrapError> {
    let file = format!("{}/init-script", plan.state_dir);
    let runner = if script.starts_with("#!") { "" } else { "sh " };
    // The script is read into a new file first (stdin must be read whatever happens) and put
    // in place only when it is about to run: a running `sh` reads its script as it goes.
    let command = format!(
        "cat > {n} && chmod 700 {n} && cd {w} || exit 1
         if [ -e {m} ]; then echo 'ecs-provisioner: the init script already succeeded' >&2; rm -f {n}; exit 0; fi
         prev=$(cat {p} 2>/dev/null)
         if [ -n \"$prev\" ] && kill -0 \"$prev\" 2>/dev/null; then
           echo \"ecs-provisioner: an earlier run of the init script (pid $prev) is still running: waiting for it\" >&2
           while kill -0 \"$prev\" 2>/dev/null; do sleep 1; done
           if [ -e {m} ]; then echo 'ecs-provisioner: the earlier run succeeded' >&2; rm -f {n}; exit 0; fi
           echo 'ecs-provisioner: the earlier run failed: running the init script again' >&2
         elif [ -n \"$prev\" ]; then
           echo 'ecs-provisioner: an earlier run of the init script did not succeed: running it again' >&2
         fi
         mv -f {n} {f} && echo $$ > {p} && env ECSP_INSTANCE_ID={id} ECSP_NODE_NAME={node} \
         ECSP_WORK_DIR={w} ECSP_JENKINS_URL={url} {runner}{f} < /dev/null && touch {m}",
        n = sh_quote(&format!("{file}.new")),
        p = sh_quote(&plan.init_started()),
        f = sh_quote(&file),
        w = sh_quote(&plan.work_dir),
        id = sh_quote(&spec.instance_id),
        node = sh_quote(&spec.node_name),
        url = sh_quote(&plan.jenkins_url),
        m = sh_quote(&plan.init_marker()),
    );
    tracing::info!("running init script");
    let mut log = LineLog::new(&spec.instance_id);
    let out = session
        .exec(
            "init-script",
            &command,
            Some(script.as_bytes()),
            spec.init_script_timeout,
            &mut |stream, data| log.feed(stream, data),
        )
        .await?;
    log.finish();
    if out.exit.success() {
        tracing::info!("init script succeeded");
        Ok(())
    } else {
        Err(BootstrapError::InitScriptFailed {
            instance_id: spec.instance_id.clone(),
            exit: out.exit,
            last_lines: log.tail.into_iter().collect(),
        })
    }
}

/// One command for both: runs `<java> -version` (when Java is checked) and hashes the agent.jar
/// already on the instance (when one is to be delivered). Returns the first line of the Java
/// banner and whether the jar there is the one to deliver.
async fn check_java_and_jar(
    session: &SshSession,
    spec: &BootstrapSpec,
    plan: &ResolvedBootstrap,
) -> Result<(Option<String>, bool), BootstrapError> {
    if spec.java.is_none() && spec.agent_jar.is_none() {
        return Ok((None, false));
    }
    let mut command = format!("{SHA256_FN}\n");
    if spec.java.is_some() {
        // `java -version` prints on stderr; a missing launcher exits 127 with the shell's reason.
        // The line naming the version comes first unless the JVM announces JAVA_TOOL_OPTIONS.
        command.push_str(&format!(
            "if v=$({j} -version 2>&1); then echo java-ok; \
             {{ printf '%s\\n' \"$v\" | grep -m 1 ' version \"' || printf '%s\\n' \"$v\" | head -n 1; }}; \
             else echo \"java-missing $?\"; printf '%s\\n' \"$v\" | tail -n 3; exit 0; fi\n",
            j = sh_quote(&plan.java),
        ));
    }
    if spec.agent_jar.is_some() {
        command.push_str(&format!(
            "echo \"jar $(sha256 {p})\"\n",
            p = sh_quote(&plan.agent_jar)
        ));
    }
    let out = session.run("java-and-jar", &command, None).await?;
    if !out.exit.success() {
        return Err(step_failed(spec, "java-and-jar", out.exit, &out.stderr));
    }
    let stdout = out.stdout_text();
    let mut lines = stdout.lines();
    let mut java_version = None;
    if spec.java.is_some() {
        match lines.next().map(|l| l.split_once(' ').unwrap_or((l, ""))) {
            Some(("java-ok", _)) => {
                let line = lines.next().map(|l| l.trim().to_string()).unwrap_or_default();
                check_java_version(spec, plan, &line)?;
                java_version = Some(line);
            }
            Some(("java-missing", code)) => {
                return Err(BootstrapError::JavaMissing {
                    instance_id: spec.instance_id.clone(),
                    image: spec.image_id.clone().unwrap_or_else(|| "(unknown)".into()),
                    java: plan.java.clone(),
                    exit: code
                        .trim()
                        .parse()
                        .map(RemoteExit::Code)
                        .unwrap_or(RemoteExit::Unknown),
                    output: lines
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .collect::<Vec<_>>()
                        .join(" / "),
                });
            }
            _ => {
                return Err(BootstrapError::StepFailed {
                    instance_id: spec.instance_id.clone(),
                    step: "java-and-jar",
                    exit: out.exit,
                    output: format!("unexpected output {:?}", stdout.trim()),
                });
            }
        }
    }
    let jar_present = match (&spec.agent_jar, lines.find_map(|l| l.strip_prefix("jar"))) {
        (Some(jar), Some(hash)) => hash.trim() == jar.sha256,
        _ => false,
    };
    Ok((java_version, jar_present))
}

/// Refuses a Java older than `spec.java_min_version` (or one whose banner names no version).
fn check_java_version(
    spec: &BootstrapSpec,
    plan: &ResolvedBootstrap,
    version_line: &str,
) -> Result<(), BootstrapError> {
    let Some(required) = spec.java_min_version else {
        return Ok(());
    };
    let major = super::java_version::parse_java_version(version_line).map(|v| v.major);
    if major.is_some_and(|m| m >= required) {
        return Ok(());
    }
    Err(BootstrapError::JavaTooOld {
        instance_id: spec.instance_id.clone(),
        image: spec.image_id.clone().unwrap_or_else(|| "(unknown)".into()),
        java: plan.java.clone(),
        version: version_line.to_string(),
        major,
        required,
    })
}

/// Sends the jar through stdin into a temporary file beside its place, checks its hash on the
/// instance and renames it into place (atomic: an agent starting meanwhile sees the old jar or
/// the new one, never half of it).
async fn upload_agent_jar(
    session: &SshSession,
    spec: &BootstrapSpec,
    plan: &ResolvedBootstrap,
    jar: &JarUpload,
) -> Result<(), BootstrapError> {
    let tmp = format!("{}.upload", plan.agent_jar);
    let command = format!(
        "{SHA256_FN}\nrm -f {t} && cat > {t} || exit 1\nh=$(sha256 {t})\n\
         if [ \"$h\" = {want} ]; then chmod 644 {t} && mv -f {t} {p} && echo ok; else rm -f {t}; echo \"bad $h\"; fi",
        t = sh_quote(&tmp),
        p = sh_quote(&plan.agent_jar),
        want = sh_quote(&jar.sha256),
    );
    tracing::info!(bytes = jar.bytes.len(), sha256 = %jar.sha256, "uploading agent.jar");
    // Megabytes through a loaded link may take longer than one quick step.
    let timeout = Duration::from_secs(300).min(
        spec.deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(30)),
    );
    let out = session
        .exec(
            "upload-agent-jar",
            &command,
            Some(&jar.bytes[..]),
            timeout,
            &mut |_, _| {},
        )
        .await?;
    let stdout = out.stdout_text();
    match stdout.trim() {
        "ok" => Ok(()),
        other if out.exit.success() => Err(BootstrapError::AgentJarCorrupt {
            instance_id: spec.instance_id.clone(),
            path: plan.agent_jar.clone(),
            expected: jar.sha256.clone(),
            got: other
                .strip_prefix("bad")
                .unwrap_or(other)
                .trim()
                .to_string(),
        }),
        _ => Err(step_failed(spec, "upload-agent-jar", out.exit, &out.stderr)),
    }
}

/// Starts the agent detached (own session, no terminal, output to the log) unless the pid
/// file names a live process.
async fn start_agent(
    session: &SshSession,
    spec: &BootstrapSpec,
    plan: &ResolvedBootstrap,
) -> Result<AgentStart, BootstrapError> {
    let command = format!(
        "{ALIVE_FN}\n\
         cd {w} || exit 1\n\
         if [ -s {p} ] && alive \"$(cat {p})\"; then echo \"running $(cat {p})\"; exit 0; fi\n\
         nohup setsid sh -c {c} > {l} 2>&1 < /dev/null &\n\
         echo $! > {p}\n\
         echo \"started $!\"",
        w = sh_quote(&plan.work_dir),
        p = sh_quote(&plan.pid_file()),
        c = sh_quote(&plan.agent_command),
        l = sh_quote(&plan.agent_log()),
    );
    let out = session.run("start-agent", &command, None).await?;
    if !out.exit.success() {
        return Err(step_failed(spec, "start-agent", out.exit, &out.stderr));
    }
    let stdout = out.stdout_text();
    let mut words = stdout.split_whitespace();
    let parsed = match (
        words.next(),
        words.next().and_then(|p| p.parse::<u32>().ok()),
    ) {
        (Some("started"), Some(pid)) => Some(AgentStart::Started { pid }),
        (Some("running"), Some(pid)) => Some(AgentStart::AlreadyRunning { pid }),
        _ => None,
    };
    match parsed {
        Some(AgentStart::AlreadyRunning { pid }) => {
            tracing::info!(pid, "agent already running; left alone");
            Ok(AgentStart::AlreadyRunning { pid })
        }
        Some(started) => Ok(started),
        None => Err(BootstrapError::StepFailed {
            instance_id: spec.instance_id.clone(),
            step: "start-agent",
            exit: out.exit,
            output: format!("unexpected output {:?}", stdout.trim()),
        }),
    }
}

async fn confirm_agent(
    session: &SshSession,
    spec: &BootstrapSpec,
    plan: &ResolvedBootstrap,
    pid: u32,
) -> Result<(), BootstrapError> {
    let command = format!(
        "{ALIVE_FN}\nif alive {pid}; then echo alive; else echo dead; tail -n {TAIL_LINES} {l}; fi",
        l = sh_quote(&plan.agent_log()),
    );
    let out = session.run("confirm-agent", &command, None).await?;
    let stdout = out.stdout_text();
    let mut lines = stdout.lines();
    match lines.next() {
        Some("alive") => {
            tracing::info!(pid, "agent started");
            Ok(())
        }
        Some("dead") => Err(BootstrapError::AgentNotRunning {
            instance_id: spec.instance_id.clone(),
            log: plan.agent_log(),
            last_lines: lines.map(str::to_string).collect(),
        }),
        _ => Err(step_failed(spec, "confirm-agent", out.exit, &out.stderr)),
    }
}

fn step_failed(
    spec: &BootstrapSpec,
    step: &'static str,
    exit: RemoteExit,
    stderr: &[u8],
) -> BootstrapError {
    BootstrapError::StepFailed {
        instance_id: spec.instance_id.clone(),
        step,
        exit,
        output: String::from_utf8_lossy(stderr).trim().to_string(),
    }
}

/// Splits command output into lines, logs each with the instance id, keeps the last ones.
struct LineLog<'a> {
    instance_id: &'a str,
    partial: [Vec<u8>; 2],
    tail: VecDeque<String>,
}

impl<'a> LineLog<'a> {
    fn new(instance_id: &'a str) -> Self {
        Self {
            instance_id,
            partial: [Vec::new(), Vec::new()],
            tail: VecDeque::new(),
        }
    }

    fn feed(&mut self, stream: OutputStream, data: &[u8]) {
        let i = stream as usize;
        self.partial[i].extend_from_slice(data);
        while let Some(pos) = self.partial[i].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial[i].drain(..=pos).collect();
            self.emit(stream, &line[..line.len() - 1]);
        }
    }

    fn finish(&mut self) {
        for stream in [OutputStream::Stdout, OutputStream::Stderr] {
            let rest = std::mem::take(&mut self.partial[stream as usize]);
            if !rest.is_empty() {
                self.emit(stream, &rest);
            }
        }
    }

    fn emit(&mut self, stream: OutputStream, line: &[u8]) {
        let line = String::from_utf8_lossy(line)
            .trim_end_matches('\r')
            .to_string();
        let stream_name = match stream {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        };
        tracing::info!(target: "ecs_provisioner::ssh::init_script", instance_id = %self.instance_id,
            stream = stream_name, "{line}");
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BootstrapSpec {
        BootstrapSpec::new(
            "i-abc",
            IpAddr::from([127, 0, 0, 9]),
            "linux-i-abc",
            "http://ci:8080",
            "s3cr3t",
            Instant::now(),
        )
    }

    #[test]
    fn default_templates_render_with_the_secret_as_a_file() {
        let plan = spec().resolve().unwrap();
        assert_eq!(plan.user, "root");
        assert_eq!(plan.port, 22);
        assert_eq!(
            plan.secret_file,
            "/home/jenkins/agent/.ecs-provisioner/agent-secret"
        );
        assert!(
            plan.agent_command
                .contains("-secret @/home/jenkins/agent/.ecs-provisioner/agent-secret")
        );
        assert!(
            plan.agent_command.contains("-url http://ci:8080/ "),
            "{}",
            plan.agent_command
        );
        assert!(plan.agent_command.contains("-name linux-i-abc -webSocket"));
        assert!(!plan.agent_command.contains("s3cr3t"));
        assert!(!format!("{:?}", spec()).contains("s3cr3t"));
    }

    #[test]
    fn a_spec_debugs_every_field_but_the_secret_which_it_marks_redacted() {
        let shown = format!("{:?}", spec());
        // Useful in a log line: what is being bootstrapped, where, and that a secret exists.
        assert!(shown.starts_with("BootstrapSpec {"), "{shown}");
        assert!(shown.contains(r#"instance_id: "i-abc""#), "{shown}");
        assert!(shown.contains("ip: 127.0.0.9"), "{shown}");
        assert!(shown.contains(r#"agent_secret: "<redacted>""#), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn bad_templates_name_the_setting() {
        let mut s = spec();
        s.port = "twenty-two".into();
        assert!(
            s.resolve()
                .unwrap_err()
                .to_string()
                .contains("setting port")
        );
        let mut s = spec();
        s.work_dir = "agent/{instance_id}".into();
        assert_eq!(
            s.resolve().unwrap().state_dir,
            "agent/i-abc/.ecs-provisioner"
        );
        s.work_dir = "".into();
        assert!(
            s.resolve()
                .unwrap_err()
                .to_string()
                .contains("setting work_dir")
        );
        let err = check_templates("root", "22", "/w", "run {secret}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("agent_command") && err.contains("{secret}"),
            "{err}"
        );
        check_templates("{node_name}", "{ip}", "/w/{user}", DEFAULT_AGENT_COMMAND).unwrap_err();
        check_templates(
            "ci",
            "2222",
            "/w/{user}/{instance_id}",
            DEFAULT_AGENT_COMMAND,
        )
        .unwrap();
    }

    #[test]
    fn line_log_keeps_the_last_lines_across_chunks() {
        let mut log = LineLog::new("i-1");
        for i in 0..30 {
            log.feed(OutputStream::Stdout, format!("line {i}\nhal").as_bytes());
            log.feed(OutputStream::Stdout, b"f\n");
        }
        log.feed(OutputStream::Stderr, b"no newline");
        log.finish();
        assert_eq!(log.tail.len(), TAIL_LINES);
        assert_eq!(log.tail.back().unwrap(), "no newline");
        assert_eq!(log.tail[log.tail.len() - 2], "half");
    }
}
