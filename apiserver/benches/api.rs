//! API server benchmark: creates/s, gets/s, list latency over 10k objects and watch fan-out to 100
//! watchers, each beside the same operation on the raw embedded store in the same run (the limit the
//! API layer adds its cost to); pod creates through the admission plugins that consult a LimitRange,
//! a ResourceQuota and PodSecurity labels, beside pod creates in a namespace without them.
//!
//! `cargo bench -p kube-apiserver`. Sizes: `BENCH_OPS` (default 3000), `BENCH_LIST` (10000),
//! `BENCH_WATCHERS` (100), `BENCH_EVENTS` (200), `BENCH_CONCURRENCY` (16).

use apiserver_storage::testing::free_port;
use apiserver_storage::{EmbeddedStore, ListOptions, Store};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

type Client = SendRequest<Full<Bytes>>;

async fn connect(port: u16, ca_pem: &[u8]) -> Client {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        let _ = roots.add(cert.unwrap());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn request(c: &Client, method: &str, path: &str, body: Option<String>) -> (u16, Bytes) {
    request_with(c, method, path, body, "application/json").await
}

async fn request_with(c: &Client, method: &str, path: &str, body: Option<String>, content_type: &str) -> (u16, Bytes) {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("https://127.0.0.1{path}"))
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let resp = c.clone().send_request(req).await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.into_body().collect().await.unwrap().to_bytes())
}

fn cm(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{"app":"bench"}}}},"data":{{"k":"{}"}}}}"#,
        "v".repeat(200)
    )
}

async fn parallel<F, Fut>(n: usize, concurrency: usize, f: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let f = f.clone();
            tokio::spawn(async move {
                for i in (t..n).step_by(concurrency) {
                    f(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let ops = env("BENCH_OPS", 3000);
    let list_n = env("BENCH_LIST", 10_000);
    let watchers = env("BENCH_WATCHERS", 100);
    let events = env("BENCH_EVENTS", 200);
    let conc = env("BENCH_CONCURRENCY", 16);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server: Child = Command::new(env!("CARGO_BIN_EXE_kube-apiserver"))
        .args([
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            &port.to_string(),
            "--max-requests-inflight=0",
            "--max-mutating-requests-inflight=0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--cert-dir")
        .arg(dir.path().join("certs"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let crt = dir.path().join("certs/apiserver.crt");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !crt.exists() || std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "kube-apiserver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let c = connect(port, &std::fs::read(&crt).unwrap()).await;
        while request(&c, "GET", "/readyz", None).await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let raw_dir = tempfile::tempdir().unwrap();
        let raw: Arc<dyn Store> = Arc::new(EmbeddedStore::open(raw_dir.path()).unwrap());
        let value = Bytes::from(cm("x"));

        println!("API benchmark (embedded store), concurrency {conc}, one HTTP/2 connection");
        let cc = c.clone();
        let api_create = parallel(ops, conc, move |i| {
            let c = cc.clone();
            async move { assert_eq!(request(&c, "POST", "/api/v1/namespaces/default/configmaps", Some(cm(&format!("c{i}")))).await.0, 201) }
        })
        .await;
        let (r, v) = (raw.clone(), value.clone());
        let raw_create = parallel(ops, conc, move |i| {
            let (r, v) = (r.clone(), v.clone());
            async move { r.create(&format!("/configmaps/default/c{i}"), v, None).await.map(|_| ()).unwrap() }
        })
        .await;
        println!("  creates/s   API {api_create:9.0}   raw store {raw_create:9.0}   ratio {:.2}", api_create / raw_create);
        let cc = c.clone();
        let api_get = parallel(ops, conc, move |i| {
            let c = cc.clone();
            async move { assert_eq!(request(&c, "GET", &format!("/api/v1/namespaces/default/configmaps/c{i}"), None).await.0, 200) }
        })
        .await;
        let r = raw.clone();
        let raw_get = parallel(ops, conc, move |i| {
            let r = r.clone();
            async move { assert!(r.get(&format!("/configmaps/default/c{i}"), None).await.unwrap().kv.is_some()) }
        })
        .await;
        println!("  gets/s      API {api_get:9.0}   raw store {raw_get:9.0}   ratio {:.2}", api_get / raw_get);

        // Admission: pod creates in a namespace with the objects admission consults (a LimitRange whose
        // defaults are applied, a ResourceQuota charged by compare-and-swap on every create, PodSecurity
        // enforce=restricted), against pod creates in a namespace with none of them, same server.
        let pods = (ops / 3).max(1);
        let restricted = r#"{"pod-security.kubernetes.io/enforce":"restricted"}"#;
        for (ns, labels) in [("plain", "{}"), ("limited", restricted), ("policed", restricted)] {
            let body = format!(r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{ns}","labels":{labels}}}}}"#);
            assert_eq!(request(&c, "POST", "/api/v1/namespaces", Some(body)).await.0, 201);
            let sa = r#"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"default"}}"#.to_string();
            assert_eq!(request(&c, "POST", &format!("/api/v1/namespaces/{ns}/serviceaccounts"), Some(sa)).await.0, 201);
        }
        let lr = r#"{"apiVersion":"v1","kind":"LimitRange","metadata":{"name":"lr"},"spec":{"limits":[{"type":"Container","default":{"cpu":"100m","memory":"64Mi"},"defaultRequest":{"cpu":"10m","memory":"16Mi"}}]}}"#;
        for ns in ["limited", "policed"] {
            assert_eq!(request(&c, "POST", &format!("/api/v1/namespaces/{ns}/limitranges"), Some(lr.to_string())).await.0, 201);
        }
        let quota = r#"{"apiVersion":"v1","kind":"ResourceQuota","metadata":{"name":"q"},"spec":{"hard":{"pods":"1000000","requests.cpu":"100000"}}}"#;
        assert_eq!(request(&c, "POST", "/api/v1/namespaces/policed/resourcequotas", Some(quota.to_string())).await.0, 201);
        // The quota controller is not running: publish status.hard as it would.
        let status = r#"{"status":{"hard":{"pods":"1000000","requests.cpu":"100000"},"used":{"pods":"0","requests.cpu":"0"}}}"#;
        let (code, _) =
            request_with(&c, "PATCH", "/api/v1/namespaces/policed/resourcequotas/q/status", Some(status.to_string()), "application/merge-patch+json").await;
        assert_eq!(code, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pod = |ns: &'static str| {
            let cc = c.clone();
            move |i: usize| {
                let c = cc.clone();
                async move {
                    let body = format!(
                        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p{i}"}},"spec":{{"securityContext":{{"runAsNonRoot":true,"seccompProfile":{{"type":"RuntimeDefault"}}}},"containers":[{{"name":"c","image":"busybox:1.36","securityContext":{{"allowPrivilegeEscalation":false,"capabilities":{{"drop":["ALL"]}}}}}}]}}}}"#
                    );
                    let (code, out) = request(&c, "POST", &format!("/api/v1/namespaces/{ns}/pods"), Some(body)).await;
                    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&out));
                }
            }
        };
        let plain = parallel(pods, conc, pod("plain")).await;
        let limited = parallel(pods, conc, pod("limited")).await;
        let policed = parallel(pods, conc, pod("policed")).await;
        println!(
            "  pod creates/s   no policy objects {plain:7.0}   LimitRange+PodSecurity {limited:7.0} (ratio {:.2})   +ResourceQuota {policed:7.0} (ratio {:.2})",
            limited / plain,
            policed / plain
        );

        // Fill both to list_n objects.
        let cc = c.clone();
        parallel(list_n.saturating_sub(ops), conc, move |i| {
            let c = cc.clone();
            async move { assert_eq!(request(&c, "POST", "/api/v1/namespaces/default/configmaps", Some(cm(&format!("l{i}")))).await.0, 201) }
        })
        .await;
        let (r, v) = (raw.clone(), value.clone());
        parallel(list_n.saturating_sub(ops), conc, move |i| {
            let (r, v) = (r.clone(), v.clone());
            async move { r.create(&format!("/configmaps/default/l{i}"), v, None).await.map(|_| ()).unwrap() }
        })
        .await;
        let mut api_list = Vec::new();
        let mut api_list_cached = Vec::new();
        let mut raw_list = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let (code, body) = request(&c, "GET", "/api/v1/namespaces/default/configmaps", None).await;
            assert_eq!(code, 200);
            api_list.push(t.elapsed());
            assert!(body.len() > list_n * 200);
            let t = Instant::now();
            assert_eq!(request(&c, "GET", "/api/v1/namespaces/default/configmaps?resourceVersion=0", None).await.0, 200);
            api_list_cached.push(t.elapsed());
            let t = Instant::now();
            assert_eq!(raw.list("/configmaps/default/", ListOptions::default()).await.unwrap().items.len(), list_n);
            raw_list.push(t.elapsed());
        }
        let (a, ac, rl) = (pct(api_list, 0.5), pct(api_list_cached, 0.5), pct(raw_list, 0.5));
        println!("  list of {list_n} (p50 ms)   API consistent {a:8.1}   API resourceVersion=0 {ac:8.1}   raw store {rl:8.1}   ratio {:.2}", a / rl);

        // Watch fan-out: every event to every watcher; latency = write issued -> last watcher has it.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
        for w in 0..watchers {
            let c = c.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let req = http::Request::builder()
                    .uri("https://127.0.0.1/api/v1/namespaces/default/configmaps?watch=1&labelSelector=app%3Dwatched&resourceVersion=")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let resp = c.clone().send_request(req).await.unwrap();
                let mut body = resp.into_body().into_data_stream();
                let mut buf = Vec::new();
                while let Some(Ok(chunk)) = body.next().await {
                    buf.extend_from_slice(&chunk);
                    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
                        let name = v["object"]["metadata"]["name"].as_str().unwrap_or("");
                        if let Some(i) = name.strip_prefix("w").and_then(|n| n.parse::<usize>().ok()) {
                            let _ = tx.send((i, Instant::now()));
                        }
                    }
                }
                let _ = w;
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut api_lat = Vec::new();
        for i in 0..events {
            let body = format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"w{i}","labels":{{"app":"watched"}}}}}}"#);
            let t = Instant::now();
            assert_eq!(request(&c, "POST", "/api/v1/namespaces/default/configmaps", Some(body)).await.0, 201);
            let mut got = 0;
            let mut last = t;
            while got < watchers {
                let (n, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("watchers keep up").unwrap();
                if n == i {
                    got += 1;
                    last = last.max(at);
                }
            }
            api_lat.push(last - t);
        }
        let mut raw_watches = Vec::new();
        for _ in 0..watchers {
            raw_watches.push(raw.watch("/watched/", true, 0).await.unwrap());
        }
        let mut raw_lat = Vec::new();
        for i in 0..events {
            let t = Instant::now();
            raw.create(&format!("/watched/w{i}"), value.clone(), None).await.unwrap();
            for w in raw_watches.iter_mut() {
                w.next().await.unwrap().unwrap();
            }
            raw_lat.push(t.elapsed());
        }
        let (a50, a99, r50, r99) = (pct(api_lat.clone(), 0.5), pct(api_lat, 0.99), pct(raw_lat.clone(), 0.5), pct(raw_lat, 0.99));
        println!(
            "  watch fan-out to {watchers} watchers, write -> all delivered (ms)   API p50 {a50:.2} p99 {a99:.2}   raw store p50 {r50:.2} p99 {r99:.2}   p50 ratio {:.2}",
            a50 / r50
        );
    });
    let _ = server.kill();
    let _ = server.wait();
}
