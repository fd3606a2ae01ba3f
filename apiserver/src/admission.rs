//! Admission checks that depend on who is asking (run inside a request, after defaulting and
//! validation, before the write):
//! - RBAC escalation prevention (always on with RBAC authorization, as upstream's RBAC storage):
//!   a Role or ClusterRole may only grant what its author holds, and a binding may only bind a role
//!   whose permissions its author holds, unless the author has `escalate` (roles) or `bind`
//!   (bindings) on it.
//! - NodeRestriction (`--enable-admission-plugins=NodeRestriction`): a kubelet writes only its own
//!   Node and Lease, mirror pods bound to itself, and the status of pods bound to itself.

use crate::api::Api;
use crate::auth::Mode;
use crate::registry::Resource;
use crate::reviews::current_user;
use apimachinery::{ApiError, GroupResource};
use apiserver_auth::attributes::Attributes;
use apiserver_auth::rbac::{describe, rules_of, uncovered, Rule};
use apiserver_auth::UserInfo;
use serde_json::Value;

pub struct ResourceInfo<'a> {
    pub res: &'a Resource,
    pub namespace: Option<&'a str>,
    pub sub: Option<&'a str>,
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

/// Runs the user-dependent admission checks on a create (`old` is `None`) or update.
pub async fn validate(api: &Api, r: ResourceInfo<'_>, new: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let Some(user) = current_user() else { return Ok(()) };
    if r.res.group == "rbac.authorization.k8s.io" && api.auth.modes.contains(&Mode::Rbac) && r.sub.is_none() {
        escalation(api, &user, &r, new).await?;
    }
    if api.node_restriction {
        if let Some(node) = user.node_name() {
            node_restriction(node, &r, new, old)?;
        }
    }
    Ok(())
}

async fn allowed(api: &Api, user: &UserInfo, verb: &str, resource: &str, namespace: &str, name: &str) -> bool {
    let a = Attributes {
        user: user.clone(),
        verb: verb.into(),
        resource_request: true,
        namespace: namespace.into(),
        api_group: "rbac.authorization.k8s.io".into(),
        resource: resource.into(),
        name: name.into(),
        ..Default::default()
    };
    api.auth.authorize(api, &a).await.allowed()
}

async fn escalation(api: &Api, user: &UserInfo, r: &ResourceInfo<'_>, obj: &Value) -> Result<(), ApiError> {
    if user.in_group(apiserver_auth::MASTERS) {
        return Ok(());
    }
    let ns = r.namespace.unwrap_or("");
    let snap = api.auth.rbac_snapshot(api, true).await?;
    let requested: Vec<Rule> = match r.res.plural {
        "roles" | "clusterroles" => {
            if allowed(api, user, "escalate", r.res.plural, ns, name_of(obj)).await {
                return Ok(());
            }
            // An aggregated role also grants what it selects.
            let mut rules = rules_of(obj);
            rules.extend(snap.aggregated_rules(obj));
            rules
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_kind = obj.pointer("/roleRef/kind").and_then(Value::as_str).unwrap_or("");
            let role_name = obj.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or("");
            let role_resource = if role_kind == "Role" { "roles" } else { "clusterroles" };
            // Checked in the binding's namespace, which cluster-wide grants of `bind` also cover.
            if allowed(api, user, "bind", role_resource, ns, role_name).await {
                return Ok(());
            }
            snap.role_ref_rules(&obj["roleRef"], ns)
        }
        _ => return Ok(()),
    };
    let held = snap.rules_for(user, ns);
    let missing = uncovered(&held, &requested);
    if missing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = missing.iter().map(describe).collect();
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let why = format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.username,
        groups.join(" "),
        list.join("\n")
    );
    Err(ApiError::forbidden(&GroupResource::new(r.res.group, r.res.plural), name_of(obj), &why))
}

fn node_restriction(node: &str, r: &ResourceInfo<'_>, new: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let gr = GroupResource::new(r.res.group, r.res.plural);
    let name = name_of(new);
    match (r.res.group, r.res.plural) {
        ("", "nodes") if name != node => {
            return Err(ApiError::forbidden(
                &gr,
                name,
                &format!("node {node:?} is not allowed to modify node {name:?}"),
            ));
        }
        ("", "pods") => {
            let bound = |o: &Value| o.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node);
            match (old, r.sub) {
                (None, _) => {
                    let mirror = new.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some();
                    if !mirror {
                        return Err(ApiError::forbidden(&gr, name, &format!("pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods")));
                    }
                    if !bound(new) {
                        return Err(ApiError::forbidden(
                            &gr,
                            name,
                            &format!("node {node:?} can only create pods with spec.nodeName set to itself"),
                        ));
                    }
                }
                (Some(old), Some("status")) => {
                    if !bound(old) {
                        return Err(ApiError::forbidden(
                            &gr,
                            name,
                            &format!(
                                "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                            ),
                        ));
                    }
                }
                (Some(_), _) => {
                    return Err(ApiError::forbidden(&gr, name, &format!("node {node:?} can only update pod status")));
                }
            }
        }
        ("coordination.k8s.io", "leases") if r.namespace != Some("kube-node-lease") || name != node => {
            return Err(ApiError::forbidden(
                &gr,
                name,
                "can only access node lease with the same name as the requesting node",
            ));
        }
        _ => {}
    }
    Ok(())
}
