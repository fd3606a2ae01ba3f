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
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: default-scheduler\n- schedulerName: packer\n  pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: MostAllocated}}\n  - name: NodeAffinity\n    args: {addedAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a, b]}]}]}}}\n",
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
    assert!(packed == "small" || packed == "large", "the packer's addedAffinity keeps zones a and b: {packed}");
    // The profile's addedAffinity binds every pod of the profile, with upstream's reason.
    pod(&c, "packed-in-d", "100m", "  schedulerName: packer\n  nodeSelector: {zone: d}\n");
    let cond = eventually(Duration::from_secs(30), "PodScheduled=False", || {
        let c = condition(&c, "packed-in-d");
        (c["status"] == "False").then_some(c)
    });
    assert_eq!(
        cond["message"],
        "0/4 nodes are available: 1 node(s) didn't match scheduler-enforced node affinity, 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling."
    );
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
    let resources = String::from_utf8(
        std::process::Command::new("curl")
            .args(["-sk", &format!("https://127.0.0.1:{port}/metrics/resources")])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let line = resources
        .lines()
        .find(|l| {
            l.starts_with("kube_pod_resource_request{")
                && l.contains("pod=\"fits-large\"")
                && l.contains("resource=\"cpu\"")
        })
        .unwrap_or_else(|| panic!("no cpu request of fits-large in {resources}"));
    assert!(line.contains("node=\"large\"") && line.contains("unit=\"cores\"") && line.ends_with(" 3"), "{line}");
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

fn labelled_pod(c: &Cluster, name: &str, labels: &str, spec: &str) {
    let ns = if name.starts_with("blue-") { "other" } else { "default" };
    c.ok(&["apply", "-f", &c.file(&format!("{name}.yaml"), &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}\nspec:\n{spec}  containers:\n  - name: c\n    image: busybox:1.36\n    resources: {{requests: {{cpu: 100m}}}}\n"))]);
}

fn placed(c: &Cluster, name: &str) -> String {
    eventually(Duration::from_secs(30), &format!("{name} placed"), || Some(node_of(c, name)).filter(|n| !n.is_empty()))
}

fn failed_scheduling(c: &Cluster, name: &str) -> String {
    eventually(Duration::from_secs(30), &format!("{name} unschedulable"), || {
        let cond = condition(c, name);
        (cond["reason"] == "Unschedulable").then(|| cond["message"].as_str().unwrap_or("").to_string())
    })
}

#[test]
fn pod_affinity_and_anti_affinity() {
    let mut c = Cluster::start();
    c.start_component("kube-scheduler", &["--secure-port=0"]);
    for (n, z) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c")] {
        node(&c, n, "8", &format!("topology.kubernetes.io/zone: {z}, kubernetes.io/hostname: {n}"), "[]");
    }
    let zone = |n: &str| n.chars().next().unwrap();
    labelled_pod(&c, "db", "app: db", "  nodeSelector: {kubernetes.io/hostname: a1}\n");
    assert_eq!(placed(&c, "db"), "a1");

    // Required affinity: web pods go to the db's zone.
    let near_db = "  affinity:\n    podAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - {labelSelector: {matchLabels: {app: db}}, topologyKey: topology.kubernetes.io/zone}\n";
    for i in 0..3 {
        labelled_pod(&c, &format!("web{i}"), "app: web", near_db);
    }
    for i in 0..3 {
        assert_eq!(zone(&placed(&c, &format!("web{i}"))), 'a');
    }

    // Required anti-affinity with itself: one per node, the fifth waits with upstream's reason.
    let spread_out = "  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - {labelSelector: {matchLabels: {app: cache}}, topologyKey: kubernetes.io/hostname}\n";
    for i in 0..5 {
        labelled_pod(&c, &format!("cache{i}"), "app: cache", spread_out);
    }
    let mut hosts: Vec<String> = Vec::new();
    let mut waiting = Vec::new();
    eventually(Duration::from_secs(30), "four caches placed", || {
        hosts = (0..5).map(|i| node_of(&c, &format!("cache{i}"))).filter(|n| !n.is_empty()).collect();
        (hosts.len() == 4).then_some(())
    });
    hosts.sort();
    assert_eq!(hosts, ["a1", "a2", "b1", "c1"]);
    for i in 0..5 {
        if node_of(&c, &format!("cache{i}")).is_empty() {
            waiting.push(format!("cache{i}"));
        }
    }
    let msg = failed_scheduling(&c, &waiting[0]);
    assert!(msg.starts_with("0/4 nodes are available: 4 node(s) didn't match pod anti-affinity rules."), "{msg}");

    // A placed pod's anti-affinity keeps matching pods out of its zone.
    labelled_pod(&c, "guard", "app: guard", "  nodeSelector: {topology.kubernetes.io/zone: c}\n  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - {labelSelector: {matchLabels: {app: intruder}}, topologyKey: topology.kubernetes.io/zone}\n");
    assert_eq!(placed(&c, "guard"), "c1");
    labelled_pod(&c, "intruder", "app: intruder", "  nodeSelector: {topology.kubernetes.io/zone: c}\n");
    let msg = failed_scheduling(&c, "intruder");
    assert!(msg.starts_with("0/4 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules, 3 node(s) didn't match Pod's node affinity/selector."), "{msg}");

    // A follower waits for its leader, and follows as soon as the leader is placed.
    labelled_pod(&c, "follower", "app: follower", "  affinity:\n    podAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - {labelSelector: {matchLabels: {app: leader}}, topologyKey: kubernetes.io/hostname}\n");
    let msg = failed_scheduling(&c, "follower");
    assert!(msg.starts_with("0/4 nodes are available: 4 node(s) didn't match pod affinity rules."), "{msg}");
    labelled_pod(&c, "leader", "app: leader", "  nodeSelector: {kubernetes.io/hostname: b1}\n");
    assert_eq!(placed(&c, "leader"), "b1");
    assert_eq!(placed(&c, "follower"), "b1");

    // namespaceSelector: the term looks at pods in the namespaces with those labels.
    c.ok(&["create", "namespace", "other"]);
    c.ok(&["label", "namespace", "other", "team=blue"]);
    labelled_pod(&c, "blue-db", "app: db", "  nodeSelector: {kubernetes.io/hostname: c1}\n");
    let blue = eventually(Duration::from_secs(30), "blue-db placed", || {
        Some(c.ok(&["get", "pod", "-n", "other", "blue-db", "-o", "jsonpath={.spec.nodeName}"]))
            .filter(|n| !n.is_empty())
    });
    assert_eq!(blue, "c1");
    labelled_pod(&c, "with-blue", "app: client", "  affinity:\n    podAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - {labelSelector: {matchLabels: {app: db}}, namespaceSelector: {matchLabels: {team: blue}}, topologyKey: kubernetes.io/hostname}\n");
    assert_eq!(placed(&c, "with-blue"), "c1");

    // Preferred affinity outweighs the emptier nodes.
    labelled_pod(&c, "likes-db", "app: fan", "  affinity:\n    podAffinity:\n      preferredDuringSchedulingIgnoredDuringExecution:\n      - weight: 100\n        podAffinityTerm: {labelSelector: {matchLabels: {app: db}, matchExpressions: []}, topologyKey: kubernetes.io/hostname, namespaces: [default]}\n");
    assert_eq!(placed(&c, "likes-db"), "a1");
}

#[test]
fn preemption_evicts_lower_priority_pods_and_respects_budgets() {
    let mut c = Cluster::start();
    c.start_component("kube-scheduler", &["--secure-port=0"]);
    let mut classes = String::new();
    for (name, value, policy) in [
        ("lowest", 5, "PreemptLowerPriority"),
        ("low", 10, "PreemptLowerPriority"),
        ("high", 1000, "PreemptLowerPriority"),
        ("polite", 1000, "Never"),
    ] {
        classes.push_str(&format!("apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {{name: {name}}}\nvalue: {value}\npreemptionPolicy: {policy}\n---\n"));
    }
    c.ok(&["apply", "-f", &c.file("classes.yaml", &classes)]);
    for n in ["n1", "n2"] {
        node(&c, n, "2", &format!("kubernetes.io/hostname: {n}"), "[]");
    }
    // n1 holds a low pod; n2 a lowest one that a budget protects (it would otherwise be the cheaper victim).
    pod(&c, "l1", "1500m", "  priorityClassName: low\n  nodeSelector: {kubernetes.io/hostname: n1}\n");
    c.ok(&["apply", "-f", &c.file("l2.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: l2, labels: {app: guarded}}\nspec:\n  priorityClassName: lowest\n  nodeSelector: {kubernetes.io/hostname: n2}\n  containers:\n  - name: c\n    image: busybox:1.36\n    resources: {requests: {cpu: 1500m}}\n")]);
    c.ok(&["apply", "-f", &c.file("pdb.yaml", "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: guard}\nspec:\n  minAvailable: 1\n  selector: {matchLabels: {app: guarded}}\n")]);
    // Playing the disruption controller: no disruption is allowed.
    c.ok(&[
        "patch",
        "pdb",
        "guard",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"disruptionsAllowed":0,"currentHealthy":1,"desiredHealthy":1,"expectedPods":1}}"#,
    ]);
    assert_eq!(placed(&c, "l1"), "n1");
    assert_eq!(placed(&c, "l2"), "n2");

    // A polite high-priority pod waits without evicting anyone.
    pod(&c, "polite", "1", "  priorityClassName: polite\n");
    let msg = failed_scheduling(&c, "polite");
    assert_eq!(
        msg,
        "0/2 nodes are available: 2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );

    // A high-priority pod preempts l1 (not the protected l2) and is nominated to n1.
    pod(&c, "urgent", "1", "  priorityClassName: high\n");
    let nominated = eventually(Duration::from_secs(30), "a nomination", || {
        Some(c.ok(&["get", "pod", "urgent", "-o", "jsonpath={.status.nominatedNodeName}"])).filter(|n| !n.is_empty())
    });
    assert_eq!(nominated, "n1");
    let victim: Value = serde_json::from_str(&c.ok(&["get", "pod", "l1", "-o", "json"])).unwrap();
    assert!(victim["metadata"]["deletionTimestamp"].is_string(), "{victim}");
    let cond = victim["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DisruptionTarget")
        .cloned()
        .unwrap();
    assert_eq!(cond["reason"], "PreemptionByScheduler");
    assert_eq!(cond["message"], "default-scheduler: preempting to accommodate a higher priority pod");
    let uid = c.ok(&["get", "pod", "urgent", "-o", "jsonpath={.metadata.uid}"]);
    let events = c.ok(&["get", "events", "--field-selector", "reason=Preempted", "-o", "jsonpath={.items[*].message}"]);
    assert!(events.contains(&format!("Preempted by pod {uid} on node n1")), "{events}");
    assert_eq!(failed_scheduling(&c, "urgent"), "0/2 nodes are available: 2 Insufficient cpu.");
    let l2 = c.ok(&["get", "pod", "l2", "-o", "jsonpath={.metadata.deletionTimestamp}"]);
    assert_eq!(l2, "", "the protected pod was evicted");

    // The kubelet finishes the victim; the urgent pod takes its place, and the polite one fits beside
    // it in the rest of the freed room.
    c.ok(&["delete", "pod", "l1", "--grace-period=0", "--force"]);
    assert_eq!(placed(&c, "urgent"), "n1");
    assert_eq!(placed(&c, "polite"), "n1");
}

fn jsonpath(c: &Cluster, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let p = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &p]);
    c.ok(&args)
}

fn volume(name: &str, size: &str, class: &str, modes: &str, node: Option<&str>, policy: &str) -> String {
    let affinity = node.map(|n| format!("  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      - matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{n}]}}]\n")).unwrap_or_default();
    format!("apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  capacity: {{storage: {size}}}\n  accessModes: [{modes}]\n  storageClassName: \"{class}\"\n  persistentVolumeReclaimPolicy: {policy}\n  hostPath: {{path: /tmp/{name}}}\n{affinity}---\n")
}

fn claim(c: &Cluster, name: &str, size: &str, class: &str, modes: &str) {
    c.ok(&["apply", "-f", &c.file(&format!("pvc-{name}.yaml"), &format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  accessModes: [{modes}]\n  storageClassName: \"{class}\"\n  resources: {{requests: {{storage: {size}}}}}\n"))]);
}

fn claim_pod(c: &Cluster, name: &str, claim: &str) {
    pod(c, name, "100m", &format!("  volumes: [{{name: v, persistentVolumeClaim: {{claimName: {claim}}}}}]\n"));
}

/// VolumeBinding and VolumeRestrictions with the real PersistentVolume controllers: claims of a
/// `WaitForFirstConsumer` class are bound to a volume on the node the scheduler picks, `Immediate`
/// claims are bound by the controller alone, missing claims and used-up volumes give upstream's
/// messages, a `ReadWriteOncePod` claim admits one pod at a time, and released volumes follow
/// their reclaim policy.
#[test]
fn volumes_are_bound_before_their_pods() {
    let mut c = Cluster::start();
    c.start_component("kube-scheduler", &["--secure-port=0"]);
    c.start_manager(&[
        "--controllers=persistentvolume-binder,pvc-protection,pv-protection",
        "--pvclaimbinder-sync-period=2s",
    ]);
    for n in ["n1", "n2"] {
        node(&c, n, "4", &format!("kubernetes.io/hostname: {n}"), "[]");
    }
    let mut objects = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: local}\nprovisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: WaitForFirstConsumer\n---\n".to_string();
    objects.push_str(&volume("pv-n1", "1Gi", "local", "ReadWriteOnce", Some("n1"), "Retain"));
    objects.push_str(&volume("pv-n2", "5Gi", "local", "ReadWriteOnce", Some("n2"), "Retain"));
    objects.push_str(&volume("pv-static", "2Gi", "", "ReadWriteOnce", None, "Retain"));
    objects.push_str(&volume("pv-solo", "1Gi", "", "ReadWriteOncePod", None, "Delete"));
    c.ok(&["apply", "-f", &c.file("storage.yaml", &objects)]);
    eventually(Duration::from_secs(30), "volumes available", || {
        let phases = jsonpath(&c, &["pv"], "{.items[*].status.phase}");
        (phases == "Available Available Available Available").then_some(())
    });

    // A missing claim: upstream's PreFilter message; the claim's arrival lets the pod in, on the one
    // node with a volume big enough, and the controller completes the binding the scheduler began.
    claim_pod(&c, "big", "big");
    assert_eq!(
        failed_scheduling(&c, "big"),
        "0/2 nodes are available: persistentvolumeclaim \"big\" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    claim(&c, "big", "2Gi", "local", "ReadWriteOnce");
    assert_eq!(placed(&c, "big"), "n2");
    assert_eq!(
        jsonpath(&c, &["pvc", "big"], "{.spec.volumeName} {.status.phase} {.status.capacity.storage}"),
        "pv-n2 Bound 5Gi"
    );
    assert_eq!(jsonpath(&c, &["pvc", "big"], "{.metadata.annotations.pv\\.kubernetes\\.io/bind-completed}"), "yes");
    assert_eq!(jsonpath(&c, &["pv", "pv-n2"], "{.spec.claimRef.name} {.status.phase}"), "big Bound");

    // Before a consumer exists, a delayed claim waits with upstream's event.
    claim(&c, "small", "500Mi", "local", "ReadWriteOnce");
    eventually(Duration::from_secs(30), "WaitForFirstConsumer", || {
        let ev = c.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=small",
            "-o",
            "jsonpath={.items[*].reason}",
        ]);
        ev.contains("WaitForFirstConsumer").then_some(())
    });
    assert_eq!(jsonpath(&c, &["pvc", "small"], "{.status.phase}"), "Pending");
    claim_pod(&c, "small", "small");
    assert_eq!(placed(&c, "small"), "n1");
    assert_eq!(jsonpath(&c, &["pvc", "small"], "{.spec.volumeName}"), "pv-n1");

    // No volume left for a third delayed claim.
    claim(&c, "more", "100Mi", "local", "ReadWriteOnce");
    claim_pod(&c, "more", "more");
    assert_eq!(
        failed_scheduling(&c, "more"),
        "0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );

    // An Immediate claim (no class) is bound by the controller alone, to the smallest fit.
    claim(&c, "static", "1Gi", "", "ReadWriteOnce");
    eventually(Duration::from_secs(30), "static bound", || {
        (jsonpath(&c, &["pvc", "static"], "{.status.phase}") == "Bound").then_some(())
    });
    assert_eq!(jsonpath(&c, &["pvc", "static"], "{.spec.volumeName}"), "pv-static");

    // ReadWriteOncePod: the second user waits until the first is gone.
    claim(&c, "solo", "1Gi", "", "ReadWriteOncePod");
    eventually(Duration::from_secs(30), "solo bound", || {
        (jsonpath(&c, &["pvc", "solo"], "{.status.phase}") == "Bound").then_some(())
    });
    claim_pod(&c, "solo-1", "solo");
    placed(&c, "solo-1");
    claim_pod(&c, "solo-2", "solo");
    assert_eq!(
        failed_scheduling(&c, "solo-2"),
        "0/2 nodes are available: 2 node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
    );
    c.ok(&["delete", "pod", "solo-1", "--grace-period=0", "--force"]);
    placed(&c, "solo-2");

    // Deleting the claim waits for its pod (pvc-protection); then the volume is released and, with
    // the Delete policy and no deleter, fails as upstream's does; a deleted volume goes once unbound.
    c.ok(&["delete", "pvc", "solo", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(jsonpath(&c, &["pvc", "solo"], "{.metadata.finalizers[0]}"), "kubernetes.io/pvc-protection");
    c.ok(&["delete", "pod", "solo-2", "--grace-period=0", "--force"]);
    eventually(Duration::from_secs(30), "the claim gone", || {
        (!c.kubectl(&["get", "pvc", "solo"]).status.success()).then_some(())
    });
    eventually(Duration::from_secs(30), "the volume failed", || {
        (jsonpath(&c, &["pv", "pv-solo"], "{.status.phase}") == "Failed").then_some(())
    });
    assert_eq!(
        jsonpath(&c, &["pv", "pv-solo"], "{.status.message}"),
        "error getting deleter volume plugin for volume \"pv-solo\": no deletable volume plugin matched"
    );
    c.ok(&["delete", "pv", "pv-solo", "--wait=false"]);
    eventually(Duration::from_secs(30), "the volume gone", || {
        (!c.kubectl(&["get", "pv", "pv-solo"]).status.success()).then_some(())
    });
}
