//! Upstream's built-in admission plugins as rules over JSON objects, without HTTP or storage: which
//! plugins run (`--enable-admission-plugins`/`--disable-admission-plugins`), and what each decides
//! given the objects the API server looked up for it.

pub mod limits;
pub mod pods;
pub mod podsecurity;
pub mod quota;
pub mod webhook;

use std::collections::BTreeSet;

/// Every plugin name upstream's `kube-apiserver` accepts, in upstream's fixed order (plugins run in
/// this order whatever order the flags list them in).
pub const ALL: &[&str] = &[
    "AlwaysAdmit",
    "NamespaceAutoProvision",
    "NamespaceLifecycle",
    "NamespaceExists",
    "LimitPodHardAntiAffinityTopology",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "TaintNodesByCondition",
    "AlwaysPullImages",
    "ImagePolicyWebhook",
    "PodSecurity",
    "PodNodeSelector",
    "Priority",
    "DefaultTolerationSeconds",
    "PodTolerationRestriction",
    "EventRateLimit",
    "ExtendedResourceToleration",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "OwnerReferencesPermissionEnforcement",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "DenyServiceExternalIPs",
    "PodTopologyLabels",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "AlwaysDeny",
];

/// Upstream's default-on set.
pub const DEFAULT_ON: &[&str] = &[
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "TaintNodesByCondition",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
];

/// The plugins that run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plugins(BTreeSet<&'static str>);

impl Default for Plugins {
    fn default() -> Self {
        Plugins(DEFAULT_ON.iter().copied().collect())
    }
}

impl Plugins {
    /// The default set plus `enable` minus `disable`; an unknown name is an error, as upstream.
    pub fn from_flags(enable: &[String], disable: &[String]) -> Result<Plugins, String> {
        let known = |flag: &str, n: &str| -> Result<&'static str, String> {
            ALL.iter().copied().find(|p| *p == n).ok_or_else(|| format!("{flag} plugin {n:?} is unknown"))
        };
        let mut set: BTreeSet<&'static str> = DEFAULT_ON.iter().copied().collect();
        for n in enable {
            set.insert(known("enable-admission-plugins", n)?);
        }
        for n in disable {
            set.remove(known("disable-admission-plugins", n)?);
        }
        Ok(Plugins(set))
    }

    /// None at all (the generic machinery's own tests).
    pub fn none() -> Plugins {
        Plugins(BTreeSet::new())
    }

    pub fn on(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    /// The enabled plugins in upstream's order.
    pub fn ordered(&self) -> Vec<&'static str> {
        ALL.iter().copied().filter(|p| self.0.contains(p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_adjust_the_default_set() {
        let p = Plugins::from_flags(&["NodeRestriction".into()], &["ServiceAccount".into()]).unwrap();
        assert!(p.on("NodeRestriction") && !p.on("ServiceAccount") && p.on("PodSecurity"));
        let order = p.ordered();
        assert_eq!(order.first(), Some(&"NamespaceLifecycle"));
        assert_eq!(order.last(), Some(&"ResourceQuota"));
        let e = Plugins::from_flags(&["Nope".into()], &[]).unwrap_err();
        assert_eq!(e, "enable-admission-plugins plugin \"Nope\" is unknown");
    }
}
