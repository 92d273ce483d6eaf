//! No secret of the role sources — the OIDC token, the base AccessKey secret, the issued
//! session secrets and tokens, a credentials URI's query — in any log line (TRACE, all
//! crates), error message or `Debug` output, on success, refresh and every failure path.
mod common;

use common::Capture;
use ecsp_ecs::credentials::sts::{RoleArn, RoleSession};
use ecsp_ecs::credentials::{CredentialsProvider, CredentialsUriProvider, OidcRoleProvider, Secret, StsClient};
use ecsp_sim::ecs::{EcsSim, SimConfig};
use ecsp_sim::sts::{StsConfig, StsFaults, StsSim};

#[tokio::test]
async fn role_sources_leak_no_secret_into_logs_errors_or_debug() {
    let (capture, _guard) = Capture::trace();

    let ecs = EcsSim::start(SimConfig::instant()).await.unwrap();
    let sts = StsSim::start(
        StsConfig {
            session_lifetime_secs: Some(2),
            ..StsConfig::default()
        },
        &ecs,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = sts.oidc_token("ack-rrsa", 600);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let session = RoleSession {
        role_arn: RoleArn::parse(&sts.role_arn("ecs-provisioner"), "t").unwrap(),
        session_name: "redaction".into(),
        policy: None,
        duration_secs: 900,
    };
    let client = StsClient::new(sts.base_url());
    let oidc = OidcRoleProvider::new(
        session.clone(),
        sts.oidc_provider_arn("ack-rrsa"),
        token_file.clone(),
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        client.clone(),
        "environment OIDC",
    );
    let mut secrets = vec![
        token.clone(),
        ecs.credentials().access_key_secret.expose().to_string(),
    ];
    let mut out = Vec::new();
    // Issue, refresh after expiry, then a chained AssumeRole signed with the session.
    for _ in 0..2 {
        let c = oidc.credentials().await.unwrap();
        secrets.push(c.access_key_secret.expose().into());
        secrets.push(c.security_token.as_ref().unwrap().expose().into());
        out.push(format!("{c:?} {}", oidc.describe()));
        tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    }
    let base = oidc.credentials().await.unwrap();
    secrets.push(base.access_key_secret.expose().into());
    secrets.push(base.security_token.as_ref().unwrap().expose().into());
    let chained = client.assume_role(&base, &session, None).await.unwrap();
    secrets.push(chained.access_key_secret.expose().into());
    secrets.push(chained.security_token.as_ref().unwrap().expose().into());
    out.push(format!("{chained:?} {client:?}"));

    // Failures: a wrong secret with a session token (the server's string-to-sign holds the
    // token), throttling, NoPermission, an expired OIDC token, an unreadable URI answer.
    let mut wrong = base.clone();
    wrong.access_key_secret = Secret::new("WRONG-secret-778");
    secrets.push("WRONG-secret-778".into());
    let e = client
        .assume_role(&wrong, &session, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("SignatureDoesNotMatch"), "{e}");
    out.push(format!("{e} {e:?}"));
    sts.set_faults(StsFaults {
        throttle_next: 1,
        no_permission_roles: vec!["ecs-provisioner".into()],
        ..Default::default()
    })
    .unwrap();
    let e = client.assume_role(&base, &session, None).await.unwrap_err();
    assert!(e.to_string().contains("NoPermission"), "{e}");
    out.push(format!("{e} {e:?}"));
    sts.set_faults(StsFaults {
        oidc_token_expired: true,
        ..Default::default()
    })
    .unwrap();
    let e = client
        .assume_role_with_oidc(
            &session,
            &sts.oidc_provider_arn("ack-rrsa"),
            &Secret::new(token.clone()),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Expired"), "{e}");
    out.push(format!("{e} {e:?}"));
    let uri = CredentialsUriProvider::new(
        &format!("{}/?key=uri-query-secret-5", sts.base_url()),
        "ALIBABA_CLOUD_CREDENTIALS_URI",
    )
    .unwrap();
    secrets.push("uri-query-secret-5".into());
    let e = uri.credentials().await.unwrap_err();
    out.push(format!("{e} {e:?} {}", uri.describe()));
    tracing::error!(all = ?out, "everything shown to users");

    drop(sts);
    drop(ecs);
    let logs = capture.text();
    assert!(
        logs.contains("STS answered") && logs.contains("retrying STS call"),
        "captured too little:\n{logs}"
    );
    for s in &secrets {
        assert!(s.len() > 6, "{s}");
        assert!(
            !logs.contains(s.as_str()),
            "a secret leaked into the logs or errors:\n{logs}"
        );
    }
}
