//! What the emulated cloud looks like: a TOML file, or believable defaults (one region, 3 zones,
//! 2 vswitches each, 6 instance types, 2 images, 1 security group).
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::faults::Faults;

/// The emulated cloud. Every field has a default; a TOML file overrides what it names (a file
/// that replaces `zones` should list its `instance_types` too: the defaults name default zones).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// The region this emulator serves.
    pub region_id: String,
    /// Other regions DescribeRegions lists (not served).
    pub other_regions: Vec<String>,
    /// AccessKeys the emulator accepts.
    pub accounts: Vec<Account>,
    /// Allowed clock skew of `Timestamp`, seconds (the gateway's 15 minutes).
    pub timestamp_tolerance_secs: u64,
    /// How long instances stay in each transitional status.
    pub timings: Timings,
    /// Zones of the emulated region.
    pub zones: Vec<ZoneSpec>,
    /// VSwitches (DescribeVSwitches; where instances get their IPs).
    pub vswitches: Vec<VSwitchSpec>,
    /// Instance types on offer.
    pub instance_types: Vec<InstanceTypeSpec>,
    /// Images (DescribeImages).
    pub images: Vec<ImageSpec>,
    /// Security groups (DescribeSecurityGroups).
    pub security_groups: Vec<SecurityGroupSpec>,
    /// Key pairs known at start (DescribeKeyPairs).
    pub key_pairs: Vec<KeyPairSpec>,
    /// Instances the account may have at once (QuotaExceed.ElasticQuota beyond).
    pub max_instances: Option<u32>,
    /// First loopback address handed to an instance; later ones count up.
    pub first_ip: Ipv4Addr,
    /// Where to keep instances, key pairs and tokens across restarts (none: in memory only).
    pub state_file: Option<PathBuf>,
    /// Faults active from the start.
    pub faults: Faults,
    /// Request log entries kept for `/_admin/requests`.
    pub request_log_capacity: usize,
}

/// An AccessKey pair the emulator accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// AccessKey id requests must be signed with.
    pub access_key_id: String,
    /// AccessKey secret the signatures are checked against.
    pub access_key_secret: String,
    /// STS credentials: requests must carry this `SecurityToken`.
    #[serde(default)]
    pub security_token: Option<String>,
    /// Actions this identity's RAM policy denies (answered `Forbidden.RAM`).
    #[serde(default)]
    pub denied_actions: Vec<String>,
    /// A RAM policy document (JSON, as in the RAM console) the identity's requests are
    /// evaluated against, conditions on request and resource tags included (`ecs::ram`);
    /// none: everything not in `denied_actions` is allowed.
    #[serde(default)]
    pub ram_policy: Option<serde_json::Value>,
}

impl Account {
    /// A plain AccessKey account allowed everything.
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
            security_token: None,
            denied_actions: Vec::new(),
            ram_policy: None,
        }
    }
}

/// Status timings in milliseconds; all zero makes instances `Running` at once (benchmarks).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Timings {
    /// How long a new instance stays `Pending`, ms.
    pub pending_ms: u64,
    /// How long it then stays `Starting`, ms.
    pub starting_ms: u64,
    /// How long a released instance shows as `Stopping` before it is gone.
    pub stopping_ms: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            pending_ms: 1_000,
            starting_ms: 2_000,
            stopping_ms: 1_000,
        }
    }
}

impl Timings {
    /// Everything immediate.
    pub fn zero() -> Self {
        Self {
            pending_ms: 0,
            starting_ms: 0,
            stopping_ms: 0,
        }
    }
}

/// A zone of the emulated region.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSpec {
    /// Zone id, e.g. `cn-hangzhou-h`.
    pub zone_id: String,
    /// Display name (`LocalName`); empty by default.
    #[serde(default)]
    pub local_name: String,
    /// Disk categories on sale in the zone (DescribeAvailableResource `SystemDisk`/`DataDisk`).
    #[serde(default = "default_disk_categories")]
    pub disk_categories: Vec<String>,
}

/// Every category ECS sells today.
pub fn default_disk_categories() -> Vec<String> {
    [
        "cloud_essd",
        "cloud_auto",
        "cloud_essd_entry",
        "cloud_ssd",
        "cloud_efficiency",
        "cloud",
    ]
    .map(String::from)
    .to_vec()
}

/// A vswitch of the emulated VPC.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VSwitchSpec {
    /// VSwitch id.
    pub vswitch_id: String,
    /// VPC it belongs to.
    pub vpc_id: String,
    /// Zone it is in.
    pub zone_id: String,
    /// IPv4 CIDR, e.g. `172.16.0.0/20`; its size sets the free-IP count.
    pub cidr_block: String,
    /// VSwitch name; empty by default.
    #[serde(default)]
    pub name: String,
    /// Override the number of usable addresses (e.g. tiny, to provoke IpNotEnough).
    #[serde(default)]
    pub usable_ips: Option<u64>,
}

/// An instance type on offer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceTypeSpec {
    /// Instance type id, e.g. `ecs.c7.large`.
    pub instance_type: String,
    /// Family, e.g. `ecs.c7`.
    pub family: String,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// On-demand price per hour (CNY).
    pub price: f64,
    /// Spot market price per hour (CNY).
    pub spot_price: f64,
    /// Zones offering this type (empty: every zone).
    #[serde(default)]
    pub zones: Vec<String>,
    /// Instances of this type each zone can still launch.
    #[serde(default = "default_stock")]
    pub stock: u32,
    /// Per-zone stock overrides.
    #[serde(default)]
    pub stock_by_zone: BTreeMap<String, u32>,
    /// `X86` or `ARM` (DescribeInstanceTypes `CpuArchitecture`).
    #[serde(default = "default_cpu_architecture")]
    pub cpu_architecture: String,
}

fn default_cpu_architecture() -> String {
    "X86".into()
}

fn default_stock() -> u32 {
    5_000
}

/// An image instances can be launched from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Image id.
    pub image_id: String,
    /// Image name; empty by default.
    #[serde(default)]
    pub image_name: String,
    /// `linux` or `windows` (`OSType`).
    #[serde(default = "default_os_type")]
    pub os_type: String,
    /// OS name (`OSName`); empty by default.
    #[serde(default)]
    pub os_name: String,
    /// `x86_64`, `arm64`... (`Architecture`).
    #[serde(default = "default_arch")]
    pub architecture: String,
    /// Image size, GiB.
    #[serde(default = "default_image_size")]
    pub size_gib: u32,
    /// `system`, `self`, `others`, `marketplace`.
    #[serde(default = "default_owner")]
    pub owner_alias: String,
}

fn default_os_type() -> String {
    "linux".into()
}
fn default_arch() -> String {
    "x86_64".into()
}
fn default_image_size() -> u32 {
    20
}
fn default_owner() -> String {
    "system".into()
}

/// A security group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupSpec {
    /// Security group id.
    pub security_group_id: String,
    /// Group name; empty by default.
    #[serde(default)]
    pub name: String,
    /// VPC the group belongs to.
    pub vpc_id: String,
}

/// A key pair known at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPairSpec {
    /// Key pair name.
    pub name: String,
    /// OpenSSH one-line public key.
    pub public_key: String,
}

/// The default emulator AccessKey (printed by `sim`; not a secret anywhere real).
pub const DEFAULT_ACCESS_KEY_ID: &str = "LTAI5tEmulatorAccessKey";
/// The default emulator AccessKey secret.
pub const DEFAULT_ACCESS_KEY_SECRET: &str = "EmulatorSecret0123456789abcdefXYZ";

impl Default for SimConfig {
    fn default() -> Self {
        let region = "cn-hangzhou";
        let zones = ["h", "i", "j"];
        let vpc = "vpc-bp1sim0000000000001";
        let zone_id = |z: &str| format!("{region}-{z}");
        let vswitches = zones
            .iter()
            .enumerate()
            .flat_map(|(zi, z)| {
                (0..2).map(move |k| VSwitchSpec {
                    vswitch_id: format!("vsw-bp1sim{z}{k}00000000000"),
                    vpc_id: vpc.into(),
                    zone_id: format!("{region}-{z}"),
                    cidr_block: format!("172.16.{}.0/20", (zi * 2 + k) * 16),
                    name: format!("sim-{z}-{k}"),
                    usable_ips: None,
                })
            })
            .collect();
        let t =
            |name: &str, family: &str, vcpus, mem, price, spot, zones: &[&str]| InstanceTypeSpec {
                instance_type: name.into(),
                family: family.into(),
                vcpus,
                memory_gib: mem,
                price,
                spot_price: spot,
                zones: zones.iter().map(|z| zone_id(z)).collect(),
                stock: default_stock(),
                stock_by_zone: BTreeMap::new(),
                cpu_architecture: default_cpu_architecture(),
            };
        Self {
            region_id: region.into(),
            other_regions: [
                "cn-shanghai",
                "cn-beijing",
                "ap-southeast-1",
                "eu-central-1",
            ]
            .map(String::from)
            .to_vec(),
            accounts: vec![Account::new(
                DEFAULT_ACCESS_KEY_ID,
                DEFAULT_ACCESS_KEY_SECRET,
            )],
            timestamp_tolerance_secs: 900,
            timings: Timings::default(),
            zones: zones
                .iter()
                .map(|z| ZoneSpec {
                    zone_id: zone_id(z),
                    local_name: format!("Hangzhou Zone {}", z.to_uppercase()),
                    disk_categories: default_disk_categories(),
                })
                .collect(),
            vswitches,
            instance_types: vec![
                t("ecs.c7.large", "ecs.c7", 2, 4.0, 0.42, 0.084, &[]),
                t("ecs.c7.xlarge", "ecs.c7", 4, 8.0, 0.84, 0.168, &[]),
                t("ecs.g7.large", "ecs.g7", 2, 8.0, 0.58, 0.116, &[]),
                t("ecs.g7.xlarge", "ecs.g7", 4, 16.0, 1.16, 0.232, &[]),
                t("ecs.r7.large", "ecs.r7", 2, 16.0, 0.77, 0.154, &["h", "i"]),
                t(
                    "ecs.u1-c1m2.large",
                    "ecs.u1",
                    2,
                    4.0,
                    0.35,
                    0.07,
                    &["i", "j"],
                ),
            ],
            images: vec![
                ImageSpec {
                    image_id: "ubuntu_22_04_x64_20G_alibase_20240130.vhd".into(),
                    image_name: "Ubuntu 22.04 64 bit".into(),
                    os_type: default_os_type(),
                    os_name: "Ubuntu  22.04 64 bit".into(),
                    architecture: default_arch(),
                    size_gib: 20,
                    owner_alias: default_owner(),
                },
                ImageSpec {
                    image_id: "aliyun_3_x64_20G_alibase_20240528.vhd".into(),
                    image_name: "Alibaba Cloud Linux 3.2104 LTS 64 bit".into(),
                    os_type: default_os_type(),
                    os_name: "Alibaba Cloud Linux  3.2104 LTS 64 bit".into(),
                    architecture: default_arch(),
                    size_gib: 20,
                    owner_alias: default_owner(),
                },
                ImageSpec {
                    image_id: "aliyun_3_arm64_20G_alibase_20240528.vhd".into(),
                    image_name: "Alibaba Cloud Linux 3.2104 LTS 64 bit ARM".into(),
                    os_type: default_os_type(),
                    os_name: "Alibaba Cloud Linux  3.2104 LTS 64 bit ARM".into(),
                    architecture: "arm64".into(),
                    size_gib: 20,
                    owner_alias: default_owner(),
                },
            ],
            security_groups: vec![
                SecurityGroupSpec {
                    security_group_id: "sg-bp1sim0000000000001".into(),
                    name: "jenkins-agents".into(),
                    vpc_id: vpc.into(),
                },
                SecurityGroupSpec {
                    security_group_id: "sg-bp1sim0000000000002".into(),
                    name: "build-egress".into(),
                    vpc_id: vpc.into(),
                },
            ],
            key_pairs: Vec::new(),
            max_instances: None,
            first_ip: Ipv4Addr::new(127, 1, 0, 1),
            state_file: None,
            faults: Faults::default(),
            request_log_capacity: 10_000,
        }
    }
}

impl SimConfig {
    /// Defaults with instant status transitions (tests, benchmarks).
    pub fn instant() -> Self {
        Self {
            timings: Timings::zero(),
            ..Self::default()
        }
    }

    /// Reads a TOML file; errors name the file and the offending key.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read ECS emulator config {}: {e}", path.display())
        })?;
        Self::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-checks references (zones, VPCs, CIDRs) so a typo fails at start, not mid-test.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if self.accounts.is_empty() {
            bail!("accounts: at least one AccessKey is needed");
        }
        for (i, a) in self.accounts.iter().enumerate() {
            if let Some(doc) = &a.ram_policy
                && let Err(e) = super::ram::RamPolicy::parse(doc)
            {
                bail!("accounts[{i}].ram_policy: {e}");
            }
        }
        let zone_known = |z: &str| self.zones.iter().any(|s| s.zone_id == z);
        for (i, v) in self.vswitches.iter().enumerate() {
            if !zone_known(&v.zone_id) {
                bail!(
                    "vswitches[{i}] ({}): zone_id {:?} is not in zones",
                    v.vswitch_id,
                    v.zone_id
                );
            }
            if parse_cidr(&v.cidr_block).is_none() {
                bail!(
                    "vswitches[{i}] ({}): cidr_block {:?} is not an IPv4 CIDR with prefix 16..=29",
                    v.vswitch_id,
                    v.cidr_block
                );
            }
        }
        for (i, t) in self.instance_types.iter().enumerate() {
            for z in t.zones.iter().chain(t.stock_by_zone.keys()) {
                if !zone_known(z) {
                    bail!(
                        "instance_types[{i}] ({}): zone {z:?} is not in zones",
                        t.instance_type
                    );
                }
            }
        }
        for (i, g) in self.security_groups.iter().enumerate() {
            if !self.vswitches.iter().any(|v| v.vpc_id == g.vpc_id) {
                bail!(
                    "security_groups[{i}] ({}): vpc_id {:?} has no vswitch",
                    g.security_group_id,
                    g.vpc_id
                );
            }
        }
        if !self.first_ip.is_loopback() {
            bail!(
                "first_ip {}: must be a loopback address (127.x.y.z)",
                self.first_ip
            );
        }
        self.faults.validate()?;
        Ok(())
    }

    /// The type spec by name.
    pub fn instance_type(&self, name: &str) -> Option<&InstanceTypeSpec> {
        self.instance_types.iter().find(|t| t.instance_type == name)
    }
}

impl InstanceTypeSpec {
    /// Whether a zone offers this type at all.
    pub fn offered_in(&self, zone_id: &str) -> bool {
        self.zones.is_empty() || self.zones.iter().any(|z| z == zone_id)
    }
    /// Initial stock in a zone.
    pub fn initial_stock(&self, zone_id: &str) -> u32 {
        self.stock_by_zone
            .get(zone_id)
            .copied()
            .unwrap_or(self.stock)
    }
}

impl VSwitchSpec {
    /// Usable addresses: the CIDR minus the first and last three, as ECS reserves them.
    pub fn capacity(&self) -> u64 {
        self.usable_ips.unwrap_or_else(|| {
            parse_cidr(&self.cidr_block)
                .map(|(_, p)| (1u64 << (32 - p)).saturating_sub(4))
                .unwrap_or(0)
        })
    }
}

/// `a.b.c.d/n` with the VPC limits 16..=29.
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, prefix) = s.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    ((16..=29).contains(&prefix)).then_some(())?;
    Some((ip.parse().ok()?, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_believable_and_valid() {
        let c = SimConfig::default();
        c.validate().unwrap();
        assert_eq!(c.zones.len(), 3);
        assert_eq!(c.vswitches.len(), 6);
        assert_eq!(c.instance_types.len(), 6);
        assert_eq!(c.vswitches[0].capacity(), 4092);
    }

    #[test]
    fn example_file_parses_and_builds_a_cloud() {
        let c = SimConfig::from_toml(include_str!("example.toml")).unwrap();
        assert_eq!(c.region_id, "cn-shanghai");
        assert_eq!(c.vswitches[1].capacity(), 8);
        assert_eq!(c.faults.throttle[0].max_per_second, Some(20));
        let cloud = super::super::Cloud::new(SimConfig {
            state_file: None,
            ..c
        })
        .unwrap();
        assert!(
            cloud
                .faults()
                .no_stock("cn-shanghai-b", "ecs.g7.large", true)
        );
    }

    #[test]
    fn toml_overrides_and_errors_name_the_key() {
        let c = SimConfig::from_toml(
            "region_id = \"cn-shanghai\"\n[timings]\npending_ms = 0\n\
             [[zones]]\nzone_id = \"cn-shanghai-a\"\n\
             [[vswitches]]\nvswitch_id = \"vsw-1\"\nvpc_id = \"vpc-1\"\nzone_id = \"cn-shanghai-a\"\ncidr_block = \"10.0.0.0/24\"\n\
             [[security_groups]]\nsecurity_group_id = \"sg-1\"\nvpc_id = \"vpc-1\"\n\
             [[instance_types]]\ninstance_type = \"ecs.g7.large\"\nfamily = \"ecs.g7\"\nvcpus = 2\nmemory_gib = 8.0\nprice = 0.5\nspot_price = 0.1\n",
        )
        .unwrap();
        assert_eq!(c.region_id, "cn-shanghai");
        assert_eq!(c.timings.pending_ms, 0);
        assert_eq!(c.timings.starting_ms, 2_000);
        assert_eq!(c.vswitches[0].capacity(), 252);

        let e = SimConfig::from_toml("[timings]\npending = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pending"), "{e}");
        let e = SimConfig::from_toml(
            "[[zones]]\nzone_id = \"z\"\n[[vswitches]]\nvswitch_id = \"v\"\nvpc_id = \"p\"\nzone_id = \"nope\"\ncidr_block = \"10.0.0.0/24\"\n\
             [[security_groups]]\nsecurity_group_id = \"sg\"\nvpc_id = \"p\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("vswitches[0]") && e.contains("nope"), "{e}");
    }
}
