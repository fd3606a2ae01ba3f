//! `kube-apiserver`: the Kubernetes REST and watch API over an external etcd (`--etcd-servers`) or the
//! embedded store (`--data-dir`).

mod admission;
mod api;
mod auth;
mod defaults;
mod discovery;
mod flags;
mod metrics;
mod objects;
mod policy;
mod registry;
mod reviews;
mod scale;
mod server;
mod services;
mod strategy;
mod tables;
mod tls;
mod validation;
mod webhook;

use api::Api;
use apiserver_storage::{EtcdConfig, StorageConfig};
use clap::Parser;
use flags::Flags;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;

fn init_logging(flags: &Flags) {
    let level = match flags.v {
        0..=2 => "info",
        3..=5 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if flags.logging_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Creates the namespaces every cluster has and the `kubernetes` Service, as upstream's bootstrap
/// controller does.
async fn bootstrap(api: &Api, port: u16) -> Result<(), apimachinery::ApiError> {
    let ns = api.registry.find("", "v1", "namespaces").expect("namespaces registered");
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let rr = api::ResourceRequest { res: ns, namespace: None, name: None, sub: None };
        match api.create(&rr, json!({"metadata": {"name": name}}), &api::Query::default()).await {
            Ok(_) => tracing::info!(namespace = name, "created system namespace"),
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }
    services::ensure_kubernetes_service(api, port).await?;
    // The built-in PriorityClasses, as upstream's scheduling post-start hook creates them.
    let pc = api.registry.find("scheduling.k8s.io", "v1", "priorityclasses").expect("priorityclasses registered");
    for class in apiserver_admission::pods::system_priority_classes() {
        let rr = api::ResourceRequest { res: pc, namespace: None, name: None, sub: None };
        match api.create(&rr, class, &api::Query::default()).await {
            Ok(c) => tracing::info!(name = %objects::name(&c), "created PriorityClass"),
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }
    if api.auth.modes.contains(&auth::Mode::Rbac) {
        policy::reconcile(api).await?;
    }
    Ok(())
}

/// Upstream's legacy-token-tracking controller: `kube-system/kube-apiserver-legacy-service-account-token-tracking`
/// says since which day (`since`, UTC) API servers stamp legacy tokens with their last use; the
/// legacy-serviceaccount-token-cleaner trusts a missing label only once that is a cleanup period old.
/// The ConfigMap is created when missing (checked every 30 minutes, upstream's creation rate) and a
/// malformed `since` is rewritten; a valid one is never moved.
async fn keep_legacy_token_tracking(api: Arc<Api>) {
    const NAME: &str = "kube-apiserver-legacy-service-account-token-tracking";
    let res = api.registry.find("", "v1", "configmaps").expect("configmaps registered");
    loop {
        let today = auth::utc_date(time::OffsetDateTime::now_utc());
        let named =
            api::ResourceRequest { res, namespace: Some("kube-system".into()), name: Some(NAME.into()), sub: None };
        let result = match api.get(&named, &api::Query::default()).await {
            Err(e) if e.code == 404 => {
                let rr = api::ResourceRequest { res, namespace: Some("kube-system".into()), name: None, sub: None };
                let cm = json!({"metadata": {"name": NAME, "namespace": "kube-system"}, "data": {"since": today}});
                api.create(&rr, cm, &api::Query::default()).await.map(|_| ())
            }
            Ok(mut cm) => {
                let since = cm.pointer("/data/since").and_then(|v| v.as_str()).unwrap_or("");
                if time::Date::parse(since, auth::DATE).is_err() {
                    cm["data"]["since"] = json!(today);
                    api.update(&named, cm, &api::Query::default()).await.map(|_| ())
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result.or_else(|e| if e.code == 409 { Ok(()) } else { Err(e) }) {
            tracing::warn!(error = %e, "legacy token tracking ConfigMap not kept");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1800)).await;
    }
}

async fn run(flags: Flags) -> Result<(), String> {
    flags.warn_unimplemented();
    let allow_privileged =
        crate::auth::bool_flag(&flags.allow_privileged, false).map_err(|e| format!("--allow-privileged: {e}"))?;
    crate::validation::ALLOW_PRIVILEGED.store(allow_privileged, std::sync::atomic::Ordering::Relaxed);
    let storage = if flags.etcd_servers.is_empty() {
        StorageConfig::embedded(&flags.data_dir)
    } else {
        let mut cfg = EtcdConfig::new(flags.etcd_servers.clone());
        cfg.prefix = flags.etcd_prefix.clone();
        cfg.ca_file = flags.etcd_cafile.clone();
        cfg.cert_file = flags.etcd_certfile.clone();
        cfg.key_file = flags.etcd_keyfile.clone();
        StorageConfig::Etcd(cfg)
    };
    let event_ttl = pki::parse_go_duration(&flags.event_ttl).map_err(|e| format!("--event-ttl: {e}"))?;
    let _ = strategy::EVENT_TTL.set(event_ttl);
    let compaction = pki::parse_go_duration(&flags.etcd_compaction_interval)
        .map_err(|e| format!("--etcd-compaction-interval: {e}"))?;
    let auth = Arc::new(auth::Auth::from_flags(&flags)?);
    let tls = tls::server_config(&flags, &auth).map_err(|e| format!("serving certificate: {e}"))?;

    let listener = TcpListener::bind((flags.bind_address, flags.secure_port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", flags.bind_address, flags.secure_port))?;
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving securely");

    let metrics = Arc::new(metrics::Metrics::new());
    let store = apiserver_storage::open(&storage).await.map_err(|e| e.to_string())?;
    let store = metrics::MeteredStore::wrap(store, metrics.clone());
    tracing::info!(backend = store.backend_name(), "storage ready");
    tokio::spawn(apiserver_storage::run_compactor(store.clone(), compaction));
    let advertise_ip = flags.advertise_address.unwrap_or_else(|| {
        if flags.bind_address.is_unspecified() {
            pki::default_advertise_address()
        } else {
            flags.bind_address
        }
    });
    let advertise = format!("{advertise_ip}:{}", flags.secure_port);
    let network = services::ServiceNetwork::parse(&flags.service_cluster_ip_range, &flags.service_node_port_range)?;
    let mut api = Api::new(store, advertise, metrics);
    api.services = Some(network);
    api.min_request_timeout = std::time::Duration::from_secs(flags.min_request_timeout);
    api.request_timeout =
        pki::parse_go_duration(&flags.request_timeout).map_err(|e| format!("--request-timeout: {e}"))?;
    api.limits = server::Limits::new(flags.max_requests_inflight, flags.max_mutating_requests_inflight);
    api.auth = auth;
    api.admission = Arc::new(admission::Admission::from_flags(
        &auth::comma_list(&flags.enable_admission_plugins),
        &auth::comma_list(&flags.disable_admission_plugins),
        flags.admission_control_config_file.as_deref(),
    )?);
    let api = Arc::new(api);
    // Every resource's watch cache starts now, before any client lists: a watch from a list's
    // resourceVersion then always finds the cache at or past it.
    for res in api.registry.resources.iter().filter(|r| !r.create_only()) {
        api.cache(res);
    }
    {
        let api = api.clone();
        let port = flags.secure_port;
        tokio::spawn(async move {
            let mut backoff = std::time::Duration::from_millis(200);
            loop {
                match bootstrap(&api, port).await {
                    Ok(()) => {
                        api.ready.store(true, Ordering::SeqCst);
                        tokio::spawn(services::run_endpoint_reconciler(api.clone(), advertise_ip, port));
                        tokio::spawn(keep_legacy_token_tracking(api.clone()));
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "bootstrap failed; retrying"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            }
        });
    }

    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
            },
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                return Ok(());
            }
        };
        // Watch events and small responses must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let api = api.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let peer_certs = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| auth::PeerCerts(Arc::new(c.iter().map(|d| d.clone().into_owned()).collect())));
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let api = api.clone();
                if let Some(p) = &peer_certs {
                    req.extensions_mut().insert(p.clone());
                }
                async move { Ok::<_, std::convert::Infallible>(server::handle(api, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() -> ExitCode {
    let flags = match Flags::try_parse() {
        Ok(f) => f,
        Err(e) => e.exit(),
    };
    init_logging(&flags);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
