//! # ecs-policy-sdk
//!
//! Write placement and scaling policies for **ecs-provisioner** in Rust. A policy is a
//! WebAssembly component (target `wasm32-wasip2`) implementing the contract in
//! `wit/policy.wit` (`ecs-provisioner:policy@0.2.0`): `configure` takes the policy's settings,
//! `scale` decides launches and removals from a [`Snapshot`], and `place` turns a count of nodes
//! into [`Placement`]s on concrete offerings (zone x vswitch x instance type x spot).
//!
//! What this crate gives a policy author:
//! - [`Policy`]: the trait to implement; every method has a default, so you override only what
//!   you want to change.
//! - [`export_policy!`]: exports your type as the component's `policy` interface.
//! - [`defaults`]: the built-in algorithms, callable from your own code to adjust.
//! - [`settings::parse`]: typed settings with errors that name the bad key.
//! - [`log`]: log lines into the host's log (captured in native tests).
//! - [`builders`] and [`testing`]: build inputs and run your policy natively in `cargo test`,
//!   checked against the invariants the host enforces.
//!
//! ## A complete policy
//!
//! `Cargo.toml`: `crate-type = ["cdylib", "rlib"]`, dependencies `ecs-policy-sdk` and `serde`.
//!
//! ```
//! use ecs_policy_sdk::{Policy, PlaceRequest, Offering, Node, Placement, ScalePlan, Snapshot};
//! use ecs_policy_sdk::{defaults, export_policy, log, settings};
//! use serde::Deserialize;
//!
//! /// Never keeps more than `max-idle` idle nodes per template, otherwise the default.
//! #[derive(Default)]
//! pub struct CapIdle {
//!     settings: Settings,
//! }
//!
//! #[derive(Deserialize, Default)]
//! #[serde(rename_all = "kebab-case", deny_unknown_fields)]
//! struct Settings {
//!     #[serde(default)]
//!     max_idle: u32,
//! }
//!
//! impl Policy for CapIdle {
//!     fn configure(&mut self, json: &str) -> Result<(), String> {
//!         self.settings = settings::parse(json)?;
//!         Ok(())
//!     }
//!
//!     fn scale(&self, snapshot: &Snapshot) -> Result<ScalePlan, String> {
//!         let mut plan = defaults::scale(snapshot);
//!         for t in &snapshot.templates {
//!             let mut idle: Vec<&Node> = snapshot.nodes_of(&t.name).filter(|n| n.is_idle()).collect();
//!             idle.sort_by_key(|n| std::cmp::Reverse(n.idle_ms));
//!             let live = snapshot.nodes_of(&t.name).filter(|n| n.is_live()).count();
//!             let spare = live.saturating_sub(t.min_nodes as usize);
//!             let excess = idle.len().saturating_sub(self.settings.max_idle as usize).min(spare);
//!             for n in idle.into_iter().take(excess) {
//!                 if !plan.removes(&n.instance_id) {
//!                     log::debug(format!("{} is idle beyond max-idle", n.instance_id));
//!                     plan.removals.push(ecs_policy_sdk::Removal {
//!                         instance_id: n.instance_id.clone(),
//!                         reason: format!("more than {} idle", self.settings.max_idle),
//!                     });
//!                 }
//!             }
//!         }
//!         Ok(plan)
//!     }
//! }
//!
//! export_policy!(CapIdle);
//!
//! // Unit tests run natively: `cargo test -p my-policy`.
//! # fn main() {
//! use ecs_policy_sdk::builders::*;
//! use ecs_policy_sdk::testing;
//!
//! let snapshot = SnapshotBuilder::new(0)
//!     .template(TemplateBuilder::new("linux").min(1).max(10))
//!     .node(NodeBuilder::online("i-1", "linux").idle_ms(5_000))
//!     .node(NodeBuilder::online("i-2", "linux").idle_ms(9_000))
//!     .node(NodeBuilder::online("i-3", "linux").busy(1))
//!     .build();
//! let plan = testing::run_scale(CapIdle::default(), r#"{"max-idle": 1}"#, &snapshot);
//! assert_eq!(plan.removed_ids(), ["i-2"]);
//!
//! let err = testing::try_scale(CapIdle::default(), r#"{"max-idle": -1}"#, &snapshot).unwrap_err();
//! assert!(err.contains("max-idle"), "{err}");
//! # }
//! ```
//!
//! Build the component with `cargo build --target wasm32-wasip2 --profile wasm` and run the
//! host's fixture tests on it with `ecs-provisioner policy test <file.wasm> <fixtures...>`.

#![warn(missing_docs)]

#[allow(missing_docs)] // generated; the WIT's own comments document what matters
pub mod bindings;
pub mod builders;
pub mod defaults;
mod export;
pub mod log;
mod policy;
pub mod settings;
pub mod testing;
mod types;

pub use policy::Policy;
pub use types::*;

/// The contract version this SDK builds policies for (the WIT package version).
pub const CONTRACT_VERSION: &str = "0.2.0";

/// Used by [`export_policy!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::exports::ecs_provisioner::policy::policy::Guest;
    pub use crate::export::Slot;
}

#[cfg(test)]
mod tests {
    #[test]
    fn contract_version_matches_the_wit() {
        let wit = include_str!("../../wit/policy.wit");
        let package = format!(
            "package ecs-provisioner:policy@{};",
            super::CONTRACT_VERSION
        );
        assert!(
            wit.lines().any(|l| l == package),
            "wit/policy.wit does not declare {package}"
        );
    }
}
