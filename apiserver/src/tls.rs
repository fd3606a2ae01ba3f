//! The serving certificate: `--tls-cert-file`/`--tls-private-key-file`, or a self-signed pair that is
//! created once in `--cert-dir` (`apiserver.crt`, `apiserver.key`) as upstream does.

use crate::flags::Flags;
use pki::cert::{AltNames, CertRequest, LoadedCert, SigningCa, Usage};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn self_signed(flags: &Flags, dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let (crt, key_path) = (dir.join("apiserver.crt"), dir.join("apiserver.key"));
    if crt.exists() && key_path.exists() {
        return Ok((crt, key_path));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let ca_key = pki::keys::KeyAlgorithm::Rsa2048.generate().map_err(|e| e.to_string())?;
    let ca_pem = pki::cert::new_ca(&format!("{host}-ca@{stamp}"), &ca_key, Duration::from_secs(365 * 86400))
        .map_err(|e| e.to_string())?;
    let ca = SigningCa { cert: LoadedCert::from_pem(&crt, &ca_pem).map_err(|e| e.to_string())?, key: ca_key };
    let mut alt = AltNames::default();
    for name in ["localhost", "127.0.0.1", "::1", "kubernetes", "kubernetes.default", "kubernetes.default.svc", &host] {
        alt.add(name);
    }
    if let Some(a) = flags.advertise_address {
        alt.add(&a.to_string());
    }
    if !flags.bind_address.is_unspecified() {
        alt.add(&flags.bind_address.to_string());
    }
    let key = pki::keys::KeyAlgorithm::Rsa2048.generate().map_err(|e| e.to_string())?;
    let req = CertRequest {
        common_name: format!("{host}@{stamp}"),
        organizations: vec![],
        alt_names: alt,
        usages: vec![Usage::Server],
        validity: Duration::from_secs(365 * 86400),
    };
    let mut chain = ca.sign(&req, &key).map_err(|e| e.to_string())?;
    chain.push_str(&ca_pem);
    std::fs::write(&crt, chain).map_err(|e| format!("{}: {e}", crt.display()))?;
    std::fs::write(&key_path, pki::keys::private_key_pem(&key)).map_err(|e| format!("{}: {e}", key_path.display()))?;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    tracing::info!(cert = %crt.display(), "generated a self-signed serving certificate");
    Ok((crt, key_path))
}

/// The serving configuration; when client CAs are configured, clients are asked for a certificate
/// (which the authenticators judge).
pub fn server_config(flags: &Flags, auth: &crate::auth::Auth) -> Result<ServerConfig, String> {
    let (crt, key) = match (&flags.tls_cert_file, &flags.tls_private_key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => self_signed(flags, &flags.cert_dir)?,
        _ => return Err("--tls-cert-file and --tls-private-key-file must be given together".into()),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&crt)
        .map_err(|e| format!("{}: {e}", crt.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", crt.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", crt.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("{}: {e}", key.display()))?;
    // Both aws-lc-rs and ring are linked (etcd-client's TLS uses ring), so name the provider.
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let cas = auth.wants_client_certs();
    let builder = if cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder.with_client_cert_verifier(apiserver_auth::x509::RequestClientCert::new(&cas, &provider))
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
