//! Logs as upstream components write them: to stderr, level from `-v` (0 info, 4+ debug) unless
//! `RUST_LOG` says otherwise.

pub fn init(verbosity: u8) {
    let default = if verbosity >= 4 { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{default},kube_client=warn,kube_client::client::tls=error,kube_runtime=warn,hyper=warn,rustls=warn"
        ))
    });
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).try_init();
}
