//! Which offerings can take a node right now, and how many.

use std::collections::BTreeMap;

use crate::types::{Offering, SpotMode};

/// Indices of the offerings that are in stock, have a free IP, and had no capacity error
/// within `cooldown_ms` before `now_ms`.
pub fn usable_offerings(offerings: &[Offering], now_ms: u64, cooldown_ms: u64) -> Vec<usize> {
    (0..offerings.len())
        .filter(|&i| offerings[i].is_usable(now_ms, cooldown_ms))
        .collect()
}

/// The capacity types to try, in order, for a template's spot mode: `[false]` (on-demand
/// only), `[true, false]` (spot first, then on-demand) or `[true]` (spot only), where `true`
/// means spot offerings.
pub fn capacity_tiers(mode: SpotMode) -> &'static [bool] {
    match mode {
        SpotMode::OnDemand => &[false],
        SpotMode::SpotFirst => &[true, false],
        SpotMode::SpotOnly => &[true],
    }
}

/// Free private IPs left per vswitch while placing.
///
/// Several offerings (instance types, spot and on-demand) share one vswitch, so the IPs are
/// counted per vswitch, not per offering; when offerings disagree the smallest count wins.
#[derive(Debug, Clone)]
pub struct FreeIps {
    left: BTreeMap<String, u32>,
}

impl FreeIps {
    /// Start from what the offerings report.
    pub fn new(offerings: &[Offering]) -> Self {
        let mut left = BTreeMap::new();
        for o in offerings {
            left.entry(o.vswitch.clone())
                .and_modify(|n: &mut u32| *n = (*n).min(o.free_ips))
                .or_insert(o.free_ips);
        }
        FreeIps { left }
    }

    /// IPs left in the offering's vswitch.
    pub fn left(&self, offering: &Offering) -> u32 {
        self.left.get(&offering.vswitch).copied().unwrap_or(0)
    }

    /// Take `n` IPs from the offering's vswitch; returns how many were actually available.
    pub fn take(&mut self, offering: &Offering, n: u32) -> u32 {
        let slot = self.left.entry(offering.vswitch.clone()).or_insert(0);
        let taken = n.min(*slot);
        *slot -= taken;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::OfferingBuilder;

    #[test]
    fn ips_are_shared_per_vswitch() {
        let offerings = [
            OfferingBuilder::new("z", "vsw-1", "a").free_ips(3).build(),
            OfferingBuilder::new("z", "vsw-1", "b").free_ips(5).build(),
        ];
        let mut ips = FreeIps::new(&offerings);
        assert_eq!(ips.take(&offerings[1], 2), 2);
        assert_eq!(ips.left(&offerings[0]), 1);
        assert_eq!(ips.take(&offerings[0], 4), 1);
    }
}
