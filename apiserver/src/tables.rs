//! `application/json;as=Table;v=v1;g=meta.k8s.io`: upstream's columns for each kind.

use crate::objects::{self, meta, name};
use crate::registry::Resource;
use serde_json::{json, Value};

fn age(obj: &Value) -> Value {
    meta(obj).get("creationTimestamp").cloned().unwrap_or(Value::Null)
}

fn col_def(name: &str, ty: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

fn name_col() -> Value {
    col_def(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        0,
    )
}

fn age_col() -> Value {
    col_def("Age", "string", "", "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata", 0)
}

/// Upstream renders ages as short human durations ("5m", "3d"); the Table carries that text.
fn age_text(obj: &Value) -> String {
    let ts = age(obj);
    match ts.as_str() {
        Some(s) => since(s),
        None => "<unknown>".into(),
    }
}

/// apimachinery's `duration.HumanDuration`.
pub fn human_duration(d: time::Duration) -> String {
    let secs = d.whole_seconds();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{dy}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

fn count(obj: &Value, fields: &[&str]) -> i64 {
    fields.iter().filter_map(|f| obj.get(*f).and_then(Value::as_object)).map(|m| m.len() as i64).sum()
}

fn str_at<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn int_at(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

fn containers_and_images(obj: &Value, spec_ptr: &str) -> (String, String) {
    let cs = obj.pointer(&format!("{spec_ptr}/containers")).and_then(Value::as_array).cloned().unwrap_or_default();
    let names: Vec<&str> = cs.iter().filter_map(|c| c.get("name").and_then(Value::as_str)).collect();
    let images: Vec<&str> = cs.iter().filter_map(|c| c.get("image").and_then(Value::as_str)).collect();
    (names.join(","), images.join(","))
}

fn selector_text(sel: Option<&Value>) -> String {
    let Some(sel) = sel else { return "<none>".into() };
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        parts.extend(m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))));
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let vals: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            parts.push(match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => format!("{key} in ({})", vals.join(",")),
                "NotIn" => format!("{key} notin ({})", vals.join(",")),
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                _ => String::new(),
            });
        }
    }
    if parts.is_empty()
        && sel.as_object().is_some_and(|m| !m.contains_key("matchLabels") && !m.contains_key("matchExpressions"))
    {
        // A plain map selector (services, replication controllers).
        if let Some(m) = sel.as_object() {
            parts.extend(m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    none_if_empty(parts.join(","))
}

/// Upstream's pod STATUS column: the phase, or what holds the pod back.
fn pod_status(pod: &Value) -> String {
    let mut reason = str_at(pod, "/status/reason").to_string();
    if reason.is_empty() {
        reason = str_at(pod, "/status/phase").to_string();
    }
    let statuses = pod.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
    for c in statuses.iter().rev() {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str).filter(|r| !r.is_empty()) {
            reason = r.to_string();
        } else if let Some(r) = c.pointer("/state/terminated/reason").and_then(Value::as_str).filter(|r| !r.is_empty())
        {
            reason = r.to_string();
        }
    }
    if meta(pod).get("deletionTimestamp").is_some() {
        reason = if reason == "NodeLost" { "Unknown".into() } else { "Terminating".into() };
    }
    reason
}

struct Col {
    name: &'static str,
    ty: &'static str,
    priority: i64,
}

const fn c(name: &'static str) -> Col {
    Col { name, ty: "string", priority: 0 }
}

const fn wide(name: &'static str) -> Col {
    Col { name, ty: "string", priority: 1 }
}

const fn int(name: &'static str) -> Col {
    Col { name, ty: "integer", priority: 0 }
}

const fn date(name: &'static str) -> Col {
    Col { name, ty: "date", priority: 0 }
}

fn spec_for(res: &Resource) -> Vec<Col> {
    match (res.group, res.kind) {
        ("", "Pod") => vec![
            c("Name"),
            c("Ready"),
            c("Status"),
            int("Restarts"),
            c("Age"),
            wide("IP"),
            wide("Node"),
            wide("Nominated Node"),
            wide("Readiness Gates"),
        ],
        ("apps", "Deployment") => vec![
            c("Name"),
            c("Ready"),
            int("Up-to-date"),
            int("Available"),
            c("Age"),
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        ("apps", "ReplicaSet") | ("", "ReplicationController") => vec![
            c("Name"),
            int("Desired"),
            int("Current"),
            int("Ready"),
            c("Age"),
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        ("apps", "StatefulSet") => vec![c("Name"), c("Ready"), c("Age"), wide("Containers"), wide("Images")],
        ("apps", "DaemonSet") => vec![
            c("Name"),
            int("Desired"),
            int("Current"),
            int("Ready"),
            int("Up-to-date"),
            int("Available"),
            c("Node Selector"),
            c("Age"),
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        ("", "Service") => {
            vec![c("Name"), c("Type"), c("Cluster-IP"), c("External-IP"), c("Port(s)"), c("Age"), wide("Selector")]
        }
        ("", "Node") => vec![
            c("Name"),
            c("Status"),
            c("Roles"),
            c("Age"),
            c("Version"),
            wide("Internal-IP"),
            wide("External-IP"),
            wide("OS-Image"),
            wide("Kernel-Version"),
            wide("Container-Runtime"),
        ],
        ("", "Event") => vec![
            c("Last Seen"),
            c("Type"),
            c("Reason"),
            c("Object"),
            wide("Subobject"),
            wide("Source"),
            c("Message"),
            wide("First Seen"),
            wide("Count"),
            wide("Name"),
        ],
        ("batch", "Job") => vec![
            c("Name"),
            c("Status"),
            c("Completions"),
            c("Duration"),
            c("Age"),
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        ("coordination.k8s.io", "Lease") => vec![c("Name"), c("Holder"), c("Age")],
        ("", "Endpoints") => vec![c("Name"), c("Endpoints"), c("Age")],
        ("", "Namespace") => vec![c("Name"), c("Status"), c("Age")],
        ("", "ConfigMap") => vec![c("Name"), int("Data"), c("Age")],
        ("", "Secret") => vec![c("Name"), c("Type"), int("Data"), c("Age")],
        ("", "ServiceAccount") => vec![c("Name"), int("Secrets"), c("Age")],
        ("batch", "CronJob") => vec![
            c("Name"),
            c("Schedule"),
            c("Timezone"),
            c("Suspend"),
            int("Active"),
            c("Last Schedule"),
            c("Age"),
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        ("", "PersistentVolumeClaim") => vec![
            c("Name"),
            c("Status"),
            c("Volume"),
            c("Capacity"),
            c("Access Modes"),
            c("StorageClass"),
            c("VolumeAttributesClass"),
            c("Age"),
            wide("VolumeMode"),
        ],
        ("", "PersistentVolume") => vec![
            c("Name"),
            c("Capacity"),
            c("Access Modes"),
            c("Reclaim Policy"),
            c("Status"),
            c("Claim"),
            c("StorageClass"),
            c("VolumeAttributesClass"),
            c("Reason"),
            c("Age"),
            wide("VolumeMode"),
        ],
        ("storage.k8s.io", "StorageClass") => vec![
            c("Name"),
            c("Provisioner"),
            c("ReclaimPolicy"),
            c("VolumeBindingMode"),
            c("AllowVolumeExpansion"),
            c("Age"),
        ],
        ("autoscaling", "HorizontalPodAutoscaler") => {
            vec![c("Name"), c("Reference"), c("Targets"), c("MinPods"), int("MaxPods"), int("Replicas"), c("Age")]
        }
        ("networking.k8s.io", "Ingress") => vec![c("Name"), c("Class"), c("Hosts"), c("Address"), c("Ports"), c("Age")],
        ("networking.k8s.io", "IngressClass") => vec![c("Name"), c("Controller"), c("Parameters"), c("Age")],
        ("networking.k8s.io", "NetworkPolicy") => vec![c("Name"), c("Pod-Selector"), c("Age")],
        ("networking.k8s.io", "ServiceCIDR") => vec![c("Name"), c("CIDRs"), c("Age")],
        ("networking.k8s.io", "IPAddress") => vec![c("Name"), c("ParentRef")],
        ("policy", "PodDisruptionBudget") => {
            vec![c("Name"), c("Min Available"), c("Max Unavailable"), int("Allowed Disruptions"), c("Age")]
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            vec![c("Name"), int("Value"), c("Global-Default"), c("Age"), c("PreemptionPolicy")]
        }
        ("rbac.authorization.k8s.io", "RoleBinding") | ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            vec![c("Name"), c("Role"), c("Age"), wide("Users"), wide("Groups"), wide("ServiceAccounts")]
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            vec![c("Name"), c("AddressType"), c("Ports"), c("Endpoints"), c("Age")]
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            vec![c("Name"), c("Age"), c("SignerName"), c("Requestor"), c("RequestedDuration"), c("Condition")]
        }
        ("", "ResourceQuota") => vec![c("Name"), c("Age"), c("Request"), c("Limit")],
        ("apps", "ControllerRevision") => vec![c("Name"), c("Controller"), int("Revision"), c("Age")],
        ("node.k8s.io", "RuntimeClass") => vec![c("Name"), c("Handler"), c("Age")],
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration")
        | ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            vec![c("Name"), int("Webhooks"), c("Age")]
        }
        ("storage.k8s.io", "CSIDriver") => vec![
            c("Name"),
            c("AttachRequired"),
            c("PodInfoOnMount"),
            c("StorageCapacity"),
            c("TokenRequests"),
            c("RequiresRepublish"),
            c("Modes"),
            c("Age"),
        ],
        ("storage.k8s.io", "CSINode") => vec![c("Name"), int("Drivers"), c("Age")],
        ("storage.k8s.io", "VolumeAttachment") => {
            vec![c("Name"), c("Attacher"), c("PV"), c("Node"), c("Attached"), c("Age")]
        }
        // Upstream's default table (Role, ClusterRole, LimitRange, CRDs, ...).
        _ => vec![c("Name"), date("Created At")],
    }
}

fn columns(res: &Resource) -> Vec<Value> {
    spec_for(res)
        .into_iter()
        .map(|col| {
            let format = if col.name == "Name" { "name" } else { "" };
            if col.ty == "date" {
                return col_def(col.name, "date", "", "", 0);
            }
            let mut d = col_def(col.name, col.ty, format, "", col.priority);
            if col.name == "Name" {
                d = name_col();
            } else if col.name == "Age" {
                d = age_col();
            }
            d["priority"] = json!(col.priority);
            d
        })
        .collect()
}

fn cells(res: &Resource, obj: &Value) -> Vec<Value> {
    let n = json!(name(obj));
    let a = json!(age_text(obj));
    match (res.group, res.kind) {
        ("", "Pod") => {
            let total = obj.pointer("/spec/containers").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
            let statuses =
                obj.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
            let ready = statuses.iter().filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true)).count();
            let restarts: i64 =
                statuses.iter().map(|c| c.get("restartCount").and_then(Value::as_i64).unwrap_or(0)).sum();
            let gates = obj.pointer("/spec/readinessGates").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
            vec![
                n,
                json!(format!("{ready}/{total}")),
                json!(pod_status(obj)),
                json!(restarts),
                a,
                json!(none_if_empty(str_at(obj, "/status/podIP").to_string())),
                json!(none_if_empty(str_at(obj, "/spec/nodeName").to_string())),
                json!(none_if_empty(str_at(obj, "/status/nominatedNodeName").to_string())),
                json!(if gates == 0 { "<none>".to_string() } else { format!("0/{gates}") }),
            ]
        }
        ("apps", "Deployment") => {
            let (cs, images) = containers_and_images(obj, "/spec/template/spec");
            vec![
                n,
                json!(format!("{}/{}", int_at(obj, "/status/readyReplicas"), int_at(obj, "/spec/replicas"))),
                json!(int_at(obj, "/status/updatedReplicas")),
                json!(int_at(obj, "/status/availableReplicas")),
                a,
                json!(cs),
                json!(images),
                json!(selector_text(obj.pointer("/spec/selector"))),
            ]
        }
        ("apps", "ReplicaSet") | ("", "ReplicationController") => {
            let (cs, images) = containers_and_images(obj, "/spec/template/spec");
            vec![
                n,
                json!(int_at(obj, "/spec/replicas")),
                json!(int_at(obj, "/status/replicas")),
                json!(int_at(obj, "/status/readyReplicas")),
                a,
                json!(cs),
                json!(images),
                json!(selector_text(obj.pointer("/spec/selector"))),
            ]
        }
        ("apps", "StatefulSet") => {
            let (cs, images) = containers_and_images(obj, "/spec/template/spec");
            vec![
                n,
                json!(format!("{}/{}", int_at(obj, "/status/readyReplicas"), int_at(obj, "/spec/replicas"))),
                a,
                json!(cs),
                json!(images),
            ]
        }
        ("apps", "DaemonSet") => {
            let (cs, images) = containers_and_images(obj, "/spec/template/spec");
            let node_sel = obj
                .pointer("/spec/template/spec/nodeSelector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")
                })
                .unwrap_or_default();
            vec![
                n,
                json!(int_at(obj, "/status/desiredNumberScheduled")),
                json!(int_at(obj, "/status/currentNumberScheduled")),
                json!(int_at(obj, "/status/numberReady")),
                json!(int_at(obj, "/status/updatedNumberScheduled")),
                json!(int_at(obj, "/status/numberAvailable")),
                json!(none_if_empty(node_sel)),
                a,
                json!(cs),
                json!(images),
                json!(selector_text(obj.pointer("/spec/selector"))),
            ]
        }
        ("", "Service") => {
            let ports: Vec<String> = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                            match p.get("nodePort").and_then(Value::as_i64) {
                                Some(np) => format!("{port}:{np}/{proto}"),
                                None => format!("{port}/{proto}"),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let ty = str_at(obj, "/spec/type");
            let external = match obj.pointer("/spec/externalIPs").and_then(Value::as_array) {
                Some(ips) if !ips.is_empty() => ips.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
                _ if ty == "LoadBalancer" => {
                    let ing: Vec<String> = obj
                        .pointer("/status/loadBalancer/ingress")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|i| {
                                    i.get("ip").or_else(|| i.get("hostname")).and_then(Value::as_str).map(String::from)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    if ing.is_empty() {
                        "<pending>".into()
                    } else {
                        ing.join(",")
                    }
                }
                _ if ty == "ExternalName" => str_at(obj, "/spec/externalName").to_string(),
                _ => "<none>".into(),
            };
            vec![
                n,
                json!(ty),
                json!(none_if_empty(str_at(obj, "/spec/clusterIP").to_string())),
                json!(external),
                json!(none_if_empty(ports.join(","))),
                a,
                json!(selector_text(obj.pointer("/spec/selector"))),
            ]
        }
        ("", "Node") => {
            let conds = obj.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            let ready = conds.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
            let mut status = match ready.and_then(|c| c.get("status")).and_then(Value::as_str) {
                Some("True") => "Ready".to_string(),
                Some(_) => "NotReady".to_string(),
                None => "Unknown".to_string(),
            };
            if obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            let mut roles: Vec<String> = objects::labels(obj)
                .keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/").map(String::from))
                .filter(|r| !r.is_empty())
                .collect();
            roles.sort();
            let addr = |t: &str| {
                obj.pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().find(|x| x.get("type").and_then(Value::as_str) == Some(t)))
                    .and_then(|x| x.get("address").and_then(Value::as_str))
                    .unwrap_or("<none>")
                    .to_string()
            };
            vec![
                n,
                json!(status),
                json!(none_if_empty(roles.join(","))),
                a,
                json!(str_at(obj, "/status/nodeInfo/kubeletVersion")),
                json!(addr("InternalIP")),
                json!(addr("ExternalIP")),
                json!(str_at(obj, "/status/nodeInfo/osImage")),
                json!(str_at(obj, "/status/nodeInfo/kernelVersion")),
                json!(str_at(obj, "/status/nodeInfo/containerRuntimeVersion")),
            ]
        }
        ("", "Event") => {
            let last = ["/lastTimestamp", "/eventTime", "/metadata/creationTimestamp"]
                .iter()
                .find_map(|p| obj.pointer(p).and_then(Value::as_str))
                .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
                .map(|t| human_duration(time::OffsetDateTime::now_utc() - t))
                .unwrap_or_else(|| "<unknown>".into());
            let first = obj
                .pointer("/firstTimestamp")
                .and_then(Value::as_str)
                .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
                .map(|t| human_duration(time::OffsetDateTime::now_utc() - t))
                .unwrap_or_else(|| "<unknown>".into());
            let object = format!(
                "{}/{}",
                str_at(obj, "/involvedObject/kind").to_lowercase(),
                str_at(obj, "/involvedObject/name")
            );
            vec![
                json!(last),
                json!(str_at(obj, "/type")),
                json!(str_at(obj, "/reason")),
                json!(object),
                json!(str_at(obj, "/involvedObject/fieldPath")),
                json!(str_at(obj, "/source/component")),
                json!(str_at(obj, "/message").trim()),
                json!(first),
                json!(obj.get("count").and_then(Value::as_i64).unwrap_or(1)),
                n,
            ]
        }
        ("batch", "Job") => {
            let (cs, images) = containers_and_images(obj, "/spec/template/spec");
            let completions = obj.pointer("/spec/completions").and_then(Value::as_i64);
            let succeeded = int_at(obj, "/status/succeeded");
            let comp = match completions {
                Some(c) => format!("{succeeded}/{c}"),
                None => format!(
                    "{succeeded}/1 of {}",
                    obj.pointer("/spec/parallelism").and_then(Value::as_i64).unwrap_or(1)
                ),
            };
            let conds = obj.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            let has = |t: &str| {
                conds.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some(t)
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            };
            let status = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else if meta(obj).get("deletionTimestamp").is_some() {
                "Terminating"
            } else if has("Suspended") {
                "Suspended"
            } else {
                "Running"
            };
            vec![
                n,
                json!(status),
                json!(comp),
                json!(""),
                a,
                json!(cs),
                json!(images),
                json!(selector_text(obj.pointer("/spec/selector"))),
            ]
        }
        ("coordination.k8s.io", "Lease") => vec![n, json!(str_at(obj, "/spec/holderIdentity")), a],
        ("", "Endpoints") => {
            let mut eps = Vec::new();
            for subset in obj.get("subsets").and_then(Value::as_array).cloned().unwrap_or_default() {
                let ports: Vec<i64> = subset
                    .get("ports")
                    .and_then(Value::as_array)
                    .map(|p| p.iter().filter_map(|x| x.get("port").and_then(Value::as_i64)).collect())
                    .unwrap_or_default();
                for addr in subset.get("addresses").and_then(Value::as_array).cloned().unwrap_or_default() {
                    let ip = addr.get("ip").and_then(Value::as_str).unwrap_or("");
                    if ports.is_empty() {
                        eps.push(ip.to_string());
                    }
                    for p in &ports {
                        eps.push(format!("{ip}:{p}"));
                    }
                }
            }
            let text = if eps.len() > 3 {
                format!("{} + {} more...", eps[..3].join(","), eps.len() - 3)
            } else {
                eps.join(",")
            };
            vec![n, json!(none_if_empty(text)), a]
        }
        ("", "Namespace") => vec![n, json!(str_at(obj, "/status/phase")), a],
        ("", "ConfigMap") => vec![n, json!(count(obj, &["data", "binaryData"])), a],
        ("", "Secret") => vec![n, json!(str_at(obj, "/type")), json!(count(obj, &["data"])), a],
        ("", "ServiceAccount") => {
            vec![n, json!(obj.get("secrets").and_then(Value::as_array).map(Vec::len).unwrap_or(0)), a]
        }
        ("batch", "CronJob") => {
            let (cs, images) = containers_and_images(obj, "/spec/jobTemplate/spec/template/spec");
            let last = obj.pointer("/status/lastScheduleTime").and_then(Value::as_str).map(since);
            vec![
                n,
                json!(str_at(obj, "/spec/schedule")),
                json!(none_if_empty(str_at(obj, "/spec/timeZone").to_string())),
                json!(if obj.pointer("/spec/suspend").and_then(Value::as_bool).unwrap_or(false) {
                    "True"
                } else {
                    "False"
                }),
                json!(obj.pointer("/status/active").and_then(Value::as_array).map(Vec::len).unwrap_or(0)),
                json!(last.unwrap_or_else(|| "<none>".into())),
                a,
                json!(cs),
                json!(images),
                json!(selector_text(obj.pointer("/spec/jobTemplate/spec/selector"))),
            ]
        }
        ("", "PersistentVolumeClaim") => {
            let bound = !str_at(obj, "/spec/volumeName").is_empty();
            let cap = if bound { str_at(obj, "/status/capacity/storage") } else { "" };
            let modes = if bound { access_modes(obj.pointer("/status/accessModes")) } else { String::new() };
            let phase =
                if meta(obj).get("deletionTimestamp").is_some() { "Terminating" } else { str_at(obj, "/status/phase") };
            vec![
                n,
                json!(phase),
                json!(str_at(obj, "/spec/volumeName")),
                json!(cap),
                json!(modes),
                json!(storage_class(obj)),
                json!(unset_if_empty(str_at(obj, "/spec/volumeAttributesClassName"))),
                a,
                json!(str_at(obj, "/spec/volumeMode")),
            ]
        }
        ("", "PersistentVolume") => {
            let claim = match obj.pointer("/spec/claimRef") {
                Some(r) => format!("{}/{}", str_at(r, "/namespace"), str_at(r, "/name")),
                None => String::new(),
            };
            let phase =
                if meta(obj).get("deletionTimestamp").is_some() { "Terminating" } else { str_at(obj, "/status/phase") };
            vec![
                n,
                json!(str_at(obj, "/spec/capacity/storage")),
                json!(access_modes(obj.pointer("/spec/accessModes"))),
                json!(str_at(obj, "/spec/persistentVolumeReclaimPolicy")),
                json!(phase),
                json!(claim),
                json!(storage_class(obj)),
                json!(unset_if_empty(str_at(obj, "/spec/volumeAttributesClassName"))),
                json!(str_at(obj, "/status/reason")),
                a,
                json!(str_at(obj, "/spec/volumeMode")),
            ]
        }
        ("storage.k8s.io", "StorageClass") => {
            let default = meta(obj)
                .get("annotations")
                .and_then(|a| {
                    a.get("storageclass.kubernetes.io/is-default-class")
                        .or_else(|| a.get("storageclass.beta.kubernetes.io/is-default-class"))
                })
                .and_then(Value::as_str)
                == Some("true");
            let shown = if default { format!("{} (default)", name(obj)) } else { name(obj).to_string() };
            vec![
                json!(shown),
                json!(str_at(obj, "/provisioner")),
                json!(obj.get("reclaimPolicy").and_then(Value::as_str).unwrap_or("Delete")),
                json!(obj.get("volumeBindingMode").and_then(Value::as_str).unwrap_or("Immediate")),
                json!(obj.get("allowVolumeExpansion").and_then(Value::as_bool).unwrap_or(false).to_string()),
                a,
            ]
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            let r = obj.pointer("/spec/scaleTargetRef").cloned().unwrap_or_default();
            let reference = format!("{}/{}", str_at(&r, "/kind"), str_at(&r, "/name"));
            let min = obj.pointer("/spec/minReplicas").and_then(Value::as_i64).map(|m| m.to_string());
            vec![
                n,
                json!(reference),
                json!(hpa_targets(obj)),
                json!(min.unwrap_or_else(|| "<unset>".into())),
                json!(int_at(obj, "/spec/maxReplicas")),
                json!(int_at(obj, "/status/currentReplicas")),
                a,
            ]
        }
        ("networking.k8s.io", "Ingress") => {
            let rules = obj.pointer("/spec/rules").and_then(Value::as_array).cloned().unwrap_or_default();
            let hosts: Vec<&str> = rules.iter().filter_map(|r| r.get("host").and_then(Value::as_str)).collect();
            let hosts = if hosts.is_empty() {
                "*".to_string()
            } else if hosts.len() > 4 {
                format!("{} + {} more...", hosts[..4].join(","), hosts.len() - 4)
            } else {
                hosts.join(",")
            };
            let tls = obj.pointer("/spec/tls").and_then(Value::as_array).is_some_and(|t| !t.is_empty());
            vec![
                n,
                json!(obj.pointer("/spec/ingressClassName").and_then(Value::as_str).unwrap_or("<none>")),
                json!(hosts),
                json!(load_balancer_addresses(obj.pointer("/status/loadBalancer/ingress"))),
                json!(if tls { "80, 443" } else { "80" }),
                a,
            ]
        }
        ("networking.k8s.io", "IngressClass") => {
            let params = match obj.pointer("/spec/parameters") {
                Some(p) => {
                    let group = p.get("apiGroup").and_then(Value::as_str).unwrap_or("");
                    let kind = str_at(p, "/kind");
                    let kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
                    format!("{kind}/{}", str_at(p, "/name"))
                }
                None => "<none>".into(),
            };
            vec![n, json!(str_at(obj, "/spec/controller")), json!(params), a]
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            vec![n, json!(selector_text(obj.pointer("/spec/podSelector"))), a]
        }
        ("networking.k8s.io", "ServiceCIDR") => {
            let cidrs = obj.pointer("/spec/cidrs").and_then(Value::as_array).cloned().unwrap_or_default();
            let cidrs: Vec<&str> = cidrs.iter().filter_map(Value::as_str).collect();
            vec![n, json!(cidrs.join(",")), a]
        }
        ("networking.k8s.io", "IPAddress") => {
            let p = obj.pointer("/spec/parentRef").cloned().unwrap_or_default();
            let group = str_at(&p, "/group");
            let res = if group.is_empty() {
                str_at(&p, "/resource").to_string()
            } else {
                format!("{}.{group}", str_at(&p, "/resource"))
            };
            vec![n, json!(format!("{res}/{}/{}", str_at(&p, "/namespace"), str_at(&p, "/name")))]
        }
        ("policy", "PodDisruptionBudget") => {
            let show = |p: &str| match obj.pointer(p) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => "N/A".into(),
            };
            vec![
                n,
                json!(show("/spec/minAvailable")),
                json!(show("/spec/maxUnavailable")),
                json!(int_at(obj, "/status/disruptionsAllowed")),
                a,
            ]
        }
        ("scheduling.k8s.io", "PriorityClass") => vec![
            n,
            json!(int_at(obj, "/value")),
            json!(obj.get("globalDefault").and_then(Value::as_bool).unwrap_or(false).to_string()),
            a,
            json!(obj.get("preemptionPolicy").and_then(Value::as_str).unwrap_or("PreemptLowerPriority")),
        ],
        ("rbac.authorization.k8s.io", "RoleBinding") | ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            let subjects = obj.get("subjects").and_then(Value::as_array).cloned().unwrap_or_default();
            let of = |kind: &str| {
                subjects
                    .iter()
                    .filter(|s| s.get("kind").and_then(Value::as_str) == Some(kind))
                    .map(|s| {
                        if kind == "ServiceAccount" {
                            format!("{}/{}", str_at(s, "/namespace"), str_at(s, "/name"))
                        } else {
                            str_at(s, "/name").to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                n,
                json!(format!("{}/{}", str_at(obj, "/roleRef/kind"), str_at(obj, "/roleRef/name"))),
                a,
                json!(of("User")),
                json!(of("Group")),
                json!(of("ServiceAccount")),
            ]
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            let ports = obj.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
            let ports: Vec<String> = ports
                .iter()
                .map(|p| p.get("port").map(|v| v.to_string()).unwrap_or_else(|| "<unset>".into()))
                .collect();
            let ports = if ports.is_empty() { "<unset>".to_string() } else { ports.join(",") };
            let mut addrs = Vec::new();
            for e in obj.get("endpoints").and_then(Value::as_array).cloned().unwrap_or_default() {
                for a in e.get("addresses").and_then(Value::as_array).cloned().unwrap_or_default() {
                    addrs.push(a.as_str().unwrap_or("").to_string());
                }
            }
            let eps = if addrs.len() > 3 {
                format!("{} + {} more...", addrs[..3].join(","), addrs.len() - 3)
            } else if addrs.is_empty() {
                "<unset>".into()
            } else {
                addrs.join(",")
            };
            vec![n, json!(str_at(obj, "/addressType")), json!(ports), json!(eps), a]
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            let conds = obj.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut parts: Vec<String> = conds.iter().map(|c| str_at(c, "/type").to_string()).collect();
            if obj.pointer("/status/certificate").and_then(Value::as_str).is_some_and(|c| !c.is_empty()) {
                parts.push("Issued".into());
            }
            let cond = if parts.is_empty() { "Pending".to_string() } else { parts.join(",") };
            let dur = obj
                .pointer("/spec/expirationSeconds")
                .and_then(Value::as_i64)
                .map(|s| human_duration(time::Duration::seconds(s)))
                .unwrap_or_else(|| "<none>".into());
            vec![
                n,
                a,
                json!(str_at(obj, "/spec/signerName")),
                json!(str_at(obj, "/spec/username")),
                json!(dur),
                json!(cond),
            ]
        }
        ("", "ResourceQuota") => {
            let used = obj.pointer("/status/used").cloned().unwrap_or_default();
            let hard = obj.pointer("/status/hard").and_then(Value::as_object).cloned().unwrap_or_default();
            let (mut req, mut lim) = (Vec::new(), Vec::new());
            for (k, h) in &hard {
                let u = used.get(k).and_then(Value::as_str).unwrap_or("0");
                let text = format!("{k}: {u}/{}", h.as_str().unwrap_or(""));
                if k.starts_with("limits.") {
                    lim.push(text);
                } else {
                    req.push(text);
                }
            }
            vec![n, a, json!(req.join(", ")), json!(lim.join(", "))]
        }
        ("apps", "ControllerRevision") => {
            let owner = meta(obj)
                .get("ownerReferences")
                .and_then(Value::as_array)
                .and_then(|o| o.iter().find(|r| r.get("controller").and_then(Value::as_bool) == Some(true)))
                .map(|r| {
                    let api = str_at(r, "/apiVersion");
                    let group = api.split_once('/').map(|(g, _)| g).unwrap_or("");
                    let kind = str_at(r, "/kind").to_lowercase();
                    let kind = if group.is_empty() { kind } else { format!("{kind}.{group}") };
                    format!("{kind}/{}", str_at(r, "/name"))
                })
                .unwrap_or_else(|| "<none>".into());
            vec![n, json!(owner), json!(int_at(obj, "/revision")), a]
        }
        ("node.k8s.io", "RuntimeClass") => vec![n, json!(str_at(obj, "/handler")), a],
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration")
        | ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            vec![n, json!(obj.get("webhooks").and_then(Value::as_array).map(Vec::len).unwrap_or(0)), a]
        }
        ("storage.k8s.io", "CSIDriver") => {
            let b = |p: &str, d: bool| json!(obj.pointer(p).and_then(Value::as_bool).unwrap_or(d).to_string());
            let tokens = obj.pointer("/spec/tokenRequests").and_then(Value::as_array).cloned().unwrap_or_default();
            let tokens: Vec<String> = tokens
                .iter()
                .map(|t| {
                    let aud = str_at(t, "/audience");
                    let aud = if aud.is_empty() { "<api-server-audience>" } else { aud };
                    match t.get("expirationSeconds").and_then(Value::as_i64) {
                        Some(s) => format!("{aud}:{}", human_duration(time::Duration::seconds(s))),
                        None => aud.to_string(),
                    }
                })
                .collect();
            let modes =
                obj.pointer("/spec/volumeLifecycleModes").and_then(Value::as_array).cloned().unwrap_or_default();
            let modes: Vec<&str> = modes.iter().filter_map(Value::as_str).collect();
            vec![
                n,
                b("/spec/attachRequired", true),
                b("/spec/podInfoOnMount", false),
                b("/spec/storageCapacity", false),
                json!(if tokens.is_empty() { "<unset>".into() } else { tokens.join(",") }),
                b("/spec/requiresRepublish", false),
                json!(modes.join(",")),
                a,
            ]
        }
        ("storage.k8s.io", "CSINode") => {
            vec![n, json!(obj.pointer("/spec/drivers").and_then(Value::as_array).map(Vec::len).unwrap_or(0)), a]
        }
        ("storage.k8s.io", "VolumeAttachment") => vec![
            n,
            json!(str_at(obj, "/spec/attacher")),
            json!(str_at(obj, "/spec/source/persistentVolumeName")),
            json!(str_at(obj, "/spec/nodeName")),
            json!(obj.pointer("/status/attached").and_then(Value::as_bool).unwrap_or(false).to_string()),
            a,
        ],
        _ => vec![n, age(obj)],
    }
}

fn since(ts: &str) -> String {
    match time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339) {
        Ok(t) => human_duration(time::OffsetDateTime::now_utc() - t),
        Err(_) => "<unknown>".into(),
    }
}

/// kubectl's short access-mode names (`RWO,ROX`).
fn access_modes(modes: Option<&Value>) -> String {
    let modes = modes.and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for (long, short) in
        [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
    {
        if modes.iter().any(|m| m == long) {
            out.push(short);
        }
    }
    out.join(",")
}

fn storage_class(obj: &Value) -> String {
    obj.pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .or_else(|| {
            meta(obj)
                .get("annotations")
                .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
                .and_then(Value::as_str)
        })
        .unwrap_or("")
        .to_string()
}

fn unset_if_empty(s: &str) -> String {
    if s.is_empty() {
        "<unset>".into()
    } else {
        s.to_string()
    }
}

fn load_balancer_addresses(ingress: Option<&Value>) -> String {
    let list = ingress.and_then(Value::as_array).cloned().unwrap_or_default();
    list.iter()
        .filter_map(|i| i.get("ip").or_else(|| i.get("hostname")).and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(",")
}

/// The HPA `Targets` column: `cpu: 40%/80%` for each metric, `<unknown>` before the first reading.
fn hpa_targets(obj: &Value) -> String {
    let metrics = obj.pointer("/spec/metrics").and_then(Value::as_array).cloned().unwrap_or_default();
    let current = obj.pointer("/status/currentMetrics").and_then(Value::as_array).cloned().unwrap_or_default();
    if metrics.is_empty() {
        return "<none>".into();
    }
    let mut parts = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        if str_at(m, "/type") == "Resource" {
            let name = str_at(m, "/resource/name");
            let target = &m["resource"]["target"];
            let (cur, tgt) = match target.get("averageUtilization").and_then(Value::as_i64) {
                Some(u) => (
                    current
                        .get(i)
                        .and_then(|c| c.pointer("/resource/current/averageUtilization"))
                        .and_then(Value::as_i64)
                        .map(|c| format!("{c}%"))
                        .unwrap_or_else(|| "<unknown>".into()),
                    format!("{u}%"),
                ),
                None => (
                    current
                        .get(i)
                        .and_then(|c| c.pointer("/resource/current/averageValue"))
                        .and_then(Value::as_str)
                        .unwrap_or("<unknown>")
                        .to_string(),
                    str_at(target, "/averageValue").to_string(),
                ),
            };
            parts.push(format!("{name}: {cur}/{tgt}"));
        } else {
            parts.push("<unknown>/<unknown>".into());
        }
    }
    if parts.len() > 2 {
        let more = parts.len() - 2;
        parts.truncate(2);
        return format!("{} + {more} more...", parts.join(", "));
    }
    parts.join(", ")
}

/// A `meta.k8s.io/v1 Table` of `objects`; `include_object` as upstream's `includeObject` (None, Metadata,
/// Object; default Metadata).
pub fn table(res: &Resource, objects: &[Value], list_meta: Value, include_object: &str) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let object = match include_object {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta(o).clone(),
                }),
            };
            json!({"cells": cells(res, o), "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns(res),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        let d = time::Duration::seconds;
        assert_eq!(human_duration(d(59)), "59s");
        assert_eq!(human_duration(d(150)), "2m30s");
        assert_eq!(human_duration(d(600)), "10m");
        assert_eq!(human_duration(d(3 * 3600 + 60)), "3h1m");
        assert_eq!(human_duration(d(30 * 3600)), "30h");
        assert_eq!(human_duration(d(3 * 86400 + 3600)), "3d1h");
        assert_eq!(human_duration(d(20 * 86400)), "20d");
    }
}
