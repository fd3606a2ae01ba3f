//! Key layout and continue tokens, exactly as upstream's etcd3 storage lays them out.
//!
//! Keys handed to a [`Store`](crate::Store) are relative to `--etcd-prefix`: `/pods/default/web` is stored in
//! etcd as `/registry/pods/default/web`.

use base64::Engine;
use serde::{Deserialize, Serialize};

/// The path segment upstream stores a built-in resource under, where it differs from the plural name.
/// Checked against upstream's `test/integration/etcd/data.go`.
const PATH_OVERRIDES: &[((&str, &str), &str)] = &[
    (("", "nodes"), "minions"),
    (("", "services"), "services/specs"),
    (("", "endpoints"), "services/endpoints"),
    (("", "replicationcontrollers"), "controllers"),
    (("networking.k8s.io", "ingresses"), "ingress"),
    (("extensions", "ingresses"), "ingress"),
    (("apiregistration.k8s.io", "apiservices"), "apiregistration.k8s.io/apiservices"),
    (("apiextensions.k8s.io", "customresourcedefinitions"), "apiextensions.k8s.io/customresourcedefinitions"),
];

/// Groups whose resources upstream stores under the plain resource name (the built-in groups).
fn is_builtin_group(group: &str) -> bool {
    group.is_empty()
        || !group.contains('.')
        || group.ends_with(".k8s.io") && !group.starts_with("apiextensions.") && !group.starts_with("apiregistration.")
}

/// The path segment under the prefix where objects of `group`/`resource` live: `pods`, `minions`,
/// `services/specs`, and `<group>/<resource>` for custom resources.
pub fn resource_path(group: &str, resource: &str) -> String {
    if let Some((_, path)) = PATH_OVERRIDES.iter().find(|((g, r), _)| *g == group && *r == resource) {
        return (*path).to_string();
    }
    if is_builtin_group(group) {
        resource.to_string()
    } else {
        format!("{group}/{resource}")
    }
}

/// `/<resource path>/<namespace>/<name>` or `/<resource path>/<name>` for cluster-scoped objects.
pub fn object_key(resource_path: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("/{resource_path}/{ns}/{name}"),
        None => format!("/{resource_path}/{name}"),
    }
}

/// The prefix listing every object of a resource, or those of one namespace. Ends with `/`.
pub fn list_prefix(resource_path: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("/{resource_path}/{ns}/"),
        None => format!("/{resource_path}/"),
    }
}

/// The smallest key greater than every key that starts with `prefix` (etcd's range end for a prefix).
/// `None` when there is none (every byte is 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The body of upstream's continue token (`meta.k8s.io/v1` continue: base64 of this JSON).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct ContinueBody {
    v: String,
    rv: i64,
    start: String,
}

const CONTINUE_VERSION: &str = "meta.k8s.io/v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContinueError {
    #[error("continue key is not valid: {0}")]
    Invalid(String),
}

/// Encodes the token that resumes a list of `prefix` after `last_key` at revision `rv`, like upstream:
/// the start key is relative to the prefix and followed by `\0` so the next page starts after `last_key`.
pub fn encode_continue(last_key: &str, prefix: &str, rv: i64) -> String {
    let relative = last_key.strip_prefix(prefix).unwrap_or(last_key);
    let body = ContinueBody { v: CONTINUE_VERSION.into(), rv, start: format!("{relative}\u{0}") };
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&body).expect("continue token serializes"))
}

/// Decodes a continue token into the absolute start key under `prefix` and the revision to read at.
pub fn decode_continue(token: &str, prefix: &str) -> Result<(String, i64), ContinueError> {
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|e| ContinueError::Invalid(e.to_string()))?;
    let body: ContinueBody = serde_json::from_slice(&raw).map_err(|e| ContinueError::Invalid(e.to_string()))?;
    if body.v != CONTINUE_VERSION {
        return Err(ContinueError::Invalid(format!("unsupported continue version {:?}", body.v)));
    }
    if body.rv <= 0 {
        return Err(ContinueError::Invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into()));
    }
    if body.start.is_empty() || body.start.starts_with('/') || body.start.split('/').any(|s| s == "..") {
        return Err(ContinueError::Invalid("continue key is not valid: invalid start key".into()));
    }
    Ok((format!("{prefix}{}", body.start), body.rv))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_paths() {
        assert_eq!(resource_path("", "nodes"), "minions");
        assert_eq!(resource_path("", "services"), "services/specs");
        assert_eq!(resource_path("", "endpoints"), "services/endpoints");
        assert_eq!(resource_path("apps", "deployments"), "deployments");
        assert_eq!(resource_path("networking.k8s.io", "ingresses"), "ingress");
        assert_eq!(resource_path("rbac.authorization.k8s.io", "clusterroles"), "clusterroles");
        assert_eq!(resource_path("flowcontrol.apiserver.k8s.io", "flowschemas"), "flowschemas");
        assert_eq!(
            resource_path("apiextensions.k8s.io", "customresourcedefinitions"),
            "apiextensions.k8s.io/customresourcedefinitions"
        );
        assert_eq!(resource_path("stable.example.com", "crontabs"), "stable.example.com/crontabs");
        assert_eq!(object_key("deployments", Some("default"), "web"), "/deployments/default/web");
        assert_eq!(object_key("minions", None, "node-1"), "/minions/node-1");
    }

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/pods/"), Some(b"/pods0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }

    #[test]
    fn continue_round_trip() {
        let token = encode_continue("/pods/default/web-1", "/pods/", 42);
        let (start, rv) = decode_continue(&token, "/pods/").unwrap();
        assert_eq!(start, "/pods/default/web-1\u{0}");
        assert_eq!(rv, 42);
    }

    #[test]
    fn continue_rejects_garbage_and_escapes() {
        assert!(decode_continue("not base64!!", "/pods/").is_err());
        let escape = base64::engine::general_purpose::URL_SAFE
            .encode(br#"{"v":"meta.k8s.io/v1","rv":3,"start":"../secrets/x"}"#);
        assert!(decode_continue(&escape, "/pods/").is_err());
        let old = base64::engine::general_purpose::URL_SAFE.encode(br#"{"v":"v0","rv":3,"start":"a"}"#);
        assert!(decode_continue(&old, "/pods/").is_err());
    }
}
