//! The engine's view of the cloud between full listings.
//!
//! The full tag-filtered listing costs one call per 100 instances; it is what adopts strangers
//! and notices reclaims and deletions, so it runs once per poll interval. Between listings the
//! engine asks only about the instances whose cloud status is about to change — launches the
//! listing does not show yet and instances still pending or stopping — by id, 100 per call. This view
//! merges both: the last listing, refreshed entry by entry by those lookups, and the instances
//! a lookup found before any listing showed them (the listing lags behind launches).

use std::collections::{BTreeMap, BTreeSet};

use super::lifecycle::LISTING_GRACE_MS;
use super::model::{CloudInstance, CloudStatus};

/// An instance is asked about again this long after it was last described (or launched): a
/// fresh instance takes seconds to leave `Pending`, so asking sooner is a wasted call, and a
/// launch younger than this is still counted as `requested` from the book.
pub const LOOKUP_AFTER_MS: u64 = 1_000;

/// One instance and when the cloud described it (ms): a lookup newer than a listing wins.
#[derive(Debug, Clone)]
struct Seen {
    at_ms: u64,
    instance: CloudInstance,
}

/// The last listing plus what lookups by id learned since.
#[derive(Debug, Default)]
pub struct FleetView {
    /// From the last full listing, refreshed by lookups.
    listed: BTreeMap<String, Seen>,
    /// Found by a lookup, not yet in a full listing.
    unlisted: BTreeMap<String, Seen>,
    /// When the last full listing started (ms); `None` before the first.
    listed_at_ms: Option<u64>,
}

impl FleetView {
    /// Whether a full listing is due: none yet, or the last one started `poll_ms` ago or more.
    pub fn listing_due(&self, now_ms: u64, poll_ms: u64) -> bool {
        self.listed_at_ms.is_none_or(|t| now_ms.saturating_sub(t) >= poll_ms)
    }

    /// Takes a full listing that started at `started_ms`. It speaks for every instance it
    /// shows and for deletions, except where a lookup described an instance after the listing
    /// started; an instance only a lookup has seen stays until the listing shows it or its
    /// listing grace has passed.
    pub fn apply_listing(&mut self, started_ms: u64, instances: Vec<CloudInstance>, now_ms: u64) {
        let mut listed = BTreeMap::new();
        for instance in instances {
            let id = instance.instance_id.clone();
            let newer = self.listed.remove(&id).or_else(|| self.unlisted.remove(&id)).filter(|s| s.at_ms > started_ms);
            listed.insert(id, newer.unwrap_or(Seen { at_ms: started_ms, instance }));
        }
        self.listed = listed;
        self.unlisted.retain(|_, s| s.instance.created_ms.is_some_and(|t| now_ms.saturating_sub(t) < LISTING_GRACE_MS));
        self.listed_at_ms = Some(started_ms);
    }

    /// The ids whose cloud status is worth a lookup at `now_ms`: instances still pending,
    /// starting or stopping (a warm-pool start waits for `Stopped`), and launches booked by this process (`launched`: id and when) the view does
    /// not hold yet, each once its last description (or its launch) is [`LOOKUP_AFTER_MS`]
    /// old. Sorted.
    pub fn to_look_up<'a>(&self, launched: impl IntoIterator<Item = (&'a String, u64)>, now_ms: u64) -> Vec<String> {
        let due = |at_ms: u64| now_ms.saturating_sub(at_ms) >= LOOKUP_AFTER_MS;
        let mut ids: BTreeSet<String> = self
            .listed
            .values()
            .chain(self.unlisted.values())
            .filter(|s| matches!(s.instance.status, CloudStatus::Pending | CloudStatus::Starting | CloudStatus::Stopping) && due(s.at_ms))
            .map(|s| s.instance.instance_id.clone())
            .collect();
        ids.extend(launched.into_iter().filter(|(id, at)| !self.contains(id) && due(*at)).map(|(id, _)| id.clone()));
        ids.into_iter().collect()
    }

    /// Takes the answer to a lookup of `asked`, described at `at_ms`. An instance asked about
    /// and not found is dropped only if no listing has shown it: deletions are the listing's
    /// to notice, and a launch not found yet is still counted from the book.
    pub fn apply_lookup(&mut self, asked: &[String], found: Vec<CloudInstance>, at_ms: u64) {
        let found_ids: BTreeSet<String> = found.iter().map(|i| i.instance_id.clone()).collect();
        for id in asked.iter().filter(|id| !found_ids.contains(*id)) {
            self.unlisted.remove(id);
        }
        for instance in found {
            let seen = Seen { at_ms, instance };
            match self.listed.get_mut(&seen.instance.instance_id) {
                Some(entry) => *entry = seen,
                None => {
                    self.unlisted.insert(seen.instance.instance_id.clone(), seen);
                }
            }
        }
    }

    /// Whether the view holds this instance.
    pub fn contains(&self, id: &str) -> bool {
        self.listed.contains_key(id) || self.unlisted.contains_key(id)
    }

    /// Every instance in the view: listed first, then those only lookups have seen.
    pub fn instances(&self) -> Vec<CloudInstance> {
        self.listed.values().chain(self.unlisted.values()).map(|s| s.instance.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, status: CloudStatus, created_ms: u64) -> CloudInstance {
        CloudInstance {
            instance_id: id.into(),
            template: "linux".into(),
            zone: "z".into(),
            vswitch: "v".into(),
            instance_type: "t".into(),
            spot: false,
            status,
            private_ip: None,
            created_ms: Some(created_ms),
            locks: Vec::new(),
            node: None,
            fingerprint: None,
        }
    }

    fn ids(v: &FleetView) -> Vec<(String, CloudStatus)> {
        v.instances().into_iter().map(|i| (i.instance_id, i.status)).collect()
    }

    #[test]
    fn a_listing_is_due_first_and_then_once_per_poll() {
        let mut v = FleetView::default();
        assert!(v.listing_due(0, 1000));
        v.apply_listing(5000, vec![], 5000);
        assert!(!v.listing_due(5999, 1000));
        assert!(v.listing_due(6000, 1000));
    }

    #[test]
    fn lookups_ask_only_about_changing_instances_and_unseen_launches() {
        let mut v = FleetView::default();
        v.apply_listing(
            0,
            vec![
                inst("i-run", CloudStatus::Running, 0),
                inst("i-pend", CloudStatus::Pending, 0),
                inst("i-start", CloudStatus::Starting, 0),
                inst("i-stopping", CloudStatus::Stopping, 0),
                inst("i-stopped", CloudStatus::Stopped, 0),
            ],
            0,
        );
        let (new, run, fresh) = ("i-new".to_owned(), "i-run".to_owned(), "i-fresh".to_owned());
        let launched = [(&new, 0), (&run, 0), (&fresh, 500)];
        assert_eq!(v.to_look_up(launched, 1000), ["i-new", "i-pend", "i-start", "i-stopping"]);
        assert!(v.to_look_up(launched, 999).is_empty(), "described or launched less than a second ago");
    }

    #[test]
    fn a_launch_found_by_id_stays_through_a_lagging_listing_until_its_grace_ends() {
        let mut v = FleetView::default();
        v.apply_listing(0, vec![], 0);
        v.apply_lookup(&["i-new".into()], vec![inst("i-new", CloudStatus::Running, 1000)], 1500);
        assert_eq!(ids(&v), [("i-new".to_owned(), CloudStatus::Running)]);
        // The listing lags: it does not show i-new yet, which stays.
        v.apply_listing(2000, vec![], 2100);
        assert!(v.contains("i-new"));
        assert!(v.to_look_up([], 10_000).is_empty(), "running: nothing left to ask");
        // Past the listing grace, a listing that still does not show it speaks for it.
        v.apply_listing(1000 + LISTING_GRACE_MS, vec![], 1000 + LISTING_GRACE_MS);
        assert!(!v.contains("i-new"));
    }

    #[test]
    fn a_lookup_newer_than_a_listing_wins_and_an_older_one_loses() {
        let mut v = FleetView::default();
        v.apply_listing(0, vec![inst("i-1", CloudStatus::Pending, 0)], 0);
        v.apply_lookup(&["i-1".into()], vec![inst("i-1", CloudStatus::Running, 0)], 500);
        // A listing that started before the lookup: its Pending is older news.
        v.apply_listing(400, vec![inst("i-1", CloudStatus::Pending, 0)], 600);
        assert_eq!(ids(&v), [("i-1".to_owned(), CloudStatus::Running)]);
        // One that started after it speaks.
        v.apply_listing(700, vec![inst("i-1", CloudStatus::Stopping, 0)], 800);
        assert_eq!(ids(&v), [("i-1".to_owned(), CloudStatus::Stopping)]);
    }

    #[test]
    fn deletions_are_the_listings_to_notice() {
        let mut v = FleetView::default();
        v.apply_listing(0, vec![inst("i-1", CloudStatus::Pending, 0)], 0);
        v.apply_lookup(&["i-1".into(), "i-2".into()], vec![], 100);
        assert!(v.contains("i-1"), "a listed instance a lookup missed waits for the next listing");
        v.apply_listing(1000, vec![], 1000);
        assert!(!v.contains("i-1"));
    }
}
