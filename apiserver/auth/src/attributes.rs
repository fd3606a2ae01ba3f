//! What a request asks for, in the terms authorization uses (upstream's `RequestInfo` and
//! `authorizer.Attributes`).

use crate::UserInfo;
use serde_json::{json, Value};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: UserInfo,
    pub verb: String,
    pub resource_request: bool,
    pub namespace: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// The request path, for non-resource requests.
    pub path: String,
}

impl Attributes {
    /// Reads a request the way upstream's `RequestInfoFactory` does. `field_name` is the
    /// `metadata.name` a list or watch's field selector pins, which upstream treats as the name.
    pub fn from_request(user: UserInfo, method: &str, path: &str, watch: bool, field_name: Option<&str>) -> Self {
        let mut a = Attributes { user, path: path.to_string(), ..Default::default() };
        let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let mut rest: &[&str] = match parts.as_slice() {
            ["api", v, rest @ ..] => {
                a.api_version = v.to_string();
                rest
            }
            ["apis", g, v, rest @ ..] => {
                a.api_group = g.to_string();
                a.api_version = v.to_string();
                rest
            }
            _ => {
                a.verb = method.to_ascii_lowercase();
                return a;
            }
        };
        if rest.is_empty() {
            a.api_group.clear();
            a.api_version.clear();
            a.verb = method.to_ascii_lowercase();
            return a;
        }
        a.resource_request = true;
        let mut legacy_watch = false;
        if rest[0] == "watch" {
            legacy_watch = true;
            rest = &rest[1..];
        }
        a.verb = match method {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "",
        }
        .to_string();
        if rest.first() == Some(&"namespaces") && rest.len() > 1 {
            a.namespace = rest[1].to_string();
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        if let Some(r) = rest.first() {
            a.resource = r.to_string();
        }
        if let Some(n) = rest.get(1) {
            a.name = n.to_string();
        }
        if let Some(s) = rest.get(2) {
            a.subresource = s.to_string();
        }
        if legacy_watch {
            a.verb = "watch".into();
        }
        if a.verb == "get" && a.name.is_empty() {
            a.verb = if watch { "watch".into() } else { "list".into() };
        }
        if a.verb == "delete" && a.name.is_empty() {
            a.verb = "deletecollection".into();
        }
        if matches!(a.verb.as_str(), "list" | "watch") {
            if let Some(n) = field_name {
                a.name = n.to_string();
            }
        }
        a
    }

    /// The `spec` of a SubjectAccessReview, the attributes half.
    pub fn from_review_spec(user: UserInfo, spec: &Value) -> Self {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        if let Some(r) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
            Attributes {
                user,
                verb: s(r, "verb"),
                resource_request: true,
                namespace: s(r, "namespace"),
                api_group: s(r, "group"),
                api_version: s(r, "version"),
                resource: s(r, "resource"),
                subresource: s(r, "subresource"),
                name: s(r, "name"),
                path: String::new(),
            }
        } else {
            let n = spec.get("nonResourceAttributes").cloned().unwrap_or(json!({}));
            Attributes { user, verb: s(&n, "verb"), path: s(&n, "path"), ..Default::default() }
        }
    }

    /// The message of a 403, as upstream's `forbiddenMessage`.
    pub fn forbidden_message(&self) -> String {
        let user = &self.user.username;
        if !self.resource_request {
            return format!("User {user:?} cannot {} path {:?}", self.verb, self.path);
        }
        let mut resource = self.resource.clone();
        if !self.subresource.is_empty() {
            resource = format!("{resource}/{}", self.subresource);
        }
        if self.namespace.is_empty() {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                self.verb, self.api_group
            )
        } else {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                self.verb, self.api_group, self.namespace
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(method: &str, path: &str, watch: bool) -> Attributes {
        Attributes::from_request(UserInfo::anonymous(), method, path, watch, None)
    }

    #[test]
    fn reads_paths_as_upstream() {
        let x = a("GET", "/api/v1/namespaces/default/pods", false);
        assert_eq!((x.verb.as_str(), x.namespace.as_str(), x.resource.as_str()), ("list", "default", "pods"));
        let x = a("GET", "/api/v1/namespaces/default/pods", true);
        assert_eq!(x.verb, "watch");
        let x = a("GET", "/api/v1/namespaces/default/pods/p/log", false);
        assert_eq!((x.verb.as_str(), x.name.as_str(), x.subresource.as_str()), ("get", "p", "log"));
        let x = a("PUT", "/api/v1/namespaces/ns1/status", false);
        assert_eq!(
            (x.resource.as_str(), x.name.as_str(), x.namespace.as_str(), x.subresource.as_str()),
            ("namespaces", "ns1", "ns1", "status")
        );
        let x = a("GET", "/api/v1/namespaces/ns1", false);
        assert_eq!((x.resource.as_str(), x.name.as_str(), x.namespace.as_str()), ("namespaces", "ns1", "ns1"));
        let x = a("DELETE", "/apis/apps/v1/namespaces/d/deployments", false);
        assert_eq!((x.verb.as_str(), x.api_group.as_str()), ("deletecollection", "apps"));
        let x = a("GET", "/healthz", false);
        assert!(!x.resource_request);
        assert_eq!(x.verb, "get");
        let x = a("GET", "/apis/apps/v1", false);
        assert!(!x.resource_request);
        assert_eq!(
            a("GET", "/api/v1/namespaces/default/pods", false).forbidden_message(),
            "User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            a("GET", "/api/v1/nodes", false).forbidden_message(),
            "User \"system:anonymous\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        );
        assert_eq!(a("GET", "/foo", false).forbidden_message(), "User \"system:anonymous\" cannot get path \"/foo\"");
    }
}
