//! The PersistentVolume controllers.
//!
//! `persistentvolume-binder` binds claims to volumes as upstream's does: a claim takes the volume
//! pre-bound to it (its `claimRef`, set by a user or by the scheduler for a `WaitForFirstConsumer`
//! claim), else, for an `Immediate` class, the smallest available volume that matches; both objects
//! then point at each other, the claim gets `pv.kubernetes.io/bind-completed`, and both phases become
//! `Bound`. A claim nobody can serve waits with upstream's event (`WaitForFirstConsumer`,
//! `ExternalProvisioning` with the provisioner annotations, or `FailedBinding`). A volume whose claim
//! is gone is `Released`; the `Retain` policy keeps it so, `Delete` of a volume no external provisioner
//! made fails as upstream's does without a deleter plugin (`VolumeFailedDelete`). A bound claim whose
//! volume is gone is `Lost`. Everything is looked at again every `--pvclaimbinder-sync-period`.
//!
//! `pvc-protection` and `pv-protection` remove the `kubernetes.io/pvc-protection` and
//! `kubernetes.io/pv-protection` finalizers of deleted claims no running pod uses and of deleted
//! volumes that are not bound.

use super::{has_code, run_workers, SyncError, SyncResult};
use crate::context::Context;
use component_base::informer::{key_of, Change};
use component_base::storage::*;
use component_base::workqueue::WorkQueue;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, PostParams};
use std::sync::Arc;
use std::time::Duration;

const COMPONENT: &str = "persistentvolume-controller";

fn claim_key(ns: Option<&String>, name: Option<&String>) -> String {
    format!("claim/{}/{}", ns.map(String::as_str).unwrap_or(""), name.map(String::as_str).unwrap_or(""))
}

pub fn start_binder(ctx: &Arc<Context>) {
    let claims = ctx.pvcs();
    let volumes = ctx.pvs();
    let classes = ctx.storageclasses();
    let queue: WorkQueue<String> = WorkQueue::new("volumes");
    let q = queue.clone();
    claims.add_handler(move |ch| {
        let c = ch.object();
        q.add(claim_key(c.metadata.namespace.as_ref(), c.metadata.name.as_ref()));
        if let Some(v) = c.spec.as_ref().and_then(|s| s.volume_name.as_ref()).filter(|v| !v.is_empty()) {
            q.add(format!("volume/{v}"));
        }
    });
    let q = queue.clone();
    volumes.add_handler(move |ch| {
        let v = ch.object();
        if !matches!(ch, Change::Deleted(_)) {
            q.add(format!("volume/{}", v.metadata.name.as_deref().unwrap_or("")));
        }
        if let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
            q.add(claim_key(r.namespace.as_ref(), r.name.as_ref()));
        }
    });
    let ctx = ctx.clone();
    tokio::spawn(async move {
        claims.wait_synced().await;
        volumes.wait_synced().await;
        classes.wait_synced().await;
        let period = ctx.flags.pvclaimbinder_sync_period.0;
        let (q, c, v) = (queue.clone(), claims.clone(), volumes.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                for pvc in c.list() {
                    q.add(claim_key(pvc.metadata.namespace.as_ref(), pvc.metadata.name.as_ref()));
                }
                for pv in v.list() {
                    q.add(format!("volume/{}", pv.metadata.name.as_deref().unwrap_or("")));
                }
            }
        });
        run_workers(queue, 1, move |key| {
            let ctx = ctx.clone();
            async move {
                match key.split_once('/') {
                    Some(("claim", k)) => sync_claim(&ctx, k).await,
                    Some(("volume", name)) => sync_volume(&ctx, name).await,
                    _ => Ok(None),
                }
            }
        });
    });
}

fn annotation<'a>(m: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str) -> Option<&'a str> {
    m.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
}

fn set_annotation(m: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str, value: &str) {
    m.annotations.get_or_insert_with(Default::default).insert(key.into(), value.into());
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn phase_of_volume(v: &PersistentVolume) -> &str {
    v.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

async fn sync_claim(ctx: &Context, key: &str) -> SyncResult {
    let Some(claim) = ctx.pvcs().get(key) else { return Ok(None) };
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let recorder = ctx.recorder(COMPONENT);
    let volume_name = claim.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty());
    let Some(volume_name) = volume_name else {
        // Unbound: a volume pre-bound to this claim, else (not delayed) the smallest matching one.
        let class_name = claim_class(&claim);
        let class = (!class_name.is_empty()).then(|| ctx.storageclasses().get(&class_name)).flatten();
        let delayed = class.as_ref().and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer");
        let fits = matching_volumes(&claim, ctx.pvs().list());
        let pick = fits.into_iter().find(|v| claim_ref_is(v, &claim) || !delayed);
        if let Some(v) = pick {
            return bind(ctx, &claim, &v).await;
        }
        let selected = annotation(&claim.metadata, SELECTED_NODE).is_some();
        if delayed && !selected {
            recorder
                .normal(
                    &*claim,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding".into(),
                )
                .await;
        } else if let Some(provisioner) = class.as_ref().map(|c| c.provisioner.clone()) {
            if annotation(&claim.metadata, STORAGE_PROVISIONER) != Some(provisioner.as_str()) {
                let mut c = (*claim).clone();
                set_annotation(&mut c.metadata, STORAGE_PROVISIONER, &provisioner);
                set_annotation(&mut c.metadata, BETA_STORAGE_PROVISIONER, &provisioner);
                replace_claim(ctx, &c).await?;
            }
            recorder
                .normal(
                    &*claim,
                    "ExternalProvisioning",
                    format!("Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."),
                )
                .await;
        } else if class_name.is_empty() {
            recorder
                .normal(
                    &*claim,
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set".into(),
                )
                .await;
        } else {
            recorder
                .warning(&*claim, "ProvisioningFailed", format!("storageclass.storage.k8s.io {class_name:?} not found"))
                .await;
        }
        return Ok(None);
    };
    match ctx.pvs().get(&volume_name) {
        None => {
            if phase_of_claim(&claim) == "Bound" {
                set_claim_phase(ctx, &claim, "Lost").await?;
                recorder
                    .warning(
                        &*claim,
                        "ClaimLost",
                        "Bound claim has lost its PersistentVolume. Data on the volume is lost!".into(),
                    )
                    .await;
            }
            Ok(None)
        }
        Some(v) => {
            let unclaimed = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_none();
            if unclaimed || claim_ref_is(&v, &claim) {
                bind(ctx, &claim, &v).await
            } else if annotation(&claim.metadata, BIND_COMPLETED).is_some() {
                if phase_of_claim(&claim) != "Lost" {
                    set_claim_phase(ctx, &claim, "Lost").await?;
                    recorder
                        .warning(
                            &*claim,
                            "ClaimMisbound",
                            "Two claims are bound to the same volume, this one is bound incorrectly".into(),
                        )
                        .await;
                }
                Ok(None)
            } else {
                Ok(None)
            }
        }
    }
}

async fn replace_claim(ctx: &Context, c: &PersistentVolumeClaim) -> Result<PersistentVolumeClaim, SyncError> {
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), c.metadata.namespace.as_deref().unwrap_or("default"));
    Ok(api.replace(c.metadata.name.as_deref().unwrap_or(""), &PostParams::default(), c).await?)
}

async fn set_claim_phase(ctx: &Context, c: &PersistentVolumeClaim, phase: &str) -> Result<(), SyncError> {
    let mut c = c.clone();
    c.status.get_or_insert_with(Default::default).phase = Some(phase.into());
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), c.metadata.namespace.as_deref().unwrap_or("default"));
    api.replace_status(c.metadata.name.as_deref().unwrap_or(""), &PostParams::default(), &c).await?;
    Ok(())
}

async fn set_volume_phase(
    ctx: &Context,
    v: &PersistentVolume,
    phase: &str,
    message: Option<String>,
) -> Result<(), SyncError> {
    if phase_of_volume(v) == phase && v.status.as_ref().and_then(|s| s.message.clone()) == message {
        return Ok(());
    }
    let mut v = v.clone();
    let st = v.status.get_or_insert_with(Default::default);
    st.phase = Some(phase.into());
    st.message = message;
    st.last_phase_transition_time = Some(component_base::time_now());
    Api::<PersistentVolume>::all(ctx.client.clone())
        .replace_status(v.metadata.name.as_deref().unwrap_or(""), &PostParams::default(), &v)
        .await?;
    Ok(())
}

/// Makes `claim` and `volume` point at each other, in upstream's order: the volume's `claimRef`, its
/// phase, the claim's `volumeName` and annotations, the claim's phase with the volume's capacity and
/// access modes.
async fn bind(ctx: &Context, claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> SyncResult {
    let name = volume.metadata.name.clone().unwrap_or_default();
    let mut v = volume.clone();
    let full_ref = v
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| r.uid.is_some() && r.uid == claim.metadata.uid);
    if !full_ref {
        let spec = v.spec.get_or_insert_with(Default::default);
        if spec.claim_ref.is_none() {
            set_annotation(&mut v.metadata, BOUND_BY_CONTROLLER, "yes");
        }
        let spec = v.spec.get_or_insert_with(Default::default);
        spec.claim_ref = Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: claim.metadata.namespace.clone(),
            name: claim.metadata.name.clone(),
            uid: claim.metadata.uid.clone(),
            resource_version: claim.metadata.resource_version.clone(),
            ..Default::default()
        });
        v = Api::<PersistentVolume>::all(ctx.client.clone()).replace(&name, &PostParams::default(), &v).await?;
    }
    set_volume_phase(ctx, &v, "Bound", None).await?;
    let mut c = claim.clone();
    let spec_name = c.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|n| !n.is_empty());
    if spec_name.as_deref() != Some(name.as_str()) || annotation(&c.metadata, BIND_COMPLETED).is_none() {
        if spec_name.is_none() {
            set_annotation(&mut c.metadata, BOUND_BY_CONTROLLER, "yes");
        }
        set_annotation(&mut c.metadata, BIND_COMPLETED, "yes");
        c.spec.get_or_insert_with(Default::default).volume_name = Some(name.clone());
        c = replace_claim(ctx, &c).await?;
    }
    let vs = v.spec.clone().unwrap_or_default();
    let st = c.status.clone().unwrap_or_default();
    if st.phase.as_deref() != Some("Bound") || st.capacity != vs.capacity || st.access_modes != vs.access_modes {
        let s = c.status.get_or_insert_with(Default::default);
        s.phase = Some("Bound".into());
        s.capacity = vs.capacity.clone();
        s.access_modes = vs.access_modes.clone();
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(ctx.client.clone(), c.metadata.namespace.as_deref().unwrap_or("default"));
        api.replace_status(c.metadata.name.as_deref().unwrap_or(""), &PostParams::default(), &c).await?;
        tracing::info!(claim = %key_of(&c), volume = %name, "claim bound");
    }
    Ok(None)
}

async fn sync_volume(ctx: &Context, name: &str) -> SyncResult {
    let Some(v) = ctx.pvs().get(name) else { return Ok(None) };
    let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
        set_volume_phase(ctx, &v, "Available", None).await?;
        return Ok(None);
    };
    let ns = r.namespace.clone().unwrap_or_default();
    let cname = r.name.clone().unwrap_or_default();
    let Some(uid) = r.uid.clone() else {
        // Pre-bound by a user to a claim that may not exist yet.
        set_volume_phase(ctx, &v, "Available", None).await?;
        return Ok(None);
    };
    let mut claim = ctx.pvcs().get(&format!("{ns}/{cname}"));
    if claim.is_none() {
        // The informer may lag a new claim: ask the API server before releasing the volume.
        let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        claim = api.get_opt(&cname).await?.map(Arc::new);
    }
    match claim.filter(|c| c.metadata.uid.as_deref() == Some(uid.as_str())) {
        Some(c) => {
            let bound_here = c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(name);
            let bound_elsewhere =
                c.spec.as_ref().and_then(|s| s.volume_name.as_deref()).is_some_and(|n| !n.is_empty() && n != name);
            if bound_here {
                set_volume_phase(ctx, &v, "Bound", None).await?;
            } else if bound_elsewhere && annotation(&v.metadata, BOUND_BY_CONTROLLER).is_some() {
                // The claim went to another volume: this one is free again.
                let mut v = (*v).clone();
                if let Some(s) = v.spec.as_mut() {
                    s.claim_ref = None;
                }
                if let Some(a) = v.metadata.annotations.as_mut() {
                    a.remove(BOUND_BY_CONTROLLER);
                }
                let v =
                    Api::<PersistentVolume>::all(ctx.client.clone()).replace(name, &PostParams::default(), &v).await?;
                set_volume_phase(ctx, &v, "Available", None).await?;
            }
            Ok(None)
        }
        None => {
            // The claim is gone: released, then reclaimed by the policy.
            if phase_of_volume(&v) != "Released" && phase_of_volume(&v) != "Failed" {
                set_volume_phase(ctx, &v, "Released", None).await?;
                return Ok(Some(Duration::from_millis(100)));
            }
            let policy =
                v.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()).unwrap_or("Retain");
            let external = annotation(&v.metadata, "pv.kubernetes.io/provisioned-by").is_some();
            let recorder = ctx.recorder(COMPONENT);
            match policy {
                "Delete" if !external && phase_of_volume(&v) == "Released" => {
                    let msg = format!(
                        "error getting deleter volume plugin for volume \"{name}\": no deletable volume plugin matched"
                    );
                    set_volume_phase(ctx, &v, "Failed", Some(msg.clone())).await?;
                    recorder.warning(&*v, "VolumeFailedDelete", msg).await;
                }
                "Recycle" if phase_of_volume(&v) == "Released" => {
                    let msg = "No recycler plugin found for the volume!".to_string();
                    set_volume_phase(ctx, &v, "Failed", Some(msg.clone())).await?;
                    recorder.warning(&*v, "VolumeFailedRecycle", msg).await;
                }
                _ => {}
            }
            Ok(None)
        }
    }
}

fn remove_finalizer(m: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, f: &str) -> bool {
    let Some(list) = m.finalizers.as_mut() else { return false };
    let before = list.len();
    list.retain(|x| x != f);
    before != list.len()
}

/// `pvc-protection`: a deleted claim loses its finalizer once no pod that may still run uses it.
pub fn start_pvc_protection(ctx: &Arc<Context>) {
    let claims = ctx.pvcs();
    let pods = ctx.pods();
    let queue: WorkQueue<String> = WorkQueue::new("pvcprotection");
    let q = queue.clone();
    claims.add_handler(move |ch| {
        let c = ch.object();
        if c.metadata.deletion_timestamp.is_some() {
            q.add(key_of(c.as_ref()));
        }
    });
    let q = queue.clone();
    pods.add_handler(move |ch| {
        let p = ch.object();
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        for (claim, _) in pod_claims(p) {
            q.add(format!("{ns}/{claim}"));
        }
    });
    let ctx = ctx.clone();
    tokio::spawn(async move {
        claims.wait_synced().await;
        pods.wait_synced().await;
        run_workers(queue, 1, move |key| {
            let ctx = ctx.clone();
            async move {
                let Some(c) = ctx.pvcs().get(&key) else { return Ok(None) };
                if c.metadata.deletion_timestamp.is_none() {
                    return Ok(None);
                }
                let ns = c.metadata.namespace.clone().unwrap_or_default();
                let name = c.metadata.name.clone().unwrap_or_default();
                let in_use = ctx.pods().list_namespace(&ns).iter().any(|p| {
                    let done =
                        matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
                    !done && pod_claims(p).iter().any(|(c, _)| *c == name)
                });
                if in_use {
                    return Ok(None);
                }
                let mut c = (*c).clone();
                if remove_finalizer(&mut c.metadata, "kubernetes.io/pvc-protection") {
                    match replace_claim(&ctx, &c).await {
                        Ok(_) => {}
                        Err(SyncError::Api(e)) if has_code(&e, &[404]) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(None)
            }
        });
    });
}

/// `pv-protection`: a deleted volume loses its finalizer once it is not bound.
pub fn start_pv_protection(ctx: &Arc<Context>) {
    let volumes = ctx.pvs();
    let queue: WorkQueue<String> = WorkQueue::new("pvprotection");
    let q = queue.clone();
    volumes.add_handler(move |ch| {
        let v = ch.object();
        if v.metadata.deletion_timestamp.is_some() {
            q.add(v.metadata.name.clone().unwrap_or_default());
        }
    });
    let ctx = ctx.clone();
    tokio::spawn(async move {
        volumes.wait_synced().await;
        run_workers(queue, 1, move |name| {
            let ctx = ctx.clone();
            async move {
                let Some(v) = ctx.pvs().get(&name) else { return Ok(None) };
                if v.metadata.deletion_timestamp.is_none() || phase_of_volume(&v) == "Bound" {
                    return Ok(None);
                }
                let mut v = (*v).clone();
                if remove_finalizer(&mut v.metadata, "kubernetes.io/pv-protection") {
                    match Api::<PersistentVolume>::all(ctx.client.clone())
                        .replace(&name, &PostParams::default(), &v)
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if has_code(&e, &[404]) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(None)
            }
        });
    });
}
