//! Validation of what a policy returns: does the answer make sense for the input it was given?
//!
//! This is about well-formedness (unknown names, indices out of range, duplicates, a total
//! above the request), not the hard limits: those the engine enforces by clamping, with each
//! clamp logged. An invalid answer is rejected whole with a message saying what and where.

use std::collections::HashSet;

use super::bindings::{Offering, PlaceRequest, Placement, ScalePlan, Snapshot};

/// Checks a `scale` answer: every launch names a known template at most once, every removal
/// names a known node at most once.
pub fn scale_plan(snapshot: &Snapshot, plan: &ScalePlan) -> Result<(), String> {
    let templates: HashSet<&str> = snapshot.templates.iter().map(|t| t.name.as_str()).collect();
    let mut launched = HashSet::new();
    for (i, l) in plan.launches.iter().enumerate() {
        if !templates.contains(l.template.as_str()) {
            let mut known: Vec<&str> = templates.iter().copied().collect();
            known.sort_unstable();
            return Err(format!(
                "launches[{i}]: unknown template `{}` (known: {})",
                l.template,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        }
        if !launched.insert(l.template.as_str()) {
            return Err(format!(
                "launches[{i}]: template `{}` appears more than once",
                l.template
            ));
        }
    }
    let nodes: HashSet<&str> = snapshot
        .nodes
        .iter()
        .map(|n| n.instance_id.as_str())
        .collect();
    let mut removed = HashSet::new();
    for (i, r) in plan.removals.iter().enumerate() {
        if !nodes.contains(r.instance_id.as_str()) {
            return Err(format!(
                "removals[{i}]: unknown instance id `{}` (not in the snapshot's nodes)",
                r.instance_id
            ));
        }
        if !removed.insert(r.instance_id.as_str()) {
            return Err(format!(
                "removals[{i}]: instance `{}` appears more than once",
                r.instance_id
            ));
        }
    }
    Ok(())
}

/// Checks a `place` answer: offering indices in range and not repeated, and the counts
/// summing to at most `request.count` (fewer is allowed: the host reports the shortfall).
pub fn placements(
    request: &PlaceRequest,
    offerings: &[Offering],
    placements: &[Placement],
) -> Result<(), String> {
    let mut seen = HashSet::new();
    let mut total: u64 = 0;
    for (i, p) in placements.iter().enumerate() {
        if p.offering as usize >= offerings.len() {
            return Err(format!(
                "placements[{i}]: offering index {} out of range (there are {} offerings)",
                p.offering,
                offerings.len()
            ));
        }
        if !seen.insert(p.offering) {
            return Err(format!(
                "placements[{i}]: offering {} appears more than once",
                p.offering
            ));
        }
        total += u64::from(p.count);
    }
    if total > u64::from(request.count) {
        return Err(format!(
            "placements total {total} nodes but only {} were requested",
            request.count
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::bindings::*;
    use super::*;

    fn template(name: &str) -> Template {
        Template {
            name: name.into(),
            labels: vec![],
            executors: 1,
            min_nodes: 0,
            max_nodes: 5,
            idle_timeout_secs: 0,
            max_uses: 0,
            spot: SpotMode::OnDemand,
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            now_ms: 0,
            templates: vec![template("linux")],
            demand: vec![],
            unmatched_queued: 0,
            nodes: vec![Node {
                instance_id: "i-1".into(),
                template: "linux".into(),
                zone: "z".into(),
                instance_type: "t".into(),
                spot: false,
                state: NodeState::Online,
                busy_executors: 0,
                idle_ms: 0,
                age_ms: 0,
                uses: 0,
                failure: None,
                offline_reason: None,
            }],
            offerings: vec![],
            max_total_nodes: 10,
        }
    }

    fn launch(t: &str) -> Launch {
        Launch {
            template: t.into(),
            count: 1,
            reason: String::new(),
        }
    }

    fn removal(id: &str) -> Removal {
        Removal {
            instance_id: id.into(),
            reason: String::new(),
        }
    }

    #[test]
    fn scale_plans() {
        let s = snapshot();
        let ok = ScalePlan {
            launches: vec![launch("linux")],
            removals: vec![removal("i-1")],
        };
        assert_eq!(scale_plan(&s, &ok), Ok(()));
        let bad = ScalePlan {
            launches: vec![launch("linux"), launch("win")],
            removals: vec![],
        };
        assert_eq!(
            scale_plan(&s, &bad).unwrap_err(),
            "launches[1]: unknown template `win` (known: linux)"
        );
        let dup = ScalePlan {
            launches: vec![launch("linux"), launch("linux")],
            removals: vec![],
        };
        assert!(scale_plan(&s, &dup).unwrap_err().contains("more than once"));
        let ghost = ScalePlan {
            launches: vec![],
            removals: vec![removal("i-9")],
        };
        assert!(
            scale_plan(&s, &ghost)
                .unwrap_err()
                .starts_with("removals[0]: unknown instance id `i-9`")
        );
        let twice = ScalePlan {
            launches: vec![],
            removals: vec![removal("i-1"), removal("i-1")],
        };
        assert!(
            scale_plan(&s, &twice)
                .unwrap_err()
                .starts_with("removals[1]")
        );
    }

    #[test]
    fn place_answers() {
        let offering = Offering {
            zone: "z".into(),
            vswitch: "v".into(),
            instance_type: "t".into(),
            spot: false,
            vcpus: 2,
            memory_mib: 4096,
            free_ips: 10,
            price_per_hour: None,
            in_stock: true,
            last_failure: None,
        };
        let offerings = vec![offering.clone(), offering];
        let req = PlaceRequest {
            now_ms: 0,
            template: template("linux"),
            count: 3,
        };
        let p = |offering, count| Placement { offering, count };
        assert_eq!(placements(&req, &offerings, &[p(0, 2), p(1, 1)]), Ok(()));
        assert_eq!(placements(&req, &offerings, &[]), Ok(()));
        assert!(
            placements(&req, &offerings, &[p(2, 1)])
                .unwrap_err()
                .contains("index 2 out of range")
        );
        assert!(
            placements(&req, &offerings, &[p(0, 1), p(0, 1)])
                .unwrap_err()
                .contains("more than once")
        );
        assert_eq!(
            placements(&req, &offerings, &[p(0, 2), p(1, 2)]).unwrap_err(),
            "placements total 4 nodes but only 3 were requested"
        );
    }
}
