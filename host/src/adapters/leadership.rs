//! The engine's leadership port over the etcd election ([`ecsp_ha::Elector`]), and the copy of
//! the election's state onto the status board.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::engine::board::ReplicaRole;
use crate::engine::leadership::Leadership;
use crate::engine::ports::LaunchRequest;
use crate::ha::{Elector, Role};

/// The election, as the engine consults it: launch records are the requests as JSON.
pub struct EtcdLeadership(pub Arc<Elector>);

impl Leadership for EtcdLeadership {
    fn may_act(&self) -> bool {
        self.0.may_act()
    }

    fn record_launch<'a>(&'a self, request: &'a LaunchRequest) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let bytes = serde_json::to_vec(request)?;
            self.0.record_launch(&request.launch_id, &bytes).await
        })
    }

    fn settle_launch<'a>(&'a self, launch_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.0.settle_launch(launch_id))
    }

    fn unsettled_launches(&self) -> BoxFuture<'_, anyhow::Result<Vec<LaunchRequest>>> {
        Box::pin(async move {
            let mut requests = Vec::new();
            for (launch_id, bytes) in self.0.unsettled_launches().await? {
                match serde_json::from_slice(&bytes) {
                    Ok(r) => requests.push(r),
                    Err(e) => tracing::warn!(launch_id, error = %e, "ignoring an unreadable launch record in etcd"),
                }
            }
            Ok(requests)
        })
    }
}

/// The board's view of an election.
pub fn role_of(elector: &Elector) -> ReplicaRole {
    let s = elector.status();
    ReplicaRole {
        replica: s.replica,
        role: match s.role {
            Role::Starting => "starting",
            Role::Follower => "follower",
            Role::Leader => "leader",
        }
        .to_owned(),
        acting: elector.may_act(),
        leader: s.leader,
        leader_since_ms: s.leader_since_ms,
        problem: s.problem,
    }
}

/// Copies the election's state onto the board every 100 ms, and starts the engine's next
/// cycle at once when this replica may act and did not.
pub fn export_role(elector: Arc<Elector>, engine: Arc<crate::app::LiveEngine>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut acting = false;
        loop {
            let role = role_of(&elector);
            if role.acting && !acting {
                engine.leadership_won();
            }
            acting = role.acting;
            engine.board.set_role(role);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
