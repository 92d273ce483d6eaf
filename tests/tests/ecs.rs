//! ECS client and emulator, end to end: the official Python SDK against the emulator, our
//! signer against the SDK's, and our client against the emulator for every action.
use std::collections::BTreeMap;
use std::time::Duration;

use e2e::ecs::run_python_async;
use ecs_provisioner::ecs::credentials::Credentials;
use ecs_provisioner::ecs::signer::{self, Params};
use ecs_provisioner::ecs::{
    AvailableResourceRequest, EcsClient, ErrorKind, HttpMethod, ImageFilter, InstanceFilter,
    InstanceStatus, PriceRequest, RetryPolicy, RunInstancesRequest, SecurityGroupFilter,
    SpotStrategy, Tag, VSwitchFilter,
};
use ecs_provisioner::sim::InstanceDirectory as _;
use ecs_provisioner::sim::ecs::{EcsSim, Faults, NoStockRule, SimConfig, ThrottleRule, Timings};
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

const IMAGE: &str = "ubuntu_22_04_x64_20G_alibase_20240130.vhd";
const SG: &str = "sg-bp1sim0000000000001";
const ZONE_H: &str = "cn-hangzhou-h";
const VSW_H: &str = "vsw-bp1simh000000000000";
const VSW_J: &str = "vsw-bp1simj000000000000";

fn client(sim: &EcsSim) -> EcsClient {
    EcsClient::with_credentials(sim.client_config(), sim.credentials()).unwrap()
}

fn launch(instance_type: &str, vswitch: &str, amount: u32) -> RunInstancesRequest {
    let mut r = RunInstancesRequest::new(IMAGE, instance_type, SG, vswitch);
    r.amount = amount;
    r
}

fn code(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("<no error>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_drives_the_emulator() {
    let sim = EcsSim::start(SimConfig::instant()).await.unwrap();
    let creds = sim.credentials();
    let input = json!({
        "host": "127.0.0.1", "port": sim.addr().port(), "region": "cn-hangzhou",
        "access_key_id": creds.access_key_id, "access_key_secret": creds.access_key_secret.expose(),
        "image_id": IMAGE, "instance_type": "ecs.g7.large", "security_group_id": SG,
        "vswitch_id": VSW_H, "zone_id": ZONE_H,
    });
    let out = run_python_async("ecs_sdk_drive.py", input).await;

    let run_a = &out["run_a"]["ok"]["InstanceIdSets"]["InstanceIdSet"];
    assert_eq!(run_a.as_array().map(Vec::len), Some(3), "{}", out["run_a"]);
    assert_eq!(
        out["run_a_replay"]["ok"]["InstanceIdSets"]["InstanceIdSet"], *run_a,
        "ClientToken replays"
    );
    assert_eq!(
        out["run_b"]["ok"]["InstanceIdSets"]["InstanceIdSet"]
            .as_array()
            .map(Vec::len),
        Some(25)
    );

    let b = &out["describe_b_post"];
    assert_eq!(
        (b["total"].as_u64(), b["pages"].as_u64()),
        (Some(25), Some(3)),
        "{b}"
    );
    let mut b_ids: Vec<&str> = b["ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    b_ids.sort();
    b_ids.dedup();
    assert_eq!(b_ids.len(), 25, "paging returns each instance once");
    let first = &b["first"];
    assert_eq!(first["Status"], "Running");
    assert!(
        first["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0]
            .as_str()
            .unwrap()
            .starts_with("127.")
    );
    assert!(
        first["Tags"]["Tag"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["TagKey"] == "owner" && t["TagValue"] == "sdk test")
    );

    assert_eq!(
        out["describe_a_get"]["ids"].as_array().map(Vec::len),
        Some(3),
        "{}",
        out["describe_a_get"]
    );
    assert_eq!(
        out["describe_ids_common_get"]["ok"]["TotalCount"], 2,
        "{}",
        out["describe_ids_common_get"]
    );

    let zones = out["available"]["ok"]["AvailableZones"]["AvailableZone"]
        .as_array()
        .unwrap();
    assert_eq!(zones.len(), 3);
    let types = &zones[0]["AvailableResources"]["AvailableResource"][0]["SupportedResources"]["SupportedResource"];
    assert!(
        types
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["Value"] == "ecs.g7.large" && t["Status"] == "Available")
    );

    assert!(
        out["delete_a"]["ok"]["RequestId"].is_string(),
        "{}",
        out["delete_a"]
    );
    assert_eq!(out["describe_a_after_delete"]["total"], 0);

    // The SDK turns SignatureDoesNotMatch into InvalidAccessKeySecret only when the emulator's
    // string-to-sign equals its own: proof the emulator canonicalises exactly like the SDK.
    assert_eq!(
        code(&out["wrong_secret"]),
        "InvalidAccessKeySecret",
        "{}",
        out["wrong_secret"]
    );
    assert_eq!(out["wrong_secret"]["status"], 400);
    assert_eq!(code(&out["unknown_key"]), "InvalidAccessKeyId.NotFound");
    assert!(
        out["nonce_first"]["ok"].is_object(),
        "{}",
        out["nonce_first"]
    );
    assert_eq!(code(&out["nonce_reused"]), "SignatureNonceUsed");
    assert_eq!(code(&out["stale_timestamp"]), "InvalidTimeStamp.Expired");
    assert_eq!(code(&out["no_stock"]), "OperationDenied.NoStock");
    assert_eq!(out["no_stock"]["status"], 403);
    assert_eq!(code(&out["throttled"]), "Throttling");
    assert_eq!(out["throttled"]["status"], 400);
    assert!(
        out["not_throttled_other_action"]["ok"].is_object(),
        "{}",
        out["not_throttled_other_action"]
    );
    assert!(
        out["after_faults_cleared"]["ok"].is_object(),
        "{}",
        out["after_faults_cleared"]
    );

    // The emulator saw both methods.
    let log = sim.request_log();
    assert!(
        log.iter()
            .any(|e| e.method == "GET" && e.action == "DescribeInstances" && e.status == 200)
    );
    assert!(
        log.iter()
            .any(|e| e.method == "POST" && e.action == "DeleteInstances" && e.status == 200)
    );
    assert!(
        sim.counters()["DescribeRegions"]
            .errors_by_code
            .contains_key("Throttling")
    );
}

/// A deterministic random parameter set with the characters that trip encoders up.
fn random_case(rng: &mut rand::rngs::StdRng) -> (String, String, Params) {
    const PIECES: &[&str] = &[
        "a", "Z", "0", "9", " ", "*", "~", "+", "/", "=", "&", "%", "-", "_", ".", "!", "'", "(",
        ")", ":", "?", "#", "[", "]", "\"", "中文", "é", "😀", "%7E", "%20", "\n",
    ];
    let value = |rng: &mut rand::rngs::StdRng| -> String {
        if rng.random_bool(0.15) {
            return String::new();
        }
        (0..rng.random_range(1..12))
            .map(|_| PIECES[rng.random_range(0..PIECES.len())])
            .collect()
    };
    let mut params = Params::new();
    params.insert("Action".into(), "RunInstances".into());
    params.insert("Version".into(), "2014-05-26".into());
    params.insert("SignatureType".into(), String::new());
    for i in 1..=rng.random_range(0..6) {
        params.insert(format!("Tag.{i}.Key"), value(rng));
        params.insert(format!("Tag.{i}.Value"), value(rng));
    }
    for _ in 0..rng.random_range(0..8) {
        let name: String = (0..rng.random_range(1..10))
            .map(|_| {
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._"
                    [rng.random_range(0..64)] as char
            })
            .collect();
        params.insert(name, value(rng));
    }
    let method = if rng.random_bool(0.5) { "GET" } else { "POST" };
    let secret = value(rng);
    let ctx = signer::SigningContext {
        method,
        nonce: &value(rng),
        timestamp: "2026-11-23T12:00:00Z",
    };
    let token = rng.random_bool(0.3).then(|| value(rng));
    signer::sign(&mut params, &ctx, &value(rng), &secret, token.as_deref());
    (method.to_string(), secret, params)
}

#[tokio::test]
async fn signer_matches_official_sdk_on_1000_random_parameter_sets() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261123);
    let cases: Vec<(String, String, Params)> = (0..1000).map(|_| random_case(&mut rng)).collect();
    let input: Vec<Value> = cases
        .iter()
        .map(|(method, secret, params)| {
            let unsigned: BTreeMap<&String, &String> =
                params.iter().filter(|(k, _)| *k != "Signature").collect();
            json!({ "method": method, "secret": secret, "params": unsigned })
        })
        .collect();
    let out = run_python_async("ecs_sign_check.py", Value::Array(input)).await;
    let out = out.as_array().expect("a list");
    assert_eq!(out.len(), cases.len());
    for (i, ((method, _, params), theirs)) in cases.iter().zip(out).enumerate() {
        assert_eq!(
            theirs["string_to_sign"],
            signer::string_to_sign(method, params),
            "case {i}: {params:?}"
        );
        assert_eq!(
            theirs["signature"],
            params["Signature"].as_str(),
            "case {i}: {params:?}"
        );
    }
}

#[tokio::test]
async fn client_runs_every_action_against_the_emulator() {
    for method in [HttpMethod::Post, HttpMethod::Get] {
        let sim = EcsSim::start(SimConfig::instant()).await.unwrap();
        let mut config = sim.client_config();
        config.method = method;
        let c = EcsClient::with_credentials(config, sim.credentials()).unwrap();

        let regions = c.describe_regions().await.unwrap();
        assert_eq!(regions[0].region_id, "cn-hangzhou");
        let zones = c.describe_zones(SpotStrategy::NoSpot).await.unwrap();
        assert_eq!(zones.len(), 3);
        assert!(
            zones[0]
                .available_instance_types
                .0
                .contains(&"ecs.g7.large".to_string())
        );
        let avail = c
            .describe_available_resource(&AvailableResourceRequest::instance_types())
            .await
            .unwrap();
        assert_eq!(avail.len(), 3);
        assert!(
            avail[0].available_resources.0[0]
                .supported_resources
                .0
                .iter()
                .all(|r| r.in_stock())
        );
        let types = c
            .describe_instance_types(&["ecs.g7.large".into(), "ecs.c7.large".into()])
            .await
            .unwrap();
        assert_eq!(types.len(), 2);
        assert!(types.iter().any(|t| t.instance_type_id == "ecs.g7.large"
            && t.cpu_core_count == 2
            && t.memory_size == 8.0));
        let vsw = c
            .describe_vswitches(&VSwitchFilter::default())
            .await
            .unwrap();
        assert_eq!(vsw.len(), 6);
        assert!(vsw.iter().all(|v| v.available_ip_address_count == 4092));
        let sgs = c
            .describe_security_groups(&SecurityGroupFilter::default())
            .await
            .unwrap();
        assert_eq!(sgs[0].security_group_id, SG);
        let images = c.describe_images(&ImageFilter::default()).await.unwrap();
        assert!(images.iter().any(|i| i.image_id == IMAGE));
        let price = c
            .describe_price(&PriceRequest {
                instance_type: "ecs.g7.large".into(),
                zone_id: None,
                spot_strategy: SpotStrategy::NoSpot,
                system_disk_category: None,
            })
            .await
            .unwrap();
        assert_eq!((price.trade_price, price.currency.as_str()), (0.58, "CNY"));
        let spot = c
            .describe_price(&PriceRequest {
                instance_type: "ecs.g7.large".into(),
                zone_id: None,
                spot_strategy: SpotStrategy::SpotAsPriceGo,
                system_disk_category: None,
            })
            .await
            .unwrap();
        assert!(spot.trade_price < price.trade_price);

        let public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f test@ci";
        c.import_key_pair("ci-key", public_key).await.unwrap();
        let keys = c.describe_key_pairs(Some("ci-*")).await.unwrap();
        assert_eq!(keys[0].public_key.as_deref(), Some(public_key));

        // 150 instances: DescribeInstances must page (100 per request), never per instance.
        let mut big = launch("ecs.c7.large", VSW_H, 100);
        big.tags = vec![
            Tag::new("ecsp:controller", "c1"),
            Tag::new("ecsp:template", "linux"),
        ];
        big.key_pair_name = Some("ci-key".into());
        big.client_token = Some("launch-1".into());
        let first = c.run_instances(&big).await.unwrap();
        assert_eq!(first.instance_ids.0.len(), 100);
        let mut more = big.clone();
        more.amount = 50;
        more.client_token = Some("launch-2".into());
        more.spot_strategy = SpotStrategy::SpotAsPriceGo;
        more.host_name = Some("agent-${instance_id}".into());
        c.run_instances(&more).await.unwrap();
        let mut other = launch("ecs.g7.large", VSW_J, 2);
        other.tags = vec![Tag::new("ecsp:controller", "someone-else")];
        c.run_instances(&other).await.unwrap();

        let before = sim.calls("DescribeInstances");
        let mine = c
            .describe_instances(&InstanceFilter {
                tags: vec![Tag::new("ecsp:controller", "c1")],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(mine.len(), 150);
        assert_eq!(
            sim.calls("DescribeInstances") - before,
            2,
            "150 instances = 2 pages of 100"
        );
        assert!(
            mine.iter()
                .all(|i| i.status == InstanceStatus::Running && i.private_ip().is_some())
        );
        assert_eq!(mine.iter().filter(|i| i.is_spot()).count(), 50);
        assert!(
            mine.iter()
                .any(|i| i.host_name == format!("agent-{}", i.instance_id))
        );
        let mut ips: Vec<_> = mine.iter().filter_map(|i| i.private_ip()).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 150, "one loopback address per instance");
        let by_ids = c
            .describe_instances(&InstanceFilter {
                instance_ids: mine.iter().map(|i| i.instance_id.clone()).collect(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_ids.len(), 150, "id lists go 100 per request");

        let console = c
            .get_instance_console_output(&mine[0].instance_id)
            .await
            .unwrap();
        assert!(
            console.text.contains("-----BEGIN SSH HOST KEY KEYS-----"),
            "{}",
            console.text
        );
        let ip = mine[0].private_ip().unwrap().parse().unwrap();
        let emulated = sim
            .cloud()
            .instance_by_ip(ip)
            .expect("directory knows the instance");
        assert_eq!(emulated.authorized_key, public_key);
        assert!(emulated.running);
        let host_public = ecs_provisioner_host_public(&emulated.host_key_pem);
        let shown = console.host_keys();
        assert_eq!(shown.len(), 1, "{}", console.text);
        assert_eq!(
            shown[0].split_whitespace().nth(1),
            host_public.split_whitespace().nth(1),
            "console shows the host key"
        );

        let ids: Vec<String> = mine.iter().map(|i| i.instance_id.clone()).collect();
        c.delete_instances(&ids, true).await.unwrap();
        assert_eq!(sim.calls("DeleteInstances"), 2, "150 ids = 2 requests");
        let left = c
            .describe_instances(&InstanceFilter::default())
            .await
            .unwrap();
        assert_eq!(left.len(), 2);

        let stats = c.stats();
        let run = stats.iter().find(|s| s.action == "RunInstances").unwrap();
        assert_eq!((run.calls, run.requests, run.errors), (3, 3, 0));
    }
}

/// The public half of an OpenSSH private key.
fn ecs_provisioner_host_public(pem: &str) -> String {
    ecs_provisioner::sim::ecs::state::public_key_of(pem).expect("host key parses")
}

#[tokio::test]
async fn client_retries_throttling_and_server_errors() {
    let sim = EcsSim::start(SimConfig::instant()).await.unwrap();
    let c = client(&sim);
    // Rate limit: 2 per second for DescribeRegions; 6 calls in a burst must all succeed.
    sim.set_faults(Faults {
        throttle: vec![ThrottleRule {
            action: Some("DescribeRegions".into()),
            max_per_second: Some(2),
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
    let mut config = sim.client_config();
    config.retry = RetryPolicy {
        max_retries: 8,
        min_delay_ms: 100,
        max_delay_ms: 1000,
        ..RetryPolicy::default()
    };
    let patient = EcsClient::with_credentials(config, sim.credentials()).unwrap();
    for _ in 0..6 {
        patient.describe_regions().await.unwrap();
    }
    let s = patient
        .stats()
        .into_iter()
        .find(|s| s.action == "DescribeRegions")
        .unwrap();
    assert!(s.retries > 0 && s.throttled > 0, "{s:?}");
    assert_eq!((s.calls, s.errors), (6, 0));

    // Always throttled: bounded attempts, then a typed error naming action and RequestId.
    sim.set_faults(Faults {
        throttle: vec![ThrottleRule {
            probability: 1.0,
            retry_after_ms: Some(20),
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
    let e = c.describe_zones(SpotStrategy::NoSpot).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Throttling);
    assert_eq!(e.attempts, 6, "1 try + 5 retries");
    assert_eq!(e.retry_after, Some(Duration::from_millis(20)));
    assert!(
        e.request_id.is_some() && e.to_string().contains("DescribeZones"),
        "{e}"
    );

    // 5xx half of the time: retried until it works.
    sim.set_faults(Faults {
        server_error_probability: 0.5,
        ..Default::default()
    })
    .unwrap();
    let mut config = sim.client_config();
    config.retry = RetryPolicy {
        max_retries: 20,
        min_delay_ms: 1,
        max_delay_ms: 5,
        ..RetryPolicy::default()
    };
    let c = EcsClient::with_credentials(config, sim.credentials()).unwrap();
    for _ in 0..20 {
        c.describe_images(&ImageFilter::default()).await.unwrap();
    }
    let s = c
        .stats()
        .into_iter()
        .find(|s| s.action == "DescribeImages")
        .unwrap();
    assert!(s.retries > 0, "{s:?}");
    let seen = sim.counters()["DescribeImages"].clone();
    assert!(
        seen.errors_by_code
            .keys()
            .all(|k| k == "ServiceUnavailable" || k == "InternalError"),
        "{seen:?}"
    );
    assert_eq!(
        seen.calls, s.requests,
        "client and emulator agree on request counts"
    );
}

#[tokio::test]
async fn capacity_errors_are_typed_and_not_retried() {
    let mut config = SimConfig::instant();
    config
        .vswitches
        .iter_mut()
        .find(|v| v.vswitch_id == VSW_J)
        .unwrap()
        .usable_ips = Some(3);
    config.max_instances = Some(40);
    let sim = EcsSim::start(config).await.unwrap();
    let c = client(&sim);

    sim.add_no_stock(NoStockRule {
        zone_id: Some(ZONE_H.into()),
        instance_type: Some("ecs.g7.large".into()),
        spot_only: true,
    });
    let mut spot = launch("ecs.g7.large", VSW_H, 1);
    spot.spot_strategy = SpotStrategy::SpotAsPriceGo;
    let e = c.run_instances(&spot).await.unwrap_err();
    assert_eq!(e.code, "OperationDenied.NoStock");
    let d = e.capacity().expect("capacity error");
    assert_eq!(
        (d.instance_type.as_deref(), d.vswitch_id.as_deref(), d.spot),
        (Some("ecs.g7.large"), Some(VSW_H), true)
    );
    assert_eq!(e.attempts, 1, "capacity errors are not retried");
    c.run_instances(&launch("ecs.g7.large", VSW_H, 1))
        .await
        .expect("on-demand still in stock");

    let e = c
        .run_instances(&launch("ecs.r7.large", VSW_J, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code, "InvalidInstanceType.ZoneNotSupported");
    assert!(e.capacity().is_some());

    sim.set_faults(Faults {
        zones_not_on_sale: vec!["cn-hangzhou-j".into()],
        ..sim.faults()
    })
    .unwrap();
    let e = c
        .run_instances(&launch("ecs.c7.large", VSW_J, 1))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.http_status),
        ("Zone.NotOnSale", Some(403))
    );
    let zones = c
        .describe_available_resource(&AvailableResourceRequest::instance_types())
        .await
        .unwrap();
    assert_eq!(
        zones
            .iter()
            .find(|z| z.zone_id == "cn-hangzhou-j")
            .unwrap()
            .status,
        "SoldOut"
    );
    assert!(e.capacity().is_some());
    sim.set_faults(Faults {
        zones_not_on_sale: vec![],
        ..sim.faults()
    })
    .unwrap();

    let e = c
        .run_instances(&launch("ecs.c7.large", VSW_J, 5))
        .await
        .unwrap_err();
    assert_eq!(e.code, "InvalidVSwitchId.IpNotEnough");
    let mut partial = launch("ecs.c7.large", VSW_J, 5);
    partial.min_amount = Some(2);
    assert_eq!(
        c.run_instances(&partial)
            .await
            .unwrap()
            .instance_ids
            .0
            .len(),
        3,
        "MinAmount takes what fits"
    );

    sim.cloud().set_stock(ZONE_H, "ecs.c7.xlarge", 0);
    let e = c
        .run_instances(&launch("ecs.c7.xlarge", VSW_H, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code, "OperationDenied.NoStock");
    let avail = c
        .describe_available_resource(&AvailableResourceRequest {
            zone_id: Some(ZONE_H.into()),
            ..AvailableResourceRequest::instance_types()
        })
        .await
        .unwrap();
    let sold_out = avail[0].available_resources.0[0]
        .supported_resources
        .0
        .iter()
        .find(|r| r.value == "ecs.c7.xlarge")
        .unwrap();
    assert_eq!(sold_out.status, "SoldOut");

    let e = c
        .run_instances(&launch("ecs.c7.large", VSW_H, 100))
        .await
        .unwrap_err();
    assert_eq!(e.code, "QuotaExceed.ElasticQuota");
    assert!(e.capacity().is_some());

    let mut dry = launch("ecs.c7.large", VSW_H, 1);
    dry.dry_run = true;
    assert_eq!(
        c.run_instances(&dry).await.unwrap_err().kind,
        ErrorKind::DryRunPassed
    );

    let mut token = launch("ecs.c7.large", VSW_H, 1);
    token.client_token = Some("t-1".into());
    let a = c.run_instances(&token).await.unwrap();
    let b = c.run_instances(&token).await.unwrap();
    assert_eq!(a.instance_ids, b.instance_ids);
    token.amount = 2;
    assert_eq!(
        c.run_instances(&token).await.unwrap_err().kind,
        ErrorKind::IdempotencyMismatch
    );

    let e = c
        .get_instance_console_output("i-doesnotexist")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);

    // A spot reclaim behind our back: the instance vanishes from DescribeInstances.
    let reclaimed = b.instance_ids.0[0].clone();
    assert!(sim.cloud().release_instance(&reclaimed));
    let f = InstanceFilter {
        instance_ids: vec![reclaimed],
        ..Default::default()
    };
    assert!(c.describe_instances(&f).await.unwrap().is_empty());

    // Releasing a mix of live and already-gone instances releases the live ones.
    let live = c
        .run_instances(&launch("ecs.c7.large", VSW_H, 1))
        .await
        .unwrap()
        .instance_ids
        .0[0]
        .clone();
    c.delete_instances(&[live.clone(), "i-alreadygone".into()], true)
        .await
        .unwrap();
    assert!(sim.instances().iter().all(|i| i.instance_id != live));
}

#[tokio::test]
async fn credential_errors_are_fatal_with_a_fix_it_message() {
    let sim = EcsSim::start(SimConfig::instant()).await.unwrap();
    let right = sim.credentials();
    let wrong = Credentials::access_key(right.access_key_id.clone(), "definitely-wrong-secret");
    let c = EcsClient::with_credentials(sim.client_config(), wrong).unwrap();
    let e = c.describe_regions().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Signature { secret_wrong: true });
    assert_eq!(e.attempts, 1);
    let msg = e.to_string();
    assert!(
        msg.contains("AccessKeySecret is wrong") && msg.contains("RequestId"),
        "{msg}"
    );
    assert!(!msg.contains("definitely-wrong-secret"), "{msg}");

    let unknown = EcsClient::with_credentials(
        sim.client_config(),
        Credentials::access_key("LTAInobody", "x"),
    )
    .unwrap();
    let e = unknown.describe_regions().await.unwrap_err();
    assert_eq!(
        (e.kind.clone(), e.code.as_str()),
        (ErrorKind::Credentials, "InvalidAccessKeyId.NotFound")
    );
    assert!(e.to_string().contains("does not exist"), "{e}");

    // STS tokens are signed like any parameter and accepted.
    let sts =
        EcsClient::with_credentials(sim.client_config(), right.with_security_token("sts-token"))
            .unwrap();
    sts.describe_regions().await.unwrap();
}

#[tokio::test]
async fn status_follows_the_configured_timings() {
    let step = Duration::from_millis(800);
    let config = SimConfig {
        timings: Timings {
            pending_ms: 800,
            starting_ms: 800,
            stopping_ms: 800,
        },
        ..SimConfig::default()
    };
    let sim = EcsSim::start(config).await.unwrap();
    let c = client(&sim);
    let id = c
        .run_instances(&launch("ecs.c7.large", VSW_H, 1))
        .await
        .unwrap()
        .instance_ids
        .0[0]
        .clone();
    let ids = std::slice::from_ref(&id);
    let status = || async {
        let f = InstanceFilter {
            instance_ids: vec![id.clone()],
            ..Default::default()
        };
        c.describe_instances(&f)
            .await
            .unwrap()
            .first()
            .map(|i| i.status.clone())
    };
    let wait = || tokio::time::sleep(step + Duration::from_millis(50));
    assert_eq!(status().await, Some(InstanceStatus::Pending));
    wait().await;
    assert_eq!(status().await, Some(InstanceStatus::Starting));
    assert_eq!(
        c.delete_instances(ids, false).await.unwrap_err().code,
        "IncorrectInstanceStatus",
        "not stopped, not forced"
    );
    wait().await;
    assert_eq!(status().await, Some(InstanceStatus::Running));
    c.stop_instances(ids, true, None).await.unwrap();
    assert_eq!(status().await, Some(InstanceStatus::Stopping));
    wait().await;
    assert_eq!(status().await, Some(InstanceStatus::Stopped));
    assert!(
        !sim.cloud()
            .instance_by_ip(sim.instances()[0].ip)
            .unwrap()
            .running,
        "sshd is down when stopped"
    );
    c.start_instances(ids).await.unwrap();
    assert_eq!(status().await, Some(InstanceStatus::Starting));
    wait().await;
    assert_eq!(status().await, Some(InstanceStatus::Running));
    c.delete_instances(ids, true).await.unwrap();
    assert_eq!(status().await, Some(InstanceStatus::Stopping));
    wait().await;
    assert_eq!(status().await, None);
}

#[tokio::test]
async fn emulated_cloud_survives_a_restart_with_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        state_file: Some(dir.path().join("ecs-state.json")),
        ..SimConfig::instant()
    };
    let sim = EcsSim::start(config.clone()).await.unwrap();
    let mut req = launch("ecs.c7.large", VSW_H, 3);
    req.client_token = Some("persist-1".into());
    let ids = client(&sim).run_instances(&req).await.unwrap().instance_ids;
    let before = sim.instances();
    sim.shutdown().await;

    let sim = EcsSim::start(config).await.unwrap();
    assert_eq!(sim.instances(), before);
    let c = client(&sim);
    assert_eq!(
        c.run_instances(&req).await.unwrap().instance_ids,
        ids,
        "tokens survive too"
    );
    let fresh = c
        .run_instances(&launch("ecs.c7.large", VSW_H, 1))
        .await
        .unwrap()
        .instance_ids
        .0;
    let new_ip = sim
        .instances()
        .into_iter()
        .find(|i| i.instance_id == fresh[0])
        .unwrap()
        .ip;
    assert!(
        before.iter().all(|i| i.ip != new_ip),
        "addresses are not reused"
    );
}

/// The scale the engine works at: 1,000 instances launched in 10 calls and listed in 10 pages,
/// against the zero-delay emulator; prints the timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_instances_take_ten_launches_and_ten_pages() {
    let sim = EcsSim::start(SimConfig::instant()).await.unwrap();
    let c = client(&sim);
    let started = std::time::Instant::now();
    for batch in 0..10 {
        let mut r = launch("ecs.c7.large", [VSW_H, VSW_J][batch % 2], 100);
        r.tags = vec![Tag::new("ecsp:controller", "scale")];
        r.client_token = Some(format!("scale-{batch}"));
        assert_eq!(c.run_instances(&r).await.unwrap().instance_ids.0.len(), 100);
    }
    let launched = started.elapsed();
    let started = std::time::Instant::now();
    let all = c
        .describe_instances(&InstanceFilter {
            tags: vec![Tag::new("ecsp:controller", "scale")],
            ..Default::default()
        })
        .await
        .unwrap();
    let listed = started.elapsed();
    assert_eq!(all.len(), 1000);
    assert_eq!(
        (sim.calls("RunInstances"), sim.calls("DescribeInstances")),
        (10, 10)
    );
    let ids: Vec<String> = all.iter().map(|i| i.instance_id.clone()).collect();
    let started = std::time::Instant::now();
    c.delete_instances(&ids, true).await.unwrap();
    let deleted = started.elapsed();
    assert_eq!(sim.calls("DeleteInstances"), 10);
    assert!(sim.instances().is_empty());
    println!(
        "1000 instances: launch {launched:?} (10 calls), list {listed:?} (10 pages), delete {deleted:?} (10 calls)"
    );
}

/// The newer official SDK generation (alibabacloud-tea-openapi): V3 signatures by default, V2
/// with a lowercase `Format=json` on request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tea_openapi_sdk_v3_and_v2_drive_the_emulator() {
    let sim = EcsSim::start(SimConfig::instant()).await.unwrap();
    let creds = sim.credentials();
    let input = json!({
        "port": sim.addr().port(), "region": "cn-hangzhou",
        "access_key_id": creds.access_key_id, "access_key_secret": creds.access_key_secret.expose(),
        "image_id": IMAGE, "instance_type": "ecs.g7.large", "security_group_id": SG, "vswitch_id": VSW_H,
    });
    let out = run_python_async("ecs_tea_drive.py", input).await;
    let ids = &out["v3_run"]["ok"]["InstanceIdSets"]["InstanceIdSet"];
    assert_eq!(ids.as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(out["v3_describe"]["ok"]["TotalCount"], 2, "{out}");
    let tag = &out["v3_describe"]["ok"]["Instances"]["Instance"][0]["Tags"]["Tag"][0];
    assert_eq!(tag["TagValue"], "tea v3 * ~ +/=&");
    assert_eq!(
        code(&out["v3_wrong_secret"]),
        "SignatureDoesNotMatch",
        "{out}"
    );
    assert!(
        out["v2_regions"]["ok"]["Regions"]["Region"].is_array(),
        "{out}"
    );
    assert_eq!(
        code(&out["v2_wrong_secret"]),
        "SignatureDoesNotMatch",
        "{out}"
    );
    let log = sim.request_log();
    assert!(log.iter().any(|e| e.action == "RunInstances"
        && e.status == 200
        && e.access_key_id == creds.access_key_id));
    let by_method = |m: &str| log.iter().filter(|e| e.signature_method == m).count();
    assert_eq!(
        (by_method("ACS3-HMAC-SHA256"), by_method("HMAC-SHA1")),
        (3, 2),
        "V3 and V2 both used"
    );
}

/// The provisioner's RunInstances for a full launch profile carries exactly the parameters the
/// official SDK's request model (aliyun-python-sdk-ecs) sends for the same settings; and every
/// parameter name that model can send is one the emulator knows (it refuses unknown names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_profile_parameters_match_the_official_request_model() {
    use ecs_provisioner::ecs::{DataDisk, SystemDisk};
    let sim = EcsSim::start(SimConfig::instant()).await.unwrap();
    let creds = sim.credentials();
    let key = ecs_provisioner::ssh::keys::generate_ed25519("fidelity");
    client(&sim)
        .import_key_pair("ci", &ecs_provisioner::ssh::keys::public_key_line(&key))
        .await
        .unwrap();
    let release = (time::OffsetDateTime::now_utc() + time::Duration::hours(12))
        .replace_nanosecond(0)
        .unwrap()
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap();
    const SG2: &str = "sg-bp1sim0000000000002";
    let input = json!({
        "host": "127.0.0.1", "port": sim.addr().port(), "region": "cn-hangzhou",
        "access_key_id": creds.access_key_id, "access_key_secret": creds.access_key_secret.expose(),
        "image_id": IMAGE, "instance_type": "ecs.g7.large", "vswitch_id": VSW_H, "zone_id": ZONE_H,
        "security_group_ids": [SG, SG2], "key_pair_name": "ci", "release_time": release,
    });
    let out = run_python_async("ecs_launch_params.py", input).await;
    assert_eq!(code(&out["dry_run"]), "DryRunOperation", "{out}");

    let mut ours = RunInstancesRequest::new(IMAGE, "ecs.g7.large", SG, VSW_H);
    ours.extra_security_group_ids = vec![SG2.into()];
    ours.zone_id = Some(ZONE_H.into());
    ours.key_pair_name = Some("ci".into());
    ours.client_token = Some("fidelity".into());
    ours.instance_name = Some("gpu-l1".into());
    ours.host_name = Some("ci-gpu-${instance_id}".into());
    ours.system_disk = Some(SystemDisk {
        category: Some("cloud_essd".into()),
        size_gib: Some(60),
        performance_level: Some("PL0".into()),
    });
    ours.data_disks = vec![
        DataDisk {
            category: "cloud_essd".into(),
            size_gib: 100,
            performance_level: Some("PL1".into()),
            delete_with_instance: true,
        },
        DataDisk {
            category: "cloud_efficiency".into(),
            size_gib: 200,
            performance_level: None,
            delete_with_instance: false,
        },
    ];
    ours.user_data = Some("#!/bin/sh\necho hi\n".into());
    ours.ram_role_name = Some("ci-gpu".into());
    ours.resource_group_id = Some("rg-ci".into());
    ours.internet_max_bandwidth_out = Some(5);
    ours.http_tokens = Some("required".into());
    ours.auto_release_time = Some(release.clone());
    ours.dry_run = true;
    let err = client(&sim).run_instances(&ours).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::DryRunPassed), "{err}");

    let log = sim.run_instances_log();
    assert_eq!(log.len(), 2, "{log:#?}");
    let strip = |p: &BTreeMap<String, String>| {
        let mut p = p.clone();
        // The SDK sends no token; ours always does (idempotency).
        p.remove("ClientToken");
        p
    };
    let (sdk, mine) = (strip(&log[0].params), strip(&log[1].params));
    // The SDK sends booleans as Python prints them ("True"); compare values case-blind there.
    let norm = |p: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        p.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") {
                        v.to_lowercase()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    };
    assert_eq!(
        norm(&mine),
        norm(&sdk),
        "parameter names or formats differ from the official request model"
    );

    // Every name the model can send passes the emulator's name check: a dry run carrying them
    // all fails (if at all) on a value, never with "not valid" naming a parameter.
    let names: Vec<String> = out["model_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    assert!(
        names.len() > 80 && names.contains(&"DataDisk.1.PerformanceLevel".to_string()),
        "{names:?}"
    );
    let mut all = Params::new();
    for n in &names {
        all.insert(n.clone(), "1".into());
    }
    let err = client(&sim)
        .call::<Value>(ecs_provisioner::ecs::Api::Ecs, "RunInstances", all)
        .await
        .unwrap_err()
        .to_string();
    // The name check's refusal reads `parameter "X" is not valid.`; value checks add the value.
    assert!(
        !err.contains("\" is not valid."),
        "the emulator refused a name of the official model: {err}"
    );
    assert_eq!(sim.run_instances_log().len(), 3);
}

/// RunInstances refuses what real ECS refuses before launching anything: an image whose
/// architecture the instance type cannot boot (`403 ImageNotSupportInstanceType`) and a disk
/// category the zone does not sell (`403 CategoryNotSupported`), named or defaulted; the same
/// request with fitting values launches.
#[tokio::test]
async fn image_architecture_and_zone_disk_categories_are_enforced() {
    const ARM_IMAGE: &str = "aliyun_3_arm64_20G_alibase_20240528.vhd";
    let mut config = SimConfig::instant();
    let mut arm = config.instance_types[0].clone();
    arm.instance_type = "ecs.g8y.large".into();
    arm.family = "ecs.g8y".into();
    arm.cpu_architecture = "ARM".into();
    config.instance_types.push(arm);
    // Zone h sells no cloud_auto and no basic (cloud) disks.
    for z in config.zones.iter_mut().filter(|z| z.zone_id == ZONE_H) {
        z.disk_categories.retain(|c| c != "cloud_auto" && c != "cloud");
    }
    let sim = EcsSim::start(config).await.unwrap();
    let c = client(&sim);

    let mut arm_on_x86 = launch("ecs.c7.large", VSW_H, 1);
    arm_on_x86.image_id = ARM_IMAGE.into();
    let e = c.run_instances(&arm_on_x86).await.unwrap_err();
    assert_eq!((e.http_status, e.code.as_str()), (Some(403), "ImageNotSupportInstanceType"), "{e}");
    let mut x86_on_arm = launch("ecs.g8y.large", VSW_H, 1);
    x86_on_arm.client_token = Some("x86-on-arm".into());
    let e = c.run_instances(&x86_on_arm).await.unwrap_err();
    assert_eq!(e.code, "ImageNotSupportInstanceType", "{e}");

    let mut data = launch("ecs.c7.large", VSW_H, 1);
    data.data_disks = vec![ecs_provisioner::ecs::DataDisk {
        category: "cloud_auto".into(),
        size_gib: 40,
        performance_level: None,
        delete_with_instance: true,
    }];
    let e = c.run_instances(&data).await.unwrap_err();
    assert_eq!((e.http_status, e.code.as_str()), (Some(403), "CategoryNotSupported"), "{e}");
    assert!(e.message.contains("cloud_auto"), "{e}");
    let mut system = launch("ecs.c7.large", VSW_H, 1);
    system.system_disk = Some(ecs_provisioner::ecs::SystemDisk {
        category: Some("cloud".into()),
        size_gib: Some(40),
        performance_level: None,
    });
    let e = c.run_instances(&system).await.unwrap_err();
    assert_eq!(e.code, "CategoryNotSupported", "{e}");
    // A DryRun is refused the same way (it validates everything first).
    data.dry_run = true;
    data.client_token = Some("dry".into());
    assert_eq!(c.run_instances(&data).await.unwrap_err().code, "CategoryNotSupported");
    assert!(sim.instances().is_empty(), "a refused request launched something");

    // Fitting values launch: the ARM image on the ARM type, cloud_auto where it is sold.
    let mut fits = launch("ecs.g8y.large", VSW_H, 1);
    fits.image_id = ARM_IMAGE.into();
    c.run_instances(&fits).await.expect("arm64 image on an ARM type");
    data.dry_run = false;
    data.client_token = Some("zone-j".into());
    data.vswitch_id = VSW_J.into();
    c.run_instances(&data).await.expect("zone j sells cloud_auto");
    assert_eq!(sim.instances().len(), 2);
}

/// The read side lags behind RunInstances (`listing_lag_ms`) for a lookup by id as for a
/// tag-filtered listing: the engine's lookups between listings cannot see a launch sooner
/// than its listings would, so its caps keep counting the launch from its own book.
#[tokio::test]
async fn a_fresh_launch_is_missing_from_lookups_by_id_and_listings_alike() {
    let sim = EcsSim::start(SimConfig::instant()).await.unwrap();
    sim.set_faults(Faults { listing_lag_ms: 600, ..Faults::default() }).unwrap();
    let c = client(&sim);
    let mut r = launch("ecs.c7.large", VSW_H, 1);
    r.tags = vec![Tag::new("ecsp:controller", "lag")];
    let id = c.run_instances(&r).await.unwrap().instance_ids.0[0].clone();
    let by_id = InstanceFilter { instance_ids: vec![id.clone()], ..Default::default() };
    let by_tag = InstanceFilter { tags: vec![Tag::new("ecsp:controller", "lag")], ..Default::default() };
    let seen = |f: InstanceFilter| {
        let c = &c;
        async move { c.describe_instances(&f).await.unwrap().into_iter().map(|i| i.instance_id).collect::<Vec<_>>() }
    };
    assert_eq!(seen(by_id.clone()).await, Vec::<String>::new(), "by id, right after the launch");
    assert_eq!(seen(by_tag.clone()).await, Vec::<String>::new(), "by tag, right after the launch");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(seen(by_id).await, std::slice::from_ref(&id), "by id, once the lag has passed");
    assert_eq!(seen(by_tag).await, [id], "by tag, once the lag has passed");
}
