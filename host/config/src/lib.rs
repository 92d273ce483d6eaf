//! The TOML configuration file.
//!
//! **Owns** the file's format, defaults and validation. **Must not** perform I/O beyond reading
//! the files a key names, or hold runtime state: it yields plain, validated values.
//!
//! Parsing is strict: an unknown key or a value of the wrong type is an error that names the key
//! and the line (the `toml` crate reports both). A second pass checks what types cannot express
//! (minimums above maximums, empty label lists, duplicate template names...) and names the key
//! path, e.g. `template "linux": min-nodes (5) exceeds max-nodes (3)`.
//!
//! See `docs/configuration.md` for every key with an example.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub mod ha;
pub mod launch;
pub mod journal;
pub mod plaintext;
pub mod warm;
pub use warm::{IdleAction, StoppedModeConfig};
pub mod user_data;
pub use ha::{HaBackend, HaConfig, HaTlsConfig};
pub use launch::{ConnectVia, DataDiskConfig, LaunchProfile, MetadataTokens};
pub use user_data::LaunchMode;
pub use journal::JournalConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Stable id of this provisioner, tagged on every instance it creates. Two provisioners with
    /// different ids never touch each other's instances.
    pub controller_id: String,
    /// Time between reconcile cycles.
    #[serde(with = "humantime_serde", default = "defaults::poll_interval")]
    pub poll_interval: Duration,
    /// Address of the /metrics, /status and /healthz server.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Log format: `human` or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// `[cloud]`: region, network, launch defaults and credentials.
    pub cloud: CloudConfig,
    /// `[jenkins]`: the controller and how to reach it.
    pub jenkins: JenkinsConfig,
    /// `[ssh]`: how the bootstrap logs in to instances; defaults when absent.
    #[serde(default)]
    pub ssh: SshConfig,
    /// `[policy]`: the scaling policy and its sandbox; defaults when absent.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Agent templates, in order of preference: a queued build goes to the first that matches.
    #[serde(rename = "template", default)]
    pub templates: Vec<TemplateConfig>,
    /// `[ha]`: replicas coordinated through etcd; absent: one replica.
    #[serde(default)]
    pub ha: Option<HaConfig>,
    /// `[journal]`: the decision journal `run` keeps; defaults when absent.
    #[serde(default)]
    pub journal: JournalConfig,
}

/// `log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// `[cloud]`: where and how instances are launched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CloudConfig {
    /// Region id, e.g. `cn-hangzhou`.
    pub region: String,
    /// ECS API endpoint override (private endpoints, the emulator). Default: the region's.
    pub endpoint: Option<String>,
    /// VPC API endpoint override. Default: the region's.
    pub vpc_endpoint: Option<String>,
    /// STS endpoint for role credentials (AssumeRole, OIDC), overriding the credentials
    /// sources' own (private endpoints, the emulator). Default: as the official libraries.
    pub sts_endpoint: Option<String>,
    /// Where credentials come from.
    #[serde(default)]
    pub credentials: CredentialsConfig,
    /// VPC the vswitches belong to.
    pub vpc_id: String,
    /// Security group for every instance (must be in `vpc-id`); or `security-group-ids`.
    pub security_group_id: Option<String>,
    /// Security groups for every instance (all in `vpc-id`), instead of `security-group-id`.
    pub security_group_ids: Option<Vec<String>>,
    /// Image id (e.g. `m-...` or a public image such as `ubuntu_22_04_x64_20G_alibase_...`).
    pub image_id: String,
    /// Key pair name registered in ECS; its private half is `[ssh] private-key`.
    pub key_pair_name: String,
    // Launch settings every template inherits unless it sets its own (`config::launch`).
    /// System disk category (`cloud_essd`, `cloud_auto`, `cloud_efficiency`...).
    pub system_disk_category: Option<String>,
    /// System disk size, GiB.
    pub system_disk_size_gib: Option<u32>,
    /// ESSD performance level `PL0`..`PL3`.
    pub system_disk_performance_level: Option<String>,
    /// Data disks (at most 16).
    pub data_disks: Option<Vec<Spanned<DataDiskConfig>>>,
    /// User data (cloud-init), raw: base64-encoded on the wire; at most 32 KiB.
    pub user_data: Option<String>,
    /// Instance RAM role name.
    pub ram_role: Option<String>,
    /// Host name pattern (`{template}`, `{launch_id}`, `{instance_id}`).
    pub host_name: Option<String>,
    /// Instance name pattern (`{template}`, `{launch_id}`).
    pub instance_name: Option<String>,
    /// Resource group id.
    pub resource_group_id: Option<String>,
    /// Public bandwidth, Mbit/s (0 = no public IP: agents reach Jenkins through the VPC).
    pub internet_max_bandwidth_out: Option<u32>,
    /// Which instance address the bootstrap connects to: `private-ip` (default) or
    /// `public-ip` (needs internet-max-bandwidth-out).
    pub connect_via: Option<ConnectVia>,
    /// Instance metadata access: `optional`, or `required` (tokens only: hardened).
    pub metadata_tokens: Option<MetadataTokens>,
    /// ECS releases the instance this long after its launch (`AutoReleaseTime`), whatever
    /// happens to the provisioner: a hard lifetime.
    #[serde(default, with = "humantime_serde")]
    pub auto_release_after: Option<Duration>,
    /// Nodes allowed across all templates at once, counting launches in flight.
    #[serde(default = "defaults::max_total_nodes")]
    pub max_total_nodes: u32,
    /// Nodes launched at most per reconcile cycle, across templates.
    #[serde(default = "defaults::max_launch_per_cycle")]
    pub max_launch_per_cycle: u32,
    /// How long a failed offering (NoStock, IP exhaustion...) is avoided.
    #[serde(with = "humantime_serde", default = "defaults::capacity_cooldown")]
    pub capacity_cooldown: Duration,
    /// How long zone/type/vswitch offerings are cached between refreshes.
    #[serde(with = "humantime_serde", default = "defaults::offerings_ttl")]
    pub offerings_ttl: Duration,
    /// Hourly prices per instance type (`"ecs.c7.large" = 0.35`), shown to policies. Without
    /// them, prices are left unknown.
    #[serde(default)]
    pub prices: BTreeMap<String, f64>,
    /// Hourly spot prices per instance type, shown to policies for spot offerings.
    #[serde(default)]
    pub spot_prices: BTreeMap<String, f64>,
    /// How long to wait for a TCP (and TLS) connection to the ECS, VPC and STS endpoints.
    #[serde(with = "humantime_serde", default = "defaults::connect_timeout")]
    pub connect_timeout: Duration,
    /// How long to wait for the next bytes of an answer before giving up on the call.
    #[serde(with = "humantime_serde", default = "defaults::read_timeout")]
    pub read_timeout: Duration,
    /// No retry of a failed ECS call starts later than this after its first attempt.
    #[serde(with = "humantime_serde", default = "defaults::retry_budget")]
    pub retry_budget: Duration,
}

/// `[cloud.credentials]`: the source of the AccessKey.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", rename_all_fields = "kebab-case", tag = "source")]
pub enum CredentialsConfig {
    /// The official SDKs' default chain: environment, credentials file, CLI config, RAM role.
    #[default]
    Chain,
    /// An AccessKey whose secret is read from an environment variable or a file (never inline).
    Static {
        /// AccessKey id (`access-key-id`).
        access_key_id: String,
        /// Environment variable holding the secret (`secret-env`); exactly one of this and `secret-file`.
        secret_env: Option<String>,
        /// File holding the secret (`secret-file`); exactly one of this and `secret-env`.
        secret_file: Option<PathBuf>,
        /// Environment variable holding an STS security token (`security-token-env`), for temporary keys.
        security_token_env: Option<String>,
    },
    /// A named profile of `~/.alibabacloud/credentials` or the aliyun CLI's `config.json`.
    Profile {
        /// The profile's name.
        name: String,
    },
    /// The instance RAM role, from instance metadata.
    RamRole {
        /// The role to use; `None` asks the metadata service which one is attached.
        role_name: Option<String>,
    },
}

/// `[jenkins]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JenkinsConfig {
    /// Base URL of the controller, e.g. `https://jenkins.example.com/`.
    pub url: String,
    /// User the API token belongs to.
    pub user: String,
    /// Environment variable holding the API token.
    pub token_env: Option<String>,
    /// File holding the API token.
    pub token_file: Option<PathBuf>,
    /// URL agents use to reach the controller (default: `url`).
    pub agent_url: Option<String>,
    /// How long to wait for a TCP (and TLS) connection to Jenkins.
    #[serde(with = "humantime_serde", default = "defaults::connect_timeout")]
    pub connect_timeout: Duration,
    /// How long to wait for the next bytes of an answer from Jenkins.
    #[serde(with = "humantime_serde", default = "defaults::read_timeout")]
    pub read_timeout: Duration,
}

/// `[ssh]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SshConfig {
    /// Login user on the instances.
    #[serde(default = "defaults::ssh_user")]
    pub user: String,
    /// sshd port on the instances.
    #[serde(default = "defaults::ssh_port")]
    pub port: u16,
    /// Private key of the key pair named in `[cloud] key-pair-name`.
    pub private_key: Option<PathBuf>,
    /// Environment variable with the private key's passphrase, if it is encrypted.
    pub passphrase_env: Option<String>,
    /// `accept-new` (pin on first use), `strict` (key from the console output) or `off`.
    #[serde(default)]
    pub host_key_policy: HostKeyPolicyConfig,
    /// Known-hosts file the provisioner manages for `accept-new`.
    pub known_hosts: Option<PathBuf>,
    /// Concurrent bootstraps at most.
    #[serde(default = "defaults::bootstrap_concurrency")]
    pub concurrency: usize,
}

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            user: defaults::ssh_user(),
            port: defaults::ssh_port(),
            private_key: None,
            passphrase_env: None,
            host_key_policy: HostKeyPolicyConfig::default(),
            known_hosts: None,
            concurrency: defaults::bootstrap_concurrency(),
        }
    }
}

/// `[ssh] host-key-policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicyConfig {
    /// Pin each instance's key on first contact; refuse a changed key (the default).
    #[default]
    AcceptNew,
    /// Accept only a key the instance printed on its console output.
    Strict,
    /// Accept any key (explicit opt-in).
    Off,
}

/// `[policy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicyConfig {
    /// A `.wasm` path, or `builtin:default`.
    #[serde(default = "defaults::policy_source")]
    pub source: String,
    /// The policy's own settings, passed to its `configure` as JSON.
    #[serde(default)]
    pub settings: toml::Table,
    /// What a cycle does when the policy fails: `fallback` to the built-in policy, or `hold`.
    #[serde(default)]
    pub on_error: OnPolicyError,
    /// Guest memory cap, MiB.
    #[serde(default = "defaults::policy_memory_mib")]
    pub memory_limit_mib: u32,
    /// CPU budget per call, in wasmtime fuel (about one unit per wasm instruction). The
    /// deterministic budget: a call that fits it does so however busy the machine is.
    #[serde(default = "defaults::policy_fuel")]
    pub fuel: Spanned<u64>,
    /// Wall-clock backstop per call: only catches what fuel cannot, so it is generous.
    #[serde(with = "humantime_serde", default = "defaults::policy_timeout")]
    pub timeout: Duration,
    /// Log lines a policy may write per minute, across calls.
    #[serde(default = "defaults::policy_log_lines_per_minute")]
    pub log_lines_per_minute: Spanned<u32>,
    /// Log lines a quiet policy may write at once, above the per-minute rate.
    #[serde(default = "defaults::policy_log_burst")]
    pub log_burst: Spanned<u32>,
    /// A candidate policy (a `.wasm` path or `builtin:default`) that decides every cycle on the
    /// same snapshot without acting: where it would have decided differently is counted on
    /// `/status` and in metrics (shadow mode).
    #[serde(default)]
    pub shadow: Option<String>,
    /// The shadow policy's own settings. Absent: the active policy's `settings` (the usual
    /// case of a new version of the same policy).
    #[serde(default)]
    pub shadow_settings: Option<toml::Table>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            source: defaults::policy_source(),
            settings: toml::Table::new(),
            on_error: OnPolicyError::default(),
            memory_limit_mib: defaults::policy_memory_mib(),
            fuel: defaults::policy_fuel(),
            timeout: defaults::policy_timeout(),
            log_lines_per_minute: defaults::policy_log_lines_per_minute(),
            log_burst: defaults::policy_log_burst(),
            shadow: None,
            shadow_settings: None,
        }
    }
}

impl PolicyConfig {
    /// The settings the shadow policy is loaded with: the same limits, its source, and
    /// `shadow-settings` (else the active policy's settings). `None` without a shadow.
    pub fn shadow_config(&self) -> Option<PolicyConfig> {
        let source = self.shadow.clone()?;
        let settings = self.shadow_settings.clone().unwrap_or_else(|| self.settings.clone());
        Some(PolicyConfig { source, settings, shadow: None, shadow_settings: None, ..self.clone() })
    }

    /// The settings as the JSON text `configure` receives.
    pub fn settings_json(&self) -> String {
        serde_json::to_string(&self.settings).expect("a TOML table is always valid JSON")
    }
}

/// `[policy] on-error`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnPolicyError {
    /// Decide this cycle with the built-in default policy.
    #[default]
    Fallback,
    /// Launch and remove nothing this cycle.
    Hold,
}

/// `[[template]]`: one kind of agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TemplateConfig {
    /// Unique name; prefix of the Jenkins node names (`<name>-<instance-id>`).
    pub name: Spanned<String>,
    /// Jenkins labels of the nodes.
    pub labels: Vec<String>,
    /// Executors per node.
    #[serde(default = "defaults::executors")]
    pub executors: u32,
    /// Jenkins node mode: `normal` (any build) or `exclusive` (only builds naming its labels).
    #[serde(default)]
    pub mode: NodeMode,
    /// Candidate zones, or `auto` (every zone with a listed vswitch).
    #[serde(default)]
    pub zones: Candidates,
    /// Candidate vswitches, or `auto` (every vswitch of the VPC).
    #[serde(default)]
    pub vswitches: Candidates,
    /// Candidate instance types, or `auto` (every type available in the zones).
    #[serde(default)]
    pub instance_types: Candidates,
    /// `on-demand`, `spot-first` or `spot-only`.
    #[serde(default)]
    pub spot: SpotModeConfig,
    /// Highest hourly spot price accepted (default: pay up to the on-demand price).
    pub spot_price_limit: Option<f64>,
    /// Nodes kept at all times.
    #[serde(default)]
    pub min_nodes: u32,
    /// Nodes allowed at once.
    pub max_nodes: u32,
    /// Idle time after which a node beyond the minimum is removed (`0s` = never).
    #[serde(with = "humantime_serde", default = "defaults::idle_timeout")]
    pub idle_timeout: Duration,
    /// Builds per node before it is retired (0 = unlimited, 1 = one-shot).
    #[serde(default)]
    pub max_uses: u32,
    /// What removing an idle node does: `delete` (default) or `stop` (warm pool).
    #[serde(default)]
    pub idle_action: IdleAction,
    /// `stop-charging` (default, economical mode) or `keep-charging`.
    #[serde(default)]
    pub stopped_mode: StoppedModeConfig,
    /// Stopped instances kept at most; see [`TemplateConfig::max_stopped`].
    #[serde(default, rename = "max-stopped")]
    pub max_stopped_setting: Option<u32>,
    /// From launch to agent online; past it the instance is terminated with a recorded reason.
    #[serde(with = "humantime_serde", default = "defaults::launch_timeout")]
    pub launch_timeout: Duration,
    /// How long an agent that dropped after being online may take to come back (the host
    /// restarts it at once) before its instance is replaced. Default: 5m, or the launch
    /// timeout when that is shorter. See [`TemplateConfig::reconnect_timeout`].
    #[serde(with = "humantime_serde", default, rename = "reconnect-timeout")]
    pub reconnect_timeout_setting: Option<Duration>,
    /// How the agent is started: `ssh` (default; the host connects in) or `user-data` (the
    /// instance starts it from its cloud-init script; nothing connects in). See [`user_data`].
    #[serde(default)]
    pub launch: LaunchMode,
    /// With `launch = "user-data"`: the cloud-init script template (default
    /// [`user_data::DEFAULT_USER_DATA_SCRIPT`]); the only place `{secret}` is allowed.
    pub user_data_script: Option<String>,
    /// Shell script run once on a new instance, before the agent starts.
    #[serde(default)]
    pub init_script: String,
    /// Command that starts the agent, with placeholders (see `docs/configuration.md`).
    #[serde(default = "defaults::agent_command")]
    pub agent_command: String,
    /// The Java launcher on the instances (`{java}`); checked with `-version` before the agent
    /// starts, when the agent command runs Java.
    #[serde(default = "defaults::java_path")]
    pub java_path: String,
    /// JVM options (`{jvm_options}`), e.g. `["-Xmx2g"]`.
    #[serde(default)]
    pub jvm_options: Vec<String>,
    /// Oldest Java feature release the agents may run on (`java -version` is checked before
    /// the agent starts); 0: any. Default 17, what Jenkins 2.463 and later need.
    #[serde(default = "defaults::java_min_version")]
    pub java_min_version: u32,
    /// Agent working directory on the instance.
    #[serde(default = "defaults::remote_fs")]
    pub remote_fs: String,
    /// Extra instance tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Image of this template's instances (default: `[cloud] image-id`).
    pub image_id: Option<String>,
    /// Security group of this template's instances (default: the cloud's).
    pub security_group_id: Option<String>,
    /// Security groups of this template's instances (default: the cloud's).
    pub security_group_ids: Option<Vec<String>>,
    /// Key pair of this template's instances (default: `[cloud] key-pair-name`); with it, set
    /// `ssh-private-key` unless `[ssh] private-key` is its private half.
    pub key_pair_name: Option<String>,
    /// Login user (default: `[ssh] user`).
    pub ssh_user: Option<String>,
    /// sshd port (default: `[ssh] port`).
    pub ssh_port: Option<u16>,
    /// Private key of this template's key pair (default: `[ssh] private-key`).
    pub ssh_private_key: Option<PathBuf>,
    // Launch settings that override the cloud's, key by key (`config::launch`).
    /// System disk category (`cloud_essd`, `cloud_auto`, `cloud_efficiency`...).
    pub system_disk_category: Option<String>,
    /// System disk size, GiB.
    pub system_disk_size_gib: Option<u32>,
    /// ESSD performance level `PL0`..`PL3`.
    pub system_disk_performance_level: Option<String>,
    /// Data disks (at most 16).
    pub data_disks: Option<Vec<Spanned<DataDiskConfig>>>,
    /// User data (cloud-init), raw: base64-encoded on the wire; at most 32 KiB.
    pub user_data: Option<String>,
    /// Instance RAM role name.
    pub ram_role: Option<String>,
    /// Host name pattern (`{template}`, `{launch_id}`, `{instance_id}`).
    pub host_name: Option<String>,
    /// Instance name pattern (`{template}`, `{launch_id}`).
    pub instance_name: Option<String>,
    /// Resource group id.
    pub resource_group_id: Option<String>,
    /// Public bandwidth, Mbit/s (0 = no public IP: agents reach Jenkins through the VPC).
    pub internet_max_bandwidth_out: Option<u32>,
    /// Which instance address the bootstrap connects to: `private-ip` (default) or
    /// `public-ip` (needs internet-max-bandwidth-out).
    pub connect_via: Option<ConnectVia>,
    /// Instance metadata access: `optional`, or `required` (tokens only: hardened).
    pub metadata_tokens: Option<MetadataTokens>,
    /// ECS releases the instance this long after its launch (`AutoReleaseTime`), whatever
    /// happens to the provisioner: a hard lifetime.
    #[serde(default, with = "humantime_serde")]
    pub auto_release_after: Option<Duration>,
}


impl TemplateConfig {
    /// The template's name (`name`).
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    /// `reconnect-timeout`, or its default: 5 minutes, capped at the launch timeout.
    pub fn reconnect_timeout(&self) -> Duration {
        self.reconnect_timeout_setting
            .unwrap_or_else(|| Duration::from_secs(300).min(self.launch_timeout))
    }
}

/// `mode` of a template's Jenkins nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeMode {
    /// `normal`: the nodes take any build (the default).
    #[default]
    Normal,
    /// `exclusive`: the nodes take only builds whose label expression matches.
    Exclusive,
}

/// `spot` of a template.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpotModeConfig {
    /// `on-demand`: on-demand instances only (the default).
    #[default]
    OnDemand,
    /// `spot-first`: spot instances first, on-demand when spot capacity fails or is absent.
    SpotFirst,
    /// `spot-only`: spot instances only.
    SpotOnly,
}

/// A candidate list that may be left to discovery: `"auto"` or a list of ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Candidates {
    /// `"auto"`: discovered from the cloud (the default).
    #[default]
    Auto,
    /// These ids only.
    List(Vec<String>),
}

impl Candidates {
    /// Whether `id` is allowed.
    pub fn allows(&self, id: &str) -> bool {
        match self {
            Candidates::Auto => true,
            Candidates::List(ids) => ids.iter().any(|x| x == id),
        }
    }
}

impl<'de> Deserialize<'de> for Candidates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<String>),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(r#"expected "auto" or a list of ids, e.g. ["cn-hangzhou-h"]"#)
        })? {
            Raw::Word(w) if w == "auto" => Ok(Candidates::Auto),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                r#"expected "auto" or a list of ids, found the string "{w}" (write ["{w}"] for one id)"#
            ))),
            Raw::List(ids) if ids.is_empty() => Err(serde::de::Error::custom(
                r#"an empty list allows nothing; write "auto" or name at least one id"#,
            )),
            Raw::List(ids) => Ok(Candidates::List(ids)),
        }
    }
}

/// A configuration error, with where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read. The OS error is part of the message and not a
    /// `source`, so a chain printer (`{:#}`) does not say it twice.
    #[error("cannot read config file {path}: {cause}")]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// Why it could not be read.
        cause: std::io::Error,
    },
    /// The config file is not valid (a parse error or a rule broken).
    #[error("{path}: {message}")]
    Invalid {
        /// The file that holds the error.
        path: PathBuf,
        /// What is wrong, naming the key and the line.
        message: String,
    },
}

/// Deserialises the file into [`Config`]; a type error names the key path
/// (`template[1].max-nodes`) as well as the line the `toml` crate reports.
fn parse_typed(text: &str) -> Result<Config, String> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| e.to_string().trim_end().to_owned())?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = key_path(e.path());
        let message = e.into_inner().to_string().trim_end().to_owned();
        if path.is_empty() {
            return message;
        }
        // The toml message ends with what is wrong, after the line it quotes: name the key there.
        match message.rsplit_once('\n') {
            Some((quote, what)) => format!("{quote}\n{path}: {what}"),
            None => format!("{path}: {message}"),
        }
    })
}

/// The key path of a deserialisation error in the file's own spelling: `template[1].max-nodes`.
/// Segments `toml::Spanned` adds for its own bookkeeping are left out.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } if !key.starts_with("$__") => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            _ => {}
        }
    }
    out
}

/// True when `label` is one Jenkins label atom as the label-expression grammar reads it
/// (so that a build's `label` expression can name it unquoted): letters, digits and
/// punctuation such as `-`, `.`, `_`, `:` and `/`, but no space, quote, operator or `->`.
pub fn is_label_atom(label: &str) -> bool {
    matches!(ecsp_jenkins::label::LabelExpr::parse(label), Ok(ecsp_jenkins::label::LabelExpr::Atom(a)) if a == label)
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|cause| ConfigError::Read { path: path.to_owned(), cause })?;
        Config::parse(&text).map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })
    }

    /// Parses and validates configuration text; the error names the key and the line.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config = parse_typed(text)?;
        config.validate(text)?;
        Ok(config)
    }

    /// Checks what the types cannot express.
    fn validate(&self, text: &str) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.controller_id.trim().is_empty() {
            problems.push("controller-id: must not be empty".to_owned());
        } else if !self.controller_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            problems.push(format!(
                "controller-id: {:?} may contain only letters, digits, '-', '_' and '.' (it becomes a tag value)",
                self.controller_id
            ));
        }
        if self.poll_interval < Duration::from_secs(1) {
            problems.push("poll-interval: must be at least 1s".to_owned());
        }
        if self.templates.is_empty() {
            problems.push("no [[template]] defined: add at least one".to_owned());
        }
        if let Some(ha) = &self.ha {
            problems.extend(ha.problems());
        }
        problems.extend(self.journal.problems());
        if self.jenkins.token_env.is_some() && self.jenkins.token_file.is_some() {
            problems.push("jenkins: set token-env or token-file, not both".to_owned());
        }
        if self.policy.memory_limit_mib < 1 {
            problems.push("policy.memory-limit-mib: must be at least 1".to_owned());
        }
        if self.policy.timeout.is_zero() {
            problems.push("policy.timeout: must be more than 0s".to_owned());
        }
        let policy_key = |key: &str, span: std::ops::Range<usize>| {
            if span.is_empty() { format!("policy.{key}") } else { format!("policy.{key} (line {})", line_of(text, span.start)) }
        };
        let fuel = &self.policy.fuel;
        if *fuel.get_ref() < MIN_POLICY_FUEL {
            problems.push(format!(
                "{}: {} is too little to run even a trivial policy; use at least {MIN_POLICY_FUEL} (the default is {})",
                policy_key("fuel", fuel.span()),
                fuel.get_ref(),
                ecsp_policy::DEFAULT_FUEL
            ));
        }
        let per_minute = &self.policy.log_lines_per_minute;
        if *per_minute.get_ref() == 0 {
            problems.push(format!(
                "{}: must be at least 1 (a policy's warnings and errors must be able to reach the log)",
                policy_key("log-lines-per-minute", per_minute.span())
            ));
        }
        let burst = &self.policy.log_burst;
        if *burst.get_ref() == 0 {
            problems.push(format!("{}: must be at least 1", policy_key("log-burst", burst.span())));
        }
        for (key, value) in [
            ("cloud.connect-timeout", self.cloud.connect_timeout),
            ("cloud.read-timeout", self.cloud.read_timeout),
            ("jenkins.connect-timeout", self.jenkins.connect_timeout),
            ("jenkins.read-timeout", self.jenkins.read_timeout),
        ] {
            if value < Duration::from_millis(100) {
                problems.push(format!("{key}: must be at least 100ms"));
            }
        }
        if self.cloud.max_launch_per_cycle == 0 {
            problems.push("cloud.max-launch-per-cycle: must be at least 1".to_owned());
        }
        if let CredentialsConfig::Static { secret_env, secret_file, .. } = &self.cloud.credentials
            && secret_env.is_some() == secret_file.is_some() {
                problems.push("cloud.credentials: with source = \"static\" set exactly one of secret-env or secret-file".to_owned());
            }

        match (&self.cloud.security_group_id, &self.cloud.security_group_ids) {
            (None, None) => problems.push("cloud: set security-group-id (or security-group-ids, a list)".to_owned()),
            (Some(_), Some(_)) => problems.push(format!(
                "cloud (line {}): set security-group-id or security-group-ids, not both",
                key_line(text, "cloud", "security-group-ids")
            )),
            _ => {}
        }
        launch::validate_keys(&launch::LaunchKeys::of_cloud(&self.cloud), &format!("cloud (line {})", key_line(text, "cloud", "")), text, &mut problems);

        let mut sum_min = 0u64;
        for (i, t) in self.templates.iter().enumerate() {
            let line = line_of(text, t.name.span().start);
            let at = format!("template \"{}\" (line {line})", t.name());
            if let Some(first) = self.templates[..i].iter().find(|o| o.name() == t.name()) {
                problems.push(format!("{at}: name already used by the template at line {}", line_of(text, first.name.span().start)));
            }
            if t.name().is_empty() || !t.name().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                problems.push(format!("{at}: name may contain only letters, digits, '-' and '_' (it prefixes Jenkins node names)"));
            }
            if t.labels.is_empty() {
                problems.push(format!("{at}: labels must name at least one label"));
            }
            if let Some(bad) = t.labels.iter().find(|l| !is_label_atom(l)) {
                problems.push(format!(
                    "{at}: label {bad:?} is not a single Jenkins label: it may not be empty or contain spaces, \
                     quotes, `&`, `|`, `!`, `<`, `>`, `(`, `)` or `->`"
                ));
            }
            if t.executors == 0 {
                problems.push(format!("{at}: executors must be at least 1"));
            }
            if t.max_nodes == 0 {
                problems.push(format!("{at}: max-nodes must be at least 1"));
            }
            if t.min_nodes > t.max_nodes {
                problems.push(format!("{at}: min-nodes ({}) exceeds max-nodes ({})", t.min_nodes, t.max_nodes));
            }
            if t.idle_action == IdleAction::Stop && t.max_stopped() == 0 {
                problems.push(format!("{at}: idle-action = \"stop\" needs max-stopped of at least 1 (0 keeps no stopped instance)"));
            }
            if t.launch_timeout < Duration::from_secs(10) {
                problems.push(format!("{at}: launch-timeout must be at least 10s"));
            }
            if let Some(r) = t.reconnect_timeout_setting {
                if r < Duration::from_secs(5) {
                    problems.push(format!("{at}: reconnect-timeout must be at least 5s"));
                } else if r > t.launch_timeout {
                    problems.push(format!(
                        "{at}: reconnect-timeout ({}) exceeds launch-timeout ({}): restarting an agent takes no longer than starting it",
                        humantime::format_duration(r),
                        humantime::format_duration(t.launch_timeout)
                    ));
                }
            }
            if !t.agent_command.contains("{secret_file}") {
                problems.push(format!("{at}: agent-command must read the secret from {{secret_file}} (secrets never go on a command line)"));
            }
            if t.max_uses > 0 && t.max_uses < t.executors {
                problems.push(format!(
                    "{at}: max-uses ({}) is below executors ({}): Jenkins can start {} builds at once on a node, before any limit can act; use executors = {} (one-shot agents: executors = 1, max-uses = 1)",
                    t.max_uses, t.executors, t.executors, t.max_uses
                ));
            }
            if t.java_path.trim().is_empty() {
                problems.push(format!("{at}: java-path must not be empty (the default is \"java\", found on PATH)"));
            }
            if t.java_min_version != 0 && !(8..=99).contains(&t.java_min_version) {
                problems.push(format!("{at}: java-min-version {} is not a Java feature release (8-99, e.g. 17 or 21; 0 = any)", t.java_min_version));
            }
            if let Some(bad) = t.jvm_options.iter().find(|o| !o.starts_with('-')) {
                problems.push(format!("{at}: jvm-options: {bad:?} is not a JVM option (they start with '-', one option per list item)"));
            }
            if t.security_group_id.is_some() && t.security_group_ids.is_some() {
                problems.push(format!("{at}: set security-group-id or security-group-ids, not both"));
            }
            launch::validate_keys(&launch::LaunchKeys::of_template(t), &at, text, &mut problems);
            user_data::validate(t, &at, &mut problems);
            launch::validate_profile(&self.launch_profile(t), &at, &mut problems);
            if t.spot == SpotModeConfig::OnDemand && t.spot_price_limit.is_some() {
                problems.push(format!("{at}: spot-price-limit is set but spot = \"on-demand\""));
            }
            sum_min += u64::from(t.min_nodes);
        }
        if sum_min > u64::from(self.cloud.max_total_nodes) {
            problems.push(format!(
                "cloud.max-total-nodes ({}) is below the sum of the templates' min-nodes ({sum_min})",
                self.cloud.max_total_nodes
            ));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("\n")) }
    }

    /// The template named `name`.
    pub fn template(&self, name: &str) -> Option<&TemplateConfig> {
        self.templates.iter().find(|t| t.name() == name)
    }
}

/// 1-based line of `key` in the table `[table]` (its header's line when the key is empty or
/// not found there).
fn key_line(text: &str, table: &str, key: &str) -> usize {
    let header = format!("[{table}]");
    let mut in_table = false;
    let mut header_line = 1;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            in_table = l == header;
            if in_table {
                header_line = i + 1;
            }
            continue;
        }
        if in_table && !key.is_empty() && l.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('=')) {
            return i + 1;
        }
    }
    header_line
}

/// Least `[policy] fuel` accepted: a policy's `configure` alone needs some tens of thousands.
pub const MIN_POLICY_FUEL: u64 = 1_000_000;

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    pub fn poll_interval() -> Duration { Duration::from_secs(10) }
    pub fn listen() -> SocketAddr { "127.0.0.1:9464".parse().unwrap() }
    pub fn max_total_nodes() -> u32 { 100 }
    pub fn max_launch_per_cycle() -> u32 { 100 }
    pub fn capacity_cooldown() -> Duration { Duration::from_secs(300) }
    pub fn offerings_ttl() -> Duration { Duration::from_secs(300) }
    // With these, `check` reports a dead or silent endpoint within 20 s: one silent attempt
    // (10 s) leaves no time for a retry in the budget; a refused one retries within it.
    pub fn connect_timeout() -> Duration { Duration::from_secs(5) }
    pub fn read_timeout() -> Duration { Duration::from_secs(10) }
    pub fn retry_budget() -> Duration { Duration::from_secs(8) }
    pub fn ssh_user() -> String { "root".into() }
    pub fn ssh_port() -> u16 { 22 }
    pub fn bootstrap_concurrency() -> usize { 32 }
    pub fn policy_source() -> String { "builtin:default".into() }
    pub fn policy_memory_mib() -> u32 { 64 }
    pub fn policy_timeout() -> Duration { ecsp_policy::DEFAULT_DEADLINE }
    pub fn policy_fuel() -> toml::Spanned<u64> { toml::Spanned::new(0..0, ecsp_policy::DEFAULT_FUEL) }
    pub fn policy_log_lines_per_minute() -> toml::Spanned<u32> { toml::Spanned::new(0..0, 120) }
    pub fn policy_log_burst() -> toml::Spanned<u32> { toml::Spanned::new(0..0, 60) }
    pub fn executors() -> u32 { 1 }
    pub fn idle_timeout() -> Duration { Duration::from_secs(600) }
    pub fn launch_timeout() -> Duration { Duration::from_secs(900) }
    pub fn remote_fs() -> String { "/var/lib/jenkins-agent".into() }
    pub fn java_path() -> String { "java".into() }
    pub fn java_min_version() -> u32 { ecsp_ssh::bootstrap::DEFAULT_JAVA_MIN_VERSION }
    pub fn agent_command() -> String {
        "{java} {jvm_options} -jar {work_dir}/agent.jar -url {jenkins_url} -name {node_name} -secret @{secret_file} -webSocket -workDir {work_dir}".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
controller-id = "ci-prod"

[cloud]
region = "cn-hangzhou"
vpc-id = "vpc-1"
security-group-id = "sg-1"
image-id = "m-1"
key-pair-name = "jenkins"

[jenkins]
url = "http://127.0.0.1:8080/"
user = "admin"
token-env = "JENKINS_TOKEN"

[[template]]
name = "linux"
labels = ["linux", "docker"]
max-nodes = 10
"#;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(10));
        assert_eq!(c.policy.source, "builtin:default");
        assert_eq!(c.policy.on_error, OnPolicyError::Fallback);
        assert_eq!(c.ssh.host_key_policy, HostKeyPolicyConfig::AcceptNew);
        let t = &c.templates[0];
        assert_eq!((t.name(), t.executors, t.min_nodes, t.max_nodes), ("linux", 1, 0, 10));
        assert_eq!(t.zones, Candidates::Auto);
        assert_eq!(t.idle_timeout, Duration::from_secs(600));
        assert_eq!(c.policy.settings_json(), "{}");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = MINIMAL.replace("max-nodes = 10", "max-nodes = 10\nmax-node = 3");
        let err = Config::parse(&text).unwrap_err();
        assert!(err.contains("unknown field `max-node`"), "{err}");
        assert!(err.contains("line 20"), "{err}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let text = MINIMAL.replace("max-nodes = 10", "max-nodes = \"ten\"");
        let err = Config::parse(&text).unwrap_err();
        assert!(err.contains("line 19") && err.contains("max-nodes"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key_path() {
        let text = format!("{MINIMAL}\n[[template]]\nname = \"win\"\nlabels = [\"windows\"]\nmax-nodes = \"two\"\n");
        let err = Config::parse(&text).unwrap_err();
        assert!(err.contains("template[1].max-nodes: invalid type: string \"two\", expected u32"), "{err}");
        assert!(err.contains("line 24"), "{err}");
        let err = Config::parse(&MINIMAL.replace("user = \"admin\"", "user = 3")).unwrap_err();
        assert!(err.contains("jenkins.user: invalid type"), "{err}");
    }

    #[test]
    fn template_labels_are_the_atoms_of_jenkins_label_grammar() {
        use ecsp_jenkins::label::LabelExpr;
        let accepted = ["linux-amd64", "a-b-c", "jdk_17", "ubuntu22.04", "x86:64", "os/linux", "gpu@2", "v1+2", "-lead", "trail-", "ÄÖ-ü"];
        let refused = ["", "linux amd64", "a&&b", "a||b", "!a", "a->b", "(a)", "a<b", "a>b", "say\"hi\"", "it's", "tab\tx"];
        for label in accepted {
            // What our label-expression parser reads as the single atom `label` is accepted...
            assert_eq!(LabelExpr::parse(label), Ok(LabelExpr::Atom(label.to_owned())), "{label}");
            let text = MINIMAL.replace(r#"["linux", "docker"]"#, &format!("[{label:?}]"));
            assert!(Config::parse(&text).is_ok(), "{label}: {:?}", Config::parse(&text).err());
        }
        for label in refused {
            // ...and whatever it does not read so is refused, with the label named.
            assert_ne!(LabelExpr::parse(label).ok(), Some(LabelExpr::Atom(label.to_owned())), "{label}");
            let text = MINIMAL.replace(r#"["linux", "docker"]"#, &format!("[{label:?}]"));
            let err = Config::parse(&text).unwrap_err();
            assert!(err.contains(&format!("label {label:?} is not a single Jenkins label")), "{label}: {err}");
        }
    }

    #[test]
    fn the_packaged_example_configuration_is_valid() {
        let c = Config::parse(include_str!("../../../packaging/ecs-provisioner.toml")).unwrap();
        assert_eq!(c.templates[0].labels, ["linux", "linux-amd64"]);
    }

    #[test]
    fn a_missing_file_names_the_os_error_once() {
        let err = Config::load(Path::new("/nonexistent/ecs-provisioner.toml")).unwrap_err();
        let chain = anyhow_like(&err);
        assert_eq!(chain.matches("No such file").count(), 1, "{chain}");
    }

    /// What `anyhow`'s `{:#}` prints: the error and each of its sources.
    fn anyhow_like(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            out.push_str(&format!(": {s}"));
            source = s.source();
        }
        out
    }

    #[test]
    fn semantic_errors_name_template_and_line() {
        let text = MINIMAL.replace("max-nodes = 10", "max-nodes = 2\nmin-nodes = 5\nexecutors = 0");
        let err = Config::parse(&text).unwrap_err();
        assert!(err.contains(r#"template "linux" (line 17): min-nodes (5) exceeds max-nodes (2)"#), "{err}");
        assert!(err.contains("executors must be at least 1"), "{err}");
    }

    #[test]
    fn duplicate_template_names_are_rejected() {
        let text = format!("{MINIMAL}\n[[template]]\nname = \"linux\"\nlabels = [\"x\"]\nmax-nodes = 1\n");
        let err = Config::parse(&text).unwrap_err();
        assert!(err.contains("name already used by the template at line 17"), "{err}");
    }

    #[test]
    fn candidates_accept_auto_or_list_and_explain_mistakes() {
        let c = Config::parse(&MINIMAL.replace("max-nodes = 10", "max-nodes = 10\nzones = [\"cn-hangzhou-h\"]")).unwrap();
        assert!(c.templates[0].zones.allows("cn-hangzhou-h"));
        assert!(!c.templates[0].zones.allows("cn-hangzhou-i"));
        let err = Config::parse(&MINIMAL.replace("max-nodes = 10", "max-nodes = 10\nzones = \"cn-hangzhou-h\"")).unwrap_err();
        assert!(err.contains(r#"write ["cn-hangzhou-h"] for one id"#), "{err}");
    }

    #[test]
    fn durations_and_policy_settings_parse() {
        let text = MINIMAL.replace("max-nodes = 10", "max-nodes = 10\nidle-timeout = \"90s\"\nlaunch-timeout = \"5m\"")
            + "\n[policy]\nsource = \"p.wasm\"\ntimeout = \"50ms\"\non-error = \"hold\"\n[policy.settings]\ncooldown-secs = 60\n";
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.templates[0].idle_timeout, Duration::from_secs(90));
        assert_eq!(c.templates[0].launch_timeout, Duration::from_secs(300));
        assert_eq!(c.policy.timeout, Duration::from_millis(50));
        assert_eq!(c.policy.on_error, OnPolicyError::Hold);
        assert_eq!(c.policy.settings_json(), r#"{"cooldown-secs":60}"#);
    }

    #[test]
    fn policy_budgets_have_defaults_and_errors_name_key_and_line() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(*c.policy.fuel.get_ref(), ecsp_policy::DEFAULT_FUEL);
        assert_eq!(c.policy.timeout, ecsp_policy::DEFAULT_DEADLINE);
        assert_eq!((*c.policy.log_lines_per_minute.get_ref(), *c.policy.log_burst.get_ref()), (120, 60));

        let text = format!("{MINIMAL}\n[policy]\nfuel = 5_000_000\nlog-lines-per-minute = 30\nlog-burst = 5\n");
        let c = Config::parse(&text).unwrap();
        assert_eq!((*c.policy.fuel.get_ref(), *c.policy.log_lines_per_minute.get_ref(), *c.policy.log_burst.get_ref()), (5_000_000, 30, 5));

        let text = format!("{MINIMAL}\n[policy]\nfuel = 10\nlog-lines-per-minute = 0\nlog-burst = 0\n");
        let err = Config::parse(&text).unwrap_err();
        assert!(err.contains("policy.fuel (line 22): 10 is too little"), "{err}");
        assert!(err.contains("policy.log-lines-per-minute (line 23): must be at least 1"), "{err}");
        assert!(err.contains("policy.log-burst (line 24): must be at least 1"), "{err}");

        let err = Config::parse(&format!("{MINIMAL}\n[policy]\nfuel = \"lots\"\n")).unwrap_err();
        assert!(err.contains("line 22") && err.contains("fuel"), "{err}");
    }

    #[test]
    fn agent_command_must_not_take_the_secret_inline() {
        let text = MINIMAL.replace("max-nodes = 10", "max-nodes = 10\nagent-command = \"java -jar agent.jar -secret abc\"");
        let err = Config::parse(&text).unwrap_err();
        assert!(err.contains("agent-command must read the secret from {secret_file}"), "{err}");
    }

    #[test]
    fn minimal_config_launch_profile_is_the_clouds() {
        let c = Config::parse(MINIMAL).unwrap();
        let p = c.launch_profile(&c.templates[0]);
        assert_eq!((p.image_id.as_str(), p.key_pair_name.as_str()), ("m-1", "jenkins"));
        assert_eq!(p.security_group_ids, ["sg-1"]);
        assert_eq!((p.ssh_user.as_str(), p.ssh_port), ("root", 22));
        assert_eq!(p.keys, launch::LaunchKeys::default());
        assert_eq!(c.templates[0].java_path, "java");
    }

    #[test]
    fn templates_override_the_clouds_launch_keys_one_by_one() {
        let text = MINIMAL.replace("key-pair-name = \"jenkins\"", "key-pair-name = \"jenkins\"\nram-role = \"ci\"\nsystem-disk-category = \"cloud_auto\"\ndata-disks = [{ category = \"cloud_essd\", size-gib = 40 }]")
            .replace("max-nodes = 10", "max-nodes = 10\nimage-id = \"m-gpu\"\nsecurity-group-ids = [\"sg-1\", \"sg-2\"]\nssh-user = \"ecs-user\"\nsystem-disk-size-gib = 80\nauto-release-after = \"2h\"");
        let c = Config::parse(&text).unwrap();
        let p = c.launch_profile(&c.templates[0]);
        assert_eq!(p.image_id, "m-gpu");
        assert_eq!(p.security_group_ids, ["sg-1", "sg-2"]);
        assert_eq!(p.ssh_user, "ecs-user");
        assert_eq!(p.keys.ram_role.as_deref(), Some("ci"), "inherited");
        assert_eq!((p.keys.system_disk_category.as_deref(), p.keys.system_disk_size_gib), (Some("cloud_auto"), Some(80)));
        assert_eq!(p.data_disks()[0].size_gib, 40);
        assert!(p.data_disks()[0].delete_with_instance, "the default");
        assert_eq!(p.keys.auto_release_after, Some(Duration::from_secs(7200)));
    }

    #[test]
    fn bad_launch_settings_are_refused_with_key_and_line() {
        let bad = |cloud: &str, template: &str| {
            let mut text = MINIMAL.replace("max-nodes = 10", &format!("max-nodes = 10\n{template}"));
            if !cloud.is_empty() {
                text = text.replace("key-pair-name = \"jenkins\"", &format!("key-pair-name = \"jenkins\"\n{cloud}"));
            }
            Config::parse(&text).unwrap_err()
        };
        let e = bad("", "data-disks = [\n  { category = \"cloud_essd\", size-gib = 40 },\n  { category = \"cloud_essd\", size-gib = 100, performance-level = \"PL3\" },\n]");
        assert!(e.contains("template \"linux\" (line 17): data-disks entry at line 22: size-gib 100 is outside 1261-65536 GiB"), "{e}");
        let e = bad("system-disk-category = \"gp3\"", "");
        assert!(e.contains("cloud (line 4): system-disk-category \"gp3\" is not one of"), "{e}");
        let e = bad("", "system-disk-performance-level = \"PL2\"");
        assert!(e.contains("system-disk-performance-level PL2 needs system-disk-category = \"cloud_essd\""), "{e}");
        let e = bad("system-disk-category = \"cloud\"", "system-disk-size-gib = 600");
        assert!(e.contains("system-disk-size-gib 600 is outside 20-500 GiB, the range of cloud"), "{e}");
        let disks: String = (0..17).map(|_| "{ category = \"cloud_auto\", size-gib = 10 },").collect();
        assert!(bad("", &format!("data-disks = [{disks}]")).contains("lists 17 disks; ECS attaches at most 16"));
        assert!(bad("", "auto-release-after = \"10m\"").contains("auto-release-after 10m must be 30m to 3 years"));
        assert!(bad("", "internet-max-bandwidth-out = 101").contains("above 100 Mbit/s"));
        assert!(bad("", "host-name = \"-ci\"").contains("host-name \"-ci\""));
        assert!(bad("", "instance-name = \"{nope}\"").contains("unknown placeholder {nope}"));
        assert!(bad("", &format!("user-data = \"{}\"", "x".repeat(32 * 1024 + 1))).contains("user-data is 32769 bytes"));
        assert!(bad("", "metadata-tokens = \"always\"").contains("metadata-tokens"));
        assert!(bad("", "data-disks = [{ category = \"cloud\", size = 40 }]").contains("unknown field `size`"));
        assert!(bad("security-group-ids = [\"sg-2\"]", "").contains("set security-group-id or security-group-ids, not both"));
        assert!(bad("", "security-group-ids = [\"sg-2\", \"sg-2\"]").contains("security group sg-2 is listed twice"));
        assert!(bad("", "jvm-options = [\"Xmx2g\"]").contains("jvm-options: \"Xmx2g\" is not a JVM option"));
        assert!(bad("", "connect-via = \"public-ip\"").contains("connect-via = \"public-ip\" needs internet-max-bandwidth-out above 0"));
        assert!(bad("", "connect-via = \"public\"").contains("connect-via"));
        let e = bad("", "data-disks = [\n  { category = \"cloud_essd\", size-gib = 40, mount-point = \"data\" },\n]");
        assert!(e.contains("data-disks entry at line 21: mount-point \"data\" is not an absolute path"), "{e}");
        assert!(bad("", "data-disks = [{ category = \"cloud_essd\", size-gib = 40, mount-point = \"/\" }]").contains("root directory"));
        let e = bad("", "data-disks = [{ category = \"cloud_essd\", size-gib = 40, mount-point = \"/data\" }, { category = \"cloud_essd\", size-gib = 40, mount-point = \"/data/\" }]");
        assert!(e.contains("mount-point \"/data\" is given to two disks"), "{e}");
        assert!(bad("", "java-min-version = 5").contains("java-min-version 5 is not a Java feature release"));
    }

    #[test]
    fn static_credentials_need_exactly_one_secret_source() {
        let text = MINIMAL.replace("[jenkins]", "[cloud.credentials]\nsource = \"static\"\naccess-key-id = \"LTAI\"\n\n[jenkins]");
        let err = Config::parse(&text).unwrap_err();
        assert!(err.contains("set exactly one of secret-env or secret-file"), "{err}");
    }

    #[test]
    fn max_uses_below_executors_is_refused() {
        let text = MINIMAL.replace("max-nodes = 10", "max-nodes = 10\nexecutors = 2\nmax-uses = 1");
        let e = Config::parse(&text).unwrap_err().to_string();
        assert!(e.contains("max-uses (1) is below executors (2)") && e.contains("line"), "{e}");
        let ok = MINIMAL.replace("max-nodes = 10", "max-nodes = 10\nexecutors = 1\nmax-uses = 1");
        assert!(Config::parse(&ok).is_ok());
    }

    #[test]
    fn reconnect_timeout_is_checked_against_the_launch_timeout() {
        let text = MINIMAL.replace("max-nodes = 10", "max-nodes = 10\nlaunch-timeout = \"2m\"\nreconnect-timeout = \"5m\"");
        let e = Config::parse(&text).unwrap_err().to_string();
        assert!(e.contains("reconnect-timeout (5m) exceeds launch-timeout (2m)") && e.contains("line"), "{e}");
        let c = Config::parse(&MINIMAL.replace("max-nodes = 10", "max-nodes = 10\nlaunch-timeout = \"2m\"")).unwrap();
        assert_eq!(c.templates[0].reconnect_timeout(), std::time::Duration::from_secs(120), "defaults to the launch timeout when shorter");
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.templates[0].reconnect_timeout(), std::time::Duration::from_secs(300));
    }
}
