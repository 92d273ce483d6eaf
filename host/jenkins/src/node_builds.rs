//! The builds Jenkins records for one node: `GET /computer/<name>/rssAll`, an Atom feed of
//! `Computer.getBuilds()` (`Computer.doRssAll` -> `RSS.rss(..., getBuilds())`).
//!
//! This is what `max-uses` counts: unlike a poll of busy executors, it shows a build that ran
//! for 100 ms between two polls, and it survives a restart of the provisioner. Its limits, as
//! in Jenkins core: it lists `AbstractBuild`s only (freestyle, matrix, Maven; `RunList.node`),
//! not Pipeline runs, whose `node {}` blocks are counted by polling instead; it lists builds
//! the user may read (Job/Read); and builds in progress are listed too (no `newBuilds()`).
//!
//! Each entry's `<link href>` is the run's absolute URL and its `<id>` ends in the run's id
//! (`tag:hudson.dev.java.net,<year>:<job full name>:<number>`), the same pair as an executor's
//! `currentExecutable`, so both give the same [`NodeBuild::key`].

/// One build the feed lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBuild {
    /// The run's absolute URL (`<root>job/<name>/<number>/`).
    pub url: String,
    /// The build number.
    pub number: u64,
}

impl NodeBuild {
    /// `<url>#<number>`, as [`super::model::Executable::key`] names the same build.
    pub fn key(&self) -> String {
        format!("{}#{}", self.url, self.number)
    }
}

/// The builds of an `rssAll` feed, newest first as Jenkins lists them.
pub fn parse_rss_all(xml: &str) -> Result<Vec<NodeBuild>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("rssAll is not XML: {e}"))?;
    let feed = doc.root_element();
    if !feed.has_tag_name("feed") {
        return Err(format!(
            "rssAll is not an Atom feed (root element <{}>)",
            feed.tag_name().name()
        ));
    }
    feed.children()
        .filter(|n| n.has_tag_name("entry"))
        .map(|entry| {
            let url = entry
                .children()
                .find(|n| n.has_tag_name("link"))
                .and_then(|l| l.attribute("href"))
                .ok_or("an rssAll entry has no <link href>")?;
            let id = entry
                .children()
                .find(|n| n.has_tag_name("id"))
                .and_then(|n| n.text())
                .ok_or("an rssAll entry has no <id>")?;
            let number = id
                .rsplit_once(':')
                .and_then(|(_, n)| n.trim().parse().ok())
                .ok_or_else(|| format!("rssAll entry id {id:?} does not end in a build number"))?;
            Ok(NodeBuild {
                url: url.to_string(),
                number,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A feed as Jenkins 2.4xx renders it (`/hudson/atom.jelly`), two builds on the node.
    const FEED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Jenkins:linux-i-bp1 (all builds)</title><link rel="alternate" type="text/html" href="http://ci.example/computer/linux-i-bp1/"></link><updated>2026-11-30T13:02:11Z</updated><author><name>Jenkins Server</name></author><id>urn:uuid:903deee0-7bfa-11db-9fe1-0800200c9a66</id><entry><title>folder » app #12 (?)</title><link rel="alternate" type="text/html" href="http://ci.example/job/folder/job/app/12/"></link><id>tag:hudson.dev.java.net,2026:folder/app:12</id><published>2026-11-30T13:02:11Z</published><updated>2026-11-30T13:02:11Z</updated></entry><entry><title>smoke #3 (stable)</title><link rel="alternate" type="text/html" href="http://ci.example/job/smoke/3/"></link><id>tag:hudson.dev.java.net,2026:smoke:3</id><published>2026-11-30T13:01:58Z</published><updated>2026-11-30T13:01:58Z</updated></entry></feed>"#;

    #[test]
    fn entries_give_the_same_keys_as_executors() {
        let builds = parse_rss_all(FEED).unwrap();
        assert_eq!(
            builds.iter().map(NodeBuild::key).collect::<Vec<_>>(),
            [
                "http://ci.example/job/folder/job/app/12/#12",
                "http://ci.example/job/smoke/3/#3"
            ]
        );
        let exe = crate::model::Executable {
            url: Some("http://ci.example/job/smoke/3/".into()),
            number: Some(3),
            timestamp: None,
        };
        assert_eq!(exe.key(), builds[1].key());
    }

    #[test]
    fn an_empty_history_and_bad_feeds() {
        let empty = r#"<feed xmlns="http://www.w3.org/2005/Atom"><title>x</title></feed>"#;
        assert_eq!(parse_rss_all(empty).unwrap(), []);
        assert!(parse_rss_all("<html>login</html>").unwrap_err().contains("not an Atom feed"));
        assert!(parse_rss_all("not xml").unwrap_err().contains("not XML"));
        let bad = r#"<feed xmlns="http://www.w3.org/2005/Atom"><entry><link href="u"/><id>tag:x,2026:j:abc</id></entry></feed>"#;
        assert!(parse_rss_all(bad).unwrap_err().contains("build number"));
    }
}
