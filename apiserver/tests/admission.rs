//! The built-in admission plugins through the real kubectl: PodSecurity enforcement and warnings,
//! ResourceQuota under racing creates, LimitRanger defaults and limits, Priority, DefaultStorageClass,
//! and the plugin flags.

mod common;

use apiserver_storage::testing::free_port;
use common::Server;
use std::process::Stdio;

fn embedded() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap().keep();
    vec!["--data-dir".into(), dir.join("data").to_string_lossy().into_owned()]
}

const PRIVILEGED_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: priv}\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n    securityContext: {privileged: true}\n";

#[test]
fn pod_security_enforces_and_warns_with_upstreams_messages() {
    let s = Server::start(embedded());
    s.ok(&["create", "namespace", "locked"]);
    s.ok(&["label", "namespace", "locked", "pod-security.kubernetes.io/enforce=restricted"]);
    let f = s.file("priv.yaml", PRIVILEGED_POD);
    let err = s.fails(&["apply", "-n", "locked", "-f", &f]);
    assert!(
        err.contains(r#"pods "priv" is forbidden: violates PodSecurity "restricted:latest": privileged (container "c" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#),
        "{err}"
    );
    assert!(s.kubectl(&["get", "pod", "priv", "-n", "locked"]).stderr.starts_with(b"Error from server (NotFound)"));
    // A compliant pod is admitted.
    let ok = "apiVersion: v1\nkind: Pod\nmetadata: {name: fine}\nspec:\n  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}\n  containers:\n  - name: c\n    image: busybox:1.36\n    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n";
    let f = s.file("fine.yaml", ok);
    s.ok(&["apply", "-n", "locked", "-f", &f]);

    // warn: the Deployment is created, with upstream's warning about its template.
    s.ok(&["create", "namespace", "watched"]);
    s.ok(&[
        "label",
        "namespace",
        "watched",
        "pod-security.kubernetes.io/warn=restricted",
        "pod-security.kubernetes.io/warn-version=v1.35",
    ]);
    let out = s.kubectl(&["create", "deployment", "web", "-n", "watched", "--image=busybox:1.36"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"Warning: would violate PodSecurity "restricted:v1.35": allowPrivilegeEscalation != false (container "busybox" must set securityContext.allowPrivilegeEscalation=false)"#),
        "{stderr}"
    );
    // Pods in a warn-only namespace are admitted with the warning.
    let f = s.file("priv2.yaml", PRIVILEGED_POD);
    let out = s.kubectl(&["apply", "-n", "watched", "-f", &f]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("Warning: would violate PodSecurity \"restricted:v1.35\": privileged"));
    // An enforce-baseline namespace rejects the privileged pod but not a plain one.
    s.ok(&["create", "namespace", "base"]);
    s.ok(&["label", "namespace", "base", "pod-security.kubernetes.io/enforce=baseline"]);
    let err = s.fails(&["apply", "-n", "base", "-f", &f]);
    assert!(err.contains(r#"violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#), "{err}");
    s.ok(&["run", "plain", "-n", "base", "--image=busybox:1.36"]);
    // Bad labels are refused.
    let err = s.fails(&["label", "namespace", "base", "--overwrite", "pod-security.kubernetes.io/enforce=strict"]);
    assert!(err.contains("must be one of privileged, baseline, restricted"), "{err}");
}

#[test]
fn resource_quota_holds_when_twenty_creates_race() {
    let s = Server::start(embedded());
    s.ok(&["create", "namespace", "q"]);
    s.ok(&["create", "quota", "pods", "-n", "q", "--hard=pods=5,requests.cpu=2"]);
    // Before the quota controller has published status.hard, nothing is admitted against it.
    let err = s.fails(&[
        "run",
        "early",
        "-n",
        "q",
        "--image=busybox:1.36",
        "--overrides",
        r#"{"spec":{"containers":[{"name":"early","image":"busybox:1.36","resources":{"requests":{"cpu":"100m"}}}]}}"#,
    ]);
    assert!(err.contains("status unknown for quota: pods, resources: "), "{err}");
    // What the quota controller would publish.
    let publish = |status: &str| {
        s.ok(&["patch", "quota", "pods", "-n", "q", "--subresource=status", "--type=merge", "-p", status]);
    };
    publish(r#"{"status":{"hard":{"pods":"5","requests.cpu":"2"},"used":{"pods":"0","requests.cpu":"0"}}}"#);
    let used_pods = || s.ok(&["get", "quota", "pods", "-n", "q", "-o", "jsonpath={.status.used.pods}"]);
    // A pod without a cpu request cannot be counted against requests.cpu.
    let err = s.fails(&["run", "nocpu", "-n", "q", "--image=busybox:1.36"]);
    assert!(err.contains(r#"pods "nocpu" is forbidden: failed quota: pods: must specify requests.cpu"#), "{err}");

    let pod = |i: usize| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}}}\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n    resources: {{requests: {{cpu: 100m}}}}\n")
    };
    let files: Vec<String> = (0..20).map(|i| s.file(&format!("p{i}.yaml"), &pod(i))).collect();
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            s.kubectl_cmd()
                .args(["create", "-n", "q", "-f", f])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let created = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(created, 5, "exactly the quota's five pods are admitted");
    for o in outs.iter().filter(|o| !o.status.success()) {
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("is forbidden: exceeded quota: pods, requested: pods=1, used: pods=5, limited: pods=5"),
            "{e}"
        );
    }
    let names = s.ok(&["get", "pods", "-n", "q", "-o", "name"]);
    assert_eq!(names.lines().count(), 5, "{names}");
    assert_eq!(
        s.ok(&["get", "quota", "pods", "-n", "q", "-o", "jsonpath={.status.used.pods} {.status.used.requests\\.cpu}"]),
        "5 500m"
    );
    // Dry runs are checked but not charged.
    s.ok(&[
        "patch",
        "quota",
        "pods",
        "-n",
        "q",
        "--type=merge",
        "-p",
        r#"{"spec":{"hard":{"pods":"6","requests.cpu":"2"}}}"#,
    ]);
    publish(r#"{"status":{"hard":{"pods":"6"}}}"#);
    let f = s.file("extra.yaml", &pod(99));
    s.ok(&["create", "-n", "q", "-f", &f, "--dry-run=server"]);
    assert_eq!(used_pods(), "5");
    s.ok(&["create", "-n", "q", "-f", &f]);
    assert_eq!(used_pods(), "6");

    // A scopeSelector quota counts only the pods it selects: none of priority class "high" here.
    s.ok(&["create", "priorityclass", "high", "--value=1000"]);
    s.ok(&["create", "namespace", "scoped"]);
    let quota = "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: no-high}\nspec:\n  hard: {pods: \"0\"}\n  scopeSelector:\n    matchExpressions: [{scopeName: PriorityClass, operator: In, values: [high]}]\n";
    let f = s.file("scoped.yaml", quota);
    s.ok(&["create", "-n", "scoped", "-f", &f]);
    s.ok(&[
        "patch",
        "quota",
        "no-high",
        "-n",
        "scoped",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"hard":{"pods":"0"},"used":{"pods":"0"}}}"#,
    ]);
    let err = s.fails(&[
        "run",
        "urgent",
        "-n",
        "scoped",
        "--image=busybox:1.36",
        "--overrides",
        r#"{"spec":{"priorityClassName":"high"}}"#,
    ]);
    assert!(err.contains("exceeded quota: no-high, requested: pods=1, used: pods=0, limited: pods=0"), "{err}");
    s.ok(&["run", "ordinary", "-n", "scoped", "--image=busybox:1.36"]);
}

#[test]
fn limit_ranges_priorities_and_storage_classes() {
    let s = Server::start(embedded());
    s.ok(&["create", "namespace", "lr"]);
    let lr = "apiVersion: v1\nkind: LimitRange\nmetadata: {name: lr}\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 500m}\n    defaultRequest: {cpu: 200m, memory: 64Mi}\n    max: {cpu: '1', memory: 1Gi}\n";
    let f = s.file("lr.yaml", lr);
    s.ok(&["apply", "-n", "lr", "-f", &f]);
    s.ok(&["run", "d", "-n", "lr", "--image=busybox:1.36"]);
    let got = s.ok(&["get", "pod", "d", "-n", "lr", "-o", "jsonpath={.spec.containers[0].resources.requests.cpu} {.spec.containers[0].resources.requests.memory} {.spec.containers[0].resources.limits.cpu} {.spec.containers[0].resources.limits.memory}"]);
    assert_eq!(got, "200m 64Mi 500m 1Gi");
    let note =
        s.ok(&["get", "pod", "d", "-n", "lr", "-o", "jsonpath={.metadata.annotations.kubernetes\\.io/limit-ranger}"]);
    assert_eq!(note, "LimitRanger plugin set: cpu, memory request for container d; cpu, memory limit for container d");
    let err = s.fails(&[
        "run",
        "big",
        "-n",
        "lr",
        "--image=busybox:1.36",
        "--overrides",
        r#"{"spec":{"containers":[{"name":"big","image":"busybox:1.36","resources":{"limits":{"cpu":"2"}}}]}}"#,
    ]);
    assert!(err.contains(r#"pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#), "{err}");

    // Priority: the built-in classes exist and resolve; unknown ones are refused.
    s.ok(&["get", "priorityclass", "system-node-critical", "system-cluster-critical"]);
    s.ok(&[
        "run",
        "crit",
        "--image=busybox:1.36",
        "--overrides",
        r#"{"spec":{"priorityClassName":"system-node-critical"}}"#,
    ]);
    assert_eq!(s.ok(&["get", "pod", "crit", "-o", "jsonpath={.spec.priority}"]), "2000001000");
    let err =
        s.fails(&["run", "nope", "--image=busybox:1.36", "--overrides", r#"{"spec":{"priorityClassName":"nope"}}"#]);
    assert!(err.contains(r#"pods "nope" is forbidden: no PriorityClass with name nope was found"#), "{err}");

    // DefaultStorageClass and the protection finalizer.
    let sc = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: fast\n  annotations: {storageclass.kubernetes.io/is-default-class: 'true'}\nprovisioner: example.com/x\n";
    let f = s.file("sc.yaml", sc);
    s.ok(&["apply", "-f", &f]);
    let pvc = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n";
    let f = s.file("pvc.yaml", pvc);
    s.ok(&["apply", "-f", &f]);
    assert_eq!(
        s.ok(&["get", "pvc", "c", "-o", "jsonpath={.spec.storageClassName} {.metadata.finalizers}"]),
        r#"fast ["kubernetes.io/pvc-protection"]"#
    );
    // The class does not allow expansion, so the claim cannot grow.
    let err = s.fails(&[
        "patch",
        "pvc",
        "c",
        "--type=merge",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
    ]);
    assert!(err.contains("only dynamically provisioned pvc can be resized"), "{err}");
    // New nodes start tainted not-ready.
    let node = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n";
    let f = s.file("node.yaml", node);
    s.ok(&["apply", "-f", &f]);
    assert_eq!(
        s.ok(&["get", "node", "n1", "-o", "jsonpath={.spec.taints[0].key}:{.spec.taints[0].effect}"]),
        "node.kubernetes.io/not-ready:NoSchedule"
    );
}

#[test]
fn unknown_plugins_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-apiserver"))
        .args(["--secure-port", &free_port().to_string(), "--bind-address", "127.0.0.1"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--cert-dir")
        .arg(dir.path().join("certs"))
        .args(["--enable-admission-plugins", "NodeRestriction,Bogus"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(r#"enable-admission-plugins plugin "Bogus" is unknown"#));
}

#[test]
fn privileged_containers_need_allow_privileged() {
    let mut args = embedded();
    args.push("--allow-privileged=false".into());
    let s = Server::start(args);
    let f = s.file("priv.yaml", PRIVILEGED_POD);
    let err = s.fails(&["apply", "-f", &f]);
    assert!(
        err.contains(r#"The Pod "priv" is invalid: spec.containers[0].securityContext.privileged: Forbidden: disallowed by cluster policy"#),
        "{err}"
    );
    // Templates are held to the same rule.
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: priv}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers:\n      - {name: c, image: busybox:1.36, securityContext: {privileged: true}}\n";
    let f = s.file("deploy.yaml", deploy);
    let err = s.fails(&["apply", "-f", &f]);
    assert!(
        err.contains(
            "spec.template.spec.containers[0].securityContext.privileged: Forbidden: disallowed by cluster policy"
        ),
        "{err}"
    );
    // Without the privilege the same objects are accepted.
    let f = s.file("plain.yaml", &deploy.replace(", securityContext: {privileged: true}", ""));
    s.ok(&["apply", "-f", &f]);
}
