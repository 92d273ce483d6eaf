//! The console at `/status`: nodes, templates and their demand, the recent decisions as
//! sentences, the policy, the daemon, and charts of the last hour. Server-rendered HTML with
//! maud (which escapes every value it splices); it refreshes itself with a meta tag, so it
//! needs no JavaScript.

use chrono::{Local, TimeZone};
use maud::{DOCTYPE, Markup, html};

use ecsp_engine::board::ConsoleView;
use ecsp_engine::console::NodeRow;
use ecsp_engine::model::NodeState;

use crate::charts::{Series, line_chart};

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
    h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .4em}\
    table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}\
    td.n{text-align:right}.ok{color:#060}.bad{color:#b00;font-weight:bold}.muted{color:#777}\
    dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:0}dt{color:#555}dd{margin:0}\
    ol.decisions{padding-left:0;list-style:none}ol.decisions>li{margin:.3em 0}ol.decisions ul{margin:0}\
    figure.chart{display:inline-block;margin:0 1.5em 1em 0}figcaption{font-weight:bold}\
    svg text{font-size:11px;fill:#555}svg line.axis{stroke:#999}svg line.grid{stroke:#eee}\
    ul.legend{list-style:none;padding:0;margin:.2em 0}ul.legend li{display:inline-block;margin-right:1em}\
    .swatch{display:inline-block;width:10px;height:10px;margin-right:4px}";

/// Colours of the node states in the chart, in [`NodeState::ALL`] order.
const STATE_COLORS: [&str; NodeState::ALL.len()] =
    ["#bbb", "#9cf", "#69c", "#c9f", "#96c", "#2a2", "#c90", "#e60", "#d3a", "#888", "#4aa", "#b00"];

/// Local wall-clock time of `ms` (the server's time zone): the time alone if it is today,
/// else with the date.
fn local_time(ms: u64, now_ms: u64) -> String {
    let at = |ms: u64| Local.timestamp_millis_opt(ms as i64).single();
    match (at(ms), at(now_ms)) {
        (Some(t), Some(now)) if t.date_naive() == now.date_naive() => t.format("%H:%M:%S").to_string(),
        (Some(t), _) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        (None, _) => "?".into(),
    }
}

/// ISO 8601 with the offset, for `<time datetime>`.
fn iso_time(ms: u64) -> String {
    Local.timestamp_millis_opt(ms as i64).single().map_or_else(String::new, |t| t.to_rfc3339())
}

/// A duration the way an operator reads it: `45 s`, `12 min 5 s`, `3 h 2 min`, `2 d 4 h`.
pub fn span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

fn time(ms: u64, now_ms: u64) -> Markup {
    html! { time datetime=(iso_time(ms)) { (local_time(ms, now_ms)) } }
}

/// The whole console page.
pub fn render(view: &ConsoleView) -> String {
    let now = view.now_ms;
    let latest = view.latest.as_ref();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content="10";
                meta name="viewport" content="width=device-width";
                title { "ecs-provisioner" }
                style { (STYLE) }
            }
            body {
                h1 { "ecs-provisioner" }
                p {
                    @if view.health.ok { span.ok { "healthy" } } @else { span.bad { "STUCK" } }
                    ": " (view.health.reason) ". "
                    span.muted { "Times are local (" (Local::now().format("UTC%:z")) "); the page refreshes every 10 s." }
                }
                (daemon(view))
                (policy(view))
                h2 id="nodes" { "Nodes" }
                (nodes(latest.map_or(&[][..], |r| &r.node_rows[..]), now))
                h2 id="templates" { "Templates" }
                (templates(view))
                h2 id="decisions" { "Decisions" }
                (decisions(view))
                h2 id="charts" { "The last hour" }
                (charts(view))
                h2 id="errors" { "Recent errors" }
                @if view.errors.is_empty() {
                    p.muted { "None." }
                } @else {
                    ul {
                        @for (at, e) in &view.errors {
                            li { (time(*at, now)) " " (e) }
                        }
                    }
                }
                p.muted { a href="status.json" { "JSON" } " · " a href="metrics" { "metrics" } " · " a href="healthz" { "health" } }
            }
        }
    }
    .into_string()
}

fn daemon(view: &ConsoleView) -> Markup {
    let now = view.now_ms;
    html! {
        h2 id="daemon" { "Daemon" }
        dl {
            dt { "version" }
            dd {
                @match &view.build {
                    Some(b) => { (b.version) " (revision " (b.revision) "; policy contracts " (b.contracts.join(", ")) ")" }
                    None => { span.muted { "not reported" } }
                }
            }
            dt { "up" }
            dd { (span(now.saturating_sub(view.started_ms))) ", since " (time(view.started_ms, now)) }
            @if let Some(r) = &view.replica {
                dt { "replica" }
                dd {
                    (r.replica) ": " (r.role) @if !r.acting { " (not acting)" } ". Leader: "
                    @match &r.leader { Some(l) => { b { (l) } } None => { span.muted { "unknown" } } }
                    @if let Some(since) = r.leader_since_ms { ", since " (time(since, now)) }
                    @if let Some(p) = &r.problem { " " span.bad { (p) } }
                }
            }
            dt { "last cycle" }
            dd {
                @match (&view.latest, view.health.last_cycle_done_ms) {
                    (Some(r), Some(done)) => {
                        "cycle " (r.cycle) ", ended " (span(now.saturating_sub(done))) " ago, took "
                        (format!("{:.1} ms", r.duration_micros as f64 / 1e3))
                        @if !r.errors.is_empty() { ", " span.bad { (r.errors.len()) " error(s)" } }
                    }
                    _ => { span.muted { "no cycle has run yet" } }
                }
            }
        }
    }
}

fn policy(view: &ConsoleView) -> Markup {
    let decided_by = view.latest.as_ref().and_then(|r| r.decided_by);
    html! {
        h2 id="policy" { "Policy" }
        dl {
            @match &view.policy {
                Some(p) => {
                    dt { "source" } dd { code { (p.source) } }
                    dt { "SHA-256" } dd { code { (p.sha256) } }
                    dt { "contract" } dd { (p.contract) }
                }
                None => { dt { "source" } dd { span.muted { "not reported" } } }
            }
            dt { "last decided by" }
            dd {
                @match decided_by {
                    Some(by) => {
                        @let by = by.as_str();
                        @if by == "policy" { (by) } @else { span.bad { (by) } }
                        @if let Some(e) = view.latest.as_ref().and_then(|r| r.policy_error.as_ref()) { ": " (e) }
                    }
                    None => { span.muted { "nothing decided yet" } }
                }
            }
        }
    }
}

fn nodes(rows: &[NodeRow], now: u64) -> Markup {
    html! {
        @if rows.is_empty() {
            p.muted { "No nodes." }
        } @else {
            table {
                tr { th { "instance" } th { "template" } th { "zone" } th { "type" } th { "spot" } th { "state" } th { "age" } th { "idle" } th { "uses" } th { "failure" } }
                @for n in rows {
                    tr id=(format!("node-{}", n.instance_id)) {
                        td { code { (n.instance_id) } }
                        td { (n.template) }
                        td { (n.zone) }
                        td { (n.instance_type) }
                        td { @if n.spot { "spot" } @else { "on-demand" } }
                        td { (n.state.as_str()) @if n.busy { " (busy)" } }
                        td.n { @if let Some(c) = n.created_ms { (span(now.saturating_sub(c))) } @else { "?" } }
                        td.n { @if n.idle() { (span(n.idle_ms)) } @else { "-" } }
                        td.n { (n.uses) }
                        td { @if let Some(f) = &n.failure { span.bad { (f) } } }
                    }
                }
            }
        }
    }
}

fn templates(view: &ConsoleView) -> Markup {
    let latest = view.latest.as_ref();
    let count = |t: &str, pick: &dyn Fn(NodeState) -> bool| -> u32 {
        latest
            .and_then(|r| r.nodes.get(t))
            .map_or(0, |m| NodeState::ALL.iter().filter(|s| pick(**s)).filter_map(|s| m.get(s.as_str())).sum())
    };
    let unmatched = latest.map_or(0, |r| r.unmatched_queued);
    html! {
        table {
            tr { th { "template" } th { "min" } th { "max" } th { "nodes" } th { "in flight" } th { "online" } th { "idle" } th { "queued" } th { "oldest wait" } th { "launches held" } }
            @for t in &view.templates {
                @let name = t.name.as_str();
                tr {
                    td { (name) }
                    td.n { (t.min_nodes) }
                    td.n { (t.max_nodes) }
                    td.n { (count(name, &|_| true)) }
                    td.n { (count(name, &|s| s.in_flight())) }
                    td.n { (count(name, &|s| s == NodeState::Online)) }
                    td.n { (latest.map_or(0, |r| r.node_rows.iter().filter(|n| n.template == name && n.idle()).count())) }
                    td.n { (latest.and_then(|r| r.queued.get(name)).copied().unwrap_or(0)) }
                    td.n { (latest.and_then(|r| r.oldest_wait_ms.get(name)).map_or("-".into(), |ms| span(*ms))) }
                    td { @if let Some(h) = latest.and_then(|r| r.launch_holds.get(name)) { span.bad { (h.failures) " failed bootstraps (" (h.cause) ")" } } }
                }
            }
            tr {
                td { em { "no template" } }
                td colspan="6" { span.muted { "queued builds whose label no template serves" } }
                td.n { @if unmatched > 0 { span.bad { (unmatched) } } @else { "0" } }
                td {} td {}
            }
        }
    }
}

fn decisions(view: &ConsoleView) -> Markup {
    let now = view.now_ms;
    html! {
        @if view.decisions.is_empty() {
            p.muted { "No decision in the last hour: nothing launched, removed or clamped." }
        } @else {
            p.muted { "The last " (view.decisions.len()) " (at most 200, none older than an hour), newest first." }
            ol.decisions {
                @for d in &view.decisions {
                    li {
                        (time(d.at_ms, now)) " "
                        span.muted { "cycle " (d.cycle) }
                        ul { @for s in &d.sentences { li.sentence { (s) } } }
                    }
                }
            }
        }
    }
}

fn charts(view: &ConsoleView) -> Markup {
    let now = view.now_ms;
    let points = |f: &dyn Fn(&ecsp_engine::console::Sample) -> u32| view.samples.iter().map(|s| (s.at_ms, f(s))).collect::<Vec<_>>();
    let queued = [
        Series { name: "queued".into(), color: "#06c", points: points(&|s| s.queued) },
        Series { name: "no template".into(), color: "#b00", points: points(&|s| s.unmatched) },
    ];
    let states: Vec<Series> = NodeState::ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| view.samples.iter().any(|s| s.nodes[*i] > 0))
        .map(|(i, state)| Series { name: state.as_str().into(), color: STATE_COLORS[i], points: points(&|s| s.nodes[i]) })
        .collect();
    html! {
        (line_chart("Queued builds", now, &queued))
        (line_chart("Nodes by state", now, &states))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecsp_engine::CycleReport;
    use ecsp_engine::act::Launched;
    use ecsp_engine::board::{Board, PolicyInfo};
    use ecsp_engine::model::TemplateLimits;

    fn row(id: &str, state: NodeState) -> NodeRow {
        NodeRow {
            instance_id: id.into(),
            template: "linux".into(),
            zone: "cn-hangzhou-h".into(),
            instance_type: "ecs.c7.large".into(),
            spot: true,
            state,
            created_ms: Some(ecsp_engine::now_ms() - 90_000),
            busy: false,
            idle_ms: 30_000,
            uses: 2,
            failure: None,
        }
    }

    #[test]
    fn the_console_shows_nodes_demand_decisions_and_policy() {
        let board = Board::new();
        board.set_templates(vec![TemplateLimits {
            name: "linux".into(),
            min_nodes: 1,
            max_nodes: 4,
            launch_timeout_ms: 0,
            reconnect_timeout_ms: 0,
            max_uses: 0,
            user_data: false,
            max_stopped: 0,
            fingerprint: String::new(),
        }]);
        board.set_policy(PolicyInfo { source: "policies/<x>.wasm".into(), sha256: "ab12".into(), contract: "0.2.0".into() });
        let mut r = CycleReport { cycle: 4, at_ms: ecsp_engine::now_ms(), ..Default::default() };
        r.node_rows = vec![row("i-online", NodeState::Online), row("i-new", NodeState::Pending)];
        r.node_rows[1].failure = Some("launch-timeout".into());
        r.nodes.entry("linux".into()).or_default().insert("online".into(), 1);
        r.nodes.entry("linux".into()).or_default().insert("pending".into(), 1);
        r.queued.insert("linux".into(), 5);
        r.unmatched_queued = 2;
        r.launched.push(Launched {
            template: "linux".into(),
            zone: "cn-hangzhou-h".into(),
            vswitch: "v".into(),
            instance_type: "ecs.c7.large".into(),
            spot: true,
            instance_ids: vec!["i-new".into()],
        });
        r.errors.push("boom <b>".into());
        board.record(&r);
        let html = render(&board.console());
        assert!(html.contains(r#"<tr id="node-i-online"><td><code>i-online</code></td><td>linux</td><td>cn-hangzhou-h</td><td>ecs.c7.large</td><td>spot</td><td>online</td><td class="n">1 min "#), "{html}");
        assert!(html.contains(r#"<td class="n">30 s</td><td class="n">2</td>"#), "idle time and uses: {html}");
        assert!(html.contains("launch-timeout"), "the failure reason is shown");
        assert!(html.contains("launched 1 x linux in cn-hangzhou-h (ecs.c7.large, spot): 5 queued, 1 idle"), "{html}");
        assert!(html.contains(r#"<td class="n">2</td>"#) && html.contains("no template"), "unmatched demand is shown");
        assert!(html.contains("policies/&lt;x&gt;.wasm") && html.contains("0.2.0") && html.contains("ab12"), "{html}");
        assert!(html.contains("boom &lt;b&gt;") && !html.contains("boom <b>"), "errors are escaped");
        assert_eq!(html.matches("<svg").count(), 2, "two charts");
        assert!(!html.contains("<script"), "no JavaScript");
    }

    #[test]
    fn spans_read_like_a_person_says_them() {
        assert_eq!([0, 59_999, 60_000, 3_599_000, 3_600_000, 90_000_000].map(span), ["0 s", "59 s", "1 min 0 s", "59 min 59 s", "1 h 0 min", "1 d 1 h"]);
    }
}
