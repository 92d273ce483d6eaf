//! What the emulated STS knows: the account, its RAM roles, the OIDC identity providers, and
//! the faults to inject.
use serde::{Deserialize, Serialize};

/// The STS emulator's configuration (TOML/JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StsConfig {
    /// The account that owns the roles (ARNs read `acs:ram::<account_id>:...`).
    pub account_id: String,
    /// The account's RAM roles.
    pub roles: Vec<RoleSpec>,
    /// The account's OIDC identity providers.
    pub oidc_providers: Vec<OidcProviderSpec>,
    /// Test knob: issue credentials that live this long, whatever `DurationSeconds` asks
    /// (the real minimum, 900 s, is too long to watch expiries in a test).
    pub session_lifetime_secs: Option<u64>,
    /// Allowed clock skew of signed requests, seconds.
    pub timestamp_tolerance_secs: u64,
    /// Faults in force from the start.
    pub faults: StsFaults,
}

/// A RAM role that can be assumed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Role name; the ARN is `acs:ram::<account_id>:role/<name>`.
    pub name: String,
    /// AccessKeyIds (of the ECS emulator's accounts) trusted to assume it with `AssumeRole`;
    /// `*` trusts every key and session of the account.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Roles whose sessions may assume this one (role chaining).
    #[serde(default)]
    pub trusted_roles: Vec<String>,
    /// OIDC providers (by name) trusted to assume it with `AssumeRoleWithOIDC`.
    #[serde(default)]
    pub trusted_oidc_providers: Vec<String>,
    /// When set, `AssumeRole` must bring this `ExternalId`.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The longest session, seconds (the role's MaxSessionDuration).
    #[serde(default = "default_max_session")]
    pub max_session_secs: u64,
    /// ECS actions the role's sessions are refused (`Forbidden.RAM`).
    #[serde(default)]
    pub denied_actions: Vec<String>,
}

fn default_max_session() -> u64 {
    3600
}

impl RoleSpec {
    /// A role trusting every key of the account, no OIDC provider.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            trusted_keys: vec!["*".into()],
            trusted_roles: Vec::new(),
            trusted_oidc_providers: Vec::new(),
            external_id: None,
            max_session_secs: default_max_session(),
            denied_actions: Vec::new(),
        }
    }
}

/// An OIDC identity provider (e.g. an ACK cluster's RRSA issuer).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderSpec {
    /// Name; the ARN is `acs:ram::<account_id>:oidc-provider/<name>`.
    pub name: String,
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// Accepted `aud` values (empty: any).
    #[serde(default)]
    pub client_ids: Vec<String>,
}

/// Failures to inject.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StsFaults {
    /// Chance (0..=1) of answering `Throttling`.
    pub throttle_probability: f64,
    /// Only these actions are throttled (empty: all).
    pub throttle_actions: Vec<String>,
    /// Throttle exactly this many of the next requests (of `throttle_actions`), then stop.
    pub throttle_next: u32,
    /// Roles (by name) whose assumption is refused with `NoPermission`.
    pub no_permission_roles: Vec<String>,
    /// Every OIDC token is treated as expired.
    pub oidc_token_expired: bool,
}

impl Default for StsConfig {
    fn default() -> Self {
        Self {
            account_id: "1234567890123456".into(),
            roles: vec![RoleSpec {
                trusted_oidc_providers: vec!["ack-rrsa".into()],
                ..RoleSpec::new("ecs-provisioner")
            }],
            oidc_providers: vec![OidcProviderSpec {
                name: "ack-rrsa".into(),
                issuer: "https://oidc-ack-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com/emulated".into(),
                client_ids: vec!["sts.aliyuncs.com".into()],
            }],
            session_lifetime_secs: None,
            timestamp_tolerance_secs: 900,
            faults: StsFaults::default(),
        }
    }
}

impl StsConfig {
    /// `acs:ram::<account_id>:role/<role>`.
    pub fn role_arn(&self, role: &str) -> String {
        format!("acs:ram::{}:role/{role}", self.account_id)
    }

    /// `acs:ram::<account_id>:oidc-provider/<provider>`.
    pub fn oidc_provider_arn(&self, provider: &str) -> String {
        format!("acs:ram::{}:oidc-provider/{provider}", self.account_id)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.account_id.is_empty() || !self.account_id.chars().all(|c| c.is_ascii_digit()) {
            anyhow::bail!("account_id {:?}: must be digits", self.account_id);
        }
        self.faults.validate()?;
        for r in &self.roles {
            for p in &r.trusted_oidc_providers {
                if !self.oidc_providers.iter().any(|o| &o.name == p) {
                    anyhow::bail!(
                        "roles {:?}: trusted_oidc_providers names unknown provider {p:?}",
                        r.name
                    );
                }
            }
        }
        Ok(())
    }
}

impl StsFaults {
    /// Checks the probability range.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(0.0..=1.0).contains(&self.throttle_probability) {
            anyhow::bail!(
                "throttle_probability {} is not within 0..=1",
                self.throttle_probability
            );
        }
        Ok(())
    }
}
