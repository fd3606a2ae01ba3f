//! The bootstrap RBAC policy the API server reconciles at every start: upstream's default
//! ClusterRoles, Roles and their bindings (`kubernetes.io/bootstrapping: rbac-defaults`, annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "true"`).

use serde_json::{json, Value};

const RW: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ: &[&str] = &["get", "list", "watch"];
const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const EVENT_VERBS: &[&str] = &["create", "patch", "update"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn named(groups: &[&str], resources: &[&str], names: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "resourceNames": names, "verbs": verbs})
}

fn urls(urls: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": urls, "verbs": verbs})
}

fn events() -> Value {
    rule(&["", "events.k8s.io"], &["events"], EVENT_VERBS)
}

fn meta(name: &str, namespace: Option<&str>, extra_labels: &[(&str, &str)]) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert("kubernetes.io/bootstrapping".into(), json!("rbac-defaults"));
    for (k, v) in extra_labels {
        labels.insert(k.to_string(), json!(v));
    }
    let mut m =
        json!({"name": name, "labels": labels, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(name, None, &[]), "rules": rules})
}

fn labelled_cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(name, None, labels), "rules": rules})
}

fn aggregated(name: &str, selector_label: &str, labels: &[(&str, &str)]) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(name, None, labels),
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {selector_label: "true"}}]}})
}

/// Subjects: `("User"|"Group", name)` or `("ServiceAccount", "ns/name")`.
fn subjects(list: &[(&str, &str)]) -> Vec<Value> {
    list.iter()
        .map(|(kind, name)| match (*kind, name.split_once('/')) {
            ("ServiceAccount", Some((ns, n))) => json!({"kind": "ServiceAccount", "name": n, "namespace": ns}),
            _ => json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}),
        })
        .collect()
}

fn cluster_binding(name: &str, role: &str, subj: &[(&str, &str)]) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta(name, None, &[]),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": subjects(subj)})
}

/// The controllers' roles, `system:controller:<name>`, each bound to the service account
/// `kube-system/<name>` that `--use-service-account-credentials` makes the controller act as.
fn controller_roles() -> Vec<(&'static str, Vec<Value>)> {
    vec![
        (
            "clusterrole-aggregation-controller",
            vec![rule(
                &["rbac.authorization.k8s.io"],
                &["clusterroles"],
                &["escalate", "get", "list", "patch", "update", "watch"],
            )],
        ),
        (
            "cronjob-controller",
            vec![
                rule(&["batch"], &["cronjobs"], &["get", "list", "update", "watch"]),
                rule(&["batch"], &["jobs"], &["create", "delete", "get", "list", "patch", "update", "watch"]),
                rule(&["batch"], &["cronjobs/status"], &["update"]),
                rule(&["batch"], &["cronjobs/finalizers"], &["update"]),
                rule(&[""], &["pods"], &["delete", "list"]),
                events(),
            ],
        ),
        (
            "daemon-set-controller",
            vec![
                rule(&["apps", "extensions"], &["daemonsets"], READ),
                rule(&["apps", "extensions"], &["daemonsets/status"], &["update"]),
                rule(&["apps", "extensions"], &["daemonsets/finalizers"], &["update"]),
                rule(&[""], &["nodes"], READ),
                rule(&[""], &["pods"], &["create", "delete", "list", "patch", "watch"]),
                rule(&[""], &["pods/binding"], &["create"]),
                rule(
                    &["apps"],
                    &["controllerrevisions"],
                    &["create", "delete", "get", "list", "patch", "update", "watch"],
                ),
                events(),
            ],
        ),
        (
            "deployment-controller",
            vec![
                rule(&["apps", "extensions"], &["deployments"], &["get", "list", "update", "watch"]),
                rule(&["apps", "extensions"], &["deployments/status"], &["update"]),
                rule(&["apps", "extensions"], &["deployments/finalizers"], &["update"]),
                rule(
                    &["apps", "extensions"],
                    &["replicasets"],
                    &["create", "delete", "get", "list", "patch", "update", "watch"],
                ),
                rule(&[""], &["pods"], &["get", "list", "update", "watch"]),
                events(),
            ],
        ),
        (
            "disruption-controller",
            vec![
                rule(&["apps", "extensions"], &["deployments", "replicasets", "statefulsets"], READ),
                rule(&[""], &["replicationcontrollers", "pods"], READ),
                rule(&["policy"], &["poddisruptionbudgets"], READ),
                rule(&["policy"], &["poddisruptionbudgets/status"], &["update"]),
                rule(&["*"], &["*/scale"], &["get"]),
                rule(&[""], &["pods/status"], &["patch"]),
                events(),
            ],
        ),
        (
            "endpoint-controller",
            vec![
                rule(&[""], &["services", "pods"], READ),
                rule(&[""], &["endpoints"], &["create", "delete", "get", "list", "update"]),
                rule(&[""], &["endpoints/restricted"], &["create"]),
                events(),
            ],
        ),
        (
            "endpointslice-controller",
            vec![
                rule(&[""], &["services", "pods", "nodes"], READ),
                rule(&[""], &["services/finalizers"], &["update"]),
                rule(&["discovery.k8s.io"], &["endpointslices"], &["create", "delete", "get", "list", "update"]),
                events(),
            ],
        ),
        (
            "endpointslicemirroring-controller",
            vec![
                rule(&[""], &["services", "endpoints"], READ),
                rule(&[""], &["services/finalizers", "endpoints/finalizers"], &["update"]),
                rule(&["discovery.k8s.io"], &["endpointslices"], &["create", "delete", "get", "list", "update"]),
                events(),
            ],
        ),
        (
            "generic-garbage-collector",
            vec![rule(&["*"], &["*"], &["delete", "get", "list", "patch", "update", "watch"]), events()],
        ),
        (
            "horizontal-pod-autoscaler",
            vec![
                rule(&["autoscaling"], &["horizontalpodautoscalers"], &["get", "list", "watch"]),
                rule(&["autoscaling"], &["horizontalpodautoscalers/status"], &["update"]),
                rule(&["*"], &["*/scale"], &["get", "update"]),
                rule(&[""], &["pods"], &["list"]),
                events(),
            ],
        ),
        (
            "job-controller",
            vec![
                rule(&["batch"], &["jobs"], &["get", "list", "patch", "update", "watch"]),
                rule(&["batch"], &["jobs/status"], &["update"]),
                rule(&["batch"], &["jobs/finalizers"], &["update"]),
                rule(&[""], &["pods"], &["create", "delete", "list", "patch", "watch"]),
                events(),
            ],
        ),
        (
            "namespace-controller",
            vec![
                rule(&[""], &["namespaces"], &["delete", "get", "list", "watch"]),
                rule(&[""], &["namespaces/finalize", "namespaces/status"], &["update"]),
                rule(&["*"], &["*"], &["delete", "deletecollection", "get", "list"]),
            ],
        ),
        (
            "node-controller",
            vec![
                rule(&[""], &["nodes"], &["delete", "get", "list", "patch", "update"]),
                rule(&[""], &["nodes/status"], &["patch", "update"]),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                rule(&[""], &["pods"], &["delete", "list"]),
                rule(&[""], &["pods"], &["get"]),
                events(),
            ],
        ),
        (
            "pod-garbage-collector",
            vec![
                rule(&[""], &["pods"], &["delete", "list", "watch"]),
                rule(&[""], &["nodes"], READ),
                rule(&[""], &["pods/status"], &["patch"]),
            ],
        ),
        (
            "replicaset-controller",
            vec![
                rule(&["apps", "extensions"], &["replicasets"], &["get", "list", "update", "watch"]),
                rule(&["apps", "extensions"], &["replicasets/status"], &["update"]),
                rule(&["apps", "extensions"], &["replicasets/finalizers"], &["update"]),
                rule(&[""], &["pods"], &["create", "delete", "list", "patch", "watch"]),
                events(),
            ],
        ),
        (
            "replication-controller",
            vec![
                rule(&[""], &["replicationcontrollers"], &["get", "list", "update", "watch"]),
                rule(&[""], &["replicationcontrollers/status"], &["update"]),
                rule(&[""], &["replicationcontrollers/finalizers"], &["update"]),
                rule(&[""], &["pods"], &["create", "delete", "list", "patch", "watch"]),
                events(),
            ],
        ),
        (
            "resourcequota-controller",
            vec![
                rule(&["*"], &["*"], &["list", "watch"]),
                rule(&[""], &["resourcequotas/status"], &["update"]),
                events(),
            ],
        ),
        ("service-account-controller", vec![rule(&[""], &["serviceaccounts"], &["create"]), events()]),
        (
            "statefulset-controller",
            vec![
                rule(&[""], &["pods"], &["list", "watch"]),
                rule(&["apps"], &["statefulsets"], &["list", "watch"]),
                rule(&["apps"], &["statefulsets"], &["get"]),
                rule(&["apps"], &["statefulsets/status"], &["update"]),
                rule(&["apps"], &["statefulsets/finalizers"], &["update"]),
                rule(&[""], &["pods"], &["create", "delete", "get", "patch", "update"]),
                rule(
                    &["apps"],
                    &["controllerrevisions"],
                    &["create", "delete", "get", "list", "patch", "update", "watch"],
                ),
                rule(&[""], &["persistentvolumeclaims"], &["create", "get"]),
                events(),
            ],
        ),
        ("ttl-controller", vec![rule(&[""], &["nodes"], &["list", "patch", "update", "watch"]), events()]),
        (
            "certificate-controller",
            vec![
                rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &["delete", "get", "list", "watch"]),
                rule(
                    &["certificates.k8s.io"],
                    &["certificatesigningrequests/approval", "certificatesigningrequests/status"],
                    &["update"],
                ),
                named(
                    &["certificates.k8s.io"],
                    &["signers"],
                    &[
                        "kubernetes.io/kube-apiserver-client",
                        "kubernetes.io/kube-apiserver-client-kubelet",
                        "kubernetes.io/kubelet-serving",
                        "kubernetes.io/legacy-unknown",
                    ],
                    &["approve"],
                ),
                named(
                    &["certificates.k8s.io"],
                    &["signers"],
                    &[
                        "kubernetes.io/kube-apiserver-client",
                        "kubernetes.io/kube-apiserver-client-kubelet",
                        "kubernetes.io/kubelet-serving",
                        "kubernetes.io/legacy-unknown",
                    ],
                    &["sign"],
                ),
                rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
                events(),
            ],
        ),
        (
            "pvc-protection-controller",
            vec![
                rule(&[""], &["persistentvolumeclaims"], &["get", "list", "update", "watch"]),
                rule(&[""], &["pods"], &["get", "list", "watch"]),
                events(),
            ],
        ),
        (
            "pv-protection-controller",
            vec![rule(&[""], &["persistentvolumes"], &["get", "list", "update", "watch"]), events()],
        ),
        (
            "taint-eviction-controller",
            vec![
                rule(&[""], &["pods"], &["delete", "get", "list", "watch"]),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                events(),
            ],
        ),
        (
            "ttl-after-finished-controller",
            vec![rule(&["batch"], &["jobs"], &["delete", "get", "list", "watch"]), events()],
        ),
        ("root-ca-cert-publisher", vec![rule(&[""], &["configmaps"], &["create", "update"]), events()]),
        (
            "persistent-volume-binder",
            vec![
                rule(&[""], &["persistentvolumes"], &["create", "delete", "get", "list", "update", "watch"]),
                rule(&[""], &["persistentvolumes/status"], &["update"]),
                rule(&[""], &["persistentvolumeclaims"], &["get", "list", "update", "watch"]),
                rule(&[""], &["persistentvolumeclaims/status"], &["update"]),
                rule(&[""], &["pods"], &["create", "delete", "get", "list", "watch"]),
                rule(&["storage.k8s.io"], &["storageclasses"], READ),
                rule(&[""], &["endpoints"], &["create", "delete", "get", "update"]),
                rule(&[""], &["services"], &["create", "delete", "get"]),
                rule(&[""], &["secrets"], &["get"]),
                rule(&[""], &["nodes"], READ),
                events(),
            ],
        ),
        (
            "legacy-service-account-token-cleaner",
            vec![
                named(&[""], &["configmaps"], &["kube-apiserver-legacy-service-account-token-tracking"], &["get"]),
                rule(&[""], &["secrets"], &["delete", "patch"]),
                events(),
            ],
        ),
    ]
}

/// Every default ClusterRole.
pub fn cluster_roles() -> Vec<Value> {
    let admin_label = ("rbac.authorization.k8s.io/aggregate-to-admin", "true");
    let edit_label = ("rbac.authorization.k8s.io/aggregate-to-edit", "true");
    let view_label = ("rbac.authorization.k8s.io/aggregate-to-view", "true");
    let mut out = vec![
        cluster_role("cluster-admin", vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])]),
        aggregated("admin", "rbac.authorization.k8s.io/aggregate-to-admin", &[]),
        aggregated("edit", "rbac.authorization.k8s.io/aggregate-to-edit", &[admin_label]),
        aggregated("view", "rbac.authorization.k8s.io/aggregate-to-view", &[edit_label]),
        labelled_cluster_role(
            "system:aggregate-to-admin",
            &[admin_label],
            vec![
                rule(&["authorization.k8s.io"], &["localsubjectaccessreviews"], &["create"]),
                rule(&["rbac.authorization.k8s.io"], &["rolebindings", "roles"], ALL_VERBS),
            ],
        ),
        labelled_cluster_role(
            "system:aggregate-to-edit",
            &[edit_label],
            vec![
                rule(
                    &[""],
                    &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"],
                    READ,
                ),
                rule(&[""], &["serviceaccounts"], &["impersonate"]),
                rule(&[""], &["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], RW),
                rule(&[""], &["pods/eviction"], &["create"]),
                rule(
                    &[""],
                    &[
                        "configmaps",
                        "events",
                        "persistentvolumeclaims",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                    ],
                    RW,
                ),
                rule(&[""], &["serviceaccounts/token"], &["create"]),
                rule(
                    &["apps"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                    RW,
                ),
                rule(&["autoscaling"], &["horizontalpodautoscalers"], RW),
                rule(&["batch"], &["cronjobs", "jobs"], RW),
                rule(
                    &["extensions"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "ingresses",
                        "networkpolicies",
                        "replicasets",
                        "replicasets/scale",
                        "replicationcontrollers/scale",
                    ],
                    RW,
                ),
                rule(&["policy"], &["poddisruptionbudgets"], RW),
                rule(&["networking.k8s.io"], &["ingresses", "networkpolicies"], RW),
                rule(&["coordination.k8s.io"], &["leases"], ALL_VERBS),
            ],
        ),
        labelled_cluster_role(
            "system:aggregate-to-view",
            &[view_label],
            vec![
                rule(
                    &[""],
                    &[
                        "configmaps",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                    ],
                    READ,
                ),
                rule(
                    &[""],
                    &[
                        "bindings",
                        "events",
                        "limitranges",
                        "namespaces/status",
                        "pods/log",
                        "pods/status",
                        "replicationcontrollers/status",
                        "resourcequotas",
                        "resourcequotas/status",
                    ],
                    READ,
                ),
                rule(&[""], &["namespaces"], READ),
                rule(&["discovery.k8s.io"], &["endpointslices"], READ),
                rule(
                    &["apps"],
                    &[
                        "controllerrevisions",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "statefulsets",
                        "statefulsets/scale",
                        "statefulsets/status",
                    ],
                    READ,
                ),
                rule(&["autoscaling"], &["horizontalpodautoscalers", "horizontalpodautoscalers/status"], READ),
                rule(&["batch"], &["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
                rule(
                    &["extensions"],
                    &[
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "ingresses",
                        "ingresses/status",
                        "networkpolicies",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "replicationcontrollers/scale",
                    ],
                    READ,
                ),
                rule(&["policy"], &["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
                rule(&["networking.k8s.io"], &["ingresses", "ingresses/status", "networkpolicies"], READ),
            ],
        ),
        cluster_role(
            "system:auth-delegator",
            vec![
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
            ],
        ),
        cluster_role(
            "system:basic-user",
            vec![
                rule(&["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"], &["create"]),
                rule(&["authentication.k8s.io"], &["selfsubjectreviews"], &["create"]),
            ],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![rule(&["certificates.k8s.io"], &["certificatesigningrequests/nodeclient"], &["create"])],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![rule(&["certificates.k8s.io"], &["certificatesigningrequests/selfnodeclient"], &["create"])],
        ),
    ];
    for signer in ["kube-apiserver-client", "kube-apiserver-client-kubelet", "kubelet-serving", "legacy-unknown"] {
        let name = format!("system:certificates.k8s.io:{signer}-approver");
        let full = format!("kubernetes.io/{signer}");
        out.push(cluster_role(&name, vec![named(&["certificates.k8s.io"], &["signers"], &[&full], &["approve"])]));
    }
    out.extend([
        cluster_role(
            "system:discovery",
            vec![urls(
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
                &["get"],
            )],
        ),
        cluster_role(
            "system:heapster",
            vec![
                rule(&[""], &["events", "namespaces", "nodes", "pods"], READ),
                rule(&["extensions"], &["deployments"], READ),
            ],
        ),
        cluster_role("system:kube-aggregator", vec![rule(&[""], &["endpoints", "services"], READ)]),
        cluster_role(
            "system:kube-controller-manager",
            vec![
                events(),
                rule(&["coordination.k8s.io"], &["leases"], &["create"]),
                named(&["coordination.k8s.io"], &["leases"], &["kube-controller-manager"], &["get", "update"]),
                rule(&[""], &["secrets", "serviceaccounts"], &["create"]),
                rule(&[""], &["secrets"], &["delete"]),
                rule(&[""], &["configmaps", "namespaces", "secrets", "serviceaccounts"], &["get"]),
                rule(&[""], &["secrets", "serviceaccounts"], &["update"]),
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
                rule(&["*"], &["*"], &["list", "watch"]),
                rule(&[""], &["serviceaccounts/token"], &["create"]),
            ],
        ),
        cluster_role("system:kube-dns", vec![rule(&[""], &["endpoints", "services"], &["list", "watch"])]),
        cluster_role(
            "system:kube-scheduler",
            vec![
                events(),
                rule(&["coordination.k8s.io"], &["leases"], &["create"]),
                named(&["coordination.k8s.io"], &["leases"], &["kube-scheduler"], &["get", "update"]),
                rule(&[""], &["nodes"], READ),
                rule(&[""], &["pods"], &["delete", "get", "list", "watch"]),
                rule(&[""], &["bindings", "pods/binding"], &["create"]),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                rule(&[""], &["replicationcontrollers", "services"], READ),
                rule(&["apps", "extensions"], &["replicasets"], READ),
                rule(&["apps"], &["statefulsets"], READ),
                rule(&["policy"], &["poddisruptionbudgets"], READ),
                rule(&[""], &["persistentvolumeclaims", "persistentvolumes"], READ),
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
                rule(&["storage.k8s.io"], &["csinodes"], READ),
                rule(&[""], &["namespaces"], READ),
                rule(&["storage.k8s.io"], &["csidrivers"], READ),
                rule(&["storage.k8s.io"], &["csistoragecapacities"], READ),
            ],
        ),
        cluster_role(
            "system:kubelet-api-admin",
            vec![
                rule(&[""], &["nodes"], READ),
                rule(&[""], &["nodes"], &["proxy"]),
                rule(&[""], &["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"], &["*"]),
            ],
        ),
        cluster_role(
            "system:monitoring",
            vec![urls(
                &["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz", "/readyz/*"],
                &["get"],
            )],
        ),
        cluster_role(
            "system:node",
            vec![
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(&["authorization.k8s.io"], &["localsubjectaccessreviews", "subjectaccessreviews"], &["create"]),
                rule(&[""], &["services"], READ),
                rule(&[""], &["nodes"], &["create", "get", "list", "watch"]),
                rule(&[""], &["nodes/status"], &["patch", "update"]),
                rule(&[""], &["nodes"], &["patch", "update"]),
                rule(&[""], &["events"], EVENT_VERBS),
                rule(&[""], &["pods"], READ),
                rule(&[""], &["pods"], &["create", "delete"]),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                rule(&[""], &["pods/eviction"], &["create"]),
                rule(&[""], &["configmaps", "secrets"], READ),
                rule(&[""], &["persistentvolumeclaims", "persistentvolumes"], &["get"]),
                rule(&[""], &["endpoints"], &["get"]),
                rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &["create", "get", "list", "watch"]),
                rule(&["coordination.k8s.io"], &["leases"], &["create", "delete", "get", "patch", "update"]),
                rule(&["storage.k8s.io"], &["volumeattachments"], &["get"]),
                rule(&[""], &["serviceaccounts/token"], &["create"]),
                rule(&[""], &["persistentvolumeclaims/status"], &["get", "patch", "update"]),
                rule(&["storage.k8s.io"], &["csidrivers"], READ),
                rule(&["storage.k8s.io"], &["csinodes"], &["create", "delete", "get", "patch", "update"]),
                rule(&["node.k8s.io"], &["runtimeclasses"], READ),
            ],
        ),
        cluster_role(
            "system:node-bootstrapper",
            vec![rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &["create", "get", "list", "watch"])],
        ),
        cluster_role(
            "system:node-problem-detector",
            vec![rule(&[""], &["nodes"], &["get"]), rule(&[""], &["nodes/status"], &["patch"]), events()],
        ),
        cluster_role(
            "system:node-proxier",
            vec![
                rule(&[""], &["endpoints", "services"], &["list", "watch"]),
                rule(&[""], &["nodes"], READ),
                events(),
                rule(&["discovery.k8s.io"], &["endpointslices"], &["list", "watch"]),
            ],
        ),
        cluster_role(
            "system:persistent-volume-provisioner",
            vec![
                rule(&[""], &["persistentvolumes"], &["create", "delete", "get", "list", "watch"]),
                rule(&[""], &["persistentvolumeclaims"], &["get", "list", "update", "watch"]),
                rule(&["storage.k8s.io"], &["storageclasses"], READ),
                rule(&[""], &["events"], &["watch"]),
                events(),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![urls(&["/healthz", "/livez", "/readyz", "/version", "/version/"], &["get"])],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            vec![urls(&["/.well-known/openid-configuration", "/openid/v1/jwks"], &["get"])],
        ),
        cluster_role(
            "system:volume-scheduler",
            vec![
                rule(&[""], &["persistentvolumes"], &["get", "list", "patch", "update", "watch"]),
                rule(&["storage.k8s.io"], &["storageclasses"], READ),
                rule(&[""], &["persistentvolumeclaims"], &["get", "list", "patch", "update", "watch"]),
            ],
        ),
    ]);
    for (name, rules) in controller_roles() {
        out.push(cluster_role(&format!("system:controller:{name}"), rules));
    }
    out
}

/// Every default ClusterRoleBinding.
pub fn cluster_role_bindings() -> Vec<Value> {
    let mut out = vec![
        cluster_binding("cluster-admin", "cluster-admin", &[("Group", "system:masters")]),
        cluster_binding("system:basic-user", "system:basic-user", &[("Group", "system:authenticated")]),
        cluster_binding("system:discovery", "system:discovery", &[("Group", "system:authenticated")]),
        cluster_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[("Group", "system:authenticated"), ("Group", "system:unauthenticated")],
        ),
        cluster_binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            &[("User", "system:kube-controller-manager")],
        ),
        cluster_binding("system:kube-dns", "system:kube-dns", &[("ServiceAccount", "kube-system/kube-dns")]),
        cluster_binding("system:kube-scheduler", "system:kube-scheduler", &[("User", "system:kube-scheduler")]),
        cluster_binding("system:volume-scheduler", "system:volume-scheduler", &[("User", "system:kube-scheduler")]),
        cluster_binding("system:monitoring", "system:monitoring", &[("Group", "system:monitoring")]),
        cluster_binding("system:node-proxier", "system:node-proxier", &[("User", "system:kube-proxy")]),
        cluster_binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            &[("Group", "system:serviceaccounts")],
        ),
    ];
    // system:node has no subjects: kubelets are authorized by the Node authorizer.
    let mut node = cluster_binding("system:node", "system:node", &[]);
    node.as_object_mut().expect("object").remove("subjects");
    out.push(node);
    for (name, _) in controller_roles() {
        let sa = format!("kube-system/{name}");
        out.push(cluster_binding(
            &format!("system:controller:{name}"),
            &format!("system:controller:{name}"),
            &[("ServiceAccount", &sa)],
        ));
    }
    out
}

/// Default Roles in kube-system and kube-public.
pub fn roles() -> Vec<Value> {
    let role = |ns: &str, name: &str, rules: Vec<Value>| json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(name, Some(ns), &[]), "rules": rules});
    vec![
        role(
            "kube-system",
            "extension-apiserver-authentication-reader",
            vec![named(&[""], &["configmaps"], &["extension-apiserver-authentication"], READ)],
        ),
        role(
            "kube-system",
            "system::leader-locking-kube-controller-manager",
            vec![
                rule(&[""], &["configmaps"], &["watch"]),
                named(&[""], &["configmaps"], &["kube-controller-manager"], &["get", "update"]),
            ],
        ),
        role(
            "kube-system",
            "system::leader-locking-kube-scheduler",
            vec![
                rule(&[""], &["configmaps"], &["watch"]),
                named(&[""], &["configmaps"], &["kube-scheduler"], &["get", "update"]),
            ],
        ),
        role("kube-system", "system:controller:bootstrap-signer", vec![rule(&[""], &["secrets"], READ)]),
        role(
            "kube-system",
            "system:controller:cloud-provider",
            vec![rule(&[""], &["configmaps"], &["create", "get", "list", "watch"])],
        ),
        role(
            "kube-system",
            "system:controller:token-cleaner",
            vec![rule(&[""], &["secrets"], &["delete", "get", "list", "watch"]), events()],
        ),
        role(
            "kube-public",
            "system:controller:bootstrap-signer",
            vec![
                rule(&[""], &["configmaps"], READ),
                named(&[""], &["configmaps"], &["cluster-info"], &["update"]),
                events(),
            ],
        ),
    ]
}

/// Default RoleBindings.
pub fn role_bindings() -> Vec<Value> {
    let binding = |ns: &str, name: &str, role: &str, subj: &[(&str, &str)]| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(name, Some(ns), &[]),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}, "subjects": subjects(subj)})
    };
    vec![
        binding(
            "kube-system",
            "system::extension-apiserver-authentication-reader",
            "extension-apiserver-authentication-reader",
            &[("User", "system:kube-controller-manager"), ("User", "system:kube-scheduler")],
        ),
        binding(
            "kube-system",
            "system::leader-locking-kube-controller-manager",
            "system::leader-locking-kube-controller-manager",
            &[("ServiceAccount", "kube-system/kube-controller-manager"), ("User", "system:kube-controller-manager")],
        ),
        binding(
            "kube-system",
            "system::leader-locking-kube-scheduler",
            "system::leader-locking-kube-scheduler",
            &[("ServiceAccount", "kube-system/kube-scheduler"), ("User", "system:kube-scheduler")],
        ),
        binding(
            "kube-system",
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            &[("ServiceAccount", "kube-system/bootstrap-signer")],
        ),
        binding(
            "kube-system",
            "system:controller:cloud-provider",
            "system:controller:cloud-provider",
            &[("ServiceAccount", "kube-system/cloud-provider")],
        ),
        binding(
            "kube-system",
            "system:controller:token-cleaner",
            "system:controller:token-cleaner",
            &[("ServiceAccount", "kube-system/token-cleaner")],
        ),
        binding(
            "kube-public",
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            &[("ServiceAccount", "kube-system/bootstrap-signer")],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::Attributes;
    use crate::rbac::Snapshot;
    use crate::UserInfo;

    #[test]
    fn default_policy_grants_what_upstream_grants() {
        let snap = Snapshot::new(cluster_roles(), roles(), cluster_role_bindings(), role_bindings());
        let anon = UserInfo::anonymous();
        let get = |u: &UserInfo, path: &str| Attributes::from_request(u.clone(), "GET", path, false, None);
        assert!(snap.authorize(&get(&anon, "/healthz")).is_some());
        assert!(snap.authorize(&get(&anon, "/version")).is_some());
        assert!(snap.authorize(&get(&anon, "/api")).is_none());
        assert!(snap.authorize(&get(&anon, "/api/v1/namespaces/default/pods")).is_none());
        let user = UserInfo::new("bob", vec![]).authenticated();
        assert!(snap.authorize(&get(&user, "/apis")).is_some());
        assert!(snap.authorize(&get(&user, "/api/v1/namespaces/default/pods")).is_none());
        let admin = UserInfo::new("a", vec!["system:masters".into()]);
        assert!(snap.authorize(&get(&admin, "/api/v1/nodes")).is_some());
        let sched = UserInfo::new("system:kube-scheduler", vec![]).authenticated();
        let bind = Attributes::from_request(sched, "POST", "/api/v1/namespaces/x/pods/p/binding", false, None);
        assert!(snap.authorize(&bind).is_some());
        // edit aggregates into admin and view into edit.
        assert!(snap.cluster_role_rules("admin").unwrap().len() > snap.cluster_role_rules("edit").unwrap().len());
        assert!(snap.cluster_role_rules("edit").unwrap().len() > snap.cluster_role_rules("view").unwrap().len());
        let names: Vec<String> =
            cluster_roles().iter().map(|r| r["metadata"]["name"].as_str().unwrap().to_string()).collect();
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(names.len(), dedup.len());
    }
}
