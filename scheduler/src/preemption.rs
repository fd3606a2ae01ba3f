//! DefaultPreemption's dry run, as upstream's: for a pod that fits nowhere, each node where evicting
//! pods could help (a resource, pod-count or host-port failure) is tried with every lower-priority pod
//! removed; if the pod then fits, victims are reprieved one by one, most important first (those whose
//! eviction would break a PodDisruptionBudget before the others), as long as the pod still fits. The
//! node is chosen by upstream's order: fewest budget violations, then the lowest highest-victim
//! priority, the lowest sum of victim priorities, the fewest victims, the latest-started most
//! important victim.
//!
//! Every filter is re-run in the dry run with the victims taken out of the cache, so nodes that failed
//! on pod topology spread, inter-pod anti-affinity or a ReadWriteOncePod claim are candidates too, as
//! upstream's; a failure no eviction can fix (node affinity, taints, a missing claim) is not. The dry
//! run stops after upstream's number of candidates (10% of the nodes, at least 100).

use crate::cache::{Cache, PodEntry, Resources};
use crate::plugins::{self, Failure};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use std::collections::{BTreeMap, HashMap};

/// A victim's (priority, start) for comparing candidates.
type VictimRank = (i32, Option<i64>);

/// A chosen node and the pods to evict from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub node: String,
    /// Cache keys (`namespace/name`) of the victims, most important first.
    pub victims: Vec<String>,
    pub pdb_violations: usize,
}

/// A budget: its namespace, selector, and how many more disruptions it allows.
pub struct Budget {
    namespace: String,
    selector: Option<apimachinery::labels::Selector>,
    allowed: i64,
}

impl Budget {
    pub fn of(pdb: &PodDisruptionBudget) -> Budget {
        let selector = pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| apimachinery::labels::Selector::from_label_selector(&serde_json::to_value(s).ok()?).ok());
        Budget {
            namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
            selector,
            allowed: pdb.status.as_ref().map(|s| s.disruptions_allowed as i64).unwrap_or(0),
        }
    }

    fn covers(&self, e: &PodEntry) -> bool {
        // An empty selector selects nothing for a budget (upstream's policy/v1 rule).
        e.namespace == self.namespace && self.selector.as_ref().is_some_and(|s| !s.is_empty() && s.matches(&e.labels))
    }
}

/// The filters other than NodeResourcesFit and NodePorts (volume restrictions, topology spread,
/// inter-pod affinity), asked for one node of the cache as it stands (victims taken out).
pub type Recheck<'a> = dyn FnMut(&mut Cache, &str) -> bool + 'a;

/// The dry run over the nodes whose failure preemption may resolve. `failed` pairs each filtered-out
/// node with its failure. Victims are taken out of the cache for the dry run and put back before it
/// returns, so every filter sees the node (and, for spread and anti-affinity, its domains) without
/// them.
#[allow(clippy::too_many_arguments)]
pub fn find(
    pod: &Pod,
    req: &Resources,
    ports: &[(String, String, i32)],
    cache: &mut Cache,
    failed: &[(String, Failure)],
    budgets: &[Budget],
    profile: &crate::profile::Profile,
    recheck: &mut Recheck<'_>,
) -> Option<Candidate> {
    let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    let candidates: Vec<&str> = failed.iter().filter(|(_, f)| f.resolvable).map(|(n, _)| n.as_str()).collect();
    let is_candidate: std::collections::HashSet<&str> = candidates.iter().copied().collect();
    if candidates.is_empty() {
        return None;
    }
    let mut by_node: HashMap<String, Vec<(String, PodEntry)>> = HashMap::new();
    for (key, e) in cache.placed_pods_keyed() {
        if e.priority < priority && is_candidate.contains(e.node.as_str()) {
            by_node.entry(e.node.clone()).or_default().push((key.clone(), e.clone()));
        }
    }
    // minCandidateNodesPercentage and minCandidateNodesAbsolute: the dry run stops once this many
    // nodes with victims are found.
    let enough = profile.args.enough_candidates(cache.node_count());
    let mut fits = |cache: &mut Cache, node: &str| {
        cache.node_info(node).is_some_and(|info| plugins::filter(pod, req, ports, info, profile).is_ok())
            && recheck(cache, node)
    };
    let mut found: Vec<(Candidate, Vec<VictimRank>)> = Vec::new();
    for node in candidates {
        if found.len() >= enough {
            break;
        }
        let Some(mut lower) = by_node.remove(node) else { continue };
        for (key, _) in &lower {
            cache.take_pod(key);
        }
        if !fits(cache, node) {
            for (key, e) in lower {
                cache.put_pod(&key, e);
            }
            continue;
        }
        // Most important first: higher priority, then earlier start.
        lower.sort_by(|a, b| b.1.priority.cmp(&a.1.priority).then(a.1.start.cmp(&b.1.start)));
        let mut left: BTreeMap<usize, i64> = budgets.iter().enumerate().map(|(i, b)| (i, b.allowed)).collect();
        let (mut violating, mut fine) = (Vec::new(), Vec::new());
        for (key, e) in lower {
            let mut breaks = false;
            for (i, b) in budgets.iter().enumerate() {
                if b.covers(&e) {
                    let l = left.get_mut(&i).expect("budget");
                    *l -= 1;
                    breaks |= *l < 0;
                }
            }
            if breaks {
                violating.push((key, e));
            } else {
                fine.push((key, e));
            }
        }
        let mut victims = Vec::new();
        let mut taken_out = Vec::new();
        let mut pdb_violations = 0;
        for (group, is_violating) in [(violating, true), (fine, false)] {
            for (key, e) in group {
                let rank = (e.priority, e.start);
                cache.put_pod(&key, e);
                if !fits(cache, node) {
                    taken_out.push((key.clone(), cache.take_pod(&key).expect("just put back")));
                    victims.push((key, rank.0, rank.1));
                    pdb_violations += is_violating as usize;
                }
            }
        }
        for (key, e) in taken_out {
            cache.put_pod(&key, e);
        }
        if victims.is_empty() {
            continue;
        }
        victims.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
        let keys = victims.iter().map(|v| v.0.clone()).collect();
        let meta = victims.iter().map(|v| (v.1, v.2)).collect();
        found.push((Candidate { node: node.to_string(), victims: keys, pdb_violations }, meta));
    }
    // upstream's pickOneNodeForPreemption, criterion by criterion.
    found
        .into_iter()
        .min_by(|(a, am), (b, bm)| {
            let highest = |m: &Vec<VictimRank>| m.first().map(|v| v.0).unwrap_or(i32::MIN);
            let sum = |m: &Vec<VictimRank>| m.iter().map(|v| v.0 as i64 + i32::MAX as i64 + 1).sum::<i64>();
            // The latest start among the most important victims wins: compare reversed.
            let earliest_top = |m: &Vec<VictimRank>| {
                let top = highest(m);
                m.iter().filter(|v| v.0 == top).filter_map(|v| v.1).min().unwrap_or(i64::MAX)
            };
            a.pdb_violations
                .cmp(&b.pdb_violations)
                .then(highest(am).cmp(&highest(bm)))
                .then(sum(am).cmp(&sum(bm)))
                .then(a.victims.len().cmp(&b.victims.len()))
                .then(earliest_top(bm).cmp(&earliest_top(am)))
        })
        .map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;

    fn node(name: &str) -> Node {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}}))
        .unwrap()
    }

    fn pod(name: &str, cpu: &str, priority: i32, labels: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"priority": priority, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
        .unwrap()
    }

    fn fit_failure() -> Failure {
        Failure { reason: "Insufficient cpu".into(), resolvable: true }
    }

    #[test]
    fn fewest_and_least_important_victims() {
        let mut cache = Cache::default();
        for n in ["a", "b"] {
            cache.set_node(&node(n));
        }
        // a: two 1-cpu pods of priority 10; b: one 2-cpu pod of priority 5.
        cache.add_pod("default/a1", &pod("a1", "1", 10, serde_json::json!({})), "a", false);
        cache.add_pod("default/a2", &pod("a2", "1", 10, serde_json::json!({})), "a", false);
        cache.add_pod("default/b1", &pod("b1", "2", 5, serde_json::json!({})), "b", false);
        let p = pod("p", "1", 100, serde_json::json!({}));
        let req = crate::cache::pod_requests(&p, false);
        let failed = vec![("a".to_string(), fit_failure()), ("b".to_string(), fit_failure())];
        let c = find(&p, &req, &[], &mut cache, &failed, &[], &Default::default(), &mut |_, _| true).unwrap();
        // b's victim has the lower priority.
        assert_eq!(c, Candidate { node: "b".into(), victims: vec!["default/b1".into()], pdb_violations: 0 });

        // Not above anyone: nothing to preempt.
        let low = pod("low", "1", 5, serde_json::json!({}));
        assert!(find(&low, &req, &[], &mut cache, &failed, &[], &Default::default(), &mut |_, _| true).is_none());
    }

    #[test]
    fn budgets_are_respected_when_possible() {
        let mut cache = Cache::default();
        for n in ["a", "b"] {
            cache.set_node(&node(n));
        }
        cache.add_pod("default/a1", &pod("a1", "2", 10, serde_json::json!({"app": "guarded"})), "a", false);
        cache.add_pod("default/b1", &pod("b1", "2", 10, serde_json::json!({"app": "free"})), "b", false);
        let pdb: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "g", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "guarded"}}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}}))
        .unwrap();
        let p = pod("p", "1", 100, serde_json::json!({}));
        let req = crate::cache::pod_requests(&p, false);
        let failed = vec![("a".to_string(), fit_failure()), ("b".to_string(), fit_failure())];
        let c = find(&p, &req, &[], &mut cache, &failed, &[Budget::of(&pdb)], &Default::default(), &mut |_, _| true)
            .unwrap();
        assert_eq!(c.node, "b");
        assert_eq!(c.pdb_violations, 0);
    }

    #[test]
    fn anti_affinity_failures_are_resolved_by_evicting_the_matching_pods() {
        let mut cache = Cache::default();
        for n in ["a", "b"] {
            let mut node = node(n);
            node.metadata.labels = Some([("kubernetes.io/hostname".to_string(), n.to_string())].into());
            cache.set_node(&node);
        }
        cache.add_pod("default/x", &pod("x", "100m", 10, serde_json::json!({"app": "x"})), "a", false);
        cache.add_pod("default/y", &pod("y", "100m", 10, serde_json::json!({"app": "y"})), "a", false);
        cache.add_pod("default/xb", &pod("xb", "100m", 1000, serde_json::json!({"app": "x"})), "b", false);
        let mut p = pod("p", "100m", 100, serde_json::json!({}));
        p.spec.as_mut().unwrap().affinity = Some(
            serde_json::from_value(
                serde_json::json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}]}}),
            )
            .unwrap(),
        );
        let req = crate::cache::pod_requests(&p, false);
        let labels = |_: &str| BTreeMap::new();
        let anti = |node: &str| {
            (node.to_string(), Failure { reason: crate::interpod::ANTI_AFFINITY_MISMATCH.into(), resolvable: true })
        };
        let failed = vec![anti("a"), anti("b")];
        let mut recheck = |cache: &mut Cache, node: &str| {
            let st = crate::interpod::prepare(&p, cache, &labels, &Default::default());
            st.filter(cache.node_info(node).unwrap()).is_ok()
        };
        let c = find(&p, &req, &[], &mut cache, &failed, &[], &Default::default(), &mut recheck).unwrap();
        // On a, only x matches the term: y is reprieved. On b, xb outranks the pod.
        assert_eq!(c, Candidate { node: "a".into(), victims: vec!["default/x".into()], pdb_violations: 0 });
        assert!(cache.is_placed("default/x") && cache.is_placed("default/y"), "the dry run puts every pod back");
        assert_eq!(cache.node_info("a").unwrap().pods, 2);
    }
}
