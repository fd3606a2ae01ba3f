//! The secure port every control-plane component serves (`--secure-port`, `--bind-address`):
//! `/healthz`, `/livez`, `/readyz` (named checks, `/healthz/<check>`, `?verbose`) and `/metrics`.
//! Without `--tls-cert-file` a self-signed certificate is made in memory (or in `--cert-dir`), as
//! upstream does.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;

/// A named health check.
pub type Check = (String, Arc<dyn Fn() -> Result<(), String> + Send + Sync>);

/// A further metrics endpoint (`/metrics/resources`): its path and what renders its text.
pub type MetricsRoute = (String, Arc<dyn Fn() -> String + Send + Sync>);

pub struct Options {
    pub bind: SocketAddr,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub cert_dir: Option<String>,
    /// The component name, for the self-signed certificate.
    pub component: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reading serving certificate: {0}")]
    Cert(String),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

fn tls_config(o: &Options) -> Result<rustls::ServerConfig, ServeError> {
    let (cert_pem, key_pem) = match (&o.cert_file, &o.key_file) {
        (Some(c), Some(k)) => (
            std::fs::read_to_string(c).map_err(|e| ServeError::Cert(format!("{c}: {e}")))?,
            std::fs::read_to_string(k).map_err(|e| ServeError::Cert(format!("{k}: {e}")))?,
        ),
        _ => {
            let dir = o.cert_dir.as_deref().filter(|d| !d.is_empty());
            let paths = dir.map(|d| (format!("{d}/{}.crt", o.component), format!("{d}/{}.key", o.component)));
            match &paths {
                Some((c, k)) if std::path::Path::new(c).exists() && std::path::Path::new(k).exists() => (
                    std::fs::read_to_string(c).map_err(|e| ServeError::Cert(format!("{c}: {e}")))?,
                    std::fs::read_to_string(k).map_err(|e| ServeError::Cert(format!("{k}: {e}")))?,
                ),
                _ => {
                    let mut params =
                        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                            .map_err(|e| ServeError::Cert(e.to_string()))?;
                    params
                        .distinguished_name
                        .push(rcgen::DnType::CommonName, format!("localhost@{}", std::process::id()));
                    let key = rcgen::KeyPair::generate().map_err(|e| ServeError::Cert(e.to_string()))?;
                    let cert = params.self_signed(&key).map_err(|e| ServeError::Cert(e.to_string()))?;
                    let (c, k) = (cert.pem(), key.serialize_pem());
                    if let (Some((cp, kp)), Some(d)) = (&paths, dir) {
                        let _ = std::fs::create_dir_all(d);
                        let _ = std::fs::write(cp, &c);
                        let _ = std::fs::write(kp, &k);
                    }
                    (c, k)
                }
            }
        }
    };
    let certs: Vec<_> = rustls_pemfile_certs(&cert_pem)?;
    use rustls::pki_types::pem::PemObject;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| ServeError::Cert(format!("private key: {e}")))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Cert(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Cert(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

fn rustls_pemfile_certs(pem: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ServeError> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Cert(format!("certificate: {e}")))
}

fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("X-Content-Type-Options", "nosniff")
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

/// upstream's healthz handler: `ok`, or with `?verbose` one `[+]name ok` / `[-]name failed` line per
/// check and a final line; a failing check gives 500.
fn health(kind: &str, checks: &[Check], only: Option<&str>, verbose: bool) -> Response<Full<Bytes>> {
    if let Some(name) = only {
        return match checks.iter().find(|(n, _)| n == name) {
            Some((_, c)) => match c() {
                Ok(()) => text(StatusCode::OK, "ok".into()),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("internal server error: {e}\n")),
            },
            None => text(StatusCode::NOT_FOUND, "404 page not found\n".into()),
        };
    }
    let mut lines = String::new();
    let mut failed = false;
    for (name, c) in checks {
        match c() {
            Ok(()) => lines.push_str(&format!("[+]{name} ok\n")),
            Err(_) => {
                failed = true;
                lines.push_str(&format!("[-]{name} failed: reason withheld\n"));
            }
        }
    }
    if failed {
        lines.push_str(&format!("{kind} check failed\n"));
        return text(StatusCode::INTERNAL_SERVER_ERROR, lines);
    }
    if verbose {
        lines.push_str(&format!("{kind} check passed\n"));
        return text(StatusCode::OK, lines);
    }
    text(StatusCode::OK, "ok".into())
}

fn metrics_text(body: String) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::OK, body);
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8".parse().expect("header"));
    r
}

fn route(req: &Request<Incoming>, checks: &[Check], extra: &[MetricsRoute]) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/');
    let verbose = req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "verbose" || p.starts_with("verbose=")));
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match parts.as_slice() {
        [k @ ("healthz" | "livez" | "readyz")] => health(k, checks, None, verbose),
        [k @ ("healthz" | "livez" | "readyz"), name] => health(k, checks, Some(name), verbose),
        ["metrics"] => metrics_text(crate::metrics::render()),
        _ if extra.iter().any(|(p, _)| p == path) => {
            metrics_text(extra.iter().find(|(p, _)| p == path).map(|(_, f)| f()).unwrap_or_default())
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n".into()),
    }
}

/// Binds the secure port and serves until the process ends. Returns the bound address.
pub async fn serve(o: Options, checks: Vec<Check>) -> Result<SocketAddr, ServeError> {
    serve_with(o, checks, Vec::new()).await
}

/// [`serve`] with further metrics endpoints.
pub async fn serve_with(o: Options, checks: Vec<Check>, extra: Vec<MetricsRoute>) -> Result<SocketAddr, ServeError> {
    let extra = Arc::new(extra);
    let tls = Arc::new(tls_config(&o)?);
    let listener = tokio::net::TcpListener::bind(o.bind).await.map_err(|e| ServeError::Listen(o.bind, e))?;
    let addr = listener.local_addr().map_err(|e| ServeError::Listen(o.bind, e))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let checks = Arc::new(checks);
    tracing::info!(address = %addr, "serving securely");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            let checks = checks.clone();
            let extra = extra.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let checks = checks.clone();
                    let extra = extra.clone();
                    async move { Ok::<_, std::convert::Infallible>(route(&req, &checks, &extra)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// `ping`, always ok.
pub fn ping() -> Check {
    ("ping".into(), Arc::new(|| Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_lines_as_upstream() {
        let checks: Vec<Check> = vec![ping(), ("leaderElection".into(), Arc::new(|| Err("stale".into())))];
        let r = health("healthz", &checks, None, false);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let ok: Vec<Check> = vec![ping()];
        assert_eq!(health("healthz", &ok, None, false).status(), StatusCode::OK);
        assert_eq!(health("healthz", &ok, Some("nope"), false).status(), StatusCode::NOT_FOUND);
    }
}
