//! InterPodAffinity, as upstream's plugin: required pod affinity and anti-affinity of the incoming pod
//! and the required anti-affinity of the pods already placed filter nodes; preferred terms (both
//! ways) and placed pods' required affinity terms (`hardPodAffinityWeight` 1) score topology domains.
//!
//! A term selects pods by label selector (a missing one selects nothing; `matchLabelKeys` and
//! `mismatchLabelKeys` add the incoming pod's own values as upstream does) in its namespaces: those
//! listed plus those its `namespaceSelector` selects, or the pod's own when neither is given. Matching
//! pods are counted per node: for a term over the pod's own namespace through the cache's incremental
//! counters (the same ones topology spreading uses), otherwise by a walk over the placed pods.

use crate::cache::{Cache, NodeInfo};
use crate::plugins::Failure;
use apimachinery::labels::Selector;
use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

pub const AFFINITY_MISMATCH: &str = "node(s) didn't match pod affinity rules";
pub const ANTI_AFFINITY_MISMATCH: &str = "node(s) didn't match pod anti-affinity rules";
pub const EXISTING_ANTI_AFFINITY_MISMATCH: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

/// Labels of a namespace, by name (from the scheduler's namespace informer).
pub type NamespaceLabels<'a> = &'a dyn Fn(&str) -> BTreeMap<String, String>;

/// One parsed affinity term.
pub struct Term {
    selector: Option<Selector>,
    namespaces: BTreeSet<String>,
    namespace_selector: Option<Selector>,
    pub topology_key: String,
    pub weight: i64,
    /// Identifies what the term selects, for the cache's counters.
    id: String,
}

impl Term {
    fn parse(t: &PodAffinityTerm, weight: i64, pod: &Pod) -> Term {
        let own_ns = pod.metadata.namespace.clone().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let selector = t.label_selector.as_ref().map(|s| {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            let mut extra = Vec::new();
            for (keys, op) in [(&t.match_label_keys, "In"), (&t.mismatch_label_keys, "NotIn")] {
                for k in keys.iter().flatten() {
                    if let Some(val) = labels.get(k) {
                        extra.push(serde_json::json!({"key": k, "operator": op, "values": [val]}));
                    }
                }
            }
            if !extra.is_empty() {
                let exprs = v["matchExpressions"].as_array().cloned().unwrap_or_default();
                v["matchExpressions"] = serde_json::Value::Array(exprs.into_iter().chain(extra).collect());
            }
            v
        });
        let mut namespaces: BTreeSet<String> = t.namespaces.iter().flatten().cloned().collect();
        let ns_selector_json = t.namespace_selector.as_ref().map(|s| serde_json::to_value(s).unwrap_or_default());
        if namespaces.is_empty() && ns_selector_json.is_none() {
            namespaces.insert(own_ns);
        }
        let id = format!(
            "term:{}|{:?}|{}",
            selector.as_ref().map(|s| s.to_string()).unwrap_or_default(),
            namespaces,
            ns_selector_json.as_ref().map(|s| s.to_string()).unwrap_or_default()
        );
        Term {
            // A selector that does not parse selects nothing, as a missing one.
            selector: selector.and_then(|s| Selector::from_label_selector(&s).ok()),
            namespaces,
            namespace_selector: ns_selector_json.and_then(|s| Selector::from_label_selector(&s).ok()),
            topology_key: t.topology_key.clone(),
            weight,
            id,
        }
    }

    fn in_namespace(&self, ns: &str, ns_labels: NamespaceLabels<'_>) -> bool {
        self.namespaces.contains(ns) || self.namespace_selector.as_ref().is_some_and(|s| s.matches(&ns_labels(ns)))
    }

    /// Whether the term selects a pod of namespace `ns` with `labels`.
    pub fn matches(&self, ns: &str, labels: &BTreeMap<String, String>, ns_labels: NamespaceLabels<'_>) -> bool {
        self.selector.as_ref().is_some_and(|s| s.matches(labels)) && self.in_namespace(ns, ns_labels)
    }

    /// Only the one namespace, so the cache's per-namespace counters can count for it.
    fn single_namespace(&self) -> Option<&str> {
        (self.namespace_selector.is_none() && self.namespaces.len() == 1)
            .then(|| self.namespaces.iter().next().map(String::as_str))
            .flatten()
    }
}

/// A pod's affinity terms, parsed once when the pod enters the cache or the scheduling cycle.
#[derive(Default)]
pub struct Affinity {
    pub required: Vec<Term>,
    pub required_anti: Vec<Term>,
    pub preferred: Vec<Term>,
    pub preferred_anti: Vec<Term>,
}

impl Affinity {
    /// The pod's terms; None when it has none.
    pub fn of(pod: &Pod) -> Option<Arc<Affinity>> {
        let a = pod.spec.as_ref()?.affinity.as_ref()?;
        let mut out = Affinity::default();
        if let Some(pa) = &a.pod_affinity {
            for t in pa.required_during_scheduling_ignored_during_execution.iter().flatten() {
                out.required.push(Term::parse(t, 1, pod));
            }
            for w in pa.preferred_during_scheduling_ignored_during_execution.iter().flatten() {
                out.preferred.push(Term::parse(&w.pod_affinity_term, w.weight as i64, pod));
            }
        }
        if let Some(pa) = &a.pod_anti_affinity {
            for t in pa.required_during_scheduling_ignored_during_execution.iter().flatten() {
                out.required_anti.push(Term::parse(t, 1, pod));
            }
            for w in pa.preferred_during_scheduling_ignored_during_execution.iter().flatten() {
                out.preferred_anti.push(Term::parse(&w.pod_affinity_term, w.weight as i64, pod));
            }
        }
        let empty = out.required.is_empty()
            && out.required_anti.is_empty()
            && out.preferred.is_empty()
            && out.preferred_anti.is_empty();
        (!empty).then(|| Arc::new(out))
    }
}

/// topology key → value → count (or score).
type PerDomain = HashMap<String, HashMap<String, i64>>;

fn add(m: &mut PerDomain, key: &str, value: &str, n: i64) {
    // Most calls land on a domain already counted: no key strings are made for those.
    if let Some(v) = m.get_mut(key).and_then(|d| d.get_mut(value)) {
        *v += n;
        return;
    }
    *m.entry(key.to_string()).or_default().entry(value.to_string()).or_default() += n;
}

fn get(m: &PerDomain, key: &str, value: &str) -> i64 {
    m.get(key).and_then(|v| v.get(value)).copied().unwrap_or(0)
}

/// The per-cycle state: computed once per pod, then asked per node.
#[derive(Default)]
pub struct State {
    own: Option<Arc<Affinity>>,
    affinity_counts: PerDomain,
    anti_counts: PerDomain,
    existing_anti: PerDomain,
    /// The incoming pod matches all its own required affinity terms (the first pod of a group may go
    /// anywhere when no pod matches yet).
    matches_own_affinity: bool,
    scores: PerDomain,
}

/// Adds the term's matching placed pods, per domain of its topology key, to `into`: from the cache's
/// incremental per-node counters when the term looks at one namespace (read in place, not copied),
/// else by walking the placed pods.
fn count_term(term: &Term, cache: &mut Cache, ns_labels: NamespaceLabels<'_>, into: &mut PerDomain, sign: i64) {
    if let Some(ns) = term.single_namespace().map(String::from) {
        let sel = term.selector.clone();
        let key = cache.ensure_spread_counts(&ns, &term.id, move || {
            Box::new(move |l: &BTreeMap<String, String>, _: Option<&str>| sel.as_ref().is_some_and(|s| s.matches(l)))
        });
        if let Some(counts) = cache.spread_counts_of(&key) {
            by_domain(term, counts, cache, into, sign);
        }
        return;
    }
    let mut out: HashMap<String, i64> = HashMap::new();
    for e in cache.placed_pods() {
        if term.matches(&e.namespace, &e.labels, ns_labels) {
            *out.entry(e.node.clone()).or_default() += 1;
        }
    }
    by_domain(term, &out, cache, into, sign);
}

/// Adds `count × weight` of each node's matching pods to the node's domain of the term's key.
fn by_domain(term: &Term, counts: &HashMap<String, i64>, cache: &Cache, into: &mut PerDomain, sign: i64) {
    for (node, n) in counts.iter().filter(|(_, n)| **n > 0) {
        if let Some(v) = cache.node_labels(node).and_then(|l| l.get(&term.topology_key)) {
            add(into, &term.topology_key, v, sign * term.weight * n);
        }
    }
}

/// `args`: InterPodAffinity's `hardPodAffinityWeight` and `ignorePreferredTermsOfExistingPods`.
pub fn prepare(pod: &Pod, cache: &mut Cache, ns_labels: NamespaceLabels<'_>, args: &crate::profile::Args) -> State {
    let own = Affinity::of(pod);
    if own.is_none() && cache.pods_with_affinity() == 0 {
        return State::default();
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let mut st = State { own: own.clone(), ..Default::default() };
    if let Some(a) = &own {
        st.matches_own_affinity = a.required.iter().all(|t| t.matches(&ns, &labels, ns_labels));
        for (terms, into, sign) in
            [(&a.required, &mut st.affinity_counts, 1), (&a.required_anti, &mut st.anti_counts, 1)]
        {
            for t in terms {
                // Counts, not weights: a required term's weight is 1.
                count_term(t, cache, ns_labels, into, sign);
            }
        }
        for (terms, sign) in [(&a.preferred, 1), (&a.preferred_anti, -1)] {
            for t in terms {
                count_term(t, cache, ns_labels, &mut st.scores, sign);
            }
        }
    }
    // The placed pods' terms that concern the incoming pod. Pods of one workload share their terms:
    // whether a term selects the incoming pod is decided once per distinct term.
    let mut existing_anti = PerDomain::new();
    let mut scores = std::mem::take(&mut st.scores);
    let mut selects: HashMap<String, bool> = HashMap::new();
    let mut selects_pod = |t: &Term| -> bool {
        if let Some(b) = selects.get(t.id.as_str()) {
            return *b;
        }
        let b = t.matches(&ns, &labels, ns_labels);
        selects.insert(t.id.clone(), b);
        b
    };
    for e in cache.placed_pods_with_affinity() {
        let Some(a) = &e.affinity else { continue };
        let Some(node_labels) = cache.node_labels(&e.node) else { continue };
        let domain = |t: &Term, into: &mut PerDomain, n: i64| {
            if let Some(v) = node_labels.get(&t.topology_key) {
                add(into, &t.topology_key, v, n);
            }
        };
        for t in a.required_anti.iter().filter(|t| selects_pod(t)) {
            domain(t, &mut existing_anti, 1);
        }
        // hardPodAffinityWeight for the placed pods' required affinity terms (none at 0).
        let hard = args.hard_pod_affinity_weight;
        for t in a.required.iter().filter(|t| hard > 0 && selects_pod(t)) {
            domain(t, &mut scores, hard);
        }
        if args.ignore_preferred_terms_of_existing_pods {
            continue;
        }
        for t in a.preferred.iter().filter(|t| selects_pod(t)) {
            domain(t, &mut scores, t.weight);
        }
        for t in a.preferred_anti.iter().filter(|t| selects_pod(t)) {
            domain(t, &mut scores, -t.weight);
        }
    }
    st.existing_anti = existing_anti;
    st.scores = scores;
    st
}

impl State {
    /// upstream's three checks, in its order; only the affinity one is beyond preemption's help.
    pub fn filter(&self, node: &NodeInfo) -> Result<(), Failure> {
        if let Some(a) = &self.own {
            if !a.required.is_empty() {
                let found = a.required.iter().all(|t| {
                    node.labels.get(&t.topology_key).is_some_and(|v| get(&self.affinity_counts, &t.topology_key, v) > 0)
                });
                let first_of_group =
                    self.affinity_counts.values().all(|m| m.values().all(|n| *n <= 0)) && self.matches_own_affinity;
                if !found && !first_of_group {
                    return Err(Failure { reason: AFFINITY_MISMATCH.into(), resolvable: false });
                }
            }
            for t in &a.required_anti {
                if node.labels.get(&t.topology_key).is_some_and(|v| get(&self.anti_counts, &t.topology_key, v) > 0) {
                    return Err(Failure { reason: ANTI_AFFINITY_MISMATCH.into(), resolvable: true });
                }
            }
        }
        for (key, values) in &self.existing_anti {
            if node.labels.get(key).is_some_and(|v| values.get(v).is_some_and(|n| *n > 0)) {
                return Err(Failure { reason: EXISTING_ANTI_AFFINITY_MISMATCH.into(), resolvable: true });
            }
        }
        Ok(())
    }

    pub fn has_scores(&self) -> bool {
        !self.scores.is_empty()
    }

    /// Normalized 0..=100 scores of the feasible nodes: the sum over the node's domains, scaled
    /// between the lowest and highest sums, as upstream's NormalizeScore.
    pub fn score(&self, nodes: &[&NodeInfo]) -> Vec<i64> {
        let raw: Vec<i64> = nodes
            .iter()
            .map(|n| {
                self.scores
                    .iter()
                    .filter_map(|(key, values)| n.labels.get(key).and_then(|v| values.get(v)))
                    .sum::<i64>()
            })
            .collect();
        let (min, max) = (raw.iter().copied().min().unwrap_or(0), raw.iter().copied().max().unwrap_or(0));
        raw.iter().map(|s| if max > min { 100 * (s - min) / (max - min) } else { 0 }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;

    fn node(name: &str, zone: &str) -> Node {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}}}))
        .unwrap()
    }

    fn pod(name: &str, labels: serde_json::Value, affinity: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "c"}], "affinity": affinity}}))
        .unwrap()
    }

    fn no_labels(_: &str) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn required_terms_filter_by_domain() {
        let mut cache = Cache::default();
        for (n, z) in [("a", "z1"), ("b", "z1"), ("c", "z2")] {
            cache.set_node(&node(n, z));
        }
        let db = pod("db", serde_json::json!({"app": "db"}), serde_json::json!(null));
        cache.add_pod("default/db", &db, "a", false);
        let near_db = pod(
            "web",
            serde_json::json!({"app": "web"}),
            serde_json::json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}),
        );
        let st = prepare(&near_db, &mut cache, &no_labels, &Default::default());
        let infos: Vec<NodeInfo> = cache.sorted_nodes().into_iter().cloned().collect();
        let n = |name: &str| infos.iter().find(|n| n.name == name).unwrap().clone();
        assert!(st.filter(&n("a")).is_ok() && st.filter(&n("b")).is_ok());
        assert_eq!(st.filter(&n("c")).unwrap_err().reason, AFFINITY_MISMATCH);

        let away = pod(
            "x",
            serde_json::json!({"app": "x"}),
            serde_json::json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}),
        );
        let st = prepare(&away, &mut cache, &no_labels, &Default::default());
        assert_eq!(st.filter(&n("a")).unwrap_err().reason, ANTI_AFFINITY_MISMATCH);
        assert!(st.filter(&n("b")).is_ok());

        // A placed pod's anti-affinity keeps matching pods out of its zone.
        let loner = pod(
            "loner",
            serde_json::json!({"app": "loner"}),
            serde_json::json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}),
        );
        cache.add_pod("default/loner", &loner, "c", false);
        let web = pod("web2", serde_json::json!({"app": "web"}), serde_json::json!(null));
        let st = prepare(&web, &mut cache, &no_labels, &Default::default());
        assert_eq!(st.filter(&n("c")).unwrap_err().reason, EXISTING_ANTI_AFFINITY_MISMATCH);
        assert!(st.filter(&n("a")).is_ok());
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_goes_anywhere() {
        let mut cache = Cache::default();
        cache.set_node(&node("a", "z1"));
        let p = pod(
            "p",
            serde_json::json!({"app": "band"}),
            serde_json::json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "band"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}),
        );
        let st = prepare(&p, &mut cache, &no_labels, &Default::default());
        assert!(st.filter(cache.sorted_nodes()[0]).is_ok());
    }

    #[test]
    fn preferred_terms_score_domains() {
        let mut cache = Cache::default();
        for (n, z) in [("a", "z1"), ("b", "z2")] {
            cache.set_node(&node(n, z));
        }
        cache.add_pod(
            "default/cache",
            &pod("cache", serde_json::json!({"app": "cache"}), serde_json::json!(null)),
            "b",
            false,
        );
        let p = pod(
            "p",
            serde_json::json!({}),
            serde_json::json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "topology.kubernetes.io/zone"}}]}}),
        );
        let st = prepare(&p, &mut cache, &no_labels, &Default::default());
        let nodes = cache.sorted_nodes();
        assert_eq!(st.score(&nodes), vec![0, 100]);
    }

    #[test]
    fn placed_pods_terms_score_by_the_profile_args() {
        let mut cache = Cache::default();
        for (n, z) in [("a", "z1"), ("b", "z2"), ("c", "z3")] {
            cache.set_node(&node(n, z));
        }
        // On a, a pod that requires the incoming pod's zone; on b, one that prefers it (weight 10).
        let requires = serde_json::json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "topology.kubernetes.io/zone"}]}});
        let prefers = serde_json::json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "topology.kubernetes.io/zone"}}]}});
        cache.add_pod("default/r", &pod("r", serde_json::json!({"app": "r"}), requires), "a", false);
        cache.add_pod("default/q", &pod("q", serde_json::json!({"app": "q"}), prefers), "b", false);
        let web = pod("web", serde_json::json!({"app": "web"}), serde_json::json!(null));
        let score = |args: &crate::profile::Args, cache: &mut Cache| {
            let st = prepare(&web, cache, &no_labels, args);
            let nodes = cache.sorted_nodes();
            st.score(&nodes)
        };
        // hardPodAffinityWeight 1 (the default): the preferred term's 10 wins.
        assert_eq!(score(&Default::default(), &mut cache), vec![10, 100, 0]);
        let heavy = crate::profile::Args { hard_pod_affinity_weight: 20, ..Default::default() };
        assert_eq!(score(&heavy, &mut cache), vec![100, 50, 0]);
        let none = crate::profile::Args { hard_pod_affinity_weight: 0, ..Default::default() };
        assert_eq!(score(&none, &mut cache), vec![0, 100, 0]);
        let ignore = crate::profile::Args { ignore_preferred_terms_of_existing_pods: true, ..Default::default() };
        assert_eq!(score(&ignore, &mut cache), vec![100, 0, 0]);
    }
}
