//! The instance RAM role provider against the emulated metadata service and the ECS emulator.

use std::time::Duration;

use ecsp_ecs::credentials::{Credentials, CredentialsProvider, EcsRamRoleProvider};
use ecsp_ecs::{EcsClient, ErrorKind};
use ecsp_sim::ecs::{Account, EcsSim, SimConfig};
use ecsp_sim::metadata::MetadataService;

#[tokio::test]
async fn discovers_role_uses_token_and_caches() {
    let md = MetadataService::start("builder-role", Duration::from_secs(3600)).await.unwrap();
    let p = EcsRamRoleProvider::new(&md.base_url, None);
    let a = p.credentials().await.unwrap();
    let b = p.credentials().await.unwrap();
    assert_eq!(a.access_key_id, "STS.id-1");
    assert_eq!(b.access_key_id, "STS.id-1", "cached while far from expiry");
    assert_eq!(a.security_token.as_ref().unwrap().expose(), "role-token-1");
    assert_eq!(md.fetch_count(), 1);
}

#[tokio::test]
async fn refreshes_before_expiry() {
    // Expires in 100 s: inside the 180 s refresh window, so every call refetches.
    let md = MetadataService::start("r", Duration::from_secs(100)).await.unwrap();
    let p = EcsRamRoleProvider::new(&md.base_url, Some("r".into()));
    assert_eq!(p.credentials().await.unwrap().access_key_id, "STS.id-1");
    assert_eq!(p.credentials().await.unwrap().access_key_id, "STS.id-2");
}

/// Metadata -> RAM role provider -> signed client -> emulator that insists on the STS token.
#[tokio::test]
async fn role_credentials_work_against_the_emulator() {
    let md = MetadataService::start("builder-role", Duration::from_secs(3600)).await.unwrap();
    let mut config = SimConfig::instant();
    config.accounts = vec![Account {
        security_token: Some("role-token-1".into()),
        denied_actions: vec!["DeleteInstances".into()],
        ..Account::new("STS.id-1", "role-secret-1")
    }];
    let sim = EcsSim::start(config).await.unwrap();
    let provider = std::sync::Arc::new(EcsRamRoleProvider::new(&md.base_url, None));
    let client = EcsClient::new(sim.client_config(), provider).unwrap();
    client.describe_regions().await.unwrap();
    let e = client.delete_instances(&["i-x".into()], true).await.unwrap_err();
    assert_eq!((e.kind.clone(), e.code.as_str()), (ErrorKind::Permission, "Forbidden.RAM"));
    assert!(e.to_string().contains("ecs:DeleteInstances"), "{e}");

    // The same keys without the token are refused with the STS error.
    let bare = Credentials::access_key("STS.id-1", "role-secret-1");
    let e = EcsClient::with_credentials(sim.client_config(), bare)
        .unwrap()
        .describe_regions()
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Credentials);
    assert!(e.code.starts_with("InvalidSecurityToken"), "{e}");
}

/// The aliyun CLI's `EcsRamRole` profile reads the role's credentials from metadata.
#[tokio::test]
async fn cli_ecs_ram_role_profile_uses_metadata() {
    use ecsp_ecs::credentials::CliConfigProvider;
    let md = MetadataService::start("rolename", Duration::from_secs(3600)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let config = r#"{"current": "role", "profiles": [
        { "name": "role", "mode": "EcsRamRole", "ram_role_name": "rolename" }]}"#;
    std::fs::write(&path, config).unwrap();
    let p = CliConfigProvider::new(path, None, md.base_url.clone());
    let c = p.credentials().await.unwrap();
    assert_eq!(c.access_key_id, "STS.id-1");
    assert!(c.security_token.is_some());
}
