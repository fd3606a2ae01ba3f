//! Service networking the server owns: ClusterIP allocation (one `networking.k8s.io/v1 IPAddress` object
//! per allocated IP, as upstream's allocator does since 1.33, so two API servers cannot hand out one IP),
//! NodePort allocation (upstream's `RangeAllocation` bitmap at `/ranges/servicenodeports`, updated with
//! compare-and-swap), and the `default/kubernetes` Service with endpoints listing the live API servers
//! (upstream's lease reconciler: `/masterleases/<ip>` keys with a TTL).

use crate::api::{Api, Query, ResourceRequest};
use crate::objects::{meta, name};
use apimachinery::{ApiError, Cause};
use base64::Engine;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;

/// `--service-cluster-ip-range` and `--service-node-port-range`.
#[derive(Clone, Debug)]
pub struct ServiceNetwork {
    pub cidr: String,
    base: u128,
    bits: u32,
    v6: bool,
    pub ports: (u16, u16),
}

fn parse_ip(s: &str) -> Option<(u128, bool)> {
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some((u32::from(v4) as u128, false)),
        IpAddr::V6(v6) => Some((u128::from(v6), true)),
    }
}

impl ServiceNetwork {
    pub fn parse(cidr: &str, ports: &str) -> Result<Self, String> {
        let first = cidr.split(',').next().unwrap_or("").trim();
        let (ip, bits) = first.split_once('/').ok_or(format!("--service-cluster-ip-range {cidr:?} is not a CIDR"))?;
        let (base, v6) = parse_ip(ip).ok_or(format!("--service-cluster-ip-range {cidr:?} is not a CIDR"))?;
        let bits: u32 = bits.parse().map_err(|_| format!("--service-cluster-ip-range {cidr:?} is not a CIDR"))?;
        let width = if v6 { 128 } else { 32 };
        if bits > width - 2 {
            return Err(format!("--service-cluster-ip-range {cidr:?} is too small"));
        }
        let host_bits = width - bits;
        let base = base & !((1u128 << host_bits) - 1);
        let (lo, hi) = ports.split_once('-').ok_or(format!("--service-node-port-range {ports:?} is not a range"))?;
        let lo: u16 = lo.trim().parse().map_err(|_| format!("--service-node-port-range {ports:?} is not a range"))?;
        let hi: u16 = hi.trim().parse().map_err(|_| format!("--service-node-port-range {ports:?} is not a range"))?;
        if lo > hi {
            return Err(format!("--service-node-port-range {ports:?} is empty"));
        }
        Ok(ServiceNetwork { cidr: first.to_string(), base, bits, v6, ports: (lo, hi) })
    }

    fn host_bits(&self) -> u32 {
        (if self.v6 { 128 } else { 32 }) - self.bits
    }

    /// Usable addresses: all but the network address (and the broadcast address for IPv4).
    fn size(&self) -> u128 {
        let total = 1u128 << self.host_bits();
        if self.v6 {
            total - 1
        } else {
            total - 2
        }
    }

    fn nth(&self, n: u128) -> IpAddr {
        let v = self.base + 1 + n;
        if self.v6 {
            IpAddr::from(v.to_be_bytes())
        } else {
            IpAddr::from((v as u32).to_be_bytes())
        }
    }

    /// The first address: the `kubernetes` Service's.
    pub fn first_ip(&self) -> IpAddr {
        self.nth(0)
    }

    pub fn contains(&self, ip: &str) -> bool {
        parse_ip(ip).is_some_and(|(v, v6)| v6 == self.v6 && v > self.base && v - self.base - 1 < self.size())
    }
}

fn ipaddresses(api: &Api) -> ResourceRequest<'_> {
    let res = api.registry.find("networking.k8s.io", "v1", "ipaddresses").expect("ipaddresses registered");
    ResourceRequest { res, namespace: None, name: None, sub: None }
}

/// Claims `ip` for a Service; `Ok(false)` when another object holds it.
async fn claim_ip(api: &Api, ip: &str, ns: &str, svc: &str) -> Result<bool, ApiError> {
    let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
    let obj = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IPAddress",
        "metadata": {"name": ip, "labels": {"ipaddress.kubernetes.io/ip-family": family, "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"}},
        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": ns, "name": svc}},
    });
    match api.create_plain(&ipaddresses(api), obj).await {
        Ok(_) => Ok(true),
        Err(e) if e.reason == "AlreadyExists" => Ok(false),
        Err(e) => Err(e),
    }
}

async fn release_ip(api: &Api, ip: &str) {
    let key = apiserver_storage::keys::object_key(&ipaddresses(api).res.storage_path(), None, ip);
    match api.store.delete(&key, None).await {
        Ok(_) | Err(apiserver_storage::StoreError::NotFound { .. }) => {}
        Err(e) => tracing::warn!(ip, error = %e, "releasing a service IP failed"),
    }
}

async fn allocate_ip(api: &Api, net: &ServiceNetwork, ns: &str, svc: &str) -> Result<String, ApiError> {
    let size = net.size();
    // Random probes first (as upstream), then a bounded scan so a nearly full range still finds a gap.
    for _ in 0..32 {
        let ip = net.nth(rand::random_range(1..size.max(2)).min(size - 1)).to_string();
        if claim_ip(api, &ip, ns, svc).await? {
            return Ok(ip);
        }
    }
    for n in 1..size.min(1 << 16) {
        let ip = net.nth(n).to_string();
        if claim_ip(api, &ip, ns, svc).await? {
            return Ok(ip);
        }
    }
    Err(ApiError::internal(format!("failed to allocate a serviceIP: range is full ({})", net.cidr)))
}

const NODE_PORTS_KEY: &str = "/ranges/servicenodeports";

/// Changes the node-port bitmap with compare-and-swap: `f` gets the set bits and returns the result.
async fn with_node_ports<T>(
    api: &Api,
    net: &ServiceNetwork,
    mut f: impl FnMut(&mut Vec<u8>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let size = (net.ports.1 - net.ports.0) as usize + 1;
    let range = format!("{}-{}", net.ports.0, net.ports.1);
    for _ in 0..32 {
        let got = api.store.get(NODE_PORTS_KEY, None).await.map_err(ApiError::internal)?;
        let (mut bits, rev) = match &got.kv {
            Some(kv) => {
                let v: Value = serde_json::from_slice(&kv.value).map_err(ApiError::internal)?;
                let data = base64::engine::general_purpose::STANDARD
                    .decode(v["data"].as_str().unwrap_or(""))
                    .unwrap_or_default();
                // big.Int bytes are big-endian; bit i is port base+i.
                let mut bits = vec![0u8; size.div_ceil(8)];
                for (i, b) in data.iter().rev().enumerate() {
                    if i < bits.len() {
                        bits[i] = *b;
                    }
                }
                (bits, Some(kv.mod_revision))
            }
            None => (vec![0u8; size.div_ceil(8)], None),
        };
        let out = f(&mut bits)?;
        let mut be: Vec<u8> = bits.iter().rev().copied().skip_while(|b| *b == 0).collect();
        if be.is_empty() {
            be = Vec::new();
        }
        let value = json!({
            "kind": "RangeAllocation",
            "apiVersion": "v1",
            "metadata": {"creationTimestamp": null},
            "range": range,
            "data": base64::engine::general_purpose::STANDARD.encode(&be),
        });
        let bytes = serde_json::to_vec(&value).expect("json").into();
        let written = match rev {
            Some(r) => api.store.update(NODE_PORTS_KEY, bytes, r, None).await.map(|_| ()),
            None => api.store.create(NODE_PORTS_KEY, bytes, None).await.map(|_| ()),
        };
        match written {
            Ok(()) => return Ok(out),
            Err(e) if e.is_conflict() || matches!(e, apiserver_storage::StoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(ApiError::internal(e)),
        }
    }
    Err(ApiError::internal("node port allocation kept conflicting"))
}

fn bit(bits: &[u8], i: usize) -> bool {
    bits[i / 8] & (1 << (i % 8)) != 0
}

fn set_bit(bits: &mut [u8], i: usize, on: bool) {
    if on {
        bits[i / 8] |= 1 << (i % 8);
    } else {
        bits[i / 8] &= !(1 << (i % 8));
    }
}

/// What a create allocated, to give back if the create fails.
#[derive(Default)]
pub struct Allocated {
    ip: Option<String>,
    ports: Vec<u16>,
}

fn svc_invalid(svc: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid("", "Service", name(svc), causes)
}

/// Allocates the ClusterIP and node ports a new Service needs and writes them into it.
pub async fn allocate(api: &Api, svc: &mut Value) -> Result<Allocated, ApiError> {
    let Some(net) = api.services.clone() else { return Ok(Allocated::default()) };
    let ns = meta(svc).get("namespace").and_then(Value::as_str).unwrap_or("default").to_string();
    let svc_name = name(svc).to_string();
    let ty = svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    let mut out = Allocated::default();
    if ty != "ExternalName" {
        let requested = svc.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
        let ip = match requested.as_str() {
            "None" => None,
            "" => Some(allocate_ip(api, &net, &ns, &svc_name).await?),
            ip => {
                if !net.contains(ip) {
                    return Err(svc_invalid(svc, vec![Cause::invalid("spec.clusterIPs", &json!([ip]), &format!("failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}", net.cidr))]));
                }
                if !claim_ip(api, ip, &ns, &svc_name).await? {
                    return Err(svc_invalid(
                        svc,
                        vec![Cause::invalid(
                            "spec.clusterIPs",
                            &json!([ip]),
                            &format!("failed to allocate IP {ip}: provided IP is already allocated"),
                        )],
                    ));
                }
                Some(ip.to_string())
            }
        };
        let family = if net.v6 { "IPv6" } else { "IPv4" };
        let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) else {
            return Err(svc_invalid(svc, vec![Cause::required("spec", "")]));
        };
        match &ip {
            Some(ip) => {
                spec.insert("clusterIP".into(), json!(ip));
                spec.insert("clusterIPs".into(), json!([ip]));
            }
            None => {
                spec.insert("clusterIP".into(), json!("None"));
                spec.insert("clusterIPs".into(), json!(["None"]));
            }
        }
        spec.entry("ipFamilies").or_insert(json!([family]));
        spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
        spec.entry("internalTrafficPolicy").or_insert(json!("Cluster"));
        out.ip = ip;
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
            spec.entry("externalTrafficPolicy").or_insert(json!("Cluster"));
        }
        let mut wanted: Vec<Option<u16>> = Vec::new();
        for p in svc.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default() {
            wanted.push(p.get("nodePort").and_then(Value::as_u64).map(|n| n as u16));
        }
        let (lo, hi) = net.ports;
        let svc_ref = svc.clone();
        let ports = with_node_ports(api, &net, |bits| {
            let mut got = Vec::new();
            for w in &wanted {
                let port = match w {
                    Some(p) => {
                        if *p < lo || *p > hi {
                            return Err(svc_invalid(&svc_ref, vec![Cause::invalid("spec.ports[0].nodePort", &json!(p), &format!("provided port is not in the valid range. The range of valid ports is {lo}-{hi}"))]));
                        }
                        if bit(bits, (*p - lo) as usize) {
                            return Err(svc_invalid(&svc_ref, vec![Cause::invalid("spec.ports[0].nodePort", &json!(p), "provided port is already allocated")]));
                        }
                        *p
                    }
                    None => {
                        let span = (hi - lo) as usize + 1;
                        let start = rand::random_range(0..span);
                        let free = (0..span).map(|i| (start + i) % span).find(|i| !bit(bits, *i));
                        match free {
                            Some(i) => lo + i as u16,
                            None => return Err(ApiError::internal("failed to allocate a nodePort: range is full")),
                        }
                    }
                };
                set_bit(bits, (port - lo) as usize, true);
                got.push(port);
            }
            Ok(got)
        })
        .await;
        let ports = match ports {
            Ok(p) => p,
            Err(e) => {
                rollback(api, std::mem::take(&mut out)).await;
                return Err(e);
            }
        };
        if let Some(list) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for (p, port) in list.iter_mut().zip(&ports) {
                if let Some(m) = p.as_object_mut() {
                    m.insert("nodePort".into(), json!(port));
                }
            }
        }
        out.ports = ports;
    }
    Ok(out)
}

/// Gives back what `allocate` took.
pub async fn rollback(api: &Api, allocated: Allocated) {
    if let Some(ip) = &allocated.ip {
        release_ip(api, ip).await;
    }
    if !allocated.ports.is_empty() {
        if let Some(net) = api.services.clone() {
            let _ = with_node_ports(api, &net, |bits| {
                for p in &allocated.ports {
                    set_bit(bits, (p - net.ports.0) as usize, false);
                }
                Ok(())
            })
            .await;
        }
    }
}

/// Releases a deleted Service's ClusterIP and node ports.
pub async fn release(api: &Api, svc: &Value) {
    let ip = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(String::from);
    let ports: Vec<u16> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().filter_map(|p| p.get("nodePort").and_then(Value::as_u64)).map(|p| p as u16).collect())
        .unwrap_or_default();
    rollback(api, Allocated { ip, ports }).await;
}

/// Keeps what the server allocated across updates: the ClusterIP may not change, and node ports carry
/// over for ports that keep their number.
pub fn check_update(old: &Value, new: &mut Value) -> Result<(), ApiError> {
    let old_ip = old.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
    if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
        match spec.get("clusterIP").and_then(Value::as_str) {
            None | Some("") => {
                spec.insert("clusterIP".into(), json!(old_ip));
                if let Some(ips) = old.pointer("/spec/clusterIPs") {
                    spec.insert("clusterIPs".into(), ips.clone());
                }
            }
            Some(ip) if ip != old_ip => {
                let cause = Cause::invalid("spec.clusterIPs[0]", &json!([ip]), "may not change once set");
                return Err(ApiError::invalid("", "Service", name(old), vec![cause]));
            }
            _ => {}
        }
        for key in ["ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy", "externalTrafficPolicy"] {
            if !spec.contains_key(key) {
                if let Some(v) = old.pointer(&format!("/spec/{key}")) {
                    spec.insert(key.into(), v.clone());
                }
            }
        }
    }
    let old_ports = old.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports {
            if p.get("nodePort").is_none() {
                if let Some(np) =
                    old_ports.iter().find(|o| o.get("port") == p.get("port")).and_then(|o| o.get("nodePort"))
                {
                    if let Some(m) = p.as_object_mut() {
                        m.insert("nodePort".into(), np.clone());
                    }
                }
            }
        }
    }
    Ok(())
}

/// Creates the `kubernetes` ServiceCIDR and Service if missing (bootstrap).
pub async fn ensure_kubernetes_service(api: &Api, port: u16) -> Result<(), ApiError> {
    let Some(net) = api.services.clone() else { return Ok(()) };
    let cidr_res = api.registry.find("networking.k8s.io", "v1", "servicecidrs").expect("servicecidrs registered");
    let rr = ResourceRequest { res: cidr_res, namespace: None, name: None, sub: None };
    let cidr = json!({"metadata": {"name": "kubernetes"}, "spec": {"cidrs": [net.cidr]}});
    match api.create(&rr, cidr, &Query::default()).await {
        Ok(_) => {}
        Err(e) if e.reason == "AlreadyExists" => {}
        Err(e) => return Err(e),
    }
    let svc_res = api.registry.find("", "v1", "services").expect("services registered");
    let existing =
        ResourceRequest { res: svc_res, namespace: Some("default".into()), name: Some("kubernetes".into()), sub: None };
    match api.get(&existing, &Query::default()).await {
        Ok(_) => return Ok(()),
        Err(e) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    let rr = ResourceRequest { res: svc_res, namespace: Some("default".into()), name: None, sub: None };
    let svc = json!({
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": net.first_ip().to_string(),
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
        },
    });
    match api.create(&rr, svc, &Query::default()).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

const MASTER_LEASE_TTL: Duration = Duration::from_secs(15);

/// Keeps `/masterleases/<ip>` alive for this server and rewrites the `kubernetes` Endpoints and
/// EndpointSlice to the servers whose leases are alive, every 10 seconds.
pub async fn run_endpoint_reconciler(api: std::sync::Arc<Api>, ip: IpAddr, port: u16) {
    loop {
        if let Err(e) = reconcile_endpoints(&api, ip, port).await {
            tracing::warn!(error = %e, "reconciling the kubernetes endpoints failed");
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

async fn reconcile_endpoints(api: &Api, ip: IpAddr, port: u16) -> Result<(), ApiError> {
    let key = format!("/masterleases/{ip}");
    let body = bytes::Bytes::from_static(b"{}");
    match api.store.get(&key, None).await.map_err(ApiError::internal)?.kv {
        Some(kv) => api.store.update(&key, body, kv.mod_revision, Some(MASTER_LEASE_TTL)).await.map(|_| ()),
        None => api.store.create(&key, body, Some(MASTER_LEASE_TTL)).await.map(|_| ()),
    }
    .or_else(|e| {
        if e.is_conflict() || matches!(e, apiserver_storage::StoreError::AlreadyExists { .. }) {
            Ok(())
        } else {
            Err(e)
        }
    })
    .map_err(ApiError::internal)?;
    let live = api.store.list("/masterleases/", Default::default()).await.map_err(ApiError::internal)?;
    let mut ips: Vec<String> = live.items.iter().filter_map(|kv| kv.key.rsplit('/').next().map(String::from)).collect();
    ips.sort();
    let endpoints = json!({
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(), "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    let family = if ip.is_ipv6() { "IPv6" } else { "IPv4" };
    let slice = json!({
        "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": family,
        "endpoints": ips.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>(),
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    for (group, plural, obj) in [("", "endpoints", endpoints), ("discovery.k8s.io", "endpointslices", slice)] {
        let res = api.registry.resources.iter().find(|r| r.group == group && r.plural == plural).expect("registered");
        let rr = ResourceRequest { res, namespace: Some("default".into()), name: Some("kubernetes".into()), sub: None };
        match api.get(&rr, &Query::default()).await {
            Ok(current) => {
                let same =
                    current.get("subsets") == obj.get("subsets") && current.get("endpoints") == obj.get("endpoints");
                if !same {
                    api.update(&rr, obj, &Query::default()).await?;
                }
            }
            Err(e) if e.code == 404 => {
                let create = ResourceRequest { name: None, ..rr };
                api.create(&create, obj, &Query::default()).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let n = ServiceNetwork::parse("10.0.0.0/24", "30000-32767").unwrap();
        assert_eq!(n.first_ip().to_string(), "10.0.0.1");
        assert_eq!(n.size(), 254);
        assert_eq!(n.nth(253).to_string(), "10.0.0.254");
        assert!(
            n.contains("10.0.0.5") && !n.contains("10.0.1.5") && !n.contains("10.0.0.0") && !n.contains("10.0.0.255")
        );
        let n = ServiceNetwork::parse("10.96.0.0/12", "30000-32767").unwrap();
        assert_eq!(n.first_ip().to_string(), "10.96.0.1");
        assert!(ServiceNetwork::parse("10.0.0.0/31", "1-2").is_err());
        assert!(ServiceNetwork::parse("nonsense", "1-2").is_err());
        assert!(ServiceNetwork::parse("10.0.0.0/24", "5-1").is_err());
    }
}
