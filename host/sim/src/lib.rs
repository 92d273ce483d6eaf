//! Emulators of ECS (with its STS), Jenkins and instance SSH: product features for `demo`, `sim` and the tests.
//!
//! Each speaks the real wire protocol on loopback, so the host under test cannot tell them from
//! the real services, and official clients (Alibaba's Python SDK, python-jenkins, OpenSSH) are
//! used to check their fidelity.
//!
//! **Owns** the emulated services and their faults. **Must not** be needed by the product's
//! code paths: the daemon talks to an emulator exactly as to the real service, through the
//! same clients.
#![warn(missing_docs)]

pub mod agent;
pub mod agent_host;
pub mod cloud_init;
pub mod cluster;
pub mod disks;
pub mod ecs;
pub mod jenkins;
pub mod metadata;
pub mod ssh;
pub mod sts;

use std::net::Ipv4Addr;

/// Milliseconds since the Unix epoch: the emulators' one clock (wall clock, so persisted
/// statuses keep ageing across restarts).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What the instance SSH emulator needs to know about one emulated ECS instance.
#[derive(Clone)]
pub struct EmulatedInstance {
    /// ECS instance id.
    pub instance_id: String,
    /// The instance's private IP: its own loopback address (127.x.y.z).
    pub ip: Ipv4Addr,
    /// Public key (OpenSSH one-line format) of the key pair the instance was launched with.
    pub authorized_key: String,
    /// Host private key (OpenSSH PEM) the instance's sshd presents. Its public half is printed
    /// in the instance's console output, as cloud-init does.
    pub host_key_pem: String,
    /// Whether the instance is in the `Running` state (sshd answers only then).
    pub running: bool,
    /// Ids of its data disks (DescribeDisks), in attachment order: each is a device file of
    /// the instance (see [`disks`]).
    pub data_disks: Vec<String>,
}

impl std::fmt::Debug for EmulatedInstance {
    // The host key is a secret: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatedInstance")
            .field("instance_id", &self.instance_id)
            .field("ip", &self.ip)
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

/// Lookup of emulated instances by private IP; the ECS emulator implements it and the SSH
/// emulator uses it to tell which instance a connection arrived for.
pub trait InstanceDirectory: Send + Sync + 'static {
    /// The instance with this private IP, if any.
    fn instance_by_ip(&self, ip: Ipv4Addr) -> Option<EmulatedInstance>;
}
