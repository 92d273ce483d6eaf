//! The console's memory: one row per node, the recent decisions told as sentences, and an
//! hour of fleet samples for the charts. The board keeps it from the cycle reports; the status
//! server renders it.

use std::collections::{BTreeMap, VecDeque};

use crate::CycleReport;
use crate::decide::DecidedBy;
use crate::model::{Node, NodeState};

/// Decisions kept for the console, at most.
pub const DECISIONS_KEPT: usize = 200;
/// How far back decisions and chart samples go, ms.
pub const HISTORY_MS: u64 = 3_600_000;
/// Chart resolution: cycles within one such slot are folded into one sample (their maxima),
/// so an hour is 360 samples whatever the poll interval.
pub const SAMPLE_EVERY_MS: u64 = 10_000;

/// One node as the console lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeRow {
    /// ECS instance id.
    pub instance_id: String,
    /// Template it was launched for.
    pub template: String,
    /// Zone it runs in.
    pub zone: String,
    /// Instance type.
    pub instance_type: String,
    /// Spot instance.
    pub spot: bool,
    /// Lifecycle state.
    pub state: NodeState,
    /// Creation time (ms since the epoch), when the cloud gave a readable one.
    pub created_ms: Option<u64>,
    /// Running a build now.
    pub busy: bool,
    /// How long it has run nothing while connected, ms (0 while busy or away).
    pub idle_ms: u64,
    /// Builds it has started.
    pub uses: u32,
    /// Why it is terminating, when it is.
    pub failure: Option<String>,
}

impl NodeRow {
    /// The row of a node.
    pub fn of(n: &Node) -> Self {
        let agent = n.agent.as_ref();
        NodeRow {
            instance_id: n.instance.instance_id.clone(),
            template: n.instance.template.clone(),
            zone: n.instance.zone.clone(),
            instance_type: n.instance.instance_type.clone(),
            spot: n.instance.spot,
            state: n.state,
            created_ms: n.instance.created_ms,
            busy: n.busy(),
            idle_ms: agent.map_or(0, |a| a.idle_ms),
            uses: agent.map_or(0, |a| a.uses),
            failure: n.failure.clone(),
        }
    }

    /// Online and running nothing: capacity waiting for a build.
    pub fn idle(&self) -> bool {
        self.state == NodeState::Online && !self.busy
    }
}

/// One cycle that did or refused something, told in sentences.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decision {
    /// Cycle number.
    pub cycle: u64,
    /// When the cycle ran, ms since the epoch.
    pub at_ms: u64,
    /// Who decided.
    pub decided_by: Option<DecidedBy>,
    /// What happened and why, one sentence each.
    pub sentences: Vec<String>,
}

/// The fleet at one moment, for the charts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Start of the sample's slot, ms since the epoch.
    pub at_ms: u64,
    /// Queued builds some template serves.
    pub queued: u32,
    /// Queued builds no template serves.
    pub unmatched: u32,
    /// Nodes per state, in [`NodeState::ALL`] order.
    pub nodes: [u32; NodeState::ALL.len()],
}

/// The bounded history: the last decisions (at most [`DECISIONS_KEPT`], none older than
/// [`HISTORY_MS`]) and an hour of samples.
#[derive(Debug, Default, Clone)]
pub struct History {
    decisions: VecDeque<Decision>,
    samples: VecDeque<Sample>,
}

impl History {
    /// Adds a cycle: its decision if it did or refused anything, and its sample.
    pub fn record(&mut self, r: &CycleReport) {
        let sentences = sentences(r);
        if !sentences.is_empty() {
            self.decisions.push_back(Decision { cycle: r.cycle, at_ms: r.at_ms, decided_by: r.decided_by, sentences });
        }
        self.sample(r);
        let horizon = r.at_ms.saturating_sub(HISTORY_MS);
        while self.decisions.len() > DECISIONS_KEPT || self.decisions.front().is_some_and(|d| d.at_ms < horizon) {
            self.decisions.pop_front();
        }
        while self.samples.front().is_some_and(|s| s.at_ms < horizon) {
            self.samples.pop_front();
        }
    }

    fn sample(&mut self, r: &CycleReport) {
        let mut s = Sample {
            at_ms: r.at_ms - r.at_ms % SAMPLE_EVERY_MS,
            queued: r.queued.values().sum(),
            unmatched: r.unmatched_queued,
            nodes: [0; NodeState::ALL.len()],
        };
        for states in r.nodes.values() {
            for (i, state) in NodeState::ALL.iter().enumerate() {
                s.nodes[i] += states.get(state.as_str()).copied().unwrap_or(0);
            }
        }
        match self.samples.back_mut() {
            Some(last) if last.at_ms == s.at_ms => {
                last.queued = last.queued.max(s.queued);
                last.unmatched = last.unmatched.max(s.unmatched);
                for (a, b) in last.nodes.iter_mut().zip(s.nodes) {
                    *a = (*a).max(b);
                }
            }
            _ => self.samples.push_back(s),
        }
    }

    /// The decisions kept, newest first.
    pub fn decisions(&self) -> Vec<Decision> {
        self.decisions.iter().rev().cloned().collect()
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.iter().cloned().collect()
    }
}

/// What a cycle did and refused, one sentence per act: launches with the demand that asked for
/// them, removals with their reasons, clamps, fallbacks and holds, failed launches.
pub fn sentences(r: &CycleReport) -> Vec<String> {
    let mut out = Vec::new();
    let idle = |template: &str| r.node_rows.iter().filter(|n| n.template == template && n.idle()).count();
    let reason = |template: &str| {
        r.enforced.launches.iter().find(|l| l.template == template).map(|l| l.reason.as_str()).filter(|s| !s.is_empty())
    };
    match r.decided_by {
        Some(DecidedBy::Fallback) => out.push(format!(
            "the policy failed, so the built-in fallback decided: {}",
            r.policy_error.as_deref().unwrap_or("no error given")
        )),
        Some(DecidedBy::Hold) => out.push(format!(
            "the policy failed and on-error = \"hold\": nothing was decided ({})",
            r.policy_error.as_deref().unwrap_or("no error given")
        )),
        _ => {}
    }
    // Launches grouped by template and zone: one sentence per place the nodes went.
    let mut launched: BTreeMap<(&str, &str, &str, bool), usize> = BTreeMap::new();
    for l in &r.launched {
        *launched.entry((&l.template, &l.zone, &l.instance_type, l.spot)).or_default() += l.instance_ids.len();
    }
    for ((template, zone, instance_type, spot), n) in launched {
        let mut s = format!(
            "launched {n} x {template} in {zone} ({instance_type}, {}): {} queued, {} idle",
            if spot { "spot" } else { "on-demand" },
            r.queued.get(template).copied().unwrap_or(0),
            idle(template),
        );
        if let Some(why) = reason(template) {
            s.push_str(&format!("; the policy said \"{why}\""));
        }
        out.push(s);
    }
    for f in &r.launch_errors {
        out.push(format!(
            "could not launch {} in {} ({}, {}): {}",
            f.template,
            f.zone,
            f.instance_type,
            if f.spot { "spot" } else { "on-demand" },
            f.code
        ));
    }
    for (template, n) in &r.unplaced {
        out.push(format!("found no offering for {n} x {template}"));
    }
    for id in &r.removed {
        let why = r.enforced.removals.iter().find(|x| &x.instance_id == id).map_or("", |x| x.reason.as_str());
        let template = r.node_rows.iter().find(|n| &n.instance_id == id).map_or("?", |n| n.template.as_str());
        out.push(if why.is_empty() { format!("removed {id} ({template})") } else { format!("removed {id} ({template}): {why}") });
    }
    for id in &r.kept_busy {
        out.push(format!("kept {id}: it took a build while being drained"));
    }
    for c in &r.clamps {
        out.push(format!("clamped the policy's plan ({}): {}", c.rule, c.detail));
    }
    for (kind, target, why) in r.chores.iter().filter(|(kind, ..)| matches!(kind.as_str(), "terminate" | "fence")) {
        let verb = if kind == "terminate" { "terminated" } else { "fenced" };
        out.push(if why.is_empty() { format!("{verb} {target}") } else { format!("{verb} {target}: {why}") });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::Launched;
    use crate::model::{Clamp, Plan, PlannedLaunch};

    fn report(cycle: u64, at_ms: u64) -> CycleReport {
        CycleReport { cycle, at_ms, ..Default::default() }
    }

    #[test]
    fn a_launch_reads_as_a_sentence_with_its_demand() {
        let mut r = report(3, 1_000);
        r.queued.insert("linux".into(), 5);
        r.enforced = Plan { launches: vec![PlannedLaunch { template: "linux".into(), count: 3, reason: "5 queued".into() }], removals: vec![] };
        r.launched.push(Launched {
            template: "linux".into(),
            zone: "cn-hangzhou-h".into(),
            vswitch: "vsw".into(),
            instance_type: "ecs.c7.large".into(),
            spot: false,
            instance_ids: vec!["i-1".into(), "i-2".into(), "i-3".into()],
        });
        r.clamps.push(Clamp { rule: "template-max", detail: "linux: 4 -> 3".into() });
        r.decided_by = Some(DecidedBy::Fallback);
        r.policy_error = Some("trap".into());
        assert_eq!(
            sentences(&r),
            [
                "the policy failed, so the built-in fallback decided: trap",
                "launched 3 x linux in cn-hangzhou-h (ecs.c7.large, on-demand): 5 queued, 0 idle; the policy said \"5 queued\"",
                "clamped the policy's plan (template-max): linux: 4 -> 3",
            ]
        );
    }

    #[test]
    fn history_keeps_two_hundred_decisions_within_an_hour() {
        let mut h = History::default();
        let mut r = report(1, 1_000);
        r.removed.push("i-old".into());
        h.record(&r);
        for c in 2..=250u64 {
            let mut r = report(c, 2_000 + c * 1_000);
            r.removed.push(format!("i-{c}"));
            h.record(&r);
        }
        let d = h.decisions();
        assert_eq!(d.len(), DECISIONS_KEPT);
        assert_eq!((d[0].cycle, d[DECISIONS_KEPT - 1].cycle), (250, 51), "newest first, oldest dropped");
        // An hour later, one more: everything older than an hour goes.
        let mut r = report(251, 2_000 + 250 * 1_000 + HISTORY_MS - 500);
        r.removed.push("i-late".into());
        h.record(&r);
        assert_eq!(h.decisions().iter().map(|d| d.cycle).collect::<Vec<_>>(), [251, 250]);
        assert!(h.samples().iter().all(|s| s.at_ms + HISTORY_MS >= r.at_ms), "samples older than an hour are dropped");
    }

    #[test]
    fn samples_fold_cycles_of_one_slot_into_their_maxima() {
        let mut h = History::default();
        for (at, queued) in [(20_000, 4), (21_000, 9), (25_000, 2), (31_000, 1)] {
            let mut r = report(1, at);
            r.queued.insert("linux".into(), queued);
            r.nodes.entry("linux".into()).or_default().insert("online".into(), queued / 2);
            h.record(&r);
        }
        let s = h.samples();
        assert_eq!(s.iter().map(|s| (s.at_ms, s.queued)).collect::<Vec<_>>(), [(20_000, 9), (30_000, 1)]);
        assert_eq!(s[0].nodes[NodeState::ALL.iter().position(|s| *s == NodeState::Online).unwrap()], 4);
        assert!(h.decisions().is_empty(), "cycles that did nothing are not decisions");
    }
}
