//! `plan`: one observe + decide, no action, said in words: what would be launched and
//! removed, and when nothing would be, why not.

use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, TemplateConfig};
use crate::engine::CycleReport;
use crate::engine::model::NodeState;
use crate::jenkins::UnmatchedItem;

/// `plan`: one observe + decide, no action.
pub async fn plan(config_path: &Path, json: bool) -> anyhow::Result<i32> {
    let config = Arc::new(Config::load(config_path)?);
    let (engine, _) = super::wire(config.clone())?;
    let report = engine.cycle(false).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        // The cycle reports how many builds match no template; which ones is read afresh.
        let unmatched = if report.unmatched_queued > 0 {
            let jenkins = crate::adapters::jenkins::JenkinsAdapter::from_config(&config)?;
            jenkins.unmatched_builds(crate::engine::now_ms()).await.ok()
        } else {
            None
        };
        print!("{}", render_plan_for(&report, &config.templates, unmatched.as_deref()));
    }
    Ok(if report.errors.is_empty() { 0 } else { 1 })
}

/// The human form of a plan, from the report alone.
pub fn render_plan(r: &CycleReport) -> String {
    render_plan_for(r, &[], None)
}

/// The human form of a plan; `templates` (the configuration's) let it say when a template is
/// at its `max-nodes`, `unmatched` lists the builds no template serves.
pub fn render_plan_for(r: &CycleReport, templates: &[TemplateConfig], unmatched: Option<&[UnmatchedItem]>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<16} {:>7} {:>9} {:>7} {:>7}", "TEMPLATE", "QUEUED", "IN-FLIGHT", "ONLINE", "OTHER");
    let mut names: Vec<&String> = r.nodes.keys().chain(r.queued.keys()).collect();
    names.sort();
    names.dedup();
    for t in names {
        let get = |s: &str| r.nodes.get(t).and_then(|m| m.get(s)).copied().unwrap_or(0);
        let in_flight: u32 = NodeState::ALL.iter().filter(|s| s.in_flight()).map(|s| get(s.as_str())).sum();
        let other = get("draining") + get("terminating");
        let _ = writeln!(out, "{:<16} {:>7} {:>9} {:>7} {:>7}", t, r.queued.get(t).copied().unwrap_or(0), in_flight, get("online"), other);
    }
    if r.unmatched_queued > 0 {
        let _ = writeln!(out, "{:<16} {:>7}   (builds no template serves)", "(unmatched)", r.unmatched_queued);
    }
    let by = r.decided_by.map(|b| format!("{b:?}").to_lowercase()).unwrap_or_else(|| "nobody".into());
    let _ = writeln!(out, "\nDecided by: {by} ({} µs)", r.policy_micros);
    if let Some(e) = &r.policy_error {
        let _ = writeln!(out, "Policy error: {e}");
    }
    if r.enforced.launches.is_empty() && r.enforced.removals.is_empty() {
        let _ = writeln!(out, "Would do nothing: {}.", why_nothing(r, templates).join("; "));
    }
    for l in &r.enforced.launches {
        let _ = writeln!(out, "Would launch {} x {}: {}", l.count, l.template, l.reason);
    }
    for rm in &r.enforced.removals {
        let _ = writeln!(out, "Would remove {}: {}", rm.instance_id, rm.reason);
    }
    for c in &r.clamps {
        let _ = writeln!(out, "Clamped ({}): {}", c.rule, c.detail);
    }
    for (kind, target, reason) in &r.chores {
        let _ = writeln!(out, "Housekeeping: {kind} {target} {reason}");
    }
    if let Some(items) = unmatched.filter(|i| !i.is_empty()) {
        let _ = writeln!(out, "\nQueued builds no template serves:");
        for i in items {
            let _ = writeln!(out, "  #{} {} waits {}s for {}", i.id, i.task, i.wait_ms / 1000, i.needs);
        }
    }
    for e in &r.errors {
        let _ = writeln!(out, "error: {e}");
    }
    out
}

/// Why a cycle would launch and remove nothing, each reason a clause.
fn why_nothing(r: &CycleReport, templates: &[TemplateConfig]) -> Vec<String> {
    if r.decided_by.is_none() {
        return vec!["the cycle stopped before deciding, because observing failed (errors below)".into()];
    }
    let mut reasons = Vec::new();
    for (name, &queued) in r.queued.iter().filter(|(_, q)| **q > 0) {
        let states = r.nodes.get(name);
        let count = |f: &dyn Fn(NodeState) -> bool| -> u32 {
            NodeState::ALL.iter().filter(|s| f(**s)).map(|s| states.and_then(|m| m.get(s.as_str())).copied().unwrap_or(0)).sum()
        };
        let have = count(&|_| true);
        let in_flight = count(&|s| s.in_flight());
        let builds = format!("{} {}", plural(queued, "build"), if queued == 1 { "waits" } else { "wait" });
        if let Some(t) = templates.iter().find(|t| t.name() == name.as_str())
            && have >= t.max_nodes
        {
            reasons.push(format!("{builds} for \"{name}\", but it is at max-nodes ({have} of {})", t.max_nodes));
        } else if let Some(hold) = r.launch_holds.get(name) {
            reasons.push(format!("{builds} for \"{name}\", but its launches are held back after {} failed bootstrap(s) ({})", hold.failures, hold.cause));
        } else if in_flight > 0 {
            reasons.push(format!("{builds} for \"{name}\", and {} are already starting", plural(in_flight, "node")));
        } else if !r.clamps.is_empty() {
            reasons.push(format!("{builds} for \"{name}\", but the launches were clamped (below)"));
        } else {
            reasons.push(format!("{builds} for \"{name}\", but the policy launched none"));
        }
    }
    if r.unmatched_queued > 0 {
        let verb = if r.unmatched_queued == 1 { "matches" } else { "match" };
        reasons.push(format!("{} {verb} no template (listed below)", plural(r.unmatched_queued, "queued build")));
    }
    if reasons.is_empty() {
        reasons.push("no build waits, and no node is due for removal".into());
    }
    reasons
}

fn plural(n: u32, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::decide::DecidedBy;

    fn report() -> CycleReport {
        CycleReport { decided_by: Some(DecidedBy::Policy), ..CycleReport::default() }
    }

    fn template(name: &str, max: u32) -> TemplateConfig {
        let text = format!(
            "controller-id = \"c\"\n[cloud]\nregion = \"r\"\nvpc-id = \"v\"\nsecurity-group-id = \"s\"\nimage-id = \"m\"\nkey-pair-name = \"k\"\n[jenkins]\nurl = \"http://127.0.0.1/\"\nuser = \"u\"\n[[template]]\nname = \"{name}\"\nlabels = [\"{name}\"]\nmax-nodes = {max}\n"
        );
        Config::parse(&text).unwrap().templates.remove(0)
    }

    #[test]
    fn nothing_to_do_at_max_nodes_says_so() {
        let mut r = report();
        r.queued.insert("linux".into(), 5);
        r.nodes.insert("linux".into(), [("online".to_owned(), 3)].into());
        let text = render_plan_for(&r, &[template("linux", 3)], None);
        assert!(text.contains("Would do nothing: 5 builds wait for \"linux\", but it is at max-nodes (3 of 3)."), "{text}");
    }

    #[test]
    fn nothing_to_do_after_a_failed_observation_says_so() {
        let mut r = CycleReport::default();
        r.errors.push("observe: cannot reach Jenkins".into());
        let text = render_plan(&r);
        assert!(text.contains("Would do nothing: the cycle stopped before deciding, because observing failed"), "{text}");
        assert!(text.contains("error: observe: cannot reach Jenkins"), "{text}");
    }

    #[test]
    fn unmatched_builds_are_listed() {
        let mut r = report();
        r.unmatched_queued = 1;
        let items = [UnmatchedItem { id: 7, wait_ms: 42_000, task: "arm-build".into(), needs: "label arm64".into() }];
        let text = render_plan_for(&r, &[], Some(&items));
        assert!(text.contains("Would do nothing: 1 queued build matches no template"), "{text}");
        assert!(text.contains("#7 arm-build waits 42s for label arm64"), "{text}");
    }

    #[test]
    fn an_idle_fleet_says_nothing_waits() {
        assert!(render_plan(&report()).contains("Would do nothing: no build waits, and no node is due for removal."));
    }
}
