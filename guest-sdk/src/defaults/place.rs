//! Zone-spreading placement: the default `place`.

use std::collections::BTreeMap;

use super::capacity::{FreeIps, capacity_tiers, usable_offerings};
use crate::types::{Node, Offering, PlaceRequest, Placement};

/// Five minutes: how long an offering is avoided after a capacity error, by default.
pub const DEFAULT_COOLDOWN_MS: u64 = 5 * 60 * 1000;

/// Knobs for [`place`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlaceOptions {
    /// Skip an offering whose last capacity error is younger than this (milliseconds).
    pub cooldown_ms: u64,
}

impl Default for PlaceOptions {
    fn default() -> Self {
        PlaceOptions {
            cooldown_ms: DEFAULT_COOLDOWN_MS,
        }
    }
}

/// Spread `request.count` nodes over `offerings`.
///
/// Only offerings in stock, with free IPs in their vswitch, and without a capacity error in
/// the last `cooldown_ms` are used. The template's spot mode picks the capacity types: on-demand
/// only; spot first, then on-demand for what spot cannot hold; or spot only. Within a capacity
/// type, each node goes to the zone with the fewest nodes so far (the template's live `fleet`
/// plus what this call placed; ties by zone name), and within that zone to the cheapest
/// offering per vCPU (unknown prices last, then offering order) whose vswitch still has a free
/// IP. When capacity runs out, fewer nodes than asked are placed.
pub fn place(
    request: &PlaceRequest,
    offerings: &[Offering],
    fleet: &[Node],
    options: &PlaceOptions,
) -> Vec<Placement> {
    let usable = usable_offerings(offerings, request.now_ms, options.cooldown_ms);
    let mut ips = FreeIps::new(offerings);
    let mut per_zone: BTreeMap<&str, u32> = BTreeMap::new();
    for node in fleet.iter().filter(|n| n.is_live()) {
        *per_zone.entry(node.zone.as_str()).or_default() += 1;
    }
    let mut placed: BTreeMap<u32, u32> = BTreeMap::new();
    let mut left = request.count;
    for &spot in capacity_tiers(request.template.spot) {
        let mut zones = zones_of(
            offerings,
            usable
                .iter()
                .copied()
                .filter(|&i| offerings[i].spot == spot),
        );
        while left > 0 {
            // The least-populated zone that still has an offering with a free IP.
            let next = zones
                .iter_mut()
                .filter_map(|z| {
                    z.open(&ips)
                        .map(|i| (per_zone.get(z.name).copied().unwrap_or(0), z.name, i))
                })
                .min_by_key(|&(count, name, _)| (count, name));
            let Some((_, zone, i)) = next else { break };
            ips.take(i, 1);
            *per_zone.entry(zone).or_default() += 1;
            *placed.entry(i as u32).or_default() += 1;
            left -= 1;
        }
    }
    placed
        .into_iter()
        .map(|(offering, count)| Placement { offering, count })
        .collect()
}

/// A zone's candidate offerings, cheapest first, and how far they are used up.
struct Zone<'a> {
    name: &'a str,
    candidates: Vec<usize>,
    next: usize,
}

impl Zone<'_> {
    /// The cheapest candidate whose vswitch still has an IP; skips exhausted ones for good.
    fn open(&mut self, ips: &FreeIps) -> Option<usize> {
        while let Some(&i) = self.candidates.get(self.next) {
            if ips.left(i) > 0 {
                return Some(i);
            }
            self.next += 1;
        }
        None
    }
}

/// Group offerings by zone, each zone's list ordered by price per vCPU then index.
fn zones_of(offerings: &[Offering], indices: impl Iterator<Item = usize>) -> Vec<Zone<'_>> {
    let mut by_zone: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for i in indices {
        by_zone
            .entry(offerings[i].zone.as_str())
            .or_default()
            .push(i);
    }
    by_zone
        .into_iter()
        .map(|(name, mut candidates)| {
            candidates.sort_by(|&a, &b| cheaper(&offerings[a], &offerings[b]).then(a.cmp(&b)));
            Zone {
                name,
                candidates,
                next: 0,
            }
        })
        .collect()
}

/// Order by price per vCPU, known prices first.
fn cheaper(a: &Offering, b: &Offering) -> std::cmp::Ordering {
    match (a.price_per_vcpu(), b.price_per_vcpu()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::*;
    use crate::testing::{place_violations, placed_per_offering, placed_per_zone, total_placed};
    use crate::types::{NodeState, SpotMode};

    const NOW: u64 = 1_700_000_000_000;

    fn run(mode: SpotMode, count: u32, offerings: &[Offering], fleet: &[Node]) -> Vec<Placement> {
        let req = place_request(NOW, TemplateBuilder::new("linux").spot(mode), count);
        let out = place(&req, offerings, fleet, &PlaceOptions::default());
        assert_eq!(
            place_violations(&req, offerings, &out),
            Vec::<String>::new()
        );
        out
    }

    fn zones(offerings: &[Offering], placements: &[Placement]) -> Vec<(String, u32)> {
        placed_per_zone(placements, offerings).into_iter().collect()
    }

    #[test]
    fn spreads_over_the_least_populated_zones() {
        let offerings: Vec<Offering> = ["a", "b", "c"]
            .iter()
            .map(|z| OfferingBuilder::new(z, &format!("vsw-{z}"), "ecs.c7.large").build())
            .collect();
        let fleet: Vec<Node> = [("i-1", "a"), ("i-2", "a"), ("i-3", "c")]
            .iter()
            .map(|(id, z)| NodeBuilder::online(id, "linux").zone(z).build())
            .chain([NodeBuilder::new("i-9", "linux", NodeState::Terminating)
                .zone("b")
                .build()])
            .collect();
        let out = run(SpotMode::OnDemand, 4, &offerings, &fleet);
        assert_eq!(
            zones(&offerings, &out),
            [("a".into(), 1), ("b".into(), 2), ("c".into(), 1)]
        );
    }

    #[test]
    fn skips_unusable_offerings_and_cools_down_after_failures() {
        let offerings = [
            OfferingBuilder::new("a", "vsw-a", "t")
                .out_of_stock()
                .build(),
            OfferingBuilder::new("b", "vsw-b", "t").free_ips(0).build(),
            OfferingBuilder::new("c", "vsw-c", "t")
                .failed("OperationDenied.NoStock", NOW - 60_000)
                .build(),
            OfferingBuilder::new("d", "vsw-d", "t")
                .failed("OperationDenied.NoStock", NOW - 301_000)
                .build(),
        ];
        let out = run(SpotMode::OnDemand, 2, &offerings, &[]);
        assert_eq!(placed_per_offering(&out), [(3, 2)].into());
    }

    #[test]
    fn cheapest_per_vcpu_within_a_zone_until_its_vswitch_is_full() {
        let offerings = [
            OfferingBuilder::new("a", "vsw-a", "ecs.c7.large")
                .vcpus(2)
                .price(0.2)
                .free_ips(3)
                .build(),
            OfferingBuilder::new("a", "vsw-a", "ecs.c7.xlarge")
                .vcpus(4)
                .price(0.3)
                .free_ips(3)
                .build(),
            OfferingBuilder::new("a", "vsw-a", "ecs.unpriced")
                .vcpus(4)
                .free_ips(3)
                .build(),
        ];
        let out = run(SpotMode::OnDemand, 5, &offerings, &[]);
        assert_eq!(
            out,
            [Placement {
                offering: 1,
                count: 3
            }],
            "3 IPs in the vswitch, fewer placed"
        );
    }

    #[test]
    fn honours_spot_mode_with_on_demand_fallback() {
        let offerings = [
            OfferingBuilder::new("a", "vsw-a", "t").build(),
            OfferingBuilder::new("a", "vsw-a2", "t")
                .spot(true)
                .free_ips(2)
                .build(),
            OfferingBuilder::new("b", "vsw-b", "t")
                .spot(true)
                .failed("NoStock", NOW)
                .build(),
        ];
        assert_eq!(
            run(SpotMode::OnDemand, 3, &offerings, &[]),
            [Placement {
                offering: 0,
                count: 3
            }]
        );
        let first = run(SpotMode::SpotFirst, 3, &offerings, &[]);
        assert_eq!(placed_per_offering(&first), [(0, 1), (1, 2)].into());
        let only = run(SpotMode::SpotOnly, 3, &offerings, &[]);
        assert_eq!(total_placed(&only), 2, "no on-demand fallback");
    }
}
