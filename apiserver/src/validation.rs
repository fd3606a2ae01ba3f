//! Upstream's field validation of pod specs and workload specs (`pkg/apis/core/validation`,
//! `pkg/apis/apps/validation`, `pkg/apis/batch/validation`, ...), with upstream's field paths and
//! messages. Metadata rules live in `objects`; the per-kind dispatch in `strategy::validate`.

use apimachinery::Cause;
use serde_json::{json, Value};
use std::collections::HashSet;

fn nonnegative(v: &Value, ptr: &str, field: &str, causes: &mut Vec<Cause>) {
    if let Some(n) = v.pointer(ptr).and_then(Value::as_i64) {
        if n < 0 {
            causes.push(Cause::invalid(field, &json!(n), "must be greater than or equal to 0"));
        }
    }
}

pub use apimachinery::quantity::parse as quantity;

fn probe(path: &str, p: &Value, liveness_or_startup: bool, causes: &mut Vec<Cause>) {
    for f in ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"] {
        nonnegative(p, &format!("/{f}"), &format!("{path}.{f}"), causes);
    }
    if liveness_or_startup {
        if let Some(s) = p.get("successThreshold").and_then(Value::as_i64) {
            if s != 1 {
                causes.push(Cause::invalid(&format!("{path}.successThreshold"), &json!(s), "must be 1"));
            }
        }
    }
    let handlers = ["exec", "httpGet", "tcpSocket", "grpc"].iter().filter(|h| p.get(**h).is_some()).count();
    if handlers == 0 {
        causes.push(Cause::required(path, "must specify a handler type"));
    } else if handlers > 1 {
        causes.push(Cause::forbidden(path, "may not specify more than 1 handler type"));
    }
}

fn container(path: &str, c: &Value, volumes: &HashSet<String>, causes: &mut Vec<Cause>) {
    if c.get("image").and_then(Value::as_str).is_none_or(|i| i.trim().is_empty()) {
        causes.push(Cause::required(&format!("{path}.image"), ""));
    }
    for (j, p) in c.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push(Cause::invalid(
                &format!("{path}.ports[{j}].containerPort"),
                &json!(port),
                "must be between 1 and 65535, inclusive",
            ));
        }
        if let Some(hp) = p.get("hostPort").and_then(Value::as_i64) {
            if !(0..=65535).contains(&hp) {
                causes.push(Cause::invalid(
                    &format!("{path}.ports[{j}].hostPort"),
                    &json!(hp),
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        if !["TCP", "UDP", "SCTP"].contains(&proto) {
            causes.push(Cause::not_supported(
                &format!("{path}.ports[{j}].protocol"),
                &json!(proto),
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
    for (j, e) in c.get("env").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let name = e.get("name").and_then(Value::as_str).unwrap_or("");
        let field = format!("{path}.env[{j}].name");
        if name.is_empty() {
            causes.push(Cause::required(&field, ""));
        } else if name.contains('=') || !name.bytes().all(|b| (32..127).contains(&b)) {
            causes.push(Cause::invalid(
                &field,
                &json!(name),
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
        if e.get("value").is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty())) && e.get("valueFrom").is_some() {
            causes.push(Cause::invalid(
                &format!("{path}.env[{j}].valueFrom"),
                &Value::String(String::new()),
                "may not be specified when `value` is not empty",
            ));
        }
    }
    let mut mount_paths = HashSet::new();
    for (j, m) in c.get("volumeMounts").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let name = m.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            causes.push(Cause::required(&format!("{path}.volumeMounts[{j}].name"), ""));
        } else if !volumes.contains(name) {
            causes.push(Cause::not_found(&format!("{path}.volumeMounts[{j}].name"), &json!(name)));
        }
        let mp = m.get("mountPath").and_then(Value::as_str).unwrap_or("");
        if mp.is_empty() {
            causes.push(Cause::required(&format!("{path}.volumeMounts[{j}].mountPath"), ""));
        } else if !mount_paths.insert(mp.to_string()) {
            causes.push(Cause::invalid(&format!("{path}.volumeMounts[{j}].mountPath"), &json!(mp), "must be unique"));
        }
    }
    for (probe_name, strict) in [("livenessProbe", true), ("readinessProbe", false), ("startupProbe", true)] {
        if let Some(p) = c.get(probe_name) {
            probe(&format!("{path}.{probe_name}"), p, strict, causes);
        }
    }
    let limits = c.pointer("/resources/limits").and_then(Value::as_object);
    let requests = c.pointer("/resources/requests").and_then(Value::as_object);
    if let (Some(limits), Some(requests)) = (limits, requests) {
        for (k, req) in requests {
            let (Some(r), Some(l)) = (req.as_str(), limits.get(k).and_then(Value::as_str)) else { continue };
            if let (Some(rq), Some(lq)) = (quantity(r), quantity(l)) {
                if rq > lq {
                    causes.push(Cause::invalid(
                        &format!("{path}.resources.requests"),
                        &json!(r),
                        &format!("must be less than or equal to {k} limit of {l}"),
                    ));
                }
            }
        }
    }
}

/// `--allow-privileged`: whether containers may set `securityContext.privileged` (upstream's default:
/// no; kubeadm turns it on). Set once at start; pod and template validation read it.
pub static ALLOW_PRIVILEGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A pod spec at `path` (`spec`, `spec.template.spec`); `restart` lists the restart policies the owner
/// allows (all three for a bare pod, `Always` for Deployments, ...).
pub fn pod_spec(path: &str, spec: &Value, restart: &[&str], causes: &mut Vec<Cause>) {
    let mut volumes = HashSet::new();
    for (i, v) in spec.get("volumes").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        let field = format!("{path}.volumes[{i}].name");
        if name.is_empty() {
            causes.push(Cause::required(&field, ""));
        } else if let Err(msgs) = apimachinery::validation::dns1123_label(name) {
            for m in msgs {
                causes.push(Cause::invalid(&field, &json!(name), &m));
            }
        } else if !volumes.insert(name.to_string()) {
            causes.push(Cause::duplicate(&field, &json!(name)));
        }
        let sources = v.as_object().map(|m| m.keys().filter(|k| *k != "name").count()).unwrap_or(0);
        if sources > 1 {
            causes.push(Cause::forbidden(&format!("{path}.volumes[{i}]"), "may not specify more than 1 volume type"));
        }
        if let Some(hp) = v.pointer("/hostPath/path").and_then(Value::as_str) {
            if hp.is_empty() {
                causes.push(Cause::required(&format!("{path}.volumes[{i}].hostPath.path"), ""));
            }
        }
        if let Some(t) = v.pointer("/hostPath/type").and_then(Value::as_str) {
            let ok =
                ["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"];
            if !ok.contains(&t) {
                causes.push(Cause::not_supported(&format!("{path}.volumes[{i}].hostPath.type"), &json!(t), &ok));
            }
        }
    }
    let mut names = HashSet::new();
    match spec.get("containers").and_then(Value::as_array) {
        None => causes.push(Cause::required(&format!("{path}.containers"), "")),
        Some(cs) if cs.is_empty() => causes.push(Cause::required(&format!("{path}.containers"), "")),
        Some(_) => {}
    }
    for list in ["initContainers", "containers"] {
        for (i, c) in spec.get(list).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let cpath = format!("{path}.{list}[{i}]");
            if c.pointer("/securityContext/privileged") == Some(&Value::Bool(true))
                && !ALLOW_PRIVILEGED.load(std::sync::atomic::Ordering::Relaxed)
            {
                causes.push(Cause::forbidden(
                    &format!("{cpath}.securityContext.privileged"),
                    "disallowed by cluster policy",
                ));
            }
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            let field = format!("{cpath}.name");
            if name.is_empty() {
                causes.push(Cause::required(&field, ""));
            } else if let Err(msgs) = apimachinery::validation::dns1123_label(name) {
                for m in msgs {
                    causes.push(Cause::invalid(&field, &json!(name), &m));
                }
            } else if !names.insert(name.to_string()) {
                causes.push(Cause::duplicate(&field, &json!(name)));
            }
            container(&cpath, c, &volumes, causes);
        }
    }
    if let Some(rp) = spec.get("restartPolicy").and_then(Value::as_str) {
        if !restart.contains(&rp) {
            causes.push(Cause::not_supported(&format!("{path}.restartPolicy"), &json!(rp), restart));
        }
    }
    if let Some(dp) = spec.get("dnsPolicy").and_then(Value::as_str) {
        let ok = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
        if !ok.contains(&dp) {
            causes.push(Cause::not_supported(&format!("{path}.dnsPolicy"), &json!(dp), &ok));
        } else if dp == "None" && spec.get("dnsConfig").is_none() {
            causes.push(Cause::required(
                &format!("{path}.dnsConfig"),
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
        }
    }
    nonnegative(spec, "/terminationGracePeriodSeconds", &format!("{path}.terminationGracePeriodSeconds"), causes);
    if let Some(a) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64) {
        if a <= 0 {
            causes.push(Cause::invalid(
                &format!("{path}.activeDeadlineSeconds"),
                &json!(a),
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    for (i, t) in spec.get("tolerations").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
        if !["Equal", "Exists"].contains(&op) {
            causes.push(Cause::not_supported(
                &format!("{path}.tolerations[{i}].operator"),
                &json!(op),
                &["Equal", "Exists"],
            ));
        }
        if op == "Exists" && t.get("value").and_then(Value::as_str).is_some_and(|v| !v.is_empty()) {
            causes.push(Cause::invalid(
                &format!("{path}.tolerations[{i}].operator"),
                &json!(t["value"]),
                "value must be empty when `operator` is 'Exists'",
            ));
        }
        if let Some(e) = t.get("effect").and_then(Value::as_str) {
            let ok = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
            if !ok.contains(&e) {
                causes.push(Cause::not_supported(&format!("{path}.tolerations[{i}].effect"), &json!(e), &ok));
            }
        }
    }
}

/// `intOrString` percentages and counts as upstream's `ValidatePositiveIntOrPercent`.
fn int_or_percent(v: Option<&Value>, field: &str, causes: &mut Vec<Cause>) -> Option<i64> {
    match v {
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(-1);
            if n < 0 {
                causes.push(Cause::invalid(field, &json!(n), "must be greater than or equal to 0"));
            }
            Some(n)
        }
        Some(Value::String(s)) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) => {
                if p < 0 {
                    causes.push(Cause::invalid(field, &json!(s), "must be greater than or equal to 0"));
                }
                if p > 100 {
                    causes.push(Cause::invalid(field, &json!(s), "must not be greater than 100%"));
                }
                Some(p)
            }
            None => {
                causes.push(Cause::invalid(
                    field,
                    &json!(s),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
                None
            }
        },
        _ => None,
    }
}

pub fn deployment_strategy(obj: &Value, causes: &mut Vec<Cause>) {
    let ty = obj.pointer("/spec/strategy/type").and_then(Value::as_str).unwrap_or("RollingUpdate");
    match ty {
        "Recreate" => {
            if obj.pointer("/spec/strategy/rollingUpdate").is_some() {
                causes.push(Cause::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            let ru = obj.pointer("/spec/strategy/rollingUpdate");
            let surge =
                int_or_percent(ru.and_then(|r| r.get("maxSurge")), "spec.strategy.rollingUpdate.maxSurge", causes);
            let unavailable = int_or_percent(
                ru.and_then(|r| r.get("maxUnavailable")),
                "spec.strategy.rollingUpdate.maxUnavailable",
                causes,
            );
            if surge == Some(0) && unavailable == Some(0) {
                causes.push(Cause::invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    ru.and_then(|r| r.get("maxUnavailable")).unwrap_or(&json!(0)),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        other => causes.push(Cause::not_supported("spec.strategy.type", &json!(other), &["Recreate", "RollingUpdate"])),
    }
    nonnegative(obj, "/spec/revisionHistoryLimit", "spec.revisionHistoryLimit", causes);
    nonnegative(obj, "/spec/minReadySeconds", "spec.minReadySeconds", causes);
    if let (Some(p), m) = (
        obj.pointer("/spec/progressDeadlineSeconds").and_then(Value::as_i64),
        obj.pointer("/spec/minReadySeconds").and_then(Value::as_i64).unwrap_or(0),
    ) {
        if p <= m {
            causes.push(Cause::invalid(
                "spec.progressDeadlineSeconds",
                &json!(p),
                "must be greater than minReadySeconds",
            ));
        }
    }
}

pub fn job(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    for f in ["parallelism", "completions", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"] {
        nonnegative(spec, &format!("/{f}"), &format!("spec.{f}"), causes);
    }
    let rp = spec.pointer("/template/spec/restartPolicy").and_then(Value::as_str);
    match rp {
        None => {
            causes.push(Cause::required("spec.template.spec.restartPolicy", "valid values: \"OnFailure\", \"Never\""))
        }
        Some("OnFailure" | "Never") => {}
        Some(other) => causes.push(Cause::not_supported(
            "spec.template.spec.restartPolicy",
            &json!(other),
            &["OnFailure", "Never"],
        )),
    }
    let mut template = Vec::new();
    pod_spec(
        "spec.template.spec",
        spec.pointer("/template/spec").unwrap_or(&Value::Null),
        &["OnFailure", "Never"],
        &mut template,
    );
    causes.extend(template.into_iter().filter(|c| c.field != "spec.template.spec.restartPolicy"));
    let mode = spec.get("completionMode").and_then(Value::as_str).unwrap_or("NonIndexed");
    if !["NonIndexed", "Indexed"].contains(&mode) {
        causes.push(Cause::not_supported("spec.completionMode", &json!(mode), &["NonIndexed", "Indexed"]));
    }
    if mode == "Indexed" && spec.get("completions").is_none_or(Value::is_null) {
        causes.push(Cause::required("spec.completions", "when completion mode is Indexed"));
    }
    if let Some(old) = old {
        let os = old.get("spec").unwrap_or(&Value::Null);
        if os.get("selector") != spec.get("selector") {
            causes.push(Cause::invalid(
                "spec.selector",
                spec.get("selector").unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
        if os.get("completionMode") != spec.get("completionMode") {
            causes.push(Cause::invalid("spec.completionMode", &json!(mode), "field is immutable"));
        }
        let suspended = spec.get("suspend").and_then(Value::as_bool).unwrap_or(false);
        if os.get("template") != spec.get("template") && !suspended {
            causes.push(Cause::invalid(
                "spec.template",
                spec.get("template").unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
    }
}

/// A cron schedule: five fields, or one of the `@` macros, with an optional `TZ=`/`CRON_TZ=` prefix
/// only through `timeZone`.
pub fn cron_schedule(schedule: &str) -> Result<(), String> {
    let s = schedule.trim();
    if s.is_empty() {
        return Err("empty spec string".into());
    }
    if s.starts_with("TZ=") || s.starts_with("CRON_TZ=") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    if let Some(m) = s.strip_prefix('@') {
        return match m {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => Ok(()),
            _ if m.starts_with("every ") => Ok(()),
            _ => Err(format!("unrecognized descriptor: {s}")),
        };
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: {s}", fields.len()));
    }
    let ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    for (f, (lo, hi)) in fields.iter().zip(ranges) {
        for part in f.split(',') {
            let (range, step) = part.split_once('/').unwrap_or((part, "1"));
            if step.parse::<u32>().map_or(true, |s| s == 0) {
                return Err(format!("failed to parse int from {step}"));
            }
            if range == "*" || range == "?" {
                continue;
            }
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            for x in [a, b] {
                let named = matches!(
                    x.to_ascii_lowercase().as_str(),
                    "jan"
                        | "feb"
                        | "mar"
                        | "apr"
                        | "may"
                        | "jun"
                        | "jul"
                        | "aug"
                        | "sep"
                        | "oct"
                        | "nov"
                        | "dec"
                        | "sun"
                        | "mon"
                        | "tue"
                        | "wed"
                        | "thu"
                        | "fri"
                        | "sat"
                );
                if named {
                    continue;
                }
                match x.parse::<u32>() {
                    Ok(n) if n >= lo && n <= hi => {}
                    Ok(n) => return Err(format!("end of range ({n}) above maximum ({hi}): {part}")),
                    Err(_) => {
                        return Err(format!(
                            "failed to parse int from {x}: strconv.Atoi: parsing {x:?}: invalid syntax"
                        ))
                    }
                }
            }
        }
    }
    Ok(())
}

fn not_supported(obj: &Value, ptr: &str, field: &str, ok: &[&str], causes: &mut Vec<Cause>) {
    if let Some(v) = obj.pointer(ptr).and_then(Value::as_str) {
        if !ok.contains(&v) {
            causes.push(Cause::not_supported(field, &json!(v), ok));
        }
    }
}

fn required_str(obj: &Value, ptr: &str, field: &str, causes: &mut Vec<Cause>) -> Option<String> {
    match obj.pointer(ptr).and_then(Value::as_str).filter(|s| !s.is_empty()) {
        Some(s) => Some(s.to_string()),
        None => {
            causes.push(Cause::required(field, ""));
            None
        }
    }
}

fn immutable(obj: &Value, old: Option<&Value>, ptr: &str, field: &str, causes: &mut Vec<Cause>) {
    if let Some(old) = old {
        if old.pointer(ptr) != obj.pointer(ptr) {
            causes.push(Cause::invalid(field, obj.pointer(ptr).unwrap_or(&Value::Null), "field is immutable"));
        }
    }
}

const ACCESS_MODES: &[&str] = &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];

/// Rules of the kinds beyond workloads and pods, as upstream's validation packages state them.
pub fn other_kinds(group: &str, kind: &str, obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    match (group, kind) {
        ("networking.k8s.io", "Ingress") => {
            let rules = obj.pointer("/spec/rules").and_then(Value::as_array);
            if obj.pointer("/spec/defaultBackend").is_none() && rules.is_none_or(|r| r.is_empty()) {
                causes.push(Cause::invalid(
                    "spec",
                    obj.get("spec").unwrap_or(&Value::Null),
                    "either `defaultBackend` or `rules` must be specified",
                ));
            }
            for (i, r) in rules.into_iter().flatten().enumerate() {
                for (j, p) in r.pointer("/http/paths").and_then(Value::as_array).into_iter().flatten().enumerate() {
                    let base = format!("spec.rules[{i}].http.paths[{j}]");
                    match p.get("pathType").and_then(Value::as_str) {
                        None => causes.push(Cause::required(&format!("{base}.pathType"), "pathType must be specified")),
                        Some(t) if !["Exact", "Prefix", "ImplementationSpecific"].contains(&t) => {
                            causes.push(Cause::not_supported(
                                &format!("{base}.pathType"),
                                &json!(t),
                                &["Exact", "ImplementationSpecific", "Prefix"],
                            ))
                        }
                        Some(t) => {
                            let path = p.get("path").and_then(Value::as_str).unwrap_or("");
                            if t != "ImplementationSpecific" && !path.starts_with('/') {
                                causes.push(Cause::invalid(
                                    &format!("{base}.path"),
                                    &json!(path),
                                    "must be an absolute path",
                                ));
                            }
                        }
                    }
                    let b = p.get("backend").cloned().unwrap_or_default();
                    match (b.get("service"), b.get("resource")) {
                        (Some(_), Some(_)) => causes.push(Cause::invalid(
                            &format!("{base}.backend"),
                            &b,
                            "cannot set both resource and service backends",
                        )),
                        (None, None) => {
                            causes.push(Cause::invalid(&format!("{base}.backend"), &b, "must specify a backend"))
                        }
                        (Some(svc), None) => {
                            let port = svc.get("port").cloned().unwrap_or_default();
                            let named = port.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
                            let numbered = port.get("number").and_then(Value::as_i64).is_some_and(|n| n != 0);
                            if named == numbered {
                                causes.push(Cause::invalid(
                                    &format!("{base}.backend.service.port"),
                                    &port,
                                    "port name or number is required",
                                ));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        ("networking.k8s.io", "IngressClass") => {
            required_str(obj, "/spec/controller", "spec.controller", causes);
            immutable(obj, old, "/spec/controller", "spec.controller", causes);
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            for (i, t) in obj.pointer("/spec/policyTypes").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let t = t.as_str().unwrap_or("");
                if !["Ingress", "Egress"].contains(&t) {
                    causes.push(Cause::not_supported(
                        &format!("spec.policyTypes[{i}]"),
                        &json!(t),
                        &["Ingress", "Egress"],
                    ));
                }
            }
            for dir in ["ingress", "egress"] {
                for (i, r) in
                    obj.pointer(&format!("/spec/{dir}")).and_then(Value::as_array).into_iter().flatten().enumerate()
                {
                    for (j, p) in r.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate() {
                        not_supported(
                            p,
                            "/protocol",
                            &format!("spec.{dir}[{i}].ports[{j}].protocol"),
                            &["SCTP", "TCP", "UDP"],
                            causes,
                        );
                    }
                }
            }
        }
        ("", "PersistentVolume") => {
            if obj.pointer("/spec/capacity").and_then(Value::as_object).is_none_or(|c| c.is_empty()) {
                causes.push(Cause::required("spec.capacity", ""));
            }
            if obj.pointer("/spec/accessModes").and_then(Value::as_array).is_none_or(|a| a.is_empty()) {
                causes.push(Cause::required("spec.accessModes", ""));
            }
            for (i, m) in obj.pointer("/spec/accessModes").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let m = m.as_str().unwrap_or("");
                if !ACCESS_MODES.contains(&m) {
                    causes.push(Cause::not_supported(&format!("spec.accessModes[{i}]"), &json!(m), ACCESS_MODES));
                }
            }
            let sources = [
                "hostPath",
                "local",
                "nfs",
                "csi",
                "iscsi",
                "fc",
                "rbd",
                "cephfs",
                "azureDisk",
                "azureFile",
                "gcePersistentDisk",
                "awsElasticBlockStore",
                "vsphereVolume",
                "portworxVolume",
                "flexVolume",
                "glusterfs",
                "quobyte",
                "scaleIO",
                "storageos",
                "photonPersistentDisk",
                "cinder",
                "flocker",
            ];
            let n = sources.iter().filter(|s| obj.pointer(&format!("/spec/{s}")).is_some()).count();
            if n == 0 {
                causes.push(Cause::required("spec", "must specify a volume type"));
            } else if n > 1 {
                causes.push(Cause::forbidden("spec", "may not specify more than 1 volume type"));
            }
            not_supported(
                obj,
                "/spec/persistentVolumeReclaimPolicy",
                "spec.persistentVolumeReclaimPolicy",
                &["Delete", "Recycle", "Retain"],
                causes,
            );
            not_supported(obj, "/spec/volumeMode", "spec.volumeMode", &["Block", "Filesystem"], causes);
        }
        ("", "PersistentVolumeClaim") => {
            let modes = obj.pointer("/spec/accessModes").and_then(Value::as_array);
            if modes.is_none_or(|a| a.is_empty()) {
                causes.push(Cause::required("spec.accessModes", "at least 1 access mode is required"));
            }
            for (i, m) in modes.into_iter().flatten().enumerate() {
                let m = m.as_str().unwrap_or("");
                if !ACCESS_MODES.contains(&m) {
                    causes.push(Cause::not_supported(&format!("spec.accessModes[{i}]"), &json!(m), ACCESS_MODES));
                }
            }
            if obj.pointer("/spec/resources/requests/storage").is_none() {
                causes.push(Cause::required("spec.resources[storage]", ""));
            }
            not_supported(obj, "/spec/volumeMode", "spec.volumeMode", &["Block", "Filesystem"], causes);
            if let Some(old) = old {
                let strip = |v: &Value| {
                    let mut s = v.get("spec").cloned().unwrap_or_default();
                    if let Some(m) = s.as_object_mut() {
                        m.remove("resources");
                        m.remove("volumeAttributesClassName");
                        if old.pointer("/spec/volumeName").is_none() {
                            m.remove("volumeName");
                        }
                    }
                    s
                };
                if strip(obj) != strip(old) {
                    causes.push(Cause::forbidden(
                        "spec",
                        "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                    ));
                }
            }
        }
        ("storage.k8s.io", "StorageClass") => {
            if let Some(p) = required_str(obj, "/provisioner", "provisioner", causes) {
                if let Err(m) = apimachinery::validation::qualified_name(&p) {
                    causes.push(Cause::invalid("provisioner", &json!(p), &m));
                }
            }
            not_supported(obj, "/reclaimPolicy", "reclaimPolicy", &["Delete", "Retain"], causes);
            not_supported(
                obj,
                "/volumeBindingMode",
                "volumeBindingMode",
                &["Immediate", "WaitForFirstConsumer"],
                causes,
            );
            if let Some(old) = old {
                if old.get("parameters") != obj.get("parameters") {
                    causes.push(Cause::forbidden("parameters", "updates to parameters are forbidden."));
                }
                if old.get("provisioner") != obj.get("provisioner") {
                    causes.push(Cause::forbidden("provisioner", "updates to provisioner are forbidden."));
                }
                if old.get("reclaimPolicy") != obj.get("reclaimPolicy") {
                    causes.push(Cause::forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."));
                }
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            not_supported(obj, "/addressType", "addressType", &["FQDN", "IPv4", "IPv6"], causes);
            if obj.get("addressType").is_none() {
                causes.push(Cause::required("addressType", ""));
            }
            let eps = obj.get("endpoints").and_then(Value::as_array);
            if eps.is_some_and(|e| e.len() > 1000) {
                causes.push(Cause {
                    reason: "FieldValueTooMany".into(),
                    message: format!("Too many: {}: must have at most 1000 items", eps.map(Vec::len).unwrap_or(0)),
                    field: "endpoints".into(),
                });
            }
            for (i, e) in eps.into_iter().flatten().enumerate() {
                let addrs = e.get("addresses").and_then(Value::as_array);
                if addrs.is_none_or(|a| a.is_empty()) {
                    causes
                        .push(Cause::required(&format!("endpoints[{i}].addresses"), "must contain at least 1 address"));
                }
                let ty = obj.get("addressType").and_then(Value::as_str).unwrap_or("");
                for (j, a) in addrs.into_iter().flatten().enumerate() {
                    let a = a.as_str().unwrap_or("");
                    let ok = match ty {
                        "IPv4" => a.parse::<std::net::Ipv4Addr>().is_ok(),
                        "IPv6" => a.parse::<std::net::Ipv6Addr>().is_ok(),
                        _ => true,
                    };
                    if !ok {
                        causes.push(Cause::invalid(
                            &format!("endpoints[{i}].addresses[{j}]"),
                            &json!(a),
                            &format!("must be a valid {ty} address"),
                        ));
                    }
                }
            }
            for (i, p) in obj.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate() {
                if let Some(n) = p.get("port").and_then(Value::as_i64) {
                    if !(1..=65535).contains(&n) {
                        causes.push(Cause::invalid(
                            &format!("ports[{i}].port"),
                            &json!(n),
                            "must be between 1 and 65535, inclusive",
                        ));
                    }
                }
            }
        }
        ("", "Endpoints") => {
            for (i, s) in obj.get("subsets").and_then(Value::as_array).into_iter().flatten().enumerate() {
                for list in ["addresses", "notReadyAddresses"] {
                    for (j, a) in s.get(list).and_then(Value::as_array).into_iter().flatten().enumerate() {
                        let ip = a.get("ip").and_then(Value::as_str).unwrap_or("");
                        if ip.parse::<std::net::IpAddr>().is_err() {
                            causes.push(Cause::invalid(
                                &format!("subsets[{i}].{list}[{j}].ip"),
                                &json!(ip),
                                "must be a valid IP address",
                            ));
                        }
                    }
                }
                for (j, p) in s.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate() {
                    let n = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                    if !(1..=65535).contains(&n) {
                        causes.push(Cause::invalid(
                            &format!("subsets[{i}].ports[{j}].port"),
                            &json!(n),
                            "must be between 1 and 65535, inclusive",
                        ));
                    }
                }
            }
        }
        ("", "LimitRange") => {
            for (i, l) in obj.pointer("/spec/limits").and_then(Value::as_array).into_iter().flatten().enumerate() {
                not_supported(
                    l,
                    "/type",
                    &format!("spec.limits[{i}].type"),
                    &["Container", "PersistentVolumeClaim", "Pod"],
                    causes,
                );
            }
        }
        ("", "ResourceQuota") => {
            for (k, v) in obj.pointer("/spec/hard").and_then(Value::as_object).into_iter().flatten() {
                let q = v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
                match quantity(&q) {
                    Some(n) if n >= 0.0 => {}
                    Some(_) => causes.push(Cause::invalid(
                        &format!("spec.hard[{k}]"),
                        &json!(q),
                        "must be greater than or equal to 0",
                    )),
                    None => causes.push(Cause::invalid(
                        &format!("spec.hard[{k}]"),
                        &json!(q),
                        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    )),
                }
            }
        }
        ("", "Node") => {
            for (i, t) in obj.pointer("/spec/taints").and_then(Value::as_array).into_iter().flatten().enumerate() {
                not_supported(
                    t,
                    "/effect",
                    &format!("spec.taints[{i}].effect"),
                    &["NoSchedule", "PreferNoSchedule", "NoExecute"],
                    causes,
                );
                if t.get("key").and_then(Value::as_str).is_none_or(str::is_empty) {
                    causes.push(Cause::required(&format!("spec.taints[{i}].key"), ""));
                }
            }
        }
        ("node.k8s.io", "RuntimeClass") => {
            if let Some(h) = required_str(obj, "/handler", "handler", causes) {
                if let Err(msgs) = apimachinery::validation::dns1123_label(&h) {
                    for m in msgs {
                        causes.push(Cause::invalid("handler", &json!(h), &m));
                    }
                }
            }
            immutable(obj, old, "/handler", "handler", causes);
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            required_str(obj, "/spec/request", "spec.request", causes);
            if let Some(request) = obj.pointer("/spec/request").and_then(Value::as_str).filter(|r| !r.is_empty()) {
                let pem =
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, request).unwrap_or_default();
                if let Err(why) = pki::csr::parse(&pem) {
                    causes.push(Cause::invalid("spec.request", &json!(request), &why));
                }
            }
            required_str(obj, "/spec/signerName", "spec.signerName", causes);
            let usages = obj.pointer("/spec/usages").and_then(Value::as_array);
            if usages.is_none_or(|u| u.is_empty()) {
                causes.push(Cause::required("spec.usages", ""));
            }
            if let Some(s) = obj.pointer("/spec/expirationSeconds").and_then(Value::as_i64) {
                if s < 600 {
                    causes.push(Cause::invalid(
                        "spec.expirationSeconds",
                        &json!(s),
                        "may not specify a duration less than 600 seconds (10 minutes)",
                    ));
                }
            }
            if old.is_some() {
                immutable(obj, old, "/spec/request", "spec.request", causes);
            }
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration") => {
            let mut names = std::collections::HashSet::new();
            for (i, w) in obj.get("webhooks").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let base = format!("webhooks[{i}]");
                match w.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                    None => causes.push(Cause::required(&format!("{base}.name"), "")),
                    Some(n) => {
                        if n.split('.').count() < 3 {
                            causes.push(Cause::invalid(
                                &format!("{base}.name"),
                                &json!(n),
                                "should be a domain with at least three segments separated by dots",
                            ));
                        } else if !names.insert(n.to_string()) {
                            causes.push(Cause::duplicate(&format!("{base}.name"), &json!(n)));
                        }
                    }
                }
                match w.get("sideEffects").and_then(Value::as_str) {
                    None => causes.push(Cause::required(
                        &format!("{base}.sideEffects"),
                        "must specify one of None, NoneOnDryRun",
                    )),
                    Some(s) if !["None", "NoneOnDryRun"].contains(&s) => causes.push(Cause::not_supported(
                        &format!("{base}.sideEffects"),
                        &json!(s),
                        &["None", "NoneOnDryRun"],
                    )),
                    _ => {}
                }
                if w.get("admissionReviewVersions").and_then(Value::as_array).is_none_or(|v| v.is_empty()) {
                    causes.push(Cause::required(
                        &format!("{base}.admissionReviewVersions"),
                        "must specify one of v1, v1beta1",
                    ));
                }
                let cc = w.get("clientConfig").cloned().unwrap_or_default();
                if cc.get("url").is_some() == cc.get("service").is_some() {
                    causes.push(Cause::required(
                        &format!("{base}.clientConfig"),
                        "exactly one of url or service is required",
                    ));
                }
                not_supported(w, "/failurePolicy", &format!("{base}.failurePolicy"), &["Fail", "Ignore"], causes);
                not_supported(w, "/matchPolicy", &format!("{base}.matchPolicy"), &["Equivalent", "Exact"], causes);
                if let Some(t) = w.get("timeoutSeconds").and_then(Value::as_i64) {
                    if !(1..=30).contains(&t) {
                        causes.push(Cause::invalid(
                            &format!("{base}.timeoutSeconds"),
                            &json!(t),
                            "the timeout value must be between 1 and 30 seconds",
                        ));
                    }
                }
            }
        }
        ("storage.k8s.io", "CSIDriver") => {
            for f in ["attachRequired", "podInfoOnMount", "volumeLifecycleModes", "fsGroupPolicy"] {
                immutable(obj, old, &format!("/spec/{f}"), &format!("spec.{f}"), causes);
            }
            not_supported(
                obj,
                "/spec/fsGroupPolicy",
                "spec.fsGroupPolicy",
                &["File", "None", "ReadWriteOnceWithFSType"],
                causes,
            );
        }
        ("storage.k8s.io", "CSINode") => {
            for (i, d) in obj.pointer("/spec/drivers").and_then(Value::as_array).into_iter().flatten().enumerate() {
                required_str(d, "/name", &format!("spec.drivers[{i}].name"), causes);
                required_str(d, "/nodeID", &format!("spec.drivers[{i}].nodeID"), causes);
            }
        }
        ("storage.k8s.io", "VolumeAttachment") => {
            required_str(obj, "/spec/attacher", "spec.attacher", causes);
            required_str(obj, "/spec/nodeName", "spec.nodeName", causes);
            let src = obj.pointer("/spec/source").cloned().unwrap_or_default();
            if src.get("persistentVolumeName").is_some() == src.get("inlineVolumeSpec").is_some() {
                causes.push(Cause::required(
                    "spec.source",
                    "must specify exactly one of inlineVolumeSpec and persistentVolumeName",
                ));
            }
            immutable(obj, old, "/spec", "spec", causes);
        }
        ("apps", "ControllerRevision") => {
            if let Some(r) = obj.get("revision").and_then(Value::as_i64) {
                if r < 0 {
                    causes.push(Cause::invalid("revision", &json!(r), "must be greater than or equal to 0"));
                }
            }
            immutable(obj, old, "/data", "data", causes);
        }
        ("", "Event") | ("events.k8s.io", "Event") => {
            if obj.get("involvedObject").is_none() && obj.get("regarding").is_none() {
                causes.push(Cause::required("involvedObject", ""));
            }
            if obj.get("reason").and_then(Value::as_str).is_some_and(|r| r.len() > 128) {
                causes.push(Cause::invalid("reason", &obj["reason"], "can have at most 128 characters"));
            }
            not_supported(obj, "/type", "type", &["Normal", "Warning"], causes);
        }
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => {
            required_str(obj, "/spec/priorityLevelConfiguration/name", "spec.priorityLevelConfiguration.name", causes);
            if let Some(p) = obj.pointer("/spec/matchingPrecedence").and_then(Value::as_i64) {
                if !(1..=10000).contains(&p) {
                    causes.push(Cause::invalid(
                        "spec.matchingPrecedence",
                        &json!(p),
                        "must be between 1 and 10000, inclusive",
                    ));
                }
            }
            not_supported(
                obj,
                "/spec/distinguisherMethod/type",
                "spec.distinguisherMethod.type",
                &["ByNamespace", "ByUser"],
                causes,
            );
        }
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => {
            not_supported(obj, "/spec/type", "spec.type", &["Exempt", "Limited"], causes);
            if obj.pointer("/spec/type").is_none() {
                causes.push(Cause::required("spec.type", "must be 'Exempt' if and only if `name` is 'exempt'"));
            }
        }
        ("networking.k8s.io", "IPAddress") => {
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            match name.parse::<std::net::IpAddr>() {
                Ok(ip) if ip.to_string() == name => {}
                Ok(ip) => causes.push(Cause::invalid(
                    "metadata.name",
                    &json!(name),
                    &format!("must be in canonical form (\"{ip}\")"),
                )),
                Err(_) => causes.push(Cause::invalid(
                    "metadata.name",
                    &json!(name),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )),
            }
            if obj.pointer("/spec/parentRef").is_none() {
                causes.push(Cause::required("spec.parentRef", ""));
            }
            immutable(obj, old, "/spec/parentRef", "spec.parentRef", causes);
        }
        ("networking.k8s.io", "ServiceCIDR") => {
            let cidrs = obj.pointer("/spec/cidrs").and_then(Value::as_array);
            match cidrs.map(Vec::len) {
                None | Some(0) => causes.push(Cause::required("spec.cidrs", "at least one CIDR required")),
                Some(n) if n > 2 => causes.push(Cause::invalid(
                    "spec.cidrs",
                    obj.pointer("/spec/cidrs").unwrap_or(&Value::Null),
                    "may only hold up to 2 values",
                )),
                _ => {}
            }
            for (i, c) in cidrs.into_iter().flatten().enumerate() {
                let c = c.as_str().unwrap_or("");
                let ok = c
                    .split_once('/')
                    .is_some_and(|(ip, len)| ip.parse::<std::net::IpAddr>().is_ok() && len.parse::<u8>().is_ok());
                if !ok {
                    causes.push(Cause::invalid(
                        &format!("spec.cidrs[{i}]"),
                        &json!(c),
                        "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                    ));
                }
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let group = required_str(obj, "/spec/group", "spec.group", causes);
            let plural = required_str(obj, "/spec/names/plural", "spec.names.plural", causes);
            required_str(obj, "/spec/names/kind", "spec.names.kind", causes);
            if let (Some(g), Some(p)) = (&group, &plural) {
                let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
                if name != format!("{p}.{g}") {
                    causes.push(Cause::invalid(
                        "metadata.name",
                        &json!(name),
                        "must be spec.names.plural+\".\"+spec.group",
                    ));
                }
            }
            not_supported(obj, "/spec/scope", "spec.scope", &["Cluster", "Namespaced"], causes);
            let versions = obj.pointer("/spec/versions").and_then(Value::as_array);
            let storage = versions
                .into_iter()
                .flatten()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .count();
            if storage != 1 {
                causes.push(Cause::invalid(
                    "spec.versions",
                    obj.pointer("/spec/versions").unwrap_or(&Value::Null),
                    "must have exactly one version marked as storage version",
                ));
            }
            immutable(obj, old, "/spec/group", "spec.group", causes);
        }
        ("apps", "StatefulSet") => {
            not_supported(
                obj,
                "/spec/podManagementPolicy",
                "spec.podManagementPolicy",
                &["OrderedReady", "Parallel"],
                causes,
            );
            not_supported(
                obj,
                "/spec/updateStrategy/type",
                "spec.updateStrategy.type",
                &["OnDelete", "RollingUpdate"],
                causes,
            );
            for f in ["serviceName", "podManagementPolicy", "volumeClaimTemplates"] {
                if old.is_some_and(|o| o.pointer(&format!("/spec/{f}")) != obj.pointer(&format!("/spec/{f}"))) {
                    causes.push(Cause::forbidden(
                        "spec",
                        "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                    ));
                    break;
                }
            }
        }
        ("apps", "DaemonSet") => {
            not_supported(
                obj,
                "/spec/updateStrategy/type",
                "spec.updateStrategy.type",
                &["OnDelete", "RollingUpdate"],
                causes,
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(causes: &[Cause]) -> Vec<String> {
        causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn pod_spec_messages_as_upstream() {
        let spec = json!({
            "restartPolicy": "Sometimes",
            "volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}],
            "containers": [{"name": "c", "image": "i",
                "volumeMounts": [{"name": "missing", "mountPath": "/m"}],
                "livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2},
                "resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "1"}},
                "env": [{"name": "A=B", "value": "x"}]}]
        });
        let mut causes = Vec::new();
        pod_spec("spec", &spec, &["Always", "OnFailure", "Never"], &mut causes);
        assert_eq!(
            msgs(&causes),
            vec![
                "spec.volumes[1].name: Duplicate value: \"v\"",
                "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                "spec.containers[0].volumeMounts[0].name: Not found: \"missing\"",
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                "spec.containers[0].resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 500m",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ]
        );
    }

    #[test]
    fn deployment_and_job_rules() {
        let mut causes = Vec::new();
        deployment_strategy(
            &json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}}}),
            &mut causes,
        );
        assert_eq!(
            msgs(&causes),
            vec![
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0"
            ]
        );
        let mut causes = Vec::new();
        job(
            &json!({"spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}}),
            None,
            &mut causes,
        );
        assert_eq!(
            msgs(&causes),
            vec!["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]
        );
        assert!(cron_schedule("*/5 * * * *").is_ok());
        assert!(cron_schedule("@hourly").is_ok());
        assert!(cron_schedule("0 0 * JAN-MAR MON").is_ok());
        assert!(cron_schedule("61 * * * *").is_err());
        assert!(cron_schedule("* * *").is_err());
        assert_eq!(quantity("1Gi"), Some(1073741824.0));
        assert_eq!(quantity("250m"), Some(0.25));
    }

    #[test]
    fn other_kinds_messages() {
        let mut causes = Vec::new();
        let ing = json!({"spec": {"rules": [{"http": {"paths": [{"path": "x", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {}}}}]}}]}});
        other_kinds("networking.k8s.io", "Ingress", &ing, None, &mut causes);
        assert_eq!(
            msgs(&causes),
            vec![
                "spec.rules[0].http.paths[0].path: Invalid value: \"x\": must be an absolute path",
                "spec.rules[0].http.paths[0].backend.service.port: Invalid value: {}: port name or number is required",
            ]
        );
        let mut causes = Vec::new();
        other_kinds(
            "",
            "PersistentVolumeClaim",
            &json!({"spec": {"accessModes": ["ReadWriteSometimes"]}}),
            None,
            &mut causes,
        );
        assert_eq!(causes.len(), 2, "{:?}", msgs(&causes));
        let mut causes = Vec::new();
        let w = json!({"webhooks": [{"name": "short", "clientConfig": {}}]});
        other_kinds("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", &w, None, &mut causes);
        assert_eq!(causes.len(), 4, "{:?}", msgs(&causes));
        let mut causes = Vec::new();
        let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"}, "versions": [{"name": "v1", "served": true, "storage": false}]}});
        other_kinds("apiextensions.k8s.io", "CustomResourceDefinition", &crd, None, &mut causes);
        assert_eq!(causes.len(), 1, "{:?}", msgs(&causes));
        assert!(msgs(&causes)[0].contains("exactly one version marked as storage version"));
        let mut causes = Vec::new();
        other_kinds(
            "networking.k8s.io",
            "IPAddress",
            &json!({"metadata": {"name": "10.0.0.01"}, "spec": {"parentRef": {}}}),
            None,
            &mut causes,
        );
        assert_eq!(causes.len(), 1, "{:?}", msgs(&causes));
    }
}
