//! `deploy/local-up.sh` brings up what exists, on the embedded store, and `--down` stops it.

use apiserver_storage::testing::free_port;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// target/<profile>, where `cargo test --workspace` put the binaries.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    for bin in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "ferroadm"] {
        assert!(
            dir.join(bin).exists(),
            "{} missing: build with `cargo build --workspace --bins` first",
            dir.join(bin).display()
        );
    }
    dir
}

fn kubectl() -> PathBuf {
    let p = std::env::var_os("FERROKUBE_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/opt/ferrokube-tools/bin/kubectl".into());
    assert!(p.exists(), "kubectl v1.35 missing at {} (e2e/install-tools.sh)", p.display());
    p
}

fn alive(pid: i32) -> bool {
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn local_up_starts_the_cluster_and_down_stops_it() {
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let script = repo().join("deploy/local-up.sh");
    let run = |args: &[&str]| {
        Command::new("bash")
            .arg(&script)
            .args(args)
            .env("FERROKUBE_STATE_DIR", state.path())
            .env("FERROKUBE_APISERVER_PORT", port.to_string())
            .env("FERROKUBE_BIN_DIR", bin_dir())
            .env("FERROKUBE_NODE_NAME", "e2e-node")
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "local-up failed: {text}");
    assert!(text.contains("started kube-apiserver"), "{text}");
    assert!(text.contains("started kube-controller-manager"), "{text}");
    assert!(text.contains("started kube-scheduler"), "{text}");

    for f in [
        "admin.conf",
        "super-admin.conf",
        "pki/ca.crt",
        "pki/apiserver.crt",
        "pki/sa.key",
        "logs/kube-apiserver.log",
        "run/kube-apiserver.pid",
        "data/ferrokube.db",
    ] {
        assert!(state.path().join(f).exists(), "{f} in the state dir");
    }
    // The admin kubeconfig verifies the server against the cluster CA: no insecure flags.
    let admin = state.path().join("admin.conf");
    let out =
        Command::new(kubectl()).arg("--kubeconfig").arg(&admin).args(["get", "ns", "-o", "name"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("namespace/kube-system"));
    let out = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(&admin)
        .args(["create", "namespace", "from-e2e", "--dry-run=client", "-o", "yaml"])
        .output()
        .unwrap();
    assert!(out.status.success());

    // The controller manager works through its own kubeconfig (client certificate, CA-verified):
    // a Deployment gets its ReplicaSet and pods, a namespace its ServiceAccount and root CA.
    let kubectl_admin =
        |args: &[&str]| Command::new(kubectl()).arg("--kubeconfig").arg(&admin).args(args).output().unwrap();
    assert!(kubectl_admin(&["create", "deployment", "web", "--image=busybox:1.36", "--replicas=2"]).status.success());
    assert!(kubectl_admin(&["create", "namespace", "team-a"]).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let pods = kubectl_admin(&["get", "pods", "-l", "app=web", "-o", "name"]);
        let sa = kubectl_admin(&["get", "sa", "default", "-n", "team-a"]).status.success();
        let ca = kubectl_admin(&["get", "cm", "kube-root-ca.crt", "-n", "team-a"]).status.success();
        if String::from_utf8_lossy(&pods.stdout).lines().count() == 2 && sa && ca {
            break;
        }
        let log = std::fs::read_to_string(state.path().join("logs/kube-controller-manager.log")).unwrap_or_default();
        assert!(std::time::Instant::now() < deadline, "controllers did not act: {log}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // The scheduler looked at them: no node has registered yet, so they wait with upstream's reason.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = kubectl_admin(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type==\"PodScheduled\")].message}",
        ]);
        if String::from_utf8_lossy(&out.stdout).contains("no nodes available to schedule pods") {
            break;
        }
        let log = std::fs::read_to_string(state.path().join("logs/kube-scheduler.log")).unwrap_or_default();
        assert!(std::time::Instant::now() < deadline, "the scheduler did not report: {log}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Running it again restarts cleanly on the same state.
    let pid: i32 =
        std::fs::read_to_string(state.path().join("run/kube-apiserver.pid")).unwrap().trim().parse().unwrap();
    let out = run(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!alive(pid), "the previous kube-apiserver was stopped");
    let pid: i32 =
        std::fs::read_to_string(state.path().join("run/kube-apiserver.pid")).unwrap().trim().parse().unwrap();
    assert!(alive(pid));

    let out = run(&["--down"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped kube-apiserver"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped kube-controller-manager"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped kube-scheduler"));
    for _ in 0..50 {
        if !alive(pid) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!alive(pid), "--down stopped the API server");
    assert!(!state.path().join("run/kube-apiserver.pid").exists());
}
