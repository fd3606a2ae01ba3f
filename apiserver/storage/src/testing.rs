//! Helpers for tests and benchmarks: a real etcd started on free loopback ports.
//!
//! Debian's `etcd-server` provides the binary (`e2e/run.sh` installs it). A missing binary is an error,
//! never a skipped test.

use crate::{EtcdConfig, EtcdStore, StoreError};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

/// The etcd binary: `$ETCD_BIN`, else `etcd` on `PATH`.
pub fn etcd_binary() -> PathBuf {
    std::env::var_os("ETCD_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("etcd"))
}

/// One etcd member on loopback, killed and its data removed on drop.
pub struct EtcdServer {
    child: Child,
    pub client_url: String,
    dir: PathBuf,
    owns_dir: bool,
}

impl EtcdServer {
    /// Starts etcd with its data in a new temporary directory and waits until it answers.
    pub fn start() -> EtcdServer {
        let dir = std::env::temp_dir().join(format!("ferrokube-etcd-{}-{}", std::process::id(), free_port()));
        let mut server = Self::start_in(&dir);
        server.owns_dir = true;
        server
    }

    /// Starts etcd with its data in `dir`.
    pub fn start_in(dir: &Path) -> EtcdServer {
        Self::start_with(dir, "http", &[])
    }

    /// Starts etcd serving clients over TLS with kubeadm's etcd certificates from `pki` (a cert dir):
    /// `etcd/server.crt`, client certificates required and verified against `etcd/ca.crt`.
    pub fn start_tls(pki: &Path) -> EtcdServer {
        let dir = std::env::temp_dir().join(format!("ferrokube-etcd-{}-{}", std::process::id(), free_port()));
        let p = |f: &str| pki.join(f).display().to_string();
        let args = [
            "--cert-file".to_string(),
            p("etcd/server.crt"),
            "--key-file".into(),
            p("etcd/server.key"),
            "--client-cert-auth".into(),
            "--trusted-ca-file".into(),
            p("etcd/ca.crt"),
        ];
        let mut server = Self::start_with(&dir, "https", &args);
        server.owns_dir = true;
        server
    }

    fn start_with(dir: &Path, scheme: &str, extra: &[String]) -> EtcdServer {
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        std::fs::create_dir_all(dir).expect("etcd data dir");
        let log = std::fs::File::create(dir.join("etcd.log")).expect("etcd log file");
        let child = Command::new(etcd_binary())
            .args(["--name", "test", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}"), "--logger", "zap", "--log-level", "error"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} (install Debian's etcd-server; e2e/run.sh does): {e}", etcd_binary().display())
            });
        EtcdServer { child, client_url, dir: dir.to_path_buf(), owns_dir: false }
    }

    /// A store on this server under `prefix`, waiting up to 30s for etcd to come up.
    pub async fn store(&self, prefix: &str) -> Result<EtcdStore, StoreError> {
        let mut config = EtcdConfig::new(vec![self.client_url.clone()]);
        config.prefix = prefix.to_string();
        config.connect_retry = Some(Duration::from_secs(30));
        EtcdStore::connect(&config).await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A multi-member etcd cluster on loopback, for failover tests.
pub struct EtcdCluster {
    pub members: Vec<Option<EtcdServer>>,
    pub client_urls: Vec<String>,
    dir: PathBuf,
}

impl EtcdCluster {
    pub fn start(size: usize) -> EtcdCluster {
        let dir = std::env::temp_dir().join(format!("ferrokube-etcd-cluster-{}-{}", std::process::id(), free_port()));
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        let mut client_urls = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let member_dir = dir.join(format!("m{i}"));
            std::fs::create_dir_all(&member_dir).expect("etcd member dir");
            let log = std::fs::File::create(member_dir.join("etcd.log")).expect("etcd log file");
            let child = Command::new(etcd_binary())
                .args(["--name", &format!("m{i}"), "--data-dir"])
                .arg(member_dir.join("data"))
                .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial, "--initial-cluster-state", "new"])
                .args(["--logger", "zap", "--log-level", "error"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", etcd_binary().display()));
            client_urls.push(client_url.clone());
            members.push(Some(EtcdServer { child, client_url, dir: member_dir, owns_dir: false }));
        }
        EtcdCluster { members, client_urls, dir }
    }

    /// Kills member `i` (SIGKILL), as a machine failure would.
    pub fn kill(&mut self, i: usize) {
        self.members[i] = None;
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.members.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
