//! VolumeRestrictions and VolumeBinding.
//!
//! VolumeRestrictions: a `ReadWriteOncePod` claim already used by a placed pod keeps every node
//! closed (preemption may free it), and a node whose pods use the same GCE PD, AWS EBS volume, iSCSI
//! IQN or RBD image (unless all uses are read-only) has "no available disk".
//!
//! VolumeBinding: a pod's claims must exist and not be terminating; a bound claim's volume must
//! exist and its node affinity admit the node; an unbound claim of an `Immediate` class leaves the pod
//! waiting for the PersistentVolume controller; an unbound claim of a `WaitForFirstConsumer` class
//! needs, on the node, an available volume that matches it (class, access modes, size, selector,
//! volume mode, node affinity; the smallest wins) or a class that can provision there. For the
//! chosen node, the scheduler then reserves the volumes by setting their `claimRef` (or asks for
//! provisioning with the claim's `volume.kubernetes.io/selected-node` annotation) before binding the
//! pod, and waits for the PersistentVolume controller to bind the claims, as upstream's PreBind does.

use crate::cache::{Cache, NodeInfo};
use crate::plugins::{term_matches, Failure};
use component_base::storage::{claim_class, matching_volumes, pod_claims, NO_PROVISIONER};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Volume};
use k8s_openapi::api::storage::v1::StorageClass;
use std::collections::HashSet;
use std::sync::Arc;

pub const RWOP_CONFLICT: &str =
    "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode";
pub const DISK_CONFLICT: &str = "node(s) had no available disk";
pub const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const PV_NOT_EXIST: &str = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// A disk volume that two pods on one node may not both use read-write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disk {
    Gce { pd: String, read_only: bool },
    Ebs { id: String },
    Iscsi { iqn: String, read_only: bool },
    Rbd { monitors: Vec<String>, pool: String, image: String, read_only: bool },
}

impl Disk {
    fn conflicts(&self, o: &Disk) -> bool {
        match (self, o) {
            (Disk::Gce { pd: a, read_only: ra }, Disk::Gce { pd: b, read_only: rb }) => a == b && !(*ra && *rb),
            (Disk::Ebs { id: a }, Disk::Ebs { id: b }) => a == b,
            (Disk::Iscsi { iqn: a, read_only: ra }, Disk::Iscsi { iqn: b, read_only: rb }) => a == b && !(*ra && *rb),
            (
                Disk::Rbd { monitors: ma, pool: pa, image: ia, read_only: ra },
                Disk::Rbd { monitors: mb, pool: pb, image: ib, read_only: rb },
            ) => pa == pb && ia == ib && ma.iter().any(|m| mb.contains(m)) && !(*ra && *rb),
            _ => false,
        }
    }
}

/// The pod's disk volumes (VolumeRestrictions' conflict check).
pub fn disks(volumes: &[Volume]) -> Vec<Disk> {
    let mut out = Vec::new();
    for v in volumes {
        if let Some(g) = &v.gce_persistent_disk {
            out.push(Disk::Gce { pd: g.pd_name.clone(), read_only: g.read_only.unwrap_or(false) });
        }
        if let Some(a) = &v.aws_elastic_block_store {
            out.push(Disk::Ebs { id: a.volume_id.clone() });
        }
        if let Some(i) = &v.iscsi {
            out.push(Disk::Iscsi { iqn: i.iqn.clone(), read_only: i.read_only.unwrap_or(false) });
        }
        if let Some(r) = &v.rbd {
            out.push(Disk::Rbd {
                monitors: r.monitors.clone(),
                pool: r.pool.clone().unwrap_or_else(|| "rbd".into()),
                image: r.image.clone(),
                read_only: r.read_only.unwrap_or(false),
            });
        }
    }
    out
}

/// The claims a pod uses, as `namespace/name` keys.
pub fn claim_keys(pod: &Pod) -> Vec<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    pod_claims(pod).into_iter().map(|(c, _)| format!("{ns}/{c}")).collect()
}

/// The lists VolumeBinding reads (the scheduler's informers).
pub trait Listers {
    fn claim(&self, key: &str) -> Option<Arc<PersistentVolumeClaim>>;
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>>;
    fn volumes(&self) -> Vec<Arc<PersistentVolume>>;
    fn class(&self, name: &str) -> Option<Arc<StorageClass>>;
}

/// Whether a volume's required node affinity admits the node.
fn volume_fits_node(v: &PersistentVolume, node: &NodeInfo) -> bool {
    let required = v.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref());
    required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// What the chosen node needs done for a claim before the pod binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Set the volume's `claimRef` to the claim (name of the volume, key of the claim).
    Bind { volume: String, claim: String },
    /// Ask the class's provisioner for a volume on the node.
    Provision { claim: String },
}

/// An unbound delayed claim, its class, and the volumes that could serve it.
type Delayed = (Arc<PersistentVolumeClaim>, Option<Arc<StorageClass>>, Vec<Arc<PersistentVolume>>);

/// The per-pod state: computed once, asked per node.
#[derive(Default)]
pub struct State {
    pub claims: Vec<String>,
    rwop_conflict: bool,
    disks: Vec<Disk>,
    bound: Vec<Option<Arc<PersistentVolume>>>,
    /// Unbound `WaitForFirstConsumer` claims with their class and the volumes that could serve them,
    /// smallest first.
    delayed: Vec<Delayed>,
}

/// PreFilter of VolumeRestrictions and VolumeBinding. An error is upstream's message for a pod no
/// node can take (`persistentvolumeclaim "x" not found`, ...).
pub fn prepare(
    pod: &Pod,
    cache: &Cache,
    listers: &dyn Listers,
    taken: &HashSet<String>,
    restrictions: bool,
    binding: bool,
) -> Result<State, String> {
    let mut st = State::default();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or(&[]);
    if volumes.is_empty() || !(restrictions || binding) {
        return Ok(st);
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut claims = Vec::new();
    for (name, ephemeral) in pod_claims(pod) {
        let key = format!("{ns}/{name}");
        let Some(c) = listers.claim(&key) else {
            if ephemeral {
                return Err(format!(
                    "waiting for ephemeral volume controller to create the persistentvolumeclaim {name:?}"
                ));
            }
            return Err(format!("persistentvolumeclaim {name:?} not found"));
        };
        if c.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
        }
        claims.push(c);
        st.claims.push(key);
    }
    if restrictions {
        st.disks = disks(volumes);
        st.rwop_conflict = claims.iter().any(|c| {
            c.spec
                .as_ref()
                .and_then(|s| s.access_modes.as_ref())
                .is_some_and(|m| m.iter().any(|m| m == "ReadWriteOncePod"))
                && cache.claim_users(&key_of_claim(c)) > 0
        });
    }
    if !binding {
        return Ok(st);
    }
    for c in claims {
        let bound_to = c.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|n| !n.is_empty());
        if let Some(pv) = bound_to {
            st.bound.push(listers.volume(&pv));
            continue;
        }
        let class_name = claim_class(&c);
        let class = if class_name.is_empty() { None } else { listers.class(&class_name) };
        if !class_name.is_empty() && class.is_none() {
            return Err(format!("storageclass.storage.k8s.io {class_name:?} not found"));
        }
        let delayed = class.as_ref().and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer");
        if !delayed {
            return Err(UNBOUND_IMMEDIATE.into());
        }
        let free = listers.volumes().into_iter().filter(|v| !taken.contains(v.metadata.name.as_deref().unwrap_or("")));
        let fits = matching_volumes(&c, free);
        st.delayed.push((c, class, fits));
    }
    Ok(st)
}

fn key_of_claim(c: &PersistentVolumeClaim) -> String {
    format!("{}/{}", c.metadata.namespace.as_deref().unwrap_or(""), c.metadata.name.as_deref().unwrap_or(""))
}

/// Whether a class may provision on the node (its `allowedTopologies`, if any, admit it).
fn can_provision(class: &StorageClass, node: &NodeInfo) -> bool {
    if class.provisioner == NO_PROVISIONER {
        return false;
    }
    let Some(topologies) = class.allowed_topologies.as_ref().filter(|t| !t.is_empty()) else { return true };
    topologies.iter().any(|t| {
        t.match_label_expressions
            .iter()
            .flatten()
            .all(|e| node.labels.get(&e.key).is_some_and(|v| e.values.contains(v)))
    })
}

impl State {
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty() && self.disks.is_empty()
    }

    /// VolumeRestrictions' and VolumeBinding's filters on one node, in upstream's order.
    pub fn filter(&self, node: &NodeInfo, restrictions: bool, binding: bool) -> Result<(), Failure> {
        if restrictions {
            if self.rwop_conflict {
                return Err(Failure { reason: RWOP_CONFLICT.into(), resolvable: true });
            }
            if node.disks.iter().any(|d| self.disks.iter().any(|m| m.conflicts(d))) {
                return Err(Failure { reason: DISK_CONFLICT.into(), resolvable: true });
            }
        }
        if binding {
            let unresolvable = |r: &str| Failure { reason: r.into(), resolvable: false };
            for pv in &self.bound {
                match pv {
                    None => return Err(unresolvable(PV_NOT_EXIST)),
                    Some(pv) if !volume_fits_node(pv, node) => return Err(unresolvable(NODE_CONFLICT)),
                    Some(_) => {}
                }
            }
            if self.actions(node).is_none() {
                return Err(unresolvable(BIND_CONFLICT));
            }
        }
        Ok(())
    }

    /// For each unbound delayed claim: a distinct matching volume admitted by the node, else
    /// provisioning when the class can; None when some claim can have neither.
    pub fn actions(&self, node: &NodeInfo) -> Option<Vec<Action>> {
        let mut used: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        for (c, class, fits) in &self.delayed {
            let claim = key_of_claim(c);
            let pick = fits.iter().find(|v| {
                let name = v.metadata.name.as_deref().unwrap_or("");
                !used.contains(name) && volume_fits_node(v, node)
            });
            match pick {
                Some(v) => {
                    let name = v.metadata.name.as_deref().unwrap_or("");
                    used.insert(name);
                    out.push(Action::Bind { volume: name.to_string(), claim });
                }
                None if class.as_ref().is_some_and(|cl| can_provision(cl, node)) => {
                    out.push(Action::Provision { claim })
                }
                None => return None,
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, size: &str, node: Option<&str>) -> Arc<PersistentVolume> {
        let mut v = json!({"metadata": {"name": name}, "spec": {"capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"], "storageClassName": "local", "hostPath": {"path": "/tmp"}}});
        if let Some(n) = node {
            v["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [n]}]}]}});
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn node(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: [("kubernetes.io/hostname".to_string(), name.to_string())].into(),
            known: true,
            ..Default::default()
        }
    }

    #[test]
    fn delayed_claims_take_the_smallest_fitting_volume_on_the_node() {
        let claim: Arc<PersistentVolumeClaim> = Arc::new(
            serde_json::from_value(json!({"metadata": {"namespace": "ns", "name": "data", "uid": "u"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                         "resources": {"requests": {"storage": "1Gi"}}}}))
            .unwrap(),
        );
        let class: Arc<StorageClass> = Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "local"}, "provisioner": NO_PROVISIONER,
                "volumeBindingMode": "WaitForFirstConsumer"}))
            .unwrap(),
        );
        let vols =
            vec![pv("big-a", "10Gi", Some("a")), pv("small-a", "2Gi", Some("a")), pv("tiny-b", "500Mi", Some("b"))];
        let pod: Pod = serde_json::from_value(json!({"metadata": {"namespace": "ns", "name": "p"},
            "spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]}}))
        .unwrap();
        let cache = Cache::default();
        struct Fixed(Arc<PersistentVolumeClaim>, Arc<StorageClass>, Vec<Arc<PersistentVolume>>);
        impl Listers for Fixed {
            fn claim(&self, k: &str) -> Option<Arc<PersistentVolumeClaim>> {
                (k == "ns/data").then(|| self.0.clone())
            }
            fn volume(&self, _: &str) -> Option<Arc<PersistentVolume>> {
                None
            }
            fn volumes(&self) -> Vec<Arc<PersistentVolume>> {
                self.2.clone()
            }
            fn class(&self, n: &str) -> Option<Arc<StorageClass>> {
                (n == "local").then(|| self.1.clone())
            }
        }
        let listers = Fixed(claim.clone(), class.clone(), vols.clone());
        let st = prepare(&pod, &cache, &listers, &HashSet::new(), true, true).unwrap();
        assert_eq!(
            st.actions(&node("a")),
            Some(vec![Action::Bind { volume: "small-a".into(), claim: "ns/data".into() }])
        );
        let e = st.filter(&node("b"), true, true).unwrap_err();
        assert_eq!(e.reason, BIND_CONFLICT, "500Mi is too small and no-provisioner cannot provision");
        let taken: HashSet<String> = ["small-a".to_string()].into();
        let st = prepare(&pod, &cache, &listers, &taken, true, true).unwrap();
        assert_eq!(
            st.actions(&node("a")),
            Some(vec![Action::Bind { volume: "big-a".into(), claim: "ns/data".into() }])
        );
        let missing: Pod = serde_json::from_value(json!({"metadata": {"namespace": "ns", "name": "p"},
            "spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "nope"}}]}}))
        .unwrap();
        assert_eq!(
            prepare(&missing, &cache, &listers, &HashSet::new(), true, true).err().unwrap(),
            "persistentvolumeclaim \"nope\" not found"
        );
    }

    #[test]
    fn disks_conflict_unless_all_read_only() {
        let g = |ro| Disk::Gce { pd: "pd".into(), read_only: ro };
        assert!(g(false).conflicts(&g(true)));
        assert!(!g(true).conflicts(&g(true)));
        assert!(Disk::Ebs { id: "x".into() }.conflicts(&Disk::Ebs { id: "x".into() }));
        let r = |m: &str| Disk::Rbd { monitors: vec![m.into()], pool: "p".into(), image: "i".into(), read_only: false };
        assert!(r("m1").conflicts(&r("m1")));
        assert!(!r("m1").conflicts(&r("m2")));
    }
}
