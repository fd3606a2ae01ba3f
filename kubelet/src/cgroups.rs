//! Removal of a pod's cgroups (`pod<uid>` under the QoS hierarchy) once its containers are gone;
//! the runtime creates them, and removes only its containers' own.

use crate::kubelet::Kubelet;
use std::path::Path;

pub fn remove_pod(k: &Kubelet, uid: &str) {
    if !k.config.cgroups_per_qos {
        return;
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
