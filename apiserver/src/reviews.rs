//! The APIs of authentication and authorization: TokenReview, SelfSubjectReview, the four access
//! reviews, TokenRequest (`serviceaccounts/<name>/token`), and the service-account issuer's OpenID
//! discovery documents.

use crate::api::{Api, ResourceRequest};
use crate::auth::{get_object, now_unix, Decision};
use apimachinery::{ApiError, Cause};
use apiserver_auth::attributes::Attributes;
use apiserver_auth::UserInfo;
use serde_json::{json, Value};

tokio::task_local! {
    /// The identity the current request runs as (after impersonation). Work the server does on its own
    /// (bootstrap, reconcilers) runs outside any request and is not subject to admission by user.
    pub static REQUEST_USER: UserInfo;
}

/// The requesting user, when inside a request.
pub fn current_user() -> Option<UserInfo> {
    REQUEST_USER.try_with(|u| u.clone()).ok()
}

fn user_from_spec(spec: &Value) -> UserInfo {
    let strs = |k: &str| -> Vec<String> {
        spec[k].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    let extra = spec["extra"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_array()
                            .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    UserInfo {
        username: spec["user"].as_str().unwrap_or("").to_string(),
        uid: spec["uid"].as_str().unwrap_or("").to_string(),
        groups: strs("groups"),
        extra,
    }
}

fn review_status(d: &Decision) -> Value {
    let (Decision::Allow(reason) | Decision::Deny(reason)) = d;
    let mut s = json!({"allowed": d.allowed()});
    if !reason.is_empty() {
        s["reason"] = json!(reason);
    }
    s
}

fn invalid(kind: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid("authorization.k8s.io", kind, "", causes)
}

fn check_attributes(kind: &str, spec: &Value) -> Result<(), ApiError> {
    let has_res = spec.get("resourceAttributes").is_some_and(Value::is_object);
    let has_non = spec.get("nonResourceAttributes").is_some_and(Value::is_object);
    if has_res && has_non {
        return Err(invalid(
            kind,
            vec![Cause::invalid(
                "spec.nonResourceAttributes",
                &spec["nonResourceAttributes"],
                "cannot be specified in combination with resourceAttributes",
            )],
        ));
    }
    if !has_res && !has_non {
        return Err(invalid(
            kind,
            vec![Cause::invalid(
                "spec.resourceAttributes",
                &Value::Null,
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )],
        ));
    }
    Ok(())
}

fn echo(kind: &str, group: &str, body: &Value, status: Value) -> Value {
    let mut meta = body.get("metadata").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    meta["creationTimestamp"] = Value::Null;
    json!({"kind": kind, "apiVersion": format!("{group}/v1"), "metadata": meta, "spec": body.get("spec").cloned().unwrap_or(json!({})), "status": status})
}

/// Answers a POST to one of the review resources.
pub async fn review(api: &Api, rr: &ResourceRequest<'_>, body: Value, user: &UserInfo) -> Result<Value, ApiError> {
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    let kind = rr.res.kind;
    let group = rr.res.group;
    match rr.res.plural {
        "tokenreviews" => {
            let token = spec["token"].as_str().unwrap_or("");
            if token.is_empty() {
                return Err(ApiError::invalid(group, kind, "", vec![Cause::required("spec.token", "")]));
            }
            let audiences: Vec<String> = spec["audiences"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default();
            let wanted = if audiences.is_empty() { api.auth.audiences.clone() } else { audiences.clone() };
            let found = if token.matches('.').count() == 2 && !api.auth.sa_keys.is_empty() {
                api.auth.service_account_token(api, token, &wanted).await
            } else {
                None
            };
            let found = match found {
                Some(f) => Some(f),
                None => api
                    .auth
                    .authenticate_token(api, token)
                    .await
                    .filter(|_| {
                        // Token-file and bootstrap tokens are valid for the API server's own audiences only.
                        audiences.is_empty() || audiences.iter().any(|a| api.auth.audiences.contains(a))
                    })
                    .map(|u| (u, wanted.iter().filter(|a| api.auth.audiences.contains(a)).cloned().collect())),
            };
            let status = match found {
                Some((u, auds)) => {
                    let mut s = json!({"authenticated": true, "user": u.authenticated().to_json()});
                    if !auds.is_empty() {
                        s["audiences"] = json!(auds);
                    }
                    s
                }
                None => json!({"user": {}, "error": "[invalid bearer token, token lookup failed]"}),
            };
            Ok(echo(kind, group, &body, status))
        }
        "selfsubjectreviews" => Ok(echo(kind, group, &body, json!({"userInfo": user.to_json()}))),
        "subjectaccessreviews" | "localsubjectaccessreviews" => {
            check_attributes(kind, &spec)?;
            let subject = user_from_spec(&spec);
            if subject.username.is_empty() && subject.groups.is_empty() {
                return Err(invalid(
                    kind,
                    vec![Cause::invalid("spec.user", &json!(""), "at least one of user or group must be specified")],
                ));
            }
            if rr.res.plural == "localsubjectaccessreviews" {
                let ns = rr.namespace.as_deref().unwrap_or("");
                let given = spec.pointer("/resourceAttributes/namespace").and_then(Value::as_str).unwrap_or("");
                if spec.get("resourceAttributes").is_none() || given != ns {
                    return Err(invalid(
                        kind,
                        vec![Cause::invalid(
                            "spec.resourceAttributes.namespace",
                            &json!(given),
                            "must match metadata.namespace",
                        )],
                    ));
                }
            }
            let attrs = Attributes::from_review_spec(subject, &spec);
            let d = api.auth.authorize(api, &attrs).await;
            Ok(echo(kind, group, &body, review_status(&d)))
        }
        "selfsubjectaccessreviews" => {
            check_attributes(kind, &spec)?;
            let attrs = Attributes::from_review_spec(user.clone(), &spec);
            let d = api.auth.authorize(api, &attrs).await;
            let mut out = echo(kind, group, &body, review_status(&d));
            out["spec"] = spec;
            Ok(out)
        }
        "selfsubjectrulesreviews" => {
            let ns = spec["namespace"].as_str().unwrap_or("");
            let status = rules_review(api, user, ns).await;
            Ok(echo(kind, group, &body, status))
        }
        other => Err(ApiError::internal(format!("no review handler for {other}"))),
    }
}

/// What `kubectl auth can-i --list` shows: the rules the user holds in a namespace.
async fn rules_review(api: &Api, user: &UserInfo, namespace: &str) -> Value {
    use crate::auth::Mode;
    let all = || {
        json!({"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
               "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}], "incomplete": false})
    };
    if user.in_group(apiserver_auth::MASTERS) {
        return all();
    }
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    let mut incomplete = false;
    for mode in &api.auth.modes {
        match mode {
            Mode::AlwaysAllow => return all(),
            Mode::AlwaysDeny => break,
            Mode::Node => incomplete |= user.node_name().is_some(),
            Mode::Rbac => match api.auth.rbac_snapshot(api, true).await {
                Ok(snap) => {
                    for r in snap.rules_for(user, namespace) {
                        if r.non_resource_urls.is_empty() {
                            resource_rules.push(r.to_json());
                        } else {
                            non_resource_rules.push(r.to_json());
                        }
                    }
                }
                Err(_) => incomplete = true,
            },
        }
    }
    json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": incomplete})
}

/// TokenRequest: a JWT for a service account, bound to an audience set, a lifetime and optionally a
/// Pod, Secret or Node, as upstream's token REST storage issues it.
pub async fn token_request(api: &Api, rr: &ResourceRequest<'_>, body: Value) -> Result<Value, ApiError> {
    let ns = rr.namespace.clone().unwrap_or_default();
    let sa_name = rr.name.clone().unwrap_or_default();
    let Some(signer) = api.auth.signer.as_ref() else {
        return Err(ApiError::no_such_resource());
    };
    let sa = get_object(api, "", "serviceaccounts", Some(&ns), &sa_name)
        .await
        .ok_or_else(|| ApiError::not_found(&apimachinery::GroupResource::new("", "serviceaccounts"), &sa_name))?;
    let mut spec = body.get("spec").cloned().unwrap_or(json!({}));
    let mut expiration = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    let invalid = |cause: Cause| ApiError::invalid("authentication.k8s.io", "TokenRequest", "", vec![cause]);
    let too = |why: &str| Cause::invalid("spec.expirationSeconds", &json!(expiration), why);
    if expiration < 600 {
        return Err(invalid(too("may not specify a duration less than 10 minutes")));
    }
    if expiration > 1 << 32 {
        return Err(invalid(too("may not specify a duration larger than 2^32 seconds")));
    }
    if let Some(max) = api.auth.max_token_expiration {
        expiration = expiration.min(max.as_secs() as i64);
    }
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        _ => api.auth.audiences.clone(),
    };
    let now = now_unix();
    let sa_uid = sa.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
    let mut k8s = json!({"namespace": ns, "serviceaccount": {"name": sa_name, "uid": sa_uid}});
    if let Some(bound) = spec.get("boundObjectRef").filter(|b| b.is_object()) {
        let kind = bound["kind"].as_str().unwrap_or("");
        let name = bound["name"].as_str().unwrap_or("");
        let (plural, key, namespaced) = match kind {
            "Pod" => ("pods", "pod", true),
            "Secret" => ("secrets", "secret", true),
            "Node" => ("nodes", "node", false),
            other => {
                return Err(invalid(Cause::not_supported(
                    "spec.boundObjectRef.kind",
                    &json!(other),
                    &["Pod", "Secret", "Node"],
                )));
            }
        };
        let gr = apimachinery::GroupResource::new("", plural);
        let obj = get_object(api, "", plural, namespaced.then_some(ns.as_str()), name)
            .await
            .ok_or_else(|| ApiError::not_found(&gr, name))?;
        let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
        if let Some(want) = bound["uid"].as_str().filter(|u| !u.is_empty()) {
            if want != uid {
                return Err(ApiError::conflict_with(
                    &gr,
                    name,
                    &format!("the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"),
                ));
            }
        }
        k8s[key] = json!({"name": name, "uid": uid});
        if kind == "Pod" {
            if let Some(node_name) = obj.pointer("/spec/nodeName").and_then(Value::as_str) {
                if let Some(node) = get_object(api, "", "nodes", None, node_name).await {
                    let node_uid = node.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
                    k8s["node"] = json!({"name": node_name, "uid": node_uid});
                }
            }
        }
        spec["boundObjectRef"]["uid"] = json!(uid);
    }
    let claims = json!({
        "aud": audiences,
        "exp": now + expiration,
        "iat": now,
        "iss": api.auth.issuers.first().cloned().unwrap_or_default(),
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": k8s,
        "nbf": now,
        "sub": format!("system:serviceaccount:{ns}:{sa_name}"),
    });
    let token = signer.sign(&claims).map_err(ApiError::internal)?;
    spec["audiences"] = json!(audiences);
    spec["expirationSeconds"] = json!(expiration);
    let at =
        |secs: i64| time::OffsetDateTime::from_unix_timestamp(secs).map(crate::objects::timestamp).unwrap_or_default();
    let (created, expires) = (at(now), at(now + expiration));
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": sa_name, "namespace": ns, "creationTimestamp": created},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": expires},
    }))
}

/// `/.well-known/openid-configuration`, served when tokens are issued under an https issuer URL.
pub fn openid_configuration(api: &Api) -> Option<Value> {
    let issuer = api.auth.issuers.first().filter(|i| i.starts_with("https://"))?;
    api.auth.signer.as_ref()?;
    let mut algs: Vec<&str> =
        api.auth.sa_keys.iter().map(|k| if k.jwk()["kty"] == "RSA" { "RS256" } else { "ES256" }).collect();
    algs.sort();
    algs.dedup();
    Some(json!({
        "issuer": issuer,
        "jwks_uri": format!("https://{}/openid/v1/jwks", api.advertise),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
    }))
}

/// `/openid/v1/jwks`: every key tokens are verified with.
pub fn jwks(api: &Api) -> Option<Value> {
    openid_configuration(api)?;
    Some(json!({"keys": api.auth.sa_keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}))
}
