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

/// Free private IPs left per vswitch while placing, addressed by offering index.
///
/// Several offerings (instance types, spot and on-demand) share one vswitch, so the IPs are
/// counted per vswitch, not per offering; when offerings disagree the smallest count wins.
#[derive(Debug, Clone)]
pub struct FreeIps {
    /// Offering index -> vswitch slot.
    slot: Vec<usize>,
    /// Vswitch slot -> IPs left.
    left: Vec<u32>,
}

impl FreeIps {
    /// Start from what the offerings report.
    pub fn new(offerings: &[Offering]) -> Self {
        let mut slots: BTreeMap<&str, usize> = BTreeMap::new();
        let mut left: Vec<u32> = Vec::new();
        let slot = offerings
            .iter()
            .map(|o| {
                let s = *slots.entry(o.vswitch.as_str()).or_insert_with(|| {
                    left.push(o.free_ips);
                    left.len() - 1
                });
                left[s] = left[s].min(o.free_ips);
                s
            })
            .collect();
        FreeIps { slot, left }
    }

    /// IPs left in the vswitch of offering `index` (0 for an index out of range).
    pub fn left(&self, index: usize) -> u32 {
        self.slot.get(index).map_or(0, |&s| self.left[s])
    }

    /// Take up to `n` IPs from the vswitch of offering `index`; returns how many it got.
    pub fn take(&mut self, index: usize, n: u32) -> u32 {
        let Some(&s) = self.slot.get(index) else {
            return 0;
        };
        let taken = n.min(self.left[s]);
        self.left[s] -= taken;
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
        assert_eq!(ips.take(1, 2), 2);
        assert_eq!(ips.left(0), 1);
        assert_eq!(ips.take(0, 4), 1);
        assert_eq!((ips.left(0), ips.take(7, 1)), (0, 0));
    }
}
