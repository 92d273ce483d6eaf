//! What went wrong with an ECS/VPC call, classified so callers and the retry loop can act on it
//! (reference §4). Every error carries the action and, when the server answered, its RequestId.
use std::fmt;

use super::credentials::CredentialsError;

/// The class of an error: decides retry and how the engine reacts.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorKind {
    /// `Throttling*`: retried with exponential backoff; returned when retries ran out.
    Throttling,
    /// 5xx, `ServiceUnavailable`, `InternalError`, timeouts, connection failures: retried.
    Transient,
    /// Out of capacity for this zone/type/vswitch: not retried; try another offering.
    Capacity(CapacityDetail),
    /// Unknown or disabled AccessKey, expired/bad STS token, stale timestamp.
    Credentials,
    /// Authenticated but not allowed (RAM policy, account state).
    Permission,
    /// The server computed another signature. `secret_wrong` is true when its string-to-sign
    /// equals ours, i.e. the only possible difference is the AccessKeySecret.
    Signature {
        /// True when the server's string-to-sign equals ours, so only the AccessKeySecret can differ.
        secret_wrong: bool,
    },
    /// Same ClientToken as an earlier request with different parameters.
    IdempotencyMismatch,
    /// A named resource (instance, image, vswitch...) does not exist.
    NotFound,
    /// `DryRun=true` and the request would have succeeded.
    DryRunPassed,
    /// The request itself is wrong (bad parameter, missing parameter...).
    InvalidRequest,
    /// The response could not be read.
    Decode,
    /// No credentials could be obtained.
    NoCredentials,
}

/// Which offering ran out, so the engine can mark it failed and place elsewhere.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CapacityDetail {
    /// Zone asked for, if the request named one.
    pub zone_id: Option<String>,
    /// Instance type asked for, if known.
    pub instance_type: Option<String>,
    /// VSwitch asked for, if known.
    pub vswitch_id: Option<String>,
    /// Whether the request was for spot instances.
    pub spot: bool,
}

/// An ECS/VPC API failure.
#[derive(Debug, Clone)]
pub struct EcsError {
    /// The API action, e.g. `RunInstances`.
    pub action: String,
    /// The server's RequestId, if it answered.
    pub request_id: Option<String>,
    /// HTTP status, if the server answered.
    pub http_status: Option<u16>,
    /// The server's error code (`OperationDenied.NoStock`...) or a local one (`Transport`, `Decode`).
    pub code: String,
    /// The server's message (secrets removed) or a local description.
    pub message: String,
    /// The error's class, which decides retry and the engine's reaction.
    pub kind: ErrorKind,
    /// How many attempts were made (1 = no retry).
    pub attempts: u32,
    /// Server-suggested wait before retrying (`x-acs-retry-after`), if any.
    pub retry_after: Option<std::time::Duration>,
}

impl ErrorKind {
    /// The class as a metric label value: bounded, whatever the server sent.
    pub fn label(&self) -> &'static str {
        match self {
            ErrorKind::Throttling => "throttling",
            ErrorKind::Transient => "transient",
            ErrorKind::Capacity(_) => "capacity",
            ErrorKind::Credentials => "credentials",
            ErrorKind::Permission => "permission",
            ErrorKind::Signature { .. } => "signature",
            ErrorKind::IdempotencyMismatch => "idempotency-mismatch",
            ErrorKind::NotFound => "not-found",
            ErrorKind::DryRunPassed => "dry-run-passed",
            ErrorKind::InvalidRequest => "invalid-request",
            ErrorKind::Decode => "decode",
            ErrorKind::NoCredentials => "no-credentials",
        }
    }
}

impl EcsError {
    /// Whether the retry loop should try again.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Throttling | ErrorKind::Transient)
    }

    /// The capacity detail, if this is a capacity error.
    pub fn capacity(&self) -> Option<&CapacityDetail> {
        match &self.kind {
            ErrorKind::Capacity(d) => Some(d),
            _ => None,
        }
    }

    pub(crate) fn local(
        action: &str,
        code: &str,
        message: impl Into<String>,
        kind: ErrorKind,
    ) -> Self {
        Self {
            action: action.into(),
            request_id: None,
            http_status: None,
            code: code.into(),
            message: message.into(),
            kind,
            attempts: 1,
            retry_after: None,
        }
    }

    pub(crate) fn from_credentials(action: &str, e: CredentialsError) -> Self {
        Self::local(
            action,
            "NoCredentials",
            e.to_string(),
            ErrorKind::NoCredentials,
        )
    }

    /// What the user should do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        Some(match &self.kind {
            ErrorKind::Signature { secret_wrong: true } => "the server signed exactly what we signed, so the \
                AccessKeySecret is wrong for this AccessKeyId: check the secret in your credentials source"
                .into(),
            ErrorKind::Signature { secret_wrong: false } => "the server's string-to-sign differs from ours: a \
                proxy or endpoint rewrote the request, or the client clock/encoding is off"
                .into(),
            ErrorKind::Credentials if self.code.starts_with("InvalidAccessKeyId") => {
                "this AccessKeyId does not exist in the region's account: check the key, or create one in the RAM console".into()
            }
            ErrorKind::Credentials if self.code.starts_with("InvalidTimeStamp") => {
                "the request timestamp is too far from the server's clock: synchronise this host's clock (NTP)".into()
            }
            ErrorKind::Credentials if self.code.contains("SecurityToken") => {
                "the STS security token is invalid or expired: refresh the temporary credentials".into()
            }
            ErrorKind::Credentials => "check the AccessKey: it may be disabled or expired".into(),
            ErrorKind::Permission => format!(
                "the RAM identity lacks permission for ecs:{}: attach a policy allowing it (e.g. AliyunECSFullAccess), \
                 or check the account's balance/status",
                self.action
            ),
            ErrorKind::IdempotencyMismatch => {
                "the ClientToken was used before with different parameters: use a new token".into()
            }
            ErrorKind::Capacity(_) => "try another zone, instance type or vswitch".into(),
            ErrorKind::Throttling => "request rate limit reached: fewer calls per minute".into(),
            _ => return None,
        })
    }
}

impl fmt::Display for EcsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}: {}", self.action, self.code, self.message)?;
        if let ErrorKind::Capacity(d) = &self.kind {
            let parts: Vec<String> = [
                d.zone_id.as_ref().map(|z| format!("zone {z}")),
                d.instance_type.as_ref().map(|t| format!("type {t}")),
                d.vswitch_id.as_ref().map(|v| format!("vswitch {v}")),
                d.spot.then(|| "spot".to_string()),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !parts.is_empty() {
                write!(f, " [{}]", parts.join(", "))?;
            }
        }
        match (&self.request_id, self.http_status) {
            (Some(r), Some(s)) => write!(f, " (HTTP {s}, RequestId {r})")?,
            (None, Some(s)) => write!(f, " (HTTP {s})")?,
            (Some(r), None) => write!(f, " (RequestId {r})")?,
            (None, None) => {}
        }
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        if let Some(h) = self.hint() {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for EcsError {}

/// Error codes a launch failure may be labelled with on `/metrics`: the ones the classifier
/// and the engine know by name, and the host's own local codes.
const LABELLED_CODES: &[&str] = &[
    "OperationDenied.NoStock",
    "Zone.NotOnSale",
    "Zone.NotOpen",
    "InvalidInstanceType.ZoneNotSupported",
    "InvalidVSwitchId.IpNotEnough",
    "QuotaExceeded.PrivateIpAddress",
    "InvalidResourceType.NotSupported",
    "QuotaExceed.ElasticQuota",
    "QuotaExceed.AfterpayInstance",
    "Throttling",
    "Throttling.User",
    "Throttling.Api",
    "ServiceUnavailable",
    "InternalError",
    "UnknownError",
    "LastTokenProcessing",
    "OperationConflict",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidAccessKeyId.NotFound",
    "InvalidAccessKeySecret",
    "InvalidTimeStamp.Expired",
    "InvalidSecurityToken.Expired",
    "InvalidSecurityToken.Malformed",
    "Forbidden.AccessKeyDisabled",
    "Forbidden.RAM",
    "Forbidden",
    "NoPermission",
    "InsufficientBalance",
    "Account.Arrearage",
    "IdempotentParameterMismatch",
    "InvalidParameter",
    "MissingParameter",
    "InvalidImageId.NotFound",
    "InvalidSecurityGroupId.NotFound",
    "InvalidVSwitchId.NotFound",
    "InvalidKeyPairName.NotFound",
    // The host's own codes.
    "Transport",
    "Decode",
    "NoCredentials",
    "ResponseTooLarge",
    "UnknownTemplate",
    "InvalidInstanceId",
];

/// The metric label for an error code: the code itself when it is one of a fixed set, `other`
/// for anything else. A code is the server's text; copied into a label as it is, a hostile
/// endpoint could write any line into `/metrics` (and an unbounded set of values would grow
/// the series without end).
pub fn code_label(code: &str) -> &'static str {
    LABELLED_CODES.iter().find(|c| **c == code).copied().unwrap_or("other")
}

/// Classifies a server error code (and HTTP status) into an [`ErrorKind`]. `capacity` fills in
/// the offering the request was for.
pub fn classify(
    code: &str,
    http_status: u16,
    capacity: impl FnOnce() -> CapacityDetail,
) -> ErrorKind {
    const CAPACITY: &[&str] = &[
        "OperationDenied.NoStock",
        "Zone.NotOnSale",
        "Zone.NotOpen",
        "InvalidInstanceType.ZoneNotSupported",
        "InvalidVSwitchId.IpNotEnough",
        "QuotaExceeded.PrivateIpAddress",
        "InvalidResourceType.NotSupported",
    ];
    match code {
        c if c.contains("Throttling") => ErrorKind::Throttling,
        "ServiceUnavailable"
        | "InternalError"
        | "UnknownError"
        | "LastTokenProcessing"
        | "OperationConflict" => ErrorKind::Transient,
        c if c.starts_with("ServiceUnavailable") => ErrorKind::Transient,
        c if CAPACITY.contains(&c) || c.starts_with("QuotaExceed") => {
            ErrorKind::Capacity(capacity())
        }
        "SignatureDoesNotMatch" | "IncompleteSignature" => ErrorKind::Signature {
            secret_wrong: false,
        },
        c if c.starts_with("InvalidAccessKeyId")
            || c.starts_with("InvalidAccessKeySecret")
            || c.starts_with("InvalidTimeStamp")
            || c.starts_with("InvalidSecurityToken")
            || c == "Forbidden.AccessKeyDisabled"
            || c == "SignatureNonceUsed" =>
        {
            ErrorKind::Credentials
        }
        c if c.starts_with("Forbidden")
            || c == "InsufficientBalance"
            || c == "Account.Arrearage"
            || c == "NoPermission" =>
        {
            ErrorKind::Permission
        }
        "IdempotentParameterMismatch" => ErrorKind::IdempotencyMismatch,
        "DryRunOperation" | "DRYRUN.SUCCESS" => ErrorKind::DryRunPassed,
        c if c.ends_with(".NotFound") || c == "NotFound" => ErrorKind::NotFound,
        _ if http_status >= 500 => ErrorKind::Transient,
        _ => ErrorKind::InvalidRequest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(code: &str, status: u16) -> ErrorKind {
        classify(code, status, || CapacityDetail {
            zone_id: Some("z".into()),
            ..Default::default()
        })
    }

    #[test]
    fn classification_table() {
        assert_eq!(kind("Throttling", 400), ErrorKind::Throttling);
        assert_eq!(kind("Throttling.User", 400), ErrorKind::Throttling);
        assert_eq!(kind("ServiceUnavailable", 503), ErrorKind::Transient);
        assert_eq!(kind("InternalError", 500), ErrorKind::Transient);
        assert_eq!(kind("SomethingNew", 502), ErrorKind::Transient);
        for c in [
            "OperationDenied.NoStock",
            "Zone.NotOnSale",
            "InvalidInstanceType.ZoneNotSupported",
            "InvalidVSwitchId.IpNotEnough",
            "QuotaExceed.ElasticQuota",
            "QuotaExceed.AfterpayInstance",
        ] {
            assert!(matches!(kind(c, 403), ErrorKind::Capacity(_)), "{c}");
        }
        assert_eq!(
            kind("InvalidAccessKeyId.NotFound", 404),
            ErrorKind::Credentials
        );
        assert_eq!(
            kind("InvalidTimeStamp.Expired", 400),
            ErrorKind::Credentials
        );
        assert_eq!(kind("Forbidden.RAM", 403), ErrorKind::Permission);
        assert_eq!(
            kind("SignatureDoesNotMatch", 400),
            ErrorKind::Signature {
                secret_wrong: false
            }
        );
        assert_eq!(
            kind("IdempotentParameterMismatch", 400),
            ErrorKind::IdempotencyMismatch
        );
        assert_eq!(kind("InvalidInstanceId.NotFound", 404), ErrorKind::NotFound);
        assert_eq!(kind("DryRunOperation", 400), ErrorKind::DryRunPassed);
        assert_eq!(kind("InvalidParameter", 400), ErrorKind::InvalidRequest);
    }

    #[test]
    fn metric_labels_come_from_a_closed_set() {
        assert_eq!(code_label("OperationDenied.NoStock"), "OperationDenied.NoStock");
        assert_eq!(code_label("Transport"), "Transport");
        assert_eq!(code_label("Evil\"} 1\necs_provisioner_removals_total 31337"), "other");
        assert_eq!(code_label("OperationDenied.NoStockX"), "other", "exact matches only");
        assert_eq!(code_label(""), "other");
    }

    #[test]
    fn display_names_action_request_id_offering_and_fix() {
        let e = EcsError {
            action: "RunInstances".into(),
            request_id: Some("RID-1".into()),
            http_status: Some(403),
            code: "OperationDenied.NoStock".into(),
            message: "sold out".into(),
            kind: ErrorKind::Capacity(CapacityDetail {
                zone_id: Some("cn-hangzhou-h".into()),
                instance_type: Some("ecs.g7.large".into()),
                vswitch_id: None,
                spot: true,
            }),
            attempts: 1,
            retry_after: None,
        };
        let s = e.to_string();
        for part in [
            "RunInstances",
            "RID-1",
            "cn-hangzhou-h",
            "ecs.g7.large",
            "spot",
            "another zone",
        ] {
            assert!(s.contains(part), "{s} lacks {part}");
        }
    }
}
