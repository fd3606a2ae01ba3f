//! PersistentVolume and claim helpers shared by the scheduler's VolumeBinding and the
//! controller-manager's PersistentVolume binder: classes, sizes and whether a volume can serve a claim.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Set on a claim once its binding is complete.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume whose binding a controller (not a user) made.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The node the scheduler chose for a claim of a `WaitForFirstConsumer` class.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// A class without a provisioner (statically provisioned local volumes).
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// Whether a volume's `claimRef` names the claim (its uid, when the reference carries one).
pub fn claim_ref_is(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some_and(|r| {
        r.namespace == c.metadata.namespace
            && r.name == c.metadata.name
            && r.uid.as_ref().is_none_or(|u| Some(u) == c.metadata.uid.as_ref())
    })
}

/// The claims a pod's volumes name, with whether each is a generic ephemeral volume's (whose claim
/// is `<pod>-<volume>`, made by the ephemeral volume controller).
pub fn pod_claims(pod: &Pod) -> Vec<(String, bool)> {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes
        .into_iter()
        .flatten()
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(c), _) => Some((c.claim_name.clone(), false)),
            (None, Some(_)) => Some((format!("{name}-{}", v.name), true)),
            _ => None,
        })
        .collect()
}

/// A class named by the beta annotation, else by the spec.
fn class(meta: &ObjectMeta, spec_class: Option<&String>) -> String {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
        .or(spec_class)
        .cloned()
        .unwrap_or_default()
}

/// A claim's class: the beta annotation, else `spec.storageClassName`.
pub fn claim_class(c: &PersistentVolumeClaim) -> String {
    class(&c.metadata, c.spec.as_ref().and_then(|s| s.storage_class_name.as_ref()))
}

/// A volume's class: the beta annotation, else `spec.storageClassName`.
pub fn volume_class(v: &PersistentVolume) -> String {
    class(&v.metadata, v.spec.as_ref().and_then(|s| s.storage_class_name.as_ref()))
}

pub fn quantity(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> i64 {
    q.and_then(|q| apimachinery::quantity::value(&q.0)).unwrap_or(0)
}

/// Whether `v` could serve `c` (ignoring nodes and who else wants it): unclaimed or pre-bound to `c`,
/// same class, all access modes, enough room, the selector and the volume mode.
pub fn volume_matches(c: &PersistentVolumeClaim, v: &PersistentVolume) -> bool {
    let (Some(cs), Some(vs)) = (c.spec.as_ref(), v.spec.as_ref()) else { return false };
    if v.metadata.deletion_timestamp.is_some() {
        return false;
    }
    if vs.claim_ref.is_some() && !claim_ref_is(v, c) {
        return false;
    }
    if cs.volume_name.as_ref().is_some_and(|n| !n.is_empty() && Some(n) != v.metadata.name.as_ref()) {
        return false;
    }
    if volume_class(v) != claim_class(c) {
        return false;
    }
    let modes = vs.access_modes.clone().unwrap_or_default();
    if !cs.access_modes.iter().flatten().all(|m| modes.contains(m)) {
        return false;
    }
    if cs.volume_mode.as_deref().unwrap_or("Filesystem") != vs.volume_mode.as_deref().unwrap_or("Filesystem") {
        return false;
    }
    let want = quantity(cs.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")));
    let have = quantity(vs.capacity.as_ref().and_then(|c| c.get("storage")));
    if have < want {
        return false;
    }
    if let Some(sel) = &cs.selector {
        let sel = serde_json::to_value(sel).unwrap_or_default();
        let labels = v.metadata.labels.clone().unwrap_or_default();
        if !apimachinery::labels::Selector::from_label_selector(&sel).is_ok_and(|s| s.matches(&labels)) {
            return false;
        }
    }
    true
}

/// The volumes that could serve `c` ([`volume_matches`]): one pre-bound to it first, then the
/// smallest.
pub fn matching_volumes(
    c: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = std::sync::Arc<PersistentVolume>>,
) -> Vec<std::sync::Arc<PersistentVolume>> {
    let mut fits: Vec<_> = volumes.into_iter().filter(|v| volume_matches(c, v)).collect();
    fits.sort_by_key(|v| {
        let spec = v.spec.as_ref();
        (
            spec.and_then(|s| s.claim_ref.as_ref()).is_none(),
            quantity(spec.and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage"))),
        )
    });
    fits
}
