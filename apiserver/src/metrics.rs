//! Prometheus metrics with upstream's names: `apiserver_request_total`,
//! `apiserver_request_duration_seconds`, `apiserver_storage_objects`, `etcd_request_duration_seconds`.

use apiserver_storage::{GetResult, KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchStream};
use async_trait::async_trait;
use bytes::Bytes;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub durations: HistogramVec,
    pub storage_objects: IntGaugeVec,
    pub etcd: HistogramVec,
    /// `authentication_attempts{result}`: success, failure (credentials rejected), error.
    pub authn_attempts: IntCounterVec,
    /// `apiserver_authorization_decisions_total{type, name, decision}`.
    pub authz_decisions: IntCounterVec,
    /// `apiserver_admission_webhook_admission_duration_seconds{name, type, operation, rejected}`.
    pub webhook_duration: HistogramVec,
    /// `apiserver_admission_webhook_request_total{name, type, operation, code, rejected}`.
    pub webhook_requests: IntCounterVec,
    /// `apiserver_admission_webhook_rejection_count{name, type, operation, error_type, rejection_code}`.
    pub webhook_rejections: IntCounterVec,
    /// `apiserver_admission_webhook_fail_open_count{name, type}`.
    pub webhook_fail_open: IntCounterVec,
    /// `serviceaccount_legacy_auto_token_uses_total`, `serviceaccount_legacy_manual_token_uses_total`,
    /// `serviceaccount_invalid_legacy_auto_token_uses_total`: secret-based tokens authenticated (those
    /// the account lists in `secrets`, and the others) and refused for the invalid-since label.
    pub legacy_auto_token_uses: IntCounter,
    pub legacy_manual_token_uses: IntCounter,
    pub invalid_legacy_token_uses: IntCounter,
}

const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0,
    45.0, 60.0,
];
const ETCD_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0,
    45.0, 60.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let labels = ["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"];
        let mut with_code = labels.to_vec();
        with_code.push("code");
        let requests = IntCounterVec::new(
            Opts::new("apiserver_request_total", "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code."),
            &with_code,
        )
        .expect("metric");
        let durations = HistogramVec::new(
            HistogramOpts::new("apiserver_request_duration_seconds", "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.")
                .buckets(REQUEST_BUCKETS.to_vec()),
            &labels,
        )
        .expect("metric");
        let storage_objects = IntGaugeVec::new(
            Opts::new("apiserver_storage_objects", "Number of stored objects at the time of last check split by kind."),
            &["resource"],
        )
        .expect("metric");
        let etcd = HistogramVec::new(
            HistogramOpts::new(
                "etcd_request_duration_seconds",
                "Etcd request latency in seconds for each operation and object type.",
            )
            .buckets(ETCD_BUCKETS.to_vec()),
            &["operation", "type"],
        )
        .expect("metric");
        let authn_attempts =
            IntCounterVec::new(Opts::new("authentication_attempts", "Counter of authenticated attempts."), &["result"])
                .expect("metric");
        let authz_decisions = IntCounterVec::new(
            Opts::new(
                "apiserver_authorization_decisions_total",
                "Total number of terminal decisions made by an authorizer split by authorizer type, name, and decision.",
            ),
            &["type", "name", "decision"],
        )
        .expect("metric");
        let webhook_duration = HistogramVec::new(
            HistogramOpts::new(
                "apiserver_admission_webhook_admission_duration_seconds",
                "Admission webhook latency histogram in seconds, identified by name and broken out for each operation and API resource and type (validate or admit).",
            )
            .buckets(vec![0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 10.0, 25.0]),
            &["name", "type", "operation", "rejected"],
        )
        .expect("metric");
        let webhook_requests = IntCounterVec::new(
            Opts::new(
                "apiserver_admission_webhook_request_total",
                "Admission webhook request total, identified by name and broken out for each admission type (validating or mutating) and operation. Additional labels specify whether the request was rejected or not and an HTTP status code. Codes greater than 600 are truncated to 600, to keep the metrics cardinality bounded.",
            ),
            &["name", "type", "operation", "code", "rejected"],
        )
        .expect("metric");
        let webhook_rejections = IntCounterVec::new(
            Opts::new(
                "apiserver_admission_webhook_rejection_count",
                "Admission webhook rejection count, identified by name and broken out for each admission type (validating or admit) and operation. Additional labels specify an error type (calling_webhook_error or apiserver_internal_error if an error occurred; no_error otherwise) and optionally a non-zero rejection code if the webhook rejects the request with an HTTP status code (honored by the apiserver when the code is greater or equal to 400). Codes greater than 600 are truncated to 600, to keep the metrics cardinality bounded.",
            ),
            &["name", "type", "operation", "error_type", "rejection_code"],
        )
        .expect("metric");
        let webhook_fail_open = IntCounterVec::new(
            Opts::new(
                "apiserver_admission_webhook_fail_open_count",
                "Admission webhook fail open count, identified by name and broken out for each admission type (validating or mutating).",
            ),
            &["name", "type"],
        )
        .expect("metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("metric");
        let legacy_auto_token_uses =
            counter("serviceaccount_legacy_auto_token_uses_total", "Cumulative auto-generated legacy tokens used");
        let legacy_manual_token_uses =
            counter("serviceaccount_legacy_manual_token_uses_total", "Cumulative manually created legacy tokens used");
        let invalid_legacy_token_uses = counter(
            "serviceaccount_invalid_legacy_auto_token_uses_total",
            "Cumulative invalid auto-generated legacy tokens used",
        );
        for c in [
            Box::new(webhook_duration.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(legacy_auto_token_uses.clone()),
            Box::new(legacy_manual_token_uses.clone()),
            Box::new(invalid_legacy_token_uses.clone()),
            Box::new(webhook_requests.clone()),
            Box::new(webhook_rejections.clone()),
            Box::new(webhook_fail_open.clone()),
            Box::new(authn_attempts.clone()),
            Box::new(authz_decisions.clone()),
            Box::new(requests.clone()),
            Box::new(durations.clone()),
            Box::new(storage_objects.clone()),
            Box::new(etcd.clone()),
        ] {
            registry.register(c).expect("register metric");
        }
        Metrics {
            registry,
            requests,
            durations,
            storage_objects,
            etcd,
            authn_attempts,
            authz_decisions,
            webhook_duration,
            webhook_requests,
            webhook_rejections,
            webhook_fail_open,
            legacy_auto_token_uses,
            legacy_manual_token_uses,
            invalid_legacy_token_uses,
        }
    }

    pub fn render(&self) -> String {
        TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }

    /// Records one finished request.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &self,
        verb: &str,
        dry_run: bool,
        group: &str,
        version: &str,
        resource: &str,
        sub: &str,
        scope: &str,
        code: u16,
        elapsed: Duration,
    ) {
        let dry = if dry_run { "All" } else { "" };
        let code = code.to_string();
        self.requests.with_label_values(&[verb, dry, group, version, resource, sub, scope, "apiserver", &code]).inc();
        if verb != "WATCH" {
            self.durations
                .with_label_values(&[verb, dry, group, version, resource, sub, scope, "apiserver"])
                .observe(elapsed.as_secs_f64());
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A store that times every request into `etcd_request_duration_seconds` (upstream records it for the
/// etcd backend; the embedded store reports under the same name so dashboards work for both).
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn wrap(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<dyn Store> {
        Arc::new(MeteredStore { inner, metrics })
    }

    fn record(&self, op: &str, key: &str, started: Instant) {
        // The object type is the resource path segment (`pods`, `services/specs` becomes `services`).
        let ty = key.trim_start_matches('/').split('/').next().unwrap_or("");
        self.metrics.etcd.with_label_values(&[op, ty]).observe(started.elapsed().as_secs_f64());
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<GetResult, StoreError> {
        let t = Instant::now();
        let r = self.inner.get(key, revision).await;
        self.record("get", key, t);
        r
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        let t = Instant::now();
        let r = self.inner.list(prefix, opts).await;
        self.record("list", prefix, t);
        r
    }
    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<KeyValue, StoreError> {
        let t = Instant::now();
        let r = self.inner.create(key, value, ttl).await;
        self.record("create", key, t);
        r
    }
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue, StoreError> {
        let t = Instant::now();
        let r = self.inner.update(key, value, expected, ttl).await;
        self.record("update", key, t);
        r
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision), StoreError> {
        let t = Instant::now();
        let r = self.inner.delete(key, expected).await;
        self.record("delete", key, t);
        r
    }
    async fn watch(&self, key: &str, prefix: bool, start: Revision) -> Result<WatchStream, StoreError> {
        self.inner.watch(key, prefix, start).await
    }
    async fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        let t = Instant::now();
        let r = self.inner.count(prefix).await;
        self.record("count", prefix, t);
        r
    }
    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.current_revision().await
    }
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
}
