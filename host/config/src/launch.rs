//! Launch profiles: what a template's instances are launched with.
//!
//! Every launch setting can be set in `[cloud]` (the default of every template) and overridden
//! by a `[[template]]`, key by key. [`Config::launch_profile`] merges the two; the profile turns
//! into one RunInstances request per launch ([`LaunchProfile::run_instances_request`]), with
//! each setting under its ECS parameter name (reference §3.1 and the SDKs' request models).
//!
//! Values are checked at load time the way ECS checks them, so a bad one is refused before
//! anything is launched: disk categories, sizes per category and performance level, at most 16
//! data disks, user data of at most 32 KiB, host and instance name rules, bandwidth 0-100 Mbit/s,
//! an auto-release time 30 minutes to 3 years ahead.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{CloudConfig, Config, TemplateConfig, line_of};
use ecsp_ecs::{DataDisk, RunInstancesRequest, SystemDisk};

/// One `data-disks` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DataDiskConfig {
    /// `cloud_essd`, `cloud_auto`, `cloud_essd_entry`, `cloud_ssd`, `cloud_efficiency` or `cloud`.
    pub category: String,
    /// GiB.
    pub size_gib: u32,
    /// ESSD performance level `PL0`..`PL3` (default `PL1`).
    pub performance_level: Option<String>,
    /// Released with the instance (default `true`; `false` leaves the disk behind, billed).
    #[serde(default = "yes")]
    pub delete_with_instance: bool,
}

fn yes() -> bool {
    true
}

/// `metadata-tokens`: how instance metadata may be read (`HttpTokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetadataTokens {
    /// Plain GETs and token requests both work.
    Optional,
    /// Only requests with a session token (security hardening mode).
    Required,
}

impl MetadataTokens {
    /// The `HttpTokens` value.
    pub fn as_str(self) -> &'static str {
        match self {
            MetadataTokens::Optional => "optional",
            MetadataTokens::Required => "required",
        }
    }
}

/// `connect-via`: the instance address the bootstrap's SSH connection goes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectVia {
    /// The primary private IP (the provisioner runs in the VPC or is peered with it).
    #[default]
    PrivateIp,
    /// The public IP (the provisioner runs outside the VPC); needs public bandwidth.
    PublicIp,
}

/// The launch keys shared by `[cloud]` and `[[template]]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaunchKeys {
    pub system_disk_category: Option<String>,
    pub system_disk_size_gib: Option<u32>,
    pub system_disk_performance_level: Option<String>,
    pub data_disks: Option<Vec<Spanned<DataDiskConfig>>>,
    pub user_data: Option<String>,
    pub ram_role: Option<String>,
    pub host_name: Option<String>,
    pub instance_name: Option<String>,
    pub resource_group_id: Option<String>,
    pub internet_max_bandwidth_out: Option<u32>,
    pub connect_via: Option<ConnectVia>,
    pub metadata_tokens: Option<MetadataTokens>,
    pub auto_release_after: Option<Duration>,
}

macro_rules! launch_keys_of {
    ($s:expr) => {
        LaunchKeys {
            system_disk_category: $s.system_disk_category.clone(),
            system_disk_size_gib: $s.system_disk_size_gib,
            system_disk_performance_level: $s.system_disk_performance_level.clone(),
            data_disks: $s.data_disks.clone(),
            user_data: $s.user_data.clone(),
            ram_role: $s.ram_role.clone(),
            host_name: $s.host_name.clone(),
            instance_name: $s.instance_name.clone(),
            resource_group_id: $s.resource_group_id.clone(),
            internet_max_bandwidth_out: $s.internet_max_bandwidth_out,
            connect_via: $s.connect_via,
            metadata_tokens: $s.metadata_tokens,
            auto_release_after: $s.auto_release_after,
        }
    };
}

impl LaunchKeys {
    /// The keys `[cloud]` sets.
    pub fn of_cloud(c: &CloudConfig) -> Self {
        launch_keys_of!(c)
    }

    /// The keys a template sets.
    pub fn of_template(t: &TemplateConfig) -> Self {
        launch_keys_of!(t)
    }

    /// Each key from `self`, else from `defaults`.
    fn or(self, defaults: LaunchKeys) -> Self {
        LaunchKeys {
            system_disk_category: self.system_disk_category.or(defaults.system_disk_category),
            system_disk_size_gib: self.system_disk_size_gib.or(defaults.system_disk_size_gib),
            system_disk_performance_level: self
                .system_disk_performance_level
                .or(defaults.system_disk_performance_level),
            data_disks: self.data_disks.or(defaults.data_disks),
            user_data: self.user_data.or(defaults.user_data),
            ram_role: self.ram_role.or(defaults.ram_role),
            host_name: self.host_name.or(defaults.host_name),
            instance_name: self.instance_name.or(defaults.instance_name),
            resource_group_id: self.resource_group_id.or(defaults.resource_group_id),
            internet_max_bandwidth_out: self
                .internet_max_bandwidth_out
                .or(defaults.internet_max_bandwidth_out),
            connect_via: self.connect_via.or(defaults.connect_via),
            metadata_tokens: self.metadata_tokens.or(defaults.metadata_tokens),
            auto_release_after: self.auto_release_after.or(defaults.auto_release_after),
        }
    }
}

/// Everything a template's instances are launched and reached with: the template's keys,
/// else the cloud's (and `[ssh]`'s).
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchProfile {
    pub image_id: String,
    /// At least one.
    pub security_group_ids: Vec<String>,
    pub key_pair_name: String,
    pub ssh_user: String,
    pub ssh_port: u16,
    /// `None`: not configured anywhere (`run` refuses to start).
    pub ssh_private_key: Option<PathBuf>,
    pub keys: LaunchKeys,
}

impl Config {
    /// The launch profile of `t`.
    pub fn launch_profile(&self, t: &TemplateConfig) -> LaunchProfile {
        let c = &self.cloud;
        let groups = t
            .security_group_ids
            .clone()
            .or_else(|| t.security_group_id.clone().map(|g| vec![g]))
            .or_else(|| c.security_group_ids.clone())
            .or_else(|| c.security_group_id.clone().map(|g| vec![g]))
            .unwrap_or_default();
        LaunchProfile {
            image_id: t.image_id.clone().unwrap_or_else(|| c.image_id.clone()),
            security_group_ids: groups,
            key_pair_name: t
                .key_pair_name
                .clone()
                .unwrap_or_else(|| c.key_pair_name.clone()),
            ssh_user: t.ssh_user.clone().unwrap_or_else(|| self.ssh.user.clone()),
            ssh_port: t.ssh_port.unwrap_or(self.ssh.port),
            ssh_private_key: t
                .ssh_private_key
                .clone()
                .or_else(|| self.ssh.private_key.clone()),
            keys: LaunchKeys::of_template(t).or(LaunchKeys::of_cloud(c)),
        }
    }
}

/// Where one launch goes (the policy's placement) and what it is called.
#[derive(Debug, Clone)]
pub struct LaunchPlacement<'a> {
    pub template: &'a str,
    pub instance_type: &'a str,
    pub vswitch: &'a str,
    pub zone: Option<&'a str>,
    pub launch_id: &'a str,
}

impl LaunchProfile {
    /// Which address the bootstrap connects to.
    pub fn connect_via(&self) -> ConnectVia {
        self.keys.connect_via.unwrap_or_default()
    }

    /// The data disks, in order (`DataDisk.1` first).
    pub fn data_disks(&self) -> Vec<DataDiskConfig> {
        self.keys
            .data_disks
            .iter()
            .flatten()
            .map(|d| d.get_ref().clone())
            .collect()
    }

    /// The RunInstances request of one launch (amount 1, no token, no tags, no spot settings:
    /// the caller adds what belongs to the launch rather than to the template). `now_unix` is
    /// the launch time in seconds, for `AutoReleaseTime`.
    pub fn run_instances_request(
        &self,
        at: &LaunchPlacement<'_>,
        now_unix: i64,
    ) -> RunInstancesRequest {
        let (first, more) = self
            .security_group_ids
            .split_first()
            .map_or(("", &[][..]), |(f, m)| (f.as_str(), m));
        let mut req = RunInstancesRequest::new(&self.image_id, at.instance_type, first, at.vswitch);
        req.extra_security_group_ids = more.to_vec();
        req.zone_id = at.zone.map(str::to_string);
        req.key_pair_name = Some(self.key_pair_name.clone());
        let k = &self.keys;
        req.instance_name = Some(match &k.instance_name {
            Some(p) => render_name(p, at.template, at.launch_id, None),
            None => format!("{}-{}", at.template, at.launch_id),
        });
        req.host_name = k
            .host_name
            .as_ref()
            .map(|p| render_name(p, at.template, at.launch_id, Some("${instance_id}")));
        if k.system_disk_category.is_some()
            || k.system_disk_size_gib.is_some()
            || k.system_disk_performance_level.is_some()
        {
            req.system_disk = Some(SystemDisk {
                category: k.system_disk_category.clone(),
                size_gib: k.system_disk_size_gib,
                performance_level: k.system_disk_performance_level.clone(),
            });
        }
        req.data_disks = self
            .data_disks()
            .into_iter()
            .map(|d| DataDisk {
                category: d.category,
                size_gib: d.size_gib,
                performance_level: d.performance_level,
                delete_with_instance: d.delete_with_instance,
            })
            .collect();
        req.user_data = k.user_data.clone();
        req.ram_role_name = k.ram_role.clone();
        req.resource_group_id = k.resource_group_id.clone();
        req.internet_max_bandwidth_out = k.internet_max_bandwidth_out.filter(|b| *b > 0);
        req.http_tokens = k.metadata_tokens.map(|m| m.as_str().to_string());
        req.auto_release_time = k.auto_release_after.map(|d| release_time(now_unix, d));
        req
    }
}

/// `yyyy-MM-ddTHH:mm:ssZ`, `after` from `now_unix`.
fn release_time(now_unix: i64, after: Duration) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(now_unix + after.as_secs() as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&format).unwrap_or_default()
}

/// Replaces `{template}`, `{launch_id}` and, in host names, `{instance_id}` (as ECS'
/// `${instance_id}`, which ECS fills in: the id is not known before the launch). Patterns were
/// checked at load, so rendering cannot fail here.
fn render_name(
    pattern: &str,
    template: &str,
    launch_id: &str,
    instance_id: Option<&str>,
) -> String {
    let mut vars = vec![("template", template), ("launch_id", launch_id)];
    if let Some(id) = instance_id {
        vars.push(("instance_id", id));
    }
    ecsp_ssh::template::render(pattern, &vars, false).unwrap_or_else(|_| pattern.to_string())
}

// ---- validation, as ECS validates (reference §3.1; DataDisk sizes from the RunInstances page) ----

const SYSTEM_DISK_CATEGORIES: &[&str] = &[
    "cloud_essd",
    "cloud_auto",
    "cloud_essd_entry",
    "cloud_ssd",
    "cloud_efficiency",
    "cloud",
];
const DATA_DISK_CATEGORIES: &[&str] = SYSTEM_DISK_CATEGORIES;
const PERFORMANCE_LEVELS: &[&str] = &["PL0", "PL1", "PL2", "PL3"];
/// Most data disks one RunInstances may attach.
pub const MAX_DATA_DISKS: usize = 16;
/// Longest user data before base64, bytes.
pub const MAX_USER_DATA: usize = 32 * 1024;

/// Size range (GiB) of a system disk of `category` at `level`.
pub fn system_disk_sizes(category: &str, level: Option<&str>) -> (u32, u32) {
    match (category, level.unwrap_or("PL1")) {
        ("cloud", _) => (20, 500),
        ("cloud_essd", "PL0") => (1, 2048),
        ("cloud_essd", "PL2") => (461, 2048),
        ("cloud_essd", "PL3") => (1261, 2048),
        ("cloud_auto", _) => (1, 2048),
        _ => (20, 2048),
    }
}

/// Size range (GiB) of a data disk of `category` at `level`.
pub fn data_disk_sizes(category: &str, level: Option<&str>) -> (u32, u32) {
    match (category, level.unwrap_or("PL1")) {
        ("cloud", _) => (5, 2000),
        ("cloud_essd", "PL0") => (1, 65536),
        ("cloud_essd", "PL2") => (461, 65536),
        ("cloud_essd", "PL3") => (1261, 65536),
        ("cloud_essd", _) => (20, 65536),
        ("cloud_auto", _) => (1, 65536),
        ("cloud_essd_entry", _) => (10, 32768),
        _ => (20, 32768),
    }
}

/// Checks each key on its own; `at` names where (`template "x" (line N)` or `cloud (line N)`).
pub(crate) fn validate_keys(k: &LaunchKeys, at: &str, text: &str, problems: &mut Vec<String>) {
    if let Some(c) = &k.system_disk_category
        && !SYSTEM_DISK_CATEGORIES.contains(&c.as_str())
    {
        problems.push(format!(
            "{at}: system-disk-category {c:?} is not one of {}",
            SYSTEM_DISK_CATEGORIES.join(", ")
        ));
    }
    if let Some(l) = &k.system_disk_performance_level
        && !PERFORMANCE_LEVELS.contains(&l.as_str())
    {
        problems.push(format!(
            "{at}: system-disk-performance-level {l:?} is not one of PL0, PL1, PL2, PL3"
        ));
    }
    if let Some(disks) = &k.data_disks {
        if disks.len() > MAX_DATA_DISKS {
            problems.push(format!(
                "{at}: data-disks lists {} disks; ECS attaches at most {MAX_DATA_DISKS} at launch",
                disks.len()
            ));
        }
        for d in disks {
            let line = line_of(text, d.span().start);
            let d = d.get_ref();
            let here = format!("{at}: data-disks entry at line {line}");
            if !DATA_DISK_CATEGORIES.contains(&d.category.as_str()) {
                problems.push(format!(
                    "{here}: category {:?} is not one of {}",
                    d.category,
                    DATA_DISK_CATEGORIES.join(", ")
                ));
                continue;
            }
            if let Some(l) = &d.performance_level {
                if !PERFORMANCE_LEVELS.contains(&l.as_str()) {
                    problems.push(format!(
                        "{here}: performance-level {l:?} is not one of PL0, PL1, PL2, PL3"
                    ));
                    continue;
                }
                if d.category != "cloud_essd" {
                    problems.push(format!(
                        "{here}: performance-level applies to cloud_essd only, not {}",
                        d.category
                    ));
                }
            }
            let (min, max) = data_disk_sizes(&d.category, d.performance_level.as_deref());
            if !(min..=max).contains(&d.size_gib) {
                let level = d
                    .performance_level
                    .as_deref()
                    .map(|l| format!(" {l}"))
                    .unwrap_or_default();
                problems.push(format!(
                    "{here}: size-gib {} is outside {min}-{max} GiB, the range of {}{level}",
                    d.size_gib, d.category
                ));
            }
        }
    }
    if let Some(u) = &k.user_data
        && u.len() > MAX_USER_DATA
    {
        problems.push(format!(
            "{at}: user-data is {} bytes; ECS accepts at most {MAX_USER_DATA} before base64",
            u.len()
        ));
    }
    if let Some(r) = &k.ram_role
        && (r.trim().is_empty() || r.chars().any(char::is_whitespace))
    {
        problems.push(format!("{at}: ram-role {r:?} is not a RAM role name"));
    }
    if let Some(g) = &k.resource_group_id
        && (g.trim().is_empty() || g.chars().any(char::is_whitespace))
    {
        problems.push(format!(
            "{at}: resource-group-id {g:?} is not a resource group id"
        ));
    }
    if let Some(h) = &k.host_name
        && let Err(e) = check_host_name(h)
    {
        problems.push(format!("{at}: host-name {h:?}: {e}"));
    }
    if let Some(n) = &k.instance_name
        && let Err(e) = check_instance_name(n)
    {
        problems.push(format!("{at}: instance-name {n:?}: {e}"));
    }
    if let Some(b) = k.internet_max_bandwidth_out
        && b > 100
    {
        problems.push(format!(
            "{at}: internet-max-bandwidth-out {b} is above 100 Mbit/s, the most ECS allows"
        ));
    }
    if let Some(d) = k.auto_release_after {
        const MIN: Duration = Duration::from_secs(30 * 60);
        const MAX: Duration = Duration::from_secs(3 * 365 * 24 * 3600);
        if !(MIN..=MAX).contains(&d) {
            problems.push(format!(
                "{at}: auto-release-after {} must be 30m to 3 years (ECS AutoReleaseTime limits)",
                humantime::format_duration(d)
            ));
        }
    }
}

/// Checks what only the merged profile shows (a template's level with the cloud's category...).
pub(crate) fn validate_profile(p: &LaunchProfile, at: &str, problems: &mut Vec<String>) {
    if p.keys.connect_via == Some(ConnectVia::PublicIp)
        && p.keys.internet_max_bandwidth_out.unwrap_or(0) == 0
    {
        problems.push(format!(
            "{at}: connect-via = \"public-ip\" needs internet-max-bandwidth-out above 0 (without it ECS assigns no public IP)"
        ));
    }
    if p.security_group_ids.is_empty() {
        problems.push(format!(
            "{at}: no security group: set security-group-id(s) in [cloud] or the template"
        ));
    }
    if let Some(dup) = p
        .security_group_ids
        .iter()
        .enumerate()
        .find(|(i, g)| p.security_group_ids[..*i].contains(g))
    {
        problems.push(format!("{at}: security group {} is listed twice", dup.1));
    }
    let k = &p.keys;
    let category = k.system_disk_category.as_deref();
    if let Some(level) = &k.system_disk_performance_level
        && category != Some("cloud_essd")
    {
        problems.push(format!(
            "{at}: system-disk-performance-level {level} needs system-disk-category = \"cloud_essd\" (it is {})",
            category.map_or("the image's default".to_string(), |c| format!("{c:?}"))
        ));
    }
    if let (Some(c), Some(size)) = (category, k.system_disk_size_gib)
        && SYSTEM_DISK_CATEGORIES.contains(&c)
    {
        let (min, max) = system_disk_sizes(c, k.system_disk_performance_level.as_deref());
        if !(min..=max).contains(&size) {
            problems.push(format!(
                "{at}: system-disk-size-gib {size} is outside {min}-{max} GiB, the range of {c}"
            ));
        }
    } else if let (None, Some(size)) = (category, k.system_disk_size_gib)
        && !(20..=2048).contains(&size)
    {
        problems.push(format!(
            "{at}: system-disk-size-gib {size} is outside 20-2048 GiB"
        ));
    }
}

/// ECS `HostName` rules for Linux: 2-64 characters; dot-separated segments of letters, digits
/// and `-`; no `.` or `-` at either end, none doubled. `{template}`, `{launch_id}` and
/// `{instance_id}` are filled in first (with values as long as real ones).
fn check_host_name(pattern: &str) -> Result<(), String> {
    let h = render_sample(pattern, true)?;
    if !(2..=64).contains(&h.len()) {
        return Err(format!(
            "{} characters once filled in; ECS wants 2-64",
            h.len()
        ));
    }
    if !h
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err("only letters, digits, '-' and '.' are allowed".into());
    }
    if h.starts_with(['.', '-'])
        || h.ends_with(['.', '-'])
        || h.contains("..")
        || h.contains("--")
        || h.contains(".-")
        || h.contains("-.")
    {
        return Err("'.' and '-' may not start or end it, nor follow each other".into());
    }
    Ok(())
}

/// ECS `InstanceName` rules: 2-128 characters, starting with a letter; letters, digits, `:`,
/// `_`, `.`, `-`; not `http://` or `https://`.
fn check_instance_name(pattern: &str) -> Result<(), String> {
    let n = render_sample(pattern, false)?;
    if !(2..=128).contains(&n.len()) {
        return Err(format!(
            "{} characters once filled in; ECS wants 2-128",
            n.len()
        ));
    }
    if !n.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("it must start with a letter".into());
    }
    if !n
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ":_.-".contains(c))
    {
        return Err("only letters, digits, ':', '_', '.' and '-' are allowed".into());
    }
    Ok(())
}

/// A pattern filled in with values as long as real ones (`{instance_id}` only in host names).
fn render_sample(pattern: &str, with_instance_id: bool) -> Result<String, String> {
    let mut vars = vec![("template", "linux"), ("launch_id", "l0123456789abcdef")];
    if with_instance_id {
        vars.push(("instance_id", "i-bp1abcdefghijklmnopq"));
    }
    ecsp_ssh::template::render(pattern, &vars, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_ecs_rules() {
        assert!(check_host_name("ci-{template}-{instance_id}").is_ok());
        assert!(check_host_name("-ci").is_err());
        assert!(check_host_name("ci..x").is_err());
        assert!(check_host_name("ci_x").is_err());
        assert!(check_host_name(&"a".repeat(65)).is_err());
        assert!(check_instance_name("{template}-{launch_id}").is_ok());
        assert!(check_instance_name("1abc").is_err());
        assert!(
            check_instance_name("{nope}")
                .unwrap_err()
                .contains("{nope}")
        );
        assert!(
            check_instance_name("x-{instance_id}")
                .unwrap_err()
                .contains("{instance_id}"),
            "ECS names have no instance id placeholder"
        );
    }

    #[test]
    fn size_ranges_depend_on_category_and_level() {
        assert_eq!(data_disk_sizes("cloud_essd", Some("PL3")), (1261, 65536));
        assert_eq!(data_disk_sizes("cloud_essd", None), (20, 65536));
        assert_eq!(data_disk_sizes("cloud", None), (5, 2000));
        assert_eq!(system_disk_sizes("cloud", None), (20, 500));
        assert_eq!(system_disk_sizes("cloud_essd", Some("PL0")), (1, 2048));
    }

    #[test]
    fn release_time_is_utc_seconds() {
        assert_eq!(
            release_time(0, Duration::from_secs(3600)),
            "1970-01-01T01:00:00Z"
        );
    }
}
