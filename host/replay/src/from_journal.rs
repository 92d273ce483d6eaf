//! A trace made from the decision journal (`policy trace import --journal DIR`): the builds
//! the provisioner's nodes ran, and the stock-outs its launches met.
//!
//! The journal records queue items when first seen (template, queued since) and builds when
//! first seen running (template, Jenkins' start time) and when gone. Jenkins does not say which
//! queue item became which build here, so they are paired as its scheduler serves them: each
//! build, in start order, takes the oldest queue item of its template queued before it
//! started. A build whose item was never seen queued (an idle node took it within a cycle)
//! arrives when it started. Durations end at the first cycle that no longer saw the build, so
//! they are up to one cycle long; a build still running when the journal ends runs until
//! then. A queue item never seen starting gets the median duration of its template's builds.

use std::collections::{BTreeMap, VecDeque};

use ecsp_journal::JournalFile;

use super::trace::{Build, CloudEvent, Trace};

/// How long a capacity failure in the journal keeps its offering out of stock in the trace.
pub const STOCKOUT_WINDOW_MS: u64 = 10 * 60_000;

/// What the conversion did, for the command to tell.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    /// Cycles read.
    pub cycles: usize,
    /// Builds paired with a queue item.
    pub paired: usize,
    /// Builds that started with no queue item seen (arrive at their start).
    pub unqueued: usize,
    /// Queue items never seen starting, given their template's median duration.
    pub never_started: usize,
    /// Queue items dropped: never started, and no build of their template to take a duration from.
    pub dropped: usize,
}

struct Seen {
    template: String,
    start_ms: u64,
    end_ms: Option<u64>,
}

/// The trace of `files` (oldest first, as [`ecsp_journal::read_dir`] gives them).
pub fn trace_from_journal(files: &[JournalFile]) -> anyhow::Result<(Trace, Summary)> {
    let mut summary = Summary::default();
    let mut labels = BTreeMap::new();
    let mut arrivals: BTreeMap<u64, (String, u64)> = BTreeMap::new();
    let mut builds: BTreeMap<String, Seen> = BTreeMap::new();
    let mut events = Vec::new();
    let (mut first_ms, mut last_ms) = (u64::MAX, 0);
    for f in files {
        labels.extend(f.header.templates.clone());
        for c in &f.cycles {
            summary.cycles += 1;
            first_ms = first_ms.min(c.at_ms);
            last_ms = last_ms.max(c.at_ms);
            // A restarted provisioner sees again what was queued or running: the first sight counts.
            for a in &c.arrivals {
                arrivals.entry(a.queue_id).or_insert((a.template.clone(), a.since_ms));
            }
            for b in &c.build_starts {
                builds.entry(b.build.clone()).or_insert(Seen { template: b.template.clone(), start_ms: b.at_ms, end_ms: None });
            }
            for b in &c.build_ends {
                if let Some(seen) = builds.get_mut(&b.build) {
                    seen.end_ms = Some(b.at_ms);
                }
            }
            for f in c.launch_failed.iter().filter(|f| f.capacity) {
                events.push(CloudEvent::Stockout {
                    zone: f.zone.clone(),
                    instance_type: Some(f.instance_type.clone()),
                    spot: Some(f.spot),
                    from_ms: c.at_ms,
                    until_ms: c.at_ms + STOCKOUT_WINDOW_MS,
                });
            }
        }
    }
    if summary.cycles == 0 {
        anyhow::bail!("the journal holds no cycles");
    }

    // Per template: queue items oldest first, builds by start.
    let mut queued: BTreeMap<&str, VecDeque<u64>> = BTreeMap::new();
    let mut by_since: Vec<(&String, u64)> = arrivals.values().map(|(t, s)| (t, *s)).collect();
    by_since.sort_by_key(|(_, s)| *s);
    for (t, since) in by_since {
        queued.entry(t.as_str()).or_default().push_back(since);
    }
    let mut started: Vec<&Seen> = builds.values().collect();
    started.sort_by_key(|b| b.start_ms);
    let label = |template: &str| labels.get(template).filter(|l| !l.is_empty()).cloned();
    let mut trace_builds = Vec::new();
    let mut durations: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for b in started {
        let duration_ms = b.end_ms.unwrap_or(last_ms).saturating_sub(b.start_ms);
        durations.entry(b.template.as_str()).or_default().push(duration_ms);
        let queue = queued.entry(b.template.as_str()).or_default();
        let at_ms = match queue.front() {
            Some(&since) if since <= b.start_ms => {
                queue.pop_front();
                summary.paired += 1;
                since
            }
            _ => {
                summary.unqueued += 1;
                b.start_ms
            }
        };
        trace_builds.push(Build { at_ms, label: label(&b.template), duration_ms });
    }
    for (template, left) in queued {
        let median = durations.get_mut(template).map(|d| {
            d.sort_unstable();
            d[d.len() / 2]
        });
        for since in left {
            match median {
                Some(duration_ms) => {
                    summary.never_started += 1;
                    trace_builds.push(Build { at_ms: since, label: label(template), duration_ms });
                }
                None => summary.dropped += 1,
            }
        }
    }
    let start_ms = trace_builds.iter().map(|b| b.at_ms).min().unwrap_or(first_ms).min(first_ms);
    let mut trace = Trace { start_ms, end_ms: last_ms.max(start_ms), builds: trace_builds, events };
    trace.sort();
    Ok((trace, summary))
}

#[cfg(test)]
mod tests {
    use ecsp_journal::record::{Arrival, BuildEnd, BuildStart, Cycle, Header, LaunchFailureRecord};

    use super::*;

    fn file(cycles: Vec<Cycle>) -> JournalFile {
        let header = Header {
            format: ecsp_journal::FORMAT.into(),
            version: 1,
            controller_id: "ci".into(),
            started_ms: 0,
            templates: BTreeMap::from([("linux".to_owned(), "linux&&docker".to_owned()), ("any".to_owned(), String::new())]),
        };
        JournalFile { path: "j".into(), header, cycles }
    }

    fn arrival(id: u64, since_ms: u64) -> Arrival {
        Arrival { template: "linux".into(), queue_id: id, since_ms }
    }

    fn start(build: &str, at_ms: u64) -> BuildStart {
        BuildStart { build: build.into(), instance_id: "i-1".into(), template: "linux".into(), at_ms }
    }

    fn end(build: &str, at_ms: u64) -> BuildEnd {
        BuildEnd { build: build.into(), at_ms }
    }

    #[test]
    fn builds_take_the_oldest_queue_item_before_them_and_run_until_last_seen() {
        let cycles = vec![
            Cycle { at_ms: 10_000, arrivals: vec![arrival(1, 4_000), arrival(2, 9_000)], ..Default::default() },
            Cycle { at_ms: 20_000, build_starts: vec![start("a", 15_000)], ..Default::default() },
            // A restart: item 2 and build a are seen again, and count once.
            Cycle { at_ms: 30_000, arrivals: vec![arrival(2, 9_000), arrival(3, 28_000)], build_starts: vec![start("a", 15_000), start("b", 21_000)], ..Default::default() },
            Cycle { at_ms: 40_000, build_ends: vec![end("a", 40_000)], build_starts: vec![start("c", 35_000)], ..Default::default() },
            Cycle {
                at_ms: 50_000,
                build_ends: vec![end("b", 50_000)],
                launch_failed: vec![LaunchFailureRecord { template: "linux".into(), zone: "z".into(), instance_type: "t".into(), spot: true, capacity: true, code: "OperationDenied.NoStock".into() }],
                ..Default::default()
            },
        ];
        let (trace, summary) = trace_from_journal(&[file(cycles)]).unwrap();
        let got: Vec<(u64, Option<&str>, u64)> = trace.builds.iter().map(|b| (b.at_ms, b.label.as_deref(), b.duration_ms)).collect();
        let linux = Some("linux&&docker");
        // a: item 1 (4 s), 15 s..40 s; b: item 2 (9 s), 21 s..50 s; c: item 3 (28 s), 35 s..journal end 50 s.
        assert_eq!(got, [(4_000, linux, 25_000), (9_000, linux, 29_000), (28_000, linux, 15_000)]);
        assert_eq!(summary, Summary { cycles: 5, paired: 3, unqueued: 0, never_started: 0, dropped: 0 });
        assert_eq!((trace.start_ms, trace.end_ms), (4_000, 50_000));
        assert_eq!(
            trace.events,
            [CloudEvent::Stockout { zone: "z".into(), instance_type: Some("t".into()), spot: Some(true), from_ms: 50_000, until_ms: 50_000 + STOCKOUT_WINDOW_MS }]
        );
    }

    #[test]
    fn unqueued_builds_arrive_at_their_start_and_unstarted_items_take_the_median() {
        let cycles = vec![
            Cycle { at_ms: 10_000, build_starts: vec![start("a", 8_000), start("b", 9_000), start("c", 9_500)], ..Default::default() },
            Cycle { at_ms: 20_000, arrivals: vec![arrival(5, 19_000)], build_ends: vec![end("a", 20_000), end("b", 20_000), end("c", 20_000)], ..Default::default() },
            Cycle { at_ms: 30_000, arrivals: vec![Arrival { template: "any".into(), queue_id: 6, since_ms: 29_000 }], ..Default::default() },
        ];
        let (trace, summary) = trace_from_journal(&[file(cycles)]).unwrap();
        let got: Vec<(u64, u64)> = trace.builds.iter().map(|b| (b.at_ms, b.duration_ms)).collect();
        // Durations 12 s, 11 s, 10.5 s: the median is 11 s.
        assert_eq!(got, [(8_000, 12_000), (9_000, 11_000), (9_500, 10_500), (19_000, 11_000)]);
        assert_eq!(summary, Summary { cycles: 3, paired: 0, unqueued: 3, never_started: 1, dropped: 1 });
    }

    #[test]
    fn an_empty_journal_is_an_error() {
        assert!(trace_from_journal(&[file(vec![])]).unwrap_err().to_string().contains("no cycles"));
    }
}
