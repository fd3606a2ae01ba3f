//! What the runtime has of one pod: its sandboxes and containers (found by the kubelet's labels),
//! and the operations on them.

use crate::kubelet::Kubelet;
use cri::v1 as c;
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct Sandbox {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    pub created_at: i64,
    pub ip: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Ctr {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub state: c::ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub image_ref: String,
    pub annotations: HashMap<String, String>,
    pub log_path: String,
}

impl Ctr {
    pub fn running(&self) -> bool {
        self.state == c::ContainerState::ContainerRunning
    }
    pub fn exited(&self) -> bool {
        self.state == c::ContainerState::ContainerExited
    }
}

#[derive(Default, Clone, Debug)]
pub struct Observed {
    /// Newest first.
    pub sandboxes: Vec<Sandbox>,
    pub containers: Vec<Ctr>,
}

impl Observed {
    pub fn current(&self) -> Option<&Sandbox> {
        self.sandboxes.first()
    }

    /// The newest container named `name` in sandbox `sid`.
    pub fn latest(&self, sid: &str, name: &str) -> Option<&Ctr> {
        self.containers
            .iter()
            .filter(|c| c.sandbox_id == sid && c.name == name)
            .max_by_key(|c| (c.attempt, c.created_at))
    }

    /// The newest container named `name` in any sandbox (for restart counts).
    pub fn latest_any(&self, name: &str) -> Option<&Ctr> {
        self.containers.iter().filter(|c| c.name == name).max_by_key(|c| (c.attempt, c.created_at))
    }

    /// The exited container before `latest` (for `lastState`).
    pub fn previous(&self, name: &str, before: &Ctr) -> Option<&Ctr> {
        self.containers
            .iter()
            .filter(|c| c.name == name && c.id != before.id && c.exited() && c.attempt <= before.attempt)
            .max_by_key(|c| (c.attempt, c.created_at))
    }
}

pub fn uid_filter(uid: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert(cri::labels::POD_UID.to_string(), uid.to_string());
    m
}

/// The sandboxes and containers of pod `uid`.
pub async fn observe(k: &Kubelet, uid: &str) -> Result<Observed, tonic::Status> {
    let mut rt = k.cri.runtime.clone();
    let sandboxes = rt
        .list_pod_sandbox(c::ListPodSandboxRequest {
            filter: Some(c::PodSandboxFilter { label_selector: uid_filter(uid), ..Default::default() }),
        })
        .await?
        .into_inner()
        .items;
    let mut out = Observed::default();
    for s in sandboxes {
        let ready = s.state == c::PodSandboxState::SandboxReady as i32;
        let ip = if ready {
            rt.pod_sandbox_status(c::PodSandboxStatusRequest { pod_sandbox_id: s.id.clone(), verbose: false })
                .await
                .ok()
                .and_then(|r| r.into_inner().status)
                .and_then(|st| st.network)
                .map(|n| n.ip)
                .filter(|ip| !ip.is_empty())
        } else {
            None
        };
        out.sandboxes.push(Sandbox {
            id: s.id,
            attempt: s.metadata.map(|m| m.attempt).unwrap_or(0),
            ready,
            created_at: s.created_at,
            ip,
        });
    }
    out.sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let containers = rt
        .list_containers(c::ListContainersRequest {
            filter: Some(c::ContainerFilter { label_selector: uid_filter(uid), ..Default::default() }),
        })
        .await?
        .into_inner()
        .containers;
    for ctr in containers {
        let st =
            match rt.container_status(c::ContainerStatusRequest { container_id: ctr.id.clone(), verbose: false }).await
            {
                Ok(r) => match r.into_inner().status {
                    Some(s) => s,
                    None => continue,
                },
                Err(e) if e.code() == tonic::Code::NotFound => continue,
                Err(e) => return Err(e),
            };
        out.containers.push(Ctr {
            id: ctr.id,
            sandbox_id: ctr.pod_sandbox_id,
            name: st.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
            attempt: st.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
            state: c::ContainerState::try_from(st.state).unwrap_or(c::ContainerState::ContainerUnknown),
            created_at: st.created_at,
            started_at: st.started_at,
            finished_at: st.finished_at,
            exit_code: st.exit_code,
            reason: st.reason,
            image_ref: st.image_ref,
            annotations: st.annotations,
            log_path: st.log_path,
        });
    }
    Ok(out)
}

/// What the runtime has of every pod, by uid, from one ListPodSandbox and one ListContainers: ids,
/// names, attempts, states and creation times (no per-item status calls, so no IPs, exit codes or
/// log paths). Sandboxes are newest first, as `observe` has them.
pub async fn list_all(k: &Kubelet) -> Result<HashMap<String, Observed>, tonic::Status> {
    let mut rt = k.cri.runtime.clone();
    let mut out: HashMap<String, Observed> = HashMap::new();
    for s in rt.list_pod_sandbox(c::ListPodSandboxRequest { filter: None }).await?.into_inner().items {
        if let Some(uid) = s.labels.get(cri::labels::POD_UID) {
            out.entry(uid.clone()).or_default().sandboxes.push(Sandbox {
                id: s.id,
                attempt: s.metadata.map(|m| m.attempt).unwrap_or(0),
                ready: s.state == c::PodSandboxState::SandboxReady as i32,
                created_at: s.created_at,
                ip: None,
            });
        }
    }
    for ctr in rt.list_containers(c::ListContainersRequest { filter: None }).await?.into_inner().containers {
        if let Some(uid) = ctr.labels.get(cri::labels::POD_UID) {
            out.entry(uid.clone()).or_default().containers.push(Ctr {
                id: ctr.id,
                sandbox_id: ctr.pod_sandbox_id,
                name: ctr.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
                attempt: ctr.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
                state: c::ContainerState::try_from(ctr.state).unwrap_or(c::ContainerState::ContainerUnknown),
                created_at: ctr.created_at,
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
                image_ref: ctr.image_ref,
                annotations: ctr.annotations,
                log_path: String::new(),
            });
        }
    }
    for o in out.values_mut() {
        o.sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    }
    Ok(out)
}

/// A fingerprint of every sandbox's and container's state per pod uid (the relist that wakes workers).
pub async fn relist(k: &Kubelet) -> Result<HashMap<String, Vec<(String, i32)>>, tonic::Status> {
    Ok(list_all(k)
        .await?
        .into_iter()
        .map(|(uid, o)| {
            let mut v: Vec<(String, i32)> = o
                .sandboxes
                .into_iter()
                .map(|s| (s.id, i32::from(s.ready)))
                .chain(o.containers.into_iter().map(|c| (c.id, c.state as i32)))
                .collect();
            v.sort();
            (uid, v)
        })
        .collect())
}

pub async fn stop_container(k: &Kubelet, id: &str, timeout: i64) -> Result<(), tonic::Status> {
    let mut rt = k.cri.runtime.clone();
    rt.stop_container(c::StopContainerRequest { container_id: id.into(), timeout }).await.map(|_| ())
}

pub async fn remove_container(k: &Kubelet, id: &str) {
    let mut rt = k.cri.runtime.clone();
    if let Err(e) = rt.remove_container(c::RemoveContainerRequest { container_id: id.into() }).await {
        tracing::debug!(container = id, error = %e.message(), "RemoveContainer failed");
    }
}

pub async fn stop_sandbox(k: &Kubelet, id: &str) -> Result<(), tonic::Status> {
    let mut rt = k.cri.runtime.clone();
    rt.stop_pod_sandbox(c::StopPodSandboxRequest { pod_sandbox_id: id.into() }).await.map(|_| ())
}

pub async fn remove_sandbox(k: &Kubelet, id: &str) -> Result<(), tonic::Status> {
    let mut rt = k.cri.runtime.clone();
    rt.remove_pod_sandbox(c::RemovePodSandboxRequest { pod_sandbox_id: id.into() }).await.map(|_| ())
}

/// Stops and removes every sandbox (and so every container) of pod `uid`.
pub async fn remove_pod(k: &Kubelet, uid: &str) {
    match observe(k, uid).await {
        Ok(o) => {
            for s in &o.sandboxes {
                if let Err(e) = stop_sandbox(k, &s.id).await {
                    tracing::warn!(sandbox = %s.id, error = %e.message(), "StopPodSandbox failed");
                }
                if let Err(e) = remove_sandbox(k, &s.id).await {
                    tracing::warn!(sandbox = %s.id, error = %e.message(), "RemovePodSandbox failed");
                }
            }
        }
        Err(e) => tracing::warn!(pod_uid = uid, error = %e.message(), "listing the pod's sandboxes"),
    }
}
