//! `--use-service-account-credentials`: each controller talks to the API server as its own service
//! account in `kube-system` (`deployment-controller`, `namespace-controller`, ...), so RBAC grants it
//! exactly its bootstrap role (`system:controller:<name>`). As upstream's dynamic client builder, the
//! manager creates the account when missing and asks the TokenRequest API for a token (one hour),
//! renewed when 80% of its life has passed; the informers keep using the manager's own credentials.

use component_base::client::BearerToken;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use std::time::Duration;

const NAMESPACE: &str = "kube-system";
/// Upstream's token lifetime for controller clients.
const EXPIRATION_SECONDS: i64 = 3600;

async fn request_token(root: &Client, sa: &str) -> Result<(String, Duration), String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(root.clone(), NAMESPACE);
    if accounts.get_opt(sa).await.map_err(|e| e.to_string())?.is_none() {
        let account = ServiceAccount {
            metadata: ObjectMeta { name: Some(sa.into()), namespace: Some(NAMESPACE.into()), ..Default::default() },
            ..Default::default()
        };
        match accounts.create(&PostParams::default(), &account).await {
            Ok(_) => {}
            Err(e) if crate::controllers::has_code(&e, &[409]) => {}
            Err(e) => return Err(format!("creating service account {NAMESPACE}/{sa}: {e}")),
        }
    }
    let req = TokenRequest {
        spec: TokenRequestSpec { expiration_seconds: Some(EXPIRATION_SECONDS), ..Default::default() },
        ..Default::default()
    };
    let got = accounts
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .map_err(|e| format!("requesting a token for {NAMESPACE}/{sa}: {e}"))?;
    let status = got.status.ok_or_else(|| format!("no token came back for {NAMESPACE}/{sa}"))?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let life = status.expiration_timestamp.0.duration_since(now).as_secs().max(60) as u64;
    Ok((status.token, Duration::from_secs(life)))
}

/// A token for the service account, which is created if missing, and how long it lives.
pub async fn service_account_token(root: &Client, sa: &str) -> Result<(BearerToken, Duration), String> {
    let mut last = String::new();
    // The API server may still be starting, or the account's creation racing another manager.
    for _ in 0..30 {
        match request_token(root, sa).await {
            Ok((token, life)) => return Ok((BearerToken::new(token), life)),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(last)
}

/// Renews the token, which lives `life`, when 80% of its life has passed (retrying every 10s on
/// failure).
pub fn keep_renewing(root: Client, sa: String, token: BearerToken, life: Duration) {
    tokio::spawn(async move {
        let mut wait = life * 8 / 10;
        loop {
            tokio::time::sleep(wait).await;
            match request_token(&root, &sa).await {
                Ok((t, life)) => {
                    token.set(t);
                    wait = life * 8 / 10;
                }
                Err(e) => {
                    tracing::warn!(service_account = sa, error = %e, "could not renew the controller's token");
                    wait = Duration::from_secs(10);
                }
            }
        }
    });
}
