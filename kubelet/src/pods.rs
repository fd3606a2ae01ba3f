//! The pod manager: watches the pods bound to this node, runs one worker per pod, wakes workers
//! when their containers change (a relist of the runtime every second, upstream's PLEG), and
//! removes what the runtime has of pods that no longer exist.

use crate::kubelet::Kubelet;
use crate::worker::Worker;
use component_base::informer::{Change, Informer};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

struct Handle {
    pod: watch::Sender<Option<Arc<Pod>>>,
    kick: Arc<Notify>,
    /// Admitted to run here (pods this kubelet started before, and new ones that passed
    /// admission); only these count against the node's resources and ports.
    admitted: bool,
}

pub struct Manager {
    k: Arc<Kubelet>,
    workers: Mutex<HashMap<String, Handle>>,
    /// One admission at a time, so that each sees the pods admitted before it.
    admitting: tokio::sync::Mutex<()>,
}

impl Manager {
    pub fn update(self: &Arc<Self>, c: &Change<Pod>) {
        let pod = c.object().clone();
        // A mirror pod only reflects a static pod, whose worker runs from the manifest file.
        if crate::static_pods::is_mirror(&pod) {
            return;
        }
        let Some(uid) = pod.metadata.uid.clone() else { return };
        let mut workers = self.workers.lock().unwrap();
        match c {
            Change::Deleted(_) => {
                if let Some(h) = workers.get(&uid) {
                    h.pod.send_replace(None);
                }
            }
            _ => match workers.get(&uid) {
                Some(h) => {
                    // The worker wakes for changes others made, not for the status it wrote itself
                    // (as upstream's config source ignores status-only updates); the latest copy is
                    // kept either way.
                    h.pod.send_if_modified(|cur| {
                        let wake = cur.as_ref().is_none_or(|old| differs(old, &pod));
                        *cur = Some(pod);
                        wake
                    });
                }
                None => {
                    // A pod that already started (before a kubelet restart) or ended is not
                    // admitted again.
                    let status = pod.status.as_ref();
                    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
                    let admitted =
                        status.is_some_and(|s| s.start_time.is_some()) || phase == "Succeeded" || phase == "Failed";
                    let (tx, rx) = watch::channel(Some(pod));
                    let kick = Arc::new(Notify::new());
                    workers.insert(uid.clone(), Handle { pod: tx, kick: kick.clone(), admitted });
                    tokio::spawn(run_worker(self.clone(), uid, rx, kick));
                }
            },
        }
    }

    pub fn kick(&self, uid: &str) {
        if let Some(h) = self.workers.lock().unwrap().get(uid) {
            h.kick.notify_one();
        }
    }

    /// The admitted pods with a worker that are neither terminal nor being deleted.
    pub fn active_pods(&self) -> Vec<Arc<Pod>> {
        self.workers
            .lock()
            .unwrap()
            .values()
            .filter(|h| h.admitted)
            .filter_map(|h| h.pod.borrow().clone())
            .filter(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
                p.metadata.deletion_timestamp.is_none() && phase != "Succeeded" && phase != "Failed"
            })
            .collect()
    }

    /// Every pod with a worker.
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.workers.lock().unwrap().values().filter_map(|h| h.pod.borrow().clone()).collect()
    }

    fn admitted(&self, uid: &str) -> bool {
        self.workers.lock().unwrap().get(uid).is_some_and(|h| h.admitted)
    }

    /// Runs admission for a new pod against the pods admitted before it; an admitted pod is
    /// marked so. When only node affinity fails, the Node is read again first (its labels may have
    /// changed since the last status update), as upstream does.
    async fn admit(&self, pod: &Pod) -> Result<(), crate::admission::Rejection> {
        let _one = self.admitting.lock().await;
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        let others: Vec<Arc<Pod>> =
            self.active_pods().into_iter().filter(|p| p.metadata.uid.as_deref() != Some(uid)).collect();
        let check = |node: &k8s_openapi::api::core::v1::Node| {
            crate::admission::admit(
                pod,
                &crate::admission::Inputs {
                    node,
                    pressure: self.k.pressures(),
                    others: &others,
                    allowed_unsafe_sysctls: &self.k.config.allowed_unsafe_sysctls,
                },
            )
        };
        let mut result = check(&self.k.node());
        if result.as_ref().is_err_and(|r| r.reason == "NodeAffinity") {
            let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.k.client.clone());
            if let Ok(n) = nodes.get(&self.k.config.node_name).await {
                self.k.set_node(&n);
                result = check(&n);
            }
        }
        if result.is_ok() {
            if let Some(h) = self.workers.lock().unwrap().get_mut(uid) {
                h.admitted = true;
            }
        }
        result
    }

    fn known(&self, uid: &str) -> bool {
        self.workers.lock().unwrap().contains_key(uid)
    }
}

/// Whether `new` differs from `old` in more than its status written by this kubelet.
fn differs(old: &Pod, new: &Pod) -> bool {
    let (a, b) = (&old.metadata, &new.metadata);
    old.spec != new.spec
        || a.deletion_timestamp != b.deletion_timestamp
        || a.deletion_grace_period_seconds != b.deletion_grace_period_seconds
        || a.labels != b.labels
        || a.annotations != b.annotations
        || old.status.as_ref().and_then(|s| s.phase.as_ref()) != new.status.as_ref().and_then(|s| s.phase.as_ref())
}

async fn run_worker(m: Arc<Manager>, uid: String, mut rx: watch::Receiver<Option<Arc<Pod>>>, kick: Arc<Notify>) {
    let mut w = Worker::new(m.k.clone(), uid.clone());
    let results = w.results.clone();
    let first = rx.borrow().clone();
    if let Some(pod) = first.filter(|p| p.metadata.deletion_timestamp.is_none() && !m.admitted(&uid)) {
        if let Err(r) = m.admit(&pod).await {
            tracing::info!(pod = %crate::worker::pod_ref(&pod), reason = %r.reason, message = %r.message, "pod rejected");
            w.rejected = Some(r);
        }
    }
    loop {
        let pod = rx.borrow_and_update().clone();
        let Some(pod) = pod else { break };
        let wait = w.sync(&pod).await;
        tokio::select! {
            r = rx.changed() => if r.is_err() { break },
            _ = kick.notified() => {}
            _ = results.changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // The pod is gone from the API: everything the runtime has of it goes too.
    remove_everything(&m.k, &uid).await;
    m.workers.lock().unwrap().remove(&uid);
    m.k.evictions.lock().unwrap().remove(&uid);
    tracing::info!(pod_uid = %uid, "pod removed from the node");
}

/// Removes what the node has of pod `uid`: sandboxes and containers, volumes, cgroups and logs.
async fn remove_everything(k: &Kubelet, uid: &str) {
    crate::runtime::remove_pod(k, uid).await;
    crate::volumes::teardown(k, uid);
    crate::cgroups::remove_pod(k, uid).await;
    remove_logs(k, uid);
}

/// The pod's log directory (`<podLogsDir>/<namespace>_<name>_<uid>`) goes with its containers.
fn remove_logs(k: &Kubelet, uid: &str) {
    let suffix = format!("_{uid}");
    for e in std::fs::read_dir(&k.config.pod_logs_dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().ends_with(&suffix) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

pub async fn run(k: Arc<Kubelet>) {
    let m = Arc::new(Manager { k: k.clone(), workers: Mutex::new(HashMap::new()), admitting: Default::default() });
    if let Some(dir) = k.config.static_pod_path.clone() {
        tokio::spawn(crate::static_pods::run(k.clone(), m.clone(), dir));
    }
    let api: Api<Pod> = Api::all(k.client.clone());
    let informer =
        Informer::start(api, watcher::Config::default().fields(&format!("spec.nodeName={}", k.config.node_name)));
    let mm = m.clone();
    informer.add_handler(move |c| mm.update(c));
    informer.wait_synced().await;
    tracing::info!(node = %k.config.node_name, pods = informer.list().len(), "pod informer synced");
    tokio::spawn(crate::eviction::run(k.clone(), m.clone()));
    tokio::spawn(crate::container_gc::run(k.clone(), m.clone()));
    let removing: Arc<Mutex<std::collections::HashSet<String>>> = Default::default();
    let mut last: HashMap<String, Vec<(String, i32)>> = HashMap::new();
    loop {
        match crate::runtime::relist(&k).await {
            Ok(now) => {
                for (uid, state) in &now {
                    if last.get(uid) != Some(state) {
                        m.kick(uid);
                    }
                    if !m.known(uid) && removing.lock().unwrap().insert(uid.clone()) {
                        // Orphaned: a pod deleted while the kubelet was away.
                        let k = k.clone();
                        let uid = uid.clone();
                        let removing = removing.clone();
                        tracing::info!(pod_uid = %uid, "removing sandboxes of a pod that no longer exists");
                        tokio::spawn(async move {
                            remove_everything(&k, &uid).await;
                            removing.lock().unwrap().remove(&uid);
                        });
                    }
                }
                last = now;
            }
            Err(e) => tracing::warn!(error = %e.message(), "relisting the runtime"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
