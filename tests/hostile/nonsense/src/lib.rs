//! Hostile policy: well-typed answers that break every rule the host enforces. The host must
//! reject or clamp all of it, and say so.
//!
//! `scale` returns: a launch for an unknown template, absurd counts (`u32::MAX`) for every real
//! template, a zero-count launch, removals of an unknown instance id, of every busy node, of a
//! terminating node, and the same node twice. `place` returns offering indices past the end
//! (`len` and `u32::MAX`), absurd counts and an empty placement.

use ecs_policy_sdk::{
    Launch, Node, NodeState, Offering, PlaceRequest, Placement, Policy, Removal, ScalePlan,
    Snapshot, export_policy,
};

/// Returns nonsense.
#[derive(Default)]
pub struct Nonsense;

fn removal(id: &str, reason: &str) -> Removal {
    Removal {
        instance_id: id.to_owned(),
        reason: reason.to_owned(),
    }
}

impl Policy for Nonsense {
    fn configure(&mut self, _: &str) -> Result<(), String> {
        Ok(())
    }

    fn scale(&self, snapshot: &Snapshot) -> Result<ScalePlan, String> {
        let mut launches = vec![Launch {
            template: "no-such-template".into(),
            count: 5,
            reason: "unknown".into(),
        }];
        for t in &snapshot.templates {
            launches.push(Launch {
                template: t.name.clone(),
                count: u32::MAX,
                reason: "absurd".into(),
            });
            launches.push(Launch {
                template: t.name.clone(),
                count: 0,
                reason: "zero".into(),
            });
        }
        let mut removals = vec![removal("i-does-not-exist", "unknown")];
        for n in &snapshot.nodes {
            if n.busy_executors > 0 {
                removals.push(removal(&n.instance_id, "busy"));
            }
            if n.state == NodeState::Terminating {
                removals.push(removal(&n.instance_id, "already terminating"));
            }
        }
        if let Some(n) = snapshot.nodes.first() {
            removals.push(removal(&n.instance_id, "twice (1)"));
            removals.push(removal(&n.instance_id, "twice (2)"));
        }
        Ok(ScalePlan { launches, removals })
    }

    fn place(
        &self,
        _: &PlaceRequest,
        offerings: &[Offering],
        _: &[Node],
    ) -> Result<Vec<Placement>, String> {
        let len = offerings.len() as u32;
        Ok(vec![
            Placement {
                offering: len,
                count: 1,
            },
            Placement {
                offering: u32::MAX,
                count: 1,
            },
            Placement {
                offering: 0,
                count: u32::MAX,
            },
            Placement {
                offering: 0,
                count: 0,
            },
        ])
    }
}

export_policy!(Nonsense);
