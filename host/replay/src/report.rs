//! What a replay measured for one policy, and how it is shown: a side-by-side table and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use ecsp_config::Config;

use super::world::{BuildOutcome, Calls, InstanceLife};

/// Queue-wait percentiles, ms (nearest rank).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Waits {
    /// Builds counted.
    pub builds: u64,
    /// Median.
    pub p50_ms: u64,
    /// 95th percentile.
    pub p95_ms: u64,
    /// 99th percentile.
    pub p99_ms: u64,
    /// Longest.
    pub max_ms: u64,
}

impl Waits {
    /// Percentiles of these waits (sorted in place).
    pub fn of(waits: &mut [u64]) -> Waits {
        waits.sort_unstable();
        let rank = |p: f64| -> u64 {
            if waits.is_empty() {
                return 0;
            }
            let i = ((p * waits.len() as f64).ceil() as usize).clamp(1, waits.len()) - 1;
            waits[i]
        };
        Waits { builds: waits.len() as u64, p50_ms: rank(0.50), p95_ms: rank(0.95), p99_ms: rank(0.99), max_ms: waits.last().copied().unwrap_or(0) }
    }
}

/// Node-hours or cost, split by capacity type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Split {
    /// Spot.
    pub spot: f64,
    /// On-demand.
    pub on_demand: f64,
    /// Both.
    pub total: f64,
}

/// One policy's replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PolicyReport {
    /// The policy's name (file name or `builtin:default`).
    pub policy: String,
    /// Builds in the trace.
    pub builds: u64,
    /// Builds that never started by the end of the replay (their wait runs to the end).
    pub never_started: u64,
    /// Builds no template can serve (they wait in Jenkins forever; not in the waits).
    pub unservable: u64,
    /// Builds whose spot instance was reclaimed under them.
    pub interrupted: u64,
    /// Queue waits of every servable build.
    pub wait: Waits,
    /// Queue waits per label expression (`(none)` for unlabelled builds).
    pub wait_by_label: BTreeMap<String, Waits>,
    /// Builds that waited longer than `slow_after_ms` (or never started).
    pub waited_longer: u64,
    /// The threshold of `waited_longer`, ms.
    pub slow_after_ms: u64,
    /// Instance hours, from creation to deletion (or the end of the replay).
    pub node_hours: Split,
    /// What those hours cost at the configured prices.
    pub cost: Split,
    /// Instance types without a configured price (their hours cost 0 here).
    pub unpriced: Vec<String>,
    /// Instances launched, refused launches for lack of stock, removals, reclaims.
    pub calls: Calls,
    /// Most instances alive at once.
    pub peak_nodes: u64,
    /// Changes the host's invariants made to the policy's plans.
    pub clamps: u64,
    /// Cycles in which the policy failed.
    pub policy_errors: u64,
    /// The first failure: simulated time (RFC 3339) and the error.
    pub first_policy_error: Option<String>,
    /// Cycles the engine ran.
    pub cycles: u64,
    /// Simulated time from the trace's start to the last cycle, ms.
    pub simulated_ms: u64,
}

/// Computes the per-build and per-instance figures at the end of a replay.
pub fn summarize(
    report: &mut PolicyReport,
    builds: &[BuildOutcome],
    lives: &[InstanceLife],
    config: &Config,
    start_ms: u64,
    end_ms: u64,
) {
    let mut all = Vec::with_capacity(builds.len());
    let mut by_label: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    report.builds = builds.len() as u64;
    for b in builds {
        if b.template.is_none() {
            report.unservable += 1;
            continue;
        }
        let wait = b.started_ms.unwrap_or(end_ms).saturating_sub(b.arrived_ms);
        report.never_started += u64::from(b.started_ms.is_none());
        report.interrupted += u64::from(b.interrupted);
        report.waited_longer += u64::from(b.started_ms.is_none() || wait > report.slow_after_ms);
        all.push(wait);
        by_label.entry(b.label.clone().unwrap_or_else(|| "(none)".into())).or_default().push(wait);
    }
    report.wait = Waits::of(&mut all);
    report.wait_by_label = by_label.into_iter().map(|(l, mut w)| (l, Waits::of(&mut w))).collect();
    let (hours, cost, unpriced) = usage(lives, config, end_ms);
    report.node_hours = hours;
    report.cost = cost;
    report.unpriced = unpriced;
    report.simulated_ms = end_ms - start_ms;
}

/// Node-hours and cost of these lives up to `at_ms`, and the types without a price.
pub fn usage<'a>(
    lives: impl IntoIterator<Item = &'a InstanceLife>,
    config: &Config,
    at_ms: u64,
) -> (Split, Split, Vec<String>) {
    let (mut hours, mut cost) = (Split::default(), Split::default());
    let mut unpriced = Vec::new();
    for l in lives.into_iter().filter(|l| l.created_ms < at_ms) {
        let h = l.billed_hours(at_ms);
        let prices = if l.spot { &config.cloud.spot_prices } else { &config.cloud.prices };
        let price = prices.get(&l.instance_type).copied();
        if price.is_none() && !unpriced.contains(&l.instance_type) {
            unpriced.push(l.instance_type.clone());
        }
        let c = h * price.unwrap_or(0.0);
        let (hs, cs) = if l.spot { (&mut hours.spot, &mut cost.spot) } else { (&mut hours.on_demand, &mut cost.on_demand) };
        *hs += h;
        *cs += c;
    }
    let round = |s: Split, scale: f64| {
        let r = |x: f64| (x * scale).round() / scale;
        Split { spot: r(s.spot), on_demand: r(s.on_demand), total: r(s.spot + s.on_demand) }
    };
    unpriced.sort();
    (round(hours, 1000.0), round(cost, 100.0), unpriced)
}

fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// The side-by-side table of several policies' replays.
pub fn table(reports: &[PolicyReport]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, f: &dyn Fn(&PolicyReport) -> String| rows.push((name.to_owned(), reports.iter().map(f).collect()));
    row("policy", &|r| r.policy.clone());
    row("builds (never started)", &|r| format!("{} ({})", r.builds - r.unservable, r.never_started));
    row("queue wait p50", &|r| duration(r.wait.p50_ms));
    row("queue wait p95", &|r| duration(r.wait.p95_ms));
    row("queue wait p99", &|r| duration(r.wait.p99_ms));
    row("queue wait max", &|r| duration(r.wait.max_ms));
    row("waited longer than", &|r| format!("{} > {}", r.waited_longer, duration(r.slow_after_ms)));
    row("node-hours spot/on-demand", &|r| format!("{:.1} / {:.1}", r.node_hours.spot, r.node_hours.on_demand));
    row("cost spot/on-demand", &|r| format!("{:.2} / {:.2}", r.cost.spot, r.cost.on_demand));
    row("cost total", &|r| format!("{:.2}", r.cost.total));
    row("launches", &|r| r.calls.launched.to_string());
    row("removals", &|r| r.calls.removed.to_string());
    row("stock-out hits", &|r| r.calls.stockout_hits.to_string());
    row("reclaimed (builds hit)", &|r| format!("{} ({})", r.calls.reclaimed, r.interrupted));
    row("peak nodes", &|r| r.peak_nodes.to_string());
    row("clamps", &|r| r.clamps.to_string());
    row("policy errors", &|r| r.policy_errors.to_string());
    let labels: std::collections::BTreeSet<&String> = reports.iter().flat_map(|r| r.wait_by_label.keys()).collect();
    for l in labels {
        row(&format!("p95 wait [{l}]"), &|r| r.wait_by_label.get(l).map_or("-".into(), |w| duration(w.p95_ms)));
    }
    let first = rows.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..reports.len()).map(|i| rows.iter().map(|(_, v)| v[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (name, values) in &rows {
        let _ = write!(out, "{name:<first$}");
        for (v, w) in values.iter().zip(&widths) {
            let _ = write!(out, "  {v:>w$}");
        }
        out.push('\n');
    }
    for r in reports.iter().filter(|r| !r.unpriced.is_empty()) {
        let _ = writeln!(out, "note: {}: no price configured for {} ([cloud] prices / spot-prices); counted as 0", r.policy, r.unpriced.join(", "));
    }
    for r in reports {
        if let Some(e) = &r.first_policy_error {
            let _ = writeln!(out, "note: {} failed {} time(s); first at {e}", r.policy, r.policy_errors);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut w: Vec<u64> = (1..=100).collect();
        let p = Waits::of(&mut w);
        assert_eq!((p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms, p.builds), (50, 95, 99, 100, 100));
        assert_eq!(Waits::of(&mut []), Waits::default());
        assert_eq!(Waits::of(&mut [7]).p99_ms, 7);
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(950), "950ms");
        assert_eq!(duration(45_500), "45.5s");
        assert_eq!(duration(125_000), "2m05s");
        assert_eq!(duration(3_900_000), "1h05m");
    }
}
