//! Node health, as upstream's node lifecycle, taint eviction and node IPAM controllers:
//! - a node is heard from when its Lease in `kube-node-lease` is renewed or its Ready heartbeat moves
//!   (observed on this process's clock); silent for `--node-monitor-grace-period` (never heard from:
//!   `--node-startup-grace-period`), its conditions become `Unknown` (`NodeStatusUnknown`,
//!   "Kubelet stopped posting node status.") and its pods not ready;
//! - conditions become taints: `node.kubernetes.io/not-ready` or `unreachable` as NoSchedule at once
//!   and as NoExecute at `--node-eviction-rate` per zone (`--secondary-node-eviction-rate` in a
//!   partially disrupted large zone, none in a small one, none at all when every zone is down);
//!   pressure conditions and `spec.unschedulable` become their NoSchedule taints;
//! - pods on a node with NoExecute taints they do not tolerate are deleted, at once or after their
//!   `tolerationSeconds` (`TaintManagerEviction`);
//! - with `--allocate-node-cidrs`, each node gets the next free `--node-cidr-mask-size` subnet of
//!   `--cluster-cidr` as its `spec.podCIDR`.

use super::{has_code, run_workers, SyncResult};
use crate::context::Context;
use component_base::informer::Change;
use component_base::taints::tolerates;
use component_base::workqueue::WorkQueue;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

#[derive(Clone)]
struct Health {
    lease_renew: Option<String>,
    heartbeat: Option<String>,
    probed: Instant,
}

pub fn start(ctx: &Arc<Context>) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let nodes = ctx.nodes();
        let leases = ctx.node_leases();
        nodes.wait_synced().await;
        leases.wait_synced().await;
        let mut health: HashMap<String, Health> = HashMap::new();
        // Per zone: when the last NoExecute taint was added.
        let mut last_eviction: HashMap<String, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(ctx.flags.node_monitor_period.0.max(Duration::from_millis(500)));
        loop {
            tick.tick().await;
            if let Err(e) = monitor(&ctx, &mut health, &mut last_eviction).await {
                tracing::warn!(error = %e, "node monitor pass failed");
            }
        }
    });
}

fn ready_status(n: &Node) -> Option<String> {
    n.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone())
}

fn zone(n: &Node) -> String {
    let l = n.metadata.labels.clone().unwrap_or_default();
    let region = l.get("topology.kubernetes.io/region").cloned().unwrap_or_default();
    let zone = l.get("topology.kubernetes.io/zone").cloned().unwrap_or_default();
    format!("{region}:\u{0}:{zone}")
}

async fn monitor(
    ctx: &Context,
    health: &mut HashMap<String, Health>,
    last_eviction: &mut HashMap<String, Instant>,
) -> Result<(), kube::Error> {
    let nodes = ctx.nodes().list();
    let names: HashSet<String> = nodes.iter().filter_map(|n| n.metadata.name.clone()).collect();
    health.retain(|n, _| names.contains(n));
    let grace = ctx.flags.node_monitor_grace_period.0;
    let startup = ctx.flags.node_startup_grace_period.0;
    let api: Api<Node> = Api::all(ctx.client.clone());
    for n in &nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        let lease_renew = ctx
            .node_leases()
            .get(&format!("kube-node-lease/{name}"))
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0.to_string()));
        let heartbeat = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0.to_string()));
        let h =
            health.entry(name.clone()).or_insert(Health { lease_renew: None, heartbeat: None, probed: Instant::now() });
        if h.lease_renew != lease_renew || h.heartbeat != heartbeat {
            h.lease_renew = lease_renew.clone();
            h.heartbeat = heartbeat.clone();
            h.probed = Instant::now();
        }
        let never_reported = ready_status(n).is_none();
        let limit = if never_reported { startup } else { grace };
        if h.probed.elapsed() <= limit {
            continue;
        }
        // Silent too long: every condition the kubelet owns becomes Unknown.
        let now: Time = component_base::time_now();
        let mut conditions: Vec<NodeCondition> =
            n.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let mut changed = false;
        for t in CONDITIONS {
            match conditions.iter_mut().find(|c| c.type_ == *t) {
                Some(c) if c.status != "Unknown" => {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(now.clone());
                    changed = true;
                }
                Some(_) => {}
                None => {
                    conditions.push(NodeCondition {
                        type_: t.to_string(),
                        status: "Unknown".into(),
                        reason: Some("NodeStatusNeverUpdated".into()),
                        message: Some("Kubelet never posted node status.".into()),
                        last_heartbeat_time: n.metadata.creation_timestamp.clone(),
                        last_transition_time: Some(now.clone()),
                    });
                    changed = true;
                }
            }
        }
        if changed {
            tracing::info!(node = %name, "node stopped posting status; conditions set to Unknown");
            match api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": {"conditions": conditions}})),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if has_code(&e, &[404]) => continue,
                Err(e) => return Err(e),
            }
            mark_pods_not_ready(ctx, &name).await;
        }
    }
    // Taints follow conditions (read again: this pass may have changed them).
    let nodes = ctx.nodes().list();
    let mut zones: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for n in &nodes {
        let e = zones.entry(zone(n)).or_default();
        e.0 += 1;
        if ready_status(n).as_deref() != Some("True") {
            e.1 += 1;
        }
    }
    let all_down = !zones.is_empty() && zones.values().all(|(total, down)| total == down);
    for n in &nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        let status = ready_status(n);
        let conds = n.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let is_true = |t: &str| conds.iter().any(|c| c.type_ == t && c.status == "True");
        let mut no_schedule: Vec<&str> = Vec::new();
        match status.as_deref() {
            Some("False") => no_schedule.push(NOT_READY),
            Some("Unknown") => no_schedule.push(UNREACHABLE),
            _ => {}
        }
        for (cond, taint) in [
            ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
            ("DiskPressure", "node.kubernetes.io/disk-pressure"),
            ("PIDPressure", "node.kubernetes.io/pid-pressure"),
            ("NetworkUnavailable", "node.kubernetes.io/network-unavailable"),
        ] {
            if is_true(cond) {
                no_schedule.push(taint);
            }
        }
        if n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
            no_schedule.push("node.kubernetes.io/unschedulable");
        }
        let no_execute = match status.as_deref() {
            Some("False") => Some(NOT_READY),
            Some("Unknown") => Some(UNREACHABLE),
            _ => None,
        };
        let current: Vec<Taint> = n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let managed = |t: &Taint| {
            t.key.starts_with("node.kubernetes.io/")
                && matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
                && [
                    NOT_READY,
                    UNREACHABLE,
                    "node.kubernetes.io/memory-pressure",
                    "node.kubernetes.io/disk-pressure",
                    "node.kubernetes.io/pid-pressure",
                    "node.kubernetes.io/network-unavailable",
                    "node.kubernetes.io/unschedulable",
                ]
                .contains(&t.key.as_str())
        };
        let mut next: Vec<Taint> = current.iter().filter(|t| !managed(t)).cloned().collect();
        for key in &no_schedule {
            next.push(current.iter().find(|t| t.key == *key && t.effect == "NoSchedule").cloned().unwrap_or(Taint {
                key: key.to_string(),
                effect: "NoSchedule".into(),
                time_added: None,
                value: None,
            }));
        }
        if let Some(key) = no_execute {
            match current.iter().find(|t| t.key == key && t.effect == "NoExecute") {
                Some(t) => next.push(t.clone()),
                None => {
                    // Rate-limited per zone, and not at all when the zone (or every zone) is down in a
                    // way that points at the control plane rather than the nodes.
                    let z = zone(n);
                    let (total, down) = zones.get(&z).copied().unwrap_or((1, 1));
                    let unhealthy = down as f64 / total.max(1) as f64;
                    let rate = if all_down {
                        0.0
                    } else if total > 2 && unhealthy >= ctx.flags.unhealthy_zone_threshold && down < total {
                        if total > ctx.flags.large_cluster_size_threshold {
                            ctx.flags.secondary_node_eviction_rate
                        } else {
                            0.0
                        }
                    } else {
                        ctx.flags.node_eviction_rate
                    };
                    let due =
                        rate > 0.0 && last_eviction.get(&z).is_none_or(|t| t.elapsed().as_secs_f64() >= 1.0 / rate);
                    if due {
                        last_eviction.insert(z, Instant::now());
                        next.push(Taint {
                            key: key.into(),
                            effect: "NoExecute".into(),
                            time_added: Some(component_base::time_now()),
                            value: None,
                        });
                    } else {
                        // Keep the other NoExecute taint out until the limiter allows this one.
                        next.retain(|t| !(t.effect == "NoExecute" && (t.key == NOT_READY || t.key == UNREACHABLE)));
                    }
                }
            }
        }
        let key = |t: &Taint| (t.key.clone(), t.effect.clone());
        let before: HashSet<_> = current.iter().map(key).collect();
        let after: HashSet<_> = next.iter().map(key).collect();
        if before != after {
            let taints =
                if next.is_empty() { serde_json::Value::Null } else { serde_json::to_value(&next).unwrap_or_default() };
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"taints": taints}}))).await {
                Ok(_) => {}
                Err(e) if has_code(&e, &[404]) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// upstream's `MarkPodsNotReady`: the pods of a node that went silent are not ready any more.
async fn mark_pods_not_ready(ctx: &Context, node: &str) {
    for p in ctx.pods().list() {
        if p.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
            continue;
        }
        let Some(mut conds) = p.status.as_ref().and_then(|s| s.conditions.clone()) else { continue };
        let mut changed = false;
        for c in conds.iter_mut().filter(|c| c.type_ == "Ready" && c.status != "False") {
            c.status = "False".into();
            c.last_transition_time = Some(component_base::time_now());
            changed = true;
        }
        if changed {
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let _ = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
                .patch_status(
                    p.metadata.name.as_deref().unwrap_or(""),
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": {"conditions": conds}})),
                )
                .await;
        }
    }
}

/// When a pod on a node with these NoExecute taints must go: `Some(None)` now, `Some(Some(d))` after
/// `d` from the taint's time, `None` never.
fn eviction_delay(pod: &Pod, taints: &[Taint]) -> Option<Option<Duration>> {
    let tols: Vec<Toleration> = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let mut min: Option<i64> = None;
    let mut forever = true;
    for t in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> = tols.iter().filter(|tol| tolerates(tol, t)).collect();
        if matching.is_empty() {
            return Some(None);
        }
        for tol in matching {
            if let Some(s) = tol.toleration_seconds {
                forever = false;
                min = Some(min.map_or(s, |m| m.min(s)));
            }
        }
    }
    if forever {
        return None;
    }
    Some(Some(Duration::from_secs(min.unwrap_or(0).max(0) as u64)))
}

pub fn start_taint_eviction(ctx: &Arc<Context>) {
    let queue: WorkQueue<String> = WorkQueue::new("taint_eviction");
    let q = queue.clone();
    let c = ctx.clone();
    ctx.nodes().add_handler(move |ch| {
        let n = ch.object();
        let name = n.metadata.name.clone().unwrap_or_default();
        for p in c.pods().list() {
            if p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str()) {
                q.add(component_base::informer::key_of(p.as_ref()));
            }
        }
    });
    let q = queue.clone();
    ctx.pods().add_handler(move |ch| {
        if !matches!(ch, Change::Deleted(_)) {
            q.add(component_base::informer::key_of(ch.object().as_ref()));
        }
    });
    let ctx = ctx.clone();
    let recorder = ctx.recorder("taint-eviction-controller");
    let evicted: Arc<Mutex<HashSet<String>>> = Arc::default();
    tokio::spawn(async move {
        ctx.nodes().wait_synced().await;
        ctx.pods().wait_synced().await;
        let c = ctx.clone();
        run_workers(queue, 4, move |key| {
            let (ctx, recorder, evicted) = (c.clone(), recorder.clone(), evicted.clone());
            async move { evict_if_due(&ctx, &recorder, &evicted, &key).await }
        });
    });
}

async fn evict_if_due(
    ctx: &Context,
    recorder: &crate::context::EventRecorder,
    evicted: &Mutex<HashSet<String>>,
    key: &str,
) -> SyncResult {
    let Some(pod) = ctx.pods().get(key) else { return Ok(None) };
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()).and_then(|n| ctx.nodes().get(&n)) else {
        return Ok(None);
    };
    let taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.effect == "NoExecute")
        .collect();
    if taints.is_empty() {
        return Ok(None);
    }
    let Some(delay) = eviction_delay(&pod, &taints) else { return Ok(None) };
    if let Some(d) = delay {
        // Counted from the newest taint this pod tolerates for a while.
        let since = taints.iter().filter_map(|t| t.time_added.as_ref().map(|x| x.0)).max();
        if let Some(since) = since {
            let elapsed = k8s_openapi::jiff::Timestamp::now().duration_since(since).as_secs().max(0) as u64;
            if elapsed < d.as_secs() {
                return Ok(Some(Duration::from_secs(d.as_secs() - elapsed)));
            }
        }
    }
    if !evicted.lock().unwrap().insert(pod.metadata.uid.clone().unwrap_or_default()) {
        return Ok(None);
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut conds = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    conds.retain(|c| c.type_ != "DisruptionTarget");
    conds.push(k8s_openapi::api::core::v1::PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByTaintManager".into()),
        message: Some("Taint manager: deleting due to NoExecute taint".into()),
        last_transition_time: Some(component_base::time_now()),
        ..Default::default()
    });
    let _ = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": {"conditions": conds}})))
        .await;
    recorder.normal(pod.as_ref(), "TaintManagerEviction", format!("Marking for deletion Pod {ns}/{name}")).await;
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(None),
        Err(e) if has_code(&e, &[404]) => Ok(None),
        Err(e) => {
            evicted.lock().unwrap().remove(&pod.metadata.uid.clone().unwrap_or_default());
            Err(e.into())
        }
    }
}

/// `a.b.c.d/n` → (network, prefix length).
fn parse_cidr(s: &str) -> Option<(u32, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then(|| (u32::from(ip) & if len == 0 { 0 } else { u32::MAX << (32 - len) }, len))
}

/// The first subnet of size `mask` in `cluster` not in `used`.
pub fn next_cidr(cluster: &str, mask: u8, used: &HashSet<String>) -> Option<String> {
    let (base, len) = parse_cidr(cluster)?;
    if mask < len || mask > 32 {
        return None;
    }
    let count = 1u64 << (mask - len);
    (0..count)
        .map(|i| base + ((i as u32) << (32 - mask)))
        .map(|net| format!("{}/{mask}", Ipv4Addr::from(net)))
        .find(|c| !used.contains(c))
}

pub fn start_ipam(ctx: &Arc<Context>) {
    if !ctx.flags.allocate_node_cidrs {
        return;
    }
    let Some(cluster) = ctx.flags.cluster_cidr.clone() else {
        tracing::error!("--allocate-node-cidrs needs --cluster-cidr; node-ipam-controller not started");
        return;
    };
    let cluster = cluster.split(',').next().unwrap_or("").to_string();
    let mask = ctx.flags.node_cidr_mask_size_ipv4.unwrap_or(ctx.flags.node_cidr_mask_size);
    if next_cidr(&cluster, mask, &HashSet::new()).is_none() {
        tracing::error!(cidr = %cluster, mask, "invalid --cluster-cidr or --node-cidr-mask-size; node-ipam-controller not started");
        return;
    }
    let queue: WorkQueue<String> = WorkQueue::new("node_ipam");
    let q = queue.clone();
    ctx.nodes().add_handler(move |ch| {
        if !matches!(ch, Change::Deleted(_)) {
            q.add(ch.object().metadata.name.clone().unwrap_or_default());
        }
    });
    let ctx = ctx.clone();
    let recorder = ctx.recorder("node-ipam-controller");
    tokio::spawn(async move {
        ctx.nodes().wait_synced().await;
        let c = ctx.clone();
        // One worker: allocations must not race each other.
        run_workers(queue, 1, move |name| {
            let (ctx, cluster, recorder) = (c.clone(), cluster.clone(), recorder.clone());
            async move {
                let Some(node) = ctx.nodes().get(&name) else { return Ok(None) };
                if node.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some_and(|c| !c.is_empty()) {
                    return Ok(None);
                }
                let used: HashSet<String> =
                    ctx.nodes().list().iter().filter_map(|n| n.spec.as_ref()?.pod_cidr.clone()).collect();
                let Some(cidr) = next_cidr(&cluster, mask, &used) else {
                    recorder
                        .warning(
                            node.as_ref(),
                            "CIDRNotAvailable",
                            format!("Node {name} status is now: CIDRNotAvailable"),
                        )
                        .await;
                    return Ok(Some(Duration::from_secs(30)));
                };
                let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
                Api::<Node>::all(ctx.client.clone())
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                recorder.normal(node.as_ref(), "CIDRAssignmentSucceeded", format!("Node {name} got CIDR {cidr}")).await;
                Ok(None)
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str) -> Taint {
        Taint { key: key.into(), effect: "NoExecute".into(), time_added: None, value: None }
    }

    #[test]
    fn tolerations_as_upstream() {
        let exists = Toleration {
            key: Some(UNREACHABLE.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(300),
            value: None,
        };
        assert!(tolerates(&exists, &taint(UNREACHABLE)));
        assert!(!tolerates(&exists, &taint(NOT_READY)));
        let everything = Toleration { operator: Some("Exists".into()), ..Default::default() };
        assert!(tolerates(&everything, &taint(NOT_READY)));
        let pod = |tols: Vec<Toleration>| Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec { tolerations: Some(tols), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(eviction_delay(&pod(vec![]), &[taint(UNREACHABLE)]), Some(None));
        assert_eq!(
            eviction_delay(&pod(vec![exists.clone()]), &[taint(UNREACHABLE)]),
            Some(Some(Duration::from_secs(300)))
        );
        assert_eq!(eviction_delay(&pod(vec![everything]), &[taint(UNREACHABLE)]), None);
    }

    #[test]
    fn cidrs_are_handed_out_in_order() {
        let mut used = HashSet::new();
        let a = next_cidr("10.244.0.0/16", 24, &used).unwrap();
        assert_eq!(a, "10.244.0.0/24");
        used.insert(a);
        assert_eq!(next_cidr("10.244.0.0/16", 24, &used).unwrap(), "10.244.1.0/24");
        let full: HashSet<String> = (0..4).map(|i| format!("10.0.0.{}/30", i * 4)).collect();
        assert_eq!(next_cidr("10.0.0.0/28", 30, &full), None);
    }
}
