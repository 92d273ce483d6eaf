//! Decide: ask the policy, and fall back or hold when it fails.
//!
//! The policy sees an `Observation` and answers with a `Plan` (scale) or placements (place).
//! A failing policy (trap, timeout, memory cap, nonsense) never stops the cycle: per
//! `[policy] on-error` the built-in default decides instead, or the cycle does nothing.

use std::time::{Duration, Instant};

use crate::config::{OnPolicyError, TemplateConfig};

use super::model::{Node, Offering, Plan};
use super::ports::TemplateQueue;

/// Everything `scale` looks at.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub now_ms: u64,
    pub templates: &'a [TemplateConfig],
    pub queues: &'a [TemplateQueue],
    pub unmatched: u32,
    pub nodes: &'a [Node],
    pub offerings: &'a [Offering],
    pub max_total_nodes: u32,
}

/// One placement: index into the offerings passed to `place`, and a count.
pub type Placement = (usize, u32);

/// A loaded policy. Calls are synchronous and bounded by the runtime's time budget.
pub trait PolicyPort: Send + Sync + 'static {
    /// Name for logs and metrics (the file name or `builtin:default`).
    fn name(&self) -> &str;
    fn scale(&self, observation: &Observation<'_>) -> anyhow::Result<Plan>;
    fn place(
        &self,
        now_ms: u64,
        template: &TemplateConfig,
        count: u32,
        offerings: &[&Offering],
        fleet: &[&Node],
    ) -> anyhow::Result<Vec<Placement>>;
}

/// Which policy produced a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecidedBy {
    Policy,
    Fallback,
    /// The policy failed and `on-error = "hold"`: nothing was decided.
    Hold,
}

/// A decision and how it was made.
#[derive(Debug)]
pub struct Decision<T> {
    pub value: T,
    pub by: DecidedBy,
    /// The policy's error, when it failed.
    pub error: Option<String>,
    /// Time spent in the policy (and the fallback, if it ran).
    pub elapsed: Duration,
}

/// The configured policy, its fallback, and what to do on error.
pub struct Decider<P: PolicyPort, F: PolicyPort> {
    pub policy: P,
    pub fallback: F,
    pub on_error: OnPolicyError,
}

impl<P: PolicyPort, F: PolicyPort> Decider<P, F> {
    pub fn scale(&self, obs: &Observation<'_>) -> Decision<Plan> {
        self.decide(|p| p.scale(obs), |f| f.scale(obs), Plan::default())
    }

    pub fn place(
        &self,
        now_ms: u64,
        template: &TemplateConfig,
        count: u32,
        offerings: &[&Offering],
        fleet: &[&Node],
    ) -> Decision<Vec<Placement>> {
        let check = |placements: Vec<Placement>| -> anyhow::Result<Vec<Placement>> {
            // Validated here rather than trusted: a placement outside the offered list or
            // over the asked count is nonsense, whichever policy produced it.
            let total: u64 = placements.iter().map(|(_, c)| u64::from(*c)).sum();
            if let Some((i, _)) = placements.iter().find(|(i, _)| *i >= offerings.len()) {
                anyhow::bail!("place returned offering index {i}, but only {} offerings were given", offerings.len());
            }
            if total > u64::from(count) {
                anyhow::bail!("place returned {total} nodes for a request of {count}");
            }
            Ok(placements)
        };
        self.decide(
            |p| p.place(now_ms, template, count, offerings, fleet).and_then(check),
            |f| f.place(now_ms, template, count, offerings, fleet).and_then(check),
            Vec::new(),
        )
    }

    fn decide<T>(
        &self,
        primary: impl FnOnce(&P) -> anyhow::Result<T>,
        fallback: impl FnOnce(&F) -> anyhow::Result<T>,
        nothing: T,
    ) -> Decision<T> {
        let start = Instant::now();
        match primary(&self.policy) {
            Ok(value) => Decision { value, by: DecidedBy::Policy, error: None, elapsed: start.elapsed() },
            Err(e) => {
                let error = format!("{e:#}");
                tracing::warn!(policy = self.policy.name(), error = %error, on_error = ?self.on_error, "policy failed");
                match self.on_error {
                    OnPolicyError::Hold => Decision { value: nothing, by: DecidedBy::Hold, error: Some(error), elapsed: start.elapsed() },
                    OnPolicyError::Fallback => match fallback(&self.fallback) {
                        Ok(value) => Decision { value, by: DecidedBy::Fallback, error: Some(error), elapsed: start.elapsed() },
                        Err(e2) => {
                            tracing::error!(policy = self.fallback.name(), error = %format!("{e2:#}"), "fallback policy failed too; holding");
                            Decision {
                                value: nothing,
                                by: DecidedBy::Hold,
                                error: Some(format!("{error}; fallback: {e2:#}")),
                                elapsed: start.elapsed(),
                            }
                        }
                    },
                }
            }
        }
    }
}
