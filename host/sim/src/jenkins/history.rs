//! Build history per job, shown as Jenkins shows it in `/job/<name>/api/json`: `builds`
//! (the newest 100, as `Job.getNewBuilds`) and `allBuilds` (every build kept, only when a
//! `tree` asks for it), newest first.
//!
//! Each finished build carries a `jenkins.metrics.impl.TimeInQueueAction`, the action the
//! Metrics plugin adds: core Jenkins exports no queue time, so an importer that wants arrival
//! times needs that plugin, and the emulator imitates it with the queue times it measured.
//! The state keeps only the newest `BUILDS_KEPT` finished builds of a job, as a build
//! discarder would, so a long benchmark does not grow without bound.

use serde_json::{Value, json};

use super::state::{CompletedBuild, Item, Job, JobKind, Running, State};

/// Builds in a job's `builds` list; `allBuilds` has every build kept.
pub const NEW_BUILDS: usize = 100;

/// Adds a job's `builds` (and, when `all`, `allBuilds`) to its rendered JSON: builds in progress
/// (on an executor, or a Pipeline run whose `node` block waits in the queue), then finished
/// ones, newest first.
pub(crate) fn add_builds(st: &State, job: &Job, v: &mut Value, all: bool) {
    let name = &job.spec.name;
    let mut running: Vec<(u64, Value)> = st
        .nodes
        .values()
        .flat_map(|n| n.executors.iter().flatten().map(move |r| (n, r)))
        .filter(|(_, r)| &r.job == name)
        .map(|(n, r)| (r.number, running_json(r, &n.name, st.build_url(name, r.number))))
        .collect();
    running.extend(st.queue.iter().filter(|i| &i.job == name).filter_map(|i| {
        i.run_number.map(|number| (number, waiting_run_json(i, number, st.build_url(name, number))))
    }));
    running.sort_by_key(|(number, _)| std::cmp::Reverse(*number));
    let finished = job.history.iter().rev().map(|b| completed_json(b, st.build_url(name, b.number)));
    let builds: Vec<Value> = running.into_iter().map(|(_, v)| v).chain(finished).collect();
    if all {
        v["allBuilds"] = json!(builds);
    }
    v["builds"] = json!(builds.into_iter().take(NEW_BUILDS).collect::<Vec<_>>());
}

/// A build as the job's build lists render it; `url` is the build's own URL.
fn completed_json(b: &CompletedBuild, url: String) -> Value {
    let (class, timestamp, queuing) = match b.kind {
        JobKind::Freestyle => ("hudson.model.FreeStyleBuild", b.started_ms, b.wait_ms),
        // A Pipeline run starts when triggered: its `node` block waits inside the run, so the
        // wait is part of the run's duration, and the run's own time in the queue is nil.
        JobKind::Pipeline => ("org.jenkinsci.plugins.workflow.job.WorkflowRun", b.enqueued_ms, 0),
    };
    let mut v = json!({
        "_class": class, "number": b.number, "id": b.number.to_string(), "url": url,
        "displayName": format!("#{}", b.number), "fullDisplayName": format!("{} #{}", b.job, b.number),
        "timestamp": timestamp, "duration": b.finished_ms.saturating_sub(timestamp),
        "estimatedDuration": b.finished_ms.saturating_sub(timestamp), "result": b.result, "building": false,
        "queueId": b.queue_id, "actions": [cause_action(), metrics_action(queuing)],
    });
    // `builtOn` is `AbstractBuild`'s: freestyle builds have it, Pipeline runs do not.
    if b.kind == JobKind::Freestyle {
        v["builtOn"] = json!(b.node);
    }
    v
}

/// A freestyle build on an executor now, or a Pipeline run whose `node` block runs.
fn running_json(r: &Running, node: &str, url: String) -> Value {
    match r.kind {
        JobKind::Freestyle => in_progress(r.kind, &r.job, r.number, r.started_ms, r.queue_id, Some(node), url),
        JobKind::Pipeline => in_progress(r.kind, &r.job, r.number, r.enqueued_ms, r.queue_id, None, url),
    }
}

/// A Pipeline run whose `node` block still waits in the queue (it is building already).
fn waiting_run_json(item: &Item, number: u64, url: String) -> Value {
    in_progress(item.kind, &item.job, number, item.in_queue_since, item.id, None, url)
}

fn in_progress(kind: JobKind, job: &str, number: u64, timestamp: u64, queue_id: u64, node: Option<&str>, url: String) -> Value {
    let class = match kind {
        JobKind::Freestyle => "hudson.model.FreeStyleBuild",
        JobKind::Pipeline => "org.jenkinsci.plugins.workflow.job.WorkflowRun",
    };
    // While building, Jenkins shows duration 0 and a null result.
    let mut v = json!({
        "_class": class, "number": number, "id": number.to_string(), "url": url,
        "displayName": format!("#{number}"), "fullDisplayName": format!("{job} #{number}"),
        "timestamp": timestamp, "duration": 0, "result": null, "building": true, "queueId": queue_id,
        "actions": [cause_action()],
    });
    if let Some(node) = node {
        v["builtOn"] = json!(node);
    }
    v
}

fn cause_action() -> Value {
    json!({"_class": "hudson.model.CauseAction", "causes": [{"_class": "hudson.model.Cause$UserIdCause", "shortDescription": "Started by user admin"}]})
}

/// The Metrics plugin's `TimeInQueueAction`. Emulated items are buildable at once (no quiet
/// period, nothing blocks them), so all their queue time is buildable time.
fn metrics_action(queuing_ms: u64) -> Value {
    json!({"_class": "jenkins.metrics.impl.TimeInQueueAction", "queuingDurationMillis": queuing_ms,
           "buildableDurationMillis": queuing_ms, "waitingDurationMillis": 0, "blockedDurationMillis": 0})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jenkins::state::{Connection, EnqueueRequest, BUILDS_KEPT, node_from_form};
    use crate::jenkins::tree;

    fn state_with_node() -> State {
        let mut s = State::new("http://127.0.0.1:1/".into(), [7; 32], 0);
        let mut n = node_from_form("l1", &json!({"remoteFS": "/w", "labelString": "linux", "numExecutors": 1})).unwrap();
        let (kick, _) = tokio::sync::watch::channel(false);
        n.connection = Some(Connection { id: 0, cookie: String::new(), kick });
        s.nodes.insert("l1".into(), n);
        s
    }

    fn enqueue(s: &mut State, job: &str, kind: JobKind, count: u32) -> u64 {
        let req = EnqueueRequest { job: Some(job.into()), kind, label: Some("linux".into()), duration_ms: 1000, count: Some(count) };
        let id = s.enqueue(&req).unwrap()[0];
        s.queue.iter().find(|i| i.id == id).unwrap().in_queue_since
    }

    fn builds(s: &State, job: &str, tree_: &str) -> Value {
        let mut v = s.job_json(&s.jobs[job]);
        add_builds(s, &s.jobs[job], &mut v, tree_.contains("allBuilds"));
        tree::apply(&v, &tree::parse(tree_).unwrap())
    }

    #[test]
    fn finished_builds_show_start_duration_node_and_the_metrics_queue_time() {
        let mut s = state_with_node();
        let t0 = enqueue(&mut s, "fs", JobKind::Freestyle, 2);
        s.step(t0 + 3000); // #1 starts after 3 s in the queue
        let running = builds(&s, "fs", "builds[number,timestamp,duration,result,building,builtOn]");
        assert_eq!(
            running,
            json!({"_class": "hudson.model.FreeStyleProject", "builds": [{"_class": "hudson.model.FreeStyleBuild",
                "number": 1, "timestamp": t0 + 3000, "duration": 0, "result": null, "building": true, "builtOn": "l1"}]})
        );
        s.step(t0 + 4000); // #1 ends, #2 starts after 4 s
        s.step(t0 + 5500); // #2 ends (late: the scheduler's step came 500 ms after its end)
        let tree_ = "builds[number,timestamp,duration,result,builtOn,queueId,actions[queuingDurationMillis,buildableDurationMillis,waitingDurationMillis,blockedDurationMillis]]";
        let v = builds(&s, "fs", tree_);
        let metrics = |q: u64| json!({"_class": "jenkins.metrics.impl.TimeInQueueAction", "queuingDurationMillis": q,
            "buildableDurationMillis": q, "waitingDurationMillis": 0, "blockedDurationMillis": 0});
        let build = |n: u64, start: u64, duration: u64, queue_id: u64, q: u64| json!({"_class": "hudson.model.FreeStyleBuild",
            "number": n, "timestamp": start, "duration": duration, "result": "SUCCESS", "builtOn": "l1", "queueId": queue_id,
            "actions": [{"_class": "hudson.model.CauseAction"}, metrics(q)]});
        assert_eq!(v["builds"], json!([build(2, t0 + 4000, 1500, 2, 4000), build(1, t0 + 3000, 1000, 1, 3000)]));
        // The Metrics numbers are the queue waits the scheduler measured.
        let waits: Vec<u64> = s.stats().completed.iter().rev().map(|c| c.wait_ms).collect();
        let shown: Vec<u64> = v["builds"].as_array().unwrap().iter().map(|b| b["actions"][1]["queuingDurationMillis"].as_u64().unwrap()).collect();
        assert_eq!(shown, waits);
        // `allBuilds` only when asked for; a range cuts the list.
        assert!(builds(&s, "fs", "builds[number]").get("allBuilds").is_none());
        assert_eq!(builds(&s, "fs", "allBuilds[number]{1,}")["allBuilds"], json!([{"_class": "hudson.model.FreeStyleBuild", "number": 1}]));
    }

    #[test]
    fn a_pipeline_run_starts_when_triggered_and_its_node_wait_is_in_its_duration() {
        let mut s = state_with_node();
        let t0 = enqueue(&mut s, "pipe", JobKind::Pipeline, 1);
        // Waiting for its `node` block, the run is building already.
        let v = builds(&s, "pipe", "builds[number,timestamp,building,builtOn]");
        assert_eq!(v["builds"], json!([{"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun", "number": 1, "timestamp": t0, "building": true}]));
        s.step(t0 + 2000);
        s.step(t0 + 3000);
        let v = builds(&s, "pipe", "builds[timestamp,duration,result,builtOn,actions[queuingDurationMillis]]");
        assert_eq!(
            v["builds"][0],
            json!({"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun", "timestamp": t0, "duration": 3000, "result": "SUCCESS",
                "actions": [{"_class": "hudson.model.CauseAction"}, {"_class": "jenkins.metrics.impl.TimeInQueueAction", "queuingDurationMillis": 0}]})
        );
    }

    #[test]
    fn the_history_is_bounded_and_builds_shows_the_newest_hundred() {
        let mut s = state_with_node();
        let t0 = enqueue(&mut s, "many", JobKind::Freestyle, BUILDS_KEPT as u32 + 5);
        for i in 0..(BUILDS_KEPT as u64 + 5) * 2 {
            s.step(t0 + i * 1000);
        }
        assert_eq!(s.jobs["many"].history.len(), BUILDS_KEPT);
        let v = builds(&s, "many", "builds[number],allBuilds[number]");
        assert_eq!(v["builds"].as_array().unwrap().len(), NEW_BUILDS);
        let all = v["allBuilds"].as_array().unwrap();
        assert_eq!(all.len(), BUILDS_KEPT);
        assert_eq!((all[0]["number"].as_u64(), all[BUILDS_KEPT - 1]["number"].as_u64()), (Some(BUILDS_KEPT as u64 + 5), Some(6)));
    }
}
