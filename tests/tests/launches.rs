//! Launch profiles end to end (issue 11): two templates with their own image, security groups,
//! SSH user and disks, launched by the engine on the emulators. Each template's RunInstances
//! carries its own settings under the ECS parameter names, DescribeInstances and DescribeDisks
//! show them on the instances, and the agents come online only because the bootstrap delivered
//! the controller's agent.jar (the emulated `java` refuses any other jar).

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::engine::{Harness, Setup, Template, agent_nodes, our_instances, wait_until};
use ecs_provisioner::adapters::cloud::{TAG_TEMPLATE, client_from_config};
use ecs_provisioner::sim::ecs::RecordedRunInstances;

const EXE: &str = env!("CARGO_BIN_EXE_e2e-provisioner");
const UBUNTU: &str = "ubuntu_22_04_x64_20G_alibase_20240130.vhd";
const ALINUX: &str = "aliyun_3_x64_20G_alibase_20240528.vhd";
const SG_AGENTS: &str = "sg-bp1sim0000000000001";
const SG_EGRESS: &str = "sg-bp1sim0000000000002";

/// The successful RunInstances of a template (by its tag), in order.
fn launches_of<'a>(
    log: &'a [RecordedRunInstances],
    template: &str,
) -> Vec<&'a BTreeMap<String, String>> {
    log.iter()
        .filter(|r| r.code.is_empty())
        .map(|r| &r.params)
        .filter(|p| {
            (1..=20).any(|n| {
                p.get(&format!("Tag.{n}.Key")).map(String::as_str) == Some(TAG_TEMPLATE)
                    && p.get(&format!("Tag.{n}.Value")).map(String::as_str) == Some(template)
            })
        })
        .collect()
}

fn param<'a>(p: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    p.get(name).map(String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_templates_launch_with_their_own_profiles() {
    let mut linux = Template::new("linux", 1, 1, 1);
    linux.extra = r#"ssh-user = "builder"
host-name = "ci-{template}-{instance_id}"
data-disks = [{ category = "cloud_essd", size-gib = 100, performance-level = "PL0" }]
"#
    .into();
    let mut gpu = Template::new("gpu", 1, 1, 1);
    gpu.extra = format!(
        r#"image-id = "{ALINUX}"
security-group-ids = ["{SG_AGENTS}", "{SG_EGRESS}"]
ssh-user = "ecs-user"
system-disk-category = "cloud_essd"
system-disk-size-gib = 60
data-disks = [{{ category = "cloud_efficiency", size-gib = 200, delete-with-instance = false }}, {{ category = "cloud_auto", size-gib = 50 }}]
ram-role = "ci-gpu"
internet-max-bandwidth-out = 5
connect-via = "public-ip"
auto-release-after = "12h"
"#
    );
    let mut setup = Setup::new(EXE, vec![linux, gpu]);
    // Cloud-level defaults: what a template does not set itself.
    setup.cloud_extra = "system-disk-category = \"cloud_auto\"\nram-role = \"ci-default\"\nmetadata-tokens = \"required\"".into();
    let mut h = Harness::start(&setup).await;
    h.spawn_loop();
    wait_until(
        "each template's minimum node online",
        Duration::from_secs(90),
        || h.at_minimum(),
        || h.describe(),
    )
    .await;

    // RunInstances, as the emulator received it.
    let log = h.cluster.ecs.run_instances_log();
    let (l, g) = (launches_of(&log, "linux"), launches_of(&log, "gpu"));
    assert_eq!(
        (l.len(), g.len()),
        (1, 1),
        "one launch per template: {log:#?}"
    );
    let (l, g) = (l[0], g[0]);
    assert_eq!(param(l, "ImageId"), Some(UBUNTU));
    assert_eq!(param(l, "SecurityGroupId"), Some(SG_AGENTS));
    assert!(
        !l.keys().any(|k| k.starts_with("SecurityGroupIds.")),
        "{l:?}"
    );
    assert_eq!(param(l, "HostName"), Some("ci-linux-${instance_id}"));
    assert_eq!(
        param(l, "SystemDisk.Category"),
        Some("cloud_auto"),
        "the cloud's default"
    );
    assert_eq!(param(l, "SystemDisk.Size"), None);
    assert_eq!(
        [
            param(l, "DataDisk.1.Category"),
            param(l, "DataDisk.1.Size"),
            param(l, "DataDisk.1.PerformanceLevel"),
            param(l, "DataDisk.1.DeleteWithInstance")
        ],
        [Some("cloud_essd"), Some("100"), Some("PL0"), Some("true")]
    );
    assert!(!l.contains_key("DataDisk.2.Category"));
    assert_eq!(param(l, "RamRoleName"), Some("ci-default"));
    assert_eq!(param(l, "HttpTokens"), Some("required"));
    assert_eq!(param(l, "InternetMaxBandwidthOut"), None);
    assert_eq!(param(l, "AutoReleaseTime"), None);

    assert_eq!(param(g, "ImageId"), Some(ALINUX));
    assert_eq!(
        param(g, "SecurityGroupId"),
        None,
        "ECS refuses SecurityGroupId with SecurityGroupIds"
    );
    assert_eq!(
        (
            param(g, "SecurityGroupIds.1"),
            param(g, "SecurityGroupIds.2")
        ),
        (Some(SG_AGENTS), Some(SG_EGRESS))
    );
    assert_eq!(
        (param(g, "SystemDisk.Category"), param(g, "SystemDisk.Size")),
        (Some("cloud_essd"), Some("60"))
    );
    assert_eq!(
        [
            param(g, "DataDisk.1.Category"),
            param(g, "DataDisk.1.Size"),
            param(g, "DataDisk.1.DeleteWithInstance")
        ],
        [Some("cloud_efficiency"), Some("200"), Some("false")]
    );
    assert_eq!(
        [param(g, "DataDisk.2.Category"), param(g, "DataDisk.2.Size")],
        [Some("cloud_auto"), Some("50")]
    );
    assert_eq!(param(g, "RamRoleName"), Some("ci-gpu"));
    assert_eq!(param(g, "InternetMaxBandwidthOut"), Some("5"));
    assert_eq!(
        param(g, "HttpTokens"),
        Some("required"),
        "inherited from [cloud]"
    );
    let release = param(g, "AutoReleaseTime").expect("AutoReleaseTime");
    let release = time::PrimitiveDateTime::parse(
        release,
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"),
    )
    .unwrap()
    .assume_utc();
    let ahead = release - time::OffsetDateTime::now_utc();
    assert!(
        ahead > time::Duration::hours(11) && ahead <= time::Duration::hours(12),
        "released {ahead} from now"
    );

    // The instances, as DescribeInstances and DescribeDisks show them.
    let client = client_from_config(&h.config).unwrap();
    let ids: Vec<String> = our_instances(&h.cluster)
        .into_iter()
        .map(|i| i.instance_id)
        .collect();
    let described = client
        .describe_instances(&ecs_provisioner::ecs::InstanceFilter {
            instance_ids: ids,
            ..Default::default()
        })
        .await
        .unwrap();
    let by_template = |t: &str| {
        described
            .iter()
            .find(|i| i.tag(TAG_TEMPLATE) == Some(t))
            .unwrap_or_else(|| panic!("no {t} instance"))
    };
    let (li, gi) = (by_template("linux"), by_template("gpu"));
    assert_eq!(
        (li.image_id.as_str(), gi.image_id.as_str()),
        (UBUNTU, ALINUX)
    );
    assert_eq!(li.security_group_ids.0, [SG_AGENTS]);
    assert_eq!(gi.security_group_ids.0, [SG_AGENTS, SG_EGRESS]);
    assert_eq!(li.host_name, format!("ci-linux-{}", li.instance_id));
    assert!(
        li.public_ip_address.0.is_empty(),
        "no bandwidth, no public IP"
    );
    assert_eq!(gi.public_ip_address.0.len(), 1, "bandwidth 5: a public IP");
    let disks = |id: &str| {
        let client = client.clone();
        let id = id.to_string();
        async move {
            client
                .describe_disks(&id)
                .await
                .unwrap()
                .into_iter()
                .map(|d| {
                    (
                        d.kind,
                        d.category,
                        d.size,
                        d.performance_level,
                        d.delete_with_instance,
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let s = |x: &str| x.to_string();
    assert_eq!(
        disks(&li.instance_id).await,
        [
            (s("system"), s("cloud_auto"), 40, s(""), true),
            (s("data"), s("cloud_essd"), 100, s("PL0"), true)
        ]
    );
    assert_eq!(
        disks(&gi.instance_id).await,
        [
            (s("system"), s("cloud_essd"), 60, s("PL1"), true),
            (s("data"), s("cloud_efficiency"), 200, s(""), false),
            (s("data"), s("cloud_auto"), 50, s(""), true),
        ]
    );

    // Each template's instances were reached as its own SSH user.
    // Each template's instances were reached as its own SSH user, at the address its
    // connect-via names: linux at its private IP, gpu at its public one.
    let logins = h.cluster.ssh.logins();
    let private_of = |id: &str| {
        our_instances(&h.cluster)
            .into_iter()
            .find(|i| i.instance_id == id)
            .unwrap()
            .ip
            .to_string()
    };
    for (instance, user, address) in [
        (&li.instance_id, "builder", private_of(&li.instance_id)),
        (
            &gi.instance_id,
            "ecs-user",
            gi.public_ip_address.0[0].clone(),
        ),
    ] {
        let seen: Vec<(&str, String)> = logins
            .iter()
            .filter(|l| &l.instance_id == instance)
            .map(|l| (l.user.as_str(), l.address.to_string()))
            .collect();
        assert!(
            !seen.is_empty() && seen.iter().all(|(u, a)| *u == user && *a == address),
            "{instance}: logins {seen:?}, expected {user} at {address}"
        );
    }
    assert_ne!(gi.public_ip_address.0[0], private_of(&gi.instance_id));

    // The agents run the controller's jar, delivered by the bootstrap.
    let jar = h.cluster.jenkins.agent_jar();
    for i in [li, gi] {
        let path = h
            .cluster
            .ssh
            .instance_dir(&i.instance_id)
            .join("agent/agent.jar");
        assert!(
            std::fs::read(&path).unwrap() == *jar,
            "{} has not the controller's agent.jar",
            path.display()
        );
    }
    assert!(
        agent_nodes(&h.cluster).iter().all(|n| n.connected),
        "{}",
        h.describe()
    );
    // One download by the provisioner served both bootstraps; each emulated agent fetched the
    // jar once more to compare it with its own.
    assert_eq!(
        h.cluster.jenkins.agent_jar_requests().0,
        1 + 2,
        "the provisioner downloads agent.jar once"
    );
    h.shutdown().await;
}
