//! The kubelet's Node: registration with capacity, allocatable, addresses, `nodeInfo` and labels;
//! status every `nodeStatusUpdateFrequency`, posted when it changed or every
//! `nodeStatusReportFrequency`; and the node Lease in `kube-node-lease`, renewed every 10s.

use crate::kubelet::Kubelet;
use crate::machine;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerImage, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn q(s: String) -> Quantity {
    Quantity(s)
}

/// Capacity and allocatable, as upstream computes them: allocatable is capacity less
/// `systemReserved`, `kubeReserved` and the hard eviction threshold.
pub fn resources(k: &Kubelet) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let m = &k.machine;
    let (fs_total, _, _, _) = machine::fs_stats(&k.config.root_dir).unwrap_or((0, 0, 0, 0));
    let mut cap: BTreeMap<String, i64> = BTreeMap::new();
    cap.insert("cpu".into(), m.cpus * 1000);
    cap.insert("memory".into(), m.memory_bytes);
    cap.insert("ephemeral-storage".into(), fs_total as i64);
    cap.insert("pods".into(), k.config.max_pods);
    cap.insert("hugepages-2Mi".into(), 0);
    cap.insert("hugepages-1Gi".into(), 0);
    let mut reserved: BTreeMap<String, i64> = BTreeMap::new();
    for r in [&k.config.system_reserved, &k.config.kube_reserved] {
        for (name, v) in machine::quantities(r) {
            *reserved.entry(name).or_default() += v;
        }
    }
    if let Some(v) = k.config.eviction_hard.get("memory.available") {
        *reserved.entry("memory".into()).or_default() += threshold(v, m.memory_bytes);
    }
    if let Some(v) = k.config.eviction_hard.get("nodefs.available") {
        *reserved.entry("ephemeral-storage".into()).or_default() += threshold(v, fs_total as i64);
    }
    let fmt = |name: &str, v: i64| -> Quantity {
        if name == "cpu" {
            if v % 1000 == 0 {
                q((v / 1000).to_string())
            } else {
                q(format!("{v}m"))
            }
        } else if name == "memory" && v % 1024 == 0 {
            q(format!("{}Ki", v / 1024))
        } else {
            q(v.to_string())
        }
    };
    let capacity = cap.iter().map(|(n, v)| (n.clone(), fmt(n, *v))).collect();
    let allocatable =
        cap.iter().map(|(n, v)| (n.clone(), fmt(n, (*v - reserved.get(n).copied().unwrap_or(0)).max(0)))).collect();
    (capacity, allocatable)
}

/// An eviction threshold (`100Mi` or `10%` of `total`) in bytes.
fn threshold(v: &str, total: i64) -> i64 {
    match v.strip_suffix('%') {
        Some(p) => (p.parse::<f64>().unwrap_or(0.0) / 100.0 * total as f64) as i64,
        None => apimachinery::quantity::value(v).unwrap_or(0),
    }
}

fn condition(type_: &str, status: bool, reason: &str, message: &str, now: &Time) -> NodeCondition {
    NodeCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// The Node this kubelet registers.
pub fn initial_node(k: &Kubelet) -> Node {
    let mut labels = BTreeMap::new();
    labels.insert("kubernetes.io/hostname".to_string(), k.config.node_name.clone());
    labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
    labels.insert("kubernetes.io/arch".to_string(), machine::arch().to_string());
    labels.insert("beta.kubernetes.io/os".to_string(), "linux".to_string());
    labels.insert("beta.kubernetes.io/arch".to_string(), machine::arch().to_string());
    labels.extend(k.config.node_labels.clone());
    let mut annotations = BTreeMap::new();
    annotations.insert("volumes.kubernetes.io/controller-managed-attach-detach".to_string(), "true".to_string());
    Node {
        metadata: ObjectMeta {
            name: Some(k.config.node_name.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!k.config.register_with_taints.is_empty()).then(|| k.config.register_with_taints.clone()),
            provider_id: k.config.provider_id.clone(),
            ..Default::default()
        }),
        status: Some(status(k, None)),
    }
}

/// The node status as of now; conditions keep their transition times from `old`.
pub fn status(k: &Kubelet, old: Option<&NodeStatus>) -> NodeStatus {
    let now = component_base::time_now();
    let (capacity, allocatable) = resources(k);
    let rt = k.runtime_state();
    let (ready, ready_reason, ready_msg) = match &rt.problem {
        None => (true, "KubeletReady", "kubelet is posting ready status".to_string()),
        Some(p) => (false, "KubeletNotReady", p.clone()),
    };
    let mem_pressure = k.pressure.memory.load(std::sync::atomic::Ordering::Relaxed);
    let disk_pressure = k.pressure.disk.load(std::sync::atomic::Ordering::Relaxed);
    let mut conditions = vec![
        if mem_pressure {
            condition(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
                &now,
            )
        } else {
            condition(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                &now,
            )
        },
        if disk_pressure {
            condition("DiskPressure", true, "KubeletHasDiskPressure", "kubelet has disk pressure", &now)
        } else {
            condition("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure", &now)
        },
        if k.pressure.pid.load(std::sync::atomic::Ordering::Relaxed) {
            condition("PIDPressure", true, "KubeletHasInsufficientPID", "kubelet has insufficient PID available", &now)
        } else {
            condition("PIDPressure", false, "KubeletHasSufficientPID", "kubelet has sufficient PID available", &now)
        },
        condition("Ready", ready, ready_reason, &ready_msg, &now),
    ];
    if let Some(old) = old {
        for c in conditions.iter_mut() {
            if let Some(prev) = old.conditions.iter().flatten().find(|p| p.type_ == c.type_) {
                if prev.status == c.status {
                    c.last_transition_time = prev.last_transition_time.clone();
                }
            }
        }
    }
    let mut addresses: Vec<NodeAddress> =
        k.node_ips.iter().map(|ip| NodeAddress { type_: "InternalIP".into(), address: ip.clone() }).collect();
    addresses.push(NodeAddress { type_: "Hostname".into(), address: k.config.node_name.clone() });
    let m = &k.machine;
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        conditions: Some(conditions),
        addresses: Some(addresses),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint { port: 10250 }),
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: m.machine_id.clone(),
            system_uuid: m.system_uuid.clone(),
            boot_id: m.boot_id.clone(),
            kernel_version: m.kernel_version.clone(),
            os_image: m.os_image.clone(),
            container_runtime_version: rt.version.clone(),
            kubelet_version: "v1.35.0".into(),
            kube_proxy_version: String::new(),
            operating_system: "linux".into(),
            architecture: m.architecture.clone(),
            ..Default::default()
        }),
        images: Some(
            rt.images
                .iter()
                .map(|(names, size)| ContainerImage { names: Some(names.clone()), size_bytes: Some(*size) })
                .collect(),
        ),
        ..Default::default()
    }
}

/// Registers the node (or adopts the existing one, updating its labels), then keeps its status and
/// Lease fresh until the process ends.
pub async fn run(k: Arc<Kubelet>) {
    let nodes: Api<Node> = Api::all(k.client.clone());
    if k.config.register_node {
        loop {
            match register(&k, &nodes).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, node = %k.config.node_name, "unable to register node, retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }
    tokio::spawn(lease_loop(k.clone()));
    let mut last_posted: Option<(NodeStatus, Instant)> = None;
    loop {
        match nodes.get_opt(&k.config.node_name).await {
            Ok(Some(node)) => {
                k.set_node(&node);
                let fresh = status(&k, node.status.as_ref());
                let changed = last_posted.as_ref().is_none_or(|(s, at)| {
                    !same_status(s, &fresh) || at.elapsed() >= k.config.node_status_report_frequency
                });
                if changed {
                    let patch = serde_json::json!({ "status": fresh });
                    match nodes
                        .patch_status(&k.config.node_name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await
                    {
                        Ok(n) => {
                            k.set_node(&n);
                            last_posted = Some((fresh, Instant::now()));
                        }
                        Err(e) => tracing::warn!(error = %e, "error updating node status, will retry"),
                    }
                }
            }
            Ok(None) => {
                if k.config.register_node {
                    tracing::warn!(node = %k.config.node_name, "node not found, registering it again");
                    let _ = register(&k, &nodes).await;
                    last_posted = None;
                }
            }
            Err(e) => tracing::warn!(error = %e, "error getting node"),
        }
        tokio::select! {
            _ = tokio::time::sleep(k.config.node_status_update_frequency) => {}
            _ = k.node_status_kick.notified() => {}
        }
    }
}

/// Equal but for heartbeat times.
fn same_status(a: &NodeStatus, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
            c.last_transition_time = None;
        }
        s
    };
    strip(a) == strip(b)
}

async fn register(k: &Kubelet, nodes: &Api<Node>) -> Result<(), kube::Error> {
    let node = initial_node(k);
    match nodes.create(&PostParams::default(), &node).await {
        Ok(n) => {
            tracing::info!(node = %k.config.node_name, "successfully registered node");
            k.set_node(&n);
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // As upstream's reconcile of an existing node: the kubelet's own labels are brought up to date.
            let patch = serde_json::json!({ "metadata": { "labels": node.metadata.labels } });
            let n = nodes.patch(&k.config.node_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            k.set_node(&n);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

async fn lease_loop(k: Arc<Kubelet>) {
    let leases: Api<Lease> = Api::namespaced(k.client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(k.client.clone());
    let interval = Duration::from_secs_f64((k.config.node_lease_duration_seconds as f64 * 0.25).max(1.0));
    loop {
        if let Err(e) = renew(&k, &leases, &nodes).await {
            tracing::warn!(error = %e, "failed to update lease");
        }
        tokio::time::sleep(interval).await;
    }
}

async fn renew(k: &Kubelet, leases: &Api<Lease>, nodes: &Api<Node>) -> Result<(), kube::Error> {
    let name = &k.config.node_name;
    let spec = LeaseSpec {
        holder_identity: Some(name.clone()),
        lease_duration_seconds: Some(k.config.node_lease_duration_seconds),
        renew_time: Some(component_base::micro_time_now()),
        ..Default::default()
    };
    match leases.get_opt(name).await? {
        Some(mut l) => {
            l.spec = Some(spec);
            leases.replace(name, &PostParams::default(), &l).await?;
        }
        None => {
            let owner = match nodes.get_opt(name).await? {
                Some(n) => Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: name.clone(),
                    uid: n.metadata.uid.unwrap_or_default(),
                    ..Default::default()
                }]),
                None => None,
            };
            let l = Lease {
                metadata: ObjectMeta { name: Some(name.clone()), owner_references: owner, ..Default::default() },
                spec: Some(spec),
            };
            leases.create(&PostParams::default(), &l).await?;
        }
    }
    Ok(())
}
