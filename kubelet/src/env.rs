//! A container's environment as upstream builds it: `envFrom` (ConfigMaps and Secrets, with
//! `prefix`), then `env` with `value` (expanding `$(VAR)`), `fieldRef`, `resourceFieldRef`,
//! `configMapKeyRef` and `secretKeyRef`. A missing object or key (not `optional`) is a
//! `CreateContainerConfigError` with upstream's message.

use crate::kubelet::Kubelet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, ResourceFieldSelector, Secret};
use kube::api::Api;
use std::collections::{BTreeMap, HashMap};

/// The value of a downward-API field path.
pub fn field_value(pod: &Pod, path: &str) -> Result<String, String> {
    let m = &pod.metadata;
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str, map: Option<&BTreeMap<String, String>>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    if let Some(v) = subscript("metadata.labels", m.labels.as_ref()) {
        return Ok(v);
    }
    if let Some(v) = subscript("metadata.annotations", m.annotations.as_ref()) {
        return Ok(v);
    }
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.hostIPs" => status
            .and_then(|s| s.host_ips.as_ref())
            .map(|ips| ips.iter().map(|i| i.ip.clone()).collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.podIPs" => status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| ips.iter().map(|i| i.ip.clone()).collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
        other => return Err(format!("unsupported fieldPath: {other}")),
    })
}

/// A `resourceFieldRef` value: the container's limit (or the node's allocatable when unset) or
/// request, divided by `divisor` and rounded up, as upstream's `ExtractContainerResourceValue`.
pub fn resource_value(pod: &Pod, container: &str, r: &ResourceFieldSelector) -> Result<String, String> {
    let name = if r.container_name.as_deref().unwrap_or("").is_empty() {
        container
    } else {
        r.container_name.as_deref().unwrap_or("")
    };
    let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
    let c = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .ok_or_else(|| format!("container {name} not found"))?;
    let (kind, res) =
        r.resource.split_once('.').ok_or_else(|| format!("unsupported container resource : {}", r.resource))?;
    let res_map =
        c.resources.as_ref().and_then(|rr| if kind == "limits" { rr.limits.as_ref() } else { rr.requests.as_ref() });
    let raw = res_map.and_then(|m| m.get(res)).map(|q| q.0.clone());
    let divisor = r.divisor.as_ref().map(|d| d.0.clone()).unwrap_or_else(|| "1".into());
    let div = apimachinery::quantity::parse(&divisor).filter(|d| *d > 0.0).unwrap_or(1.0);
    let value = match raw {
        Some(q) => apimachinery::quantity::parse(&q).unwrap_or(0.0),
        None if kind == "limits" => match res {
            // No limit: the node's allocatable, as upstream defaults it.
            "cpu" => std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0),
            "memory" => crate::machine::meminfo("MemTotal").unwrap_or(0) as f64,
            _ => 0.0,
        },
        None => 0.0,
    };
    Ok(apimachinery::quantity::ceil(value / div).to_string())
}

/// `$(VAR)` expansion as upstream's `expansion.Expand`: defined names are replaced, `$$` escapes,
/// unknown references stay as written.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let b = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = input[i + 2..].find(')') {
                    let name = &input[i + 2..i + 2 + end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&input[i..i + 3 + end]),
                    }
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = input[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

async fn config_map(
    k: &Kubelet,
    ns: &str,
    name: &str,
    cache: &mut HashMap<String, Option<ConfigMap>>,
) -> Result<Option<ConfigMap>, String> {
    if let Some(c) = cache.get(name) {
        return Ok(c.clone());
    }
    let c = Api::<ConfigMap>::namespaced(k.client.clone(), ns).get_opt(name).await.map_err(|e| e.to_string())?;
    cache.insert(name.into(), c.clone());
    Ok(c)
}

async fn secret(
    k: &Kubelet,
    ns: &str,
    name: &str,
    cache: &mut HashMap<String, Option<Secret>>,
) -> Result<Option<Secret>, String> {
    if let Some(c) = cache.get(name) {
        return Ok(c.clone());
    }
    let c = Api::<Secret>::namespaced(k.client.clone(), ns).get_opt(name).await.map_err(|e| e.to_string())?;
    cache.insert(name.into(), c.clone());
    Ok(c)
}

/// The Service variables docker links used to give (`<NAME>_SERVICE_HOST`, `<NAME>_PORT_6379_TCP_ADDR`, ...):
/// for every Service with a cluster IP in the pod's namespace when `enableServiceLinks` (default true), and
/// always for the `kubernetes` Service of the `default` namespace, as upstream's `getServiceEnvVarMap`.
pub async fn service_env(k: &Kubelet, pod: &Pod) -> Result<Vec<(String, String)>, String> {
    use k8s_openapi::api::core::v1::Service;
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let mut services: Vec<Service> = Vec::new();
    if links {
        services = Api::<Service>::namespaced(k.client.clone(), &ns)
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
    }
    if ns != "default" || !links {
        if let Some(master) = Api::<Service>::namespaced(k.client.clone(), "default")
            .get_opt("kubernetes")
            .await
            .map_err(|e| e.to_string())?
        {
            services.retain(|s| s.metadata.name.as_deref() != Some("kubernetes"));
            services.push(master);
        }
    }
    let mut out = Vec::new();
    services.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for svc in services {
        let spec = svc.spec.unwrap_or_default();
        let Some(ip) = spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None") else { continue };
        let name = svc.metadata.name.unwrap_or_default().to_uppercase().replace('-', "_");
        let ports = spec.ports.unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        out.push((format!("{name}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((format!("{name}_SERVICE_PORT_{}", pn.to_uppercase().replace('-', "_")), p.port.to_string()));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| p.protocol.clone().unwrap_or_else(|| "TCP".into());
        out.push((format!("{name}_PORT"), format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port)));
        for p in &ports {
            let pr = proto(p);
            let prefix = format!("{name}_PORT_{}_{}", p.port, pr.to_uppercase());
            out.push((prefix.clone(), format!("{}://{ip}:{}", pr.to_lowercase(), p.port)));
            out.push((format!("{prefix}_PROTO"), pr.to_lowercase()));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.clone()));
        }
    }
    Ok(out)
}

/// The environment of `c`, in upstream's order (Service variables, then envFrom, then env, later names
/// winning).
pub async fn build(k: &Kubelet, pod: &Pod, c: &Container) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut cms = HashMap::new();
    let mut secrets = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    let set = |order: &mut Vec<String>, vars: &mut HashMap<String, String>, key: String, value: String| {
        if !vars.contains_key(&key) {
            order.push(key.clone());
        }
        vars.insert(key, value);
    };
    for (key, value) in service_env(k, pod).await? {
        set(&mut order, &mut vars, key, value);
    }
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match config_map(k, &ns, &r.name, &mut cms).await? {
                Some(cm) => {
                    for (key, v) in cm.data.unwrap_or_default() {
                        set(&mut order, &mut vars, format!("{prefix}{key}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match secret(k, &ns, &r.name, &mut secrets).await? {
                Some(s) => {
                    for (key, v) in s.data.unwrap_or_default() {
                        set(
                            &mut order,
                            &mut vars,
                            format!("{prefix}{key}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = match &e.value_from {
            None => expand(e.value.as_deref().unwrap_or(""), &vars),
            Some(src) => {
                if let Some(f) = &src.field_ref {
                    field_value(pod, &f.field_path)?
                } else if let Some(r) = &src.resource_field_ref {
                    resource_value(pod, &c.name, r)?
                } else if let Some(r) = &src.config_map_key_ref {
                    match config_map(k, &ns, &r.name, &mut cms).await? {
                        Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                            Some(v) => v.clone(),
                            None if r.optional == Some(true) => continue,
                            None => return Err(format!("couldn't find key {} in ConfigMap {ns}/{}", r.key, r.name)),
                        },
                        None if r.optional == Some(true) => continue,
                        None => return Err(format!("configmap \"{}\" not found", r.name)),
                    }
                } else if let Some(r) = &src.secret_key_ref {
                    match secret(k, &ns, &r.name, &mut secrets).await? {
                        Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                            Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                            None if r.optional == Some(true) => continue,
                            None => return Err(format!("couldn't find key {} in Secret {ns}/{}", r.key, r.name)),
                        },
                        None if r.optional == Some(true) => continue,
                        None => return Err(format!("secret \"{}\" not found", r.name)),
                    }
                } else {
                    String::new()
                }
            }
        };
        set(&mut order, &mut vars, e.name.clone(), value);
    }
    Ok(order.into_iter().map(|k| (k.clone(), vars[&k].clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion() {
        let mut v = HashMap::new();
        v.insert("A".to_string(), "x".to_string());
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &v), "x-$(B)-$(A)-$");
    }

    #[test]
    fn fields() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "labels": {"app": "web"}},
            "spec": {"nodeName": "node1", "containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]},
            "status": {"podIP": "10.0.0.5"}
        }))
        .unwrap();
        assert_eq!(field_value(&pod, "metadata.labels['app']").unwrap(), "web");
        assert_eq!(field_value(&pod, "status.podIP").unwrap(), "10.0.0.5");
        assert_eq!(field_value(&pod, "spec.nodeName").unwrap(), "node1");
        let r = ResourceFieldSelector {
            resource: "limits.memory".into(),
            divisor: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Mi".into())),
            container_name: None,
        };
        assert_eq!(resource_value(&pod, "c", &r).unwrap(), "64");
    }
}
