//! The credentials chain's role sources (issue 19) end to end: AssumeRole (CLI `RamRoleArn`,
//! `ChainableRamRoleArn`, INI `ram_role_arn`), AssumeRoleWithOIDC (environment, CLI `OIDC`, INI
//! `oidc_role_arn`) and the credentials URI, each against the STS and ECS emulators; expiry,
//! refresh and faults; the official Python library's pick on the same files and environment.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ecs_provisioner::ecs::credentials::{
    ChainOptions, Credentials, CredentialsProvider, DefaultChain, EnvLookup, StsClient, sts,
};
use ecs_provisioner::ecs::{EcsClient, ErrorKind};
use ecs_provisioner::sim::cluster::{Cluster, ClusterOptions};
use ecs_provisioner::sim::ecs::{EcsSim, SimConfig};
use ecs_provisioner::sim::sts::{RoleSpec, StsConfig, StsFaults, StsSim};

/// The ECS emulator and its STS; `lifetime` shortens every issued session.
async fn emulators(lifetime: Option<u64>) -> (EcsSim, StsSim) {
    let ecs = EcsSim::start(SimConfig::instant()).await.unwrap();
    let mut config = StsConfig {
        session_lifetime_secs: lifetime,
        ..StsConfig::default()
    };
    config.roles.push(RoleSpec {
        name: "restricted".into(),
        denied_actions: vec!["DeleteInstances".into()],
        external_id: Some("ext-42".into()),
        ..RoleSpec::new("restricted")
    });
    config.roles.push(RoleSpec {
        name: "chained".into(),
        trusted_keys: vec![],
        trusted_roles: vec!["ecs-provisioner".into()],
        ..RoleSpec::new("chained")
    });
    let sts = StsSim::start(config, &ecs).await.unwrap();
    (ecs, sts)
}

/// A chain over `home` and `env` only (metadata disabled), with STS at the emulator.
fn chain(home: &Path, env: &[(&str, &str)], sts: &StsSim) -> DefaultChain {
    let mut pairs = env.to_vec();
    pairs.push(("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"));
    DefaultChain::new(
        None,
        ChainOptions {
            env: EnvLookup::from_pairs(&pairs),
            home: Some(home.into()),
            profile: None,
            metadata_base_url: "http://127.0.0.1:9".into(),
            sts_endpoint: Some(sts.base_url()),
        },
    )
}

fn client(ecs: &EcsSim, provider: impl CredentialsProvider) -> EcsClient {
    EcsClient::new(ecs.client_config(), Arc::new(provider)).unwrap()
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    path.to_owned()
}

fn cli_config(home: &Path, current: &str, profiles: serde_json::Value) {
    let text = serde_json::json!({ "current": current, "profiles": profiles }).to_string();
    write(&home.join(".aliyun/config.json"), &text);
}

fn ak_profile(ecs: &EcsSim) -> serde_json::Value {
    let c = ecs.credentials();
    serde_json::json!({ "name": "base", "mode": "AK", "access_key_id": c.access_key_id, "access_key_secret": c.access_key_secret.expose() })
}

/// CLI `RamRoleArn`: AssumeRole signed with the profile's AccessKey; ECS accepts the session
/// and applies the role's permissions; the external id is sent; the session is the role's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_ram_role_arn_assumes_the_role_and_ecs_applies_its_permissions() {
    let (ecs, sts) = emulators(None).await;
    let home = tempfile::tempdir().unwrap();
    let c = ecs.credentials();
    cli_config(
        home.path(),
        "role",
        serde_json::json!([{
            "name": "role", "mode": "RamRoleArn", "access_key_id": c.access_key_id, "access_key_secret": c.access_key_secret.expose(),
            "ram_role_arn": sts.role_arn("restricted"), "ram_session_name": "ci-builder", "external_id": "ext-42", "expired_seconds": 900,
        }]),
    );
    let chain = chain(home.path(), &[], &sts);
    let creds = chain.credentials().await.unwrap();
    assert_eq!(creds.provider, "ram_role_arn/static_ak");
    assert!(creds.access_key_id.starts_with("STS."), "{creds:?}");
    assert!(
        creds.source.contains("profile `role`") && creds.source.contains("restricted"),
        "{}",
        creds.source
    );
    let client = client(&ecs, chain);
    client.describe_regions().await.unwrap();
    let e = client
        .delete_instances(&["i-x".into()], true)
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_str()),
        (ErrorKind::Permission, "Forbidden.RAM")
    );
    let id = StsClient::new(sts.base_url())
        .get_caller_identity(&creds)
        .await
        .unwrap();
    assert_eq!(id.identity_type, "AssumedRoleUser");
    assert!(
        id.arn.ends_with(":assumed-role/restricted/ci-builder"),
        "{id:?}"
    );
    assert_eq!(
        sts.successes("AssumeRole"),
        1,
        "cached, not assumed per call"
    );

    // Without the external id the role refuses: the error names the profile and STS's code.
    cli_config(
        home.path(),
        "role",
        serde_json::json!([{
            "name": "role", "mode": "RamRoleArn", "access_key_id": c.access_key_id, "access_key_secret": c.access_key_secret.expose(),
            "ram_role_arn": sts.role_arn("restricted"),
        }]),
    );
    let e = chain_err(home.path(), &[], &sts).await;
    assert!(
        e.contains("profile `role`") && e.contains("NoPermission"),
        "{e}"
    );
}

async fn chain_err(home: &Path, env: &[(&str, &str)], sts: &StsSim) -> String {
    chain(home, env, sts)
        .credentials()
        .await
        .unwrap_err()
        .to_string()
}

/// `ChainableRamRoleArn`: a role assumed with another profile's assumed role (role chaining).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_chainable_ram_role_arn_assumes_a_role_with_an_assumed_role() {
    let (ecs, sts) = emulators(None).await;
    let home = tempfile::tempdir().unwrap();
    cli_config(
        home.path(),
        "second",
        serde_json::json!([
            ak_profile(&ecs),
            { "name": "first", "mode": "ChainableRamRoleArn", "source_profile": "base", "ram_role_arn": sts.role_arn("ecs-provisioner") },
            { "name": "second", "mode": "ChainableRamRoleArn", "source_profile": "first", "ram_role_arn": sts.role_arn("chained"), "ram_session_name": "hop2" },
        ]),
    );
    let chain = chain(home.path(), &[], &sts);
    let creds = chain.credentials().await.unwrap();
    let id = StsClient::new(sts.base_url())
        .get_caller_identity(&creds)
        .await
        .unwrap();
    assert!(id.arn.ends_with(":assumed-role/chained/hop2"), "{id:?}");
    assert_eq!(sts.successes("AssumeRole"), 2);
    client(&ecs, chain).describe_regions().await.unwrap();

    // The chained role trusts only sessions of `ecs-provisioner`: straight from the key, no.
    cli_config(
        home.path(),
        "direct",
        serde_json::json!([
            ak_profile(&ecs),
            { "name": "direct", "mode": "ChainableRamRoleArn", "source_profile": "base", "ram_role_arn": sts.role_arn("chained") },
        ]),
    );
    let e = chain_err(home.path(), &[], &sts).await;
    assert!(e.contains("NoPermission"), "{e}");
}

/// Environment OIDC (RRSA): the token file is read again at every refresh (it rotates), the
/// sessions keep working across several expiries, and ECS accepts each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_oidc_rereads_the_rotated_token_at_every_refresh() {
    let (ecs, sts) = emulators(Some(3)).await;
    let home = tempfile::tempdir().unwrap();
    // The first token expires before the first session does: a refresh that reused it fails.
    let token_file = write(&home.path().join("token"), &sts.oidc_token("ack-rrsa", 4));
    let role = sts.role_arn("ecs-provisioner");
    let provider_arn = sts.oidc_provider_arn("ack-rrsa");
    let env = [
        ("ALIBABA_CLOUD_ROLE_ARN", role.as_str()),
        ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", provider_arn.as_str()),
        (
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
            token_file.to_str().unwrap(),
        ),
        ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "rrsa-test"),
    ];
    let chain = Arc::new(chain(home.path(), &env, &sts));
    let client = EcsClient::new(ecs.client_config(), chain.clone()).unwrap();
    let mut keys = std::collections::BTreeSet::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        // Rotate the token as the kubelet does.
        write(&token_file, &sts.oidc_token("ack-rrsa", 4));
        client.describe_regions().await.unwrap();
        let c = chain.credentials().await.unwrap();
        assert_eq!(c.provider, "oidc_role_arn");
        keys.insert(c.access_key_id);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        keys.len() >= 3,
        "expected a new session every ~2 s, saw {keys:?}"
    );
    assert_eq!(sts.successes("AssumeRoleWithOIDC"), keys.len());
    assert!(
        sts.requests().iter().all(|r| r.code.is_empty()),
        "{:?}",
        sts.requests()
    );
}

/// An assumed-role credential that is not refreshed is refused by ECS once it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrefreshed_assumed_role_credential_is_refused_after_expiry() {
    let (ecs, sts) = emulators(Some(2)).await;
    let session = sts::RoleSession {
        role_arn: sts::RoleArn::parse(&sts.role_arn("ecs-provisioner"), "test").unwrap(),
        session_name: "expiry".into(),
        policy: None,
        duration_secs: 900,
    };
    let creds = StsClient::new(sts.base_url())
        .assume_role(&ecs.credentials(), &session, None)
        .await
        .unwrap();
    let fixed = EcsClient::with_credentials(ecs.client_config(), creds.clone()).unwrap();
    fixed.describe_regions().await.unwrap();
    let wait = creds.expiration.unwrap() - time::OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_millis(
        wait.whole_milliseconds().max(0) as u64 + 200,
    ))
    .await;
    let e = fixed.describe_regions().await.unwrap_err();
    assert_eq!(e.code, "InvalidSecurityToken.Expired", "{e}");
    assert_eq!(e.kind, ErrorKind::Credentials, "{e}");
}

/// The credentials URI: the official response format from a sidecar, refreshed before expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_uri_is_read_and_refreshed_before_expiry() {
    let (ecs, sts) = emulators(Some(3)).await;
    let sidecar = e2e::credentials::UriSidecar::start(&ecs, &sts).await;
    let home = tempfile::tempdir().unwrap();
    let uri = format!("{}/credentials?secret=query-secret-9", sidecar.base_url);
    let chain = Arc::new(chain(
        home.path(),
        &[("ALIBABA_CLOUD_CREDENTIALS_URI", uri.as_str())],
        &sts,
    ));
    let client = EcsClient::new(ecs.client_config(), chain.clone()).unwrap();
    let mut keys = std::collections::BTreeSet::new();
    for _ in 0..12 {
        client.describe_regions().await.unwrap();
        let c = chain.credentials().await.unwrap();
        assert_eq!(c.provider, "credential_uri");
        assert!(
            !c.source.contains("query-secret-9"),
            "the query is not shown: {}",
            c.source
        );
        keys.insert(c.access_key_id);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        keys.len() >= 2,
        "refreshed at least once in 6 s of 3 s credentials: {keys:?}"
    );
    assert_eq!(sidecar.served(), keys.len());

    // A sidecar answering garbage: the error names the variable and the URL, not the body.
    let bad = format!("{}/broken", sidecar.base_url);
    let e = chain_err(
        home.path(),
        &[("ALIBABA_CLOUD_CREDENTIALS_URI", bad.as_str())],
        &sts,
    )
    .await;
    assert!(
        e.contains("ALIBABA_CLOUD_CREDENTIALS_URI") && e.contains("/broken"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
    let e = chain_err(
        home.path(),
        &[("ALIBABA_CLOUD_CREDENTIALS_URI", "ftp://x")],
        &sts,
    )
    .await;
    assert!(
        e.contains("ALIBABA_CLOUD_CREDENTIALS_URI") && e.contains("not an http"),
        "{e}"
    );
}

/// STS faults: throttling is retried, and once cached credentials exist a failing refresh
/// keeps them; NoPermission and an expired OIDC token are errors naming the source and code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_faults_throttling_no_permission_and_expired_oidc_tokens() {
    let (ecs, sts) = emulators(Some(15)).await;
    let home = tempfile::tempdir().unwrap();
    cli_config(
        home.path(),
        "role",
        serde_json::json!([
            ak_profile(&ecs),
            { "name": "role", "mode": "ChainableRamRoleArn", "source_profile": "base", "ram_role_arn": sts.role_arn("ecs-provisioner") },
        ]),
    );
    // Two throttled answers: the client's retries get through.
    sts.set_faults(StsFaults {
        throttle_next: 2,
        ..Default::default()
    })
    .unwrap();
    let chain = Arc::new(chain(home.path(), &[], &sts));
    let first = chain.credentials().await.unwrap();
    assert_eq!(
        sts.requests()
            .iter()
            .filter(|r| r.code == "Throttling")
            .count(),
        2
    );
    // Always throttled once due for refresh (the last third of a 14-15 s life, whole seconds
    // on the wire): the still valid credentials are kept, and ECS takes them. Timed from the
    // expiry itself, 4 s before it, so that a slow start on a loaded machine cannot push the
    // throttled refresh (retries included, at most 1.4 s) past the expiry.
    sts.set_faults(StsFaults {
        throttle_probability: 1.0,
        ..Default::default()
    })
    .unwrap();
    let due = first.expiration.unwrap() - time::OffsetDateTime::now_utc() - time::Duration::seconds(4);
    tokio::time::sleep(Duration::from_millis(due.whole_milliseconds().max(0) as u64)).await;
    let kept = chain.credentials().await.unwrap();
    assert_eq!(kept.access_key_id, first.access_key_id);
    assert!(
        sts.requests()
            .iter()
            .filter(|r| r.code == "Throttling")
            .count()
            > 2
    );
    EcsClient::new(ecs.client_config(), chain.clone())
        .unwrap()
        .describe_regions()
        .await
        .unwrap();
    // Once they expire, the throttling is the error.
    let left = first.expiration.unwrap() - time::OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_millis(
        left.whole_milliseconds().max(0) as u64 + 200,
    ))
    .await;
    let e = chain.credentials().await.unwrap_err().to_string();
    assert!(
        e.contains("Throttling") && e.contains("profile `role`"),
        "{e}"
    );

    sts.set_faults(StsFaults {
        no_permission_roles: vec!["ecs-provisioner".into()],
        ..Default::default()
    })
    .unwrap();
    let e = chain_err(home.path(), &[], &sts).await;
    assert!(
        e.contains("NoPermission") && e.contains("AssumeRole"),
        "{e}"
    );

    std::fs::remove_file(home.path().join(".aliyun/config.json")).unwrap();
    let token_file = write(&home.path().join("token"), &sts.oidc_token("ack-rrsa", -60));
    let role = sts.role_arn("ecs-provisioner");
    let provider_arn = sts.oidc_provider_arn("ack-rrsa");
    let env = [
        ("ALIBABA_CLOUD_ROLE_ARN", role.as_str()),
        ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", provider_arn.as_str()),
        (
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
            token_file.to_str().unwrap(),
        ),
    ];
    sts.set_faults(StsFaults::default()).unwrap();
    let e = chain_err(home.path(), &env, &sts).await;
    assert!(
        e.contains("AuthenticationFail.OIDCToken.Expired") && e.contains("environment OIDC"),
        "{e}"
    );
    // The fault flag expires even a fresh token.
    write(&token_file, &sts.oidc_token("ack-rrsa", 600));
    sts.set_faults(StsFaults {
        oidc_token_expired: true,
        ..Default::default()
    })
    .unwrap();
    let e = chain_err(home.path(), &env, &sts).await;
    assert!(e.contains("AuthenticationFail.OIDCToken.Expired"), "{e}");
}

/// Bad sources name the variable or file that is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sources_are_named() {
    let (_ecs, sts) = emulators(None).await;
    let home = tempfile::tempdir().unwrap();
    let role = sts.role_arn("ecs-provisioner");
    let provider_arn = sts.oidc_provider_arn("ack-rrsa");
    let missing = home.path().join("no-such-token");
    let e = chain_err(
        home.path(),
        &[
            ("ALIBABA_CLOUD_ROLE_ARN", role.as_str()),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", provider_arn.as_str()),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", missing.to_str().unwrap()),
        ],
        &sts,
    )
    .await;
    assert!(
        e.contains("ALIBABA_CLOUD_OIDC_TOKEN_FILE") && e.contains("no-such-token"),
        "{e}"
    );
    let token = write(&home.path().join("token"), &sts.oidc_token("ack-rrsa", 600));
    let e = chain_err(
        home.path(),
        &[
            ("ALIBABA_CLOUD_ROLE_ARN", "ecs-provisioner"),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", provider_arn.as_str()),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token.to_str().unwrap()),
        ],
        &sts,
    )
    .await;
    assert!(
        e.contains("ALIBABA_CLOUD_ROLE_ARN") && e.contains("not a RAM role ARN"),
        "{e}"
    );
    let e = chain_err(
        home.path(),
        &[("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token.to_str().unwrap())],
        &sts,
    )
    .await;
    assert!(
        e.contains("ALIBABA_CLOUD_ROLE_ARN and ALIBABA_CLOUD_OIDC_PROVIDER_ARN not set"),
        "{e}"
    );
    // A role unknown to STS: its code, with the file and section that name it.
    let c = _ecs.credentials();
    let ini = format!(
        "[default]\ntype = ram_role_arn\naccess_key_id = {}\naccess_key_secret = {}\nrole_arn = acs:ram::1234567890123456:role/nope\n",
        c.access_key_id,
        c.access_key_secret.expose()
    );
    write(&home.path().join(".alibabacloud/credentials"), &ini);
    let e = chain_err(home.path(), &[], &sts).await;
    assert!(
        e.contains("credentials file")
            && e.contains("[default]")
            && e.contains("EntityNotExist.Role"),
        "{e}"
    );
    assert!(!e.contains(c.access_key_secret.expose()), "{e}");
}

/// INI `oidc_role_arn` and `ram_role_arn` sections drive the emulators too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_file_role_types() {
    let (ecs, sts) = emulators(None).await;
    let home = tempfile::tempdir().unwrap();
    let token = write(&home.path().join("token"), &sts.oidc_token("ack-rrsa", 600));
    let c = ecs.credentials();
    let ini = format!(
        "[ram]\ntype = ram_role_arn\naccess_key_id = {}\naccess_key_secret = {}\nrole_arn = {}\nrole_session_name = ini-ram\n\n\
         [oidc]\ntype = oidc_role_arn\nrole_arn = {}\noidc_provider_arn = {}\noidc_token_file_path = {}\nrole_session_name = ini-oidc\n",
        c.access_key_id,
        c.access_key_secret.expose(),
        sts.role_arn("ecs-provisioner"),
        sts.role_arn("ecs-provisioner"),
        sts.oidc_provider_arn("ack-rrsa"),
        token.display()
    );
    write(&home.path().join(".alibabacloud/credentials"), &ini);
    for (profile, provider, session) in [
        ("ram", "ram_role_arn/static_ak", "ini-ram"),
        ("oidc", "oidc_role_arn", "ini-oidc"),
    ] {
        let chain = chain(home.path(), &[("ALIBABA_CLOUD_PROFILE", profile)], &sts);
        let creds = chain.credentials().await.unwrap();
        assert_eq!(creds.provider, provider);
        let id = StsClient::new(sts.base_url())
            .get_caller_identity(&creds)
            .await
            .unwrap();
        assert!(id.arn.ends_with(&format!("/{session}")), "{id:?}");
        client(&ecs, chain).describe_regions().await.unwrap();
    }
}

/// What a chain pick looks like in the official library's terms (`cli_profile/ram_role_arn`).
fn official_name(c: &Credentials) -> String {
    let s = &c.source;
    if s.starts_with("environment OIDC") {
        "oidc_role_arn".into()
    } else if s.starts_with("environment") {
        "env".into()
    } else if s.starts_with("aliyun CLI config") {
        format!("cli_profile/{}", c.provider)
    } else if s.starts_with("credentials file") {
        format!("profile/{}", c.provider)
    } else if s.starts_with("credentials URI") {
        "credential_uri".into()
    } else {
        format!("unknown: {s}")
    }
}

/// The precedence table: for each setup (files in a fresh HOME, variables), our chain and the
/// official Python library (`alibabacloud-credentials`) pick the same source, and the same key
/// where the source is a fixed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_precedence_matches_the_official_python_library() {
    let (ecs, sts) = emulators(None).await;
    let sidecar = e2e::credentials::UriSidecar::start(&ecs, &sts).await;
    let uri = format!("{}/credentials", sidecar.base_url);
    let c = ecs.credentials();
    let (akid, secret) = (
        c.access_key_id.clone(),
        c.access_key_secret.expose().to_string(),
    );
    let role = sts.role_arn("ecs-provisioner");
    let provider_arn = sts.oidc_provider_arn("ack-rrsa");

    struct Case {
        name: &'static str,
        env: Vec<(&'static str, String)>,
        cli: Option<serde_json::Value>,
        ini: Option<String>,
        want: &'static str,
    }
    let cli_ak = serde_json::json!({ "current": "ak", "profiles": [{ "name": "ak", "mode": "AK", "access_key_id": "CLI-AK", "access_key_secret": "x" }] });
    let cli_all = serde_json::json!({ "current": "ram", "profiles": [
        { "name": "base", "mode": "AK", "access_key_id": akid, "access_key_secret": secret },
        { "name": "sts", "mode": "StsToken", "access_key_id": "CLI-STS", "access_key_secret": "x", "sts_token": "t" },
        { "name": "ram", "mode": "RamRoleArn", "access_key_id": akid, "access_key_secret": secret, "ram_role_arn": role },
        { "name": "chain", "mode": "ChainableRamRoleArn", "source_profile": "base", "ram_role_arn": role },
        { "name": "oidc", "mode": "OIDC", "ram_role_arn": role, "oidc_provider_arn": provider_arn, "oidc_token_file": "TOKEN" },
    ]});
    let ini_ak =
        "[default]\ntype = access_key\naccess_key_id = INI-AK\naccess_key_secret = y\n".to_string();
    let ini_roles = format!(
        "[default]\ntype = ram_role_arn\naccess_key_id = {akid}\naccess_key_secret = {secret}\nrole_arn = {role}\n\n\
         [oidc]\ntype = oidc_role_arn\nrole_arn = {role}\noidc_provider_arn = {provider_arn}\noidc_token_file_path = TOKEN\n"
    );
    let env_ak = || {
        vec![
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ENV-AK".to_string()),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "z".to_string()),
        ]
    };
    let env_oidc = || {
        vec![
            ("ALIBABA_CLOUD_ROLE_ARN", role.clone()),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", provider_arn.clone()),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "TOKEN".to_string()),
        ]
    };
    let with = |mut a: Vec<(&'static str, String)>, b: Vec<(&'static str, String)>| {
        a.extend(b);
        a
    };
    let cases = vec![
        Case {
            name: "environment AccessKey alone",
            env: env_ak(),
            cli: None,
            ini: None,
            want: "env",
        },
        Case {
            name: "environment beats OIDC, CLI and file",
            env: with(env_ak(), env_oidc()),
            cli: Some(cli_ak.clone()),
            ini: Some(ini_ak.clone()),
            want: "env",
        },
        Case {
            name: "OIDC beats CLI and file",
            env: env_oidc(),
            cli: Some(cli_ak.clone()),
            ini: Some(ini_ak.clone()),
            want: "oidc_role_arn",
        },
        Case {
            name: "CLI AK beats the file",
            env: vec![],
            cli: Some(cli_ak.clone()),
            ini: Some(ini_ak.clone()),
            want: "cli_profile/static_ak",
        },
        Case {
            name: "CLI RamRoleArn (current)",
            env: vec![],
            cli: Some(cli_all.clone()),
            ini: Some(ini_ak.clone()),
            want: "cli_profile/ram_role_arn/static_ak",
        },
        Case {
            name: "CLI StsToken by ALIBABA_CLOUD_PROFILE",
            env: vec![("ALIBABA_CLOUD_PROFILE", "sts".into())],
            cli: Some(cli_all.clone()),
            ini: None,
            want: "cli_profile/static_sts",
        },
        Case {
            name: "CLI ChainableRamRoleArn",
            env: vec![("ALIBABA_CLOUD_PROFILE", "chain".into())],
            cli: Some(cli_all.clone()),
            ini: None,
            want: "cli_profile/ram_role_arn/static_ak",
        },
        Case {
            name: "CLI OIDC",
            env: vec![("ALIBABA_CLOUD_PROFILE", "oidc".into())],
            cli: Some(cli_all.clone()),
            ini: None,
            want: "cli_profile/oidc_role_arn",
        },
        Case {
            name: "CLI disabled: the file",
            env: vec![("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "true".into())],
            cli: Some(cli_ak.clone()),
            ini: Some(ini_roles.clone()),
            want: "profile/ram_role_arn/static_ak",
        },
        Case {
            name: "file oidc_role_arn",
            env: vec![("ALIBABA_CLOUD_PROFILE", "oidc".into())],
            cli: None,
            ini: Some(ini_roles.clone()),
            want: "profile/oidc_role_arn",
        },
        Case {
            name: "file AK beats the URI",
            env: vec![("ALIBABA_CLOUD_CREDENTIALS_URI", uri.clone())],
            cli: None,
            ini: Some(ini_ak.clone()),
            want: "profile/static_ak",
        },
        Case {
            name: "the URI last",
            env: vec![("ALIBABA_CLOUD_CREDENTIALS_URI", uri.clone())],
            cli: None,
            ini: None,
            want: "credential_uri",
        },
    ];

    let python = e2e::python_with(&["alibabacloud_credentials"]);
    let sts_addr = sts.base_url().trim_start_matches("http://").to_string();
    let mut table = Vec::new();
    for case in &cases {
        let home = tempfile::tempdir().unwrap();
        let token = write(
            &home.path().join("token"),
            &sts.oidc_token("ack-rrsa", 3600),
        );
        let token = token.to_str().unwrap();
        if let Some(cli) = &case.cli {
            write(
                &home.path().join(".aliyun/config.json"),
                &cli.to_string().replace("TOKEN", token),
            );
        }
        if let Some(ini) = &case.ini {
            // `credentials.ini`: the Python library's default name, which we read too.
            write(
                &home.path().join(".alibabacloud/credentials.ini"),
                &ini.replace("TOKEN", token),
            );
        }
        let mut env: Vec<(&str, String)> = case
            .env
            .iter()
            .map(|(k, v)| (*k, v.replace("TOKEN", token)))
            .collect();
        env.push(("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".into()));
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let ours = chain(home.path(), &pairs, &sts)
            .credentials()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let out = {
            let mut cmd = std::process::Command::new(&python);
            cmd.arg(
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/credentials_chain_pick.py"),
            )
            .env_clear()
            .env("HOME", home.path())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ECSP_STS_EMULATOR", &sts_addr);
            for (k, v) in &env {
                cmd.env(k, v);
            }
            tokio::task::spawn_blocking(move || cmd.output())
                .await
                .unwrap()
                .unwrap()
        };
        assert!(
            out.status.success(),
            "{}: {}",
            case.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let their_name = theirs["provider"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: python failed: {theirs}", case.name));
        let their_name = their_name.trim_start_matches("default/").to_string();
        let our_name = official_name(&ours);
        table.push(format!(
            "{:<40} ours {:<28} python {}",
            case.name, our_name, their_name
        ));
        assert_eq!(
            our_name, their_name,
            "{}: ours picked {} ({})",
            case.name, our_name, ours.source
        );
        assert_eq!(our_name, case.want, "{}", case.name);
        if ours.provider.starts_with("static") || ours.provider == "env" {
            assert_eq!(
                theirs["access_key_id"].as_str(),
                Some(ours.access_key_id.as_str()),
                "{}",
                case.name
            );
        } else {
            assert!(
                theirs["access_key_id"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("STS.")),
                "{}: {theirs}",
                case.name
            );
        }
    }
    eprintln!("{}", table.join("\n"));
}

/// The cluster's configuration with the credentials left to the default chain.
fn chain_config(cluster: &Cluster, dir: &Path) -> PathBuf {
    let text = cluster.config_text("creds", DAEMON_TEMPLATE, "").unwrap();
    let static_block = format!(
        "source = \"static\"\naccess-key-id = \"{}\"\nsecret-file = \"{}\"",
        cluster.ecs.credentials().access_key_id,
        cluster.secret_file.display()
    );
    assert!(text.contains(&static_block), "{text}");
    write(
        &dir.join("config.toml"),
        &text.replace(&static_block, "source = \"chain\""),
    )
}

const DAEMON_TEMPLATE: &str = r#"
[[template]]
name = "linux"
labels = ["linux"]
executors = 1
max-nodes = 1
instance-types = ["ecs.c7.large"]
remote-fs = "agent"
"#;

/// The provisioner binary with only `env` (and a fresh HOME) in its environment.
fn provisioner(args: &[&str], home: &Path, env: &[(&str, String)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_e2e-provisioner"));
    cmd.args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The daemon on RRSA-style OIDC credentials that live 3 s: it keeps running across several
/// expiries, every ECS call it makes is accepted, and it re-reads the rotating token.
/// `check` names the source and the assumed identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_across_several_credential_expiries() {
    let dir = tempfile::tempdir().unwrap();
    let options = ClusterOptions {
        sts: StsConfig {
            session_lifetime_secs: Some(3),
            ..StsConfig::default()
        },
        ..ClusterOptions::ephemeral(dir.path())
    };
    let cluster = Cluster::start(options).await.unwrap();
    let config = chain_config(&cluster, dir.path());
    let home = dir.path().join("home");
    let token_file = write(
        &dir.path().join("oidc-token"),
        &cluster.sts.oidc_token("ack-rrsa", 600),
    );
    let env = vec![
        (
            "ALIBABA_CLOUD_ROLE_ARN",
            cluster.sts.role_arn("ecs-provisioner"),
        ),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            cluster.sts.oidc_provider_arn("ack-rrsa"),
        ),
        (
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "daemon".to_string()),
    ];
    std::fs::create_dir_all(&home).unwrap();

    let out = provisioner(
        &["check", "--config", config.to_str().unwrap()],
        &home,
        &env,
    )
    .output()
    .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    let line = printed
        .lines()
        .find(|l| l.contains("credentials source"))
        .unwrap_or_else(|| panic!("{printed}"));
    assert!(
        line.starts_with("PASS")
            && line.contains("environment OIDC")
            && line.contains("[oidc_role_arn]"),
        "{printed}"
    );
    assert!(
        line.contains(
            "assumed identity acs:ram::1234567890123456:assumed-role/ecs-provisioner/daemon"
        ),
        "{printed}"
    );

    // The daemon's own requests come after check's (whose dry run answers DryRunOperation).
    let after_check = cluster.ecs.request_log().last().map(|r| r.seq).unwrap_or(0);
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut daemon = provisioner(&["run", "--config", config.to_str().unwrap()], &home, &env)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        // The platform rotates the token: each refresh must bring the current one.
        write(&token_file, &cluster.sts.oidc_token("ack-rrsa", 5));
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "the daemon exited:\n{}",
            std::fs::read_to_string(dir.path().join("daemon.log")).unwrap()
        );
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let requests: Vec<_> = cluster
        .ecs
        .request_log()
        .into_iter()
        .filter(|r| r.seq > after_check)
        .collect();
    let sessions: std::collections::BTreeSet<_> = requests
        .iter()
        .filter(|r| r.access_key_id.starts_with("STS."))
        .map(|r| r.access_key_id.clone())
        .collect();
    let failed: Vec<_> = requests.iter().filter(|r| r.status != 200).collect();
    assert!(failed.is_empty(), "ECS refused calls: {failed:#?}");
    assert!(
        sessions.len() >= 4,
        "expected a new session every ~2 s over 12 s, got {sessions:?}"
    );
    assert!(
        requests.len() >= 10,
        "the daemon hardly called ECS: {}",
        requests.len()
    );
    cluster.shutdown().await;
}
