//! Liveness, readiness and startup probes (exec through the runtime, httpGet over HTTP or HTTPS,
//! tcpSocket, grpc health checks) with
//! upstream's timing: `initialDelaySeconds`, `periodSeconds` (10), `timeoutSeconds` (1),
//! `successThreshold` (1), `failureThreshold` (3). Liveness and readiness wait for the startup
//! probe to succeed. Results are kept per container ID; a change wakes the pod's worker.

use crate::kubelet::Kubelet;
use k8s_openapi::api::core::v1::{Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

/// The results of one pod's probes, by (container ID, kind); `None` until the first result.
#[derive(Default)]
pub struct Results {
    map: Mutex<HashMap<(String, Kind), bool>>,
    pub changed: Notify,
}

impl Results {
    pub fn get(&self, id: &str, kind: Kind) -> Option<bool> {
        self.map.lock().unwrap().get(&(id.to_string(), kind)).copied()
    }

    fn set(&self, id: &str, kind: Kind, v: bool) {
        let prev = self.map.lock().unwrap().insert((id.to_string(), kind), v);
        if prev != Some(v) {
            self.changed.notify_one();
        }
    }

    pub fn forget(&self, id: &str) {
        self.map.lock().unwrap().retain(|(cid, _), _| cid != id);
    }
}

pub enum Outcome {
    Success,
    Failure(String),
}

/// Runs one probe once.
pub async fn run_once(k: &Kubelet, pod: &Pod, container_id: &str, p: &Probe, ports: &[(String, i32)]) -> Outcome {
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_else(|| "127.0.0.1".into());
    let port_of = |port: &IntOrString| -> Option<i32> {
        match port {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(name) => {
                ports.iter().find(|(n, _)| n == name).map(|(_, p)| *p).or_else(|| name.parse().ok())
            }
        }
    };
    if let Some(e) = &p.exec {
        let mut rt = k.cri.runtime.clone();
        let req = cri::v1::ExecSyncRequest {
            container_id: container_id.into(),
            cmd: e.command.clone().unwrap_or_default(),
            timeout: timeout.as_secs() as i64,
        };
        return match tokio::time::timeout(timeout + Duration::from_secs(2), rt.exec_sync(req)).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                if r.exit_code == 0 {
                    Outcome::Success
                } else {
                    let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
                    out.push_str(&String::from_utf8_lossy(&r.stderr));
                    Outcome::Failure(out)
                }
            }
            Ok(Err(e)) => Outcome::Failure(e.message().to_string()),
            Err(_) => Outcome::Failure(format!("command timed out after {}s", timeout.as_secs())),
        };
    }
    if let Some(t) = &p.tcp_socket {
        let host = t.host.clone().unwrap_or(pod_ip);
        let Some(port) = port_of(&t.port) else { return Outcome::Failure(format!("invalid port {:?}", t.port)) };
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port as u16))).await {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(e)) => Outcome::Failure(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Outcome::Failure(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    if let Some(h) = &p.http_get {
        let host = h.host.clone().filter(|h| !h.is_empty()).unwrap_or(pod_ip);
        let Some(port) = port_of(&h.port) else { return Outcome::Failure(format!("invalid port {:?}", h.port)) };
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let https = h.scheme.as_deref() == Some("HTTPS");
        let url = format!("{}://{host}:{port}{path}", if https { "https" } else { "http" });
        return match tokio::time::timeout(
            timeout,
            http_get(&host, port, &path, h.http_headers.as_deref().unwrap_or(&[]), https),
        )
        .await
        {
            Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
            Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
            Ok(Err(e)) => Outcome::Failure(format!("Get \"{url}\": {e}")),
            Err(_) => Outcome::Failure(format!(
                "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
        };
    }
    if let Some(g) = &p.grpc {
        let service = g.service.clone().unwrap_or_default();
        return match grpc_check(&pod_ip, g.port, &service, timeout).await {
            Ok(()) => Outcome::Success,
            Err(e) => Outcome::Failure(e),
        };
    }
    Outcome::Failure("probe has no handler this kubelet supports".into())
}

/// grpc.health.v1 `ServingStatus` names.
fn serving_status(n: u64) -> &'static str {
    match n {
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

/// The `HealthCheckRequest { string service = 1; }` message in a gRPC length-prefixed frame.
fn health_request(service: &str) -> Vec<u8> {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a);
        let mut n = service.len();
        while n >= 0x80 {
            msg.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        msg.push(n as u8);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    frame
}

/// `HealthCheckResponse.status` (field 1, varint) from a gRPC frame; 0 (UNKNOWN) when absent.
fn health_status(frame: &[u8]) -> Result<u64, String> {
    if frame.len() < 5 {
        return Err("short gRPC message".into());
    }
    let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    let msg = frame.get(5..5 + len).ok_or("truncated gRPC message")?;
    let varint = |b: &[u8], i: &mut usize| -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*i).ok_or("truncated varint")?;
            *i += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    };
    let (mut i, mut status) = (0, 0);
    while i < msg.len() {
        let key = varint(msg, &mut i)?;
        match key & 7 {
            0 => {
                let v = varint(msg, &mut i)?;
                if key >> 3 == 1 {
                    status = v;
                }
            }
            2 => {
                let l = varint(msg, &mut i)? as usize;
                i += l;
            }
            5 => i += 4,
            1 => i += 8,
            _ => return Err("malformed HealthCheckResponse".into()),
        }
    }
    Ok(status)
}

/// A gRPC probe: `grpc.health.v1.Health/Check` over plaintext HTTP/2, with upstream's messages.
pub async fn grpc_check(host: &str, port: i32, service: &str, timeout: Duration) -> Result<(), String> {
    use http_body_util::BodyExt;
    let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let secs = format!("{}s", timeout.as_secs());
    let connect = async {
        let stream = tokio::net::TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
        hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .map_err(|e| e.to_string())
    };
    let (mut sender, conn) = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(format!("timeout: failed to connect service {addr:?} within {secs}: {e}")),
        Err(_) => return Err(format!("timeout: failed to connect service {addr:?} within {secs}")),
    };
    let conn = tokio::spawn(conn);
    let call = async {
        let req = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header(http::header::USER_AGENT, "kube-probe/1.35")
            .body(http_body_util::Full::new(bytes::Bytes::from(health_request(service))))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await.map_err(|e| e.to_string())?;
        // grpc-status comes in the trailers, or in the headers of a response without a body.
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let field = |name: &str| {
            trailers.get(name).or_else(|| parts.headers.get(name)).and_then(|v| v.to_str().ok()).map(String::from)
        };
        let code: u32 = field("grpc-status").and_then(|c| c.parse().ok()).unwrap_or(2);
        let message = field("grpc-message").unwrap_or_default();
        Ok::<_, String>((parts.status, code, message, collected.to_bytes()))
    };
    let result = tokio::time::timeout(timeout, call).await;
    conn.abort();
    let (status, code, message, body) = match result {
        Err(_) => return Err(format!("timeout: health rpc did not complete within {secs}")),
        Ok(Err(e)) => return Err(format!("health rpc probe failed: {e}")),
        Ok(Ok(r)) => r,
    };
    if !status.is_success() {
        return Err(format!("health rpc probe failed: rpc error: code = Unknown desc = unexpected HTTP status code received from server: {}", status.as_u16()));
    }
    match code {
        0 => {}
        12 => {
            return Err(format!(
                "this server does not implement the grpc health protocol (grpc.health.v1.Health): {message}"
            ))
        }
        4 => return Err(format!("timeout: health rpc did not complete within {secs}")),
        c => return Err(format!("health rpc probe failed: rpc error: code = {} desc = {message}", grpc_code_name(c))),
    }
    match health_status(&body)? {
        1 => Ok(()),
        s => Err(format!("service unhealthy (responded with {:?})", serving_status(s))),
    }
}

/// gRPC status code names as grpc-go prints them.
fn grpc_code_name(c: u32) -> &'static str {
    [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ]
    .get(c as usize)
    .copied()
    .unwrap_or("Unknown")
}

/// Accepts any server certificate: upstream's HTTPS probes and hooks skip verification
/// (`InsecureSkipVerify`), since a pod's serving certificate rarely names its IP.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn insecure_tls() -> tokio_rustls::TlsConnector {
    static CFG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    let cfg = CFG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
            .with_no_client_auth();
        Arc::new(cfg)
    });
    tokio_rustls::TlsConnector::from(cfg.clone())
}

/// One HTTP/1.1 GET (over TLS without verification with `https`); the status code.
pub async fn http_get(
    host: &str,
    port: i32,
    path: &str,
    headers: &[k8s_openapi::api::core::v1::HTTPHeader],
    https: bool,
) -> Result<u16, String> {
    let stream = tokio::net::TcpStream::connect((host, port as u16))
        .await
        .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
    let mut sender = if https {
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("invalid host {host}: {e}"))?;
        let tls = insecure_tls().connect(name, stream).await.map_err(|e| format!("tls: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender
    };
    let mut req = http::Request::get(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::USER_AGENT, "kube-probe/1.35")
        .header(http::header::ACCEPT, "*/*");
    for h in headers {
        req = req.header(h.name.as_str(), h.value.as_str());
    }
    let req = req.body(http_body_util::Empty::<bytes::Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(resp.status().as_u16())
}

/// A running prober for one container's probe; dropped (aborted) when the container stops.
pub struct Worker(tokio::task::JoinHandle<()>);

impl Drop for Worker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a prober probes: one running container of a pod (with the pod's IP), and its named ports.
pub struct Target {
    pub pod: Arc<Pod>,
    pub container_id: String,
    pub container: String,
    pub ports: Vec<(String, i32)>,
}

pub fn spawn(k: Arc<Kubelet>, t: Target, kind: Kind, p: Probe, results: Arc<Results>) -> Worker {
    let Target { pod, container_id, container, ports } = t;
    Worker(tokio::spawn(async move {
        let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
        let success_threshold = p.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = p.failure_threshold.unwrap_or(3).max(1);
        tokio::time::sleep(Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64)).await;
        let (mut successes, mut failures) = (0, 0);
        loop {
            let gated = kind != Kind::Startup
                && pod_has_startup(&pod, &container)
                && results.get(&container_id, Kind::Startup) != Some(true);
            if !gated {
                if kind == Kind::Startup && results.get(&container_id, Kind::Startup) == Some(true) {
                    return; // a startup probe stops once it succeeded
                }
                match run_once(&k, &pod, &container_id, &p, &ports).await {
                    Outcome::Success => {
                        failures = 0;
                        successes += 1;
                        if successes >= success_threshold {
                            results.set(&container_id, kind, true);
                        }
                    }
                    Outcome::Failure(msg) => {
                        successes = 0;
                        failures += 1;
                        let what = match kind {
                            Kind::Liveness => "Liveness",
                            Kind::Readiness => "Readiness",
                            Kind::Startup => "Startup",
                        };
                        k.events.emit(pod.as_ref(), true, "Unhealthy", format!("{what} probe failed: {}", msg.trim()));
                        if failures >= failure_threshold {
                            results.set(&container_id, kind, false);
                        }
                    }
                }
            }
            tokio::time::sleep(period).await;
        }
    }))
}

fn pod_has_startup(pod: &Pod, container: &str) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| c.name == container && c.startup_probe.is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A gRPC health server on HTTP/2 (frames written by hand): `""` and `ok` are SERVING, `sick` is
    /// NOT_SERVING; another path is Unimplemented; `slow` never answers.
    async fn health_server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        // The request frame: flag, length, then field 1 (the service name).
                        let service = if body.len() > 7 {
                            String::from_utf8_lossy(&body[7..]).into_owned()
                        } else {
                            String::new()
                        };
                        if service == "slow" {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                        }
                        let mut trailers = http::HeaderMap::new();
                        let mut frame = Vec::new();
                        if path != "/grpc.health.v1.Health/Check" {
                            trailers.insert("grpc-status", "12".parse().unwrap());
                            trailers.insert("grpc-message", "unknown service".parse().unwrap());
                        } else {
                            let status: u8 = if service == "sick" { 2 } else { 1 };
                            frame = vec![0, 0, 0, 0, 2, 0x08, status];
                            trailers.insert("grpc-status", "0".parse().unwrap());
                        }
                        let body = http_body_util::StreamBody::new(futures::stream::iter(vec![
                            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(frame))),
                            Ok(hyper::body::Frame::trailers(trailers)),
                        ]));
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder().header("content-type", "application/grpc").body(body).unwrap(),
                        )
                    });
                    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn grpc_probes_read_the_serving_status() {
        let port = health_server().await;
        let t = Duration::from_secs(1);
        assert_eq!(grpc_check("127.0.0.1", port as i32, "", t).await, Ok(()));
        assert_eq!(grpc_check("127.0.0.1", port as i32, "ok", t).await, Ok(()));
        assert_eq!(
            grpc_check("127.0.0.1", port as i32, "sick", t).await,
            Err("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        assert_eq!(
            grpc_check("127.0.0.1", port as i32, "slow", t).await,
            Err("timeout: health rpc did not complete within 1s".into())
        );
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let e = grpc_check("127.0.0.1", closed as i32, "", t).await.unwrap_err();
        assert!(e.starts_with(&format!("timeout: failed to connect service \"127.0.0.1:{closed}\" within 1s")), "{e}");
        assert_eq!(health_request("ok"), vec![0, 0, 0, 0, 4, 0x0a, 2, b'o', b'k']);
        assert_eq!(health_status(&[0, 0, 0, 0, 0]), Ok(0), "an empty message is UNKNOWN");
    }

    #[tokio::test]
    async fn https_gets_skip_certificate_verification() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["not-this-host".into()]).unwrap().self_signed(&key).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                        let code = if req.uri().path() == "/healthz" { 200 } else { 503 };
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .status(code)
                                .body(http_body_util::Empty::<bytes::Bytes>::new())
                                .unwrap(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        assert_eq!(http_get("127.0.0.1", port as i32, "/healthz", &[], true).await, Ok(200));
        assert_eq!(http_get("127.0.0.1", port as i32, "/other", &[], true).await, Ok(503));
        assert!(http_get("127.0.0.1", port as i32, "/healthz", &[], false).await.is_err(), "plain HTTP to a TLS port");
    }
}
