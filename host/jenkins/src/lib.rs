//! Jenkins HTTP client, demand detection and node registration.
//!
//! **Owns** what Jenkins' REST API says and accepts. **Must not** know about ECS or decide
//! anything: it reports nodes and demand, and carries out node changes it is asked for.
//!
//!
//! - [`client`]: authenticated REST calls (nodes, secrets, queue, computers, labels);
//! - [`label`]: label-expression parser and evaluator with Jenkins' grammar;
//! - [`why`] + [`demand`]: which template each queued build needs;
//! - [`agent_jar`]: the controller's agent.jar, cached by content hash, for delivery to instances;
//! - [`anchor`]: one offline anchor node per template so Jenkins keeps naming labels;
//! - [`activity`]: idle-since and build counts per node, which the API does not export;
//! - [`node_builds`]: the builds Jenkins records per node (`rssAll`), for `max-uses`.
#![warn(missing_docs)]

pub mod activity;
pub mod agent_jar;
pub mod anchor;
pub mod client;
pub mod demand;
pub mod error;
pub mod label;
pub mod model;
pub mod node_builds;
pub mod why;

pub use activity::{ActivityTracker, NodeActivity};
pub use agent_jar::{AgentJar, AgentJarCache};
pub use anchor::{AnchorReport, ensure_anchors};
pub use client::{
    Changed, Credentials, InboundAgentSpec, JenkinsClient, NodeMode, Secret, Timeouts, describe_instance,
};
pub use demand::{Demand, QueuedItem, TemplateDemand, TemplateLabels, UnmatchedItem, anchor_name, compute_demand};
pub use error::JenkinsError;
pub use label::LabelExpr;
pub use model::{Computer, QueueItem};
