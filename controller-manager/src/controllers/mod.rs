//! The controllers, one module each, and what they share: the worker loop around a work queue,
//! owner references, pod readiness, selectors.

pub mod certificates;
pub mod deployment;
pub mod endpoints;
pub mod garbagecollector;
pub mod misc;
pub mod namespace;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod rootca;
pub mod serviceaccount;
pub mod tokens;
pub mod volume;

use crate::context::Context;
use component_base::workqueue::WorkQueue;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// (canonical name, aliases, enabled by default, start function).
type Start = fn(&Arc<Context>);
const CONTROLLERS: &[(&str, &[&str], bool, Start)] = &[
    ("replicaset-controller", &["replicaset"], true, replicaset::start_replicasets),
    ("replicationcontroller-controller", &["replicationcontroller"], true, replicaset::start_rcs),
    ("deployment-controller", &["deployment"], true, deployment::start),
    ("garbage-collector-controller", &["garbagecollector"], true, garbagecollector::start),
    ("namespace-controller", &["namespace"], true, namespace::start),
    ("serviceaccount-controller", &["serviceaccount"], true, serviceaccount::start),
    ("serviceaccount-token-controller", &["serviceaccount-token"], true, tokens::start),
    ("root-ca-certificate-publisher-controller", &["root-ca-cert-publisher"], true, rootca::start),
    ("endpoints-controller", &["endpoint"], true, endpoints::start_endpoints),
    ("endpointslice-controller", &["endpointslice"], true, endpoints::start_slices),
    ("endpointslice-mirroring-controller", &["endpointslicemirroring"], true, endpoints::start_mirroring),
    ("node-lifecycle-controller", &["nodelifecycle"], true, nodelifecycle::start),
    ("taint-eviction-controller", &["tainteviction"], true, nodelifecycle::start_taint_eviction),
    ("node-ipam-controller", &["nodeipam"], true, nodelifecycle::start_ipam),
    ("pod-garbage-collector-controller", &["podgc"], true, podgc::start),
    ("resourcequota-controller", &["resourcequota"], true, resourcequota::start),
    ("clusterrole-aggregation-controller", &["clusterrole-aggregation"], true, misc::start_clusterrole_aggregation),
    ("ttl-after-finished-controller", &["ttl-after-finished"], true, misc::start_ttl_after_finished),
    ("certificatesigningrequest-signing-controller", &["csrsigning"], true, certificates::start_signing),
    ("certificatesigningrequest-approving-controller", &["csrapproving"], true, certificates::start_approving),
    ("certificatesigningrequest-cleaner-controller", &["csrcleaner"], true, certificates::start_cleaner),
    (
        "legacy-serviceaccount-token-cleaner-controller",
        &["legacy-serviceaccount-token-cleaner"],
        true,
        tokens::start_cleaner,
    ),
    ("persistentvolume-binder-controller", &["persistentvolume-binder"], true, volume::start_binder),
    ("persistentvolumeclaim-protection-controller", &["pvc-protection"], true, volume::start_pvc_protection),
    ("persistentvolume-protection-controller", &["pv-protection"], true, volume::start_pv_protection),
    // Off by default, as upstream (kubeadm turns it on).
    ("token-cleaner-controller", &["tokencleaner"], false, misc::start_token_cleaner),
    ("bootstrap-signer-controller", &["bootstrapsigner"], false, misc::start_bootstrap_signer),
];

#[derive(Debug, thiserror::Error)]
#[error("--controllers: unknown controller {0:?}")]
pub struct UnknownController(String);

fn canonical(name: &str) -> Option<&'static str> {
    CONTROLLERS.iter().find(|(n, aliases, _, _)| *n == name || aliases.contains(&name)).map(|(n, _, _, _)| *n)
}

/// The controllers `--controllers` turns on: `*` is every default one, `name` adds, `-name` removes.
pub fn enabled(spec: &[String]) -> Result<Vec<&'static str>, UnknownController> {
    let star = spec.iter().any(|s| s == "*");
    let mut on: Vec<&'static str> = Vec::new();
    for (name, _, default, _) in CONTROLLERS {
        let named = spec.iter().any(|s| canonical(s) == Some(*name));
        let disabled = spec.iter().any(|s| s.strip_prefix('-').and_then(canonical) == Some(*name));
        if !disabled && (named || (star && *default)) {
            on.push(name);
        }
    }
    for s in spec {
        let bare = s.trim_start_matches('-');
        if bare != "*" && canonical(bare).is_none() {
            return Err(UnknownController(s.clone()));
        }
    }
    Ok(on)
}

/// Starts the enabled controllers, each with its own credentials under
/// `--use-service-account-credentials`. Failing to get a controller's credentials stops the manager,
/// as upstream's does.
pub async fn start(ctx: &Arc<Context>, enabled: &[&str]) -> Result<(), String> {
    for (name, _, _, f) in CONTROLLERS {
        if enabled.contains(name) {
            let own = ctx.for_controller(service_account(name)).await.map_err(|e| format!("{name}: {e}"))?;
            tracing::info!(controller = name, "starting controller");
            f(&own);
        }
    }
    Ok(())
}

/// The `kube-system` service account a controller runs as with `--use-service-account-credentials`
/// (upstream's names, which its bootstrap roles `system:controller:<name>` are bound to). The
/// service-account token controller keeps the manager's own credentials, as upstream's.
fn service_account(controller: &str) -> Option<&'static str> {
    Some(match controller {
        "replicaset-controller" => "replicaset-controller",
        "replicationcontroller-controller" => "replication-controller",
        "deployment-controller" => "deployment-controller",
        "garbage-collector-controller" => "generic-garbage-collector",
        "namespace-controller" => "namespace-controller",
        "serviceaccount-controller" => "service-account-controller",
        "root-ca-certificate-publisher-controller" => "root-ca-cert-publisher",
        "endpoints-controller" => "endpoint-controller",
        "endpointslice-controller" => "endpointslice-controller",
        "endpointslice-mirroring-controller" => "endpointslicemirroring-controller",
        "node-lifecycle-controller" | "node-ipam-controller" => "node-controller",
        "taint-eviction-controller" => "taint-eviction-controller",
        "pod-garbage-collector-controller" => "pod-garbage-collector",
        "resourcequota-controller" => "resourcequota-controller",
        "clusterrole-aggregation-controller" => "clusterrole-aggregation-controller",
        "ttl-after-finished-controller" => "ttl-after-finished-controller",
        "certificatesigningrequest-signing-controller"
        | "certificatesigningrequest-approving-controller"
        | "certificatesigningrequest-cleaner-controller" => "certificate-controller",
        "legacy-serviceaccount-token-cleaner-controller" => "legacy-service-account-token-cleaner",
        "persistentvolume-binder-controller" => "persistent-volume-binder",
        "persistentvolumeclaim-protection-controller" => "pvc-protection-controller",
        "persistentvolume-protection-controller" => "pv-protection-controller",
        "token-cleaner-controller" => "token-cleaner",
        "bootstrap-signer-controller" => "bootstrap-signer",
        _ => return None,
    })
}

/// Why a sync failed; the key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

/// Ok(Some(d)): synced, look again after `d`.
pub type SyncResult = Result<Option<Duration>, SyncError>;

/// `n` workers taking keys from `queue` and syncing them: failures come back rate-limited, successes
/// are forgotten, and a sync asking for it is queued again after its delay.
pub fn run_workers<F, Fut>(queue: WorkQueue<String>, n: usize, sync: F)
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = SyncResult> + Send + 'static,
{
    let sync = Arc::new(sync);
    for _ in 0..n.max(1) {
        let q = queue.clone();
        let sync = sync.clone();
        tokio::spawn(async move {
            while let Some(key) = q.get().await {
                match sync(key.clone()).await {
                    Ok(after) => {
                        q.forget(&key);
                        if let Some(d) = after {
                            q.add_after(key.clone(), d);
                        }
                    }
                    Err(e) => {
                        if q.num_requeues(&key) < 15 {
                            tracing::info!(queue = q.name(), key, error = %e, "sync failed, retrying");
                        } else {
                            tracing::warn!(queue = q.name(), key, error = %e, "sync keeps failing");
                        }
                        q.add_rate_limited(key.clone());
                    }
                }
                q.done(&key);
            }
        });
    }
}

/// The owner reference a controller puts on what it creates.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let m = owner.meta();
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: m.name.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The controlling owner reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true))
}

pub fn selector_matches(selector: &LabelSelector, labels: &Option<BTreeMap<String, String>>) -> bool {
    let Ok(v) = serde_json::to_value(selector) else { return false };
    match apimachinery::labels::Selector::from_label_selector(&v) {
        Ok(s) => {
            let l = labels.clone().unwrap_or_default();
            s.matches(&l)
        }
        Err(_) => false,
    }
}

/// An empty selector selects everything; controllers refuse it, as upstream's do.
pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector.match_expressions.as_ref().is_none_or(|m| m.is_empty())
}

pub fn pod_is_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    phase != "Succeeded" && phase != "Failed" && p.metadata.deletion_timestamp.is_none()
}

fn ready_condition(p: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

pub fn pod_is_ready(p: &Pod) -> bool {
    ready_condition(p).is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds` (upstream's `IsPodAvailable`).
pub fn pod_is_available(p: &Pod, min_ready_seconds: i32) -> bool {
    let Some(c) = ready_condition(p).filter(|c| c.status == "True") else { return false };
    if min_ready_seconds <= 0 {
        return true;
    }
    match &c.last_transition_time {
        Some(t) => {
            let ready_for = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
            ready_for.as_secs() >= min_ready_seconds as i64
        }
        None => false,
    }
}

/// Writes `obj` back with `patch` (a JSON merge patch) applied, by a PUT: to the `status` subresource
/// when `status` is true. Upstream's controllers update rather than patch, and their bootstrap roles
/// grant only `update` on what they write (`deployments/status`, `namespaces/status`, ...), so a
/// controller running with its own service account's credentials must do the same. The object's
/// resourceVersion guards the write: a stale object is a conflict, which the caller's queue retries.
pub async fn update_with<K>(
    api: &kube::Api<K>,
    obj: &K,
    patch: &serde_json::Value,
    status: bool,
) -> Result<K, kube::Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let mut v = serde_json::to_value(obj).map_err(kube::Error::SerdeError)?;
    json_patch::merge(&mut v, patch);
    let updated: K = serde_json::from_value(v).map_err(kube::Error::SerdeError)?;
    let pp = kube::api::PostParams::default();
    if status {
        api.replace_status(&name, &pp, &updated).await
    } else {
        api.replace(&name, &pp, &updated).await
    }
}

/// Whether an API error carries one of `codes`.
pub fn has_code(e: &kube::Error, codes: &[u16]) -> bool {
    matches!(e, kube::Error::Api(s) if codes.contains(&s.code))
}
