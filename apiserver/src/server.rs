//! HTTPS serving and the top-level dispatch: health, version, discovery, then resources.

use crate::api::{
    self, decode_body, error_response, json_response, list_object, negotiate, text_response, Api, Body, Format, Query,
    ResourceRequest,
};
use crate::auth::{forbidden, Decision, PeerCerts};
use crate::reviews::REQUEST_USER;
use apimachinery::ApiError;
use apiserver_auth::attributes::Attributes;
use apiserver_auth::UserInfo;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::sync::Arc;

/// What `/version` reports.
pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "35",
        "emulationMajor": "1",
        "emulationMinor": "35",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "34",
        "gitVersion": format!("v1.35.0+ferrokube.{}", option_env!("FERROKUBE_GIT_SHA").unwrap_or("dev")),
        "gitCommit": option_env!("FERROKUBE_GIT_SHA").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": format!("linux/{}", if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

async fn health(api: &Api, which: &str, check: Option<&str>, q: &Query) -> Response<Body> {
    let store_ok = api.store.current_revision().await.is_ok();
    let mut checks: Vec<(&str, bool)> = vec![("ping", true), ("log", true), ("etcd", store_ok)];
    if which == "readyz" {
        checks.push(("informer-sync", api.ready()));
        checks.push(("poststarthook/bootstrap-namespaces", api.ready()));
    }
    if let Some(name) = check {
        return match checks.iter().find(|(n, _)| *n == name || format!("poststarthook/{n}") == name) {
            Some((_, true)) => text_response(StatusCode::OK, "ok".into()),
            Some((n, false)) => {
                text_response(StatusCode::INTERNAL_SERVER_ERROR, format!("internal server error: {n} check failed\n"))
            }
            None => text_response(StatusCode::NOT_FOUND, "404 page not found\n".into()),
        };
    }
    let all_ok = checks.iter().all(|(_, ok)| *ok);
    let verbose = q.0.contains_key("verbose") || !all_ok;
    if !verbose {
        return text_response(StatusCode::OK, "ok".into());
    }
    let mut out = String::new();
    for (n, ok) in &checks {
        if *ok {
            out.push_str(&format!("[+]{n} ok\n"));
        } else {
            out.push_str(&format!("[-]{n} failed: reason withheld\n"));
        }
    }
    if all_ok {
        out.push_str(&format!("{which} check passed\n"));
        text_response(StatusCode::OK, out)
    } else {
        out.push_str(&format!("{which} check failed\n"));
        text_response(StatusCode::INTERNAL_SERVER_ERROR, out)
    }
}

/// Splits a resource path into the registry entry and the namespace/name/subresource.
fn resource_request<'a>(api: &'a Api, segments: &[&str]) -> Result<Option<ResourceRequest<'a>>, ApiError> {
    let (group, version, rest) = match segments {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Ok(None),
    };
    if rest.is_empty() {
        return Ok(None);
    }
    let (namespace, rest) = match rest {
        // A namespace's own subresources, as upstream routes them.
        ["namespaces", name, sub @ ("status" | "finalize")] if group.is_empty() => {
            (None, vec!["namespaces", *name, *sub])
        }
        ["namespaces", ns, r, tail @ ..] => {
            (Some(ns.to_string()), std::iter::once(r).chain(tail.iter()).copied().collect::<Vec<_>>())
        }
        _ => (None, rest.to_vec()),
    };
    let plural = rest[0];
    let Some(res) = api.registry.find(group, version, plural) else {
        return Err(ApiError::no_such_resource());
    };
    if res.namespaced != namespace.is_some() && !(res.namespaced && rest.len() == 1) {
        return Err(ApiError::no_such_resource());
    }
    let name = rest.get(1).map(|s| s.to_string());
    let sub = rest.get(2).map(|s| s.to_string());
    if let Some(s) = &sub {
        if !res.subresources.contains(&s.as_str()) || rest.len() > 3 {
            return Err(ApiError::no_such_resource());
        }
    }
    Ok(Some(ResourceRequest { res, namespace, name, sub }))
}

/// `fieldValidation` (default `Warn`, as upstream): unknown fields fail the request under `Strict`, and
/// come back as `Warning` headers under `Warn`.
fn field_validation(
    api: &Api,
    rr: &ResourceRequest<'_>,
    obj: &Value,
    raw: &[u8],
    q: &Query,
) -> Result<Vec<String>, ApiError> {
    let mode = q.get("fieldValidation").unwrap_or("Warn");
    match mode {
        "Ignore" => return Ok(Vec::new()),
        "Warn" | "Strict" => {}
        other => return Err(ApiError::bad_request(format!("fieldValidation parameter unsupported: {other}"))),
    }
    if rr.sub.is_some() {
        return Ok(Vec::new());
    }
    let res = rr.res;
    let mut unknown: Vec<String> = api
        .openapi
        .unknown_fields(res.group, res.version, res.kind, obj)
        .into_iter()
        .map(|f| format!("unknown field \"{}\"", f.trim_start_matches('.')))
        .collect();
    // Duplicate keys can only be seen in the raw JSON (decoding keeps the last one).
    if raw.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        unknown.extend(
            apimachinery::duplicates::duplicate_fields(raw).into_iter().map(|f| format!("duplicate field \"{f}\"")),
        );
    }
    if mode == "Strict" && !unknown.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            unknown.join(", "),
            kind = res.kind,
            version = res.version
        )));
    }
    Ok(unknown)
}

fn with_warnings(mut resp: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let value = format!("299 - {:?}", w);
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            resp.headers_mut().append("Warning", v);
        }
    }
    resp
}

async fn read_body(req: Request<Incoming>) -> Result<(http::request::Parts, Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let limited = Limited::new(body, api::MAX_BODY);
    match limited.collect().await {
        Ok(c) => Ok((parts, c.to_bytes())),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::request_entity_too_large("Request entity too large: limit is 3145728"))
        }
        Err(e) => Err(ApiError::bad_request(format!("reading the request body: {e}"))),
    }
}

/// `--max-requests-inflight` and `--max-mutating-requests-inflight`: past them requests get 429 with
/// `Retry-After`, as upstream's max-in-flight filter does. Watches are long-running and not counted.
pub struct Limits {
    readonly: Arc<tokio::sync::Semaphore>,
    mutating: Arc<tokio::sync::Semaphore>,
}

impl Limits {
    pub fn new(readonly: u32, mutating: u32) -> Self {
        let sem = |n: u32| {
            Arc::new(tokio::sync::Semaphore::new(if n == 0 { tokio::sync::Semaphore::MAX_PERMITS } else { n as usize }))
        };
        Limits { readonly: sem(readonly), mutating: sem(mutating) }
    }
}

/// What the metrics and limits need to know about a request.
struct RequestInfo {
    verb: &'static str,
    group: String,
    version: String,
    resource: String,
    sub: String,
    scope: &'static str,
    dry_run: bool,
    long_running: bool,
    mutating: bool,
}

fn request_info(api: &Api, method: &Method, path: &str, q: &Query) -> Option<RequestInfo> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rr = resource_request(api, &segments).ok().flatten()?;
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (method.as_str(), rr.name.is_some(), watch) {
        ("GET", _, true) => "WATCH",
        ("GET", false, false) => "LIST",
        ("GET", true, false) => "GET",
        ("POST", ..) => "POST",
        ("PUT", ..) => "PUT",
        ("PATCH", ..) => "PATCH",
        ("DELETE", ..) => "DELETE",
        _ => "OTHER",
    };
    let scope = match (rr.name.is_some(), rr.namespace.is_some()) {
        (true, _) => "resource",
        (false, true) => "namespace",
        (false, false) => "cluster",
    };
    Some(RequestInfo {
        verb,
        group: rr.res.group.to_string(),
        version: rr.res.version.to_string(),
        resource: rr.res.plural.to_string(),
        sub: rr.sub.clone().unwrap_or_default(),
        scope,
        dry_run: q.get("dryRun") == Some("All"),
        long_running: verb == "WATCH",
        mutating: matches!(verb, "POST" | "PUT" | "PATCH" | "DELETE"),
    })
}

/// Authentication, impersonation and authorization: the identity the request runs as, or the
/// 401/403 to answer with.
async fn secure(api: &Api, req: &Request<Incoming>) -> Result<UserInfo, ApiError> {
    let peer = req.extensions().get::<PeerCerts>();
    let user = api.auth.authenticate(api, req.headers(), peer).await?;
    let user = if req.headers().keys().any(|k| k.as_str().starts_with("impersonate-")) {
        api.auth.impersonate(api, user, req.headers()).await?
    } else {
        user
    };
    let q = Query::parse(req.uri().query());
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let field_name = q.get("fieldSelector").and_then(|f| f.strip_prefix("metadata.name=")).filter(|n| !n.contains(','));
    let attrs = Attributes::from_request(user.clone(), req.method().as_str(), req.uri().path(), watch, field_name);
    match api.auth.authorize(api, &attrs).await {
        Decision::Allow(_) => Ok(user),
        Decision::Deny(reason) => {
            tracing::debug!(user = %user.username, verb = %attrs.verb, path = %attrs.path, "forbidden");
            Err(forbidden(&attrs, &reason))
        }
    }
}

/// Serves one request.
pub async fn handle(api: Arc<Api>, req: Request<Incoming>) -> Response<Body> {
    // Warnings from authentication (a legacy token's) join those of admission and validation.
    let work = async {
        match secure(&api, &req).await {
            Ok(user) => {
                let resp = REQUEST_USER.scope(user, handle_authorized(api, req)).await;
                with_warnings(resp, &crate::admission::take_warnings())
            }
            Err(e) => error_response(&e),
        }
    };
    crate::admission::WARNINGS.scope(Default::default(), work).await
}

async fn handle_authorized(api: Arc<Api>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let q = Query::parse(req.uri().query());
    let info = request_info(&api, &method, &path, &q);
    let started = std::time::Instant::now();
    let long_running = info.as_ref().is_some_and(|i| i.long_running);
    let sem = if info.as_ref().is_some_and(|i| i.mutating) { &api.limits.mutating } else { &api.limits.readonly };
    let permit = if long_running { None } else { sem.clone().try_acquire_owned().ok() };
    let resp = if !long_running && permit.is_none() {
        error_response(&ApiError::too_many_requests(1))
    } else if long_running {
        dispatch(&api, req).await.unwrap_or_else(|e| error_response(&e))
    } else {
        // --request-timeout bounds every request but watches.
        match tokio::time::timeout(api.request_timeout, dispatch(&api, req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => error_response(&e),
            Err(_) => error_response(&ApiError::timeout(
                format!(
                    "Timeout: request did not complete within requested timeout - context deadline exceeded ({:?})",
                    api.request_timeout
                ),
                0,
            )),
        }
    };
    drop(permit);
    if let Some(i) = &info {
        api.metrics.observe(
            i.verb,
            i.dry_run,
            &i.group,
            &i.version,
            &i.resource,
            &i.sub,
            i.scope,
            resp.status().as_u16(),
            started.elapsed(),
        );
    }
    tracing::debug!(%method, %path, code = resp.status().as_u16(), elapsed = ?started.elapsed(), "request");
    resp
}

async fn metrics_response(api: &Api) -> Response<Body> {
    let mut seen = std::collections::HashSet::new();
    for r in &api.registry.resources {
        if !seen.insert(r.storage_path()) {
            continue;
        }
        let prefix = apiserver_storage::keys::list_prefix(&r.storage_path(), None);
        if let Ok(n) = api.store.count(&prefix).await {
            let label = if r.group.is_empty() { r.plural.to_string() } else { format!("{}.{}", r.plural, r.group) };
            api.metrics.storage_objects.with_label_values(&[&label]).set(n);
        }
    }
    let mut resp = text_response(StatusCode::OK, api.metrics.render());
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8".parse().expect("header"));
    resp
}

async fn dispatch(api: &Arc<Api>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let mut q = Query::parse(req.uri().query());
    match q.get("fieldManager") {
        Some(m) if m.chars().count() > 128 => {
            return Err(ApiError::bad_request(format!(
                "fieldManager: Too long: may not be more than 128 bytes (got {})",
                m.len()
            )))
        }
        Some(m) if !m.is_empty() => {}
        _ => {
            let ua = req.headers().get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
            q.0.insert("fieldManager".into(), apimachinery::managedfields::manager_from_user_agent(ua));
        }
    }
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let format = negotiate(req.headers());
    match segments.as_slice() {
        [h @ ("healthz" | "livez" | "readyz")] => return Ok(health(api, h, None, &q).await),
        [h @ ("healthz" | "livez" | "readyz"), check @ ..] => {
            return Ok(health(api, h, Some(&check.join("/")), &q).await)
        }
        ["version"] => return Ok(json_response(StatusCode::OK, &version_info(), Format::Json)),
        [".well-known", "openid-configuration"] => {
            return Ok(match crate::reviews::openid_configuration(api) {
                Some(doc) => json_response(StatusCode::OK, &doc, Format::Json),
                None => text_response(StatusCode::NOT_FOUND, "404 page not found\n".into()),
            })
        }
        ["openid", "v1", "jwks"] => {
            return Ok(match crate::reviews::jwks(api) {
                Some(doc) => api::body_response(
                    StatusCode::OK,
                    serde_json::to_vec(&doc).expect("json"),
                    "application/jwk-set+json",
                ),
                None => text_response(StatusCode::NOT_FOUND, "404 page not found\n".into()),
            })
        }
        ["metrics"] => return Ok(metrics_response(api).await),
        ["openapi", "v2"] => {
            let accept = req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("*/*");
            if !accept.split(',').any(|a| {
                let a = a.split(';').next().unwrap_or("").trim();
                a == "*/*" || a == "application/json" || a == "application/*"
            }) {
                return Err(ApiError::not_acceptable(accept));
            }
            let body = api.openapi_v2.get_or_init(|| serde_json::to_vec(&api.openapi.swagger_v2()).expect("json"));
            return Ok(api::body_response(StatusCode::OK, body.clone(), "application/json"));
        }
        ["openapi", "v3"] => return Ok(json_response(StatusCode::OK, &api.openapi.index(), Format::Json)),
        ["openapi", "v3", rest @ ..] => {
            return Ok(match api.openapi.group_version_doc(&rest.join("/")) {
                Some(doc) => json_response(StatusCode::OK, doc, Format::Json),
                None => text_response(StatusCode::NOT_FOUND, "404 page not found\n".into()),
            })
        }
        [] => {
            let paths =
                json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/metrics", "/readyz", "/version"]});
            return Ok(json_response(StatusCode::OK, &paths, Format::Json));
        }
        _ => {}
    }
    if req.method() == Method::GET {
        if matches!(segments.as_slice(), ["api"] | ["apis"]) && crate::discovery::wants_aggregated(req.headers()) {
            return Ok(crate::discovery::aggregated(api, segments == ["api"]));
        }
        if let Some(r) = api::route_discovery(api, &segments) {
            return Ok(r);
        }
    }
    let Some(rr) = resource_request(api, &segments)? else {
        return Ok(text_response(StatusCode::NOT_FOUND, "404 page not found\n".into()));
    };
    let method = req.method().clone();
    if rr.res.create_only() {
        if method != Method::POST || rr.name.is_some() {
            return Err(ApiError::method_not_supported(&rr.res.group_resource(), method.as_str()));
        }
        let (parts, body) = read_body(req).await?;
        let obj = decode_body(&parts.headers, &body)?;
        let user = crate::reviews::current_user().unwrap_or_else(UserInfo::anonymous);
        let out = crate::reviews::review(api, &rr, obj, &user).await?;
        return Ok(json_response(StatusCode::CREATED, &out, format));
    }
    let headers = req.headers().clone();
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method, rr.name.is_some(), rr.sub.as_deref()) {
        (Method::GET, false, _) if watch => api.watch(&rr, &q, format).await,
        (Method::GET, true, None) if watch => api.watch(&rr, &q, format).await,
        (Method::GET, false, _)
            if format == Format::Json
                && q.get("labelSelector").unwrap_or("").is_empty()
                && q.get("fieldSelector").unwrap_or("").is_empty()
                && !crate::strategy::converts(rr.res) =>
        {
            let (kvs, list_meta) = api.list_raw(&rr, &q).await?;
            let body = api::raw_list_body(rr.res, &kvs, &list_meta)?;
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header("Cache-Control", "no-cache, private")
                .body(http_body_util::BodyExt::boxed(http_body_util::Full::new(Bytes::from(body))))
                .expect("response builds"))
        }
        (Method::GET, false, _) => {
            let (items, list_meta) = api.list(&rr, &q).await?;
            Ok(match format {
                Format::Table => json_response(
                    StatusCode::OK,
                    &api::table(rr.res, &items, list_meta, q.get("includeObject").unwrap_or("")),
                    Format::Json,
                ),
                Format::PartialMetadata => {
                    let items: Vec<Value> = items.iter().map(api::partial_metadata).collect();
                    let list = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "items": items});
                    json_response(StatusCode::OK, &list, Format::Json)
                }
                _ => json_response(StatusCode::OK, &list_object(rr.res, items, list_meta), format),
            })
        }
        (_, true, Some(sub @ ("log" | "exec" | "attach" | "portforward"))) if rr.res.plural == "pods" => {
            // These are proxied to the kubelet's authenticated server (port 10250), which ferrokube's
            // kubelet does not serve yet: say so instead of answering with the pod.
            let _ = api.get(&rr, &q).await?;
            Err(ApiError::service_unavailable(format!(
                "pods/{sub} needs the kubelet's server on port 10250, which this kubelet does not serve yet"
            )))
        }
        (Method::GET, true, Some("scale")) => {
            let obj = api.get(&rr, &q).await?;
            Ok(json_response(StatusCode::OK, &crate::scale::to_scale(rr.res, &obj), format))
        }
        (Method::GET, true, _) => {
            let obj = api.get(&rr, &q).await?;
            Ok(match format {
                Format::Table => json_response(
                    StatusCode::OK,
                    &api::table(
                        rr.res,
                        std::slice::from_ref(&obj),
                        json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)}),
                        q.get("includeObject").unwrap_or(""),
                    ),
                    Format::Json,
                ),
                Format::PartialMetadata => json_response(StatusCode::OK, &api::partial_metadata(&obj), Format::Json),
                _ => json_response(StatusCode::OK, &obj, format),
            })
        }
        (Method::POST, false, None) => {
            let (parts, body) = read_body(req).await?;
            let obj = decode_body(&parts.headers, &body)?;
            let warnings = field_validation(api, &rr, &obj, &body, &q)?;
            let created = api.create(&rr, obj, &q).await?;
            Ok(with_warnings(json_response(StatusCode::CREATED, &created, format), &warnings))
        }
        (Method::POST, true, Some("token")) if rr.res.plural == "serviceaccounts" => {
            let (parts, body) = read_body(req).await?;
            let obj = if body.is_empty() { json!({}) } else { decode_body(&parts.headers, &body)? };
            let out = crate::reviews::token_request(api, &rr, obj).await?;
            Ok(json_response(StatusCode::CREATED, &out, format))
        }
        (Method::POST, true, Some("binding")) => {
            let (parts, body) = read_body(req).await?;
            let binding = decode_body(&parts.headers, &body)?;
            crate::scale::bind(api, &rr, &binding, &q).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                format,
            ))
        }
        (Method::PUT, true, Some("scale")) | (Method::PATCH, true, Some("scale")) => {
            let (parts, body) = read_body(req).await?;
            let obj = crate::scale::update_scale(api, &rr, &parts.headers, &body, &q).await?;
            Ok(json_response(StatusCode::OK, &crate::scale::to_scale(rr.res, &obj), format))
        }
        (Method::PUT, true, _) => {
            let (parts, body) = read_body(req).await?;
            let obj = decode_body(&parts.headers, &body)?;
            let warnings = field_validation(api, &rr, &obj, &body, &q)?;
            let updated = api.update(&rr, obj, &q).await?;
            Ok(with_warnings(json_response(StatusCode::OK, &updated, format), &warnings))
        }
        (Method::PATCH, true, _) => {
            let (_, body) = read_body(req).await?;
            let is_json_patch = headers
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|c| c.as_bytes().starts_with(b"application/json-patch"));
            let warnings = match serde_json::from_slice::<Value>(&body) {
                Ok(p) if !is_json_patch => field_validation(api, &rr, &p, &body, &q)?,
                _ => Vec::new(),
            };
            let patched = api.patch(&rr, &headers, &body, &q).await?;
            Ok(with_warnings(json_response(StatusCode::OK, &patched, format), &warnings))
        }
        (Method::DELETE, true, None) => {
            let (parts, body) = read_body(req).await?;
            let options = if body.is_empty() { json!({}) } else { decode_body(&parts.headers, &body)? };
            let (code, out) = api.delete(&rr, &options, &q).await?;
            Ok(json_response(code, &out, format))
        }
        (Method::DELETE, false, None) => {
            let (parts, body) = read_body(req).await?;
            let options = if body.is_empty() { json!({}) } else { decode_body(&parts.headers, &body)? };
            let (items, list_meta) = api.list(&rr, &q).await?;
            let mut deleted = Vec::new();
            for item in items {
                let one = ResourceRequest {
                    res: rr.res,
                    namespace: item.pointer("/metadata/namespace").and_then(Value::as_str).map(String::from),
                    name: Some(crate::objects::name(&item).to_string()),
                    sub: None,
                };
                match api.delete(&one, &options, &q).await {
                    Ok(_) => deleted.push(item),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(json_response(StatusCode::OK, &list_object(rr.res, deleted, list_meta), format))
        }
        (m, _, _) => Err(ApiError::method_not_supported(&rr.res.group_resource(), m.as_str())),
    }
}
