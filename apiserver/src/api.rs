//! The request path: routing by URL, content negotiation, and the generic REST handlers that every
//! resource in the registry shares.

use crate::objects::{self, meta, meta_mut, name};
use crate::registry::{Registry, Resource};
use crate::{discovery, tables};
use apimachinery::fields::FieldSelector;
use apimachinery::labels::Selector;
use apimachinery::status::success_status;
use apimachinery::ApiError;
use apiserver_storage::keys::{decode_continue, encode_continue, list_prefix, object_key};
use apiserver_storage::{
    EventKind, KeyValue, ListOptions, Store, StoreError, WatchCache, WatchCacheOptions, WatchEvent, WatchStart,
};
use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderMap, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub type Body = BoxBody<Bytes, Infallible>;

/// Request bodies above this are refused with 413, as upstream's 3 MiB limit.
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// Objects above this are refused, as etcd's default request limit makes upstream do.
pub const MAX_OBJECT: usize = 1536 * 1024;

pub struct Api {
    pub store: Arc<dyn Store>,
    pub registry: Registry,
    caches: Mutex<HashMap<String, Arc<WatchCache>>>,
    pub ready: AtomicBool,
    pub advertise: String,
    pub min_request_timeout: Duration,
    /// `--request-timeout`.
    pub request_timeout: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub limits: crate::server::Limits,
    pub openapi: apiserver_openapi::Spec,
    /// `/openapi/v2`, serialized on first request.
    pub openapi_v2: std::sync::OnceLock<Vec<u8>>,
    /// Service ClusterIP and NodePort ranges (None: no allocation, for tests of the generic machinery).
    pub services: Option<crate::services::ServiceNetwork>,
    /// Authentication and authorization (the default: anonymous requests, everything allowed).
    pub auth: Arc<crate::auth::Auth>,
    /// The admission plugins and their configuration.
    pub admission: Arc<crate::admission::Admission>,
    /// The HTTPS client admission webhooks are called with.
    pub webhooks: crate::webhook::Client,
    /// One lock per namespace that has quotas: this server's charges to them queue instead of racing
    /// each other's compare-and-swaps.
    pub quota_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Default)]
pub struct Query(pub HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        Query(form_urlencoded::parse(q.unwrap_or("").as_bytes()).into_owned().collect())
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }
}

/// How to write a response body.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Json,
    Yaml,
    Table,
    PartialMetadata,
}

pub fn negotiate(headers: &HeaderMap) -> Format {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    for part in accept.split(',') {
        let p = part.trim();
        if p.contains("as=Table") && p.contains("g=meta.k8s.io") {
            return Format::Table;
        }
        if p.contains("as=PartialObjectMetadata") {
            return Format::PartialMetadata;
        }
        if p.starts_with("application/json") || p.starts_with("*/*") {
            return Format::Json;
        }
        if p.starts_with("application/yaml") {
            return Format::Yaml;
        }
    }
    Format::Json
}

pub fn body_response(code: StatusCode, bytes: Vec<u8>, content_type: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, content_type)
        .header("Cache-Control", "no-cache, private")
        .body(Full::new(Bytes::from(bytes)).boxed())
        .expect("response builds")
}

pub fn json_response(code: StatusCode, value: &Value, format: Format) -> Response<Body> {
    match format {
        Format::Yaml => {
            body_response(code, serde_yaml_ng::to_string(value).unwrap_or_default().into_bytes(), "application/yaml")
        }
        _ => {
            let mut bytes = serde_json::to_vec(value).expect("json serializes");
            bytes.push(b'\n');
            body_response(code, bytes, "application/json")
        }
    }
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut resp = json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
        Format::Json,
    );
    if let Some(secs) = e.retry_after {
        resp.headers_mut().insert("Retry-After", secs.into());
    }
    resp
}

pub fn text_response(code: StatusCode, text: String) -> Response<Body> {
    body_response(code, text.into_bytes(), "text/plain; charset=utf-8")
}

/// A request for a resource: `/api/v1/namespaces/ns/pods/name/status` and the like.
pub struct ResourceRequest<'a> {
    pub res: &'a Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

fn store_error(e: StoreError, res: &Resource, name: &str) -> ApiError {
    let gr = res.group_resource();
    match e {
        StoreError::NotFound { .. } => ApiError::not_found(&gr, name),
        StoreError::AlreadyExists { .. } => ApiError::already_exists(&gr, name),
        StoreError::Conflict { .. } => ApiError::conflict(&gr, name),
        StoreError::Compacted { requested, compacted } => {
            ApiError::resource_expired(format!("too old resource version: {requested} ({compacted})"))
        }
        StoreError::FutureRevision { .. } => ApiError::timeout("Too large resource version", 1),
        StoreError::WatcherTooSlow | StoreError::CacheReset => {
            ApiError::resource_expired("watch closed; resume from the last resourceVersion")
        }
        StoreError::Unavailable(m) => ApiError::service_unavailable(m),
        other => ApiError::internal(other),
    }
}

fn parse_rv(s: Option<&str>) -> Result<Option<i64>, ApiError> {
    match s {
        None | Some("") => Ok(None),
        Some(v) => {
            v.parse::<i64>().map(Some).map_err(|_| ApiError::bad_request(format!("invalid resource version: {v:?}")))
        }
    }
}

fn decode_object(res: &Resource, kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    crate::strategy::from_storage(res, &mut obj);
    Ok(objects::with_resource_version(obj, kv.mod_revision))
}

/// Decodes a request body as JSON or YAML according to its content type.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let base = ct.split(';').next().unwrap_or("").trim();
    match base {
        "application/json" | "" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml_ng::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}"))),
        "application/vnd.kubernetes.protobuf" => apiserver_protobuf::decode_object(body)
            .map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

impl Api {
    pub fn new(store: Arc<dyn Store>, advertise: String, metrics: Arc<crate::metrics::Metrics>) -> Self {
        let registry = Registry::new();
        let rows: Vec<apiserver_openapi::ResourceRow> =
            registry.resources.iter().map(|r| (r.group, r.version, r.kind, r.plural, r.namespaced)).collect();
        let openapi = apiserver_openapi::Spec::build(&rows);
        Api {
            openapi,
            openapi_v2: std::sync::OnceLock::new(),
            services: None,
            metrics,
            limits: crate::server::Limits::new(400, 200),
            store,
            registry,
            caches: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            advertise,
            min_request_timeout: Duration::from_secs(1800),
            request_timeout: Duration::from_secs(60),
            auth: Arc::new(crate::auth::Auth::default()),
            admission: Arc::new(crate::admission::Admission::default()),
            webhooks: crate::webhook::Client::default(),
            quota_locks: Default::default(),
        }
    }

    /// The watch cache for a resource's storage prefix, started on first use.
    pub fn cache(&self, res: &Resource) -> Arc<WatchCache> {
        let prefix = list_prefix(&res.storage_path(), None);
        let mut caches = self.caches.lock().unwrap();
        caches
            .entry(prefix.clone())
            .or_insert_with(|| Arc::new(WatchCache::new(self.store.clone(), prefix, WatchCacheOptions::default())))
            .clone()
    }

    /// The objects of a resource (in one namespace, when given) from its watch cache; `fresh` waits
    /// until the cache has caught up with the store's current revision.
    pub async fn list_cached(&self, group: &str, plural: &str, namespace: Option<&str>, fresh: bool) -> Vec<Value> {
        let Some(res) = self.registry.resources.iter().find(|r| r.group == group && r.plural == plural) else {
            return Vec::new();
        };
        let min = if fresh { self.store.current_revision().await.unwrap_or(0) } else { 0 };
        let prefix = list_prefix(&res.storage_path(), namespace.filter(|n| !n.is_empty()));
        let Ok((items, _)) = self.cache(res).list(&prefix, min).await else { return Vec::new() };
        items
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .map(|mut o| {
                crate::strategy::from_storage(res, &mut o);
                o
            })
            .collect()
    }

    fn key(&self, rr: &ResourceRequest, name: &str) -> String {
        object_key(&rr.res.storage_path(), rr.namespace.as_deref(), name)
    }

    fn list_key(&self, rr: &ResourceRequest) -> String {
        list_prefix(&rr.res.storage_path(), rr.namespace.as_deref())
    }

    async fn read(&self, rr: &ResourceRequest<'_>, name: &str) -> Result<(Value, i64), ApiError> {
        let got = self.store.get(&self.key(rr, name), None).await.map_err(|e| store_error(e, rr.res, name))?;
        let kv = got.kv.ok_or_else(|| ApiError::not_found(&rr.res.group_resource(), name))?;
        Ok((decode_object(rr.res, &kv)?, kv.mod_revision))
    }

    /// Namespaced writes need an existing, non-terminating namespace.
    async fn check_namespace(&self, rr: &ResourceRequest<'_>, name: &str) -> Result<(), ApiError> {
        let Some(ns) = rr.namespace.as_deref() else { return Ok(()) };
        let ns_res = self.registry.find("", "v1", "namespaces").expect("namespaces registered");
        let key = object_key(&ns_res.storage_path(), None, ns);
        let got = self.store.get(&key, None).await.map_err(|e| store_error(e, ns_res, ns))?;
        let Some(kv) = got.kv else {
            return Err(ApiError::not_found(&ns_res.group_resource(), ns));
        };
        let obj = decode_object(ns_res, &kv)?;
        if meta(&obj).get("deletionTimestamp").is_some() {
            return Err(ApiError::forbidden(
                &rr.res.group_resource(),
                name,
                &format!("unable to create new content in namespace {ns} because it is being terminated"),
            ));
        }
        Ok(())
    }

    pub async fn get(&self, rr: &ResourceRequest<'_>, q: &Query) -> Result<Value, ApiError> {
        let name = rr.name.as_deref().unwrap_or_default();
        if q.get("resourceVersion") == Some("0") {
            let (kv, _) =
                self.cache(rr.res).get(&self.key(rr, name), 0).await.map_err(|e| store_error(e, rr.res, name))?;
            let kv = kv.ok_or_else(|| ApiError::not_found(&rr.res.group_resource(), name))?;
            return decode_object(rr.res, &kv);
        }
        Ok(self.read(rr, name).await?.0)
    }

    fn selectors(&self, res: &Resource, q: &Query) -> Result<(Selector, FieldSelector), ApiError> {
        let labels =
            Selector::parse(q.get("labelSelector").unwrap_or("")).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        for f in fields.fields() {
            if !crate::strategy::field_selectable(res, f) {
                return Err(ApiError::bad_request(format!("field label not supported: {f}")));
            }
        }
        Ok((labels, fields))
    }

    fn matches(res: &Resource, obj: &Value, labels: &Selector, fields: &FieldSelector) -> bool {
        if !labels.is_empty() && !labels.matches(&objects::labels(obj)) {
            return false;
        }
        if fields.is_empty() {
            return true;
        }
        let set: BTreeMap<String, String> =
            fields.fields().map(|f| (f.to_string(), crate::strategy::field(res, obj, f))).collect();
        fields.matches(&set)
    }

    /// A list: from the watch cache for `resourceVersion=0` / NotOlderThan, else a consistent read from
    /// storage, paginated with `limit`/`continue`.
    pub async fn list(&self, rr: &ResourceRequest<'_>, q: &Query) -> Result<(Vec<Value>, Value), ApiError> {
        let (labels, fields) = self.selectors(rr.res, q)?;
        let unfiltered = labels.is_empty() && fields.is_empty();
        self.list_with(rr, q, unfiltered, |kv| {
            let obj = decode_object(rr.res, kv)?;
            Ok(Self::matches(rr.res, &obj, &labels, &fields).then_some(obj))
        })
        .await
    }

    /// A list whose items are the stored bytes, for responses that need no selector, conversion or
    /// other per-object work: each item is spliced (top level and metadata only) instead of decoded
    /// and encoded whole.
    pub async fn list_raw(&self, rr: &ResourceRequest<'_>, q: &Query) -> Result<(Vec<KeyValue>, Value), ApiError> {
        self.list_with(rr, q, true, |kv| Ok(Some(kv.clone()))).await
    }

    /// Lists from the watch cache or the store (see [`Api::list`]); `take` decides what each stored item
    /// becomes, or drops it.
    async fn list_with<T>(
        &self,
        rr: &ResourceRequest<'_>,
        q: &Query,
        unfiltered: bool,
        mut take: impl FnMut(&KeyValue) -> Result<Option<T>, ApiError>,
    ) -> Result<(Vec<T>, Value), ApiError> {
        let prefix = self.list_key(rr);
        let rv = q.get("resourceVersion").unwrap_or("");
        let rv_match = q.get("resourceVersionMatch").unwrap_or("");
        let limit = q.get("limit").and_then(|l| l.parse::<i64>().ok()).filter(|l| *l > 0);
        let from_cache =
            q.get("continue").is_none() && (rv == "0" || (!rv.is_empty() && rv_match != "Exact") && limit.is_none());
        if from_cache {
            let min = parse_rv(Some(rv))?.unwrap_or(0);
            let (kvs, rev) = self.cache(rr.res).list(&prefix, min).await.map_err(|e| store_error(e, rr.res, ""))?;
            let mut items = Vec::new();
            for kv in &kvs {
                items.extend(take(kv)?);
            }
            return Ok((items, json!({"resourceVersion": rev.to_string()})));
        }
        let (mut start, mut revision) = (None, None);
        if let Some(token) = q.get("continue") {
            let (s, r) = decode_continue(token, &prefix).map_err(|e| ApiError::bad_request(e.to_string()))?;
            start = Some(s);
            revision = Some(r);
        } else if rv_match == "Exact" {
            revision = parse_rv(Some(rv))?;
        }
        let mut items = Vec::new();
        let mut meta_out = json!({});
        loop {
            let page = self
                .store
                .list(&prefix, ListOptions { revision, limit, start_key: start.clone() })
                .await
                .map_err(|e| match e {
                    StoreError::Compacted { .. } if q.get("continue").is_some() => ApiError::resource_expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    ),
                    e => store_error(e, rr.res, ""),
                })?;
            revision = Some(page.revision);
            for kv in &page.items {
                items.extend(take(kv)?);
            }
            meta_out["resourceVersion"] = json!(page.revision.to_string());
            match (page.more, limit) {
                (true, Some(l)) if (items.len() as i64) < l => {
                    let mut next = page.items.last().expect("more implies items").key.clone();
                    next.push('\0');
                    start = Some(next);
                }
                (true, _) => {
                    let last = &page.items.last().expect("more implies items").key;
                    meta_out["continue"] = json!(encode_continue(last, &prefix, page.revision));
                    if unfiltered {
                        meta_out["remainingItemCount"] = json!(page.remaining);
                    }
                    break;
                }
                (false, _) => break,
            }
        }
        Ok((items, meta_out))
    }

    pub async fn create(&self, rr: &ResourceRequest<'_>, obj: Value, q: &Query) -> Result<Value, ApiError> {
        let mut obj = self.prepare_new(rr, obj, Some(q)).await?;
        self.track_fields(rr, None, &mut obj, q);
        if q.get("dryRun") == Some("All") {
            return Ok(obj);
        }
        let is_service = rr.res.group.is_empty() && rr.res.kind == "Service";
        if is_service {
            // An existing Service is "already exists", not "its IP is taken".
            let key = self.key(rr, name(&obj));
            if self.store.get(&key, None).await.map_err(|e| store_error(e, rr.res, name(&obj)))?.kv.is_some() {
                return Err(ApiError::already_exists(&rr.res.group_resource(), name(&obj)));
            }
        }
        let allocated = if is_service { Some(crate::services::allocate(self, &mut obj).await?) } else { None };
        let result = self.store_new(rr, obj).await;
        if let (Err(_), Some(a)) = (&result, allocated) {
            crate::services::rollback(self, a).await;
        }
        result
    }

    /// A create without side effects on other objects (used for the objects allocations are made of).
    pub(crate) async fn create_plain(&self, rr: &ResourceRequest<'_>, obj: Value) -> Result<Value, ApiError> {
        let obj = self.prepare_new(rr, obj, None).await?;
        self.store_new(rr, obj).await
    }

    /// Defaulting, the namespace check, validation and (for a client's request, `q` given) admission,
    /// which every create goes through.
    async fn prepare_new(
        &self,
        rr: &ResourceRequest<'_>,
        mut obj: Value,
        q: Option<&Query>,
    ) -> Result<Value, ApiError> {
        // Errors about a create that generates its name speak of the prefix, as upstream's.
        let requested = match meta(&obj).get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => meta(&obj).get("generateName").and_then(Value::as_str).unwrap_or_default().to_string(),
        };
        objects::prepare_create(rr.res, &mut obj, rr.namespace.as_deref())?;
        self.check_types(rr.res, &obj)?;
        crate::strategy::prepare_create(rr.res, &mut obj);
        self.check_namespace(rr, name(&obj)).await?;
        let info = crate::admission::ResourceInfo {
            res: rr.res,
            namespace: rr.namespace.as_deref(),
            sub: rr.sub.as_deref(),
            name: &requested,
            dry_run: q.is_some_and(|q| q.get("dryRun") == Some("All")),
        };
        if q.is_some() {
            crate::admission::mutate(self, &info, &mut obj, None).await?;
        }
        objects::validate_meta(rr.res, &obj)?;
        crate::strategy::validate(rr.res, &obj, None)?;
        if q.is_some() {
            crate::admission::validate(self, &info, &obj, None).await?;
        }
        objects::drop_empty_metadata(&mut obj);
        Ok(obj)
    }

    async fn store_new(&self, rr: &ResourceRequest<'_>, mut obj: Value) -> Result<Value, ApiError> {
        let generated = meta(&obj).get("generateName").is_some() && rr.name.is_none();
        for attempt in 0..8 {
            let mut stored = obj.clone();
            objects::strip_for_storage(&mut stored);
            let external = stored.clone();
            crate::strategy::to_storage(rr.res, &mut stored);
            let bytes = serde_json::to_vec(&stored).expect("json");
            if bytes.len() > MAX_OBJECT {
                return Err(ApiError::request_entity_too_large("etcdserver: request is too large"));
            }
            let n = name(&obj).to_string();
            match self.store.create(&self.key(rr, &n), bytes.into(), crate::strategy::ttl(rr.res)).await {
                Ok(kv) => return Ok(objects::with_resource_version(external, kv.mod_revision)),
                Err(StoreError::AlreadyExists { .. }) if generated && attempt < 7 => {
                    let prefix = meta(&obj)["generateName"].as_str().unwrap_or_default().to_string();
                    meta_mut(&mut obj).insert("name".into(), json!(format!("{prefix}{}", objects::random_suffix())));
                }
                Err(e) => return Err(store_error(e, rr.res, &n)),
            }
        }
        unreachable!("the loop returns")
    }

    /// Writes `new` over the object read at `rev` (compare-and-swap), deleting it instead when it is
    /// marked for deletion and no finalizer remains.
    async fn write(
        &self,
        rr: &ResourceRequest<'_>,
        name: &str,
        mut new: Value,
        rev: i64,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if dry_run {
            return Ok(objects::with_resource_version(new, rev));
        }
        objects::strip_for_storage(&mut new);
        let finalizers_empty = meta(&new).get("finalizers").and_then(Value::as_array).is_none_or(|f| f.is_empty());
        let spec_finalizers_empty = rr.res.plural != "namespaces"
            || new.pointer("/spec/finalizers").and_then(Value::as_array).is_none_or(|f| f.is_empty());
        if meta(&new).get("deletionTimestamp").is_some()
            && finalizers_empty
            && spec_finalizers_empty
            && crate::strategy::deletable_now(rr.res, &new)
        {
            let (_, del_rev) =
                self.store.delete(&self.key(rr, name), Some(rev)).await.map_err(|e| store_error(e, rr.res, name))?;
            return Ok(objects::with_resource_version(new, del_rev));
        }
        let mut stored = new.clone();
        crate::strategy::to_storage(rr.res, &mut stored);
        let bytes = serde_json::to_vec(&stored).expect("json");
        if bytes.len() > MAX_OBJECT {
            return Err(ApiError::request_entity_too_large("etcdserver: request is too large"));
        }
        let kv = self
            .store
            .update(&self.key(rr, name), bytes.into(), rev, crate::strategy::ttl(rr.res))
            .await
            .map_err(|e| store_error(e, rr.res, name))?;
        Ok(objects::with_resource_version(new, kv.mod_revision))
    }

    pub async fn update(&self, rr: &ResourceRequest<'_>, mut obj: Value, q: &Query) -> Result<Value, ApiError> {
        let name = rr.name.clone().unwrap_or_default();
        let gr = rr.res.group_resource();
        if !obj.is_object() {
            return Err(ApiError::bad_request("the request body must be an object"));
        }
        let body_name = objects::name(&obj).to_string();
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if let (Some(ns), Some(body_ns)) =
            (rr.namespace.as_deref(), meta(&obj).get("namespace").and_then(Value::as_str))
        {
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        meta_mut(&mut obj).insert("name".into(), json!(name));
        let precondition = parse_rv(meta(&obj).get("resourceVersion").and_then(Value::as_str))?;
        loop {
            let (old, rev) = self.read(rr, &name).await?;
            if precondition.is_some_and(|p| p != rev) {
                return Err(ApiError::conflict(&gr, &name));
            }
            match self.replace_checked(rr, &name, obj.clone(), &old, rev, q).await {
                Err(e) if e.reason == "Conflict" && precondition.is_none() => continue,
                other => return other,
            }
        }
    }

    /// What every update goes through between the old object and the store: carrying over what the
    /// server owns, defaulting, validation, and the compare-and-swap write at `rev`.
    async fn replace_checked(
        &self,
        rr: &ResourceRequest<'_>,
        name: &str,
        mut new: Value,
        old: &Value,
        rev: i64,
        q: &Query,
    ) -> Result<Value, ApiError> {
        objects::prepare_update(rr.res, &mut new, old, rr.sub.as_deref())?;
        self.check_types(rr.res, &new)?;
        crate::strategy::prepare_update(rr.res, &mut new, old, rr.sub.as_deref());
        if rr.res.group.is_empty() && rr.res.kind == "Service" {
            crate::services::check_update(old, &mut new)?;
        }
        let info = crate::admission::ResourceInfo {
            res: rr.res,
            namespace: rr.namespace.as_deref(),
            sub: rr.sub.as_deref(),
            name,
            dry_run: q.get("dryRun") == Some("All"),
        };
        crate::admission::mutate(self, &info, &mut new, Some(old)).await?;
        objects::validate_meta(rr.res, &new)?;
        crate::strategy::validate(rr.res, &new, Some(old))?;
        crate::admission::validate(self, &info, &new, Some(old)).await?;
        objects::drop_empty_metadata(&mut new);
        self.track_fields(rr, Some(old), &mut new, q);
        self.write(rr, name, new, rev, q.get("dryRun") == Some("All")).await
    }

    /// Records the write in `metadata.managedFields` (operation `Update`) for the request's field
    /// manager. A request that sends managed fields replaces the stored ones with them (`[{}]` clears
    /// them); one that sends none keeps the stored ones.
    fn track_fields(&self, rr: &ResourceRequest<'_>, old: Option<&Value>, new: &mut Value, q: &Query) {
        if rr.sub.as_deref() == Some("binding") {
            return;
        }
        let sent = meta(new).get("managedFields").and_then(Value::as_array).filter(|a| !a.is_empty()).cloned();
        let base = sent
            .or_else(|| old.and_then(|o| meta(o).get("managedFields")).and_then(Value::as_array).cloned())
            .unwrap_or_default();
        let patch_meta = self.openapi.patch_meta(rr.res.group, rr.res.version, rr.res.kind);
        let patch_meta: &dyn apimachinery::strategicpatch::PatchMeta = match &patch_meta {
            Some(m) => m,
            None => &apimachinery::strategicpatch::NoMeta,
        };
        let api_version = if rr.res.group.is_empty() {
            rr.res.version.to_string()
        } else {
            format!("{}/{}", rr.res.group, rr.res.version)
        };
        let ignored: &[&str] = match rr.sub.as_deref() {
            Some("status") => &["spec"],
            _ if rr.res.subresources.contains(&"status") => &["status"],
            _ => &[],
        };
        let now = objects::now();
        let w = apimachinery::managedfields::Write {
            manager: q.get("fieldManager").filter(|m| !m.is_empty()).unwrap_or("kube-apiserver"),
            api_version: &api_version,
            subresource: rr.sub.as_deref().unwrap_or(""),
            time: &now,
            ignored,
        };
        let entries = apimachinery::managedfields::update(&base, old, new, patch_meta, &w);
        let m = meta_mut(new);
        if entries.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(entries));
        }
    }

    pub async fn patch(
        &self,
        rr: &ResourceRequest<'_>,
        headers: &HeaderMap,
        body: &[u8],
        q: &Query,
    ) -> Result<Value, ApiError> {
        let name = rr.name.clone().unwrap_or_default();
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let kind = ct.split(';').next().unwrap_or("").trim().to_string();
        let patch: Value = match kind.as_str() {
            "application/json-patch+json"
            | "application/merge-patch+json"
            | "application/strategic-merge-patch+json" => {
                serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
            }
            "application/apply-patch+yaml" => {
                return Err(ApiError::unsupported_media_type(
                    "application/apply-patch+yaml (server-side apply is not served yet)",
                ))
            }
            other => return Err(ApiError::unsupported_media_type(other)),
        };
        loop {
            let (old, rev) = self.read(rr, &name).await?;
            let mut new = old.clone();
            let meta = self.openapi.patch_meta(rr.res.group, rr.res.version, rr.res.kind);
            let meta: &dyn apimachinery::strategicpatch::PatchMeta = match &meta {
                Some(m) => m,
                None => &apimachinery::strategicpatch::NoMeta,
            };
            apply_patch(&kind, &mut new, &patch, meta).map_err(|message| {
                ApiError::invalid(
                    rr.res.group,
                    rr.res.kind,
                    &name,
                    vec![apimachinery::Cause { reason: "FieldValueInvalid".into(), message, field: String::new() }],
                )
            })?;
            let precondition = parse_rv(patch.pointer("/metadata/resourceVersion").and_then(Value::as_str))?;
            if precondition.is_some_and(|p| p != rev) {
                return Err(ApiError::conflict(&rr.res.group_resource(), &name));
            }
            match self.replace_checked(rr, &name, new, &old, rev, q).await {
                Err(e) if e.reason == "Conflict" => continue,
                other => return other,
            }
        }
    }

    /// Deletes one object: at once, or by marking it (`deletionTimestamp`) while finalizers or a pod's
    /// grace period hold it. Returns the status code and body upstream returns.
    pub async fn delete(
        &self,
        rr: &ResourceRequest<'_>,
        options: &Value,
        q: &Query,
    ) -> Result<(StatusCode, Value), ApiError> {
        let name = rr.name.clone().unwrap_or_default();
        let gr = rr.res.group_resource();
        let dry_run = q.get("dryRun") == Some("All")
            || options.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All"));
        let grace = q
            .get("gracePeriodSeconds")
            .and_then(|g| g.parse::<i64>().ok())
            .or_else(|| options.get("gracePeriodSeconds").and_then(Value::as_i64));
        let policy = crate::strategy::propagation(options, q)?;
        let accepted = options.get("orphanDependents") == Some(&Value::Bool(false));
        loop {
            let (stored, rev) = self.read(rr, &name).await?;
            crate::admission::validate_delete(self, rr.res, rr.namespace.as_deref(), &stored)?;
            crate::admission::delete_webhooks(self, rr, &name, &stored, options, dry_run).await?;
            let mut obj = stored.clone();
            if let Some(f) = crate::strategy::gc_finalizers(rr.res, &obj, policy) {
                if f.is_empty() {
                    meta_mut(&mut obj).remove("finalizers");
                } else {
                    meta_mut(&mut obj).insert("finalizers".into(), Value::Array(f));
                }
            }
            if let Some(uid) = options.pointer("/preconditions/uid").and_then(Value::as_str) {
                if meta(&obj).get("uid").and_then(Value::as_str) != Some(uid) {
                    return Err(ApiError::conflict_with(
                        &gr,
                        &name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            meta(&obj).get("uid").and_then(Value::as_str).unwrap_or("")
                        ),
                    ));
                }
            }
            if let Some(p) = options.pointer("/preconditions/resourceVersion").and_then(Value::as_str) {
                if p != rev.to_string() {
                    return Err(ApiError::conflict_with(&gr, &name, &format!(
                        "Precondition failed: ResourceVersion in precondition: {p}, ResourceVersion in object meta: {rev}"
                    )));
                }
            }
            let uid = meta(&obj).get("uid").and_then(Value::as_str).unwrap_or("").to_string();
            match crate::strategy::deletion(rr.res, &obj, grace) {
                crate::strategy::Deletion::Now => {
                    if dry_run {
                        return Ok((StatusCode::OK, success_status(&gr, &name, &uid)));
                    }
                    match self.store.delete(&self.key(rr, &name), Some(rev)).await {
                        Ok(_) => {
                            if rr.res.group.is_empty() && rr.res.kind == "Service" {
                                crate::services::release(self, &obj).await;
                            }
                            return Ok(if crate::strategy::returns_deleted_object(rr.res) {
                                (StatusCode::OK, obj)
                            } else {
                                (StatusCode::OK, success_status(&gr, &name, &uid))
                            });
                        }
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(store_error(e, rr.res, &name)),
                    }
                }
                crate::strategy::Deletion::Mark(marked) => {
                    let code = if accepted { StatusCode::ACCEPTED } else { StatusCode::OK };
                    if meta(&stored).get("deletionTimestamp").is_some() && marked == stored {
                        return Ok((code, stored));
                    }
                    match self.write(rr, &name, marked, rev, dry_run).await {
                        Ok(v) => return Ok((code, v)),
                        Err(e) if e.reason == "Conflict" => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// A watch as upstream streams it: `{"type": ..., "object": ...}` lines, selectors applied with the
    /// synthetic ADDED/DELETED of objects moving in or out of them, bookmarks on request.
    pub async fn watch(
        self: &Arc<Self>,
        rr: &ResourceRequest<'_>,
        q: &Query,
        format: Format,
    ) -> Result<Response<Body>, ApiError> {
        let (labels, fields) = self.selectors(rr.res, q)?;
        let rv = q.get("resourceVersion").unwrap_or("");
        let send_initial = q.flag("sendInitialEvents");
        let bookmarks = q.flag("allowWatchBookmarks");
        let start = match rv {
            "" | "0" => WatchStart::InitialState,
            _ if send_initial => WatchStart::InitialState,
            v => WatchStart::After(parse_rv(Some(v))?.unwrap_or(0)),
        };
        // A watch of one object (by URL, or `metadata.name=` within a namespace) watches its key only.
        let (key, prefix) = match (&rr.name, single_name(&fields)) {
            (Some(n), _) => (self.key(rr, n), false),
            (None, Some(n)) if rr.namespace.is_some() || !rr.res.namespaced => (self.key(rr, &n), false),
            (None, _) => (self.list_key(rr), true),
        };
        let cache = self.cache(rr.res);
        let expired = |requested: i64, compacted: i64| {
            ApiError::resource_expired(format!("too old resource version: {requested} ({compacted})"))
        };
        type Events = futures::stream::BoxStream<'static, Result<Arc<WatchEvent>, StoreError>>;
        let (mut stream, initial_count, start_rev): (Events, usize, i64) = match cache.watch(&key, prefix, start).await
        {
            Ok(w) => {
                let initial = if start == WatchStart::InitialState { w.pending_initial() } else { 0 };
                let rev = w.start_revision;
                (Box::pin(w), initial, rev)
            }
            Err(StoreError::Compacted { requested, compacted }) => match start {
                // Older than this server's cache (it started after the client listed, e.g. through another
                // API server): the store still has those events unless they were compacted.
                WatchStart::After(rv) => match self.store.watch(&key, prefix, rv + 1).await {
                    Ok(s) => (Box::pin(s.map(|r| r.map(Arc::new))), 0, rv),
                    Err(StoreError::Compacted { requested, compacted }) => return Err(expired(requested, compacted)),
                    Err(e) => return Err(store_error(e, rr.res, "")),
                },
                _ => return Err(expired(requested, compacted)),
            },
            Err(e) => return Err(store_error(e, rr.res, "")),
        };
        let timeout =
            q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).map(Duration::from_secs).unwrap_or_else(|| {
                // Upstream randomizes the server-side watch timeout between 1x and 2x --min-request-timeout.
                let base = self.min_request_timeout.as_secs().max(1);
                Duration::from_secs(base + rand::random_range(0..base))
            });
        let res = rr.res.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let table_res = rr.res.clone();
        let include_object = q.get("includeObject").unwrap_or("").to_string();
        let encode = move |typ: &str, obj: Value| -> Bytes {
            // Table watches carry each object as a one-row Table, as upstream sends them.
            let obj = if format == Format::Table && typ != "BOOKMARK" && typ != "ERROR" {
                let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
                tables::table(&table_res, std::slice::from_ref(&obj), json!({"resourceVersion": rv}), &include_object)
            } else if format == Format::PartialMetadata && typ != "ERROR" {
                partial_metadata(&obj)
            } else {
                obj
            };
            let ev = json!({"type": typ, "object": obj});
            let mut line = match format {
                Format::Yaml => serde_yaml_ng::to_string(&ev).unwrap_or_default().into_bytes(),
                _ => serde_json::to_vec(&ev).expect("json"),
            };
            line.push(b'\n');
            Bytes::from(line)
        };
        let kind_meta = (res.api_version(), res.kind.to_string());
        tokio::spawn(async move {
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut sent_initial = 0usize;
            let mut last_rv = start_rev;
            let bookmark = |rv: i64, initial_end: bool| {
                let mut m = json!({"resourceVersion": rv.to_string()});
                if initial_end {
                    m["annotations"] = json!({"k8s.io/initial-events-end": "true"});
                }
                json!({"kind": kind_meta.1, "apiVersion": kind_meta.0, "metadata": m})
            };
            if send_initial
                && initial_count == 0
                && bookmarks
                && tx.send(encode("BOOKMARK", bookmark(start_rev, true))).await.is_err()
            {
                return;
            }
            let mut ticker = tokio::time::interval(Duration::from_secs(60));
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                    _ = ticker.tick(), if bookmarks => {
                        if tx.send(encode("BOOKMARK", bookmark(last_rv, false))).await.is_err() { return; }
                    }
                    item = stream.next() => {
                        let Some(item) = item else { return };
                        let event = match item {
                            Ok(e) => e,
                            Err(e) => {
                                let status = store_error(e, &res, "").to_status();
                                let _ = tx.send(encode("ERROR", status)).await;
                                return;
                            }
                        };
                        let is_initial = sent_initial < initial_count;
                        if is_initial {
                            sent_initial += 1;
                        }
                        last_rv = last_rv.max(event.revision());
                        if let Some((typ, obj)) = translate(&res, &event, &labels, &fields) {
                            if tx.send(encode(typ, obj)).await.is_err() {
                                return;
                            }
                        }
                        let initial_done = is_initial && sent_initial == initial_count && send_initial && bookmarks;
                        if initial_done && tx.send(encode("BOOKMARK", bookmark(start_rev, true))).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let body = StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, Infallible>(hyper::body::Frame::data(b)), rx))
        }));
        let ct = if format == Format::Yaml { "application/yaml" } else { "application/json" };
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, ct)
            .header("Cache-Control", "no-cache, private")
            .header(header::TRANSFER_ENCODING, "chunked")
            .body(BodyExt::boxed(body))
            .expect("response builds"))
    }

    /// Rejects an object with a value of the wrong type (400, Go's decoding message), as upstream's
    /// typed decoding does before anything is stored.
    fn check_types(&self, res: &Resource, obj: &Value) -> Result<(), ApiError> {
        match self.openapi.type_error(res.group, res.version, res.kind, obj) {
            None => Ok(()),
            Some(msg) => Err(ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {msg}",
                kind = res.kind,
                version = res.version
            ))),
        }
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// Applies a JSON patch, a JSON merge patch, or a strategic merge patch (with `meta`'s merge keys) to
/// `target`.
pub fn apply_patch(
    content_type: &str,
    target: &mut Value,
    patch: &Value,
    meta: &dyn apimachinery::strategicpatch::PatchMeta,
) -> Result<(), String> {
    if content_type == "application/json-patch+json" {
        let p: json_patch::Patch =
            serde_json::from_value(patch.clone()).map_err(|e| format!("error decoding JSON patch: {e}"))?;
        json_patch::patch(target, &p).map_err(|e| e.to_string())
    } else if content_type == "application/strategic-merge-patch+json" {
        apimachinery::strategicpatch::apply(target, patch, meta).map_err(|e| e.to_string())
    } else if patch.is_object() {
        json_patch::merge(target, patch);
        Ok(())
    } else {
        Err("a merge patch must be a JSON object".into())
    }
}

/// `metadata.name=x` alone in a field selector lets a watch target one key.
fn single_name(fields: &FieldSelector) -> Option<String> {
    match fields.requirements.as_slice() {
        [(k, true, v)] if k == "metadata.name" => Some(v.clone()),
        _ => None,
    }
}

/// Maps a store event to the watch event a client sees under its selectors.
fn translate(
    res: &Resource,
    e: &WatchEvent,
    labels: &Selector,
    fields: &FieldSelector,
) -> Option<(&'static str, Value)> {
    let decode = |kv: &KeyValue, rv: i64| -> Option<Value> {
        let mut o = serde_json::from_slice::<Value>(&kv.value).ok()?;
        crate::strategy::from_storage(res, &mut o);
        Some(objects::with_resource_version(o, rv))
    };
    match e.kind {
        EventKind::Created => {
            let obj = decode(&e.kv, e.kv.mod_revision)?;
            Api::matches(res, &obj, labels, fields).then_some(("ADDED", obj))
        }
        EventKind::Deleted => {
            let obj = decode(e.prev.as_ref()?, e.kv.mod_revision)?;
            Api::matches(res, &obj, labels, fields).then_some(("DELETED", obj))
        }
        EventKind::Modified => {
            let obj = decode(&e.kv, e.kv.mod_revision)?;
            let now = Api::matches(res, &obj, labels, fields);
            let before = e
                .prev
                .as_ref()
                .and_then(|p| decode(p, p.mod_revision))
                .is_some_and(|o| Api::matches(res, &o, labels, fields));
            match (before, now) {
                (true, true) => Some(("MODIFIED", obj)),
                (false, true) => Some(("ADDED", obj)),
                (true, false) => Some(("DELETED", obj)),
                (false, false) => None,
            }
        }
    }
}

/// The `PartialObjectMetadata` form of an object (metadata-only clients such as the garbage collector).
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta(obj).clone()})
}

/// The JSON list of `kvs` built from the stored bytes: identical to [`list_object`] over decoded items
/// (keys in the same sorted order) without decoding anything below `metadata`.
pub fn raw_list_body(res: &Resource, kvs: &[KeyValue], list_meta: &Value) -> Result<Vec<u8>, ApiError> {
    use serde_json::value::RawValue;
    let mut out = Vec::with_capacity(kvs.iter().map(|kv| kv.value.len() + 32).sum::<usize>() + 256);
    out.extend_from_slice(br#"{"apiVersion":"#);
    serde_json::to_writer(&mut out, &res.api_version()).expect("json");
    out.extend_from_slice(br#","items":["#);
    for (i, kv) in kvs.iter().enumerate() {
        let corrupt = |e: serde_json::Error| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key));
        let mut top: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(&kv.value).map_err(corrupt)?;
        top.remove("apiVersion");
        top.remove("kind");
        let mut m: serde_json::Map<String, Value> = match top.get("metadata") {
            Some(raw) => serde_json::from_str(raw.get()).map_err(corrupt)?,
            None => serde_json::Map::new(),
        };
        m.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        top.insert("metadata".into(), serde_json::value::to_raw_value(&m).map_err(corrupt)?);
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &top).map_err(corrupt)?;
    }
    out.extend_from_slice(br#"],"kind":"#);
    serde_json::to_writer(&mut out, &format!("{}List", res.kind)).expect("json");
    out.extend_from_slice(br#","metadata":"#);
    serde_json::to_writer(&mut out, list_meta).expect("json");
    out.extend_from_slice(b"}\n");
    Ok(out)
}

/// Builds the list object upstream returns (`<Kind>List`, items without their own kind/apiVersion).
pub fn list_object(res: &Resource, items: Vec<Value>, list_meta: Value) -> Value {
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut o| {
            if let Some(m) = o.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            o
        })
        .collect();
    json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": list_meta, "items": items})
}

pub use discovery::route_discovery;
pub use tables::table;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn raw_list_is_byte_identical_to_the_decoded_list() {
        let registry = Registry::new();
        let res = registry.find("apps", "v1", "deployments").unwrap();
        let stored = [
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "b"}, "status": {}}),
        ];
        let kvs: Vec<KeyValue> = stored
            .iter()
            .enumerate()
            .map(|(i, o)| KeyValue {
                key: format!("/deployments/ns/{i}"),
                value: Bytes::from(serde_json::to_vec(o).unwrap()),
                create_revision: 5 + i as i64,
                mod_revision: 7 + i as i64,
            })
            .collect();
        let meta = json!({"resourceVersion": "9", "continue": "abc", "remainingItemCount": 3});
        let decoded: Vec<Value> = kvs.iter().map(|kv| decode_object(res, kv).unwrap()).collect();
        let mut expected = serde_json::to_vec(&list_object(res, decoded, meta.clone())).unwrap();
        expected.push(b'\n');
        assert_eq!(
            String::from_utf8(raw_list_body(res, &kvs, &meta).unwrap()).unwrap(),
            String::from_utf8(expected).unwrap()
        );
        let corrupt = KeyValue {
            key: "/deployments/ns/x".into(),
            value: Bytes::from_static(b"{oops"),
            create_revision: 1,
            mod_revision: 1,
        };
        assert_eq!(raw_list_body(res, &[corrupt], &meta).unwrap_err().code, 500);
    }
}
