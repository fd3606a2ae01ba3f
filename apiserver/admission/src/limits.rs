//! LimitRanger: default requests and limits from a namespace's LimitRange objects, and their min, max
//! and maxLimitRequestRatio constraints on containers, pods and claims, with upstream's messages.

use apimachinery::quantity;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A LimitRange item with upstream's defaulting applied (a default limit falls back to max, a default
/// request to the default limit and then to min).
fn defaulted(item: &Value) -> Value {
    let mut item = item.clone();
    if item.get("type").and_then(Value::as_str) != Some("Container") {
        return item;
    }
    let get = |item: &Value, k: &str| item.get(k).and_then(Value::as_object).cloned().unwrap_or_default();
    let mut default = get(&item, "default");
    let mut request = get(&item, "defaultRequest");
    for (k, v) in get(&item, "max") {
        default.entry(k).or_insert(v);
    }
    for (k, v) in default.clone() {
        request.entry(k).or_insert(v);
    }
    for (k, v) in get(&item, "min") {
        request.entry(k).or_insert(v);
    }
    item["default"] = Value::Object(default);
    item["defaultRequest"] = Value::Object(request);
    item
}

fn items(ranges: &[Value], kind: &str) -> Vec<Value> {
    ranges
        .iter()
        .flat_map(|r| r.pointer("/spec/limits").and_then(Value::as_array).cloned().unwrap_or_default())
        .filter(|i| i.get("type").and_then(Value::as_str) == Some(kind))
        .map(|i| defaulted(&i))
        .collect()
}

fn resources_mut<'a>(c: &'a mut Map<String, Value>, which: &str) -> &'a mut Map<String, Value> {
    let r = c.entry("resources").or_insert_with(|| json!({}));
    if !r.is_object() {
        *r = json!({});
    }
    let m = r.as_object_mut().expect("object").entry(which).or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut().expect("object")
}

/// Fills missing container requests and limits from the Container items' defaults, and records what it
/// set in the `kubernetes.io/limit-ranger` annotation as upstream.
pub fn apply_defaults(pod: &mut Value, ranges: &[Value]) {
    let items = items(ranges, "Container");
    if items.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    for (field, what) in [("initContainers", "init container"), ("containers", "container")] {
        let Some(cs) = pod.pointer_mut(&format!("/spec/{field}")).and_then(Value::as_array_mut) else { continue };
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            for (which, from, label) in [("requests", "defaultRequest", "request"), ("limits", "default", "limit")] {
                let mut set = Vec::new();
                for item in &items {
                    for (k, v) in item.get(from).and_then(Value::as_object).into_iter().flatten() {
                        let m = resources_mut(c, which);
                        if !m.contains_key(k) {
                            m.insert(k.clone(), v.clone());
                            set.push(k.clone());
                        }
                    }
                }
                if !set.is_empty() {
                    notes.push(format!("{} {label} for {what} {name}", set.join(", ")));
                }
                if c.get("resources")
                    .and_then(|r| r.get(which))
                    .and_then(Value::as_object)
                    .is_some_and(|m| m.is_empty())
                {
                    if let Some(r) = c.get_mut("resources").and_then(Value::as_object_mut) {
                        r.remove(which);
                    }
                }
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        let a = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = a.as_object_mut() {
            a.insert(
                "kubernetes.io/limit-ranger".into(),
                json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
            );
        }
    }
}

fn qty(m: Option<&Value>, k: &str) -> Option<(f64, String)> {
    let s = m?.get(k)?.as_str()?;
    Some((quantity::parse(s)?, s.to_string()))
}

fn check(
    errs: &mut Vec<String>,
    item: &Value,
    kind: &str,
    requests: &BTreeMap<String, (f64, String)>,
    limits: &BTreeMap<String, (f64, String)>,
) {
    for (k, min) in item.get("min").and_then(Value::as_object).into_iter().flatten() {
        let min_s = min.as_str().unwrap_or("");
        let Some(m) = quantity::parse(min_s) else { continue };
        match requests.get(k) {
            None => errs.push(format!("minimum {k} usage per {kind} is {min_s}.  No request is specified")),
            Some((r, rs)) if *r < m => {
                errs.push(format!("minimum {k} usage per {kind} is {min_s}, but request is {rs}"))
            }
            _ => {}
        }
    }
    for (k, max) in item.get("max").and_then(Value::as_object).into_iter().flatten() {
        let max_s = max.as_str().unwrap_or("");
        let Some(m) = quantity::parse(max_s) else { continue };
        match limits.get(k) {
            None => errs.push(format!("maximum {k} usage per {kind} is {max_s}.  No limit is specified")),
            Some((l, ls)) if *l > m => errs.push(format!("maximum {k} usage per {kind} is {max_s}, but limit is {ls}")),
            _ => {}
        }
    }
    for (k, ratio) in item.get("maxLimitRequestRatio").and_then(Value::as_object).into_iter().flatten() {
        let ratio_s = ratio.as_str().unwrap_or("");
        let Some(max_ratio) = quantity::parse(ratio_s) else { continue };
        let (Some((l, _)), Some((r, _))) = (limits.get(k), requests.get(k)) else {
            if limits.contains_key(k) || requests.contains_key(k) {
                errs.push(format!(
                    "{k} max limit to request ratio per {kind} is {ratio_s}, but no request is specified or request is 0"
                ));
            }
            continue;
        };
        if *r == 0.0 || l / r > max_ratio {
            errs.push(format!(
                "{k} max limit to request ratio per {kind} is {ratio_s}, but provided ratio is {:.6}",
                l / r
            ));
        }
    }
}

fn resource_map(m: Option<&Value>) -> BTreeMap<String, (f64, String)> {
    m.and_then(Value::as_object).into_iter().flatten().filter_map(|(k, _)| qty(m, k).map(|q| (k.clone(), q))).collect()
}

/// The Container and Pod items' constraints on a pod. Errors are upstream's messages.
pub fn validate_pod(pod: &Value, ranges: &[Value]) -> Vec<String> {
    let mut errs = Vec::new();
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|f| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_array).into_iter().flatten())
        .collect();
    for item in items(ranges, "Container") {
        for c in &containers {
            let requests = resource_map(c.pointer("/resources/requests"));
            let limits = resource_map(c.pointer("/resources/limits"));
            check(&mut errs, &item, "Container", &requests, &limits);
        }
    }
    let pod_items = items(ranges, "Pod");
    if !pod_items.is_empty() {
        let sum = |which: &str| -> BTreeMap<String, (f64, String)> {
            let mut out: BTreeMap<String, f64> = BTreeMap::new();
            for c in &containers {
                for (k, (v, _)) in resource_map(c.pointer(&format!("/resources/{which}"))) {
                    *out.entry(k).or_default() += v;
                }
            }
            out.into_iter().map(|(k, v)| (k.clone(), (v, crate::quota::format_quantity(&k, v)))).collect()
        };
        let (requests, limits) = (sum("requests"), sum("limits"));
        for item in pod_items {
            check(&mut errs, &item, "Pod", &requests, &limits);
        }
    }
    errs
}

/// The PersistentVolumeClaim items' storage constraints on a claim.
pub fn validate_claim(pvc: &Value, ranges: &[Value]) -> Vec<String> {
    let mut errs = Vec::new();
    let requests = resource_map(pvc.pointer("/spec/resources/requests"));
    let limits = resource_map(pvc.pointer("/spec/resources/limits"));
    for item in items(ranges, "PersistentVolumeClaim") {
        // A claim is checked on what it requests against both bounds.
        let limits = if limits.is_empty() { requests.clone() } else { limits.clone() };
        check(&mut errs, &item, "PersistentVolumeClaim", &requests, &limits);
    }
    errs
}

/// Upstream's aggregate: one message as is, several in brackets.
pub fn aggregate(errs: &[String]) -> String {
    if errs.len() == 1 {
        errs[0].clone()
    } else {
        format!("[{}]", errs.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> Value {
        json!({"spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"memory": "64Mi"},
            "min": {"cpu": "100m"}, "max": {"cpu": "1", "memory": "1Gi"}}]}})
    }

    #[test]
    fn defaults_fill_missing_values_and_say_so() {
        let mut pod = json!({"metadata": {}, "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "200m"}}}]}});
        apply_defaults(&mut pod, &[range()]);
        let r = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(r["requests"]["cpu"], "200m");
        assert_eq!(r["requests"]["memory"], "64Mi");
        assert_eq!(r["limits"]["cpu"], "500m");
        // max memory becomes the default memory limit
        assert_eq!(r["limits"]["memory"], "1Gi");
        assert_eq!(
            pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
            "LimitRanger plugin set: memory request for container app; cpu, memory limit for container app"
        );
        assert!(validate_pod(&pod, &[range()]).is_empty());
    }

    #[test]
    fn constraints_use_upstreams_messages() {
        let pod = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "50m"}, "limits": {"cpu": "2"}}}]}});
        let errs = validate_pod(&pod, &[range()]);
        assert_eq!(
            errs,
            vec![
                "minimum cpu usage per Container is 100m, but request is 50m",
                "maximum cpu usage per Container is 1, but limit is 2",
                "maximum memory usage per Container is 1Gi.  No limit is specified",
            ]
        );
        assert!(aggregate(&errs).starts_with("[minimum cpu"));
        let pvc = json!({"spec": {"resources": {"requests": {"storage": "10Gi"}}}});
        let r = json!({"spec": {"limits": [{"type": "PersistentVolumeClaim", "max": {"storage": "5Gi"}}]}});
        assert_eq!(
            validate_claim(&pvc, &[r]),
            vec!["maximum storage usage per PersistentVolumeClaim is 5Gi, but limit is 10Gi"]
        );
    }
}
