//! Admission webhooks without the network: which `MutatingWebhookConfiguration` and
//! `ValidatingWebhookConfiguration` webhooks a request is sent to (rules, scope, namespace and object
//! selectors), the `AdmissionReview` v1 a webhook receives, and what its answer means (allowed, a
//! denial with its `Status`, a JSONPatch, warnings), checked as upstream checks it.

use apimachinery::labels::Selector;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One webhook of a configuration, with upstream's defaults applied.
#[derive(Clone, Debug)]
pub struct Hook {
    pub name: String,
    pub client: Value,
    rules: Vec<Value>,
    /// `failurePolicy: Fail` (the default): a webhook that cannot be called rejects the request.
    pub fail_closed: bool,
    namespace_selector: Value,
    object_selector: Value,
    pub timeout_seconds: u64,
    /// `reinvocationPolicy: IfNeeded`.
    pub reinvoke: bool,
    /// The first version of `admissionReviewVersions` this server speaks (`v1` or `v1beta1`).
    pub review_version: &'static str,
}

/// The webhooks of a list of configurations, in the order upstream calls them: configurations
/// sorted by name, webhooks in their listed order.
pub fn hooks(configs: &[Value]) -> Vec<Hook> {
    let mut configs: Vec<&Value> = configs.iter().collect();
    configs.sort_by_key(|c| c.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string());
    let mut out = Vec::new();
    for c in configs {
        for w in c.get("webhooks").and_then(Value::as_array).into_iter().flatten() {
            let text = |k: &str| w.get(k).and_then(Value::as_str).unwrap_or("");
            let versions: Vec<&str> = w
                .get("admissionReviewVersions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            out.push(Hook {
                name: text("name").to_string(),
                client: w.get("clientConfig").cloned().unwrap_or_default(),
                rules: w.get("rules").and_then(Value::as_array).cloned().unwrap_or_default(),
                fail_closed: text("failurePolicy") != "Ignore",
                namespace_selector: w.get("namespaceSelector").cloned().unwrap_or_else(|| json!({})),
                object_selector: w.get("objectSelector").cloned().unwrap_or_else(|| json!({})),
                timeout_seconds: w.get("timeoutSeconds").and_then(Value::as_u64).unwrap_or(10),
                reinvoke: text("reinvocationPolicy") == "IfNeeded",
                review_version: versions
                    .iter()
                    .find_map(|v| match *v {
                        "v1" => Some("v1"),
                        "v1beta1" => Some("v1beta1"),
                        _ => None,
                    })
                    .unwrap_or("v1"),
            });
        }
    }
    out
}

/// What a request is, as webhooks see it.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub resource: &'a str,
    pub sub_resource: &'a str,
    pub namespaced: bool,
    pub namespace: &'a str,
    pub name: &'a str,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    pub dry_run: bool,
    /// `userInfo` as JSON (username, uid, groups, extra).
    pub user: Value,
    /// The request's options (`CreateOptions`, `UpdateOptions`, `DeleteOptions`) as JSON, without
    /// kind and apiVersion.
    pub options: Value,
}

impl Request<'_> {
    /// Webhooks are never called for the objects that configure admission, so that a broken webhook
    /// cannot lock its own fix out.
    pub fn exempt(&self) -> bool {
        self.group == "admissionregistration.k8s.io"
            && matches!(
                self.resource,
                "validatingwebhookconfigurations"
                    | "mutatingwebhookconfigurations"
                    | "validatingadmissionpolicies"
                    | "validatingadmissionpolicybindings"
                    | "mutatingadmissionpolicies"
                    | "mutatingadmissionpolicybindings"
            )
    }

    fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.resource == "namespaces"
    }

    /// The namespace whose labels a webhook's namespaceSelector is matched against: the request's
    /// namespace for namespaced objects; none for cluster-scoped objects (a Namespace is matched on
    /// its own labels).
    pub fn selector_namespace(&self) -> Option<&str> {
        (self.namespaced && !self.namespace.is_empty()).then_some(self.namespace)
    }
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(String::from).collect()
}

fn listed(list: &[String], value: &str) -> bool {
    list.iter().any(|x| x == "*" || x == value)
}

/// Whether one of the webhook's rules covers the request (operation, group, version, resource and
/// subresource, scope).
pub fn rules_match(hook: &Hook, req: &Request<'_>) -> bool {
    hook.rules.iter().any(|rule| {
        let scope = rule.get("scope").and_then(Value::as_str).unwrap_or("*");
        let in_scope = match scope {
            "Cluster" => !req.namespaced,
            "Namespaced" => req.namespaced,
            _ => true,
        };
        in_scope
            && listed(&strings(rule, "operations"), req.operation)
            && listed(&strings(rule, "apiGroups"), req.group)
            && listed(&strings(rule, "apiVersions"), req.version)
            && strings(rule, "resources").iter().any(|r| resource_matches(r, req.resource, req.sub_resource))
    })
}

fn resource_matches(pattern: &str, resource: &str, sub: &str) -> bool {
    if pattern == "*/*" {
        return true;
    }
    let (res, want_sub) = pattern.split_once('/').unwrap_or((pattern, ""));
    (res == "*" || res == resource) && (want_sub == "*" || want_sub == sub)
}

fn selector(v: &Value) -> Result<Selector, String> {
    Selector::from_label_selector(v).map_err(|e| e.to_string())
}

fn labels_of(obj: Option<&Value>) -> BTreeMap<String, String> {
    obj.and_then(|o| o.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default()
}

impl Hook {
    /// Whether the namespaceSelector needs the namespace's labels looked up.
    pub fn needs_namespace(&self, req: &Request<'_>) -> bool {
        req.selector_namespace().is_some() && !is_everything(&self.namespace_selector)
    }

    /// The namespaceSelector against the request's namespace labels (given when
    /// [`Hook::needs_namespace`]), or a Namespace's own labels.
    pub fn namespace_matches(
        &self,
        req: &Request<'_>,
        ns_labels: Option<&BTreeMap<String, String>>,
    ) -> Result<bool, String> {
        if is_everything(&self.namespace_selector) {
            return Ok(true);
        }
        let sel = selector(&self.namespace_selector)?;
        if req.is_namespace() {
            let own = labels_of(req.object.or(req.old_object));
            return Ok(sel.matches(&own));
        }
        match (req.selector_namespace(), ns_labels) {
            (None, _) => Ok(true),
            (Some(_), Some(l)) => Ok(sel.matches(l)),
            (Some(ns), None) => Err(format!("namespaces \"{ns}\" not found")),
        }
    }

    /// The objectSelector against the new object's labels or the old object's.
    pub fn object_matches(&self, req: &Request<'_>) -> Result<bool, String> {
        if is_everything(&self.object_selector) {
            return Ok(true);
        }
        let sel = selector(&self.object_selector)?;
        Ok([req.object, req.old_object].into_iter().flatten().any(|o| sel.matches(&labels_of(Some(o)))))
    }
}

fn is_everything(sel: &Value) -> bool {
    let empty = |k: &str| {
        sel.get(k).is_none_or(|v| {
            v.as_object().is_some_and(|m| m.is_empty()) || v.as_array().is_some_and(|a| a.is_empty()) || v.is_null()
        })
    };
    empty("matchLabels") && empty("matchExpressions")
}

/// The `AdmissionReview` sent to a webhook, with `uid` identifying this call.
pub fn review(hook: &Hook, req: &Request<'_>, uid: &str) -> Value {
    let gvk = json!({"group": req.group, "version": req.version, "kind": req.kind});
    let gvr = json!({"group": req.group, "version": req.version, "resource": req.resource});
    let options_kind = match req.operation {
        "CREATE" => Some("CreateOptions"),
        "UPDATE" => Some("UpdateOptions"),
        "DELETE" => Some("DeleteOptions"),
        _ => None,
    };
    let mut r = json!({
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "operation": req.operation,
        "userInfo": req.user,
        "object": req.object.cloned().unwrap_or(Value::Null),
        "oldObject": req.old_object.cloned().unwrap_or(Value::Null),
        "dryRun": req.dry_run,
    });
    if !req.sub_resource.is_empty() {
        r["subResource"] = json!(req.sub_resource);
        r["requestSubResource"] = json!(req.sub_resource);
    }
    if !req.name.is_empty() {
        r["name"] = json!(req.name);
    }
    if !req.namespace.is_empty() {
        r["namespace"] = json!(req.namespace);
    }
    if let Some(kind) = options_kind {
        let mut o = req.options.clone();
        if !o.is_object() {
            o = json!({});
        }
        o["kind"] = json!(kind);
        o["apiVersion"] = json!("meta.k8s.io/v1");
        r["options"] = o;
    }
    json!({"apiVersion": format!("admission.k8s.io/{}", hook.review_version), "kind": "AdmissionReview", "request": r})
}

/// A webhook's verdict.
#[derive(Debug)]
pub enum Verdict {
    Allowed {
        patch: Option<json_patch::Patch>,
        warnings: Vec<String>,
    },
    /// The `Status` the request fails with (message already says which webhook denied it).
    Denied {
        status: Value,
        warnings: Vec<String>,
    },
}

/// Reads a webhook's answer to the review with `uid`. An `Err` is an invalid answer, which counts
/// as a failure to call the webhook (its failurePolicy decides).
pub fn verdict(hook: &Hook, body: &[u8], uid: &str, mutating: bool) -> Result<Verdict, String> {
    let review: Value = serde_json::from_slice(body).map_err(|e| format!("received invalid webhook response: {e}"))?;
    let invalid = |why: String| format!("received invalid webhook response: {why}");
    let want = format!("admission.k8s.io/{}", hook.review_version);
    let (api_version, kind) = (
        review.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
        review.get("kind").and_then(Value::as_str).unwrap_or(""),
    );
    if api_version != want || kind != "AdmissionReview" {
        return Err(invalid(format!(
            "expected webhook response of {want}, Kind=AdmissionReview, got {api_version}, Kind={kind}"
        )));
    }
    let Some(resp) = review.get("response").filter(|r| r.is_object()) else {
        return Err(invalid("webhook response was absent".into()));
    };
    let got_uid = resp.get("uid").and_then(Value::as_str).unwrap_or("");
    if got_uid != uid {
        return Err(invalid(format!("expected response.uid=\"{uid}\", got \"{got_uid}\"")));
    }
    let warnings = strings(resp, "warnings");
    let allowed = resp.get("allowed").and_then(Value::as_bool).unwrap_or(false);
    let patch = resp.get("patch").and_then(Value::as_str).filter(|p| !p.is_empty());
    if patch.is_some() && !mutating {
        return Err(invalid("validating webhooks may not return patches".into()));
    }
    if !allowed {
        return Ok(Verdict::Denied { status: denial(&hook.name, resp.get("status")), warnings });
    }
    let patch = match patch {
        None => None,
        Some(p) => {
            match resp.get("patchType").and_then(Value::as_str) {
                Some("JSONPatch") => {}
                Some(other) => {
                    return Err(invalid(format!("webhook returned invalid response.patchType of \"{other}\"")))
                }
                None => return Err(invalid("webhook returned response.patch but not response.patchType".into())),
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| invalid(format!("response.patch is not base64: {e}")))?;
            Some(serde_json::from_slice::<json_patch::Patch>(&bytes).map_err(|e| invalid(e.to_string()))?)
        }
    };
    Ok(Verdict::Allowed { patch, warnings })
}

/// The `Status` a denial fails the request with: the webhook's own, its code raised to at least 400,
/// its message prefixed with which webhook denied the request.
pub fn denial(hook_name: &str, status: Option<&Value>) -> Value {
    let mut s = status.filter(|s| s.is_object()).cloned().unwrap_or_else(|| json!({}));
    let denied_by = format!("admission webhook \"{hook_name}\" denied the request");
    if s.get("code").and_then(Value::as_i64).unwrap_or(0) < 400 {
        s["code"] = json!(400);
    }
    if matches!(s.get("status").and_then(Value::as_str), None | Some("") | Some("Success")) {
        s["status"] = json!("Failure");
    }
    let text = |k: &str| s.get(k).and_then(Value::as_str).filter(|m| !m.is_empty()).map(String::from);
    s["message"] = json!(match (text("message"), text("reason")) {
        (Some(m), _) => format!("{denied_by}: {m}"),
        (None, Some(r)) => format!("{denied_by}: {r}"),
        (None, None) => format!("{denied_by} without explanation"),
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(extra: Value) -> Hook {
        let mut w = json!({
            "name": "a.b.c",
            "clientConfig": {"url": "https://127.0.0.1:1/x"},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "*"}],
            "admissionReviewVersions": ["v1"],
        });
        for (k, v) in extra.as_object().unwrap() {
            w[k] = v.clone();
        }
        hooks(&[json!({"metadata": {"name": "cfg"}, "webhooks": [w]})]).remove(0)
    }

    fn pod_create(obj: &Value) -> Request<'_> {
        Request {
            operation: "CREATE",
            group: "",
            version: "v1",
            kind: "Pod",
            resource: "pods",
            sub_resource: "",
            namespaced: true,
            namespace: "ns",
            name: "p",
            object: Some(obj),
            old_object: None,
            dry_run: false,
            user: json!({"username": "u"}),
            options: json!({}),
        }
    }

    #[test]
    fn rules_scope_and_subresources() {
        let obj = json!({"metadata": {"labels": {"app": "x"}}});
        let req = pod_create(&obj);
        assert!(rules_match(&hook(json!({})), &req));
        let status = Request { sub_resource: "status", operation: "UPDATE", ..req.clone() };
        let all_ops = |res: &str, scope: &str| {
            hook(
                json!({"rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": [res], "scope": scope}]}),
            )
        };
        assert!(!rules_match(&all_ops("pods", "*"), &status));
        assert!(rules_match(&all_ops("pods/*", "*"), &status));
        assert!(rules_match(&all_ops("*/status", "*"), &status));
        assert!(rules_match(&all_ops("*/*", "*"), &status));
        assert!(!rules_match(&all_ops("*", "*"), &status));
        assert!(rules_match(&all_ops("*", "Namespaced"), &req));
        assert!(!rules_match(&all_ops("*", "Cluster"), &req));
        assert!(!rules_match(&hook(json!({})), &Request { operation: "DELETE", ..req.clone() }));
        assert!(Request { group: "admissionregistration.k8s.io", resource: "mutatingwebhookconfigurations", ..req }
            .exempt());
    }

    #[test]
    fn selectors() {
        let obj = json!({"metadata": {"labels": {"app": "x"}}});
        let req = pod_create(&obj);
        let h = hook(
            json!({"objectSelector": {"matchLabels": {"app": "x"}}, "namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}}),
        );
        assert!(h.object_matches(&req).unwrap());
        assert!(h.needs_namespace(&req));
        let prod: BTreeMap<String, String> = [("env".to_string(), "prod".to_string())].into();
        assert!(h.namespace_matches(&req, Some(&prod)).unwrap());
        assert!(!h.namespace_matches(&req, Some(&BTreeMap::new())).unwrap());
        assert!(h.namespace_matches(&req, None).is_err());
        let other = json!({"metadata": {"labels": {"app": "y"}}});
        assert!(!h.object_matches(&pod_create(&other)).unwrap());
        // An update matches when either side's labels do.
        let upd = Request { operation: "UPDATE", old_object: Some(&obj), ..pod_create(&other) };
        assert!(h.object_matches(&upd).unwrap());
        // A Namespace is matched on its own labels.
        let ns = json!({"metadata": {"name": "n", "labels": {"env": "prod"}}});
        let ns_req =
            Request { resource: "namespaces", kind: "Namespace", namespaced: false, namespace: "", ..pod_create(&ns) };
        assert!(!h.needs_namespace(&ns_req));
        assert!(h.namespace_matches(&ns_req, None).unwrap());
        assert!(!hook(json!({})).needs_namespace(&req));
    }

    #[test]
    fn review_and_answers() {
        let obj = json!({"metadata": {"name": "p"}});
        let h = hook(json!({}));
        let r = review(&h, &pod_create(&obj), "u-1");
        assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(r["request"]["kind"], json!({"group": "", "version": "v1", "kind": "Pod"}));
        assert_eq!(r["request"]["options"], json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}));
        assert_eq!(r["request"]["oldObject"], Value::Null);
        assert!(r["request"].get("subResource").is_none());

        let answer = |resp: Value| {
            serde_json::to_vec(
                &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp}),
            )
            .unwrap()
        };
        let patch = base64::engine::general_purpose::STANDARD
            .encode(br#"[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]"#);
        match verdict(
            &h,
            &answer(
                json!({"uid": "u-1", "allowed": true, "patch": patch, "patchType": "JSONPatch", "warnings": ["w"]}),
            ),
            "u-1",
            true,
        )
        .unwrap()
        {
            Verdict::Allowed { patch: Some(p), warnings } => {
                assert_eq!(p.0.len(), 1);
                assert_eq!(warnings, vec!["w"]);
            }
            other => panic!("{other:?}"),
        }
        let err = verdict(&h, &answer(json!({"uid": "other", "allowed": true})), "u-1", true).unwrap_err();
        assert_eq!(err, "received invalid webhook response: expected response.uid=\"u-1\", got \"other\"");
        assert!(verdict(&h, &answer(json!({"uid": "u-1", "allowed": true, "patch": patch})), "u-1", true)
            .unwrap_err()
            .contains("not response.patchType"));
        assert!(verdict(
            &h,
            &answer(json!({"uid": "u-1", "allowed": true, "patch": patch, "patchType": "JSONPatch"})),
            "u-1",
            false
        )
        .unwrap_err()
        .contains("may not return patches"));
        match verdict(
            &h,
            &answer(json!({"uid": "u-1", "allowed": false, "status": {"message": "no", "code": 200}})),
            "u-1",
            false,
        )
        .unwrap()
        {
            Verdict::Denied { status, .. } => {
                assert_eq!(status["message"], "admission webhook \"a.b.c\" denied the request: no");
                assert_eq!(status["code"], 400);
                assert_eq!(status["status"], "Failure");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            denial("a.b.c", None)["message"],
            "admission webhook \"a.b.c\" denied the request without explanation"
        );
        assert_eq!(
            denial("a.b.c", Some(&json!({"reason": "Nope", "code": 422})))["message"],
            "admission webhook \"a.b.c\" denied the request: Nope"
        );
        assert!(verdict(&h, b"{}", "u-1", true)
            .unwrap_err()
            .contains("expected webhook response of admission.k8s.io/v1"));
    }
}
