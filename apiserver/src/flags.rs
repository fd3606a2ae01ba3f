//! Upstream's kube-apiserver flags. Flags of features not built yet are accepted (so existing systemd
//! units and static-pod manifests start) and named once in a warning.

use clap::Parser;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "kube-apiserver",
    about = "The Kubernetes API server validates and configures data for the api objects",
    version
)]
pub struct Flags {
    /// Directory of the embedded store, used when --etcd-servers is not given
    #[arg(long, default_value = "/var/lib/ferrokube/apiserver")]
    pub data_dir: PathBuf,
    /// List of etcd servers to connect with (scheme://ip:port), comma separated
    #[arg(long, value_delimiter = ',')]
    pub etcd_servers: Vec<String>,
    /// The prefix to prepend to all resource paths in etcd
    #[arg(long, default_value = "/registry")]
    pub etcd_prefix: String,
    /// SSL Certificate Authority file used to secure etcd communication
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,
    /// SSL certification file used to secure etcd communication
    #[arg(long)]
    pub etcd_certfile: Option<PathBuf>,
    /// SSL key file used to secure etcd communication
    #[arg(long)]
    pub etcd_keyfile: Option<PathBuf>,
    /// The interval of compaction requests. If 0, the compaction request from apiserver is disabled
    #[arg(long, default_value = "5m0s")]
    pub etcd_compaction_interval: String,
    /// The port on which to serve HTTPS with authentication and authorization
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,
    /// The IP address on which to listen for the --secure-port port
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The IP address on which to advertise the apiserver to members of the cluster
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// The directory where the TLS certs are located. Ignored if --tls-cert-file and --tls-private-key-file are provided
    #[arg(long, default_value = "/var/run/kubernetes")]
    pub cert_dir: PathBuf,
    /// File containing the default x509 Certificate for HTTPS
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// File containing the default x509 private key matching --tls-cert-file
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// Ordered list of plug-ins to do authorization on secure port
    #[arg(long, default_value = "AlwaysAllow")]
    pub authorization_mode: String,
    /// A CIDR notation IP range from which to assign service cluster IPs
    #[arg(long, default_value = "10.0.0.0/24")]
    pub service_cluster_ip_range: String,
    /// A port range to reserve for services with NodePort visibility
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// Amount of time to retain events
    #[arg(long, default_value = "1h0m0s")]
    pub event_ttl: String,
    /// The maximum number of non-mutating requests in flight at a given time
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: u32,
    /// The maximum number of mutating requests in flight at a given time
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: u32,
    /// An optional field indicating the duration a handler must keep a request open before timing it out
    #[arg(long, default_value = "1m0s")]
    pub request_timeout: String,
    /// An optional field indicating the minimum number of seconds a handler must keep a request open
    #[arg(long, default_value_t = 1800)]
    pub min_request_timeout: u64,
    /// number for the log level verbosity
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub v: u8,
    /// Sets the log format. Permitted formats: "text", "json"
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub logging_format: String,

    /// If set, any request presenting a client certificate signed by one of the authorities in the
    /// client-ca-file is authenticated with an identity corresponding to the CommonName of the client certificate
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// Identifier of the service account token issuer (the first one issues, all are accepted)
    #[arg(long)]
    pub service_account_issuer: Vec<String>,
    /// File containing PEM-encoded x509 RSA or ECDSA private or public keys, used to verify ServiceAccount tokens
    #[arg(long)]
    pub service_account_key_file: Vec<PathBuf>,
    /// Path to the file that contains the current private key of the service account token issuer
    #[arg(long)]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// The maximum validity duration of a token created by the service account token issuer
    #[arg(long)]
    pub service_account_max_token_expiration: Option<String>,
    /// Identifiers of the API. The service account token authenticator will validate that tokens used
    /// against the API are bound to at least one of these audiences
    #[arg(long)]
    pub api_audiences: Option<String>,
    /// admission plugins that should be enabled in addition to default enabled ones
    #[arg(long)]
    pub enable_admission_plugins: Option<String>,
    /// admission plugins that should be disabled although they are in the default enabled plugins list
    #[arg(long)]
    pub disable_admission_plugins: Option<String>,
    /// File with admission control configuration
    #[arg(long)]
    pub admission_control_config_file: Option<PathBuf>,
    /// If true, allow privileged containers
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub allow_privileged: Option<String>,
    /// Enables anonymous requests to the secure port of the API server (default true)
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub anonymous_auth: Option<String>,
    /// Enable to allow secrets of type 'bootstrap.kubernetes.io/token' in the 'kube-system' namespace
    /// to be used for TLS bootstrapping authentication
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub enable_bootstrap_token_auth: Option<String>,
    /// If set, the file that will be used to secure the secure port of the API server via token authentication
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// Root certificate bundle to use to verify client certificates on incoming requests before
    /// trusting usernames in headers specified by --requestheader-username-headers
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// List of client certificate common names to allow to provide usernames in headers
    #[arg(long)]
    pub requestheader_allowed_names: Option<String>,
    /// List of request headers to inspect for usernames. X-Remote-User is common
    #[arg(long)]
    pub requestheader_username_headers: Option<String>,
    /// List of request headers to inspect for UIDs. X-Remote-Uid is suggested
    #[arg(long)]
    pub requestheader_uid_headers: Option<String>,
    /// List of request headers to inspect for groups. X-Remote-Group is suggested
    #[arg(long)]
    pub requestheader_group_headers: Option<String>,
    /// List of request header prefixes to inspect. X-Remote-Extra- is suggested
    #[arg(long)]
    pub requestheader_extra_headers_prefix: Option<String>,
    /// Client certificate used to prove the identity of the aggregator or kube-apiserver when it must call out during a request
    #[arg(long)]
    pub proxy_client_cert_file: Option<PathBuf>,
    /// Private key for the client certificate used by the aggregator
    #[arg(long)]
    pub proxy_client_key_file: Option<PathBuf>,
    /// Path to a client cert file for TLS to kubelets
    #[arg(long)]
    pub kubelet_client_certificate: Option<PathBuf>,
    /// Path to a client key file for TLS to kubelets
    #[arg(long)]
    pub kubelet_client_key: Option<PathBuf>,

    // Accepted so that upstream configurations start; their features are not built yet.
    #[arg(long, hide = true)]
    pub kubelet_preferred_address_types: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub enable_aggregator_routing: Option<String>,
    #[arg(long, hide = true)]
    pub runtime_config: Option<String>,
    #[arg(long, hide = true)]
    pub feature_gates: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub profiling: Option<String>,
    #[arg(long, hide = true)]
    pub audit_log_path: Option<String>,
    #[arg(long, hide = true)]
    pub audit_policy_file: Option<String>,
}

impl Flags {
    /// One warning naming every accepted flag whose feature is not built yet.
    pub fn warn_unimplemented(&self) {
        let mut names = Vec::new();
        macro_rules! check {
            ($($field:ident => $flag:expr),* $(,)?) => {$(
                if self.$field.is_some() { names.push($flag); }
            )*};
        }
        check!(
            proxy_client_cert_file => "--proxy-client-cert-file",
            kubelet_client_certificate => "--kubelet-client-certificate",
            enable_aggregator_routing => "--enable-aggregator-routing",
            runtime_config => "--runtime-config",
            feature_gates => "--feature-gates",
            audit_log_path => "--audit-log-path",
        );
        if !names.is_empty() {
            tracing::warn!("accepted but not acted on yet: {}", names.join(", "));
        }
    }
}
