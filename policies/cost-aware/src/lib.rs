//! A cost-aware ecs-provisioner policy: cheapest capacity per vCPU, spot first.
//!
//! Settings (`[policy.settings]`, all optional):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `cooldown-secs` | 300 | seconds an offering is skipped after a capacity error |
//! | `max-price-per-vcpu` | none | skip offerings priced above this per vCPU and hour |
//! | `unpriced` | `"last"` | offerings without a price: `"last"` or `"skip"` |
//! | `max-nodes-per-offering` | none | cap live nodes per zone x type x capacity type |
//! | `on-demand-fallback` | true | `spot-first` templates may fall back to on-demand |
//!
//! - `place`: fills the cheapest offerings per vCPU first; spot before on-demand whenever the
//!   template allows spot (`spot-first`, `spot-only`); on-demand templates stay on-demand.
//! - `scale`: the default decision, but idle nodes go most expensive first.

#![warn(missing_docs)]

mod place;
mod scale;
mod settings;

use ecs_policy_sdk::{
    Node, Offering, PlaceRequest, Placement, Policy, ScalePlan, Snapshot, export_policy,
};

pub use settings::{Settings, Unpriced};

/// The cost-aware policy.
#[derive(Debug, Default)]
pub struct CostAware {
    settings: Settings,
}

impl Policy for CostAware {
    fn configure(&mut self, json: &str) -> Result<(), String> {
        self.settings = Settings::parse(json)?;
        Ok(())
    }

    fn scale(&self, snapshot: &Snapshot) -> Result<ScalePlan, String> {
        Ok(scale::scale(snapshot))
    }

    fn place(
        &self,
        request: &PlaceRequest,
        offerings: &[Offering],
        fleet: &[Node],
    ) -> Result<Vec<Placement>, String> {
        Ok(place::place(&self.settings, request, offerings, fleet))
    }
}

export_policy!(CostAware);
