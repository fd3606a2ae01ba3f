//! The serviceaccount controller: every active namespace has a `default` ServiceAccount, recreated
//! if deleted.

use super::{run_workers, SyncResult};
use crate::context::Context;
use component_base::informer::Change;
use component_base::workqueue::WorkQueue;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use std::sync::Arc;

pub fn start(ctx: &Arc<Context>) {
    let namespaces = ctx.namespaces();
    let accounts = ctx.serviceaccounts();
    let queue: WorkQueue<String> = WorkQueue::new("serviceaccount");
    let q = queue.clone();
    namespaces.add_handler(move |ch| {
        if !matches!(ch, Change::Deleted(_)) {
            q.add(ch.object().metadata.name.clone().unwrap_or_default());
        }
    });
    let q = queue.clone();
    accounts.add_handler(move |ch| {
        if let Change::Deleted(sa) = ch {
            if sa.metadata.name.as_deref() == Some("default") {
                q.add(sa.metadata.namespace.clone().unwrap_or_default());
            }
        }
    });
    let ctx = ctx.clone();
    tokio::spawn(async move {
        namespaces.wait_synced().await;
        accounts.wait_synced().await;
        run_workers(queue, ctx.flags.concurrent_serviceaccount_token_syncs, move |ns| {
            let ctx = ctx.clone();
            async move { sync(&ctx, &ns).await }
        });
    });
}

async fn sync(ctx: &Context, ns: &str) -> SyncResult {
    let Some(namespace) = ctx.namespaces().get(ns) else { return Ok(None) };
    let active = namespace.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Active") == "Active"
        && namespace.metadata.deletion_timestamp.is_none();
    if !active || ctx.serviceaccounts().get(&format!("{ns}/default")).is_some() {
        return Ok(None);
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta { name: Some("default".into()), namespace: Some(ns.into()), ..Default::default() },
        ..Default::default()
    };
    match Api::<ServiceAccount>::namespaced(ctx.client.clone(), ns).create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 409 || (s.code == 403 && s.message.contains("terminat")) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
