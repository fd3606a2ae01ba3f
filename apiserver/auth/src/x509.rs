//! x509 client certificates. The TLS layer asks for a certificate but accepts any (as Go's
//! `RequestClientCert`); the authenticator then verifies the chain against `--client-ca-file` (or the
//! front proxy's CA), so that a bad certificate is a 401 like any bad credential, not a failed handshake.

use crate::UserInfo;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;

/// Trust anchors read from a CA bundle.
pub struct CaBundle {
    ders: Vec<CertificateDer<'static>>,
    subjects: Vec<DistinguishedName>,
}

impl CaBundle {
    pub fn load(path: &Path) -> Result<CaBundle, String> {
        let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if ders.is_empty() {
            return Err(format!("{}: no certificate", path.display()));
        }
        let mut subjects = Vec::new();
        for d in &ders {
            let anchor = webpki::anchor_from_trusted_cert(d).map_err(|e| format!("{}: {e}", path.display()))?;
            subjects.push(DistinguishedName::in_sequence(&anchor.subject));
        }
        Ok(CaBundle { ders, subjects })
    }

    /// Verifies `chain` (leaf first, then any intermediates the client sent) for client use at `now`.
    pub fn verify(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> Result<(), String> {
        let leaf = chain.first().ok_or("no certificate")?;
        let anchors: Vec<_> = self.ders.iter().filter_map(|d| webpki::anchor_from_trusted_cert(d).ok()).collect();
        let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| e.to_string())?;
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &chain[1..],
            now,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
}

/// The user a verified client certificate names: CN is the user, each O a group.
pub fn user_from_cert(der: &[u8]) -> Result<UserInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let subject = cert.subject();
    let cn = subject.iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or("").to_string();
    if cn.is_empty() {
        return Err("certificate has no common name".into());
    }
    let groups = subject.iter_organization().filter_map(|a| a.as_str().ok()).map(String::from).collect();
    Ok(UserInfo::new(cn, groups))
}

/// Asks every client for a certificate, accepts whatever it sends, and leaves judging it to the
/// authenticators. The handshake signature is still checked, so the client holds the certificate's key.
#[derive(Debug)]
pub struct RequestClientCert {
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl RequestClientCert {
    pub fn new(cas: &[&CaBundle], provider: &rustls::crypto::CryptoProvider) -> Arc<Self> {
        let hints = cas.iter().flat_map(|c| c.subjects.iter().cloned()).collect();
        Arc::new(RequestClientCert { hints, algs: provider.signature_verification_algorithms })
    }
}

impl ClientCertVerifier for RequestClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
