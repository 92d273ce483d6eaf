//! `check` and `plan` against the emulators: every check item passes on a good setup and names
//! the problem on a bad one; `plan` decides without touching anything.

use std::sync::Arc;

use ecs_provisioner::app;
use ecs_provisioner::sim::cluster::{Cluster, ClusterOptions};
use ecs_provisioner::sim::jenkins::{EnqueueRequest, JobKind};

const TEMPLATE: &str = r#"
[[template]]
name = "linux"
labels = ["linux"]
executors = 2
max-nodes = 4
instance-types = ["ecs.c7.large"]
remote-fs = "agent"
agent-command = "true {secret_file}"
"#;

async fn cluster(dir: &std::path::Path) -> Cluster {
    Cluster::start(ClusterOptions::ephemeral(dir)).await.expect("cluster starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_every_item_against_a_good_setup() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path()).await;
    let path = dir.path().join("config.toml");
    std::fs::write(&path, cluster.config_text("check", TEMPLATE, "").unwrap()).unwrap();

    let results = app::check::run(&path).await;
    let items: Vec<&str> = results.iter().map(|r| r.item.as_str()).collect();
    for expected in ["configuration", "policy", "credentials", "region", "image", "security group", "key pair", "vswitches (linux)", "instance types (linux)", "RunInstances (DryRun)", "jenkins", "ssh key"] {
        assert!(items.contains(&expected), "missing check item {expected}: {items:?}");
    }
    let failed: Vec<_> = results.iter().filter(|r| !r.ok).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(cluster.ecs.instances().len(), 0, "the dry run launched nothing");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path()).await;
    let path = dir.path().join("config.toml");
    let text = cluster
        .config_text("check", TEMPLATE, "")
        .unwrap()
        .replace("key-pair-name = \"ecs-provisioner-demo\"", "key-pair-name = \"no-such-pair\"");
    std::fs::write(&path, &text).unwrap();
    // A wrong AccessKey secret: the signature check tells it apart from other failures.
    std::fs::write(&cluster.secret_file, "not-the-secret").unwrap();

    let results = app::check::run(&path).await;
    let credentials = results.iter().find(|r| r.item == "credentials").unwrap();
    assert!(!credentials.ok);
    assert_eq!(credentials.hint.as_deref(), Some("the AccessKey secret is wrong"), "{credentials:?}");

    // With the right secret again, the bad key pair name fails its own item and the dry run.
    std::fs::write(&cluster.secret_file, cluster.ecs.credentials().access_key_secret.expose()).unwrap();
    let results = app::check::run(&path).await;
    let failed: Vec<_> = results.iter().filter(|r| !r.ok).collect();
    assert_eq!(failed.iter().map(|r| r.item.as_str()).collect::<Vec<_>>(), ["key pair", "RunInstances (DryRun)"], "{results:#?}");
    assert!(failed[1].detail.contains("InvalidKeyPairName.NotFound"), "{:?}", failed[1]);

    // A broken config file fails the first item with the key and line.
    std::fs::write(&path, text.replace("max-nodes = 4", "max-nodes = 4\nmax-node = 5")).unwrap();
    let results = app::check::run(&path).await;
    assert!(!results[0].ok && results[0].detail.contains("max-node"), "{:?}", results[0]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_decides_without_acting() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path()).await;
    let config = Arc::new(cluster.config("plan", TEMPLATE, "").unwrap());
    let (engine, _) = app::wire(config).unwrap();

    // The first observation creates the template's anchor node so Jenkins names the label.
    engine.cycle(false).await;
    cluster
        .jenkins
        .enqueue(EnqueueRequest { job: Some("j".into()), kind: JobKind::Freestyle, label: Some("linux".into()), duration_ms: 1000, count: Some(5) })
        .unwrap();
    let report = engine.cycle(false).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.queued.get("linux"), Some(&5));
    // 5 builds on 2-executor nodes: 3 nodes.
    assert_eq!(report.enforced.launches.len(), 1, "{report:#?}");
    assert_eq!(report.enforced.launches[0].count, 3);
    let text = app::render_plan(&report);
    assert!(text.contains("Would launch 3 x linux"), "{text}");
    assert_eq!(cluster.ecs.calls("RunInstances"), 0, "plan never launches");
    assert!(cluster.ecs.instances().is_empty());
    cluster.shutdown().await;
}
