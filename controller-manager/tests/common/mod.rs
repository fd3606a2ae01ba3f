//! A real kube-apiserver (embedded store) with kube-controller-manager processes against it, and a
//! stand-in kubelet that reports pods running and ready through the API.
#![allow(dead_code)]

use apiserver_storage::testing::free_port;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn kubectl_bin() -> PathBuf {
    let p = std::env::var_os("FERROKUBE_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/ferrokube-tools/bin/kubectl"));
    assert!(p.exists(), "kubectl v1.35 not found at {} (e2e/install-tools.sh installs it)", p.display());
    p
}

/// target/<profile>, where the workspace's binaries are.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// A workspace binary, with the workspace's binaries built first (once per process, as
/// `e2e/run.sh` builds them: a no-op when they are up to date), so that no test or bench runs a stale one.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let dir = bin_dir();
    BUILT.get_or_init(|| {
        let mut c = Command::new(env!("CARGO"));
        c.args(["build", "--workspace", "--bins", "--quiet"]);
        c.current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap());
        if dir.ends_with("release") {
            c.arg("--release");
        }
        assert!(c.status().unwrap().success(), "building the workspace's binaries");
    });
    dir.join(name)
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    apiserver: Child,
    managers: Vec<Child>,
}

impl Cluster {
    pub fn start() -> Cluster {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("apiserver.log")).unwrap();
            let child = Command::new(bin("kube-apiserver"))
                .args(["--secure-port", &port.to_string(), "--bind-address", "127.0.0.1"])
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .arg("--cert-dir")
                .arg(dir.path().join("certs"))
                // These tests play the other components themselves and choose pods' tolerations and
                // nodes' taints explicitly: no `default` service accounts unless a test starts the
                // controller, no default tolerations, no not-ready taint on new nodes.
                .args(["--disable-admission-plugins", "ServiceAccount,DefaultTolerationSeconds,TaintNodesByCondition"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            std::fs::write(
                dir.path().join("kubeconfig"),
                format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    insecure-skip-tls-verify: true\n    server: https://127.0.0.1:{port}\n  name: t\ncontexts:\n- context:\n    cluster: t\n    user: t\n    namespace: default\n  name: t\ncurrent-context: t\nusers:\n- name: t\n  user:\n    token: unused\n"
                ),
            )
            .unwrap();
            let mut c = Cluster { dir, port, apiserver: child, managers: Vec::new() };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Some(_)) = c.apiserver.try_wait() {
                    let log = std::fs::read_to_string(c.dir.path().join("apiserver.log")).unwrap_or_default();
                    assert!(log.contains("in use"), "kube-apiserver exited: {log}");
                    break;
                }
                if c.kubectl(&["get", "--raw", "/readyz"]).status.success() {
                    return c;
                }
                assert!(Instant::now() < deadline, "kube-apiserver not ready");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("no free port for kube-apiserver")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Starts a kube-controller-manager with `args`; its log is `kcm-<n>.log`.
    pub fn start_manager(&mut self, args: &[&str]) -> usize {
        self.start_component("kube-controller-manager", args)
    }

    /// Starts a component binary with `--kubeconfig` and `args`; its log is `kcm-<n>.log`.
    pub fn start_component(&mut self, binary: &str, args: &[&str]) -> usize {
        let n = self.managers.len();
        let log = std::fs::File::create(self.dir.path().join(format!("kcm-{n}.log"))).unwrap();
        let child = Command::new(bin(binary))
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.managers.push(child);
        n
    }

    pub fn manager_log(&self, n: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("kcm-{n}.log"))).unwrap_or_default()
    }

    /// The process IDs of the API server and of component `n`, for benchmarks that read their CPU time.
    #[allow(dead_code)]
    pub fn pids(&self, n: usize) -> (u32, u32) {
        (self.apiserver.id(), self.managers[n].id())
    }

    pub fn kill_manager(&mut self, n: usize, signal: i32) {
        let pid = self.managers[n].id() as i32;
        unsafe { libc::kill(pid, signal) };
        let _ = self.managers[n].wait();
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(kubectl_bin())
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    pub fn file(&self, name: &str, body: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    }

    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
        kube::Client::try_from(cfg).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A failing test shows what the components said.
        if std::thread::panicking() {
            for n in 0..self.managers.len() {
                let log = self.manager_log(n);
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- component {n} log (last lines) ---");
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        for m in &mut self.managers {
            let _ = m.kill();
            let _ = m.wait();
        }
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
    }
}

/// Polls `f` every 100ms until it returns Some, or panics with `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Plays the kubelet: pods without a Ready condition become Running and Ready after `delay`.
pub struct FakeKubelet {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl FakeKubelet {
    pub fn start(kubeconfig: &Path, delay: Duration) -> FakeKubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let kc = kubeconfig.to_path_buf();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let cfg = kube::Config::from_custom_kubeconfig(
                    kube::config::Kubeconfig::read_from(&kc).unwrap(),
                    &Default::default(),
                )
                .await
                .unwrap();
                let client = kube::Client::try_from(cfg).unwrap();
                let api: Api<Pod> = Api::all(client.clone());
                let mut first_seen: std::collections::HashMap<String, Instant> = Default::default();
                while !s.load(Ordering::SeqCst) {
                    if let Ok(pods) = api.list(&ListParams::default()).await {
                        for p in pods.items {
                            let ready = p
                                .status
                                .as_ref()
                                .and_then(|st| st.conditions.as_ref())
                                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"));
                            if ready || p.metadata.deletion_timestamp.is_some() {
                                continue;
                            }
                            let uid = p.metadata.uid.clone().unwrap_or_default();
                            let seen = *first_seen.entry(uid).or_insert_with(Instant::now);
                            if seen.elapsed() < delay {
                                continue;
                            }
                            let ns = p.metadata.namespace.clone().unwrap_or_default();
                            let now = k8s_openapi::jiff::Timestamp::now().to_string();
                            let patch = serde_json::json!({"status": {"phase": "Running", "podIP": "10.0.0.9",
                                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                            let _ = Api::<Pod>::namespaced(client.clone(), &ns)
                                .patch_status(
                                    p.metadata.name.as_deref().unwrap_or(""),
                                    &PatchParams::default(),
                                    &Patch::Merge(&patch),
                                )
                                .await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        });
        FakeKubelet { stop, handle: Some(handle) }
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
