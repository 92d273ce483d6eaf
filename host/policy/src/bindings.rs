//! Host bindings generated from `wit/policy.wit` (world `policy-module`), the newest contract,
//! and from each older contract the host still serves (`v0_1`).
//!
//! The newest generated records and enums are the host's own snapshot and plan types: the
//! engine builds a [`Snapshot`] and receives a [`ScalePlan`], with no parallel copy to keep in
//! sync. They derive serde (for `plan --json` and fixture reports), `Clone` and `PartialEq`;
//! `Debug` comes from the generator. Serde uses the Rust names (`min_nodes`, `OnDemand`).
//!
//! Older versions are generated side by side from their frozen WIT, the way Zed's extension
//! host keeps one module per extension API version; each converts the newest snapshot down to
//! its own shape and its answers up (see [`v0_1`]).

pub mod v0_1;

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "policy-module",
    additional_derives: [serde::Serialize, serde::Deserialize, Clone, PartialEq],
});

pub use self::ecs_provisioner::policy::host::{Level, SnapshotParts};
pub use exports::ecs_provisioner::policy::policy::{
    Demand, Failure, Launch, Node, NodeState, Offering, PlaceRequest, Placement, QueuedItem,
    Removal, ScalePlan, Snapshot, SpotMode, Template,
};

/// The contract package this host implements.
pub const CONTRACT_PACKAGE: &str = "ecs-provisioner:policy";
/// The newest contract version, the one the bindings above were generated from.
pub const CONTRACT_VERSION: &str = "0.2.0";
