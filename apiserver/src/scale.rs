//! Subresources with their own shapes: `scale` (autoscaling/v1 Scale) and `pods/binding`.

use crate::api::{decode_body, Api, Query, ResourceRequest};
use crate::objects::meta;
use crate::registry::Resource;
use apimachinery::{ApiError, Cause};
use http::HeaderMap;
use serde_json::{json, Value};

pub fn to_scale(res: &Resource, obj: &Value) -> Value {
    let m = meta(obj);
    let selector = obj
        .pointer("/spec/selector")
        .map(|s| {
            if res.kind == "ReplicationController" {
                s.as_object()
                    .map(|m| {
                        m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")
                    })
                    .unwrap_or_default()
            } else {
                let mut parts = Vec::new();
                if let Some(ml) = s.get("matchLabels").and_then(Value::as_object) {
                    parts.extend(ml.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))));
                }
                parts.join(",")
            }
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"),
            "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

/// PUT or PATCH of `/scale`: changes only `spec.replicas` of the parent object.
pub async fn update_scale(
    api: &Api,
    rr: &ResourceRequest<'_>,
    headers: &HeaderMap,
    body: &[u8],
    q: &Query,
) -> Result<Value, ApiError> {
    let name = rr.name.clone().unwrap_or_default();
    let parent = ResourceRequest { res: rr.res, namespace: rr.namespace.clone(), name: rr.name.clone(), sub: None };
    let current = api.get(&parent, &Query::default()).await?;
    let mut scale = to_scale(rr.res, &current);
    let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ct = ct.split(';').next().unwrap_or("").trim();
    if ct.ends_with("patch+json") {
        let patch: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        crate::api::apply_patch(ct, &mut scale, &patch, &apimachinery::strategicpatch::NoMeta)
            .map_err(ApiError::bad_request)?;
    } else {
        scale = decode_body(headers, body)?;
    }
    let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            &name,
            vec![Cause::invalid("spec.replicas", &json!(replicas), "must be greater than or equal to 0")],
        ));
    }
    let mut patch = json!({"spec": {"replicas": replicas}});
    if let Some(rv) = scale.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    let mut h = HeaderMap::new();
    h.insert(http::header::CONTENT_TYPE, "application/merge-patch+json".parse().expect("header"));
    let parent = ResourceRequest { sub: Some("scale".into()), ..parent };
    api.patch(&parent, &h, &serde_json::to_vec(&patch).expect("json"), q).await
}

/// `POST pods/<name>/binding`: assigns the pod to a node once.
pub async fn bind(api: &Api, rr: &ResourceRequest<'_>, binding: &Value, q: &Query) -> Result<(), ApiError> {
    let name = rr.name.clone().unwrap_or_default();
    let target = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("");
    if target.is_empty() {
        return Err(ApiError::invalid("", "Binding", &name, vec![Cause::required("target.name", "")]));
    }
    let pod = ResourceRequest { res: rr.res, namespace: rr.namespace.clone(), name: rr.name.clone(), sub: None };
    let current = api.get(&pod, &Query::default()).await?;
    let pod = ResourceRequest { sub: Some("binding".into()), ..pod };
    if let Some(node) = current.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        return Err(ApiError::conflict_with(
            &rr.res.group_resource(),
            &name,
            &format!("pod {name} is already assigned to node {node:?}"),
        ));
    }
    let patch = json!({"spec": {"nodeName": target}, "metadata": {"resourceVersion": current.pointer("/metadata/resourceVersion")}});
    let mut h = HeaderMap::new();
    h.insert(http::header::CONTENT_TYPE, "application/merge-patch+json".parse().expect("header"));
    // spec.nodeName is otherwise immutable; binding is the one way to set it.
    let bound = api.patch(&pod, &h, &serde_json::to_vec(&patch).expect("json"), q).await?;
    // As upstream's binding: the pod's PodScheduled condition turns True.
    let mut conditions: Vec<Value> =
        bound.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
    conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": crate::objects::now()}));
    let status = ResourceRequest { sub: Some("status".into()), ..pod };
    let patch = json!({"status": {"conditions": conditions}});
    api.patch(&status, &h, &serde_json::to_vec(&patch).expect("json"), q).await.map(|_| ())
}
