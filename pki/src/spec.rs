//! kubeadm's certificate and kubeconfig lists: names, files, subjects, usages and SANs.

use crate::cert::{AltNames, Usage};
use crate::{PkiConfig, PkiError};

/// Group bound to `cluster-admin` by kubeadm, used by admin.conf since Kubernetes 1.29.
pub const CLUSTER_ADMINS_GROUP: &str = "kubeadm:cluster-admins";
pub const MASTERS_GROUP: &str = "system:masters";
pub const NODES_GROUP: &str = "system:nodes";

/// How a certificate's common name is chosen.
#[derive(Clone, Copy, Debug)]
pub enum CommonName {
    Fixed(&'static str),
    NodeName,
}

/// Which SANs a certificate carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sans {
    None,
    ApiServer,
    EtcdServer,
    EtcdPeer,
}

/// One certificate of kubeadm's list (`kubeadm certs generate <name>`).
#[derive(Clone, Copy, Debug)]
pub struct CertSpec {
    /// Name on the command line and in `check-expiration`.
    pub name: &'static str,
    /// File base name under the cert dir (`.crt` / `.key` appended).
    pub base: &'static str,
    /// The signing CA's name; `None` for the CAs themselves.
    pub ca: Option<&'static str>,
    pub long_name: &'static str,
    pub common_name: CommonName,
    pub organizations: &'static [&'static str],
    pub usages: &'static [Usage],
    pub sans: Sans,
}

pub const CA_SPECS: &[CertSpec] = &[
    CertSpec {
        name: "ca",
        base: "ca",
        ca: None,
        long_name: "self-signed Kubernetes CA to provision identities for other Kubernetes components",
        common_name: CommonName::Fixed("kubernetes"),
        organizations: &[],
        usages: &[],
        sans: Sans::None,
    },
    CertSpec {
        name: "front-proxy-ca",
        base: "front-proxy-ca",
        ca: None,
        long_name: "self-signed CA to provision identities for front proxy",
        common_name: CommonName::Fixed("front-proxy-ca"),
        organizations: &[],
        usages: &[],
        sans: Sans::None,
    },
    CertSpec {
        name: "etcd-ca",
        base: "etcd/ca",
        ca: None,
        long_name: "self-signed CA to provision identities for etcd",
        common_name: CommonName::Fixed("etcd-ca"),
        organizations: &[],
        usages: &[],
        sans: Sans::None,
    },
];

pub const LEAF_SPECS: &[CertSpec] = &[
    CertSpec {
        name: "apiserver",
        base: "apiserver",
        ca: Some("ca"),
        long_name: "certificate for serving the Kubernetes API",
        common_name: CommonName::Fixed("kube-apiserver"),
        organizations: &[],
        usages: &[Usage::Server],
        sans: Sans::ApiServer,
    },
    CertSpec {
        name: "apiserver-kubelet-client",
        base: "apiserver-kubelet-client",
        ca: Some("ca"),
        long_name: "certificate for the API server to connect to kubelet",
        common_name: CommonName::Fixed("kube-apiserver-kubelet-client"),
        organizations: &[CLUSTER_ADMINS_GROUP],
        usages: &[Usage::Client],
        sans: Sans::None,
    },
    CertSpec {
        name: "front-proxy-client",
        base: "front-proxy-client",
        ca: Some("front-proxy-ca"),
        long_name: "certificate for the front proxy client",
        common_name: CommonName::Fixed("front-proxy-client"),
        organizations: &[],
        usages: &[Usage::Client],
        sans: Sans::None,
    },
    CertSpec {
        name: "etcd-server",
        base: "etcd/server",
        ca: Some("etcd-ca"),
        long_name: "certificate for serving etcd",
        common_name: CommonName::NodeName,
        organizations: &[],
        usages: &[Usage::Server, Usage::Client],
        sans: Sans::EtcdServer,
    },
    CertSpec {
        name: "etcd-peer",
        base: "etcd/peer",
        ca: Some("etcd-ca"),
        long_name: "certificate for etcd nodes to communicate with each other",
        common_name: CommonName::NodeName,
        organizations: &[],
        usages: &[Usage::Server, Usage::Client],
        sans: Sans::EtcdPeer,
    },
    CertSpec {
        name: "etcd-healthcheck-client",
        base: "etcd/healthcheck-client",
        ca: Some("etcd-ca"),
        long_name: "certificate for liveness probes to healthcheck etcd",
        common_name: CommonName::Fixed("kube-etcd-healthcheck-client"),
        organizations: &[MASTERS_GROUP],
        usages: &[Usage::Client],
        sans: Sans::None,
    },
    CertSpec {
        name: "apiserver-etcd-client",
        base: "apiserver-etcd-client",
        ca: Some("etcd-ca"),
        long_name: "certificate the apiserver uses to access etcd",
        common_name: CommonName::Fixed("kube-apiserver-etcd-client"),
        organizations: &[MASTERS_GROUP],
        usages: &[Usage::Client],
        sans: Sans::None,
    },
];

impl CertSpec {
    pub fn find(name: &str) -> Option<&'static CertSpec> {
        CA_SPECS.iter().chain(LEAF_SPECS).find(|s| s.name == name)
    }

    pub fn ca_spec(&self) -> Option<&'static CertSpec> {
        self.ca.and_then(CertSpec::find)
    }

    pub fn common_name(&self, cfg: &PkiConfig) -> String {
        match self.common_name {
            CommonName::Fixed(cn) => cn.to_string(),
            CommonName::NodeName => cfg.node_name.clone(),
        }
    }

    /// The SANs kubeadm puts in this certificate for `cfg`.
    pub fn alt_names(&self, cfg: &PkiConfig) -> Result<AltNames, PkiError> {
        let mut alt = AltNames::default();
        match self.sans {
            Sans::None => {}
            Sans::ApiServer => {
                alt.add(&cfg.node_name);
                for name in ["kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
                    alt.add(name);
                }
                alt.add(&format!("kubernetes.default.svc.{}", cfg.dns_domain));
                alt.add(&cfg.service_ip()?.to_string());
                alt.add(&cfg.advertise_address().to_string());
                if let Some(host) = cfg.control_plane_host() {
                    alt.add(&host);
                }
                for san in &cfg.extra_sans {
                    alt.add(san);
                }
            }
            Sans::EtcdServer | Sans::EtcdPeer => {
                alt.add(&cfg.node_name);
                if self.sans == Sans::EtcdServer {
                    alt.add("localhost");
                }
                alt.add(&cfg.advertise_address().to_string());
                if self.sans == Sans::EtcdServer {
                    alt.add("127.0.0.1");
                    alt.add("::1");
                }
                let extra = if self.sans == Sans::EtcdServer { &cfg.etcd_server_sans } else { &cfg.etcd_peer_sans };
                for san in extra {
                    alt.add(san);
                }
            }
        }
        Ok(alt)
    }
}

/// Which API server URL a kubeconfig points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    ControlPlaneEndpoint,
    LocalEndpoint,
}

/// One kubeconfig of kubeadm's list (`kubeadm kubeconfig` / `init phase kubeconfig <name>`).
#[derive(Clone, Copy, Debug)]
pub struct KubeconfigSpec {
    pub name: &'static str,
    pub file: &'static str,
    pub long_name: &'static str,
    /// Common name; `None` means `system:node:<node name>`.
    pub client_name: Option<&'static str>,
    pub organizations: &'static [&'static str],
    pub server: Server,
    /// Whether `certs renew` renews it (the kubelet rotates its own certificate).
    pub renewable: bool,
}

pub const KUBECONFIG_SPECS: &[KubeconfigSpec] = &[
    KubeconfigSpec {
        name: "admin",
        file: "admin.conf",
        long_name: "certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself",
        client_name: Some("kubernetes-admin"),
        organizations: &[CLUSTER_ADMINS_GROUP],
        server: Server::ControlPlaneEndpoint,
        renewable: true,
    },
    KubeconfigSpec {
        name: "super-admin",
        file: "super-admin.conf",
        long_name: "certificate embedded in the kubeconfig file for the super-admin",
        client_name: Some("kubernetes-super-admin"),
        organizations: &[MASTERS_GROUP],
        server: Server::ControlPlaneEndpoint,
        renewable: true,
    },
    KubeconfigSpec {
        name: "kubelet",
        file: "kubelet.conf",
        long_name: "certificate embedded in the kubeconfig file for the kubelet to use",
        client_name: None,
        organizations: &[NODES_GROUP],
        server: Server::ControlPlaneEndpoint,
        renewable: false,
    },
    KubeconfigSpec {
        name: "controller-manager",
        file: "controller-manager.conf",
        long_name: "certificate embedded in the kubeconfig file for the controller manager to use",
        client_name: Some("system:kube-controller-manager"),
        organizations: &[],
        server: Server::LocalEndpoint,
        renewable: true,
    },
    KubeconfigSpec {
        name: "scheduler",
        file: "scheduler.conf",
        long_name: "certificate embedded in the kubeconfig file for the scheduler manager to use",
        client_name: Some("system:kube-scheduler"),
        organizations: &[],
        server: Server::LocalEndpoint,
        renewable: true,
    },
];

impl KubeconfigSpec {
    pub fn find(name: &str) -> Option<&'static KubeconfigSpec> {
        KUBECONFIG_SPECS.iter().find(|s| s.name == name || s.file == name)
    }

    pub fn client_name(&self, cfg: &PkiConfig) -> String {
        match self.client_name {
            Some(n) => n.to_string(),
            None => format!("system:node:{}", cfg.node_name),
        }
    }

    pub fn server_url(&self, cfg: &PkiConfig) -> String {
        match self.server {
            Server::ControlPlaneEndpoint => cfg.control_plane_url(),
            Server::LocalEndpoint => cfg.local_url(),
        }
    }
}
