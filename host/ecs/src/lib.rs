//! Signed Alibaba Cloud ECS/VPC client.
//!
//! **Owns** the ECS wire protocol: signing, credentials, typed actions, error classes and
//! retries. **Must not** know about Jenkins, templates or policies: callers pass plain
//! requests and get plain answers.
//!
//! - [`signer`]: RPC signature 1.0 (HMAC-SHA1), shared with the emulator.
//! - [`credentials`]: the official SDKs' credentials chain, secrets redacted.
//! - [`EcsClient`]: signs, sends (reqwest + rustls), classifies ([`EcsError`]) and retries
//!   ([`RetryPolicy`]); per-action counters via [`EcsClient::stats`].
//! - [`actions`]: typed actions (RunInstances, DescribeInstances, ...), as client methods.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use ecsp_ecs::{ClientConfig, EcsClient, InstanceFilter, Tag, credentials};
//! let chain = credentials::DefaultChain::new(None, credentials::ChainOptions::default());
//! let client = EcsClient::new(ClientConfig::new("cn-hangzhou"), Arc::new(chain))?;
//! let mine = client
//!     .describe_instances(&InstanceFilter { tags: vec![Tag::new("ecsp:controller", "c1")], ..Default::default() })
//!     .await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod actions;
pub mod client;
pub mod credentials;
pub mod error;
pub mod retry;
pub mod signer;
pub mod stats;

pub use actions::*;
pub use client::{Api, ClientBuildError, ClientConfig, EcsClient, HttpMethod};
pub use error::{CapacityDetail, EcsError, ErrorKind};
pub use retry::RetryPolicy;
pub use stats::ActionStats;
