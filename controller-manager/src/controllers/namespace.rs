//! The namespace controller: a namespace marked for deletion has every namespaced object deleted (each
//! resource discovery lists that supports it, through `deletecollection`), its status conditions kept
//! as upstream reports them, and, once nothing is left, the `kubernetes` finalizer removed through
//! `/finalize` so the API server deletes the namespace.

use super::{run_workers, SyncError, SyncResult};
use crate::context::Context;
use component_base::informer::Informer;
use component_base::workqueue::WorkQueue;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{verbs, ApiResource, Discovery, Scope};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

struct Controller {
    ctx: Arc<Context>,
    namespaces: Arc<Informer<Namespace>>,
    queue: WorkQueue<String>,
}

pub fn start(ctx: &Arc<Context>) {
    let c = Arc::new(Controller { ctx: ctx.clone(), namespaces: ctx.namespaces(), queue: WorkQueue::new("namespace") });
    let q = c.queue.clone();
    c.namespaces.add_handler(move |ch| {
        let ns = ch.object();
        if ns.metadata.deletion_timestamp.is_some() {
            q.add(ns.metadata.name.clone().unwrap_or_default());
        }
    });
    let c2 = c.clone();
    tokio::spawn(async move {
        c2.namespaces.wait_synced().await;
        let workers = c2.ctx.flags.concurrent_namespace_syncs;
        let c3 = c2.clone();
        run_workers(c2.queue.clone(), workers, move |key| {
            let c = c3.clone();
            async move { c.sync(&key).await }
        });
    });
}

fn condition(type_: &str, status: &str, reason: &str, message: String) -> serde_json::Value {
    json!({"type": type_, "status": status, "lastTransitionTime": component_base::time_now(), "reason": reason, "message": message})
}

impl Controller {
    async fn namespaced_resources(&self) -> Result<Vec<ApiResource>, kube::Error> {
        let discovery = Discovery::new(self.ctx.client.clone()).run().await?;
        let mut out = Vec::new();
        for g in discovery.groups() {
            for (ar, caps) in g.recommended_resources() {
                if caps.scope == Scope::Namespaced
                    && caps.supports_operation(verbs::LIST)
                    && caps.supports_operation(verbs::DELETE)
                {
                    out.push(ar);
                }
            }
        }
        Ok(out)
    }

    async fn sync(&self, name: &str) -> SyncResult {
        let Some(ns) = self.namespaces.get(name) else { return Ok(None) };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(None);
        }
        let uid = ns.metadata.uid.clone();
        let resources = self.namespaced_resources().await?;
        let mut remaining: BTreeMap<String, usize> = BTreeMap::new();
        let mut finalizers: BTreeMap<String, usize> = BTreeMap::new();
        let mut failures = Vec::new();
        for ar in &resources {
            let api: Api<DynamicObject> = Api::namespaced_with(self.ctx.client.clone(), name, ar);
            let deleted = api.delete_collection(&DeleteParams::background(), &ListParams::default()).await;
            if let Err(e) = &deleted {
                if !matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 405) {
                    failures.push(format!("{}: {e}", ar.plural));
                }
            }
            match api.list_metadata(&ListParams::default()).await {
                Ok(list) if !list.items.is_empty() => {
                    let key =
                        if ar.group.is_empty() { ar.plural.clone() } else { format!("{}.{}", ar.plural, ar.group) };
                    remaining.insert(key, list.items.len());
                    for o in &list.items {
                        for f in o.metadata.finalizers.iter().flatten() {
                            *finalizers.entry(f.clone()).or_default() += 1;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => failures.push(format!("{}: {e}", ar.plural)),
            }
        }
        let mut conditions = vec![
            condition(
                "NamespaceDeletionDiscoveryFailure",
                "False",
                "ResourcesDiscovered",
                "All resources successfully discovered".into(),
            ),
            condition(
                "NamespaceDeletionGroupVersionParsingFailure",
                "False",
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed".into(),
            ),
        ];
        conditions.push(if failures.is_empty() {
            condition(
                "NamespaceDeletionContentFailure",
                "False",
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".into(),
            )
        } else {
            condition(
                "NamespaceDeletionContentFailure",
                "True",
                "ContentDeletionFailed",
                format!("Failed to delete all resource types, {} remaining: {}", failures.len(), failures.join(", ")),
            )
        });
        conditions.push(if remaining.is_empty() {
            condition("NamespaceContentRemaining", "False", "ContentRemoved", "All content successfully removed".into())
        } else {
            let parts: Vec<String> = remaining.iter().map(|(r, n)| format!("{r} has {n} resource instances")).collect();
            condition(
                "NamespaceContentRemaining",
                "True",
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", parts.join(", ")),
            )
        });
        conditions.push(if finalizers.is_empty() {
            condition(
                "NamespaceFinalizersRemaining",
                "False",
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".into(),
            )
        } else {
            let parts: Vec<String> = finalizers.iter().map(|(f, n)| format!("{f} in {n} resource instances")).collect();
            condition(
                "NamespaceFinalizersRemaining",
                "True",
                "SomeFinalizersRemain",
                format!("Some content in the namespace has finalizers remaining: {}", parts.join(", ")),
            )
        });
        let api: Api<Namespace> = Api::all(self.ctx.client.clone());
        let old: Vec<(String, String, String)> = ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| {
                cs.iter().map(|c| (c.type_.clone(), c.status.clone(), c.message.clone().unwrap_or_default())).collect()
            })
            .unwrap_or_default();
        let new: Vec<(String, String, String)> = conditions
            .iter()
            .map(|c| {
                (
                    c["type"].as_str().unwrap_or("").into(),
                    c["status"].as_str().unwrap_or("").into(),
                    c["message"].as_str().unwrap_or("").into(),
                )
            })
            .collect();
        if old != new {
            let _ = super::update_with(
                &api,
                &ns,
                &json!({"status": {"phase": "Terminating", "conditions": conditions}}),
                true,
            )
            .await;
        }
        if !failures.is_empty() {
            return Err(SyncError::Other(failures.join("; ")));
        }
        if !remaining.is_empty() {
            return Ok(Some(Duration::from_secs(if finalizers.is_empty() { 1 } else { 5 })));
        }
        // Everything is gone: the kubernetes finalizer can go.
        let Some(current) = api.get_opt(name).await? else { return Ok(None) };
        if current.metadata.uid != uid {
            return Ok(None);
        }
        let fins: Vec<String> = current.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
        if !fins.iter().any(|f| f == "kubernetes") {
            return Ok(None);
        }
        let mut body = current.clone();
        body.spec.get_or_insert_with(Default::default).finalizers =
            Some(fins.into_iter().filter(|f| f != "kubernetes").collect());
        match api.replace_subresource("finalize", name, &PostParams::default(), &body).await {
            Ok(_) => Ok(None),
            Err(e) if super::has_code(&e, &[404]) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
