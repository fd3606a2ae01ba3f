//! A client of a CRI v1 runtime (containerd's built-in CRI plugin, CRI-O) over its unix socket:
//! `RuntimeService` and `ImageService` from `proto/api.proto`.

use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

pub use v1::image_service_client::ImageServiceClient;
pub use v1::runtime_service_client::RuntimeServiceClient;

/// The labels the kubelet puts on sandboxes and containers, as upstream's (the kubelet finds its
/// pods' sandboxes and containers by them after a restart).
pub mod labels {
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    pub const CONTAINER_TYPE: &str = "io.kubernetes.container.type";
    pub const KUBELET_MANAGED: &str = "io.cri-containerd.kind";
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("unsupported runtime endpoint {0:?} (want unix:///path/to.sock)")]
    Endpoint(String),
    #[error("connecting to {0}: {1}")]
    Transport(String, tonic::transport::Error),
}

/// A runtime: both services share one HTTP/2 connection.
#[derive(Clone)]
pub struct Runtime {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
    pub endpoint: String,
}

/// The socket path of `unix:///run/containerd/containerd.sock` (a bare path is taken as is).
pub fn socket_path(endpoint: &str) -> Result<String, ConnectError> {
    match endpoint.strip_prefix("unix://") {
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        Some(_) => Err(ConnectError::Endpoint(endpoint.into())),
        None if endpoint.starts_with('/') => Ok(endpoint.to_string()),
        None => Err(ConnectError::Endpoint(endpoint.into())),
    }
}

impl Runtime {
    /// Connects lazily: the first call dials the socket, and a runtime that restarts is redialled.
    /// Each call times out after `timeout` (upstream's `--runtime-request-timeout`, 2m).
    pub fn connect(endpoint: &str, image_endpoint: &str, timeout: Duration) -> Result<Runtime, ConnectError> {
        let runtime = channel(endpoint, timeout)?;
        let image = if image_endpoint == endpoint { runtime.clone() } else { channel(image_endpoint, timeout)? };
        let max = 16 * 1024 * 1024;
        Ok(Runtime {
            runtime: RuntimeServiceClient::new(runtime).max_decoding_message_size(max),
            image: ImageServiceClient::new(image).max_decoding_message_size(max),
            endpoint: endpoint.to_string(),
        })
    }
}

fn channel(endpoint: &str, timeout: Duration) -> Result<Channel, ConnectError> {
    let path = socket_path(endpoint)?;
    // The URI is a placeholder: the connector below dials the socket.
    let channel = Endpoint::try_from("http://[::1]:50051")
        .map_err(|e| ConnectError::Transport(endpoint.into(), e))?
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }));
    Ok(channel)
}
