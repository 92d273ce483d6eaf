//! The activity record in an owned node's description: Jenkins exports no idle time and no
//! build count per node, and what one process keeps in memory dies with it. Written into the
//! description after the owner mark, it survives restarts like the rest of the node's state.
//! Tested with the adapter that reads it (`jenkins::tests`).

use ecsp_engine::ports::ActivityRecord;

/// Follows the owner in an owned node's description: when the node last became idle (ms since
/// the Unix epoch). Jenkins exports no idle time, and one kept in memory dies with the process;
/// kept here, it survives restarts like the rest of the node's state.
pub const IDLE_SINCE_MARKER: &str = "; idle since ";
/// Follows the owner in an owned node's description: how many builds the node has started,
/// and the key of the last one (`<url>#<number>`), for `max-uses` across restarts.
pub const USES_MARKER: &str = "; uses ";

/// The record a description holds (nothing, if it holds none).
pub fn activity_of(description: &str) -> ActivityRecord {
    let idle_since_ms = description
        .rsplit_once(IDLE_SINCE_MARKER)
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok());
    let uses = description.rsplit_once(USES_MARKER).and_then(|(_, rest)| {
        let rest = rest.split(IDLE_SINCE_MARKER).next()?;
        let (n, key) = rest.split_once(" after ")?;
        Some((n.parse().ok()?, key.to_owned()))
    });
    ActivityRecord { idle_since_ms, uses }
}

/// `description` with `record` in place of any earlier one.
pub fn with_activity(description: &str, record: &ActivityRecord) -> String {
    let cut = [USES_MARKER, IDLE_SINCE_MARKER]
        .iter()
        .filter_map(|m| description.find(m))
        .min()
        .unwrap_or(description.len());
    let mut out = description[..cut].to_owned();
    if let Some((n, key)) = &record.uses {
        out.push_str(&format!("{USES_MARKER}{n} after {key}"));
    }
    if let Some(t) = record.idle_since_ms {
        out.push_str(&format!("{IDLE_SINCE_MARKER}{t}"));
    }
    out
}
