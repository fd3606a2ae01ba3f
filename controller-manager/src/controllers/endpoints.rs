//! The endpoints and endpointslice controllers: for every Service with a selector, the pods it selects
//! become an `Endpoints` object (ready addresses and `notReadyAddresses`, subsets repacked by port set
//! and sorted by IP) and `EndpointSlice`s (at most `--max-endpoints-per-slice` endpoints each, one
//! group per resolved port set, labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by`, owned by the Service). Named target ports resolve per
//! pod; `publishNotReadyAddresses` counts every pod ready. Services without a selector are left to
//! whoever writes their endpoints.

use super::{controller_ref, has_code, pod_is_ready, run_workers, SyncResult};
use crate::context::Context;
use component_base::informer::{key_of, split_key, Change};
use component_base::workqueue::WorkQueue;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty()) else {
        return false;
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Enqueues the Services in a pod's namespace that select it (before or after a change).
fn enqueue_for_pod(ctx: &Context, queue: &WorkQueue<String>, ch: &Change<Pod>) {
    let pods: Vec<&Arc<Pod>> = match ch {
        Change::Updated { old, new } => vec![old, new],
        Change::Added(p) | Change::Deleted(p) => vec![p],
    };
    let ns = ch.object().metadata.namespace.clone().unwrap_or_default();
    for svc in ctx.services().list_namespace(&ns) {
        if pods.iter().any(|p| selects(&svc, p)) {
            queue.add(key_of(svc.as_ref()));
        }
    }
}

/// The container port a service port's `targetPort` names on this pod.
fn target_port(sp: &ServicePort, pod: &Pod) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(name)) => {
            let proto = sp.protocol.as_deref().unwrap_or("TCP");
            pod.spec.as_ref()?.containers.iter().flat_map(|c| c.ports.iter().flatten()).find_map(|p| {
                (p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == proto)
                    .then_some(p.container_port)
            })
        }
    }
}

fn pod_ip(p: &Pod) -> Option<String> {
    p.status.as_ref()?.pod_ip.clone().filter(|ip| !ip.is_empty())
}

fn terminal(p: &Pod) -> bool {
    matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

fn pod_ref(p: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: p.metadata.namespace.clone(),
        name: p.metadata.name.clone(),
        uid: p.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The pods a Service selects, sorted by name for stable output.
fn selected_pods(ctx: &Context, svc: &Service) -> Vec<Arc<Pod>> {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let mut pods: Vec<Arc<Pod>> = ctx.pods().list_namespace(&ns).into_iter().filter(|p| selects(svc, p)).collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    pods
}

fn has_selector(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|s| !s.is_empty())
}

pub fn start_endpoints(ctx: &Arc<Context>) {
    let queue: WorkQueue<String> = WorkQueue::new("endpoint");
    let q = queue.clone();
    ctx.services().add_handler(move |ch| q.add(key_of(ch.object().as_ref())));
    let (q, c) = (queue.clone(), ctx.clone());
    ctx.pods().add_handler(move |ch| enqueue_for_pod(&c, &q, ch));
    let ctx = ctx.clone();
    tokio::spawn(async move {
        ctx.services().wait_synced().await;
        ctx.pods().wait_synced().await;
        ctx.endpoints().wait_synced().await;
        let c = ctx.clone();
        run_workers(queue, ctx.flags.concurrent_endpoint_syncs, move |key| {
            let ctx = c.clone();
            async move { sync_endpoints(&ctx, &key).await }
        });
    });
}

/// Subsets as upstream's `RepackSubsets` leaves them: one subset per distinct port set, addresses
/// sorted by IP.
fn repack(entries: Vec<(EndpointAddress, bool, Vec<EndpointPort>)>) -> Vec<EndpointSubset> {
    /// Per port set: the ports, ready addresses, not-ready addresses.
    type Group = (Vec<EndpointPort>, Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut by_ports: BTreeMap<String, Group> = BTreeMap::new();
    for (addr, ready, mut ports) in entries {
        ports.sort_by_key(|p| (p.name.clone(), p.port));
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let e = by_ports.entry(key).or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if ready {
            e.1.push(addr);
        } else {
            e.2.push(addr);
        }
    }
    by_ports
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            let by_ip = |a: &EndpointAddress, b: &EndpointAddress| {
                a.ip.cmp(&b.ip).then(
                    a.target_ref
                        .as_ref()
                        .and_then(|r| r.uid.clone())
                        .cmp(&b.target_ref.as_ref().and_then(|r| r.uid.clone())),
                )
            };
            ready.sort_by(by_ip);
            not_ready.sort_by(by_ip);
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

async fn sync_endpoints(ctx: &Context, key: &str) -> SyncResult {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("");
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    let Some(svc) = ctx.services().get(key) else {
        // The Service is gone: so are its endpoints (unless someone else keeps them).
        if let Some(ep) = ctx.endpoints().get(key) {
            let managed =
                ep.metadata.labels.as_ref().is_some_and(|l| l.contains_key("endpointslice.kubernetes.io/skip-mirror"));
            if managed {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if has_code(&e, &[404]) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        return Ok(None);
    };
    if !has_selector(&svc) {
        return Ok(None);
    }
    let spec = svc.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut entries = Vec::new();
    for p in selected_pods(ctx, &svc) {
        let Some(ip) = pod_ip(&p) else { continue };
        if p.metadata.deletion_timestamp.is_some() || terminal(&p) {
            continue;
        }
        let hostname = p
            .spec
            .as_ref()
            .filter(|s| s.subdomain.as_deref() == svc.metadata.name.as_deref())
            .and_then(|s| s.hostname.clone());
        let addr = EndpointAddress {
            ip,
            hostname,
            node_name: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_ref(&p)),
        };
        let ports: Vec<EndpointPort> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: sp.name.clone(),
                    port: target_port(sp, &p)?,
                    protocol: sp.protocol.clone().or(Some("TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        if ports.is_empty() && spec.ports.as_ref().is_some_and(|p| !p.is_empty()) {
            continue;
        }
        entries.push((addr, publish_not_ready || pod_is_ready(&p), ports));
    }
    let subsets = repack(entries);
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert("endpointslice.kubernetes.io/skip-mirror".into(), "true".into());
    if spec.cluster_ip.as_deref() == Some("None") {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    let subsets = (!subsets.is_empty()).then_some(subsets);
    match ctx.endpoints().get(key) {
        Some(cur) if cur.subsets == subsets && cur.metadata.labels.as_ref() == Some(&labels) => Ok(None),
        Some(cur) => {
            let mut ep = cur.as_ref().clone();
            ep.subsets = subsets;
            ep.metadata.labels = Some(labels);
            match api.replace(name, &PostParams::default(), &ep).await {
                Ok(_) => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(ns.into()),
                    labels: Some(labels),
                    ..Default::default()
                },
                subsets,
            };
            match api.create(&PostParams::default(), &ep).await {
                Ok(_) => Ok(None),
                Err(e) if has_code(&e, &[409]) => Ok(Some(std::time::Duration::from_millis(100))),
                Err(e) if has_code(&e, &[403]) => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
    }
}

pub fn start_slices(ctx: &Arc<Context>) {
    let queue: WorkQueue<String> = WorkQueue::new("endpoint_slice");
    let q = queue.clone();
    ctx.services().add_handler(move |ch| q.add(key_of(ch.object().as_ref())));
    let (q, c) = (queue.clone(), ctx.clone());
    ctx.pods().add_handler(move |ch| enqueue_for_pod(&c, &q, ch));
    let q = queue.clone();
    ctx.endpointslices().add_handler(move |ch| {
        let s = ch.object();
        let labels = s.metadata.labels.clone().unwrap_or_default();
        if labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY) {
            if let Some(svc) = labels.get(SERVICE_NAME_LABEL) {
                q.add(format!("{}/{svc}", s.metadata.namespace.as_deref().unwrap_or("")));
            }
        }
    });
    let ctx = ctx.clone();
    tokio::spawn(async move {
        ctx.services().wait_synced().await;
        ctx.pods().wait_synced().await;
        ctx.endpointslices().wait_synced().await;
        let c = ctx.clone();
        run_workers(queue, ctx.flags.concurrent_service_endpoint_syncs, move |key| {
            let ctx = c.clone();
            async move { sync_slices(&ctx, &key).await }
        });
    });
}

async fn sync_slices(ctx: &Context, key: &str) -> SyncResult {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("");
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let mut existing: Vec<Arc<EndpointSlice>> = ctx
        .endpointslices()
        .list_namespace(ns)
        .into_iter()
        .filter(|s| {
            let l = s.metadata.labels.clone().unwrap_or_default();
            l.get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name)
                && l.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        })
        .collect();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let svc = match ctx.services().get(key) {
        Some(s) if has_selector(&s) && s.metadata.deletion_timestamp.is_none() => s,
        // No Service (or no selector): its managed slices go; the garbage collector would also.
        _ => {
            for s in existing {
                match api.delete(s.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if has_code(&e, &[404]) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(None);
        }
    };
    let spec = svc.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    // Endpoints grouped by their resolved port set.
    let mut groups: BTreeMap<String, (Vec<SlicePort>, Vec<Endpoint>)> = BTreeMap::new();
    for p in selected_pods(ctx, &svc) {
        let Some(ip) = pod_ip(&p) else { continue };
        if terminal(&p) || ip.contains(':') {
            continue;
        }
        let ports: Vec<SlicePort> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|sp| {
                Some(SlicePort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port: Some(target_port(sp, &p)?),
                    protocol: sp.protocol.clone().or(Some("TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        let ready = pod_is_ready(&p);
        let terminating = p.metadata.deletion_timestamp.is_some();
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        let zone = node
            .as_ref()
            .and_then(|n| ctx.nodes().get(n))
            .and_then(|n| n.metadata.labels.as_ref()?.get("topology.kubernetes.io/zone").cloned());
        let ep = Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some((publish_not_ready || ready) && !terminating),
                serving: Some(publish_not_ready || ready),
                terminating: Some(terminating),
            }),
            hostname: p
                .spec
                .as_ref()
                .filter(|s| s.subdomain.as_deref() == svc.metadata.name.as_deref())
                .and_then(|s| s.hostname.clone()),
            node_name: node,
            target_ref: Some(pod_ref(&p)),
            zone,
            ..Default::default()
        };
        let k = serde_json::to_string(&ports).unwrap_or_default();
        groups.entry(k).or_insert_with(|| (ports, Vec::new())).1.push(ep);
    }
    let max = ctx.flags.max_endpoints_per_slice.max(1);
    let mut desired: Vec<(Option<Vec<SlicePort>>, Vec<Endpoint>)> = Vec::new();
    for (_, (ports, mut eps)) in groups {
        eps.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        for chunk in eps.chunks(max) {
            desired.push((Some(ports.clone()), chunk.to_vec()));
        }
    }
    if desired.is_empty() {
        // A placeholder slice says the Service has no endpoints.
        desired.push((None, Vec::new()));
    }
    let mut labels: BTreeMap<String, String> = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), name.into());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    if spec.cluster_ip.as_deref() == Some("None") {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    let mut reuse = existing.into_iter();
    for (ports, endpoints) in desired {
        match reuse.next() {
            Some(cur) => {
                if cur.endpoints == endpoints && cur.ports == ports && cur.metadata.labels.as_ref() == Some(&labels) {
                    continue;
                }
                let mut s = cur.as_ref().clone();
                s.endpoints = endpoints;
                s.ports = ports;
                s.metadata.labels = Some(labels.clone());
                api.replace(s.metadata.name.clone().unwrap_or_default().as_str(), &PostParams::default(), &s).await?;
            }
            None => {
                let s = EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{name}-")),
                        namespace: Some(ns.into()),
                        labels: Some(labels.clone()),
                        owner_references: Some(vec![controller_ref(svc.as_ref())]),
                        ..Default::default()
                    },
                    address_type: "IPv4".into(),
                    endpoints,
                    ports,
                };
                match api.create(&PostParams::default(), &s).await {
                    Ok(_) => {}
                    Err(e) if has_code(&e, &[403]) => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    for extra in reuse {
        match api.delete(extra.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if has_code(&e, &[404]) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

pub const MIRRORED_BY: &str = "endpointslicemirroring-controller.k8s.io";
const MIRROR_MAX_PER_SUBSET: usize = 1000;

/// The endpointslice-mirroring controller: Endpoints written by someone else for a Service without a
/// selector are mirrored into EndpointSlices (owned by the Endpoints, labelled as mirrored).
pub fn start_mirroring(ctx: &Arc<Context>) {
    let queue: WorkQueue<String> = WorkQueue::new("endpoint_slice_mirroring");
    let q = queue.clone();
    ctx.endpoints().add_handler(move |ch| q.add(key_of(ch.object().as_ref())));
    let q = queue.clone();
    ctx.services().add_handler(move |ch| q.add(key_of(ch.object().as_ref())));
    let q = queue.clone();
    ctx.endpointslices().add_handler(move |ch| {
        let s = ch.object();
        let labels = s.metadata.labels.clone().unwrap_or_default();
        if labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MIRRORED_BY) {
            if let Some(svc) = labels.get(SERVICE_NAME_LABEL) {
                q.add(format!("{}/{svc}", s.metadata.namespace.as_deref().unwrap_or("")));
            }
        }
    });
    let ctx = ctx.clone();
    tokio::spawn(async move {
        ctx.services().wait_synced().await;
        ctx.endpoints().wait_synced().await;
        ctx.endpointslices().wait_synced().await;
        let c = ctx.clone();
        run_workers(queue, 5, move |key| {
            let ctx = c.clone();
            async move { mirror(&ctx, &key).await }
        });
    });
}

async fn mirror(ctx: &Context, key: &str) -> SyncResult {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("");
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let mut existing: Vec<Arc<EndpointSlice>> = ctx
        .endpointslices()
        .list_namespace(ns)
        .into_iter()
        .filter(|s| {
            let l = s.metadata.labels.clone().unwrap_or_default();
            l.get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name)
                && l.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MIRRORED_BY)
        })
        .collect();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let ep = ctx.endpoints().get(key);
    let svc = ctx.services().get(key);
    let wanted = match (&ep, &svc) {
        (Some(ep), Some(svc)) => {
            let skip = ep
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("endpointslice.kubernetes.io/skip-mirror"))
                .map(String::as_str)
                == Some("true");
            !skip && !has_selector(svc)
        }
        _ => false,
    };
    let mut desired: Vec<(Option<Vec<SlicePort>>, Vec<Endpoint>)> = Vec::new();
    if let (true, Some(ep)) = (wanted, &ep) {
        for subset in ep.subsets.iter().flatten() {
            let ports: Vec<SlicePort> = subset
                .ports
                .iter()
                .flatten()
                .map(|p| SlicePort {
                    name: Some(p.name.clone().unwrap_or_default()),
                    port: Some(p.port),
                    protocol: p.protocol.clone().or(Some("TCP".into())),
                    app_protocol: p.app_protocol.clone(),
                })
                .collect();
            let mut eps = Vec::new();
            let ready = subset.addresses.iter().flatten().map(|a| (a, true));
            let not_ready = subset.not_ready_addresses.iter().flatten().map(|a| (a, false));
            for (a, r) in ready.chain(not_ready).take(MIRROR_MAX_PER_SUBSET) {
                if a.ip.contains(':') {
                    continue;
                }
                eps.push(Endpoint {
                    addresses: vec![a.ip.clone()],
                    conditions: Some(EndpointConditions { ready: Some(r), serving: Some(r), terminating: Some(false) }),
                    hostname: a.hostname.clone(),
                    node_name: a.node_name.clone(),
                    target_ref: a.target_ref.clone(),
                    ..Default::default()
                });
            }
            if eps.is_empty() {
                continue;
            }
            for chunk in eps.chunks(ctx.flags.max_endpoints_per_slice.max(1)) {
                desired.push((Some(ports.clone()), chunk.to_vec()));
            }
        }
    }
    let mut reuse = existing.into_iter();
    if let (true, Some(ep)) = (wanted, &ep) {
        let mut labels = ep.metadata.labels.clone().unwrap_or_default();
        labels.insert(SERVICE_NAME_LABEL.into(), name.into());
        labels.insert(MANAGED_BY_LABEL.into(), MIRRORED_BY.into());
        let mut annotations = ep.metadata.annotations.clone().unwrap_or_default();
        annotations.remove("endpoints.kubernetes.io/last-change-trigger-time");
        let annotations = (!annotations.is_empty()).then_some(annotations);
        for (ports, endpoints) in desired {
            match reuse.next() {
                Some(cur)
                    if cur.endpoints == endpoints
                        && cur.ports == ports
                        && cur.metadata.labels.as_ref() == Some(&labels) => {}
                Some(cur) => {
                    let mut s = cur.as_ref().clone();
                    s.endpoints = endpoints;
                    s.ports = ports;
                    s.metadata.labels = Some(labels.clone());
                    s.metadata.annotations = annotations.clone();
                    api.replace(s.metadata.name.clone().unwrap_or_default().as_str(), &PostParams::default(), &s)
                        .await?;
                }
                None => {
                    let s = EndpointSlice {
                        metadata: ObjectMeta {
                            generate_name: Some(format!("{name}-")),
                            namespace: Some(ns.into()),
                            labels: Some(labels.clone()),
                            annotations: annotations.clone(),
                            owner_references: Some(vec![controller_ref(ep.as_ref())]),
                            ..Default::default()
                        },
                        address_type: "IPv4".into(),
                        endpoints,
                        ports,
                    };
                    match api.create(&PostParams::default(), &s).await {
                        Ok(_) => {}
                        Err(e) if has_code(&e, &[403]) => return Ok(None),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
    for extra in reuse {
        match api.delete(extra.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if has_code(&e, &[404]) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str) -> EndpointAddress {
        EndpointAddress { ip: ip.into(), ..Default::default() }
    }

    #[test]
    fn subsets_repack_by_port_set_and_sort_by_ip() {
        let p80 = vec![EndpointPort { port: 80, protocol: Some("TCP".into()), ..Default::default() }];
        let p81 = vec![EndpointPort { port: 81, protocol: Some("TCP".into()), ..Default::default() }];
        let subsets = repack(vec![
            (addr("10.0.0.3"), true, p80.clone()),
            (addr("10.0.0.1"), true, p80.clone()),
            (addr("10.0.0.2"), false, p80.clone()),
            (addr("10.0.0.4"), true, p81.clone()),
        ]);
        assert_eq!(subsets.len(), 2);
        let ips: Vec<String> = subsets[0].addresses.iter().flatten().map(|a| a.ip.clone()).collect();
        assert_eq!(ips, ["10.0.0.1", "10.0.0.3"]);
        assert_eq!(subsets[0].not_ready_addresses.as_ref().unwrap()[0].ip, "10.0.0.2");
        assert_eq!(subsets[1].ports.as_ref().unwrap()[0].port, 81);
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}
        }))
        .unwrap();
        let named =
            ServicePort { port: 80, target_port: Some(IntOrString::String("http".into())), ..Default::default() };
        assert_eq!(target_port(&named, &pod), Some(8080));
        let missing =
            ServicePort { port: 80, target_port: Some(IntOrString::String("grpc".into())), ..Default::default() };
        assert_eq!(target_port(&missing, &pod), None);
    }
}
