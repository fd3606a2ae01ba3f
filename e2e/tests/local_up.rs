//! The README's first command: `deploy/local-up.sh` brings up a whole single-node cluster (here in a
//! network namespace the test creates), the real kubectl runs pods and a Deployment whose pods run
//! in containerd, running it again is idempotent, and `--down` leaves no process, container or
//! mount behind.

mod common;

use common::{cstatus, text, LocalCluster};
use std::time::Duration;

fn alive(pid: i32) -> bool {
    unsafe { libc::kill(pid, 0) == 0 }
}

fn pid(c: &LocalCluster, name: &str) -> i32 {
    std::fs::read_to_string(c.path(&format!("run/{name}.pid"))).unwrap().trim().parse().unwrap()
}

/// Processes whose command line mentions `needle` (containerd's shims name its socket).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(cmd);
            }
        }
    }
    out
}

#[test]
fn local_up_runs_a_deployment_in_containerd_and_down_cleans_up() {
    let c = LocalCluster::up("localup");
    for started in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet"] {
        assert!(c.up_output.contains(&format!("started {started}")), "{}", c.up_output);
    }
    for f in [
        "admin.conf",
        "bootstrap-kubelet.conf",
        "kubelet/kubelet.conf",
        "kubelet/pki/kubelet-client-current.pem",
        "pki/ca.crt",
        "pki/sa.key",
        "data/ferrokube.db",
        "containerd/config.toml",
    ] {
        assert!(c.path(f).exists(), "{f} in the state dir");
    }

    // The node registered itself, as upstream's kubelet does.
    let node = c.get("default", &format!("node/{}", c.node));
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], c.node.as_str());
    assert!(node["status"]["nodeInfo"]["containerRuntimeVersion"].as_str().unwrap().starts_with("containerd://"));
    assert!(node["spec"]["podCIDR"].as_str().is_some(), "the controller manager gave the node a pod CIDR");

    // The controller manager gave the namespace its `default` service account (waited for, as
    // upstream's e2e framework does: the ServiceAccount admission plugin refuses pods until then).
    c.wait("the default service account", Duration::from_secs(30), || {
        c.kubectl(&["get", "serviceaccount", "default"]).status.success().then_some(())
    });
    // `kubectl run x --image=busybox:1.36 -- echo hi` works with no registry, and the pod sees the
    // service-account volume the ServiceAccount plugin added: its namespace, token and CA.
    const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
    let script = format!(
        "echo hi; echo ns=$(cat {SA_DIR}/namespace); test -s {SA_DIR}/token && echo token-ok; grep -q CERTIFICATE {SA_DIR}/ca.crt && echo ca-ok"
    );
    c.k(&["run", "x", "--image=busybox:1.36", "--restart=Never", "--", "sh", "-c", &script]);
    let p = c.wait_pod("default", "x", "Succeeded", 90, |p| p["status"]["phase"] == "Succeeded");
    assert_eq!(cstatus(&p)["state"]["terminated"]["exitCode"], 0);
    assert_eq!(cstatus(&p)["state"]["terminated"]["reason"], "Completed");
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let log = std::fs::read_to_string(c.path(&format!("logs/pods/default_x_{uid}/x/0.log"))).unwrap();
    assert!(log.contains(" stdout F hi"), "the container's output is in its CRI log file: {log}");
    for line in [" stdout F ns=default", " stdout F token-ok", " stdout F ca-ok"] {
        assert!(log.contains(line), "{line:?} in {log}");
    }
    // `kubectl logs` goes through the kubelet's port 10250, not served yet: a clear error, not the pod.
    let o = c.kubectl(&["logs", "x"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("pods/log needs the kubelet's server on port 10250"), "{}", text(&o));

    // The milestone: a Deployment's pods run in containerd.
    c.k(&["create", "deployment", "web", "--image=busybox:1.36", "--replicas=2", "--", "sleep", "3600"]);
    c.wait("the deployment to be available", Duration::from_secs(120), || {
        let d = c.get("default", "deployment/web");
        (d["status"]["availableReplicas"] == 2).then_some(())
    });
    let pods = c.get("default", "pods");
    let running: Vec<&serde_json::Value> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "web" && p["status"]["phase"] == "Running")
        .collect();
    assert_eq!(running.len(), 2);
    // It is a secured cluster, as kubeadm sets one up: Node,RBAC authorization, anonymous users get
    // nothing, and each controller runs as its own kube-system service account with its bootstrap role.
    let o = c.kubectl(&["get", "pods", "--as=system:anonymous"]);
    assert!(
        text(&o).contains(r#"pods is forbidden: User "system:anonymous" cannot list resource "pods""#),
        "{}",
        text(&o)
    );
    let o = c.kubectl(&[
        "auth",
        "can-i",
        "create",
        "replicasets",
        "--as=system:serviceaccount:kube-system:deployment-controller",
    ]);
    assert_eq!(text(&o).trim(), "yes");
    let o = c.kubectl(&["auth", "can-i", "create", "replicasets", "--as=system:kube-controller-manager"]);
    assert_eq!(text(&o).trim(), "no", "the manager's own identity may not create ReplicaSets, its controllers may");
    c.k(&["get", "serviceaccount", "-n", "kube-system", "deployment-controller", "replicaset-controller"]);
    let cri_pods = c.crictl(&["pods"]);
    for p in &running {
        assert!(cri_pods.contains(p["metadata"]["uid"].as_str().unwrap()), "{cri_pods}");
        assert!(p["status"]["podIP"].as_str().unwrap().starts_with("10.244."), "{p}");
    }

    // Running it again restarts the control plane, containerd and the kubelet on the same state; the
    // pods' containers keep running and the new kubelet adopts them without restarting them.
    let before: Vec<String> = running.iter().map(|p| cstatus(p)["containerID"].as_str().unwrap().to_string()).collect();
    let old = pid(&c, "kube-apiserver");
    let out = c.local_up(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!alive(old), "the previous kube-apiserver was stopped");
    c.wait("the deployment to be available again", Duration::from_secs(120), || {
        let d = c.get("default", "deployment/web");
        (d["status"]["availableReplicas"] == 2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let pods = c.get("default", "pods");
    for p in pods["items"].as_array().unwrap().iter().filter(|p| p["metadata"]["labels"]["app"] == "web") {
        let id = cstatus(p)["containerID"].as_str().unwrap_or_default().to_string();
        assert!(before.contains(&id), "container {id} is one of {before:?}: {p}");
        assert_eq!(cstatus(p)["restartCount"], 0, "{p}");
        assert_eq!(p["status"]["phase"], "Running");
    }

    // ResourceQuota: the controller publishes the quota and counts the running pods (the finished one
    // does not count), and gives back what a scaled-down pod held.
    c.k(&["create", "quota", "q", "--hard=pods=10"]);
    let used = || c.k(&["get", "quota", "q", "-o", "jsonpath={.status.hard.pods}/{.status.used.pods}"]);
    c.wait("the quota to count two pods", Duration::from_secs(30), || (used() == "10/2").then_some(()));
    c.k(&["scale", "deployment", "web", "--replicas=1"]);
    c.wait("the quota to give a pod back", Duration::from_secs(90), || (used() == "10/1").then_some(()));

    // --down: every process stopped, every sandbox removed (so no container, shim or mount is left).
    let pids: Vec<i32> = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet"]
        .iter()
        .map(|n| pid(&c, n))
        .collect();
    let out = c.down();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("Removed sandbox"), "{said}");
    for p in pids {
        for _ in 0..50 {
            if !alive(p) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!alive(p), "--down stopped pid {p}: {said}");
    }
    let state = c.state.path().to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&state)).collect();
    assert!(left.is_empty(), "mounts left behind: {left:?}");
    let procs = processes_mentioning(&state);
    assert!(procs.is_empty(), "processes left behind: {procs:?}");
}
