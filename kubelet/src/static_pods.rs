//! Static pods: manifests in `staticPodPath` run on this node without the API server deciding. Each
//! file's pod gets the node's name as a suffix, a uid derived from its content, upstream's
//! `kubernetes.io/config.*` annotations, and a mirror pod in the API (annotated
//! `kubernetes.io/config.mirror`) that shows its status and is recreated when deleted. A changed
//! file replaces the pod; a removed file stops it and deletes the mirror.

use crate::kubelet::Kubelet;
use crate::pods::Manager;
use component_base::informer::Change;
use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, PostParams};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub const MIRROR: &str = "kubernetes.io/config.mirror";
pub const SOURCE: &str = "kubernetes.io/config.source";
pub const HASH: &str = "kubernetes.io/config.hash";
pub const SEEN: &str = "kubernetes.io/config.seen";

pub fn is_mirror(p: &Pod) -> bool {
    p.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(MIRROR))
}

pub fn is_static(p: &Pod) -> bool {
    p.metadata.annotations.as_ref().and_then(|a| a.get(SOURCE)).is_some_and(|s| s == "file")
}

/// The pod a manifest describes, as upstream's file source completes it.
pub fn from_manifest(text: &str, file: &str, node: &str) -> Result<Pod, String> {
    let mut pod: Pod = serde_yaml_ng::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    let name =
        pod.metadata.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| format!("{file}: name is required"))?;
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(text.as_bytes());
    h.update(file.as_bytes());
    h.update(node.as_bytes());
    let uid = hex::encode(&h.finalize()[..16]);
    pod.metadata.name = Some(format!("{name}-{node}"));
    if pod.metadata.namespace.as_deref().unwrap_or("").is_empty() {
        pod.metadata.namespace = Some("default".into());
    }
    pod.metadata.uid = Some(uid.clone());
    let ann = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(SOURCE.into(), "file".into());
    ann.insert(HASH.into(), uid);
    ann.insert(SEEN.into(), k8s_openapi::jiff::Timestamp::now().to_string());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.into());
    // As upstream: static pods tolerate every NoExecute taint, so they are never evicted by taints.
    spec.tolerations.get_or_insert_with(Vec::new).push(Toleration {
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        ..Default::default()
    });
    for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        c.termination_message_path.get_or_insert_with(|| "/dev/termination-log".into());
        c.termination_message_policy.get_or_insert_with(|| "File".into());
        if c.image_pull_policy.is_none() {
            let image = c.image.clone().unwrap_or_default();
            c.image_pull_policy = Some(apimachinery::images::default_pull_policy(&image).into());
        }
    }
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.enable_service_links.get_or_insert(true);
    pod.status = Some(Default::default());
    Ok(pod)
}

fn read_dir(dir: &str, node: &str) -> HashMap<String, Pod> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.path().is_file() {
            continue;
        }
        let path = e.path().to_string_lossy().into_owned();
        match std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|t| from_manifest(&t, &path, node)) {
            Ok(p) => {
                out.insert(path, p);
            }
            Err(e) => tracing::warn!(file = %path, error = %e, "could not process manifest file"),
        }
    }
    out
}

/// The mirror pod for `pod`: its spec, owned by the Node, annotated with the static pod's hash.
fn mirror_of(pod: &Pod, node: &Node) -> Pod {
    let mut m = pod.clone();
    m.metadata.uid = None;
    m.metadata.resource_version = None;
    m.status = None;
    let hash = pod.metadata.annotations.as_ref().and_then(|a| a.get(HASH)).cloned().unwrap_or_default();
    m.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(MIRROR.into(), hash);
    m.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.metadata.name.clone().unwrap_or_default(),
        uid: node.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        ..Default::default()
    }]);
    m
}

pub async fn run(k: Arc<Kubelet>, m: Arc<Manager>, dir: String) {
    let node_name = k.config.node_name.clone();
    let mut current: HashMap<String, Pod> = HashMap::new();
    loop {
        let fresh = read_dir(&dir, &node_name);
        for (file, old) in &current {
            let same = fresh.get(file).is_some_and(|p| p.metadata.uid == old.metadata.uid);
            if !same {
                tracing::info!(file = %file, pod = ?old.metadata.name, "static pod removed or changed");
                m.update(&Change::Deleted(Arc::new(old.clone())));
                if !fresh.values().any(|p| p.metadata.name == old.metadata.name) {
                    delete_mirror(&k, old).await;
                }
            }
        }
        for (file, p) in &fresh {
            if current.get(file).map(|o| &o.metadata.uid) != Some(&p.metadata.uid) {
                tracing::info!(file = %file, pod = ?p.metadata.name, "static pod added");
                m.update(&Change::Added(Arc::new(p.clone())));
            }
        }
        current = fresh;
        for p in current.values() {
            if let Err(e) = ensure_mirror(&k, p).await {
                tracing::warn!(pod = ?p.metadata.name, error = %e, "failed creating a mirror pod");
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn ensure_mirror(k: &Kubelet, p: &Pod) -> Result<(), kube::Error> {
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let name = p.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(k.client.clone(), &ns);
    let hash = p.metadata.annotations.as_ref().and_then(|a| a.get(HASH)).cloned();
    match api.get_opt(&name).await? {
        Some(existing)
            if existing.metadata.deletion_timestamp.is_none()
                && existing.metadata.annotations.as_ref().and_then(|a| a.get(MIRROR)).cloned() == hash =>
        {
            return Ok(())
        }
        Some(existing) => {
            // An outdated mirror (or a pod in the way) is replaced.
            let dp = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
            if existing.metadata.deletion_timestamp.is_none() || is_mirror(&existing) {
                let _ = api.delete(&name, &dp).await;
            }
            return Ok(());
        }
        None => {}
    }
    let Some(node) = Api::<Node>::all(k.client.clone()).get_opt(&k.config.node_name).await? else { return Ok(()) };
    api.create(&PostParams::default(), &mirror_of(p, &node)).await?;
    tracing::info!(pod = %name, namespace = %ns, "created mirror pod");
    Ok(())
}

async fn delete_mirror(k: &Kubelet, p: &Pod) {
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let name = p.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(k.client.clone(), &ns);
    if let Ok(Some(existing)) = api.get_opt(&name).await {
        if is_mirror(&existing) {
            let _ = api.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn manifests_become_node_pods() {
        let p = super::from_manifest(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: busybox:1.36}]\n",
            "/etc/m/web.yaml",
            "n1",
        )
        .unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(p.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
        let uid = p.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        assert_eq!(p.metadata.annotations.as_ref().unwrap()["kubernetes.io/config.hash"], uid);
        assert!(super::is_static(&p));
        assert_eq!(p.spec.unwrap().containers[0].image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert!(super::from_manifest("kind: Pod\nmetadata: {}\n", "f", "n").is_err());
    }
}
