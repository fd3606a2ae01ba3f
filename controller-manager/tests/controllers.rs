//! kube-controller-manager against a real kube-apiserver, driven with the real kubectl; the tests play
//! the kubelet by reporting pods ready through the API.

mod common;

use common::{eventually, Cluster, FakeKubelet};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 4
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 1}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: busybox:1.36
";

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn names(v: &Value) -> Vec<String> {
    items(v).iter().map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string()).collect()
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn rollout(c: &Cluster, what: &str) {
    c.ok(&["rollout", "status", what, "--timeout=90s"]);
}

#[test]
fn deployments_roll_within_their_bounds_and_undo() {
    let mut c = Cluster::start();
    let port = apiserver_storage::testing::free_port();
    c.start_manager(&["--secure-port", &port.to_string(), "--bind-address=127.0.0.1"]);
    let _kubelet = FakeKubelet::start(&c.kubeconfig(), Duration::from_millis(300));
    c.ok(&["apply", "-f", &c.file("web.yaml", DEPLOYMENT)]);
    rollout(&c, "deploy/web");

    let rs = c.json(&["rs", "-l", "app=web"]);
    assert_eq!(items(&rs).len(), 1, "one ReplicaSet: {:?}", names(&rs));
    let rs0 = &items(&rs)[0];
    let rs_name = rs0["metadata"]["name"].as_str().unwrap().to_string();
    let hash = rs0["metadata"]["labels"]["pod-template-hash"].as_str().unwrap();
    assert_eq!(rs_name, format!("web-{hash}"));
    assert_eq!(rs0["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    assert_eq!(rs0["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(rs0["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
    let pods = c.json(&["pods", "-l", "app=web"]);
    assert_eq!(items(&pods).len(), 4);
    for p in items(&pods) {
        assert_eq!(p["metadata"]["ownerReferences"][0]["name"], rs_name.as_str());
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], hash);
    }
    let d = c.json(&["deploy", "web"]);
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
    assert_eq!(d["status"]["observedGeneration"], d["metadata"]["generation"]);
    for (k, v) in [("replicas", 4), ("updatedReplicas", 4), ("readyReplicas", 4), ("availableReplicas", 4)] {
        assert_eq!(d["status"][k], v, "{k}");
    }
    let cond = |d: &Value, t: &str| {
        d["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).cloned().unwrap()
    };
    assert_eq!(cond(&d, "Available")["reason"], "MinimumReplicasAvailable");
    assert_eq!(cond(&d, "Progressing")["reason"], "NewReplicaSetAvailable");
    assert_eq!(cond(&d, "Progressing")["message"], format!("ReplicaSet \"{rs_name}\" has successfully progressed."));

    // A new image rolls: at every observation at most replicas+maxSurge pods exist and at least
    // replicas-maxUnavailable are ready.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let monitor = {
        let (stop, seen) = (stop.clone(), seen.clone());
        let kc = c.kubeconfig();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let out = std::process::Command::new(common::kubectl_bin())
                    .arg("--kubeconfig")
                    .arg(&kc)
                    .args(["get", "pods", "-l", "app=web", "-o", "json"])
                    .output()
                    .unwrap();
                if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
                    let live: Vec<Value> =
                        items(&v).into_iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect();
                    let ready_n = live.iter().filter(|p| ready(p)).count();
                    seen.lock().unwrap().push((live.len(), ready_n));
                }
            }
        })
    };
    c.ok(&["set", "image", "deploy/web", "main=busybox:1.37"]);
    rollout(&c, "deploy/web");
    stop.store(true, Ordering::SeqCst);
    monitor.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > 3, "observed the rollout: {seen:?}");
    for (live, ready_n) in &seen {
        assert!(*live <= 5, "more than replicas+maxSurge pods: {seen:?}");
        assert!(*ready_n >= 3, "fewer than replicas-maxUnavailable ready: {seen:?}");
    }
    let rs = c.json(&["rs", "-l", "app=web"]);
    assert_eq!(items(&rs).len(), 2);
    let by_name = |n: &str| items(&rs).into_iter().find(|r| r["metadata"]["name"] == n).unwrap();
    assert_eq!(by_name(&rs_name)["spec"]["replicas"], 0);
    let history = c.ok(&["rollout", "history", "deploy/web"]);
    assert!(history.lines().any(|l| l.starts_with("1 ")) && history.lines().any(|l| l.starts_with("2 ")), "{history}");
    let events =
        c.ok(&["get", "events", "--field-selector", "reason=ScalingReplicaSet", "-o", "jsonpath={.items[*].message}"]);
    assert!(events.contains(&format!("Scaled up replica set {rs_name} from 0 to 4")), "{events}");
    assert!(events.contains(&format!("Scaled down replica set {rs_name} from 4 to")), "{events}");

    // Undo returns to the first template, which becomes revision 3 of the same ReplicaSet.
    c.ok(&["rollout", "undo", "deploy/web"]);
    rollout(&c, "deploy/web");
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]),
        "busybox:1.36"
    );
    let first = c.json(&["rs", &rs_name]);
    assert_eq!(first["spec"]["replicas"], 4);
    assert_eq!(first["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");
    assert_eq!(first["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"], "1");
    assert_eq!(items(&c.json(&["rs", "-l", "app=web"])).len(), 2, "no new ReplicaSet for an old template");

    // Paused: template changes wait; scaling does not.
    c.ok(&["rollout", "pause", "deploy/web"]);
    c.ok(&["set", "image", "deploy/web", "main=busybox:1.38"]);
    c.ok(&["scale", "deploy/web", "--replicas=6"]);
    eventually(Duration::from_secs(30), "6 pods while paused", || {
        (items(&c.json(&["pods", "-l", "app=web"])).len() == 6).then_some(())
    });
    assert_eq!(items(&c.json(&["rs", "-l", "app=web"])).len(), 2);
    let d = c.json(&["deploy", "web"]);
    assert_eq!(cond(&d, "Progressing")["reason"], "DeploymentPaused");
    c.ok(&["rollout", "resume", "deploy/web"]);
    rollout(&c, "deploy/web");
    assert_eq!(items(&c.json(&["rs", "-l", "app=web"])).len(), 3);
    assert_eq!(items(&c.json(&["pods", "-l", "app=web"])).len(), 6);

    // Restart makes a new ReplicaSet with the restartedAt annotation in its template.
    c.ok(&["rollout", "restart", "deploy/web"]);
    rollout(&c, "deploy/web");
    assert_eq!(items(&c.json(&["rs", "-l", "app=web"])).len(), 4);

    // The secure port: health with the leader-election check, and upstream's metric names.
    let url = |p: &str| format!("https://127.0.0.1:{port}{p}");
    let curl = |p: &str| {
        String::from_utf8(std::process::Command::new("curl").args(["-sk", &url(p)]).output().unwrap().stdout).unwrap()
    };
    assert_eq!(curl("/healthz"), "ok");
    assert!(curl("/healthz?verbose").contains("[+]leaderElection ok"));
    let metrics = curl("/metrics");
    for m in [
        "leader_election_master_status{name=\"kube-controller-manager\"} 1",
        "workqueue_adds_total{name=\"deployment\"}",
        "workqueue_depth{name=\"replicaset\"}",
        "rest_client_requests_total{code=\"201\"",
    ] {
        assert!(metrics.contains(m), "metrics lack {m}");
    }
}

#[test]
fn deletion_propagation_and_namespaces() {
    let mut c = Cluster::start();
    let ca = c.dir.path().join("certs/apiserver.crt");
    c.start_manager(&["--secure-port=0", &format!("--root-ca-file={}", ca.display())]);
    let _kubelet = FakeKubelet::start(&c.kubeconfig(), Duration::from_millis(100));
    for name in ["bg", "fg", "orph"] {
        c.ok(&["create", "deployment", name, "--image=busybox:1.36", "--replicas=2"]);
    }
    for name in ["bg", "fg", "orph"] {
        rollout(&c, &format!("deploy/{name}"));
    }
    let count = |kind: &str, app: &str| items(&c.json(&[kind, "-l", &format!("app={app}")])).len();

    c.ok(&["delete", "deploy", "bg"]);
    eventually(Duration::from_secs(60), "background deletion of rs and pods", || {
        (count("rs", "bg") == 0 && count("pods", "bg") == 0).then_some(())
    });

    c.ok(&["delete", "deploy", "fg", "--cascade=foreground", "--wait=false"]);
    eventually(Duration::from_secs(60), "foreground deletion", || {
        let gone = !c.kubectl(&["get", "deploy", "fg"]).status.success();
        // The owner goes last.
        if gone {
            assert_eq!(count("rs", "fg"), 0, "deployment gone before its ReplicaSet");
        }
        (gone && count("pods", "fg") == 0).then_some(())
    });

    c.ok(&["delete", "deploy", "orph", "--cascade=orphan"]);
    eventually(Duration::from_secs(60), "orphaned deployment gone", || {
        (!c.kubectl(&["get", "deploy", "orph"]).status.success()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let rs = c.json(&["rs", "-l", "app=orph"]);
    assert_eq!(items(&rs).len(), 1, "the ReplicaSet stays");
    assert!(items(&rs)[0]["metadata"]["ownerReferences"].is_null(), "{}", items(&rs)[0]["metadata"]);
    assert_eq!(count("pods", "orph"), 2, "its pods stay");

    // A new namespace gets its default ServiceAccount and the root CA; deleting it empties it.
    c.ok(&["create", "namespace", "doomed"]);
    eventually(Duration::from_secs(30), "default serviceaccount and kube-root-ca.crt", || {
        let sa = c.kubectl(&["get", "sa", "default", "-n", "doomed"]).status.success();
        let cm = c.kubectl(&["get", "cm", "kube-root-ca.crt", "-n", "doomed", "-o", "jsonpath={.data.ca\\.crt}"]);
        (sa && String::from_utf8_lossy(&cm.stdout).contains("BEGIN CERTIFICATE")).then_some(())
    });
    c.ok(&["create", "deployment", "d", "--image=busybox:1.36", "-n", "doomed"]);
    c.ok(&["create", "configmap", "cm", "--from-literal=a=b", "-n", "doomed"]);
    c.ok(&["rollout", "status", "deploy/d", "-n", "doomed", "--timeout=90s"]);
    c.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    eventually(Duration::from_secs(60), "namespace gone", || {
        (!c.kubectl(&["get", "namespace", "doomed"]).status.success()).then_some(())
    });
    for kind in ["deploy", "rs", "pods", "cm", "sa"] {
        let out = c.ok(&["get", kind, "-n", "doomed", "-o", "name"]);
        assert!(out.is_empty(), "{kind} left in a deleted namespace: {out}");
    }
}

#[test]
fn one_leader_acts_and_a_standby_takes_over() {
    let mut c = Cluster::start();
    let fast = [
        "--secure-port=0",
        "--leader-elect-lease-duration=6s",
        "--leader-elect-renew-deadline=4s",
        "--leader-elect-retry-period=1s",
    ];
    let a = c.start_manager(&fast);
    let b = c.start_manager(&fast);
    let holder = |c: &Cluster| {
        c.ok(&["get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "jsonpath={.spec.holderIdentity}"])
    };
    let first = eventually(Duration::from_secs(30), "a leader", || Some(holder(&c)).filter(|h| !h.is_empty()));
    let leader = if c.manager_log(a).contains("successfully acquired lease") { a } else { b };
    let standby = if leader == a { b } else { a };
    assert!(!c.manager_log(standby).contains("successfully acquired lease"), "both lead");
    let _kubelet = FakeKubelet::start(&c.kubeconfig(), Duration::from_millis(100));
    c.ok(&["create", "deployment", "ha", "--image=busybox:1.36", "--replicas=3"]);
    rollout(&c, "deploy/ha");

    c.kill_manager(leader, libc::SIGKILL);
    let killed = std::time::Instant::now();
    let second = eventually(Duration::from_secs(30), "a new leader", || {
        Some(holder(&c)).filter(|h| !h.is_empty() && *h != first)
    });
    assert!(killed.elapsed() < Duration::from_secs(6 + 4), "takeover took {:?}", killed.elapsed());
    assert!(c.manager_log(standby).contains("successfully acquired lease"), "{second}");
    let transitions = c.ok(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "kube-controller-manager",
        "-o",
        "jsonpath={.spec.leaseTransitions}",
    ]);
    assert_eq!(transitions, "1");
    // The new leader carries on without creating anything twice.
    c.ok(&["scale", "deploy/ha", "--replicas=5"]);
    rollout(&c, "deploy/ha");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(items(&c.json(&["pods", "-l", "app=ha"])).len(), 5);
    assert_eq!(items(&c.json(&["rs", "-l", "app=ha"])).len(), 1);
    // A clean shutdown releases the lease at once.
    c.kill_manager(standby, libc::SIGTERM);
    eventually(Duration::from_secs(5), "the lease released", || holder(&c).is_empty().then_some(()));
}
