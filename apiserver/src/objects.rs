//! Object metadata as upstream manages it: names, uid, timestamps, generation, resourceVersion, and the
//! checks every create and update goes through. Resource-specific rules live in `strategy`.

use crate::registry::Resource;
use apimachinery::{validation, ApiError, Cause};
use serde_json::{json, Map, Value};

/// RFC 3339 in UTC with second precision, as `metav1.Time` serializes.
pub fn now() -> String {
    timestamp(time::OffsetDateTime::now_utc())
}

/// A time as `metav1.Time` serializes it.
pub fn timestamp(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&f).expect("timestamp formats")
}

/// Five characters from upstream's `generateName` alphabet (no vowels, no confusable characters).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

pub fn meta(obj: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    obj.get("metadata").and_then(Value::as_object).unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("metadata is an object")
}

pub fn name(obj: &Value) -> &str {
    meta(obj).get("name").and_then(Value::as_str).unwrap_or("")
}

pub fn namespace(obj: &Value) -> &str {
    meta(obj).get("namespace").and_then(Value::as_str).unwrap_or("")
}

pub fn labels(obj: &Value) -> std::collections::BTreeMap<String, String> {
    meta(obj)
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}

/// Checks the body's `apiVersion`/`kind` against the endpoint and fills them in when absent.
pub fn check_type(res: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON or YAML object"));
    }
    let want_api = res.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => obj["apiVersion"] = json!(want_api),
        Some(v) if v == want_api => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({want_api})"
            )))
        }
    }
    // Upstream decodes into typed structs; the containers every strategy reads must have their type.
    for field in ["metadata", "spec", "status"] {
        match obj.get(field) {
            None | Some(Value::Object(_)) | Some(Value::Null) => {}
            Some(other) => {
                let found = match other {
                    Value::String(_) => "string",
                    Value::Array(_) => "array",
                    Value::Number(_) => "number",
                    _ => "bool",
                };
                return Err(ApiError::bad_request(format!(
                    "{kind} in version \"{version}\" cannot be handled as a {kind}: json: cannot unmarshal {found} into Go struct field {kind}.{field} of type object",
                    kind = res.kind,
                    version = res.version
                )));
            }
        }
    }
    if obj.get("spec").is_some_and(Value::is_null) {
        obj.as_object_mut().expect("checked above").remove("spec");
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(res.kind),
        Some(k) if k == res.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                res.kind
            )))
        }
    }
    Ok(())
}

/// Validates what every object must satisfy: name format, label and annotation keys and values.
pub fn validate_meta(res: &Resource, obj: &Value) -> Result<(), ApiError> {
    let m = meta(obj);
    let n = name(obj);
    let mut causes = Vec::new();
    if n.is_empty() {
        causes.push(Cause::required("metadata.name", "name or generateName is required"));
    } else {
        let check = match res.plural {
            "namespaces" | "services" => validation::dns1123_label(n),
            _ if res.group == "rbac.authorization.k8s.io" => validation::path_segment_name(n),
            // upstream: "We don't care what you call your certificate requests" (kubelets name theirs
            // `node-csr-<base64url digest>`, upper case and `_` included).
            "certificatesigningrequests" => validation::path_segment_name(n),
            _ => validation::dns1123_subdomain(n),
        };
        if let Err(msgs) = check {
            for m in msgs {
                causes.push(Cause::invalid("metadata.name", &json!(n), &m));
            }
        }
    }
    if let Some(labels) = m.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Err(e) = validation::qualified_name(k) {
                causes.push(Cause::invalid("metadata.labels", &json!(k), &e));
            }
            match v.as_str() {
                Some(s) => {
                    if let Err(e) = validation::label_value(s) {
                        causes.push(Cause::invalid(&format!("metadata.labels.{k}"), v, &e));
                    }
                }
                None => causes.push(Cause::invalid(&format!("metadata.labels.{k}"), v, "must be a string")),
            }
        }
    }
    if let Some(ann) = m.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in ann {
            if let Err(e) = validation::qualified_name(k) {
                causes.push(Cause::invalid("metadata.annotations", &json!(k), &e));
            }
            total += k.len() + v.as_str().map(str::len).unwrap_or(0);
        }
        if total > 256 * 1024 {
            causes.push(Cause {
                reason: "FieldValueTooLong".into(),
                message: "Too long: may not be more than 262144 bytes".to_string(),
                field: "metadata.annotations".into(),
            });
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res.group, res.kind, n, causes))
    }
}

/// Fills in what the server owns on create.
pub fn prepare_create(res: &Resource, obj: &mut Value, namespace: Option<&str>) -> Result<(), ApiError> {
    check_type(res, obj)?;
    let m = meta_mut(obj);
    match (res.namespaced, namespace, m.get("namespace").and_then(Value::as_str)) {
        (true, Some(ns), Some(body_ns)) if !body_ns.is_empty() && body_ns != ns => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ))
        }
        (true, Some(ns), _) => {
            m.insert("namespace".into(), json!(ns));
        }
        (false, _, _) => {
            m.remove("namespace");
        }
        (true, None, _) => return Err(ApiError::bad_request("a namespace is required for this resource")),
    }
    let has_name = m.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    if !has_name {
        if let Some(prefix) = m.get("generateName").and_then(Value::as_str).filter(|p| !p.is_empty()) {
            let prefix = if prefix.len() > 58 { &prefix[..58] } else { prefix };
            m.insert("name".into(), json!(format!("{prefix}{}", random_suffix())));
        }
    }
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(now()));
    for owned in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        m.remove(owned);
    }
    if crate::strategy::tracks_generation(res) {
        meta_mut(obj).insert("generation".into(), json!(1));
    } else {
        meta_mut(obj).remove("generation");
    }
    Ok(())
}

/// Carries over what an update may not change, bumps `generation` on spec changes, and keeps `status`
/// when the resource has a status subresource (it changes only through `/status`).
pub fn prepare_update(res: &Resource, new: &mut Value, old: &Value, subresource: Option<&str>) -> Result<(), ApiError> {
    check_type(res, new)?;
    let old_meta = meta(old).clone();
    {
        let m = meta_mut(new);
        for kept in
            ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace", "generation"]
        {
            match old_meta.get(kept) {
                Some(v) => m.insert(kept.into(), v.clone()),
                None => m.remove(kept),
            };
        }
        m.remove("resourceVersion");
    }
    let has_status = res.subresources.contains(&"status");
    match subresource {
        Some("status" | "approval") => {
            // Only status changes through /status: everything else is the old object's.
            let status = new.get("status").cloned();
            let mut merged = old.clone();
            match status {
                Some(s) => merged["status"] = s,
                None => {
                    if let Some(o) = merged.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            let keep_rv = meta(new).get("resourceVersion").cloned();
            *new = merged;
            if let Some(rv) = keep_rv {
                meta_mut(new).insert("resourceVersion".into(), rv);
            }
            meta_mut(new).remove("resourceVersion");
        }
        _ if has_status => match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        },
        _ => {}
    }
    if crate::strategy::tracks_generation(res) && new.get("spec") != old.get("spec") {
        let gen = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        meta_mut(new).insert("generation".into(), json!(gen));
    }
    Ok(())
}

/// Drops empty metadata maps and lists, which upstream's serialization omits (`omitempty`), so that a
/// patch leaving `annotations: {}` behind reads back as upstream's would.
pub fn drop_empty_metadata(obj: &mut Value) {
    let m = meta_mut(obj);
    for key in ["labels", "annotations", "finalizers", "ownerReferences", "managedFields"] {
        let empty = match m.get(key) {
            Some(Value::Object(o)) => o.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            m.remove(key);
        }
    }
}

/// Stored objects carry no resourceVersion; it is the store revision, set on the way out.
pub fn with_resource_version(mut obj: Value, rv: i64) -> Value {
    meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
    obj
}

pub fn strip_for_storage(obj: &mut Value) {
    meta_mut(obj).remove("resourceVersion");
    drop_empty_metadata(obj);
}

/// Upstream's JSON for a field's value along a dotted path, as a field selector compares it.
pub fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
