//! The garbage collector, as upstream's: a graph of owner references over every resource discovery
//! lists (metadata-only watches; rediscovered every 30s so new resources join), and three kinds of work:
//! - an object whose owners are all gone is deleted (with the policy its own finalizers ask for);
//!   owners that are gone are removed from an object that still has a live owner;
//! - an owner deleted with `propagationPolicy=Orphan` (the `orphan` finalizer) has its references
//!   removed from every dependent, then the finalizer removed;
//! - an owner deleted with `Foreground` (the `foregroundDeletion` finalizer) has its dependents deleted
//!   (themselves in the foreground when they have dependents); the finalizer goes once no dependent
//!   with `blockOwnerDeletion` remains.
//!
//! Owners that are not in the graph are looked up through the API before anything is deleted, so a
//! watch that is behind never causes a deletion.

use super::{run_workers, SyncError, SyncResult};
use crate::context::Context;
use component_base::workqueue::WorkQueue;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::PartialObjectMeta;
use kube::discovery::{verbs, ApiCapabilities, ApiResource, Discovery, Scope};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

#[derive(Clone, Debug)]
struct Node {
    api_version: String,
    kind: String,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    finalizers: Vec<String>,
    deleting: bool,
}

impl Node {
    fn deleting_dependents(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == FOREGROUND)
    }
    fn orphaning(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == ORPHAN)
    }
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    fn dependents_of(&self, uid: &str) -> Vec<(String, Node)> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d).map(|n| (d.clone(), n.clone())))
            .collect()
    }
}

struct Collector {
    ctx: Arc<Context>,
    graph: Mutex<Graph>,
    /// kind (`apps/v1 ReplicaSet`) -> resource, from discovery.
    resources: Mutex<HashMap<(String, String), (ApiResource, ApiCapabilities)>>,
    watched: Mutex<HashSet<String>>,
    synced: Mutex<HashMap<String, bool>>,
    delete_queue: WorkQueue<String>,
    orphan_queue: WorkQueue<String>,
}

pub fn start(ctx: &Arc<Context>) {
    let gc = Arc::new(Collector {
        ctx: ctx.clone(),
        graph: Mutex::new(Graph::default()),
        resources: Mutex::new(HashMap::new()),
        watched: Mutex::new(HashSet::new()),
        synced: Mutex::new(HashMap::new()),
        delete_queue: WorkQueue::new("garbage_collector_attempt_to_delete"),
        orphan_queue: WorkQueue::new("garbage_collector_attempt_to_orphan"),
    });
    let g = gc.clone();
    tokio::spawn(async move {
        loop {
            if let Err(e) = g.clone().discover().await {
                tracing::warn!(error = %e, "garbage collector discovery failed");
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    let g = gc.clone();
    tokio::spawn(async move {
        // Act only once every watched resource has been listed: an owner missing from a graph still
        // filling up is not a deleted owner.
        loop {
            let ready = {
                let s = g.synced.lock().unwrap();
                !s.is_empty() && s.values().all(|v| *v)
            };
            if ready {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let workers = g.ctx.flags.concurrent_gc_syncs;
        let d = g.clone();
        run_workers(g.delete_queue.clone(), workers, move |uid| {
            let g = d.clone();
            async move { g.attempt_to_delete(&uid).await }
        });
        let o = g.clone();
        run_workers(g.orphan_queue.clone(), workers.min(5), move |uid| {
            let g = o.clone();
            async move { g.attempt_to_orphan(&uid).await }
        });
    });
}

fn api_version_of(ar: &ApiResource) -> String {
    ar.api_version.clone()
}

impl Collector {
    async fn discover(self: Arc<Self>) -> Result<(), kube::Error> {
        let discovery = Discovery::new(self.ctx.client.clone()).run().await?;
        let mut found = Vec::new();
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                let ignored = ar.kind == "Event" && (ar.group.is_empty() || ar.group == "events.k8s.io");
                let usable = [verbs::LIST, verbs::WATCH, verbs::DELETE, verbs::GET, verbs::PATCH]
                    .iter()
                    .all(|v| caps.supports_operation(v));
                if !ignored && usable {
                    found.push((ar, caps));
                }
            }
        }
        {
            let mut r = self.resources.lock().unwrap();
            for (ar, caps) in &found {
                r.insert((api_version_of(ar), ar.kind.clone()), (ar.clone(), caps.clone()));
            }
        }
        for (ar, _) in found {
            let id = format!("{}/{}", ar.api_version, ar.plural);
            if self.watched.lock().unwrap().insert(id.clone()) {
                self.synced.lock().unwrap().insert(id.clone(), false);
                let me = self.clone();
                tokio::spawn(async move { me.watch(ar, id).await });
            }
        }
        Ok(())
    }

    async fn watch(self: Arc<Self>, ar: ApiResource, id: String) {
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(self.ctx.client.clone(), &ar);
        let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
        let mut relist: Option<HashSet<String>> = None;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Init) => relist = Some(HashSet::new()),
                Ok(Event::InitApply(o)) => {
                    if let (Some(r), Some(uid)) = (relist.as_mut(), o.metadata.uid.clone()) {
                        r.insert(uid);
                    }
                    self.upsert(&ar, o);
                }
                Ok(Event::InitDone) => {
                    if let Some(seen) = relist.take() {
                        // Objects of this kind that vanished while the watch was down.
                        let gone: Vec<String> = {
                            let g = self.graph.lock().unwrap();
                            g.nodes
                                .iter()
                                .filter(|(uid, n)| {
                                    n.kind == ar.kind && n.api_version == ar.api_version && !seen.contains(*uid)
                                })
                                .map(|(uid, _)| uid.clone())
                                .collect()
                        };
                        for uid in gone {
                            self.remove(&uid);
                        }
                    }
                    self.synced.lock().unwrap().insert(id.clone(), true);
                }
                Ok(Event::Apply(o)) => self.upsert(&ar, o),
                Ok(Event::Delete(o)) => {
                    if let Some(uid) = o.metadata.uid.clone() {
                        self.remove(&uid);
                    }
                }
                Err(e) => {
                    tracing::debug!(resource = %id, error = %e, "garbage collector watch failed, retrying");
                    // A resource that went away (a deleted CRD) is no longer waited for.
                    if matches!(&e, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404) {
                        self.synced.lock().unwrap().remove(&id);
                        self.watched.lock().unwrap().remove(&id);
                        return;
                    }
                }
            }
        }
    }

    fn upsert(&self, ar: &ApiResource, o: PartialObjectMeta<DynamicObject>) {
        let m = o.metadata;
        let Some(uid) = m.uid.clone() else { return };
        let node = Node {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
            namespace: m.namespace.clone(),
            name: m.name.clone().unwrap_or_default(),
            owners: m.owner_references.clone().unwrap_or_default(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
        };
        let mut enqueue_self = false;
        let mut enqueue_dependents = false;
        let mut enqueue_owners = Vec::new();
        {
            let mut g = self.graph.lock().unwrap();
            let old = g.nodes.insert(uid.clone(), node.clone());
            let old_owners: HashSet<String> =
                old.as_ref().map(|o| o.owners.iter().map(|r| r.uid.clone()).collect()).unwrap_or_default();
            let new_owners: HashSet<String> = node.owners.iter().map(|r| r.uid.clone()).collect();
            for gone in old_owners.difference(&new_owners) {
                if let Some(d) = g.dependents.get_mut(gone) {
                    d.remove(&uid);
                }
                // An owner waiting for its dependents may be done now.
                enqueue_owners.push(gone.clone());
            }
            for added in new_owners.difference(&old_owners) {
                g.dependents.entry(added.clone()).or_default().insert(uid.clone());
            }
            // A new object, or changed owners: check whether its owners still exist.
            if !node.owners.is_empty() && (old.is_none() || old_owners != new_owners) {
                enqueue_self = true;
            }
            if node.deleting_dependents() {
                enqueue_self = true;
                enqueue_dependents = true;
            }
            if node.deleting {
                // Owners waiting for this dependent's deletion look again.
                enqueue_owners.extend(node.owners.iter().map(|r| r.uid.clone()));
            }
        }
        if node.orphaning() {
            self.orphan_queue.add(uid.clone());
        }
        if enqueue_self {
            self.delete_queue.add(uid.clone());
        }
        if enqueue_dependents {
            let deps = self.graph.lock().unwrap().dependents_of(&uid);
            for (d, _) in deps {
                self.delete_queue.add(d);
            }
        }
        for o in enqueue_owners {
            self.delete_queue.add(o);
        }
    }

    fn remove(&self, uid: &str) {
        let (dependents, owners) = {
            let mut g = self.graph.lock().unwrap();
            let Some(node) = g.nodes.remove(uid) else { return };
            for r in &node.owners {
                if let Some(d) = g.dependents.get_mut(&r.uid) {
                    d.remove(uid);
                }
            }
            let deps: Vec<String> = g.dependents.get(uid).into_iter().flatten().cloned().collect();
            (deps, node.owners.iter().map(|r| r.uid.clone()).collect::<Vec<_>>())
        };
        for d in dependents {
            self.delete_queue.add(d);
        }
        for o in owners {
            self.delete_queue.add(o);
        }
    }

    fn resource(&self, api_version: &str, kind: &str) -> Option<(ApiResource, ApiCapabilities)> {
        self.resources.lock().unwrap().get(&(api_version.to_string(), kind.to_string())).cloned()
    }

    fn api_for(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Option<Api<DynamicObject>> {
        let (ar, caps) = self.resource(api_version, kind)?;
        Some(match (caps.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.ctx.client.clone(), ns, &ar),
            (Scope::Namespaced, None) => return None,
            (Scope::Cluster, _) => Api::all_with(self.ctx.client.clone(), &ar),
        })
    }

    /// Whether the owner a reference names exists with that uid: from the graph, or asked of the API.
    async fn owner_state(&self, r: &OwnerReference, dependent_ns: Option<&str>) -> Result<Option<Node>, SyncError> {
        if let Some(n) = self.graph.lock().unwrap().nodes.get(&r.uid).cloned() {
            return Ok(Some(n));
        }
        let Some(api) = self.api_for(&r.api_version, &r.kind, dependent_ns) else {
            // A kind discovery does not know (yet): treat the owner as present, never delete on a guess.
            let known = self.resource(&r.api_version, &r.kind).is_some();
            return if known {
                Ok(None)
            } else {
                Err(SyncError::Other(format!("unknown owner kind {} {}", r.api_version, r.kind)))
            };
        };
        match api.get_metadata_opt(&r.name).await? {
            Some(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => Ok(Some(Node {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                namespace: o.metadata.namespace.clone(),
                name: r.name.clone(),
                owners: o.metadata.owner_references.clone().unwrap_or_default(),
                finalizers: o.metadata.finalizers.clone().unwrap_or_default(),
                deleting: o.metadata.deletion_timestamp.is_some(),
            })),
            _ => Ok(None),
        }
    }

    async fn attempt_to_delete(&self, uid: &str) -> SyncResult {
        let Some(node) = self.graph.lock().unwrap().nodes.get(uid).cloned() else { return Ok(None) };
        if node.deleting_dependents() {
            return self.process_deleting_dependents(uid, &node).await;
        }
        if node.deleting || node.owners.is_empty() {
            return Ok(None);
        }
        let mut solid = Vec::new();
        let mut dangling = Vec::new();
        let mut waiting = Vec::new();
        for r in &node.owners {
            match self.owner_state(r, node.namespace.as_deref()).await? {
                None => dangling.push(r.clone()),
                Some(o) if o.deleting_dependents() => waiting.push(r.clone()),
                Some(_) => solid.push(r.clone()),
            }
        }
        let Some(api) = self.api_for(&node.api_version, &node.kind, node.namespace.as_deref()) else { return Ok(None) };
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(None);
            }
            // Keep the object; drop the references to owners that are gone or going.
            let refs: Vec<serde_json::Value> =
                dangling.iter().chain(waiting.iter()).map(|r| json!({"$patch": "delete", "uid": r.uid})).collect();
            let patch = json!({"metadata": {"ownerReferences": refs, "uid": uid}});
            match api.patch(&node.name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                Ok(_) => return Ok(None),
                Err(e) if super::has_code(&e, &[404]) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        let has_dependents = !self.graph.lock().unwrap().dependents_of(uid).is_empty();
        let policy = if !waiting.is_empty() && has_dependents {
            PropagationPolicy::Foreground
        } else if node.finalizers.iter().any(|f| f == ORPHAN) {
            PropagationPolicy::Orphan
        } else if node.finalizers.iter().any(|f| f == FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::info!(kind = %node.kind, name = %node.name, namespace = ?node.namespace, ?policy, "deleting object whose owners are gone");
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&node.name, &dp).await {
            Ok(_) => Ok(None),
            Err(e) if super::has_code(&e, &[404, 409]) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// An owner deleted in the foreground: its blocking dependents go first, then its finalizer.
    async fn process_deleting_dependents(&self, uid: &str, node: &Node) -> SyncResult {
        let dependents = self.graph.lock().unwrap().dependents_of(uid);
        let blocking: Vec<&(String, Node)> = dependents
            .iter()
            .filter(|(_, d)| d.owners.iter().any(|r| r.uid == uid && r.block_owner_deletion == Some(true)))
            .collect();
        if blocking.is_empty() {
            self.remove_finalizer(node, uid, FOREGROUND).await?;
            return Ok(None);
        }
        for (d, n) in &blocking {
            if !n.deleting || n.deleting_dependents() {
                self.delete_queue.add(d.clone());
            }
        }
        // Dependents being deleted report back through the watch; look again in a while regardless.
        Ok(Some(Duration::from_secs(5)))
    }

    /// An owner deleted with the orphan policy: its dependents lose their reference to it, then the
    /// owner loses the `orphan` finalizer.
    async fn attempt_to_orphan(&self, uid: &str) -> SyncResult {
        let Some(node) = self.graph.lock().unwrap().nodes.get(uid).cloned() else { return Ok(None) };
        if !node.orphaning() {
            return Ok(None);
        }
        let dependents = self.graph.lock().unwrap().dependents_of(uid);
        for (duid, d) in dependents {
            let Some(api) = self.api_for(&d.api_version, &d.kind, d.namespace.as_deref()) else { continue };
            let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}], "uid": duid}});
            match api.patch(&d.name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                Ok(_) => {}
                Err(e) if super::has_code(&e, &[404, 422]) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.remove_finalizer(&node, uid, ORPHAN).await?;
        Ok(None)
    }

    /// Removes one finalizer with a compare-and-swap on the object's resourceVersion.
    async fn remove_finalizer(&self, node: &Node, uid: &str, finalizer: &str) -> Result<(), SyncError> {
        let Some(api) = self.api_for(&node.api_version, &node.kind, node.namespace.as_deref()) else { return Ok(()) };
        for _ in 0..5 {
            let Some(cur) = api.get_metadata_opt(&node.name).await? else { return Ok(()) };
            if cur.metadata.uid.as_deref() != Some(uid) {
                return Ok(());
            }
            let fins: Vec<String> = cur.metadata.finalizers.clone().unwrap_or_default();
            if !fins.iter().any(|f| f == finalizer) {
                return Ok(());
            }
            let rest: Vec<&String> = fins.iter().filter(|f| *f != finalizer).collect();
            let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": cur.metadata.resource_version}});
            match api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                Err(e) if super::has_code(&e, &[404]) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(SyncError::Other(format!("could not remove finalizer {finalizer} from {} {}", node.kind, node.name)))
    }
}
