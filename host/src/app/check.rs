//! `check`: verifies everything a deployment needs before it launches anything, and says what
//! to fix. Each item is independent: one failure does not hide the others.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::ecs::{
    AvailableResourceRequest, EcsClient, ErrorKind, ImageFilter, SecurityGroupFilter, VSwitchFilter,
};
use crate::engine::adapters::cloud::client_from_config;
use crate::engine::adapters::policy::WasmPolicy;

/// One checked item.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub item: String,
    pub ok: bool,
    pub detail: String,
    pub hint: Option<String>,
}

fn pass(item: impl Into<String>, detail: impl Into<String>) -> CheckResult {
    CheckResult { item: item.into(), ok: true, detail: detail.into(), hint: None }
}

fn fail(item: impl Into<String>, detail: impl Into<String>, hint: impl Into<String>) -> CheckResult {
    CheckResult { item: item.into(), ok: false, detail: detail.into(), hint: Some(hint.into()) }
}

/// Runs every check.
pub async fn run(config_path: &Path) -> Vec<CheckResult> {
    let config = match Config::load(config_path) {
        Ok(c) => Arc::new(c),
        Err(e) => return vec![fail("configuration", e.to_string(), "fix the file; the error names the key and line")],
    };
    let mut out = vec![pass("configuration", format!("{} template(s)", config.templates.len()))];

    out.push(match WasmPolicy::load_with_fallback(&config.policy) {
        Ok(_) => pass("policy", format!("{} loaded, settings accepted", config.policy.source)),
        Err(e) => fail("policy", format!("{e:#}"), "check [policy] source and settings; `ecs-provisioner policy test` runs its fixtures"),
    });

    match client_from_config(&config) {
        Ok(client) => out.extend(check_cloud(&client, &config).await),
        Err(e) => out.push(fail("credentials", format!("{e:#}"), "see [cloud.credentials]")),
    }
    out.push(check_jenkins(&config).await);
    out.push(check_ssh_key(&config));
    out
}

async fn check_cloud(client: &EcsClient, config: &Config) -> Vec<CheckResult> {
    let cloud = &config.cloud;
    let mut out = Vec::new();
    match client.describe_regions().await {
        Ok(regions) => {
            out.push(pass("credentials", "DescribeRegions answered"));
            out.push(if regions.iter().any(|r| r.region_id == cloud.region) {
                pass("region", cloud.region.clone())
            } else {
                fail("region", format!("{} is not offered to this account", cloud.region), "set [cloud] region to one DescribeRegions lists")
            });
        }
        Err(e) => {
            let hint = match e.kind {
                ErrorKind::Signature { secret_wrong: true } => "the AccessKey secret is wrong",
                ErrorKind::Credentials | ErrorKind::NoCredentials => "check the AccessKey id/secret or the credentials source",
                ErrorKind::Permission => "grant the RAM actions listed in the README",
                _ => "check [cloud] endpoint and the network",
            };
            out.push(fail("credentials", e.to_string(), hint));
            return out;
        }
    }
    out.push(match client.describe_images(&ImageFilter { image_id: Some(cloud.image_id.clone()), ..Default::default() }).await {
        Ok(images) if !images.is_empty() => pass("image", cloud.image_id.clone()),
        Ok(_) => fail("image", format!("{} not found in {}", cloud.image_id, cloud.region), "set [cloud] image-id to an image of this region"),
        Err(e) => fail("image", e.to_string(), "the RAM policy needs ecs:DescribeImages"),
    });
    // The cloud-level groups (per-template groups come with the per-template check).
    let groups: Vec<String> =
        cloud.security_group_ids.clone().or_else(|| cloud.security_group_id.clone().map(|g| vec![g])).unwrap_or_default();
    out.push(
        match client
            .describe_security_groups(&SecurityGroupFilter { vpc_id: None, security_group_ids: groups.clone() })
            .await
        {
            Ok(found) => match found.iter().find(|g| groups.contains(&g.security_group_id)) {
                Some(g) if g.vpc_id == cloud.vpc_id => pass("security group", format!("{} in {}", g.security_group_id, g.vpc_id)),
                Some(g) => fail("security group", format!("{} belongs to {}, not {}", g.security_group_id, g.vpc_id, cloud.vpc_id), "pick a security group of the configured VPC"),
                None => fail("security group", format!("{} not found", groups.join(", ")), "set [cloud] security-group-id"),
            },
            Err(e) => fail("security group", e.to_string(), "the RAM policy needs ecs:DescribeSecurityGroups"),
        },
    );
    out.push(match client.describe_key_pairs(Some(&cloud.key_pair_name)).await {
        Ok(pairs) if pairs.iter().any(|k| k.key_pair_name == cloud.key_pair_name) => pass("key pair", cloud.key_pair_name.clone()),
        Ok(_) => fail("key pair", format!("{} not found", cloud.key_pair_name), "create or import the key pair, or fix [cloud] key-pair-name"),
        Err(e) => fail("key pair", e.to_string(), "the RAM policy needs ecs:DescribeKeyPairs"),
    });
    let vswitches = client.describe_vswitches(&VSwitchFilter { vpc_id: Some(cloud.vpc_id.clone()), ..Default::default() }).await;
    match &vswitches {
        Ok(v) if v.is_empty() => out.push(fail("vswitches", format!("no vswitch in {}", cloud.vpc_id), "create vswitches in the VPC or fix [cloud] vpc-id")),
        Ok(v) => {
            for t in &config.templates {
                let usable: Vec<_> = v.iter().filter(|s| t.vswitches.allows(&s.vswitch_id) && t.zones.allows(&s.zone_id)).collect();
                let ips: u64 = usable.iter().map(|s| s.available_ip_address_count).sum();
                out.push(if usable.is_empty() {
                    fail(format!("vswitches ({})", t.name()), "no vswitch matches the template's zones/vswitches", "fix the template's zones or vswitches")
                } else if ips == 0 {
                    fail(format!("vswitches ({})", t.name()), "no free IP left", "add a vswitch or free addresses")
                } else {
                    pass(format!("vswitches ({})", t.name()), format!("{} vswitch(es), {ips} free IPs", usable.len()))
                });
            }
        }
        Err(e) => out.push(fail("vswitches", e.to_string(), "the RAM policy needs vpc:DescribeVSwitches")),
    }
    match client.describe_available_resource(&AvailableResourceRequest::instance_types()).await {
        Ok(zones) => {
            for t in &config.templates {
                let n = zones
                    .iter()
                    .filter(|z| t.zones.allows(&z.zone_id))
                    .flat_map(|z| z.available_resources.0.iter().flat_map(|r| r.supported_resources.0.iter()))
                    .filter(|s| t.instance_types.allows(&s.value) && s.in_stock())
                    .count();
                out.push(if n == 0 {
                    fail(format!("instance types ({})", t.name()), "none in stock in the template's zones", "widen instance-types or zones")
                } else {
                    pass(format!("instance types ({})", t.name()), format!("{n} zone x type combinations in stock"))
                });
            }
        }
        Err(e) => out.push(fail("instance types", e.to_string(), "the RAM policy needs ecs:DescribeAvailableResource")),
    }
    // A DryRun launch proves the permission and the parameters without creating anything.
    if let (Ok(v), Some(t)) = (&vswitches, config.templates.first())
        && let Some(vsw) = v.iter().find(|s| t.vswitches.allows(&s.vswitch_id) && t.zones.allows(&s.zone_id)) {
            let itype = match &t.instance_types {
                crate::config::Candidates::List(l) => l[0].clone(),
                crate::config::Candidates::Auto => "ecs.g7.large".to_owned(),
            };
            let placement = crate::config::launch::LaunchPlacement {
                template: t.name(),
                instance_type: &itype,
                vswitch: &vsw.vswitch_id,
                zone: Some(&vsw.zone_id),
                launch_id: "check",
            };
            let mut req = config.launch_profile(t).run_instances_request(&placement, time::OffsetDateTime::now_utc().unix_timestamp());
            req.dry_run = true;
            out.push(match client.run_instances(&req).await {
                Err(e) if matches!(e.kind, ErrorKind::DryRunPassed) => pass("RunInstances (DryRun)", format!("{itype} in {}", vsw.vswitch_id)),
                Ok(_) => fail("RunInstances (DryRun)", "the endpoint launched instead of a dry run", "report this: DryRun=true must never launch"),
                Err(e) => fail("RunInstances (DryRun)", e.to_string(), "the RAM policy needs ecs:RunInstances; check image, type and vswitch"),
            });
        }
    out
}

async fn check_jenkins(config: &Config) -> CheckResult {
    match crate::engine::adapters::jenkins::JenkinsAdapter::from_config(config) {
        Err(e) => fail("jenkins", format!("{e:#}"), "see [jenkins] token-env / token-file"),
        Ok(adapter) => match adapter.client().version().await {
            Ok(v) => match adapter.client().computers().await {
                Ok(_) => pass("jenkins", format!("Jenkins {v}, user {} can read nodes", config.jenkins.user)),
                Err(e) => fail("jenkins", e.to_string(), "the user needs Overall/Read and Agent/Create, Agent/Delete, Agent/Configure, Agent/Disconnect"),
            },
            Err(e) => fail("jenkins", e.to_string(), "check [jenkins] url, user and API token"),
        },
    }
}

fn check_ssh_key(config: &Config) -> CheckResult {
    let Some(path) = &config.ssh.private_key else {
        return fail("ssh key", "ssh.private-key is not set", "name the private key of the key pair");
    };
    let passphrase = config.ssh.passphrase_env.clone().map(crate::ssh::PassphraseSource::Env);
    match crate::ssh::ClientKey::load(path, passphrase.as_ref()) {
        Ok(_) => pass("ssh key", path.display().to_string()),
        Err(e) => fail("ssh key", e.to_string(), "the file must be an OpenSSH/PEM private key readable by this user"),
    }
}
