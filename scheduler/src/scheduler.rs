//! One scheduling cycle per pod: filter the nodes (from a rotating start, stopping at
//! `percentageOfNodesToScore`), score the feasible ones, pick the best (ties at random), assume the pod
//! on it and bind through `pods/binding` in the background. A pod that fits nowhere gets upstream's
//! `FailedScheduling` event and `PodScheduled=False` (`Unschedulable`), may preempt lower-priority pods
//! (`preemption`), and waits for a cluster event.

use crate::cache::{pod_host_ports, pod_requests, Cache, Resources};
use crate::cycle::PodFilters;
use crate::plugins::{self, Failure};
use crate::profile::{Profile, INTER_POD_AFFINITY, POD_TOPOLOGY_SPREAD};
use crate::queue::SchedulingQueue;
use component_base::informer::{key_of, split_key, Change, Informer};
use k8s_openapi::api::core::v1::{
    Binding, Namespace, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct Options {
    pub profiles: Vec<Profile>,
    pub percentage_of_nodes_to_score: Option<u32>,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

struct Metrics {
    attempts: prometheus::IntCounterVec,
    attempt_duration: prometheus::HistogramVec,
    pending: prometheus::IntGaugeVec,
    sli: prometheus::HistogramVec,
    preemption: prometheus::IntCounter,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let r = component_base::metrics::registry();
        let buckets = prometheus::exponential_buckets(0.001, 2.0, 15).expect("buckets");
        let m = Metrics {
            attempts: prometheus::IntCounterVec::new(
                prometheus::Opts::new("scheduler_schedule_attempts_total", "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem."),
                &["profile", "result"],
            )
            .expect("metric"),
            attempt_duration: prometheus::HistogramVec::new(
                prometheus::HistogramOpts::new("scheduler_scheduling_attempt_duration_seconds", "Scheduling attempt latency in seconds (scheduling algorithm + binding)").buckets(buckets.clone()),
                &["profile", "result"],
            )
            .expect("metric"),
            pending: prometheus::IntGaugeVec::new(
                prometheus::Opts::new("scheduler_pending_pods", "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods that the scheduler attempted to schedule and failed; 'gated' is the number of unschedulable pods that the scheduler never attempted to schedule because they are gated."),
                &["queue"],
            )
            .expect("metric"),
            sli: prometheus::HistogramVec::new(
                prometheus::HistogramOpts::new("scheduler_pod_scheduling_sli_duration_seconds", "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts.").buckets(buckets),
                &["attempts"],
            )
            .expect("metric"),
            preemption: prometheus::IntCounter::new("scheduler_preemption_attempts_total", "Total preemption attempts in the cluster till now").expect("metric"),
        };
        let _ = r.register(Box::new(m.attempts.clone()));
        let _ = r.register(Box::new(m.attempt_duration.clone()));
        let _ = r.register(Box::new(m.pending.clone()));
        let _ = r.register(Box::new(m.sli.clone()));
        let _ = r.register(Box::new(m.preemption.clone()));
        m
    })
}

/// How preemption ended for a pod that fits nowhere.
enum Preemption {
    /// Victims are being evicted; the pod waits for them on its nominated node.
    Nominated,
    NotEligible(&'static str),
    NoCandidate,
}

pub struct Scheduler {
    client: kube::Client,
    opts: Options,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    /// Namespace labels, for affinity terms' `namespaceSelector`.
    namespaces: Arc<Informer<Namespace>>,
    /// PodDisruptionBudgets, which preemption avoids breaking.
    pdbs: Arc<Informer<PodDisruptionBudget>>,
    /// What VolumeRestrictions and VolumeBinding read.
    claims: Arc<Informer<PersistentVolumeClaim>>,
    volumes: Arc<Informer<PersistentVolume>>,
    classes: Arc<Informer<StorageClass>>,
    /// Volumes chosen for a pod whose binding is in flight (volume → pod), which no other pod may pick.
    reserved: Mutex<BTreeMap<String, String>>,
    /// Pending pods nominated to a node by a preemption (`status.nominatedNodeName`): (node, priority,
    /// requests). Pods of lower priority must not take the room made for them.
    nominated: Mutex<BTreeMap<String, (String, i32, Resources)>>,
    cache: Mutex<Cache>,
    queue: SchedulingQueue,
    next_start: AtomicUsize,
    first_seen: Mutex<BTreeMap<String, Instant>>,
    /// Events are written in the background, in order, one at a time, as client-go's broadcaster
    /// writes them (dropped past 1000 queued): a binding never waits for its event.
    recorder: component_base::events::EventRecorder,
    /// Bindings in flight, bounded like client-go's connection use rather than one per pending pod.
    binds: Arc<tokio::sync::Semaphore>,
}

/// Any change to `informer`'s objects sends the unschedulable pods back to be tried again.
fn requeue_on_change<K>(s: &Arc<Scheduler>, informer: &Informer<K>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    let weak = Arc::downgrade(s);
    informer.add_handler(move |_| {
        if let Some(s) = weak.upgrade() {
            s.queue.move_all_unschedulable();
        }
    });
}

fn bound(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())
}

fn terminal(p: &Pod) -> bool {
    matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

impl Scheduler {
    pub fn start(client: kube::Client, opts: Options, identity: String) -> Arc<Scheduler> {
        let pods = Informer::start(Api::<Pod>::all(client.clone()), kube::runtime::watcher::Config::default());
        crate::resources::report(pods.clone());
        let nodes = Informer::start(Api::<Node>::all(client.clone()), kube::runtime::watcher::Config::default());
        let namespaces =
            Informer::start(Api::<Namespace>::all(client.clone()), kube::runtime::watcher::Config::default());
        let pdbs =
            Informer::start(Api::<PodDisruptionBudget>::all(client.clone()), kube::runtime::watcher::Config::default());
        let claims = Informer::start(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            kube::runtime::watcher::Config::default(),
        );
        let volumes =
            Informer::start(Api::<PersistentVolume>::all(client.clone()), kube::runtime::watcher::Config::default());
        let classes =
            Informer::start(Api::<StorageClass>::all(client.clone()), kube::runtime::watcher::Config::default());
        let queue = SchedulingQueue::new(opts.initial_backoff, opts.max_backoff);
        let recorder = component_base::events::EventRecorder::new(client.clone(), "default-scheduler", Some(identity));
        let s = Arc::new(Scheduler {
            client,
            opts,
            pods,
            nodes,
            namespaces,
            pdbs,
            claims,
            volumes,
            classes,
            reserved: Mutex::new(BTreeMap::new()),
            nominated: Mutex::new(BTreeMap::new()),
            cache: Mutex::new(Cache::default()),
            queue,
            next_start: AtomicUsize::new(0),
            first_seen: Mutex::new(BTreeMap::new()),
            recorder,
            binds: Arc::new(tokio::sync::Semaphore::new(64)),
        });
        let weak = Arc::downgrade(&s);
        s.nodes.add_handler(move |ch| {
            let Some(s) = weak.upgrade() else { return };
            match ch {
                Change::Deleted(n) => s.cache.lock().unwrap().remove_node(n.metadata.name.as_deref().unwrap_or("")),
                Change::Added(n) | Change::Updated { new: n, .. } => s.cache.lock().unwrap().set_node(n),
            }
            s.queue.move_all_unschedulable();
        });
        // A claim, volume or class that appears or changes may make a pod waiting on volumes fit.
        requeue_on_change(&s, &s.claims);
        requeue_on_change(&s, &s.volumes);
        requeue_on_change(&s, &s.classes);
        let weak = Arc::downgrade(&s);
        s.pods.add_handler(move |ch| {
            if let Some(s) = weak.upgrade() {
                s.pod_changed(ch);
            }
        });
        let s2 = s.clone();
        tokio::spawn(async move {
            s2.nodes.wait_synced().await;
            s2.pods.wait_synced().await;
            s2.namespaces.wait_synced().await;
            s2.pdbs.wait_synced().await;
            s2.claims.wait_synced().await;
            s2.volumes.wait_synced().await;
            s2.classes.wait_synced().await;
            tracing::info!("caches synced; scheduling");
            loop {
                let key = s2.queue.pop().await;
                let (a, b, u) = s2.queue.sizes();
                for (q, n) in [("active", a), ("backoff", b), ("unschedulable", u)] {
                    metrics().pending.with_label_values(&[q]).set(n as i64);
                }
                s2.clone().schedule_one(&key).await;
            }
        });
        s
    }

    /// A namespace's labels, for affinity terms' `namespaceSelector`.
    fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        self.namespaces.get(ns).and_then(|n| n.metadata.labels.clone()).unwrap_or_default()
    }

    fn ours(&self, p: &Pod) -> bool {
        let name = p.spec.as_ref().and_then(|s| s.scheduler_name.clone()).unwrap_or_else(|| "default-scheduler".into());
        self.opts.profiles.iter().any(|pr| pr.scheduler_name == name)
    }

    fn pod_changed(&self, ch: &Change<Pod>) {
        let p = ch.object();
        let key = key_of(p.as_ref());
        match ch {
            Change::Deleted(_) => {
                self.nominated.lock().unwrap().remove(&key);
                self.queue.delete(&key);
                self.first_seen.lock().unwrap().remove(&key);
                if bound(p).is_some() {
                    self.cache.lock().unwrap().remove_pod(&key);
                    self.queue.move_all_unschedulable();
                }
            }
            _ => match bound(p) {
                Some(node) => {
                    self.nominated.lock().unwrap().remove(&key);
                    self.queue.delete(&key);
                    if terminal(p) {
                        self.cache.lock().unwrap().remove_pod(&key);
                        self.queue.move_all_unschedulable();
                    } else {
                        let mut cache = self.cache.lock().unwrap();
                        let assumed = cache.is_assumed(&key);
                        let fresh = assumed || !cache.is_placed(&key);
                        if assumed {
                            tracing::debug!(pod = %key, node = %node, "binding confirmed");
                        }
                        cache.add_pod(&key, p, &node, false);
                        drop(cache);
                        if fresh {
                            self.queue.move_pod_waiters();
                        }
                    }
                }
                None => {
                    let nominee =
                        p.status.as_ref().and_then(|s| s.nominated_node_name.clone()).filter(|n| !n.is_empty());
                    match nominee {
                        Some(n) if !terminal(p) => {
                            let prio = p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
                            self.nominated.lock().unwrap().insert(key.clone(), (n, prio, pod_requests(p, false)));
                        }
                        _ => {
                            self.nominated.lock().unwrap().remove(&key);
                        }
                    }
                    // As upstream's isPodUpdated: a change of status alone (the nomination, a
                    // condition) does not make a waiting pod worth another attempt.
                    let status_only = match ch {
                        Change::Updated { old, new } => {
                            old.spec == new.spec
                                && old.metadata.labels == new.metadata.labels
                                && old.metadata.annotations == new.metadata.annotations
                                && old.metadata.deletion_timestamp == new.metadata.deletion_timestamp
                        }
                        _ => false,
                    };
                    if status_only {
                        return;
                    }
                    if self.ours(p) && p.metadata.deletion_timestamp.is_none() && !terminal(p) {
                        let gated =
                            p.spec.as_ref().and_then(|s| s.scheduling_gates.as_ref()).is_some_and(|g| !g.is_empty());
                        if !gated {
                            self.first_seen.lock().unwrap().entry(key.clone()).or_insert_with(Instant::now);
                            self.queue.add(&key, p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0));
                        }
                    }
                }
            },
        }
    }

    fn profile(&self, p: &Pod) -> &Profile {
        let name = p.spec.as_ref().and_then(|s| s.scheduler_name.clone()).unwrap_or_else(|| "default-scheduler".into());
        self.opts.profiles.iter().find(|pr| pr.scheduler_name == name).unwrap_or(&self.opts.profiles[0])
    }

    /// upstream's adaptive `numFeasibleNodesToFind`.
    fn nodes_to_find(&self, total: usize) -> usize {
        if total < 100 {
            return total;
        }
        let pct = match self.opts.percentage_of_nodes_to_score {
            Some(p) if p > 0 => p as usize,
            _ => (50usize.saturating_sub(total / 125)).max(5),
        };
        (total * pct / 100).max(100).min(total)
    }

    async fn schedule_one(self: Arc<Self>, key: &str) {
        let Some(pod) = self.pods.get(key) else { return };
        if bound(&pod).is_some() || pod.metadata.deletion_timestamp.is_some() || !self.ours(&pod) {
            return;
        }
        let started = Instant::now();
        let profile = self.profile(&pod);
        let profile_name = profile.scheduler_name.clone();
        let bind_timeout = Duration::from_secs(profile.args.bind_timeout_seconds);
        let req = pod_requests(&pod, false);
        let non_zero = pod_requests(&pod, true);
        let ports = pod_host_ports(&pod);
        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        // Filter, then score, over a snapshot of the cache.
        let (choice, failed, total, prefilter, actions) = 'pick: {
            let mut cache = self.cache.lock().unwrap();
            let taken: std::collections::HashSet<String> =
                self.reserved.lock().unwrap().iter().filter(|(_, p)| *p != key).map(|(v, _)| v.clone()).collect();
            let ns_labels = |ns: &str| self.namespace_labels(ns);
            let filters = match PodFilters::prepare(&pod, &mut cache, profile, &*self, &taken, &ns_labels, true) {
                Ok(f) => f,
                Err(msg) => {
                    let all = cache.sorted_nodes();
                    let failed = all
                        .iter()
                        .map(|n| (n.name.clone(), Failure { reason: msg.clone(), resolvable: false }))
                        .collect();
                    break 'pick (None, failed, all.len(), Some(msg), Vec::new());
                }
            };
            // Room promised to nominated pods of at least this priority counts as taken. (The cache's
            // lock is taken before the nominations', here as everywhere both are held.)
            let mut promised: BTreeMap<String, (Resources, i64)> = BTreeMap::new();
            for (k, (node, prio, r)) in self.nominated.lock().unwrap().iter() {
                // A nominee already assumed or bound counts in the cache, not twice.
                if k != key && *prio >= priority && !cache.is_placed(k) {
                    let e = promised.entry(node.clone()).or_default();
                    e.0.add(r, 1);
                    e.1 += 1;
                }
            }
            // Only the nodes examined are looked up (a few hundred of thousands, usually).
            let total = cache.node_count();
            let want = self.nodes_to_find(total);
            let start = if total == 0 { 0 } else { self.next_start.load(Ordering::Relaxed) % total };
            let mut feasible = Vec::new();
            let mut failed: Vec<(String, Failure)> = Vec::new();
            let mut examined = 0;
            for i in 0..total {
                let Some(n) = cache.node_at((start + i) % total) else { continue };
                examined += 1;
                let with_promised;
                let fit_on = match promised.get(&n.name) {
                    Some((r, count)) => {
                        let mut adjusted = n.clone();
                        adjusted.requested.add(r, 1);
                        adjusted.pods += count;
                        with_promised = adjusted;
                        &with_promised
                    }
                    None => n,
                };
                match plugins::filter(&pod, &req, &ports, fit_on, profile).and_then(|()| filters.filter(n)) {
                    Ok(()) => feasible.push(n),
                    Err(f) => failed.push((n.name.clone(), f)),
                }
                if feasible.len() >= want {
                    break;
                }
            }
            if total > 0 {
                self.next_start.store((start + examined) % total, Ordering::Relaxed);
            }
            let choice = if feasible.is_empty() {
                None
            } else {
                let mut scores = plugins::score(
                    &pod,
                    &req,
                    &non_zero,
                    &feasible,
                    profile,
                    |image| cache.nodes_with_image(image),
                    total,
                );
                let w = profile.weight(POD_TOPOLOGY_SPREAD);
                if w > 0 && filters.spread.has_soft() {
                    for (s, t) in scores.iter_mut().zip(filters.spread.score(&feasible)) {
                        *s += w * t;
                    }
                }
                let w = profile.weight(INTER_POD_AFFINITY);
                if w > 0 && filters.interpod.has_scores() {
                    for (s, t) in scores.iter_mut().zip(filters.interpod.score(&feasible)) {
                        *s += w * t;
                    }
                }
                let best = scores.iter().copied().max().unwrap_or(0);
                let top: Vec<usize> = (0..feasible.len()).filter(|i| scores[*i] == best).collect();
                let pick = top[rand::random_range(0..top.len())];
                Some(feasible[pick].name.clone())
            };
            // The chosen node's volume work, and its volumes reserved for this pod.
            let actions = match choice.as_ref().and_then(|c| cache.node_info(c)) {
                Some(n) if profile.on.volume_binding && !filters.volumes.is_empty() => {
                    filters.volumes.actions(n).unwrap_or_default()
                }
                _ => Vec::new(),
            };
            let mut reserved = self.reserved.lock().unwrap();
            for a in &actions {
                if let crate::volumes::Action::Bind { volume, .. } = a {
                    reserved.insert(volume.clone(), key.to_string());
                }
            }
            (choice, failed, total, None::<String>, actions)
        };
        let Some(node) = choice else {
            return self.unschedulable(&pod, key, &req, &ports, failed, total, prefilter, started).await;
        };
        // Assume, then bind in the background. A nomination ends here: the pod now counts as placed.
        self.nominated.lock().unwrap().remove(key);
        self.cache.lock().unwrap().add_pod(key, &pod, &node, true);
        let s = self.clone();
        let key = key.to_string();
        // A pod with volume work binds after it, outside the bounded binds (it may wait long).
        let permit = match actions.is_empty() {
            true => Some(self.binds.clone().acquire_owned().await.expect("semaphore open")),
            false => None,
        };
        tokio::spawn(async move {
            if !actions.is_empty() {
                let result = s.bind_volumes(&node, &actions, bind_timeout).await;
                s.reserved.lock().unwrap().retain(|_, p| *p != key);
                if let Err(e) = result {
                    tracing::info!(pod = %key, node = %node, error = %e, "volume binding failed; forgetting the assumption");
                    s.cache.lock().unwrap().remove_pod(&key);
                    metrics().attempts.with_label_values(&[&profile_name, "error"]).inc();
                    s.queue.requeue(&key, false);
                    s.event(&pod, true, "FailedScheduling", format!("running PreBind plugin \"VolumeBinding\": {e}"));
                    return;
                }
            }
            let _permit = match permit {
                Some(p) => p,
                None => s.binds.clone().acquire_owned().await.expect("semaphore open"),
            };
            let (ns, name) = split_key(&key);
            let ns = ns.unwrap_or("default").to_string();
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(ns.clone()),
                    uid: pod.metadata.uid.clone(),
                    ..Default::default()
                },
                target: ObjectReference { kind: Some("Node".into()), name: Some(node.clone()), ..Default::default() },
            };
            let api: Api<Pod> = Api::namespaced(s.client.clone(), &ns);
            let result = api
                .create_subresource::<Binding, serde_json::Value>("binding", name, &PostParams::default(), &binding)
                .await;
            match result {
                Ok(_) => {
                    metrics().attempts.with_label_values(&[&profile_name, "scheduled"]).inc();
                    metrics()
                        .attempt_duration
                        .with_label_values(&[&profile_name, "scheduled"])
                        .observe(started.elapsed().as_secs_f64());
                    let attempts = (s.queue.attempts(&key) + 1).to_string();
                    if let Some(t) = s.first_seen.lock().unwrap().remove(&key) {
                        metrics().sli.with_label_values(&[&attempts]).observe(t.elapsed().as_secs_f64());
                    }
                    drop(_permit);
                    s.event(&pod, false, "Scheduled", format!("Successfully assigned {ns}/{name} to {node}"));
                }
                Err(e) => {
                    tracing::info!(pod = %key, node = %node, error = %e, "binding failed; forgetting the assumption");
                    s.cache.lock().unwrap().remove_pod(&key);
                    metrics().attempts.with_label_values(&[&profile_name, "error"]).inc();
                    s.queue.requeue(&key, false);
                    s.event(&pod, true, "FailedScheduling", format!("Binding rejected: {e}"));
                }
            }
        });
    }

    /// VolumeBinding's PreBind: reserve each chosen volume for its claim (`claimRef`), or ask for
    /// provisioning on the node, then wait (`bindTimeoutSeconds`, 600 by default) until the
    /// PersistentVolume controller has bound every claim.
    async fn bind_volumes(
        &self,
        node: &str,
        actions: &[crate::volumes::Action],
        timeout: Duration,
    ) -> Result<(), String> {
        use crate::volumes::Action;
        let mut keys = Vec::new();
        for a in actions {
            let (Action::Bind { claim, .. } | Action::Provision { claim }) = a;
            let c = self.claims.get(claim).ok_or_else(|| format!("persistentvolumeclaim {claim:?} not found"))?;
            let (ns, name) = split_key(claim);
            keys.push(claim.clone());
            match a {
                Action::Bind { volume, .. } => {
                    let patch = json!({
                        "metadata": {"annotations": {component_base::storage::BOUND_BY_CONTROLLER: "yes"}},
                        "spec": {"claimRef": {
                            "kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns, "name": name,
                            "uid": c.metadata.uid, "resourceVersion": c.metadata.resource_version,
                        }},
                    });
                    Api::<PersistentVolume>::all(self.client.clone())
                        .patch(volume, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map_err(|e| format!("binding volumes: {e}"))?;
                }
                Action::Provision { .. } => {
                    let patch = json!({"metadata": {"annotations": {component_base::storage::SELECTED_NODE: node}}});
                    Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), ns.unwrap_or("default"))
                        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map_err(|e| format!("binding volumes: {e}"))?;
                }
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let bound = keys.iter().all(|k| {
                self.claims.get(k).is_some_and(|c| {
                    c.spec.as_ref().and_then(|s| s.volume_name.as_deref()).is_some_and(|v| !v.is_empty())
                        && c.metadata
                            .annotations
                            .as_ref()
                            .is_some_and(|a| a.contains_key(component_base::storage::BIND_COMPLETED))
                })
            });
            if bound {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("binding volumes: context deadline exceeded".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A pod no node can take: preemption, then upstream's FitError text in a `FailedScheduling`
    /// event and the `PodScheduled` condition, and a wait for a cluster event. `prefilter` is a
    /// PreFilter's message, which stands for the per-node reasons.
    #[allow(clippy::too_many_arguments)]
    async fn unschedulable(
        &self,
        pod: &Pod,
        key: &str,
        req: &Resources,
        ports: &[(String, String, i32)],
        failed: Vec<(String, Failure)>,
        total: usize,
        prefilter: Option<String>,
        started: Instant,
    ) {
        let profile_name = self.profile(pod).scheduler_name.clone();
        let failures: Vec<Failure> = failed.iter().map(|(_, f)| f.clone()).collect();
        // PostFilter: preemption, whose outcome ends the message as upstream's.
        let outcome = self.preempt(pod, key, req, ports, &failed).await;
        let mut msg = match &prefilter {
            Some(m) if total > 0 => format!("0/{total} nodes are available: {m}."),
            _ => fit_message(total, &failures),
        };
        match outcome {
            Preemption::Nominated => {}
            Preemption::NotEligible("") => {}
            Preemption::NotEligible(why) if total > 0 => msg = format!("{msg} preemption: {why}"),
            _ if total > 0 => msg = format!("{msg} {}", no_candidate_summary(total, &failures)),
            _ => {}
        }
        metrics().attempts.with_label_values(&[&profile_name, "unschedulable"]).inc();
        metrics()
            .attempt_duration
            .with_label_values(&[&profile_name, "unschedulable"])
            .observe(started.elapsed().as_secs_f64());
        self.queue.requeue(key, true);
        if failures.iter().any(|f| f.reason == crate::interpod::AFFINITY_MISMATCH) {
            self.queue.wait_for_pods(key);
        }
        self.report_unschedulable(pod, &msg).await;
    }

    /// DefaultPreemption's PostFilter: choose victims (`preemption::find`), nominate the node in the
    /// pod's status, mark each victim with the `DisruptionTarget` condition, delete it and record
    /// `Preempted`. The pod stays unschedulable until the victims are gone, then fits.
    async fn preempt(
        &self,
        pod: &Pod,
        key: &str,
        req: &Resources,
        ports: &[(String, String, i32)],
        failed: &[(String, Failure)],
    ) -> Preemption {
        let spec = pod.spec.as_ref();
        if !self.profile(pod).preempts() {
            return Preemption::NotEligible("");
        }
        metrics().preemption.inc();
        if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
            return Preemption::NotEligible("not eligible due to preemptionPolicy=Never.");
        }
        let priority = spec.and_then(|s| s.priority).unwrap_or(0);
        let nominee = pod.status.as_ref().and_then(|s| s.nominated_node_name.clone()).filter(|n| !n.is_empty());
        let candidate = {
            let mut cache = self.cache.lock().unwrap();
            // upstream's PodEligibleToPreemptOthers: victims of an earlier preemption still leaving.
            if let Some(n) = &nominee {
                if cache.placed_pods().any(|e| &e.node == n && e.terminating && e.priority < priority) {
                    return Preemption::NotEligible("not eligible due to a terminating pod on the nominated node.");
                }
            }
            let budgets: Vec<_> = self.pdbs.list().iter().map(|p| crate::preemption::Budget::of(p)).collect();
            let profile = self.profile(pod);
            // The other filters, re-run on a node of the dry run's cache.
            let ns_labels = |ns: &str| self.namespace_labels(ns);
            let none = std::collections::HashSet::new();
            let mut recheck = |cache: &mut Cache, node: &str| {
                PodFilters::prepare(pod, cache, profile, self, &none, &ns_labels, false)
                    .is_ok_and(|f| cache.node_info(node).is_some_and(|n| f.filter(n).is_ok()))
            };
            crate::preemption::find(pod, req, ports, &mut cache, failed, &budgets, profile, &mut recheck)
        };
        let Some(c) = candidate else { return Preemption::NoCandidate };
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default").to_string();
        tracing::info!(pod = %key, node = %c.node, victims = ?c.victims, "preempting");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let nominate = json!({"status": {"nominatedNodeName": c.node}});
        if let Err(e) = api.patch_status(name, &PatchParams::default(), &Patch::Merge(&nominate)).await {
            tracing::warn!(pod = %key, error = %e, "could not nominate the node");
            return Preemption::NoCandidate;
        }
        self.nominated.lock().unwrap().insert(key.to_string(), (c.node.clone(), priority, req.clone()));
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        for v in &c.victims {
            let Some(victim) = self.pods.get(v) else { continue };
            let (vns, vname) = split_key(v);
            let vapi: Api<Pod> = Api::namespaced(self.client.clone(), vns.unwrap_or("default"));
            let scheduler = self.profile(pod).scheduler_name.clone();
            let condition = json!({"status": {"conditions": [{
                "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                "message": format!("{scheduler}: preempting to accommodate a higher priority pod"),
                "lastTransitionTime": component_base::time_now(),
            }]}});
            if let Err(e) = vapi.patch_status(vname, &PatchParams::default(), &Patch::Strategic(&condition)).await {
                tracing::info!(victim = %v, error = %e, "could not mark the victim");
            }
            match vapi.delete(vname, &Default::default()).await {
                Ok(_) => {
                    self.event(&victim, false, "Preempted", format!("Preempted by pod {uid} on node {}", c.node));
                }
                Err(e) => tracing::warn!(victim = %v, error = %e, "could not delete the victim"),
            }
        }
        Preemption::Nominated
    }

    fn event(&self, pod: &Pod, warning: bool, reason: &str, note: String) {
        let r = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        };
        self.recorder.emit_ref(r, warning, reason, "Scheduling", note);
    }

    async fn report_unschedulable(&self, pod: &Pod, msg: &str) {
        self.event(pod, true, "FailedScheduling", msg.to_string());
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled").cloned());
        if current.as_ref().is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(msg)) {
            return;
        }
        let mut conds = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        conds.retain(|c| c.type_ != "PodScheduled");
        conds.push(k8s_openapi::api::core::v1::PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(msg.to_string()),
            last_transition_time: Some(component_base::time_now()),
            ..Default::default()
        });
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let _ = Api::<Pod>::namespaced(self.client.clone(), &ns)
            .patch_status(
                pod.metadata.name.as_deref().unwrap_or(""),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"conditions": conds}})),
            )
            .await;
    }
}

impl crate::volumes::Listers for Scheduler {
    fn claim(&self, key: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(key)
    }
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.get(name)
    }
    fn volumes(&self) -> Vec<Arc<PersistentVolume>> {
        self.volumes.list()
    }
    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get(name)
    }
}

/// upstream's FitError message: reasons counted and sorted, then what preemption could do.
/// upstream's FitError text with the preemption summary of a pod no eviction could help.
#[cfg(test)]
pub fn failure_message(total: usize, failures: &[Failure]) -> String {
    let msg = fit_message(total, failures);
    if total == 0 {
        return msg;
    }
    format!("{msg} {}", no_candidate_summary(total, failures))
}

/// The filter part of upstream's FitError text.
pub fn fit_message(total: usize, failures: &[Failure]) -> String {
    if total == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for f in failures {
        *counts.entry(f.reason.as_str()).or_default() += 1;
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    let mut msg = format!("0/{total} nodes are available");
    if !parts.is_empty() {
        msg.push_str(&format!(": {}", parts.join(", ")));
    }
    msg.push('.');
    msg
}

/// `preemption: ...` when no node had victims to offer.
fn no_candidate_summary(total: usize, failures: &[Failure]) -> String {
    let helpless = failures.iter().filter(|f| !f.resolvable).count();
    let no_victims = failures.len() - helpless;
    let mut pre: Vec<String> = Vec::new();
    if no_victims > 0 {
        pre.push(format!("{no_victims} No preemption victims found for incoming pod"));
    }
    if helpless > 0 {
        pre.push(format!("{helpless} Preemption is not helpful for scheduling"));
    }
    pre.sort();
    format!("preemption: 0/{total} nodes are available: {}.", pre.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_error_message_as_upstream() {
        let f = |r: &str, res: bool| Failure { reason: r.into(), resolvable: res };
        let msg = failure_message(
            3,
            &[
                f("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }", false),
                f("Insufficient cpu", true),
                f("Insufficient cpu", true),
            ],
        );
        assert_eq!(
            msg,
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
        );
        assert_eq!(failure_message(0, &[]), "no nodes available to schedule pods");
    }
}
