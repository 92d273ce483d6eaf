//! A contract 0.1.0 policy that says what it sees: `scale` launches one node per template
//! whose reason lists every node as `id=state(failure)`, and removes every node whose 0.1.0
//! state is `draining` (so the host's answer conversion is exercised too); `place` puts one
//! node on each offering in stock, and logs through the 0.1.0 `host.log`.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "policy-module" });

use ecs_provisioner::policy::host::{Level, log};
use exports::ecs_provisioner::policy::policy::*;

struct Echo;

fn state_name(s: NodeState) -> &'static str {
    match s {
        NodeState::Requested => "requested",
        NodeState::Pending => "pending",
        NodeState::Running => "running",
        NodeState::Bootstrapping => "bootstrapping",
        NodeState::Connecting => "connecting",
        NodeState::Online => "online",
        NodeState::Draining => "draining",
        NodeState::Terminating => "terminating",
    }
}

impl Guest for Echo {
    fn configure(_settings: String) -> Result<(), String> {
        Ok(())
    }

    fn scale(snapshot: Snapshot) -> Result<ScalePlan, String> {
        let seen: Vec<String> = snapshot
            .nodes
            .iter()
            .map(|n| format!("{}={}({})", n.instance_id, state_name(n.state), n.failure.as_deref().unwrap_or("")))
            .collect();
        Ok(ScalePlan {
            launches: snapshot
                .templates
                .iter()
                .map(|t| Launch { template: t.name.clone(), count: 1, reason: seen.join(",") })
                .collect(),
            removals: snapshot
                .nodes
                .iter()
                .filter(|n| n.state == NodeState::Draining)
                .map(|n| Removal { instance_id: n.instance_id.clone(), reason: "echo".into() })
                .collect(),
        })
    }

    fn place(request: PlaceRequest, offerings: Vec<Offering>, fleet: Vec<Node>) -> Result<Vec<Placement>, String> {
        log(Level::Info, &format!("placing {} for {} beside {} nodes", request.count, request.template.name, fleet.len()));
        Ok(offerings
            .iter()
            .enumerate()
            .filter(|(_, o)| o.in_stock)
            .take(request.count as usize)
            .map(|(i, _)| Placement { offering: i as u32, count: 1 })
            .collect())
    }
}

export!(Echo);
