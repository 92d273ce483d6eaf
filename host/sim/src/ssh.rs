//! Instance SSH emulator: one russh server standing in for the sshd of every emulated instance.
//!
//! Which instance a connection is for is told by the local address it arrived on: each emulated
//! instance has its own loopback IP (127.x.y.z), and the client connects to that IP.
//!
//! Binding: one listener on `0.0.0.0:<port>` (by default), because on Linux the whole 127/8
//! is routed to `lo`, so a wildcard socket receives connections to every 127.x.y.z, including
//! instances created after start, without one socket per instance (thousands of them at scale,
//! and an instance directory that cannot list its instances). Since a wildcard socket is also
//! reachable from the network, every connection whose local address is not loopback is dropped
//! before a byte is exchanged.
//!
//! Per connection: the instance must exist and be `running` (else the connection is dropped,
//! as a booting machine's closed port would be); it presents the instance's host key; it
//! accepts only the instance's launch key (any user name); `exec` requests run `sh -c
//! <command>` in `<root>/<instance-id>/` with `HOME` set to it, passing stdin, stdout, stderr
//! and the exit status. Shells, PTYs and forwarding are refused.
//!
//! Disks: each instance has its own root `<root_dir>/.sysroot/<instance-id>/` where its data
//! disks are device files, and shims of the few device commands the bootstrap uses come first
//! on its `PATH` (see [`super::disks`]).
//!
//! Java: with [`SshEmulatorConfig::java`] set, every instance has a `java` on its `PATH` (a
//! shell script under `<root_dir>/.jre/bin` that runs `<program> sim-agent "$@"`): an image with
//! a JRE that runs agent.jar only. Without it, the instances have no Java, as a bare image.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};
use russh::server::{self, Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelMsg, Disconnect, MethodKind, MethodSet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::{EmulatedInstance, InstanceDirectory};
use ecsp_ssh::keys::same_key;

/// Environment variable set on every command the emulator runs (and inherited by what those
/// start, such as detached agents): `<emulator token>/<instance id>`. It lets the emulator find
/// an instance's processes again to stop them when the instance is deleted.
pub const INSTANCE_ENV: &str = "ECSP_SIM_INSTANCE";

/// Where the emulator listens and keeps the instances' directories.
#[derive(Debug, Clone)]
pub struct SshEmulatorConfig {
    /// Listen address; `0.0.0.0:0` (the default) takes a free port. Must be a wildcard or
    /// loopback address for instances' 127.x.y.z addresses to reach it.
    pub listen: SocketAddr,
    /// Each instance gets `<root_dir>/<instance-id>/` as its home directory.
    pub root_dir: PathBuf,
    /// A program with a `sim-agent` command that plays `java` on every instance (see the
    /// module docs); `None`: no Java on the instances.
    pub java: Option<PathBuf>,
    /// The benchmark's in-process agents: the hand-off socket `sim-agent` finds in
    /// [`super::agent_host::HANDOFF_ENV`] (see `sim::agent_host`); `None`: agents are processes.
    pub agent_handoff: Option<PathBuf>,
    /// Whether the instances run an sshd at all. `false`: nothing listens (images without
    /// inbound SSH); processes still run on the instances through [`SshEmulatorHandle::instance_command`].
    pub sshd: bool,
}

impl SshEmulatorConfig {
    /// Listen on a free port of `0.0.0.0`, keep instance directories under `root_dir`.
    pub fn new(root_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            root_dir: root_dir.into(),
            java: None,
            agent_handoff: None,
            sshd: true,
        }
    }
}

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// Instance logged in to.
    pub instance_id: String,
    /// Login user.
    pub user: String,
    /// The instance's address the client connected to (its private or its public IP).
    pub address: IpAddr,
}

/// A running emulator. Dropping it without [`shutdown`](Self::shutdown) stops accepting but
/// leaves the instances' processes running.
pub struct SshEmulatorHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Sender<bool>,
    accept_task: tokio::task::JoinHandle<()>,
    sshd: bool,
}

struct Shared {
    directory: Arc<dyn InstanceDirectory>,
    root_dir: PathBuf,
    /// `PATH` of the commands: the disk shims, Java's directory when the instances have
    /// Java, then the inherited `PATH`.
    command_path: std::ffi::OsString,
    /// See [`SshEmulatorConfig::agent_handoff`].
    agent_handoff: Option<PathBuf>,
    /// Distinguishes this emulator's processes from another's with the same instance ids.
    token: String,
    served: Mutex<HashSet<String>>,
    /// Flips to `true` at shutdown; sessions disconnect when they see it.
    stopping: tokio::sync::watch::Receiver<bool>,
    accepted: AtomicU64,
    refused: AtomicU64,
    /// `(instance id, user)` of each login that succeeded, in order.
    logins: Mutex<Vec<Login>>,
}

/// Starts the emulator.
pub async fn start(
    directory: Arc<dyn InstanceDirectory>,
    config: SshEmulatorConfig,
) -> std::io::Result<SshEmulatorHandle> {
    std::fs::create_dir_all(&config.root_dir)?;
    let shims = config.root_dir.join(".sim-bin");
    super::disks::install_shims(&shims)?;
    let mut command_path = shims.into_os_string();
    if let Some(program) = &config.java {
        command_path.push(":");
        command_path.push(install_java(&config.root_dir, program)?);
    }
    if let Some(inherited) = std::env::var_os("PATH") {
        command_path.push(":");
        command_path.push(inherited);
    }
    let listener = if config.sshd { Some(TcpListener::bind(config.listen).await?) } else { None };
    let local_addr = match &listener {
        Some(l) => l.local_addr()?,
        None => SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        directory,
        root_dir: config.root_dir,
        command_path,
        agent_handoff: config.agent_handoff.clone(),
        token: format!("{:016x}", rand::random::<u64>()),
        served: Mutex::new(HashSet::new()),
        stopping,
        accepted: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        logins: Mutex::new(Vec::new()),
    });
    let accept_task = match listener {
        Some(listener) => {
            tracing::info!(%local_addr, "instance SSH emulator listening");
            tokio::spawn(accept_loop(listener, shared.clone()))
        }
        None => {
            tracing::info!("instance SSH emulator: no sshd on the instances (nothing listens)");
            tokio::spawn(async {})
        }
    };
    Ok(SshEmulatorHandle {
        local_addr,
        shared,
        stop,
        accept_task,
        sshd: config.sshd,
    })
}

impl SshEmulatorHandle {
    /// Whether the instances run an sshd (something listens).
    pub fn sshd(&self) -> bool {
        self.sshd
    }

    /// A command running `program` on an instance, exactly as an SSH `exec` runs its shell:
    /// in the instance's directory, with its `HOME`, `PATH` (disk shims, Java) and the tag that
    /// finds its processes again when the instance is deleted. The instance's data disks are
    /// prepared first.
    pub fn instance_command(&self, instance: &EmulatedInstance, program: &str) -> std::io::Result<tokio::process::Command> {
        if !valid_instance_id(&instance.instance_id) {
            return Err(std::io::Error::other(format!("instance id {:?} is unusable as a directory name", instance.instance_id)));
        }
        self.shared.served.lock().unwrap().insert(instance.instance_id.clone());
        instance_process(&exec_context(&self.shared, instance), program)
    }

    /// The port every instance's sshd is reachable on (at the instance's own IP).
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The directory an instance's commands run in (its `HOME`).
    pub fn instance_dir(&self, instance_id: &str) -> PathBuf {
        self.shared.root_dir.join(instance_id)
    }

    /// An instance's root directory, where its disks and fstab are (see [`super::disks`]).
    pub fn instance_sysroot(&self, instance_id: &str) -> PathBuf {
        sysroot_of(&self.shared.root_dir, instance_id)
    }

    /// Connections accepted (for an existing, running instance) and refused so far.
    pub fn connection_counts(&self) -> (u64, u64) {
        (
            self.shared.accepted.load(Ordering::Relaxed),
            self.shared.refused.load(Ordering::Relaxed),
        )
    }

    /// `(instance id, user name)` of every successful login so far, in order.
    pub fn logins(&self) -> Vec<Login> {
        self.shared.logins.lock().unwrap().clone()
    }

    /// Kills every process the emulator started for `instance_id` (including detached agents),
    /// as deleting the instance would. Returns how many were signalled.
    pub fn kill_instance_processes(&self, instance_id: &str) -> usize {
        kill_tagged(&format!("{}/{instance_id}", self.shared.token))
    }

    /// Stops accepting, disconnects open sessions, then kills the processes of every instance
    /// it served.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept_task.await;
        let served: Vec<String> = self.shared.served.lock().unwrap().iter().cloned().collect();
        for id in served {
            kill_tagged(&format!("{}/{id}", self.shared.token));
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut sessions = JoinSet::new();
    let mut stopping = shared.stopping.clone();
    loop {
        tokio::select! {
            _ = wait_stopping(&mut stopping) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let shared = shared.clone();
                    sessions.spawn(async move { serve_connection(stream, peer, shared).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "instance SSH emulator: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    drop(listener);
    // Sessions see the same flag and disconnect; give them a moment, then cut them off.
    let drained = tokio::time::timeout(Duration::from_secs(2), async {
        while sessions.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        sessions.abort_all();
    }
}

/// Resolves once shutdown has begun (the watch guard is dropped inside: it is not `Send`).
async fn wait_stopping(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let Some(instance) = admit(&stream, &shared) else {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        return; // dropping the stream closes it
    };
    let host_key = match russh::keys::decode_secret_key(&instance.host_key_pem, None) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(instance_id = %instance.instance_id, error = %e,
                "emulated instance has an unreadable host key; refusing connection");
            shared.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let authorized = match PublicKey::from_openssh(instance.authorized_key.trim()) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(instance_id = %instance.instance_id, error = %e,
                "emulated instance has an unreadable launch public key; refusing connection");
            shared.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    shared.accepted.fetch_add(1, Ordering::Relaxed);
    shared
        .served
        .lock()
        .unwrap()
        .insert(instance.instance_id.clone());
    let _ = stream.set_nodelay(true);
    let address = match stream.local_addr() {
        Ok(a) => a.ip(),
        Err(_) => IpAddr::from(instance.ip),
    };
    let ctx = exec_context(&shared, &instance);
    let handler = InstanceSession {
        instance_id: instance.instance_id.clone(),
        address,
        home: ctx.home,
        sysroot: ctx.sysroot,
        data_disks: ctx.data_disks,
        tag: ctx.tag,
        path: ctx.path,
        handoff: ctx.handoff,
        emulator: shared.clone(),
        authorized,
        channels: JoinSet::new(),
    };
    match server::run_stream(server_config(host_key), stream, handler).await {
        Ok(session) => {
            let handle = session.handle();
            let mut stopping = shared.stopping.clone();
            tokio::select! {
                result = session => if let Err(e) = result {
                    tracing::debug!(instance_id = %instance.instance_id, %peer, error = ?e,
                        "emulated SSH session ended with an error");
                },
                _ = wait_stopping(&mut stopping) => {
                    let _ = handle
                        .disconnect(Disconnect::ByApplication, "emulator shutting down".into(), "en".into())
                        .await;
                }
            }
        }
        Err(e) => tracing::debug!(instance_id = %instance.instance_id, %peer, error = ?e,
            "emulated SSH handshake failed"),
    }
}

/// The instance a connection is for, if it may be served.
fn admit(stream: &TcpStream, shared: &Shared) -> Option<EmulatedInstance> {
    let local = stream.local_addr().ok()?;
    let IpAddr::V4(ip) = local.ip() else {
        return None;
    };
    if !ip.is_loopback() {
        tracing::warn!(%local, "instance SSH emulator: dropped a connection to a non-loopback address");
        return None;
    }
    let Some(instance) = shared.directory.instance_by_ip(ip) else {
        tracing::debug!(%ip, "instance SSH emulator: no instance has this address");
        return None;
    };
    if !instance.running {
        tracing::debug!(instance_id = %instance.instance_id, "instance not running: connection dropped");
        return None;
    }
    if !valid_instance_id(&instance.instance_id) {
        tracing::error!(instance_id = %instance.instance_id, "instance id unusable as a directory name");
        return None;
    }
    Some(instance)
}

fn sysroot_of(root_dir: &std::path::Path, instance_id: &str) -> PathBuf {
    root_dir.join(".sysroot").join(instance_id)
}

fn valid_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn server_config(host_key: PrivateKey) -> Arc<server::Config> {
    Arc::new(server::Config {
        keys: vec![host_key],
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        // Rejections are delayed a little (as sshd does), not a whole second: tests and the
        // demo try wrong keys on purpose.
        auth_rejection_time: Duration::from_millis(50),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(3600)),
        nodelay: true,
        ..Default::default()
    })
}

/// russh handler of one connection to one instance.
struct InstanceSession {
    instance_id: String,
    /// The instance address the connection arrived on (private or public).
    address: IpAddr,
    home: PathBuf,
    sysroot: PathBuf,
    data_disks: Vec<String>,
    tag: String,
    path: std::ffi::OsString,
    handoff: Option<PathBuf>,
    /// Where successful logins are recorded.
    emulator: Arc<Shared>,
    authorized: PublicKey,
    /// Tasks serving this connection's channels; dropped (aborted) with the connection.
    channels: JoinSet<()>,
}

impl server::Handler for InstanceSession {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.check_key(offer.public_key))
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let auth = self.check_key(key.public_key);
        if matches!(auth, Auth::Accept) {
            tracing::debug!(instance_id = %self.instance_id, user, "emulated SSH login");
            self.emulator.logins.lock().unwrap().push(Login {
                instance_id: self.instance_id.clone(),
                user: user.to_string(),
                address: self.address,
            });
        }
        Ok(auth)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        let ctx = ExecContext {
            instance_id: self.instance_id.clone(),
            home: self.home.clone(),
            sysroot: self.sysroot.clone(),
            data_disks: self.data_disks.clone(),
            tag: self.tag.clone(),
            path: self.path.clone(),
            handoff: self.handoff.clone(),
        };
        self.channels.spawn(serve_channel(channel, ctx));
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The command itself reaches the channel task as ChannelMsg::Exec.
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }
}

impl InstanceSession {
    fn check_key(&self, key: &PublicKey) -> Auth {
        if same_key(key, &self.authorized) {
            Auth::Accept
        } else {
            Auth::reject()
        }
    }
}

#[derive(Clone)]
struct ExecContext {
    instance_id: String,
    home: PathBuf,
    sysroot: PathBuf,
    data_disks: Vec<String>,
    tag: String,
    path: std::ffi::OsString,
    handoff: Option<PathBuf>,
}

/// Waits for the channel's exec request, runs it, pumps the streams, reports the exit status.
async fn serve_channel(mut channel: Channel<Msg>, ctx: ExecContext) {
    let command = loop {
        match channel.wait().await {
            Some(ChannelMsg::Exec { command, .. }) => break command,
            Some(ChannelMsg::RequestShell { .. })
            | Some(ChannelMsg::Eof)
            | Some(ChannelMsg::Close)
            | None => {
                let _ = channel.close().await;
                return;
            }
            Some(_) => {}
        }
    };
    let status = match run_command(&mut channel, &ctx, &command).await {
        Ok(status) => status,
        Err(e) => {
            tracing::warn!(instance_id = %ctx.instance_id, error = %e, "emulated command failed to run");
            let _ = channel
                .extended_data(1, format!("emulator: cannot run command: {e}\n").as_bytes())
                .await;
            127
        }
    };
    let _ = channel.exit_status(status).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

async fn run_command(
    channel: &mut Channel<Msg>,
    ctx: &ExecContext,
    command: &[u8],
) -> std::io::Result<u32> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::ExitStatusExt;

    let mut child = instance_process(ctx, "sh")?
        .arg("-c")
        .arg(std::ffi::OsStr::from_bytes(command))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let writer_out = channel.make_writer();
    let writer_err = channel.make_writer_ext(Some(1));
    let pump_out = tokio::spawn(pump(stdout, writer_out));
    let pump_err = tokio::spawn(pump(stderr, writer_err));

    // Client -> stdin until EOF (or the channel goes away).
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                if let Some(w) = stdin.as_mut()
                    && w.write_all(&data).await.is_err()
                {
                    stdin = None; // the command stopped reading; discard the rest
                }
            }
            ChannelMsg::Eof => {
                stdin = None;
                break;
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    drop(stdin);
    let _ = pump_out.await;
    let _ = pump_err.await;
    let status = child.wait().await?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code as u32,
        (None, Some(sig)) => 128 + sig as u32,
        _ => 255,
    })
}

/// What a process on `instance` runs with.
fn exec_context(shared: &Shared, instance: &EmulatedInstance) -> ExecContext {
    ExecContext {
        instance_id: instance.instance_id.clone(),
        home: shared.root_dir.join(&instance.instance_id),
        sysroot: sysroot_of(&shared.root_dir, &instance.instance_id),
        data_disks: instance.data_disks.clone(),
        tag: format!("{}/{}", shared.token, instance.instance_id),
        path: shared.command_path.clone(),
        handoff: shared.agent_handoff.clone(),
    }
}

/// `program` set up to run on an instance: its directory, environment and disks.
fn instance_process(ctx: &ExecContext, program: &str) -> std::io::Result<tokio::process::Command> {
    std::fs::create_dir_all(&ctx.home)?;
    super::disks::prepare_sysroot(&ctx.sysroot, &ctx.data_disks)?;
    let mut command = tokio::process::Command::new(resolve_in(&ctx.path, program));
    if let Some(socket) = &ctx.handoff {
        command.env(super::agent_host::HANDOFF_ENV, socket);
    }
    command
        .env("PATH", &ctx.path)
        .env(super::disks::SYSROOT_ENV, &ctx.sysroot)
        .current_dir(&ctx.home)
        .env("HOME", &ctx.home)
        .env(INSTANCE_ENV, &ctx.tag);
    Ok(command)
}

/// `program` found on `path` (as the child's `PATH` would find it), or as given.
///
/// std spawns with `posix_spawn` (vfork) unless a program looked up on a changed `PATH` runs
/// in another directory; then it forks, and forking the emulators' process, hundreds of MiB
/// at 10,000 instances, for each of a bootstrap's commands was most of its CPU time.
fn resolve_in(path: &std::ffi::OsStr, program: &str) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            candidate.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| PathBuf::from(program))
}

/// Writes `<root>/.jre/bin/java` running `<program> sim-agent "$@"`; returns its directory.
fn install_java(
    root: &std::path::Path,
    program: &std::path::Path,
) -> std::io::Result<std::ffi::OsString> {
    use std::os::unix::fs::PermissionsExt;
    let bin = root.join(".jre/bin");
    std::fs::create_dir_all(&bin)?;
    let java = bin.join("java");
    let program = program
        .to_str()
        .ok_or_else(|| std::io::Error::other("the java program path is not UTF-8"))?;
    let script = format!(
        "#!/bin/sh\n# Emulated JRE: runs agent.jar only (ecs-provisioner sim-agent).\nexec {} sim-agent \"$@\"\n",
        ecsp_ssh::template::sh_quote(program)
    );
    std::fs::write(&java, script)?;
    std::fs::set_permissions(&java, std::fs::Permissions::from_mode(0o755))?;
    Ok(bin.into_os_string())
}

async fn pump(mut from: impl AsyncRead + Unpin, mut to: impl tokio::io::AsyncWrite + Unpin) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.flush().await;
}

/// SIGKILLs every process whose environment holds `INSTANCE_ENV=<tag>`.
fn kill_tagged(tag: &str) -> usize {
    let needle = format!("{INSTANCE_ENV}={tag}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == needle.as_bytes())
        {
            // SAFETY: kill(2) has no memory-safety preconditions.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_the_instance_path_as_the_child_would_find_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::env::join_paths([dir.path(), std::path::Path::new("/usr/bin"), std::path::Path::new("/bin")]).unwrap();
        let sh = resolve_in(&path, "sh");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        // A shim earlier on the path wins, as it does for the child's own lookup; one that is not
        // executable is skipped.
        let shim = dir.path().join("sh");
        std::fs::write(&shim, "#!/bin/sh\n").unwrap();
        assert_ne!(resolve_in(&path, "sh"), shim);
        std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        assert_eq!(resolve_in(&path, "sh"), shim);
        // Not found: left to the spawn, which reports it; a path is taken as given.
        assert_eq!(resolve_in(&path, "no-such-program-here"), PathBuf::from("no-such-program-here"));
        assert_eq!(resolve_in(&path, "./x"), PathBuf::from("./x"));
    }
}
