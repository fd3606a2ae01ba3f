//! The admission chain, run inside a request after defaulting: mutating plugins (before validation),
//! then validating plugins (after it), both in upstream's plugin order and only for the plugins
//! `--enable-admission-plugins`/`--disable-admission-plugins` turned on. The rules themselves live in
//! the `apiserver-admission` crate; this module looks up what they need.
//!
//! Mutating: LimitRanger defaults, ServiceAccount (name and the `kube-api-access-*` volume), Priority,
//! DefaultTolerationSeconds, RuntimeClass, TaintNodesByCondition, DefaultStorageClass,
//! StorageObjectInUseProtection. Validating: RBAC escalation prevention (always on with RBAC
//! authorization, as upstream's RBAC storage), NodeRestriction, LimitRanger constraints, PodSecurity
//! (enforce errors, warn `Warning:` headers, on pods and on workload templates),
//! PersistentVolumeClaimResize, CertificateApproval/CertificateSigning/CertificateSubjectRestriction, the
//! validating webhooks, and ResourceQuota last, charging quotas atomically before the write.

use crate::api::Api;
use crate::auth::{get_object, Mode};
use crate::objects;
use crate::registry::Resource;
use crate::reviews::current_user;
use apimachinery::{ApiError, Cause, GroupResource};
use apiserver_admission::{limits, pods, podsecurity, quota, Plugins};
use apiserver_auth::attributes::Attributes;
use apiserver_auth::rbac::{describe, rules_of, uncovered, Rule};
use apiserver_auth::UserInfo;
use apiserver_storage::keys::list_prefix;
use apiserver_storage::{ListOptions, StoreError};
use serde_json::Value;
use std::cell::RefCell;

tokio::task_local! {
    /// Warnings the current request returns as `Warning:` headers.
    pub static WARNINGS: RefCell<Vec<String>>;
}

/// Adds a `Warning:` header to the current request's response.
pub fn warn(message: String) {
    let _ = WARNINGS.try_with(|w| w.borrow_mut().push(message));
}

pub fn take_warnings() -> Vec<String> {
    WARNINGS.try_with(|w| std::mem::take(&mut *w.borrow_mut())).unwrap_or_default()
}

/// How admission is configured.
pub struct Admission {
    pub plugins: Plugins,
    pub pod_security: podsecurity::Config,
}

impl Default for Admission {
    fn default() -> Self {
        Admission { plugins: Plugins::none(), pod_security: podsecurity::Config::default() }
    }
}

impl Admission {
    /// From `--enable-admission-plugins`, `--disable-admission-plugins` and
    /// `--admission-control-config-file` (an `AdmissionConfiguration` whose PodSecurity entry carries
    /// its configuration inline or names a file).
    pub fn from_flags(
        enable: &[String],
        disable: &[String],
        config_file: Option<&std::path::Path>,
    ) -> Result<Admission, String> {
        let plugins = Plugins::from_flags(enable, disable)?;
        let mut pod_security = podsecurity::Config::default();
        if let Some(path) = config_file {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let doc: Value = serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            for p in doc.get("plugins").and_then(Value::as_array).into_iter().flatten() {
                let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                if !apiserver_admission::ALL.contains(&name) {
                    return Err(format!("{}: plugin {name:?} is unknown", path.display()));
                }
                let conf = match (p.get("configuration"), p.get("path").and_then(Value::as_str)) {
                    (Some(c), _) => c.clone(),
                    (None, Some(file)) => {
                        let file = path.parent().unwrap_or(std::path::Path::new(".")).join(file);
                        let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?
                    }
                    _ => continue,
                };
                if name == "PodSecurity" {
                    pod_security = podsecurity::Config::from_value(&conf)
                        .map_err(|e| format!("PodSecurity configuration: {e}"))?;
                }
            }
        }
        Ok(Admission { plugins, pod_security })
    }
}

pub struct ResourceInfo<'a> {
    pub res: &'a Resource,
    pub namespace: Option<&'a str>,
    pub sub: Option<&'a str>,
    /// The name errors speak of: the `generateName` prefix on a create that generated its name.
    pub name: &'a str,
    pub dry_run: bool,
}

impl ResourceInfo<'_> {
    fn is(&self, group: &str, plural: &str) -> bool {
        self.res.group == group && self.res.plural == plural
    }
    fn operation(&self, old: Option<&Value>) -> &'static str {
        if old.is_some() {
            "UPDATE"
        } else {
            "CREATE"
        }
    }
    /// The request's options as webhooks are shown them.
    fn options(&self) -> Value {
        if self.dry_run {
            serde_json::json!({"dryRun": ["All"]})
        } else {
            serde_json::json!({})
        }
    }
    fn forbidden(&self, why: &str) -> ApiError {
        ApiError::forbidden(&GroupResource::new(self.res.group, self.res.plural), self.name, why)
    }
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

/// The mutating plugins, on a create (`old` is `None`) or update: the built-in ones, then the
/// mutating webhooks.
pub async fn mutate(api: &Api, r: &ResourceInfo<'_>, obj: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    if old.is_none() && r.sub.is_none() {
        builtin_mutate(api, r, obj).await?;
    }
    crate::webhook::mutate(api, r, r.operation(old), Some(obj), old, r.options()).await
}

/// The built-in mutating plugins, which act on creates only.
async fn builtin_mutate(api: &Api, r: &ResourceInfo<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let on = |p: &str| api.admission.plugins.on(p);
    let ns = r.namespace.unwrap_or("");
    if r.is("", "pods") {
        if on("LimitRanger") {
            let ranges = api.list_cached("", "limitranges", Some(ns), false).await;
            limits::apply_defaults(obj, &ranges);
        }
        if on("ServiceAccount") {
            if pods::is_mirror(obj) {
                if let Some(why) = pods::mirror_pod_problem(obj) {
                    return Err(r.forbidden(why));
                }
            } else {
                let sa_name = pods::service_account_name(obj);
                let Some(sa) = get_object(api, "", "serviceaccounts", Some(ns), &sa_name).await else {
                    return Err(r.forbidden(&format!(
                        "error looking up service account {ns}/{sa_name}: serviceaccount \"{sa_name}\" not found"
                    )));
                };
                pods::add_service_account(obj, &sa, &objects::random_suffix());
            }
        }
        if on("Priority") {
            let class_name = obj.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or("").to_string();
            let (class, global) = if class_name.is_empty() {
                let classes = api.list_cached("scheduling.k8s.io", "priorityclasses", None, false).await;
                let global = classes
                    .into_iter()
                    .filter(|c| c.get("globalDefault") == Some(&Value::Bool(true)))
                    .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0));
                (None, global)
            } else {
                (get_object(api, "scheduling.k8s.io", "priorityclasses", None, &class_name).await, None)
            };
            pods::resolve_priority(obj, class.as_ref(), global.as_ref()).map_err(|e| r.forbidden(&e))?;
        }
        if on("DefaultTolerationSeconds") {
            pods::add_default_tolerations(obj, 300);
        }
        if on("RuntimeClass") {
            if let Some(rc) = obj.pointer("/spec/runtimeClassName").and_then(Value::as_str).map(String::from) {
                let Some(class) = get_object(api, "node.k8s.io", "runtimeclasses", None, &rc).await else {
                    return Err(r.forbidden(&format!("pod rejected: RuntimeClass \"{rc}\" not found")));
                };
                pods::apply_runtime_class(obj, &class).map_err(|e| r.forbidden(&e))?;
            }
        }
    }
    if r.is("", "nodes") && on("TaintNodesByCondition") {
        pods::taint_new_node(obj);
    }
    if r.is("", "persistentvolumeclaims") {
        if on("DefaultStorageClass") && obj.pointer("/spec/storageClassName").is_none() {
            let classes = api.list_cached("storage.k8s.io", "storageclasses", None, false).await;
            if let Some(class) = pods::default_storage_class(&classes) {
                obj["spec"]["storageClassName"] = Value::String(class);
            }
        }
        if on("StorageObjectInUseProtection") {
            pods::add_protection_finalizer(obj, "kubernetes.io/pvc-protection");
        }
    }
    if r.is("", "persistentvolumes") && on("StorageObjectInUseProtection") {
        pods::add_protection_finalizer(obj, "kubernetes.io/pv-protection");
    }
    Ok(())
}

/// The validating plugins, on a create (`old` is `None`) or update.
pub async fn validate(api: &Api, r: &ResourceInfo<'_>, new: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let on = |p: &str| api.admission.plugins.on(p);
    let user = current_user();
    if let Some(user) = &user {
        if r.res.group == "rbac.authorization.k8s.io" && api.auth.modes.contains(&Mode::Rbac) && r.sub.is_none() {
            escalation(api, user, r, new).await?;
        }
        if on("NodeRestriction") {
            if let Some(node) = user.node_name() {
                node_restriction(node, r, new, old)?;
            }
        }
    }
    let ns = r.namespace.unwrap_or("");
    if on("LimitRanger") && old.is_none() && r.sub.is_none() {
        let errs = if r.is("", "pods") {
            limits::validate_pod(new, &api.list_cached("", "limitranges", Some(ns), false).await)
        } else if r.is("", "persistentvolumeclaims") {
            limits::validate_claim(new, &api.list_cached("", "limitranges", Some(ns), false).await)
        } else {
            Vec::new()
        };
        if !errs.is_empty() {
            return Err(r.forbidden(&limits::aggregate(&errs)));
        }
    }
    if on("PodSecurity") {
        pod_security(api, r, user.as_ref(), new, old).await?;
    }
    if r.is("certificates.k8s.io", "certificatesigningrequests") {
        certificates(api, r, user.as_ref(), new, old).await?;
    }
    if on("PersistentVolumeClaimResize") && r.is("", "persistentvolumeclaims") && r.sub.is_none() {
        if let Some(old) = old {
            if pods::claim_storage(new) > pods::claim_storage(old) {
                let class = new.pointer("/spec/storageClassName").and_then(Value::as_str).unwrap_or("");
                let expandable = match class {
                    "" => false,
                    c => get_object(api, "storage.k8s.io", "storageclasses", None, c)
                        .await
                        .is_some_and(|sc| sc.get("allowVolumeExpansion") == Some(&Value::Bool(true))),
                };
                if !expandable {
                    return Err(r.forbidden("only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"));
                }
            }
        }
    }
    crate::webhook::validate(api, r, r.operation(old), Some(new), old, r.options()).await?;
    if on("ResourceQuota") && r.sub.is_none() && r.res.namespaced {
        charge_quota(api, r, new, old).await?;
    }
    Ok(())
}

/// The validating plugins on a delete: NodeRestriction (a node deletes only pods bound to itself, its
/// own Node and its own Lease).
pub fn validate_delete(api: &Api, res: &Resource, namespace: Option<&str>, obj: &Value) -> Result<(), ApiError> {
    if !api.admission.plugins.on("NodeRestriction") {
        return Ok(());
    }
    let Some(user) = current_user() else { return Ok(()) };
    let Some(node) = user.node_name() else { return Ok(()) };
    let name = name_of(obj);
    let r = ResourceInfo { res, namespace, sub: None, name, dry_run: false };
    if r.is("", "pods") {
        if obj.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node) {
            return Err(r.forbidden(&format!("node {node:?} can only delete pods with spec.nodeName set to itself")));
        }
        return Ok(());
    }
    node_restriction(node, &r, obj, None)
}

/// The mutating and validating webhooks on a delete, shown the object being deleted and the
/// request's `DeleteOptions`.
pub async fn delete_webhooks(
    api: &Api,
    rr: &crate::api::ResourceRequest<'_>,
    name: &str,
    stored: &Value,
    options: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let r = ResourceInfo { res: rr.res, namespace: rr.namespace.as_deref(), sub: None, name, dry_run };
    let mut opts = if options.is_object() { options.clone() } else { serde_json::json!({}) };
    if let Some(o) = opts.as_object_mut() {
        o.remove("kind");
        o.remove("apiVersion");
    }
    crate::webhook::mutate(api, &r, "DELETE", None, Some(stored), opts.clone()).await?;
    crate::webhook::validate(api, &r, "DELETE", None, Some(stored), opts).await
}

/// PodSecurity: pods are checked against the namespace's enforce level (403) and warn level
/// (`Warning:`); workload templates only warn, for both levels. Namespaces' own labels are validated.
async fn pod_security(
    api: &Api,
    r: &ResourceInfo<'_>,
    user: Option<&UserInfo>,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let cfg = &api.admission.pod_security;
    if r.is("", "namespaces") && r.sub.is_none() {
        let errs = podsecurity::validate_labels(&objects::labels(new));
        if !errs.is_empty() {
            let causes = errs
                .into_iter()
                .map(|(k, v, why)| Cause::invalid(&format!("metadata.labels[{k}]"), &Value::String(v), &why))
                .collect();
            return Err(ApiError::invalid("", "Namespace", name_of(new), causes));
        }
        return Ok(());
    }
    let ns = r.namespace.unwrap_or("");
    if ns.is_empty() || cfg.exempt_namespaces.contains(ns) {
        return Ok(());
    }
    if user.is_some_and(|u| cfg.exempt_usernames.contains(&u.username)) {
        return Ok(());
    }
    let (spec, is_pod) = if r.is("", "pods") {
        match r.sub {
            None | Some("ephemeralcontainers") => {}
            _ => return Ok(()),
        }
        // Updates that leave the spec alone (labels, finalizers, status) are not re-checked.
        if old.is_some_and(|o| o.get("spec") == new.get("spec")) {
            return Ok(());
        }
        (new.get("spec").cloned().unwrap_or_default(), true)
    } else if let Some(path) = podsecurity::template_path(r.res.group, r.res.kind) {
        if r.sub.is_some() {
            return Ok(());
        }
        let Some(t) = new.pointer(path) else { return Ok(()) };
        if old.is_some_and(|o| o.pointer(path) == Some(t)) {
            return Ok(());
        }
        (t.get("spec").cloned().unwrap_or_default(), false)
    } else {
        return Ok(());
    };
    if spec.get("runtimeClassName").and_then(Value::as_str).is_some_and(|rc| cfg.exempt_runtime_classes.contains(rc)) {
        return Ok(());
    }
    let Some(namespace) = get_object(api, "", "namespaces", None, ns).await else { return Ok(()) };
    let policy = cfg.namespace_policy(&objects::labels(&namespace));
    let enforce = podsecurity::evaluate(policy.enforce.level, &spec);
    if !enforce.is_empty() {
        if is_pod {
            return Err(r.forbidden(&podsecurity::message(&policy.enforce, &enforce)));
        }
        warn(podsecurity::warning(&policy.enforce, &enforce));
    }
    if policy.warn != policy.enforce {
        let v = podsecurity::evaluate(policy.warn.level, &spec);
        if !v.is_empty() {
            warn(podsecurity::warning(&policy.warn, &v));
        }
    }
    Ok(())
}

/// ResourceQuota: the object's usage is added to every quota of its namespace that tracks it, each with
/// a compare-and-swap on the quota, so concurrent writes (through any API server) never push a quota
/// past its hard limit. A conflict re-reads the quotas and evaluates again. A dry run is checked but
/// not charged.
async fn charge_quota(api: &Api, r: &ResourceInfo<'_>, new: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    if r.is("", "pods") && old.is_some() {
        return Ok(());
    }
    let ns = r.namespace.unwrap_or("");
    let usage = quota::usage(r.res.group, r.res.plural, new);
    let delta = quota::delta(&usage, old.map(|o| quota::usage(r.res.group, r.res.plural, o)).as_ref());
    if delta.values().all(|v| *v <= 0.0) {
        return Ok(());
    }
    // Charges through this server queue per namespace: racing compare-and-swaps on one quota would
    // mostly conflict and retry. Other servers' charges still meet this one's in the store.
    let lock = if api.list_cached("", "resourcequotas", Some(ns), false).await.is_empty() {
        None
    } else {
        Some(api.quota_locks.lock().expect("quota locks").entry(ns.to_string()).or_default().clone())
    };
    let _queued = match &lock {
        Some(l) => Some(l.lock().await),
        None => None,
    };
    let qres = api.registry.find("", "v1", "resourcequotas").expect("resourcequotas registered");
    let prefix = list_prefix(&qres.storage_path(), Some(ns));
    let mut charged: Vec<String> = Vec::new();
    for _attempt in 0..200 {
        let list = api.store.list(&prefix, ListOptions::default()).await.map_err(ApiError::internal)?;
        let mut writes = Vec::new();
        for kv in &list.items {
            let Ok(q) = serde_json::from_slice::<Value>(&kv.value) else { continue };
            let qname = name_of(&q).to_string();
            if charged.contains(&qname) || !quota::in_scope(&q, r.res.plural, new) {
                continue;
            }
            if r.is("", "pods") {
                missing_requests(r, &q, new)?;
            }
            match quota::charge(&q, &delta) {
                None => {}
                Some(Err(why)) => return Err(r.forbidden(&why)),
                Some(Ok(updated)) => writes.push((qname, kv.key.clone(), kv.mod_revision, updated)),
            }
        }
        if r.dry_run {
            return Ok(());
        }
        let mut conflicted = false;
        for (qname, key, rev, updated) in writes {
            let bytes = serde_json::to_vec(&updated).expect("json");
            match api.store.update(&key, bytes.into(), rev, None).await {
                Ok(_) => charged.push(qname),
                Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => {
                    conflicted = true;
                    break;
                }
                Err(e) => return Err(ApiError::internal(e)),
            }
        }
        if !conflicted {
            return Ok(());
        }
    }
    Err(ApiError::conflict_with(
        &GroupResource::new("", "resourcequotas"),
        ns,
        "too many concurrent updates to the namespace's quotas",
    ))
}

/// A quota on requests or limits needs every container to state them.
fn missing_requests(r: &ResourceInfo<'_>, q: &Value, pod: &Value) -> Result<(), ApiError> {
    let hard = q.pointer("/spec/hard").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut missing = Vec::new();
    for (key, which, res) in [
        ("cpu", "requests", "cpu"),
        ("requests.cpu", "requests", "cpu"),
        ("memory", "requests", "memory"),
        ("requests.memory", "requests", "memory"),
        ("limits.cpu", "limits", "cpu"),
        ("limits.memory", "limits", "memory"),
    ] {
        if hard.contains_key(key) && !quota::containers_missing(pod, which, res).is_empty() && !missing.contains(&key) {
            missing.push(key);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort();
    Err(r.forbidden(&format!("failed quota: {}: must specify {}", name_of(q), missing.join(","))))
}

/// Whether the authorizers allow `user` the verb on a resource (what admission plugins ask beyond the
/// request's own authorization).
async fn allowed(api: &Api, user: &UserInfo, verb: &str, gr: (&str, &str), namespace: &str, name: &str) -> bool {
    let a = Attributes {
        user: user.clone(),
        verb: verb.into(),
        resource_request: true,
        namespace: namespace.into(),
        api_group: gr.0.into(),
        resource: gr.1.into(),
        name: name.into(),
        ..Default::default()
    };
    api.auth.authorize(api, &a).await.allowed()
}

/// Upstream's signer authorization: the verb on `signers` named after the signer, or after its
/// domain's wildcard (`example.com/*`).
async fn allowed_for_signer(api: &Api, user: &UserInfo, verb: &str, signer: &str) -> bool {
    const SIGNERS: (&str, &str) = ("certificates.k8s.io", "signers");
    if allowed(api, user, verb, SIGNERS, "", signer).await {
        return true;
    }
    let domain = signer.split('/').next().unwrap_or("");
    allowed(api, user, verb, SIGNERS, "", &format!("{domain}/*")).await
}

/// CertificateApproval (approving or denying needs `approve` on the signer), CertificateSigning
/// (setting `status.certificate` needs `sign`), both judged on the stored request's signer, and
/// CertificateSubjectRestriction (no `system:masters` in requests to the API-server client signer).
async fn certificates(
    api: &Api,
    r: &ResourceInfo<'_>,
    user: Option<&UserInfo>,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let on = |p: &str| api.admission.plugins.on(p);
    let signer = |o: &Value| o.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or("").to_string();
    match (r.sub, old, user) {
        (Some("approval"), Some(old), Some(user)) if on("CertificateApproval") => {
            let signer = signer(old);
            if !allowed_for_signer(api, user, "approve", &signer).await {
                return Err(r.forbidden(&format!("user not permitted to approve requests with signerName {signer:?}")));
            }
        }
        (Some("status"), Some(old), Some(user)) if on("CertificateSigning") => {
            let cert = |o: &Value| o.pointer("/status/certificate").cloned();
            let signer = signer(old);
            if cert(new) != cert(old) && !allowed_for_signer(api, user, "sign", &signer).await {
                return Err(r.forbidden(&format!("user not permitted to sign requests with signerName {signer:?}")));
            }
        }
        (None, None, _) if on("CertificateSubjectRestriction") => {
            const CLIENT: &str = "kubernetes.io/kube-apiserver-client";
            if signer(new) != CLIENT {
                return Ok(());
            }
            let request = new.pointer("/spec/request").and_then(Value::as_str).unwrap_or("");
            let pem = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, request).unwrap_or_default();
            let info = pki::csr::parse(&pem).map_err(|e| r.forbidden(&format!("unable to parse csr: {e}")))?;
            if info.organizations.iter().any(|o| o == apiserver_auth::MASTERS) {
                return Err(r.forbidden(&format!("use of {CLIENT} signer with system:masters group is not allowed")));
            }
        }
        _ => {}
    }
    Ok(())
}

async fn escalation(api: &Api, user: &UserInfo, r: &ResourceInfo<'_>, obj: &Value) -> Result<(), ApiError> {
    if user.in_group(apiserver_auth::MASTERS) {
        return Ok(());
    }
    let ns = r.namespace.unwrap_or("");
    let snap = api.auth.rbac_snapshot(api, true).await?;
    let requested: Vec<Rule> = match r.res.plural {
        "roles" | "clusterroles" => {
            if allowed(api, user, "escalate", (r.res.group, r.res.plural), ns, name_of(obj)).await {
                return Ok(());
            }
            // An aggregated role also grants what it selects.
            let mut rules = rules_of(obj);
            rules.extend(snap.aggregated_rules(obj));
            rules
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_kind = obj.pointer("/roleRef/kind").and_then(Value::as_str).unwrap_or("");
            let role_name = obj.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or("");
            let role_resource = if role_kind == "Role" { "roles" } else { "clusterroles" };
            // Checked in the binding's namespace, which cluster-wide grants of `bind` also cover.
            if allowed(api, user, "bind", (r.res.group, role_resource), ns, role_name).await {
                return Ok(());
            }
            snap.role_ref_rules(&obj["roleRef"], ns)
        }
        _ => return Ok(()),
    };
    let held = snap.rules_for(user, ns);
    let missing = uncovered(&held, &requested);
    if missing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = missing.iter().map(describe).collect();
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let why = format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.username,
        groups.join(" "),
        list.join("\n")
    );
    Err(ApiError::forbidden(&GroupResource::new(r.res.group, r.res.plural), name_of(obj), &why))
}

fn node_restriction(node: &str, r: &ResourceInfo<'_>, new: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let gr = GroupResource::new(r.res.group, r.res.plural);
    let name = name_of(new);
    match (r.res.group, r.res.plural) {
        ("", "nodes") if name != node => {
            return Err(ApiError::forbidden(
                &gr,
                name,
                &format!("node {node:?} is not allowed to modify node {name:?}"),
            ));
        }
        ("", "pods") => {
            let bound = |o: &Value| o.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node);
            match (old, r.sub) {
                (None, _) => {
                    let mirror = new.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some();
                    if !mirror {
                        return Err(ApiError::forbidden(&gr, name, &format!("pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods")));
                    }
                    if !bound(new) {
                        return Err(ApiError::forbidden(
                            &gr,
                            name,
                            &format!("node {node:?} can only create pods with spec.nodeName set to itself"),
                        ));
                    }
                }
                (Some(old), Some("status")) => {
                    if !bound(old) {
                        return Err(ApiError::forbidden(
                            &gr,
                            name,
                            &format!(
                                "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                            ),
                        ));
                    }
                }
                (Some(_), _) => {
                    return Err(ApiError::forbidden(&gr, name, &format!("node {node:?} can only update pod status")));
                }
            }
        }
        ("coordination.k8s.io", "leases") if r.namespace != Some("kube-node-lease") || name != node => {
            return Err(ApiError::forbidden(
                &gr,
                name,
                "can only access node lease with the same name as the requesting node",
            ));
        }
        _ => {}
    }
    Ok(())
}
