//! `ferroadm`: kubeadm's `certs` and `kubeconfig` commands for ferrokube clusters.

use clap::{Args, Parser, Subcommand};
use pki::{PkiConfig, PkiError};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ferroadm", about = "ferroadm: easily bootstrap a secure ferrokube cluster", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Commands related to handling Kubernetes certificates
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Kubeconfig file utilities
    Kubeconfig {
        #[command(subcommand)]
        command: KubeconfigCommand,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Generate certificates and keys (all, or one by name: ca, apiserver, apiserver-kubelet-client,
    /// front-proxy-ca, front-proxy-client, etcd-ca, etcd-server, etcd-peer, etcd-healthcheck-client,
    /// apiserver-etcd-client, sa)
    Generate {
        #[arg(default_value = "all")]
        name: String,
        #[command(flatten)]
        opts: ClusterOpts,
    },
    /// Check certificates expiration for a Kubernetes cluster
    CheckExpiration {
        #[command(flatten)]
        opts: ClusterOpts,
    },
    /// Renew certificates for a Kubernetes cluster
    Renew {
        name: String,
        /// Generate a new private key instead of keeping the existing one
        #[arg(long)]
        new_key: bool,
        #[command(flatten)]
        opts: ClusterOpts,
    },
    /// Generate certificate keys
    CertificateKey,
}

#[derive(Subcommand)]
enum KubeconfigCommand {
    /// Generate kubeconfig files (all, or one of admin, super-admin, kubelet, controller-manager, scheduler)
    Generate {
        #[arg(default_value = "all")]
        name: String,
        #[command(flatten)]
        opts: ClusterOpts,
    },
    /// Output a kubeconfig file for an additional user
    User {
        /// The name of user. It will be used as the CN if client certificates are created
        #[arg(long)]
        client_name: String,
        /// The organizations of the client certificate. It will be used as the O if client certificates are created
        #[arg(long = "org")]
        orgs: Vec<String>,
        /// The validity period of the client certificate. It is an offset from the current time.
        #[arg(long, default_value = "8760h0m0s")]
        validity_period: String,
        #[command(flatten)]
        opts: ClusterOpts,
    },
}

#[derive(Args)]
struct ClusterOpts {
    /// Path to a kubeadm configuration file (InitConfiguration / ClusterConfiguration)
    #[arg(long)]
    config: Option<PathBuf>,
    /// The path where to save and store the certificates
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// The path where to save the kubeconfig file
    #[arg(long)]
    kubeconfig_dir: Option<PathBuf>,
    /// The IP address the API Server will advertise it's listening on
    #[arg(long)]
    apiserver_advertise_address: Option<IpAddr>,
    /// Port for the API Server to bind to
    #[arg(long)]
    apiserver_bind_port: Option<u16>,
    /// Optional extra Subject Alternative Names (SANs) to use for the API Server serving certificate
    #[arg(long, value_delimiter = ',')]
    apiserver_cert_extra_sans: Vec<String>,
    /// Specify a stable IP address or DNS name for the control plane
    #[arg(long)]
    control_plane_endpoint: Option<String>,
    /// Use alternative range of IP address for service VIPs
    #[arg(long)]
    service_cidr: Option<String>,
    /// Use alternative domain for services, e.g. "myorg.internal"
    #[arg(long)]
    service_dns_domain: Option<String>,
    /// Specify the node name
    #[arg(long)]
    node_name: Option<String>,
}

impl ClusterOpts {
    fn resolve(self) -> Result<PkiConfig, PkiError> {
        let mut cfg = PkiConfig::default();
        if let Some(path) = &self.config {
            pki::load_config_file(path, &mut cfg)?;
        }
        if let Some(v) = self.cert_dir {
            cfg.cert_dir = v;
        }
        if let Some(v) = self.kubeconfig_dir {
            cfg.kubeconfig_dir = v;
        }
        if let Some(v) = self.apiserver_advertise_address {
            cfg.advertise_address = Some(v);
        }
        if let Some(v) = self.apiserver_bind_port {
            cfg.bind_port = v;
        }
        cfg.extra_sans.extend(self.apiserver_cert_extra_sans.into_iter().filter(|s| !s.is_empty()));
        if let Some(v) = self.control_plane_endpoint {
            cfg.control_plane_endpoint = Some(v);
        }
        if let Some(v) = self.service_cidr {
            cfg.service_cidr = v;
        }
        if let Some(v) = self.service_dns_domain {
            cfg.dns_domain = v;
        }
        if let Some(v) = self.node_name {
            cfg.node_name = v;
        }
        Ok(cfg)
    }
}

fn run(cli: Cli) -> Result<(), PkiError> {
    match cli.command {
        Command::Certs { command } => match command {
            CertsCommand::Generate { name, opts } => print_lines(pki::generate_certs(&opts.resolve()?, &name)?),
            CertsCommand::CheckExpiration { opts } => print!("{}", pki::check_expiration(&opts.resolve()?)?),
            CertsCommand::Renew { name, new_key, opts } => print_lines(pki::renew(&opts.resolve()?, &name, new_key)?),
            CertsCommand::CertificateKey => println!("{}", pki::certificate_key()),
        },
        Command::Kubeconfig { command } => match command {
            KubeconfigCommand::Generate { name, opts } => {
                print_lines(pki::generate_kubeconfigs(&opts.resolve()?, &name)?)
            }
            KubeconfigCommand::User { client_name, orgs, validity_period, opts } => {
                let validity = pki::parse_go_duration(&validity_period)?;
                print!("{}", pki::user_kubeconfig(&opts.resolve()?, &client_name, &orgs, validity)?);
            }
        },
    }
    Ok(())
}

fn print_lines(lines: Vec<String>) {
    for l in lines {
        println!("{l}");
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
