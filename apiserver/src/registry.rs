//! The one table of resources the server serves. Discovery, routing, storage keys and table output are
//! all driven from it: adding a resource is adding a row.

use apimachinery::GroupResource;

#[derive(Clone, Debug)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    pub categories: &'static [&'static str],
    pub subresources: &'static [&'static str],
    /// The group/resource whose storage this one shares (events.k8s.io events live with core events).
    pub storage: (&'static str, &'static str),
}

impl Resource {
    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(self.group, self.plural)
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The path segment under the etcd prefix, as upstream stores it.
    pub fn storage_path(&self) -> String {
        apiserver_storage::keys::resource_path(self.storage.0, self.storage.1)
    }

    /// Reviews: created and answered at once, never stored, no other verb.
    pub fn create_only(&self) -> bool {
        matches!(self.group, "authentication.k8s.io" | "authorization.k8s.io")
    }

    pub fn verbs(&self) -> &'static [&'static str] {
        if self.create_only() {
            return &["create"];
        }
        &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    }
}

const ALL: &[&str] = &["all"];

macro_rules! r {
    ($g:expr, $v:expr, $kind:expr, $plural:expr, $singular:expr, [$($short:expr),*], $ns:expr) => {
        r!($g, $v, $kind, $plural, $singular, [$($short),*], $ns, &[], &[])
    };
    ($g:expr, $v:expr, $kind:expr, $plural:expr, $singular:expr, [$($short:expr),*], $ns:expr, $cat:expr, $sub:expr) => {
        Resource {
            group: $g,
            version: $v,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: &[$($short),*],
            namespaced: $ns,
            categories: $cat,
            subresources: $sub,
            storage: ($g, $plural),
        }
    };
}

pub fn builtin() -> Vec<Resource> {
    let st: &[&str] = &["status"];
    let scale: &[&str] = &["status", "scale"];
    let mut v = vec![
        // core/v1
        r!("", "v1", "Namespace", "namespaces", "namespace", ["ns"], false, &[], &["status", "finalize"]),
        r!("", "v1", "ConfigMap", "configmaps", "configmap", ["cm"], true, &[], &[]),
        r!("", "v1", "Secret", "secrets", "secret", [], true, &[], &[]),
        r!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", ["sa"], true, &[], &["token"]),
        r!(
            "",
            "v1",
            "Pod",
            "pods",
            "pod",
            ["po"],
            true,
            ALL,
            &["status", "binding", "eviction", "log", "exec", "attach", "portforward", "ephemeralcontainers", "resize"]
        ),
        r!("", "v1", "Service", "services", "service", ["svc"], true, ALL, st),
        r!("", "v1", "Endpoints", "endpoints", "endpoints", ["ep"], true),
        r!("", "v1", "Event", "events", "event", ["ev"], true),
        r!("", "v1", "Node", "nodes", "node", ["no"], false, &[], st),
        r!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", ["pv"], false, &[], st),
        r!(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            ["pvc"],
            true,
            &[],
            st
        ),
        r!("", "v1", "LimitRange", "limitranges", "limitrange", ["limits"], true),
        r!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", ["quota"], true, &[], st),
        r!(
            "",
            "v1",
            "ReplicationController",
            "replicationcontrollers",
            "replicationcontroller",
            ["rc"],
            true,
            ALL,
            scale
        ),
        r!("", "v1", "PodTemplate", "podtemplates", "podtemplate", [], true),
        // apps/v1
        r!("apps", "v1", "Deployment", "deployments", "deployment", ["deploy"], true, ALL, scale),
        r!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", ["rs"], true, ALL, scale),
        r!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", ["sts"], true, ALL, scale),
        r!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", ["ds"], true, ALL, st),
        r!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", [], true),
        // batch/v1
        r!("batch", "v1", "Job", "jobs", "job", [], true, ALL, st),
        r!("batch", "v1", "CronJob", "cronjobs", "cronjob", ["cj"], true, ALL, st),
        // autoscaling
        r!(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            ["hpa"],
            true,
            ALL,
            st
        ),
        // coordination.k8s.io/v1
        r!("coordination.k8s.io", "v1", "Lease", "leases", "lease", [], true),
        // discovery.k8s.io/v1
        r!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", [], true),
        // networking.k8s.io/v1
        r!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", ["netpol"], true),
        r!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", ["ing"], true, &[], st),
        r!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", [], false),
        r!("networking.k8s.io", "v1", "IPAddress", "ipaddresses", "ipaddress", ["ip"], false),
        r!("networking.k8s.io", "v1", "ServiceCIDR", "servicecidrs", "servicecidr", [], false, &[], &["status"]),
        // policy/v1
        r!(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            ["pdb"],
            true,
            &[],
            st
        ),
        // authentication.k8s.io/v1 and authorization.k8s.io/v1: create-only reviews, never stored.
        r!("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", [], false),
        r!("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", [], false),
        r!(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            "subjectaccessreview",
            [],
            false
        ),
        r!(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            "selfsubjectaccessreview",
            [],
            false
        ),
        r!(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            "selfsubjectrulesreview",
            [],
            false
        ),
        r!(
            "authorization.k8s.io",
            "v1",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            "localsubjectaccessreview",
            [],
            true
        ),
        // rbac.authorization.k8s.io/v1
        r!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", [], true),
        r!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", [], true),
        r!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", [], false),
        r!(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            "clusterrolebinding",
            [],
            false
        ),
        // scheduling.k8s.io/v1
        r!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", ["pc"], false),
        // storage.k8s.io/v1
        r!("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", ["sc"], false),
        r!("storage.k8s.io", "v1", "CSIDriver", "csidrivers", "csidriver", [], false),
        r!("storage.k8s.io", "v1", "CSINode", "csinodes", "csinode", [], false),
        r!("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", "volumeattachment", [], false, &[], st),
        // node.k8s.io/v1
        r!("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", "runtimeclass", [], false),
        // certificates.k8s.io/v1
        r!(
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            "certificatesigningrequests",
            "certificatesigningrequest",
            ["csr"],
            false,
            &[],
            &["status", "approval"]
        ),
        // admissionregistration.k8s.io/v1
        r!(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            "mutatingwebhookconfiguration",
            [],
            false
        ),
        r!(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            "validatingwebhookconfiguration",
            [],
            false
        ),
        // apiextensions.k8s.io/v1
        r!(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            "customresourcedefinition",
            ["crd", "crds"],
            false,
            &[],
            st
        ),
        // flowcontrol.apiserver.k8s.io/v1
        r!("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema", "flowschemas", "flowschema", [], false, &[], st),
        r!(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "PriorityLevelConfiguration",
            "prioritylevelconfigurations",
            "prioritylevelconfiguration",
            [],
            false,
            &[],
            st
        ),
    ];
    // autoscaling/v1 HPAs are autoscaling/v2 HPAs seen through a conversion.
    let mut hpa_v1 = r!(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        ["hpa"],
        true,
        ALL,
        &["status"]
    );
    hpa_v1.storage = ("autoscaling", "horizontalpodautoscalers");
    v.push(hpa_v1);
    // events.k8s.io/v1 Events share core Events' storage.
    let mut events = r!("events.k8s.io", "v1", "Event", "events", "event", ["ev"], true);
    events.storage = ("", "events");
    v.push(events);
    v
}

/// The resource table and lookups on it.
pub struct Registry {
    pub resources: Vec<Resource>,
}

impl Registry {
    pub fn new() -> Self {
        Registry { resources: builtin() }
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// Groups in discovery order (core first, then as upstream orders the built-in groups).
    pub fn groups(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for r in &self.resources {
            if !out.contains(&r.group) {
                out.push(r.group);
            }
        }
        out
    }

    pub fn versions(&self, group: &str) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for r in self.resources.iter().filter(|r| r.group == group) {
            if !out.contains(&r.version) {
                out.push(r.version);
            }
        }
        out
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}
