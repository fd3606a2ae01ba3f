//! CertificateSigningRequests, as upstream's csrsigning and csrcleaner controllers:
//! - approved requests for `kubernetes.io/kube-apiserver-client`, `kube-apiserver-client-kubelet` and
//!   `kubelet-serving` are signed with `--cluster-signing-cert-file`/`--cluster-signing-key-file` for
//!   the shorter of `--cluster-signing-duration` and `spec.expirationSeconds` (at least 10 minutes),
//!   after the signer's own rules (kubelet signers: `O=system:nodes`, `CN=system:node:<name>`, their
//!   usages); a request that breaks them gets the `Failed` condition (`SignerValidationFailure`);
//! - requests are deleted an hour after being approved, denied or failed, a day after being left
//!   pending, and once their certificate has expired.
//! - csrapproving approves kubelet client requests (`kube-apiserver-client-kubelet`, a node client
//!   subject) whose requester may `create` `certificatesigningrequests/selfnodeclient` (a node
//!   renewing its own certificate) or `certificatesigningrequests/nodeclient` (a bootstrap token),
//!   asked through a SubjectAccessReview for the requester's identity, as upstream's `sarapprove`.

use super::{has_code, run_workers, SyncResult};
use crate::context::Context;
use base64::Engine;
use component_base::workqueue::WorkQueue;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const CLIENT: &str = "kubernetes.io/kube-apiserver-client";
const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

fn condition(csr: &CertificateSigningRequest, t: &str) -> Option<CertificateSigningRequestCondition> {
    csr.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == t && c.status == "True").cloned()
}

/// The signer's rules for what it signs (upstream's `IsKubeletClientCSR`, `IsKubeletServingCSR`, ...).
pub fn validate(signer: &str, req_pem: &[u8], usages: &[String]) -> Result<(), String> {
    let r = pki::csr::parse(req_pem)?;
    let allowed = |ok: &[&str]| usages.iter().all(|u| ok.contains(&u.as_str()));
    match signer {
        KUBELET_CLIENT => {
            if r.organizations != ["system:nodes"] {
                return Err("subject organization is not system:nodes".into());
            }
            if !r.common_name.starts_with("system:node:") {
                return Err("subject common name does not begin with system:node:".into());
            }
            if r.dns_or_ip + r.other_sans > 0 {
                return Err("DNS, email, IP and URI subjectAltNames are not allowed".into());
            }
            if !allowed(&["key encipherment", "digital signature", "client auth"])
                || !usages.iter().any(|u| u == "client auth")
            {
                return Err("usages did not match [digital signature key encipherment client auth]".into());
            }
        }
        KUBELET_SERVING => {
            if r.organizations != ["system:nodes"] {
                return Err("subject organization is not system:nodes".into());
            }
            if !r.common_name.starts_with("system:node:") {
                return Err("subject common name does not begin with system:node:".into());
            }
            if r.dns_or_ip == 0 || r.other_sans > 0 {
                return Err(
                    "DNS or IP subjectAltName is required; email and URI subjectAltNames are not allowed".into()
                );
            }
            if !allowed(&["key encipherment", "digital signature", "server auth"])
                || !usages.iter().any(|u| u == "server auth")
            {
                return Err("usages did not match [digital signature key encipherment server auth]".into());
            }
        }
        CLIENT => {
            if usages.iter().any(|u| u == "server auth") || !usages.iter().any(|u| u == "client auth") {
                return Err("invalid usage for client certificate: server auth".into());
            }
        }
        _ => return Err(format!("unsupported signer {signer}")),
    }
    Ok(())
}

pub fn start_signing(ctx: &Arc<Context>) {
    let (Some(cert), Some(key)) =
        (ctx.flags.cluster_signing_cert_file.clone(), ctx.flags.cluster_signing_key_file.clone())
    else {
        tracing::info!("csrsigning needs --cluster-signing-cert-file and --cluster-signing-key-file; not started");
        return;
    };
    let ca = match pki::cert::SigningCa::load(std::path::Path::new(&cert), std::path::Path::new(&key)) {
        Ok(ca) => Arc::new(ca),
        Err(e) => {
            tracing::error!(error = %e, "cannot load the cluster signing CA; csrsigning not started");
            return;
        }
    };
    run_on_csrs(ctx, "certificate", move |ctx, name| {
        let ca = ca.clone();
        async move { sign(&ctx, &ca, &name).await }
    });
}

/// A work queue of request names fed by the shared CSR informer, and five workers syncing them once
/// the informer has synced (what csrsigning and csrapproving both run on).
fn run_on_csrs<F, Fut>(ctx: &Arc<Context>, queue: &'static str, sync: F)
where
    F: Fn(Arc<Context>, String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = SyncResult> + Send + 'static,
{
    let queue: WorkQueue<String> = WorkQueue::new(queue);
    let q = queue.clone();
    ctx.csrs().add_handler(move |ch| q.add(ch.object().metadata.name.clone().unwrap_or_default()));
    let ctx = ctx.clone();
    tokio::spawn(async move {
        ctx.csrs().wait_synced().await;
        run_workers(queue, 5, move |name| sync(ctx.clone(), name));
    });
}

async fn sign(ctx: &Context, ca: &pki::cert::SigningCa, name: &str) -> SyncResult {
    let Some(csr) = ctx.csrs().get(name) else { return Ok(None) };
    let issued = csr.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty());
    if issued
        || condition(&csr, "Approved").is_none()
        || condition(&csr, "Denied").is_some()
        || condition(&csr, "Failed").is_some()
    {
        return Ok(None);
    }
    let signer = csr.spec.signer_name.clone();
    if ![CLIENT, KUBELET_CLIENT, KUBELET_SERVING].contains(&signer.as_str()) {
        return Ok(None);
    }
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    if let Err(why) = validate(&signer, &csr.spec.request.0, &usages) {
        let mut conds = csr.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        conds.push(CertificateSigningRequestCondition {
            type_: "Failed".into(),
            status: "True".into(),
            reason: Some("SignerValidationFailure".into()),
            message: Some(why),
            last_update_time: Some(component_base::time_now()),
            last_transition_time: Some(component_base::time_now()),
        });
        super::update_with(&api, &csr, &json!({"status": {"conditions": conds}}), true).await?;
        return Ok(None);
    }
    let mut valid = ctx.flags.cluster_signing_duration.0;
    if let Some(s) = csr.spec.expiration_seconds {
        valid = valid.min(Duration::from_secs(s.max(600) as u64));
    }
    let pem = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
    let cert = ca.sign_csr(&pem, &usages, valid).map_err(|e| super::SyncError::Other(e.to_string()))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_bytes());
    match super::update_with(&api, &csr, &json!({"status": {"certificate": b64}}), true).await {
        Ok(_) => Ok(None),
        Err(e) if has_code(&e, &[404]) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn start_approving(ctx: &Arc<Context>) {
    run_on_csrs(ctx, "csrapproving", |ctx, name| async move { approve(&ctx, &name).await });
}

/// The recognizers, in upstream's order: (subresource the requester needs `create` on, whether the
/// request must be for the requester's own name, the approval message).
const RECOGNIZERS: &[(&str, bool, &str)] = &[
    ("selfnodeclient", true, "Auto approving self kubelet client certificate after SubjectAccessReview."),
    ("nodeclient", false, "Auto approving kubelet client certificate after SubjectAccessReview."),
];

async fn approve(ctx: &Context, name: &str) -> SyncResult {
    let Some(csr) = ctx.csrs().get(name) else { return Ok(None) };
    let issued = csr.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty());
    if issued || condition(&csr, "Approved").is_some() || condition(&csr, "Denied").is_some() {
        return Ok(None);
    }
    let usages = csr.spec.usages.clone().unwrap_or_default();
    if csr.spec.signer_name != KUBELET_CLIENT || validate(KUBELET_CLIENT, &csr.spec.request.0, &usages).is_err() {
        return Ok(None);
    }
    let Ok(subject) = pki::csr::parse(&csr.spec.request.0) else { return Ok(None) };
    let mut tried = Vec::new();
    for (sub, own, message) in RECOGNIZERS {
        if *own && csr.spec.username.as_deref() != Some(subject.common_name.as_str()) {
            continue;
        }
        tried.push(*sub);
        if !allowed(ctx, &csr, sub).await? {
            continue;
        }
        let mut approved = CertificateSigningRequest::clone(&csr);
        let status = approved.status.get_or_insert_with(Default::default);
        status.conditions.get_or_insert_with(Vec::new).push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("AutoApproved".into()),
            message: Some(message.to_string()),
            last_update_time: Some(component_base::time_now()),
            last_transition_time: None,
        });
        let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
        return match api.replace_subresource("approval", name, &PostParams::default(), &approved).await {
            Ok(_) => {
                tracing::info!(csr = name, "{message}");
                Ok(None)
            }
            Err(e) if has_code(&e, &[404]) => Ok(None),
            Err(e) => Err(e.into()),
        };
    }
    if !tried.is_empty() {
        // Left pending for a person to decide, as upstream (an ignored error: not retried).
        tracing::info!(csr = name, "recognized csr as {tried:?} but subject access review was not approved");
    }
    Ok(None)
}

/// Whether the request's author may `create` `certificatesigningrequests/<sub>`.
async fn allowed(ctx: &Context, csr: &CertificateSigningRequest, sub: &str) -> Result<bool, super::SyncError> {
    let spec = &csr.spec;
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: spec.username.clone(),
            uid: spec.uid.clone(),
            groups: spec.groups.clone(),
            extra: spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(sub.into()),
                verb: Some("create".into()),
                version: Some("*".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(ctx.client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

pub fn start_cleaner(ctx: &Arc<Context>) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        ctx.csrs().wait_synced().await;
        loop {
            for csr in ctx.csrs().list() {
                if expired(&csr) {
                    let name = csr.metadata.name.clone().unwrap_or_default();
                    match Api::<CertificateSigningRequest>::all(ctx.client.clone())
                        .delete(&name, &DeleteParams::default())
                        .await
                    {
                        Ok(_) => tracing::info!(csr = %name, "cleaned up certificate signing request"),
                        Err(e) if has_code(&e, &[404]) => {}
                        Err(e) => tracing::warn!(csr = %name, error = %e, "could not clean up"),
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
}

/// upstream's csrcleaner rules: an hour after approval, denial or failure; a day pending; or once the
/// issued certificate has expired.
fn expired(csr: &CertificateSigningRequest) -> bool {
    let now = k8s_openapi::jiff::Timestamp::now();
    let age = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref().map(|t| now.duration_since(t.0).as_secs()).unwrap_or(0)
    };
    let mut decided = false;
    for t in ["Approved", "Denied", "Failed"] {
        if let Some(c) = condition(csr, t) {
            decided = true;
            if age(&c.last_update_time.or(c.last_transition_time)) > 3600 {
                return true;
            }
        }
    }
    if let Some(cert) = csr.status.as_ref().and_then(|s| s.certificate.as_ref()).filter(|c| !c.0.is_empty()) {
        if let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(&cert.0) {
            if pem.parse_x509().is_ok_and(|c| c.validity().time_to_expiration().is_none()) {
                return true;
            }
        }
    }
    !decided && age(&csr.metadata.creation_timestamp) > 24 * 3600
}
