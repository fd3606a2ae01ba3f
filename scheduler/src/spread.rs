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
    /// `minDomains`: with fewer eligible domains, the global minimum counts as 0.
    min_domains: usize,
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

/// One constraint as asked: topology key, maxSkew, DoNotSchedule, selector, minDomains, and whether
/// node affinity (`nodeAffinityPolicy: Honor`) and taints (`nodeTaintsPolicy: Honor`) limit the
/// nodes counted.
struct Wanted {
    key: String,
    max_skew: i64,
    hard: bool,
    sel: Selects,
    min_domains: usize,
    honor_affinity: bool,
    honor_taints: bool,
}

/// The constraint's selector with `matchLabelKeys` merged in (`key In (the pod's value)`).
fn with_label_keys(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    keys: &[String],
    labels: &BTreeMap<String, String>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
    let mut sel = sel.clone();
    for k in keys {
        if let Some(v) = labels.get(k) {
            sel.match_expressions.get_or_insert_with(Vec::new).push(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: k.clone(),
                    operator: "In".into(),
                    values: Some(vec![v.clone()]),
                },
            );
        }
    }
    sel
}

/// Counts the matching pods per domain for the pod's constraints (explicit, else the defaults:
/// `defaults` from the profile's `defaultingType: List`, or the system ones).
pub fn prepare(pod: &Pod, cache: &mut Cache, defaults: Option<&[TopologySpreadConstraint]>) -> State {
    static EMPTY: std::sync::OnceLock<k8s_openapi::api::core::v1::PodSpec> = std::sync::OnceLock::new();
    let spec = pod.spec.as_ref().unwrap_or_else(|| EMPTY.get_or_init(Default::default));
    let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let explicit: Vec<TopologySpreadConstraint> =
        pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.clone()).unwrap_or_default();
    let owner = pod
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.iter().find(|r| r.controller == Some(true)))
        .map(|r| r.uid.clone());
    let mut wanted: Vec<Wanted> = Vec::new();
    if explicit.is_empty() {
        // Without an owner the defaults' selector would be empty, and upstream skips them then.
        if let Some(uid) = owner {
            match defaults {
                None => {
                    for (key, max_skew) in [(HOSTNAME, 3), (ZONE, 5)] {
                        wanted.push(Wanted {
                            key: key.into(),
                            max_skew,
                            hard: false,
                            sel: Selects::Owner(uid.clone()),
                            min_domains: 1,
                            honor_affinity: true,
                            honor_taints: false,
                        });
                    }
                }
                Some(list) => {
                    for c in list {
                        let hard = c.when_unsatisfiable == "DoNotSchedule";
                        wanted.push(Wanted {
                            key: c.topology_key.clone(),
                            max_skew: c.max_skew as i64,
                            hard,
                            sel: Selects::Owner(uid.clone()),
                            min_domains: if hard { c.min_domains.unwrap_or(1).max(1) as usize } else { 1 },
                            honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                        });
                    }
                }
            }
        }
    }
    for c in &explicit {
        if let Some(sel) = c.label_selector.as_ref() {
            let hard = c.when_unsatisfiable == "DoNotSchedule";
            let sel = with_label_keys(sel, c.match_label_keys.as_deref().unwrap_or(&[]), &pod_labels);
            wanted.push(Wanted {
                key: c.topology_key.clone(),
                max_skew: c.max_skew as i64,
                hard,
                sel: parse(&sel),
                min_domains: if hard { c.min_domains.unwrap_or(1).max(1) as usize } else { 1 },
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            });
        }
    }
    if wanted.is_empty() {
        return State { constraints: Vec::new() };
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let mut constraints = Vec::new();
    // upstream counts only nodes that carry every topology key of the constraints of the same kind.
    // A pod without nodeSelector and required node affinity passes NodeAffinity everywhere.
    let affinity_free = spec.node_selector.as_ref().is_none_or(|s| s.is_empty())
        && spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
            .is_none();
    let hard_keys: Vec<String> = wanted.iter().filter(|w| w.hard).map(|w| w.key.clone()).collect();
    let soft_keys: Vec<String> = wanted.iter().filter(|w| !w.hard).map(|w| w.key.clone()).collect();
    for Wanted { key, max_skew, hard, sel, min_domains, honor_affinity, honor_taints } in wanted {
        let keys = if hard { &hard_keys } else { &soft_keys };
        let eligible = |n: &NodeInfo| {
            keys.iter().all(|k| n.labels.contains_key(k))
                && (!honor_affinity || crate::plugins::affinity_matches(spec, n))
                && (!honor_taints
                    || n.taints.iter().filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute").all(|t| {
                        spec.tolerations.iter().flatten().any(|tol| component_base::taints::tolerates(tol, t))
                    }))
        };
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
        // Every node with the keys counts when neither affinity nor taints narrow them: the cache's
        // per-domain counters answer without a walk over the nodes.
        let narrowed = (honor_affinity && !affinity_free) || honor_taints;
        if !narrowed && keys.iter().all(|k| *k == key || cache.nodes_lacking(k) == 0) {
            let counts = cache.domain_counts(&full_id, &key);
            constraints.push(Counted { key, max_skew, hard, min_domains, counts, self_match });
            continue;
        }
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
        constraints.push(Counted { key, max_skew, hard, min_domains, counts, self_match });
    }
    State { constraints }
}

impl State {
    /// The DoNotSchedule constraints on one node: Err(reason, whether evicting pods could help).
    pub fn filter(&self, node: &NodeInfo) -> Result<(), (&'static str, bool)> {
        for c in self.constraints.iter().filter(|c| c.hard) {
            let Some(domain) = node.labels.get(&c.key) else {
                return Err(("node(s) didn't match pod topology spread constraints (missing required label)", false));
            };
            let min = if c.counts.len() < c.min_domains { 0 } else { c.counts.values().copied().min().unwrap_or(0) };
            let here = c.counts.get(domain).copied().unwrap_or(0);
            if here + c.self_match as i64 - min > c.max_skew {
                return Err(("node(s) didn't match pod topology spread constraints", true));
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
        let state = prepare(&incoming, &mut cache, None);
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
        let state = prepare(&incoming, &mut cache, None);
        let nodes = [cache.node_info("a1").unwrap(), cache.node_info("b1").unwrap()];
        let s = state.score(&nodes);
        assert!(s[1] > s[0], "{s:?}");
    }

    #[test]
    fn min_domains_label_keys_and_taint_policy() {
        let mut cache = Cache::default();
        for (n, z) in [("a1", "a"), ("b1", "b")] {
            cache.set_node(&node(n, z));
        }
        let mut tainted: Node = node("c1", "c");
        tainted.spec = Some(
            serde_json::from_value(serde_json::json!({"taints": [{"key": "k", "effect": "NoSchedule"}]})).unwrap(),
        );
        cache.set_node(&tainted);
        let mut v1 = pod("p1", "web");
        v1.metadata.labels.as_mut().unwrap().insert("rev".into(), "1".into());
        cache.add_pod("default/p1", &v1, "b1", false);
        let incoming = |constraint: serde_json::Value| {
            let mut p = pod("new", "web");
            p.metadata.labels.as_mut().unwrap().insert("rev".into(), "2".into());
            p.spec = Some(
                serde_json::from_value(
                    serde_json::json!({"containers": [], "topologySpreadConstraints": [constraint]}),
                )
                .unwrap(),
            );
            p
        };
        let base = serde_json::json!({"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}});
        fn ok(state: &State, cache: &Cache) -> Vec<bool> {
            ["a1", "b1", "c1"].iter().map(|n| state.filter(cache.node_info(n).unwrap()).is_ok()).collect()
        }
        // Zone b has 1, a and c (taints ignored by default) 0: b would make skew 2.
        let state = prepare(&incoming(base.clone()), &mut cache, None);
        assert_eq!(ok(&state, &cache), [true, false, true]);
        // matchLabelKeys: only pods of the same revision count, so b is fine too.
        let mut keyed = base.clone();
        keyed["matchLabelKeys"] = serde_json::json!(["rev"]);
        let state = prepare(&incoming(keyed), &mut cache, None);
        assert_eq!(ok(&state, &cache), [true, true, true]);
        // minDomains 4 of 3 domains: the global minimum is 0, so b (1 + 1 > 1) stays closed.
        let mut min = base.clone();
        min["minDomains"] = serde_json::json!(4);
        min["maxSkew"] = serde_json::json!(2);
        let state = prepare(&incoming(min.clone()), &mut cache, None);
        assert_eq!(ok(&state, &cache), [true, true, true], "maxSkew 2 admits 1 + 1 - 0");
        min["maxSkew"] = serde_json::json!(1);
        let state = prepare(&incoming(min), &mut cache, None);
        assert!(!ok(&state, &cache)[1]);
        // nodeTaintsPolicy Honor: the tainted node's zone does not count, so zones a and b decide.
        let mut honor = base.clone();
        honor["nodeTaintsPolicy"] = serde_json::json!("Honor");
        cache.add_pod("default/p2", &pod("p2", "web"), "a1", false);
        let state = prepare(&incoming(honor), &mut cache, None);
        // a 1, b 1 (c not counted): every counted zone is at 1, so a and b are open; c's domain is
        // unknown to the counts and treated as 0 matching pods.
        assert_eq!(ok(&state, &cache), [true, true, true]);
        let state = prepare(&incoming(base), &mut cache, None);
        // With c counted (0 pods), a and b would make skew 2.
        assert_eq!(ok(&state, &cache), [false, false, true]);
    }

    #[test]
    fn list_defaults_apply_to_owned_pods_without_constraints() {
        let mut cache = Cache::default();
        for (n, z) in [("a1", "a"), ("b1", "b")] {
            cache.set_node(&node(n, z));
        }
        let owned = |name: &str| {
            let mut p = pod(name, "web");
            p.metadata.owner_references = Some(vec![serde_json::from_value(serde_json::json!(
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true}))
            .unwrap()]);
            p
        };
        cache.add_pod("default/p1", &owned("p1"), "a1", false);
        let defaults: Vec<TopologySpreadConstraint> = serde_json::from_value(serde_json::json!([
            {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}]))
        .unwrap();
        let filter =
            |state: &State, cache: &Cache| ["a1", "b1"].map(|n| state.filter(cache.node_info(n).unwrap()).is_ok());
        // `List` defaults with DoNotSchedule filter: zone a already has the sibling.
        let state = prepare(&owned("p2"), &mut cache, Some(&defaults));
        assert_eq!(filter(&state, &cache), [false, true]);
        // The system defaults only score; an empty list has no constraint at all.
        let state = prepare(&owned("p2"), &mut cache, None);
        assert_eq!(filter(&state, &cache), [true, true]);
        assert!(state.has_soft());
        let state = prepare(&owned("p2"), &mut cache, Some(&[]));
        assert!(!state.has_soft());
        // A pod without a controlling owner has no default selector, so no default constraint.
        let state = prepare(&pod("p3", "web"), &mut cache, Some(&defaults));
        assert_eq!(filter(&state, &cache), [true, true]);
    }
}
