//! What a replica shows about the election.

use serde::Serialize;

/// A replica's part in the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Not yet in the election (connecting to etcd, taking a lease).
    Starting,
    /// Campaigning: observes, decides, keeps its caches warm, acts on nothing.
    Follower,
    /// Elected: acts while its renewals are confirmed.
    Leader,
}

/// The election as one replica sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HaStatus {
    /// This replica's name.
    pub replica: String,
    /// Its role.
    pub role: Role,
    /// The leader's name, when known.
    pub leader: Option<String>,
    /// Since when that leader leads (ms since the Unix epoch), when known.
    pub leader_since_ms: Option<u64>,
    /// Why this replica cannot take part (etcd unreachable, TLS refused...), if it cannot.
    pub problem: Option<String>,
}

impl HaStatus {
    pub(crate) fn starting(replica: &str) -> HaStatus {
        HaStatus { replica: replica.to_owned(), role: Role::Starting, leader: None, leader_since_ms: None, problem: None }
    }
}

/// The value a candidate writes on its election key: who it is and, once elected, since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct Candidacy {
    pub replica: String,
    #[serde(default)]
    pub since_ms: Option<u64>,
}
