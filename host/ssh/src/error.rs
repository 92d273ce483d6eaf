//! Errors of the SSH client and the bootstrap, each naming the instance, address and step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why a host key was refused. Never retried: a wrong host key does not fix itself.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostKeyRejection {
    /// `accept-new`: the instance presented a different key from the one pinned on first contact.
    #[error(
        "host key changed: pinned {pinned}, presented {presented}; refusing to connect \
         (possible man-in-the-middle). If the instance was really re-keyed, delete its line \
         from {}",
        known_hosts.display()
    )]
    Changed {
        /// Fingerprint of the key pinned in the known-hosts file.
        pinned: String,
        /// Fingerprint of the key the instance presented.
        presented: String,
        /// The known-hosts file holding the pinned key.
        known_hosts: PathBuf,
    },
    /// `strict`: the presented key is not among those the instance printed on its console.
    #[error(
        "host key {presented} is not among the keys in the instance's console output: {expected}"
    )]
    NotInConsoleOutput {
        /// Fingerprint of the host key the server presented.
        presented: String,
        /// Fingerprints the console output lists.
        expected: String,
    },
    /// `strict`: the console output's host-key block is malformed.
    #[error("cannot read host keys from the console output: {reason}")]
    BadConsoleOutput {
        /// What could not be read.
        reason: String,
    },
    /// The server offered an OpenSSH certificate instead of a plain key.
    #[error("the server presented a host certificate; only plain host keys are supported")]
    Certificate,
    /// `accept-new`: the key was new but could not be written to the known-hosts file.
    #[error("could not pin the new host key {presented}: {reason}")]
    PinFailed {
        /// Fingerprint of the host key to pin.
        presented: String,
        /// Why it could not be written to the known-hosts file.
        reason: String,
    },
}

/// Errors of connecting to an instance and running commands on it.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The client key file could not be read, decrypted or parsed.
    #[error("SSH client key {}: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The known-hosts file could not be read or written.
    #[error("known-hosts file {}: {reason}", path.display())]
    KnownHosts {
        /// The known-hosts file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// sshd never answered (or never completed a handshake) before the deadline.
    #[error(
        "instance {instance_id} ({addr}): SSH not reachable after {attempts} attempt(s) over \
         {waited:.1?}; last error: {last_error}"
    )]
    Unreachable {
        /// ECS instance id.
        instance_id: String,
        /// Address SSH connected to.
        addr: SocketAddr,
        /// Connection attempts made.
        attempts: u32,
        /// Time spent trying.
        waited: Duration,
        /// The last attempt's error.
        last_error: String,
    },
    /// The host key was refused by the host-key policy.
    #[error("instance {instance_id} ({addr}): {rejection}")]
    HostKey {
        /// ECS instance id.
        instance_id: String,
        /// Address SSH connected to.
        addr: SocketAddr,
        /// Why the key was refused.
        rejection: HostKeyRejection,
    },
    /// The server refused public-key authentication.
    #[error(
        "instance {instance_id} ({addr}): server refused public-key login as user '{user}' with \
         key {key_fingerprint} ({}); is this the key pair the instance was launched with?",
        key_path.display()
    )]
    AuthRejected {
        /// ECS instance id.
        instance_id: String,
        /// Address SSH connected to.
        addr: SocketAddr,
        /// Login user tried.
        user: String,
        /// Fingerprint of the client key offered.
        key_fingerprint: String,
        /// Path of the client key file.
        key_path: PathBuf,
    },
    /// One step did not finish within its timeout.
    #[error("instance {instance_id}: step '{step}' timed out after {after:.1?}")]
    Timeout {
        /// ECS instance id.
        instance_id: String,
        /// The step that timed out.
        step: &'static str,
        /// The step's timeout.
        after: Duration,
    },
    /// The SSH session failed in the middle of a step.
    #[error("instance {instance_id}: step '{step}': SSH session error: {reason}")]
    Session {
        /// ECS instance id.
        instance_id: String,
        /// The step that was running.
        step: &'static str,
        /// The session error.
        reason: String,
    },
}

impl SshError {
    /// The instance id the error is about, when it is about one.
    pub fn instance_id(&self) -> Option<&str> {
        match self {
            SshError::Key { .. } | SshError::KnownHosts { .. } => None,
            SshError::Unreachable { instance_id, .. }
            | SshError::HostKey { instance_id, .. }
            | SshError::AuthRejected { instance_id, .. }
            | SshError::Timeout { instance_id, .. }
            | SshError::Session { instance_id, .. } => Some(instance_id),
        }
    }
}
