//! The default scale plan, except that idle nodes are removed most expensive first.

use ecs_policy_sdk::{Node, Removal, ScalePlan, Snapshot, Template, defaults};

/// [`defaults::scale`], then for each template the nodes it removed for idling are swapped for
/// the same number of idle-expired nodes ranked by hourly price (most expensive first, unknown
/// prices last, then longest idle). The count, and so every limit, stays the default's.
pub fn scale(snapshot: &Snapshot) -> ScalePlan {
    let mut plan = defaults::scale(snapshot);
    for t in &snapshot.templates {
        let mut expired: Vec<&Node> = snapshot
            .nodes_of(&t.name)
            .filter(|n| idled_out(n, t))
            .collect();
        let chosen = plan
            .removals
            .iter()
            .filter(|r| expired.iter().any(|n| n.instance_id == r.instance_id))
            .count();
        if chosen == 0 {
            continue;
        }
        plan.removals
            .retain(|r| !expired.iter().any(|n| n.instance_id == r.instance_id));
        let price = |n: &Node| hourly_price(snapshot, n).unwrap_or(f64::NEG_INFINITY);
        expired.sort_by(|a, b| {
            price(b)
                .total_cmp(&price(a))
                .then(b.idle_ms.cmp(&a.idle_ms))
        });
        plan.removals
            .extend(expired.into_iter().take(chosen).map(|n| Removal {
                instance_id: n.instance_id.clone(),
                reason: match hourly_price(snapshot, n) {
                    Some(p) => format!("idle past idle-timeout {}s, {p:.3}/h", t.idle_timeout_secs),
                    None => format!(
                        "idle past idle-timeout {}s, price unknown",
                        t.idle_timeout_secs
                    ),
                },
            }));
    }
    plan
}

/// The removal candidates the default algorithm idles out.
fn idled_out(n: &Node, t: &Template) -> bool {
    t.idle_timeout_secs > 0
        && n.is_idle()
        && !n.used_up(t.max_uses)
        && n.idle_ms >= t.idle_timeout_secs.saturating_mul(1000)
}

/// What the node's offering costs per hour, if the snapshot knows.
fn hourly_price(snapshot: &Snapshot, n: &Node) -> Option<f64> {
    snapshot
        .offerings
        .iter()
        .find(|o| o.zone == n.zone && o.instance_type == n.instance_type && o.spot == n.spot)
        .and_then(|o| o.price_per_hour)
}
