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

    // A new image rolls: at every observation the ReplicaSets ask for at most replicas+maxSurge pods
    // and at least replicas-maxUnavailable pods are ready. (Upstream bounds the ReplicaSets' sizes,
    // not live pods: a pod of a ReplicaSet just scaled down may still be running, its deletion not
    // yet issued by the ReplicaSet controller, when the new ReplicaSet is scaled up.)
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
                    .args(["get", "replicasets,pods", "-l", "app=web", "-o", "json"])
                    .output()
                    .unwrap();
                if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
                    let of = |kind: &str| items(&v).into_iter().filter(|o| o["kind"] == kind).collect::<Vec<_>>();
                    let asked: i64 = of("ReplicaSet").iter().map(|r| r["spec"]["replicas"].as_i64().unwrap_or(0)).sum();
                    let ready_n =
                        of("Pod").iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null() && ready(p)).count();
                    seen.lock().unwrap().push((asked, ready_n));
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
    for (asked, ready_n) in &seen {
        assert!(*asked <= 5, "ReplicaSets asked for more than replicas+maxSurge pods: {seen:?}");
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
        // A fresh leader starts every informer and the garbage collector's watches at once; the default
        // client limit (20/s) would make that start-up the slowest part of the takeover.
        "--kube-api-qps=200",
        "--kube-api-burst=400",
    ];
    let a = c.start_manager(&fast);
    let b = c.start_manager(&fast);
    let holder = |c: &Cluster| {
        let out = c.kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-controller-manager",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
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

fn set_pod_status(c: &Cluster, name: &str, ip: Option<&str>, is_ready: bool) {
    let now = "2026-01-01T00:00:00Z";
    let mut status = serde_json::json!({"phase": "Running", "conditions": [{"type": "Ready", "status": if is_ready { "True" } else { "False" }, "lastTransitionTime": now}]});
    if let Some(ip) = ip {
        status["podIP"] = serde_json::json!(ip);
        status["podIPs"] = serde_json::json!([{"ip": ip}]);
    }
    c.ok(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &serde_json::json!({"status": status}).to_string(),
    ]);
}

#[test]
fn services_get_endpoints_and_slices_that_follow_readiness() {
    let mut c = Cluster::start();
    c.start_manager(&["--secure-port=0", "--max-endpoints-per-slice=2"]);
    c.ok(&[
        "apply",
        "-f",
        &c.file(
            "api.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: api}}\n  template:\n    metadata: {labels: {app: api}}\n    spec:\n      containers:\n      - name: c\n        image: busybox:1.36\n        ports: [{name: http, containerPort: 8080}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: api, labels: {tier: backend}}\nspec:\n  selector: {app: api}\n  ports: [{port: 80, targetPort: http}]\n",
        ),
    ]);
    let pods = eventually(Duration::from_secs(30), "3 pods", || {
        let n = names(&c.json(&["pods", "-l", "app=api"]));
        (n.len() == 3).then_some(n)
    });
    let mut pods = pods;
    pods.sort();
    set_pod_status(&c, &pods[0], Some("10.1.0.1"), true);
    set_pod_status(&c, &pods[1], Some("10.1.0.2"), false);
    let ep = eventually(Duration::from_secs(30), "endpoints with a ready and a not-ready address", || {
        let ep = c.json(&["endpoints", "api"]);
        let s = &ep["subsets"][0];
        (s["addresses"][0]["ip"] == "10.1.0.1" && s["notReadyAddresses"][0]["ip"] == "10.1.0.2").then_some(ep)
    });
    assert_eq!(ep["subsets"][0]["ports"], serde_json::json!([{"port": 8080, "protocol": "TCP"}]));
    assert_eq!(ep["subsets"][0]["addresses"][0]["targetRef"]["kind"], "Pod");
    assert_eq!(ep["metadata"]["labels"]["tier"], "backend");
    let slices = || c.json(&["endpointslices", "-l", "kubernetes.io/service-name=api"]);
    let s = eventually(Duration::from_secs(30), "a slice with two endpoints", || {
        let s = slices();
        (items(&s).len() == 1 && items(&s)[0]["endpoints"].as_array().map(Vec::len) == Some(2)).then_some(s)
    });
    let slice = &items(&s)[0];
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"], serde_json::json!([{"name": "", "port": 8080, "protocol": "TCP"}]));
    assert_eq!(
        slice["endpoints"][0]["conditions"],
        serde_json::json!({"ready": true, "serving": true, "terminating": false})
    );
    assert_eq!(slice["endpoints"][1]["conditions"]["ready"], false);

    // Readiness moves an address; a third endpoint overflows --max-endpoints-per-slice=2.
    set_pod_status(&c, &pods[1], Some("10.1.0.2"), true);
    set_pod_status(&c, &pods[2], Some("10.1.0.3"), true);
    eventually(Duration::from_secs(30), "three ready addresses", || {
        let ep = c.json(&["endpoints", "api"]);
        let ips: Vec<String> = ep["subsets"][0]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a["ip"].as_str().unwrap_or("").to_string())
            .collect();
        (ips == ["10.1.0.1", "10.1.0.2", "10.1.0.3"] && ep["subsets"][0]["notReadyAddresses"].is_null()).then_some(())
    });
    eventually(Duration::from_secs(30), "two slices", || {
        let s = slices();
        let total: usize = items(&s).iter().map(|i| i["endpoints"].as_array().map(Vec::len).unwrap_or(0)).sum();
        (items(&s).len() == 2 && total == 3).then_some(())
    });
    // Endpoints written by hand for a Service without a selector are mirrored into slices.
    c.ok(&["apply", "-f", &c.file("ext.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec:\n  ports: [{port: 443}]\n---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: ext}\nsubsets:\n- addresses: [{ip: 192.0.2.10}]\n  ports: [{port: 443}]\n")]);
    let mirrored = eventually(Duration::from_secs(30), "a mirrored slice", || {
        let s = c.json(&["endpointslices", "-l", "kubernetes.io/service-name=ext"]);
        items(&s).first().cloned()
    });
    assert_eq!(
        mirrored["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    assert_eq!(mirrored["metadata"]["ownerReferences"][0]["kind"], "Endpoints");
    assert_eq!(mirrored["endpoints"][0]["addresses"], serde_json::json!(["192.0.2.10"]));
    assert_eq!(mirrored["ports"][0]["port"], 443);
    assert!(c.kubectl(&["get", "endpoints", "ext"]).status.success(), "hand-written endpoints are left alone");

    // The Service's deletion takes its endpoints with it.
    c.ok(&["delete", "service", "api"]);
    eventually(Duration::from_secs(30), "endpoints and slices gone", || {
        (!c.kubectl(&["get", "endpoints", "api"]).status.success() && items(&slices()).is_empty()).then_some(())
    });
}

#[test]
fn silent_nodes_are_tainted_and_their_pods_evicted() {
    let mut c = Cluster::start();
    c.start_manager(&[
        "--secure-port=0",
        "--node-monitor-grace-period=6s",
        "--node-monitor-period=1s",
        "--node-startup-grace-period=4s",
        "--allocate-node-cidrs=true",
        "--cluster-cidr=10.244.0.0/16",
    ]);
    let node = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{topology.kubernetes.io/zone: z1}}\n"
        )
    };
    c.ok(&["apply", "-f", &c.file("n1.yaml", &node("n1"))]);
    let heartbeat = |c: &Cluster, name: &str| beat(&c.kubeconfig(), name);
    heartbeat(&c, "n1");
    // n1's kubelet, played by a thread until the test silences it.
    let n1_alive = Arc::new(AtomicBool::new(true));
    let n1 = {
        let (alive, kc) = (n1_alive.clone(), c.kubeconfig());
        std::thread::spawn(move || {
            while alive.load(Ordering::SeqCst) {
                beat(&kc, "n1");
                std::thread::sleep(Duration::from_millis(700));
            }
        })
    };
    assert_eq!(
        eventually(Duration::from_secs(30), "a pod CIDR", || {
            let cidr = c.ok(&["get", "node", "n1", "-o", "jsonpath={.spec.podCIDR}"]);
            (!cidr.is_empty()).then_some(cidr)
        }),
        "10.244.0.0/24"
    );
    c.ok(&["apply", "-f", &c.file("n2.yaml", &node("n2"))]);
    eventually(Duration::from_secs(30), "the second CIDR", || {
        (c.ok(&["get", "node", "n2", "-o", "jsonpath={.spec.podCIDR}"]) == "10.244.1.0/24").then_some(())
    });
    // n2 stays healthy throughout (a cluster whose every node is down evicts nothing, as upstream);
    // n3 never reports.
    let stop = Arc::new(AtomicBool::new(false));
    let n2 = {
        let (stop, kc) = (stop.clone(), c.kubeconfig());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                beat(&kc, "n2");
                std::thread::sleep(Duration::from_millis(700));
            }
        })
    };
    c.ok(&["apply", "-f", &c.file("n3.yaml", &node("n3").replace("z1", "z2"))]);
    let pod = |name: &str, tolerations: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: n1\n  tolerations: {tolerations}\n  containers: [{{name: c, image: busybox:1.36}}]\n")
    };
    c.ok(&["apply", "-f", &c.file("p1.yaml", &pod("intolerant", "[]"))]);
    c.ok(&[
        "apply",
        "-f",
        &c.file(
            "p2.yaml",
            &pod(
                "patient",
                "[{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 8}]",
            ),
        ),
    ]);
    c.ok(&["apply", "-f", &c.file("p3.yaml", &pod("stubborn", "[{operator: Exists}]"))]);
    // Heartbeats keep the node healthy for a while.
    std::thread::sleep(Duration::from_secs(8));
    let ready = c.ok(&["get", "node", "n1", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
    assert_eq!(ready, "True", "a node that renews its lease stays ready");
    assert!(c.ok(&["get", "pod", "intolerant", "-o", "jsonpath={.metadata.deletionTimestamp}"]).is_empty());
    // Then it goes silent.
    n1_alive.store(false, Ordering::SeqCst);
    n1.join().unwrap();
    eventually(Duration::from_secs(30), "Ready=Unknown", || {
        let n = c.json(&["node", "n1"]);
        let ready =
            n["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").cloned().unwrap();
        (ready["status"] == "Unknown").then_some(ready)
    });
    let n = c.json(&["node", "n1"]);
    let ready = n["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").cloned().unwrap();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    let taints = eventually(Duration::from_secs(30), "unreachable taints", || {
        let t = c.json(&["node", "n1"])["spec"]["taints"].clone();
        (t.as_array().map(Vec::len) == Some(2)).then_some(t)
    });
    let keys: Vec<String> = taints
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{}:{}", t["key"].as_str().unwrap(), t["effect"].as_str().unwrap()))
        .collect();
    assert!(keys.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string()), "{keys:?}");
    assert!(keys.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string()), "{keys:?}");
    let deleted = |name: &str| !c.ok(&["get", "pod", name, "-o", "jsonpath={.metadata.deletionTimestamp}"]).is_empty();
    eventually(Duration::from_secs(10), "the intolerant pod evicted", || deleted("intolerant").then_some(()));
    let intolerant = c.json(&["pod", "intolerant"]);
    assert!(intolerant["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "DisruptionTarget" && c["reason"] == "DeletionByTaintManager"));
    assert!(!deleted("patient"), "evicted before its tolerationSeconds");
    eventually(Duration::from_secs(20), "the patient pod evicted after 8s", || deleted("patient").then_some(()));
    std::thread::sleep(Duration::from_secs(2));
    assert!(!deleted("stubborn"), "a pod tolerating everything stays");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=TaintManagerEviction",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(events.contains("Marking for deletion Pod default/intolerant"), "{events}");
    // n3 never posted a status.
    let n3 = c.json(&["node", "n3"]);
    assert_eq!(
        n3["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap()["reason"],
        "NodeStatusNeverUpdated"
    );
    assert_eq!(c.ok(&["get", "node", "n2", "-o", "jsonpath={.spec.taints}"]), "", "a healthy node is not tainted");
    // Heartbeats again: the taints go.
    heartbeat(&c, "n1");
    eventually(Duration::from_secs(30), "taints removed", || {
        c.json(&["node", "n1"])["spec"]["taints"].is_null().then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    n2.join().unwrap();
}

/// A kubelet's heartbeat: its Lease renewed and its Ready condition posted.
fn beat(kubeconfig: &std::path::Path, name: &str) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let ts = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let micro = now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
    let kubectl = |args: &[&str], stdin: Option<String>| {
        use std::io::Write;
        let mut cmd = std::process::Command::new(common::kubectl_bin());
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if stdin.is_some() {
            cmd.stdin(std::process::Stdio::piped());
        }
        let mut child = cmd.spawn().unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        child.wait().unwrap();
    };
    let lease = format!("apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {name}, namespace: kube-node-lease}}\nspec: {{holderIdentity: {name}, leaseDurationSeconds: 40, renewTime: \"{micro}\"}}\n");
    kubectl(&["apply", "-f", "-"], Some(lease));
    let status = serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": ts, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    kubectl(&["patch", "node", name, "--subresource=status", "--type=merge", "-p", &status.to_string()], None);
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn csrs_are_signed_roles_aggregated_and_finished_jobs_expire() {
    let mut c = Cluster::start();
    let d = c.dir.path().to_path_buf();
    openssl(
        &d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=kubernetes",
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,digitalSignature",
        ],
    );
    openssl(&d, &["genrsa", "-out", "sa.key", "2048"]);
    openssl(&d, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
    c.start_manager(&[
        "--secure-port=0",
        &format!("--service-account-private-key-file={}", d.join("sa.key").display()),
        &format!("--root-ca-file={}", d.join("ca.crt").display()),
        &format!("--cluster-signing-cert-file={}", d.join("ca.crt").display()),
        &format!("--cluster-signing-key-file={}", d.join("ca.key").display()),
        "--cluster-signing-duration=1h",
    ]);
    let csr = |name: &str, subject: &str| {
        openssl(
            &d,
            &[
                "req",
                "-new",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                subject,
            ],
        );
        use base64::Engine;
        let req =
            base64::engine::general_purpose::STANDARD.encode(std::fs::read(d.join(format!("{name}.csr"))).unwrap());
        let obj = format!("apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: {name}}}\nspec:\n  request: {req}\n  signerName: kubernetes.io/kube-apiserver-client-kubelet\n  usages: [digital signature, key encipherment, client auth]\n");
        c.ok(&["apply", "-f", &c.file(&format!("{name}.yaml"), &obj)]);
        c.ok(&["certificate", "approve", name]);
    };
    csr("node-n1", "/O=system:nodes/CN=system:node:n1");
    csr("impostor", "/O=system:masters/CN=system:node:n1");
    let cert = eventually(Duration::from_secs(30), "a signed certificate", || {
        let b64 = c.ok(&["get", "csr", "node-n1", "-o", "jsonpath={.status.certificate}"]);
        (!b64.is_empty()).then_some(b64)
    });
    use base64::Engine;
    std::fs::write(d.join("node-n1.crt"), base64::engine::general_purpose::STANDARD.decode(cert).unwrap()).unwrap();
    openssl(&d, &["verify", "-CAfile", "ca.crt", "node-n1.crt"]);
    let text = std::process::Command::new("openssl")
        .current_dir(&d)
        .args(["x509", "-in", "node-n1.crt", "-noout", "-text"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("O=system:nodes") || text.contains("O = system:nodes"), "{text}");
    let failed = eventually(Duration::from_secs(30), "the impostor failed", || {
        let v = c.json(&["csr", "impostor"]);
        v["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "Failed").cloned())
    });
    assert_eq!(failed["reason"], "SignerValidationFailure");
    assert!(c.ok(&["get", "csr", "impostor", "-o", "jsonpath={.status.certificate}"]).is_empty());

    // A legacy token Secret is filled with a token signed by the service-account key.
    c.ok(&["create", "serviceaccount", "robot"]);
    c.ok(&["apply", "-f", &c.file("tok.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: robot-token\n  annotations: {kubernetes.io/service-account.name: robot}\ntype: kubernetes.io/service-account-token\n")]);
    let token = eventually(Duration::from_secs(30), "a token", || {
        let t = c.ok(&["get", "secret", "robot-token", "-o", "jsonpath={.data.token}"]);
        (!t.is_empty()).then_some(t)
    });
    let jwt = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(token).unwrap()).unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Value = serde_json::from_slice(&url.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&url.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["iss"], "kubernetes/serviceaccount");
    assert_eq!(claims["sub"], "system:serviceaccount:default:robot");
    let uid = c.ok(&["get", "sa", "robot", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(claims["kubernetes.io/serviceaccount/service-account.uid"], uid.as_str());
    std::fs::write(d.join("signed.txt"), format!("{}.{}", parts[0], parts[1])).unwrap();
    std::fs::write(d.join("sig.bin"), url.decode(parts[2]).unwrap()).unwrap();
    openssl(&d, &["dgst", "-sha256", "-verify", "sa.pub", "-signature", "sig.bin", "signed.txt"]);
    assert!(!c.ok(&["get", "secret", "robot-token", "-o", "jsonpath={.data.ca\\.crt}"]).is_empty());
    c.ok(&["delete", "serviceaccount", "robot"]);
    eventually(Duration::from_secs(30), "the token secret of a deleted account deleted", || {
        (!c.kubectl(&["get", "secret", "robot-token"]).status.success()).then_some(())
    });

    // An aggregated ClusterRole follows the roles its selector matches.
    c.ok(&["apply", "-f", &c.file("agg.yaml", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: monitoring}\naggregationRule:\n  clusterRoleSelectors: [{matchLabels: {rbac.example.com/aggregate-to-monitoring: \"true\"}}]\nrules: []\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: monitoring-endpoints\n  labels: {rbac.example.com/aggregate-to-monitoring: \"true\"}\nrules:\n- apiGroups: [\"\"]\n  resources: [services, endpoints, pods]\n  verbs: [get, list, watch]\n")]);
    eventually(Duration::from_secs(30), "aggregated rules", || {
        let r = c.json(&["clusterrole", "monitoring"]);
        (r["rules"][0]["resources"] == serde_json::json!(["services", "endpoints", "pods"])).then_some(())
    });

    // A finished Job with ttlSecondsAfterFinished goes once it has passed.
    c.ok(&["apply", "-f", &c.file("job.yaml", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: once}\nspec:\n  ttlSecondsAfterFinished: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox:1.36}]\n")]);
    let now = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let status = serde_json::json!({"status": {"succeeded": 1, "startTime": now, "completionTime": now, "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
        {"type": "Complete", "status": "True", "lastTransitionTime": now}]}});
    c.ok(&["patch", "job", "once", "--subresource=status", "--type=merge", "-p", &status.to_string()]);
    assert!(c.kubectl(&["get", "job", "once"]).status.success(), "deleted before its TTL");
    eventually(Duration::from_secs(30), "the finished job deleted", || {
        (!c.kubectl(&["get", "job", "once"]).status.success()).then_some(())
    });
}

#[test]
fn bad_owner_references_and_overlapping_selectors() {
    let mut c = Cluster::start();
    c.start_manager(&["--secure-port=0"]);
    let pod = |name: &str, owner: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: stray}}\n  ownerReferences: [{owner}]\nspec:\n  containers: [{{name: c, image: busybox:1.36}}]\n")
    };
    // An owner that does not exist: the dependent is garbage.
    c.ok(&[
        "apply",
        "-f",
        &c.file(
            "dangling.yaml",
            &pod(
                "dangling",
                "{apiVersion: apps/v1, kind: ReplicaSet, name: gone, uid: 00000000-0000-0000-0000-000000000001}",
            ),
        ),
    ]);
    // An owner of a kind nobody serves: never deleted on a guess.
    c.ok(&[
        "apply",
        "-f",
        &c.file(
            "unknown.yaml",
            &pod(
                "unknown-kind",
                "{apiVersion: example.com/v1, kind: Widget, name: w, uid: 00000000-0000-0000-0000-000000000002}",
            ),
        ),
    ]);
    eventually(Duration::from_secs(30), "the dangling dependent deleted", || {
        (!c.kubectl(&["get", "pod", "dangling"]).status.success()).then_some(())
    });
    assert!(c.kubectl(&["get", "pod", "unknown-kind"]).status.success());

    // Two ReplicaSets selecting the same pods: each keeps its own, nothing flaps.
    let rs = |name: &str, n: i32| {
        format!("apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: {name}}}\nspec:\n  replicas: {n}\n  selector: {{matchLabels: {{app: shared}}}}\n  template:\n    metadata: {{labels: {{app: shared}}}}\n    spec:\n      containers: [{{name: c, image: busybox:1.36}}]\n")
    };
    c.ok(&["apply", "-f", &c.file("rs-a.yaml", &rs("first", 2))]);
    c.ok(&["apply", "-f", &c.file("rs-b.yaml", &rs("second", 3))]);
    let owners = || {
        let pods = c.json(&["pods", "-l", "app=shared"]);
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for p in items(&pods) {
            *counts
                .entry(p["metadata"]["ownerReferences"][0]["name"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
        counts
    };
    let settled = eventually(Duration::from_secs(30), "both ReplicaSets at size", || {
        let o = owners();
        (o.get("first") == Some(&2) && o.get("second") == Some(&3)).then_some(o)
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(owners(), settled, "pods changed hands or were recreated");
    // The controller manager is still healthy and not retrying in a tight loop.
    let log = c.manager_log(0);
    let retries = log.matches("sync failed").count();
    assert!(retries < 20, "{retries} failed syncs:\n{log}");
}

#[test]
fn bootstrap_tokens_sign_cluster_info_and_expire() {
    let mut c = Cluster::start();
    c.start_manager(&["--secure-port=0", "--controllers=*,tokencleaner,bootstrapsigner"]);
    let token = |id: &str, secret: &str, expiration: &str| {
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: bootstrap-token-{id}, namespace: kube-system}}\ntype: bootstrap.kubernetes.io/token\nstringData:\n  token-id: {id}\n  token-secret: {secret}\n  usage-bootstrap-signing: \"true\"\n  usage-bootstrap-authentication: \"true\"\n  expiration: \"{expiration}\"\n")
    };
    c.ok(&["apply", "-f", &c.file("t1.yaml", &token("abcdef", "0123456789abcdef", "2999-01-01T00:00:00Z"))]);
    c.ok(&["apply", "-f", &c.file("t2.yaml", &token("zyxwvu", "fedcba9876543210", "2020-01-01T00:00:00Z"))]);
    c.ok(&[
        "create",
        "configmap",
        "cluster-info",
        "-n",
        "kube-public",
        "--from-literal=kubeconfig=apiVersion: v1\nkind: Config\n",
    ]);
    let jws = eventually(Duration::from_secs(30), "a signature", || {
        let v =
            c.ok(&["get", "cm", "cluster-info", "-n", "kube-public", "-o", "jsonpath={.data.jws-kubeconfig-abcdef}"]);
        (!v.is_empty()).then_some(v)
    });
    // Recompute it the way kubeadm join checks it, with openssl.
    use base64::Engine;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (header, sig) = jws.split_once("..").unwrap();
    let signed = format!("{header}.{}", url.encode("apiVersion: v1\nkind: Config\n"));
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", "0123456789abcdef", "-binary"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), signed.as_bytes()).unwrap();
    let mac = child.wait_with_output().unwrap().stdout;
    assert_eq!(sig, url.encode(mac));
    // The expired token is deleted, and never signs.
    eventually(Duration::from_secs(30), "the expired token deleted", || {
        (!c.kubectl(&["get", "secret", "bootstrap-token-zyxwvu", "-n", "kube-system"]).status.success()).then_some(())
    });
    assert!(c
        .ok(&["get", "cm", "cluster-info", "-n", "kube-public", "-o", "jsonpath={.data.jws-kubeconfig-zyxwvu}"])
        .is_empty());
    // A deleted token's signature goes.
    c.ok(&["delete", "secret", "bootstrap-token-abcdef", "-n", "kube-system"]);
    eventually(Duration::from_secs(30), "the signature removed", || {
        c.ok(&["get", "cm", "cluster-info", "-n", "kube-public", "-o", "jsonpath={.data.jws-kubeconfig-abcdef}"])
            .is_empty()
            .then_some(())
    });
}
