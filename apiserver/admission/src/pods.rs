//! The mutating plugins that shape pods, nodes and claims: ServiceAccount, DefaultTolerationSeconds,
//! TaintNodesByCondition, Priority, RuntimeClass, DefaultStorageClass, StorageObjectInUseProtection,
//! and the PersistentVolumeClaimResize check.

use serde_json::{json, Map, Value};

/// Where the service-account volume is mounted in every container.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The token lifetime the plugin asks for; upstream's 3607 marks it as an admission-made volume.
pub const TOKEN_EXPIRATION: i64 = 3607;
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

pub fn is_mirror(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations").and_then(|a| a.get(MIRROR_ANNOTATION)).is_some()
}

fn spec_mut(pod: &mut Value) -> Option<&mut Map<String, Value>> {
    pod.get_mut("spec").and_then(Value::as_object_mut)
}

fn array_mut<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let v = m.entry(key).or_insert_with(|| json!([]));
    if !v.is_array() {
        *v = json!([]);
    }
    v.as_array_mut().expect("array")
}

/// The service account a pod runs as (`default` when unset).
pub fn service_account_name(pod: &Value) -> String {
    pod.pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string()
}

/// Whether the service-account token is mounted: the pod's `automountServiceAccountToken` wins, then
/// the service account's.
pub fn automounts(pod: &Value, sa: &Value) -> bool {
    pod.pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| sa.get("automountServiceAccountToken").and_then(Value::as_bool))
        .unwrap_or(true)
}

/// The ServiceAccount plugin's mutation: the service-account name, and the projected
/// `kube-api-access-<suffix>` volume (token, the cluster CA from `kube-root-ca.crt`, the namespace)
/// mounted read-only at [`TOKEN_MOUNT_PATH`] in every init and regular container that does not
/// already mount something there.
pub fn add_service_account(pod: &mut Value, sa: &Value, suffix: &str) {
    let name = service_account_name(pod);
    let automount = automounts(pod, sa);
    let Some(spec) = spec_mut(pod) else { return };
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    if !automount {
        return;
    }
    let volumes = spec.get("volumes").and_then(Value::as_array).cloned().unwrap_or_default();
    // A volume already carrying a projected service-account token at the same path is reused.
    let existing = volumes.iter().find_map(|v| {
        let name = v.get("name").and_then(Value::as_str)?;
        name.starts_with("kube-api-access-").then(|| name.to_string())
    });
    let volume_name = existing.clone().unwrap_or_else(|| format!("kube-api-access-{suffix}"));
    let mut mounted = false;
    for field in ["initContainers", "containers"] {
        let Some(cs) = spec.get_mut(field).and_then(Value::as_array_mut) else { continue };
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = array_mut(c, "volumeMounts");
            if mounts.iter().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH)) {
                continue;
            }
            mounts.push(json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}));
            mounted = true;
        }
    }
    if mounted && existing.is_none() {
        array_mut(spec, "volumes").push(json!({
            "name": volume_name,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]
            }
        }));
    }
}

/// Why a mirror pod may not be admitted by the ServiceAccount plugin, if it may not.
pub fn mirror_pod_problem(pod: &Value) -> Option<&'static str> {
    let spec = pod.get("spec")?;
    if spec.get("serviceAccountName").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
        return Some("a mirror pod may not reference service accounts");
    }
    for v in spec.get("volumes").and_then(Value::as_array).into_iter().flatten() {
        let sources: Vec<&Value> =
            v.pointer("/projected/sources").and_then(Value::as_array).into_iter().flatten().collect();
        if v.get("secret").is_some() || sources.iter().any(|s| s.get("secret").is_some()) {
            return Some("a mirror pod may not reference secrets");
        }
        if sources.iter().any(|s| s.get("serviceAccountToken").is_some()) {
            return Some("a mirror pod may not use ServiceAccountToken volume projections");
        }
    }
    None
}

/// DefaultTolerationSeconds: pods tolerate `not-ready` and `unreachable` nodes for 300s unless they
/// say otherwise.
pub fn add_default_tolerations(pod: &mut Value, seconds: i64) {
    let Some(spec) = spec_mut(pod) else { return };
    let tolerations = array_mut(spec, "tolerations");
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let covered = tolerations.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || (k.is_empty() && op == "Exists")) && (effect.is_empty() || effect == "NoExecute")
        });
        if !covered {
            tolerations.push(json!({
                "key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds
            }));
        }
    }
}

/// TaintNodesByCondition: a new Node starts tainted `node.kubernetes.io/not-ready:NoSchedule` until the
/// node lifecycle controller sees it Ready.
pub fn taint_new_node(node: &mut Value) {
    let Some(obj) = node.as_object_mut() else { return };
    let spec = obj.entry("spec").or_insert_with(|| json!({}));
    let Some(spec) = spec.as_object_mut() else { return };
    let taints = array_mut(spec, "taints");
    let present = taints.iter().any(|t| {
        t.get("key").and_then(Value::as_str) == Some("node.kubernetes.io/not-ready")
            && t.get("effect").and_then(Value::as_str) == Some("NoSchedule")
    });
    if !present {
        taints.push(json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}));
    }
}

/// The PriorityClasses every cluster has, as upstream creates them at start.
pub fn system_priority_classes() -> Vec<Value> {
    [("system-node-critical", 2_000_001_000), ("system-cluster-critical", 2_000_000_000)]
        .into_iter()
        .map(|(name, value)| {
            json!({
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value,
                "description": "Used for system critical pods that must not be moved from their current node.",
                "preemptionPolicy": "PreemptLowerPriority"
            })
        })
        .collect()
}

/// Priority: resolves `priorityClassName` (or the global default class) into `priority` and
/// `preemptionPolicy`. `class` is the named class (`None`: not found), `global_default` the class
/// marked `globalDefault`. Errors are upstream's forbidden messages.
pub fn resolve_priority(pod: &mut Value, class: Option<&Value>, global_default: Option<&Value>) -> Result<(), String> {
    let name = pod.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or("").to_string();
    let chosen = if name.is_empty() {
        global_default
    } else {
        Some(class.ok_or_else(|| format!("no PriorityClass with name {name} was found"))?)
    };
    let value = chosen.and_then(|c| c.get("value")).and_then(Value::as_i64).unwrap_or(0);
    let policy = chosen
        .and_then(|c| c.get("preemptionPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("PreemptLowerPriority")
        .to_string();
    let Some(spec) = spec_mut(pod) else { return Ok(()) };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
        // Our defaulting writes 0; anything else must match what the class says.
        if given != value && given != 0 {
            return Err(format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
            ));
        }
    }
    spec.insert("priority".into(), json!(value));
    if let (Some(c), true) = (chosen, name.is_empty()) {
        spec.insert("priorityClassName".into(), c.pointer("/metadata/name").cloned().unwrap_or(Value::Null));
    }
    spec.insert("preemptionPolicy".into(), json!(policy));
    Ok(())
}

/// RuntimeClass: copies the class's pod overhead and merges its scheduling constraints.
pub fn apply_runtime_class(pod: &mut Value, class: &Value) -> Result<(), String> {
    let class_name = class.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let Some(spec) = spec_mut(pod) else { return Ok(()) };
    if let Some(overhead) = class.pointer("/overhead/podFixed").filter(|v| !v.is_null()) {
        match spec.get("overhead") {
            Some(o) if !o.is_null() && o != overhead => {
                return Err("pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead".into());
            }
            _ => {
                spec.insert("overhead".into(), overhead.clone());
            }
        }
    }
    if let Some(sel) = class.pointer("/scheduling/nodeSelector").and_then(Value::as_object) {
        let ns = spec.entry("nodeSelector").or_insert_with(|| json!({}));
        if let Some(ns) = ns.as_object_mut() {
            for (k, v) in sel {
                if let Some(existing) = ns.get(k) {
                    if existing != v {
                        return Err(format!(
                            "pod rejected: conflict with RuntimeClass {class_name:?} nodeSelector for key {k:?}"
                        ));
                    }
                }
                ns.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(tols) = class.pointer("/scheduling/tolerations").and_then(Value::as_array) {
        let have = array_mut(spec, "tolerations");
        for t in tols {
            if !have.contains(t) {
                have.push(t.clone());
            }
        }
    }
    Ok(())
}

/// The StorageClass marked default (`storageclass.kubernetes.io/is-default-class: "true"`), the newest
/// when several are, as upstream.
pub fn default_storage_class(classes: &[Value]) -> Option<String> {
    classes
        .iter()
        .filter(|c| {
            let a = c.pointer("/metadata/annotations");
            a.and_then(|a| a.get("storageclass.kubernetes.io/is-default-class")).and_then(Value::as_str) == Some("true")
                || a.and_then(|a| a.get("storageclass.beta.kubernetes.io/is-default-class")).and_then(Value::as_str)
                    == Some("true")
        })
        .max_by(|a, b| {
            let t =
                |c: &Value| c.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or("").to_string();
            t(a).cmp(&t(b)).then_with(|| {
                let n = |c: &Value| c.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
                n(b).cmp(&n(a))
            })
        })
        .and_then(|c| c.pointer("/metadata/name").and_then(Value::as_str).map(String::from))
}

/// StorageObjectInUseProtection: the finalizer that keeps a claim or volume while something uses it.
pub fn add_protection_finalizer(obj: &mut Value, finalizer: &str) {
    let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let f = array_mut(m, "finalizers");
    if !f.iter().any(|x| x == finalizer) {
        f.push(json!(finalizer));
    }
}

pub fn claim_storage(pvc: &Value) -> Option<f64> {
    pvc.pointer("/spec/resources/requests/storage").and_then(Value::as_str).and_then(apimachinery::quantity::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_volume_is_upstreams() {
        let mut pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "volumeMounts": [
            {"name": "x", "mountPath": TOKEN_MOUNT_PATH}]}], "initContainers": [{"name": "i"}]}});
        add_service_account(&mut pod, &json!({}), "abcde");
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(pod["spec"]["volumes"][0]["name"], "kube-api-access-abcde");
        assert_eq!(
            pod["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        assert_eq!(pod["spec"]["containers"][0]["volumeMounts"][0]["name"], "kube-api-access-abcde");
        assert_eq!(pod["spec"]["containers"][1]["volumeMounts"].as_array().unwrap().len(), 1);
        assert_eq!(pod["spec"]["initContainers"][0]["volumeMounts"][0]["readOnly"], true);
        // Opted out by the service account.
        let mut pod = json!({"spec": {"containers": [{"name": "a"}]}});
        add_service_account(&mut pod, &json!({"automountServiceAccountToken": false}), "abcde");
        assert!(pod["spec"].get("volumes").is_none());
        // The pod's choice wins over the service account's.
        let mut pod = json!({"spec": {"automountServiceAccountToken": true, "containers": [{"name": "a"}]}});
        add_service_account(&mut pod, &json!({"automountServiceAccountToken": false}), "abcde");
        assert!(pod["spec"]["volumes"].is_array());
    }

    #[test]
    fn mirror_pods_are_judged_by_their_volume_sources() {
        let cm_named_secret = json!({"spec": {"volumes": [{"name": "v", "projected": {"sources": [{"configMap": {"name": "secret"}}]}}]}});
        assert_eq!(mirror_pod_problem(&cm_named_secret), None);
        let secret =
            json!({"spec": {"volumes": [{"name": "v", "projected": {"sources": [{"secret": {"name": "s"}}]}}]}});
        assert_eq!(mirror_pod_problem(&secret), Some("a mirror pod may not reference secrets"));
        let token = json!({"spec": {"volumes": [{"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]}});
        assert_eq!(mirror_pod_problem(&token), Some("a mirror pod may not use ServiceAccountToken volume projections"));
        assert_eq!(
            mirror_pod_problem(&json!({"spec": {"serviceAccountName": "x"}})),
            Some("a mirror pod may not reference service accounts")
        );
    }

    #[test]
    fn tolerations_and_taints() {
        let mut pod = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]}});
        add_default_tolerations(&mut pod, 300);
        let t = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(t[1]["tolerationSeconds"], 300);
        let mut node = json!({"metadata": {"name": "n"}});
        taint_new_node(&mut node);
        taint_new_node(&mut node);
        assert_eq!(node["spec"]["taints"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn priority_resolution() {
        let class = json!({"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "Never"});
        let mut pod = json!({"spec": {"priorityClassName": "high", "priority": 0}});
        resolve_priority(&mut pod, Some(&class), None).unwrap();
        assert_eq!(pod["spec"]["priority"], 1000);
        assert_eq!(pod["spec"]["preemptionPolicy"], "Never");
        let mut pod = json!({"spec": {"priorityClassName": "nope"}});
        assert_eq!(resolve_priority(&mut pod, None, None).unwrap_err(), "no PriorityClass with name nope was found");
        let mut pod = json!({"spec": {}});
        resolve_priority(&mut pod, None, Some(&class)).unwrap();
        assert_eq!(pod["spec"]["priorityClassName"], "high");
        let mut pod = json!({"spec": {"priorityClassName": "high", "priority": 5}});
        assert!(resolve_priority(&mut pod, Some(&class), None).is_err());
    }

    #[test]
    fn default_storage_class_is_the_newest_default() {
        let c = |n: &str, t: &str, d: bool| json!({"metadata": {"name": n, "creationTimestamp": t, "annotations": {"storageclass.kubernetes.io/is-default-class": if d {"true"} else {"false"}}}});
        let classes = vec![
            c("a", "2024-01-01T00:00:00Z", true),
            c("b", "2025-01-01T00:00:00Z", true),
            c("c", "2026-01-01T00:00:00Z", false),
        ];
        assert_eq!(default_storage_class(&classes).as_deref(), Some("b"));
        assert_eq!(default_storage_class(&classes[2..]), None);
    }
}
