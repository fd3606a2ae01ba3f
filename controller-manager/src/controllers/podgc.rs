//! The pod garbage collector, every 20s as upstream's: pods bound to nodes that no longer exist
//! (after a 40s quarantine) and terminating pods that never got a node are force-deleted, and
//! terminated pods beyond `--terminated-pod-gc-threshold` are deleted oldest first.

use super::has_code;
use crate::context::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const QUARANTINE: Duration = Duration::from_secs(40);

pub fn start(ctx: &Arc<Context>) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        ctx.pods().wait_synced().await;
        ctx.nodes().wait_synced().await;
        let mut missing_since: HashMap<String, Instant> = HashMap::new();
        loop {
            gc(&ctx, &mut missing_since).await;
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
    });
}

async fn force_delete(ctx: &Context, p: &Pod, reason: &str, message: &str) {
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let name = p.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    if !reason.is_empty() {
        let mut conds = p.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        conds.retain(|c| c.type_ != "DisruptionTarget");
        conds.push(k8s_openapi::api::core::v1::PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: Some(component_base::time_now()),
            ..Default::default()
        });
        let phase = match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Succeeded" | "Failed") => None,
            _ => Some("Failed"),
        };
        let mut status = json!({"conditions": conds});
        if let Some(ph) = phase {
            status["phase"] = json!(ph);
        }
        let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await;
    }
    match api.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await {
        Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), "pod garbage collected"),
        Err(e) if has_code(&e, &[404]) => {}
        Err(e) => tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "pod garbage collection failed"),
    }
}

async fn gc(ctx: &Context, missing_since: &mut HashMap<String, Instant>) {
    let pods = ctx.pods().list();
    // Terminated pods beyond the threshold, oldest first.
    let threshold = ctx.flags.terminated_pod_gc_threshold;
    if threshold > 0 {
        let mut terminated: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
            .collect();
        if terminated.len() > threshold {
            terminated.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            let excess = terminated.len() - threshold;
            for p in terminated.into_iter().take(excess) {
                force_delete(ctx, p, "", "").await;
            }
        }
    }
    // Pods on nodes that are gone.
    let mut still_missing = HashMap::new();
    for p in &pods {
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) else { continue };
        if ctx.nodes().get(&node).is_some() {
            continue;
        }
        let since = *missing_since.get(&node).unwrap_or(&Instant::now());
        still_missing.insert(node.clone(), since);
        if since.elapsed() >= QUARANTINE {
            force_delete(ctx, p, "DeletionByPodGC", "PodGC: node no longer exists").await;
        }
    }
    *missing_since = still_missing;
    // Terminating pods that were never scheduled.
    for p in &pods {
        let unscheduled = p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty);
        if unscheduled && p.metadata.deletion_timestamp.is_some() {
            force_delete(ctx, p, "", "").await;
        }
    }
}
