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
        xml_escape(&ecsp_jenkins::client::encode_segment(name)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jenkins::state::{Connection, EnqueueRequest, node_from_form};
    use crate::now_ms;
    use ecsp_jenkins::node_builds::parse_rss_all;

    fn add_connected(s: &mut State, name: &str) {
        let mut n = node_from_form(name, &serde_json::json!({"remoteFS": "/w", "labelString": "linux", "numExecutors": 1})).unwrap();
        let (kick, _) = tokio::sync::watch::channel(false);
        n.connection = Some(Connection { id: 0, cookie: String::new(), kick });
        s.nodes.insert(name.into(), n);
    }

    #[test]
    fn rss_all_lists_the_nodes_freestyle_builds_as_jenkins_does() {
        let mut s = State::new("http://127.0.0.1:1/".into(), [7; 32], 0);
        add_connected(&mut s, "l1");
        add_connected(&mut s, "l2");
        for kind in [JobKind::Freestyle, JobKind::Pipeline, JobKind::Freestyle] {
            s.enqueue(&EnqueueRequest { label: Some("linux".into()), kind, duration_ms: 100, ..Default::default() }).unwrap();
        }
        let t0 = now_ms();
        s.step(t0); // builds 1 (freestyle) and 2 (pipeline) start on l1 and l2
        s.step(t0 + 100); // both end; build 3 (freestyle) starts on l1
        let l1 = parse_rss_all(&rss_all(&s, "l1").unwrap()).unwrap();
        let running = s.nodes["l1"].executors[0].as_ref().unwrap();
        let exe_key = format!("{}#{}", s.build_url(&running.job, running.number), running.number);
        assert_eq!(l1.len(), 2, "a finished and a running freestyle build: {l1:?}");
        assert_eq!(l1[0].key(), exe_key, "newest first, same key as the executor");
        let l2 = parse_rss_all(&rss_all(&s, "l2").unwrap()).unwrap();
        assert!(l2.is_empty(), "Pipeline runs are not in a node's history: {l2:?}");
        assert!(rss_all(&s, "nope").is_none());
    }
}
