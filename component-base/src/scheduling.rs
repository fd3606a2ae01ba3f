//! Scheduling helpers shared by the scheduler and the kubelet's admission (upstream's
//! component-helpers `scheduling/corev1` and `resource`): what a pod requests, the host ports it
//! takes, and node selector / required node affinity matching.

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec};
use std::collections::BTreeMap;

/// Amounts of resources: millicores, bytes, counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu: i64,
    pub memory: i64,
    pub ephemeral: i64,
    pub pods: i64,
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    pub fn add(&mut self, o: &Resources, sign: i64) {
        self.cpu += sign * o.cpu;
        self.memory += sign * o.memory;
        self.ephemeral += sign * o.ephemeral;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += sign * v;
        }
    }

    pub fn from_map(m: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Resources {
        let mut r = Resources::default();
        for (k, q) in m {
            match k.as_str() {
                "cpu" => r.cpu = apimachinery::quantity::milli(&q.0).unwrap_or(0),
                "memory" => r.memory = apimachinery::quantity::value(&q.0).unwrap_or(0),
                "ephemeral-storage" => r.ephemeral = apimachinery::quantity::value(&q.0).unwrap_or(0),
                "pods" => r.pods = apimachinery::quantity::value(&q.0).unwrap_or(0),
                other if other.contains('/') || other.starts_with("hugepages-") => {
                    r.scalar.insert(other.to_string(), apimachinery::quantity::value(&q.0).unwrap_or(0));
                }
                _ => {}
            }
        }
        r
    }

    pub fn max(&mut self, o: &Resources) {
        self.cpu = self.cpu.max(o.cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral = self.ephemeral.max(o.ephemeral);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

/// What a pod requests, as upstream computes it: the sum of its containers (and restartable init
/// containers), or the largest ordinary init container if larger, plus overhead. With `non_zero`,
/// containers without cpu/memory requests count 100m / 200Mi (what scoring uses).
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resources {
    let spec = pod.spec.clone().unwrap_or_default();
    let container = |c: &k8s_openapi::api::core::v1::Container| {
        let mut r = c.resources.as_ref().and_then(|r| r.requests.as_ref()).map(Resources::from_map).unwrap_or_default();
        if non_zero {
            let requests = c.resources.as_ref().and_then(|r| r.requests.clone()).unwrap_or_default();
            if !requests.contains_key("cpu") {
                r.cpu = 100;
            }
            if !requests.contains_key("memory") {
                r.memory = 200 * 1024 * 1024;
            }
        }
        r
    };
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(&container(c), 1);
    }
    let mut init_max = Resources::default();
    let mut sidecars = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r, 1);
            sum.add(&r, 1);
        } else {
            let mut with_sidecars = r.clone();
            with_sidecars.add(&sidecars, 1);
            init_max.max(&with_sidecars);
        }
    }
    sum.max(&init_max);
    if let Some(o) = spec.overhead.as_ref() {
        sum.add(&Resources::from_map(o), 1);
    }
    sum
}

/// Host ports a pod asks for: (protocol, host IP, port).
pub fn pod_host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let hp = p.host_port.filter(|h| *h > 0)?;
            let ip = p.host_ip.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| "0.0.0.0".into());
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), ip, hp))
        })
        .collect()
}

/// A node selector requirement against labels (or, with `field`, the node's fields).
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
pub fn term_matches(t: &NodeSelectorTerm, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let exprs = t.match_expressions.clone().unwrap_or_default();
    let fields = t.match_fields.clone().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let field_values: BTreeMap<String, String> = [("metadata.name".to_string(), name.to_string())].into();
    exprs.iter().all(|r| requirement_matches(r, labels, &field_values, false))
        && fields.iter().all(|r| requirement_matches(r, labels, &field_values, true))
}

/// NodeAffinity's filter: the pod's `nodeSelector` and required node affinity terms.
pub fn node_affinity_matches(spec: &PodSpec, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let selector_ok = spec.node_selector.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    selector_ok && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, name, labels)))
}

/// A resource a node has too little of for a pod (upstream's `InsufficientResource`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insufficient<'a> {
    /// `pods`, `cpu` (millicores), `memory`, `ephemeral-storage`, or an extended resource.
    pub resource: &'a str,
    pub requested: i64,
    pub used: i64,
    pub capacity: i64,
}

/// NodeResourcesFit's check, as upstream's `fitsRequest`: the node's pod count first, then cpu,
/// memory, ephemeral storage and extended resources (those `ignore` names are skipped). `requested`
/// is what the node's pods already request and `pods` how many there are.
pub fn first_insufficient<'a>(
    req: &'a Resources,
    requested: &Resources,
    pods: i64,
    allocatable: &Resources,
    ignore: impl Fn(&str) -> bool,
) -> Option<Insufficient<'a>> {
    if pods + 1 > allocatable.pods {
        return Some(Insufficient { resource: "pods", requested: 1, used: pods, capacity: allocatable.pods });
    }
    let check = |resource: &'a str, want: i64, used: i64, capacity: i64| {
        (want > 0 && used + want > capacity).then_some(Insufficient { resource, requested: want, used, capacity })
    };
    check("cpu", req.cpu, requested.cpu, allocatable.cpu)
        .or_else(|| check("memory", req.memory, requested.memory, allocatable.memory))
        .or_else(|| check("ephemeral-storage", req.ephemeral, requested.ephemeral, allocatable.ephemeral))
        .or_else(|| {
            req.scalar.iter().filter(|(n, _)| !ignore(n)).find_map(|(name, want)| {
                let have = allocatable.scalar.get(name).copied().unwrap_or(0);
                check(name, *want, requested.scalar.get(name).copied().unwrap_or(0), have)
            })
        })
}

/// NodePorts' check: whether a wanted (protocol, host IP, port) clashes with one in use; `0.0.0.0`
/// clashes with every address.
pub fn ports_conflict(wanted: &[(String, String, i32)], used: &[(String, String, i32)]) -> bool {
    wanted.iter().any(|(proto, ip, port)| {
        used.iter().any(|(p, i, n)| p == proto && n == port && (i == ip || i == "0.0.0.0" || ip == "0.0.0.0"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_reports_the_first_shortage_as_upstream() {
        let alloc = Resources { cpu: 2000, memory: 1 << 30, pods: 3, ..Default::default() };
        let used = Resources { cpu: 1500, memory: 1 << 29, ..Default::default() };
        let mut req = Resources { cpu: 600, memory: 1 << 20, ..Default::default() };
        assert_eq!(
            first_insufficient(&req, &used, 1, &alloc, |_| false),
            Some(Insufficient { resource: "cpu", requested: 600, used: 1500, capacity: 2000 })
        );
        assert_eq!(
            first_insufficient(&req, &used, 3, &alloc, |_| false).map(|i| (i.resource, i.used, i.capacity)),
            Some(("pods", 3, 3))
        );
        req.cpu = 500;
        assert_eq!(first_insufficient(&req, &used, 1, &alloc, |_| false), None);
        req.scalar.insert("example.com/gpu".into(), 1);
        assert_eq!(first_insufficient(&req, &used, 1, &alloc, |_| false).map(|i| i.resource), Some("example.com/gpu"));
        assert_eq!(first_insufficient(&req, &used, 1, &alloc, |n| n == "example.com/gpu"), None);
        let tcp = |ip: &str, port| ("TCP".to_string(), ip.to_string(), port);
        assert!(ports_conflict(&[tcp("0.0.0.0", 80)], &[tcp("10.0.0.1", 80)]));
        assert!(!ports_conflict(&[tcp("10.0.0.2", 80)], &[tcp("10.0.0.1", 80)]));
        assert!(!ports_conflict(&[("UDP".into(), "0.0.0.0".into(), 80)], &[tcp("0.0.0.0", 80)]));
    }
}
