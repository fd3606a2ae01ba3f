//! The kubelet with real containerd, runc and CNI plugins, in a cluster brought up by
//! `deploy/local-up.sh` inside a network namespace this test creates. The scenarios share the
//! cluster, each in its own namespace, and run side by side; the kubelet restart runs last.

mod common;

use common::{cstatus, repo, text, LocalCluster};
use std::process::Command;
use std::time::{Duration, Instant};

type Scenario = fn(&LocalCluster, &str);

fn ns(c: &LocalCluster, name: &str) {
    c.k(&["create", "namespace", name]);
    // Pods need the namespace's default ServiceAccount (the admission that waits for it is absent).
    c.wait("the default service account", Duration::from_secs(60), || {
        c.kubectl(&["get", "sa", "default", "-n", name]).status.success().then_some(())
    });
}

fn pod_log(c: &LocalCluster, ns: &str, pod: &str, container: &str, attempt: u32) -> String {
    let p = c.get(ns, &format!("pod/{pod}"));
    let uid = p["metadata"]["uid"].as_str().unwrap();
    std::fs::read_to_string(c.path(&format!("logs/pods/{ns}_{pod}_{uid}/{container}/{attempt}.log")))
        .unwrap_or_default()
}

fn waiting_reason(p: &serde_json::Value) -> String {
    cstatus(p)["state"]["waiting"]["reason"].as_str().unwrap_or_default().to_string()
}

fn condition(p: &serde_json::Value, t: &str) -> String {
    p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn exits(c: &LocalCluster, ns: &str) {
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: ok, namespace: {ns}}}
spec:
  restartPolicy: Never
  containers:
  - {{name: c, image: busybox:1.36, command: [sh, -c, "echo hello from the pod"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: fails, namespace: {ns}}}
spec:
  restartPolicy: Never
  containers:
  - {{name: c, image: busybox:1.36, command: [sh, -c, "echo last words > /dev/termination-log; exit 3"]}}
"#
    ));
    let p = c.wait_pod(ns, "ok", "Succeeded", 60, |p| p["status"]["phase"] == "Succeeded");
    let t = &cstatus(&p)["state"]["terminated"];
    assert_eq!(t["exitCode"], 0);
    assert_eq!(t["reason"], "Completed");
    assert!(t["startedAt"].is_string() && t["finishedAt"].is_string(), "{t}");
    assert!(cstatus(&p)["containerID"].as_str().unwrap().starts_with("containerd://"));
    assert_eq!(condition(&p, "Ready"), "False");
    assert_eq!(
        p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap()["reason"],
        "PodCompleted"
    );
    assert_eq!(p["status"]["qosClass"], "BestEffort");
    assert!(pod_log(c, ns, "ok", "c", 0).contains("stdout F hello from the pod"));

    let p = c.wait_pod(ns, "fails", "Failed", 60, |p| p["status"]["phase"] == "Failed");
    let t = &cstatus(&p)["state"]["terminated"];
    assert_eq!(t["exitCode"], 3);
    assert_eq!(t["reason"], "Error");
    assert_eq!(t["message"], "last words\n");
}

fn crash_loop(c: &LocalCluster, ns: &str) {
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: crash, namespace: {ns}}}
spec:
  containers:
  - {{name: c, image: busybox:1.36, command: [sh, -c, "echo dying; exit 1"]}}
"#
    ));
    // Upstream's back-off: an immediate restart, then 10s, then 20s, doubling up to 5 minutes.
    let p = c.wait_pod(ns, "crash", "back-off 10s", 60, |p| {
        cstatus(p)["state"]["waiting"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("back-off 10s restarting failed container=c pod=crash_")
    });
    assert_eq!(waiting_reason(&p), "CrashLoopBackOff");
    assert_eq!(cstatus(&p)["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(p["status"]["phase"], "Running");
    let first = Instant::now();
    let p = c.wait_pod(ns, "crash", "back-off 20s", 90, |p| {
        cstatus(p)["state"]["waiting"]["message"].as_str().unwrap_or("").starts_with("back-off 20s")
    });
    assert!(first.elapsed() >= Duration::from_secs(5), "the second delay is longer than the first");
    assert!(cstatus(&p)["restartCount"].as_i64().unwrap() >= 2, "{p}");
}

fn probes(c: &LocalCluster, ns: &str) {
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: live, namespace: {ns}}}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 600"]
    livenessProbe:
      exec: {{command: [cat, /tmp/healthy]}}
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Pod
metadata: {{name: ready, namespace: {ns}}}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, "sleep 5; touch /tmp/ready; sleep 600"]
    readinessProbe:
      exec: {{command: [cat, /tmp/ready]}}
      periodSeconds: 1
"#
    ));
    let p = c.wait_pod(ns, "ready", "running but not ready", 60, |p| cstatus(p)["state"]["running"].is_object());
    assert_eq!(cstatus(&p)["ready"], false, "a readiness probe gates Ready: {p}");
    assert_eq!(condition(&p, "Ready"), "False");
    assert_eq!(condition(&p, "ContainersReady"), "False");
    let p = c.wait_pod(ns, "ready", "Ready", 60, |p| condition(p, "Ready") == "True");
    assert_eq!(cstatus(&p)["ready"], true);
    let ready = p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert!(ready.get("reason").is_none() && ready.get("message").is_none(), "no stale reason: {ready}");
    let scheduled =
        p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "PodScheduled").unwrap().clone();
    assert_eq!(scheduled["status"], "True", "the scheduler's condition is kept: {scheduled}");
    assert_eq!(cstatus(&p)["restartCount"], 0);

    let p = c.wait_pod(ns, "live", "restarted by its liveness probe", 90, |p| {
        cstatus(p)["restartCount"].as_i64().unwrap_or(0) >= 1
    });
    assert!(cstatus(&p)["lastState"]["terminated"].is_object(), "{p}");
    let events = c.k(&["get", "events", "-n", ns, "--field-selector", "involvedObject.name=live"]);
    assert!(events.contains("Liveness probe failed"), "{events}");
    assert!(events.contains("failed liveness probe, will be restarted"), "{events}");
}

fn config(c: &LocalCluster, ns: &str) {
    c.apply(&format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: cfg, namespace: {ns}}}
data: {{key: v1, other: o1}}
---
apiVersion: v1
kind: Secret
metadata: {{name: sec, namespace: {ns}}}
stringData: {{password: p1}}
---
apiVersion: v1
kind: Service
metadata: {{name: my-db, namespace: {ns}}}
spec:
  ports: [{{name: pg, port: 5432}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: env, namespace: {ns}, labels: {{app: demo}}}}
spec:
  initContainers:
  - {{name: init, image: busybox:1.36, command: [sh, -c, "echo from-init > /work/init.txt"], volumeMounts: [{{name: work, mountPath: /work}}]}}
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, 'echo "env $KEY $PASS $CFG_other $POD_NAME $APP $(cat /work/init.txt)"; echo "svc $MY_DB_PORT_5432_TCP_PORT $MY_DB_SERVICE_PORT_PG $MY_DB_SERVICE_HOST $KUBERNETES_SERVICE_PORT $KUBERNETES_SERVICE_HOST"; while true; do echo "file $(cat /etc/cfg/key)"; sleep 1; done']
    env:
    - {{name: KEY, valueFrom: {{configMapKeyRef: {{name: cfg, key: key}}}}}}
    - {{name: PASS, valueFrom: {{secretKeyRef: {{name: sec, key: password}}}}}}
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: APP, valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['app']"}}}}}}
    envFrom:
    - {{prefix: CFG_, configMapRef: {{name: cfg}}}}
    volumeMounts:
    - {{name: cfg, mountPath: /etc/cfg}}
    - {{name: work, mountPath: /work}}
  volumes:
  - {{name: cfg, configMap: {{name: cfg}}}}
  - {{name: work, emptyDir: {{}}}}
"#
    ));
    let p = c.wait_pod(ns, "env", "Running", 60, |p| p["status"]["phase"] == "Running");
    assert_eq!(condition(&p, "Initialized"), "True");
    assert_eq!(p["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
    c.wait("the environment in the log", Duration::from_secs(30), || {
        pod_log(c, ns, "env", "c", 0).contains("env v1 p1 o1 env demo from-init").then_some(())
    });
    // Service links, as upstream's docker-link variables: the namespace's Services and the API server's.
    let db_ip = c.get(ns, "service/my-db")["spec"]["clusterIP"].as_str().unwrap().to_string();
    let api_ip = c.get("default", "service/kubernetes")["spec"]["clusterIP"].as_str().unwrap().to_string();
    let want = format!("svc 5432 5432 {db_ip} 443 {api_ip}");
    c.wait("the service variables in the log", Duration::from_secs(30), || {
        pod_log(c, ns, "env", "c", 0).contains(&want).then_some(())
    });
    c.wait("the configMap volume in the log", Duration::from_secs(30), || {
        pod_log(c, ns, "env", "c", 0).contains("file v1").then_some(())
    });
    // An update reaches the mounted files in place (the ..data symlink swap), without a restart.
    c.k(&["patch", "configmap", "cfg", "-n", ns, "--type=merge", "-p", r#"{"data":{"key":"v2"}}"#]);
    c.wait("the updated configMap in the log", Duration::from_secs(60), || {
        pod_log(c, ns, "env", "c", 0).contains("file v2").then_some(())
    });
    assert_eq!(cstatus(&c.get(ns, "pod/env"))["restartCount"], 0);
}

fn oom(c: &LocalCluster, ns: &str) {
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hog, namespace: {ns}}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, "tail /dev/zero"]
    resources: {{limits: {{memory: 24Mi, cpu: 500m}}}}
"#
    ));
    let p = c.wait_pod(ns, "hog", "OOMKilled", 90, |p| p["status"]["phase"] == "Failed");
    assert_eq!(cstatus(&p)["state"]["terminated"]["reason"], "OOMKilled", "{p}");
    assert_eq!(cstatus(&p)["state"]["terminated"]["exitCode"], 137);
    assert_eq!(p["status"]["qosClass"], "Guaranteed");
}

fn graceful(c: &LocalCluster, ns: &str) {
    let dir = c.path(&format!("hostpath-{ns}"));
    std::fs::create_dir_all(&dir).unwrap();
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: slow, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 4
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, "trap '' TERM; while true; do sleep 1; done"]
    lifecycle:
      preStop:
        exec: {{command: [sh, -c, "echo prestop ran > /host/prestop"]}}
    volumeMounts: [{{name: host, mountPath: /host}}]
  volumes:
  - {{name: host, hostPath: {{path: {}, type: Directory}}}}
"#,
        dir.display()
    ));
    c.wait_pod(ns, "slow", "Running", 60, |p| p["status"]["phase"] == "Running");
    let start = Instant::now();
    let o = c.kubectl(&["delete", "pod", "slow", "-n", ns, "--timeout=60s"]);
    assert!(o.status.success(), "{}", text(&o));
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(3), "the grace period was honoured: {took:?}");
    assert!(took < Duration::from_secs(30), "then the container was killed: {took:?}");
    assert_eq!(std::fs::read_to_string(dir.join("prestop")).unwrap(), "prestop ran\n");
}

fn network(c: &LocalCluster, ns: &str) {
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: server, namespace: {ns}}}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, "mkdir -p /www && echo hello-from-server > /www/index.html && httpd -f -p 8080 -h /www"]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe:
      httpGet: {{path: /index.html, port: http}}
      periodSeconds: 1
"#
    ));
    let p = c.wait_pod(ns, "server", "Ready (httpGet probe)", 60, |p| condition(p, "Ready") == "True");
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {ns}}}
spec:
  restartPolicy: Never
  containers:
  - {{name: c, image: busybox:1.36, command: [wget, -qO-, "http://{ip}:8080/index.html"]}}
"#
    ));
    let p =
        c.wait_pod(ns, "client", "done", 60, |p| matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")));
    assert_eq!(p["status"]["phase"], "Succeeded", "{p}");
    assert_ne!(p["status"]["podIP"], ip.as_str());
    assert!(pod_log(c, ns, "client", "c", 0).contains("hello-from-server"));
}

fn node(c: &LocalCluster, _ns: &str) {
    let n = c.get("default", &format!("node/{}", c.node));
    let st = &n["status"];
    assert_eq!(st["capacity"]["pods"], "110");
    assert!(st["allocatable"]["memory"].is_string() && st["capacity"]["cpu"].is_string());
    assert_eq!(st["nodeInfo"]["kubeletVersion"], "v1.35.0");
    assert_eq!(st["nodeInfo"]["operatingSystem"], "linux");
    assert!(st["nodeInfo"]["bootID"].as_str().is_some_and(|b| !b.is_empty()));
    for (t, want) in
        [("Ready", "True"), ("MemoryPressure", "False"), ("DiskPressure", "False"), ("PIDPressure", "False")]
    {
        let cond = st["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).unwrap();
        assert_eq!(cond["status"], want, "{t}: {cond}");
    }
    assert_eq!(
        st["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap()["reason"],
        "KubeletReady"
    );
    assert!(st["images"].as_array().unwrap().iter().any(|i| i["names"].to_string().contains("busybox:1.36")), "{st}");
    let lease = c.get("kube-node-lease", &format!("lease/{}", c.node));
    assert_eq!(lease["spec"]["holderIdentity"], c.node.as_str());
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    let t0 = lease["spec"]["renewTime"].as_str().unwrap().to_string();
    c.wait("the lease to be renewed", Duration::from_secs(30), || {
        let l = c.get("kube-node-lease", &format!("lease/{}", c.node));
        (l["spec"]["renewTime"].as_str().unwrap() != t0).then_some(())
    });
    // The healthz endpoint on 10248 (in the cluster's namespace).
    let o = c.in_netns("curl").args(["-s", "http://127.0.0.1:10248/healthz"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ok");
}

/// The first PEM block of `kind` in `text`, as its base64 body.
fn pem_body(text: &str, kind: &str) -> String {
    let begin = format!("-----BEGIN {kind}-----");
    let start = text.find(&begin).unwrap_or_else(|| panic!("no {kind} in {text}")) + begin.len();
    let end = text[start..].find("-----END").unwrap() + start;
    text[start..end].split_whitespace().collect()
}

/// Stops a process started by a test and waits for it.
fn stop(child: &mut std::process::Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    for _ in 0..50 {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A further node on the cluster's machine (`<state>/<sub>`): its own containerd, with the first
/// one's configuration pointed at its own root, state, socket and CNI directory (plus `containerd_extra`),
/// and its kubelet's configuration (the common part plus `kubelet_extra`). Its kubelet joins through
/// the bootstrap token, tainted so that the other scenarios' pods stay off it.
struct ExtraNode {
    dir: std::path::PathBuf,
    state: String,
    sock: String,
    name: String,
}

impl ExtraNode {
    fn new(c: &LocalCluster, sub: &str, suffix: &str, containerd_extra: &str, kubelet_extra: &str) -> ExtraNode {
        let dir = c.path(sub);
        for d in ["containerd", "cni", "kubelet", "logs", "manifests"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let state = c.state.path().display().to_string();
        let b = dir.display().to_string();
        let sock = format!("{b}/containerd.sock");
        let config = std::fs::read_to_string(c.path("containerd/config.toml"))
            .unwrap()
            .replace(&format!("{state}/containerd/root"), &format!("{b}/containerd/root"))
            .replace(&format!("{state}/containerd/state"), &format!("{b}/containerd/state"))
            .replace(&format!("{state}/run/containerd.sock"), &sock)
            .replace(&format!("{state}/cni/net.d"), &format!("{b}/cni"));
        assert!(config.contains(&sock), "{config}");
        std::fs::write(dir.join("containerd/config.toml"), config + containerd_extra).unwrap();
        std::fs::write(
            dir.join("kubelet/config.yaml"),
            format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDomain: cluster.local\npodLogsDir: {b}/logs\nstaticPodPath: {b}/manifests\nevictionHard: {{memory.available: 100Mi, nodefs.available: 0%, imagefs.available: 0%}}\n{kubelet_extra}"),
        )
        .unwrap();
        ExtraNode { dir, state, sock, name: format!("{}-{suffix}", c.node) }
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap()
    }

    /// Its containerd, started by `cmd` (the program to run).
    fn containerd(&self, mut cmd: Command) -> std::process::Child {
        cmd.args(["--config", &format!("{}/containerd/config.toml", self.dir.display())])
            .stdout(self.log("containerd"))
            .stderr(self.log("containerd-err"))
            .spawn()
            .unwrap()
    }

    /// Its kubelet, started by `cmd` (the kubelet binary), on CNI bridge `bridge`, tainted `taint`.
    fn kubelet(&self, mut cmd: Command, bridge: &str, taint: &str) -> std::process::Child {
        let (b, state, sock) = (self.dir.display(), &self.state, &self.sock);
        cmd.args(["--bootstrap-kubeconfig", &format!("{state}/bootstrap-kubelet.conf")])
            .args(["--kubeconfig", &format!("{b}/kubelet/kubelet.conf"), "--cert-dir", &format!("{b}/kubelet/pki")])
            .args([
                "--config",
                &format!("{b}/kubelet/config.yaml"),
                "--container-runtime-endpoint",
                &format!("unix://{sock}"),
            ])
            .args(["--root-dir", &format!("{b}/kubelet"), "--cni-conf-dir", &format!("{b}/cni")])
            .args(["--cni-bridge-name", bridge, "--hostname-override", &self.name, "--node-ip", "127.0.0.1"])
            .args(["--register-with-taints", &format!("{taint}=true:NoSchedule")])
            .stdout(self.log("kubelet"))
            .stderr(self.log("kubelet-err"))
            .spawn()
            .unwrap()
    }

    /// Fails the scenario with `e`, and the ends of this node's kubelet and containerd logs.
    fn fail(&self, e: Box<dyn std::any::Any + Send>) -> ! {
        let tail = |file: &str, n: usize| {
            let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().rev().take(n).collect();
            lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        panic!(
            "{}\n--- {}'s kubelet ---\n{}\n--- its containerd ---\n{}",
            e.downcast_ref::<String>().cloned().unwrap_or_default(),
            self.name,
            tail("kubelet-err.log", 30),
            tail("containerd-err.log", 15)
        );
    }
}

/// A second kubelet with its own containerd on the same machine (same network namespace, its own
/// root, state, socket, CNI directory, bridge, kubelet root and healthz port) joins through the same
/// bootstrap token. Started before its runtime, its node reports upstream's "container runtime is
/// down" and becomes Ready once containerd is up; it gets its own pod CIDR, runs a pod, and a pod on
/// the first node reaches it by pod IP. It is tainted so that the other scenarios' pods stay on the
/// first node.
fn second_node(c: &LocalCluster, ns: &str) {
    let n = ExtraNode::new(
        c,
        "node-b",
        "b",
        "",
        "cgroupDriver: cgroupfs\ncgroupRoot: /ferrokube-b\nhealthzPort: 10249\nrotateCertificates: true\n",
    );
    let (node, sock) = (n.name.clone(), n.sock.clone());
    let mut kubelet = n.kubelet(c.in_netns(common::bin_dir().join("kubelet")), "ferrokube1", "ferrokube.test/second");
    let mut containerd: Option<std::process::Child> = None;
    let ready = |c: &LocalCluster| -> serde_json::Value {
        let n = c.get("default", &format!("node/{node}"));
        n["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned())
            .unwrap_or_default()
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // No runtime yet: the node registers, not ready, with upstream's reason.
        let cond = c.wait("the second node registered without a runtime", Duration::from_secs(90), || {
            c.kubectl(&["get", "node", &node]).status.success().then(|| ready(c)).filter(|r| r["status"] == "False")
        });
        assert_eq!(cond["reason"], "KubeletNotReady", "{cond}");
        assert!(cond["message"].as_str().unwrap().starts_with("container runtime is down"), "{cond}");
        containerd = Some(n.containerd(c.in_netns("containerd")));
        c.wait("the second containerd", Duration::from_secs(30), || std::path::Path::new(&sock).exists().then_some(()));
        let o = Command::new("bash")
            .arg(repo().join("deploy/images/build.sh"))
            .arg(c.path("images"))
            .arg(&sock)
            .output()
            .unwrap();
        assert!(o.status.success(), "importing images: {}", text(&o));
        c.wait("the second node Ready", Duration::from_secs(120), || (ready(c)["status"] == "True").then_some(()));
        let n = c.get("default", &format!("node/{node}"));
        let cidr_a = c.get("default", &format!("node/{}", c.node))["spec"]["podCIDR"].clone();
        assert!(n["spec"]["podCIDR"].is_string() && n["spec"]["podCIDR"] != cidr_a, "own pod CIDR: {}", n["spec"]);
        c.apply(&format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: far, namespace: {ns}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  tolerations: [{{key: ferrokube.test/second, operator: Exists}}]
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, "mkdir -p /www && echo hello-from-b > /www/index.html && httpd -f -p 8080 -h /www"]
"#
        ));
        let p = c.wait_pod(ns, "far", "Running on the second node", 90, |p| p["status"]["phase"] == "Running");
        assert_eq!(p["spec"]["nodeName"], node.as_str());
        let ip = p["status"]["podIP"].as_str().unwrap().to_string();
        let far_id = cstatus(&p)["containerID"].as_str().unwrap().trim_start_matches("containerd://").to_string();
        // It lives in the second runtime, not the first one's.
        assert!(!c.crictl(&["ps"]).contains(&far_id));
        c.apply(&format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: near, namespace: {ns}}}
spec:
  restartPolicy: Never
  nodeSelector: {{kubernetes.io/hostname: {}}}
  containers:
  - {{name: c, image: busybox:1.36, command: [sh, -c, "for i in 1 2 3 4 5; do wget -qO- http://{ip}:8080/index.html && exit 0; sleep 1; done; exit 1"]}}
"#,
            c.node
        ));
        let p = c.wait_pod(ns, "near", "done", 60, |p| {
            matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        });
        assert_eq!(p["status"]["phase"], "Succeeded", "{}", p["status"]);
        assert!(pod_log(c, ns, "near", "c", 0).contains("hello-from-b"));
        c.k(&["delete", "pod", "-n", ns, "far", "--grace-period=1"]);
    }));
    stop(&mut kubelet);
    if let Some(mut ctr) = containerd {
        let _ = c
            .in_netns(common::bin_dir().join("ferrocrictl"))
            .args(["--runtime-endpoint", &format!("unix://{sock}"), "rmp", "--all"])
            .output();
        stop(&mut ctr);
    }
    let _ = c.kubectl(&["delete", "node", &node, "--wait=false"]);
    let _ = c.in_netns("ip").args(["link", "delete", "ferrokube1"]).output();
    if let Err(e) = result {
        n.fail(e);
    }
}

/// A node on the `systemd` cgroup driver, under a real systemd: Debian's systemd booted as PID 1 of
/// new PID, mount and cgroup namespaces in the cluster's network namespace (`e2e/boot-systemd.sh`),
/// with a containerd (`SystemdCgroup = true`) and a kubelet (`cgroupDriver: systemd`) running in
/// them. A pod there gets its slice from the kubelet, with the pod's limits, its container's scope
/// from runc inside that slice, and the slice goes with the pod.
fn systemd_node(c: &LocalCluster, ns: &str) {
    let n = ExtraNode::new(
        c,
        "node-sd",
        "sd",
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n    SystemdCgroup = true\n",
        "cgroupDriver: systemd\nhealthzPort: 10247\npodPidsLimit: 64\n",
    );
    let (node, sock) = (n.name.clone(), n.sock.clone());
    let cgroup = format!("ferrokube-e2e-systemd-{}", std::process::id());
    let mut boot = c
        .in_netns("/bin/sh")
        .arg(repo().join("e2e/boot-systemd.sh"))
        .arg(n.dir.join("units"))
        .arg(&cgroup)
        .stdout(n.log("systemd"))
        .stderr(n.log("systemd-err"))
        .spawn()
        .unwrap();
    let boot_pid = boot.id();
    let init = c.wait("systemd as PID 1 of its namespaces, with its bus", Duration::from_secs(30), || {
        let children = std::fs::read_to_string(format!("/proc/{boot_pid}/task/{boot_pid}/children")).ok()?;
        let pid: u32 = children.split_whitespace().next()?.parse().ok()?;
        std::path::Path::new(&format!("/proc/{pid}/root/run/dbus/system_bus_socket")).exists().then_some(pid)
    });
    let enter = |program: &str| {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &init.to_string(), "-p", "-m", "-C", "-n", "-u", "-i", "--", program]);
        cmd
    };
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    // A file of the pod's slice (or of a cgroup under it) as this machine sees it.
    let slice_file = |uid: &str, under: &str, controller: &str, v1: &str, v2name: &str| {
        let slice = format!(
            "{cgroup}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/{under}",
            uid.replace('-', "_")
        );
        let base = std::path::Path::new("/sys/fs/cgroup");
        if v2 {
            base.join(slice).join(v2name)
        } else {
            base.join(controller).join(slice).join(v1)
        }
    };
    // nsenter parents of what runs inside; they end with their children.
    let mut entered: Vec<std::process::Child> = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        entered.push(n.containerd(enter("containerd")));
        c.wait("containerd under systemd", Duration::from_secs(30), || {
            std::path::Path::new(&sock).exists().then_some(())
        });
        let o = Command::new("bash")
            .arg(repo().join("deploy/images/build.sh"))
            .arg(c.path("images"))
            .arg(&sock)
            .output()
            .unwrap();
        assert!(o.status.success(), "importing images: {}", text(&o));
        entered.push(n.kubelet(
            enter(common::bin_dir().join("kubelet").to_str().unwrap()),
            "ferrokube2",
            "ferrokube.test/systemd",
        ));
        c.wait("the systemd node Ready", Duration::from_secs(120), || {
            let o = c.kubectl(&["get", "node", &node, "-o", "json"]);
            let n: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
            let ready = n["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")?.clone();
            (ready["status"] == "True").then_some(())
        });
        c.apply(&format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: slices, namespace: {ns}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  tolerations: [{{key: ferrokube.test/systemd, operator: Exists}}]
  containers:
  - name: c
    image: busybox:1.36
    command: [sleep, "600"]
    resources: {{requests: {{cpu: 100m, memory: 16Mi}}, limits: {{cpu: 200m, memory: 32Mi}}}}
"#
        ));
        let p = c.wait_pod(ns, "slices", "Running on the systemd node", 90, |p| p["status"]["phase"] == "Running");
        let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
        let id = cstatus(&p)["containerID"].as_str().unwrap().trim_start_matches("containerd://").to_string();
        let read = |under: &str, controller: &str, v1: &str, v2name: &str| {
            let f = slice_file(&uid, under, controller, v1, v2name);
            std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())).trim().to_string()
        };
        // The pod's slice, from the kubelet through systemd.
        assert_eq!(read("", "memory", "memory.limit_in_bytes", "memory.max"), (32u64 << 20).to_string());
        assert_eq!(read("", "pids", "pids.max", "pids.max"), "64");
        if v2 {
            assert_eq!(read("", "cpu", "", "cpu.max"), "20000 100000");
        } else {
            assert_eq!(read("", "cpu", "cpu.cfs_quota_us", ""), "20000");
            assert_eq!(read("", "cpu", "cpu.shares", ""), "102");
        }
        // The container's scope, from runc through systemd, inside it.
        let scope = format!("cri-containerd-{id}.scope");
        assert_eq!(read(&scope, "memory", "memory.limit_in_bytes", "memory.max"), (32u64 << 20).to_string());
        let o = enter("systemctl").args(["show", "-p", "Slice", "--value", &scope]).output().unwrap();
        assert_eq!(text(&o).trim(), format!("kubepods-burstable-pod{}.slice", uid.replace('-', "_")), "{}", text(&o));
        // The pod goes, and so does its slice.
        c.k(&["delete", "pod", "-n", ns, "slices", "--grace-period=1"]);
        let dir = slice_file(&uid, "", "memory", "", "");
        c.wait("the pod's slice to go", Duration::from_secs(60), || (!dir.exists()).then_some(()));
    }));
    // Every process in systemd's cgroup, PID 1 first (its namespaces and their mounts go with it),
    // then the cgroups.
    let _ = Command::new("/bin/sh").arg(repo().join("e2e/boot-systemd.sh")).arg("--stop").arg(&cgroup).status();
    let _ = boot.wait();
    for mut child in entered {
        let _ = child.wait();
    }
    let _ = c.kubectl(&["delete", "node", &node, "--wait=false"]);
    let _ = c.in_netns("ip").args(["link", "delete", "ferrokube2"]).output();
    if let Err(e) = result {
        n.fail(e);
    }
}

/// A cgroup file of the pod's own cgroup (cgroup v1 `controller` hierarchy, or v2), trimmed.
fn pod_cgroup_file(uid: &str, controller: &str, v1: &str, v2: &str) -> String {
    let rel = format!("ferrokube/kubepods/pod{uid}");
    let v2_dir = std::path::Path::new("/sys/fs/cgroup").join(&rel);
    let path = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        v2_dir.join(v2)
    } else {
        std::path::Path::new("/sys/fs/cgroup").join(controller).join(&rel).join(v1)
    };
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_string()
}

/// The pod's cgroup carries the sum of its containers' limits and `podPidsLimit`, which stops a
/// fork loop.
fn limits(c: &LocalCluster, ns: &str) {
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: forker, namespace: {ns}}}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, 'i=0; while [ $i -lt 150 ]; do sleep 300 & i=$((i+1)); done; echo spawned; sleep 300']
    resources: {{limits: {{cpu: 200m, memory: 64Mi}}}}
  - name: d
    image: busybox:1.36
    command: [sleep, "300"]
    resources: {{limits: {{cpu: 100m, memory: 32Mi}}}}
"#
    ));
    let p = c.wait_pod(ns, "forker", "Running", 60, |p| p["status"]["phase"] == "Running");
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(pod_cgroup_file(&uid, "pids", "pids.max", "pids.max"), "100");
    assert_eq!(pod_cgroup_file(&uid, "memory", "memory.limit_in_bytes", "memory.max"), (96u64 << 20).to_string());
    let cpu = pod_cgroup_file(&uid, "cpu", "cpu.cfs_quota_us", "cpu.max");
    assert_eq!(cpu, if v2 { "30000 100000" } else { "30000" });
    // The fork loop hits the pod's limit: ash reports the failed fork, and the pod never holds more.
    c.wait("a fork refused by pids.max", Duration::from_secs(60), || {
        pod_log(c, ns, "forker", "c", 0).contains("can't fork").then_some(())
    });
    let current: u64 = pod_cgroup_file(&uid, "pids", "pids.current", "pids.current").parse().unwrap();
    assert!(current <= 100, "{current} processes in the pod");
    c.k(&["delete", "pod", "-n", ns, "forker", "--grace-period=1"]);
}

/// A chatty container's log is rotated past containerLogMaxSize: the live file starts again, older
/// files are compressed, and no more than containerLogMaxFiles remain.
fn log_rotation(c: &LocalCluster, ns: &str) {
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: chatty, namespace: {ns}}}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, 'while true; do head -c 2000 /dev/zero | tr "\0" x; echo; sleep 0.1; done']
"#
    ));
    let p = c.wait_pod(ns, "chatty", "Running", 60, |p| p["status"]["phase"] == "Running");
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let dir = c.path(&format!("logs/pods/{ns}_chatty_{uid}/c"));
    let names = || -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        n.sort();
        n
    };
    let files = c.wait("two rotations, one compressed", Duration::from_secs(90), || {
        let n = names();
        let rotated = n.iter().filter(|f| f.starts_with("0.log.")).count();
        (n.iter().any(|f| f.ends_with(".gz")) && rotated >= 2 && n.contains(&"0.log".to_string())).then_some(n)
    });
    assert!(files.len() <= 3, "containerLogMaxFiles 3: {files:?}");
    // The runtime writes the live file again after each rotation.
    let live = dir.join("0.log");
    let before = std::fs::metadata(&live).unwrap().len();
    c.wait("the live log to grow", Duration::from_secs(20), || {
        (std::fs::metadata(&live).map(|m| m.len()).unwrap_or(0) != before).then_some(())
    });
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(5));
        let n = names();
        assert!(n.len() <= 3, "containerLogMaxFiles 3: {n:?}");
    }
    c.k(&["delete", "pod", "-n", ns, "chatty", "--grace-period=1"]);
}

/// A pod whose emptyDir outgrows its sizeLimit is evicted: Failed, reason Evicted, upstream's
/// message, a DisruptionTarget condition and an Evicted event; its neighbour keeps running.
fn eviction(c: &LocalCluster, ns: &str) {
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hoarder, namespace: {ns}}}
spec:
  volumes: [{{name: scratch, emptyDir: {{sizeLimit: 1Mi}}}}]
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, 'head -c 4194304 /dev/zero > /scratch/fill; sleep 300']
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: frugal, namespace: {ns}}}
spec:
  volumes: [{{name: scratch, emptyDir: {{sizeLimit: 1Mi}}}}]
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, 'echo small > /scratch/note; sleep 300']
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
"#
    ));
    let p = c.wait_pod(ns, "hoarder", "Failed", 60, |p| p["status"]["phase"] == "Failed");
    assert_eq!(p["status"]["reason"], "Evicted", "{}", p["status"]);
    assert_eq!(p["status"]["message"], "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ");
    let target =
        p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DisruptionTarget").cloned();
    let target = target.unwrap_or_else(|| panic!("no DisruptionTarget: {}", p["status"]));
    assert_eq!((target["status"].as_str(), target["reason"].as_str()), (Some("True"), Some("TerminationByKubelet")));
    assert!(cstatus(&p)["state"]["terminated"].is_object(), "the container was stopped: {}", p["status"]);
    // Events are written in the background, behind the kubelet's others.
    c.wait("the Evicted event", Duration::from_secs(30), || {
        let events = c.k(&[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            "involvedObject.name=hoarder,reason=Evicted",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        events.contains("Usage of EmptyDir volume").then_some(())
    });
    let f = c.get(ns, "pod/frugal");
    assert_eq!(f["status"]["phase"], "Running", "{}", f["status"]);
    // Container garbage collection (every minute): nothing of the evicted pod stays in the runtime,
    // while its neighbour's sandbox and container do.
    let uid = |pod: &serde_json::Value| pod["metadata"]["uid"].as_str().unwrap().to_string();
    let (hoarder, frugal) = (uid(&p), uid(&f));
    c.wait("the evicted pod's containers and sandbox to be collected", Duration::from_secs(90), || {
        runtime_containers(c, &hoarder).is_empty().then_some(())
    });
    assert_eq!(runtime_containers(c, &frugal).len(), 2, "the sandbox and container of a running pod stay");
    let hoarder_now = c.get(ns, "pod/hoarder");
    assert_eq!(hoarder_now["status"]["reason"], "Evicted", "the status stays: {}", hoarder_now["status"]);
}

/// The containerd containers (sandboxes included) of the pod with uid `uid`.
fn runtime_containers(c: &LocalCluster, uid: &str) -> Vec<String> {
    let o = Command::new("ctr")
        .args(["--address", c.path("run/containerd.sock").to_str().unwrap(), "-n", "k8s.io", "containers", "ls", "-q"])
        .arg(format!("labels.\"io.kubernetes.pod.uid\"=={uid}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "ctr containers ls: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect()
}

/// TLS bootstrap through a bootstrap token, then rotation with the node's own identity.
fn certificates(c: &LocalCluster, _ns: &str) {
    let kubeconfig = std::fs::read_to_string(c.path("kubelet/kubelet.conf")).unwrap();
    let current = c.path("kubelet/pki/kubelet-client-current.pem");
    assert!(kubeconfig.contains(&format!("client-certificate: {}", current.display())), "{kubeconfig}");
    let csrs = |prefix: &str| -> Vec<serde_json::Value> {
        let all = c.get("default", "csr");
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["metadata"]["name"].as_str().unwrap().starts_with(prefix))
            .cloned()
            .collect()
    };
    let approved = |r: &serde_json::Value| {
        r["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Approved" && c["reason"] == "AutoApproved"))
    };
    // The bootstrap request: the token's identity, the kubelet client signer, approved and issued.
    // (The second-node scenario's kubelet bootstraps too, later: the first request is this node's.)
    let mut boot = csrs("node-csr-");
    boot.sort_by_key(|r| r["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_string());
    let boot = boot.first().unwrap_or_else(|| panic!("no bootstrap request"));
    assert!(boot["spec"]["username"].as_str().unwrap().starts_with("system:bootstrap:"), "{boot}");
    assert_eq!(boot["spec"]["signerName"], "kubernetes.io/kube-apiserver-client-kubelet");
    assert!(approved(boot), "{boot}");
    let first_cert = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            boot["status"]["certificate"].as_str().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    // Renewal: a `csr-` request from the node itself, and the current file moves to its certificate.
    let rotated = c.wait("a renewed client certificate", Duration::from_secs(240), || {
        csrs("csr-").into_iter().find(|r| {
            r["spec"]["username"] == format!("system:node:{}", c.node)
                && approved(r)
                && r["status"]["certificate"].is_string()
        })
    });
    assert_eq!(rotated["spec"]["signerName"], "kubernetes.io/kube-apiserver-client-kubelet");
    c.wait("the current certificate to be replaced", Duration::from_secs(30), || {
        let now = std::fs::read_to_string(&current).unwrap();
        (pem_body(&now, "CERTIFICATE") != pem_body(&first_cert, "CERTIFICATE")).then_some(())
    });
    let log = c.log("kubelet");
    assert!(log.contains("client certificate rotated"), "{log}");
    // serverTLSBootstrap: a kubelet-serving request waits for an administrator, then the certificate
    // names the node and its address.
    let serving = c.wait("a serving certificate request", Duration::from_secs(60), || {
        csrs("csr-").into_iter().find(|r| r["spec"]["signerName"] == "kubernetes.io/kubelet-serving")
    });
    assert!(!approved(&serving) && serving["status"]["certificate"].is_null(), "not approved on its own: {serving}");
    assert_eq!(serving["spec"]["username"], format!("system:node:{}", c.node));
    c.k(&["certificate", "approve", serving["metadata"]["name"].as_str().unwrap()]);
    let server_pem = c.path("kubelet/pki/kubelet-server-current.pem");
    c.wait("the serving certificate", Duration::from_secs(60), || server_pem.exists().then_some(()));
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(&server_pem)
        .output()
        .unwrap();
    let sans = String::from_utf8_lossy(&o.stdout);
    assert!(sans.contains(&format!("DNS:{}", c.node)) && sans.contains("IP Address:"), "{sans}");
    // Still a working node: its lease keeps being renewed after the rotation.
    let t0 = c.get("kube-node-lease", &format!("lease/{}", c.node))["spec"]["renewTime"].as_str().unwrap().to_string();
    c.wait("the lease renewed after rotation", Duration::from_secs(30), || {
        let l = c.get("kube-node-lease", &format!("lease/{}", c.node));
        (l["spec"]["renewTime"].as_str().unwrap() != t0).then_some(())
    });
}

fn bad_input(c: &LocalCluster, ns: &str) {
    let file = c.path("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: nocm, namespace: {ns}}}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: [sleep, "600"]
    env: [{{name: X, valueFrom: {{configMapKeyRef: {{name: nope, key: k}}}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: noimage, namespace: {ns}}}
spec:
  containers:
  - {{name: c, image: "127.0.0.1:1/nothing:1.0", command: [sleep, "600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: never, namespace: {ns}}}
spec:
  containers:
  - {{name: c, image: "example.invalid/absent:2", imagePullPolicy: Never}}
---
apiVersion: v1
kind: Pod
metadata: {{name: badpath, namespace: {ns}}}
spec:
  containers:
  - {{name: c, image: busybox:1.36, command: [sleep, "600"], volumeMounts: [{{name: h, mountPath: /h}}]}}
  volumes:
  - {{name: h, hostPath: {{path: {}, type: Directory}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: fine, namespace: {ns}}}
spec:
  containers:
  - {{name: c, image: busybox:1.36, command: [sleep, "600"]}}
"#,
        file.display()
    ));
    let p =
        c.wait_pod(ns, "nocm", "CreateContainerConfigError", 60, |p| waiting_reason(p) == "CreateContainerConfigError");
    assert_eq!(cstatus(&p)["state"]["waiting"]["message"], "configmap \"nope\" not found");
    let p = c.wait_pod(ns, "noimage", "ErrImagePull", 60, |p| waiting_reason(p) == "ErrImagePull");
    assert!(
        cstatus(&p)["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Failed to pull image \"127.0.0.1:1/nothing:1.0\""),
        "{p}"
    );
    c.wait_pod(ns, "noimage", "ImagePullBackOff", 60, |p| waiting_reason(p) == "ImagePullBackOff");
    let p = c.wait_pod(ns, "never", "ErrImageNeverPull", 60, |p| waiting_reason(p) == "ErrImageNeverPull");
    assert_eq!(
        cstatus(&p)["state"]["waiting"]["message"],
        "Container image \"example.invalid/absent:2\" is not present with pull policy of Never"
    );
    c.wait("FailedMount for the hostPath type", Duration::from_secs(60), || {
        let e = c.k(&["get", "events", "-n", ns, "--field-selector", "involvedObject.name=badpath"]);
        e.contains(&format!("hostPath type check failed: {} is not a directory", file.display())).then_some(())
    });
    let p = c.get(ns, "pod/badpath");
    assert_eq!(p["status"]["phase"], "Pending");
    // The kubelet keeps serving the other pods.
    c.wait_pod(ns, "fine", "Running", 60, |p| p["status"]["phase"] == "Running");
}

/// A manifest in the static pod directory runs as a pod with a mirror pod in the API; a deleted
/// mirror comes back, and removing the file stops the pod and deletes the mirror.
fn static_pod(c: &LocalCluster, _ns: &str) {
    let manifest = c.path("manifests/web.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: static-web, namespace: static}\nspec:\n  containers:\n  - {name: c, image: busybox:1.36, command: [sleep, '600']}\n",
    )
    .unwrap();
    let name = format!("static-web-{}", c.node);
    let p = c.wait_pod("static", &name, "a Running mirror pod", 60, |p| p["status"]["phase"] == "Running");
    let ann = &p["metadata"]["annotations"];
    assert_eq!(ann["kubernetes.io/config.source"], "file");
    assert_eq!(ann["kubernetes.io/config.mirror"], ann["kubernetes.io/config.hash"]);
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Node");
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let id = cstatus(&p)["containerID"].as_str().unwrap().to_string();
    c.k(&["delete", "pod", "-n", "static", &name, "--wait=false"]);
    let p = c.wait_pod("static", &name, "the mirror pod recreated", 60, |p| {
        p["metadata"]["uid"].as_str() != Some(uid.as_str()) && p["status"]["phase"] == "Running"
    });
    assert_eq!(cstatus(&p)["containerID"], id.as_str(), "deleting the mirror does not restart the static pod");
    std::fs::remove_file(&manifest).unwrap();
    c.wait("the mirror pod to go", Duration::from_secs(60), || {
        (!c.kubectl(&["get", "pod", "-n", "static", &name]).status.success()).then_some(())
    });
    c.wait("the static pod's container to stop", Duration::from_secs(60), || {
        (!c.crictl(&["ps"]).contains(id.trim_start_matches("containerd://"))).then_some(())
    });
}

/// Kills the kubelet (SIGKILL), runs `while_down`, and starts it again with the same arguments.
fn restart_kubelet(c: &LocalCluster, while_down: impl FnOnce()) {
    let pidfile = c.path("run/kubelet.pid");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> =
        cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_secs(2));
    while_down();
    let log = std::fs::OpenOptions::new().append(true).open(c.path("logs/kubelet.log")).unwrap();
    let child = c.in_netns(&args[0]).args(&args[1..]).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
    std::fs::write(&pidfile, child.id().to_string()).unwrap();
    // local-up.sh --down stops it by pid; this reaps it.
    let mut child = child;
    std::thread::spawn(move || child.wait());
}

/// Memory pressure (a soft threshold above the machine's memory with a 20s grace period, set by
/// restarting the kubelet with it): the condition and its taint at once; admission turning away a
/// BestEffort pod (and a pod asking for more CPU than the node has) while admitting a Burstable
/// one; evictions only after the grace period, in upstream's order, BestEffort before a pod within
/// its request; the static pod (critical) stays.
fn pressure(c: &LocalCluster, ns: &str) {
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: best-effort, namespace: {ns}}}
spec:
  containers: [{{name: c, image: busybox:1.36, command: [sleep, "600"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: within-request, namespace: {ns}}}
spec:
  containers:
  - {{name: c, image: busybox:1.36, command: [sleep, "600"], resources: {{requests: {{memory: 64Mi}}}}}}
"#
    ));
    std::fs::write(
        c.path("manifests/pressure-static.yaml"),
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: critical, namespace: {ns}}}\nspec:\n  containers:\n  - {{name: c, image: busybox:1.36, command: [sleep, '600']}}\n"),
    )
    .unwrap();
    // The other scenarios' pods leave (a pod being deleted is not a candidate), so that the ranking
    // of these two is what is observed, one eviction per 10s pass.
    let namespaces: Vec<String> = serde_json::from_str::<serde_json::Value>(&c.k(&["get", "pods", "-A", "-o", "json"]))
        .unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_null())
        .map(|p| p["metadata"]["namespace"].as_str().unwrap().to_string())
        .filter(|n| n != ns)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for n in &namespaces {
        c.k(&["delete", "pods", "--all", "-n", n, "--grace-period=1", "--wait=false"]);
    }
    let mirror = format!("critical-{}", c.node);
    for p in ["best-effort", "within-request", mirror.as_str()] {
        c.wait_pod(ns, p, "Running", 60, |p| p["status"]["phase"] == "Running");
    }
    let total_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap()))
        .unwrap();
    let config = c.path("kubelet/config.yaml");
    restart_kubelet(c, || {
        let text = std::fs::read_to_string(&config).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines.extend([
            format!("evictionSoft: {{memory.available: {}Ki}}", total_kib + (1 << 20)),
            "evictionSoftGracePeriod: {memory.available: 20s}".into(),
            "evictionMaxPodGracePeriod: 5".into(),
        ]);
        std::fs::write(&config, lines.join("\n") + "\n").unwrap();
    });
    c.wait("MemoryPressure and its taint", Duration::from_secs(90), || {
        let n = c.get("default", &format!("node/{}", c.node));
        let cond = n["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "MemoryPressure")?.clone();
        let tainted = n["spec"]["taints"].as_array().is_some_and(|t| {
            t.iter().any(|t| t["key"] == "node.kubernetes.io/memory-pressure" && t["effect"] == "NoSchedule")
        });
        (cond["status"] == "True" && cond["reason"] == "KubeletHasInsufficientMemory" && tainted).then_some(())
    });
    let node = c.get("default", &format!("node/{}", c.node));
    let conditions = node["status"]["conditions"].as_array().unwrap();
    let pressure_since = conditions.iter().find(|c| c["type"] == "MemoryPressure").unwrap()["lastTransitionTime"]
        .as_str()
        .unwrap()
        .to_string();
    // Admission while under memory pressure (bound by name, as the kubelet sees pods the scheduler
    // would not place on a tainted node).
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: turned-away, namespace: {ns}}}
spec:
  nodeName: {node}
  containers: [{{name: c, image: busybox:1.36, command: [sleep, "600"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: admitted, namespace: {ns}}}
spec:
  nodeName: {node}
  containers:
  - {{name: c, image: busybox:1.36, command: [sleep, "600"], resources: {{requests: {{memory: 8Mi}}}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: too-big, namespace: {ns}}}
spec:
  nodeName: {node}
  containers:
  - {{name: c, image: busybox:1.36, command: [sleep, "600"], resources: {{requests: {{cpu: "1000"}}}}}}
"#,
        node = c.node
    ));
    let rejected = c.wait_pod(ns, "turned-away", "Failed", 60, |p| p["status"]["phase"] == "Failed");
    assert_eq!(rejected["status"]["reason"], "Evicted", "{}", rejected["status"]);
    assert_eq!(rejected["status"]["message"], "Pod was rejected: The node had condition: [MemoryPressure]. ");
    assert!(rejected["status"]["containerStatuses"].is_null(), "nothing ran: {}", rejected["status"]);
    let too_big = c.wait_pod(ns, "too-big", "Failed", 60, |p| p["status"]["phase"] == "Failed");
    assert_eq!(too_big["status"]["reason"], "OutOfcpu", "{}", too_big["status"]);
    let msg = too_big["status"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Pod was rejected: Node didn't have enough resource: cpu, requested: 1000000, used: "),
        "{msg}"
    );
    let events = c.k(&["get", "events", "-n", ns, "--field-selector", "involvedObject.name=turned-away", "-o", "json"]);
    assert!(events.contains("\"reason\": \"Evicted\""), "{events}");
    let admitted = c.wait_pod(ns, "admitted", "Running (or Failed)", 60, |p| {
        p["status"]["phase"] == "Running" || p["status"]["phase"] == "Failed"
    });
    assert!(
        !admitted["status"]["message"].as_str().unwrap_or("").starts_with("Pod was rejected"),
        "a Burstable pod is admitted under memory pressure: {}",
        admitted["status"]
    );
    let evicted_at = |name: &str| -> String {
        let p = c.wait_pod(ns, name, "Failed", 90, |p| p["status"]["phase"] == "Failed");
        assert_eq!(p["status"]["reason"], "Evicted", "{}", p["status"]);
        let msg = p["status"]["message"].as_str().unwrap().to_string();
        assert!(msg.starts_with("The node was low on resource: memory. Threshold quantity: "), "{msg}");
        let t = p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DisruptionTarget").unwrap();
        t["lastTransitionTime"].as_str().unwrap().to_string()
    };
    let first = evicted_at("best-effort");
    let secs = |t: &str| t.parse::<k8s_openapi::jiff::Timestamp>().unwrap().as_second();
    assert!(
        secs(&first) - secs(&pressure_since) >= 15,
        "a soft threshold evicts only after its 20s grace period: pressure at {pressure_since}, eviction at {first}"
    );
    let best_effort = c.get(ns, "pod/best-effort");
    let msg = best_effort["status"]["message"].as_str().unwrap();
    assert!(msg.contains("Container c was using "), "a container over its request is named: {msg}");
    let second = evicted_at("within-request");
    assert!(first <= second, "BestEffort first: {first} then {second}");
    std::thread::sleep(Duration::from_secs(12));
    let m = c.get(ns, &format!("pod/{mirror}"));
    assert_eq!(m["status"]["phase"], "Running", "the static pod is critical and stays: {}", m["status"]);
}

/// The images containerd holds (`ctr images ls -q`).
fn images(c: &LocalCluster) -> String {
    let o = Command::new("ctr")
        .args(["--address", c.path("run/containerd.sock").to_str().unwrap(), "-n", "k8s.io", "images", "ls", "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "ctr images ls: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Image garbage collection past imageGCHighThresholdPercent: an image no container uses goes, the
/// busybox image a running pod uses and the sandbox image stay.
fn image_gc(c: &LocalCluster, ns: &str) {
    std::fs::write(
        c.path("manifests/gc-static.yaml"),
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: keeper, namespace: {ns}}}\nspec:\n  containers:\n  - {{name: c, image: busybox:1.36, command: [sleep, '600']}}\n"),
    )
    .unwrap();
    c.wait_pod(ns, &format!("keeper-{}", c.node), "Running", 60, |p| p["status"]["phase"] == "Running");
    // An image of its own: one file, so a layer and a digest no other image shares.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello"), "unused\n").unwrap();
    let tar = dir.path().join("unused.tar");
    let o = Command::new("python3")
        .arg(repo().join("deploy/images/build-image.py"))
        .arg(&tar)
        .arg("docker.io/library/unused:1")
        .arg("--file")
        .arg(format!("{}:/hello", dir.path().join("hello").display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "build-image.py: {}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("ctr")
        .args(["--address", c.path("run/containerd.sock").to_str().unwrap(), "-n", "k8s.io", "images", "import"])
        .arg(&tar)
        .output()
        .unwrap();
    assert!(o.status.success(), "ctr import: {}", String::from_utf8_lossy(&o.stderr));
    assert!(images(c).contains("docker.io/library/unused:1"));
    let config = c.path("kubelet/config.yaml");
    restart_kubelet(c, || {
        let text = std::fs::read_to_string(&config).unwrap();
        let mut lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("imageGC")).collect();
        lines.extend(["imageGCHighThresholdPercent: 1", "imageGCLowThresholdPercent: 0", "imageMinimumGCAge: 0s"]);
        std::fs::write(&config, lines.join("\n") + "\n").unwrap();
    });
    c.wait("the unused image to be collected", Duration::from_secs(60), || {
        (!images(c).contains("docker.io/library/unused:1")).then_some(())
    });
    let left = images(c);
    assert!(left.contains("docker.io/library/busybox:1.36"), "in use: {left}");
    assert!(left.contains("registry.k8s.io/pause:3.10"), "the sandbox image: {left}");
    assert!(c.log("kubelet").contains("image filesystem over the high threshold"), "{}", c.log("kubelet"));
}

/// Killing the kubelet leaves containers running; a new kubelet adopts them without restarting.
fn kubelet_restart(c: &LocalCluster, ns: &str) {
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: survivor, namespace: {ns}}}
spec:
  containers:
  - {{name: c, image: busybox:1.36, command: [sleep, "600"]}}
"#
    ));
    let p = c.wait_pod(ns, "survivor", "Running", 60, |p| condition(p, "Ready") == "True");
    let id = cstatus(&p)["containerID"].as_str().unwrap().to_string();
    restart_kubelet(c, || {
        assert!(
            c.crictl(&["ps"]).contains(id.trim_start_matches("containerd://")),
            "the container outlived the kubelet"
        );
    });
    // The new kubelet reports the same container, not restarted, and still serves new pods.
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: after, namespace: {ns}}}
spec:
  restartPolicy: Never
  containers:
  - {{name: c, image: busybox:1.36, command: ["true"]}}
"#
    ));
    c.wait_pod(ns, "after", "Succeeded", 60, |p| p["status"]["phase"] == "Succeeded");
    let p = c.get(ns, "pod/survivor");
    assert_eq!(cstatus(&p)["containerID"], id.as_str());
    assert_eq!(cstatus(&p)["restartCount"], 0);
    assert_eq!(condition(&p, "Ready"), "True");
}

#[test]
fn kubelet_runs_pods_in_containerd() {
    // Certificates that last 3 minutes: the kubelet renews its own every minute or two while the
    // other scenarios run.
    // At most 100 processes per pod.
    let c = LocalCluster::up_with(
        "kubelet",
        &[
            ("FERROKUBE_CLUSTER_SIGNING_DURATION", "3m"),
            ("FERROKUBE_POD_PIDS_LIMIT", "100"),
            // Logs rotate past 16KiB, three files at most (no other scenario writes that much).
            ("FERROKUBE_CONTAINER_LOG_MAX_SIZE", "16Ki"),
            ("FERROKUBE_CONTAINER_LOG_MAX_FILES", "3"),
            ("FERROKUBE_SERVER_TLS_BOOTSTRAP", "true"),
        ],
    );
    let scenarios: Vec<(&str, Scenario)> = vec![
        ("exits", exits),
        ("crash-loop", crash_loop),
        ("probes", probes),
        ("config", config),
        ("oom", oom),
        ("graceful", graceful),
        ("network", network),
        ("node", node),
        ("bad-input", bad_input),
        ("static", static_pod),
        ("certificates", certificates),
        ("limits", limits),
        ("log-rotation", log_rotation),
        ("eviction", eviction),
        ("second-node", second_node),
        ("systemd-node", systemd_node),
    ];
    // FERROKUBE_E2E_ONLY=name,name runs only those scenarios (while working on one).
    let only = std::env::var("FERROKUBE_E2E_ONLY").unwrap_or_default();
    let picked = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = scenarios
            .iter()
            .filter(|(name, _)| picked(name))
            .map(|(name, f)| {
                let c = &c;
                let name = *name;
                let f = *f;
                s.spawn(move || {
                    ns(c, name);
                    f(c, name)
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(scenarios.iter().filter(|(name, _)| picked(name)))
            .filter_map(|(h, (name, _))| {
                h.join().err().map(|e| {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    format!("{name}: {msg}")
                })
            })
            .collect()
    });
    let restart = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if !picked("restart") {
            return;
        }
        ns(&c, "restart");
        kubelet_restart(&c, "restart")
    }));
    let mut failures = failures;
    if let Err(e) = restart {
        failures.push(format!("restart: {}", e.downcast_ref::<String>().cloned().unwrap_or_default()));
    }
    // Last: it leaves the node under memory pressure.
    let pressured = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if !picked("pressure") {
            return;
        }
        ns(&c, "pressure");
        pressure(&c, "pressure")
    }));
    if let Err(e) = pressured {
        failures.push(format!("pressure: {}", e.downcast_ref::<String>().cloned().unwrap_or_default()));
    }
    let collected = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if !picked("image-gc") {
            return;
        }
        ns(&c, "image-gc");
        image_gc(&c, "image-gc")
    }));
    if let Err(e) = collected {
        failures.push(format!("image-gc: {}", e.downcast_ref::<String>().cloned().unwrap_or_default()));
    }
    assert!(failures.is_empty(), "{} scenario(s) failed:\n{}", failures.len(), failures.join("\n\n"));
}
