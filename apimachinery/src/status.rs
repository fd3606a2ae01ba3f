//! `meta/v1 Status` errors with upstream's codes, reasons and message shapes.

use serde_json::{json, Value};

/// A resource as upstream names it in messages: `configmaps`, `deployments.apps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: &str, resource: &str) -> Self {
        GroupResource { group: group.into(), resource: resource.into() }
    }
}

impl std::fmt::Display for GroupResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// One field error (`details.causes[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueDuplicate`, `FieldValueNotSupported`, ...
    pub reason: String,
    pub message: String,
    pub field: String,
}

impl Cause {
    /// `field: Invalid value: "value": detail`, upstream's `field.Invalid`.
    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            Value::Null => "null".into(),
            other => other.to_string(),
        };
        Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {shown}: {detail}"),
            field: field.into(),
        }
    }

    pub fn required(field: &str, detail: &str) -> Self {
        let message =
            if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") };
        Cause { reason: "FieldValueRequired".into(), message, field: field.into() }
    }

    pub fn duplicate(field: &str, value: &Value) -> Self {
        Cause {
            reason: "FieldValueDuplicate".into(),
            message: format!("Duplicate value: {value}"),
            field: field.into(),
        }
    }

    /// `field: Not found: "value"`, upstream's `field.NotFound`.
    pub fn not_found(field: &str, value: &Value) -> Self {
        Cause { reason: "FieldValueNotFound".into(), message: format!("Not found: {value}"), field: field.into() }
    }

    pub fn forbidden(field: &str, detail: &str) -> Self {
        Cause { reason: "FieldValueForbidden".into(), message: format!("Forbidden: {detail}"), field: field.into() }
    }

    pub fn not_supported(field: &str, value: &Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!("Unsupported value: {value}: supported values: {}", list.join(", ")),
            field: field.into(),
        }
    }

    /// The cause as it reads inside an aggregate message: `field: message`.
    pub fn text(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// An API error: becomes a `Status` body with the HTTP code.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header (429, 504).
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

fn details(gr: &GroupResource, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": gr.resource });
    if !gr.group.is_empty() {
        d["group"] = json!(gr.group);
    }
    d
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> Self {
        ApiError { code, reason, message, details: None, retry_after: None }
    }

    pub fn not_found(gr: &GroupResource, name: &str) -> Self {
        ApiError {
            details: Some(details(gr, name)),
            ..Self::new(404, "NotFound", format!("{gr} \"{name}\" not found"))
        }
    }

    pub fn already_exists(gr: &GroupResource, name: &str) -> Self {
        ApiError {
            details: Some(details(gr, name)),
            ..Self::new(409, "AlreadyExists", format!("{gr} \"{name}\" already exists"))
        }
    }

    /// The optimistic-concurrency conflict.
    pub fn conflict(gr: &GroupResource, name: &str) -> Self {
        Self::conflict_with(
            gr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn conflict_with(gr: &GroupResource, name: &str, why: &str) -> Self {
        ApiError {
            details: Some(details(gr, name)),
            ..Self::new(409, "Conflict", format!("Operation cannot be fulfilled on {gr} \"{name}\": {why}"))
        }
    }

    /// 422 `Invalid`: `Kind "name" is invalid: <cause>` or `... is invalid: [<cause>, <cause>]`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let texts: Vec<String> = causes.iter().map(Cause::text).collect();
        let summary = if texts.len() == 1 { texts[0].clone() } else { format!("[{}]", texts.join(", ")) };
        let mut d = json!({
            "name": name,
            "kind": kind,
            "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
        });
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        let qualified = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        ApiError {
            details: Some(d),
            ..Self::new(422, "Invalid", format!("{qualified} \"{name}\" is invalid: {summary}"))
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into())
    }

    pub fn forbidden(gr: &GroupResource, name: &str, why: &str) -> Self {
        let what = if name.is_empty() { gr.to_string() } else { format!("{gr} \"{name}\"") };
        ApiError {
            details: Some(details(gr, name)),
            ..Self::new(403, "Forbidden", format!("{what} is forbidden: {why}"))
        }
    }

    pub fn method_not_supported(gr: &GroupResource, verb: &str) -> Self {
        ApiError {
            details: Some(json!({"group": gr.group, "kind": gr.resource})),
            ..Self::new(
                405,
                "MethodNotAllowed",
                format!("{verb} is not supported on resources of kind {:?}", gr.to_string()),
            )
        }
    }

    /// 410 `Expired` for a watch or list from a compacted resourceVersion.
    pub fn resource_expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message.into())
    }

    /// 415 for a body in a format the server does not decode.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"))
    }

    pub fn not_acceptable(accept: &str) -> Self {
        Self::new(
            406,
            "NotAcceptable",
            format!("only the following media types are accepted: application/json, application/yaml (got {accept:?})"),
        )
    }

    pub fn request_entity_too_large(message: impl Into<String>) -> Self {
        Self::new(413, "RequestEntityTooLarge", message.into())
    }

    pub fn too_many_requests(retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            details: Some(json!({"retryAfterSeconds": retry_after})),
            ..Self::new(429, "TooManyRequests", "Too many requests, please try again later.".into())
        }
    }

    /// 504 `Timeout`, e.g. upstream's "Too large resource version".
    pub fn timeout(message: impl Into<String>, retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            details: Some(json!({"retryAfterSeconds": retry_after})),
            ..Self::new(504, "Timeout", message.into())
        }
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        ApiError {
            details: Some(json!({"causes": [{"message": message.to_string()}]})),
            ..Self::new(500, "InternalError", format!("Internal error occurred: {message}"))
        }
    }

    /// 404 for a path that names no resource the server serves (upstream's generic NotFound).
    pub fn no_such_resource() -> Self {
        ApiError {
            details: Some(json!({})),
            ..Self::new(404, "NotFound", "the server could not find the requested resource".into())
        }
    }

    /// 401: the credentials were not accepted. The message says nothing more, as upstream.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized".into())
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message.into())
    }

    /// A `Status` another party answered with (an admission webhook's denial), passed on as it came.
    /// Reasons outside upstream's list are dropped, as a client could not act on them.
    pub fn from_status(s: &Value) -> Self {
        const REASONS: &[&str] = &[
            "Unauthorized",
            "Forbidden",
            "NotFound",
            "AlreadyExists",
            "Conflict",
            "Gone",
            "Invalid",
            "ServerTimeout",
            "StoreReadError",
            "Timeout",
            "TooManyRequests",
            "BadRequest",
            "MethodNotAllowed",
            "NotAcceptable",
            "RequestEntityTooLarge",
            "UnsupportedMediaType",
            "InternalError",
            "Expired",
            "ServiceUnavailable",
        ];
        let reason = s.get("reason").and_then(Value::as_str).unwrap_or("");
        ApiError {
            code: s.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()).unwrap_or(500),
            reason: REASONS.iter().find(|r| **r == reason).copied().unwrap_or(""),
            message: s.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
            details: s.get("details").filter(|d| d.is_object()).cloned(),
            retry_after: None,
        }
    }

    /// The `Status` object upstream sends.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.reason.is_empty() {
            s.as_object_mut().expect("object").remove("reason");
        }
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// The `Status` upstream returns for a successful delete of a resource that is gone at once.
pub fn success_status(gr: &GroupResource, name: &str, uid: &str) -> Value {
    let mut d = details(gr, name);
    d["uid"] = json!(uid);
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_messages() {
        let cm = GroupResource::new("", "configmaps");
        assert_eq!(ApiError::not_found(&cm, "x").message, "configmaps \"x\" not found");
        let dep = GroupResource::new("apps", "deployments");
        assert_eq!(ApiError::already_exists(&dep, "web").message, "deployments.apps \"web\" already exists");
        assert_eq!(
            ApiError::conflict(&dep, "web").message,
            "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"
        );
        let e = ApiError::invalid("", "ConfigMap", "Bad", vec![Cause::invalid("metadata.name", &json!("Bad"), "nope")]);
        assert_eq!(e.message, "ConfigMap \"Bad\" is invalid: metadata.name: Invalid value: \"Bad\": nope");
        assert_eq!(e.code, 422);
        let e = ApiError::invalid(
            "apps",
            "Deployment",
            "d",
            vec![Cause::required("spec.selector", ""), Cause::required("spec.template.spec.containers", "")],
        );
        assert_eq!(
            e.message,
            "Deployment.apps \"d\" is invalid: [spec.selector: Required value, spec.template.spec.containers: Required value]"
        );
        assert_eq!(e.to_status()["details"]["causes"][0]["field"], "spec.selector");
    }
}
