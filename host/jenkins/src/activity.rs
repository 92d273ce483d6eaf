//! Node activity Jenkins does not export: when a node became idle and how many builds it ran.
//!
//! Feed [`ActivityTracker::observe`] every computer listing; it timestamps idle transitions and
//! counts builds it has not seen before on each node (by executable URL and number), which is
//! what idle timeouts and max-uses limits need.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::model::Computer;

/// What the tracker knows about one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeActivity {
    /// When the tracker first saw the node (epoch ms).
    pub first_seen_ms: u64,
    /// Since when the node has been idle without interruption, if it is idle now.
    pub idle_since_ms: Option<u64>,
    /// Distinct builds seen starting on the node.
    pub builds_started: u32,
    /// Builds running at the last observation.
    pub running: u32,
    /// Whether the node was online (connected and not marked offline) at the last observation.
    pub online: bool,
    /// The key of the last build counted in `builds_started`.
    pub last_build: Option<String>,
}

impl NodeActivity {
    /// How long the node has been idle at `now_ms` (0 if busy).
    pub fn idle_ms(&self, now_ms: u64) -> u64 {
        self.idle_since_ms.map_or(0, |s| now_ms.saturating_sub(s))
    }
}

#[derive(Default)]
struct Tracked {
    activity: NodeActivity,
    /// Keys of the builds running at the last observation.
    current: HashSet<String>,
}

/// Tracks activity of every agent node across successive computer listings.
#[derive(Default)]
pub struct ActivityTracker {
    nodes: HashMap<String, Tracked>,
}

impl ActivityTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one computer listing observed at `now_ms`. Nodes absent from it are forgotten.
    pub fn observe(&mut self, computers: &[Computer], now_ms: u64) {
        let mut seen = HashSet::new();
        for c in computers.iter().filter(|c| !c.is_built_in()) {
            seen.insert(c.display_name.clone());
            let t = self
                .nodes
                .entry(c.display_name.clone())
                .or_insert_with(|| Tracked {
                    activity: NodeActivity {
                        first_seen_ms: now_ms,
                        ..Default::default()
                    },
                    current: HashSet::new(),
                });
            let now_running: HashSet<String> = c.running().map(|e| e.key()).collect();
            let mut new: Vec<&String> = now_running.difference(&t.current).collect();
            new.sort();
            t.activity.builds_started += new.len() as u32;
            if let Some(last) = new.last() {
                t.activity.last_build = Some((*last).clone());
            }
            t.activity.running = now_running.len() as u32;
            t.activity.online = !c.offline;
            // `idle` is false while anything runs, one-off executors included.
            let idle = c.idle && now_running.is_empty();
            t.activity.idle_since_ms = match (idle, t.activity.idle_since_ms) {
                (true, Some(since)) => Some(since),
                (true, None) => Some(now_ms),
                (false, _) => None,
            };
            t.current = now_running;
        }
        self.nodes.retain(|name, _| seen.contains(name));
    }

    /// Starts tracking `node` from what an earlier process counted (kept in the node's
    /// description): `builds_started` builds, the last of them `last_build`. A build still
    /// running under that key is not counted again. Does nothing for a node already tracked.
    pub fn seed(&mut self, node: &str, now_ms: u64, builds_started: u32, last_build: &str) {
        self.nodes.entry(node.to_owned()).or_insert_with(|| Tracked {
            activity: NodeActivity {
                first_seen_ms: now_ms,
                builds_started,
                last_build: Some(last_build.to_owned()),
                ..Default::default()
            },
            current: HashSet::from([last_build.to_owned()]),
        });
    }

    /// The activity of one node, if it was in the last listing.
    pub fn get(&self, node: &str) -> Option<&NodeActivity> {
        self.nodes.get(node).map(|t| &t.activity)
    }

    /// All tracked nodes.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &NodeActivity)> {
        self.nodes.iter().map(|(k, v)| (k.as_str(), &v.activity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Executable, Executor};

    fn computer(name: &str, builds: &[(&str, u64)]) -> Computer {
        Computer {
            class: "hudson.slaves.SlaveComputer".into(),
            display_name: name.into(),
            idle: builds.is_empty(),
            executors: builds
                .iter()
                .enumerate()
                .map(|(i, (url, n))| Executor {
                    number: i as u32,
                    idle: false,
                    current_executable: Some(Executable {
                        url: Some(url.to_string()),
                        number: Some(*n),
                        timestamp: None,
                    }),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn idle_since_and_build_counts() {
        let mut t = ActivityTracker::new();
        t.observe(&[computer("n", &[])], 1_000);
        assert_eq!(t.get("n").unwrap().idle_since_ms, Some(1_000));
        t.observe(&[computer("n", &[])], 2_000);
        assert_eq!(t.get("n").unwrap().idle_ms(5_000), 4_000);
        // A build starts and stays across two listings: counted once.
        t.observe(&[computer("n", &[("job/a/1/", 1)])], 3_000);
        t.observe(&[computer("n", &[("job/a/1/", 1)])], 4_000);
        let a = t.get("n").unwrap();
        assert_eq!((a.builds_started, a.idle_since_ms), (1, None));
        // It ends and two others start on two executors.
        t.observe(&[computer("n", &[("job/a/2/", 2), ("job/b/7/", 7)])], 5_000);
        assert_eq!(t.get("n").unwrap().builds_started, 3);
        t.observe(&[computer("n", &[])], 6_000);
        assert_eq!(t.get("n").unwrap().idle_since_ms, Some(6_000));
        // Gone from the listing: forgotten.
        t.observe(&[], 7_000);
        assert!(t.get("n").is_none());
    }

    #[test]
    fn a_seeded_count_goes_on_without_counting_its_last_build_twice() {
        let mut t = ActivityTracker::new();
        // An earlier process counted 2 builds, the last one job/a/5/ which still runs.
        t.seed("n", 1_000, 2, "job/a/5/#5");
        t.observe(&[computer("n", &[("job/a/5/", 5)])], 1_000);
        let a = t.get("n").unwrap();
        assert_eq!((a.builds_started, a.last_build.as_deref()), (2, Some("job/a/5/#5")));
        t.observe(&[computer("n", &[("job/a/6/", 6)])], 2_000);
        let a = t.get("n").unwrap();
        assert_eq!((a.builds_started, a.last_build.as_deref()), (3, Some("job/a/6/#6")));
        // Seeding a tracked node changes nothing.
        t.seed("n", 3_000, 0, "x");
        assert_eq!(t.get("n").unwrap().builds_started, 3);
    }
}
