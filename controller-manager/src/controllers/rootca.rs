//! The root-ca-cert-publisher: a `kube-root-ca.crt` ConfigMap with `--root-ca-file` as `ca.crt` in
//! every active namespace, put back when deleted or changed.

use super::{run_workers, SyncError, SyncResult};
use crate::context::Context;
use component_base::informer::Change;
use component_base::workqueue::WorkQueue;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;

const NAME: &str = "kube-root-ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

pub fn start(ctx: &Arc<Context>) {
    let Some(path) = ctx.flags.root_ca_file.clone().filter(|p| !p.is_empty()) else {
        tracing::info!("root-ca-cert-publisher needs --root-ca-file; not started");
        return;
    };
    let ca = match std::fs::read_to_string(&path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(file = %path, error = %e, "cannot read --root-ca-file; root-ca-cert-publisher not started");
            return;
        }
    };
    let namespaces = ctx.namespaces();
    let configmaps = ctx.configmaps();
    let queue: WorkQueue<String> = WorkQueue::new("root_ca_cert_publisher");
    let q = queue.clone();
    namespaces.add_handler(move |ch| {
        if !matches!(ch, Change::Deleted(_)) {
            q.add(ch.object().metadata.name.clone().unwrap_or_default());
        }
    });
    let q = queue.clone();
    configmaps.add_handler(move |ch| {
        let cm = ch.object();
        if cm.metadata.name.as_deref() == Some(NAME) {
            q.add(cm.metadata.namespace.clone().unwrap_or_default());
        }
    });
    let ctx = ctx.clone();
    tokio::spawn(async move {
        namespaces.wait_synced().await;
        configmaps.wait_synced().await;
        let ca = Arc::new(ca);
        run_workers(queue, 1, move |ns| {
            let ctx = ctx.clone();
            let ca = ca.clone();
            async move { sync(&ctx, &ns, &ca).await }
        });
    });
}

async fn sync(ctx: &Context, ns: &str, ca: &str) -> SyncResult {
    let Some(namespace) = ctx.namespaces().get(ns) else { return Ok(None) };
    if namespace.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let data: BTreeMap<String, String> = [("ca.crt".to_string(), ca.to_string())].into();
    let annotations: BTreeMap<String, String> =
        [("kubernetes.io/description".to_string(), DESCRIPTION.to_string())].into();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    match ctx.configmaps().get(&format!("{ns}/{NAME}")) {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(NAME.into()),
                    namespace: Some(ns.into()),
                    annotations: Some(annotations),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &cm).await {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(s)) if s.code == 409 || (s.code == 403 && s.message.contains("terminat")) => {
                    Ok(None)
                }
                Err(e) => Err(e.into()),
            }
        }
        Some(cm) => {
            let has_annotation =
                cm.metadata.annotations.as_ref().and_then(|a| a.get("kubernetes.io/description")).is_some();
            if cm.data.as_ref() == Some(&data) && has_annotation {
                return Ok(None);
            }
            let mut updated = cm.as_ref().clone();
            updated.data = Some(data);
            updated.metadata.annotations.get_or_insert_with(BTreeMap::new).extend(annotations);
            api.replace(NAME, &PostParams::default(), &updated).await.map_err(SyncError::from)?;
            Ok(None)
        }
    }
}
