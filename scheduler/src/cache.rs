//! The scheduler's view of the cluster: per node, what it offers and what its pods (bound, or assumed
//! by this scheduler while their binding is in flight) request. Assumed pods count at once, so two
//! pods scheduled back to back never both take the last room on a node; a failed binding forgets its
//! assumption, and the informer's copy of a bound pod replaces it.

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use std::collections::{BTreeMap, HashMap};

pub use component_base::scheduling::{pod_host_ports, pod_requests, Resources};

#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub requested: Resources,
    pub non_zero_requested: Resources,
    pub pods: i64,
    pub used_ports: Vec<(String, String, i32)>,
    /// A Node object backs this entry (not just pods naming a node the cache has not seen).
    pub known: bool,
    /// The disk volumes of its pods (VolumeRestrictions).
    pub disks: Vec<crate::volumes::Disk>,
    /// `status.images`: every name of every image → its size in bytes.
    pub images: std::sync::Arc<HashMap<String, i64>>,
}

pub fn node_info(n: &Node) -> NodeInfo {
    NodeInfo {
        name: n.metadata.name.clone().unwrap_or_default(),
        labels: n.metadata.labels.clone().unwrap_or_default(),
        taints: n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default(),
        unschedulable: n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
        allocatable: n
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .map(Resources::from_map)
            .unwrap_or_default(),
        known: true,
        images: std::sync::Arc::new(
            n.status
                .as_ref()
                .and_then(|s| s.images.as_ref())
                .into_iter()
                .flatten()
                .flat_map(|i| i.names.iter().flatten().map(move |name| (name.clone(), i.size_bytes.unwrap_or(0))))
                .collect(),
        ),
        ..Default::default()
    }
}

#[derive(Clone)]
pub struct PodEntry {
    pub node: String,
    pub req: Resources,
    pub non_zero: Resources,
    pub ports: Vec<(String, String, i32)>,
    pub priority: i32,
    /// When it started (or was created), unix seconds: preemption spares the longest-running.
    pub start: Option<i64>,
    assumed: bool,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// Its pod (anti-)affinity terms, parsed once.
    pub affinity: Option<std::sync::Arc<crate::interpod::Affinity>>,
    /// The controlling owner's uid (the default spreading groups pods by it).
    owner: Option<String>,
    pub terminating: bool,
    /// The claims it uses (`namespace/name`).
    pub claims: Vec<String>,
    pub disks: Vec<crate::volumes::Disk>,
}

impl PodEntry {
    /// Adds (sign 1) or takes off (-1) the pod's resources, pod count and host ports on a node.
    pub fn account(&self, info: &mut NodeInfo, sign: i64) {
        info.requested.add(&self.req, sign);
        info.non_zero_requested.add(&self.non_zero, sign);
        info.pods += sign;
        if sign > 0 {
            info.used_ports.extend(self.ports.iter().cloned());
            info.disks.extend(self.disks.iter().cloned());
        } else {
            for p in &self.ports {
                if let Some(i) = info.used_ports.iter().position(|x| x == p) {
                    info.used_ports.remove(i);
                }
            }
            for d in &self.disks {
                if let Some(i) = info.disks.iter().position(|x| x == d) {
                    info.disks.remove(i);
                }
            }
        }
    }
}

/// Decides whether a placed pod (its labels and controlling owner) counts for a spread selector.
pub type PodMatcher = Box<dyn Fn(&BTreeMap<String, String>, Option<&str>) -> bool + Send>;

/// Matching pods per node for one (namespace, selector), kept up to date as pods come and go.
struct SpreadCount {
    namespace: String,
    matcher: PodMatcher,
    per_node: HashMap<String, i64>,
    /// Topology key → matching pods per domain, as of the node generation it was built at (pods
    /// coming and going keep it current; a node change makes it stale).
    per_domain: HashMap<String, (u64, HashMap<String, i64>)>,
}

/// The domains of one topology key over the known nodes, for a node generation.
struct Domains {
    generation: u64,
    /// domain value → known nodes in it
    nodes: HashMap<String, usize>,
    with_key: usize,
}

const MAX_SPREAD_COUNTS: usize = 256;

#[derive(Default)]
pub struct Cache {
    nodes: HashMap<String, NodeInfo>,
    pods: HashMap<String, PodEntry>,
    spread_counts: HashMap<String, SpreadCount>,
    /// Keys of the placed pods with affinity terms (InterPodAffinity looks at their terms).
    with_affinity: std::collections::HashSet<String>,
    /// Names of the known nodes, sorted: the order the scheduler walks them in.
    order: Vec<String>,
    /// Claim key → how many placed pods use it.
    claim_users: HashMap<String, usize>,
    /// Bumped on every node change: what per-domain summaries were built against.
    generation: u64,
    domains: HashMap<String, Domains>,
    /// Image name → how many known nodes have it (ImageLocality's spread).
    image_nodes: HashMap<String, usize>,
}

impl Cache {
    pub fn set_node(&mut self, n: &Node) {
        let mut fresh = node_info(n);
        let same_labels = self.nodes.get(&fresh.name).is_some_and(|o| o.known && o.labels == fresh.labels);
        if !same_labels {
            self.generation += 1;
        }
        if let Some(old) = self.nodes.get(&fresh.name).filter(|o| o.known).map(|o| o.images.clone()) {
            for name in old.keys() {
                self.forget_image(name);
            }
        }
        for name in fresh.images.keys() {
            *self.image_nodes.entry(name.clone()).or_default() += 1;
        }
        if let Some(old) = self.nodes.get(&fresh.name) {
            fresh.requested = old.requested.clone();
            fresh.non_zero_requested = old.non_zero_requested.clone();
            fresh.pods = old.pods;
            fresh.used_ports = old.used_ports.clone();
        }
        if let Err(i) = self.order.binary_search(&fresh.name) {
            self.order.insert(i, fresh.name.clone());
        }
        self.nodes.insert(fresh.name.clone(), fresh);
    }

    fn forget_image(&mut self, name: &str) {
        if let Some(c) = self.image_nodes.get_mut(name) {
            *c -= 1;
            if *c == 0 {
                self.image_nodes.remove(name);
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        self.generation += 1;
        let mut images = Vec::new();
        if let Some(n) = self.nodes.get_mut(name).filter(|n| n.known) {
            n.known = false;
            images = n.images.keys().cloned().collect();
            n.images = Default::default();
        }
        for i in images {
            self.forget_image(&i);
        }
        if let Ok(i) = self.order.binary_search(&name.to_string()) {
            self.order.remove(i);
        }
    }

    /// How many placed pods use the claim `namespace/name`.
    pub fn claim_users(&self, key: &str) -> usize {
        self.claim_users.get(key).copied().unwrap_or(0)
    }

    /// How many known nodes have the image `name`.
    pub fn nodes_with_image(&self, name: &str) -> usize {
        self.image_nodes.get(name).copied().unwrap_or(0)
    }

    /// How many known nodes there are.
    pub fn node_count(&self) -> usize {
        self.order.len()
    }

    /// The `i`th known node in name order.
    pub fn node_at(&self, i: usize) -> Option<&NodeInfo> {
        self.order.get(i).and_then(|n| self.nodes.get(n))
    }

    /// The known nodes in name order.
    pub fn sorted_nodes(&self) -> Vec<&NodeInfo> {
        self.order.iter().filter_map(|n| self.nodes.get(n)).collect()
    }

    fn apply(&mut self, e: &PodEntry, sign: i64) {
        let info =
            self.nodes.entry(e.node.clone()).or_insert_with(|| NodeInfo { name: e.node.clone(), ..Default::default() });
        e.account(info, sign);
    }

    /// Counts `pod` on `node` (bound, or assumed when `assumed`).
    pub fn add_pod(&mut self, key: &str, pod: &Pod, node: &str, assumed: bool) {
        let e = PodEntry {
            node: node.to_string(),
            req: pod_requests(pod, false),
            non_zero: pod_requests(pod, true),
            ports: pod_host_ports(pod),
            priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            start: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .or(pod.metadata.creation_timestamp.as_ref())
                .map(|t| t.0.as_second()),
            assumed,
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            owner: pod
                .metadata
                .owner_references
                .as_ref()
                .and_then(|o| o.iter().find(|r| r.controller == Some(true)))
                .map(|r| r.uid.clone()),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            affinity: crate::interpod::Affinity::of(pod),
            claims: crate::volumes::claim_keys(pod),
            disks: crate::volumes::disks(pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or(&[])),
        };
        self.put_pod(key, e);
    }

    /// Counts a placed pod's entry again (after [`Cache::take_pod`]).
    pub fn put_pod(&mut self, key: &str, e: PodEntry) {
        self.remove_pod(key);
        if e.affinity.is_some() {
            self.with_affinity.insert(key.to_string());
        }
        for c in &e.claims {
            *self.claim_users.entry(c.clone()).or_default() += 1;
        }
        self.apply(&e, 1);
        self.count_spread(&e, 1);
        self.pods.insert(key.to_string(), e);
    }

    /// Stops counting a placed pod and hands its entry back (preemption's dry run).
    pub fn take_pod(&mut self, key: &str) -> Option<PodEntry> {
        let e = self.pods.remove(key)?;
        self.with_affinity.remove(key);
        for c in &e.claims {
            if let Some(n) = self.claim_users.get_mut(c) {
                *n -= 1;
                if *n == 0 {
                    self.claim_users.remove(c);
                }
            }
        }
        self.apply(&e, -1);
        self.count_spread(&e, -1);
        Some(e)
    }

    pub fn remove_pod(&mut self, key: &str) {
        self.take_pod(key);
    }

    fn count_spread(&mut self, e: &PodEntry, sign: i64) {
        if e.terminating {
            return;
        }
        let labels = self.nodes.get(&e.node).filter(|n| n.known).map(|n| &n.labels);
        for c in self.spread_counts.values_mut() {
            if c.namespace == e.namespace && (c.matcher)(&e.labels, e.owner.as_deref()) {
                *c.per_node.entry(e.node.clone()).or_default() += sign;
                for (key, (generation, counts)) in c.per_domain.iter_mut() {
                    if *generation != self.generation {
                        continue;
                    }
                    if let Some(d) = labels.and_then(|l| l.get(key)) {
                        *counts.entry(d.clone()).or_default() += sign;
                    }
                }
            }
        }
    }

    /// Makes sure the matching pods per node for the selector `id` in `namespace` are counted (once;
    /// then kept up to date as pods come and go, since spreading asks for the same selector pod after
    /// pod). Returns the key for [`Cache::spread_counts_of`].
    pub fn ensure_spread_counts(&mut self, namespace: &str, id: &str, matcher: impl FnOnce() -> PodMatcher) -> String {
        let key = format!("{namespace}\u{0}{id}");
        if !self.spread_counts.contains_key(&key) {
            if self.spread_counts.len() >= MAX_SPREAD_COUNTS {
                self.spread_counts.clear();
            }
            let matcher = matcher();
            let mut per_node: HashMap<String, i64> = HashMap::new();
            for e in self.pods.values().filter(|e| e.namespace == namespace && !e.terminating) {
                if matcher(&e.labels, e.owner.as_deref()) {
                    *per_node.entry(e.node.clone()).or_default() += 1;
                }
            }
            self.spread_counts.insert(
                key.clone(),
                SpreadCount { namespace: namespace.to_string(), matcher, per_node, per_domain: HashMap::new() },
            );
        }
        key
    }

    /// How many known nodes lack the label `key` (the per-key domain summary is refreshed on the way).
    pub fn nodes_lacking(&mut self, key: &str) -> usize {
        let generation = self.generation;
        let fresh = self.domains.get(key).is_some_and(|d| d.generation == generation);
        if !fresh {
            let mut nodes: HashMap<String, usize> = HashMap::new();
            let mut with_key = 0;
            for n in self.nodes.values().filter(|n| n.known) {
                if let Some(v) = n.labels.get(key) {
                    *nodes.entry(v.clone()).or_default() += 1;
                    with_key += 1;
                }
            }
            self.domains.insert(key.to_string(), Domains { generation, nodes, with_key });
        }
        self.order.len().saturating_sub(self.domains[key].with_key)
    }

    /// For the counters `id` (from [`Cache::ensure_spread_counts`]) and the topology `key`: matching pods
    /// per domain over every known node with the key (domains without any at 0). Kept per domain as pods come and go, rebuilt only after a node change, so a
    /// spread over thousands of nodes does not walk them per pod.
    pub fn domain_counts(&mut self, id: &str, key: &str) -> HashMap<String, i64> {
        let generation = self.generation;
        self.nodes_lacking(key);
        let domains = &self.domains[key];
        let Some(c) = self.spread_counts.get_mut(id) else {
            return domains.nodes.keys().map(|d| (d.clone(), 0)).collect();
        };
        let built = c.per_domain.get(key).is_some_and(|(g, _)| *g == generation);
        if !built {
            let mut counts: HashMap<String, i64> = HashMap::new();
            for (node, n) in &c.per_node {
                if let Some(d) = self.nodes.get(node).filter(|i| i.known).and_then(|i| i.labels.get(key)) {
                    *counts.entry(d.clone()).or_default() += n;
                }
            }
            c.per_domain.insert(key.to_string(), (generation, counts));
        }
        let counts = &c.per_domain[key].1;
        let mut out: HashMap<String, i64> = HashMap::with_capacity(domains.nodes.len());
        for d in domains.nodes.keys() {
            out.insert(d.clone(), counts.get(d).copied().unwrap_or(0));
        }
        out
    }

    pub fn spread_counts_of(&self, key: &str) -> Option<&HashMap<String, i64>> {
        self.spread_counts.get(key).map(|c| &c.per_node)
    }

    /// Every placed (bound or assumed) pod.
    pub fn placed_pods(&self) -> impl Iterator<Item = &PodEntry> {
        self.pods.values()
    }

    /// The placed pods that have affinity terms.
    pub fn placed_pods_with_affinity(&self) -> impl Iterator<Item = &PodEntry> {
        self.with_affinity.iter().filter_map(|k| self.pods.get(k))
    }

    pub fn placed_pods_keyed(&self) -> impl Iterator<Item = (&String, &PodEntry)> {
        self.pods.iter()
    }

    /// A known node.
    pub fn node_info(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name).filter(|n| n.known)
    }

    pub fn pods_with_affinity(&self) -> usize {
        self.with_affinity.len()
    }

    /// A known node's labels.
    pub fn node_labels(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.nodes.get(name).filter(|n| n.known).map(|n| &n.labels)
    }

    pub fn is_placed(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// Whether `key` counts only as an assumption (its binding not yet seen).
    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|e| e.assumed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_as_upstream() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "3"}}}],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}, {"name": "b"}],
            "overhead": {"cpu": "100m"}
        }}))
        .unwrap();
        let r = pod_requests(&pod, false);
        assert_eq!((r.cpu, r.memory), (3100, 1 << 30));
        let nz = pod_requests(&pod, true);
        assert_eq!(nz.cpu, 3100);
        assert_eq!(nz.memory, (1 << 30) + 200 * 1024 * 1024);
    }

    #[test]
    fn assumed_pods_count_until_forgotten() {
        let mut c = Cache::default();
        let node: Node = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "1", "pods": "10"}}}),
        )
        .unwrap();
        c.set_node(&node);
        let pod: Pod = serde_json::from_value(
            serde_json::json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "600m"}}}]}}),
        )
        .unwrap();
        c.add_pod("ns/p", &pod, "n", true);
        assert_eq!(c.sorted_nodes()[0].requested.cpu, 600);
        assert!(c.is_assumed("ns/p"));
        c.set_node(&node);
        assert_eq!(c.sorted_nodes()[0].requested.cpu, 600, "a node update keeps the pods' requests");
        c.remove_pod("ns/p");
        assert_eq!(c.sorted_nodes()[0].requested.cpu, 0);
    }

    #[test]
    fn spread_counts_follow_pods_incrementally() {
        let mut c = Cache::default();
        let pod = |app: &str| -> Pod {
            serde_json::from_value(serde_json::json!({"metadata": {"namespace": "ns", "labels": {"app": app}}}))
                .unwrap()
        };
        let web = || -> PodMatcher {
            Box::new(|l: &BTreeMap<String, String>, _: Option<&str>| l.get("app").map(String::as_str) == Some("web"))
        };
        c.add_pod("ns/a", &pod("web"), "n1", false);
        let k = c.ensure_spread_counts("ns", "web", web);
        assert_eq!(c.spread_counts_of(&k).unwrap().get("n1"), Some(&1));
        c.add_pod("ns/b", &pod("web"), "n2", true);
        c.add_pod("ns/c", &pod("db"), "n2", false);
        c.add_pod(
            "other/d",
            &serde_json::from_value(serde_json::json!({"metadata": {"namespace": "other", "labels": {"app": "web"}}}))
                .unwrap(),
            "n2",
            false,
        );
        assert_eq!(c.spread_counts_of(&k).unwrap().get("n2"), Some(&1), "same namespace, matching labels only");
        c.remove_pod("ns/a");
        assert_eq!(c.spread_counts_of(&k).unwrap().get("n1"), Some(&0));
    }

    #[test]
    fn domain_counts_follow_pods_and_nodes() {
        let mut c = Cache::default();
        let node = |name: &str, zone: &str| -> Node {
            serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": {"zone": zone}}})).unwrap()
        };
        for (n, z) in [("n1", "a"), ("n2", "a"), ("n3", "b")] {
            c.set_node(&node(n, z));
        }
        c.set_node(&serde_json::from_value(serde_json::json!({"metadata": {"name": "bare"}})).unwrap());
        let web: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"namespace": "ns", "labels": {"app": "web"}}}))
                .unwrap();
        let matcher = || -> PodMatcher {
            Box::new(|l: &BTreeMap<String, String>, _: Option<&str>| l.get("app").map(String::as_str) == Some("web"))
        };
        c.add_pod("ns/a", &web, "n1", false);
        let id = c.ensure_spread_counts("ns", "web", matcher);
        let counts = |c: &mut Cache| {
            let mut v: Vec<(String, i64)> = c.domain_counts(&id, "zone").into_iter().collect();
            v.sort();
            v
        };
        assert_eq!(counts(&mut c), [("a".to_string(), 1), ("b".to_string(), 0)]);
        assert_eq!(c.nodes_lacking("zone"), 1);
        c.add_pod("ns/b", &web, "n3", true);
        c.add_pod("ns/c", &web, "n2", false);
        c.add_pod("ns/d", &web, "bare", false);
        assert_eq!(counts(&mut c), [("a".to_string(), 2), ("b".to_string(), 1)]);
        c.remove_pod("ns/a");
        assert_eq!(counts(&mut c), [("a".to_string(), 1), ("b".to_string(), 1)]);
        // n2 moves to zone c: the summary is rebuilt.
        c.set_node(&node("n2", "c"));
        assert_eq!(counts(&mut c), [("a".to_string(), 0), ("b".to_string(), 1), ("c".to_string(), 1)]);
        c.remove_node("n3");
        assert_eq!(counts(&mut c), [("a".to_string(), 0), ("c".to_string(), 1)]);
    }
}
