//! The small controllers: clusterrole-aggregation (ClusterRoles with an `aggregationRule` get the
//! rules of every ClusterRole their selectors match), ttl-after-finished (finished Jobs with
//! `ttlSecondsAfterFinished` are deleted, in the foreground, once it has passed) and tokencleaner
//! (expired bootstrap-token Secrets in `kube-system` are deleted) and bootstrapsigner (`cluster-info`
//! signed with every signing bootstrap token).

use super::{has_code, run_workers, selector_matches, SyncResult};
use crate::context::Context;
use base64::Engine;
use component_base::workqueue::WorkQueue;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub fn start_clusterrole_aggregation(ctx: &Arc<Context>) {
    let queue: WorkQueue<String> = WorkQueue::new("ClusterRoleAggregator");
    let (q, c) = (queue.clone(), ctx.clone());
    ctx.clusterroles().add_handler(move |_| {
        // Any role may feed any aggregated role: look at every aggregated one.
        for cr in c.clusterroles().list() {
            if cr.aggregation_rule.is_some() {
                q.add(cr.metadata.name.clone().unwrap_or_default());
            }
        }
    });
    let ctx = ctx.clone();
    tokio::spawn(async move {
        ctx.clusterroles().wait_synced().await;
        let c = ctx.clone();
        run_workers(queue, 5, move |name| {
            let ctx = c.clone();
            async move { aggregate(&ctx, &name).await }
        });
    });
}

/// The rules an aggregated ClusterRole should have: its sources' rules in name order, without repeats.
pub fn aggregated_rules(target: &ClusterRole, all: &[Arc<ClusterRole>]) -> Vec<PolicyRule> {
    let selectors = target.aggregation_rule.as_ref().and_then(|a| a.cluster_role_selectors.clone()).unwrap_or_default();
    let mut sources: Vec<&Arc<ClusterRole>> = all
        .iter()
        .filter(|cr| cr.metadata.name != target.metadata.name)
        .filter(|cr| selectors.iter().any(|s| selector_matches(s, &cr.metadata.labels)))
        .collect();
    sources.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for cr in sources {
        for r in cr.rules.iter().flatten() {
            if !rules.contains(r) {
                rules.push(r.clone());
            }
        }
    }
    rules
}

async fn aggregate(ctx: &Context, name: &str) -> SyncResult {
    let Some(target) = ctx.clusterroles().get(name) else { return Ok(None) };
    if target.aggregation_rule.is_none() {
        return Ok(None);
    }
    let rules = aggregated_rules(&target, &ctx.clusterroles().list());
    if target.rules.clone().unwrap_or_default() == rules {
        return Ok(None);
    }
    let patch = json!({"rules": rules, "metadata": {"resourceVersion": target.metadata.resource_version}});
    match Api::<ClusterRole>::all(ctx.client.clone()).patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await
    {
        Ok(_) => Ok(None),
        Err(e) if has_code(&e, &[404]) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// When a Job finished: its Complete or Failed condition's transition time.
fn finished_at(job: &Job) -> Option<k8s_openapi::jiff::Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

pub fn start_ttl_after_finished(ctx: &Arc<Context>) {
    let queue: WorkQueue<String> = WorkQueue::new("ttl_jobs_to_delete");
    let q = queue.clone();
    ctx.jobs().add_handler(move |ch| {
        let j = ch.object();
        if j.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished).is_some() {
            q.add(component_base::informer::key_of(j.as_ref()));
        }
    });
    let ctx = ctx.clone();
    tokio::spawn(async move {
        ctx.jobs().wait_synced().await;
        let c = ctx.clone();
        run_workers(queue, 5, move |key| {
            let ctx = c.clone();
            async move {
                let Some(job) = ctx.jobs().get(&key) else { return Ok(None) };
                let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else { return Ok(None) };
                if job.metadata.deletion_timestamp.is_some() {
                    return Ok(None);
                }
                let Some(done) = finished_at(&job) else { return Ok(None) };
                let age = k8s_openapi::jiff::Timestamp::now().duration_since(done).as_secs();
                if age < ttl as i64 {
                    return Ok(Some(Duration::from_secs((ttl as i64 - age) as u64)));
                }
                let ns = job.metadata.namespace.clone().unwrap_or_default();
                let dp = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Foreground),
                    preconditions: Some(Preconditions { uid: job.metadata.uid.clone(), resource_version: None }),
                    ..Default::default()
                };
                match Api::<Job>::namespaced(ctx.client.clone(), &ns)
                    .delete(job.metadata.name.as_deref().unwrap_or(""), &dp)
                    .await
                {
                    Ok(_) => Ok(None),
                    Err(e) if has_code(&e, &[404, 409]) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        });
    });
}

/// A bootstrap token Secret's `expiration` (RFC 3339), if it has passed.
pub fn token_expired(s: &Secret) -> bool {
    if s.type_.as_deref() != Some("bootstrap.kubernetes.io/token") {
        return false;
    }
    let raw = s
        .data
        .as_ref()
        .and_then(|d| d.get("expiration"))
        .map(|b| b.0.clone())
        .or_else(|| s.string_data.as_ref().and_then(|d| d.get("expiration")).map(|v| v.as_bytes().to_vec()));
    let Some(raw) = raw else { return false };
    let text = String::from_utf8_lossy(&raw).into_owned();
    let text = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|t| t.parse::<k8s_openapi::jiff::Timestamp>().is_ok())
        .unwrap_or(text);
    text.trim().parse::<k8s_openapi::jiff::Timestamp>().is_ok_and(|t| t < k8s_openapi::jiff::Timestamp::now())
}

pub fn start_token_cleaner(ctx: &Arc<Context>) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let secrets = ctx.system_secrets();
        secrets.wait_synced().await;
        loop {
            for s in secrets.list() {
                if token_expired(&s) {
                    let name = s.metadata.name.clone().unwrap_or_default();
                    let dp = DeleteParams {
                        preconditions: Some(Preconditions { uid: s.metadata.uid.clone(), resource_version: None }),
                        ..Default::default()
                    };
                    match Api::<Secret>::namespaced(ctx.client.clone(), "kube-system").delete(&name, &dp).await {
                        Ok(_) => tracing::info!(secret = %name, "deleted expired bootstrap token"),
                        Err(e) if has_code(&e, &[404, 409]) => {}
                        Err(e) => {
                            tracing::warn!(secret = %name, error = %e, "could not delete expired bootstrap token")
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    });
}

/// The parts of a usable bootstrap token Secret: (token id, token secret), when it may sign.
pub fn signing_token(s: &Secret) -> Option<(String, String)> {
    if s.type_.as_deref() != Some("bootstrap.kubernetes.io/token")
        || token_expired(s)
        || s.metadata.deletion_timestamp.is_some()
    {
        return None;
    }
    let get = |k: &str| s.data.as_ref().and_then(|d| d.get(k)).map(|b| String::from_utf8_lossy(&b.0).into_owned());
    if get("usage-bootstrap-signing").as_deref() != Some("true") {
        return None;
    }
    let id = get("token-id")?;
    let secret = get("token-secret")?;
    // The Secret must be named after its token id.
    (s.metadata.name.as_deref() == Some(format!("bootstrap-token-{id}").as_str())).then_some((id, secret))
}

/// A detached JWS (`header..signature`) of `content`, HS256 with the token secret and the token id
/// as `kid`, as upstream's `ComputeDetachedSignature` (and kubeadm's check of it) computes it.
pub fn detached_jws(content: &str, token_id: &str, token_secret: &str) -> String {
    use hmac::Mac;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = url.encode(format!("{{\"alg\":\"HS256\",\"kid\":\"{token_id}\"}}"));
    let payload = url.encode(content);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(token_secret.as_bytes()).expect("any key length");
    mac.update(format!("{header}.{payload}").as_bytes());
    format!("{header}..{}", url.encode(mac.finalize().into_bytes()))
}

/// The bootstrapsigner: `kube-public/cluster-info` carries `jws-kubeconfig-<token id>` signatures of
/// its kubeconfig for every signing bootstrap token, and none for tokens that are gone or expired.
pub fn start_bootstrap_signer(ctx: &Arc<Context>) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let secrets = ctx.system_secrets();
        secrets.wait_synced().await;
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(ctx.client.clone(), "kube-public");
        loop {
            match api.get_opt("cluster-info").await {
                Ok(Some(cm)) => {
                    let data = cm.data.clone().unwrap_or_default();
                    if let Some(kubeconfig) = data.get("kubeconfig") {
                        let mut want: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
                        for s in secrets.list() {
                            if let Some((id, secret)) = signing_token(&s) {
                                want.insert(format!("jws-kubeconfig-{id}"), detached_jws(kubeconfig, &id, &secret));
                            }
                        }
                        let have: std::collections::BTreeMap<String, String> = data
                            .iter()
                            .filter(|(k, _)| k.starts_with("jws-kubeconfig-"))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        if want != have {
                            let mut patch = serde_json::Map::new();
                            for k in have.keys().filter(|k| !want.contains_key(*k)) {
                                patch.insert(k.clone(), serde_json::Value::Null);
                            }
                            for (k, v) in &want {
                                patch.insert(k.clone(), json!(v));
                            }
                            if let Err(e) = super::update_with(&api, &cm, &json!({"data": patch}), false).await {
                                tracing::debug!(error = %e, "could not update cluster-info signatures");
                            }
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "could not read cluster-info"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn role(name: &str, label: Option<&str>, verbs: &[&str]) -> Arc<ClusterRole> {
        Arc::new(ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: label.map(|l| [(l.to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            rules: Some(vec![PolicyRule {
                verbs: verbs.iter().map(|v| v.to_string()).collect(),
                ..Default::default()
            }]),
            aggregation_rule: None,
        })
    }

    #[test]
    fn aggregation_collects_matching_rules_once_in_name_order() {
        let target = ClusterRole {
            metadata: ObjectMeta { name: Some("view".into()), ..Default::default() },
            aggregation_rule: Some(AggregationRule {
                cluster_role_selectors: Some(vec![LabelSelector {
                    match_labels: Some([("agg".to_string(), "true".to_string())].into()),
                    ..Default::default()
                }]),
            }),
            rules: None,
        };
        let all = vec![
            role("b", Some("agg"), &["list"]),
            role("a", Some("agg"), &["get"]),
            role("c", None, &["delete"]),
            role("d", Some("agg"), &["get"]),
        ];
        let rules = aggregated_rules(&target, &all);
        let verbs: Vec<String> = rules.iter().map(|r| r.verbs.join(",")).collect();
        assert_eq!(verbs, ["get", "list"]);
    }

    #[test]
    fn expired_bootstrap_tokens() {
        let secret = |exp: &str| Secret {
            type_: Some("bootstrap.kubernetes.io/token".into()),
            data: Some([("expiration".to_string(), k8s_openapi::ByteString(exp.as_bytes().to_vec()))].into()),
            ..Default::default()
        };
        assert!(token_expired(&secret("2020-01-01T00:00:00Z")));
        assert!(!token_expired(&secret("2999-01-01T00:00:00Z")));
    }

    /// The detached JWS kubeadm computes for the same inputs (header `{"alg":"HS256","kid":"abcdef"}`).
    #[test]
    fn detached_signatures_as_kubeadm() {
        let jws = detached_jws("hello", "abcdef", "0123456789abcdef");
        let (header, sig) = jws.split_once("..").unwrap();
        assert_eq!(header, "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9");
        assert_eq!(sig.len(), 43);
        assert_ne!(detached_jws("hello", "abcdef", "other-secret"), jws);
    }
}
