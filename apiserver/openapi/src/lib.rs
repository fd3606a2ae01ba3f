//! OpenAPI for the built-in API, generated from k8s-openapi's schemas (upstream's names and descriptions),
//! and the schema walk behind `fieldValidation=Strict|Warn` (unknown fields).
//!
//! Kept in its own crate: k8s-openapi is large, and this way it is compiled once and cached.
//!
//! ```
//! let spec = apiserver_openapi::Spec::build(&[("apps", "v1", "Deployment", "deployments", true)]);
//! let doc = spec.group_version_doc("apis/apps/v1").unwrap();
//! assert!(doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"].is_object());
//! ```

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

macro_rules! types {
    ($($g:literal $v:literal $k:literal => $t:ty),* $(,)?) => {
        /// Adds the schema of a built-in kind to `gen`; returns its definition name, or `None` for a kind
        /// this table does not know.
        fn schema_for(gen: &mut SchemaGenerator, group: &str, version: &str, kind: &str) -> Option<String> {
            use k8s_openapi::api::*;
            use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
            match (group, version, kind) {
                $(($g, $v, $k) => {
                    gen.subschema_for::<$t>();
                    Some(<$t as schemars::JsonSchema>::schema_name().into_owned())
                })*
                _ => None,
            }
        }
    };
}

types! {
    "" "v1" "Namespace" => core::v1::Namespace,
    "" "v1" "ConfigMap" => core::v1::ConfigMap,
    "" "v1" "Secret" => core::v1::Secret,
    "" "v1" "ServiceAccount" => core::v1::ServiceAccount,
    "" "v1" "Pod" => core::v1::Pod,
    "" "v1" "Service" => core::v1::Service,
    "" "v1" "Endpoints" => core::v1::Endpoints,
    "" "v1" "Event" => core::v1::Event,
    "" "v1" "Node" => core::v1::Node,
    "" "v1" "PersistentVolume" => core::v1::PersistentVolume,
    "" "v1" "PersistentVolumeClaim" => core::v1::PersistentVolumeClaim,
    "" "v1" "LimitRange" => core::v1::LimitRange,
    "" "v1" "ResourceQuota" => core::v1::ResourceQuota,
    "" "v1" "ReplicationController" => core::v1::ReplicationController,
    "" "v1" "PodTemplate" => core::v1::PodTemplate,
    "apps" "v1" "Deployment" => apps::v1::Deployment,
    "apps" "v1" "ReplicaSet" => apps::v1::ReplicaSet,
    "apps" "v1" "StatefulSet" => apps::v1::StatefulSet,
    "apps" "v1" "DaemonSet" => apps::v1::DaemonSet,
    "apps" "v1" "ControllerRevision" => apps::v1::ControllerRevision,
    "batch" "v1" "Job" => batch::v1::Job,
    "batch" "v1" "CronJob" => batch::v1::CronJob,
    "autoscaling" "v2" "HorizontalPodAutoscaler" => autoscaling::v2::HorizontalPodAutoscaler,
    "autoscaling" "v1" "HorizontalPodAutoscaler" => autoscaling::v1::HorizontalPodAutoscaler,
    "coordination.k8s.io" "v1" "Lease" => coordination::v1::Lease,
    "discovery.k8s.io" "v1" "EndpointSlice" => discovery::v1::EndpointSlice,
    "networking.k8s.io" "v1" "NetworkPolicy" => networking::v1::NetworkPolicy,
    "networking.k8s.io" "v1" "Ingress" => networking::v1::Ingress,
    "networking.k8s.io" "v1" "IngressClass" => networking::v1::IngressClass,
    "networking.k8s.io" "v1" "IPAddress" => networking::v1::IPAddress,
    "networking.k8s.io" "v1" "ServiceCIDR" => networking::v1::ServiceCIDR,
    "policy" "v1" "PodDisruptionBudget" => policy::v1::PodDisruptionBudget,
    "authentication.k8s.io" "v1" "TokenReview" => authentication::v1::TokenReview,
    "authentication.k8s.io" "v1" "SelfSubjectReview" => authentication::v1::SelfSubjectReview,
    "authorization.k8s.io" "v1" "SubjectAccessReview" => authorization::v1::SubjectAccessReview,
    "authorization.k8s.io" "v1" "SelfSubjectAccessReview" => authorization::v1::SelfSubjectAccessReview,
    "authorization.k8s.io" "v1" "SelfSubjectRulesReview" => authorization::v1::SelfSubjectRulesReview,
    "authorization.k8s.io" "v1" "LocalSubjectAccessReview" => authorization::v1::LocalSubjectAccessReview,
    "rbac.authorization.k8s.io" "v1" "Role" => rbac::v1::Role,
    "rbac.authorization.k8s.io" "v1" "RoleBinding" => rbac::v1::RoleBinding,
    "rbac.authorization.k8s.io" "v1" "ClusterRole" => rbac::v1::ClusterRole,
    "rbac.authorization.k8s.io" "v1" "ClusterRoleBinding" => rbac::v1::ClusterRoleBinding,
    "scheduling.k8s.io" "v1" "PriorityClass" => scheduling::v1::PriorityClass,
    "storage.k8s.io" "v1" "StorageClass" => storage::v1::StorageClass,
    "storage.k8s.io" "v1" "CSIDriver" => storage::v1::CSIDriver,
    "storage.k8s.io" "v1" "CSINode" => storage::v1::CSINode,
    "storage.k8s.io" "v1" "VolumeAttachment" => storage::v1::VolumeAttachment,
    "node.k8s.io" "v1" "RuntimeClass" => node::v1::RuntimeClass,
    "certificates.k8s.io" "v1" "CertificateSigningRequest" => certificates::v1::CertificateSigningRequest,
    "admissionregistration.k8s.io" "v1" "MutatingWebhookConfiguration" => admissionregistration::v1::MutatingWebhookConfiguration,
    "admissionregistration.k8s.io" "v1" "ValidatingWebhookConfiguration" => admissionregistration::v1::ValidatingWebhookConfiguration,
    "apiextensions.k8s.io" "v1" "CustomResourceDefinition" => apiextensions::v1::CustomResourceDefinition,
    "flowcontrol.apiserver.k8s.io" "v1" "FlowSchema" => flowcontrol::v1::FlowSchema,
    "flowcontrol.apiserver.k8s.io" "v1" "PriorityLevelConfiguration" => flowcontrol::v1::PriorityLevelConfiguration,
    "events.k8s.io" "v1" "Event" => events::v1::Event,
}

/// Upstream's patch strategies (`patchStrategy`, `patchMergeKey` in the API types): (definition, field,
/// strategy, merge key). Lists not named here are replaced by a strategic merge patch.
const PATCH_STRATEGIES: &[(&str, &str, &str, Option<&str>)] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", "merge", None),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "merge", Some("uid")),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "merge,retainKeys", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "containers", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", Some("ip")),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "merge", Some("topologyKey")),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", "merge,retainKeys", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", "merge", Some("name")),
    ("io.k8s.api.core.v1.Container", "ports", "merge", Some("containerPort")),
    ("io.k8s.api.core.v1.Container", "env", "merge", Some("name")),
    ("io.k8s.api.core.v1.Container", "volumeMounts", "merge", Some("mountPath")),
    ("io.k8s.api.core.v1.Container", "volumeDevices", "merge", Some("devicePath")),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", "merge", Some("name")),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", "merge", Some("mountPath")),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", "merge", Some("devicePath")),
    ("io.k8s.api.core.v1.PodStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "merge", Some("ip")),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", Some("port")),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", None),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", "merge", Some("type")),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "retainKeys", None),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.DaemonSetSpec", "updateStrategy", "retainKeys", None),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", "merge", Some("type")),
];

/// Upstream's `+listType` markers (`x-kubernetes-list-type`, `-list-map-keys`): (definition, field,
/// type, map keys). Lists not named here are atomic. Field ownership (managedFields) follows them.
const LIST_TYPES: &[(&str, &str, &str, &[&str])] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", "set", &[]),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "map", &["uid"]),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "containers", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "map", &["ip"]),
    ("io.k8s.api.core.v1.PodSpec", "tolerations", "atomic", &[]),
    ("io.k8s.api.core.v1.PodSpec", "readinessGates", "atomic", &[]),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "map", &["topologyKey", "whenUnsatisfiable"]),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", "map", &["name"]),
    ("io.k8s.api.core.v1.Container", "command", "atomic", &[]),
    ("io.k8s.api.core.v1.Container", "args", "atomic", &[]),
    ("io.k8s.api.core.v1.Container", "ports", "map", &["containerPort", "protocol"]),
    ("io.k8s.api.core.v1.Container", "envFrom", "atomic", &[]),
    ("io.k8s.api.core.v1.Container", "env", "map", &["name"]),
    ("io.k8s.api.core.v1.Container", "resizePolicy", "atomic", &[]),
    ("io.k8s.api.core.v1.Container", "volumeMounts", "map", &["mountPath"]),
    ("io.k8s.api.core.v1.Container", "volumeDevices", "map", &["devicePath"]),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", "map", &["name"]),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", "map", &["mountPath"]),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", "map", &["devicePath"]),
    ("io.k8s.api.core.v1.PodStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "map", &["ip"]),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "atomic", &[]),
    ("io.k8s.api.core.v1.PodStatus", "containerStatuses", "atomic", &[]),
    ("io.k8s.api.core.v1.PodStatus", "initContainerStatuses", "atomic", &[]),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "map", &["port", "protocol"]),
    ("io.k8s.api.core.v1.ServiceSpec", "clusterIPs", "atomic", &[]),
    ("io.k8s.api.core.v1.ServiceSpec", "externalIPs", "atomic", &[]),
    ("io.k8s.api.core.v1.ServiceSpec", "ipFamilies", "atomic", &[]),
    ("io.k8s.api.core.v1.ServiceSpec", "loadBalancerSourceRanges", "atomic", &[]),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "set", &[]),
    ("io.k8s.api.core.v1.NodeSpec", "taints", "atomic", &[]),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", "map", &["type"]),
    ("io.k8s.api.core.v1.NodeStatus", "images", "atomic", &[]),
    ("io.k8s.api.core.v1.NodeStatus", "volumesInUse", "atomic", &[]),
    ("io.k8s.api.core.v1.NamespaceSpec", "finalizers", "atomic", &[]),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "accessModes", "atomic", &[]),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "volumeClaimTemplates", "atomic", &[]),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "atomic", &[]),
    ("io.k8s.api.batch.v1.CronJobStatus", "active", "atomic", &[]),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics", "atomic", &[]),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.discovery.v1.EndpointSlice", "endpoints", "atomic", &[]),
    ("io.k8s.api.discovery.v1.EndpointSlice", "ports", "atomic", &[]),
];

/// Upstream's `+structType=atomic` types (`x-kubernetes-map-type: atomic`): owned as a whole.
const ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.ConfigMapEnvSource",
    "io.k8s.api.core.v1.SecretEnvSource",
    "io.k8s.api.core.v1.TopologySelectorTerm",
];

fn list_type(def: &str, field: &str) -> Option<(&'static str, &'static [&'static str])> {
    LIST_TYPES.iter().find(|(d, f, _, _)| *d == def && *f == field).map(|(_, _, t, k)| (*t, *k))
}

fn patch_strategy(def: &str, field: &str) -> Option<(&'static str, Option<&'static str>)> {
    PATCH_STRATEGIES.iter().find(|(d, f, _, _)| *d == def && *f == field).map(|(_, _, s, k)| (*s, *k))
}

/// Strategic-merge-patch metadata read off the schemas and [`PATCH_STRATEGIES`].
pub struct SchemaPatchMeta<'a> {
    schemas: &'a Value,
    schema: &'a Value,
    def: Option<&'a str>,
}

impl<'a> SchemaPatchMeta<'a> {
    /// Follows `$ref`s, remembering the last definition name.
    fn at(schemas: &'a Value, mut schema: &'a Value, mut def: Option<&'a str>) -> Self {
        for _ in 0..8 {
            let next = schema
                .get("$ref")
                .or_else(|| schema.get("allOf").and_then(|a| a.get(0)).and_then(|f| f.get("$ref")))
                .and_then(Value::as_str);
            let Some(r) = next else { break };
            let name = r.rsplit('/').next().unwrap_or("");
            match schemas.get(name) {
                Some(s) => {
                    schema = s;
                    def = Some(
                        schemas
                            .as_object()
                            .and_then(|m| m.get_key_value(name))
                            .map(|(k, _)| k.as_str())
                            .unwrap_or(name),
                    );
                }
                None => break,
            }
        }
        SchemaPatchMeta { schemas, schema, def }
    }
}

impl apimachinery::strategicpatch::PatchMeta for SchemaPatchMeta<'_> {
    fn field(
        &self,
        name: &str,
    ) -> (apimachinery::strategicpatch::FieldStrategy, Option<Box<dyn apimachinery::strategicpatch::PatchMeta + '_>>)
    {
        let strategy = self
            .def
            .and_then(|d| patch_strategy(d, name))
            .map(|(s, k)| apimachinery::strategicpatch::FieldStrategy {
                merge: s.contains("merge"),
                merge_key: k.map(String::from),
                ..Default::default()
            })
            .unwrap_or_default();
        let mut strategy = strategy;
        if let Some((t, keys)) = self.def.and_then(|d| list_type(d, name)) {
            strategy.list = match t {
                "map" => apimachinery::strategicpatch::ListType::Map(keys.to_vec()),
                "set" => apimachinery::strategicpatch::ListType::Set,
                _ => apimachinery::strategicpatch::ListType::Atomic,
            };
        }
        strategy.always_present = self.def == Some("io.k8s.api.core.v1.PodSpec") && name == "containers";
        let child = match self.schema.get("properties").and_then(|p| p.get(name)) {
            Some(prop) => {
                let resolved = SchemaPatchMeta::at(self.schemas, prop, None);
                // A list's metadata is that of its elements.
                match resolved.schema.get("items") {
                    Some(items) => Some(SchemaPatchMeta::at(self.schemas, items, None)),
                    None => Some(resolved),
                }
            }
            None => self
                .schema
                .get("additionalProperties")
                .filter(|a| a.is_object())
                .map(|a| SchemaPatchMeta::at(self.schemas, a, None)),
        };
        (strategy, child.map(|c| Box::new(c) as Box<dyn apimachinery::strategicpatch::PatchMeta + '_>))
    }

    fn is_map(&self) -> bool {
        self.schema.get("properties").is_none() && self.schema.get("additionalProperties").is_some_and(Value::is_object)
    }

    fn is_atomic(&self) -> bool {
        self.def.is_some_and(|d| ATOMIC_STRUCTS.contains(&d))
    }
}

/// One served resource: (group, version, kind, plural, namespaced).
pub type ResourceRow<'a> = (&'a str, &'a str, &'a str, &'a str, bool);

/// The OpenAPI v3 documents of every group-version, and the schemas the validator walks.
pub struct Spec {
    /// `api/v1`, `apis/apps/v1` -> document.
    docs: BTreeMap<String, Value>,
    /// (group, version, kind) -> (group-version path, definition name).
    kinds: BTreeMap<(String, String, String), (String, String)>,
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn param(name: &str, location: &str, description: &str) -> Value {
    json!({"name": name, "in": location, "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

/// v3 parameters (`schema: {type}`) as v2 ones (`type` inline).
fn v2_params(v: &Value) -> Value {
    let list = v.as_array().cloned().unwrap_or_default();
    Value::Array(
        list.into_iter()
            .map(|mut p| {
                if let Some(Value::Object(schema)) = p.as_object_mut().and_then(|o| o.remove("schema")) {
                    for (k, v) in schema {
                        p[k] = v;
                    }
                }
                if p.get("in").and_then(Value::as_str) == Some("path") {
                    p["required"] = json!(true);
                }
                p
            })
            .collect(),
    )
}

fn gvk_ext(group: &str, version: &str, kind: &str) -> Value {
    json!([{"group": group, "version": version, "kind": kind}])
}

impl Spec {
    pub fn build(resources: &[ResourceRow<'_>]) -> Spec {
        let mut by_gv: BTreeMap<String, Vec<&ResourceRow<'_>>> = BTreeMap::new();
        for r in resources {
            by_gv.entry(gv_path(r.0, r.1)).or_default().push(r);
        }
        let mut docs = BTreeMap::new();
        let mut kinds = BTreeMap::new();
        for (path, rows) in by_gv {
            let mut settings = SchemaSettings::openapi3();
            settings.definitions_path = "/components/schemas".into();
            let mut gen = settings.into_generator();
            let mut paths = Map::new();
            let mut named = Vec::new();
            for (group, version, kind, plural, namespaced) in rows.iter().copied().copied() {
                let Some(def) = schema_for(&mut gen, group, version, kind) else { continue };
                kinds.insert((group.to_string(), version.to_string(), kind.to_string()), (path.clone(), def.clone()));
                named.push((def.clone(), group, version, kind));
                let item = if namespaced {
                    format!("/{path}/namespaces/{{namespace}}/{plural}/{{name}}")
                } else {
                    format!("/{path}/{plural}/{{name}}")
                };
                let ext = gvk_ext(group, version, kind);
                let body_ref = json!({"$ref": format!("#/components/schemas/{def}")});
                let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": body_ref}}}});
                let write_params = json!([
                    param("dryRun", "query", "When present, indicates that modifications should not be persisted."),
                    param("fieldManager", "query", "fieldManager is a name associated with the actor or entity that is making these changes."),
                    param("fieldValidation", "query", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict"),
                ]);
                let op = |verb: &str, action: &str, writes: bool| {
                    let mut o = json!({
                        "description": format!("{verb} the specified {kind}"),
                        "operationId": format!("{action}{kind}"),
                        "responses": ok,
                        "x-kubernetes-action": action,
                        "x-kubernetes-group-version-kind": ext[0],
                    });
                    if writes {
                        o["parameters"] = write_params.clone();
                    }
                    o
                };
                let mut params = vec![param("name", "path", &format!("name of the {kind}"))];
                if namespaced {
                    params.push(param(
                        "namespace",
                        "path",
                        "object name and auth scope, such as for teams and projects",
                    ));
                }
                let item_path = item.clone();
                paths.insert(
                    item,
                    json!({
                        "get": op("read", "get", false),
                        "put": op("replace", "put", true),
                        "patch": op("partially update", "patch", true),
                        "delete": op("delete", "delete", false),
                        "parameters": params,
                    }),
                );
                let collection = item_path.rsplit_once('/').map(|(c, _)| c.to_string()).unwrap_or_default();
                let mut coll_params = Vec::new();
                if namespaced {
                    coll_params.push(param(
                        "namespace",
                        "path",
                        "object name and auth scope, such as for teams and projects",
                    ));
                }
                paths.insert(
                    collection,
                    json!({
                        "get": op("list or watch objects of kind", "list", false),
                        "post": op("create a", "post", true),
                        "parameters": coll_params,
                    }),
                );
            }
            let mut schemas: Map<String, Value> =
                gen.definitions().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            // Upstream's patch extensions on the fields that have them.
            for (def, field, strategy, key) in PATCH_STRATEGIES {
                if let Some(Value::Object(prop)) =
                    schemas.get_mut(*def).and_then(|s| s.pointer_mut(&format!("/properties/{field}")))
                {
                    prop.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
                    if let Some(k) = key {
                        prop.insert("x-kubernetes-patch-merge-key".into(), json!(k));
                    }
                }
            }
            for (def, field, list_type, keys) in LIST_TYPES {
                if let Some(Value::Object(prop)) =
                    schemas.get_mut(*def).and_then(|s| s.pointer_mut(&format!("/properties/{field}")))
                {
                    prop.insert("x-kubernetes-list-type".into(), json!(list_type));
                    if !keys.is_empty() {
                        prop.insert("x-kubernetes-list-map-keys".into(), json!(keys));
                    }
                }
            }
            for def in ATOMIC_STRUCTS {
                if let Some(Value::Object(s)) = schemas.get_mut(*def) {
                    s.insert("x-kubernetes-map-type".into(), json!("atomic"));
                }
            }
            for (def, group, version, kind) in named {
                if let Some(Value::Object(s)) = schemas.get_mut(&def) {
                    s.insert("x-kubernetes-group-version-kind".into(), gvk_ext(group, version, kind));
                }
            }
            let title = "Kubernetes";
            docs.insert(
                path,
                json!({
                    "openapi": "3.0.0",
                    "info": {"title": title, "version": "v1.35.0"},
                    "paths": paths,
                    "components": {"schemas": schemas, "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}}},
                }),
            );
        }
        Spec { docs, kinds }
    }

    /// The `/openapi/v3` index: every group-version document with a hash that changes with its content.
    pub fn index(&self) -> Value {
        let paths: Map<String, Value> = self
            .docs
            .iter()
            .map(|(p, doc)| {
                let hash = fnv(&serde_json::to_vec(doc).unwrap_or_default());
                (p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash:016X}")}))
            })
            .collect();
        json!({"paths": paths})
    }

    /// `/openapi/v2`: one Swagger 2.0 document with every group-version's paths and definitions, converted
    /// from the v3 documents (parameters carry their type inline, bodies are `body` parameters).
    pub fn swagger_v2(&self) -> Value {
        let mut paths = Map::new();
        let mut definitions = Map::new();
        for doc in self.docs.values() {
            let text =
                serde_json::to_string(doc).unwrap_or_default().replace("#/components/schemas/", "#/definitions/");
            let doc: Value = serde_json::from_str(&text).unwrap_or_default();
            if let Some(Value::Object(s)) = doc.pointer("/components/schemas") {
                definitions.extend(s.clone());
            }
            let Some(Value::Object(ps)) = doc.get("paths") else { continue };
            for (path, item) in ps {
                let Value::Object(item) = item else { continue };
                let mut out = Map::new();
                for (k, v) in item {
                    if k == "parameters" {
                        out.insert(k.clone(), v2_params(v));
                        continue;
                    }
                    let mut op = v.clone();
                    if let Some(params) = v.get("parameters") {
                        op["parameters"] = v2_params(params);
                    }
                    if matches!(k.as_str(), "post" | "put" | "patch") {
                        let schema = v.pointer("/responses/200/content/application~1json/schema").cloned();
                        let mut params = op.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
                        params.insert(0, json!({"name": "body", "in": "body", "required": true, "schema": schema.unwrap_or(json!({"type": "object"}))}));
                        op["parameters"] = Value::Array(params);
                        op["consumes"] = if k == "patch" {
                            json!([
                                "application/json-patch+json",
                                "application/merge-patch+json",
                                "application/strategic-merge-patch+json"
                            ])
                        } else {
                            json!(["*/*"])
                        };
                    }
                    if let Some(Value::Object(responses)) = v.get("responses") {
                        let converted: Map<String, Value> = responses
                            .iter()
                            .map(|(code, r)| {
                                let mut out =
                                    json!({"description": r.get("description").cloned().unwrap_or(json!(code))});
                                if let Some(schema) = r.pointer("/content/application~1json/schema") {
                                    out["schema"] = schema.clone();
                                }
                                (code.clone(), out)
                            })
                            .collect();
                        op["responses"] = Value::Object(converted);
                    }
                    op["produces"] = json!(["application/json", "application/yaml"]);
                    op["schemes"] = json!(["https"]);
                    out.insert(k.clone(), op);
                }
                paths.insert(path.clone(), Value::Object(out));
            }
        }
        json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.35.0"},
            "paths": paths,
            "definitions": definitions,
            "securityDefinitions": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
            "security": [{"BearerToken": []}],
        })
    }

    /// `/openapi/v3/<path>`.
    pub fn group_version_doc(&self, path: &str) -> Option<&Value> {
        self.docs.get(path)
    }

    /// Strategic-merge-patch metadata for a kind (`None` for kinds without a schema: plain merge).
    pub fn patch_meta(&self, group: &str, version: &str, kind: &str) -> Option<SchemaPatchMeta<'_>> {
        let (path, def) = self.kinds.get(&(group.to_string(), version.to_string(), kind.to_string()))?;
        let schemas = self.docs.get(path)?.pointer("/components/schemas")?;
        let (name, schema) = schemas.as_object()?.get_key_value(def.as_str())?;
        Some(SchemaPatchMeta { schemas, schema, def: Some(name.as_str()) })
    }

    /// Fields of `obj` that the kind's schema does not declare, as JSON paths (`.spec.foo`), for
    /// `fieldValidation`. Kinds without a schema report nothing.
    /// A value of the wrong JSON type anywhere in `obj` (a bool where a string belongs), as Go's
    /// decoder reports it; such an object could not be decoded by any client, so it is never stored.
    pub fn type_error(&self, group: &str, version: &str, kind: &str, obj: &Value) -> Option<String> {
        let (path, def) = self.kinds.get(&(group.to_string(), version.to_string(), kind.to_string()))?;
        let schemas = self.docs.get(path).and_then(|d| d.pointer("/components/schemas"))?;
        type_error(schemas, &json!({"$ref": format!("#/components/schemas/{def}")}), obj, "", kind, 0)
    }

    pub fn unknown_fields(&self, group: &str, version: &str, kind: &str, obj: &Value) -> Vec<String> {
        let Some((path, def)) = self.kinds.get(&(group.to_string(), version.to_string(), kind.to_string())) else {
            return Vec::new();
        };
        let Some(schemas) = self.docs.get(path).and_then(|d| d.pointer("/components/schemas")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        walk(schemas, &json!({"$ref": format!("#/components/schemas/{def}")}), obj, String::new(), &mut out, 0);
        out
    }
}

/// The first value whose JSON type the schema does not allow, worded as Go's decoder words it
/// (`json: cannot unmarshal bool into Go struct field Container.spec.containers.command of type
/// string`), which upstream returns as a 400 before anything is stored.
fn type_error(schemas: &Value, schema: &Value, value: &Value, at: &str, owner: &str, depth: usize) -> Option<String> {
    if depth > 64 || value.is_null() {
        return None;
    }
    let s = resolve(schemas, schema);
    let name_of = |schema: &Value| -> Option<String> {
        schema.get("$ref").and_then(Value::as_str).map(|r| r.rsplit('.').next().unwrap_or(r).to_string())
    };
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let found = match value {
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => return None,
    };
    let int_or_string = s.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true)
        || s.get("format").and_then(Value::as_str) == Some("int-or-string");
    // Quantities decode from numbers as well as strings.
    let quantity = schema.get("$ref").and_then(Value::as_str).is_some_and(|r| r.ends_with("resource.Quantity"));
    let ok = types.is_empty()
        || types.iter().any(|t| match *t {
            "string" => found == "string" || (found == "number" && quantity),
            "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
            "number" => found == "number",
            "boolean" => found == "bool",
            "array" => found == "array",
            "object" => found == "object",
            "null" => false,
            _ => true,
        })
        || (int_or_string && (found == "string" || value.as_i64().is_some()));
    if !ok {
        let go = match types.first().copied().unwrap_or("") {
            "string" => "string".to_string(),
            "integer" => s.get("format").and_then(Value::as_str).unwrap_or("int64").to_string(),
            "number" => "float64".to_string(),
            "boolean" => "bool".to_string(),
            "array" => format!(
                "[]{}",
                s.get("items").and_then(&name_of).map(|n| format!("v1.{n}")).unwrap_or_else(|| "string".into())
            ),
            _ => name_of(schema).map(|n| format!("v1.{n}")).unwrap_or_else(|| "map[string]interface {}".into()),
        };
        let field = at.trim_start_matches('.');
        return Some(format!("json: cannot unmarshal {found} into Go struct field {owner}.{field} of type {go}"));
    }
    match value {
        Value::Object(fields) => {
            let here = name_of(schema).unwrap_or_else(|| owner.to_string());
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, v) in fields.iter().filter(|(k, _)| !k.starts_with('$')) {
                    if let Some(p) = props.get(k) {
                        if let Some(e) = type_error(schemas, p, v, &format!("{at}.{k}"), &here, depth + 1) {
                            return Some(e);
                        }
                    }
                }
            } else if let Some(extra) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, v) in fields {
                    if let Some(e) = type_error(schemas, extra, v, &format!("{at}.{k}"), &here, depth + 1) {
                        return Some(e);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = s.get("items") {
                for v in items {
                    if let Some(e) = type_error(schemas, item, v, at, owner, depth + 1) {
                        return Some(e);
                    }
                }
            }
        }
        _ => {}
    }
    None
}

fn resolve<'a>(schemas: &'a Value, schema: &'a Value) -> &'a Value {
    let mut s = schema;
    for _ in 0..8 {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let name = r.rsplit('/').next().unwrap_or("");
            match schemas.get(name) {
                Some(next) => s = next,
                None => return s,
            }
        } else if let Some(first) = s.get("allOf").and_then(Value::as_array).and_then(|a| a.first()) {
            s = first;
        } else {
            return s;
        }
    }
    s
}

fn walk(schemas: &Value, schema: &Value, value: &Value, at: String, out: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    let s = resolve(schemas, schema);
    match value {
        Value::Object(fields) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                // `$patch`, `$setElementOrder/...` and friends are strategic-merge directives, not fields.
                for (k, v) in fields.iter().filter(|(k, _)| !k.starts_with('$')) {
                    match props.get(k) {
                        Some(p) => walk(schemas, p, v, format!("{at}.{k}"), out, depth + 1),
                        None => out.push(format!("{at}.{k}")),
                    }
                }
            } else if let Some(extra) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, v) in fields {
                    walk(schemas, extra, v, format!("{at}.{k}"), out, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = s.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(schemas, item, v, format!("{at}[{i}]"), out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec::build(&[("", "v1", "ConfigMap", "configmaps", true), ("apps", "v1", "Deployment", "deployments", true)])
    }

    #[test]
    fn documents_carry_gvk_and_field_validation() {
        let s = spec();
        let idx = s.index();
        assert!(idx["paths"]["api/v1"]["serverRelativeURL"].as_str().unwrap().starts_with("/openapi/v3/api/v1?hash="));
        let doc = s.group_version_doc("apis/apps/v1").unwrap();
        let dep = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(dep["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
        let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        assert_eq!(item["patch"]["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        // kubectl looks for the parameter on the PATCH operation itself.
        assert!(item["patch"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        assert!(doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"].is_object());
        assert!(doc["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentStrategy"]["properties"]["rollingUpdate"]
            .is_object());
    }

    #[test]
    fn strategic_patch_uses_upstream_merge_keys() {
        let s = spec();
        let meta = s.patch_meta("apps", "v1", "Deployment").unwrap();
        let mut dep = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "a", "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "s"}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "b"}]}}}});
        apimachinery::strategicpatch::apply(&mut dep, &patch, &meta).unwrap();
        let cs = &dep["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0], json!({"name": "web", "image": "b", "ports": [{"containerPort": 80}]}));
        assert_eq!(cs[1]["name"], "side");
        let doc = s.group_version_doc("apis/apps/v1").unwrap();
        let containers = &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    }

    #[test]
    fn unknown_fields_are_found_at_any_depth() {
        let s = spec();
        let ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "y"}}, "data": {"k": "v"}});
        assert!(s.unknown_fields("", "v1", "ConfigMap", &ok).is_empty());
        let bad = json!({"metadata": {"name": "a", "nmae": "typo"}, "spec": {}});
        assert_eq!(s.unknown_fields("", "v1", "ConfigMap", &bad), vec![".metadata.nmae", ".spec"]);
        let dep =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i", "imagePolicy": "x"}]}}}});
        assert_eq!(
            s.unknown_fields("apps", "v1", "Deployment", &dep),
            vec![".spec.template.spec.containers[0].imagePolicy"]
        );
    }

    #[test]
    fn list_types_and_atomic_structs_are_published() {
        let s = spec();
        let doc = s.group_version_doc("apis/apps/v1").unwrap();
        let schemas = &doc["components"]["schemas"];
        let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-list-type"], "map");
        assert_eq!(ports["x-kubernetes-list-map-keys"], json!(["containerPort", "protocol"]));
        assert_eq!(
            schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["finalizers"]
                ["x-kubernetes-list-type"],
            "set"
        );
        assert_eq!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"]["x-kubernetes-map-type"], "atomic");
    }

    /// The managed fields upstream records for `kubectl create deployment web --image=nginx`, apart from
    /// `rollingUpdate`, a pointer field upstream marks with `.` (see docs/ARCHITECTURE.md).
    #[test]
    fn deployment_create_owns_fields_as_upstream() {
        let s = spec();
        let meta = s.patch_meta("apps", "v1", "Deployment").unwrap();
        let dep = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "containers": [{"name": "nginx", "image": "nginx", "resources": {}, "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
                    "restartPolicy": "Always", "securityContext": {}}}
            },
            "status": {}
        });
        let w = apimachinery::managedfields::Write {
            manager: "kubectl-create",
            api_version: "apps/v1",
            subresource: "",
            time: "2026-01-01T00:00:00Z",
            ignored: &["status"],
        };
        let e = apimachinery::managedfields::update(&[], None, &dep, &meta, &w);
        assert_eq!(
            e[0]["fieldsV1"],
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:replicas": {}, "f:selector": {},
                    "f:strategy": {"f:rollingUpdate": {"f:maxSurge": {}, "f:maxUnavailable": {}}, "f:type": {}},
                    "f:template": {
                        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                        "f:spec": {
                            "f:containers": {"k:{\"name\":\"nginx\"}": {
                                ".": {}, "f:image": {}, "f:name": {}, "f:resources": {},
                                "f:ports": {".": {}, "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}}
                            }},
                            "f:restartPolicy": {}, "f:securityContext": {}
                        }
                    }
                }
            })
        );
    }

    #[test]
    fn swagger_v2_has_definitions_and_body_parameters() {
        let v2 = spec().swagger_v2();
        assert_eq!(v2["swagger"], "2.0");
        assert!(v2["definitions"]["io.k8s.api.apps.v1.Deployment"].is_object());
        let text = serde_json::to_string(&v2).unwrap();
        assert!(!text.contains("#/components/schemas/"));
        let post = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        assert_eq!(post["parameters"][0]["in"], "body");
        assert_eq!(post["parameters"][0]["schema"]["$ref"], "#/definitions/io.k8s.api.apps.v1.Deployment");
        assert_eq!(post["parameters"][1]["type"], "string");
    }
}
