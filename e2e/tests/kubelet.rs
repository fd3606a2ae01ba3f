//! The kubelet with real containerd, runc and CNI plugins, in a cluster brought up by
//! `deploy/local-up.sh` inside a network namespace this test creates. The scenarios share the
//! cluster, each in its own namespace, and run side by side; the kubelet restart runs last.

mod common;

use common::{cstatus, text, LocalCluster};
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
    let pidfile = c.path("run/kubelet.pid");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> =
        cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_secs(2));
    assert!(c.crictl(&["ps"]).contains(id.trim_start_matches("containerd://")), "the container outlived the kubelet");
    let log = std::fs::OpenOptions::new().append(true).open(c.path("logs/kubelet.log")).unwrap();
    let child = c.in_netns(&args[0]).args(&args[1..]).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
    std::fs::write(&pidfile, child.id().to_string()).unwrap();
    // local-up.sh --down stops it by pid; this reaps it.
    let mut child = child;
    std::thread::spawn(move || child.wait());
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
    let c = LocalCluster::up("kubelet");
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
    assert!(failures.is_empty(), "{} scenario(s) failed:\n{}", failures.len(), failures.join("\n\n"));
}
