//! Pod Security admission: the levels `privileged`, `baseline` and `restricted`, chosen per namespace
//! by the labels `pod-security.kubernetes.io/{enforce,audit,warn}[-version]`, with upstream's checks,
//! their order and their messages.
//!
//! Every check is evaluated as the newest policy version: a `-version` label is carried into the
//! messages (`restricted:v1.30`) but older versions' relaxed checks are not modelled.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// A level at a version (`restricted:latest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub level: Level,
    pub version: String,
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// The three modes' policies of a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespacePolicy {
    pub enforce: Policy,
    pub audit: Policy,
    pub warn: Policy,
}

/// `--admission-control-config-file`'s PodSecurity configuration (`PodSecurityConfiguration`).
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub defaults: BTreeMap<String, String>,
    pub exempt_usernames: BTreeSet<String>,
    pub exempt_namespaces: BTreeSet<String>,
    pub exempt_runtime_classes: BTreeSet<String>,
}

impl Config {
    /// Reads a `PodSecurityConfiguration` (pod-security.admission.config.k8s.io/v1).
    pub fn from_value(v: &Value) -> Result<Config, String> {
        let mut c = Config::default();
        if let Some(d) = v.get("defaults").and_then(Value::as_object) {
            for (k, val) in d {
                let s = val.as_str().ok_or_else(|| format!("defaults.{k}: must be a string"))?;
                c.defaults.insert(k.clone(), s.to_string());
            }
        }
        for (k, level) in &c.defaults {
            if !k.ends_with("-version") && k != "enforce" && k != "audit" && k != "warn" {
                return Err(format!("defaults.{k}: unknown field"));
            }
            if !k.ends_with("-version") && Level::parse(level).is_none() {
                return Err(format!(
                    "defaults.{k}: Invalid value: {level:?}: must be one of privileged, baseline, restricted"
                ));
            }
        }
        let list = |field: &str| -> BTreeSet<String> {
            v.pointer(&format!("/exemptions/{field}"))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
                .unwrap_or_default()
        };
        c.exempt_usernames = list("usernames");
        c.exempt_namespaces = list("namespaces");
        c.exempt_runtime_classes = list("runtimeClasses");
        Ok(c)
    }

    fn default_for(&self, mode: &str) -> Policy {
        Policy {
            level: self.defaults.get(mode).and_then(|l| Level::parse(l)).unwrap_or(Level::Privileged),
            version: self.defaults.get(&format!("{mode}-version")).cloned().unwrap_or_else(|| "latest".into()),
        }
    }

    /// The policies a namespace's labels select. An unreadable enforce level enforces `restricted`, as
    /// upstream does; unreadable audit/warn levels fall back to the defaults.
    pub fn namespace_policy(&self, labels: &BTreeMap<String, String>) -> NamespacePolicy {
        let get = |mode: &str| -> Policy {
            let mut p = self.default_for(mode);
            if let Some(l) = labels.get(&format!("{LABEL_PREFIX}{mode}")) {
                match Level::parse(l) {
                    Some(level) => p.level = level,
                    None if mode == "enforce" => {
                        return Policy { level: Level::Restricted, version: "latest".into() };
                    }
                    None => {}
                }
            }
            if let Some(v) = labels.get(&format!("{LABEL_PREFIX}{mode}-version")) {
                if valid_version(v) {
                    p.version = v.clone();
                }
            }
            p
        };
        NamespacePolicy { enforce: get("enforce"), audit: get("audit"), warn: get("warn") }
    }
}

fn valid_version(v: &str) -> bool {
    v == "latest"
        || v.strip_prefix("v1.").is_some_and(|minor| !minor.is_empty() && minor.chars().all(|c| c.is_ascii_digit()))
}

/// Upstream's validation of the labels on a namespace (create and update).
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Vec<(String, String, String)> {
    let mut errs = Vec::new();
    for mode in ["enforce", "audit", "warn"] {
        let key = format!("{LABEL_PREFIX}{mode}");
        if let Some(v) = labels.get(&key) {
            if Level::parse(v).is_none() {
                errs.push((key.clone(), v.clone(), "must be one of privileged, baseline, restricted".to_string()));
            }
        }
        let key = format!("{key}-version");
        if let Some(v) = labels.get(&key) {
            if !valid_version(v) {
                errs.push((key, v.clone(), "must be \"latest\" or \"v1.x\"".to_string()));
            }
        }
    }
    errs
}

/// One failed check: upstream's reason and detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub reason: &'static str,
    pub detail: String,
}

/// One check over a pod spec.
type Check = fn(&Value) -> Option<Violation>;

/// The violations of a pod spec at a level, in upstream's order (baseline checks, then restricted
/// ones, each sorted by check id; a restricted check replaces the baseline check it overrides).
pub fn evaluate(level: Level, spec: &Value) -> Vec<Violation> {
    if level == Level::Privileged {
        return Vec::new();
    }
    let mut baseline: Vec<(&str, Check)> = vec![
        ("appArmorProfile", app_armor),
        ("capabilities_baseline", capabilities_baseline),
        ("hostNamespaces", host_namespaces),
        ("hostPathVolumes", host_path_volumes),
        ("hostPorts", host_ports),
        ("hostProbesAndHostLifecycle", host_probes),
        ("privileged", privileged),
        ("procMount", proc_mount),
        ("seLinuxOptions", se_linux),
        ("seccompProfile_baseline", seccomp_baseline),
        ("sysctls", sysctls),
        ("windowsHostProcess", windows_host_process),
    ];
    if level == Level::Restricted {
        // Overridden by their restricted counterparts.
        baseline
            .retain(|(id, _)| !matches!(*id, "capabilities_baseline" | "hostPathVolumes" | "seccompProfile_baseline"));
        baseline.extend([
            ("allowPrivilegeEscalation", allow_privilege_escalation as Check),
            ("capabilities_restricted", capabilities_restricted),
            ("restrictedVolumes", restricted_volumes),
            ("runAsNonRoot", run_as_non_root),
            ("runAsUser", run_as_user),
            ("seccompProfile_restricted", seccomp_restricted),
        ]);
    }
    baseline.iter().filter_map(|(_, check)| check(spec)).collect()
}

/// `violates PodSecurity "restricted:latest": privileged (container "c" must not ...), ...`
pub fn message(policy: &Policy, violations: &[Violation]) -> String {
    format!("violates PodSecurity \"{policy}\": {}", details(violations))
}

/// The warning form: `would violate PodSecurity "restricted:latest": ...`.
pub fn warning(policy: &Policy, violations: &[Violation]) -> String {
    format!("would violate PodSecurity \"{policy}\": {}", details(violations))
}

fn details(violations: &[Violation]) -> String {
    let parts: Vec<String> = violations
        .iter()
        .map(|v| if v.detail.is_empty() { v.reason.to_string() } else { format!("{} ({})", v.reason, v.detail) })
        .collect();
    parts.join(", ")
}

fn violation(reason: &'static str, detail: String) -> Option<Violation> {
    Some(Violation { reason, detail })
}

fn quote(items: &[String]) -> String {
    items.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
}

fn plural<'a>(one: &'a str, many: &'a str, n: usize) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    format!("{} {}", plural("container", "containers", names.len()), quote(names))
}

/// Every container: init, regular and ephemeral, in that order.
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |f| spec.get(f).and_then(Value::as_array).into_iter().flatten())
}

fn cname(c: &Value) -> String {
    c.get("name").and_then(Value::as_str).unwrap_or("").to_string()
}

fn ctx<'a>(c: &'a Value, path: &str) -> Option<&'a Value> {
    c.pointer(&format!("/securityContext/{path}")).filter(|v| !v.is_null())
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

/// Pods in their own user namespace (`hostUsers: false`) may run as root inside it.
fn user_namespaced(spec: &Value) -> bool {
    spec.get("hostUsers") == Some(&Value::Bool(false))
}

fn host_namespaces(spec: &Value) -> Option<Violation> {
    let set: Vec<&str> = ["hostIPC", "hostNetwork", "hostPID"]
        .into_iter()
        .filter(|f| spec.get(*f) == Some(&Value::Bool(true)))
        .collect();
    if set.is_empty() {
        return None;
    }
    violation("host namespaces", set.join(", "))
}

fn privileged(spec: &Value) -> Option<Violation> {
    let bad: Vec<String> =
        containers(spec).filter(|c| ctx(c, "privileged") == Some(&Value::Bool(true))).map(cname).collect();
    if bad.is_empty() {
        return None;
    }
    violation("privileged", format!("{} must not set securityContext.privileged=true", containers_phrase(&bad)))
}

const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities_baseline(spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        let added: Vec<String> = str_list(ctx(c, "capabilities/add"))
            .into_iter()
            .filter(|cap| !BASELINE_CAPABILITIES.contains(&cap.as_str()))
            .collect();
        if !added.is_empty() {
            bad.push(cname(c));
            caps.extend(added);
        }
    }
    if bad.is_empty() {
        return None;
    }
    let caps: Vec<String> = caps.into_iter().collect();
    violation(
        "non-default capabilities",
        format!("{} must not include {} in securityContext.capabilities.add", containers_phrase(&bad), quote(&caps)),
    )
}

fn capabilities_restricted(spec: &Value) -> Option<Violation> {
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        if ctx(c, "capabilities").is_none() {
            missing_drop.push(cname(c));
            continue;
        }
        if !str_list(ctx(c, "capabilities/drop")).iter().any(|d| d == "ALL") {
            missing_drop.push(cname(c));
        }
        let added: Vec<String> =
            str_list(ctx(c, "capabilities/add")).into_iter().filter(|cap| cap != "NET_BIND_SERVICE").collect();
        if !added.is_empty() {
            adding.push(cname(c));
            caps.extend(added);
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details
            .push(format!("{} must set securityContext.capabilities.drop=[\"ALL\"]", containers_phrase(&missing_drop)));
    }
    if !adding.is_empty() {
        let caps: Vec<String> = caps.into_iter().collect();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            quote(&caps)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

fn volume_names_where(spec: &Value, f: impl Fn(&Value) -> bool) -> Vec<String> {
    spec.get("volumes").and_then(Value::as_array).into_iter().flatten().filter(|v| f(v)).map(cname).collect()
}

fn host_path_volumes(spec: &Value) -> Option<Violation> {
    let bad = volume_names_where(spec, |v| v.get("hostPath").is_some_and(|h| !h.is_null()));
    if bad.is_empty() {
        return None;
    }
    violation("hostPath volumes", format!("{} {}", plural("volume", "volumes", bad.len()), quote(&bad)))
}

const ALLOWED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
    "image",
];

fn restricted_volumes(spec: &Value) -> Option<Violation> {
    let mut names = Vec::new();
    let mut types = BTreeSet::new();
    for v in spec.get("volumes").and_then(Value::as_array).into_iter().flatten() {
        let Some(obj) = v.as_object() else { continue };
        let kinds: Vec<&String> =
            obj.iter().filter(|(k, val)| *k != "name" && !val.is_null()).map(|(k, _)| k).collect();
        let bad: Vec<&String> = kinds.iter().copied().filter(|k| !ALLOWED_VOLUME_TYPES.contains(&k.as_str())).collect();
        if !bad.is_empty() {
            names.push(cname(v));
            types.extend(bad.into_iter().cloned());
        }
    }
    if names.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            plural("volume", "volumes", names.len()),
            quote(&names),
            plural("uses", "use", names.len()),
            plural("restricted volume type", "restricted volume types", types.len()),
            quote(&types)
        ),
    )
}

fn host_ports(spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut ports = Vec::new();
    for c in containers(spec) {
        let mut any = false;
        for p in c.get("ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(hp) = p.get("hostPort").and_then(Value::as_i64).filter(|p| *p != 0) {
                any = true;
                ports.push(hp.to_string());
            }
        }
        if any {
            bad.push(cname(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            plural("uses", "use", bad.len()),
            plural("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

fn host_probes(spec: &Value) -> Option<Violation> {
    let mut bad = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for c in containers(spec) {
        for handler in ["livenessProbe", "readinessProbe", "startupProbe", "lifecycle/postStart", "lifecycle/preStop"] {
            for kind in ["httpGet", "tcpSocket"] {
                if let Some(h) =
                    c.pointer(&format!("/{handler}/{kind}/host")).and_then(Value::as_str).filter(|h| !h.is_empty())
                {
                    bad.insert(cname(c));
                    hosts.insert(h.to_string());
                }
            }
        }
    }
    if bad.is_empty() {
        return None;
    }
    let bad: Vec<String> = bad.into_iter().collect();
    let hosts: Vec<String> = hosts.into_iter().collect();
    violation(
        "probe or lifecycle host",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            plural("uses", "use", bad.len()),
            plural("probe or lifecycle host", "probe or lifecycle hosts", hosts.len()),
            quote(&hosts)
        ),
    )
}

fn proc_mount(spec: &Value) -> Option<Violation> {
    if user_namespaced(spec) {
        return None;
    }
    let mut bad = Vec::new();
    let mut values = BTreeSet::new();
    for c in containers(spec) {
        if let Some(pm) = ctx(c, "procMount").and_then(Value::as_str).filter(|p| *p != "Default") {
            bad.push(cname(c));
            values.insert(pm.to_string());
        }
    }
    if bad.is_empty() {
        return None;
    }
    let values: Vec<String> = values.into_iter().collect();
    violation(
        "procMount",
        format!("{} must not set securityContext.procMount to {}", containers_phrase(&bad), quote(&values)),
    )
}

fn se_linux(spec: &Value) -> Option<Violation> {
    const TYPES: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"];
    let mut setters = Vec::new();
    let mut bad_types = BTreeSet::new();
    let mut user = false;
    let mut role = false;
    let mut check = |o: Option<&Value>| -> bool {
        let Some(o) = o else { return false };
        let mut bad = false;
        if let Some(t) = o.get("type").and_then(Value::as_str) {
            if !TYPES.contains(&t) {
                bad_types.insert(t.to_string());
                bad = true;
            }
        }
        if o.get("user").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
            user = true;
            bad = true;
        }
        if o.get("role").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
            role = true;
            bad = true;
        }
        bad
    };
    if check(spec.pointer("/securityContext/seLinuxOptions")) {
        setters.push("pod".to_string());
    }
    let bad_containers: Vec<String> = containers(spec).filter(|c| check(ctx(c, "seLinuxOptions"))).map(cname).collect();
    if !bad_containers.is_empty() {
        setters.push(containers_phrase(&bad_containers));
    }
    if setters.is_empty() {
        return None;
    }
    let mut what = Vec::new();
    if !bad_types.is_empty() {
        let t: Vec<String> = bad_types.into_iter().collect();
        what.push(format!("{} {}", plural("type", "types", t.len()), quote(&t)));
    }
    if user {
        what.push("user may not be set".to_string());
    }
    if role {
        what.push("role may not be set".to_string());
    }
    violation(
        "seLinuxOptions",
        format!("{} set forbidden securityContext.seLinuxOptions: {}", setters.join(" and "), what.join("; ")),
    )
}

fn seccomp_type(o: Option<&Value>) -> Option<&str> {
    o.and_then(|v| v.get("type")).and_then(Value::as_str)
}

fn seccomp_baseline(spec: &Value) -> Option<Violation> {
    let mut setters = Vec::new();
    if seccomp_type(spec.pointer("/securityContext/seccompProfile")) == Some("Unconfined") {
        setters.push("pod".to_string());
    }
    let bad: Vec<String> =
        containers(spec).filter(|c| seccomp_type(ctx(c, "seccompProfile")) == Some("Unconfined")).map(cname).collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!("{} must not set securityContext.seccompProfile.type to \"Unconfined\"", setters.join(" and ")),
    )
}

fn seccomp_restricted(spec: &Value) -> Option<Violation> {
    let valid = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    let mut pod_set = false;
    if let Some(t) = seccomp_type(spec.pointer("/securityContext/seccompProfile")) {
        if valid(t) {
            pod_set = true;
        } else {
            setters.push("pod".to_string());
            values.insert(t.to_string());
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match seccomp_type(ctx(c, "seccompProfile")) {
            Some(t) if !valid(t) => {
                explicit.push(cname(c));
                values.insert(t.to_string());
            }
            Some(_) => {}
            None if !pod_set => implicit.push(cname(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        let values: Vec<String> = values.into_iter().collect();
        return violation(
            "seccompProfile",
            format!("{} must not set securityContext.seccompProfile.type to {}", setters.join(" and "), quote(&values)),
        );
    }
    if !implicit.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

fn sysctls(spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = spec
        .pointer("/securityContext/sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .filter(|n| !apimachinery::sysctls::SAFE.contains(n))
        .map(String::from)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation("forbidden sysctls", bad.join(", "))
}

fn app_armor(spec: &Value) -> Option<Violation> {
    let bad_type =
        |o: Option<&Value>| seccomp_type(o).filter(|t| *t != "RuntimeDefault" && *t != "Localhost").map(String::from);
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    if let Some(t) = bad_type(spec.pointer("/securityContext/appArmorProfile")) {
        setters.push("pod".to_string());
        values.insert(t);
    }
    let mut bad = Vec::new();
    for c in containers(spec) {
        if let Some(t) = bad_type(ctx(c, "appArmorProfile")) {
            bad.push(cname(c));
            values.insert(t);
        }
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    let values: Vec<String> = values.into_iter().collect();
    violation(
        "appArmorProfile",
        format!("{} must not set appArmorProfile.type to {}", setters.join(" and "), quote(&values)),
    )
}

fn windows_host_process(spec: &Value) -> Option<Violation> {
    let pod = spec.pointer("/securityContext/windowsOptions/hostProcess") == Some(&Value::Bool(true));
    let bad: Vec<String> = containers(spec)
        .filter(|c| ctx(c, "windowsOptions/hostProcess") == Some(&Value::Bool(true)))
        .map(cname)
        .collect();
    if !pod && bad.is_empty() {
        return None;
    }
    let mut setters = Vec::new();
    if pod {
        setters.push("pod".to_string());
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    violation(
        "hostProcess",
        format!("{} must not set securityContext.windowsOptions.hostProcess=true", setters.join(" and ")),
    )
}

fn allow_privilege_escalation(spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = containers(spec)
        .filter(|c| ctx(c, "allowPrivilegeEscalation") != Some(&Value::Bool(false)))
        .map(cname)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!("{} must set securityContext.allowPrivilegeEscalation=false", containers_phrase(&bad)),
    )
}

fn run_as_non_root(spec: &Value) -> Option<Violation> {
    if user_namespaced(spec) {
        return None;
    }
    let mut setters = Vec::new();
    let mut pod_true = false;
    match spec.pointer("/securityContext/runAsNonRoot") {
        Some(Value::Bool(false)) => setters.push("pod".to_string()),
        Some(Value::Bool(true)) => pod_true = true,
        _ => {}
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match ctx(c, "runAsNonRoot") {
            Some(Value::Bool(false)) => explicit.push(cname(c)),
            Some(_) => {}
            None if !pod_true => implicit.push(cname(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!("{} must not set securityContext.runAsNonRoot=false", setters.join(" and ")),
        );
    }
    if !implicit.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!("pod or {} must set securityContext.runAsNonRoot=true", containers_phrase(&implicit)),
        );
    }
    None
}

fn run_as_user(spec: &Value) -> Option<Violation> {
    if user_namespaced(spec) {
        return None;
    }
    let zero = |v: Option<&Value>| v.and_then(Value::as_i64) == Some(0);
    let mut setters = Vec::new();
    if zero(spec.pointer("/securityContext/runAsUser")) {
        setters.push("pod".to_string());
    }
    let bad: Vec<String> = containers(spec).filter(|c| zero(ctx(c, "runAsUser"))).map(cname).collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation("runAsUser=0", format!("{} must not set runAsUser=0", setters.join(" and ")))
}

/// Where a workload kind keeps its pod template (`None`: not a pod-carrying kind).
pub fn template_path(group: &str, kind: &str) -> Option<&'static str> {
    match (group, kind) {
        ("", "PodTemplate") => Some("/template"),
        ("", "ReplicationController")
        | ("apps", "Deployment")
        | ("apps", "ReplicaSet")
        | ("apps", "StatefulSet")
        | ("apps", "DaemonSet")
        | ("batch", "Job") => Some("/spec/template"),
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn restricted_ok() -> Value {
        json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "i", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
        })
    }

    #[test]
    fn privileged_pod_under_restricted_gets_upstreams_message() {
        let spec = json!({"containers": [{"name": "c", "image": "i", "securityContext": {"privileged": true}}]});
        let v = evaluate(Level::Restricted, &spec);
        let p = Policy { level: Level::Restricted, version: "latest".into() };
        assert_eq!(
            message(&p, &v),
            "violates PodSecurity \"restricted:latest\": privileged (container \"c\" must not set securityContext.privileged=true), \
allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        // Baseline only sees the privileged flag.
        let v = evaluate(Level::Baseline, &spec);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].reason, "privileged");
        assert!(evaluate(Level::Privileged, &spec).is_empty());
    }

    #[test]
    fn a_compliant_pod_passes_and_each_field_breaks_it() {
        let ok = restricted_ok();
        assert!(evaluate(Level::Restricted, &ok).is_empty());
        let cases: Vec<(&str, Value, &str)> = vec![
            ("/hostNetwork", json!(true), "host namespaces"),
            ("/containers/0/securityContext/runAsUser", json!(0), "runAsUser=0"),
            ("/securityContext/sysctls", json!([{"name": "kernel.msgmax", "value": "1"}]), "forbidden sysctls"),
            ("/volumes", json!([{"name": "h", "hostPath": {"path": "/"}}]), "restricted volume types"),
            ("/containers/0/ports", json!([{"containerPort": 80, "hostPort": 80}]), "hostPort"),
            ("/containers/0/securityContext/capabilities/add", json!(["NET_ADMIN"]), "non-default capabilities"),
            ("/containers/0/securityContext/procMount", json!("Unmasked"), "procMount"),
        ];
        for (path, value, reason) in cases {
            let mut spec = ok.clone();
            let (parent, key) = path.rsplit_once('/').unwrap();
            spec.pointer_mut(parent).unwrap().as_object_mut().unwrap().insert(key.into(), value);
            let v = evaluate(Level::Restricted, &spec);
            assert!(v.iter().any(|x| x.reason == reason || x.reason == "unrestricted capabilities"), "{path}: {v:?}");
            assert!(!v.is_empty());
        }
    }

    #[test]
    fn volume_and_capability_details() {
        let spec =
            json!({"volumes": [{"name": "a", "hostPath": {"path": "/"}}, {"name": "b", "nfs": {}}], "containers": []});
        let v = restricted_volumes(&spec).unwrap();
        assert_eq!(v.detail, r#"volumes "a", "b" use restricted volume types "hostPath", "nfs""#);
        let v = host_path_volumes(&spec).unwrap();
        assert_eq!(v.detail, r#"volume "a""#);
        let spec = json!({"containers": [{"name": "x", "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN", "NET_BIND_SERVICE"]}}}]});
        assert_eq!(
            capabilities_restricted(&spec).unwrap().detail,
            r#"container "x" must not include "SYS_ADMIN" in securityContext.capabilities.add"#
        );
    }

    #[test]
    fn namespace_labels_choose_policies() {
        let c = Config::default();
        let mut labels = BTreeMap::new();
        assert_eq!(c.namespace_policy(&labels).enforce.level, Level::Privileged);
        labels.insert("pod-security.kubernetes.io/enforce".into(), "baseline".into());
        labels.insert("pod-security.kubernetes.io/warn".into(), "restricted".into());
        labels.insert("pod-security.kubernetes.io/warn-version".into(), "v1.30".into());
        let p = c.namespace_policy(&labels);
        assert_eq!(p.enforce.to_string(), "baseline:latest");
        assert_eq!(p.warn.to_string(), "restricted:v1.30");
        labels.insert("pod-security.kubernetes.io/enforce".into(), "nonsense".into());
        assert_eq!(c.namespace_policy(&labels).enforce.level, Level::Restricted);
        assert_eq!(validate_labels(&labels).len(), 1);
        let cfg = Config::from_value(
            &json!({"defaults": {"enforce": "baseline"}, "exemptions": {"namespaces": ["kube-system"]}}),
        )
        .unwrap();
        assert_eq!(cfg.namespace_policy(&BTreeMap::new()).enforce.level, Level::Baseline);
        assert!(cfg.exempt_namespaces.contains("kube-system"));
        assert!(Config::from_value(&json!({"defaults": {"enforce": "strict"}})).is_err());
    }

    #[test]
    fn user_namespaces_relax_root_checks() {
        let mut spec = restricted_ok();
        spec["securityContext"] = json!({"seccompProfile": {"type": "RuntimeDefault"}, "runAsUser": 0});
        assert!(!evaluate(Level::Restricted, &spec).is_empty());
        spec["hostUsers"] = json!(false);
        assert!(evaluate(Level::Restricted, &spec).is_empty());
    }
}
