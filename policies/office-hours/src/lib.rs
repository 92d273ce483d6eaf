//! An office-hours ecs-provisioner policy: a warm pool only inside configured time windows.
//!
//! Inside a window each template keeps at least that window's `warm-nodes` (or its own
//! `min-nodes`, whichever is larger), so builds start at once while people work. Outside every
//! window only `min-nodes` holds, and idle nodes run out their idle timeout as usual. Demand is
//! always served as by the default policy. Time comes only from the snapshot's `now-ms`.
//!
//! Settings (`[policy.settings]`):
//!
//! ```json
//! {
//!   "timezone-offset-minutes": 480,
//!   "warm-up-minutes": 15,
//!   "windows": [
//!     {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "19:00",
//!      "warm-nodes": {"linux": 2}},
//!     {"days": ["fri"], "start": "22:00", "end": "02:00", "warm-nodes": {"linux": 1}}
//!   ]
//! }
//! ```
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `timezone-offset-minutes` | 0 | minutes east of UTC of the windows' clock (-720..=840) |
//! | `warm-up-minutes` | 0 | open each window's warm pool this much early |
//! | `cooldown-secs` | 300 | seconds an offering is skipped after a capacity error |
//! | `windows[].days` | every day | `mon` .. `sun` |
//! | `windows[].start`, `.end` | required | `HH:MM` local; `end` before `start` spans midnight |
//! | `windows[].warm-nodes` | required | template name -> nodes to keep while open |
//!
//! Overlapping windows take the largest warm pool per template.

#![warn(missing_docs)]

mod clock;
mod schedule;

use ecs_policy_sdk::defaults::{self, PlaceOptions, ScaleOptions};
use ecs_policy_sdk::{
    Node, Offering, PlaceRequest, Placement, Policy, ScalePlan, Snapshot, export_policy, log,
};

pub use clock::{Day, Local, TimeOfDay};
pub use schedule::{Settings, Window};

/// The office-hours policy.
#[derive(Debug, Default)]
pub struct OfficeHours {
    settings: Settings,
}

impl Policy for OfficeHours {
    fn configure(&mut self, json: &str) -> Result<(), String> {
        self.settings = Settings::parse(json)?;
        Ok(())
    }

    fn scale(&self, snapshot: &Snapshot) -> Result<ScalePlan, String> {
        let warm_nodes = self.settings.warm_nodes(snapshot.now_ms);
        for name in warm_nodes.keys().filter(|n| snapshot.template(n).is_none()) {
            log::warn(format!("warm-nodes names unknown template `{name}`"));
        }
        Ok(defaults::scale_with(snapshot, &ScaleOptions { warm_nodes }))
    }

    fn place(
        &self,
        request: &PlaceRequest,
        offerings: &[Offering],
        fleet: &[Node],
    ) -> Result<Vec<Placement>, String> {
        let options = PlaceOptions {
            cooldown_ms: self.settings.cooldown_secs.saturating_mul(1000),
        };
        Ok(defaults::place(request, offerings, fleet, &options))
    }
}

export_policy!(OfficeHours);
