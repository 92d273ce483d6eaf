//! Decide: ask the policy, and fall back or hold when it fails.
//!
//! The policy sees an `Observation` and answers with a `Plan` (scale) or placements (place).
//! A failing policy (trap, timeout, memory cap, nonsense) never stops the cycle: per
//! `[policy] on-error` the built-in default decides instead, or the cycle does nothing.

use std::time::{Duration, Instant};

use ecsp_config::{OnPolicyError, TemplateConfig};

use super::model::{Node, Offering, Plan};
use super::ports::TemplateQueue;

/// Everything `scale` looks at.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Host clock, ms since the Unix epoch.
    pub now_ms: u64,
    /// Configured templates, in configuration order.
    pub templates: &'a [TemplateConfig],
    /// Queued builds per template.
    pub queues: &'a [TemplateQueue],
    /// Queued builds no template can serve.
    pub unmatched: u32,
    /// Every node of this provisioner, in any state.
    pub nodes: &'a [Node],
    /// Every offering, across templates.
    pub offerings: &'a [Offering],
    /// Nodes allowed across all templates at once.
    pub max_total_nodes: u32,
}

/// One placement: index into the offerings passed to `place`, and a count.
pub type Placement = (usize, u32);

/// A loaded policy. Calls are synchronous and bounded by the runtime's time budget.
pub trait PolicyPort: Send + Sync + 'static {
    /// Name for logs and metrics (the file name or `builtin:default`).
    fn name(&self) -> &str;
    /// Decides what to launch and remove for this observation.
    fn scale(&self, observation: &Observation<'_>) -> anyhow::Result<Plan>;
    /// Chooses offerings for `count` new nodes of `template`: (index into `offerings`, node count) pairs.
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
    /// The configured policy decided.
    Policy,
    /// The configured policy failed and the fallback policy decided (`on-error = "fallback"`).
    Fallback,
    /// The policy failed and `on-error = "hold"`: nothing was decided.
    Hold,
}

impl DecidedBy {
    /// The name as serialized (`policy`, `fallback`, `hold`): a metric label, a journal field.
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Policy => "policy",
            DecidedBy::Fallback => "fallback",
            DecidedBy::Hold => "hold",
        }
    }
}

/// A decision and how it was made.
#[derive(Debug)]
pub struct Decision<T> {
    /// What was decided.
    pub value: T,
    /// Which policy decided it.
    pub by: DecidedBy,
    /// The policy's error, when it failed.
    pub error: Option<String>,
    /// Time spent in the policy (and the fallback, if it ran).
    pub elapsed: Duration,
}

/// The configured policy, its fallback, and what to do on error.
pub struct Decider<P: PolicyPort, F: PolicyPort> {
    /// The configured policy.
    pub policy: P,
    /// The policy used when `policy` fails and `on_error` says fallback.
    pub fallback: F,
    /// What to do when `policy` fails.
    pub on_error: OnPolicyError,
}

impl<P: PolicyPort, F: PolicyPort> Decider<P, F> {
    /// The scale decision: the policy's plan, else the fallback's, else (on hold, or when both fail) an empty plan.
    pub fn scale(&self, obs: &Observation<'_>) -> Decision<Plan> {
        self.decide(|p| p.scale(obs), |f| f.scale(obs), Plan::default())
    }

    /// The placement decision for `count` nodes, checked (indices within `offerings`, no more than `count` nodes); falls back like [`Decider::scale`].
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PlannedLaunch;

    #[test]
    fn decided_by_names_itself_as_it_serializes() {
        for by in [DecidedBy::Policy, DecidedBy::Fallback, DecidedBy::Hold] {
            assert_eq!(serde_json::to_value(by).unwrap(), by.as_str());
        }
    }

    /// A policy that answers from a closure.
    struct Fake(&'static str, fn() -> anyhow::Result<Plan>, fn(u32) -> anyhow::Result<Vec<Placement>>);

    impl PolicyPort for Fake {
        fn name(&self) -> &str {
            self.0
        }
        fn scale(&self, _: &Observation<'_>) -> anyhow::Result<Plan> {
            (self.1)()
        }
        fn place(&self, _: u64, _: &TemplateConfig, count: u32, _: &[&Offering], _: &[&Node]) -> anyhow::Result<Vec<Placement>> {
            (self.2)(count)
        }
    }

    fn one_launch() -> anyhow::Result<Plan> {
        Ok(Plan { launches: vec![PlannedLaunch { template: "t".into(), count: 1, reason: "r".into() }], removals: vec![] })
    }
    fn broken() -> anyhow::Result<Plan> {
        anyhow::bail!("policy trapped: unreachable")
    }
    fn all_on_first(count: u32) -> anyhow::Result<Vec<Placement>> {
        Ok(vec![(0, count)])
    }
    fn out_of_range(_: u32) -> anyhow::Result<Vec<Placement>> {
        Ok(vec![(7, 1)])
    }
    fn too_many(count: u32) -> anyhow::Result<Vec<Placement>> {
        Ok(vec![(0, count + 1)])
    }

    fn obs() -> Observation<'static> {
        Observation { now_ms: 0, templates: &[], queues: &[], unmatched: 0, nodes: &[], offerings: &[], max_total_nodes: 1 }
    }

    fn template() -> TemplateConfig {
        let text = "controller-id = \"c\"\n[cloud]\nregion = \"r\"\nvpc-id = \"v\"\nsecurity-group-id = \"s\"\nimage-id = \"m\"\nkey-pair-name = \"k\"\n[jenkins]\nurl = \"http://x/\"\nuser = \"u\"\n[[template]]\nname = \"t\"\nlabels = [\"l\"]\nmax-nodes = 3\n";
        ecsp_config::Config::parse(text).unwrap().templates.remove(0)
    }

    fn offering() -> Offering {
        Offering {
            zone: "z".into(),
            vswitch: "v".into(),
            instance_type: "t".into(),
            spot: false,
            vcpus: 2,
            memory_mib: 4096,
            free_ips: 10,
            price_per_hour: None,
            in_stock: true,
            last_failure: None,
        }
    }

    #[test]
    fn a_working_policy_decides() {
        let d = Decider { policy: Fake("p", one_launch, all_on_first), fallback: Fake("f", broken, all_on_first), on_error: OnPolicyError::Fallback };
        let out = d.scale(&obs());
        assert_eq!((out.by, out.error, out.value.launches.len()), (DecidedBy::Policy, None, 1));
    }

    #[test]
    fn a_failing_policy_falls_back_or_holds() {
        let d = Decider { policy: Fake("p", broken, all_on_first), fallback: Fake("f", one_launch, all_on_first), on_error: OnPolicyError::Fallback };
        let out = d.scale(&obs());
        assert_eq!(out.by, DecidedBy::Fallback);
        assert_eq!(out.value.launches.len(), 1);
        assert!(out.error.unwrap().contains("unreachable"));

        let d = Decider { policy: Fake("p", broken, all_on_first), fallback: Fake("f", one_launch, all_on_first), on_error: OnPolicyError::Hold };
        let out = d.scale(&obs());
        assert_eq!((out.by, out.value), (DecidedBy::Hold, Plan::default()));

        let d = Decider { policy: Fake("p", broken, all_on_first), fallback: Fake("f", broken, all_on_first), on_error: OnPolicyError::Fallback };
        let out = d.scale(&obs());
        assert_eq!(out.by, DecidedBy::Hold, "both failed: nothing happens");
        assert!(out.error.unwrap().contains("fallback:"));
    }

    #[test]
    fn nonsense_placements_count_as_failures() {
        let t = template();
        let o = offering();
        for bad in [out_of_range as fn(u32) -> anyhow::Result<Vec<Placement>>, too_many] {
            let d = Decider { policy: Fake("p", one_launch, bad), fallback: Fake("f", one_launch, all_on_first), on_error: OnPolicyError::Fallback };
            let out = d.place(0, &t, 2, &[&o], &[]);
            assert_eq!(out.by, DecidedBy::Fallback, "{:?}", out.error);
            assert_eq!(out.value, vec![(0, 2)]);
        }
    }
}
