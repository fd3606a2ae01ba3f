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
