//! kube-scheduler against a real kube-apiserver, with Node objects made by the test.

#[path = "../../controller-manager/tests/common/mod.rs"]
mod common;

use common::{eventually, Cluster};
use serde_json::{json, Value};
use std::time::Duration;

fn node(c: &Cluster, name: &str, cpu: &str, labels: &str, taints: &str) {
    c.ok(&["apply", "-f", &c.file(&format!("{name}.yaml"), &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  taints: {taints}\n"))]);
    let status = json!({"status": {
        "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    c.ok(&["patch", "node", name, "--subresource=status", "--type=merge", "-p", &status.to_string()]);
}

fn pod(c: &Cluster, name: &str, cpu: &str, extra: &str) {
    c.ok(&["apply", "-f", &c.file(&format!("{name}.yaml"), &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{extra}  containers:\n  - name: c\n    image: busybox:1.36\n    resources: {{requests: {{cpu: \"{cpu}\"}}}}\n"))]);
}

fn node_of(c: &Cluster, name: &str) -> String {
    c.ok(&["get", "pod", name, "-o", "jsonpath={.spec.nodeName}"])
}

fn condition(c: &Cluster, name: &str) -> Value {
    let p: Value = serde_json::from_str(&c.ok(&["get", "pod", name, "-o", "json"])).unwrap();
    p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn pods_land_where_they_fit_and_wait_where_they_do_not() {
    let mut c = Cluster::start();
    let port = apiserver_storage::testing::free_port();
    let config = c.file(
        "sched.yaml",
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: default-scheduler\n- schedulerName: packer\n  pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: MostAllocated}}\n",
    );
    c.start_component(
        "kube-scheduler",
        &["--config", &config, "--secure-port", &port.to_string(), "--bind-address=127.0.0.1"],
    );
    node(&c, "small", "2", "zone: a", "[]");
    node(&c, "large", "4", "zone: b, disk: ssd", "[]");
    node(&c, "gpu", "8", "zone: c", "[{key: dedicated, value: gpu, effect: NoSchedule}]");

    pod(&c, "fits-large", "3", "");
    assert_eq!(
        eventually(Duration::from_secs(30), "a binding", || Some(node_of(&c, "fits-large")).filter(|n| !n.is_empty())),
        "large"
    );
    assert_eq!(condition(&c, "fits-large")["status"], "True");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=fits-large",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(events.contains("Successfully assigned default/fits-large to large"), "{events}");

    // Nothing fits: upstream's message and condition, then a new node lets it in.
    pod(&c, "too-big", "6", "");
    let cond = eventually(Duration::from_secs(30), "PodScheduled=False", || {
        let c = condition(&c, "too-big");
        (c["status"] == "False").then_some(c)
    });
    assert_eq!(cond["reason"], "Unschedulable");
    assert_eq!(
        cond["message"],
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
    );
    let events =
        c.ok(&["get", "events", "--field-selector", "reason=FailedScheduling", "-o", "jsonpath={.items[*].message}"]);
    assert!(events.contains("0/3 nodes are available"), "{events}");
    node(&c, "huge", "16", "zone: d", "[]");
    assert_eq!(
        eventually(Duration::from_secs(30), "the waiting pod scheduled", || Some(node_of(&c, "too-big"))
            .filter(|n| !n.is_empty())),
        "huge"
    );

    // Selectors, tolerations, node names, and the assumption of the pods just placed.
    pod(&c, "wants-ssd", "100m", "  nodeSelector: {disk: ssd}\n");
    pod(&c, "tolerates-gpu", "7", "  nodeSelector: {zone: c}\n  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]\n");
    pod(&c, "named", "100m", "  nodeName: small\n");
    assert_eq!(
        eventually(Duration::from_secs(30), "ssd", || Some(node_of(&c, "wants-ssd")).filter(|n| !n.is_empty())),
        "large"
    );
    assert_eq!(
        eventually(Duration::from_secs(30), "gpu", || Some(node_of(&c, "tolerates-gpu")).filter(|n| !n.is_empty())),
        "gpu"
    );
    assert_eq!(node_of(&c, "named"), "small");
    // The second profile packs; a pod for a scheduler nobody runs stays pending.
    pod(&c, "packed", "100m", "  schedulerName: packer\n");
    pod(&c, "elsewhere", "100m", "  schedulerName: someone-else\n");
    let packed = eventually(Duration::from_secs(30), "the packer's pod", || {
        Some(node_of(&c, "packed")).filter(|n| !n.is_empty())
    });
    assert_ne!(packed, "gpu", "the packer's pod does not tolerate the gpu taint either");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(node_of(&c, "elsewhere"), "");
    // Many pods at once never overcommit a node.
    for i in 0..12 {
        pod(&c, &format!("burst-{i}"), "1", "  nodeSelector: {zone: a}\n");
    }
    eventually(Duration::from_secs(30), "two burst pods on small", || {
        let on_small = (0..12).filter(|i| node_of(&c, &format!("burst-{i}")) == "small").count();
        (on_small == 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let on_small = (0..12).filter(|i| node_of(&c, &format!("burst-{i}")) == "small").count();
    assert_eq!(on_small, 1, "small has 2 cpus, 100m taken by `named`: one more 1-cpu pod fits");

    let metrics = String::from_utf8(
        std::process::Command::new("curl")
            .args(["-sk", &format!("https://127.0.0.1:{port}/metrics")])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for m in [
        "scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"scheduled\"}",
        "scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"unschedulable\"}",
        "scheduler_pending_pods{queue=\"unschedulable\"}",
        "leader_election_master_status{name=\"kube-scheduler\"} 1",
    ] {
        assert!(metrics.contains(m), "metrics lack {m}");
    }
}

#[test]
fn a_standby_scheduler_takes_over() {
    let mut c = Cluster::start();
    let fast = [
        "--secure-port=0",
        "--leader-elect-lease-duration=6s",
        "--leader-elect-renew-deadline=4s",
        "--leader-elect-retry-period=1s",
    ];
    let a = c.start_component("kube-scheduler", &fast);
    let b = c.start_component("kube-scheduler", &fast);
    node(&c, "n1", "4", "zone: a", "[]");
    let holder = |c: &Cluster| {
        let out = c.kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-scheduler",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = eventually(Duration::from_secs(30), "a leader", || Some(holder(&c)).filter(|h| !h.is_empty()));
    pod(&c, "before", "100m", "");
    eventually(Duration::from_secs(30), "scheduled by the leader", || (node_of(&c, "before") == "n1").then_some(()));
    let leader = if c.manager_log(a).contains("successfully acquired lease") { a } else { b };
    c.kill_manager(leader, libc::SIGKILL);
    eventually(Duration::from_secs(20), "a new leader", || Some(holder(&c)).filter(|h| !h.is_empty() && *h != first));
    pod(&c, "after", "100m", "");
    eventually(Duration::from_secs(30), "scheduled by the new leader", || (node_of(&c, "after") == "n1").then_some(()));
}

#[test]
fn topology_spread_across_three_zones() {
    let mut c = Cluster::start();
    c.start_component("kube-scheduler", &["--secure-port=0"]);
    for (n, z) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c")] {
        node(&c, n, "8", &format!("topology.kubernetes.io/zone: {z}, kubernetes.io/hostname: {n}"), "[]");
    }
    let spread = "  topologySpreadConstraints:\n  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: spread}}}\n";
    for i in 0..6 {
        c.ok(&["apply", "-f", &c.file(&format!("s{i}.yaml"), &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: s{i}, labels: {{app: spread}}}}\nspec:\n{spread}  containers:\n  - name: c\n    image: busybox:1.36\n    resources: {{requests: {{cpu: 100m}}}}\n"))]);
    }
    let placed = eventually(Duration::from_secs(30), "all six placed", || {
        let nodes: Vec<String> = (0..6).map(|i| node_of(&c, &format!("s{i}"))).collect();
        nodes.iter().all(|n| !n.is_empty()).then_some(nodes)
    });
    let zone = |n: &str| n.chars().next().unwrap();
    for z in ['a', 'b', 'c'] {
        assert_eq!(placed.iter().filter(|n| zone(n) == z).count(), 2, "two per zone: {placed:?}");
    }
    // A seventh pod fits a zone only by keeping the skew within 1: any zone, but then an eighth must
    // avoid that zone.
    for i in 6..8 {
        c.ok(&["apply", "-f", &c.file(&format!("s{i}.yaml"), &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: s{i}, labels: {{app: spread}}}}\nspec:\n{spread}  containers:\n  - name: c\n    image: busybox:1.36\n"))]);
        eventually(Duration::from_secs(30), "placed", || (!node_of(&c, &format!("s{i}")).is_empty()).then_some(()));
    }
    assert_ne!(zone(&node_of(&c, "s6")), zone(&node_of(&c, "s7")));
}
