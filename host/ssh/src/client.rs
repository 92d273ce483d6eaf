//! The russh client: connect with retries until a deadline, verify the host key, log in with
//! the launch key, run commands with per-step timeouts.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::{Algorithm, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, Preferred};
use tokio::net::TcpStream;

use super::console::parse_console_host_keys;
use super::error::{HostKeyRejection, SshError};
use super::host_keys::{HostKeyVerifier, KnownHosts, PinOutcome};
use super::keys::{ClientKey, fingerprint, same_key};

/// How the host connects to instances; shared by all bootstraps of a template.
#[derive(Debug, Clone)]
pub struct SshClientConfig {
    /// The launch key pair's private key.
    pub key: ClientKey,
    /// Host-key policy with what it needs.
    pub host_keys: HostKeyVerifier,
    /// Timeout of each short step (TCP connect, handshake, login, each small command).
    pub step_timeout: Duration,
    /// Send an SSH keepalive after this long without traffic (long init scripts, NAT).
    pub keepalive_interval: Duration,
    /// Give up on the connection after this many unanswered keepalives.
    pub keepalive_max: usize,
    /// First pause between connection attempts; doubles up to `retry_max_delay`.
    pub retry_initial_delay: Duration,
    /// Longest pause between connection attempts.
    pub retry_max_delay: Duration,
}

impl SshClientConfig {
    /// Defaults: 30 s steps, keepalive every 15 s (4 missed = dead), retries from 250 ms to 5 s.
    pub fn new(key: ClientKey, host_keys: HostKeyVerifier) -> Self {
        Self {
            key,
            host_keys,
            step_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(15),
            keepalive_max: 4,
            retry_initial_delay: Duration::from_millis(250),
            retry_max_delay: Duration::from_secs(5),
        }
    }
}

/// Which instance to reach, where, as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// ECS instance id: names the instance in logs and errors, and keys its pinned host key.
    pub instance_id: String,
    /// IP and port of its sshd.
    pub addr: SocketAddr,
    /// Login user.
    pub user: String,
}

/// Which stream a piece of command output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteExit {
    /// Exit status.
    Code(u32),
    /// Killed by this signal.
    Signal(String),
    /// The server closed the channel without saying.
    Unknown,
}

impl RemoteExit {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        *self == RemoteExit::Code(0)
    }
}

impl std::fmt::Display for RemoteExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteExit::Code(c) => write!(f, "exit status {c}"),
            RemoteExit::Signal(s) => write!(f, "killed by signal {s}"),
            RemoteExit::Unknown => f.write_str("no exit status"),
        }
    }
}

/// Output of a remote command (each stream capped at [`ExecOutput::CAP`] bytes).
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub exit: RemoteExit,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Bytes kept per stream; the rest is only streamed to the callback.
    pub const CAP: usize = 256 * 1024;

    /// Stdout as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// An authenticated SSH connection to one instance.
pub struct SshSession {
    handle: client::Handle<HostKeyCheck>,
    instance_id: String,
    step_timeout: Duration,
    attempts: u32,
}

/// Connects to `target`, retrying with backoff until `deadline` while sshd is not up (refused,
/// reset, timeouts, handshake cut short, no console host keys yet). A refused host key or a
/// refused login is final: retrying cannot fix it.
pub async fn connect(
    target: &SshTarget,
    config: &SshClientConfig,
    deadline: Instant,
) -> Result<SshSession, SshError> {
    let started = Instant::now();
    let mut delay = config.retry_initial_delay;
    let mut attempts = 0u32;
    let mut console_keys: Option<Vec<PublicKey>> = None;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let step = config
            .step_timeout
            .min(remaining)
            .max(Duration::from_millis(100));
        let result = match expectation(target, config, &mut console_keys).await {
            Ok(expect) => attempt(target, config, expect, step).await,
            Err(e) => Err(e),
        };
        let last_error = match result {
            Ok(handle) => {
                tracing::debug!(instance_id = %target.instance_id, attempts, "SSH connected");
                return Ok(SshSession {
                    handle,
                    instance_id: target.instance_id.clone(),
                    step_timeout: config.step_timeout,
                    attempts,
                });
            }
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retry(reason)) => reason,
        };
        tracing::debug!(instance_id = %target.instance_id, addr = %target.addr, attempts,
            error = %last_error, "SSH not ready yet");
        // Jitter (50..100 %) so a batch of instances launched together does not retry in step.
        let pause = delay.mul_f64(0.5 + rand::random::<f64>() * 0.5);
        if Instant::now() + pause >= deadline {
            return Err(SshError::Unreachable {
                instance_id: target.instance_id.clone(),
                addr: target.addr,
                attempts,
                waited: started.elapsed(),
                last_error,
            });
        }
        tokio::time::sleep(pause).await;
        delay = (delay * 2).min(config.retry_max_delay);
    }
}

impl SshSession {
    /// The instance this session is connected to.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// How many connection attempts it took.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Runs `command` (through the login shell of the server), feeding `stdin` (then EOF) and
    /// passing output chunks to `on_output` as they arrive. Times out after `timeout`.
    pub async fn exec(
        &self,
        step: &'static str,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
        on_output: &mut (dyn FnMut(OutputStream, &[u8]) + Send),
    ) -> Result<ExecOutput, SshError> {
        match tokio::time::timeout(
            timeout,
            self.exec_unbounded(step, command, stdin, on_output),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(SshError::Timeout {
                instance_id: self.instance_id.clone(),
                step,
                after: timeout,
            }),
        }
    }

    /// [`exec`](Self::exec) with the step timeout and no streaming.
    pub async fn run(
        &self,
        step: &'static str,
        command: &str,
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, SshError> {
        self.exec(step, command, stdin, self.step_timeout, &mut |_, _| {})
            .await
    }

    async fn exec_unbounded(
        &self,
        step: &'static str,
        command: &str,
        stdin: Option<&[u8]>,
        on_output: &mut (dyn FnMut(OutputStream, &[u8]) + Send),
    ) -> Result<ExecOutput, SshError> {
        let fail = |reason: String| SshError::Session {
            instance_id: self.instance_id.clone(),
            step,
            reason,
        };
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| fail(format!("cannot open a channel: {e}")))?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| fail(format!("cannot start the command: {e}")))?;
        if let Some(data) = stdin {
            channel
                .data(data)
                .await
                .map_err(|e| fail(format!("cannot send stdin: {e}")))?;
        }
        // Always EOF: a command reading stdin must not wait forever.
        channel
            .eof()
            .await
            .map_err(|e| fail(format!("cannot close stdin: {e}")))?;
        let mut out = ExecOutput {
            exit: RemoteExit::Unknown,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    on_output(OutputStream::Stdout, &data);
                    keep(&mut out.stdout, &data);
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    on_output(OutputStream::Stderr, &data);
                    keep(&mut out.stderr, &data);
                }
                ChannelMsg::ExitStatus { exit_status } => out.exit = RemoteExit::Code(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    out.exit = RemoteExit::Signal(format!("{signal_name:?}"))
                }
                ChannelMsg::Failure => {
                    return Err(fail("the server refused to run the command".into()));
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Says goodbye to the server. Dropping the session also ends it, less politely.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "bootstrap done", "en")
            .await;
    }
}

fn keep(buf: &mut Vec<u8>, data: &[u8]) {
    let room = ExecOutput::CAP.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

/// What a connection attempt expects of the host key.
#[derive(Clone)]
enum Expectation {
    Pin(Arc<KnownHosts>, IpAddr),
    Keys(Vec<PublicKey>),
    Any,
}

enum Attempt {
    Retry(String),
    Fatal(SshError),
}

async fn expectation(
    target: &SshTarget,
    config: &SshClientConfig,
    console_keys: &mut Option<Vec<PublicKey>>,
) -> Result<Expectation, Attempt> {
    match &config.host_keys {
        HostKeyVerifier::AcceptNew(store) => Ok(Expectation::Pin(store.clone(), target.addr.ip())),
        HostKeyVerifier::Off => Ok(Expectation::Any),
        HostKeyVerifier::Strict(source) => {
            if let Some(keys) = console_keys {
                return Ok(Expectation::Keys(keys.clone()));
            }
            let text = source
                .console_output(&target.instance_id)
                .await
                .map_err(|e| Attempt::Retry(format!("cannot read the console output: {e:#}")))?;
            match parse_console_host_keys(&text) {
                Ok(Some(keys)) if !keys.is_empty() => {
                    *console_keys = Some(keys.clone());
                    Ok(Expectation::Keys(keys))
                }
                Ok(_) => Err(Attempt::Retry(
                    "the console output has no SSH host keys block yet".into(),
                )),
                Err(reason) => Err(Attempt::Fatal(SshError::HostKey {
                    instance_id: target.instance_id.clone(),
                    addr: target.addr,
                    rejection: HostKeyRejection::BadConsoleOutput { reason },
                })),
            }
        }
    }
}

async fn attempt(
    target: &SshTarget,
    config: &SshClientConfig,
    expect: Expectation,
    step: Duration,
) -> Result<client::Handle<HostKeyCheck>, Attempt> {
    let stream = match tokio::time::timeout(step, TcpStream::connect(target.addr)).await {
        Err(_) => {
            return Err(Attempt::Retry(format!(
                "TCP connect timed out after {step:?}"
            )));
        }
        Ok(Err(e)) => return Err(Attempt::Retry(format!("TCP connect: {e}"))),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let expected_keys: Vec<PublicKey> = match &expect {
        Expectation::Pin(store, _) => store.pinned(&target.instance_id).into_iter().collect(),
        Expectation::Keys(keys) => keys.clone(),
        Expectation::Any => Vec::new(),
    };
    let ssh_config = Arc::new(client::Config {
        keepalive_interval: Some(config.keepalive_interval),
        keepalive_max: config.keepalive_max,
        nodelay: true,
        preferred: preferred_for(&expected_keys),
        ..Default::default()
    });
    let handler = HostKeyCheck {
        instance_id: target.instance_id.clone(),
        expect,
    };
    let mut handle =
        match tokio::time::timeout(step, client::connect_stream(ssh_config, stream, handler)).await
        {
            Err(_) => {
                return Err(Attempt::Retry(format!(
                    "SSH handshake timed out after {step:?}"
                )));
            }
            Ok(Err(HandlerError::Rejected(rejection))) => {
                return Err(Attempt::Fatal(SshError::HostKey {
                    instance_id: target.instance_id.clone(),
                    addr: target.addr,
                    rejection,
                }));
            }
            Ok(Err(HandlerError::Ssh(e))) => {
                return Err(Attempt::Retry(format!("SSH handshake: {e}")));
            }
            Ok(Ok(h)) => h,
        };
    let key = config.key.private_key();
    let hash = if key.algorithm().is_rsa() {
        // RSA signs with SHA-2 when the server says it can (server-sig-algs), else SHA-1.
        match tokio::time::timeout(step, handle.best_supported_rsa_hash()).await {
            Ok(Ok(hash)) => hash.flatten(),
            Ok(Err(e)) => return Err(Attempt::Retry(format!("SSH extension negotiation: {e}"))),
            Err(_) => return Err(Attempt::Retry("SSH extension negotiation timed out".into())),
        }
    } else {
        None
    };
    let auth =
        handle.authenticate_publickey(target.user.clone(), PrivateKeyWithHashAlg::new(key, hash));
    match tokio::time::timeout(step, auth).await {
        Err(_) => Err(Attempt::Retry(format!(
            "authentication timed out after {step:?}"
        ))),
        Ok(Err(e)) => Err(Attempt::Retry(format!("authentication: {e}"))),
        Ok(Ok(result)) if result.success() => Ok(handle),
        Ok(Ok(_)) => Err(Attempt::Fatal(SshError::AuthRejected {
            instance_id: target.instance_id.clone(),
            addr: target.addr,
            user: target.user.clone(),
            key_fingerprint: config.key.fingerprint().to_string(),
            key_path: config.key.path().to_path_buf(),
        })),
    }
}

/// Host-key algorithms in russh's default order, but those of the expected keys first, so the
/// server presents the key we know (sshd has several; it picks by our preference).
fn preferred_for(expected: &[PublicKey]) -> Preferred {
    let mut algorithms: Vec<Algorithm> = Preferred::DEFAULT.key.to_vec();
    let is_rsa = |a: &Algorithm| matches!(a, Algorithm::Rsa { .. });
    let same_family = |a: &Algorithm, b: &Algorithm| (is_rsa(a) && is_rsa(b)) || a == b;
    // Stable sort: keeps the default order within each group.
    algorithms.sort_by_key(|a| !expected.iter().any(|k| same_family(&k.algorithm(), a)));
    Preferred {
        key: Cow::Owned(algorithms),
        ..Preferred::DEFAULT
    }
}

/// russh handler that applies the host-key policy during the handshake.
struct HostKeyCheck {
    instance_id: String,
    expect: Expectation,
}

#[derive(Debug)]
enum HandlerError {
    Ssh(russh::Error),
    Rejected(HostKeyRejection),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

impl client::Handler for HostKeyCheck {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_key else {
            return Err(HandlerError::Rejected(HostKeyRejection::Certificate));
        };
        match &self.expect {
            Expectation::Any => Ok(true),
            Expectation::Pin(store, ip) => match store.check_or_pin(&self.instance_id, *ip, key) {
                Ok(PinOutcome::Pinned) => {
                    tracing::info!(instance_id = %self.instance_id, %ip,
                        host_key = %fingerprint(key), "pinned new host key (accept-new)");
                    Ok(true)
                }
                Ok(PinOutcome::Matched) => Ok(true),
                Err(rejection) => Err(HandlerError::Rejected(rejection)),
            },
            Expectation::Keys(keys) => {
                if keys.iter().any(|k| same_key(k, key)) {
                    Ok(true)
                } else {
                    Err(HandlerError::Rejected(
                        HostKeyRejection::NotInConsoleOutput {
                            presented: fingerprint(key),
                            expected: keys.iter().map(fingerprint).collect::<Vec<_>>().join(", "),
                        },
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_ed25519;

    #[test]
    fn preferred_puts_expected_key_types_first() {
        let default = preferred_for(&[]);
        assert_eq!(default.key.as_ref(), Preferred::DEFAULT.key.as_ref());
        let ed = generate_ed25519("x");
        let p = preferred_for(&[ed.public_key().clone()]);
        assert_eq!(p.key[0], Algorithm::Ed25519);
        assert_eq!(p.key.len(), Preferred::DEFAULT.key.len());
        // Generated with `ssh-keygen -t ecdsa`: ECDSA P-256 must move ahead of ed25519.
        let ecdsa = PublicKey::from_openssh(ECDSA_PUB).unwrap();
        let p = preferred_for(&[ecdsa]);
        assert_eq!(p.key[0].as_str(), "ecdsa-sha2-nistp256", "{:?}", p.key);
        assert_eq!(p.key[1], Algorithm::Ed25519);
    }

    const ECDSA_PUB: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLO/bjJ6RkpHpU68WOk2uGy2RcoUnFe7SAiAAKxYoOsXfZEftMxVmVOLZDA4Ix+nxvcXs2fPRB0lGRzh+q1/CvQ= test";
}
