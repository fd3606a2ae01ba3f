//! Legacy discovery: `/api`, `/api/v1`, `/apis`, `/apis/<group>`, `/apis/<group>/<version>`, built
//! from the registry table.

use crate::api::{json_response, Api, Format};
use crate::registry::Resource;
use http::StatusCode;
use serde_json::{json, Value};

/// Upstream's storageVersionHash: base64 of the first 8 bytes of sha256("<group>/<version>/<Kind>").
/// We have no sha256 here without another dependency, so a stable FNV-based stand-in of the same
/// shape is used; clients only compare it for equality.
fn storage_version_hash(r: &Resource) -> String {
    use base64::Engine;
    let mut h: u64 = 0xcbf29ce484222325;
    for b in format!("{}/{}/{}", r.group, r.version, r.kind).bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    base64::engine::general_purpose::STANDARD.encode(h.to_be_bytes())
}

fn resource_list(api: &Api, group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in api.registry.resources.iter().filter(|r| r.group == group && r.version == version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
            "storageVersionHash": storage_version_hash(r),
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in r.subresources {
            let (kind, verbs, group, version): (&str, Vec<&str>, Option<&str>, Option<&str>) = match *sub {
                "status" => (r.kind, vec!["get", "patch", "update"], None, None),
                "scale" => ("Scale", vec!["get", "patch", "update"], Some("autoscaling"), Some("v1")),
                "binding" => ("Binding", vec!["create"], None, None),
                "eviction" => ("Eviction", vec!["create"], Some("policy"), Some("v1")),
                "token" => ("TokenRequest", vec!["create"], Some("authentication.k8s.io"), Some("v1")),
                "finalize" => (r.kind, vec!["update"], None, None),
                "approval" => (r.kind, vec!["get", "patch", "update"], None, None),
                "log" => ("Pod", vec!["get"], None, None),
                "exec" | "attach" => ("PodExecOptions", vec!["create", "get"], None, None),
                "portforward" => ("PodPortForwardOptions", vec!["create", "get"], None, None),
                "ephemeralcontainers" | "resize" => ("Pod", vec!["get", "patch", "update"], None, None),
                _ => (r.kind, vec!["get"], None, None),
            };
            let mut s = json!({"name": format!("{}/{}", r.plural, sub), "singularName": "", "namespaced": r.namespaced, "kind": kind, "verbs": verbs});
            if let (Some(g), Some(v)) = (group, version) {
                s["group"] = json!(g);
                s["version"] = json!(v);
            }
            resources.push(s);
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

fn group_entry(api: &Api, group: &str) -> Value {
    let versions: Vec<Value> = api
        .registry
        .versions(group)
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether aggregated discovery (`apidiscovery.k8s.io/v2`) comes before plain JSON in the client's
/// `Accept` list (other aggregated versions are skipped: only v2 is served).
pub fn wants_aggregated(headers: &http::HeaderMap) -> bool {
    let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    for part in accept.split(',').map(str::trim) {
        if part.contains("as=APIGroupDiscoveryList") {
            if part.contains("g=apidiscovery.k8s.io") && part.split(';').any(|p| p.trim() == "v=v2") {
                return true;
            }
            continue;
        }
        if part.starts_with("application/json") || part.starts_with("*/*") {
            return false;
        }
    }
    false
}

fn aggregated_group(api: &Api, group: &str) -> Value {
    let versions: Vec<Value> = api
        .registry
        .versions(group)
        .iter()
        .map(|version| {
            let resources: Vec<Value> = api
                .registry
                .resources
                .iter()
                .filter(|r| r.group == group && r.version == *version)
                .map(|r| {
                    let legacy = resource_list(api, group, version);
                    let subresources: Vec<Value> = legacy["resources"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|e| {
                            let name = e["name"].as_str()?;
                            let (parent, sub) = name.split_once('/')?;
                            (parent == r.plural).then(|| {
                                json!({
                                    "subresource": sub,
                                    "responseKind": {"group": e.get("group").cloned().unwrap_or(json!(group)), "version": e.get("version").cloned().unwrap_or(json!(version)), "kind": e["kind"]},
                                    "verbs": e["verbs"],
                                })
                            })
                        })
                        .collect();
                    let mut entry = json!({
                        "resource": r.plural,
                        "responseKind": {"group": group, "version": version, "kind": r.kind},
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular,
                        "verbs": r.verbs(),
                    });
                    if !r.short_names.is_empty() {
                        entry["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        entry["categories"] = json!(r.categories);
                    }
                    if !subresources.is_empty() {
                        entry["subresources"] = json!(subresources);
                    }
                    entry
                })
                .collect();
            json!({"version": version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

/// `/api` or `/apis` as an `APIGroupDiscoveryList`.
pub fn aggregated(api: &Api, core: bool) -> http::Response<crate::api::Body> {
    let items: Vec<Value> =
        api.registry.groups().into_iter().filter(|g| g.is_empty() == core).map(|g| aggregated_group(api, g)).collect();
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items});
    let mut resp = json_response(StatusCode::OK, &body, Format::Json);
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(AGGREGATED));
    resp
}

/// Answers a discovery path, or `None` when the path is not discovery.
pub fn route_discovery(api: &Api, segments: &[&str]) -> Option<http::Response<crate::api::Body>> {
    let body = match segments {
        ["api"] => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": api.advertise}],
        }),
        ["api", "v1"] => resource_list(api, "", "v1"),
        ["apis"] => {
            let groups: Vec<Value> =
                api.registry.groups().into_iter().filter(|g| !g.is_empty()).map(|g| group_entry(api, g)).collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        ["apis", group] if api.registry.groups().contains(group) && !group.is_empty() => {
            let mut g = group_entry(api, group);
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            g
        }
        ["apis", group, version] if api.registry.versions(group).contains(version) => {
            resource_list(api, group, version)
        }
        _ => return None,
    };
    Some(json_response(StatusCode::OK, &body, Format::Json))
}
