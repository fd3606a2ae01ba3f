//! What differs between resources: defaults, validation, selectable fields, TTL and deletion rules.
//! The generic handlers in `api` call these; resources without special rules fall through.

use crate::defaults::set_default;
use crate::objects::{self, meta, meta_mut};
use crate::registry::Resource;
use apimachinery::{ApiError, Cause};
use serde_json::{json, Value};
use std::time::Duration;

/// `--event-ttl` (upstream default 1h).
pub static EVENT_TTL: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

pub fn ttl(res: &Resource) -> Option<Duration> {
    (res.storage.1 == "events").then(|| *EVENT_TTL.get_or_init(|| Duration::from_secs(3600)))
}

/// Kinds whose strategy keeps `metadata.generation` (1 on create, +1 on every spec change), as upstream's.
pub fn tracks_generation(res: &Resource) -> bool {
    matches!(
        (res.group, res.kind),
        ("", "Pod" | "ReplicationController")
            | ("apps", _)
            | ("batch", _)
            | ("autoscaling", _)
            | ("policy", "PodDisruptionBudget")
            | ("networking.k8s.io", "NetworkPolicy" | "Ingress")
            | ("apiextensions.k8s.io", _)
            | ("flowcontrol.apiserver.k8s.io", _)
            | ("admissionregistration.k8s.io", _)
    )
}

pub fn prepare_create(res: &Resource, obj: &mut Value) {
    match (res.group, res.kind) {
        ("", "Namespace") => {
            set_default(obj, "/spec", json!({}));
            set_default(obj, "/spec/finalizers", json!(["kubernetes"]));
            obj["status"] = json!({"phase": "Active"});
            let name = objects::name(obj).to_string();
            let m = meta_mut(obj);
            if !m.get("labels").is_some_and(Value::is_object) {
                m.insert("labels".into(), json!({}));
            }
            m["labels"]["kubernetes.io/metadata.name"] = json!(name);
        }
        ("", "Pod") => {
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        // Controllers own these statuses: a create starts from an empty one, as upstream's strategies do.
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("batch", "Job" | "CronJob") => {
            obj["status"] = json!({});
        }
        ("", "Service") => {
            obj["status"] = json!({"loadBalancer": {}});
        }
        // The requester is recorded by the server, never taken from the body, and nothing arrives
        // approved, as upstream's strategy.
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            set_default(obj, "/spec", json!({}));
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                for k in ["username", "uid", "groups", "extra"] {
                    spec.remove(k);
                }
                if let Some(u) = crate::reviews::current_user() {
                    spec.insert("username".into(), json!(u.username));
                    if !u.uid.is_empty() {
                        spec.insert("uid".into(), json!(u.uid));
                    }
                    if !u.groups.is_empty() {
                        spec.insert("groups".into(), json!(u.groups));
                    }
                    if !u.extra.is_empty() {
                        spec.insert("extra".into(), json!(u.extra));
                    }
                }
            }
            obj["status"] = json!({});
        }
        _ => {}
    }
    if (res.group, res.kind) == ("batch", "Job") {
        generate_job_selector(obj);
    }
    crate::defaults::apply(res, obj);
}

pub fn prepare_update(res: &Resource, new: &mut Value, old: &Value, subresource: Option<&str>) {
    if res.kind == "Namespace" && res.group.is_empty() {
        let name = objects::name(new).to_string();
        let m = meta_mut(new);
        if !m.get("labels").is_some_and(Value::is_object) {
            m.insert("labels".into(), json!({}));
        }
        m["labels"]["kubernetes.io/metadata.name"] = json!(name);
        if subresource != Some("finalize") {
            // spec.finalizers changes only through /finalize.
            if let Some(f) = old.pointer("/spec/finalizers") {
                set_default(new, "/spec", json!({}));
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("finalizers".into(), f.clone());
                }
            }
        }
    }
    crate::defaults::apply(res, new);
}

fn label_map_matches(selector: &Value, labels: &Value) -> bool {
    apimachinery::labels::Selector::from_label_selector(selector)
        .map(|s| {
            let l = labels
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                .unwrap_or_default();
            s.matches(&l)
        })
        .unwrap_or(false)
}

/// Upstream's validation for the kinds that have more than metadata rules.
pub fn validate(res: &Resource, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    match (res.group, res.kind) {
        ("", "Pod") => {
            let spec = obj.get("spec").unwrap_or(&Value::Null);
            crate::validation::pod_spec("spec", spec, &["Always", "OnFailure", "Never"], &mut causes);
        }
        ("", "PodTemplate") => {
            let spec = obj.pointer("/template/spec").unwrap_or(&Value::Null);
            crate::validation::pod_spec("template.spec", spec, &["Always", "OnFailure", "Never"], &mut causes);
        }
        ("", "ReplicationController") => {
            let selector = obj.pointer("/spec/selector").and_then(Value::as_object);
            if selector.is_none_or(|s| s.is_empty()) {
                causes.push(Cause::required("spec.selector", ""));
            }
            let spec = obj.pointer("/spec/template/spec").unwrap_or(&Value::Null);
            crate::validation::pod_spec("spec.template.spec", spec, &["Always"], &mut causes);
            if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64) {
                if r < 0 {
                    causes.push(Cause::invalid("spec.replicas", &json!(r), "must be greater than or equal to 0"));
                }
            }
        }
        ("batch", "Job") => crate::validation::job(obj, old, &mut causes),
        ("batch", "CronJob") => {
            match obj.pointer("/spec/schedule").and_then(Value::as_str) {
                None | Some("") => causes.push(Cause::required("spec.schedule", "")),
                Some(s) => {
                    if let Err(e) = crate::validation::cron_schedule(s) {
                        causes.push(Cause::invalid("spec.schedule", &json!(s), &e));
                    }
                }
            }
            let policy = obj.pointer("/spec/concurrencyPolicy").and_then(Value::as_str).unwrap_or("Allow");
            if !["Allow", "Forbid", "Replace"].contains(&policy) {
                causes.push(Cause::not_supported(
                    "spec.concurrencyPolicy",
                    &json!(policy),
                    &["Allow", "Forbid", "Replace"],
                ));
            }
            let mut template = Vec::new();
            let job = json!({"spec": obj.pointer("/spec/jobTemplate/spec").cloned().unwrap_or(Value::Null)});
            crate::validation::job(&job, None, &mut template);
            for mut c in template {
                c.field = c.field.replacen("spec.", "spec.jobTemplate.spec.", 1);
                causes.push(c);
            }
        }
        ("policy", "PodDisruptionBudget")
            if obj.pointer("/spec/minAvailable").is_some() && obj.pointer("/spec/maxUnavailable").is_some() =>
        {
            causes.push(Cause::invalid(
                "spec",
                obj.get("spec").unwrap_or(&Value::Null),
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            let min = obj.pointer("/spec/minReplicas").and_then(Value::as_i64).unwrap_or(1);
            let max = obj.pointer("/spec/maxReplicas").and_then(Value::as_i64).unwrap_or(0);
            if min < 1 {
                causes.push(Cause::invalid("spec.minReplicas", &json!(min), "must be greater than or equal to 1"));
            }
            if max < min {
                causes.push(Cause::invalid(
                    "spec.maxReplicas",
                    &json!(max),
                    "must be greater than or equal to `minReplicas`",
                ));
            }
            if obj.pointer("/spec/scaleTargetRef/kind").and_then(Value::as_str).is_none_or(str::is_empty) {
                causes.push(Cause::required("spec.scaleTargetRef.kind", ""));
            }
            if obj.pointer("/spec/scaleTargetRef/name").and_then(Value::as_str).is_none_or(str::is_empty) {
                causes.push(Cause::required("spec.scaleTargetRef.name", ""));
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            if obj.pointer("/roleRef/name").and_then(Value::as_str).is_none_or(str::is_empty) {
                causes.push(Cause::required("roleRef.name", ""));
            }
            let kind = obj.pointer("/roleRef/kind").and_then(Value::as_str).unwrap_or("");
            let kinds: &[&str] = if res.kind == "RoleBinding" { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
            if !kinds.contains(&kind) {
                causes.push(Cause::not_supported("roleRef.kind", &json!(kind), kinds));
            }
            if let Some(old) = old {
                if old.get("roleRef") != obj.get("roleRef") {
                    causes.push(Cause::invalid(
                        "roleRef",
                        obj.get("roleRef").unwrap_or(&Value::Null),
                        "cannot change roleRef",
                    ));
                }
            }
            for (i, s) in obj.get("subjects").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let kind = s.get("kind").and_then(Value::as_str).unwrap_or("");
                if !["ServiceAccount", "User", "Group"].contains(&kind) {
                    causes.push(Cause::not_supported(
                        &format!("subjects[{i}].kind"),
                        &json!(kind),
                        &["ServiceAccount", "User", "Group"],
                    ));
                }
                if s.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
                    causes.push(Cause::required(&format!("subjects[{i}].name"), ""));
                }
            }
        }
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            for (i, r) in obj.get("rules").and_then(Value::as_array).into_iter().flatten().enumerate() {
                if r.get("verbs").and_then(Value::as_array).is_none_or(|v| v.is_empty()) {
                    causes.push(Cause::required(&format!("rules[{i}].verbs"), "verbs must contain at least one value"));
                }
                let urls = r.get("nonResourceURLs").and_then(Value::as_array).is_some_and(|u| !u.is_empty());
                let resources = r.get("resources").and_then(Value::as_array).is_some_and(|u| !u.is_empty());
                if urls && resources {
                    causes.push(Cause::invalid(
                        &format!("rules[{i}].nonResourceURLs"),
                        &r["nonResourceURLs"],
                        "rules cannot apply to both regular resources and non-resource URLs",
                    ));
                }
                if !urls
                    && r.get("apiGroups").and_then(Value::as_array).is_none_or(|g| g.is_empty())
                    && res.kind == "Role"
                {
                    causes.push(Cause::required(
                        &format!("rules[{i}].apiGroups"),
                        "resource rules must supply at least one api group",
                    ));
                }
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
            let system = objects::name(obj).starts_with("system-");
            if value > 1_000_000_000 && !system {
                causes
                    .push(Cause::forbidden("value", "maximum allowed value of a user defined priority is 1000000000"));
            }
            if let Some(old) = old {
                if old.get("value") != obj.get("value") {
                    causes.push(Cause::forbidden("value", "may not be changed in an update."));
                }
            }
        }
        ("coordination.k8s.io", "Lease") => {
            for f in ["leaseDurationSeconds", "leaseTransitions"] {
                if let Some(n) = obj.pointer(&format!("/spec/{f}")).and_then(Value::as_i64) {
                    if n < 0 || (f == "leaseDurationSeconds" && n == 0) {
                        let msg = if f == "leaseTransitions" {
                            "must be greater than or equal to 0"
                        } else {
                            "must be greater than 0"
                        };
                        causes.push(Cause::invalid(&format!("spec.{f}"), &json!(n), msg));
                    }
                }
            }
        }
        ("apps", "Deployment") | ("apps", "ReplicaSet") | ("apps", "StatefulSet") | ("apps", "DaemonSet") => {
            match obj.pointer("/spec/selector") {
                None => causes.push(Cause::required("spec.selector", "")),
                Some(sel) => {
                    let labels = obj.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}));
                    if !label_map_matches(sel, &labels) {
                        causes.push(Cause::invalid(
                            "spec.template.metadata.labels",
                            &labels,
                            "`selector` does not match template `labels`",
                        ));
                    }
                    if let Some(old) = old {
                        if old.pointer("/spec/selector") != Some(sel) {
                            causes.push(Cause::invalid("spec.selector", sel, "field is immutable"));
                        }
                    }
                }
            }
            crate::validation::pod_spec(
                "spec.template.spec",
                obj.pointer("/spec/template/spec").unwrap_or(&Value::Null),
                &["Always"],
                &mut causes,
            );
            if res.kind == "Deployment" {
                crate::validation::deployment_strategy(obj, &mut causes);
            }
            if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64) {
                if r < 0 {
                    causes.push(Cause::invalid("spec.replicas", &json!(r), "must be greater than or equal to 0"));
                }
            }
        }
        ("", "Service") => {
            let ty = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
            let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
            match obj.pointer("/spec/ports").and_then(Value::as_array) {
                None if ty != "ExternalName" && !headless => causes.push(Cause::required("spec.ports", "")),
                None => {}
                Some(ports) => {
                    for (i, p) in ports.iter().enumerate() {
                        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                        if !(1..=65535).contains(&port) {
                            causes.push(Cause::invalid(
                                &format!("spec.ports[{i}].port"),
                                &json!(port),
                                "must be between 1 and 65535, inclusive",
                            ));
                        }
                        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                        if !["TCP", "UDP", "SCTP"].contains(&proto) {
                            causes.push(Cause::not_supported(
                                &format!("spec.ports[{i}].protocol"),
                                &json!(proto),
                                &["SCTP", "TCP", "UDP"],
                            ));
                        }
                    }
                }
            }
            if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty) {
                causes.push(Cause::not_supported(
                    "spec.type",
                    &json!(ty),
                    &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
                ));
            }
        }
        ("", "ConfigMap") | ("", "Secret") => {
            for field in ["data", "binaryData"] {
                if let Some(data) = obj.get(field).and_then(Value::as_object) {
                    for k in data.keys() {
                        let ok = !k.is_empty()
                            && k.len() <= 253
                            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
                        if !ok {
                            causes.push(Cause::invalid(&format!("{field}[{k}]"), &json!(k), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
                        }
                    }
                }
            }
            if let (Some(old), true) = (old, res.kind == "Secret") {
                if old.get("type") != obj.get("type") {
                    causes.push(Cause::invalid("type", obj.get("type").unwrap_or(&Value::Null), "field is immutable"));
                }
            }
            if old.and_then(|o| o.get("immutable")).and_then(Value::as_bool) == Some(true)
                && (old.and_then(|o| o.get("data")) != obj.get("data"))
            {
                causes.push(Cause::forbidden("data", "field is immutable when `immutable` is set"));
            }
        }
        _ => {}
    }
    crate::validation::other_kinds(res.group, res.kind, obj, old, &mut causes);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res.group, res.kind, objects::name(obj), causes))
    }
}

/// Fields a field selector may name, beyond `metadata.name` and `metadata.namespace`.
fn selectable(res: &Resource) -> &'static [&'static str] {
    match (res.group, res.plural) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "events") | ("events.k8s.io", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "secrets") => &["type"],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "namespaces") => &["status.phase"],
        ("", "replicationcontrollers") => &["status.replicas"],
        ("apps", "replicasets") => &["status.replicas"],
        ("batch", "jobs") => &["status.successful"],
        ("certificates.k8s.io", "certificatesigningrequests") => &["spec.signerName"],
        _ => &[],
    }
}

pub fn field_selectable(res: &Resource, field: &str) -> bool {
    field == "metadata.name" || (field == "metadata.namespace" && res.namespaced) || selectable(res).contains(&field)
}

pub fn field(res: &Resource, obj: &Value, field: &str) -> String {
    match field {
        "source" if res.group.is_empty() => objects::field_value(obj, "source.component"),
        "spec.unschedulable" | "spec.hostNetwork" => {
            let v = objects::field_value(obj, field);
            if v.is_empty() {
                "false".into()
            } else {
                v
            }
        }
        _ => objects::field_value(obj, field),
    }
}

/// What a delete does to an object.
pub enum Deletion {
    Now,
    /// Keep the object, written like this (with `deletionTimestamp`), until finalizers or the kubelet let go.
    Mark(Value),
}

pub fn deletion(res: &Resource, obj: &Value, grace: Option<i64>) -> Deletion {
    let has_finalizers = meta(obj).get("finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    let mut marked = obj.clone();
    let already = meta(obj).get("deletionTimestamp").is_some();
    let is_ns = res.group.is_empty() && res.kind == "Namespace";
    let pod_grace = if res.group.is_empty()
        && res.kind == "Pod"
        && obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty())
    {
        let g =
            grace.or_else(|| obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64)).unwrap_or(30);
        (g > 0).then_some(g)
    } else {
        None
    };
    let ns_finalizers =
        is_ns && obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    if !has_finalizers && pod_grace.is_none() && !ns_finalizers {
        return Deletion::Now;
    }
    if !already {
        let when = match pod_grace {
            Some(g) => {
                let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(g);
                let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
                t.format(&f).expect("timestamp")
            }
            None => objects::now(),
        };
        let m = meta_mut(&mut marked);
        m.insert("deletionTimestamp".into(), json!(when));
        m.insert("deletionGracePeriodSeconds".into(), json!(pod_grace.unwrap_or(0)));
    } else if let Some(g) = pod_grace {
        // A shorter grace period may replace a longer one, never the reverse.
        let current = meta(obj).get("deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(g);
        if g < current {
            meta_mut(&mut marked).insert("deletionGracePeriodSeconds".into(), json!(g));
        }
    }
    if is_ns {
        marked["status"] = json!({"phase": "Terminating"});
    }
    Deletion::Mark(marked)
}

pub const ORPHAN_FINALIZER: &str = "orphan";
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// The dependents policy a delete asked for: `propagationPolicy` or the older `orphanDependents`,
/// from the body or the query.
pub fn propagation(options: &Value, q: &crate::api::Query) -> Result<Option<&'static str>, ApiError> {
    let policy = options
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| q.get("propagationPolicy").map(String::from));
    let orphan = options
        .get("orphanDependents")
        .and_then(Value::as_bool)
        .or_else(|| q.get("orphanDependents").map(|v| v == "true"));
    let invalid = |cause| ApiError::invalid("meta.k8s.io", "DeleteOptions", "", vec![cause]);
    if let (Some(p), Some(_)) = (&policy, orphan) {
        return Err(invalid(apimachinery::Cause::invalid(
            "propagationPolicy",
            &json!(p),
            "orphanDependents and deletionPropagation cannot be both set",
        )));
    }
    match (policy.as_deref(), orphan) {
        (Some("Foreground"), _) => Ok(Some("Foreground")),
        (Some("Background"), _) => Ok(Some("Background")),
        (Some("Orphan"), _) => Ok(Some("Orphan")),
        (Some(other), _) => Err(invalid(apimachinery::Cause::not_supported(
            "propagationPolicy",
            &json!(other),
            &["Foreground", "Background", "Orphan"],
        ))),
        (None, Some(true)) => Ok(Some("Orphan")),
        (None, Some(false)) => Ok(Some("Background")),
        (None, None) => Ok(None),
    }
}

/// The finalizers a delete leaves for the garbage collector, as upstream: `orphan` to orphan the
/// dependents, `foregroundDeletion` to delete them first. Without a policy, a finalizer already there
/// stands, else the resource's default (orphan for core/v1 ReplicationControllers and batch/v1 Jobs,
/// background otherwise). `None` when the finalizers stay as they are.
pub fn gc_finalizers(res: &Resource, obj: &Value, policy: Option<&str>) -> Option<Vec<Value>> {
    let current: Vec<Value> = meta(obj).get("finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
    let has = |f: &str| current.iter().any(|v| v == f);
    let default_orphan =
        matches!((res.group, res.version, res.kind), ("", "v1", "ReplicationController") | ("batch", "v1", "Job"));
    let (orphan, foreground) = match policy {
        Some("Orphan") => (true, false),
        Some("Foreground") => (false, true),
        Some(_) => (false, false),
        None if has(ORPHAN_FINALIZER) => (true, false),
        None if has(FOREGROUND_FINALIZER) => (false, true),
        None => (default_orphan, false),
    };
    let mut next: Vec<Value> =
        current.iter().filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER).cloned().collect();
    if orphan {
        next.push(json!(ORPHAN_FINALIZER));
    }
    if foreground {
        next.push(json!(FOREGROUND_FINALIZER));
    }
    let as_set =
        |v: &[Value]| v.iter().filter_map(Value::as_str).map(String::from).collect::<std::collections::BTreeSet<_>>();
    (as_set(&next) != as_set(&current)).then_some(next)
}

/// Upstream's Job selector generation: unless `manualSelector` is true, the template gets the
/// controller-uid and job-name labels and the selector matches the uid.
fn generate_job_selector(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let uid = meta(obj).get("uid").and_then(Value::as_str).unwrap_or("").to_string();
    let name = objects::name(obj).to_string();
    if obj.pointer("/spec/template").is_none() {
        return;
    }
    set_default(obj, "/spec/template/metadata", json!({}));
    set_default(obj, "/spec/template/metadata/labels", json!({}));
    if let Some(Value::Object(l)) = obj.pointer_mut("/spec/template/metadata/labels") {
        l.insert("batch.kubernetes.io/controller-uid".into(), json!(uid));
        l.insert("batch.kubernetes.io/job-name".into(), json!(name));
        l.insert("controller-uid".into(), json!(uid));
        l.insert("job-name".into(), json!(name));
    }
    obj["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
}

/// Whether an object marked for deletion may go once its finalizers are gone.
pub fn deletable_now(res: &Resource, obj: &Value) -> bool {
    !(res.group.is_empty()
        && res.kind == "Pod"
        && meta(obj).get("deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) > 0)
}

pub fn returns_deleted_object(res: &Resource) -> bool {
    res.group.is_empty() && matches!(res.kind, "Pod" | "Namespace")
}

/// core/v1 Event field ↔ events.k8s.io/v1 Event field. Both API versions share one storage (the core form),
/// as upstream's do.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(obj: &mut Value, pairs: impl Iterator<Item = (&'static str, &'static str)>) {
    if let Some(m) = obj.as_object_mut() {
        for (from, to) in pairs {
            if let Some(v) = m.remove(from) {
                m.insert(to.to_string(), v);
            }
        }
    }
}

/// autoscaling/v1 → v2: the CPU utilization target becomes a Resource metric.
fn hpa_v1_to_v2(obj: &mut Value) {
    obj["apiVersion"] = json!("autoscaling/v2");
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(target) = spec.remove("targetCPUUtilizationPercentage") {
            spec.insert(
                "metrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}]),
            );
        }
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        if let Some(current) = status.remove("currentCPUUtilizationPercentage") {
            status.insert(
                "currentMetrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}}]),
            );
        }
    }
}

/// autoscaling/v2 → v1: a CPU utilization metric becomes `targetCPUUtilizationPercentage`; other metrics
/// are not expressible in v1 and are not shown there.
fn hpa_v2_to_v1(obj: &mut Value) {
    obj["apiVersion"] = json!("autoscaling/v1");
    let cpu = |list: Option<&Value>, field: &str| {
        list.and_then(Value::as_array).and_then(|ms| {
            ms.iter()
                .find(|m| m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu"))
                .and_then(|m| m.pointer(&format!("/resource/{field}/averageUtilization")).cloned())
        })
    };
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        let target = cpu(spec.get("metrics"), "target");
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(t) = target {
            spec.insert("targetCPUUtilizationPercentage".into(), t);
        }
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        let current = cpu(status.get("currentMetrics"), "current");
        status.remove("currentMetrics");
        status.remove("conditions");
        if let Some(c) = current {
            status.insert("currentCPUUtilizationPercentage".into(), c);
        }
    }
}

/// Whether `res` is served through a conversion of its stored form.
pub fn converts(res: &Resource) -> bool {
    res.group == "events.k8s.io" || (res.group == "autoscaling" && res.version == "v1")
}

/// Converts an object of `res` into the form stored (its storage version).
pub fn to_storage(res: &Resource, obj: &mut Value) {
    if res.group == "autoscaling" && res.version == "v1" {
        hpa_v1_to_v2(obj);
    }
    if res.group == "events.k8s.io" {
        rename(obj, EVENT_FIELDS.iter().map(|(core, ev)| (*ev, *core)));
        obj["apiVersion"] = json!("v1");
        obj["kind"] = json!("Event");
    }
}

/// Converts a stored object into `res`'s version.
pub fn from_storage(res: &Resource, obj: &mut Value) {
    if res.group == "autoscaling" && res.version == "v1" {
        hpa_v2_to_v1(obj);
    }
    if res.group == "events.k8s.io" {
        rename(obj, EVENT_FIELDS.iter().copied());
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
    }
}
