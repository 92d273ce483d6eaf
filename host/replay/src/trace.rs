//! Traces: the workload a replay runs, as JSON lines.
//!
//! The first line is a header, `{"format":"ecsp-trace","version":1,"start_ms":…,"end_ms":…}`;
//! every other line is one record: a build (`{"build":{"at_ms":…,"label":…,"duration_ms":…}}`),
//! a stock-out of an offering for a while, or a spot reclaim. Times are ms since the Unix
//! epoch. Lines need not be sorted; blank lines are skipped. `docs/replay.md` has the format.

use std::fmt;
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// The format name in a trace's header line.
pub const FORMAT: &str = "ecsp-trace";
/// The trace format version this build reads and writes.
pub const VERSION: u32 = 1;

/// A whole workload.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trace {
    /// When the trace starts (the replay's first cycle), ms since the Unix epoch.
    pub start_ms: u64,
    /// When arrivals stop; the replay runs on until the queue is empty.
    pub end_ms: u64,
    /// Builds, sorted by arrival.
    pub builds: Vec<Build>,
    /// Cloud events, sorted by time.
    pub events: Vec<CloudEvent>,
}

/// One build of the workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// When it enters the queue, ms since the Unix epoch.
    pub at_ms: u64,
    /// Its label expression as Jenkins renders it; `None` runs on any node in normal mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// How long it runs once on an executor, ms.
    pub duration_ms: u64,
}

/// Something the cloud does on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum CloudEvent {
    /// No stock of an offering between two times: launches there fail with `NoStock`.
    Stockout {
        /// Zone.
        zone: String,
        /// Instance type; every type of the zone when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance_type: Option<String>,
        /// Spot capacity only (`true`), on-demand only (`false`), or both when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spot: Option<bool>,
        /// From, ms since the Unix epoch.
        from_ms: u64,
        /// Until (exclusive), ms since the Unix epoch.
        until_ms: u64,
    },
    /// The cloud reclaims the spot instances of a zone (and type): a `Recycling` lock at
    /// `at_ms`, deletion five minutes later, as ECS does.
    Reclaim {
        /// When the notice comes, ms since the Unix epoch.
        at_ms: u64,
        /// Zone.
        zone: String,
        /// Instance type; every spot type of the zone when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance_type: Option<String>,
    },
}

impl CloudEvent {
    /// When the event begins.
    pub fn at_ms(&self) -> u64 {
        match self {
            CloudEvent::Stockout { from_ms, .. } => *from_ms,
            CloudEvent::Reclaim { at_ms, .. } => *at_ms,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    start_ms: u64,
    end_ms: u64,
}

/// One record line.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
enum Record {
    Build(Build),
    Stockout(serde_json::Value),
    Reclaim(serde_json::Value),
}

/// A trace that cannot be read: which line, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub struct TraceError {
    /// 1-based line number; 0 when the error is not about one line (I/O, empty input).
    pub line: usize,
    /// What is wrong, naming the field where serde does.
    pub message: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 { write!(f, "{}", self.message) } else { write!(f, "line {}: {}", self.line, self.message) }
    }
}

fn at(line: usize, message: impl Into<String>) -> TraceError {
    TraceError { line, message: message.into() }
}

impl Trace {
    /// Reads a trace, checking the header and every line; the first bad line is the error.
    pub fn read(input: impl BufRead) -> Result<Trace, TraceError> {
        let mut lines = input.lines().enumerate().map(|(i, l)| (i + 1, l));
        let header = loop {
            match lines.next() {
                None => return Err(at(0, "the trace is empty: expected a header line")),
                Some((n, Err(e))) => return Err(at(n, format!("cannot be read: {e}"))),
                Some((_, Ok(l))) if l.trim().is_empty() => continue,
                Some((n, Ok(l))) => break (n, l),
            }
        };
        let h: Header = serde_json::from_str(&header.1)
            .map_err(|e| at(header.0, format!("not a trace header ({e}); expected {{\"format\":\"{FORMAT}\",\"version\":{VERSION},\"start_ms\":…,\"end_ms\":…}}")))?;
        if h.format != FORMAT {
            return Err(at(header.0, format!("format is {:?}, expected {FORMAT:?}", h.format)));
        }
        if h.version != VERSION {
            return Err(at(header.0, format!("trace version {} is not supported (this build reads version {VERSION})", h.version)));
        }
        if h.end_ms < h.start_ms {
            return Err(at(header.0, "end_ms is before start_ms"));
        }
        let mut trace = Trace { start_ms: h.start_ms, end_ms: h.end_ms, ..Trace::default() };
        for (n, line) in lines {
            let line = line.map_err(|e| at(n, format!("cannot be read: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            let record: Record = serde_json::from_str(&line).map_err(|e| at(n, e.to_string()))?;
            match record {
                Record::Build(b) => {
                    if b.at_ms < h.start_ms || b.at_ms > h.end_ms {
                        return Err(at(n, format!("build.at_ms {} is outside the trace ({}..={})", b.at_ms, h.start_ms, h.end_ms)));
                    }
                    if let Some(label) = &b.label
                        && let Err(e) = ecsp_jenkins::label::LabelExpr::parse(label)
                    {
                        return Err(at(n, format!("build.label {label:?} is not a label expression: {e}")));
                    }
                    trace.builds.push(b);
                }
                Record::Stockout(v) => {
                    let e: CloudEvent = serde_json::from_value(serde_json::json!({ "stockout": v }))
                        .map_err(|e| at(n, format!("stockout: {e}")))?;
                    if let CloudEvent::Stockout { from_ms, until_ms, .. } = &e
                        && until_ms < from_ms
                    {
                        return Err(at(n, "stockout.until_ms is before stockout.from_ms"));
                    }
                    trace.events.push(e);
                }
                Record::Reclaim(v) => {
                    let e = serde_json::from_value(serde_json::json!({ "reclaim": v })).map_err(|e| at(n, format!("reclaim: {e}")))?;
                    trace.events.push(e);
                }
            }
        }
        trace.sort();
        Ok(trace)
    }

    /// Sorts builds by arrival and events by time (stable: equal times keep file order).
    pub fn sort(&mut self) {
        self.builds.sort_by_key(|b| b.at_ms);
        self.events.sort_by_key(CloudEvent::at_ms);
    }

    /// Writes the trace in the format [`Trace::read`] reads.
    pub fn write(&self, mut out: impl Write) -> std::io::Result<()> {
        let header = Header { format: FORMAT.into(), version: VERSION, start_ms: self.start_ms, end_ms: self.end_ms };
        writeln!(out, "{}", serde_json::to_string(&header)?)?;
        for b in &self.builds {
            writeln!(out, "{}", serde_json::to_string(&Record::Build(b.clone()))?)?;
        }
        for e in &self.events {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"format":"ecsp-trace","version":1,"start_ms":1000,"end_ms":100000}"#;

    fn read(text: &str) -> Result<Trace, TraceError> {
        Trace::read(text.as_bytes())
    }

    #[test]
    fn a_written_trace_reads_back_the_same() {
        let trace = Trace {
            start_ms: 1000,
            end_ms: 100_000,
            builds: vec![
                Build { at_ms: 1000, label: Some("linux && docker".into()), duration_ms: 60_000 },
                Build { at_ms: 2000, label: None, duration_ms: 5 },
            ],
            events: vec![
                CloudEvent::Stockout { zone: "z-a".into(), instance_type: None, spot: Some(true), from_ms: 1, until_ms: 9 },
                CloudEvent::Reclaim { at_ms: 50, zone: "z-b".into(), instance_type: Some("ecs.c7.large".into()) },
            ],
        };
        let mut bytes = Vec::new();
        trace.write(&mut bytes).unwrap();
        let mut expected = trace.clone();
        expected.sort();
        assert_eq!(read(std::str::from_utf8(&bytes).unwrap()).unwrap(), expected);
    }

    #[test]
    fn a_bad_line_is_named_with_its_number_and_field() {
        let text = format!("{HEADER}\n{{\"build\":{{\"at_ms\":2000,\"duration_ms\":5}}}}\n\n{{\"build\":{{\"at_ms\":3000}}}}\n");
        let e = read(&text).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.to_string().contains("duration_ms"), "{e}");

        let e = read(&format!("{HEADER}\n{{\"build\":{{\"at_ms\":\"soon\",\"duration_ms\":5}}}}")).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("line 2: invalid type: string \"soon\""), "{e}");

        let e = read(&format!("{HEADER}\n{{\"build\":{{\"at_ms\":2000,\"duration_ms\":5,\"label\":\"a &&\"}}}}")).unwrap_err();
        assert!(e.to_string().contains("build.label"), "{e}");

        let e = read(&format!("{HEADER}\n{{\"stockout\":{{\"zone\":\"z\",\"from_ms\":5,\"until_ms\":1}}}}")).unwrap_err();
        assert!(e.to_string().contains("until_ms is before"), "{e}");

        let e = read(&format!("{HEADER}\n{{\"bild\":{{}}}}")).unwrap_err();
        assert!(e.to_string().contains("unknown variant `bild`"), "{e}");
    }

    #[test]
    fn the_header_is_checked() {
        assert!(read("").unwrap_err().to_string().contains("empty"));
        assert!(read("{\"build\":{}}").unwrap_err().to_string().contains("not a trace header"));
        let e = read(r#"{"format":"ecsp-trace","version":2,"start_ms":0,"end_ms":1}"#).unwrap_err();
        assert!(e.to_string().contains("version 2 is not supported"), "{e}");
        let e = read(&format!("{HEADER}\n{{\"build\":{{\"at_ms\":200000,\"duration_ms\":5}}}}")).unwrap_err();
        assert!(e.to_string().contains("outside the trace"), "{e}");
    }
}
