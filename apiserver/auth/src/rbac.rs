//! RBAC: rule matching, the evaluation of Roles, ClusterRoles and their bindings (aggregated
//! ClusterRoles honoured at evaluation), and the escalation check (`covers`).

use crate::attributes::Attributes;
use crate::UserInfo;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

impl Rule {
    pub fn from_json(v: &Value) -> Rule {
        Rule {
            verbs: strings(v, "verbs"),
            api_groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            resource_names: strings(v, "resourceNames"),
            non_resource_urls: strings(v, "nonResourceURLs"),
        }
    }

    /// As a `ResourceRule`/`NonResourceRule` of a SelfSubjectRulesReview.
    pub fn to_json(&self) -> Value {
        let mut o = serde_json::Map::new();
        o.insert("verbs".into(), json!(self.verbs));
        if !self.non_resource_urls.is_empty() {
            o.insert("nonResourceURLs".into(), json!(self.non_resource_urls));
            return Value::Object(o);
        }
        o.insert("apiGroups".into(), json!(self.api_groups));
        o.insert("resources".into(), json!(self.resources));
        if !self.resource_names.is_empty() {
            o.insert("resourceNames".into(), json!(self.resource_names));
        }
        Value::Object(o)
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
    }

    fn group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == "*" || g == group)
    }

    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        let combined = if subresource.is_empty() { resource.to_string() } else { format!("{resource}/{subresource}") };
        self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || (!subresource.is_empty() && r.strip_prefix("*/").is_some_and(|s| s == subresource))
        })
    }

    fn name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    fn url_matches(&self, path: &str) -> bool {
        self.non_resource_urls
            .iter()
            .any(|u| u == "*" || u == path || u.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix)))
    }

    pub fn allows(&self, a: &Attributes) -> bool {
        if !self.verb_matches(&a.verb) {
            return false;
        }
        if a.resource_request {
            self.group_matches(&a.api_group)
                && self.resource_matches(&a.resource, &a.subresource)
                && self.name_matches(&a.name)
        } else {
            self.url_matches(&a.path)
        }
    }
}

/// The `rules` of a Role or ClusterRole object.
pub fn rules_of(role: &Value) -> Vec<Rule> {
    role["rules"].as_array().map(|a| a.iter().map(Rule::from_json).collect()).unwrap_or_default()
}

fn subject_matches(subject: &Value, user: &UserInfo, binding_namespace: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or("");
    match subject["kind"].as_str() {
        Some("User") => user.username == name,
        Some("Group") => user.in_group(name),
        Some("ServiceAccount") => {
            let ns = subject["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or(binding_namespace);
            user.service_account() == Some((ns, name))
        }
        _ => false,
    }
}

fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default()
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

fn namespace_of(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("")
}

/// Every Role, ClusterRole and binding at one moment.
#[derive(Default)]
pub struct Snapshot {
    cluster_roles: HashMap<String, Value>,
    roles: HashMap<(String, String), Value>,
    cluster_bindings: Vec<Value>,
    bindings: HashMap<String, Vec<Value>>,
}

/// Where a permission came from (for SubjectAccessReview reasons and logs).
pub struct Grant {
    pub reason: String,
}

impl Snapshot {
    pub fn new(
        cluster_roles: Vec<Value>,
        roles: Vec<Value>,
        cluster_bindings: Vec<Value>,
        bindings: Vec<Value>,
    ) -> Self {
        let mut s = Snapshot { cluster_bindings, ..Default::default() };
        for r in cluster_roles {
            s.cluster_roles.insert(name_of(&r).to_string(), r);
        }
        for r in roles {
            s.roles.insert((namespace_of(&r).to_string(), name_of(&r).to_string()), r);
        }
        for b in bindings {
            s.bindings.entry(namespace_of(&b).to_string()).or_default().push(b);
        }
        s
    }

    /// A ClusterRole's rules; an aggregated one's are its own plus those of every ClusterRole its
    /// selectors match (the controller fills them in too; evaluation does not wait for it).
    pub fn cluster_role_rules(&self, name: &str) -> Option<Vec<Rule>> {
        self.cluster_roles.get(name)?;
        let mut visited = Vec::new();
        let mut rules = Vec::new();
        self.collect_rules(name, &mut visited, &mut rules);
        Some(rules)
    }

    /// A role's own rules, then (for an aggregated role) those of every role its selectors match,
    /// recursively: `admin` aggregates `edit`, which aggregates `view`.
    fn collect_rules<'a>(&'a self, name: &'a str, visited: &mut Vec<&'a str>, rules: &mut Vec<Rule>) {
        if visited.contains(&name) {
            return;
        }
        visited.push(name);
        let Some(role) = self.cluster_roles.get(name) else { return };
        for r in rules_of(role) {
            if !rules.contains(&r) {
                rules.push(r);
            }
        }
        self.aggregate_into(role, visited, rules);
    }

    /// Adds the rules of every ClusterRole that `role`'s aggregation selectors match.
    fn aggregate_into<'a>(&'a self, role: &Value, visited: &mut Vec<&'a str>, rules: &mut Vec<Rule>) {
        let selectors: Vec<_> = role
            .pointer("/aggregationRule/clusterRoleSelectors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| apimachinery::labels::Selector::from_label_selector(s).ok())
            .collect();
        if selectors.is_empty() {
            return;
        }
        let mut names: Vec<&String> = self.cluster_roles.keys().collect();
        names.sort();
        for other in names {
            let l = labels(&self.cluster_roles[other]);
            if selectors.iter().any(|s| !s.is_empty() && s.matches(&l)) {
                self.collect_rules(other, visited, rules);
            }
        }
    }

    /// The rules an aggregated ClusterRole (not necessarily stored yet) would collect.
    pub fn aggregated_rules(&self, role: &Value) -> Vec<Rule> {
        let mut rules = Vec::new();
        self.aggregate_into(role, &mut Vec::new(), &mut rules);
        rules
    }

    /// The rules a role reference grants in `namespace`.
    pub fn role_ref_rules(&self, role_ref: &Value, namespace: &str) -> Vec<Rule> {
        let name = role_ref["name"].as_str().unwrap_or("");
        match role_ref["kind"].as_str() {
            Some("ClusterRole") => self.cluster_role_rules(name).unwrap_or_default(),
            Some("Role") => {
                self.roles.get(&(namespace.to_string(), name.to_string())).map(rules_of).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    /// Visits the rules that apply to `user` in `namespace` (cluster-wide ones always) until `f`
    /// returns true; returns the description of the binding that made it true.
    fn visit(&self, user: &UserInfo, namespace: &str, mut f: impl FnMut(&Rule) -> bool) -> Option<String> {
        for b in &self.cluster_bindings {
            let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
            let Some(s) = subjects.iter().find(|s| subject_matches(s, user, "")) else { continue };
            if self.role_ref_rules(&b["roleRef"], "").iter().any(&mut f) {
                return Some(format!(
                    "RBAC: allowed by ClusterRoleBinding {:?} of ClusterRole {:?} to {} {:?}",
                    name_of(b),
                    b["roleRef"]["name"].as_str().unwrap_or(""),
                    s["kind"].as_str().unwrap_or(""),
                    s["name"].as_str().unwrap_or("")
                ));
            }
        }
        if namespace.is_empty() {
            return None;
        }
        for b in self.bindings.get(namespace).into_iter().flatten() {
            let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
            let Some(s) = subjects.iter().find(|s| subject_matches(s, user, namespace)) else { continue };
            if self.role_ref_rules(&b["roleRef"], namespace).iter().any(&mut f) {
                return Some(format!(
                    "RBAC: allowed by RoleBinding \"{}/{}\" of {} {:?} to {} {:?}",
                    name_of(b),
                    namespace,
                    b["roleRef"]["kind"].as_str().unwrap_or(""),
                    b["roleRef"]["name"].as_str().unwrap_or(""),
                    s["kind"].as_str().unwrap_or(""),
                    s["name"].as_str().unwrap_or("")
                ));
            }
        }
        None
    }

    /// The RBAC decision: `Some(reason)` when a binding allows it; RBAC never denies outright.
    pub fn authorize(&self, a: &Attributes) -> Option<Grant> {
        let ns = if a.resource_request { a.namespace.as_str() } else { "" };
        self.visit(&a.user, ns, |r| r.allows(a)).map(|reason| Grant { reason })
    }

    /// Every rule that applies to `user` in `namespace`.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<Rule> {
        let mut out: Vec<Rule> = Vec::new();
        self.visit(user, namespace, |r| {
            if !out.contains(r) {
                out.push(r.clone());
            }
            false
        });
        out
    }
}

/// Whether `owner` holds every permission in `servant` (upstream's `validation.Covers`): each
/// servant rule is broken into single verb/group/resource/name (or verb/URL) atoms, and each atom must
/// be allowed by some owner rule. A `*` in the servant is only covered by a `*` in the owner.
/// Returns the rules not covered.
pub fn uncovered(owner: &[Rule], servant: &[Rule]) -> Vec<Rule> {
    let mut missing = Vec::new();
    for s in servant {
        for verb in &s.verbs {
            if !s.non_resource_urls.is_empty() {
                for url in &s.non_resource_urls {
                    let ok = owner.iter().any(|o| {
                        o.verbs.iter().any(|v| v == "*" || v == verb)
                            && o.non_resource_urls.iter().any(|u| {
                                u == "*" || u == url || u.strip_suffix('*').is_some_and(|p| url.starts_with(p))
                            })
                    });
                    if !ok {
                        missing.push(Rule {
                            verbs: vec![verb.clone()],
                            non_resource_urls: vec![url.clone()],
                            ..Default::default()
                        });
                    }
                }
                continue;
            }
            let names: Vec<Option<&String>> =
                if s.resource_names.is_empty() { vec![None] } else { s.resource_names.iter().map(Some).collect() };
            for group in &s.api_groups {
                for resource in &s.resources {
                    for name in &names {
                        let ok = owner.iter().any(|o| {
                            o.verbs.iter().any(|v| v == "*" || v == verb)
                                && o.api_groups.iter().any(|g| g == "*" || g == group)
                                && o.resources.iter().any(|r| {
                                    r == "*"
                                        || r == resource
                                        || (r
                                            .strip_prefix("*/")
                                            .is_some_and(|sub| resource.split_once('/').is_some_and(|(_, s)| s == sub)))
                                })
                                && (o.resource_names.is_empty() || name.is_some_and(|n| o.resource_names.contains(n)))
                        });
                        if !ok {
                            missing.push(Rule {
                                verbs: vec![verb.clone()],
                                api_groups: vec![group.clone()],
                                resources: vec![resource.clone()],
                                resource_names: name.map(|n| vec![n.clone()]).unwrap_or_default(),
                                non_resource_urls: vec![],
                            });
                        }
                    }
                }
            }
        }
    }
    missing
}

/// A rule as upstream prints it in escalation errors: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
pub fn describe(r: &Rule) -> String {
    let list = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" ");
    let mut parts = Vec::new();
    if !r.non_resource_urls.is_empty() {
        parts.push(format!("NonResourceURLs:[{}]", list(&r.non_resource_urls)));
    } else {
        parts.push(format!("APIGroups:[{}]", list(&r.api_groups)));
        parts.push(format!("Resources:[{}]", list(&r.resources)));
        if !r.resource_names.is_empty() {
            parts.push(format!("ResourceNames:[{}]", list(&r.resource_names)));
        }
    }
    parts.push(format!("Verbs:[{}]", list(&r.verbs)));
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(user: &UserInfo, verb: &str, ns: &str, group: &str, resource: &str, name: &str) -> Attributes {
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource_request: true,
            namespace: ns.into(),
            api_group: group.into(),
            resource: resource.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn roles_bindings_and_aggregation() {
        let snap = Snapshot::new(
            vec![
                json!({"metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "true"}}]}}),
                json!({"metadata": {"name": "part", "labels": {"x": "true"}}, "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]}),
            ],
            vec![
                json!({"metadata": {"name": "r", "namespace": "ns"}, "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"], "resourceNames": []}]}),
            ],
            vec![
                json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "agg"}, "subjects": [{"kind": "Group", "name": "g"}]}),
            ],
            vec![
                json!({"metadata": {"name": "rb", "namespace": "ns"}, "roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "sa"}]}),
            ],
        );
        let sa = crate::service_account_user("ns", "sa", "");
        assert!(snap.authorize(&attrs(&sa, "list", "ns", "", "pods", "")).is_some());
        assert!(snap.authorize(&attrs(&sa, "list", "other", "", "pods", "")).is_none());
        assert!(snap.authorize(&attrs(&sa, "delete", "ns", "", "pods", "")).is_none());
        let mut log = attrs(&sa, "get", "ns", "", "pods", "p");
        log.subresource = "log".into();
        assert!(snap.authorize(&log).is_some());
        let g = UserInfo::new("u", vec!["g".into()]);
        let grant = snap.authorize(&attrs(&g, "get", "any", "apps", "deployments", "d")).unwrap();
        assert!(grant.reason.contains("ClusterRoleBinding \"b\""), "{}", grant.reason);
        assert_eq!(snap.rules_for(&sa, "ns").len(), 1);
    }

    #[test]
    fn covers_as_upstream() {
        let owner = vec![Rule::from_json(&json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}))];
        let ok = vec![Rule::from_json(
            &json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "resourceNames": ["x"]}),
        )];
        assert!(uncovered(&owner, &ok).is_empty());
        let star = vec![Rule::from_json(&json!({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}))];
        assert_eq!(uncovered(&owner, &star).len(), 1);
        let admin = vec![Rule::from_json(&json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}))];
        assert!(uncovered(&admin, &star).is_empty());
        let named_owner = vec![Rule::from_json(
            &json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "resourceNames": ["x"]}),
        )];
        let unnamed = vec![Rule::from_json(&json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}))];
        assert_eq!(
            describe(&uncovered(&named_owner, &unnamed)[0]),
            "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\"]}"
        );
    }
}
