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

    // Accepted so that upstream configurations start; their features come with the security issue.
    #[arg(long, hide = true)]
    pub client_ca_file: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub service_account_issuer: Vec<String>,
    #[arg(long, hide = true)]
    pub service_account_key_file: Vec<PathBuf>,
    #[arg(long, hide = true)]
    pub service_account_signing_key_file: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub api_audiences: Option<String>,
    #[arg(long, hide = true)]
    pub enable_admission_plugins: Option<String>,
    #[arg(long, hide = true)]
    pub disable_admission_plugins: Option<String>,
    #[arg(long, hide = true)]
    pub admission_control_config_file: Option<PathBuf>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub allow_privileged: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub anonymous_auth: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub enable_bootstrap_token_auth: Option<String>,
    #[arg(long, hide = true)]
    pub token_auth_file: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub requestheader_client_ca_file: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub requestheader_allowed_names: Option<String>,
    #[arg(long, hide = true)]
    pub requestheader_username_headers: Option<String>,
    #[arg(long, hide = true)]
    pub requestheader_group_headers: Option<String>,
    #[arg(long, hide = true)]
    pub requestheader_extra_headers_prefix: Option<String>,
    #[arg(long, hide = true)]
    pub proxy_client_cert_file: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub proxy_client_key_file: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub kubelet_client_certificate: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub kubelet_client_key: Option<PathBuf>,
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
            client_ca_file => "--client-ca-file",
            service_account_signing_key_file => "--service-account-signing-key-file",
            api_audiences => "--api-audiences",
            enable_admission_plugins => "--enable-admission-plugins",
            disable_admission_plugins => "--disable-admission-plugins",
            admission_control_config_file => "--admission-control-config-file",
            allow_privileged => "--allow-privileged",
            anonymous_auth => "--anonymous-auth",
            enable_bootstrap_token_auth => "--enable-bootstrap-token-auth",
            token_auth_file => "--token-auth-file",
            requestheader_client_ca_file => "--requestheader-client-ca-file",
            proxy_client_cert_file => "--proxy-client-cert-file",
            kubelet_client_certificate => "--kubelet-client-certificate",
            enable_aggregator_routing => "--enable-aggregator-routing",
            runtime_config => "--runtime-config",
            feature_gates => "--feature-gates",
            audit_log_path => "--audit-log-path",
        );
        if !self.service_account_issuer.is_empty() {
            names.push("--service-account-issuer");
        }
        if !self.service_account_key_file.is_empty() {
            names.push("--service-account-key-file");
        }
        if self.authorization_mode != "AlwaysAllow" {
            names.push("--authorization-mode (only AlwaysAllow is served so far)");
        }
        if !names.is_empty() {
            tracing::warn!("accepted but not acted on yet: {}", names.join(", "));
        }
    }
}
