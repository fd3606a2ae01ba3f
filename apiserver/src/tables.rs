//! `application/json;as=Table;v=v1;g=meta.k8s.io`: upstream's columns for each kind.

use crate::objects::{meta, name};
use crate::registry::{Columns, Resource};
use serde_json::{json, Value};

fn age(obj: &Value) -> Value {
    meta(obj).get("creationTimestamp").cloned().unwrap_or(Value::Null)
}

fn col(name: &str, ty: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

fn name_col() -> Value {
    col(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        0,
    )
}

fn age_col() -> Value {
    col("Age", "string", "", "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata", 0)
}

/// Upstream renders ages as short human durations ("5m", "3d"); the Table carries that text.
fn age_text(obj: &Value) -> String {
    let ts = age(obj);
    let Some(s) = ts.as_str() else { return "<unknown>".into() };
    let parsed = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339);
    match parsed {
        Ok(t) => human_duration(time::OffsetDateTime::now_utc() - t),
        Err(_) => "<unknown>".into(),
    }
}

/// apimachinery's `duration.HumanDuration`.
pub fn human_duration(d: time::Duration) -> String {
    let secs = d.whole_seconds();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{dy}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

fn count(obj: &Value, fields: &[&str]) -> i64 {
    fields.iter().filter_map(|f| obj.get(*f).and_then(Value::as_object)).map(|m| m.len() as i64).sum()
}

fn columns(res: &Resource) -> Vec<Value> {
    match res.columns {
        Columns::Default => vec![name_col(), age_col()],
        Columns::Namespace => vec![name_col(), col("Status", "string", "", "The status of the namespace", 0), age_col()],
        Columns::ConfigMap => vec![name_col(), col("Data", "string", "", "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.", 0), age_col()],
        Columns::Secret => vec![
            name_col(),
            col("Type", "string", "", "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types", 0),
            col("Data", "string", "", "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4", 0),
            age_col(),
        ],
        Columns::ServiceAccount => vec![name_col(), col("Secrets", "string", "", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.", 0), age_col()],
    }
}

fn cells(res: &Resource, obj: &Value) -> Vec<Value> {
    let n = json!(name(obj));
    let a = json!(age_text(obj));
    match res.columns {
        Columns::Default => vec![n, a],
        Columns::Namespace => vec![n, json!(obj.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")), a],
        Columns::ConfigMap => vec![n, json!(count(obj, &["data", "binaryData"])), a],
        Columns::Secret => {
            vec![n, json!(obj.get("type").and_then(Value::as_str).unwrap_or("")), json!(count(obj, &["data"])), a]
        }
        Columns::ServiceAccount => {
            vec![n, json!(obj.get("secrets").and_then(Value::as_array).map(Vec::len).unwrap_or(0)), a]
        }
    }
}

/// A `meta.k8s.io/v1 Table` of `objects`; `include_object` as upstream's `includeObject` (None, Metadata,
/// Object; default Metadata).
pub fn table(res: &Resource, objects: &[Value], list_meta: Value, include_object: &str) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let object = match include_object {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta(o).clone(),
                }),
            };
            json!({"cells": cells(res, o), "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns(res),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        let d = time::Duration::seconds;
        assert_eq!(human_duration(d(59)), "59s");
        assert_eq!(human_duration(d(150)), "2m30s");
        assert_eq!(human_duration(d(600)), "10m");
        assert_eq!(human_duration(d(3 * 3600 + 60)), "3h1m");
        assert_eq!(human_duration(d(30 * 3600)), "30h");
        assert_eq!(human_duration(d(3 * 86400 + 3600)), "3d1h");
        assert_eq!(human_duration(d(20 * 86400)), "20d");
    }
}
