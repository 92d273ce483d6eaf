//! Traces from a Jenkins controller's build history (`policy trace import`): the builds its
//! REST API lists, turned into trace builds. Reading them over HTTP is the binary's part; this
//! module only interprets what was read, so it needs no client.
//!
//! Per completed build: the arrival is `timestamp` (when it left the queue and started) minus
//! the Metrics plugin's `queuingDurationMillis` when the build carries that plugin's
//! `TimeInQueueAction`, else `timestamp` itself; the label is the job's `labelExpression`;
//! the duration is `duration`. Builds still running are skipped.

use serde::Deserialize;
use serde_json::Value;

use crate::trace::{Build, Trace};

/// One job's history as read from Jenkins.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobHistory {
    /// Full name (`folder/job`), for messages.
    pub name: String,
    /// Whether the job exports a `labelExpression` (freestyle and other `AbstractProject`s do;
    /// Pipeline jobs do not, their labels are in the script).
    pub exports_label: bool,
    /// The job's label expression; `None` when it has none (or exports none).
    pub label: Option<String>,
    /// Its builds as the API renders them (`number`, `timestamp`, `duration`, `result`,
    /// `building`, `actions[queuingDurationMillis]`), in any order.
    pub builds: Vec<Value>,
}

/// The period to import; builds arriving outside it are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    /// From (inclusive), ms since the Unix epoch; the trace starts here when given.
    pub since_ms: Option<u64>,
    /// Until (inclusive), ms since the Unix epoch; the trace ends here when given.
    pub until_ms: Option<u64>,
}

impl Window {
    /// Whether a build arriving at `at_ms` falls in the period.
    pub fn contains(&self, at_ms: u64) -> bool {
        self.since_ms.is_none_or(|s| at_ms >= s) && self.until_ms.is_none_or(|u| at_ms <= u)
    }

    /// The period in words, after "arrived": `at all`, or `between A and B (ms since the Unix
    /// epoch)`.
    pub fn describe(&self) -> String {
        match (self.since_ms, self.until_ms) {
            (None, None) => "at all".to_owned(),
            (s, u) => format!(
                "between {} and {} (ms since the Unix epoch)",
                s.map_or("the first".into(), |s| s.to_string()),
                u.map_or("the last".into(), |u| u.to_string())
            ),
        }
    }
}

/// A trace and what the import had to leave out or guess.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The trace, builds sorted by arrival.
    pub trace: Trace,
    /// Builds still running, skipped.
    pub running: usize,
    /// Completed builds arriving outside the window, skipped.
    pub outside: usize,
    /// Imported builds without the Metrics plugin's queue time: their arrival is their start.
    pub without_queue_time: usize,
    /// Jobs with imported builds that export no label expression (Pipeline jobs): their
    /// builds are unlabelled in the trace.
    pub unlabelled_jobs: Vec<String>,
}

/// What makes a history unusable, naming the job and build.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ImportError {
    /// A build entry that is not what Jenkins renders.
    #[error("job {job:?}, build {build}: {message}")]
    Build {
        /// The job's full name.
        job: String,
        /// `#N`, or a description when the entry has no number.
        build: String,
        /// What is wrong.
        message: String,
    },
    /// A job whose label expression cannot be used.
    #[error("job {job:?}: {message}")]
    Job {
        /// The job's full name.
        job: String,
        /// What is wrong.
        message: String,
    },
    /// Nothing to write.
    #[error("no completed build arrived {0}")]
    Empty(String),
}

/// The fields of a build the import reads; the API may render more.
#[derive(Deserialize)]
struct RemoteBuild {
    /// Required (an entry without one is no build), though only messages use it.
    #[serde(rename = "number")]
    _number: u64,
    timestamp: u64,
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    building: bool,
    #[serde(default)]
    actions: Vec<Value>,
}

/// The class of the Metrics plugin's action that holds a build's time in the queue.
pub const TIME_IN_QUEUE_ACTION: &str = "jenkins.metrics.impl.TimeInQueueAction";

/// Turns job histories into a trace; the first bad entry is the error.
pub fn to_trace(jobs: &[JobHistory], window: Window) -> Result<Imported, ImportError> {
    let mut builds = Vec::new();
    let (mut running, mut outside, mut without_queue_time) = (0, 0, 0);
    let mut unlabelled_jobs = Vec::new();
    for job in jobs {
        let label = job.label.as_deref().map(str::trim).filter(|l| !l.is_empty());
        if let Some(l) = label
            && let Err(e) = ecsp_jenkins::label::LabelExpr::parse(l)
        {
            return Err(ImportError::Job { job: job.name.clone(), message: format!("labelExpression {l:?} is not a label expression: {e}") });
        }
        let mut imported_any = false;
        for v in &job.builds {
            let bad = |message: String| ImportError::Build {
                job: job.name.clone(),
                build: v.get("number").and_then(Value::as_u64).map_or_else(|| format!("entry {v}"), |n| format!("#{n}")),
                message,
            };
            let b: RemoteBuild = serde_json::from_value(v.clone()).map_err(|e| bad(e.to_string()))?;
            // Jenkins shows a null result (and duration 0) until the build ends.
            if b.building || b.result.is_none() {
                running += 1;
                continue;
            }
            let duration_ms = b.duration.ok_or_else(|| bad("missing field `duration`".into()))?;
            let queued = queue_time(&b.actions).map_err(bad)?;
            let at_ms = match queued {
                Some(q) => b.timestamp.checked_sub(q).ok_or_else(|| bad(format!("queuingDurationMillis {q} is more than the timestamp {}", b.timestamp)))?,
                None => b.timestamp,
            };
            if !window.contains(at_ms) {
                outside += 1;
                continue;
            }
            if queued.is_none() {
                without_queue_time += 1;
            }
            imported_any = true;
            builds.push(Build { at_ms, label: label.map(str::to_owned), duration_ms });
        }
        if imported_any && !job.exports_label {
            unlabelled_jobs.push(job.name.clone());
        }
    }
    let (first, last) = (builds.iter().map(|b| b.at_ms).min(), builds.iter().map(|b| b.at_ms).max());
    let (Some(first), Some(last)) = (first, last) else {
        return Err(ImportError::Empty(window.describe()));
    };
    let mut trace = Trace { start_ms: window.since_ms.unwrap_or(first), end_ms: window.until_ms.unwrap_or(last), builds, events: Vec::new() };
    trace.sort();
    Ok(Imported { trace, running, outside, without_queue_time, unlabelled_jobs })
}

/// `queuingDurationMillis` of the build's `TimeInQueueAction`, if it has one.
fn queue_time(actions: &[Value]) -> Result<Option<u64>, String> {
    // Match on the field: a `tree` that asks only for it still gets `_class`, but the field
    // alone is enough, and no other action exports it.
    let Some(v) = actions.iter().find_map(|a| a.get("queuingDurationMillis")) else { return Ok(None) };
    v.as_u64().map(Some).ok_or_else(|| format!("{TIME_IN_QUEUE_ACTION}.queuingDurationMillis is {v}, not a number of ms"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(number: u64, timestamp: u64, duration: u64, queued: Option<u64>) -> Value {
        let mut actions = vec![json!({"_class": "hudson.model.CauseAction"})];
        if let Some(q) = queued {
            actions.push(json!({"_class": TIME_IN_QUEUE_ACTION, "queuingDurationMillis": q}));
        }
        json!({"_class": "hudson.model.FreeStyleBuild", "number": number, "timestamp": timestamp, "duration": duration,
               "result": "SUCCESS", "building": false, "builtOn": "l1", "actions": actions})
    }

    fn job(name: &str, label: Option<&str>, builds: Vec<Value>) -> JobHistory {
        JobHistory { name: name.into(), exports_label: true, label: label.map(str::to_owned), builds }
    }

    #[test]
    fn arrivals_are_starts_minus_the_metrics_queue_time() {
        let running = json!({"number": 4, "timestamp": 9000, "duration": 0, "result": null, "building": true});
        let jobs = [
            job("a", Some("linux && docker"), vec![build(2, 5000, 700, Some(1500)), running, build(1, 2000, 300, Some(0))]),
            job("b", Some(""), vec![build(1, 4000, 100, None)]),
            JobHistory { name: "f/pipe".into(), exports_label: false, label: None, builds: vec![build(7, 3000, 50, Some(0))] },
        ];
        let i = to_trace(&jobs, Window::default()).unwrap();
        let b = |at_ms, label: Option<&str>, duration_ms| Build { at_ms, label: label.map(str::to_owned), duration_ms };
        assert_eq!(
            i.trace,
            Trace {
                start_ms: 2000,
                end_ms: 4000,
                builds: vec![b(2000, Some("linux && docker"), 300), b(3000, None, 50), b(3500, Some("linux && docker"), 700), b(4000, None, 100)],
                events: vec![],
            }
        );
        assert_eq!((i.running, i.outside, i.without_queue_time, i.unlabelled_jobs), (1, 0, 1, vec!["f/pipe".to_owned()]));

        let i = to_trace(&jobs, Window { since_ms: Some(2500), until_ms: Some(3600) }).unwrap();
        assert_eq!((i.trace.start_ms, i.trace.end_ms, i.trace.builds.len(), i.outside), (2500, 3600, 2, 2));
        let e = to_trace(&jobs, Window { since_ms: Some(10_000), until_ms: None }).unwrap_err();
        assert_eq!(e.to_string(), "no completed build arrived between 10000 and the last (ms since the Unix epoch)");
    }

    #[test]
    fn a_malformed_entry_names_the_job_and_build() {
        let mut bad = build(3, 5000, 700, None);
        bad["duration"] = json!("long");
        let e = to_trace(&[job("a", None, vec![build(2, 1, 1, None), bad])], Window::default()).unwrap_err();
        assert_eq!(e.to_string(), "job \"a\", build #3: invalid type: string \"long\", expected u64");
        let e = to_trace(&[job("a", None, vec![build(5, 100, 1, Some(200))])], Window::default()).unwrap_err();
        assert_eq!(e.to_string(), "job \"a\", build #5: queuingDurationMillis 200 is more than the timestamp 100");
        let e = to_trace(&[job("a", None, vec![json!({"timestamp": 1, "result": "SUCCESS"})])], Window::default()).unwrap_err();
        assert!(e.to_string().contains("missing field `number`"), "{e}");
        let e = to_trace(&[job("a", Some("linux &&"), vec![])], Window::default()).unwrap_err();
        assert!(e.to_string().starts_with("job \"a\": labelExpression \"linux &&\" is not a label expression"), "{e}");
        assert_eq!(to_trace(&[], Window::default()).unwrap_err(), ImportError::Empty("at all".into()));
    }
}
