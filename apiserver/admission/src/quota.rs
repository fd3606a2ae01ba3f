//! ResourceQuota arithmetic, shared by the admission plugin (charging a create before it is stored)
//! and the quota controller (recounting what a namespace holds): what one object uses, which quotas it
//! falls under, and upstream's messages when a quota would be exceeded.

use apimachinery::quantity;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub type Usage = BTreeMap<String, f64>;

/// Resources counted in bytes are printed with binary suffixes.
fn binary(resource: &str) -> bool {
    resource.ends_with("memory") || resource.ends_with("storage")
}

/// A number as upstream prints a quantity of that resource (`500m`, `2`, `128Mi`).
pub fn format_quantity(resource: &str, v: f64) -> String {
    if v.fract() != 0.0 {
        return format!("{}m", (v * 1000.0).round() as i64);
    }
    let n = v as i64;
    if n == 0 {
        return "0".into();
    }
    if binary(resource) {
        for (suffix, div) in
            [("Ei", 1i64 << 60), ("Pi", 1 << 50), ("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)]
        {
            if n % div == 0 {
                return format!("{}{suffix}", n / div);
            }
        }
    }
    n.to_string()
}

fn sum_containers(spec: &Value, which: &str, resource: &str) -> Option<f64> {
    let get = |c: &Value| {
        c.pointer(&format!("/resources/{which}/{}", resource.replace('/', "~1")))
            .and_then(Value::as_str)
            .and_then(quantity::parse)
    };
    let regular: Vec<&Value> = spec.get("containers").and_then(Value::as_array).into_iter().flatten().collect();
    let init: Vec<&Value> = spec.get("initContainers").and_then(Value::as_array).into_iter().flatten().collect();
    let mut total = 0.0;
    let mut any = false;
    for c in &regular {
        if let Some(v) = get(c) {
            total += v;
            any = true;
        }
    }
    for c in &init {
        if let Some(v) = get(c) {
            any = true;
            total = total.max(v);
        }
    }
    if let Some(o) = spec.pointer(&format!("/overhead/{resource}")).and_then(Value::as_str).and_then(quantity::parse) {
        total += o;
        any = true;
    }
    any.then_some(total)
}

/// The containers that set no `which` value for `resource`.
pub fn containers_missing(pod: &Value, which: &str, resource: &str) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|f| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_array).into_iter().flatten())
        .filter(|c| c.pointer(&format!("/resources/{which}/{resource}")).is_none())
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
        .collect()
}

fn pod_terminal(pod: &Value) -> bool {
    matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded") | Some("Failed"))
}

/// What one object counts against quota, by quota resource name.
pub fn usage(group: &str, plural: &str, obj: &Value) -> Usage {
    let mut u = Usage::new();
    let count_key = if group.is_empty() { format!("count/{plural}") } else { format!("count/{plural}.{group}") };
    if group.is_empty() && plural == "pods" && pod_terminal(obj) {
        return u;
    }
    u.insert(count_key, 1.0);
    match (group, plural) {
        ("", "pods") => {
            u.insert("pods".into(), 1.0);
            let spec = obj.get("spec").cloned().unwrap_or_default();
            let mut resources: Vec<String> = Vec::new();
            for f in ["initContainers", "containers"] {
                for c in spec.get(f).and_then(Value::as_array).into_iter().flatten() {
                    for which in ["requests", "limits"] {
                        for k in c
                            .pointer(&format!("/resources/{which}"))
                            .and_then(Value::as_object)
                            .into_iter()
                            .flatten()
                            .map(|(k, _)| k)
                        {
                            if !resources.contains(k) {
                                resources.push(k.clone());
                            }
                        }
                    }
                }
            }
            for r in resources {
                if let Some(v) = sum_containers(&spec, "requests", &r) {
                    u.insert(format!("requests.{r}"), v);
                    if r == "cpu" || r == "memory" || r == "ephemeral-storage" {
                        u.insert(r.clone(), v);
                    }
                }
                if let Some(v) = sum_containers(&spec, "limits", &r) {
                    u.insert(format!("limits.{r}"), v);
                }
            }
        }
        ("", "services") => {
            u.insert("services".into(), 1.0);
            let t = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
            if t == "LoadBalancer" {
                u.insert("services.loadbalancers".into(), 1.0);
            }
            if t == "NodePort" || t == "LoadBalancer" {
                let ports = obj.pointer("/spec/ports").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
                u.insert("services.nodeports".into(), ports as f64);
            }
        }
        ("", "persistentvolumeclaims") => {
            u.insert("persistentvolumeclaims".into(), 1.0);
            let storage = crate::pods::claim_storage(obj).unwrap_or(0.0);
            u.insert("requests.storage".into(), storage);
            if let Some(class) = obj.pointer("/spec/storageClassName").and_then(Value::as_str) {
                u.insert(format!("{class}.storageclass.storage.k8s.io/requests.storage"), storage);
                u.insert(format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"), 1.0);
            }
        }
        ("", "configmaps") | ("", "secrets") | ("", "replicationcontrollers") | ("", "resourcequotas") => {
            u.insert(plural.to_string(), 1.0);
        }
        _ => {}
    }
    u
}

/// Whether a quota's scopes (`spec.scopes`, each as an `Exists` requirement) and `spec.scopeSelector`
/// requirements all select the object. Scopes only apply to pods.
pub fn in_scope(quota: &Value, plural: &str, obj: &Value) -> bool {
    let mut requirements: Vec<(String, String, Vec<String>)> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
        .collect();
    for e in quota.pointer("/spec/scopeSelector/matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let values = e.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
        requirements.push((text("scopeName"), text("operator"), values.map(String::from).collect()));
    }
    if requirements.is_empty() {
        return true;
    }
    if plural != "pods" {
        return false;
    }
    let terminating = obj.pointer("/spec/activeDeadlineSeconds").is_some_and(|v| !v.is_null());
    let best_effort = ["initContainers", "containers"].iter().all(|f| {
        obj.pointer(&format!("/spec/{f}")).and_then(Value::as_array).into_iter().flatten().all(|c| {
            let empty =
                |w: &str| c.pointer(&format!("/resources/{w}")).and_then(Value::as_object).is_none_or(Map::is_empty);
            empty("requests") && empty("limits")
        })
    });
    let priority_class = obj.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or("");
    requirements.iter().all(|(scope, op, values)| {
        let flag = |holds: bool| match op.as_str() {
            "DoesNotExist" => !holds,
            _ => holds,
        };
        match scope.as_str() {
            "Terminating" => flag(terminating),
            "NotTerminating" => flag(!terminating),
            "BestEffort" => flag(best_effort),
            "NotBestEffort" => flag(!best_effort),
            "CrossNamespacePodAffinity" => flag(cross_namespace_affinity(obj)),
            "PriorityClass" => match op.as_str() {
                "In" => values.iter().any(|v| v == priority_class),
                "NotIn" => !values.iter().any(|v| v == priority_class),
                "Exists" => !priority_class.is_empty(),
                "DoesNotExist" => priority_class.is_empty(),
                _ => false,
            },
            _ => true,
        }
    })
}

/// Whether a pod's (anti-)affinity terms reach other namespaces (`namespaces` or `namespaceSelector`).
fn cross_namespace_affinity(pod: &Value) -> bool {
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let Some(a) = pod.pointer(&format!("/spec/affinity/{kind}")) else { return false };
        let required = a.get("requiredDuringSchedulingIgnoredDuringExecution").and_then(Value::as_array);
        let preferred = a.get("preferredDuringSchedulingIgnoredDuringExecution").and_then(Value::as_array);
        let terms = required
            .into_iter()
            .flatten()
            .chain(preferred.into_iter().flatten().filter_map(|p| p.get("podAffinityTerm")));
        terms.into_iter().any(|t| {
            t.get("namespaces").and_then(Value::as_array).is_some_and(|n| !n.is_empty())
                || t.get("namespaceSelector").is_some_and(|s| !s.is_null())
        })
    })
}

fn parse_list(v: Option<&Value>) -> BTreeMap<String, f64> {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), quantity::parse(v.as_str()?)?)))
        .collect()
}

fn pretty(m: &BTreeMap<String, f64>) -> String {
    m.iter().map(|(k, v)| format!("{k}={}", format_quantity(k, *v))).collect::<Vec<_>>().join(",")
}

/// Charges `delta` to one quota: the new `status.used`, or upstream's reason for refusing. `None`: the
/// quota does not constrain anything the object uses.
pub fn charge(quota: &Value, delta: &Usage) -> Option<Result<Value, String>> {
    let name = quota.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let spec_hard = parse_list(quota.pointer("/spec/hard"));
    let relevant: Vec<&String> = delta.keys().filter(|k| spec_hard.contains_key(*k)).collect();
    if relevant.is_empty() {
        return None;
    }
    let hard = parse_list(quota.pointer("/status/hard"));
    let unknown: Vec<&str> = relevant.iter().filter(|k| !hard.contains_key(**k)).map(|k| k.as_str()).collect();
    if !unknown.is_empty() {
        return Some(Err(format!("status unknown for quota: {name}, resources: {}", unknown.join(","))));
    }
    let used = parse_list(quota.pointer("/status/used"));
    let mut new_used = used.clone();
    let mut exceeded = Vec::new();
    for k in &relevant {
        let d = delta[*k];
        let now = used.get(*k).copied().unwrap_or(0.0);
        let after = now + d;
        if d > 0.0 && after > hard[*k] + 1e-9 {
            exceeded.push((*k).clone());
        }
        new_used.insert((*k).clone(), after.max(0.0));
    }
    if !exceeded.is_empty() {
        let mask = |m: &BTreeMap<String, f64>| -> BTreeMap<String, f64> {
            exceeded.iter().map(|k| (k.clone(), m.get(k).copied().unwrap_or(0.0))).collect()
        };
        return Some(Err(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            pretty(&mask(delta)),
            pretty(&mask(&used)),
            pretty(&mask(&hard))
        )));
    }
    let mut q = quota.clone();
    let used_json: Map<String, Value> =
        new_used.iter().map(|(k, v)| (k.clone(), json!(format_quantity(k, *v)))).collect();
    if let Some(status) = q.as_object_mut().map(|o| o.entry("status").or_insert_with(|| json!({}))) {
        status["used"] = Value::Object(used_json);
    }
    Some(Ok(q))
}

/// `new - old` (an update only charges what grew).
pub fn delta(new: &Usage, old: Option<&Usage>) -> Usage {
    let mut d = new.clone();
    if let Some(old) = old {
        for (k, v) in old {
            *d.entry(k.clone()).or_default() -= v;
        }
    }
    d.retain(|_, v| *v != 0.0);
    d
}

/// A recount: the quota's `status` from what the namespace holds (`objects` as (group, plural, object)).
pub fn recount<'a>(quota: &Value, objects: impl Iterator<Item = (&'a str, &'a str, &'a Value)>) -> Value {
    let hard = quota.pointer("/spec/hard").cloned().unwrap_or_else(|| json!({}));
    let tracked = parse_list(Some(&hard));
    let mut used: BTreeMap<String, f64> = tracked.keys().map(|k| (k.clone(), 0.0)).collect();
    for (group, plural, obj) in objects {
        if !in_scope(quota, plural, obj) {
            continue;
        }
        for (k, v) in usage(group, plural, obj) {
            if let Some(u) = used.get_mut(&k) {
                *u += v;
            }
        }
    }
    let used: Map<String, Value> = used.iter().map(|(k, v)| (k.clone(), json!(format_quantity(k, *v)))).collect();
    json!({"hard": hard, "used": used})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(hard: Value, used: Value) -> Value {
        json!({"metadata": {"name": "q"}, "spec": {"hard": hard}, "status": {"hard": hard, "used": used}})
    }

    #[test]
    fn pods_use_count_and_resources() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}
        ], "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}]}});
        let u = usage("", "pods", &pod);
        assert_eq!(u["pods"], 1.0);
        assert_eq!(u["count/pods"], 1.0);
        assert_eq!(u["requests.cpu"], 2.0);
        assert_eq!(format_quantity("requests.memory", u["requests.memory"]), "128Mi");
        assert_eq!(format_quantity("limits.cpu", u["limits.cpu"]), "500m");
        let done = json!({"spec": {}, "status": {"phase": "Succeeded"}});
        assert!(usage("", "pods", &done).is_empty());
    }

    #[test]
    fn charging_refuses_the_one_too_many() {
        let q = quota(json!({"pods": "2"}), json!({"pods": "1"}));
        let d = usage("", "pods", &json!({"spec": {"containers": []}}));
        let charged = charge(&q, &d).unwrap().unwrap();
        assert_eq!(charged["status"]["used"]["pods"], "2");
        let err = charge(&charged, &d).unwrap().unwrap_err();
        assert_eq!(err, "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2");
        let not_synced = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2"}}});
        assert_eq!(charge(&not_synced, &d).unwrap().unwrap_err(), "status unknown for quota: q, resources: pods");
        let other = quota(json!({"secrets": "1"}), json!({}));
        assert!(charge(&other, &d).is_none());
    }

    #[test]
    fn scope_selectors() {
        let pod = |pc: &str| json!({"spec": {"priorityClassName": pc, "containers": [{"name": "c"}]}});
        let q = |exprs: Value| json!({"spec": {"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": exprs}}});
        let high = q(json!([{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]));
        assert!(in_scope(&high, "pods", &pod("high")));
        assert!(!in_scope(&high, "pods", &pod("low")));
        assert!(!in_scope(&high, "configmaps", &json!({})));
        let not_high = q(json!([{"scopeName": "PriorityClass", "operator": "NotIn", "values": ["high"]}]));
        assert!(in_scope(&not_high, "pods", &pod("low")));
        let any = q(
            json!([{"scopeName": "PriorityClass", "operator": "Exists"}, {"scopeName": "BestEffort", "operator": "Exists"}]),
        );
        assert!(in_scope(&any, "pods", &pod("x")));
        assert!(!in_scope(&any, "pods", &pod("")));
        let cross = q(json!([{"scopeName": "CrossNamespacePodAffinity", "operator": "Exists"}]));
        let mut p = pod("");
        assert!(!in_scope(&cross, "pods", &p));
        p["spec"]["affinity"] = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "k", "namespaceSelector": {}}]}});
        assert!(in_scope(&cross, "pods", &p));
    }

    #[test]
    fn recount_and_scopes() {
        let q = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "5", "services": "1"}, "scopes": ["BestEffort"]}});
        let a = json!({"spec": {"containers": [{"name": "a"}]}});
        let b = json!({"spec": {"containers": [{"name": "b", "resources": {"requests": {"cpu": "1"}}}]}});
        let s = json!({"spec": {}});
        let status = recount(&q, [("", "pods", &a), ("", "pods", &b), ("", "services", &s)].into_iter());
        assert_eq!(status["used"]["pods"], "1");
        assert_eq!(status["used"]["services"], "0");
    }
}
