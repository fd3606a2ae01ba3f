//! The cluster's PKI in kubeadm's layout: certificates, keys and kubeconfigs that upstream components and
//! operators find where kubeadm puts them.
//!
//! ```no_run
//! use pki::{PkiConfig, generate_certs, generate_kubeconfigs};
//! let mut cfg = PkiConfig::default();
//! cfg.cert_dir = "/tmp/pki".into();
//! cfg.kubeconfig_dir = "/tmp/kube".into();
//! cfg.node_name = "node-1".into();
//! for line in generate_certs(&cfg, "all").unwrap() { println!("{line}"); }
//! for line in generate_kubeconfigs(&cfg, "all").unwrap() { println!("{line}"); }
//! ```

pub mod cert;
mod config;
pub mod csr;
pub mod der;
mod expiration;
mod files;
pub mod keys;
pub mod kubeconfig;
mod ops;
mod spec;

pub use config::{default_advertise_address, load_config_file, parse_go_duration, PkiConfig};
pub use expiration::{check_expiration, short_human_duration};
pub use ops::{certificate_key, generate_certs, generate_kubeconfigs, renew, user_kubeconfig};
pub use spec::{CertSpec, KubeconfigSpec, CA_SPECS, KUBECONFIG_SPECS, LEAF_SPECS};

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file is missing, unreadable, malformed or inconsistent; names the file.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Crypto(String),
    #[error("{0}")]
    Refused(String),
}

impl PkiError {
    pub fn file(path: &Path, message: String) -> Self {
        PkiError::File { path: path.display().to_string(), message }
    }
}
