//! The cost-aware policy's settings.

use serde::Deserialize;

/// What to do with offerings whose price is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unpriced {
    /// Use them after every priced offering of the same capacity type.
    Last,
    /// Never use them.
    Skip,
}

/// Settings (`[policy.settings]`), all optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// Seconds an offering is skipped after a capacity error (default 300).
    #[serde(default = "default_cooldown_secs")]
    pub cooldown_secs: u64,
    /// Never place on an offering whose hourly price per vCPU is above this.
    #[serde(default)]
    pub max_price_per_vcpu: Option<f64>,
    /// Offerings without a price: `last` (default) or `skip`.
    #[serde(default = "default_unpriced")]
    pub unpriced: Unpriced,
    /// At most this many live nodes of a template on one offering (zone x type x capacity
    /// type), so that one spot reclaim or stock-out cannot take the whole fleet.
    #[serde(default)]
    pub max_nodes_per_offering: Option<u32>,
    /// For `spot-first` templates, fall back to on-demand when spot capacity runs out
    /// (default true). `false` waits for spot instead of paying on-demand prices.
    #[serde(default = "yes")]
    pub on_demand_fallback: bool,
}

fn default_cooldown_secs() -> u64 {
    300
}
fn default_unpriced() -> Unpriced {
    Unpriced::Last
}
fn yes() -> bool {
    true
}

impl Default for Settings {
    fn default() -> Self {
        ecs_policy_sdk::settings::parse("{}").expect("defaults parse")
    }
}

impl Settings {
    /// Parse and check the settings JSON.
    pub fn parse(json: &str) -> Result<Self, String> {
        let s: Settings = ecs_policy_sdk::settings::parse(json)?;
        if let Some(max) = s.max_price_per_vcpu
            && !(max.is_finite() && max > 0.0)
        {
            return Err(format!(
                "setting `max-price-per-vcpu`: must be a positive number, got {max}"
            ));
        }
        if s.max_nodes_per_offering == Some(0) {
            return Err("setting `max-nodes-per-offering`: must be at least 1".into());
        }
        Ok(s)
    }
}
