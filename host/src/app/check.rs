//! `check`: proves, before anything is launched, that a launch of every template would work,
//! and says what to fix. Each item is independent: one failure does not hide the others.
//!
//! Per template, with its own launch profile: the image exists and its architecture fits every
//! candidate instance type; the security groups are in the VPC; the key pair exists and the
//! private key is its private half; vswitches with free IPs; instance types in stock; the disk
//! categories are on sale in every candidate zone; a RunInstances DryRun for every candidate
//! type. Jenkins: the credentials, creating and deleting a throw-away node, agent.jar, and the
//! WebSocket agent endpoint. Every failure's hint names the configuration key to change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use crate::config::launch::{LaunchPlacement, LaunchProfile};
use crate::config::{Config, ConfigError, TemplateConfig};
use crate::ecs::credentials::{StsClient, sts};
use crate::ecs::{
    AvailableResourceRequest, EcsClient, ErrorKind, ImageFilter, SecurityGroupFilter, VSwitch,
    VSwitchFilter,
};
use crate::adapters::cloud::client_from_config;
use crate::adapters::policy::WasmPolicy;
use crate::jenkins::{InboundAgentSpec, JenkinsClient, NodeMode};

/// One checked item.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub item: String,
    pub ok: bool,
    /// Works, but is unsafe as configured (printed `WARN`; does not fail the check).
    pub warning: bool,
    pub detail: String,
    pub hint: Option<String>,
}

fn pass(item: impl Into<String>, detail: impl Into<String>) -> CheckResult {
    CheckResult {
        item: item.into(),
        ok: true,
        warning: false,
        detail: detail.into(),
        hint: None,
    }
}

fn warn(item: impl Into<String>, detail: impl Into<String>, hint: impl Into<String>) -> CheckResult {
    CheckResult { item: item.into(), ok: true, warning: true, detail: detail.into(), hint: Some(hint.into()) }
}

fn fail(
    item: impl Into<String>,
    detail: impl Into<String>,
    hint: impl Into<String>,
) -> CheckResult {
    CheckResult {
        item: item.into(),
        ok: false,
        warning: false,
        detail: detail.into(),
        hint: Some(hint.into()),
    }
}

/// Runs every check.
pub async fn run(config_path: &Path) -> Vec<CheckResult> {
    let config = match Config::load(config_path) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            let hint = match e {
                ConfigError::Read { .. } => "pass the file with --config (default: ecs-provisioner.toml in the current directory)",
                ConfigError::Invalid { .. } => "fix the file; the error names the key and line",
            };
            return vec![fail("configuration", e.to_string(), hint)];
        }
    };
    let mut out = vec![pass(
        "configuration",
        format!("{} template(s)", config.templates.len()),
    )];
    for w in config.plaintext_warnings() {
        out.push(warn("plaintext", w, "use https://, or a loopback address for a local proxy or emulator"));
    }

    out.push(match WasmPolicy::load_with_fallback(&config.policy) {
        Ok(_) => pass(
            "policy",
            format!("{} loaded, settings accepted", config.policy.source),
        ),
        Err(e) => fail(
            "policy",
            format!("{e:#}"),
            "check [policy] source and settings; `ecs-provisioner policy test` runs its fixtures",
        ),
    });
    if let Some(shadow) = config.policy.shadow_config() {
        out.push(match WasmPolicy::load_with_fallback(&shadow) {
            Ok(_) => pass("shadow policy", format!("{} loaded, settings accepted", shadow.source)),
            Err(e) => fail(
                "shadow policy",
                format!("{e:#}"),
                "check [policy] shadow and shadow-settings (absent: the active policy's settings)",
            ),
        });
    }

    // The cloud and Jenkins are checked at once: a dead or silent endpoint on both sides is
    // reported within one set of timeouts, not two.
    let cloud = async {
        match client_from_config(&config) {
            Ok(client) => check_cloud(&client, &config).await,
            Err(e) => vec![fail("credentials", format!("{e:#}"), "see [cloud.credentials]")],
        }
    };
    let (cloud, jenkins) = tokio::join!(cloud, check_jenkins(&config));
    out.extend(cloud);
    out.extend(jenkins);
    out
}

/// Names the key to change: the template's own when it sets one, else `[cloud]`'s.
fn key_hint(t: &TemplateConfig, key: &str, set_by_template: bool) -> String {
    if set_by_template {
        format!("template \"{}\" {key}", t.name())
    } else {
        format!("[cloud] {key} (or set {key} in template \"{}\")", t.name())
    }
}

/// Which source the credentials chain picked and, for role credentials, whose they are
/// (STS `GetCallerIdentity`).
async fn check_credentials_source(client: &EcsClient, config: &Config) -> CheckResult {
    let item = "credentials source";
    let creds = match client.current_credentials().await {
        Ok(c) => c,
        Err(e) => {
            return fail(
                item,
                e.to_string(),
                "see [cloud.credentials] and the credentials sources in docs/configuration.md",
            );
        }
    };
    let picked = format!("{} [{}]", creds.source, creds.provider);
    if !creds.is_assumed_role() {
        return pass(item, picked);
    }
    let cloud = &config.cloud;
    let sts = StsClient::new(sts::endpoint_url(
        cloud.sts_endpoint.as_deref(),
        Some(&cloud.region),
        false,
    ));
    match sts.get_caller_identity(&creds).await {
        Ok(id) => pass(
            item,
            format!(
                "{picked}; assumed identity {} ({})",
                id.arn, id.identity_type
            ),
        ),
        Err(e) => fail(
            item,
            format!("{picked}; GetCallerIdentity failed: {e}"),
            "check [cloud] sts-endpoint and the role's trust policy",
        ),
    }
}

async fn check_cloud(client: &EcsClient, config: &Config) -> Vec<CheckResult> {
    let cloud = &config.cloud;
    let mut out = vec![check_credentials_source(client, config).await];
    match client.describe_regions().await {
        Ok(regions) => {
            out.push(pass("credentials", "DescribeRegions answered"));
            out.push(if regions.iter().any(|r| r.region_id == cloud.region) {
                pass("region", cloud.region.clone())
            } else {
                fail(
                    "region",
                    format!("{} is not offered to this account", cloud.region),
                    "set [cloud] region to one DescribeRegions lists",
                )
            });
        }
        Err(e) => {
            let hint = match e.kind {
                ErrorKind::Signature { secret_wrong: true } => "the AccessKey secret is wrong",
                ErrorKind::Credentials | ErrorKind::NoCredentials => {
                    "check the AccessKey id/secret or the credentials source"
                }
                ErrorKind::Permission => "grant the RAM actions listed in the README",
                _ => "check [cloud] endpoint and the network",
            };
            out.push(fail("credentials", e.to_string(), hint));
            return out;
        }
    }
    let vswitches = match client
        .describe_vswitches(&VSwitchFilter {
            vpc_id: Some(cloud.vpc_id.clone()),
            ..Default::default()
        })
        .await
    {
        Ok(v) if v.is_empty() => {
            out.push(fail(
                "vswitches",
                format!("no vswitch in {}", cloud.vpc_id),
                "create vswitches in the VPC or fix [cloud] vpc-id",
            ));
            Vec::new()
        }
        Ok(v) => v,
        Err(e) => {
            out.push(fail(
                "vswitches",
                e.to_string(),
                "the RAM policy needs vpc:DescribeVSwitches",
            ));
            Vec::new()
        }
    };
    // (zone, type) pairs in stock, on demand.
    let stock: BTreeSet<(String, String)> = match client
        .describe_available_resource(&AvailableResourceRequest::instance_types())
        .await
    {
        Ok(zones) => zones
            .iter()
            .flat_map(|z| {
                z.available_resources
                    .0
                    .iter()
                    .flat_map(|r| r.supported_resources.0.iter())
                    .filter(|s| s.in_stock())
                    .map(|s| (z.zone_id.clone(), s.value.clone()))
            })
            .collect(),
        Err(e) => {
            out.push(fail(
                "instance types",
                e.to_string(),
                "the RAM policy needs ecs:DescribeAvailableResource",
            ));
            BTreeSet::new()
        }
    };
    for t in &config.templates {
        out.extend(check_template(client, config, t, &vswitches, &stock).await);
    }
    out
}

/// Every launch-profile item of one template.
async fn check_template(
    client: &EcsClient,
    config: &Config,
    t: &TemplateConfig,
    vswitches: &[VSwitch],
    stock: &BTreeSet<(String, String)>,
) -> Vec<CheckResult> {
    let p = config.launch_profile(t);
    let item = |what: &str| format!("{what} ({})", t.name());
    let mut out = Vec::new();

    // Image.
    let image = match client
        .describe_images(&ImageFilter {
            image_id: Some(p.image_id.clone()),
            ..Default::default()
        })
        .await
    {
        Ok(images) => match images.into_iter().find(|i| i.image_id == p.image_id) {
            Some(i) => {
                out.push(pass(
                    item("image"),
                    format!("{} ({}, {})", i.image_id, i.image_name, i.architecture),
                ));
                Some(i)
            }
            None => {
                out.push(fail(
                    item("image"),
                    format!("{} not found in {}", p.image_id, config.cloud.region),
                    format!(
                        "set {} to an image of this region",
                        key_hint(t, "image-id", t.image_id.is_some())
                    ),
                ));
                None
            }
        },
        Err(e) => {
            out.push(fail(
                item("image"),
                e.to_string(),
                "the RAM policy needs ecs:DescribeImages",
            ));
            None
        }
    };

    // Security groups.
    let sg_key = key_hint(
        t,
        "security-group-id(s)",
        t.security_group_id.is_some() || t.security_group_ids.is_some(),
    );
    out.push(
        match client
            .describe_security_groups(&SecurityGroupFilter {
                vpc_id: None,
                security_group_ids: p.security_group_ids.clone(),
            })
            .await
        {
            Ok(found) => {
                let missing: Vec<&String> = p
                    .security_group_ids
                    .iter()
                    .filter(|g| !found.iter().any(|f| &f.security_group_id == *g))
                    .collect();
                let elsewhere: Vec<String> = found
                    .iter()
                    .filter(|f| {
                        p.security_group_ids.contains(&f.security_group_id)
                            && f.vpc_id != config.cloud.vpc_id
                    })
                    .map(|f| format!("{} belongs to {}", f.security_group_id, f.vpc_id))
                    .collect();
                if !missing.is_empty() {
                    fail(
                        item("security groups"),
                        format!("{} not found", join(&missing)),
                        format!("fix {sg_key}"),
                    )
                } else if !elsewhere.is_empty() {
                    fail(
                        item("security groups"),
                        format!("{}, not {}", elsewhere.join(", "), config.cloud.vpc_id),
                        format!("set {sg_key} to groups of [cloud] vpc-id"),
                    )
                } else {
                    pass(
                        item("security groups"),
                        format!(
                            "{} in {}",
                            p.security_group_ids.join(", "),
                            config.cloud.vpc_id
                        ),
                    )
                }
            }
            Err(e) => fail(
                item("security groups"),
                e.to_string(),
                "the RAM policy needs ecs:DescribeSecurityGroups",
            ),
        },
    );

    // Key pair, and the private key against it.
    out.extend(check_key_pair(client, config, t, &p).await);

    // Vswitches, instance types in stock, architecture.
    let usable: Vec<&VSwitch> = vswitches
        .iter()
        .filter(|s| t.vswitches.allows(&s.vswitch_id) && t.zones.allows(&s.zone_id))
        .collect();
    let ips: u64 = usable.iter().map(|s| s.available_ip_address_count).sum();
    out.push(if usable.is_empty() {
        fail(
            item("vswitches"),
            "no vswitch matches the template's zones/vswitches",
            format!("fix template \"{}\" zones or vswitches", t.name()),
        )
    } else if ips == 0 {
        fail(
            item("vswitches"),
            "no free IP left",
            "add a vswitch or free addresses",
        )
    } else {
        pass(
            item("vswitches"),
            format!("{} vswitch(es), {ips} free IPs", usable.len()),
        )
    });
    // Candidate type -> the zones (with a usable vswitch) where it is in stock.
    let mut candidates: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (zone, itype) in stock {
        if t.zones.allows(zone)
            && t.instance_types.allows(itype)
            && usable.iter().any(|s| &s.zone_id == zone)
        {
            candidates
                .entry(itype.clone())
                .or_default()
                .push(zone.clone());
        }
    }
    out.push(if candidates.is_empty() {
        fail(
            item("instance types"),
            "none in stock in the template's zones",
            format!("widen template \"{}\" instance-types or zones", t.name()),
        )
    } else {
        pass(
            item("instance types"),
            format!(
                "{} type(s) in stock: {}",
                candidates.len(),
                join(&candidates.keys().collect::<Vec<_>>())
            ),
        )
    });
    if let Some(image) = &image
        && !candidates.is_empty()
    {
        out.push(check_architecture(client, t, image, &candidates).await);
    }

    // Disk categories on sale in each candidate zone.
    if !candidates.is_empty() {
        out.push(check_disks(client, t, &p, &candidates).await);
    }

    // A dry run per candidate type, in its first zone.
    if !candidates.is_empty() {
        let mut failures = Vec::new();
        for (itype, zones) in &candidates {
            let Some(vsw) = usable.iter().find(|s| zones.contains(&s.zone_id)) else {
                continue;
            };
            let placement = LaunchPlacement {
                template: t.name(),
                instance_type: itype,
                vswitch: &vsw.vswitch_id,
                zone: Some(&vsw.zone_id),
                launch_id: "check",
            };
            let mut req = p.run_instances_request(
                &placement,
                time::OffsetDateTime::now_utc().unix_timestamp(),
            );
            req.dry_run = true;
            // Tagged as a launch is: a RAM policy that allows RunInstances only with the
            // controller tag (README, "RAM policy") passes the dry run too.
            req.tags = vec![
                crate::ecs::Tag::new(crate::adapters::cloud::TAG_CONTROLLER, &config.controller_id),
                crate::ecs::Tag::new(crate::adapters::cloud::TAG_TEMPLATE, t.name()),
            ];
            match client.run_instances(&req).await {
                Err(e) if matches!(e.kind, ErrorKind::DryRunPassed) => {}
                Ok(_) => failures.push(format!(
                    "{itype}: the endpoint launched instead of a dry run"
                )),
                Err(e) => failures.push(format!("{itype} in {}: {e}", vsw.vswitch_id)),
            }
        }
        out.push(if failures.is_empty() {
            pass(item("RunInstances (DryRun)"), format!("{} type(s): {}", candidates.len(), join(&candidates.keys().collect::<Vec<_>>())))
        } else {
            fail(
                item("RunInstances (DryRun)"),
                failures.join("; "),
                format!("the RAM policy needs ecs:RunInstances; the error names the parameter: change it in template \"{}\" or [cloud]", t.name()),
            )
        });
    }
    out
}

async fn check_key_pair(
    client: &EcsClient,
    config: &Config,
    t: &TemplateConfig,
    p: &LaunchProfile,
) -> Vec<CheckResult> {
    let item = |what: &str| format!("{what} ({})", t.name());
    let pair_key = key_hint(t, "key-pair-name", t.key_pair_name.is_some());
    let private_key_setting = if t.ssh_private_key.is_some() {
        format!("template \"{}\" ssh-private-key", t.name())
    } else {
        "[ssh] private-key".to_string()
    };
    let mut out = Vec::new();
    let pair = match client.describe_key_pairs(Some(&p.key_pair_name)).await {
        Ok(pairs) => match pairs
            .into_iter()
            .find(|k| k.key_pair_name == p.key_pair_name)
        {
            Some(k) => {
                out.push(pass(item("key pair"), k.key_pair_name.clone()));
                Some(k)
            }
            None => {
                out.push(fail(
                    item("key pair"),
                    format!("{} not found", p.key_pair_name),
                    format!("create or import the key pair, or fix {pair_key}"),
                ));
                None
            }
        },
        Err(e) => {
            out.push(fail(
                item("key pair"),
                e.to_string(),
                "the RAM policy needs ecs:DescribeKeyPairs",
            ));
            None
        }
    };
    let Some(path) = &p.ssh_private_key else {
        out.push(fail(
            item("ssh key"),
            "no private key is configured",
            format!(
                "set [ssh] private-key or template \"{}\" ssh-private-key",
                t.name()
            ),
        ));
        return out;
    };
    let passphrase = config
        .ssh
        .passphrase_env
        .clone()
        .map(crate::ssh::PassphraseSource::Env);
    let key = match crate::ssh::ClientKey::load(path, passphrase.as_ref()) {
        Ok(k) => k,
        Err(e) => {
            out.push(fail(
                item("ssh key"),
                e.to_string(),
                format!(
                    "{private_key_setting} must be an OpenSSH/PEM private key readable by this user"
                ),
            ));
            return out;
        }
    };
    let Some(pair) = pair else {
        out.push(pass(
            item("ssh key"),
            format!("{} loads (no key pair to compare it with)", path.display()),
        ));
        return out;
    };
    let matches = key_matches_pair(&pair, &key);
    out.push(match matches {
        Some(true) => pass(item("ssh key"), format!("{} is the private half of {} ({}; ECS fingerprint {})", path.display(), pair.key_pair_name, key.fingerprint(), pair.key_pair_finger_print)),
        Some(false) => fail(
            item("ssh key"),
            format!("{} ({}; MD5 {}) is not the private half of key pair {} (ECS fingerprint {})", path.display(), key.fingerprint(), crate::ssh::keys::ecs_fingerprint(key.public_key()), pair.key_pair_name, pair.key_pair_finger_print),
            format!("point {private_key_setting} at the key pair's private key, or {pair_key} at the pair of this key"),
        ),
        None => fail(
            item("ssh key"),
            format!("cannot compare: ECS gave neither the public key nor an MD5 or SHA256 fingerprint ({:?})", pair.key_pair_finger_print),
            "compare the fingerprints by hand in the ECS console",
        ),
    });
    out
}

/// Whether `key` is the private half of `pair`. ECS returns the pair's fingerprint (in its
/// own form: MD5 of the key blob, hex) and, asked for, its public key; each one given in a
/// known form is compared, and all must agree. `None`: neither can be compared.
fn key_matches_pair(pair: &crate::ecs::KeyPair, key: &crate::ssh::ClientKey) -> Option<bool> {
    let by_key = pair
        .public_key
        .as_deref()
        .filter(|p| !p.trim().is_empty())
        .map(|public| same_public_key(public, &key.public_key_line()));
    let by_fingerprint =
        crate::ssh::keys::fingerprint_names(&pair.key_pair_finger_print, key.public_key());
    match (by_key, by_fingerprint) {
        (Some(a), Some(b)) => Some(a && b),
        (one, other) => one.or(other),
    }
}

/// Compares two OpenSSH public key lines by type and key data (comments ignored).
fn same_public_key(a: &str, b: &str) -> bool {
    let parts = |s: &str| {
        s.split_whitespace()
            .take(2)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    parts(a) == parts(b)
}

/// `arm64` images need ARM types, `x86_64`/`i386` images X86 types.
async fn check_architecture(
    client: &EcsClient,
    t: &TemplateConfig,
    image: &crate::ecs::Image,
    candidates: &BTreeMap<String, Vec<String>>,
) -> CheckResult {
    let item = format!("image architecture ({})", t.name());
    let wanted = if image.architecture.eq_ignore_ascii_case("arm64") {
        "ARM"
    } else {
        "X86"
    };
    let ids: Vec<String> = candidates.keys().cloned().collect();
    match client.describe_instance_types(&ids).await {
        Ok(types) => {
            let wrong: Vec<String> = types
                .iter()
                .filter(|i| {
                    ids.contains(&i.instance_type_id)
                        && !i.cpu_architecture.is_empty()
                        && !i.cpu_architecture.eq_ignore_ascii_case(wanted)
                })
                .map(|i| format!("{} is {}", i.instance_type_id, i.cpu_architecture))
                .collect();
            if wrong.is_empty() {
                pass(
                    item,
                    format!(
                        "{} ({}) fits {}",
                        image.image_id,
                        image.architecture,
                        ids.join(", ")
                    ),
                )
            } else {
                fail(
                    item,
                    format!(
                        "image {} is {} but {}",
                        image.image_id,
                        image.architecture,
                        wrong.join(", ")
                    ),
                    format!(
                        "give template \"{}\" an image-id of that architecture, or instance-types of {wanted}",
                        t.name()
                    ),
                )
            }
        }
        Err(e) => fail(
            item,
            e.to_string(),
            "the RAM policy needs ecs:DescribeInstanceTypes",
        ),
    }
}

/// The system and data disk categories of the profile, on sale in every candidate zone.
async fn check_disks(
    client: &EcsClient,
    t: &TemplateConfig,
    p: &LaunchProfile,
    candidates: &BTreeMap<String, Vec<String>>,
) -> CheckResult {
    let item = format!("disk categories ({})", t.name());
    let system = p.keys.system_disk_category.clone();
    let data: BTreeSet<String> = p.data_disks().into_iter().map(|d| d.category).collect();
    if system.is_none() && data.is_empty() {
        return pass(item, "the image's default system disk, no data disks");
    }
    // One type per zone is enough: categories are sold per zone.
    let mut zone_type: BTreeMap<&String, &String> = BTreeMap::new();
    for (itype, zones) in candidates {
        for z in zones {
            zone_type.entry(z).or_insert(itype);
        }
    }
    let mut missing = Vec::new();
    for (zone, itype) in &zone_type {
        for (dest, wanted) in [
            (
                "SystemDisk",
                system.iter().cloned().collect::<BTreeSet<_>>(),
            ),
            ("DataDisk", data.clone()),
        ] {
            if wanted.is_empty() {
                continue;
            }
            let req = AvailableResourceRequest {
                destination_resource: dest.into(),
                zone_id: Some((*zone).clone()),
                instance_type: Some((*itype).clone()),
                ..AvailableResourceRequest::instance_types()
            };
            match client.describe_available_resource(&req).await {
                Ok(zones) => {
                    let on_sale: BTreeSet<String> = zones
                        .iter()
                        .flat_map(|z| {
                            z.available_resources
                                .0
                                .iter()
                                .flat_map(|r| r.supported_resources.0.iter())
                        })
                        .filter(|s| s.status == "Available" || s.status.is_empty())
                        .map(|s| s.value.clone())
                        .collect();
                    for c in wanted.difference(&on_sale) {
                        missing.push(format!(
                            "{} {c} in {zone}",
                            if dest == "SystemDisk" {
                                "system disk"
                            } else {
                                "data disk"
                            }
                        ));
                    }
                }
                Err(e) => {
                    return fail(
                        item,
                        e.to_string(),
                        "the RAM policy needs ecs:DescribeAvailableResource",
                    );
                }
            }
        }
    }
    if missing.is_empty() {
        let all: Vec<String> = system.iter().cloned().chain(data).collect();
        pass(
            item,
            format!(
                "{} on sale in {}",
                all.join(", "),
                join(&zone_type.keys().collect::<Vec<_>>())
            ),
        )
    } else {
        fail(
            item,
            format!("not on sale: {}", missing.join(", ")),
            format!(
                "change the category (system-disk-category / data-disks) or narrow template \"{}\" zones",
                t.name()
            ),
        )
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Jenkins: credentials, a throw-away node created and deleted, agent.jar, the WebSocket
/// agent endpoint.
async fn check_jenkins(config: &Config) -> Vec<CheckResult> {
    let adapter = match crate::adapters::jenkins::JenkinsAdapter::from_config(config) {
        Err(e) => {
            return vec![fail(
                "jenkins",
                format!("{e:#}"),
                "see [jenkins] token-env / token-file",
            )];
        }
        Ok(a) => a,
    };
    let client = adapter.client();
    let mut out = Vec::new();
    match client.version().await {
        Ok(v) => match client.computers().await {
            Ok(_) => out.push(pass(
                "jenkins",
                format!("Jenkins {v}, user {} can read nodes", config.jenkins.user),
            )),
            Err(e) => {
                out.push(fail("jenkins", e.to_string(), "the user needs Overall/Read and Agent/Create, Agent/Delete, Agent/Configure, Agent/Disconnect"));
                return out;
            }
        },
        Err(e) => {
            out.push(fail(
                "jenkins",
                e.to_string(),
                "check [jenkins] url, user and API token",
            ));
            return out;
        }
    }
    out.push(check_node_lifecycle(client).await);
    let agent_client = crate::adapters::jenkins::client_from_config(
        &config.jenkins,
        config.jenkins.agent_url.as_deref().unwrap_or(&config.jenkins.url),
    );
    let root = config
        .jenkins
        .agent_url
        .as_deref()
        .unwrap_or(&config.jenkins.url)
        .to_string();
    let url_key = if config.jenkins.agent_url.is_some() {
        "[jenkins] agent-url"
    } else {
        "[jenkins] url (or agent-url)"
    };
    out.push(match &agent_client {
        Ok(c) => match c.agent_jar(None).await {
            Ok(crate::jenkins::client::JarDownload::Fetched { bytes, .. }) => {
                pass("agent.jar", format!("{} bytes, sha256 {}", bytes.len(), crate::jenkins::agent_jar::sha256_hex(&bytes)))
            }
            Ok(crate::jenkins::client::JarDownload::NotModified) => pass("agent.jar", "served"),
            Err(e) => fail("agent.jar", e.to_string(), format!("{url_key} must be the controller's root: <root>jnlpJars/agent.jar is downloaded from it")),
        },
        Err(e) => fail("agent.jar", format!("{e:#}"), format!("fix {url_key}")),
    });
    out.push(check_websocket(&root, url_key).await);
    out
}

/// Creates a throw-away inbound node and deletes it: the permissions a launch needs.
async fn check_node_lifecycle(client: &JenkinsClient) -> CheckResult {
    let item = "jenkins node create/delete";
    let name = format!("ecs-provisioner-check-{:08x}", rand::random::<u32>());
    let spec = InboundAgentSpec {
        name: name.clone(),
        description: "throw-away node of `ecs-provisioner check`; safe to delete".into(),
        num_executors: 1,
        remote_fs: "/tmp/ecs-provisioner-check".into(),
        labels: vec!["ecs-provisioner-check".into()],
        mode: NodeMode::Exclusive,
    };
    if let Err(e) = client.create_inbound_agent(&spec).await {
        return fail(
            item,
            e.to_string(),
            "give the [jenkins] user Agent/Create (and Agent/Delete, Agent/Connect)",
        );
    }
    let secret = client.agent_secret(&name).await;
    let deleted = client.delete_node(&name).await;
    match (secret, deleted) {
        (Ok(_), Ok(true)) => pass(
            item,
            format!("created, read the agent secret of and deleted {name}"),
        ),
        (Err(e), _) => fail(
            item,
            format!("created {name} but cannot read its agent secret: {e}"),
            "give the [jenkins] user Agent/Connect",
        ),
        (_, Ok(false)) => fail(
            item,
            format!("{name} vanished before its deletion"),
            "another tool deletes nodes: check the controller",
        ),
        (_, Err(e)) => fail(
            item,
            format!("created {name} but cannot delete it: {e} (delete it by hand)"),
            "give the [jenkins] user Agent/Delete",
        ),
    }
}

/// `GET <root>wsagents/` without the agent headers: Jenkins answers 400 "only for use from
/// agent.jar" when WebSocket agents work; 404 when they are off or a proxy does not pass them.
async fn check_websocket(root: &str, url_key: &str) -> CheckResult {
    let item = "websocket agent endpoint";
    let url = format!(
        "{}{}wsagents/",
        root,
        if root.ends_with('/') { "" } else { "/" }
    );
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build();
    let resp = match http {
        Ok(h) => h.get(&url).send().await,
        Err(e) => return fail(item, e.to_string(), "report this"),
    };
    match resp {
        Ok(r) if r.status() == reqwest::StatusCode::BAD_REQUEST => {
            let body = r.text().await.unwrap_or_default();
            if body.contains("only for use from agent.jar") {
                pass(item, format!("{url} answers agents"))
            } else {
                fail(
                    item,
                    format!(
                        "{url}: HTTP 400 {:?}",
                        body.lines().next().unwrap_or_default()
                    ),
                    format!(
                        "{url_key} must reach the controller directly or through a proxy that forwards WebSockets"
                    ),
                )
            }
        }
        Ok(r) => fail(
            item,
            format!("{url}: HTTP {}", r.status()),
            format!(
                "enable WebSocket agents on the controller (they are on by default) and make {url_key} reach it through a proxy that forwards WebSockets"
            ),
        ),
        Err(e) => fail(
            item,
            format!("{url}: {e}"),
            format!("agents must reach {url_key}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(fingerprint: &str, public_key: Option<&str>) -> crate::ecs::KeyPair {
        serde_json::from_value(serde_json::json!({
            "KeyPairName": "ci", "KeyPairFingerPrint": fingerprint, "PublicKey": public_key,
        }))
        .unwrap()
    }

    #[test]
    fn the_key_is_compared_by_public_key_else_by_the_ecs_fingerprint() {
        let key = crate::ssh::ClientKey::from_private_key(crate::ssh::keys::generate_ed25519("a"), "a");
        let other = crate::ssh::ClientKey::from_private_key(crate::ssh::keys::generate_ed25519("b"), "b");
        let md5 = crate::ssh::keys::ecs_fingerprint(key.public_key());
        // DescribeKeyPairs without the public key: ECS' MD5 fingerprint decides.
        assert_eq!(key_matches_pair(&pair(&md5, None), &key), Some(true));
        assert_eq!(key_matches_pair(&pair(&md5, None), &other), Some(false));
        // With it, the key itself (a comment differs, the key does not), and both must agree.
        let line = key.public_key_line().replace(" a", " renamed");
        assert_eq!(key_matches_pair(&pair("", Some(&line)), &key), Some(true));
        assert_eq!(key_matches_pair(&pair(&md5, Some(&line)), &key), Some(true));
        assert_eq!(key_matches_pair(&pair(&md5, Some(&line)), &other), Some(false));
        let other_md5 = crate::ssh::keys::ecs_fingerprint(other.public_key());
        assert_eq!(key_matches_pair(&pair(&other_md5, Some(&line)), &key), Some(false));
        assert_eq!(key_matches_pair(&pair("unknown-form", None), &key), None);
    }
}
