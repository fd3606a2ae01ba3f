//! The serviceaccount-token controller, for the legacy token Secrets that are still created on
//! request: a Secret of type `kubernetes.io/service-account-token` annotated with
//! `kubernetes.io/service-account.name` gets the account's uid annotation and `token` (a JWT signed
//! with `--service-account-private-key-file`, with upstream's legacy claims), `ca.crt`
//! (`--root-ca-file`) and `namespace`. A token Secret whose ServiceAccount does not exist (or has
//! another uid) is deleted, as upstream does.

use super::{has_code, run_workers, SyncResult};
use crate::context::Context;
use apiserver_auth::jwt::Signer;
use base64::Engine;
use component_base::informer::{key_of, Change};
use component_base::workqueue::WorkQueue;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Preconditions};
use serde_json::json;
use std::sync::Arc;

const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
const NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
const UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

pub fn start(ctx: &Arc<Context>) {
    let Some(path) = ctx.flags.service_account_private_key_file.clone().filter(|p| !p.is_empty()) else {
        tracing::info!("serviceaccount-token needs --service-account-private-key-file; not started");
        return;
    };
    let signer = match Signer::load(std::path::Path::new(&path)) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(file = %path, error = %e, "cannot load the service-account key; serviceaccount-token not started");
            return;
        }
    };
    let ca = ctx.flags.root_ca_file.as_ref().and_then(|p| std::fs::read(p).ok());
    let queue: WorkQueue<String> = WorkQueue::new("serviceaccount_tokens_secret");
    let secrets = ctx.secrets();
    let q = queue.clone();
    secrets.add_handler(move |ch| {
        let s = ch.object();
        if s.type_.as_deref() == Some(TOKEN_TYPE) && !matches!(ch, Change::Deleted(_)) {
            q.add(key_of(s.as_ref()));
        }
    });
    let (q, c) = (queue.clone(), ctx.clone());
    ctx.serviceaccounts().add_handler(move |ch| {
        let sa = ch.object();
        let ns = sa.metadata.namespace.clone().unwrap_or_default();
        for s in c.secrets().list_namespace(&ns) {
            let refers =
                s.metadata.annotations.as_ref().and_then(|a| a.get(NAME_ANNOTATION)) == sa.metadata.name.as_ref();
            if s.type_.as_deref() == Some(TOKEN_TYPE) && refers {
                q.add(key_of(s.as_ref()));
            }
        }
    });
    let ctx = ctx.clone();
    tokio::spawn(async move {
        ctx.secrets().wait_synced().await;
        ctx.serviceaccounts().wait_synced().await;
        let c = ctx.clone();
        let ca = Arc::new(ca);
        run_workers(queue, ctx.flags.concurrent_serviceaccount_token_syncs, move |key| {
            let (ctx, signer, ca) = (c.clone(), signer.clone(), ca.clone());
            async move { sync(&ctx, &signer, ca.as_deref(), &key).await }
        });
    });
}

async fn sync(ctx: &Context, signer: &Signer, ca: Option<&[u8]>, key: &str) -> SyncResult {
    let Some(secret) = ctx.secrets().get(key) else { return Ok(None) };
    if secret.type_.as_deref() != Some(TOKEN_TYPE) || secret.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let ns = secret.metadata.namespace.clone().unwrap_or_default();
    let name = secret.metadata.name.clone().unwrap_or_default();
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    let sa_name = annotations.get(NAME_ANNOTATION).cloned().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let sa = ctx.serviceaccounts().get(&format!("{ns}/{sa_name}"));
    let sa_uid = sa.as_ref().and_then(|s| s.metadata.uid.clone());
    let wrong_uid = annotations.get(UID_ANNOTATION).is_some_and(|u| Some(u) != sa_uid.as_ref());
    if sa.is_none() || wrong_uid {
        // Verify with the API before deleting: the informer may be behind.
        let live = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&sa_name)
            .await?;
        let live_uid = live.and_then(|s| s.metadata.uid);
        if live_uid.is_none() || annotations.get(UID_ANNOTATION).is_some_and(|u| Some(u) != live_uid.as_ref()) {
            let dp = DeleteParams {
                preconditions: Some(Preconditions { uid: secret.metadata.uid.clone(), resource_version: None }),
                ..Default::default()
            };
            return match api.delete(&name, &dp).await {
                Ok(_) => Ok(None),
                Err(e) if has_code(&e, &[404, 409]) => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        return Ok(Some(std::time::Duration::from_secs(1)));
    }
    let sa_uid = sa_uid.unwrap_or_default();
    let data = secret.data.clone().unwrap_or_default();
    let has = |k: &str| data.get(k).is_some_and(|v| !v.0.is_empty());
    let needs_ca = ca.is_some() && !has("ca.crt");
    if has("token") && has("namespace") && !needs_ca && annotations.get(UID_ANNOTATION) == Some(&sa_uid) {
        return Ok(None);
    }
    let claims = json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": ns,
        "kubernetes.io/serviceaccount/secret.name": name,
        "kubernetes.io/serviceaccount/service-account.name": sa_name,
        "kubernetes.io/serviceaccount/service-account.uid": sa_uid,
        "sub": format!("system:serviceaccount:{ns}:{sa_name}"),
    });
    let token = signer.sign(&claims).map_err(super::SyncError::Other)?;
    let b = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    let mut new_data = json!({"token": b(token.as_bytes()), "namespace": b(ns.as_bytes())});
    if let Some(ca) = ca {
        new_data["ca.crt"] = json!(b(ca));
    }
    // An update, the verb the manager's own role grants on secrets.
    let patch = json!({"metadata": {"annotations": {UID_ANNOTATION: sa_uid}}, "data": new_data});
    match super::update_with(&api, &secret, &patch, false).await {
        Ok(_) => Ok(None),
        Err(e) if has_code(&e, &[404]) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Upstream's labels and tracking ConfigMap for legacy tokens (the API server writes them).
const LAST_USED_LABEL: &str = "kubernetes.io/legacy-token-last-used";
const INVALID_SINCE_LABEL: &str = "kubernetes.io/legacy-token-invalid-since";
const TRACKING_CONFIGMAP: &str = "kube-apiserver-legacy-service-account-token-tracking";
const DAY: i64 = 24 * 3600;

/// The legacy-serviceaccount-token-cleaner, as upstream's: once per day (and at start), every
/// auto-generated token Secret (listed in its account's `secrets`) that is older than
/// `--legacy-service-account-token-clean-up-period`, not used within it (its last-used label, or no
/// use since tracking began) and not referenced by a pod of its namespace is labelled
/// `kubernetes.io/legacy-token-invalid-since` (after which the API server refuses it); one labelled
/// a whole period ago is deleted. Nothing happens until the API servers have tracked uses for a period.
pub fn start_cleaner(ctx: &Arc<Context>) {
    let period = ctx.flags.legacy_service_account_token_clean_up_period.0;
    if period.is_zero() {
        tracing::error!("invalid --legacy-service-account-token-clean-up-period: 0s; legacy token cleaner not started");
        return;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        ctx.secrets().wait_synced().await;
        ctx.serviceaccounts().wait_synced().await;
        ctx.pods().wait_synced().await;
        loop {
            if let Err(e) = clean_legacy_tokens(&ctx, period.as_secs() as i64).await {
                tracing::error!(error = %e, "evaluating legacy service account tokens");
            }
            tokio::time::sleep(std::time::Duration::from_secs(DAY as u64)).await;
        }
    });
}

fn date_of(unix: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(unix).map(|t| t.strftime("%Y-%m-%d").to_string()).unwrap_or_default()
}

/// A `YYYY-MM-DD` date's midnight (UTC) in unix seconds.
fn parse_date(s: &str) -> Option<i64> {
    let d = k8s_openapi::jiff::civil::Date::strptime("%Y-%m-%d", s).ok()?;
    Some(d.to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC).ok()?.timestamp().as_second())
}

async fn clean_legacy_tokens(ctx: &Context, period: i64) -> Result<(), kube::Error> {
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(ctx.client.clone(), "kube-system");
    let tracking = cms.get(TRACKING_CONFIGMAP).await?;
    let since = tracking.data.as_ref().and_then(|d| d.get("since")).cloned().unwrap_or_default();
    let Some(tracked_since) = parse_date(&since) else {
        tracing::error!(since = %since, "the legacy token tracking ConfigMap has no valid since date");
        return Ok(());
    };
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    // Tracking began at the latest at the end of that day.
    if now < tracked_since + DAY + period {
        return Ok(());
    }
    let preserve_created_after = now - period;
    let preserve_used_on_or_after = date_of(now - period);
    // Each namespace's pods, as JSON for the Node authorizer's reference check, read once per pass.
    let mut pods_of: std::collections::HashMap<String, Vec<serde_json::Value>> = Default::default();
    for secret in ctx.secrets().list() {
        let meta = &secret.metadata;
        let created = meta.creation_timestamp.as_ref().map(|t| t.0.as_second()).unwrap_or(now);
        if secret.type_.as_deref() != Some(TOKEN_TYPE)
            || created >= preserve_created_after
            || meta.deletion_timestamp.is_some()
        {
            continue;
        }
        let (ns, name) = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
        let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).cloned();
        let last_used = label(LAST_USED_LABEL);
        if let Some(used) = &last_used {
            if parse_date(used).is_none() {
                tracing::error!(secret = %format!("{ns}/{name}"), last_used = %used, "unparseable last-used label");
                continue;
            }
            if *used >= preserve_used_on_or_after {
                continue;
            }
        }
        // Only auto-generated tokens: the account (with the annotated uid) lists the Secret.
        let annotations = meta.annotations.clone().unwrap_or_default();
        let Some(sa) = annotations.get(NAME_ANNOTATION).and_then(|sa| ctx.serviceaccounts().get(&format!("{ns}/{sa}")))
        else {
            continue;
        };
        if annotations.get(UID_ANNOTATION).is_some_and(|u| !u.is_empty() && Some(u) != sa.metadata.uid.as_ref())
            || !sa.secrets.iter().flatten().any(|r| r.name.as_deref() == Some(name.as_str()))
        {
            continue;
        }
        let pods = pods_of.entry(ns.clone()).or_insert_with(|| {
            ctx.pods().list_namespace(&ns).iter().filter_map(|p| serde_json::to_value(p.as_ref()).ok()).collect()
        });
        if pods.iter().any(|p| apiserver_auth::node::pod_references(p, apiserver_auth::node::Kind::Secret, &name)) {
            continue;
        }
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
        let invalid_since = label(INVALID_SINCE_LABEL).filter(|v| parse_date(v).is_some());
        let Some(invalid_since) = invalid_since else {
            let today = date_of(now);
            tracing::info!(secret = %format!("{ns}/{name}"), invalid_since = %today, "Mark the auto-generated service account token as invalid");
            let patch = json!({"metadata": {"uid": meta.uid, "labels": {INVALID_SINCE_LABEL: today}}});
            if let Err(e) = api.patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await
            {
                tracing::error!(secret = %format!("{ns}/{name}"), error = %e, "failed to label legacy service account token secret with invalid since date");
            }
            continue;
        };
        if invalid_since >= preserve_used_on_or_after {
            continue;
        }
        tracing::info!(secret = %format!("{ns}/{name}"), last_used = ?last_used, invalid_since = %invalid_since, "Delete auto-generated service account token");
        let dp = DeleteParams {
            preconditions: Some(Preconditions { uid: None, resource_version: meta.resource_version.clone() }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(e) if has_code(&e, &[404, 409]) => {}
            Err(e) => {
                tracing::error!(secret = %format!("{ns}/{name}"), error = %e, "deleting legacy service account token")
            }
        }
    }
    Ok(())
}
