//! The kubelet's flags and its `KubeletConfiguration` (`kubelet.config.k8s.io/v1beta1`) file, with
//! upstream's defaults. A flag given on the command line wins over the file, as upstream.

use clap::Parser;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Parser, Clone, Debug)]
#[command(name = "kubelet", version = "v1.35.0", about = "The Kubernetes node agent")]
pub struct Flags {
    #[arg(long)]
    pub kubeconfig: Option<String>,
    #[arg(long)]
    pub bootstrap_kubeconfig: Option<String>,
    /// A `KubeletConfiguration` file.
    #[arg(long)]
    pub config: Option<String>,
    #[arg(long, default_value = "unix:///run/containerd/containerd.sock")]
    pub container_runtime_endpoint: String,
    #[arg(long)]
    pub image_service_endpoint: Option<String>,
    #[arg(long, default_value = "2m")]
    pub runtime_request_timeout: String,
    /// Comma-separated IPs the node reports (the first is the pods' `hostIP`).
    #[arg(long)]
    pub node_ip: Option<String>,
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// `key=value,...` labels added at registration.
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Vec<String>,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub register_node: bool,
    /// `key=value:Effect,...` taints added at registration.
    #[arg(long, value_delimiter = ',')]
    pub register_with_taints: Vec<String>,
    #[arg(long, default_value = "/var/lib/kubelet")]
    pub root_dir: String,
    /// Deprecated upstream (the runtime's own sandbox image is used); recorded so that image GC keeps it.
    #[arg(long)]
    pub pod_infra_container_image: Option<String>,
    #[arg(long)]
    pub healthz_port: Option<u16>,
    #[arg(long)]
    pub healthz_bind_address: Option<String>,
    #[arg(long)]
    pub max_pods: Option<i64>,
    #[arg(long)]
    pub cgroup_driver: Option<String>,
    #[arg(long)]
    pub cgroup_root: Option<String>,
    #[arg(long)]
    pub cgroups_per_qos: Option<bool>,
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<String>,
    #[arg(long)]
    pub cluster_domain: Option<String>,
    #[arg(long)]
    pub pod_manifest_path: Option<String>,
    #[arg(long)]
    pub fail_swap_on: Option<bool>,
    #[arg(long)]
    pub resolv_conf: Option<String>,
    #[arg(long)]
    pub provider_id: Option<String>,
    /// `--pod-max-pids` (podPidsLimit).
    #[arg(long)]
    pub pod_max_pids: Option<i64>,
    #[arg(long)]
    pub cert_dir: Option<String>,
    #[arg(long)]
    pub rotate_certificates: Option<bool>,
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub v: u8,
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    match s {
        None => Ok(None),
        Some(s) => {
            parse_duration(&s).map(Some).ok_or_else(|| serde::de::Error::custom(format!("invalid duration {s:?}")))
        }
    }
}

/// A Go duration (`10s`, `1m30s`, `500ms`, `2h`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    component_base::duration::parse_duration(s).ok()
}

/// The fields of `KubeletConfiguration` this kubelet knows; the ones not acted on yet (log rotation,
/// image GC, static pods, TLS bootstrap) are accepted so that kubeadm-style files load.
#[allow(dead_code)]
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct FileConfig {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub cgroup_driver: Option<String>,
    pub cgroup_root: Option<String>,
    #[serde(rename = "cgroupsPerQOS")]
    pub cgroups_per_qos: Option<bool>,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Option<Vec<String>>,
    pub cluster_domain: Option<String>,
    pub max_pods: Option<i64>,
    pub pod_pids_limit: Option<i64>,
    pub eviction_hard: Option<BTreeMap<String, String>>,
    pub eviction_soft: Option<BTreeMap<String, String>>,
    pub eviction_soft_grace_period: Option<BTreeMap<String, String>>,
    pub eviction_minimum_reclaim: Option<BTreeMap<String, String>>,
    pub eviction_max_pod_grace_period: Option<i32>,
    #[serde(default, deserialize_with = "de_duration")]
    pub eviction_pressure_transition_period: Option<Duration>,
    pub allowed_unsafe_sysctls: Option<Vec<String>>,
    pub container_log_max_size: Option<String>,
    pub container_log_max_files: Option<i32>,
    #[serde(default, deserialize_with = "de_duration")]
    pub container_log_monitor_interval: Option<Duration>,
    pub static_pod_path: Option<String>,
    #[serde(default, deserialize_with = "de_duration")]
    pub sync_frequency: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub node_status_update_frequency: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub node_status_report_frequency: Option<Duration>,
    pub node_lease_duration_seconds: Option<i32>,
    pub serialize_image_pulls: Option<bool>,
    pub max_parallel_image_pulls: Option<i32>,
    pub fail_swap_on: Option<bool>,
    pub rotate_certificates: Option<bool>,
    #[serde(rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: Option<bool>,
    pub register_node: Option<bool>,
    pub register_with_taints: Option<Vec<k8s_openapi::api::core::v1::Taint>>,
    pub system_reserved: Option<BTreeMap<String, String>>,
    pub kube_reserved: Option<BTreeMap<String, String>>,
    pub healthz_port: Option<u16>,
    pub healthz_bind_address: Option<String>,
    pub resolv_conf: Option<String>,
    pub pod_logs_dir: Option<String>,
    pub container_runtime_endpoint: Option<String>,
    #[serde(rename = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: Option<i32>,
    #[serde(rename = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: Option<i32>,
    #[serde(rename = "imageMinimumGCAge", default, deserialize_with = "de_duration")]
    pub image_minimum_gc_age: Option<Duration>,
    #[serde(rename = "imageMaximumGCAge", default, deserialize_with = "de_duration")]
    pub image_maximum_gc_age: Option<Duration>,
    #[serde(rename = "providerID")]
    pub provider_id: Option<String>,
}

/// The kubelet's effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    pub node_ips: Vec<String>,
    pub node_labels: BTreeMap<String, String>,
    pub register_node: bool,
    pub register_with_taints: Vec<k8s_openapi::api::core::v1::Taint>,
    pub root_dir: String,
    pub pod_logs_dir: String,
    pub runtime_endpoint: String,
    pub image_endpoint: String,
    pub runtime_request_timeout: Duration,
    pub cgroup_driver: String,
    pub cgroup_root: String,
    pub cgroups_per_qos: bool,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub max_pods: i64,
    pub eviction_hard: BTreeMap<String, String>,
    /// The hard and soft thresholds (`evictionHard`, `evictionSoft`, `evictionSoftGracePeriod`,
    /// `evictionMinimumReclaim`).
    pub eviction_thresholds: Vec<crate::eviction::Threshold>,
    /// `evictionMaxPodGracePeriod` (0): the most grace a pod evicted for a soft threshold gets.
    pub eviction_max_pod_grace_period: i64,
    /// `evictionPressureTransitionPeriod` (5m): how long a pressure condition stays after it ends.
    pub eviction_pressure_transition_period: Duration,
    /// `allowedUnsafeSysctls`: sysctls (or `prefix*` patterns) allowed beyond the safe set.
    pub allowed_unsafe_sysctls: Vec<String>,
    pub static_pod_path: Option<String>,
    pub sync_frequency: Duration,
    pub node_status_update_frequency: Duration,
    pub node_status_report_frequency: Duration,
    pub node_lease_duration_seconds: i32,
    pub fail_swap_on: bool,
    pub system_reserved: BTreeMap<String, String>,
    pub kube_reserved: BTreeMap<String, String>,
    pub healthz_port: u16,
    pub healthz_bind_address: String,
    pub resolv_conf: String,
    pub provider_id: Option<String>,
    pub kubeconfig: Option<String>,
    /// `--bootstrap-kubeconfig`: the credentials that ask for the node's client certificate when
    /// `--kubeconfig` does not exist or holds an expired one.
    pub bootstrap_kubeconfig: Option<String>,
    /// `--cert-dir` (`<root-dir>/pki`): where the client certificates are kept.
    pub cert_dir: String,
    /// `rotateCertificates`: renew the client certificate before it expires.
    pub rotate_certificates: bool,
    /// `serializeImagePulls` (true) and `maxParallelImagePulls` (no limit).
    pub serialize_image_pulls: bool,
    pub max_parallel_image_pulls: Option<usize>,
    /// `serverTLSBootstrap`: ask for a serving certificate through a CertificateSigningRequest.
    pub server_tls_bootstrap: bool,
    /// `podPidsLimit`: the most processes a pod's cgroup may hold (-1: no limit).
    pub pod_pids_limit: i64,
    /// `imageGCHighThresholdPercent` (85), `imageGCLowThresholdPercent` (80), `imageMinimumGCAge` (2m).
    pub image_gc_high: i32,
    pub image_gc_low: i32,
    pub image_minimum_gc_age: Duration,
    /// `imageMaximumGCAge` (0: off): an image unused this long goes whatever the disk usage.
    pub image_maximum_gc_age: Duration,
    /// `--pod-infra-container-image`: the sandbox image, which image garbage collection keeps.
    pub pod_infra_container_image: String,
    /// `containerLogMaxSize` (10Mi) in bytes, `containerLogMaxFiles` (5) and
    /// `containerLogMonitorInterval` (10s): when and how container logs are rotated.
    pub container_log_max_size: u64,
    pub container_log_max_files: usize,
    pub container_log_monitor_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to load Kubelet config file {path}, error: {msg}")]
    File { path: String, msg: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

fn parse_taint(s: &str) -> Result<k8s_openapi::api::core::v1::Taint, ConfigError> {
    let (kv, effect) = s.rsplit_once(':').ok_or_else(|| ConfigError::Invalid(format!("invalid taint spec: {s}")))?;
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (kv.to_string(), None),
    };
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(ConfigError::Invalid(format!("invalid taint effect: {effect}, unsupported taint effect")));
    }
    Ok(k8s_openapi::api::core::v1::Taint { key, value, effect: effect.into(), time_added: None })
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into()).trim().to_lowercase()
}

impl Config {
    pub fn load(f: &Flags) -> Result<Config, ConfigError> {
        let file: FileConfig = match &f.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::File { path: path.clone(), msg: e.to_string() })?;
                let c: FileConfig = serde_yaml_ng::from_str(&text)
                    .map_err(|e| ConfigError::File { path: path.clone(), msg: e.to_string() })?;
                if let Some(k) = c.kind.as_deref().filter(|k| *k != "KubeletConfiguration") {
                    return Err(ConfigError::File { path: path.clone(), msg: format!("unexpected kind {k:?}") });
                }
                if let Some(v) = c.api_version.as_deref().filter(|v| *v != "kubelet.config.k8s.io/v1beta1") {
                    return Err(ConfigError::File {
                        path: path.clone(),
                        msg: format!("no kind \"KubeletConfiguration\" is registered for version \"{v}\""),
                    });
                }
                c
            }
            None => FileConfig::default(),
        };
        let node_name = f.hostname_override.clone().filter(|h| !h.is_empty()).unwrap_or_else(hostname).to_lowercase();
        let mut node_labels = BTreeMap::new();
        for l in f.node_labels.iter().filter(|l| !l.is_empty()) {
            let (k, v) = l.split_once('=').ok_or_else(|| ConfigError::Invalid(format!("invalid node label {l:?}")))?;
            node_labels.insert(k.to_string(), v.to_string());
        }
        let mut taints = file.register_with_taints.clone().unwrap_or_default();
        for t in f.register_with_taints.iter().filter(|t| !t.is_empty()) {
            taints.push(parse_taint(t)?);
        }
        let runtime_endpoint = if f.container_runtime_endpoint != "unix:///run/containerd/containerd.sock" {
            f.container_runtime_endpoint.clone()
        } else {
            file.container_runtime_endpoint.clone().unwrap_or_else(|| f.container_runtime_endpoint.clone())
        };
        let cgroup_driver = f.cgroup_driver.clone().or(file.cgroup_driver.clone()).unwrap_or_else(|| "cgroupfs".into());
        if !matches!(cgroup_driver.as_str(), "cgroupfs" | "systemd") {
            return Err(ConfigError::Invalid(format!(
                "invalid configuration: cgroupDriver ({cgroup_driver:?}) must be one of \"cgroupfs\" or \"systemd\""
            )));
        }
        let mut eviction_hard: BTreeMap<String, String> = [
            ("memory.available", "100Mi"),
            ("nodefs.available", "10%"),
            ("imagefs.available", "15%"),
            ("nodefs.inodesFree", "5%"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(e) = &file.eviction_hard {
            // As upstream: a map given in the file replaces the defaults.
            eviction_hard = e.clone();
        }
        let none = BTreeMap::new();
        let eviction_thresholds = crate::eviction::parse_config(
            &eviction_hard,
            file.eviction_soft.as_ref().unwrap_or(&none),
            file.eviction_soft_grace_period.as_ref().unwrap_or(&none),
            file.eviction_minimum_reclaim.as_ref().unwrap_or(&none),
        )
        .map_err(ConfigError::Invalid)?;
        let log_size = file.container_log_max_size.clone().unwrap_or_else(|| "10Mi".into());
        let container_log_max_size = apimachinery::quantity::parse(&log_size)
            .filter(|v| *v > 0.0)
            .ok_or_else(|| ConfigError::Invalid(format!("containerLogMaxSize ({log_size}) is invalid")))?
            as u64;
        let container_log_max_files = file.container_log_max_files.unwrap_or(5);
        if container_log_max_files < 2 {
            return Err(ConfigError::Invalid(format!(
                "containerLogMaxFiles ({container_log_max_files}) must be equal to or greater than 2"
            )));
        }
        let image_gc_high = file.image_gc_high_threshold_percent.unwrap_or(85);
        let image_gc_low = file.image_gc_low_threshold_percent.unwrap_or(80);
        for (name, v) in [("imageGCHighThresholdPercent", image_gc_high), ("imageGCLowThresholdPercent", image_gc_low)]
        {
            if !(0..=100).contains(&v) {
                return Err(ConfigError::Invalid(format!("{name} ({v}) must be between 0 and 100")));
            }
        }
        if image_gc_low >= image_gc_high {
            return Err(ConfigError::Invalid(format!(
                "imageGCLowThresholdPercent ({image_gc_low}) must be less than imageGCHighThresholdPercent ({image_gc_high})"
            )));
        }
        let image_minimum_gc_age = file.image_minimum_gc_age.unwrap_or(Duration::from_secs(120));
        let image_maximum_gc_age = file.image_maximum_gc_age.unwrap_or_default();
        if !image_maximum_gc_age.is_zero() && image_maximum_gc_age <= image_minimum_gc_age {
            return Err(ConfigError::Invalid(format!(
                "imageMaximumGCAge {} must be greater than imageMinimumGCAge {}",
                component_base::duration::format_duration(image_maximum_gc_age),
                component_base::duration::format_duration(image_minimum_gc_age)
            )));
        }
        let eviction_max_pod_grace_period = i64::from(file.eviction_max_pod_grace_period.unwrap_or(0));
        let serialize_image_pulls = file.serialize_image_pulls.unwrap_or(true);
        if let Some(n) = file.max_parallel_image_pulls {
            if n < 1 {
                return Err(ConfigError::Invalid(format!("maxParallelImagePulls ({n}) must be a positive number")));
            }
            if serialize_image_pulls && n > 1 {
                return Err(ConfigError::Invalid(format!(
                    "maxParallelImagePulls ({n}) must be unset or set to 1 when serializeImagePulls (true) is enabled"
                )));
            }
        }
        let max_pods = f.max_pods.or(file.max_pods).unwrap_or(110);
        if max_pods < 0 {
            return Err(ConfigError::Invalid(format!("maxPods ({max_pods}) must not be a negative number")));
        }
        let node_ips: Vec<String> = f
            .node_ip
            .as_deref()
            .map(|s| s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect())
            .unwrap_or_default();
        for ip in &node_ips {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(ConfigError::Invalid(format!("failed to parse node IP {ip:?}")));
            }
        }
        Ok(Config {
            node_name,
            node_ips,
            node_labels,
            register_node: f.register_node && file.register_node.unwrap_or(true),
            register_with_taints: taints,
            root_dir: f.root_dir.clone(),
            pod_logs_dir: file.pod_logs_dir.clone().unwrap_or_else(|| "/var/log/pods".into()),
            image_endpoint: f.image_service_endpoint.clone().unwrap_or_else(|| runtime_endpoint.clone()),
            runtime_endpoint,
            runtime_request_timeout: parse_duration(&f.runtime_request_timeout).ok_or_else(|| {
                ConfigError::Invalid(format!("invalid --runtime-request-timeout {:?}", f.runtime_request_timeout))
            })?,
            cgroup_driver,
            cgroup_root: f.cgroup_root.clone().or(file.cgroup_root.clone()).unwrap_or_else(|| "/".into()),
            cgroups_per_qos: f.cgroups_per_qos.or(file.cgroups_per_qos).unwrap_or(true),
            cluster_dns: if f.cluster_dns.iter().any(|d| !d.is_empty()) {
                f.cluster_dns.clone()
            } else {
                file.cluster_dns.clone().unwrap_or_default()
            },
            cluster_domain: f.cluster_domain.clone().or(file.cluster_domain.clone()).unwrap_or_default(),
            max_pods,
            eviction_hard,
            eviction_thresholds,
            eviction_max_pod_grace_period,
            eviction_pressure_transition_period: file
                .eviction_pressure_transition_period
                .unwrap_or(Duration::from_secs(300)),
            allowed_unsafe_sysctls: file.allowed_unsafe_sysctls.clone().unwrap_or_default(),
            static_pod_path: f.pod_manifest_path.clone().or(file.static_pod_path.clone()).filter(|p| !p.is_empty()),
            sync_frequency: file.sync_frequency.unwrap_or(Duration::from_secs(60)),
            node_status_update_frequency: file.node_status_update_frequency.unwrap_or(Duration::from_secs(10)),
            node_status_report_frequency: file.node_status_report_frequency.unwrap_or(Duration::from_secs(300)),
            node_lease_duration_seconds: file.node_lease_duration_seconds.unwrap_or(40),
            fail_swap_on: f.fail_swap_on.or(file.fail_swap_on).unwrap_or(true),
            system_reserved: file.system_reserved.clone().unwrap_or_default(),
            kube_reserved: file.kube_reserved.clone().unwrap_or_default(),
            healthz_port: f.healthz_port.or(file.healthz_port).unwrap_or(10248),
            healthz_bind_address: f
                .healthz_bind_address
                .clone()
                .or(file.healthz_bind_address.clone())
                .unwrap_or_else(|| "127.0.0.1".into()),
            resolv_conf: f
                .resolv_conf
                .clone()
                .or(file.resolv_conf.clone())
                .unwrap_or_else(|| "/etc/resolv.conf".into()),
            provider_id: f.provider_id.clone().or(file.provider_id.clone()),
            kubeconfig: f.kubeconfig.clone().filter(|k| !k.is_empty()),
            bootstrap_kubeconfig: f.bootstrap_kubeconfig.clone().filter(|k| !k.is_empty()),
            cert_dir: f
                .cert_dir
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| format!("{}/pki", f.root_dir.trim_end_matches('/'))),
            // Off unless asked for, as upstream (kubeadm's kubelet config turns it on).
            rotate_certificates: f.rotate_certificates.or(file.rotate_certificates).unwrap_or(false),
            server_tls_bootstrap: file.server_tls_bootstrap.unwrap_or(false),
            serialize_image_pulls,
            max_parallel_image_pulls: file.max_parallel_image_pulls.map(|n| n as usize),
            pod_pids_limit: f.pod_max_pids.or(file.pod_pids_limit).unwrap_or(-1),
            image_gc_high,
            image_gc_low,
            image_minimum_gc_age,
            image_maximum_gc_age,
            pod_infra_container_image: f
                .pod_infra_container_image
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| "registry.k8s.io/pause:3.10".into()),
            container_log_max_size,
            container_log_max_files: container_log_max_files as usize,
            container_log_monitor_interval: file.container_log_monitor_interval.unwrap_or(Duration::from_secs(10)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("bogus"), None);
    }

    #[test]
    fn file_defaults_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(
            &p,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\nclusterDNS: [10.96.0.10]\nclusterDomain: cluster.local\nmaxPods: 20\nsyncFrequency: 30s\nevictionHard:\n  memory.available: 200Mi\n",
        )
        .unwrap();
        let f = Flags::parse_from([
            "kubelet",
            "--config",
            p.to_str().unwrap(),
            "--max-pods",
            "30",
            "--node-labels",
            "a=b,c=d",
        ]);
        let c = Config::load(&f).unwrap();
        assert_eq!(c.cgroup_driver, "systemd");
        assert_eq!(c.max_pods, 30, "a flag wins over the file");
        assert_eq!(c.cluster_dns, vec!["10.96.0.10"]);
        assert_eq!(c.sync_frequency, Duration::from_secs(30));
        assert_eq!(c.eviction_hard.len(), 1);
        assert_eq!(c.node_labels.get("c").map(String::as_str), Some("d"));
        assert_eq!(c.healthz_port, 10248);

        std::fs::write(
            &p,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: bogus\n",
        )
        .unwrap();
        let e = Config::load(&Flags::parse_from(["kubelet", "--config", p.to_str().unwrap()])).unwrap_err();
        assert!(e.to_string().contains("cgroupDriver"), "{e}");
        let e = Config::load(&Flags::parse_from(["kubelet", "--register-with-taints", "a=b:Bogus"])).unwrap_err();
        assert!(e.to_string().contains("invalid taint effect"), "{e}");
    }

    #[test]
    fn node_maintenance_fields_with_upstreams_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        let load = |body: &str| {
            std::fs::write(
                &p,
                format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n{body}"),
            )
            .unwrap();
            Config::load(&Flags::parse_from(["kubelet", "--config", p.to_str().unwrap(), "--root-dir", "/r"]))
        };
        let c = load("imageGCHighThresholdPercent: 70\nimageGCLowThresholdPercent: 60\nimageMinimumGCAge: 30s\npodPidsLimit: 256\ncontainerLogMaxSize: 5Mi\ncontainerLogMaxFiles: 3\nrotateCertificates: true\ncgroupsPerQOS: false\nproviderID: bare://n1\n").unwrap();
        assert!(!c.cgroups_per_qos);
        assert_eq!(c.provider_id.as_deref(), Some("bare://n1"));
        assert_eq!((c.image_gc_high, c.image_gc_low, c.image_minimum_gc_age), (70, 60, Duration::from_secs(30)));
        assert_eq!((c.pod_pids_limit, c.container_log_max_size, c.container_log_max_files), (256, 5 << 20, 3));
        assert!(c.rotate_certificates);
        assert_eq!(c.cert_dir, "/r/pki");
        let d = load("").unwrap();
        assert_eq!((d.image_gc_high, d.image_gc_low, d.pod_pids_limit, d.container_log_max_files), (85, 80, -1, 5));
        assert!(!d.rotate_certificates, "off unless asked for");
        let e = load("imageGCHighThresholdPercent: 50\nimageGCLowThresholdPercent: 60\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("imageGCLowThresholdPercent (60) must be less than imageGCHighThresholdPercent (50)"),
            "{e}"
        );
        let p = load("serializeImagePulls: false\nmaxParallelImagePulls: 3\n").unwrap();
        assert_eq!((p.serialize_image_pulls, p.max_parallel_image_pulls), (false, Some(3)));
        assert!(d.serialize_image_pulls, "serialized by default");
        let e = load("maxParallelImagePulls: 2\n").unwrap_err();
        assert!(e.to_string().contains("must be unset or set to 1 when serializeImagePulls (true) is enabled"), "{e}");
        let e = load("containerLogMaxFiles: 1\n").unwrap_err();
        assert!(e.to_string().contains("containerLogMaxFiles (1) must be equal to or greater than 2"), "{e}");
    }
}
