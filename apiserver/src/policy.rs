//! The bootstrap RBAC policy, reconciled at every start when RBAC authorization is on (upstream's
//! `rbac/bootstrap-roles` post-start hook): missing roles and bindings are created; existing ones
//! annotated `rbac.authorization.kubernetes.io/autoupdate: "true"` (or not annotated) get the rules,
//! aggregation selectors and subjects they lack; `"false"` leaves a user's edits alone. Extra rules
//! and subjects are never removed.

use crate::api::{Api, Query, ResourceRequest};
use apimachinery::ApiError;
use apiserver_auth::rbac::{rules_of, uncovered};
use serde_json::Value;

const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// The object with what `want` adds merged in, or `None` when nothing is missing.
fn reconciled(existing: &Value, want: &Value) -> Option<Value> {
    if existing.pointer(&format!("/metadata/annotations/{}", AUTOUPDATE.replace('/', "~1"))).and_then(Value::as_str)
        == Some("false")
    {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = false;
    if want.get("rules").is_some() {
        let have = rules_of(existing);
        let wanted = rules_of(want);
        if !uncovered(&have, &wanted).is_empty() {
            let mut list = existing["rules"].as_array().cloned().unwrap_or_default();
            for (w, raw) in wanted.iter().zip(want["rules"].as_array().into_iter().flatten()) {
                if !uncovered(&have, std::slice::from_ref(w)).is_empty() {
                    list.push(raw.clone());
                }
            }
            out["rules"] = Value::Array(list);
            changed = true;
        }
    }
    if let Some(agg) = want.get("aggregationRule") {
        let have = existing
            .pointer("/aggregationRule/clusterRoleSelectors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut selectors = have.clone();
        for s in agg["clusterRoleSelectors"].as_array().into_iter().flatten() {
            if !selectors.contains(s) {
                selectors.push(s.clone());
            }
        }
        if selectors != have {
            out["aggregationRule"] = serde_json::json!({"clusterRoleSelectors": selectors});
            changed = true;
        }
    }
    if let Some(subjects) = want.get("subjects").and_then(Value::as_array) {
        let mut list = existing["subjects"].as_array().cloned().unwrap_or_default();
        for s in subjects {
            let same = |x: &Value| {
                x["kind"] == s["kind"] && x["name"] == s["name"] && x.get("namespace") == s.get("namespace")
            };
            if !list.iter().any(same) {
                list.push(s.clone());
                changed = true;
            }
        }
        out["subjects"] = Value::Array(list);
    }
    for field in ["labels", "annotations"] {
        if let Some(m) = want["metadata"][field].as_object() {
            for (k, v) in m {
                if out["metadata"][field].get(k).is_none() {
                    out["metadata"][field][k] = v.clone();
                    changed = true;
                }
            }
        }
    }
    changed.then_some(out)
}

pub async fn reconcile(api: &Api) -> Result<(), ApiError> {
    use apiserver_auth::policy;
    let sets = [
        ("clusterroles", policy::cluster_roles()),
        ("clusterrolebindings", policy::cluster_role_bindings()),
        ("roles", policy::roles()),
        ("rolebindings", policy::role_bindings()),
    ];
    let (mut created, mut updated) = (0, 0);
    for (plural, objects) in sets {
        let res = api.registry.find("rbac.authorization.k8s.io", "v1", plural).expect("rbac registered");
        for want in objects {
            let namespace = want.pointer("/metadata/namespace").and_then(Value::as_str).map(String::from);
            let name = want["metadata"]["name"].as_str().unwrap_or("").to_string();
            let rr = ResourceRequest { res, namespace: namespace.clone(), name: Some(name.clone()), sub: None };
            match api.get(&rr, &Query::default()).await {
                Ok(existing) => {
                    if let Some(new) = reconciled(&existing, &want) {
                        api.update(&rr, new, &Query::default()).await?;
                        updated += 1;
                    }
                }
                Err(e) if e.code == 404 => {
                    let rr = ResourceRequest { res, namespace, name: None, sub: None };
                    match api.create(&rr, want, &Query::default()).await {
                        Ok(_) => created += 1,
                        Err(e) if e.reason == "AlreadyExists" => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    tracing::info!(created, updated, "reconciled the bootstrap RBAC policy");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn adds_only_what_is_missing_and_respects_autoupdate_false() {
        let want = json!({"metadata": {"name": "r", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]});
        let user_edited = json!({"metadata": {"name": "r", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]});
        let out = reconciled(&user_edited, &want).unwrap();
        assert_eq!(out["rules"].as_array().unwrap().len(), 3, "{out}");
        assert!(reconciled(&out, &want).is_none());
        let mut frozen = user_edited.clone();
        frozen["metadata"]["annotations"] = json!({AUTOUPDATE: "false"});
        assert!(reconciled(&frozen, &want).is_none());
    }
}
