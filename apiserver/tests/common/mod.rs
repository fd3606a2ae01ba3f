//! The API server as a process with a kubectl pointed at it, shared by the integration tests.
#![allow(dead_code)]

use apiserver_storage::testing::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn kubectl_bin() -> PathBuf {
    let p = std::env::var_os("FERROKUBE_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/ferrokube-tools/bin/kubectl"));
    assert!(p.exists(), "kubectl v1.35 not found at {} (e2e/install-tools.sh installs it)", p.display());
    p
}

pub struct Server {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub args: Vec<String>,
    pub addr: String,
}

impl Server {
    pub fn start(backend_args: Vec<String>) -> Server {
        Self::start_on("127.0.0.1", backend_args)
    }

    /// Starts a server on a free port. Ports are picked before the server binds them, so a parallel test
    /// may take the same one first: the start is retried on another port when the bind fails.
    pub fn start_on(addr: &str, backend_args: Vec<String>) -> Server {
        let mut args = vec!["--bind-address".to_string(), addr.to_string()];
        // No controller manager runs beside these servers, so nothing creates the `default` service
        // accounts the ServiceAccount plugin looks up (upstream's integration tests turn it off too).
        if !backend_args.iter().any(|a| a.starts_with("--disable-admission-plugins")) {
            args.extend(["--disable-admission-plugins".to_string(), "ServiceAccount".to_string()]);
        }
        // As kubeadm runs it (upstream's own default is false).
        if !backend_args.iter().any(|a| a.starts_with("--allow-privileged")) {
            args.push("--allow-privileged=true".to_string());
        }
        args.extend(backend_args);
        for attempt in 0.. {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            std::fs::write(
                dir.path().join("kubeconfig"),
                format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    insecure-skip-tls-verify: true\n    server: https://{addr}:{port}\n  name: t\ncontexts:\n- context:\n    cluster: t\n    user: t\n  name: t\ncurrent-context: t\nusers:\n- name: t\n  user:\n    token: unused\n"
                ),
            )
            .unwrap();
            let child = spawn(dir.path(), port, &args);
            let mut s = Server { child, dir, port, args: args.clone(), addr: addr.to_string() };
            match s.try_ready() {
                Ok(()) => return s,
                Err(log) if attempt < 4 && log.contains("in use") => continue,
                Err(log) => panic!("kube-apiserver did not start: {log}"),
            }
        }
        unreachable!()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn wait_ready(&mut self) {
        if let Err(log) = self.try_ready() {
            panic!("kube-apiserver did not become ready: {log}");
        }
    }

    /// Waits until this server answers `/readyz`; on exit or timeout, its log.
    fn try_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let log = |dir: &Path| std::fs::read_to_string(dir.join("apiserver.log")).unwrap_or_default();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}: {}", log(self.dir.path())));
            }
            if std::net::TcpStream::connect((self.addr.as_str(), self.port)).is_ok() {
                let out = self.kubectl_cmd().args(["get", "--raw", "/readyz"]).output().unwrap();
                if out.status.success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(format!("not ready within 60s: {}", log(self.dir.path())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.dir.path(), self.port, &self.args);
        self.wait_ready();
        // Ready also means the bootstrap finished.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.kubectl(&["get", "--raw", "/readyz"]).status.success() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// kubectl pointed at this server.
    pub fn kubectl_cmd(&self) -> Command {
        let mut c = Command::new(kubectl_bin());
        c.arg("--kubeconfig").arg(self.kubeconfig());
        c
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd().args(args).stdin(Stdio::null()).output().expect("kubectl runs")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(!out.status.success(), "kubectl {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn file(&self, name: &str, body: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    }
}

pub fn spawn(dir: &Path, port: u16, backend: &[String]) -> Child {
    let log = std::fs::File::create(dir.join("apiserver.log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kube-apiserver"))
        .args(["--secure-port", &port.to_string()])
        .arg("--cert-dir")
        .arg(dir.join("certs"))
        .args(backend)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("kube-apiserver starts")
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
