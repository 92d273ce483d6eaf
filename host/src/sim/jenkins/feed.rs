//! `GET /computer/<name>/rssAll`: the Atom feed of the builds that ran on a node, as Jenkins
//! renders `Computer.doRssAll` (`RSS.rss` with `Run`'s feed adapter and `/hudson/atom.jelly`).
//!
//! Like Jenkins it lists the node's freestyle builds (`RunList.node` keeps `AbstractBuild`s
//! only, so Pipeline runs are absent), finished and in progress, newest first. The history is
//! the controller's, not the connection's: it survives agent reconnects and provisioner
//! restarts, and goes when the builds do (never, here).

use super::state::{JobKind, State, xml_escape};

/// One build as the feed shows it.
struct Entry<'a> {
    job: &'a str,
    number: u64,
    started_ms: u64,
    /// `BuildStatusSummary.message`: `stable`, `broken since this build`, `?` while building.
    status: &'a str,
}

/// The feed of node `name`, or `None` if there is no such node.
pub(crate) fn rss_all(st: &State, name: &str) -> Option<String> {
    let node = st.nodes.get(name)?;
    let mut entries: Vec<Entry> = st
        .completed
        .iter()
        .filter(|b| b.node == name && b.kind == JobKind::Freestyle)
        .map(|b| Entry {
            job: &b.job,
            number: b.number,
            started_ms: b.started_ms,
            status: if b.result == "SUCCESS" { "stable" } else { "broken since this build" },
        })
        .chain(node.executors.iter().flatten().filter(|r| r.kind == JobKind::Freestyle).map(|r| Entry {
            job: &r.job,
            number: r.number,
            started_ms: r.started_ms,
            status: "?",
        }))
        .collect();
    entries.sort_by(|a, b| b.started_ms.cmp(&a.started_ms).then(b.number.cmp(&a.number)));
    let updated = entries.first().map_or(0, |e| e.started_ms);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>{}</title>\
         <link rel=\"alternate\" type=\"text/html\" href=\"{}computer/{}/\"></link><updated>{}</updated>\
         <author><name>Jenkins Server</name></author><id>urn:uuid:903deee0-7bfa-11db-9fe1-0800200c9a66</id>",
        xml_escape(&format!("Jenkins:{name} (all builds)")),
        xml_escape(&st.root_url),
        xml_escape(&crate::jenkins::client::encode_segment(name)),
        xs_date(updated),
    );
    for e in &entries {
        out.push_str(&format!(
            "<entry><title>{}</title><link rel=\"alternate\" type=\"text/html\" href=\"{}\"></link>\
             <id>tag:hudson.dev.java.net,{}:{}:{}</id><published>{}</published><updated>{}</updated></entry>",
            xml_escape(&format!("{} #{} ({})", e.job, e.number, e.status)),
            xml_escape(&st.build_url(e.job, e.number)),
            year(e.started_ms),
            xml_escape(e.job),
            e.number,
            xs_date(e.started_ms),
            xs_date(e.started_ms),
        ));
    }
    out.push_str("</feed>");
    Some(out)
}

fn datetime(ms: u64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn year(ms: u64) -> i32 {
    datetime(ms).year()
}

/// `h.xsDate`: `yyyy-MM-ddTHH:mm:ssZ` in UTC.
fn xs_date(ms: u64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    datetime(ms).format(&format).unwrap_or_default()
}
