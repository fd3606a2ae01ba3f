//! Upstream's kube-controller-manager flags. Flags for features not built yet are accepted and logged,
//! so existing systemd units and static-pod manifests start unchanged.

use clap::Parser;
use std::net::IpAddr;

pub use component_base::duration::GoDuration;

#[derive(Parser, Clone, Debug)]
#[command(name = "kube-controller-manager", version = "v1.35.0", about = "The Kubernetes controller manager")]
pub struct Flags {
    #[arg(long)]
    pub kubeconfig: Option<String>,
    #[arg(long)]
    pub master: Option<String>,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    #[arg(long, default_value = "15s")]
    pub leader_elect_lease_duration: GoDuration,
    #[arg(long, default_value = "10s")]
    pub leader_elect_renew_deadline: GoDuration,
    #[arg(long, default_value = "2s")]
    pub leader_elect_retry_period: GoDuration,
    #[arg(long, default_value = "leases")]
    pub leader_elect_resource_lock: String,
    #[arg(long, default_value = "kube-controller-manager")]
    pub leader_elect_resource_name: String,
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// `*` (all on by default), `foo` (enable), `-foo` (disable).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    #[arg(long, default_value_t = 5)]
    pub concurrent_deployment_syncs: usize,
    #[arg(long, default_value_t = 5)]
    pub concurrent_replicaset_syncs: usize,
    #[arg(long, default_value_t = 5)]
    pub concurrent_rc_syncs: usize,
    #[arg(long, default_value_t = 20)]
    pub concurrent_gc_syncs: usize,
    #[arg(long, default_value_t = 10)]
    pub concurrent_namespace_syncs: usize,
    #[arg(long, default_value_t = 5)]
    pub concurrent_serviceaccount_token_syncs: usize,
    /// The number of resource quotas that are allowed to sync concurrently
    #[arg(long, default_value_t = 5)]
    pub concurrent_resource_quota_syncs: usize,
    /// The period for syncing quota usage status in the system
    #[arg(long, default_value = "5m0s")]
    pub resource_quota_sync_period: GoDuration,
    /// How often the PersistentVolume binder looks at every claim and volume again.
    #[arg(long, default_value = "15s")]
    pub pvclaimbinder_sync_period: GoDuration,
    #[arg(long, default_value_t = 5)]
    pub concurrent_endpoint_syncs: usize,
    #[arg(long, default_value_t = 5)]
    pub concurrent_service_endpoint_syncs: usize,
    #[arg(long, default_value_t = 100)]
    pub max_endpoints_per_slice: usize,
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allocate_node_cidrs: bool,
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    #[arg(long)]
    pub node_cidr_mask_size_ipv4: Option<u8>,
    #[arg(long)]
    pub service_cluster_ip_range: Option<String>,
    #[arg(long)]
    pub service_account_private_key_file: Option<String>,
    #[arg(long)]
    pub root_ca_file: Option<String>,
    #[arg(long)]
    pub cluster_signing_cert_file: Option<String>,
    #[arg(long)]
    pub cluster_signing_key_file: Option<String>,
    #[arg(long, default_value = "8760h0m0s")]
    pub cluster_signing_duration: GoDuration,
    /// The period of time since the last usage of an legacy service account token before it can be
    /// deleted.
    #[arg(long, default_value = "8760h0m0s")]
    pub legacy_service_account_token_clean_up_period: GoDuration,
    #[arg(long, default_value = "40s")]
    pub node_monitor_grace_period: GoDuration,
    #[arg(long, default_value = "5s")]
    pub node_monitor_period: GoDuration,
    #[arg(long, default_value = "1m0s")]
    pub node_startup_grace_period: GoDuration,
    #[arg(long, default_value_t = 0.1)]
    pub node_eviction_rate: f64,
    #[arg(long, default_value_t = 0.01)]
    pub secondary_node_eviction_rate: f64,
    #[arg(long, default_value_t = 0.55)]
    pub unhealthy_zone_threshold: f64,
    #[arg(long, default_value_t = 50)]
    pub large_cluster_size_threshold: usize,
    #[arg(long, default_value_t = 12500)]
    pub terminated_pod_gc_threshold: usize,
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub use_service_account_credentials: bool,
    #[arg(long, default_value_t = 10257)]
    pub secure_port: u16,
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    #[arg(long)]
    pub tls_cert_file: Option<String>,
    #[arg(long)]
    pub tls_private_key_file: Option<String>,
    #[arg(long)]
    pub cert_dir: Option<String>,
    #[arg(long)]
    pub authentication_kubeconfig: Option<String>,
    #[arg(long)]
    pub authorization_kubeconfig: Option<String>,
    #[arg(long)]
    pub requestheader_client_ca_file: Option<String>,
    #[arg(long)]
    pub client_ca_file: Option<String>,
    #[arg(long)]
    pub cluster_name: Option<String>,
    #[arg(long)]
    pub feature_gates: Option<String>,
    #[arg(long, default_value = "0s")]
    pub min_resync_period: GoDuration,
    #[arg(long, default_value_t = 20.0)]
    pub kube_api_qps: f64,
    #[arg(long, default_value_t = 30)]
    pub kube_api_burst: u32,
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub v: u8,
}

impl Flags {
    /// Says which accepted flags have no effect yet.
    pub fn warn_unimplemented(&self) {
        let unused: &[(&str, bool)] = &[
            ("--authentication-kubeconfig", self.authentication_kubeconfig.is_some()),
            ("--authorization-kubeconfig", self.authorization_kubeconfig.is_some()),
            ("--requestheader-client-ca-file", self.requestheader_client_ca_file.is_some()),
            ("--client-ca-file", self.client_ca_file.is_some()),
            ("--feature-gates", self.feature_gates.is_some()),
        ];
        for (flag, set) in unused {
            if *set {
                tracing::warn!(flag, "flag accepted but not acted on yet");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn upstream_flag_forms_parse() {
        let f = Flags::try_parse_from([
            "kube-controller-manager",
            "--kubeconfig=/etc/kubernetes/controller-manager.conf",
            "--leader-elect=false",
            "--controllers=*,-nodeipam",
            "--node-monitor-grace-period=20s",
            "--secure-port=0",
            "--allocate-node-cidrs=true",
            "--cluster-cidr=10.244.0.0/16",
            "--v=2",
        ])
        .unwrap();
        assert!(!f.leader_elect);
        assert_eq!(f.controllers, vec!["*", "-nodeipam"]);
        assert_eq!(f.node_monitor_grace_period.0, Duration::from_secs(20));
        assert_eq!(f.secure_port, 0);
        assert!(f.allocate_node_cidrs);
    }
}
