//! The default ecs-provisioner policy: the SDK's [`defaults`] with one setting.
//!
//! Settings (`[policy.settings]`, all optional):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `cooldown-secs` | 300 | seconds an offering is skipped after a capacity error |
//!
//! - `scale`: [`defaults::scale`] — launch for queued builds not covered by idle executors or
//!   capacity in flight, keep `min-nodes`, remove nodes idle past their timeout (beyond the
//!   minimum, longest idle first) and idle nodes that reached `max-uses`.
//! - `place`: [`defaults::place`] — zones with the fewest nodes first, cheapest per vCPU within
//!   a zone, the template's spot mode with on-demand fallback for `spot-first`.

#![warn(missing_docs)]

use ecs_policy_sdk::{
    Node, Offering, PlaceRequest, Placement, Policy, ScalePlan, Snapshot, SnapshotParts, defaults,
    export_policy, settings,
};
use serde::Deserialize;

/// The policy's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// Seconds an offering is skipped after a capacity error.
    #[serde(default = "default_cooldown_secs")]
    pub cooldown_secs: u64,
}

fn default_cooldown_secs() -> u64 {
    defaults::DEFAULT_COOLDOWN_MS / 1000
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cooldown_secs: default_cooldown_secs(),
        }
    }
}

/// The default policy.
#[derive(Debug, Default)]
pub struct DefaultPolicy {
    settings: Settings,
}

impl Policy for DefaultPolicy {
    fn configure(&mut self, json: &str) -> Result<(), String> {
        self.settings = settings::parse(json)?;
        Ok(())
    }

    /// The default scale counts nodes and queued builds; it needs no queued items or offerings.
    fn reads(&self) -> SnapshotParts {
        SnapshotParts::NODES
    }

    fn scale(&self, snapshot: &Snapshot) -> Result<ScalePlan, String> {
        Ok(defaults::scale(snapshot))
    }

    fn place(
        &self,
        request: &PlaceRequest,
        offerings: &[Offering],
        fleet: &[Node],
    ) -> Result<Vec<Placement>, String> {
        let options = defaults::PlaceOptions {
            cooldown_ms: self.settings.cooldown_secs.saturating_mul(1000),
        };
        Ok(defaults::place(request, offerings, fleet, &options))
    }
}

export_policy!(DefaultPolicy);
