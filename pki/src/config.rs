//! Options for the PKI commands, from flags and from a kubeadm-style `InitConfiguration` /
//! `ClusterConfiguration` YAML (`--config`).

use crate::keys::KeyAlgorithm;
use crate::PkiError;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Clone, Debug)]
pub struct PkiConfig {
    /// `--cert-dir` / `certificatesDir` (default `/etc/kubernetes/pki`).
    pub cert_dir: PathBuf,
    /// `--kubeconfig-dir` (default `/etc/kubernetes`).
    pub kubeconfig_dir: PathBuf,
    /// `--apiserver-advertise-address` / `localAPIEndpoint.advertiseAddress`.
    pub advertise_address: Option<IpAddr>,
    /// `--apiserver-bind-port` / `localAPIEndpoint.bindPort` (6443).
    pub bind_port: u16,
    /// `--control-plane-endpoint` / `controlPlaneEndpoint`: `host[:port]`.
    pub control_plane_endpoint: Option<String>,
    /// `--service-cidr` / `networking.serviceSubnet` (10.96.0.0/12).
    pub service_cidr: String,
    /// `--service-dns-domain` / `networking.dnsDomain` (cluster.local).
    pub dns_domain: String,
    /// `--node-name` / `nodeRegistration.name` (the hostname).
    pub node_name: String,
    /// `--apiserver-cert-extra-sans` / `apiServer.certSANs`.
    pub extra_sans: Vec<String>,
    pub etcd_server_sans: Vec<String>,
    pub etcd_peer_sans: Vec<String>,
    /// `encryptionAlgorithm`.
    pub key_algorithm: KeyAlgorithm,
    /// `certificateValidityPeriod` (1 year).
    pub cert_validity: Duration,
    /// `caCertificateValidityPeriod` (10 years).
    pub ca_validity: Duration,
    /// `clusterName` (kubernetes).
    pub cluster_name: String,
}

impl Default for PkiConfig {
    fn default() -> Self {
        PkiConfig {
            cert_dir: "/etc/kubernetes/pki".into(),
            kubeconfig_dir: "/etc/kubernetes".into(),
            advertise_address: None,
            bind_port: 6443,
            control_plane_endpoint: None,
            service_cidr: "10.96.0.0/12".into(),
            dns_domain: "cluster.local".into(),
            node_name: default_node_name(),
            extra_sans: Vec::new(),
            etcd_server_sans: Vec::new(),
            etcd_peer_sans: Vec::new(),
            key_algorithm: KeyAlgorithm::Rsa2048,
            cert_validity: DEFAULT_CERT_VALIDITY,
            ca_validity: DEFAULT_CA_VALIDITY,
            cluster_name: "kubernetes".into(),
        }
    }
}

/// The hostname, lower-cased, as kubeadm names the node by default.
pub fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The address of the interface holding the default route, as kubeadm picks the advertise address;
/// the first non-loopback IPv4 address otherwise; 127.0.0.1 when the machine has neither.
pub fn default_advertise_address() -> IpAddr {
    let default_iface = std::fs::read_to_string("/proc/net/route").ok().and_then(|routes| {
        routes.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
        })
    });
    let mut addrs: Vec<(String, IpAddr)> = Vec::new();
    unsafe {
        let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut ifap) == 0 {
            let mut cur = ifap;
            while !cur.is_null() {
                let ifa = &*cur;
                if !ifa.ifa_addr.is_null() && (*ifa.ifa_addr).sa_family as i32 == libc::AF_INET {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    let ip = IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes());
                    let name = std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned();
                    addrs.push((name, ip));
                }
                cur = ifa.ifa_next;
            }
            libc::freeifaddrs(ifap);
        }
    }
    default_iface
        .and_then(|iface| addrs.iter().find(|(n, _)| *n == iface).map(|(_, ip)| *ip))
        .or_else(|| addrs.iter().find(|(_, ip)| !ip.is_loopback()).map(|(_, ip)| *ip))
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

impl PkiConfig {
    pub fn advertise_address(&self) -> IpAddr {
        self.advertise_address.unwrap_or_else(default_advertise_address)
    }

    /// The first address of the service CIDR (the `kubernetes` Service's ClusterIP).
    pub fn service_ip(&self) -> Result<IpAddr, PkiError> {
        let first = self.service_cidr.split(',').next().unwrap_or_default().trim();
        let (base, bits) =
            first.split_once('/').ok_or_else(|| PkiError::Config(format!("--service-cidr {first:?} is not a CIDR")))?;
        let base: IpAddr =
            base.parse().map_err(|_| PkiError::Config(format!("--service-cidr {first:?} is not a CIDR")))?;
        let bits: u32 =
            bits.parse().map_err(|_| PkiError::Config(format!("--service-cidr {first:?} is not a CIDR")))?;
        Ok(match base {
            IpAddr::V4(v4) if bits <= 30 => {
                let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
                IpAddr::from(((u32::from(v4) & mask) + 1).to_be_bytes())
            }
            IpAddr::V6(v6) if bits <= 126 => {
                let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
                IpAddr::from(((u128::from(v6) & mask) + 1).to_be_bytes())
            }
            _ => return Err(PkiError::Config(format!("--service-cidr {first:?} is too small"))),
        })
    }

    /// `https://host:port` of the control-plane endpoint, or of the advertise address when none is set.
    pub fn control_plane_url(&self) -> String {
        match &self.control_plane_endpoint {
            Some(ep) => {
                let (host, port) = split_host_port(ep);
                format_url(&host, port.unwrap_or(self.bind_port))
            }
            None => self.local_url(),
        }
    }

    /// `https://<advertise address>:<bind port>` (what controller-manager.conf and scheduler.conf use).
    pub fn local_url(&self) -> String {
        format_url(&self.advertise_address().to_string(), self.bind_port)
    }

    /// The host part of the control-plane endpoint.
    pub fn control_plane_host(&self) -> Option<String> {
        self.control_plane_endpoint.as_ref().map(|ep| split_host_port(ep).0)
    }
}

fn format_url(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    }
}

/// Splits `host[:port]`, `[v6]:port` or a bare IPv6 address.
pub fn split_host_port(ep: &str) -> (String, Option<u16>) {
    if let Some(rest) = ep.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            return (host.to_string(), tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    if ep.parse::<IpAddr>().is_ok() {
        return (ep.to_string(), None);
    }
    match ep.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), p.parse().ok()),
        _ => (ep.to_string(), None),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Doc {
    kind: Option<String>,
    api_version: Option<String>,
    // InitConfiguration
    #[serde(rename = "localAPIEndpoint")]
    local_api_endpoint: Option<LocalApiEndpoint>,
    node_registration: Option<NodeRegistration>,
    // ClusterConfiguration
    control_plane_endpoint: Option<String>,
    networking: Option<Networking>,
    api_server: Option<ApiServer>,
    certificates_dir: Option<String>,
    encryption_algorithm: Option<String>,
    certificate_validity_period: Option<String>,
    ca_certificate_validity_period: Option<String>,
    cluster_name: Option<String>,
    etcd: Option<Etcd>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LocalApiEndpoint {
    advertise_address: Option<String>,
    bind_port: Option<u16>,
}

#[derive(Deserialize, Default)]
struct NodeRegistration {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Networking {
    service_subnet: Option<String>,
    dns_domain: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ApiServer {
    #[serde(rename = "certSANs")]
    cert_sans: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
struct Etcd {
    local: Option<EtcdLocal>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct EtcdLocal {
    #[serde(rename = "serverCertSANs")]
    server_cert_sans: Option<Vec<String>>,
    #[serde(rename = "peerCertSANs")]
    peer_cert_sans: Option<Vec<String>>,
}

/// Parses a Go duration such as `8760h0m0s`, `87600h`, `30m`.
pub fn parse_go_duration(s: &str) -> Result<Duration, PkiError> {
    let bad = || PkiError::Config(format!("invalid duration {s:?}"));
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    if chars.peek().is_none() {
        return Err(bad());
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next().unwrap());
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return Err(bad()),
        };
    }
    if !num.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Applies a kubeadm config file (several YAML documents) to `cfg`. Flags given explicitly are applied
/// afterwards by the caller, so they win.
pub fn load_config_file(path: &Path, cfg: &mut PkiConfig) -> Result<(), PkiError> {
    let text = std::fs::read_to_string(path).map_err(|e| PkiError::file(path, format!("cannot read: {e}")))?;
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let doc =
            Doc::deserialize(doc).map_err(|e| PkiError::file(path, format!("invalid kubeadm configuration: {e}")))?;
        let api = doc.api_version.as_deref().unwrap_or_default();
        if !api.is_empty() && !api.starts_with("kubeadm.k8s.io/") {
            continue;
        }
        match doc.kind.as_deref() {
            Some("InitConfiguration") | Some("JoinConfiguration") => {
                if let Some(ep) = doc.local_api_endpoint {
                    if let Some(a) = ep.advertise_address.filter(|a| !a.is_empty()) {
                        cfg.advertise_address = Some(a.parse().map_err(|_| {
                            PkiError::file(
                                path,
                                format!("localAPIEndpoint.advertiseAddress {a:?} is not an IP address"),
                            )
                        })?);
                    }
                    if let Some(p) = ep.bind_port {
                        cfg.bind_port = p;
                    }
                }
                if let Some(name) = doc.node_registration.and_then(|n| n.name) {
                    cfg.node_name = name;
                }
            }
            Some("ClusterConfiguration") => {
                if let Some(ep) = doc.control_plane_endpoint.filter(|e| !e.is_empty()) {
                    cfg.control_plane_endpoint = Some(ep);
                }
                if let Some(n) = doc.networking {
                    if let Some(s) = n.service_subnet {
                        cfg.service_cidr = s;
                    }
                    if let Some(d) = n.dns_domain {
                        cfg.dns_domain = d;
                    }
                }
                if let Some(a) = doc.api_server {
                    cfg.extra_sans.extend(a.cert_sans.unwrap_or_default());
                }
                if let Some(d) = doc.certificates_dir {
                    cfg.cert_dir = d.into();
                }
                if let Some(alg) = doc.encryption_algorithm {
                    cfg.key_algorithm = KeyAlgorithm::parse(&alg)?;
                }
                if let Some(v) = doc.certificate_validity_period {
                    cfg.cert_validity = parse_go_duration(&v)?;
                }
                if let Some(v) = doc.ca_certificate_validity_period {
                    cfg.ca_validity = parse_go_duration(&v)?;
                }
                if let Some(c) = doc.cluster_name {
                    cfg.cluster_name = c;
                }
                if let Some(local) = doc.etcd.and_then(|e| e.local) {
                    cfg.etcd_server_sans.extend(local.server_cert_sans.unwrap_or_default());
                    cfg.etcd_peer_sans.extend(local.peer_cert_sans.unwrap_or_default());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ip_is_the_first_address() {
        let mut c = PkiConfig::default();
        assert_eq!(c.service_ip().unwrap().to_string(), "10.96.0.1");
        c.service_cidr = "10.0.0.0/24".into();
        assert_eq!(c.service_ip().unwrap().to_string(), "10.0.0.1");
        c.service_cidr = "fd00:10:96::/112,10.96.0.0/12".into();
        assert_eq!(c.service_ip().unwrap().to_string(), "fd00:10:96::1");
        c.service_cidr = "nonsense".into();
        assert!(c.service_ip().is_err());
    }

    #[test]
    fn endpoints_and_urls() {
        assert_eq!(split_host_port("lb.example.com:8443"), ("lb.example.com".into(), Some(8443)));
        assert_eq!(split_host_port("lb.example.com"), ("lb.example.com".into(), None));
        assert_eq!(split_host_port("[fd00::1]:6443"), ("fd00::1".into(), Some(6443)));
        assert_eq!(split_host_port("fd00::1"), ("fd00::1".into(), None));
        let c = PkiConfig {
            control_plane_endpoint: Some("fd00::1".into()),
            advertise_address: Some("192.0.2.10".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(c.control_plane_url(), "https://[fd00::1]:6443");
        assert_eq!(c.local_url(), "https://192.0.2.10:6443");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("8760h0m0s").unwrap(), DEFAULT_CERT_VALIDITY);
        assert_eq!(parse_go_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_go_duration("10 days").is_err());
    }

    #[test]
    fn kubeadm_config_documents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeadm.yaml");
        std::fs::write(
            &path,
            r#"apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 192.0.2.7
  bindPort: 7443
nodeRegistration:
  name: cp-1
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
controlPlaneEndpoint: k8s.example.com:443
certificatesDir: /srv/pki
encryptionAlgorithm: ECDSA-P256
certificateValidityPeriod: 2h0m0s
networking:
  serviceSubnet: 10.10.0.0/16
  dnsDomain: corp.local
apiServer:
  certSANs: [extra.example.com, 203.0.113.5]
"#,
        )
        .unwrap();
        let mut c = PkiConfig::default();
        load_config_file(&path, &mut c).unwrap();
        assert_eq!(c.advertise_address.unwrap().to_string(), "192.0.2.7");
        assert_eq!(c.bind_port, 7443);
        assert_eq!(c.node_name, "cp-1");
        assert_eq!(c.control_plane_endpoint.as_deref(), Some("k8s.example.com:443"));
        assert_eq!(c.cert_dir, PathBuf::from("/srv/pki"));
        assert_eq!(c.key_algorithm, KeyAlgorithm::EcdsaP256);
        assert_eq!(c.cert_validity, Duration::from_secs(7200));
        assert_eq!(c.service_cidr, "10.10.0.0/16");
        assert_eq!(c.dns_domain, "corp.local");
        assert_eq!(c.extra_sans, vec!["extra.example.com", "203.0.113.5"]);
    }
}
