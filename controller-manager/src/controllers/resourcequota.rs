//! The resourcequota controller: publishes each quota's `status.hard` from its spec and recounts
//! `status.used` from what the namespace holds. It runs when a quota's spec and status disagree, when a
//! counted object goes away (deleted, or a pod finished), and every `--resource-quota-sync-period`.
//! Charging new objects is the API server's ResourceQuota admission; this controller gives back what
//! deleted objects held and corrects any over-charge left by writes that failed after admission.

use super::{run_workers, SyncResult};
use crate::context::Context;
use component_base::informer::{key_of, split_key, Change};
use component_base::workqueue::WorkQueue;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, PostParams};
use serde_json::Value;
use std::sync::Arc;

pub fn start(ctx: &Arc<Context>) {
    let quotas = ctx.resourcequotas();
    let queue: WorkQueue<String> = WorkQueue::new("resourcequota");
    let q = queue.clone();
    quotas.add_handler(move |ch| match ch {
        Change::Added(rq) => q.add(key_of(rq.as_ref())),
        Change::Updated { new: rq, .. } => {
            let hard = rq.spec.as_ref().and_then(|s| s.hard.clone());
            if hard != rq.status.as_ref().and_then(|s| s.hard.clone()) {
                q.add(key_of(rq.as_ref()));
            }
        }
        Change::Deleted(_) => {}
    });
    // Something counted went away: recount that namespace's quotas.
    let requeue = {
        let quotas = quotas.clone();
        let q = queue.clone();
        move |ns: &str| {
            for rq in quotas.list_namespace(ns) {
                q.add(key_of(rq.as_ref()));
            }
        }
    };
    {
        let requeue = requeue.clone();
        ctx.pods().add_handler(move |ch| {
            let ns = ch.object().metadata.namespace.clone().unwrap_or_default();
            let finished = |p: &k8s_openapi::api::core::v1::Pod| {
                matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
            };
            match ch {
                Change::Deleted(_) => requeue(&ns),
                Change::Updated { old, new } if finished(new) && !finished(old) => requeue(&ns),
                _ => {}
            }
        });
    }
    macro_rules! on_delete {
        ($informer:expr) => {{
            let requeue = requeue.clone();
            $informer.add_handler(move |ch| {
                if let Change::Deleted(o) = ch {
                    requeue(o.metadata.namespace.as_deref().unwrap_or_default());
                }
            });
        }};
    }
    on_delete!(ctx.services());
    on_delete!(ctx.configmaps());
    on_delete!(ctx.secrets());
    on_delete!(ctx.pvcs());
    on_delete!(ctx.rcs());
    let ctx = ctx.clone();
    tokio::spawn(async move {
        ctx.resourcequotas().wait_synced().await;
        ctx.pods().wait_synced().await;
        ctx.services().wait_synced().await;
        ctx.configmaps().wait_synced().await;
        ctx.secrets().wait_synced().await;
        ctx.pvcs().wait_synced().await;
        ctx.rcs().wait_synced().await;
        let period = ctx.flags.resource_quota_sync_period.0;
        {
            let (ctx, queue) = (ctx.clone(), queue.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    for rq in ctx.resourcequotas().list() {
                        queue.add(key_of(rq.as_ref()));
                    }
                }
            });
        }
        run_workers(queue, ctx.flags.concurrent_resource_quota_syncs, move |key| {
            let ctx = ctx.clone();
            async move { sync(&ctx, &key).await }
        });
    });
}

fn json_of<T: serde::Serialize>(items: Vec<Arc<T>>) -> Vec<Value> {
    items.iter().filter_map(|o| serde_json::to_value(o.as_ref()).ok()).collect()
}

async fn sync(ctx: &Context, key: &str) -> SyncResult {
    let Some(rq) = ctx.resourcequotas().get(key) else { return Ok(None) };
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or_default();
    let quota = serde_json::to_value(rq.as_ref()).map_err(|e| super::SyncError::Other(e.to_string()))?;
    let pods = json_of(ctx.pods().list_namespace(ns));
    let services = json_of(ctx.services().list_namespace(ns));
    let configmaps = json_of(ctx.configmaps().list_namespace(ns));
    let secrets = json_of(ctx.secrets().list_namespace(ns));
    let pvcs = json_of(ctx.pvcs().list_namespace(ns));
    let rcs = json_of(ctx.rcs().list_namespace(ns));
    let quotas = json_of(ctx.resourcequotas().list_namespace(ns));
    let objects = [
        ("pods", &pods),
        ("services", &services),
        ("configmaps", &configmaps),
        ("secrets", &secrets),
        ("persistentvolumeclaims", &pvcs),
        ("replicationcontrollers", &rcs),
        ("resourcequotas", &quotas),
    ];
    let status = apiserver_admission::quota::recount(
        &quota,
        objects.iter().flat_map(|(plural, list)| list.iter().map(move |o| ("", *plural, o))),
    );
    if quota.get("status") == Some(&status) {
        return Ok(None);
    }
    // An update of the status (the verb upstream's controller role grants), guarded by the
    // resourceVersion the informer saw: a charge admitted since then wins, and the quota is recounted
    // again from the newer state.
    let mut updated = rq.as_ref().clone();
    updated.status = Some(serde_json::from_value(status).map_err(|e| super::SyncError::Other(e.to_string()))?);
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), ns);
    match api.replace_status(name, &PostParams::default(), &updated).await {
        Ok(_) => Ok(None),
        Err(e) if super::has_code(&e, &[404]) => Ok(None),
        Err(e) if super::has_code(&e, &[409]) => Ok(Some(std::time::Duration::from_millis(200))),
        Err(e) => Err(e.into()),
    }
}
