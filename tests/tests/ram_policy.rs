//! The least-privilege RAM policy the README documents, evaluated by the ECS emulator
//! (issue 12): the provisioner's reads, `check`'s dry run and its launches work under it,
//! and it refuses an untagged launch and deleting an instance that is not this controller's.

use std::sync::Arc;

use e2e::policy::workspace_root;
use ecs_provisioner::app;
use ecs_provisioner::config::launch::LaunchPlacement;
use ecs_provisioner::ecs::credentials::Credentials;
use ecs_provisioner::ecs::{EcsClient, ErrorKind, Tag, VSwitchFilter};
use ecs_provisioner::sim::cluster::{Cluster, ClusterOptions};
use ecs_provisioner::sim::ecs::config::Account;
use ecs_provisioner::sim::jenkins::{EnqueueRequest, JobKind};

const TEMPLATE: &str = r#"
[[template]]
name = "linux"
labels = ["linux"]
max-nodes = 2
instance-types = ["ecs.c7.large"]
remote-fs = "agent"
agent-command = "true {secret_file}"
"#;

/// The JSON block of the README's "RAM policy" paragraph, for controller `controller`.
fn readme_policy(controller: &str) -> serde_json::Value {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let section = &readme[readme.find("**RAM policy**").expect("the README has a RAM policy")..];
    let json = &section[section.find("```json\n").unwrap() + 8..];
    let json = &json[..json.find("```").unwrap()];
    assert!(json.contains("\"jenkins-prod\""), "the documented policy names the example controller id");
    serde_json::from_str(&json.replace("\"jenkins-prod\"", &format!("{controller:?}"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_ram_policy_allows_the_provisioner_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = ClusterOptions::ephemeral(dir.path());
    options.ecs.accounts[0].ram_policy = Some(readme_policy("ram"));
    // Someone else's key, allowed everything, to make an instance that is not ours.
    options.ecs.accounts.push(Account::new("LTAIsomeoneelse", "someone-elses-secret"));
    let cluster = Cluster::start(options).await.unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, cluster.config_text("ram", TEMPLATE, "").unwrap()).unwrap();

    // Every check passes: the descriptions, and RunInstances' dry run with the tag.
    let results = app::check::run(&path).await;
    let failed: Vec<_> = results.iter().filter(|r| !r.ok).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(results.iter().any(|r| r.item.starts_with("RunInstances (DryRun)")), "{results:#?}");

    // A launch through the engine carries the controller tag and is allowed.
    let config = Arc::new(cluster.config("ram", TEMPLATE, "").unwrap());
    let (engine, _) = app::wire(config.clone()).unwrap();
    engine.cycle(true).await;
    cluster
        .jenkins
        .enqueue(EnqueueRequest { job: Some("j".into()), kind: JobKind::Freestyle, label: Some("linux".into()), duration_ms: 1000, count: Some(1) })
        .unwrap();
    let report = engine.cycle(true).await;
    assert!(report.launch_errors.is_empty() && report.errors.is_empty(), "{report:#?}");
    let ours: Vec<String> = report.launched.iter().flat_map(|l| l.instance_ids.clone()).collect();
    assert_eq!(ours.len(), 1, "{report:#?}");
    engine.shutdown();

    // The same request, untagged: refused for our key, made with someone else's.
    let restricted = EcsClient::with_credentials(cluster.ecs.client_config(), cluster.ecs.credentials()).unwrap();
    let other = EcsClient::with_credentials(cluster.ecs.client_config(), Credentials::access_key("LTAIsomeoneelse", "someone-elses-secret")).unwrap();
    let vsw = restricted.describe_vswitches(&VSwitchFilter::default()).await.unwrap().remove(0);
    let t = &config.templates[0];
    let placement = LaunchPlacement { template: t.name(), instance_type: "ecs.c7.large", vswitch: &vsw.vswitch_id, zone: Some(&vsw.zone_id), launch_id: "x" };
    let untagged = config.launch_profile(t).run_instances_request(&placement, time::OffsetDateTime::now_utc().unix_timestamp());
    let e = restricted.run_instances(&untagged).await.unwrap_err();
    assert_eq!((e.kind.clone(), e.code.as_str()), (ErrorKind::Permission, "Forbidden.RAM"), "{e}");
    let mut foreign_tag = untagged.clone();
    foreign_tag.tags = vec![Tag::new("ecs-provisioner:controller", "someone-else")];
    assert_eq!(restricted.run_instances(&foreign_tag).await.unwrap_err().code, "Forbidden.RAM");
    let theirs = other.run_instances(&untagged).await.unwrap().instance_ids.0;

    // Deleting: theirs refused (alone or with ours), ours allowed.
    for ids in [theirs.clone(), [ours.clone(), theirs.clone()].concat()] {
        let e = restricted.delete_instances(&ids, true).await.unwrap_err();
        assert_eq!(e.code, "Forbidden.RAM", "{ids:?}: {e}");
    }
    restricted.delete_instances(&ours, true).await.unwrap();
    cluster.shutdown().await;
}
