//! The Node authorizer's rules (upstream's `NodeAuthorizer`): a kubelet (`system:node:<name>` in
//! `system:nodes`) may read a Secret, ConfigMap, PersistentVolumeClaim or PersistentVolume, or
//! request a service-account token, only through a pod bound to its node; everything else it may do
//! is the `system:node` ClusterRole's rules (NodeRestriction admission then narrows writes to its own
//! objects).

use crate::attributes::Attributes;
use crate::rbac::Rule;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Secret,
    ConfigMap,
    Pvc,
    ServiceAccount,
}

/// What a request from a node needs: a relationship with a pod (`Graph`), the node rules, or nothing
/// the Node authorizer has an opinion on.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    Graph(Kind),
    /// A PersistentVolume: reachable through a PVC that a pod on the node uses.
    Volume,
    Rules,
}

pub fn classify(a: &Attributes) -> Check {
    if !a.resource_request || !a.api_group.is_empty() {
        return Check::Rules;
    }
    match (a.resource.as_str(), a.subresource.as_str()) {
        ("secrets", "") => Check::Graph(Kind::Secret),
        ("configmaps", "") => Check::Graph(Kind::ConfigMap),
        ("persistentvolumeclaims", "" | "status") => Check::Graph(Kind::Pvc),
        ("persistentvolumes", "") => Check::Volume,
        ("serviceaccounts", "token") => Check::Graph(Kind::ServiceAccount),
        _ => Check::Rules,
    }
}

/// Whether a graph request is one a node may make at all: reads of single named objects (`get`, or
/// `list`/`watch` pinned to one name), and `create` of tokens.
pub fn verb_allowed(a: &Attributes, kind: Option<Kind>) -> bool {
    match kind {
        Some(Kind::ServiceAccount) => a.verb == "create" && !a.name.is_empty(),
        Some(Kind::Pvc) if a.subresource == "status" => {
            matches!(a.verb.as_str(), "get" | "update" | "patch") && !a.name.is_empty()
        }
        _ => matches!(a.verb.as_str(), "get" | "list" | "watch") && !a.name.is_empty(),
    }
}

/// The reason the Node authorizer gives when no pod links the node and the object.
pub fn no_relationship(node: &str) -> String {
    format!("no relationship found between node '{node}' and this object")
}

fn strs<'a>(v: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(pointer).and_then(Value::as_array).into_iter().flatten()
}

/// Whether `pod` uses the object `kind`/`name` (in its own namespace).
pub fn pod_references(pod: &Value, kind: Kind, name: &str) -> bool {
    let spec = &pod["spec"];
    let eq = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str) == Some(name);
    match kind {
        Kind::ServiceAccount => spec["serviceAccountName"].as_str().unwrap_or("default") == name,
        Kind::Pvc => {
            let pod_name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            strs(spec, "/volumes").any(|v| {
                eq(v, "/persistentVolumeClaim/claimName")
                    || (v.get("ephemeral").is_some()
                        && format!("{pod_name}-{}", v["name"].as_str().unwrap_or("")) == name)
            })
        }
        Kind::Secret | Kind::ConfigMap => {
            let (vol, proj, key_ref, from) = match kind {
                Kind::Secret => {
                    ("/secret/secretName", "/secret/name", "/valueFrom/secretKeyRef/name", "/secretRef/name")
                }
                _ => ("/configMap/name", "/configMap/name", "/valueFrom/configMapKeyRef/name", "/configMapRef/name"),
            };
            if kind == Kind::Secret && strs(spec, "/imagePullSecrets").any(|s| eq(s, "/name")) {
                return true;
            }
            let volumes = strs(spec, "/volumes").any(|v| {
                eq(v, vol)
                    || strs(v, "/projected/sources").any(|s| eq(s, proj))
                    || (kind == Kind::Secret
                        && [
                            "/csi/nodePublishSecretRef/name",
                            "/cephfs/secretRef/name",
                            "/rbd/secretRef/name",
                            "/iscsi/secretRef/name",
                            "/azureFile/secretName",
                            "/cinder/secretRef/name",
                            "/flexVolume/secretRef/name",
                            "/scaleIO/secretRef/name",
                            "/storageos/secretRef/name",
                        ]
                        .iter()
                        .any(|p| eq(v, p)))
            });
            let containers = ["/containers", "/initContainers", "/ephemeralContainers"].iter().any(|list| {
                strs(spec, list)
                    .any(|c| strs(c, "/env").any(|e| eq(e, key_ref)) || strs(c, "/envFrom").any(|e| eq(e, from)))
            });
            volumes || containers
        }
    }
}

/// The rules a node holds beyond the graph: upstream's `system:node` ClusterRole.
pub fn node_rules() -> Vec<Rule> {
    crate::policy::cluster_roles()
        .into_iter()
        .find(|r| r["metadata"]["name"] == "system:node")
        .map(|r| crate::rbac::rules_of(&r))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {
            "serviceAccountName": "sa",
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [{"name": "v", "secret": {"secretName": "vol"}}, {"name": "c", "projected": {"sources": [{"configMap": {"name": "cm"}}]}},
                        {"name": "d", "persistentVolumeClaim": {"claimName": "claim"}}, {"name": "e", "ephemeral": {}}],
            "containers": [{"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "env"}}}], "envFrom": [{"configMapRef": {"name": "from"}}]}]}});
        for s in ["pull", "vol", "env"] {
            assert!(pod_references(&pod, Kind::Secret, s), "{s}");
        }
        assert!(!pod_references(&pod, Kind::Secret, "other"));
        assert!(pod_references(&pod, Kind::ConfigMap, "cm"));
        assert!(pod_references(&pod, Kind::ConfigMap, "from"));
        assert!(!pod_references(&pod, Kind::ConfigMap, "vol"));
        assert!(pod_references(&pod, Kind::Pvc, "claim"));
        assert!(pod_references(&pod, Kind::Pvc, "p-e"));
        assert!(pod_references(&pod, Kind::ServiceAccount, "sa"));
        assert!(!node_rules().is_empty());
    }
}
