//! Errors of the Jenkins client, each saying what was attempted and what to fix.

/// One kind of call the client makes, with the Jenkins permission it needs; used to turn a
/// bare 401/403/404 into an error that says which permission is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// What the call does, e.g. "create node".
    pub what: &'static str,
    /// The Jenkins permission the call needs, as the security matrix names it.
    pub permission: &'static str,
}

impl Op {
    pub const READ: Op = Op {
        what: "read Jenkins",
        permission: "Overall/Read",
    };
    pub const CRUMB: Op = Op {
        what: "get a CSRF crumb",
        permission: "Overall/Read",
    };
    pub const LIST_COMPUTERS: Op = Op {
        what: "list computers",
        permission: "Overall/Read",
    };
    pub const READ_COMPUTER: Op = Op {
        what: "read node",
        permission: "Overall/Read (Agent/ExtendedRead for details)",
    };
    pub const READ_QUEUE: Op = Op {
        what: "read the build queue",
        permission: "Overall/Read and Job/Read on the queued jobs",
    };
    pub const READ_LABEL: Op = Op {
        what: "read label",
        permission: "Overall/Read",
    };
    pub const CREATE_NODE: Op = Op {
        what: "create node",
        permission: "Agent/Create (Computer.CREATE)",
    };
    pub const READ_SECRET: Op = Op {
        what: "read the inbound agent secret (jenkins-agent.jnlp)",
        permission: "Agent/Connect (Computer.CONNECT)",
    };
    pub const TAKE_OFFLINE: Op = Op {
        what: "mark node temporarily offline",
        permission: "Agent/Disconnect (Computer.DISCONNECT)",
    };
    pub const BRING_ONLINE: Op = Op {
        what: "bring node back online",
        permission: "Agent/Connect (Computer.CONNECT)",
    };
    pub const CONFIGURE_NODE: Op = Op {
        what: "reconfigure node (config.xml)",
        permission: "Agent/Configure (Computer.CONFIGURE)",
    };
    pub const AGENT_JAR: Op = Op {
        what: "download agent.jar (/jnlpJars/agent.jar)",
        permission: "none (an unprotected path; a wrong token still gets 401)",
    };
    pub const DELETE_NODE: Op = Op {
        what: "delete node",
        permission: "Agent/Delete (Computer.DELETE)",
    };
}

/// Everything that can go wrong talking to Jenkins.
#[derive(Debug, thiserror::Error)]
pub enum JenkinsError {
    /// The configured URL is unusable.
    #[error("invalid Jenkins URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// The API token could not be loaded.
    #[error("cannot load the Jenkins API token from {from}: {reason}")]
    Credentials { from: String, reason: String },
    /// The argument is not acceptable to Jenkins (e.g. a bad node name).
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// 401: Jenkins did not accept the user name and token.
    #[error(
        "Jenkins rejected the credentials of user {user:?} (HTTP 401) when trying to {op}: check the user name and API token"
    )]
    Unauthorized { user: String, op: &'static str },
    /// 403: authenticated but not allowed (Jenkins also answers 403 to anonymous requests).
    #[error(
        "Jenkins refused to let user {user:?} {op} (HTTP 403): the user needs the permission {permission}{detail}"
    )]
    Forbidden {
        user: String,
        op: &'static str,
        permission: &'static str,
        detail: String,
    },
    /// 404 for the object the call is about.
    #[error("{what} not found in Jenkins (HTTP 404 when trying to {op})")]
    NotFound { what: String, op: &'static str },
    /// `doCreateItem` said the node exists.
    #[error("a Jenkins node named {name:?} already exists")]
    AlreadyExists { name: String },
    /// Any other unexpected status.
    #[error("Jenkins answered HTTP {status} when trying to {op}: {body}")]
    Status {
        status: u16,
        op: &'static str,
        body: String,
    },
    /// Network, TLS or timeout.
    #[error("cannot reach Jenkins to {op}: {source}")]
    Transport {
        op: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The body did not have the expected shape.
    #[error("unexpected answer from Jenkins when trying to {op}: {reason}")]
    Decode { op: &'static str, reason: String },
}

impl JenkinsError {
    /// True for errors worth retrying later (network trouble, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            JenkinsError::Transport { .. } => true,
            JenkinsError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}
