//! The kubelet's client certificate, as upstream's bootstrap and certificate manager handle it:
//! - TLS bootstrap: when `--kubeconfig` is missing or its certificate has expired and
//!   `--bootstrap-kubeconfig` is given, a new key and a CertificateSigningRequest (`node-csr-<digest>`,
//!   signer `kubernetes.io/kube-apiserver-client-kubelet`, `O=system:nodes`, `CN=system:node:<node>`)
//!   are sent with the bootstrap credentials; once the controller manager has approved and signed it,
//!   certificate and key go to `<cert-dir>/kubelet-client-<time>.pem` behind the
//!   `kubelet-client-current.pem` symlink, and `--kubeconfig` is written to name that file.
//! - Rotation (`rotateCertificates`): at a random point between 70% and 90% of the certificate's
//!   lifetime the kubelet asks for a new one with its own identity (`csr-*`), stores it the same way
//!   and presents it on every connection opened afterwards.

use base64::Engine;
use component_base::client::ClientCertificate;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::config::Kubeconfig;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What a certificate is for: the signer, the usages of an ECDSA key (key encipherment is for RSA
/// keys only) and the file name prefix in the certificate directory.
#[derive(Clone, Copy)]
struct Kind {
    signer: &'static str,
    usages: [&'static str; 2],
    prefix: &'static str,
    what: &'static str,
}

const CLIENT: Kind = Kind {
    signer: "kubernetes.io/kube-apiserver-client-kubelet",
    usages: ["digital signature", "client auth"],
    prefix: "kubelet-client",
    what: "client",
};
/// `serverTLSBootstrap`: the serving certificate (for the kubelet's server on 10250), which no
/// controller approves on its own: an administrator does (`kubectl certificate approve`).
const SERVING: Kind = Kind {
    signer: "kubernetes.io/kubelet-serving",
    usages: ["digital signature", "server auth"],
    prefix: "kubelet-server",
    what: "serving",
};
const USAGES: [&str; 2] = CLIENT.usages;
/// How long the kubelet waits for its request to be signed (upstream's bootstrap waits an hour).
const WAIT: Duration = Duration::from_secs(3600);

/// The kubelet's API client: from `--kubeconfig`, bootstrapped first when needed; with a client
/// certificate, one that presents the current certificate, renewed in the background when
/// `rotate` is on.
pub async fn client(
    kubeconfig: Option<&str>,
    bootstrap: Option<&str>,
    cert_dir: &Path,
    node: &str,
    rotate: bool,
) -> Result<kube::Client, String> {
    // With rotation, the newest stored certificate wins over the kubeconfig's own (which may be an
    // inline one, long replaced), as upstream's certificate store does.
    let stored = std::fs::read(cert_dir.join(format!("{}-current.pem", CLIENT.prefix)))
        .ok()
        .filter(|pem| rotate && valid_now(pem));
    if let (Some(path), Some(bootstrap), None) = (kubeconfig, bootstrap, &stored) {
        if !still_valid(Path::new(path)) {
            tracing::info!(
                kubeconfig = path,
                bootstrap,
                "using the bootstrap kubeconfig to ask for a client certificate"
            );
            bootstrap_kubeconfig(Path::new(bootstrap), Path::new(path), cert_dir, node).await?;
        }
    }
    let cfg =
        component_base::client::config_from_flags(kubeconfig, None, "kubelet").await.map_err(|e| e.to_string())?;
    let own = match stored {
        Some(pem) => Some((pem.clone(), pem)),
        None => kubeconfig.map(|k| identity(Path::new(k))).transpose()?.flatten(),
    };
    let Some((cert, key)) = own else {
        return component_base::client::limited_client(cfg, 50.0, 100).map_err(|e| e.to_string());
    };
    let current = ClientCertificate::from_pem(&cert, &key)?;
    let client =
        component_base::client::with_client_certificate(cfg, current.clone(), 50.0, 100).map_err(|e| e.to_string())?;
    if rotate {
        tokio::spawn(rotate_forever(client.clone(), current, cert_dir.to_path_buf(), node.to_string()));
    }
    Ok(client)
}

/// The client certificate and key PEM the kubeconfig's current user names (inline or by path,
/// relative paths from the kubeconfig's directory); None for other credentials.
/// A client certificate and its key, PEM.
type Identity = (Vec<u8>, Vec<u8>);

fn identity(path: &Path) -> Result<Option<Identity>, String> {
    let kc = Kubeconfig::read_from(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let ctx = kc
        .contexts
        .iter()
        .find(|c| Some(&c.name) == kc.current_context.as_ref())
        .and_then(|c| c.context.as_ref())
        .map(|c| c.user.clone().unwrap_or_default());
    let Some(user) = kc.auth_infos.iter().find(|u| Some(&u.name) == ctx.as_ref()).and_then(|u| u.auth_info.clone())
    else {
        return Ok(None);
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let load = |data: Option<String>, file: Option<String>, what: &str| -> Result<Option<Vec<u8>>, String> {
        if let Some(d) = data.filter(|d| !d.is_empty()) {
            return base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .map(Some)
                .map_err(|e| format!("{}: {what}-data: {e}", path.display()));
        }
        match file.filter(|f| !f.is_empty()) {
            Some(f) => {
                let f = dir.join(f);
                std::fs::read(&f).map(Some).map_err(|e| format!("reading {}: {e}", f.display()))
            }
            None => Ok(None),
        }
    };
    use secrecy::ExposeSecret;
    let cert = load(user.client_certificate_data.clone(), user.client_certificate.clone(), "client-certificate")?;
    let key_data = user.client_key_data.as_ref().map(|k| k.expose_secret().to_string());
    let key = load(key_data, user.client_key.clone(), "client-key")?;
    Ok(cert.zip(key))
}

/// Whether the kubeconfig exists and its client certificate, if it has one, is within its validity
/// (upstream's isClientConfigStillValid).
fn still_valid(path: &Path) -> bool {
    match identity(path) {
        Err(_) => false,
        Ok(None) => true,
        Ok(Some((cert, _))) => valid_now(&cert),
    }
}

/// Whether the (first) certificate in `pem` is within its validity now.
fn valid_now(pem: &[u8]) -> bool {
    validity(pem).is_some_and(|(from, to)| (from..to).contains(&SystemTime::now()))
}

/// The certificate's notBefore and notAfter.
fn validity(cert_pem: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let text = std::str::from_utf8(cert_pem).ok()?;
    let info = pki::cert::LoadedCert::from_pem(Path::new("client certificate"), text).ok()?.info().ok()?;
    let at = |t: time::OffsetDateTime| SystemTime::UNIX_EPOCH + Duration::from_secs(t.unix_timestamp().max(0) as u64);
    Some((at(info.not_before), at(info.not_after)))
}

/// When to renew: a random point between 70% and 90% of the lifetime (upstream's jittery deadline).
fn rotation_deadline(cert_pem: &[u8]) -> SystemTime {
    let Some((from, to)) = validity(cert_pem) else { return SystemTime::now() };
    let total = to.duration_since(from).unwrap_or_default();
    from + total.mul_f64(0.7 + 0.2 * rand::random::<f64>())
}

/// upstream's digestedName: the request's name from its key, subject and usages, so that a retried
/// bootstrap with the same key finds its own request.
fn digested_name(public_key_der: &[u8], node: &str) -> String {
    let mut h = sha2::Sha512_256::new();
    h.update(public_key_der);
    h.update(b"|");
    h.update(format!("system:node:{node}").as_bytes());
    h.update(b"|system:nodes");
    for u in USAGES {
        h.update(b"|");
        h.update(u.as_bytes());
    }
    format!("node-csr-{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize()))
}

/// Asks for a node certificate of `kind` (with `sans` for a serving one) with `client`'s identity
/// and waits until it is issued. With `named`, the request gets the digested name (bootstrap);
/// otherwise a generated `csr-` one.
async fn request(
    client: &kube::Client,
    node: &str,
    named: bool,
    kind: Kind,
    sans: &pki::cert::AltNames,
) -> Result<(String, String), String> {
    let key = pki::keys::KeyAlgorithm::EcdsaP256.generate().map_err(|e| e.to_string())?;
    let pem = pki::csr::new_request(&format!("system:node:{node}"), &["system:nodes"], sans, &key)
        .map_err(|e| e.to_string())?;
    let name = named.then(|| digested_name(&rcgen::PublicKeyData::subject_public_key_info(&key), node));
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: name.is_none().then(|| "csr-".to_string()),
            name: name.clone(),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(pem.into_bytes()),
            signer_name: kind.signer.into(),
            usages: Some(kind.usages.iter().map(|u| u.to_string()).collect()),
            ..Default::default()
        },
        status: None,
    };
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let created = api.create(&PostParams::default(), &csr).await.map_err(|e| format!("creating the request: {e}"))?;
    let name = created.metadata.name.clone().unwrap_or_default();
    tracing::info!(csr = %name, kind = kind.what, "waiting for the certificate request to be approved and signed");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let csr = api.get(&name).await.map_err(|e| format!("reading the request {name}: {e}"))?;
        let status = csr.status.unwrap_or_default();
        for c in status.conditions.iter().flatten().filter(|c| c.status == "True") {
            let (reason, message) = (c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default());
            match c.type_.as_str() {
                "Denied" => {
                    return Err(format!(
                        "certificate signing request {name} is denied, reason: {reason}, message: {message}"
                    ))
                }
                "Failed" => {
                    return Err(format!(
                        "certificate signing request {name} failed, reason: {reason}, message: {message}"
                    ))
                }
                _ => {}
            }
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            let cert = String::from_utf8(cert.0).map_err(|_| format!("request {name}: the certificate is not PEM"))?;
            return Ok((cert, pki::keys::private_key_pem(&key)));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for the certificate of request {name}"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Writes certificate and key to `<dir>/<prefix>-<time>.pem` (0600) and points
/// `<prefix>-current.pem` at it with one rename; returns the symlink's path.
fn store(dir: &Path, prefix: &str, cert: &str, key: &str) -> Result<PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let stamp = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%d-%H-%M-%S").to_string();
    let file = dir.join(format!("{prefix}-{stamp}.pem"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&file)
        .map_err(|e| format!("writing {}: {e}", file.display()))?;
    f.write_all(format!("{}\n{}", cert.trim_end(), key).as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("writing {}: {e}", file.display()))?;
    let current = dir.join(format!("{prefix}-current.pem"));
    let tmp = dir.join(format!(".{prefix}-current.pem.tmp"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&file, &tmp)
        .and_then(|_| std::fs::rename(&tmp, &current))
        .map_err(|e| format!("linking {}: {e}", current.display()))?;
    Ok(current)
}

/// TLS bootstrap: a certificate through the bootstrap credentials, then `kubeconfig` naming it with
/// the bootstrap kubeconfig's server and CA.
async fn bootstrap_kubeconfig(bootstrap: &Path, kubeconfig: &Path, cert_dir: &Path, node: &str) -> Result<(), String> {
    let path = bootstrap.display().to_string();
    let client = component_base::client::from_flags(Some(&path), None, "kubelet", 50.0, 100)
        .await
        .map_err(|e| format!("the bootstrap kubeconfig: {e}"))?;
    let (cert, key) = request(&client, node, true, CLIENT, &Default::default()).await?;
    let current = store(cert_dir, CLIENT.prefix, &cert, &key)?;
    let mut kc = Kubeconfig::read_from(bootstrap).map_err(|e| format!("reading {path}: {e}"))?;
    let ctx_cluster = kc
        .contexts
        .iter()
        .find(|c| Some(&c.name) == kc.current_context.as_ref())
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    let mut cluster = kc
        .clusters
        .iter()
        .find(|c| Some(&c.name) == ctx_cluster.as_ref())
        .or(kc.clusters.first())
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| format!("{path}: no cluster"))?;
    // A CA file named relative to the bootstrap kubeconfig stays valid from the new one.
    if let Some(ca) = cluster.certificate_authority.as_mut() {
        let full = bootstrap.parent().unwrap_or(Path::new(".")).join(&*ca);
        *ca = full.display().to_string();
    }
    let current = current.display().to_string();
    kc = Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![kube::config::NamedCluster {
            name: "default-cluster".into(),
            cluster: Some(cluster),
            other: Default::default(),
        }],
        contexts: vec![kube::config::NamedContext {
            name: "default-context".into(),
            context: Some(kube::config::Context {
                cluster: "default-cluster".into(),
                user: Some("default-auth".into()),
                namespace: Some("default".into()),
                ..Default::default()
            }),
            other: Default::default(),
        }],
        current_context: Some("default-context".into()),
        auth_infos: vec![kube::config::NamedAuthInfo {
            name: "default-auth".into(),
            auth_info: Some(kube::config::AuthInfo {
                client_certificate: Some(current.clone()),
                client_key: Some(current),
                ..Default::default()
            }),
            other: Default::default(),
        }],
        ..Default::default()
    };
    let yaml = serde_yaml_ng::to_string(&kc).map_err(|e| e.to_string())?;
    if let Some(dir) = kubeconfig.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let tmp = kubeconfig.with_extension("tmp");
    std::fs::write(&tmp, yaml)
        .and_then(|_| std::fs::rename(&tmp, kubeconfig))
        .map_err(|e| format!("writing {}: {e}", kubeconfig.display()))?;
    tracing::info!(kubeconfig = %kubeconfig.display(), "client certificate issued; kubeconfig written");
    Ok(())
}

/// Renews the client certificate before it expires, forever; a failed attempt is retried with a
/// back-off (2s doubling to 5 minutes).
async fn rotate_forever(client: kube::Client, current: Arc<ClientCertificate>, dir: PathBuf, node: String) {
    loop {
        let pem = pem::encode(&pem::Pem::new("CERTIFICATE", current.current()));
        let deadline = rotation_deadline(pem.as_bytes());
        let wait = deadline.duration_since(SystemTime::now()).unwrap_or_default();
        tracing::info!(wait = ?wait, "client certificate rotation scheduled");
        tokio::time::sleep(wait).await;
        let mut backoff = Duration::from_secs(2);
        loop {
            let renewed = match request(&client, &node, false, CLIENT, &Default::default()).await {
                Ok((cert, key)) => store(&dir, CLIENT.prefix, &cert, &key)
                    .and_then(|_| current.set_pem(cert.as_bytes(), key.as_bytes()))
                    .map(|_| cert),
                Err(e) => Err(e),
            };
            match renewed {
                Ok(cert) => {
                    let until = validity(cert.as_bytes()).map(|(_, to)| k8s_openapi::jiff::Timestamp::try_from(to));
                    tracing::info!(expires = ?until, "client certificate rotated");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "client certificate rotation failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                }
            }
        }
    }
}

/// `serverTLSBootstrap`: keeps a serving certificate for the node's name and addresses in
/// `<cert-dir>/kubelet-server-current.pem`, asking for one at start when there is no valid one and
/// again at 70-90% of its lifetime. Requests nobody approves are retried every 15 minutes (upstream's
/// certificate manager gives up waiting after that long too).
pub async fn serving_forever(client: kube::Client, dir: PathBuf, node: String, ips: Vec<String>) {
    let mut sans = pki::cert::AltNames::default();
    sans.add(&node);
    for ip in &ips {
        sans.add(ip);
    }
    let current = dir.join(format!("{}-current.pem", SERVING.prefix));
    loop {
        let pem = std::fs::read(&current).unwrap_or_default();
        if valid_now(&pem) {
            let wait = rotation_deadline(&pem).duration_since(SystemTime::now()).unwrap_or_default();
            tracing::info!(wait = ?wait, "serving certificate rotation scheduled");
            tokio::time::sleep(wait).await;
        }
        let asked = tokio::time::timeout(Duration::from_secs(900), request(&client, &node, false, SERVING, &sans));
        match asked.await {
            Ok(Ok((cert, key))) => match store(&dir, SERVING.prefix, &cert, &key) {
                Ok(p) => tracing::info!(file = %p.display(), "serving certificate issued"),
                Err(e) => tracing::warn!(error = %e, "storing the serving certificate"),
            },
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "serving certificate request failed");
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Err(_) => tracing::warn!("serving certificate request not approved within 15 minutes; asking again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURRENT: &str = "kubelet-client-current.pem";

    fn self_signed(valid_for: Duration) -> (String, String) {
        let key = pki::keys::KeyAlgorithm::EcdsaP256.generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["n".into()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::seconds(10);
        p.not_after = now + valid_for;
        (p.self_signed(&key).unwrap().pem(), pki::keys::private_key_pem(&key))
    }

    #[test]
    fn rotation_falls_between_70_and_90_percent_of_the_lifetime() {
        let (cert, _) = self_signed(Duration::from_secs(1000));
        let (from, to) = validity(cert.as_bytes()).unwrap();
        let total = to.duration_since(from).unwrap().as_secs_f64();
        for _ in 0..20 {
            let at = rotation_deadline(cert.as_bytes()).duration_since(from).unwrap().as_secs_f64() / total;
            assert!((0.699..=0.901).contains(&at), "{at}");
        }
    }

    #[test]
    fn kubeconfigs_with_expired_or_missing_certificates_need_bootstrap() {
        let dir = tempfile::tempdir().unwrap();
        let kc = |name: &str, cert: &str, key: &str| {
            std::fs::write(dir.path().join(format!("{name}.pem")), format!("{cert}{key}")).unwrap();
            let p = dir.path().join(format!("{name}.conf"));
            std::fs::write(
                &p,
                format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:1'}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\nusers: [{{name: u, user: {{client-certificate: {name}.pem, client-key: {name}.pem}}}}]\n"),
            )
            .unwrap();
            p
        };
        let (cert, key) = self_signed(Duration::from_secs(3600));
        let good = kc("good", &cert, &key);
        assert!(still_valid(&good));
        let (pem, key_pem) = identity(&good).unwrap().unwrap();
        assert!(ClientCertificate::from_pem(&pem, &key_pem).is_ok(), "one file holding both loads");
        let (old, key) = self_signed(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1100));
        assert!(!still_valid(&kc("old", &old, &key)));
        assert!(!still_valid(&dir.path().join("missing.conf")));
    }

    #[tokio::test]
    async fn with_rotation_the_stored_certificate_wins_over_an_expired_inline_one() {
        let dir = tempfile::tempdir().unwrap();
        let (old, old_key) = self_signed(Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let kubeconfig = dir.path().join("kubelet.conf");
        std::fs::write(
            &kubeconfig,
            format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\nusers: [{{name: u, user: {{client-certificate-data: {}, client-key-data: {}}}}}]\n", b64(&old), b64(&old_key)),
        )
        .unwrap();
        // Bootstrapping would have to reach a server that is not there.
        let bootstrap = dir.path().join("bootstrap.conf");
        std::fs::write(
            &bootstrap,
            "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\nusers: [{name: u, user: {token: abcdef.0123456789abcdef}}]\n",
        )
        .unwrap();
        let certs = dir.path().join("pki");
        let (fresh, fresh_key) = self_signed(Duration::from_secs(3600));
        store(&certs, CLIENT.prefix, &fresh, &fresh_key).unwrap();
        let (k, b) = (kubeconfig.to_str().unwrap(), bootstrap.to_str().unwrap());
        assert!(client(Some(k), Some(b), &certs, "n", true).await.is_ok(), "the stored certificate is used");
        let Err(e) = client(Some(k), Some(b), &certs, "n", false).await else { panic!("bootstrap succeeded") };
        assert!(e.contains("creating the request"), "without rotation the expired one sends it to bootstrap: {e}");
    }

    #[test]
    fn stored_certificates_replace_the_current_link() {
        let dir = tempfile::tempdir().unwrap();
        let first = store(dir.path(), "kubelet-client", "CERT1\n", "KEY1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&first).unwrap(), "CERT1\nKEY1\n");
        std::thread::sleep(Duration::from_millis(1100));
        store(dir.path(), "kubelet-client", "CERT2", "KEY2\n").unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join(CURRENT)).unwrap(), "CERT2\nKEY2\n");
        use std::os::unix::fs::PermissionsExt;
        let target = std::fs::read_link(dir.path().join(CURRENT)).unwrap();
        assert_eq!(std::fs::metadata(target).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
