//! MutatingAdmissionWebhook and ValidatingAdmissionWebhook: the configured webhooks are called over
//! HTTPS with an `AdmissionReview` v1 (or v1beta1, if that is all a webhook speaks). Mutating webhooks
//! run one after the other, each seeing the previous one's patch, and those with
//! `reinvocationPolicy: IfNeeded` once more when a later webhook changed the object; validating
//! webhooks run concurrently. A webhook that cannot be called, times out or answers nonsense fails the
//! request (500) unless its `failurePolicy` is `Ignore`; a denial fails it with the webhook's `Status`.
//!
//! Which webhooks match and what their answers mean is decided in `apiserver_admission::webhook`; this
//! module resolves the client configuration (a URL, or a Service reached at its ClusterIP with the
//! name `<service>.<namespace>.svc`), keeps idle HTTP/1.1 connections per endpoint for reuse, and
//! records upstream's webhook metrics.

use crate::admission::{warn, ResourceInfo};
use crate::api::Api;
use crate::auth::get_object;
use crate::reviews::current_user;
use apimachinery::ApiError;
use apiserver_admission::webhook::{self as rules, Hook, Request, Verdict};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest webhook answer read (upstream's limit for webhook responses).
const MAX_RESPONSE: usize = 3 * 1024 * 1024;
/// Idle connections kept per webhook endpoint.
const MAX_IDLE: usize = 8;

/// The HTTPS client webhooks are called with: TLS configurations per CA bundle and idle connections
/// per endpoint, both reused across requests.
#[derive(Default)]
pub struct Client {
    tls: Mutex<HashMap<String, Arc<ClientConfig>>>,
    idle: Mutex<HashMap<String, Vec<SendRequest<Full<Bytes>>>>>,
}

/// Where one call goes.
struct Target {
    /// The URL as errors show it (with upstream's `?timeout=` query).
    url: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    path_and_query: String,
    ca_bundle: String,
}

impl Target {
    fn pool_key(&self) -> String {
        format!("{}:{}|{:?}|{}", self.host, self.port, self.server_name, self.ca_bundle)
    }
}

fn with_timeout_query(path_and_query: &str, timeout: u64) -> String {
    let sep = if path_and_query.contains('?') { '&' } else { '?' };
    format!("{path_and_query}{sep}timeout={timeout}s")
}

async fn target(api: &Api, client: &Value, timeout: u64) -> Result<Target, String> {
    let ca_bundle = client.get("caBundle").and_then(Value::as_str).unwrap_or("").to_string();
    if let Some(url) = client.get("url").and_then(Value::as_str) {
        let uri: http::Uri = url.parse().map_err(|e| format!("invalid url {url:?}: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("webhook url {url:?} must use the https scheme"));
        }
        let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_string();
        let server_name = ServerName::try_from(host.clone()).map_err(|e| format!("invalid host {host:?}: {e}"))?;
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let path_and_query = with_timeout_query(if path.is_empty() { "/" } else { path }, timeout);
        let port = uri.port_u16().unwrap_or(443);
        let shown = format!("https://{}{}", uri.authority().map(|a| a.as_str()).unwrap_or(""), path_and_query);
        return Ok(Target { url: shown, host, port, server_name, path_and_query, ca_bundle });
    }
    let svc = client.get("service").ok_or("webhook has neither a url nor a service")?;
    let text = |k: &str| svc.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (name, namespace) = (text("name"), text("namespace"));
    let port = svc.get("port").and_then(Value::as_u64).unwrap_or(443) as u16;
    let path = Some(text("path")).filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into());
    let dns = format!("{name}.{namespace}.svc");
    let path_and_query = with_timeout_query(&path, timeout);
    let url = format!("https://{dns}:{port}{path_and_query}");
    let Some(service) = get_object(api, "", "services", Some(&namespace), &name).await else {
        return Err(format!("service \"{name}\" not found"));
    };
    let host = match service.pointer("/spec/type").and_then(Value::as_str) {
        Some("ExternalName") => service.pointer("/spec/externalName").and_then(Value::as_str).unwrap_or("").to_string(),
        _ => service.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("").to_string(),
    };
    if host.is_empty() || host == "None" {
        return Err(format!("service {namespace}/{name} has no cluster IP"));
    }
    let server_name = ServerName::try_from(dns).map_err(|e| e.to_string())?;
    Ok(Target { url, host, port, server_name, path_and_query, ca_bundle })
}

/// An OS error as Go words it (`connection refused`), without Rust's `(os error N)` suffix.
fn os_error_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl Client {
    fn tls_config(&self, ca_bundle: &str) -> Result<Arc<ClientConfig>, String> {
        if let Some(c) = self.tls.lock().expect("tls cache").get(ca_bundle) {
            return Ok(c.clone());
        }
        let mut roots = rustls::RootCertStore::empty();
        if ca_bundle.is_empty() {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        } else {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(ca_bundle)
                .map_err(|e| format!("caBundle is not base64: {e}"))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots.add(cert.map_err(|e| format!("caBundle: {e}"))?).map_err(|e| format!("caBundle: {e}"))?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        self.tls.lock().expect("tls cache").insert(ca_bundle.to_string(), config.clone());
        Ok(config)
    }

    async fn connect(&self, t: &Target) -> Result<SendRequest<Full<Bytes>>, String> {
        let config = self.tls_config(&t.ca_bundle)?;
        let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| format!("dial tcp {}:{}: connect: {}", t.host, t.port, os_error_text(&e)))?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(t.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    async fn send(send: &mut SendRequest<Full<Bytes>>, t: &Target, body: Bytes) -> Result<(u16, Bytes), hyper::Error> {
        send.ready().await?;
        let host = match &t.server_name {
            ServerName::DnsName(d) => d.as_ref().to_string(),
            _ => t.host.clone(),
        };
        let req = http::Request::post(&t.path_and_query)
            .header(http::header::HOST, format!("{host}:{}", t.port))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, */*")
            .body(Full::new(body))
            .expect("request");
        let resp = send.send_request(req).await?;
        let code = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE).collect().await;
        match body {
            Ok(b) => Ok((code, b.to_bytes())),
            // An answer over the limit reads as an empty (invalid) one.
            Err(_) => Ok((code, Bytes::new())),
        }
    }

    /// POSTs `body` to the target and returns the status code and answer. A pooled connection the
    /// webhook closed in the meantime is replaced by a new one.
    async fn post(&self, t: &Target, body: Bytes) -> Result<(u16, Bytes), String> {
        let key = t.pool_key();
        let pooled = self.idle.lock().expect("pool").get_mut(&key).and_then(Vec::pop);
        if let Some(mut s) = pooled.filter(|s| !s.is_closed()) {
            match Self::send(&mut s, t, body.clone()).await {
                Ok(r) => {
                    self.put_back(key, s);
                    return Ok(r);
                }
                Err(e) if e.is_closed() || e.is_canceled() => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        let mut s = self.connect(t).await?;
        let r = Self::send(&mut s, t, body).await.map_err(|e| e.to_string())?;
        self.put_back(key, s);
        Ok(r)
    }

    fn put_back(&self, key: String, s: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().expect("pool");
        let list = idle.entry(key).or_default();
        if list.len() < MAX_IDLE {
            list.push(s);
        }
    }
}

/// One webhook call's outcome: not called (rules or selectors did not match, or a failure with
/// `failurePolicy: Ignore`), or the webhook's verdict.
enum Called {
    Skipped,
    Answered(Verdict),
}

/// What both kinds of webhook share about the request.
struct Context<'a> {
    r: &'a ResourceInfo<'a>,
    operation: &'a str,
    user: Value,
    options: Value,
    /// The request namespace's labels (`None`: the namespace does not exist), read once for every
    /// webhook whose namespaceSelector needs them.
    ns_labels: tokio::sync::OnceCell<Option<BTreeMap<String, String>>>,
}

impl<'a> Context<'a> {
    fn new(r: &'a ResourceInfo<'a>, operation: &'a str, options: Value) -> Self {
        let user = current_user().map(|u| serde_json::to_value(u).unwrap_or_default()).unwrap_or_else(|| json!({}));
        Context { r, operation, user, options, ns_labels: tokio::sync::OnceCell::new() }
    }

    async fn namespace_labels(&self, api: &Api, ns: &str) -> Option<&BTreeMap<String, String>> {
        self.ns_labels
            .get_or_init(|| async {
                get_object(api, "", "namespaces", None, ns)
                    .await
                    .map(|o| crate::objects::labels(&o).into_iter().collect())
            })
            .await
            .as_ref()
    }

    fn request<'b>(&'b self, object: Option<&'b Value>, old: Option<&'b Value>) -> Request<'b> {
        let res = self.r.res;
        let name =
            object.or(old).and_then(|o| o.pointer("/metadata/name")).and_then(Value::as_str).unwrap_or(self.r.name);
        Request {
            operation: self.operation,
            group: res.group,
            version: res.version,
            kind: res.kind,
            resource: res.plural,
            sub_resource: self.r.sub.unwrap_or(""),
            namespaced: res.namespaced,
            namespace: self.r.namespace.unwrap_or(""),
            name,
            object,
            old_object: old,
            dry_run: self.r.dry_run,
            user: self.user.clone(),
            options: self.options.clone(),
        }
    }
}

/// The webhooks of one kind of configuration, when its plugin is on.
async fn configured(api: &Api, plugin: &str, plural: &str) -> Vec<Hook> {
    if !api.admission.plugins.on(plugin) {
        return Vec::new();
    }
    let configs = api.list_cached("admissionregistration.k8s.io", plural, None, false).await;
    rules::hooks(&configs)
}

/// Calls one webhook if it applies to the request, applying its failure policy to call errors.
async fn call(api: &Api, ctx: &Context<'_>, hook: &Hook, mutating: bool, req: Request<'_>) -> Result<Called, ApiError> {
    if req.exempt() || !rules::rules_match(hook, &req) {
        return Ok(Called::Skipped);
    }
    let kind = if mutating { "admit" } else { "validating" };
    let ns_labels = match req.selector_namespace() {
        Some(ns) if hook.needs_namespace(&req) => ctx.namespace_labels(api, ns).await,
        _ => None,
    };
    let selected = hook.namespace_matches(&req, ns_labels).and_then(|ns_ok| Ok(ns_ok && hook.object_matches(&req)?));
    match selected {
        Ok(true) => {}
        Ok(false) => return Ok(Called::Skipped),
        Err(e) => return failed(api, hook, kind, ctx.operation, e),
    }
    let uid = uuid::Uuid::new_v4().to_string();
    let review = rules::review(hook, &req, &uid);
    let started = Instant::now();
    let answer = async {
        let t = target(api, &hook.client, hook.timeout_seconds).await?;
        let body = Bytes::from(serde_json::to_vec(&review).expect("json"));
        let url = t.url.clone();
        let (code, body) =
            match tokio::time::timeout(Duration::from_secs(hook.timeout_seconds), api.webhooks.post(&t, body)).await {
                Err(_) => return Err(format!("failed to call webhook: Post \"{url}\": context deadline exceeded")),
                Ok(Err(e)) => return Err(format!("failed to call webhook: Post \"{url}\": {e}")),
                Ok(Ok(r)) => r,
            };
        if !(200..300).contains(&code) {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_string();
            return Err(format!(
                "failed to call webhook: an error on the server (\"{text}\") has prevented the request from succeeding"
            ));
        }
        Ok((code, rules::verdict(hook, &body, &uid, mutating)?))
    }
    .await;
    let m = &api.metrics;
    let elapsed = started.elapsed().as_secs_f64();
    match answer {
        Err(e) => {
            m.webhook_duration.with_label_values(&[&hook.name, kind, ctx.operation, "true"]).observe(elapsed);
            m.webhook_requests.with_label_values(&[&hook.name, kind, ctx.operation, "0", "true"]).inc();
            m.webhook_rejections
                .with_label_values(&[&hook.name, kind, ctx.operation, "calling_webhook_error", "0"])
                .inc();
            failed(api, hook, kind, ctx.operation, e)
        }
        Ok((code, verdict)) => {
            let rejected = matches!(verdict, Verdict::Denied { .. });
            let r = if rejected { "true" } else { "false" };
            m.webhook_duration.with_label_values(&[&hook.name, kind, ctx.operation, r]).observe(elapsed);
            m.webhook_requests.with_label_values(&[&hook.name, kind, ctx.operation, &code.to_string(), r]).inc();
            if let Verdict::Denied { status, .. } = &verdict {
                let c = status.get("code").and_then(Value::as_u64).unwrap_or(400).min(600).to_string();
                m.webhook_rejections.with_label_values(&[&hook.name, kind, ctx.operation, "no_error", &c]).inc();
            }
            let (Verdict::Allowed { warnings, .. } | Verdict::Denied { warnings, .. }) = &verdict;
            for w in warnings {
                warn(w.clone());
            }
            Ok(Called::Answered(verdict))
        }
    }
}

/// A webhook that could not be called: the request fails (500) under `failurePolicy: Fail` and goes
/// on under `Ignore`.
fn failed(api: &Api, hook: &Hook, kind: &str, operation: &str, why: String) -> Result<Called, ApiError> {
    let message = format!("failed calling webhook \"{}\": {why}", hook.name);
    if hook.fail_closed {
        tracing::warn!(webhook = %hook.name, operation, "{message}; failing closed");
        return Err(ApiError::internal(message));
    }
    tracing::warn!(webhook = %hook.name, operation, "{message}; failing open");
    api.metrics.webhook_fail_open.with_label_values(&[&hook.name, kind]).inc();
    Ok(Called::Skipped)
}

/// The mutating webhooks on a create or update (`obj` is the object to store) or a delete (`obj`
/// is `None`, `old` the object being deleted; a patch is then an error).
pub async fn mutate(
    api: &Api,
    r: &ResourceInfo<'_>,
    operation: &str,
    mut obj: Option<&mut Value>,
    old: Option<&Value>,
    options: Value,
) -> Result<(), ApiError> {
    let hooks = configured(api, "MutatingAdmissionWebhook", "mutatingwebhookconfigurations").await;
    if hooks.is_empty() {
        return Ok(());
    }
    let ctx = Context::new(r, operation, options);
    let mut invoked = vec![false; hooks.len()];
    let mut last_change = None;
    for round in 0..2 {
        for (i, hook) in hooks.iter().enumerate() {
            if round == 1 && !(hook.reinvoke && invoked[i] && last_change.is_some_and(|l| i < l)) {
                continue;
            }
            let snapshot = obj.as_deref().cloned();
            let verdict = match call(api, &ctx, hook, true, ctx.request(snapshot.as_ref(), old)).await? {
                Called::Skipped => continue,
                Called::Answered(v) => v,
            };
            invoked[i] = true;
            let patch = match verdict {
                Verdict::Denied { status, .. } => return Err(ApiError::from_status(&status)),
                Verdict::Allowed { patch: None, .. } => continue,
                Verdict::Allowed { patch: Some(p), .. } => p,
            };
            let Some(target) = obj.as_deref_mut() else {
                return Err(ApiError::internal(format!(
                    "admission webhook \"{}\" attempted to modify the object, which is not supported for this operation",
                    hook.name
                )));
            };
            let mut patched = target.clone();
            json_patch::patch(&mut patched, &patch).map_err(ApiError::internal)?;
            // The patched object is read back as upstream decodes it: with defaults for what it added.
            crate::defaults::apply(r.res, &mut patched);
            if patched != *target {
                *target = patched;
                if round == 0 {
                    last_change = Some(i);
                }
            }
        }
        if last_change.is_none() {
            break;
        }
    }
    Ok(())
}

/// The validating webhooks, called concurrently; the first denial or failure in webhook order fails
/// the request.
pub async fn validate(
    api: &Api,
    r: &ResourceInfo<'_>,
    operation: &str,
    obj: Option<&Value>,
    old: Option<&Value>,
    options: Value,
) -> Result<(), ApiError> {
    let hooks = configured(api, "ValidatingAdmissionWebhook", "validatingwebhookconfigurations").await;
    if hooks.is_empty() {
        return Ok(());
    }
    let ctx = Context::new(r, operation, options);
    let calls = hooks.iter().map(|h| call(api, &ctx, h, false, ctx.request(obj, old)));
    for result in futures::future::join_all(calls).await {
        match result? {
            Called::Answered(Verdict::Denied { status, .. }) => return Err(ApiError::from_status(&status)),
            Called::Answered(Verdict::Allowed { .. }) | Called::Skipped => {}
        }
    }
    Ok(())
}
