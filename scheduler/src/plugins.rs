//! The default profile's filter and score plugins, with upstream's semantics and failure reasons:
//! NodeUnschedulable, NodeName, TaintToleration, NodeAffinity (required terms and `nodeSelector`;
//! preferred terms for scoring), NodePorts, NodeResourcesFit (LeastAllocated/MostAllocated scoring) and
//! NodeResourcesBalancedAllocation.

use crate::cache::{NodeInfo, Resources};
use component_base::taints::tolerates;
use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint};
use std::collections::BTreeMap;

/// Why a node does not fit; `resolvable` says whether evicting pods could help (preemption).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub resolvable: bool,
    /// From NodeResourcesFit or NodePorts: what removing pods from the node's copy shows at once.
    pub from_fit: bool,
}

fn fail(reason: impl Into<String>, resolvable: bool) -> Failure {
    Failure { reason: reason.into(), resolvable, from_fit: false }
}

/// A NodeResourcesFit or NodePorts failure, which evicting pods may resolve.
fn fit_fail(reason: impl Into<String>) -> Failure {
    Failure { reason: reason.into(), resolvable: true, from_fit: true }
}

fn requirement_matches(
    r: &NodeSelectorRequirement,
    labels: &BTreeMap<String, String>,
    fields: &BTreeMap<String, String>,
    field: bool,
) -> bool {
    let source = if field { fields } else { labels };
    let v = source.get(&r.key);
    let values = r.values.clone().unwrap_or_default();
    match r.operator.as_str() {
        "In" => v.is_some_and(|v| values.contains(v)),
        "NotIn" => v.is_none_or(|v| !values.contains(v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) =
                (v.and_then(|v| v.parse::<i64>().ok()), values.first().and_then(|b| b.parse::<i64>().ok()))
            else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// A node selector term: every expression and field matches (an empty term matches nothing).
pub fn term_matches(t: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let exprs = t.match_expressions.clone().unwrap_or_default();
    let fields = t.match_fields.clone().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let field_values: BTreeMap<String, String> = [("metadata.name".to_string(), node.name.clone())].into();
    exprs.iter().all(|r| requirement_matches(r, &node.labels, &field_values, false))
        && fields.iter().all(|r| requirement_matches(r, &node.labels, &field_values, true))
}

/// NodeAffinity's filter: the pod's `nodeSelector` and required node affinity terms.
pub fn affinity_matches(spec: &k8s_openapi::api::core::v1::PodSpec, node: &NodeInfo) -> bool {
    let selector_ok = spec.node_selector.iter().flatten().all(|(k, v)| node.labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    selector_ok && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// Runs every filter; the first failure is the node's reason, as upstream's filter loop stops there.
pub fn filter(pod: &Pod, req: &Resources, ports: &[(String, String, i32)], node: &NodeInfo) -> Result<(), Failure> {
    static EMPTY: std::sync::OnceLock<k8s_openapi::api::core::v1::PodSpec> = std::sync::OnceLock::new();
    let spec = pod.spec.as_ref().unwrap_or_else(|| EMPTY.get_or_init(Default::default));
    // NodeUnschedulable (a pod tolerating the unschedulable taint may go).
    if node.unschedulable {
        let t =
            Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Default::default() };
        if !spec.tolerations.iter().flatten().any(|tol| tolerates(tol, &t)) {
            return Err(fail("node(s) were unschedulable", false));
        }
    }
    // NodeName.
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        if n != node.name {
            return Err(fail("node(s) didn't match the requested node name", false));
        }
    }
    // TaintToleration: NoSchedule and NoExecute taints must be tolerated.
    for t in node.taints.iter().filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute") {
        if !spec.tolerations.iter().flatten().any(|tol| tolerates(tol, t)) {
            return Err(fail(
                format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value.as_deref().unwrap_or("")),
                false,
            ));
        }
    }
    // NodeAffinity: nodeSelector and required terms.
    if !affinity_matches(spec, node) {
        return Err(fail("node(s) didn't match Pod's node affinity/selector", false));
    }
    // NodePorts.
    for (proto, ip, port) in ports {
        let clash = node
            .used_ports
            .iter()
            .any(|(p, i, n)| p == proto && n == port && (i == ip || i == "0.0.0.0" || ip == "0.0.0.0"));
        if clash {
            return Err(fit_fail("node(s) didn't have free ports for the requested pod ports"));
        }
    }
    // NodeResourcesFit.
    if node.pods + 1 > node.allocatable.pods {
        return Err(fit_fail("Too many pods"));
    }
    if req.cpu > 0 && node.requested.cpu + req.cpu > node.allocatable.cpu {
        return Err(fit_fail("Insufficient cpu"));
    }
    if req.memory > 0 && node.requested.memory + req.memory > node.allocatable.memory {
        return Err(fit_fail("Insufficient memory"));
    }
    if req.ephemeral > 0 && node.requested.ephemeral + req.ephemeral > node.allocatable.ephemeral {
        return Err(fit_fail("Insufficient ephemeral-storage"));
    }
    for (name, want) in &req.scalar {
        let have = node.allocatable.scalar.get(name).copied().unwrap_or(0);
        let used = node.requested.scalar.get(name).copied().unwrap_or(0);
        if *want > 0 && used + want > have {
            return Err(fit_fail(format!("Insufficient {name}")));
        }
    }
    Ok(())
}

/// How NodeResourcesFit scores (`scoringStrategy.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    LeastAllocated,
    MostAllocated,
}

/// Scores 0..=100 for each scoring plugin, weighted as the default profile: NodeResourcesFit 1,
/// NodeResourcesBalancedAllocation 1, TaintToleration 3, NodeAffinity 2. Each plugin's scores are
/// normalized over the feasible nodes as upstream does.
pub fn score(pod: &Pod, non_zero: &Resources, nodes: &[&NodeInfo], strategy: Strategy) -> Vec<i64> {
    static EMPTY: std::sync::OnceLock<k8s_openapi::api::core::v1::PodSpec> = std::sync::OnceLock::new();
    let spec = pod.spec.as_ref().unwrap_or_else(|| EMPTY.get_or_init(Default::default));
    let n = nodes.len();
    let mut total = vec![0i64; n];
    // NodeResourcesFit: cpu and memory, weight 1 each.
    for (i, node) in nodes.iter().enumerate() {
        let ratio = |used: i64, cap: i64| -> i64 {
            if cap <= 0 {
                return 0;
            }
            let used = used.min(cap);
            match strategy {
                Strategy::LeastAllocated => (cap - used) * 100 / cap,
                Strategy::MostAllocated => used * 100 / cap,
            }
        };
        let cpu = ratio(node.non_zero_requested.cpu + non_zero.cpu, node.allocatable.cpu);
        let mem = ratio(node.non_zero_requested.memory + non_zero.memory, node.allocatable.memory);
        total[i] += (cpu + mem) / 2;
    }
    // NodeResourcesBalancedAllocation: 100 minus the spread of the cpu and memory fractions.
    for (i, node) in nodes.iter().enumerate() {
        let f = |used: i64, cap: i64| if cap <= 0 { 1.0 } else { ((used as f64) / cap as f64).min(1.0) };
        let c = f(node.non_zero_requested.cpu + non_zero.cpu, node.allocatable.cpu);
        let m = f(node.non_zero_requested.memory + non_zero.memory, node.allocatable.memory);
        let mean = (c + m) / 2.0;
        let std = (((c - mean).powi(2) + (m - mean).powi(2)) / 2.0).sqrt();
        total[i] += ((1.0 - std) * 100.0) as i64;
    }
    // TaintToleration: fewer intolerable PreferNoSchedule taints is better (normalized, reversed).
    let counts: Vec<i64> = nodes
        .iter()
        .map(|node| {
            node.taints
                .iter()
                .filter(|t| t.effect == "PreferNoSchedule")
                .filter(|t| !spec.tolerations.iter().flatten().any(|tol| tolerates(tol, t)))
                .count() as i64
        })
        .collect();
    let max = counts.iter().copied().max().unwrap_or(0);
    for i in 0..n {
        let s = if max == 0 { 100 } else { 100 - counts[i] * 100 / max };
        total[i] += 3 * s;
    }
    // NodeAffinity: the weights of the preferred terms a node matches (normalized).
    let preferred = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.preferred_during_scheduling_ignored_during_execution.clone())
        .unwrap_or_default();
    let sums: Vec<i64> = nodes
        .iter()
        .map(|node| preferred.iter().filter(|p| term_matches(&p.preference, node)).map(|p| p.weight as i64).sum())
        .collect();
    let max = sums.iter().copied().max().unwrap_or(0);
    for i in 0..n {
        let s = if max == 0 { 0 } else { sums[i] * 100 / max };
        total[i] += 2 * s;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::node_info;
    use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn node(name: &str, cpu: &str, taints: Vec<Taint>) -> NodeInfo {
        let n = Node {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec { taints: Some(taints), ..Default::default() }),
            status: Some(NodeStatus {
                allocatable: Some(
                    [
                        ("cpu".to_string(), Quantity(cpu.into())),
                        ("memory".to_string(), Quantity("4Gi".into())),
                        ("pods".to_string(), Quantity("110".into())),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
        };
        node_info(&n)
    }

    #[test]
    fn filters_give_upstream_reasons() {
        let pod: Pod = serde_json::from_value(
            serde_json::json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}}),
        )
        .unwrap();
        let req = crate::cache::pod_requests(&pod, false);
        let small = node("small", "1", vec![]);
        assert_eq!(filter(&pod, &req, &[], &small).unwrap_err(), fit_fail("Insufficient cpu"));
        let tainted = node(
            "t",
            "4",
            vec![Taint {
                key: "dedicated".into(),
                value: Some("gpu".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            }],
        );
        assert_eq!(
            filter(&pod, &req, &[], &tainted).unwrap_err().reason,
            "node(s) had untolerated taint {dedicated: gpu}"
        );
        assert!(filter(&pod, &req, &[], &node("big", "4", vec![])).is_ok());
    }

    #[test]
    fn least_allocated_prefers_emptier_nodes() {
        let pod: Pod = serde_json::from_value(
            serde_json::json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}),
        )
        .unwrap();
        let nz = crate::cache::pod_requests(&pod, true);
        let a = node("a", "2", vec![]);
        let b = node("b", "64", vec![]);
        let scores = score(&pod, &nz, &[&a, &b], Strategy::LeastAllocated);
        assert!(scores[1] > scores[0], "{scores:?}");
        let scores = score(&pod, &nz, &[&a, &b], Strategy::MostAllocated);
        assert!(scores[0] > scores[1], "{scores:?}");
    }
}
