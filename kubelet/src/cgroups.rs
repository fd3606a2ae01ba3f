//! A pod's own cgroup (`pod<uid>` under the QoS hierarchy, or with the `systemd` driver the
//! pod's slice, see `systemd`): created with the pod's limits before the sandbox (`ensure_pod`),
//! removed once its containers are gone (the runtime removes only its containers' own).

use crate::kubelet::Kubelet;
use std::path::Path;

pub async fn remove_pod(k: &Kubelet, uid: &str) {
    if !k.config.cgroups_per_qos {
        return;
    }
    if k.config.cgroup_driver == "systemd" {
        let u = uid.replace('-', "_");
        match k.systemd().await {
            Ok(conn) => {
                for q in ["", "burstable-", "besteffort-"] {
                    let name = format!("kubepods-{q}pod{u}.slice");
                    if let Err(e) = crate::systemd::stop_unit(&conn, &name).await {
                        tracing::warn!(unit = %name, error = %e, "stopping the pod's slice");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "removing the pod's slice"),
        }
    }
    let root = k.config.cgroup_root.trim_matches('/');
    let sub = if k.config.cgroup_driver == "systemd" {
        let u = uid.replace('-', "_");
        vec![
            format!("kubepods.slice/kubepods-pod{u}.slice"),
            format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice"),
            format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice"),
        ]
    } else {
        let base = if root.is_empty() { "kubepods".to_string() } else { format!("{root}/kubepods") };
        vec![format!("{base}/pod{uid}"), format!("{base}/burstable/pod{uid}"), format!("{base}/besteffort/pod{uid}")]
    };
    let mut hierarchies = vec![Path::new("/sys/fs/cgroup").to_path_buf()];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            if e.path().is_dir() {
                hierarchies.push(e.path());
            }
        }
    }
    for h in hierarchies {
        for s in &sub {
            let p = h.join(s);
            if p.is_dir() {
                remove_tree(&p);
            }
        }
    }
}

/// cgroup directories are removed bottom-up with rmdir.
fn remove_tree(p: &Path) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(p);
}

/// What a pod's own cgroup is limited to, as upstream's ResourceConfigForPod: CPU shares from the
/// requests (2 for BestEffort), a CFS quota and a memory limit when every container sets that
/// limit, and `podPidsLimit`. Init containers count as upstream counts them: the larger of the
/// biggest init container and the sum of the others.
#[derive(Debug, PartialEq)]
pub struct PodLimits {
    pub cpu_shares: u64,
    /// Microseconds per 100ms period.
    pub cpu_quota: Option<i64>,
    pub memory: Option<i64>,
    pub pids: Option<i64>,
}

pub fn pod_limits(pod: &k8s_openapi::api::core::v1::Pod, pids_limit: i64) -> PodLimits {
    let pids = (pids_limit > 0).then_some(pids_limit);
    let Some(spec) = pod.spec.as_ref() else {
        return PodLimits { cpu_shares: 2, cpu_quota: None, memory: None, pids };
    };
    // (sum over app containers, max over init containers) in millicores for cpu and bytes for
    // memory, each container rounded up as upstream's quantities are; None when some container
    // lacks it and `all_needed`.
    let total = |kind: &str, name: &str, all_needed: bool| -> Option<i64> {
        let scale = if name == "cpu" { 1000.0 } else { 1.0 };
        let of = |c| {
            let v = crate::spec::res(c, kind, name);
            // A request defaults to the limit.
            let v = if kind == "requests" { v.or_else(|| crate::spec::res(c, "limits", name)) } else { v };
            v.map(|v| apimachinery::quantity::ceil(v * scale))
        };
        let mut sum = 0;
        for c in &spec.containers {
            match of(c) {
                Some(v) => sum += v,
                None if all_needed => return None,
                None => {}
            }
        }
        let mut init_max = 0;
        for c in spec.init_containers.iter().flatten() {
            match of(c) {
                Some(v) => init_max = init_max.max(v),
                None if all_needed => return None,
                None => {}
            }
        }
        let overhead = spec
            .overhead
            .as_ref()
            .and_then(|o| o.get(name))
            .and_then(|q| apimachinery::quantity::parse(&q.0))
            .map(|v| apimachinery::quantity::ceil(v * scale));
        Some(sum.max(init_max) + overhead.unwrap_or(0))
    };
    if crate::spec::qos(pod) == crate::spec::Qos::BestEffort {
        return PodLimits { cpu_shares: 2, cpu_quota: None, memory: None, pids };
    }
    let milli = total("requests", "cpu", false).unwrap_or(0).max(0) as u64;
    PodLimits {
        cpu_shares: (milli * 1024 / 1000).max(2),
        cpu_quota: total("limits", "cpu", true).map(|m| (m * 100_000 / 1000).max(1000)),
        memory: total("limits", "memory", true),
        pids,
    }
}

/// Creates the pod's cgroup with its limits before the runtime puts the sandbox in it: with the
/// `systemd` driver the pod's slice through systemd; with `cgroupfs` the directories on cgroup v2
/// (enabling the controllers down the path) or v1 (the cpu, memory and pids hierarchies).
pub async fn ensure_pod(k: &Kubelet, pod: &k8s_openapi::api::core::v1::Pod) -> Result<(), String> {
    if !k.config.cgroups_per_qos {
        return Ok(());
    }
    let l = pod_limits(pod, k.config.pod_pids_limit);
    let base = Path::new("/sys/fs/cgroup");
    if k.config.cgroup_driver == "systemd" {
        let name = crate::spec::cgroup_parent(k, pod);
        let props = crate::systemd::slice_properties(&name, &l, base.join("cgroup.controllers").exists());
        return crate::systemd::ensure_slice(&*k.systemd().await?, &name, props).await;
    }
    let rel = crate::spec::cgroup_parent(k, pod);
    let rel = rel.trim_start_matches('/');
    let write = |p: &Path, v: &str| std::fs::write(p, v).map_err(|e| format!("writing {v:?} to {}: {e}", p.display()));
    if base.join("cgroup.controllers").exists() {
        // v2: each level must hand the controllers to its children.
        let mut dir = base.to_path_buf();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            let wanted: Vec<String> = ["cpu", "memory", "pids"]
                .iter()
                .filter(|c| available.split_whitespace().any(|a| a == **c))
                .map(|c| format!("+{c}"))
                .collect();
            if !wanted.is_empty() {
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), wanted.join(" "));
            }
            dir = dir.join(part);
            std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        // runc's conversion of shares to a weight.
        let weight = 1 + ((l.cpu_shares.max(2) - 2) * 9999) / 262142;
        write(&dir.join("cpu.weight"), &weight.to_string())?;
        write(&dir.join("cpu.max"), &l.cpu_quota.map_or("max 100000".to_string(), |q| format!("{q} 100000")))?;
        write(&dir.join("memory.max"), &l.memory.map_or("max".to_string(), |m| m.to_string()))?;
        write(&dir.join("pids.max"), &l.pids.map_or("max".to_string(), |p| p.to_string()))?;
        return Ok(());
    }
    let dir = |controller: &str| -> Result<std::path::PathBuf, String> {
        let d = base.join(controller).join(rel);
        std::fs::create_dir_all(&d).map_err(|e| format!("creating {}: {e}", d.display()))?;
        Ok(d)
    };
    let cpu = dir("cpu")?;
    write(&cpu.join("cpu.shares"), &l.cpu_shares.to_string())?;
    write(&cpu.join("cpu.cfs_period_us"), "100000")?;
    write(&cpu.join("cpu.cfs_quota_us"), &l.cpu_quota.unwrap_or(-1).to_string())?;
    write(&dir("memory")?.join("memory.limit_in_bytes"), &l.memory.unwrap_or(-1).to_string())?;
    write(&dir("pids")?.join("pids.max"), &l.pids.map_or("max".to_string(), |p| p.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "uid": "u"}, "spec": spec})).unwrap()
    }

    #[test]
    fn pod_limits_as_upstream() {
        let guaranteed = pod(serde_json::json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "200m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "100m", "memory": "32Mi"}}}]}));
        // 0.2 + 0.1 is not 0.3 in floating point: millicores are summed as integers.
        assert_eq!(
            pod_limits(&guaranteed, 100),
            PodLimits { cpu_shares: 307, cpu_quota: Some(30_000), memory: Some(96 << 20), pids: Some(100) }
        );
        // One container without limits: shares only; a bigger init container sets the floor.
        let burstable = pod(serde_json::json!({
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "64Mi"}}},
                           {"name": "b"}]}));
        assert_eq!(
            pod_limits(&burstable, -1),
            PodLimits { cpu_shares: 2048, cpu_quota: None, memory: None, pids: None }
        );
        let best_effort = pod(serde_json::json!({"containers": [{"name": "a"}]}));
        assert_eq!(pod_limits(&best_effort, 0), PodLimits { cpu_shares: 2, cpu_quota: None, memory: None, pids: None });
    }
}
