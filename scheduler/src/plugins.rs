//! The default profile's filter and score plugins, with upstream's semantics and failure reasons:
//! NodeUnschedulable, NodeName, TaintToleration, NodeAffinity (required terms and `nodeSelector`;
//! preferred terms for scoring), NodePorts, NodeResourcesFit (LeastAllocated/MostAllocated scoring) and
//! NodeResourcesBalancedAllocation.

use crate::cache::{NodeInfo, Resources};
use crate::profile::*;
use component_base::taints::tolerates;
use k8s_openapi::api::core::v1::{NodeSelectorTerm, Pod, PodSpec, Taint};

/// Why a node does not fit; `resolvable` says whether evicting pods could help (preemption).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub resolvable: bool,
}

fn fail(reason: impl Into<String>, resolvable: bool) -> Failure {
    Failure { reason: reason.into(), resolvable }
}

/// A NodeResourcesFit or NodePorts failure, which evicting pods may resolve.
fn fit_fail(reason: impl Into<String>) -> Failure {
    Failure { reason: reason.into(), resolvable: true }
}

/// A node selector term against a scheduler node.
pub fn term_matches(t: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    component_base::scheduling::term_matches(t, &node.name, &node.labels)
}

/// NodeAffinity's filter: the pod's `nodeSelector` and required node affinity terms.
pub fn affinity_matches(spec: &PodSpec, node: &NodeInfo) -> bool {
    component_base::scheduling::node_affinity_matches(spec, &node.name, &node.labels)
}

/// Runs every filter; the first failure is the node's reason, as upstream's filter loop stops there.
pub fn filter(
    pod: &Pod,
    req: &Resources,
    ports: &[(String, String, i32)],
    node: &NodeInfo,
    profile: &Profile,
) -> Result<(), Failure> {
    static EMPTY: std::sync::OnceLock<k8s_openapi::api::core::v1::PodSpec> = std::sync::OnceLock::new();
    let spec = pod.spec.as_ref().unwrap_or_else(|| EMPTY.get_or_init(Default::default));
    // NodeUnschedulable (a pod tolerating the unschedulable taint may go).
    if node.unschedulable && profile.on.node_unschedulable {
        let t =
            Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Default::default() };
        if !spec.tolerations.iter().flatten().any(|tol| tolerates(tol, &t)) {
            return Err(fail("node(s) were unschedulable", false));
        }
    }
    // NodeName.
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty() && profile.on.node_name) {
        if n != node.name {
            return Err(fail("node(s) didn't match the requested node name", false));
        }
    }
    // TaintToleration: NoSchedule and NoExecute taints must be tolerated.
    let taints = if profile.on.taint_toleration { &node.taints[..] } else { &[] };
    for t in taints.iter().filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute") {
        if !spec.tolerations.iter().flatten().any(|tol| tolerates(tol, t)) {
            return Err(fail(
                format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value.as_deref().unwrap_or("")),
                false,
            ));
        }
    }
    // NodeAffinity: the profile's `addedAffinity`, then nodeSelector and required terms.
    if profile.on.node_affinity {
        let added = profile
            .args
            .added_affinity
            .as_ref()
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
        if added.is_some_and(|r| !r.node_selector_terms.iter().any(|t| term_matches(t, node))) {
            return Err(fail("node(s) didn't match scheduler-enforced node affinity", false));
        }
        if !affinity_matches(spec, node) {
            return Err(fail("node(s) didn't match Pod's node affinity/selector", false));
        }
    }
    // NodePorts.
    if profile.on.node_ports && component_base::scheduling::ports_conflict(ports, &node.used_ports) {
        return Err(fit_fail("node(s) didn't have free ports for the requested pod ports"));
    }
    // NodeResourcesFit.
    if !profile.on.node_resources_fit {
        return Ok(());
    }
    let short =
        component_base::scheduling::first_insufficient(req, &node.requested, node.pods, &node.allocatable, |n| {
            profile.args.fit_ignores(n)
        });
    match short {
        Some(s) if s.resource == "pods" => return Err(fit_fail("Too many pods")),
        Some(s) => return Err(fit_fail(format!("Insufficient {}", s.resource))),
        None => {}
    }
    Ok(())
}

/// A resource's amount by its name in a scoring strategy's list.
fn amount(r: &Resources, name: &str) -> i64 {
    match name {
        "cpu" => r.cpu,
        "memory" => r.memory,
        "ephemeral-storage" => r.ephemeral,
        "pods" => r.pods,
        other => r.scalar.get(other).copied().unwrap_or(0),
    }
}

/// What a scoring plugin weighs of resource `name` on `node` with the pod placed: (requested,
/// allocatable). None for resources the node does not offer and extended resources the pod does not
/// ask for, which upstream's resourceAllocationScorer skips. cpu and memory count the non-zero
/// requests.
fn allocation(name: &str, non_zero: &Resources, req: &Resources, node: &NodeInfo) -> Option<(i64, i64)> {
    let cap = amount(&node.allocatable, name);
    let scalar = !matches!(name, "cpu" | "memory" | "ephemeral-storage" | "pods");
    if cap == 0 || (scalar && amount(req, name) == 0) {
        return None;
    }
    let used = if matches!(name, "cpu" | "memory") {
        amount(&node.non_zero_requested, name) + amount(non_zero, name)
    } else {
        amount(&node.requested, name) + amount(req, name)
    };
    Some((used, cap))
}

/// NodeResourcesBalancedAllocation's score of one node: 100 × (1 − the standard deviation of the
/// configured resources' requested fractions, each capped at 1).
pub fn balanced_score(resources: &[String], non_zero: &Resources, req: &Resources, node: &NodeInfo) -> i64 {
    let fractions: Vec<f64> = resources
        .iter()
        .filter_map(|r| allocation(r, non_zero, req, node))
        .map(|(used, cap)| (used as f64 / cap as f64).min(1.0))
        .collect();
    let std = match fractions.len() {
        0 | 1 => 0.0,
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            (fractions.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / n as f64).sqrt()
        }
    };
    ((1.0 - std) * 100.0) as i64
}

/// upstream's BuildBrokenLinearFunction over the shape's points.
fn broken_linear(shape: &[(i64, i64)], p: i64) -> i64 {
    for (i, &(u, s)) in shape.iter().enumerate() {
        if p <= u {
            if i == 0 {
                return s;
            }
            let (pu, ps) = shape[i - 1];
            return ps + (s - ps) * (p - pu) / (u - pu);
        }
    }
    shape.last().map(|p| p.1).unwrap_or(0)
}

/// NodeResourcesFit's score of one node (0..=100): each configured resource scored by the strategy
/// and averaged by weight, skipping resources the node does not offer and extended resources the pod
/// does not ask for, as upstream's resourceAllocationScorer does. cpu and memory count the non-zero
/// requests.
pub fn fit_score(fit: &FitScoring, non_zero: &Resources, req: &Resources, node: &NodeInfo) -> i64 {
    let (mut total, mut weights) = (0i64, 0i64);
    for (name, weight) in &fit.resources {
        let Some((used, cap)) = allocation(name, non_zero, req, node) else { continue };
        let s = match fit.strategy {
            Strategy::LeastAllocated if used > cap => 0,
            Strategy::LeastAllocated => (cap - used) * 100 / cap,
            Strategy::MostAllocated => used.min(cap) * 100 / cap,
            Strategy::RequestedToCapacityRatio => {
                let s = broken_linear(&fit.shape, if used > cap { 100 } else { used * 100 / cap });
                if s <= 0 {
                    // upstream counts neither the score nor the weight of a resource scoring 0.
                    continue;
                }
                s
            }
        };
        total += s * weight;
        weights += weight;
    }
    if weights == 0 {
        0
    } else if fit.strategy == Strategy::RequestedToCapacityRatio {
        (total as f64 / weights as f64).round() as i64
    } else {
        total / weights
    }
}

/// The pod's images (init containers first), with `:latest` added where no tag or digest is given.
pub fn pod_images(spec: &PodSpec) -> Vec<String> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| {
            let mut image = c.image.clone().unwrap_or_default();
            if image.rfind(':').map(|i| i as i64).unwrap_or(-1) <= image.rfind('/').map(|i| i as i64).unwrap_or(-1) {
                image.push_str(":latest");
            }
            image
        })
        .collect()
}

/// ImageLocality (0..=100): the sizes of the pod's images (`pod_images`) already on the node, each
/// scaled by the share of nodes that have it, between 23MB and 1000MB per container.
pub fn image_score(images: &[String], node: &NodeInfo, nodes_with: impl Fn(&str) -> usize, total_nodes: usize) -> i64 {
    const MB: i64 = 1024 * 1024;
    let (min, per_container) = (23 * MB, 1000 * MB);
    let mut sum = 0i64;
    for image in images {
        if let Some(size) = node.images.get(image) {
            let spread = nodes_with(image) as f64 / total_nodes.max(1) as f64;
            sum += (*size as f64 * spread) as i64;
        }
    }
    let max = per_container * images.len() as i64;
    if max <= min {
        return 0;
    }
    100 * (sum.clamp(min, max) - min) / (max - min)
}

/// Scores 0..=100 for each scoring plugin times its weight in `profile` (the default profile:
/// NodeResourcesFit 1, NodeResourcesBalancedAllocation 1, ImageLocality 1, TaintToleration 3,
/// NodeAffinity 2). Each plugin's scores are normalized over the feasible nodes as upstream does.
pub fn score(
    pod: &Pod,
    req: &Resources,
    non_zero: &Resources,
    nodes: &[&NodeInfo],
    profile: &Profile,
    image_nodes: impl Fn(&str) -> usize,
    total_nodes: usize,
) -> Vec<i64> {
    static EMPTY: std::sync::OnceLock<k8s_openapi::api::core::v1::PodSpec> = std::sync::OnceLock::new();
    let spec = pod.spec.as_ref().unwrap_or_else(|| EMPTY.get_or_init(Default::default));
    let n = nodes.len();
    let mut total = vec![0i64; n];
    let w = profile.weight(NODE_RESOURCES_FIT);
    if w > 0 {
        for (i, node) in nodes.iter().enumerate() {
            total[i] += w * fit_score(&profile.fit, non_zero, req, node);
        }
    }
    let w = profile.weight(IMAGE_LOCALITY);
    let images = if w > 0 { pod_images(spec) } else { Vec::new() };
    // No node has any of the images: every node scores 0.
    if images.iter().any(|i| image_nodes(i) > 0) {
        for (i, node) in nodes.iter().enumerate() {
            total[i] += w * image_score(&images, node, &image_nodes, total_nodes);
        }
    }
    let w = profile.weight(BALANCED_ALLOCATION);
    for (i, node) in nodes.iter().enumerate().filter(|_| w > 0) {
        total[i] += w * balanced_score(&profile.args.balanced_resources, non_zero, req, node);
    }
    // TaintToleration: fewer intolerable PreferNoSchedule taints is better (normalized, reversed).
    let w = profile.weight(TAINT_TOLERATION);
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
        total[i] += w * s;
    }
    // NodeAffinity: the weights of the preferred terms a node matches, the pod's and the profile's
    // `addedAffinity` ones (normalized).
    let w = profile.weight(NODE_AFFINITY);
    let own = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref());
    let preferred: Vec<&k8s_openapi::api::core::v1::PreferredSchedulingTerm> =
        [own, profile.args.added_affinity.as_ref()]
            .into_iter()
            .flatten()
            .flat_map(|n| n.preferred_during_scheduling_ignored_during_execution.iter().flatten())
            .collect();
    let sums: Vec<i64> = nodes
        .iter()
        .map(|node| preferred.iter().filter(|p| term_matches(&p.preference, node)).map(|p| p.weight as i64).sum())
        .collect();
    let max = sums.iter().copied().max().unwrap_or(0);
    for i in 0..n {
        let s = if max == 0 { 0 } else { sums[i] * 100 / max };
        total[i] += w * s;
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
        assert_eq!(filter(&pod, &req, &[], &small, &Profile::default()).unwrap_err(), fit_fail("Insufficient cpu"));
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
            filter(&pod, &req, &[], &tainted, &Profile::default()).unwrap_err().reason,
            "node(s) had untolerated taint {dedicated: gpu}"
        );
        assert!(filter(&pod, &req, &[], &node("big", "4", vec![]), &Profile::default()).is_ok());
    }

    #[test]
    fn profile_args_shape_the_filters_and_scores() {
        let mut profile = Profile::default();
        profile.args.added_affinity = Some(
            serde_json::from_value(serde_json::json!({
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["big"]}]}]},
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 5, "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b2"]}]}}]
            }))
            .unwrap(),
        );
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "1", "example.com/gpu": "1"}}}]}}))
        .unwrap();
        let req = crate::cache::pod_requests(&pod, false);
        let big = node("big", "4", vec![]);
        assert_eq!(
            filter(&pod, &req, &[], &big, &profile).unwrap_err().reason,
            "node(s) didn't match scheduler-enforced node affinity"
        );
        // No node offers the GPU: refused, unless NodeResourcesFit ignores its group.
        let b2 = node("b2", "4", vec![]);
        assert_eq!(filter(&pod, &req, &[], &b2, &profile).unwrap_err().reason, "Insufficient example.com/gpu");
        profile.args.ignored_resource_groups = vec!["example.com".into()];
        assert!(filter(&pod, &req, &[], &b2, &profile).is_ok());
        // The added preferred term scores like the pod's own.
        let (b1, b2) = (node("b1", "4", vec![]), node("b2", "4", vec![]));
        let non_zero = crate::cache::pod_requests(&pod, true);
        let only_affinity = |p: &Profile| {
            let off =
                serde_json::json!({"score": {"disabled": [{"name": "*"}], "enabled": [{"name": "NodeAffinity"}]}});
            let mut only = Profile::build("x", Some(&off), &[], "p").unwrap();
            only.args = p.args.clone();
            score(&pod, &req, &non_zero, &[&b1, &b2], &only, |_| 0, 2)
        };
        assert_eq!(only_affinity(&profile), vec![0, 100]);
        // BalancedAllocation over the configured resources: cpu 1/4 against memory's default
        // 200Mi/4Gi, then cpu alone (one fraction: no spread).
        let both = balanced_score(&["cpu".into(), "memory".into()], &non_zero, &req, &b1);
        assert_eq!(both, ((1.0 - (0.25 - 200.0 / 4096.0) / 2.0) * 100.0) as i64);
        assert_eq!(balanced_score(&["cpu".into()], &non_zero, &req, &b1), 100);
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
        let req = crate::cache::pod_requests(&pod, false);
        let mut p = Profile::default();
        let scores = score(&pod, &req, &nz, &[&a, &b], &p, |_| 0, 2);
        assert!(scores[1] > scores[0], "{scores:?}");
        p.fit.strategy = Strategy::MostAllocated;
        let scores = score(&pod, &req, &nz, &[&a, &b], &p, |_| 0, 2);
        assert!(scores[0] > scores[1], "{scores:?}");
    }

    #[test]
    fn fit_strategies_score_as_upstream() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "1", "memory": "1Gi", "example.com/gpu": "1"}}}]}}))
        .unwrap();
        let (req, nz) = (crate::cache::pod_requests(&pod, false), crate::cache::pod_requests(&pod, true));
        let mut n = node("a", "4", vec![]);
        n.allocatable.scalar.insert("example.com/gpu".into(), 4);
        // cpu 1/4 used, memory 1/4: least 75, most 25.
        let mut fit = FitScoring::default();
        assert_eq!(fit_score(&fit, &nz, &req, &n), 75);
        fit.strategy = Strategy::MostAllocated;
        assert_eq!(fit_score(&fit, &nz, &req, &n), 25);
        // Weighted: cpu 25 (weight 1), gpu 25 (weight 3), memory ignored.
        fit.resources = vec![("cpu".into(), 1), ("example.com/gpu".into(), 3)];
        assert_eq!(fit_score(&fit, &nz, &req, &n), 25);
        // RequestedToCapacityRatio with a bin-packing shape: 0% → 0, 100% → 100; 25% → 25.
        fit.strategy = Strategy::RequestedToCapacityRatio;
        fit.shape = vec![(0, 0), (100, 100)];
        assert_eq!(fit_score(&fit, &nz, &req, &n), 25);
        // The broken line (0,100) (50,50) (100,0) scores 25% as 75.
        fit.shape = vec![(0, 100), (50, 50), (100, 0)];
        assert_eq!(fit_score(&fit, &nz, &req, &n), 75);
        // An extended resource the pod does not request is skipped.
        let cpu_only: Pod = serde_json::from_value(serde_json::json!({"spec": {"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "2"}}}]}}))
        .unwrap();
        let (r2, nz2) = (crate::cache::pod_requests(&cpu_only, false), crate::cache::pod_requests(&cpu_only, true));
        fit.strategy = Strategy::MostAllocated;
        assert_eq!(fit_score(&fit, &nz2, &r2, &n), 50);
    }

    #[test]
    fn image_locality_scales_by_size_and_spread() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {"containers": [
            {"name": "a", "image": "busybox"}, {"name": "b", "image": "registry:5000/big@sha256:ab"}]}}))
        .unwrap();
        let spec = pod_images(&pod.spec.clone().unwrap());
        assert_eq!(spec, ["busybox:latest", "registry:5000/big@sha256:ab"]);
        let mut n = node("a", "4", vec![]);
        assert_eq!(image_score(&spec, &n, |_| 1, 1), 0, "no images");
        let mb = 1024 * 1024;
        n.images = std::sync::Arc::new(
            [("busybox:latest".to_string(), 523 * mb), ("registry:5000/big@sha256:ab".to_string(), 1000 * mb)].into(),
        );
        // Both on every node: (523 + 1000 - 23) / (2000 - 23) → 75.
        assert_eq!(image_score(&spec, &n, |_| 2, 2), 75);
        // busybox on this node only, of 2: 261 + 1000 - 23 → 62.
        assert_eq!(image_score(&spec, &n, |i| if i.starts_with("busybox") { 1 } else { 2 }, 2), 62);
    }
}
