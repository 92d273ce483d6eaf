//! Cheapest-first placement.

use ecs_policy_sdk::defaults::{FreeIps, capacity_tiers, usable_offerings};
use ecs_policy_sdk::{Node, Offering, PlaceRequest, Placement, SpotMode, log};

use crate::settings::{Settings, Unpriced};

/// Fill the cheapest offerings per vCPU first, spot before on-demand when the template allows
/// spot, within free IPs, the price ceiling and the per-offering cap. No zone spreading beyond
/// what `max-nodes-per-offering` forces: cost comes first.
pub fn place(
    s: &Settings,
    request: &PlaceRequest,
    offerings: &[Offering],
    fleet: &[Node],
) -> Vec<Placement> {
    let mut tiers = capacity_tiers(request.template.spot);
    if request.template.spot == SpotMode::SpotFirst && !s.on_demand_fallback {
        tiers = &[true];
    }
    let mut ips = FreeIps::new(offerings);
    let mut left = request.count;
    let mut out = Vec::new();
    let usable = usable_offerings(
        offerings,
        request.now_ms,
        s.cooldown_secs.saturating_mul(1000),
    );
    for &spot in tiers {
        let mut tier: Vec<usize> = usable
            .iter()
            .copied()
            .filter(|&i| offerings[i].spot == spot && affordable(s, &offerings[i]))
            .collect();
        // Known prices ascending, then unknown ones; offering order breaks ties.
        tier.sort_by(|&a, &b| {
            let key = |i: usize| offerings[i].price_per_vcpu().unwrap_or(f64::INFINITY);
            key(a).total_cmp(&key(b)).then(a.cmp(&b))
        });
        for i in tier {
            let o = &offerings[i];
            let room = s
                .max_nodes_per_offering
                .map_or(u32::MAX, |cap| cap.saturating_sub(on_offering(fleet, o)));
            let n = ips.take(i, left.min(room));
            if n > 0 {
                log::debug(format!(
                    "{n} x {} {} in {} at {}",
                    o.instance_type,
                    if o.spot { "spot" } else { "on-demand" },
                    o.zone,
                    o.price_per_vcpu()
                        .map_or("unknown price".into(), |p| format!("{p:.4}/vCPU/h")),
                ));
                out.push(Placement {
                    offering: i as u32,
                    count: n,
                });
                left -= n;
            }
            if left == 0 {
                return out;
            }
        }
    }
    out
}

fn affordable(s: &Settings, o: &Offering) -> bool {
    match (o.price_per_vcpu(), s.max_price_per_vcpu) {
        (None, _) => s.unpriced == Unpriced::Last,
        (Some(price), Some(max)) => price <= max,
        (Some(_), None) => true,
    }
}

/// Live nodes of the template already on this offering.
fn on_offering(fleet: &[Node], o: &Offering) -> u32 {
    fleet
        .iter()
        .filter(|n| {
            n.is_live()
                && n.zone == o.zone
                && n.instance_type == o.instance_type
                && n.spot == o.spot
        })
        .count() as u32
}
