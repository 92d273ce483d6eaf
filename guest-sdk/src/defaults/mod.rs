//! The built-in algorithms: what the [`Policy`](crate::Policy) defaults and the `default`
//! policy do. Public so that a policy can call them and adjust the result.
//!
//! - [`scale`] / [`scale_with`]: demand-driven scaling (launch for queued builds not covered by
//!   idle executors or capacity in flight, keep the minimum, remove idle and used-up nodes).
//! - [`place`]: spread nodes across zones, cheapest per vCPU within a zone, honouring the
//!   template's spot mode and skipping offerings that failed recently.
//! - [`FreeIps`], [`capacity_tiers`], [`usable_offerings`]: building blocks for your own `place`.

mod capacity;
mod fmt;
mod place;
mod scale;

pub use capacity::{FreeIps, capacity_tiers, usable_offerings};
pub use place::{DEFAULT_COOLDOWN_MS, PlaceOptions, place};
pub use scale::{ScaleOptions, scale, scale_with};
