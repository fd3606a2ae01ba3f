//! The ReplicaSet and ReplicationController controllers (one implementation, as upstream's): keep
//! `spec.replicas` active pods matching the selector, adopting matching orphans and releasing pods
//! that stop matching, creating in slow-start batches (1, 2, 4, ...) and deleting the pods upstream's
//! ranking puts first (unscheduled, pending, not ready, lower deletion cost, doubled up, restarted
//! more, newer). Expectations keep a sync from acting again before the informer has seen its own
//! creates and deletes.

use super::{controller_of, controller_ref, pod_is_active, pod_is_available, pod_is_ready, run_workers, SyncResult};
use crate::context::{Context, EventRecorder};
use component_base::informer::{key_of, split_key, Change, Informer};
use component_base::workqueue::WorkQueue;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Resource;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What differs between ReplicaSets and ReplicationControllers.
pub trait ReplicaKind:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const CONTROLLER: &'static str;
    /// `status.terminatingReplicas` exists (ReplicaSets only).
    const COUNTS_TERMINATING: bool;
    fn informer(ctx: &Context) -> Arc<Informer<Self>>;
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn selects(&self, labels: &Option<BTreeMap<String, String>>) -> bool;
    fn selector_is_empty(&self) -> bool;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn status_json(&self) -> Value;
}

impl ReplicaKind for ReplicaSet {
    const CONTROLLER: &'static str = "replicaset-controller";
    const COUNTS_TERMINATING: bool = true;
    fn informer(ctx: &Context) -> Arc<Informer<Self>> {
        ctx.replicasets()
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn selects(&self, labels: &Option<BTreeMap<String, String>>) -> bool {
        self.spec
            .as_ref()
            .is_some_and(|s| !super::selector_is_empty(&s.selector) && super::selector_matches(&s.selector, labels))
    }
    fn selector_is_empty(&self) -> bool {
        self.spec.as_ref().is_none_or(|s| super::selector_is_empty(&s.selector))
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

impl ReplicaKind for ReplicationController {
    const CONTROLLER: &'static str = "replication-controller";
    const COUNTS_TERMINATING: bool = false;
    fn informer(ctx: &Context) -> Arc<Informer<Self>> {
        ctx.rcs()
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn selects(&self, labels: &Option<BTreeMap<String, String>>) -> bool {
        let Some(sel) = self.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty()) else {
            return false;
        };
        let labels = labels.clone().unwrap_or_default();
        sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
    fn selector_is_empty(&self) -> bool {
        self.spec.as_ref().and_then(|s| s.selector.as_ref()).is_none_or(|s| s.is_empty())
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

const BURST_REPLICAS: usize = 500;
const EXPECTATIONS_TTL: Duration = Duration::from_secs(5 * 60);

/// client-go's controller expectations: creations still to be seen, and the pods whose deletion is.
/// Per owner: creations still expected, pods whose deletion is expected, and since when.
type Expected = (i64, HashSet<String>, Instant);

#[derive(Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Expected>>,
}

impl Expectations {
    pub fn satisfied(&self, key: &str) -> bool {
        match self.inner.lock().unwrap().get(key) {
            None => true,
            Some((adds, dels, at)) => (*adds <= 0 && dels.is_empty()) || at.elapsed() > EXPECTATIONS_TTL,
        }
    }
    pub fn expect(&self, key: &str, adds: i64, dels: HashSet<String>) {
        self.inner.lock().unwrap().insert(key.to_string(), (adds, dels, Instant::now()));
    }
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.inner.lock().unwrap().get_mut(key) {
            e.0 -= 1;
        }
    }
    pub fn deletion_observed(&self, key: &str, pod: &str) {
        if let Some(e) = self.inner.lock().unwrap().get_mut(key) {
            e.1.remove(pod);
        }
    }
    pub fn forget(&self, key: &str) {
        self.inner.lock().unwrap().remove(key);
    }
}

struct Controller<K: ReplicaKind> {
    ctx: Arc<Context>,
    owners: Arc<Informer<K>>,
    pods: Arc<Informer<Pod>>,
    queue: WorkQueue<String>,
    expectations: Expectations,
    events: EventRecorder,
}

pub fn start_replicasets(ctx: &Arc<Context>) {
    start::<ReplicaSet>(ctx, ctx.flags.concurrent_replicaset_syncs);
}

pub fn start_rcs(ctx: &Arc<Context>) {
    start::<ReplicationController>(ctx, ctx.flags.concurrent_rc_syncs);
}

fn start<K: ReplicaKind>(ctx: &Arc<Context>, workers: usize) {
    let c = Arc::new(Controller::<K> {
        ctx: ctx.clone(),
        owners: K::informer(ctx),
        pods: ctx.pods(),
        queue: WorkQueue::new(if K::CONTROLLER == "replicaset-controller" {
            "replicaset"
        } else {
            "replicationmanager"
        }),
        expectations: Expectations::default(),
        events: ctx.recorder(K::CONTROLLER),
    });
    let q = c.queue.clone();
    c.owners.add_handler(move |ch| q.add(key_of(ch.object().as_ref())));
    let weak = Arc::downgrade(&c);
    c.pods.add_handler(move |ch| {
        if let Some(c) = weak.upgrade() {
            c.pod_changed(ch);
        }
    });
    let c2 = c.clone();
    tokio::spawn(async move {
        c2.owners.wait_synced().await;
        c2.pods.wait_synced().await;
        let c3 = c2.clone();
        run_workers(c2.queue.clone(), workers, move |key| {
            let c = c3.clone();
            async move { c.sync(&key).await }
        });
    });
}

impl<K: ReplicaKind> Controller<K> {
    fn owner_key_of_pod(&self, pod: &Pod) -> Option<String> {
        let r = controller_of(&pod.metadata)?;
        if r.kind != K::kind(&()) {
            return None;
        }
        let key = format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), r.name);
        let owner = self.owners.get(&key)?;
        (owner.meta().uid.as_deref() == Some(r.uid.as_str())).then_some(key)
    }

    /// Owners that might adopt an orphan.
    fn matching_owners(&self, pod: &Pod) -> Vec<String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        self.owners
            .list_namespace(ns)
            .iter()
            .filter(|o| o.selects(&pod.metadata.labels))
            .map(|o| key_of(o.as_ref()))
            .collect()
    }

    fn pod_changed(&self, ch: &Change<Pod>) {
        match ch {
            Change::Added(p) => {
                if p.metadata.deletion_timestamp.is_some() {
                    if let Some(k) = self.owner_key_of_pod(p) {
                        self.expectations.deletion_observed(&k, &key_of(p.as_ref()));
                        self.queue.add(k);
                    }
                    return;
                }
                match self.owner_key_of_pod(p) {
                    Some(k) => {
                        self.expectations.creation_observed(&k);
                        self.queue.add(k);
                    }
                    None if controller_of(&p.metadata).is_none() => {
                        for k in self.matching_owners(p) {
                            self.queue.add(k);
                        }
                    }
                    None => {}
                }
            }
            Change::Updated { old, new } => {
                if new.metadata.deletion_timestamp.is_some() && old.metadata.deletion_timestamp.is_none() {
                    if let Some(k) = self.owner_key_of_pod(new) {
                        self.expectations.deletion_observed(&k, &key_of(new.as_ref()));
                    }
                }
                let (ok, nk) = (self.owner_key_of_pod(old), self.owner_key_of_pod(new));
                if ok != nk {
                    if let Some(k) = ok {
                        self.queue.add(k);
                    }
                }
                match nk {
                    Some(k) => {
                        self.queue.add(k.clone());
                        // A pod that just became ready counts as available after minReadySeconds.
                        if let Some(o) = self.owners.get(&k) {
                            if !pod_is_ready(old) && pod_is_ready(new) && o.min_ready_seconds() > 0 {
                                self.queue.add_after(k, Duration::from_secs(o.min_ready_seconds() as u64 + 1));
                            }
                        }
                    }
                    None if controller_of(&new.metadata).is_none()
                        && (old.metadata.labels != new.metadata.labels || controller_of(&old.metadata).is_some()) =>
                    {
                        for k in self.matching_owners(new) {
                            self.queue.add(k);
                        }
                    }
                    None => {}
                }
            }
            Change::Deleted(p) => {
                if let Some(r) = controller_of(&p.metadata).filter(|r| r.kind == K::kind(&())) {
                    let k = format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or(""), r.name);
                    self.expectations.deletion_observed(&k, &key_of(p.as_ref()));
                    self.queue.add(k);
                }
            }
        }
    }

    fn pods_api(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    /// Adopts matching orphans and releases owned pods that no longer match; returns the pods owned.
    async fn claim_pods(&self, owner: &K, ns: &str) -> Result<Vec<Arc<Pod>>, kube::Error> {
        let uid = owner.meta().uid.clone().unwrap_or_default();
        let mut owned = Vec::new();
        for p in self.pods.list_namespace(ns) {
            let matches = owner.selects(&p.metadata.labels);
            match controller_of(&p.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        owned.push(p);
                    } else if owner.meta().deletion_timestamp.is_none() {
                        let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}], "uid": p.metadata.uid}});
                        match self
                            .pods_api(ns)
                            .patch(
                                p.metadata.name.as_deref().unwrap_or(""),
                                &PatchParams::default(),
                                &Patch::Strategic(&patch),
                            )
                            .await
                        {
                            Ok(_) => {}
                            Err(e) if super::has_code(&e, &[404]) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                None if matches && pod_is_active(&p) && owner.meta().deletion_timestamp.is_none() => {
                    let r = controller_ref(owner);
                    let patch = json!({"metadata": {"ownerReferences": [r], "uid": p.metadata.uid}});
                    match self
                        .pods_api(ns)
                        .patch(
                            p.metadata.name.as_deref().unwrap_or(""),
                            &PatchParams::default(),
                            &Patch::Strategic(&patch),
                        )
                        .await
                    {
                        Ok(adopted) => owned.push(Arc::new(adopted)),
                        Err(e) if super::has_code(&e, &[404, 422]) => {}
                        Err(e) => return Err(e),
                    }
                }
                _ => {}
            }
        }
        Ok(owned)
    }

    async fn sync(&self, key: &str) -> SyncResult {
        let (ns, _) = split_key(key);
        let ns = ns.unwrap_or("");
        let Some(owner) = self.owners.get(key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        if owner.selector_is_empty() {
            self.events
                .warning(owner.as_ref(), "SelectingAll", "This controller is selecting all pods. Skipping sync.".into())
                .await;
            return Ok(None);
        }
        let needs_sync = self.expectations.satisfied(key) && owner.meta().deletion_timestamp.is_none();
        let claimed = self.claim_pods(&owner, ns).await?;
        let active: Vec<Arc<Pod>> = claimed.iter().filter(|p| pod_is_active(p)).cloned().collect();
        let mut failure = None;
        if needs_sync {
            failure = self.manage_replicas(&owner, &active, ns, key).await.err();
        }
        let after = self.update_status(&owner, &claimed, &active, failure.as_deref()).await?;
        match failure {
            Some(e) => Err(super::SyncError::Other(e)),
            None => Ok(after),
        }
    }

    fn new_pod(&self, owner: &K, ns: &str) -> Pod {
        let name = owner.meta().name.clone().unwrap_or_default();
        let template = owner.template().cloned().unwrap_or_default();
        let tm = template.metadata.unwrap_or_default();
        Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: Some(ns.into()),
                labels: tm.labels,
                annotations: tm.annotations,
                finalizers: tm.finalizers,
                owner_references: Some(vec![controller_ref(owner)]),
                ..Default::default()
            },
            spec: template.spec,
            status: None,
        }
    }

    async fn manage_replicas(&self, owner: &K, active: &[Arc<Pod>], ns: &str, key: &str) -> Result<(), String> {
        let diff = active.len() as i64 - owner.replicas() as i64;
        if diff < 0 {
            let want = ((-diff) as usize).min(BURST_REPLICAS);
            self.expectations.expect(key, want as i64, HashSet::new());
            let mut created = 0usize;
            let mut batch = 1usize;
            let mut error = None;
            while created < want {
                let n = batch.min(want - created);
                let pod = self.new_pod(owner, ns);
                let api = self.pods_api(ns);
                let results = futures::future::join_all((0..n).map(|_| {
                    let api = api.clone();
                    let pod = pod.clone();
                    async move { api.create(&PostParams::default(), &pod).await }
                }))
                .await;
                for r in results {
                    match r {
                        Ok(p) => {
                            self.events
                                .normal(
                                    owner,
                                    "SuccessfulCreate",
                                    format!("Created pod: {}", p.metadata.name.unwrap_or_default()),
                                )
                                .await;
                        }
                        Err(e) => {
                            self.expectations.creation_observed(key);
                            let forbidden_ns = matches!(&e, kube::Error::Api(s) if s.code == 403 && s.message.contains("being terminated"));
                            if !forbidden_ns {
                                self.events.warning(owner, "FailedCreate", format!("Error creating: {e}")).await;
                            }
                            error.get_or_insert(e.to_string());
                        }
                    }
                }
                created += n;
                if error.is_some() {
                    // The rest of this sync's creations will not happen: stop expecting them.
                    for _ in created..want {
                        self.expectations.creation_observed(key);
                    }
                    break;
                }
                batch *= 2;
            }
            return error.map_or(Ok(()), Err);
        }
        if diff > 0 {
            let n = (diff as usize).min(BURST_REPLICAS);
            let victims = pods_to_delete(active, &self.pods.list_namespace(ns), n);
            let names: HashSet<String> = victims.iter().map(|p| key_of(p.as_ref())).collect();
            self.expectations.expect(key, 0, names);
            let mut error = None;
            for p in victims {
                let name = p.metadata.name.clone().unwrap_or_default();
                match self.pods_api(ns).delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {
                        self.events.normal(owner, "SuccessfulDelete", format!("Deleted pod: {name}")).await;
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        self.expectations.deletion_observed(key, &key_of(p.as_ref()));
                    }
                    Err(e) => {
                        self.expectations.deletion_observed(key, &key_of(p.as_ref()));
                        self.events.warning(owner, "FailedDelete", format!("Error deleting: {e}")).await;
                        error.get_or_insert(e.to_string());
                    }
                }
            }
            return error.map_or(Ok(()), Err);
        }
        Ok(())
    }

    async fn update_status(
        &self,
        owner: &K,
        claimed: &[Arc<Pod>],
        active: &[Arc<Pod>],
        failure: Option<&str>,
    ) -> SyncResult {
        let template_labels =
            owner.template().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
        let fully = active
            .iter()
            .filter(|p| {
                let l = p.metadata.labels.clone().unwrap_or_default();
                template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
            })
            .count();
        let ready = active.iter().filter(|p| pod_is_ready(p)).count();
        let min_ready = owner.min_ready_seconds();
        let available = active.iter().filter(|p| pod_is_available(p, min_ready)).count();
        let terminating = claimed.iter().filter(|p| p.metadata.deletion_timestamp.is_some()).count();
        let nz = |n: usize| if n == 0 { Value::Null } else { json!(n) };
        let old = owner.status_json();
        let mut conditions = old.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("ReplicaFailure"));
        if let Some(f) = failure {
            let reason = if f.contains("Delete") || f.contains("delete") { "FailedDelete" } else { "FailedCreate" };
            conditions.push(json!({"type": "ReplicaFailure", "status": "True", "reason": reason, "message": f, "lastTransitionTime": component_base::time_now()}));
        }
        let status = json!({
            "replicas": active.len(),
            "fullyLabeledReplicas": nz(fully),
            "readyReplicas": nz(ready),
            "availableReplicas": nz(available),
            "terminatingReplicas": if K::COUNTS_TERMINATING { json!(terminating) } else { Value::Null },
            "observedGeneration": owner.meta().generation,
            "conditions": if conditions.is_empty() { Value::Null } else { Value::Array(conditions) },
        });
        let same = [
            "replicas",
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "terminatingReplicas",
            "observedGeneration",
            "conditions",
        ]
        .iter()
        .all(|k| {
            let want = status.get(*k).filter(|v| !v.is_null());
            let have = old.get(*k).filter(|v| !v.is_null());
            match (*k, want, have) {
                ("replicas", Some(w), None) => w == &json!(0),
                (_, w, h) => w == h,
            }
        });
        if !same {
            let api: Api<K> = Api::namespaced(self.ctx.client.clone(), owner.meta().namespace.as_deref().unwrap_or(""));
            match super::update_with(&api, owner, &json!({"status": status}), true).await {
                Ok(_) => {}
                Err(e) if super::has_code(&e, &[404]) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if min_ready > 0 && ready != available {
            return Ok(Some(Duration::from_secs(min_ready as u64)));
        }
        Ok(None)
    }
}

fn phase_rank(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1,
    }
}

fn deletion_cost(p: &Pod) -> i64 {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// The `n` pods upstream deletes first when scaling down (`getPodsToDelete` with ranks).
pub fn pods_to_delete(active: &[Arc<Pod>], related: &[Arc<Pod>], n: usize) -> Vec<Arc<Pod>> {
    let mut on_node: HashMap<String, usize> = HashMap::new();
    for p in related.iter().filter(|p| pod_is_active(p)) {
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            *on_node.entry(node).or_default() += 1;
        }
    }
    let rank =
        |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).and_then(|n| on_node.get(n)).copied().unwrap_or(0);
    let mut pods: Vec<Arc<Pod>> = active.to_vec();
    pods.sort_by(|a, b| {
        let assigned = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| !n.is_empty());
        assigned(a)
            .cmp(&assigned(b))
            .then(phase_rank(a).cmp(&phase_rank(b)))
            .then(pod_is_ready(a).cmp(&pod_is_ready(b)))
            .then(deletion_cost(a).cmp(&deletion_cost(b)))
            .then(rank(b).cmp(&rank(a)))
            .then(restarts(b).cmp(&restarts(a)))
            .then(
                b.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .cmp(&a.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            )
    });
    pods.truncate(n);
    pods
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(PodSpec { node_name: node.map(String::from), ..Default::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn deletion_ranking_as_upstream() {
        let pods = vec![
            pod("running-ready", Some("n1"), "Running", true),
            pod("unscheduled", None, "Pending", false),
            pod("running-not-ready", Some("n2"), "Running", false),
            pod("pending", Some("n3"), "Pending", false),
        ];
        let order: Vec<String> =
            pods_to_delete(&pods, &pods, 4).iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert_eq!(order, ["unscheduled", "pending", "running-not-ready", "running-ready"]);
    }

    #[test]
    fn expectations_wait_for_observations() {
        let e = Expectations::default();
        assert!(e.satisfied("a"));
        e.expect("a", 2, HashSet::new());
        assert!(!e.satisfied("a"));
        e.creation_observed("a");
        e.creation_observed("a");
        assert!(e.satisfied("a"));
        e.expect("a", 0, ["ns/p".to_string()].into_iter().collect());
        assert!(!e.satisfied("a"));
        e.deletion_observed("a", "ns/p");
        assert!(e.satisfied("a"));
    }
}
