//! Helpers for the credentials tests: a credentials-URI sidecar that hands out sessions of the
//! STS emulator in the official response format.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::routing::get;
use ecs_provisioner::ecs::credentials::{Credentials, StsClient, sts};
use ecs_provisioner::ecs::signer;
use ecs_provisioner::sim::ecs::EcsSim;
use ecs_provisioner::sim::sts::StsSim;

/// What a sidecar (e.g. a pod's credentials agent) serves at `/credentials`; `/broken` answers
/// an incomplete document whose only field is a secret.
pub struct UriSidecar {
    pub base_url: String,
    served: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct Sidecar {
    sts: StsClient,
    base: Credentials,
    session: sts::RoleSession,
    served: Arc<AtomicUsize>,
}

impl UriSidecar {
    /// Serves sessions of the role `ecs-provisioner`, assumed with the ECS emulator's key.
    pub async fn start(ecs: &EcsSim, sts_sim: &StsSim) -> Self {
        let served = Arc::new(AtomicUsize::new(0));
        let state = Sidecar {
            sts: StsClient::new(sts_sim.base_url()),
            base: ecs.credentials(),
            session: sts::RoleSession {
                role_arn: sts::RoleArn::parse(&sts_sim.role_arn("ecs-provisioner"), "sidecar")
                    .unwrap(),
                session_name: "sidecar".into(),
                policy: None,
                duration_secs: 900,
            },
            served: served.clone(),
        };
        let app = axum::Router::new()
            .route(
                "/credentials",
                get(|State(s): State<Sidecar>| async move {
                    let c = s
                        .sts
                        .assume_role(&s.base, &s.session, None)
                        .await
                        .map_err(|e| e.to_string())?;
                    s.served.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>(axum::Json(serde_json::json!({
                        "Code": "Success",
                        "AccessKeyId": c.access_key_id,
                        "AccessKeySecret": c.access_key_secret.expose(),
                        "SecurityToken": c.security_token.as_ref().map(|t| t.expose().to_string()),
                        "Expiration": signer::format_timestamp(c.expiration.unwrap()),
                        "LastUpdated": signer::timestamp_now(),
                    })))
                }),
            )
            .route(
                "/broken",
                get(|| async {
                    axum::Json(
                        serde_json::json!({ "Code": "Success", "AccessKeySecret": "hunter2" }),
                    )
                }),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base_url, served }
    }

    /// Credentials documents served so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}
