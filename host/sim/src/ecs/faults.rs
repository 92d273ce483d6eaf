//! Injected failures: stock-outs per zone × type, throttling (rate or probability), 5xx
//! errors, added latency. Set in the config, replaced at run time over `/_admin/faults` or
//! through [`EcsSim`](super::EcsSim).
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The active faults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// RunInstances answers `OperationDenied.NoStock` for matching launches.
    pub no_stock: Vec<NoStockRule>,
    /// Zones no longer selling instances: RunInstances answers `Zone.NotOnSale`.
    pub zones_not_on_sale: Vec<String>,
    /// Requests answered `Throttling`.
    pub throttle: Vec<ThrottleRule>,
    /// Probability (0..=1) of answering a 5xx (`ServiceUnavailable` / `InternalError`).
    pub server_error_probability: f64,
    /// Actions the 5xx probability applies to (empty: all).
    pub server_error_actions: Vec<String>,
    /// Added to every request, milliseconds.
    pub latency_ms: u64,
    /// DescribeInstances leaves out instances launched less than this long ago (milliseconds),
    /// whether it filters by tag or asks by id: the real read side lags behind RunInstances by
    /// seconds.
    pub listing_lag_ms: u64,
}

/// Out of stock for a zone and/or instance type (unset = any).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NoStockRule {
    /// Zone out of stock; any zone when unset.
    pub zone_id: Option<String>,
    /// Instance type out of stock; any type when unset.
    pub instance_type: Option<String>,
    /// Only spot launches are out of stock (on-demand still works).
    pub spot_only: bool,
}

/// Throttle an action (unset = all) above a rate, or with a probability.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleRule {
    /// Action to throttle; every action when unset.
    pub action: Option<String>,
    /// Requests allowed per one-second window; more are throttled.
    pub max_per_second: Option<u32>,
    /// Probability (0..=1) of throttling any matching request.
    pub probability: f64,
    /// Sent as `x-acs-retry-after` (milliseconds) when set.
    pub retry_after_ms: Option<u64>,
}

impl Faults {
    /// Checks the rules, e.g. that probabilities are within 0..=1.
    pub fn validate(&self) -> anyhow::Result<()> {
        let p_ok = |p: f64| (0.0..=1.0).contains(&p);
        if !p_ok(self.server_error_probability) {
            anyhow::bail!(
                "faults.server_error_probability {} must be within 0..=1",
                self.server_error_probability
            );
        }
        for (i, t) in self.throttle.iter().enumerate() {
            if !p_ok(t.probability) {
                anyhow::bail!(
                    "faults.throttle[{i}].probability {} must be within 0..=1",
                    t.probability
                );
            }
        }
        Ok(())
    }

    /// Whether a launch of `instance_type` in `zone_id` is out of stock by injection.
    pub fn no_stock(&self, zone_id: &str, instance_type: &str, spot: bool) -> bool {
        self.no_stock.iter().any(|r| {
            r.zone_id.as_deref().is_none_or(|z| z == zone_id)
                && r.instance_type
                    .as_deref()
                    .is_none_or(|t| t == instance_type)
                && (spot || !r.spot_only)
        })
    }
}

/// Per-action one-second windows for the rate limits.
#[derive(Debug, Default)]
pub(crate) struct RateWindows(HashMap<(usize, String), (u64, u32)>);

impl RateWindows {
    /// Decides whether this request is throttled; returns the retry-after hint if so.
    pub(crate) fn throttle(
        &mut self,
        faults: &Faults,
        action: &str,
        now_ms: u64,
    ) -> Option<Option<u64>> {
        for (i, rule) in faults.throttle.iter().enumerate() {
            if rule.action.as_deref().is_some_and(|a| a != action) {
                continue;
            }
            if rule.probability > 0.0 && rand::random::<f64>() < rule.probability {
                return Some(rule.retry_after_ms);
            }
            if let Some(max) = rule.max_per_second {
                let second = now_ms / 1000;
                let w = self.0.entry((i, action.to_string())).or_insert((second, 0));
                if w.0 != second {
                    *w = (second, 0);
                }
                w.1 += 1;
                if w.1 > max {
                    return Some(rule.retry_after_ms);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_stock_matching() {
        let f = Faults {
            no_stock: vec![NoStockRule {
                zone_id: Some("z1".into()),
                instance_type: None,
                spot_only: true,
            }],
            ..Default::default()
        };
        assert!(f.no_stock("z1", "t", true));
        assert!(!f.no_stock("z1", "t", false));
        assert!(!f.no_stock("z2", "t", true));
    }

    #[test]
    fn rate_limit_per_second() {
        let f = Faults {
            throttle: vec![ThrottleRule {
                action: Some("A".into()),
                max_per_second: Some(2),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut w = RateWindows::default();
        assert!(w.throttle(&f, "A", 1000).is_none());
        assert!(w.throttle(&f, "A", 1500).is_none());
        assert!(w.throttle(&f, "A", 1900).is_some());
        assert!(w.throttle(&f, "B", 1900).is_none());
        assert!(w.throttle(&f, "A", 2000).is_none());
    }
}
