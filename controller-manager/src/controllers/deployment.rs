//! The Deployment controller, following upstream's `sync.go`, `rolling.go`, `recreate.go` and
//! `progress.go`: one ReplicaSet per pod template (named `<deployment>-<hash>`, with the
//! `pod-template-hash` label), revisions in `deployment.kubernetes.io/revision`, RollingUpdate within
//! `maxSurge`/`maxUnavailable` (percentages rounded up and down as upstream), Recreate, proportional
//! scaling of every active ReplicaSet during a rollout, pause/resume, `revisionHistoryLimit` cleanup,
//! and the `Available`/`Progressing` conditions with upstream's reasons and messages.

use super::{controller_of, controller_ref, run_workers, selector_is_empty, selector_matches, SyncResult};
use crate::context::{Context, EventRecorder};
use component_base::informer::{key_of, Change, Informer};
use component_base::workqueue::WorkQueue;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const HASH_LABEL: &str = "pod-template-hash";
/// Annotations of a Deployment that are not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

struct Controller {
    ctx: Arc<Context>,
    deployments: Arc<Informer<Deployment>>,
    replicasets: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    queue: WorkQueue<String>,
    events: EventRecorder,
}

pub fn start(ctx: &Arc<Context>) {
    let c = Arc::new(Controller {
        ctx: ctx.clone(),
        deployments: ctx.deployments(),
        replicasets: ctx.replicasets(),
        pods: ctx.pods(),
        queue: WorkQueue::new("deployment"),
        events: ctx.recorder("deployment-controller"),
    });
    let q = c.queue.clone();
    c.deployments.add_handler(move |ch| q.add(key_of(ch.object().as_ref())));
    let weak = Arc::downgrade(&c);
    c.replicasets.add_handler(move |ch| {
        if let Some(c) = weak.upgrade() {
            c.rs_changed(ch);
        }
    });
    let weak = Arc::downgrade(&c);
    c.pods.add_handler(move |ch| {
        if let (Change::Deleted(p), Some(c)) = (ch, weak.upgrade()) {
            // Recreate waits for old pods to be gone.
            if let Some(rs) = controller_of(&p.metadata).filter(|r| r.kind == "ReplicaSet") {
                let ns = p.metadata.namespace.as_deref().unwrap_or("");
                if let Some(rs) = c.replicasets.get(&format!("{ns}/{}", rs.name)) {
                    if let Some(d) = controller_of(&rs.metadata).filter(|r| r.kind == "Deployment") {
                        c.queue.add(format!("{ns}/{}", d.name));
                    }
                }
            }
        }
    });
    let c2 = c.clone();
    tokio::spawn(async move {
        c2.deployments.wait_synced().await;
        c2.replicasets.wait_synced().await;
        c2.pods.wait_synced().await;
        let workers = c2.ctx.flags.concurrent_deployment_syncs;
        let c3 = c2.clone();
        run_workers(c2.queue.clone(), workers, move |key| {
            let c = c3.clone();
            async move { c.sync(&key).await }
        });
    });
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    (s.replicas, s.ready_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0), s.terminating_replicas.unwrap_or(0))
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// An int-or-percent against `total`, rounded up or down (upstream's `GetScaledValueFromIntOrPercent`).
pub fn scaled(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let p: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let x = p * total as f64 / 100.0;
            (if round_up { x.ceil() } else { x.floor() }) as i32
        }
    }
}

/// (maxSurge, maxUnavailable) resolved against the replicas, as `ResolveFenceposts`: both zero makes
/// unavailability one.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    if !is_rolling(d) {
        return (0, 0);
    }
    let ru = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge = scaled(Some(ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&default)), replicas(d), true);
    let unavailable = scaled(Some(ru.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&default)), replicas(d), false);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// The template without the pod-template-hash label, as JSON, for comparing and hashing.
fn canonical_template(t: &Option<k8s_openapi::api::core::v1::PodTemplateSpec>) -> serde_json::Value {
    let mut v = serde_json::to_value(t).unwrap_or_default();
    if let Some(labels) = v.pointer_mut("/metadata/labels").and_then(|l| l.as_object_mut()) {
        labels.remove(HASH_LABEL);
    }
    v
}

/// `rand.SafeEncodeString` of the decimal FNV-32a hash of the template and the collision count.
pub fn template_hash(template: &Option<k8s_openapi::api::core::v1::PodTemplateSpec>, collision: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(&canonical_template(template)).unwrap_or_default();
    if let Some(c) = collision {
        bytes.extend_from_slice(&(c as u32).to_le_bytes());
    }
    let h = bytes.iter().fold(0x811c9dc5u32, |h, b| (h ^ *b as u32).wrapping_mul(0x01000193));
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string().bytes().map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char).collect()
}

fn new_condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    let now: Time = component_base::time_now();
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

fn get_condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// upstream's `SetDeploymentCondition`: nothing changes when status and reason are the same; the
/// transition time stays when only the reason changes.
fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get_condition(s, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(s, &c.type_);
    s.conditions.get_or_insert_with(Vec::new).push(c);
}

fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = s.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
    }
}

fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).is_some_and(|p| p != i32::MAX)
}

fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = replicas(d);
    s.updated_replicas.unwrap_or(0) == r
        && s.replicas.unwrap_or(0) == r
        && s.available_replicas.unwrap_or(0) == r
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_old = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new_old < old_old
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

fn timed_out(d: &Deployment, s: &DeploymentStatus) -> bool {
    let Some(c) = get_condition(s, "Progressing") else { return false };
    match c.reason.as_deref() {
        Some("ProgressDeadlineExceeded") => return true,
        Some("NewReplicaSetAvailable") => return false,
        _ => {}
    }
    let deadline = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600) as i64;
    let Some(from) = c.last_update_time.as_ref() else { return false };
    k8s_openapi::jiff::Timestamp::now().duration_since(from.0).as_secs() > deadline
}

impl Controller {
    fn rs_changed(&self, ch: &Change<ReplicaSet>) {
        let rs = ch.object();
        let ns = rs.metadata.namespace.as_deref().unwrap_or("");
        if let Change::Updated { old, new } = ch {
            if let Some(r) = controller_of(&old.metadata).filter(|r| r.kind == "Deployment") {
                if controller_of(&new.metadata).map(|n| &n.uid) != Some(&r.uid) {
                    self.queue.add(format!("{ns}/{}", r.name));
                }
            }
        }
        match controller_of(&rs.metadata) {
            Some(r) if r.kind == "Deployment" => self.queue.add(format!("{ns}/{}", r.name)),
            Some(_) => {}
            None => {
                for d in self.deployments.list_namespace(ns) {
                    if let Some(sel) = d.spec.as_ref().map(|s| &s.selector) {
                        if !selector_is_empty(sel) && selector_matches(sel, &rs.metadata.labels) {
                            self.queue.add(key_of(d.as_ref()));
                        }
                    }
                }
            }
        }
    }

    fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    fn d_api(&self, ns: &str) -> Api<Deployment> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    /// The ReplicaSets this Deployment controls, adopting matching orphans and releasing the ones
    /// that stopped matching.
    async fn claim_replicasets(&self, d: &Deployment, ns: &str) -> Result<Vec<ReplicaSet>, kube::Error> {
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let sel = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        let mut out = Vec::new();
        for rs in self.replicasets.list_namespace(ns) {
            let matches = selector_matches(&sel, &rs.metadata.labels);
            let name = rs.metadata.name.clone().unwrap_or_default();
            match controller_of(&rs.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        out.push(rs.as_ref().clone());
                    } else if d.metadata.deletion_timestamp.is_none() {
                        let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}], "uid": rs.metadata.uid}});
                        let _ = self.rs_api(ns).patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await;
                    }
                }
                None if matches
                    && d.metadata.deletion_timestamp.is_none()
                    && rs.metadata.deletion_timestamp.is_none() =>
                {
                    let patch = json!({"metadata": {"ownerReferences": [controller_ref(d)], "uid": rs.metadata.uid}});
                    if let Ok(adopted) =
                        self.rs_api(ns).patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await
                    {
                        out.push(adopted);
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    async fn sync(&self, key: &str) -> SyncResult {
        let Some(d) = self.deployments.get(key) else { return Ok(None) };
        let mut d = d.as_ref().clone();
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        if selector_is_empty(&selector) {
            self.events
                .warning(
                    &d,
                    "SelectingAll",
                    "This deployment is selecting all pods. A non-empty selector is required.".into(),
                )
                .await;
            let mut status = d.status.clone().unwrap_or_default();
            if status.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
                status.observed_generation = d.metadata.generation;
                self.write_status(&d, &status).await?;
            }
            return Ok(None);
        }
        let rs_list = self.claim_replicasets(&d, &ns).await?;
        if d.metadata.deletion_timestamp.is_some() {
            let (new_rs, old) = self.all_replicasets(&mut d, &rs_list, false).await?;
            self.sync_status(&d, &old, new_rs.as_ref()).await?;
            return Ok(None);
        }
        self.check_paused_conditions(&mut d).await?;
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused || self.is_scaling_event(&d, &rs_list) {
            return self.scale_only(&mut d, &rs_list).await;
        }
        if is_rolling(&d) {
            self.rollout_rolling(&mut d, &rs_list).await
        } else {
            self.rollout_recreate(&mut d, &rs_list).await
        }
    }

    async fn check_paused_conditions(&self, d: &mut Deployment) -> Result<(), kube::Error> {
        if !has_progress_deadline(d) {
            return Ok(());
        }
        let mut status = d.status.clone().unwrap_or_default();
        let cond = get_condition(&status, "Progressing");
        if cond.is_some_and(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded")) {
            return Ok(());
        }
        let paused_exists = cond.is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"));
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused && !paused_exists {
            set_condition(
                &mut status,
                new_condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into()),
            );
        } else if !paused && paused_exists {
            set_condition(
                &mut status,
                new_condition("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed".into()),
            );
        } else {
            return Ok(());
        }
        self.write_status(d, &status).await?;
        d.status = Some(status);
        Ok(())
    }

    fn is_scaling_event(&self, d: &Deployment, rs_list: &[ReplicaSet]) -> bool {
        rs_list.iter().filter(|rs| rs_replicas(rs) > 0).any(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESIRED_REPLICAS))
                .and_then(|v| v.parse::<i32>().ok())
                .is_some_and(|desired| desired != replicas(d))
        })
    }

    /// (new ReplicaSet, old ones): the new one is the oldest whose template equals the Deployment's.
    fn split_new_old(d: &Deployment, rs_list: &[ReplicaSet]) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
        let want = canonical_template(&d.spec.as_ref().map(|s| s.template.clone()));
        let mut sorted: Vec<ReplicaSet> = rs_list.to_vec();
        sorted.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .then(a.metadata.name.cmp(&b.metadata.name))
        });
        let idx =
            sorted.iter().position(|rs| canonical_template(&rs.spec.as_ref().and_then(|s| s.template.clone())) == want);
        match idx {
            Some(i) => {
                let new = sorted.remove(i);
                (Some(new), sorted)
            }
            None => (None, sorted),
        }
    }

    /// upstream's `getAllReplicaSetsAndSyncRevision`: finds (or with `create`, makes) the new
    /// ReplicaSet and brings its revision and annotations up to date.
    async fn all_replicasets(
        &self,
        d: &mut Deployment,
        rs_list: &[ReplicaSet],
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), super::SyncError> {
        let (existing, old) = Self::split_new_old(d, rs_list);
        let max_old = old.iter().map(revision).max().unwrap_or(0);
        let new_revision = (max_old + 1).to_string();
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let (surge, _) = fenceposts(d);
        let mut status = d.status.clone().unwrap_or_default();
        let mut status_changed = false;
        let new_rs = if let Some(mut rs) = existing {
            let before = rs.clone();
            set_new_rs_annotations(d, &mut rs, &new_revision, true);
            set_replicas_annotations(&mut rs, replicas(d), replicas(d) + surge);
            let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if let Some(spec) = rs.spec.as_mut() {
                spec.min_ready_seconds = min_ready;
            }
            if rs.metadata.annotations != before.metadata.annotations || rs.spec != before.spec {
                rs = self
                    .rs_api(&ns)
                    .replace(rs.metadata.name.as_deref().unwrap_or(""), &PostParams::default(), &rs)
                    .await?;
            }
            if has_progress_deadline(d) && get_condition(&status, "Progressing").is_none() {
                let msg = format!("Found new replica set {:?}", rs.metadata.name.as_deref().unwrap_or(""));
                set_condition(&mut status, new_condition("Progressing", "True", "FoundNewReplicaSet", msg));
                status_changed = true;
            }
            Some(rs)
        } else if create {
            let rs = self.create_new_rs(d, &old, &new_revision, &mut status).await?;
            status_changed = true;
            Some(rs)
        } else {
            None
        };
        if let Some(rs) = &new_rs {
            let rev = rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned().unwrap_or_default();
            let current = d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned();
            if current.as_deref() != Some(rev.as_str()) && !rev.is_empty() {
                let updated = super::update_with(
                    &self.d_api(&ns),
                    d,
                    &json!({"metadata": {"annotations": {REVISION: rev}}}),
                    false,
                )
                .await?;
                d.metadata = updated.metadata;
            }
        }
        if status_changed {
            self.write_status(d, &status).await?;
            d.status = Some(status);
        }
        Ok((new_rs, old))
    }

    async fn create_new_rs(
        &self,
        d: &Deployment,
        old: &[ReplicaSet],
        revision: &str,
        status: &mut DeploymentStatus,
    ) -> Result<ReplicaSet, super::SyncError> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let spec = d.spec.clone().unwrap_or_default();
        let mut template = spec.template.clone();
        let hash = template_hash(&Some(template.clone()), status.collision_count);
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector.match_labels.get_or_insert_with(BTreeMap::new).insert(HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{hash}", d.metadata.name.as_deref().unwrap_or(""));
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![controller_ref(d)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all: Vec<ReplicaSet> = old.iter().cloned().chain(std::iter::once(rs.clone())).collect();
        let count = new_rs_new_replicas(d, &all, &rs);
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(count);
        }
        set_new_rs_annotations(d, &mut rs, revision, false);
        let (surge, _) = fenceposts(d);
        set_replicas_annotations(&mut rs, replicas(d), replicas(d) + surge);
        let created = match self.rs_api(&ns).create(&PostParams::default(), &rs).await {
            Ok(c) => c,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Someone has the name: ours from an earlier attempt, or a hash collision.
                let existing = self.rs_api(&ns).get(&name).await?;
                let ours = controller_of(&existing.metadata).map(|r| r.uid.as_str()) == d.metadata.uid.as_deref();
                if ours
                    && canonical_template(&existing.spec.as_ref().and_then(|s| s.template.clone()))
                        == canonical_template(&Some(spec.template.clone()))
                {
                    return Ok(existing);
                }
                status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                self.write_status(d, status).await?;
                return Err(super::SyncError::Other(format!(
                    "hash collision for replica set {name}; collisionCount is now {}",
                    status.collision_count.unwrap_or(0)
                )));
            }
            Err(e) => {
                if has_progress_deadline(d) {
                    let msg = format!("Failed to create new replica set {name:?}: {e}");
                    set_condition(status, new_condition("Progressing", "False", "ReplicaSetCreateError", msg));
                    let _ = self.write_status(d, status).await;
                }
                self.events.warning(d, "FailedCreate", format!("Failed to create new replica set {name:?}: {e}")).await;
                return Err(e.into());
            }
        };
        if count > 0 {
            self.events.normal(d, "ScalingReplicaSet", format!("Scaled up replica set {name} from 0 to {count}")).await;
        }
        if has_progress_deadline(d) {
            let msg = format!("Created new replica set {name:?}");
            set_condition(status, new_condition("Progressing", "True", "NewReplicaSetCreated", msg));
        }
        Ok(created)
    }

    /// Scales `rs` to `n`, recording the desired/max annotations and the upstream event.
    async fn scale_rs(&self, rs: &mut ReplicaSet, n: i32, d: &Deployment, op: &str) -> Result<bool, kube::Error> {
        let (surge, _) = fenceposts(d);
        let before = rs_replicas(rs);
        let mut updated = rs.clone();
        let annotations_changed = set_replicas_annotations(&mut updated, replicas(d), replicas(d) + surge);
        if before == n && !annotations_changed {
            return Ok(false);
        }
        if let Some(s) = updated.spec.as_mut() {
            s.replicas = Some(n);
        }
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        *rs = self
            .rs_api(&ns)
            .replace(rs.metadata.name.as_deref().unwrap_or(""), &PostParams::default(), &updated)
            .await?;
        if before != n {
            let op = if op.is_empty() {
                if n > before {
                    "up"
                } else {
                    "down"
                }
            } else {
                op
            };
            self.events
                .normal(
                    d,
                    "ScalingReplicaSet",
                    format!(
                        "Scaled {op} replica set {} from {before} to {n}",
                        rs.metadata.name.as_deref().unwrap_or("")
                    ),
                )
                .await;
        }
        Ok(before != n)
    }

    /// upstream's `scale`: proportional scaling of the active ReplicaSets.
    async fn scale(&self, d: &Deployment, new_rs: Option<ReplicaSet>, old: Vec<ReplicaSet>) -> Result<(), kube::Error> {
        let active: Vec<ReplicaSet> =
            new_rs.iter().chain(old.iter()).filter(|rs| rs_replicas(rs) > 0).cloned().collect();
        let target = replicas(d);
        // One active (or, if none, the newest) ReplicaSet takes the whole size.
        let only = if active.len() == 1 {
            Some(active[0].clone())
        } else if active.is_empty() {
            new_rs.clone().or_else(|| {
                let mut o = old.clone();
                o.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
                o.pop()
            })
        } else {
            None
        };
        if let Some(mut rs) = only {
            if rs_replicas(&rs) != target {
                self.scale_rs(&mut rs, target, d, "").await?;
            }
            return Ok(());
        }
        if let Some(n) = &new_rs {
            if rs_replicas(n) == target && n.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0) == target {
                for mut rs in old.into_iter().filter(|rs| rs_replicas(rs) > 0) {
                    self.scale_rs(&mut rs, 0, d, "down").await?;
                }
                return Ok(());
            }
        }
        if !is_rolling(d) {
            return Ok(());
        }
        let mut all = active;
        let total: i32 = all.iter().map(rs_replicas).sum();
        let (surge, _) = fenceposts(d);
        let allowed = if target > 0 { target + surge } else { 0 };
        let to_add = allowed - total;
        let op = match to_add.cmp(&0) {
            std::cmp::Ordering::Greater => {
                // Largest first, newer first among equals.
                all.sort_by(|a, b| {
                    rs_replicas(b).cmp(&rs_replicas(a)).then(
                        b.metadata
                            .creation_timestamp
                            .as_ref()
                            .map(|t| t.0)
                            .cmp(&a.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                    )
                });
                "up"
            }
            std::cmp::Ordering::Less => {
                all.sort_by(|a, b| {
                    rs_replicas(b).cmp(&rs_replicas(a)).then(
                        a.metadata
                            .creation_timestamp
                            .as_ref()
                            .map(|t| t.0)
                            .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                    )
                });
                "down"
            }
            std::cmp::Ordering::Equal => "",
        };
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::new();
        for rs in &all {
            if to_add != 0 {
                let p = proportion(rs, d, to_add, added);
                sizes.push(rs_replicas(rs) + p);
                added += p;
            } else {
                sizes.push(rs_replicas(rs));
            }
        }
        if to_add != 0 && !sizes.is_empty() {
            sizes[0] = (sizes[0] + to_add - added).max(0);
        }
        for (mut rs, n) in all.into_iter().zip(sizes) {
            self.scale_rs(&mut rs, n, d, op).await?;
        }
        Ok(())
    }

    async fn scale_only(&self, d: &mut Deployment, rs_list: &[ReplicaSet]) -> SyncResult {
        let (new_rs, old) = self.all_replicasets(d, rs_list, false).await?;
        self.scale(d, new_rs.clone(), old.clone()).await?;
        let rs_list = self.fresh(d);
        let (new_rs, old) = Self::split_new_old(d, &rs_list);
        if d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false) {
            self.cleanup(d, &old).await?;
        }
        self.sync_status(d, &old, new_rs.as_ref()).await?;
        Ok(None)
    }

    /// The ReplicaSets as the informer has them now (after this sync's own writes).
    fn fresh(&self, d: &Deployment) -> Vec<ReplicaSet> {
        let uid = d.metadata.uid.clone().unwrap_or_default();
        self.replicasets
            .list_namespace(d.metadata.namespace.as_deref().unwrap_or(""))
            .iter()
            .filter(|rs| controller_of(&rs.metadata).is_some_and(|r| r.uid == uid))
            .map(|rs| rs.as_ref().clone())
            .collect()
    }

    async fn rollout_rolling(&self, d: &mut Deployment, rs_list: &[ReplicaSet]) -> SyncResult {
        let (new_rs, old) = self.all_replicasets(d, rs_list, true).await?;
        let mut new_rs = new_rs.expect("created when missing");
        let all: Vec<ReplicaSet> = old.iter().cloned().chain(std::iter::once(new_rs.clone())).collect();
        // Scale up the new ReplicaSet within maxSurge.
        let target = replicas(d);
        let scaled_up = if rs_replicas(&new_rs) == target {
            false
        } else if rs_replicas(&new_rs) > target {
            self.scale_rs(&mut new_rs, target, d, "down").await?
        } else {
            let n = new_rs_new_replicas(d, &all, &new_rs);
            self.scale_rs(&mut new_rs, n, d, "up").await?
        };
        let all: Vec<ReplicaSet> = old.iter().cloned().chain(std::iter::once(new_rs.clone())).collect();
        if scaled_up {
            return self.sync_rollout_status(d, &old, Some(&new_rs)).await;
        }
        // Scale down old ReplicaSets within maxUnavailable.
        let mut old = old;
        let scaled_down = self.reconcile_old(d, &all, &mut old, &new_rs).await?;
        if scaled_down {
            return self.sync_rollout_status(d, &old, Some(&new_rs)).await;
        }
        if deployment_complete(d, &d.status.clone().unwrap_or_default()) {
            self.cleanup(d, &old).await?;
        }
        self.sync_rollout_status(d, &old, Some(&new_rs)).await
    }

    async fn reconcile_old(
        &self,
        d: &Deployment,
        all: &[ReplicaSet],
        old: &mut [ReplicaSet],
        new_rs: &ReplicaSet,
    ) -> Result<bool, kube::Error> {
        let old_pods: i32 = old.iter().map(rs_replicas).sum();
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods: i32 = all.iter().map(rs_replicas).sum();
        let min_available = replicas(d) - max_unavailable(d);
        let new_unavailable = rs_replicas(new_rs) - rs_status(new_rs).2;
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        old.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
        // First the old ReplicaSets' unhealthy replicas.
        let mut cleaned = 0;
        for rs in old.iter_mut() {
            if cleaned >= max_scaled_down {
                break;
            }
            let (r, avail) = (rs_replicas(rs), rs_status(rs).2);
            if r == 0 || r == avail {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(r - avail);
            self.scale_rs(rs, r - down, d, "down").await?;
            cleaned += down;
        }
        // Then available replicas, keeping minAvailable.
        let available: i32 = old.iter().map(|rs| rs_status(rs).2).sum::<i32>() + rs_status(new_rs).2;
        let mut scaled = 0;
        if available > min_available {
            let total = (available - min_available).min(max_scaled_down - cleaned);
            for rs in old.iter_mut() {
                if scaled >= total {
                    break;
                }
                let r = rs_replicas(rs);
                if r == 0 {
                    continue;
                }
                let down = r.min(total - scaled);
                self.scale_rs(rs, r - down, d, "down").await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn rollout_recreate(&self, d: &mut Deployment, rs_list: &[ReplicaSet]) -> SyncResult {
        let (new_rs, mut old) = self.all_replicasets(d, rs_list, false).await?;
        let mut scaled_down = false;
        for rs in old.iter_mut().filter(|rs| rs_replicas(rs) > 0) {
            scaled_down |= self.scale_rs(rs, 0, d, "down").await?;
        }
        if scaled_down {
            return self.sync_rollout_status(d, &old, new_rs.as_ref()).await;
        }
        // Wait until no old pod runs.
        let old_uids: Vec<String> = old.iter().filter_map(|rs| rs.metadata.uid.clone()).collect();
        let old_running = old.iter().any(|rs| rs_status(rs).0 > 0)
            || self.pods.list_namespace(d.metadata.namespace.as_deref().unwrap_or("")).iter().any(|p| {
                controller_of(&p.metadata).is_some_and(|r| old_uids.contains(&r.uid))
                    && !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
            });
        if old_running {
            return self.sync_rollout_status(d, &old, new_rs.as_ref()).await;
        }
        let mut new_rs = match new_rs {
            Some(rs) => rs,
            None => self.all_replicasets(d, rs_list, true).await?.0.expect("created when missing"),
        };
        let target = replicas(d);
        self.scale_rs(&mut new_rs, target, d, "").await?;
        if deployment_complete(d, &d.status.clone().unwrap_or_default()) {
            self.cleanup(d, &old).await?;
        }
        self.sync_rollout_status(d, &old, Some(&new_rs)).await
    }

    /// Deletes the oldest fully scaled-down ReplicaSets beyond `revisionHistoryLimit`.
    async fn cleanup(&self, d: &Deployment, old: &[ReplicaSet]) -> Result<(), kube::Error> {
        let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else { return Ok(()) };
        let mut alive: Vec<&ReplicaSet> = old.iter().filter(|rs| rs.metadata.deletion_timestamp.is_none()).collect();
        let diff = alive.len() as i32 - limit;
        if diff <= 0 {
            return Ok(());
        }
        alive.sort_by(|a, b| {
            revision(a).cmp(&revision(b)).then(
                a.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            )
        });
        for rs in alive.into_iter().take(diff as usize) {
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            if rs_status(rs).0 != 0 || rs_replicas(rs) != 0 || rs.metadata.generation.unwrap_or(0) > observed {
                continue;
            }
            let ns = rs.metadata.namespace.as_deref().unwrap_or("");
            match self.rs_api(ns).delete(rs.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if super::has_code(&e, &[404]) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn calculate_status(&self, d: &Deployment, old: &[ReplicaSet], new_rs: Option<&ReplicaSet>) -> DeploymentStatus {
        let all: Vec<&ReplicaSet> = old.iter().chain(new_rs).collect();
        let available: i32 = all.iter().map(|rs| rs_status(rs).2).sum();
        let total: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
        let nz = |n: i32| (n != 0).then_some(n);
        let prev = d.status.clone().unwrap_or_default();
        let mut s = DeploymentStatus {
            observed_generation: d.metadata.generation,
            replicas: nz(all.iter().map(|rs| rs_status(rs).0).sum()),
            updated_replicas: nz(new_rs.map(|rs| rs_status(rs).0).unwrap_or(0)),
            ready_replicas: nz(all.iter().map(|rs| rs_status(rs).1).sum()),
            available_replicas: nz(available),
            unavailable_replicas: nz((total - available).max(0)),
            terminating_replicas: Some(all.iter().map(|rs| rs_status(rs).3).sum()),
            collision_count: prev.collision_count,
            conditions: prev.conditions.clone(),
        };
        if available >= replicas(d) - max_unavailable(d) {
            set_condition(
                &mut s,
                new_condition(
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.".into(),
                ),
            );
        } else {
            set_condition(
                &mut s,
                new_condition(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.".into(),
                ),
            );
        }
        s
    }

    async fn sync_status(
        &self,
        d: &Deployment,
        old: &[ReplicaSet],
        new_rs: Option<&ReplicaSet>,
    ) -> Result<(), kube::Error> {
        let s = self.calculate_status(d, old, new_rs);
        if Some(&s) != d.status.as_ref() {
            self.write_status(d, &s).await?;
        }
        Ok(())
    }

    async fn sync_rollout_status(&self, d: &Deployment, old: &[ReplicaSet], new_rs: Option<&ReplicaSet>) -> SyncResult {
        let mut s = self.calculate_status(d, old, new_rs);
        let prev = d.status.clone().unwrap_or_default();
        if !has_progress_deadline(d) {
            remove_condition(&mut s, "Progressing");
        }
        let current = get_condition(&prev, "Progressing").cloned();
        let complete_already = s.replicas == s.updated_replicas
            && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"));
        let rs_name = new_rs.and_then(|rs| rs.metadata.name.clone());
        let dname = d.metadata.name.clone().unwrap_or_default();
        if has_progress_deadline(d) && !complete_already {
            if deployment_complete(d, &s) {
                let msg = match &rs_name {
                    Some(n) => format!("ReplicaSet {n:?} has successfully progressed."),
                    None => format!("Deployment {dname:?} has successfully progressed."),
                };
                set_condition(&mut s, new_condition("Progressing", "True", "NewReplicaSetAvailable", msg));
            } else if deployment_progressing(d, &s) {
                let msg = match &rs_name {
                    Some(n) => format!("ReplicaSet {n:?} is progressing."),
                    None => format!("Deployment {dname:?} is progressing."),
                };
                let mut c = new_condition("Progressing", "True", "ReplicaSetUpdated", msg);
                if let Some(cur) = &current {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut s, "Progressing");
                }
                set_condition(&mut s, c);
            } else if timed_out(d, &s) {
                let msg = match &rs_name {
                    Some(n) => format!("ReplicaSet {n:?} has timed out progressing."),
                    None => format!("Deployment {dname:?} has timed out progressing."),
                };
                set_condition(&mut s, new_condition("Progressing", "False", "ProgressDeadlineExceeded", msg));
            }
        }
        // A ReplicaSet's failure to create pods shows on the Deployment.
        let failure = new_rs
            .into_iter()
            .chain(old.iter())
            .filter_map(|rs| {
                rs.status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                    .cloned()
            })
            .next();
        match failure {
            Some(f) => set_condition(
                &mut s,
                DeploymentCondition {
                    type_: "ReplicaFailure".into(),
                    status: f.status,
                    reason: f.reason,
                    message: f.message,
                    last_update_time: f.last_transition_time.clone(),
                    last_transition_time: f.last_transition_time,
                },
            ),
            None => remove_condition(&mut s, "ReplicaFailure"),
        }
        if Some(&s) != d.status.as_ref() {
            self.write_status(d, &s).await?;
        }
        // A rollout still in progress is looked at again when its deadline would pass.
        if has_progress_deadline(d) && !deployment_complete(d, &s) {
            if let Some(c) = get_condition(&s, "Progressing").filter(|c| c.status == "True") {
                if let Some(t) = &c.last_update_time {
                    let deadline = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600) as i64;
                    let elapsed = k8s_openapi::jiff::Timestamp::now().duration_since(t.0).as_secs();
                    let left = (deadline - elapsed).max(0) as u64 + 1;
                    return Ok(Some(Duration::from_secs(left)));
                }
            }
        }
        Ok(None)
    }

    async fn write_status(&self, d: &Deployment, s: &DeploymentStatus) -> Result<(), kube::Error> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let mut v = serde_json::to_value(s).unwrap_or_default();
        // Zero counts are omitted upstream: clear them explicitly in the merge patch.
        for k in [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "collisionCount",
        ] {
            if v.get(k).is_none() {
                v[k] = serde_json::Value::Null;
            }
        }
        match super::update_with(&self.d_api(&ns), d, &json!({"status": v}), true).await {
            Ok(_) => Ok(()),
            Err(e) if super::has_code(&e, &[404]) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// upstream's `NewRSNewReplicas` for a rolling update: grow the new ReplicaSet as far as maxSurge allows.
fn new_rs_new_replicas(d: &Deployment, all: &[ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let (surge, _) = fenceposts(d);
    let current: i32 = all.iter().map(rs_replicas).sum();
    let max_total = replicas(d) + surge;
    if current >= max_total {
        return rs_replicas(new_rs);
    }
    let up = (max_total - current).min(replicas(d) - rs_replicas(new_rs));
    rs_replicas(new_rs) + up.max(0)
}

/// upstream's `GetProportion`: this ReplicaSet's share of a scaling, from its max-replicas annotation.
fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if replicas(d) == 0 {
        -rs_replicas(rs)
    } else {
        let (surge, _) = fenceposts(d);
        let max = replicas(d) + surge;
        let annotated = rs
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MAX_REPLICAS))
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
        if annotated == 0 {
            0
        } else {
            let size = (rs_replicas(rs) as f64 * max as f64 / annotated as f64).round() as i32;
            size - rs_replicas(rs)
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// The revision and copied annotations of the new ReplicaSet (`SetNewReplicaSetAnnotations`).
fn set_new_rs_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: &str, exists: bool) {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.clone().unwrap_or_default() {
        if !NOT_COPIED.contains(&k.as_str()) {
            a.insert(k, v);
        }
    }
    let old: i64 = a.get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0);
    let new: i64 = new_revision.parse().unwrap_or(0);
    if old < new {
        if exists && old > 0 {
            let history = a.get(REVISION_HISTORY).cloned().unwrap_or_default();
            let history = if history.is_empty() { old.to_string() } else { format!("{history},{old}") };
            a.insert(REVISION_HISTORY.into(), history);
        }
        a.insert(REVISION.into(), new_revision.into());
    }
}

fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let before = (a.get(DESIRED_REPLICAS).cloned(), a.get(MAX_REPLICAS).cloned());
    a.insert(DESIRED_REPLICAS.into(), desired.to_string());
    a.insert(MAX_REPLICAS.into(), max.to_string());
    before != (Some(desired.to_string()), Some(max.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};

    fn dep(replicas: i32, surge: &str, unavailable: &str) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(IntOrString::String(surge.into())),
                        max_unavailable: Some(IntOrString::String(unavailable.into())),
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fenceposts_round_as_upstream() {
        assert_eq!(fenceposts(&dep(10, "25%", "25%")), (3, 2));
        assert_eq!(fenceposts(&dep(3, "25%", "25%")), (1, 0));
        assert_eq!(fenceposts(&dep(1, "0%", "0%")), (0, 1));
        assert_eq!(fenceposts(&dep(4, "50%", "50%")), (2, 2));
    }

    #[test]
    fn hash_is_stable_safe_and_changes_with_collisions() {
        let t = Some(k8s_openapi::api::core::v1::PodTemplateSpec::default());
        let a = template_hash(&t, None);
        assert_eq!(a, template_hash(&t, None));
        assert_ne!(a, template_hash(&t, Some(1)));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn revision_history_moves_with_a_reused_replicaset() {
        let d = Deployment::default();
        let mut rs = ReplicaSet::default();
        set_new_rs_annotations(&d, &mut rs, "1", false);
        assert_eq!(revision(&rs), 1);
        set_new_rs_annotations(&d, &mut rs, "3", true);
        assert_eq!(revision(&rs), 3);
        assert_eq!(rs.metadata.annotations.unwrap()[REVISION_HISTORY], "1");
    }
}
