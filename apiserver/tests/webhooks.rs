//! Admission webhooks through the real kubectl, against a webhook the test serves over TLS on
//! loopback: a mutating webhook patches pods (namespace selector), a validating one denies pods and
//! configmap deletes with upstream's message, dry runs are flagged, failure policies (an unreachable
//! webhook, a slow one) and the metrics behave as upstream's, and webhook configurations themselves
//! are never sent to webhooks.

mod common;

use apiserver_storage::testing::free_port;
use base64::Engine;
use common::Server;
use http_body_util::{BodyExt, Full};
use pki::cert::{AltNames, CertRequest, LoadedCert, SigningCa, Usage};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// What the test webhook answers on each path.
fn answer(path: &str, review: &Value) -> Value {
    let req = &review["request"];
    let uid = req["uid"].clone();
    let labels = |o: &Value| o.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    let response = match path {
        "/mutate" => {
            let patch = if req.pointer("/object/metadata/labels").is_some() {
                json!([{"op": "add", "path": "/metadata/labels/mutated-by", "value": "webhook"}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated-by": "webhook"}}])
            };
            json!({
                "uid": uid, "allowed": true, "patchType": "JSONPatch",
                "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string()),
                "warnings": ["mutated by the test webhook"],
            })
        }
        "/validate" => {
            if labels(&req["object"])["deny"] == "true" {
                json!({"uid": uid, "allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "label deny=true is not allowed"}})
            } else if req["operation"] == "DELETE" && labels(&req["oldObject"])["protected"] == "yes" {
                json!({"uid": uid, "allowed": false, "status": {"message": "protected objects stay"}})
            } else {
                json!({"uid": uid, "allowed": true})
            }
        }
        "/slow" => {
            std::thread::sleep(Duration::from_secs(3));
            json!({"uid": uid, "allowed": true})
        }
        _ => json!({"uid": "not-the-request", "allowed": true}),
    };
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// Serves webhooks over TLS on loopback; returns the port and the CA bundle (base64 PEM).
fn serve(seen: Seen) -> (u16, String) {
    let ca_key = pki::keys::KeyAlgorithm::EcdsaP256.generate().unwrap();
    let ca_pem = pki::cert::new_ca("webhook-ca", &ca_key, Duration::from_secs(3600)).unwrap();
    let ca = SigningCa { cert: LoadedCert::from_pem(std::path::Path::new("ca.crt"), &ca_pem).unwrap(), key: ca_key };
    let key = pki::keys::KeyAlgorithm::EcdsaP256.generate().unwrap();
    let mut alt = AltNames::default();
    alt.add("127.0.0.1");
    let req = CertRequest {
        common_name: "webhook".into(),
        organizations: vec![],
        alt_names: alt,
        usages: vec![Usage::Server],
        validity: Duration::from_secs(3600),
    };
    let chain = ca.sign(&req, &key).unwrap();
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(chain.as_bytes()).collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki::keys::private_key_pem(&key).as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let review: Value = serde_json::from_slice(&body).unwrap_or_default();
                            seen.lock().unwrap().push((path.clone(), review.clone()));
                            let out = tokio::task::spawn_blocking(move || answer(&path, &review)).await.unwrap();
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(bytes::Bytes::from(
                                out.to_string(),
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    });
    (port, base64::engine::general_purpose::STANDARD.encode(ca_pem))
}

fn reviews(seen: &Seen, path: &str, resource: &str) -> Vec<Value> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(p, r)| p == path && r.pointer("/request/resource/resource").and_then(Value::as_str) == Some(resource))
        .map(|(_, r)| r["request"].clone())
        .collect()
}

/// Waits until the server has picked up a new webhook configuration (it reads them from its watch
/// cache, as upstream reads them from an informer): `probe` is retried until it does what `done` says.
fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !probe() {
        assert!(Instant::now() < deadline, "{what} did not happen within 20s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hook(name: &str, url: &str, ca: &str, rules: Value, extra: Value) -> Value {
    let mut w = json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca},
        "rules": rules,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 5,
    });
    for (k, v) in extra.as_object().unwrap() {
        w[k] = v.clone();
    }
    w
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME, labels: {app: web}}\nspec:\n  containers:\n  - {name: c, image: busybox:1.36}\n";

#[test]
fn webhooks_mutate_deny_and_follow_their_failure_policy() {
    let s =
        Server::start(vec!["--data-dir".into(), tempfile::tempdir().unwrap().keep().join("d").display().to_string()]);
    let seen: Seen = Arc::default();
    let (port, ca) = serve(seen.clone());
    let base = format!("https://127.0.0.1:{port}");
    s.ok(&["create", "namespace", "hooked"]);
    s.ok(&["label", "namespace", "hooked", "webhooks=on"]);
    s.ok(&["create", "namespace", "plain"]);

    let pods_create =
        json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]);
    let mutating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "test-mutate"},
        "webhooks": [hook("mutate.test.ferrokube.io", &format!("{base}/mutate"), &ca, pods_create.clone(),
            json!({"namespaceSelector": {"matchLabels": {"webhooks": "on"}}}))],
    });
    let validating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "test-validate"},
        "webhooks": [hook("validate.test.ferrokube.io", &format!("{base}/validate"), &ca,
            json!([{"operations": ["CREATE", "DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods", "configmaps"]}]),
            json!({}))],
    });
    let f = s.file("hooks.json", &format!("{mutating}\n{validating}"));
    s.ok(&["create", "-f", &f]);
    eventually("the validating webhook seeing a configmap", || {
        s.ok(&["create", "configmap", "probe", "-n", "plain", "--dry-run=server"]);
        !reviews(&seen, "/validate", "configmaps").is_empty()
    });
    // A server-side dry run is flagged as one.
    let probe = reviews(&seen, "/validate", "configmaps").pop().unwrap();
    assert_eq!(probe["dryRun"], true, "{probe}");
    assert_eq!(probe["options"], json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "dryRun": ["All"]}));
    assert_eq!(probe["operation"], "CREATE");
    assert_eq!(probe["kind"], json!({"group": "", "version": "v1", "kind": "ConfigMap"}));

    // The mutating webhook patches pods in the selected namespace, and its warning reaches kubectl.
    eventually("the mutating webhook patching a pod", || {
        let f = s.file("web.yaml", &POD.replace("NAME", "web"));
        let out = s.kubectl(&["create", "-n", "hooked", "-f", &f, "--dry-run=server", "-o", "json"]);
        out.status.success()
            && serde_json::from_slice::<Value>(&out.stdout).unwrap()["metadata"]["labels"]["mutated-by"] == "webhook"
    });
    let f = s.file("web.yaml", &POD.replace("NAME", "web"));
    let out = s.kubectl(&["create", "-n", "hooked", "-f", &f]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Warning: mutated by the test webhook"));
    let pod: Value = serde_json::from_str(&s.ok(&["get", "pod", "web", "-n", "hooked", "-o", "json"])).unwrap();
    assert_eq!(pod["metadata"]["labels"], json!({"app": "web", "mutated-by": "webhook"}));
    // What the webhook was sent: the defaulted pod, the request's identity and coordinates.
    let sent = reviews(&seen, "/mutate", "pods").pop().unwrap();
    assert_eq!(sent["namespace"], "hooked");
    assert_eq!(sent["name"], "web");
    assert_eq!(sent["object"]["spec"]["containers"][0]["terminationMessagePath"], "/dev/termination-log");
    assert!(sent["userInfo"]["username"].is_string(), "{sent}");
    // Outside the selected namespace, pods are left alone.
    s.ok(&["create", "-n", "plain", "-f", &f]);
    let pod: Value = serde_json::from_str(&s.ok(&["get", "pod", "web", "-n", "plain", "-o", "json"])).unwrap();
    assert_eq!(pod["metadata"]["labels"], json!({"app": "web"}));

    // The validating webhook denies with its own status code and upstream's message.
    let f = s.file("bad.yaml", &POD.replace("NAME", "bad").replace("app: web", "deny: \"true\""));
    let err = s.fails(&["create", "-n", "plain", "-f", &f]);
    assert!(
        err.contains(r#"Error from server (Forbidden): error when creating"#)
            && err.contains(
                r#"admission webhook "validate.test.ferrokube.io" denied the request: label deny=true is not allowed"#
            ),
        "{err}"
    );
    assert!(!s.kubectl(&["get", "pod", "bad", "-n", "plain"]).status.success());
    // A delete is shown the object being deleted; a denial without a code or reason is a 400 with none.
    s.ok(&["create", "configmap", "keep", "-n", "plain"]);
    s.ok(&["label", "configmap", "keep", "-n", "plain", "protected=yes"]);
    let err = s.fails(&["delete", "configmap", "keep", "-n", "plain"]);
    assert!(
        err.contains(r#"Error from server: admission webhook "validate.test.ferrokube.io" denied the request: protected objects stay"#),
        "{err}"
    );
    let del = reviews(&seen, "/validate", "configmaps").into_iter().find(|r| r["operation"] == "DELETE").unwrap();
    assert_eq!(del["oldObject"]["metadata"]["name"], "keep");
    assert_eq!(del["object"], Value::Null);
    assert_eq!(del["options"]["kind"], "DeleteOptions");
    s.ok(&["get", "configmap", "keep", "-n", "plain"]);
    s.ok(&["label", "configmap", "keep", "-n", "plain", "protected-"]);
    s.ok(&["delete", "configmap", "keep", "-n", "plain"]);

    // Failure policies: an unreachable webhook fails closed with a 500; a slow one past its timeout
    // is ignored under Ignore and fails the request under Fail; a wrong answer is a call failure.
    let dead = free_port();
    let cms =
        json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]);
    let only = |ns: &str| json!({"matchLabels": {"kubernetes.io/metadata.name": ns}});
    let failing = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "test-failing"},
        "webhooks": [
            hook("down.test.ferrokube.io", &format!("https://127.0.0.1:{dead}/x"), &ca, cms.clone(), json!({"namespaceSelector": only("down")})),
            hook("slow-ignored.test.ferrokube.io", &format!("{base}/slow"), &ca, cms.clone(),
                json!({"namespaceSelector": only("slow"), "timeoutSeconds": 1, "failurePolicy": "Ignore"})),
            hook("slow.test.ferrokube.io", &format!("{base}/slow"), &ca, cms.clone(),
                json!({"namespaceSelector": only("slower"), "timeoutSeconds": 1})),
            hook("liar.test.ferrokube.io", &format!("{base}/other"), &ca, cms.clone(), json!({"namespaceSelector": only("lied-to")})),
        ],
    });
    let f = s.file("failing.json", &failing.to_string());
    s.ok(&["create", "-f", &f]);
    for ns in ["down", "slow", "slower", "lied-to"] {
        s.ok(&["create", "namespace", ns]);
    }
    let mut err = String::new();
    eventually("the unreachable webhook failing a create", || {
        let out = s.kubectl(&["create", "configmap", "c", "-n", "down", "--dry-run=server"]);
        err = String::from_utf8_lossy(&out.stderr).into_owned();
        !out.status.success()
    });
    assert!(
        err.contains(&format!(
            r#"Internal error occurred: failed calling webhook "down.test.ferrokube.io": failed to call webhook: Post "https://127.0.0.1:{dead}/x?timeout=5s": dial tcp 127.0.0.1:{dead}: connect: connection refused"#
        )),
        "{err}"
    );
    let started = Instant::now();
    s.ok(&["create", "configmap", "c", "-n", "slow"]);
    assert!(started.elapsed() >= Duration::from_secs(1));
    let err = s.fails(&["create", "configmap", "c", "-n", "slower"]);
    assert!(
        err.contains(&format!(r#"failed calling webhook "slow.test.ferrokube.io": failed to call webhook: Post "{base}/slow?timeout=1s": context deadline exceeded"#)),
        "{err}"
    );
    let err = s.fails(&["create", "configmap", "c", "-n", "lied-to"]);
    assert!(err.contains(r#"failed calling webhook "liar.test.ferrokube.io": received invalid webhook response: expected response.uid="#), "{err}");

    let metrics = s.ok(&["get", "--raw", "/metrics"]);
    for line in [
        r#"apiserver_admission_webhook_rejection_count{error_type="no_error",name="validate.test.ferrokube.io",operation="CREATE",rejection_code="403",type="validating"} 1"#,
        r#"apiserver_admission_webhook_rejection_count{error_type="no_error",name="validate.test.ferrokube.io",operation="DELETE",rejection_code="400",type="validating"} 1"#,
        r#"apiserver_admission_webhook_fail_open_count{name="slow-ignored.test.ferrokube.io",type="validating"} 1"#,
        r#"apiserver_admission_webhook_request_total{code="200",name="mutate.test.ferrokube.io",operation="CREATE",rejected="false",type="admit"}"#,
    ] {
        assert!(
            metrics.contains(line),
            "{line} missing from\n{}",
            metrics.lines().filter(|l| l.contains("webhook")).collect::<Vec<_>>().join("\n")
        );
    }

    // A webhook that would reject everything cannot lock out its own removal: webhook configurations
    // are never sent to webhooks.
    let everything = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "test-everything"},
        "webhooks": [hook("everything.test.ferrokube.io", &format!("https://127.0.0.1:{dead}/x"), &ca,
            json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}]), json!({}))],
    });
    let f = s.file("everything.json", &everything.to_string());
    s.ok(&["create", "-f", &f]);
    eventually("the catch-all webhook failing a namespace create", || {
        !s.kubectl(&["create", "namespace", "blocked", "--dry-run=server"]).status.success()
    });
    s.ok(&["delete", "validatingwebhookconfiguration", "test-everything", "test-failing"]);
    eventually("namespace creates working again", || s.kubectl(&["create", "namespace", "free"]).status.success());
}
