//! SSH bootstrap of instances into Jenkins agents.
//!
//! **Owns** the SSH session to an instance and what runs in it. **Must not** call ECS or
//! Jenkins itself: what it needs from them (console output, agent.jar, the secret) is handed
//! in.
//!
//!
//! - [`keys`]: the launch key (ed25519/ECDSA/RSA, optionally encrypted) and key helpers;
//! - [`host_keys`]: host-key policies (`accept-new`, `strict`, `off`) and the known-hosts store;
//! - [`console`]: the host-key block of the console output that `strict` trusts;
//! - [`client`]: russh client with retries, keepalives and per-step timeouts;
//! - [`mod@bootstrap`]: init script once, secret file, detached agent start;
//! - [`template`]: `{placeholder}` rendering and shell quoting.
// Errors carry the instance, address, step and both fingerprints so a log line explains itself;
// they occur once per failed bootstrap, so their size does not matter, and flat variants keep
// matching on them simple.
#![allow(clippy::result_large_err)]

#![warn(missing_docs)]

pub mod bootstrap;
pub mod client;
pub mod console;
pub mod error;
pub mod host_keys;
pub mod keys;
pub mod template;

pub use bootstrap::{
    AgentStart, BootstrapError, BootstrapReport, BootstrapSpec, InitScriptOutcome, JarDelivery,
    JarUpload, bootstrap, check_templates,
};
pub use client::{SshClientConfig, SshSession, SshTarget, connect};
pub use console::{ConsoleOutputSource, console_host_keys_block, parse_console_host_keys};
pub use error::{HostKeyRejection, SshError};
pub use host_keys::{HostKeyPolicy, HostKeyVerifier, KnownHosts};
pub use keys::{ClientKey, PassphraseSource};
