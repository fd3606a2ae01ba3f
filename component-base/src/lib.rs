//! What every ferrokube component shares, as upstream's `k8s.io/component-base` and client-go pieces:
//! the API client built from a kubeconfig (with `rest_client_requests_total`), Lease-based leader
//! election, client-go's rate-limited work queue, shared informers, and the HTTPS server for
//! `/healthz`, `/livez`, `/readyz` and `/metrics`.
//!
//! Components talk to each other only through the API server; nothing here reaches a store.

pub mod client;
pub mod duration;
pub mod events;
pub mod informer;
pub mod leaderelection;
pub mod logging;
pub mod metrics;
pub mod scheduling;
pub mod serving;
pub mod storage;
pub mod taints;
pub mod workqueue;

/// `metav1.MicroTime` as the API writes it (`2026-01-02T03:04:05.123456Z`).
pub fn micro_time_now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// `metav1.Time` now (second precision on the wire).
pub fn time_now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

/// Resolves on SIGINT or SIGTERM: when a component shuts down (and a leader releases its Lease).
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
