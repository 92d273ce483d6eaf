//! The parts of the `scale` snapshot a policy declared it reads (`host.declare-reads`), and
//! the snapshot cut down to them.
//!
//! Turning records into Python or JavaScript objects is most of what a `scale` costs in those
//! languages, so parts a policy never looks at are sent as empty lists. The plan is still
//! validated against the whole snapshot.

use super::bindings::{Demand, Snapshot, SnapshotParts};

/// `snapshot` without the parts `parts` leaves out, or `None` when it asks for everything
/// (then the snapshot is sent as it is, without a copy).
pub(crate) fn trimmed(snapshot: &Snapshot, parts: SnapshotParts) -> Option<Snapshot> {
    if parts.contains(SnapshotParts::all()) {
        return None;
    }
    let keep = |part| parts.contains(part);
    let demand = if keep(SnapshotParts::QUEUED_ITEMS) {
        snapshot.demand.clone()
    } else {
        snapshot
            .demand
            .iter()
            .map(|d| Demand {
                template: d.template.clone(),
                queued: d.queued,
                oldest_wait_ms: d.oldest_wait_ms,
                items: Vec::new(),
            })
            .collect()
    };
    Some(Snapshot {
        now_ms: snapshot.now_ms,
        templates: snapshot.templates.clone(),
        demand,
        unmatched_queued: snapshot.unmatched_queued,
        nodes: kept(keep(SnapshotParts::NODES), &snapshot.nodes),
        offerings: kept(keep(SnapshotParts::OFFERINGS), &snapshot.offerings),
        max_total_nodes: snapshot.max_total_nodes,
    })
}

/// A copy of `list` when it is sent, else an empty list.
fn kept<T: Clone>(sent: bool, list: &[T]) -> Vec<T> {
    if sent { list.to_vec() } else { Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Shape, synthetic_snapshot};

    fn snapshot() -> Snapshot {
        synthetic_snapshot(Shape {
            nodes: 5,
            queued: 8,
            offerings: 3,
        })
    }

    #[test]
    fn everything_declared_sends_the_snapshot_as_it_is() {
        assert_eq!(trimmed(&snapshot(), SnapshotParts::all()), None);
    }

    #[test]
    fn parts_left_out_are_empty_and_the_rest_is_whole() {
        let full = snapshot();
        let t = trimmed(&full, SnapshotParts::NODES).unwrap();
        assert_eq!(t.nodes, full.nodes);
        assert!(t.offerings.is_empty());
        // Queue counts stay; only the items go.
        assert!(t.demand.iter().all(|d| d.items.is_empty()));
        let counts = |s: &Snapshot| {
            s.demand
                .iter()
                .map(|d| (d.template.clone(), d.queued, d.oldest_wait_ms))
                .collect::<Vec<_>>()
        };
        assert_eq!(counts(&t), counts(&full));
        assert_eq!(
            (
                t.now_ms,
                &t.templates,
                t.unmatched_queued,
                t.max_total_nodes
            ),
            (
                full.now_ms,
                &full.templates,
                full.unmatched_queued,
                full.max_total_nodes
            )
        );

        let t = trimmed(
            &full,
            SnapshotParts::QUEUED_ITEMS | SnapshotParts::OFFERINGS,
        )
        .unwrap();
        assert!(t.nodes.is_empty());
        assert_eq!((t.demand, t.offerings), (full.demand, full.offerings));
    }
}
