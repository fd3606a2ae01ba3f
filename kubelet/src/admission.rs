//! Pod admission, as upstream's kubelet admits a pod before it runs anything of it: the eviction
//! manager's check (under memory pressure only BestEffort pods are turned away, under disk or PID
//! pressure every pod; critical pods always pass), the sysctl allowlist, and the predicates the
//! kubelet shares with the scheduler (the `kubernetes.io/os` label and `spec.os`, resources against
//! allocatable and the pods already admitted, node name, node affinity and selector, host ports,
//! untolerated `NoExecute` taints). A rejected pod ends `Failed` with the check's reason and
//! `Pod was rejected: <message>`.

use component_base::scheduling::{first_insufficient, node_affinity_matches, pod_host_ports, pod_requests, Resources};
use component_base::taints::tolerates;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

fn reject(reason: &str, message: impl Into<String>) -> Result<(), Rejection> {
    Err(Rejection { reason: reason.into(), message: message.into() })
}

/// Whether `name` (dots or slashes) is allowed by the safe set or an `allowedUnsafeSysctls` entry
/// (an exact name, or a `prefix*` pattern).
fn sysctl_allowed(name: &str, unsafe_allowed: &[String]) -> bool {
    let name = name.replace('/', ".");
    apimachinery::sysctls::SAFE.contains(&name.as_str())
        || unsafe_allowed.iter().any(|a| match a.replace('/', ".").strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => a.replace('/', ".") == name,
        })
}

/// Sysctls in the network namespace, which a pod on the host's network may not set.
fn net_sysctl(name: &str) -> bool {
    name.replace('/', ".").starts_with("net.")
}

/// Sysctls in the IPC namespace, which a pod on the host's IPC namespace may not set.
fn ipc_sysctl(name: &str) -> bool {
    let n = name.replace('/', ".");
    n.starts_with("fs.mqueue.")
        || [
            "kernel.shmmax",
            "kernel.shmall",
            "kernel.shmmni",
            "kernel.shm_rmid_forced",
            "kernel.msgmax",
            "kernel.msgmnb",
            "kernel.msgmni",
            "kernel.sem",
        ]
        .contains(&n.as_str())
}

/// What the checks read of the node and its other pods.
pub struct Inputs<'a> {
    pub node: &'a Node,
    /// Pressure conditions in force: MemoryPressure, DiskPressure, PIDPressure.
    pub pressure: [bool; 3],
    /// The pods admitted before this one that are still active.
    pub others: &'a [Arc<Pod>],
    pub allowed_unsafe_sysctls: &'a [String],
}

/// Upstream's admit handlers in their order; the first failure is the pod's.
pub fn admit(pod: &Pod, i: &Inputs) -> Result<(), Rejection> {
    let spec = pod.spec.clone().unwrap_or_default();
    let critical = crate::eviction::critical(pod);
    // The eviction manager's handler.
    let names = ["MemoryPressure", "DiskPressure", "PIDPressure"];
    let conditions: Vec<&str> = names.iter().zip(i.pressure).filter(|(_, on)| *on).map(|(n, _)| *n).collect();
    if !conditions.is_empty() && !critical {
        let memory_only = conditions == ["MemoryPressure"];
        let tolerated = || {
            let t = Taint {
                key: "node.kubernetes.io/memory-pressure".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            };
            spec.tolerations.iter().flatten().any(|tol| tolerates(tol, &t))
        };
        if !memory_only || (crate::spec::qos(pod) == crate::spec::Qos::BestEffort && !tolerated()) {
            return reject("Evicted", format!("The node had condition: [{}]. ", conditions.join(" ")));
        }
    }
    // Sysctls.
    let host_net = spec.host_network == Some(true);
    let host_ipc = spec.host_ipc == Some(true);
    for s in spec.security_context.iter().flat_map(|c| c.sysctls.iter().flatten()) {
        let why = if !sysctl_allowed(&s.name, i.allowed_unsafe_sysctls) {
            Some("not allowlisted")
        } else if host_net && net_sysctl(&s.name) {
            Some("not allowed with host net enabled")
        } else if host_ipc && ipc_sysctl(&s.name) {
            Some("not allowed with host ipc enabled")
        } else {
            None
        };
        if let Some(why) = why {
            return reject("SysctlForbidden", format!("forbidden sysctl: {:?} {why}", s.name));
        }
    }
    // Predicates.
    let node_name = i.node.metadata.name.clone().unwrap_or_default();
    let mut labels = i.node.metadata.labels.clone().unwrap_or_default();
    labels.entry("kubernetes.io/os".into()).or_insert_with(|| "linux".into());
    if pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("kubernetes.io/os"))
        .is_some_and(|os| Some(os) != labels.get("kubernetes.io/os"))
    {
        return reject(
            "PodOSSelectorNodeLabelDoesNotMatch",
            "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label",
        );
    }
    if spec.os.as_ref().is_some_and(|os| os.name != "linux") {
        return reject("PodOSNotSupported", "Failed to admit pod as the OS field doesn't match node OS");
    }
    let allocatable =
        i.node.status.as_ref().and_then(|s| s.allocatable.as_ref()).map(Resources::from_map).unwrap_or_default();
    let mut requested = Resources::default();
    let mut used_ports = Vec::new();
    for p in i.others {
        requested.add(&pod_requests(p, false), 1);
        used_ports.extend(pod_host_ports(p));
    }
    let mut req = pod_requests(pod, false);
    // Extended resources the node does not know are left to others (cluster-level resources).
    req.scalar.retain(|name, _| allocatable.scalar.contains_key(name));
    if let Some(short) = first_insufficient(&req, &requested, i.others.len() as i64, &allocatable, |_| false) {
        return reject(
            &format!("OutOf{}", short.resource),
            format!(
                "Node didn't have enough resource: {}, requested: {}, used: {}, capacity: {}",
                short.resource, short.requested, short.used, short.capacity
            ),
        );
    }
    if !node_affinity_matches(&spec, &node_name, &labels) {
        return reject(
            "NodeAffinity",
            "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector",
        );
    }
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty() && n != node_name) {
        return reject("NodeName", "Predicate NodeName failed: node(s) didn't match the requested node name");
    }
    if component_base::scheduling::ports_conflict(&pod_host_ports(pod), &used_ports) {
        return reject(
            "NodePorts",
            "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports",
        );
    }
    if !crate::static_pods::is_static(pod) {
        let taints = i.node.spec.as_ref().and_then(|s| s.taints.as_ref());
        let untolerated = taints
            .into_iter()
            .flatten()
            .filter(|t| t.effect == "NoExecute")
            .any(|t| !spec.tolerations.iter().flatten().any(|tol| tolerates(tol, t)));
        if untolerated {
            return reject("TaintToleration", "Predicate TaintToleration failed: node(s) had untolerated taint(s)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"kubernetes.io/os": "linux", "zone": "a"}},
            "spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoExecute"}]},
            "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "3"}}
        }))
        .unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["tolerations"] = json!([{"key": "dedicated", "operator": "Exists"}]);
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": spec})).unwrap()
    }

    fn check(p: &Pod, others: &[Arc<Pod>], pressure: [bool; 3]) -> Result<(), Rejection> {
        let n = node();
        let allowed = vec!["kernel.msg*".to_string()];
        admit(p, &Inputs { node: &n, pressure, others, allowed_unsafe_sysctls: &allowed })
    }

    fn reason(r: Result<(), Rejection>) -> (String, String) {
        let r = r.unwrap_err();
        (r.reason, r.message)
    }

    #[test]
    fn pressure_turns_pods_away_as_upstream() {
        let best_effort = pod(json!({"containers": [{"name": "c"}]}));
        let burstable = pod(json!({"containers": [{"name": "c", "resources": {"requests": {"memory": "10Mi"}}}]}));
        let memory = [true, false, false];
        assert_eq!(
            reason(check(&best_effort, &[], memory)),
            ("Evicted".into(), "The node had condition: [MemoryPressure]. ".into())
        );
        assert_eq!(check(&burstable, &[], memory), Ok(()));
        let mut tolerant = best_effort.clone();
        tolerant.spec.as_mut().unwrap().tolerations.as_mut().unwrap().push(
            serde_json::from_value(
                json!({"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}),
            )
            .unwrap(),
        );
        assert_eq!(check(&tolerant, &[], memory), Ok(()));
        assert_eq!(
            reason(check(&burstable, &[], [true, true, false])),
            ("Evicted".into(), "The node had condition: [MemoryPressure DiskPressure]. ".into())
        );
        let mut critical = best_effort.clone();
        critical.spec.as_mut().unwrap().priority = Some(2_000_001_000);
        assert_eq!(check(&critical, &[], [false, true, true]), Ok(()));
    }

    #[test]
    fn predicates_with_upstreams_reasons() {
        let big =
            |cpu: &str| Arc::new(pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]})));
        assert_eq!(
            reason(check(&big("1500m"), &[big("1")], [false; 3])),
            (
                "OutOfcpu".into(),
                "Node didn't have enough resource: cpu, requested: 1500, used: 1000, capacity: 2000".into()
            )
        );
        assert_eq!(check(&big("1"), &[big("1")], [false; 3]), Ok(()));
        assert_eq!(reason(check(&big("1m"), &[big("1m"), big("1m"), big("1m")], [false; 3])).0, "OutOfpods");
        let unknown_extended =
            pod(json!({"containers": [{"name": "c", "resources": {"requests": {"example.com/gpu": "1"}}}]}));
        assert_eq!(check(&unknown_extended, &[], [false; 3]), Ok(()), "left to cluster-level resources");
        assert_eq!(
            reason(check(&pod(json!({"containers": [{"name": "c"}], "nodeSelector": {"zone": "b"}})), &[], [false; 3])),
            (
                "NodeAffinity".into(),
                "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector".into()
            )
        );
        let port = |p: i64| {
            Arc::new(pod(json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": p}]}]})))
        };
        assert_eq!(reason(check(&port(8080), &[port(8080)], [false; 3])).0, "NodePorts");
        assert_eq!(check(&port(8080), &[port(8081)], [false; 3]), Ok(()));
        let mut intolerant = pod(json!({"containers": [{"name": "c"}]}));
        intolerant.spec.as_mut().unwrap().tolerations = None;
        assert_eq!(
            reason(check(&intolerant, &[], [false; 3])),
            ("TaintToleration".into(), "Predicate TaintToleration failed: node(s) had untolerated taint(s)".into())
        );
        let sysctl = |name: &str, host_net: bool| {
            pod(
                json!({"containers": [{"name": "c"}], "hostNetwork": host_net, "securityContext": {"sysctls": [{"name": name, "value": "1"}]}}),
            )
        };
        assert_eq!(check(&sysctl("net.ipv4.tcp_syncookies", false), &[], [false; 3]), Ok(()));
        assert_eq!(check(&sysctl("kernel.msgmax", false), &[], [false; 3]), Ok(()), "allowed as unsafe");
        assert_eq!(
            reason(check(&sysctl("kernel.panic", false), &[], [false; 3])),
            ("SysctlForbidden".into(), "forbidden sysctl: \"kernel.panic\" not allowlisted".into())
        );
        assert_eq!(
            reason(check(&sysctl("net/ipv4/tcp_syncookies", true), &[], [false; 3])).1,
            "forbidden sysctl: \"net/ipv4/tcp_syncookies\" not allowed with host net enabled"
        );
        let mut windows = pod(json!({"containers": [{"name": "c"}], "os": {"name": "windows"}}));
        assert_eq!(reason(check(&windows, &[], [false; 3])).0, "PodOSNotSupported");
        windows.spec.as_mut().unwrap().os = None;
        windows.metadata.labels = Some([("kubernetes.io/os".to_string(), "windows".to_string())].into());
        assert_eq!(reason(check(&windows, &[], [false; 3])).0, "PodOSSelectorNodeLabelDoesNotMatch");
    }
}
