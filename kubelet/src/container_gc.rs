//! Dead container and sandbox garbage collection, as upstream's container GC with its kubelet
//! defaults (`MinAge` 0, `MaxPerPodContainer` 1, no node-wide cap), every minute:
//! - per pod and container name, only the newest exited container stays (for `lastState` and
//!   `kubectl logs --previous`);
//! - per pod, sandboxes that are not ready and hold no container go, except the newest;
//! - an evicted pod, or one being deleted with nothing running, keeps nothing;
//! - under disk pressure (the eviction manager asks), terminated pods keep nothing either.
//!
//! What is left of pods that no longer exist goes with their workers (`pods::remove_everything`).

use crate::kubelet::Kubelet;
use crate::runtime::{self, Observed};
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// What to remove of one pod: (containers, sandboxes).
pub fn plan(o: &Observed, everything: bool) -> (Vec<String>, Vec<String>) {
    let mut containers = Vec::new();
    let mut kept_names = HashSet::new();
    let mut dead: Vec<_> = o.containers.iter().filter(|c| c.exited()).collect();
    dead.sort_by_key(|c| std::cmp::Reverse((c.created_at, c.attempt)));
    for c in dead {
        if everything || !kept_names.insert(c.name.as_str()) {
            containers.push(c.id.clone());
        }
    }
    let remaining: HashSet<&str> =
        o.containers.iter().filter(|c| !containers.contains(&c.id)).map(|c| c.sandbox_id.as_str()).collect();
    // Sandboxes are newest first; the newest stays unless everything goes.
    let skip = usize::from(!everything);
    let sandboxes = o
        .sandboxes
        .iter()
        .skip(skip)
        .filter(|s| !s.ready && !remaining.contains(s.id.as_str()))
        .map(|s| s.id.clone())
        .collect();
    (containers, sandboxes)
}

/// Whether nothing of `pod` need stay: evicted, or being deleted with nothing running; with
/// `terminated`, also a pod that ended.
fn remove_all(k: &Kubelet, pod: &Pod, o: &Observed, terminated: bool) -> bool {
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let status = pod.status.as_ref();
    let evicted =
        k.evictions.lock().unwrap().contains_key(uid) || status.and_then(|s| s.reason.as_deref()) == Some("Evicted");
    let running = o.containers.iter().any(|c| c.running()) || o.sandboxes.iter().any(|s| s.ready);
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
    !running
        && (evicted
            || pod.metadata.deletion_timestamp.is_some()
            || (terminated && (phase == "Succeeded" || phase == "Failed")))
}

/// One pass over the pods with a worker, on one listing of the runtime; returns how many containers
/// and sandboxes went.
pub async fn collect(k: &Kubelet, pods: Vec<Arc<Pod>>, terminated: bool) -> usize {
    let all = match runtime::list_all(k).await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e.message(), "listing the runtime for garbage collection");
            return 0;
        }
    };
    let mut removed = 0;
    for pod in pods {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let Some(o) = all.get(&uid) else { continue };
        let (containers, sandboxes) = plan(o, remove_all(k, &pod, o, terminated));
        for id in &containers {
            tracing::debug!(pod_uid = %uid, container = %id, "removing dead container");
            runtime::remove_container(k, id).await;
        }
        for id in &sandboxes {
            tracing::debug!(pod_uid = %uid, sandbox = %id, "removing dead sandbox");
            if let Err(e) = runtime::remove_sandbox(k, id).await {
                tracing::warn!(sandbox = %id, error = %e.message(), "RemovePodSandbox failed");
            }
        }
        removed += containers.len() + sandboxes.len();
    }
    removed
}

pub async fn run(k: Arc<Kubelet>, m: Arc<crate::pods::Manager>) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let n = collect(&k, m.pods(), false).await;
        if n > 0 {
            tracing::info!(removed = n, "container garbage collection");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Ctr, Sandbox};
    use cri::v1 as c;

    fn sandbox(id: &str, created: i64, ready: bool) -> Sandbox {
        Sandbox { id: id.into(), attempt: 0, ready, created_at: created, ip: None }
    }

    fn ctr(id: &str, sandbox: &str, name: &str, created: i64, running: bool) -> Ctr {
        Ctr {
            id: id.into(),
            sandbox_id: sandbox.into(),
            name: name.into(),
            attempt: created as u32,
            state: if running { c::ContainerState::ContainerRunning } else { c::ContainerState::ContainerExited },
            created_at: created,
            started_at: created,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            image_ref: String::new(),
            annotations: Default::default(),
            log_path: String::new(),
        }
    }

    #[test]
    fn the_newest_dead_container_per_name_and_the_newest_sandbox_stay() {
        // Three sandboxes (newest first): s3 runs; s2 holds app's last dead container; s1 is empty.
        let o = Observed {
            sandboxes: vec![sandbox("s3", 3, true), sandbox("s2", 2, false), sandbox("s1", 1, false)],
            containers: vec![
                ctr("a1", "s1", "app", 1, false),
                ctr("a2", "s2", "app", 2, false),
                ctr("i3", "s3", "init", 3, false),
                ctr("a3", "s3", "app", 4, true),
            ],
        };
        assert_eq!(plan(&o, false), (vec!["a1".into()], vec!["s1".into()]));
        // Evicted or deleted: every dead container and every sandbox not ready.
        let stopped = Observed {
            sandboxes: vec![sandbox("s3", 3, false), sandbox("s2", 2, false)],
            containers: vec![ctr("a2", "s2", "app", 2, false), ctr("a3", "s3", "app", 4, false)],
        };
        assert_eq!(plan(&stopped, true), (vec!["a3".into(), "a2".into()], vec!["s3".into(), "s2".into()]));
        assert_eq!(plan(&stopped, false), (vec!["a2".into()], vec!["s2".into()]));
    }
}
