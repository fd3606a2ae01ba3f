//! A whole single-node cluster as `deploy/local-up.sh` brings it up (API server on the embedded
//! store, controller manager, scheduler, containerd with its own root and socket, the kubelet),
//! inside a network namespace this harness creates: the CNI bridge, pod addresses, iptables rules
//! and the components' ports all stay in it. The real kubectl talks to it from inside the
//! namespace. Dropping the cluster runs `local-up.sh --down` and deletes the namespace.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// target/<profile>, with the workspace's binaries built (once per process, as `e2e/run.sh` builds
/// them: a no-op when they are up to date), so that a test or bench never runs stale ones.
pub fn bin_dir() -> PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    BUILT.get_or_init(|| {
        let mut c = Command::new(env!("CARGO"));
        c.args(["build", "--workspace", "--bins", "--quiet"]).current_dir(repo());
        if dir.ends_with("release") {
            c.arg("--release");
        }
        assert!(c.status().unwrap().success(), "building the workspace's binaries");
    });
    dir
}

pub fn kubectl_bin() -> PathBuf {
    let p = std::env::var_os("FERROKUBE_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/opt/ferrokube-tools/bin/kubectl".into());
    assert!(p.exists(), "kubectl v1.35 missing at {} (e2e/install-tools.sh)", p.display());
    p
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub struct LocalCluster {
    pub state: tempfile::TempDir,
    pub netns: String,
    pub node: String,
    pub up_output: String,
    /// Environment for every `local-up.sh` run (its knobs).
    env: Vec<(String, String)>,
}

impl LocalCluster {
    /// Brings the cluster up in a fresh network namespace and waits for its node to be Ready.
    pub fn up(name: &str) -> LocalCluster {
        Self::up_with(name, &[])
    }

    /// As `up`, with `local-up.sh` knobs (`FERROKUBE_*`) in its environment.
    pub fn up_with(name: &str, env: &[(&str, &str)]) -> LocalCluster {
        let netns = format!("fk{}-{name}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        let o = Command::new("ip").args(["netns", "add", &netns]).output().unwrap();
        assert!(o.status.success(), "ip netns add: {}", text(&o));
        let o = Command::new("ip").args(["-n", &netns, "link", "set", "lo", "up"]).output().unwrap();
        assert!(o.status.success(), "lo up: {}", text(&o));
        let state = tempfile::Builder::new().prefix("fk-e2e-").tempdir_in("/var/tmp").unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut c = LocalCluster { state, netns, node: format!("node-{name}"), up_output: String::new(), env };
        let out = c.local_up(&[]);
        c.up_output = text(&out);
        assert!(out.status.success(), "local-up failed: {}", c.up_output);
        c.wait("the node to be Ready", Duration::from_secs(120), || {
            let o = c.kubectl(&[
                "get",
                "node",
                &c.node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            (text(&o).trim() == "True").then_some(())
        });
        c
    }

    pub fn local_up(&self, args: &[&str]) -> Output {
        self.in_netns("bash")
            .arg(repo().join("deploy/local-up.sh"))
            .args(args)
            .env("FERROKUBE_STATE_DIR", self.state.path())
            .env("FERROKUBE_BIN_DIR", bin_dir())
            .env("FERROKUBE_NODE_NAME", &self.node)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    /// A command run in the cluster's network namespace (only the network: `ip netns exec` would
    /// also remount /sys and hide the cgroup hierarchies from the runtime).
    pub fn in_netns(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/var/run/netns/{}", self.netns)).arg("--").arg(program);
        c
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.state.path().join(rel)
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.in_netns(kubectl_bin()).arg("--kubeconfig").arg(self.path("admin.conf")).args(args).output().unwrap()
    }

    /// kubectl that must succeed; its stdout.
    pub fn k(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(o.status.success(), "kubectl {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn apply(&self, yaml: &str) {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), yaml).unwrap();
        self.k(&["apply", "-f", f.path().to_str().unwrap()]);
    }

    /// An object as JSON.
    pub fn get(&self, ns: &str, what: &str) -> serde_json::Value {
        serde_json::from_str(&self.k(&["get", "-n", ns, what, "-o", "json"])).unwrap()
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("logs/{name}.log"))).unwrap_or_default()
    }

    /// Polls `f` until it gives a value; on timeout, fails with the kubelet's log tail.
    pub fn wait<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                let mut report = format!("timed out waiting for {what}");
                for (name, lines) in
                    [("kube-apiserver", 15), ("kube-controller-manager", 25), ("kube-scheduler", 10), ("kubelet", 40)]
                {
                    let log = self.log(name);
                    let tail: Vec<&str> = log.lines().rev().take(lines).collect::<Vec<_>>().into_iter().rev().collect();
                    report.push_str(&format!("\n--- {name} log tail ---\n{}", tail.join("\n")));
                }
                panic!("{report}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Waits for `pred` to hold on pod `ns/name`; the pod.
    pub fn wait_pod(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        secs: u64,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = String::new();
        let desc = |last: &str| {
            let ev =
                self.kubectl(&["get", "events", "-n", ns, "--field-selector", &format!("involvedObject.name={name}")]);
            format!("pod {ns}/{name}: {what}\nlast seen: {last}\nevents:\n{}", text(&ev))
        };
        loop {
            let o = self.kubectl(&["get", "pod", "-n", ns, name, "-o", "json"]);
            if o.status.success() {
                if let Ok(p) = serde_json::from_slice::<serde_json::Value>(&o.stdout) {
                    if pred(&p) {
                        return p;
                    }
                    last = p["status"].to_string();
                }
            }
            if Instant::now() > deadline {
                let d = desc(&last);
                return self.wait(&d, Duration::ZERO, || None);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn crictl(&self, args: &[&str]) -> String {
        let sock = format!("unix://{}", self.path("run/containerd.sock").display());
        let o = self
            .in_netns(bin_dir().join("ferrocrictl"))
            .args(["--runtime-endpoint", &sock])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "ferrocrictl {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn down(&self) -> Output {
        self.local_up(&["--down"])
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if std::env::var_os("FERROKUBE_E2E_KEEP").is_some() {
            eprintln!("kept: state {} in netns {}", self.state.path().display(), self.netns);
            let _ = std::mem::replace(&mut self.state, tempfile::tempdir().unwrap()).keep();
            return;
        }
        let _ = self.down();
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
    }
}

/// The first container status of a pod.
pub fn cstatus(p: &serde_json::Value) -> &serde_json::Value {
    &p["status"]["containerStatuses"][0]
}
