//! PodTopologySpread: `whenUnsatisfiable: DoNotSchedule` constraints filter (a node may not raise its
//! domain's matching-pod count more than `maxSkew` above the emptiest eligible domain), and
//! `ScheduleAnyway` constraints, or the system defaults when a pod has none (hostname maxSkew 3, zone
//! maxSkew 5), score: fewer matching pods in the node's domains is better, each constraint weighted by
//! log(domains + 2) as upstream.
//!
//! The defaults select the pods that share the pod's controlling owner (upstream unions the
//! selectors of the Services, ReplicaSets, ReplicationControllers and StatefulSets that select it; the
//! owner is what those selectors almost always amount to).

use crate::cache::{Cache, NodeInfo};
use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use std::collections::{BTreeMap, HashMap};

const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

/// One constraint with its per-domain counts over the eligible nodes.
pub struct Counted {
    key: String,
    max_skew: i64,
    hard: bool,
    /// domain value → matching pods
    counts: HashMap<String, i64>,
    self_match: bool,
}

#[derive(Default)]
pub struct State {
    constraints: Vec<Counted>,
}

enum Selects {
    /// A label selector, parsed once (None: one that does not parse, which selects nothing), and its
    /// JSON as an identity.
    Labels(Option<apimachinery::labels::Selector>, String),
    Owner(String),
}

fn parse(sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> Selects {
    let v = serde_json::to_value(sel).unwrap_or_default();
    Selects::Labels(apimachinery::labels::Selector::from_label_selector(&v).ok(), v.to_string())
}

fn label_selects(sel: &Option<apimachinery::labels::Selector>, labels: &BTreeMap<String, String>) -> bool {
    sel.as_ref().is_some_and(|s| s.matches(labels))
}

/// Counts the matching pods per domain for the pod's constraints (explicit, else the defaults).
pub fn prepare(pod: &Pod, cache: &mut Cache, eligible: impl Fn(&NodeInfo) -> bool) -> State {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let explicit: Vec<TopologySpreadConstraint> =
        pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.clone()).unwrap_or_default();
    let owner = pod
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.iter().find(|r| r.controller == Some(true)))
        .map(|r| r.uid.clone());
    let mut wanted: Vec<(String, i64, bool, Selects)> = Vec::new();
    if explicit.is_empty() {
        if let Some(uid) = owner {
            wanted.push((HOSTNAME.into(), 3, false, Selects::Owner(uid.clone())));
            wanted.push((ZONE.into(), 5, false, Selects::Owner(uid)));
        }
    }
    let explicit_ref = pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_ref());
    for c in explicit_ref.into_iter().flatten() {
        if let Some(sel) = c.label_selector.as_ref() {
            wanted.push((
                c.topology_key.clone(),
                c.max_skew as i64,
                c.when_unsatisfiable == "DoNotSchedule",
                parse(sel),
            ));
        }
    }
    if wanted.is_empty() {
        return State { constraints: Vec::new() };
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let mut constraints = Vec::new();
    for (key, max_skew, hard, sel) in wanted {
        let self_match = match &sel {
            Selects::Labels(s, _) => label_selects(s, &labels),
            Selects::Owner(_) => true,
        };
        let id = match &sel {
            Selects::Owner(uid) => format!("owner:{uid}"),
            Selects::Labels(_, json) => format!("labels:{json}"),
        };
        let full_id = cache.ensure_spread_counts(&ns, &id, || match sel {
            Selects::Owner(uid) => {
                Box::new(move |_: &BTreeMap<String, String>, owner: Option<&str>| owner == Some(uid.as_str()))
            }
            Selects::Labels(s, _) => {
                Box::new(move |l: &BTreeMap<String, String>, _: Option<&str>| label_selects(&s, l))
            }
        });
        let per_node = cache.spread_counts_of(&full_id);
        // Domains of the eligible nodes, with their matching pods.
        let mut counts: HashMap<String, i64> = HashMap::new();
        for n in cache.sorted_nodes().into_iter().filter(|n| eligible(n)) {
            if let Some(d) = n.labels.get(&key) {
                let here = per_node.and_then(|m| m.get(&n.name)).copied().unwrap_or(0);
                match counts.get_mut(d.as_str()) {
                    Some(c) => *c += here,
                    None => {
                        counts.insert(d.clone(), here);
                    }
                }
            }
        }
        constraints.push(Counted { key, max_skew, hard, counts, self_match });
    }
    State { constraints }
}

impl State {
    /// The DoNotSchedule constraints on one node.
    pub fn filter(&self, node: &NodeInfo) -> Result<(), &'static str> {
        for c in self.constraints.iter().filter(|c| c.hard) {
            let Some(domain) = node.labels.get(&c.key) else {
                return Err("node(s) didn't match pod topology spread constraints (missing required label)");
            };
            let min = c.counts.values().copied().min().unwrap_or(0);
            let here = c.counts.get(domain).copied().unwrap_or(0);
            if here + c.self_match as i64 - min > c.max_skew {
                return Err("node(s) didn't match pod topology spread constraints");
            }
        }
        Ok(())
    }

    pub fn has_soft(&self) -> bool {
        self.constraints.iter().any(|c| !c.hard)
    }

    /// Normalized 0..=100 scores of the feasible nodes (ScheduleAnyway constraints).
    pub fn score(&self, nodes: &[&NodeInfo]) -> Vec<i64> {
        let raw: Vec<f64> = nodes
            .iter()
            .map(|n| {
                self.constraints
                    .iter()
                    .filter(|c| !c.hard)
                    .map(|c| {
                        let weight = ((c.counts.len() + 2) as f64).ln();
                        let cnt = n.labels.get(&c.key).and_then(|d| c.counts.get(d)).copied().unwrap_or(0);
                        cnt as f64 * weight + (c.max_skew - 1) as f64
                    })
                    .sum()
            })
            .collect();
        let max = raw.iter().copied().fold(0.0, f64::max);
        let min = raw.iter().copied().fold(f64::INFINITY, f64::min);
        raw.iter().map(|s| if max == 0.0 { 100 } else { (100.0 * (max + min - s) / max) as i64 }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;

    fn node(name: &str, zone: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {HOSTNAME: name, ZONE: zone}},
            "status": {"allocatable": {"cpu": "8", "memory": "8Gi", "pods": "110"}}
        }))
        .unwrap()
    }

    fn pod(name: &str, app: &str) -> Pod {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": app}}}),
        )
        .unwrap()
    }

    #[test]
    fn hard_constraints_bound_the_skew() {
        let mut cache = Cache::default();
        for (n, z) in [("a1", "a"), ("b1", "b"), ("c1", "c")] {
            cache.set_node(&node(n, z));
        }
        cache.add_pod("default/p1", &pod("p1", "web"), "a1", false);
        cache.add_pod("default/p2", &pod("p2", "web"), "a1", false);
        cache.add_pod("default/p3", &pod("p3", "web"), "b1", false);
        let mut incoming: Pod = pod("p4", "web");
        incoming.spec = Some(serde_json::from_value(serde_json::json!({"containers": [], "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]})).unwrap());
        let state = prepare(&incoming, &mut cache, |_| true);
        let names = ["a1", "b1", "c1"];
        let ok: Vec<bool> = names.iter().map(|n| state.filter(cache.node_info(n).unwrap()).is_ok()).collect();
        // Zone a has 2, b 1, c 0: only c keeps the skew within 1.
        assert_eq!(ok, [false, false, true]);
    }

    #[test]
    fn soft_scores_prefer_emptier_domains() {
        let mut cache = Cache::default();
        for (n, z) in [("a1", "a"), ("b1", "b")] {
            cache.set_node(&node(n, z));
        }
        cache.add_pod("default/p1", &pod("p1", "web"), "a1", false);
        let mut incoming = pod("p2", "web");
        incoming.spec = Some(serde_json::from_value(serde_json::json!({"containers": [], "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": HOSTNAME, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}]})).unwrap());
        let state = prepare(&incoming, &mut cache, |_| true);
        let nodes = [cache.node_info("a1").unwrap(), cache.node_info("b1").unwrap()];
        let s = state.score(&nodes);
        assert!(s[1] > s[0], "{s:?}");
    }
}
