//! Service-account tokens for projected volumes, requested through `serviceaccounts/token`
//! (TokenRequest) bound to the pod, and cached until 80% of their lifetime has passed.

use crate::kubelet::Kubelet;
use crate::volumes::VolumeError;
use k8s_openapi::api::core::v1::{Pod, ServiceAccountTokenProjection};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

type Key = (String, String, Vec<String>, i64);

fn cache() -> &'static Mutex<HashMap<Key, (String, Instant)>> {
    static C: std::sync::OnceLock<Mutex<HashMap<Key, (String, Instant)>>> = std::sync::OnceLock::new();
    C.get_or_init(Default::default)
}

pub async fn token_for(k: &Kubelet, pod: &Pod, t: &ServiceAccountTokenProjection) -> Result<String, VolumeError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let sa = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let expiration = t.expiration_seconds.unwrap_or(3600);
    let audiences: Vec<String> = t.audience.clone().into_iter().filter(|a| !a.is_empty()).collect();
    let key = (uid.clone(), sa.clone(), audiences.clone(), expiration);
    if let Some((tok, refresh_at)) = cache().lock().unwrap().get(&key) {
        if Instant::now() < *refresh_at {
            return Ok(tok.clone());
        }
    }
    let body = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": audiences,
            "expirationSeconds": expiration,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.metadata.name, "uid": uid}
        }
    });
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("request");
    let resp: serde_json::Value = k.client.request(req).await?;
    let token = resp["status"]["token"]
        .as_str()
        .ok_or_else(|| VolumeError::Invalid("TokenRequest returned no token".into()))?
        .to_string();
    let refresh = Duration::from_secs_f64(expiration as f64 * 0.8);
    cache().lock().unwrap().insert(key, (token.clone(), Instant::now() + refresh));
    Ok(token)
}
