//! The API client a component builds from its flags: `--kubeconfig` (else the usual kubeconfig
//! search), `--master` overriding the server address, and every request counted in
//! `rest_client_requests_total{code,host,method}` as client-go does.

use http::{Request, Response};
use kube::client::{Body, ClientBuilder};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig { path: String, source: kube::config::KubeconfigError },
    #[error("no kubeconfig: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("invalid --master {0:?}")]
    Master(String),
    #[error("building the client: {0}")]
    Build(#[from] kube::Error),
}

fn requests_total() -> &'static prometheus::IntCounterVec {
    static M: OnceLock<prometheus::IntCounterVec> = OnceLock::new();
    M.get_or_init(|| {
        let m = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "rest_client_requests_total",
                "Number of HTTP requests, partitioned by status code, method, and host.",
            ),
            &["code", "host", "method"],
        )
        .expect("metric");
        let _ = crate::metrics::registry().register(Box::new(m.clone()));
        m
    })
}

/// Counts each request's outcome (`code` is `<error>` when no response came back).
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
}

impl<S, B> tower::Service<Request<Body>> for Metered<S>
where
    S: tower::Service<Request<Body>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    B: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let method = req.method().to_string();
        let host = req.uri().authority().map(|a| a.to_string()).unwrap_or_default();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            let code = match &r {
                Ok(resp) => resp.status().as_u16().to_string(),
                Err(_) => "<error>".into(),
            };
            requests_total().with_label_values(&[&code, &host, &method]).inc();
            r
        })
    }
}

pub struct MeteredLayer;

impl<S> tower::Layer<S> for MeteredLayer {
    type Service = Metered<S>;
    fn layer(&self, inner: S) -> Metered<S> {
        Metered { inner }
    }
}

/// The client configuration from `--kubeconfig`/`--master`.
pub async fn config(kubeconfig: Option<&str>, master: Option<&str>) -> Result<Config, ClientError> {
    let mut cfg = match kubeconfig.filter(|p| !p.is_empty()) {
        Some(path) => {
            let kc =
                Kubeconfig::read_from(path).map_err(|source| ClientError::Kubeconfig { path: path.into(), source })?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|source| ClientError::Kubeconfig { path: path.into(), source })?
        }
        None => Config::infer().await?,
    };
    if let Some(m) = master.filter(|m| !m.is_empty()) {
        cfg.cluster_url = m.parse().map_err(|_| ClientError::Master(m.into()))?;
    }
    Ok(cfg)
}

/// A metered client for `cfg`.
pub fn client(cfg: Config) -> Result<Client, ClientError> {
    Ok(ClientBuilder::try_from(cfg)?.with_layer(&MeteredLayer).build())
}

/// A metered client that sends at most `qps` requests per second on average and `burst` at once
/// (`--kube-api-qps`, `--kube-api-burst`; a long-running watch counts once, when it starts).
pub fn limited_client(cfg: Config, qps: f64, burst: u32) -> Result<Client, ClientError> {
    let builder = ClientBuilder::try_from(cfg)?.with_layer(&MeteredLayer);
    Ok(builder.with_layer(&rate_limit(qps, burst)).build())
}

/// `--kube-api-qps`/`--kube-api-burst` as a rate limit (none when qps is not positive).
fn rate_limit(qps: f64, burst: u32) -> tower::util::Either<tower::limit::RateLimitLayer, tower::layer::util::Identity> {
    tower::util::option_layer((qps > 0.0).then(|| {
        let burst = burst.max(1) as f64;
        let per = std::time::Duration::from_secs_f64(burst.max(qps) / qps);
        tower::limit::RateLimitLayer::new(burst.max(qps) as u64, per)
    }))
}

/// A bearer token that can be replaced while clients use it (a service-account token renewed before
/// it expires).
#[derive(Clone, Default)]
pub struct BearerToken(std::sync::Arc<std::sync::RwLock<String>>);

impl BearerToken {
    pub fn new(token: String) -> Self {
        BearerToken(std::sync::Arc::new(std::sync::RwLock::new(token)))
    }
    pub fn set(&self, token: String) {
        *self.0.write().expect("token lock") = token;
    }
    fn header(&self) -> Option<http::HeaderValue> {
        http::HeaderValue::from_str(&format!("Bearer {}", self.0.read().expect("token lock"))).ok()
    }
}

/// Sends the current token as `Authorization: Bearer` on every request.
#[derive(Clone)]
pub struct WithBearer<S> {
    inner: S,
    token: BearerToken,
}

impl<S> tower::Service<Request<Body>> for WithBearer<S>
where
    S: tower::Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        if let Some(h) = self.token.header() {
            req.headers_mut().insert(http::header::AUTHORIZATION, h);
        }
        self.inner.call(req)
    }
}

pub struct BearerLayer(pub BearerToken);

impl<S> tower::Layer<S> for BearerLayer {
    type Service = WithBearer<S>;
    fn layer(&self, inner: S) -> WithBearer<S> {
        WithBearer { inner, token: self.0.clone() }
    }
}

/// A metered, rate-limited client for `cfg`'s server and CA that authenticates with `token` instead
/// of `cfg`'s own credentials.
pub fn with_bearer_token(mut cfg: Config, token: BearerToken, qps: f64, burst: u32) -> Result<Client, ClientError> {
    cfg.auth_info = kube::config::AuthInfo::default();
    let builder = ClientBuilder::try_from(cfg)?.with_layer(&MeteredLayer).with_layer(&BearerLayer(token));
    Ok(builder.with_layer(&rate_limit(qps, burst)).build())
}

/// A client certificate and key that can be replaced while clients use them (a kubelet's rotated
/// certificate): new TLS connections present the current one.
#[derive(Debug)]
pub struct ClientCertificate(
    std::sync::RwLock<std::sync::Arc<rustls::sign::CertifiedKey>>,
    /// Bumped by every replacement: clients drop the connections opened with an older certificate.
    std::sync::atomic::AtomicU64,
);

fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<rustls::sign::CertifiedKey, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut chain: Vec<CertificateDer<'static>> = Vec::new();
    for c in CertificateDer::pem_slice_iter(cert_pem) {
        let c = c.map_err(|e| format!("reading the client certificate: {e}"))?;
        // A file holding both the certificate and the key may be named for both.
        if !chain.contains(&c) {
            chain.push(c);
        }
    }
    if chain.is_empty() {
        return Err("the client certificate holds no CERTIFICATE block".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("reading the client key: {e}"))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signer = provider.key_provider.load_private_key(key).map_err(|e| format!("loading the client key: {e}"))?;
    Ok(rustls::sign::CertifiedKey::new(chain, signer))
}

impl ClientCertificate {
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<std::sync::Arc<ClientCertificate>, String> {
        let k = certified_key(cert_pem, key_pem)?;
        Ok(std::sync::Arc::new(ClientCertificate(std::sync::RwLock::new(std::sync::Arc::new(k)), Default::default())))
    }

    /// Replaces the certificate; connections opened from now on present the new one.
    pub fn set_pem(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), String> {
        let k = certified_key(cert_pem, key_pem)?;
        *self.0.write().expect("certificate lock") = std::sync::Arc::new(k);
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// The current certificate (DER).
    pub fn current(&self) -> Vec<u8> {
        self.0.read().expect("certificate lock").cert[0].to_vec()
    }
}

impl rustls::client::ResolvesClientCert for ClientCertificate {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.read().expect("certificate lock").clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;
type Pool = hyper_util::client::legacy::Client<Https, kube::client::Body>;

fn pool(https: &Https) -> Pool {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https.clone())
}

/// The HTTP client behind a client-certificate client: when the certificate is replaced, a new
/// connection pool replaces the old one, as upstream's kubelet closes its connections on rotation.
/// The API server checks a client certificate on every request, so a kept-alive connection opened
/// with a certificate that has since expired would fail with 401. Requests in flight (watches)
/// finish on their connections.
#[derive(Clone)]
struct Repooling {
    connector: Https,
    pool: std::sync::Arc<std::sync::Mutex<(u64, Pool)>>,
    cert: std::sync::Arc<ClientCertificate>,
}

impl tower::Service<Request<kube::client::Body>> for Repooling {
    type Response = Response<hyper::body::Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let epoch = self.cert.1.load(std::sync::atomic::Ordering::SeqCst);
        let mut p = self.pool.lock().expect("pool lock");
        if p.0 != epoch {
            *p = (epoch, pool(&self.connector));
        }
        p.1.request(req)
    }
}

/// A metered, rate-limited client for `cfg`'s server and CA that authenticates with `cert`, whichever
/// certificate it holds when a connection opens, instead of `cfg`'s own credentials.
pub fn with_client_certificate(
    mut cfg: Config,
    cert: std::sync::Arc<ClientCertificate>,
    qps: f64,
    burst: u32,
) -> Result<Client, ClientError> {
    use kube::client::ConfigExt;
    // kube's TLS setup asks for the process's default provider (its own builder installs it).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    cfg.auth_info = kube::config::AuthInfo::default();
    let mut tls = cfg.rustls_client_config()?;
    tls.client_auth_cert_resolver = cert.clone();
    // A resumed TLS session carries the identity of the session it resumes: a new connection after
    // rotation would still be the old certificate. Go's clients keep no session cache either.
    tls.resumption = rustls::client::Resumption::disabled();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(cfg.connect_timeout);
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
    let builder = match cfg.tls_server_name.as_ref() {
        Some(name) => {
            let name = rustls_pki_types::ServerName::try_from(name.clone())
                .map_err(|_| ClientError::Master(format!("tls-server-name {name}")))?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    let https = builder.enable_http1().wrap_connector(http);
    let hyper = Repooling {
        pool: std::sync::Arc::new(std::sync::Mutex::new((
            cert.1.load(std::sync::atomic::Ordering::SeqCst),
            pool(&https),
        ))),
        connector: https,
        cert,
    };
    let service =
        tower::ServiceBuilder::new().layer(cfg.base_uri_layer()).layer(cfg.extra_headers_layer()?).service(hyper);
    let builder = ClientBuilder::new(service, cfg.default_namespace.clone()).with_layer(&MeteredLayer);
    Ok(builder.with_layer(&rate_limit(qps, burst)).build())
}

/// `--kubeconfig`/`--master` with the component's user agent (`kube-controller-manager/v1.35.0 ...`).
pub async fn config_from_flags(
    kubeconfig: Option<&str>,
    master: Option<&str>,
    component: &str,
) -> Result<Config, ClientError> {
    let mut cfg = config(kubeconfig, master).await?;
    cfg.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(&format!("{component}/v1.35.0 (linux/amd64) ferrokube")).expect("header value"),
    ));
    Ok(cfg)
}

/// A component's client, named by its user agent (`kube-controller-manager/v1.35.0 ...`).
pub async fn from_flags(
    kubeconfig: Option<&str>,
    master: Option<&str>,
    component: &str,
    qps: f64,
    burst: u32,
) -> Result<Client, ClientError> {
    limited_client(config_from_flags(kubeconfig, master, component).await?, qps, burst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn leaf(ca: &rcgen::Issuer<'_, rcgen::KeyPair>, cn: &str, server: bool) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        if server {
            p.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        }
        (p.signed_by(&key, ca).unwrap().pem(), key.serialize_pem())
    }

    /// A replaced certificate is presented on the very next request, not only on connections the
    /// pool happens to open later: the server answers with the CN of the connection's certificate.
    #[tokio::test]
    async fn a_replaced_certificate_is_used_at_once() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "ca");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = rcgen::Issuer::new(ca_params, ca_key);
        let (server_pem, server_key) = leaf(&ca, "server", true);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
        use rustls_pki_types::pem::PemObject;
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![rustls_pki_types::CertificateDer::from_pem_slice(server_pem.as_bytes()).unwrap()],
                rustls_pki_types::PrivateKeyDer::from_pem_slice(server_key.as_bytes()).unwrap(),
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
                    let peer = tls.get_ref().1.peer_certificates().and_then(|c| c.first().cloned()).unwrap();
                    let parsed = x509_cn(&peer);
                    let svc = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                        let cn = parsed.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(cn),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        let mut kcfg = Config::new(format!("https://127.0.0.1:{port}").parse().unwrap());
        kcfg.root_cert = Some(vec![ca_cert.der().to_vec()]);
        let (a, a_key) = leaf(&ca, "first", false);
        let cert = ClientCertificate::from_pem(a.as_bytes(), a_key.as_bytes()).unwrap();
        let client = with_client_certificate(kcfg, cert.clone(), 0.0, 0).unwrap();
        let get = || async { client.request_text(http::Request::get("/").body(Vec::new()).unwrap()).await.unwrap() };
        assert_eq!(get().await, "first");
        assert_eq!(get().await, "first");
        let (b, b_key) = leaf(&ca, "second", false);
        cert.set_pem(b.as_bytes(), b_key.as_bytes()).unwrap();
        assert_eq!(get().await, "second", "the kept-alive connection of the old certificate is not reused");
    }

    /// The CN of a DER certificate (the test's own certificates carry just one).
    fn x509_cn(der: &[u8]) -> String {
        // The CN value follows the OID 2.5.4.3 (06 03 55 04 03) and a string tag and length.
        let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
        let mut last = String::new();
        for i in 0..der.len().saturating_sub(oid.len() + 2) {
            if der[i..i + 5] == oid {
                let len = der[i + 6] as usize;
                last = String::from_utf8_lossy(&der[i + 7..i + 7 + len]).into_owned();
            }
        }
        last
    }
}
