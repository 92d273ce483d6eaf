//! Shadow mode: a candidate policy decides on the live snapshot every cycle, and nothing acts
//! on its answer. What it would have done differently is counted and shown, so a policy can
//! be tried on the real fleet before it is trusted with it.

use std::collections::BTreeMap;

use super::decide::{Observation, PolicyPort};
use super::model::Plan;

/// How the shadow policy's plan compared with the plan the active policy made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShadowVerdict {
    /// The shadow policy's name.
    pub policy: String,
    /// `agreed`, `differed` or `failed`.
    pub outcome: &'static str,
    /// What differed, one line each (`launch linux: active 3, shadow 5`, `remove i-…: shadow only`),
    /// or the shadow's error.
    pub differences: Vec<String>,
}

/// Asks `shadow` for its plan on the same observation and compares it with `active` (the
/// policy's proposal, before enforcement: both are judged by what they asked for).
pub fn judge(shadow: &dyn PolicyPort, obs: &Observation<'_>, active: &Plan) -> ShadowVerdict {
    let policy = shadow.name().to_owned();
    match shadow.scale(obs) {
        Err(e) => ShadowVerdict { policy, outcome: "failed", differences: vec![format!("{e:#}")] },
        Ok(plan) => {
            let differences = differences(active, &plan);
            ShadowVerdict { policy, outcome: if differences.is_empty() { "agreed" } else { "differed" }, differences }
        }
    }
}

/// The differences between two plans: launch counts per template, and removals by instance.
/// Reasons are free text and do not count.
pub fn differences(active: &Plan, shadow: &Plan) -> Vec<String> {
    let (a, s) = (launch_counts(active), launch_counts(shadow));
    let mut out = Vec::new();
    let templates: std::collections::BTreeSet<&str> = a.keys().chain(s.keys()).copied().collect();
    for t in templates {
        let (x, y) = (a.get(t).copied().unwrap_or(0), s.get(t).copied().unwrap_or(0));
        if x != y {
            out.push(format!("launch {t}: active {x}, shadow {y}"));
        }
    }
    let removals = |p: &Plan| p.removals.iter().map(|r| r.instance_id.clone()).collect::<std::collections::BTreeSet<_>>();
    let (a, s) = (removals(active), removals(shadow));
    out.extend(a.difference(&s).map(|id| format!("remove {id}: active only")));
    out.extend(s.difference(&a).map(|id| format!("remove {id}: shadow only")));
    out
}

/// Nodes to launch per template.
fn launch_counts(p: &Plan) -> BTreeMap<&str, u32> {
    let mut m: BTreeMap<&str, u32> = BTreeMap::new();
    for l in &p.launches {
        *m.entry(l.template.as_str()).or_default() += l.count;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PlannedLaunch, PlannedRemoval};

    fn plan(launches: &[(&str, u32)], removals: &[&str]) -> Plan {
        Plan {
            launches: launches.iter().map(|(t, n)| PlannedLaunch { template: (*t).into(), count: *n, reason: "r".into() }).collect(),
            removals: removals.iter().map(|id| PlannedRemoval { instance_id: (*id).into(), reason: "x".into() }).collect(),
        }
    }

    #[test]
    fn plans_that_ask_the_same_agree_whatever_their_reasons_and_order() {
        let mut b = plan(&[("win", 1), ("linux", 2), ("linux", 1)], &["i-2", "i-1"]);
        b.launches[0].reason = "other words".into();
        assert!(differences(&plan(&[("linux", 3), ("win", 1)], &["i-1", "i-2"]), &b).is_empty());
    }

    #[test]
    fn each_difference_is_named() {
        let d = differences(&plan(&[("linux", 3)], &["i-1"]), &plan(&[("linux", 5), ("win", 1)], &["i-2"]));
        assert_eq!(
            d,
            ["launch linux: active 3, shadow 5", "launch win: active 0, shadow 1", "remove i-1: active only", "remove i-2: shadow only"]
        );
    }
}
