//! kubelet: the node agent. Registers its Node and keeps it and its Lease fresh, and runs the pods
//! bound to the node as containers in a CRI runtime (containerd), reporting their status.

mod admission;
mod certificate;
mod cgroups;
mod cni;
mod config;
mod container_gc;
mod env;
mod eviction;
mod image_gc;
mod kubelet;
mod logs;
mod machine;
mod node;
mod pods;
mod probes;
mod runtime;
mod spec;
mod static_pods;
mod systemd;
mod tokens;
mod volumes;
mod worker;

use clap::Parser;
use std::sync::Arc;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    flags: config::Flags,
    /// Where the kubelet writes the CNI network configuration for the runtime.
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: String,
    /// The bridge of that network configuration (another kubelet on the same machine needs its own).
    #[arg(long, default_value = cni::BRIDGE)]
    cni_bridge_name: String,
}

fn main() {
    let cli = Cli::parse();
    component_base::logging::init(cli.flags.v);
    let cfg = match config::Config::load(&cli.flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("E command failed: {e}");
            std::process::exit(1);
        }
    };
    if cfg.fail_swap_on && machine::swap_on() {
        eprintln!(
            "E command failed: running with swap on is not supported, please disable swap or set --fail-swap-on flag to false"
        );
        std::process::exit(1);
    }
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Err(e) = rt.block_on(run(cfg, cli.cni_conf_dir, cli.cni_bridge_name)) {
        eprintln!("E command failed: {e}");
        std::process::exit(1);
    }
}

async fn run(cfg: config::Config, cni_conf_dir: String, cni_bridge: String) -> Result<(), Box<dyn std::error::Error>> {
    let client = certificate::client(
        cfg.kubeconfig.as_deref(),
        cfg.bootstrap_kubeconfig.as_deref(),
        std::path::Path::new(&cfg.cert_dir),
        &cfg.node_name,
        cfg.rotate_certificates,
    )
    .await?;
    let cri = cri::Runtime::connect(&cfg.runtime_endpoint, &cfg.image_endpoint, cfg.runtime_request_timeout)?;
    let node_ips = if cfg.node_ips.is_empty() { vec![detect_node_ip()] } else { cfg.node_ips.clone() };
    if cfg.server_tls_bootstrap {
        tokio::spawn(certificate::serving_forever(
            client.clone(),
            std::path::PathBuf::from(&cfg.cert_dir),
            cfg.node_name.clone(),
            node_ips.clone(),
        ));
    }
    std::fs::create_dir_all(&cfg.root_dir)?;
    std::fs::create_dir_all(std::path::Path::new(&cfg.root_dir).join("pods"))?;
    tracing::info!(node = %cfg.node_name, runtime = %cfg.runtime_endpoint, node_ips = ?node_ips, "starting kubelet");
    let healthz = (cfg.healthz_bind_address.clone(), cfg.healthz_port);
    let k = Arc::new(kubelet::Kubelet::new(cfg, client, cri, node_ips, cni_conf_dir, cni_bridge));
    if healthz.1 > 0 {
        tokio::spawn(serve_healthz(healthz.0, healthz.1));
    }
    tokio::spawn(kubelet::runtime_loop(k.clone()));
    tokio::spawn(node::run(k.clone()));
    tokio::spawn(pods::run(k.clone()));
    tokio::spawn(logs::run(k.clone()));
    tokio::spawn(image_gc::run(k.clone()));
    component_base::shutdown_signal().await;
    tracing::info!("shutting down; containers keep running");
    Ok(())
}

/// The address of the interface holding the default route, else the first non-loopback one, else
/// 127.0.0.1 (upstream resolves the hostname, then the default route's interface).
fn detect_node_ip() -> String {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok();
    if let Some(s) = sock {
        if s.connect("192.0.2.1:9").is_ok() {
            if let Ok(a) = s.local_addr() {
                if !a.ip().is_unspecified() {
                    return a.ip().to_string();
                }
            }
        }
    }
    "127.0.0.1".into()
}

/// `/healthz` on `--healthz-port` (plain HTTP, localhost by default), as upstream.
async fn serve_healthz(addr: String, port: u16) {
    use http_body_util::Full;
    let listener = match tokio::net::TcpListener::bind((addr.as_str(), port)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, port, "cannot serve healthz");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                let (code, body) =
                    if req.uri().path() == "/healthz" { (200, "ok") } else { (404, "404 page not found\n") };
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(code)
                        .header("content-type", "text/plain; charset=utf-8")
                        .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
                        .expect("response"),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}
