//! Authentication and authorization for the API server, kept free of HTTP and storage so that each
//! rule can be tested on its own:
//! - [`x509`], [`tokenfile`], [`jwt`], [`bootstrap`], [`requestheader`]: who a request comes from.
//! - [`attributes`]: what a request asks for, in upstream's terms (verb, resource, subresource, ...).
//! - [`rbac`] and [`policy`]: RBAC rule evaluation, escalation checks and upstream's bootstrap policy.
//! - [`node`]: the Node authorizer's rules for kubelets.

pub mod attributes;
pub mod bootstrap;
pub mod jwt;
pub mod node;
pub mod policy;
pub mod rbac;
pub mod requestheader;
pub mod tokenfile;
pub mod x509;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const AUTHENTICATED: &str = "system:authenticated";
pub const MASTERS: &str = "system:masters";
pub const NODES: &str = "system:nodes";
pub const SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// An authenticated identity, as upstream's `user.Info`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(username: impl Into<String>, groups: Vec<String>) -> Self {
        UserInfo { username: username.into(), groups, ..Default::default() }
    }

    pub fn anonymous() -> Self {
        UserInfo::new(ANONYMOUS, vec![UNAUTHENTICATED.into()])
    }

    /// Adds `system:authenticated`, as upstream does for every identity an authenticator returns
    /// (anonymous excepted).
    pub fn authenticated(mut self) -> Self {
        if self.username != ANONYMOUS && !self.groups.iter().any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED) {
            self.groups.push(AUTHENTICATED.into());
        }
        self
    }

    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }

    /// `(namespace, name)` of a service-account identity.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        self.username
            .strip_prefix(SERVICE_ACCOUNT_PREFIX)?
            .split_once(':')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains(':'))
    }

    /// The node name of a kubelet identity (`system:node:<name>` in `system:nodes`).
    pub fn node_name(&self) -> Option<&str> {
        if !self.in_group(NODES) {
            return None;
        }
        self.username.strip_prefix("system:node:").filter(|n| !n.is_empty())
    }

    /// As a `UserInfo` object of the authentication.k8s.io API.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("json")
    }
}

/// The groups of a service account, as upstream's `serviceaccount.MakeGroupNames`.
pub fn service_account_user(namespace: &str, name: &str, uid: &str) -> UserInfo {
    UserInfo {
        username: format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"),
        uid: uid.to_string(),
        groups: vec![SERVICE_ACCOUNTS.into(), format!("{SERVICE_ACCOUNTS}:{namespace}")],
        extra: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities() {
        let u = service_account_user("ns", "sa", "u1").authenticated();
        assert_eq!(u.service_account(), Some(("ns", "sa")));
        assert_eq!(u.groups, ["system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"]);
        let n = UserInfo::new("system:node:n1", vec![NODES.into()]);
        assert_eq!(n.node_name(), Some("n1"));
        assert_eq!(UserInfo::new("system:node:n1", vec![]).node_name(), None);
        assert_eq!(UserInfo::anonymous().authenticated().groups, ["system:unauthenticated"]);
    }
}
