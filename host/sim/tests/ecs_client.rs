//! The ECS client against the ECS emulator: what a unit test of the client alone cannot show.

mod common;

use common::Capture;
use ecsp_ecs::credentials::Credentials;
use ecsp_ecs::{EcsClient, ErrorKind, HttpMethod, RetryPolicy};
use ecsp_sim::ecs::{EcsSim, Faults, SimConfig, ThrottleRule};

/// Every log line of successful, failing, retried and unreachable calls, at TRACE level for
/// all crates (reqwest/hyper included), with GET (secrets in the URL) and POST: no secret.
#[tokio::test]
async fn no_secret_in_any_log_line() {
    let (capture, _guard) = Capture::trace();

    let secret = "SECRETvalue-9f8e7d";
    let token = "STStoken-1a2b3c";
    let mut config = SimConfig::instant();
    config.accounts[0].access_key_secret = secret.into();
    let sim = EcsSim::start(config).await.unwrap();
    let good = Credentials::access_key(sim.credentials().access_key_id, secret)
        .with_security_token(token);
    for method in [HttpMethod::Get, HttpMethod::Post] {
        let mut cfg = sim.client_config();
        cfg.method = method;
        let c = EcsClient::with_credentials(cfg.clone(), good.clone()).unwrap();
        c.describe_regions().await.unwrap();
        sim.set_faults(Faults {
            throttle: vec![ThrottleRule {
                probability: 1.0,
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
        let e = c.describe_regions().await.unwrap_err();
        sim.set_faults(Faults::default()).unwrap();
        tracing::error!(error = %e, "throttled");
        let wrong = Credentials::access_key(good.access_key_id.clone(), "WRONGsecret-5566")
            .with_security_token(token);
        let e = EcsClient::with_credentials(cfg.clone(), wrong)
            .unwrap()
            .describe_regions()
            .await
            .unwrap_err();
        tracing::error!(error = %e, debug = ?e, "wrong secret");
        let mut closed = cfg.clone().with_endpoint("http://127.0.0.1:9");
        closed.retry = RetryPolicy::none();
        let e = EcsClient::with_credentials(closed, good.clone())
            .unwrap()
            .describe_regions()
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Transient);
        tracing::error!(error = %e, debug = ?e, creds = ?good, client = ?c, "unreachable");
    }
    drop(sim);
    let logs = capture.text();
    assert!(
        logs.contains("retrying ECS call") && logs.contains("unreachable"),
        "captured too little:\n{logs}"
    );
    for s in [secret, token, "WRONGsecret-5566"] {
        assert!(!logs.contains(s), "{s} leaked into the logs:\n{logs}");
    }
}
