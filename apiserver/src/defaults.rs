//! Upstream's defaulting (`SetDefaults_*` of each API group), applied on create and update before
//! validation. Values and conditions follow `pkg/apis/<group>/v1/defaults.go`.

use crate::objects::meta_mut;
use crate::registry::Resource;
use serde_json::{json, Value};

/// Sets `pointer` to `value` when absent and its parent object exists (or is the root).
pub fn set_default(obj: &mut Value, pointer: &str, value: Value) {
    if obj.pointer(pointer).is_none() {
        let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
        let target = if parent.is_empty() { Some(&mut *obj) } else { obj.pointer_mut(parent) };
        if let Some(Value::Object(m)) = target {
            m.insert(key.to_string(), value);
        }
    }
}

fn each_mut(obj: &mut Value, pointer: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(list) = obj.pointer_mut(pointer).and_then(Value::as_array_mut) {
        for item in list {
            f(item);
        }
    }
}

fn default_probe(p: &mut Value) {
    for (k, v) in [("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)] {
        set_default(p, &format!("/{k}"), json!(v));
    }
    if p.get("httpGet").is_some() {
        set_default(p, "/httpGet/path", json!("/"));
        set_default(p, "/httpGet/scheme", json!("HTTP"));
    }
    if p.get("grpc").is_some() {
        set_default(p, "/grpc/service", json!(""));
    }
}

fn default_handler(h: &mut Value) {
    if h.get("httpGet").is_some() {
        set_default(h, "/httpGet/path", json!("/"));
        set_default(h, "/httpGet/scheme", json!("HTTP"));
    }
}

fn default_container(c: &mut Value, host_network: bool) {
    let pull = c.get("image").and_then(Value::as_str).map(apimachinery::images::default_pull_policy);
    for (k, v) in [
        ("terminationMessagePath", json!("/dev/termination-log")),
        ("terminationMessagePolicy", json!("File")),
        ("imagePullPolicy", json!(pull.unwrap_or("IfNotPresent"))),
        ("resources", json!({})),
    ] {
        set_default(c, &format!("/{k}"), v);
    }
    each_mut(c, "/ports", |p| {
        set_default(p, "/protocol", json!("TCP"));
        if host_network {
            if let Some(cp) = p.get("containerPort").cloned() {
                set_default(p, "/hostPort", cp);
            }
        }
    });
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe) {
            default_probe(p);
        }
    }
    for hook in ["postStart", "preStop"] {
        if let Some(h) = c.pointer_mut(&format!("/lifecycle/{hook}")) {
            default_handler(h);
        }
    }
    each_mut(c, "/env", |e| {
        if let Some(f) = e.pointer_mut("/valueFrom/fieldRef") {
            set_default(f, "/apiVersion", json!("v1"));
        }
    });
    // Limits without requests: the requests are the limits.
    if let Some(limits) = c.pointer("/resources/limits").and_then(Value::as_object).cloned() {
        if let Some(Value::Object(res)) = c.get_mut("resources") {
            let requests = res.entry("requests").or_insert_with(|| json!({}));
            if let Value::Object(req) = requests {
                for (k, v) in limits {
                    req.entry(k).or_insert(v);
                }
            }
        }
    }
}

fn default_volume(v: &mut Value) {
    let sources = v.as_object().map(|m| m.keys().filter(|k| *k != "name").count()).unwrap_or(0);
    if sources == 0 {
        if let Some(m) = v.as_object_mut() {
            m.insert("emptyDir".into(), json!({}));
        }
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        if v.get(src).is_some() {
            set_default(v, &format!("/{src}/defaultMode"), json!(420));
        }
    }
    if v.get("hostPath").is_some() {
        set_default(v, "/hostPath/type", json!(""));
    }
    if let Some(items) = v.pointer_mut("/downwardAPI/items").and_then(Value::as_array_mut) {
        for i in items {
            if let Some(f) = i.get_mut("fieldRef") {
                set_default(f, "/apiVersion", json!("v1"));
            }
        }
    }
    if let Some(sources) = v.pointer_mut("/projected/sources").and_then(Value::as_array_mut) {
        for s in sources {
            if let Some(t) = s.get_mut("serviceAccountToken") {
                set_default(t, "/expirationSeconds", json!(3600));
            }
            if let Some(items) = s.pointer_mut("/downwardAPI/items").and_then(Value::as_array_mut) {
                for i in items {
                    if let Some(f) = i.get_mut("fieldRef") {
                        set_default(f, "/apiVersion", json!("v1"));
                    }
                }
            }
        }
    }
}

/// `SetDefaults_PodSpec` and what it implies for containers and volumes.
pub fn pod_spec(spec: &mut Value) {
    for (k, v) in [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("securityContext", json!({})),
        ("schedulerName", json!("default-scheduler")),
    ] {
        set_default(spec, &format!("/{k}"), v);
    }
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool).unwrap_or(false);
    for list in ["/containers", "/initContainers", "/ephemeralContainers"] {
        each_mut(spec, list, |c| default_container(c, host_network));
    }
    each_mut(spec, "/volumes", default_volume);
    if let Some(sa) = spec.get("serviceAccountName").cloned() {
        set_default(spec, "/serviceAccount", sa);
    } else if let Some(sa) = spec.get("serviceAccount").cloned() {
        set_default(spec, "/serviceAccountName", sa);
    }
}

fn template_spec(obj: &mut Value, pointer: &str) {
    if let Some(spec) = obj.pointer_mut(pointer) {
        pod_spec(spec);
    }
}

fn pvc_spec(spec: &mut Value) {
    set_default(spec, "/volumeMode", json!("Filesystem"));
}

/// Copies the template's labels to the object when it has none (`batch/v1` Jobs, `v1` RCs).
fn labels_from_template(obj: &mut Value, template_labels: &str) {
    let labels = obj.pointer(template_labels).cloned();
    if let Some(Value::Object(l)) = labels {
        let has = obj.pointer("/metadata/labels").and_then(Value::as_object).is_some_and(|m| !m.is_empty());
        if !has && !l.is_empty() {
            meta_mut(obj).insert("labels".into(), Value::Object(l));
        }
    }
}

fn job_spec(spec: &mut Value) {
    let completions = spec.get("completions").cloned();
    if completions.is_none() && spec.get("parallelism").is_none() {
        set_default(spec, "/completions", json!(1));
    }
    set_default(spec, "/parallelism", json!(1));
    if spec.get("backoffLimitPerIndex").is_some() {
        set_default(spec, "/backoffLimit", json!(i32::MAX));
    } else {
        set_default(spec, "/backoffLimit", json!(6));
    }
    set_default(spec, "/completionMode", json!("NonIndexed"));
    set_default(spec, "/suspend", json!(false));
    let policy = if spec.get("podFailurePolicy").is_some() { "Failed" } else { "TerminatingOrFailed" };
    set_default(spec, "/podReplacementPolicy", json!(policy));
    if let Some(p) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(p);
    }
}

/// A Secret's `stringData` is write-only: upstream's conversion folds it into `data` (base64,
/// overriding keys of the same name) and never stores it.
fn merge_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) else { return };
    if sd.is_empty() {
        return;
    }
    let Some(m) = obj.as_object_mut() else { return };
    let data = m.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Value::Object(d) = data {
        for (k, v) in sd {
            let text = v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
            d.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(text)));
        }
    }
}

/// Upstream's defaulting for the kinds that have it.
pub fn apply(res: &Resource, obj: &mut Value) {
    match (res.group, res.kind) {
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
            }
            // The service account itself is chosen by the ServiceAccount admission plugin, which
            // leaves mirror pods without one.
            set_default(obj, "/spec/enableServiceLinks", json!(true));
            set_default(obj, "/spec/preemptionPolicy", json!("PreemptLowerPriority"));
            set_default(obj, "/spec/priority", json!(0));
        }
        ("", "PodTemplate") => template_spec(obj, "/template/spec"),
        ("apps", "Deployment") => {
            set_default(obj, "/spec/replicas", json!(1));
            set_default(obj, "/spec/revisionHistoryLimit", json!(10));
            set_default(obj, "/spec/progressDeadlineSeconds", json!(600));
            set_default(obj, "/spec/strategy", json!({}));
            set_default(obj, "/spec/strategy/type", json!("RollingUpdate"));
            if obj.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
                set_default(obj, "/spec/strategy/rollingUpdate", json!({}));
                set_default(obj, "/spec/strategy/rollingUpdate/maxUnavailable", json!("25%"));
                set_default(obj, "/spec/strategy/rollingUpdate/maxSurge", json!("25%"));
            }
            template_spec(obj, "/spec/template/spec");
        }
        ("apps", "ReplicaSet") => {
            set_default(obj, "/spec/replicas", json!(1));
            template_spec(obj, "/spec/template/spec");
        }
        ("", "ReplicationController") => {
            // The selector and labels default to the template's labels.
            let tl = obj.pointer("/spec/template/metadata/labels").cloned();
            let unset = obj.pointer("/spec/selector").and_then(Value::as_object).is_none_or(|s| s.is_empty());
            if let (Some(Value::Object(l)), true, Some(Value::Object(spec))) = (tl, unset, obj.get_mut("spec")) {
                spec.insert("selector".into(), Value::Object(l));
            }
            labels_from_template(obj, "/spec/template/metadata/labels");
            set_default(obj, "/spec/replicas", json!(1));
            template_spec(obj, "/spec/template/spec");
        }
        ("apps", "StatefulSet") => {
            set_default(obj, "/spec/replicas", json!(1));
            set_default(obj, "/spec/podManagementPolicy", json!("OrderedReady"));
            set_default(obj, "/spec/revisionHistoryLimit", json!(10));
            set_default(obj, "/spec/updateStrategy", json!({}));
            set_default(obj, "/spec/updateStrategy/type", json!("RollingUpdate"));
            if obj.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
                set_default(obj, "/spec/updateStrategy/rollingUpdate", json!({}));
                set_default(obj, "/spec/updateStrategy/rollingUpdate/partition", json!(0));
            }
            set_default(obj, "/spec/persistentVolumeClaimRetentionPolicy", json!({}));
            set_default(obj, "/spec/persistentVolumeClaimRetentionPolicy/whenDeleted", json!("Retain"));
            set_default(obj, "/spec/persistentVolumeClaimRetentionPolicy/whenScaled", json!("Retain"));
            each_mut(obj, "/spec/volumeClaimTemplates", |t| {
                if let Some(s) = t.get_mut("spec") {
                    pvc_spec(s);
                }
            });
            template_spec(obj, "/spec/template/spec");
        }
        ("apps", "DaemonSet") => {
            set_default(obj, "/spec/revisionHistoryLimit", json!(10));
            set_default(obj, "/spec/updateStrategy", json!({}));
            set_default(obj, "/spec/updateStrategy/type", json!("RollingUpdate"));
            if obj.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
                set_default(obj, "/spec/updateStrategy/rollingUpdate", json!({}));
                set_default(obj, "/spec/updateStrategy/rollingUpdate/maxUnavailable", json!(1));
                set_default(obj, "/spec/updateStrategy/rollingUpdate/maxSurge", json!(0));
            }
            template_spec(obj, "/spec/template/spec");
        }
        ("batch", "Job") => {
            labels_from_template(obj, "/spec/template/metadata/labels");
            if let Some(spec) = obj.get_mut("spec") {
                job_spec(spec);
            }
        }
        ("batch", "CronJob") => {
            set_default(obj, "/spec/concurrencyPolicy", json!("Allow"));
            set_default(obj, "/spec/suspend", json!(false));
            set_default(obj, "/spec/successfulJobsHistoryLimit", json!(3));
            set_default(obj, "/spec/failedJobsHistoryLimit", json!(1));
            if let Some(spec) = obj.pointer_mut("/spec/jobTemplate/spec") {
                job_spec(spec);
            }
        }
        ("", "Service") => {
            let ty = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
            set_default(obj, "/spec/type", json!("ClusterIP"));
            set_default(obj, "/spec/sessionAffinity", json!("None"));
            if obj.pointer("/spec/sessionAffinity").and_then(Value::as_str) == Some("ClientIP") {
                set_default(obj, "/spec/sessionAffinityConfig", json!({}));
                set_default(obj, "/spec/sessionAffinityConfig/clientIP", json!({}));
                set_default(obj, "/spec/sessionAffinityConfig/clientIP/timeoutSeconds", json!(10800));
            }
            each_mut(obj, "/spec/ports", |p| {
                set_default(p, "/protocol", json!("TCP"));
                if let Some(port) = p.get("port").cloned() {
                    set_default(p, "/targetPort", port);
                }
            });
            if ty != "ExternalName" && obj.get("spec").is_some() {
                set_default(obj, "/spec/internalTrafficPolicy", json!("Cluster"));
            }
            if ty == "NodePort" || ty == "LoadBalancer" {
                set_default(obj, "/spec/externalTrafficPolicy", json!("Cluster"));
            }
            if ty == "LoadBalancer" {
                set_default(obj, "/spec/allocateLoadBalancerNodePorts", json!(true));
            }
        }
        ("", "Secret") => {
            merge_string_data(obj);
            set_default(obj, "/type", json!("Opaque"));
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(s) = obj.get_mut("spec") {
                pvc_spec(s);
            }
            set_default(obj, "/status", json!({}));
            set_default(obj, "/status/phase", json!("Pending"));
        }
        ("", "PersistentVolume") => {
            set_default(obj, "/spec/persistentVolumeReclaimPolicy", json!("Retain"));
            set_default(obj, "/spec/volumeMode", json!("Filesystem"));
            set_default(obj, "/status", json!({}));
            set_default(obj, "/status/phase", json!("Pending"));
        }
        ("", "Endpoints") => {
            each_mut(obj, "/subsets", |s| each_mut(s, "/ports", |p| set_default(p, "/protocol", json!("TCP"))))
        }
        ("discovery.k8s.io", "EndpointSlice") => each_mut(obj, "/ports", |p| {
            set_default(p, "/protocol", json!("TCP"));
            set_default(p, "/name", json!(""));
        }),
        ("", "LimitRange") => each_mut(obj, "/spec/limits", |l| {
            // A max or a default limit without a default request: the request follows.
            if l.get("type").and_then(Value::as_str) != Some("Container") {
                return;
            }
            let defaults = l.get("default").cloned().or_else(|| l.get("max").cloned());
            if let Some(Value::Object(d)) = defaults {
                if l.get("default").is_none() {
                    l["default"] = Value::Object(d.clone());
                }
                let dr = l.as_object_mut().unwrap().entry("defaultRequest").or_insert_with(|| json!({}));
                if let Value::Object(dr) = dr {
                    for (k, v) in d {
                        dr.entry(k).or_insert(v);
                    }
                }
            }
        }),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => each_mut(obj, "/subjects", |s| {
            let kind = s.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
            match kind.as_str() {
                "User" | "Group" => set_default(s, "/apiGroup", json!("rbac.authorization.k8s.io")),
                "ServiceAccount" => set_default(s, "/apiGroup", json!("")),
                _ => {}
            }
        }),
        ("networking.k8s.io", "NetworkPolicy") => {
            if obj.get("spec").is_some() && obj.pointer("/spec/policyTypes").is_none() {
                let mut types = vec![json!("Ingress")];
                if obj.pointer("/spec/egress").and_then(Value::as_array).is_some_and(|e| !e.is_empty()) {
                    types.push(json!("Egress"));
                }
                set_default(obj, "/spec/policyTypes", Value::Array(types));
            }
            for dir in ["/spec/ingress", "/spec/egress"] {
                each_mut(obj, dir, |r| each_mut(r, "/ports", |p| set_default(p, "/protocol", json!("TCP"))));
            }
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            set_default(obj, "/spec/minReplicas", json!(1));
            if res.version == "v2" {
                let empty = obj.pointer("/spec/metrics").and_then(Value::as_array).is_none_or(|m| m.is_empty());
                if empty && obj.get("spec").is_some() {
                    obj["spec"]["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]);
                }
                if obj.pointer("/spec/behavior").is_some() {
                    let up = json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                        {"type": "Pods", "value": 4, "periodSeconds": 15},
                        {"type": "Percent", "value": 100, "periodSeconds": 15}]});
                    let down = json!({"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]});
                    for (dir, d) in [("scaleUp", up), ("scaleDown", down)] {
                        let p = format!("/spec/behavior/{dir}");
                        set_default(obj, &p, json!({}));
                        for (k, v) in d.as_object().unwrap() {
                            set_default(obj, &format!("{p}/{k}"), v.clone());
                        }
                    }
                }
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => set_default(obj, "/preemptionPolicy", json!("PreemptLowerPriority")),
        ("storage.k8s.io", "StorageClass") => {
            set_default(obj, "/reclaimPolicy", json!("Delete"));
            set_default(obj, "/volumeBindingMode", json!("Immediate"));
        }
        ("storage.k8s.io", "CSIDriver") => {
            for (k, v) in [
                ("attachRequired", json!(true)),
                ("podInfoOnMount", json!(false)),
                ("storageCapacity", json!(false)),
                ("fsGroupPolicy", json!("ReadWriteOnceWithFSType")),
                ("requiresRepublish", json!(false)),
                ("volumeLifecycleModes", json!(["Persistent"])),
                ("seLinuxMount", json!(false)),
            ] {
                set_default(obj, &format!("/spec/{k}"), v);
            }
        }
        (
            "admissionregistration.k8s.io",
            kind @ ("MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"),
        ) => {
            let mutating = kind.starts_with("Mutating");
            each_mut(obj, "/webhooks", |w| {
                set_default(w, "/failurePolicy", json!("Fail"));
                set_default(w, "/matchPolicy", json!("Equivalent"));
                set_default(w, "/namespaceSelector", json!({}));
                set_default(w, "/objectSelector", json!({}));
                set_default(w, "/timeoutSeconds", json!(10));
                if mutating {
                    set_default(w, "/reinvocationPolicy", json!("Never"));
                }
                if w.pointer("/clientConfig/service").is_some() {
                    set_default(w, "/clientConfig/service/port", json!(443));
                }
                each_mut(w, "/rules", |r| set_default(r, "/scope", json!("*")));
            });
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn defaulted(group: &str, kind: &str, mut obj: Value) -> Value {
        let reg = Registry::new();
        let res = reg.resources.iter().find(|r| r.group == group && r.kind == kind).unwrap();
        apply(res, &mut obj);
        obj
    }

    #[test]
    fn pod_defaults_as_upstream() {
        let p = defaulted(
            "",
            "Pod",
            json!({"spec": {"hostNetwork": true, "volumes": [{"name": "v"}, {"name": "s", "secret": {"secretName": "x"}}],
                "containers": [{"name": "c", "image": "busybox:1.36",
                "ports": [{"containerPort": 8080}],
                "resources": {"limits": {"cpu": "1"}},
                "livenessProbe": {"httpGet": {"port": 80}},
                "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}}),
        );
        let c = &p["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["ports"][0], json!({"containerPort": 8080, "hostPort": 8080, "protocol": "TCP"}));
        assert_eq!(c["resources"]["requests"], json!({"cpu": "1"}));
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(p["spec"]["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(p["spec"]["volumes"][1]["secret"]["defaultMode"], 420);
        assert_eq!(p["spec"].get("serviceAccountName"), None);
        assert_eq!(p["spec"]["enableServiceLinks"], true);
    }

    #[test]
    fn workload_defaults_as_upstream() {
        let j = defaulted(
            "batch",
            "Job",
            json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}),
        );
        assert_eq!(j["metadata"]["labels"], json!({"a": "b"}));
        for (k, v) in [
            ("completions", json!(1)),
            ("parallelism", json!(1)),
            ("backoffLimit", json!(6)),
            ("completionMode", json!("NonIndexed")),
            ("suspend", json!(false)),
            ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ] {
            assert_eq!(j["spec"][k], v, "{k}");
        }
        assert!(j["spec"].get("manualSelector").is_none());
        let ss = defaulted("apps", "StatefulSet", json!({"spec": {"template": {"spec": {"containers": []}}}}));
        assert_eq!(ss["spec"]["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
        assert_eq!(ss["spec"]["podManagementPolicy"], "OrderedReady");
        let ds = defaulted("apps", "DaemonSet", json!({"spec": {}}));
        assert_eq!(ds["spec"]["updateStrategy"]["rollingUpdate"], json!({"maxUnavailable": 1, "maxSurge": 0}));
        let rc = defaulted(
            "",
            "ReplicationController",
            json!({"spec": {"template": {"metadata": {"labels": {"app": "x"}}}}}),
        );
        assert_eq!(rc["spec"]["selector"], json!({"app": "x"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "x"}));
        let cj = defaulted("batch", "CronJob", json!({"spec": {"jobTemplate": {"spec": {}}}}));
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cj["spec"]["jobTemplate"]["spec"]["backoffLimit"], 6);
    }

    #[test]
    fn secret_string_data_folds_into_data() {
        let s = defaulted(
            "",
            "Secret",
            json!({"data": {"a": "b2xk", "keep": "eA=="}, "stringData": {"a": "new", "b": "two"}}),
        );
        assert_eq!(s, json!({"type": "Opaque", "data": {"a": "bmV3", "keep": "eA==", "b": "dHdv"}}));
    }

    #[test]
    fn service_and_policy_defaults_as_upstream() {
        let s = defaulted("", "Service", json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}}));
        assert_eq!(s["spec"]["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
        assert_eq!(s["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(s["spec"]["internalTrafficPolicy"], "Cluster");
        let np = defaulted("networking.k8s.io", "NetworkPolicy", json!({"spec": {"podSelector": {}, "egress": [{}]}}));
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        let rb = defaulted(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            json!({"subjects": [{"kind": "User", "name": "a"}, {"kind": "ServiceAccount", "name": "s", "namespace": "d"}]}),
        );
        assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(rb["subjects"][1]["apiGroup"], "");
        let w = defaulted(
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
            json!({"webhooks": [{"name": "w", "clientConfig": {"service": {"name": "s", "namespace": "n"}}, "rules": [{}]}]}),
        );
        assert_eq!(w["webhooks"][0]["clientConfig"]["service"]["port"], 443);
        assert_eq!(w["webhooks"][0]["reinvocationPolicy"], "Never");
        assert_eq!(w["webhooks"][0]["rules"][0]["scope"], "*");
    }
}
