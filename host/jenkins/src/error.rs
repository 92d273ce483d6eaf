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
    /// Any read of the controller; needs Overall/Read.
    pub const READ: Op = Op {
        what: "read Jenkins",
        permission: "Overall/Read",
    };
    /// Fetching a CSRF crumb (`/crumbIssuer`); needs Overall/Read.
    pub const CRUMB: Op = Op {
        what: "get a CSRF crumb",
        permission: "Overall/Read",
    };
    /// Listing computers (`/computer/api/json`); needs Overall/Read.
    pub const LIST_COMPUTERS: Op = Op {
        what: "list computers",
        permission: "Overall/Read",
    };
    /// Reading one node; needs Overall/Read, and Agent/ExtendedRead for details.
    pub const READ_COMPUTER: Op = Op {
        what: "read node",
        permission: "Overall/Read (Agent/ExtendedRead for details)",
    };
    /// Reading the builds a node ran (`/computer/<name>/rssAll`); needs Overall/Read and Job/Read.
    pub const READ_NODE_BUILDS: Op = Op {
        what: "read the builds of a node (rssAll)",
        permission: "Overall/Read and Job/Read on the jobs",
    };
    /// Reading the build queue; needs Overall/Read and Job/Read on the queued jobs.
    pub const READ_QUEUE: Op = Op {
        what: "read the build queue",
        permission: "Overall/Read and Job/Read on the queued jobs",
    };
    /// Reading a label (`/label/<expr>/api/json`); needs Overall/Read.
    pub const READ_LABEL: Op = Op {
        what: "read label",
        permission: "Overall/Read",
    };
    /// Creating a node; needs Agent/Create.
    pub const CREATE_NODE: Op = Op {
        what: "create node",
        permission: "Agent/Create (Computer.CREATE)",
    };
    /// Reading an inbound agent's secret from `jenkins-agent.jnlp`; needs Agent/Connect.
    pub const READ_SECRET: Op = Op {
        what: "read the inbound agent secret (jenkins-agent.jnlp)",
        permission: "Agent/Connect (Computer.CONNECT)",
    };
    /// Marking a node temporarily offline; needs Agent/Disconnect.
    pub const TAKE_OFFLINE: Op = Op {
        what: "mark node temporarily offline",
        permission: "Agent/Disconnect (Computer.DISCONNECT)",
    };
    /// Bringing a node back online; needs Agent/Connect.
    pub const BRING_ONLINE: Op = Op {
        what: "bring node back online",
        permission: "Agent/Connect (Computer.CONNECT)",
    };
    /// Rewriting a node's `config.xml`; needs Agent/Configure.
    pub const CONFIGURE_NODE: Op = Op {
        what: "reconfigure node (config.xml)",
        permission: "Agent/Configure (Computer.CONFIGURE)",
    };
    /// Downloading `/jnlpJars/agent.jar`; needs no permission, though a wrong token still gets 401.
    pub const AGENT_JAR: Op = Op {
        what: "download agent.jar (/jnlpJars/agent.jar)",
        permission: "none (an unprotected path; a wrong token still gets 401)",
    };
    /// Deleting a node; needs Agent/Delete.
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
    BadUrl {
        /// The URL as configured.
        url: String,
        /// Why it is not usable.
        reason: String,
    },
    /// The API token could not be loaded.
    #[error("cannot load the Jenkins API token from {from}: {reason}")]
    Credentials {
        /// Where the token was to come from (a file or a variable).
        from: String,
        /// Why it could not be read.
        reason: String,
    },
    /// The argument is not acceptable to Jenkins (e.g. a bad node name).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// 401: Jenkins did not accept the user name and token.
    #[error(
        "Jenkins rejected the credentials of user {user:?} (HTTP 401) when trying to {op}: check the user name and API token"
    )]
    Unauthorized {
        /// The Jenkins user the API token belongs to.
        user: String,
        /// What was being done.
        op: &'static str,
    },
    /// 403: authenticated but not allowed (Jenkins also answers 403 to anonymous requests).
    #[error(
        "Jenkins refused to let user {user:?} {op} (HTTP 403): the user needs the permission {permission}{detail}"
    )]
    Forbidden {
        /// The user the client authenticated as.
        user: String,
        /// What the call tried to do (an [`Op`]'s `what`).
        op: &'static str,
        /// The permission the call needs (an [`Op`]'s `permission`).
        permission: &'static str,
        /// Extra text appended to the message; may be empty.
        detail: String,
    },
    /// 404 for the object the call is about.
    #[error("{what} not found in Jenkins (HTTP 404 when trying to {op})")]
    NotFound {
        /// What was missing (a node, a label...).
        what: String,
        /// What was being done.
        op: &'static str,
    },
    /// `doCreateItem` said the node exists.
    #[error("a Jenkins node named {name:?} already exists")]
    AlreadyExists {
        /// The node's name.
        name: String,
    },
    /// Any other unexpected status.
    #[error("Jenkins answered HTTP {status} when trying to {op}: {body}")]
    Status {
        /// The HTTP status Jenkins answered.
        status: u16,
        /// What the call tried to do (an [`Op`]'s `what`).
        op: &'static str,
        /// The response body.
        body: String,
    },
    /// Network, TLS or timeout. Said once: the URL without its query and the cause in plain
    /// words; the HTTP client's error is kept but not chained (it repeats the whole URL).
    #[error(
        "cannot reach Jenkins at {} to {op}: {}",
        ecsp_http::request_target(.error).unwrap_or_else(|| "its URL".into()),
        ecsp_http::transport_cause(.error)
    )]
    Transport {
        /// What the call tried to do (an [`Op`]'s `what`).
        op: &'static str,
        /// The underlying HTTP client error.
        error: reqwest::Error,
    },
    /// The body did not have the expected shape.
    #[error("unexpected answer from Jenkins when trying to {op}: {reason}")]
    Decode {
        /// What was being done.
        op: &'static str,
        /// What could not be read in the answer.
        reason: String,
    },
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
