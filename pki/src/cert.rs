//! Certificates: creating CAs and leaves the way kubeadm does, and loading and checking existing ones.

use crate::keys::{is_rsa_key, load_private_key};
use crate::PkiError;
use ::time::OffsetDateTime;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use x509_parser::prelude::{ASN1Time, FromDer, GeneralName, X509Certificate};

/// kubeadm back-dates `NotBefore` by this much so that slightly skewed clocks accept new certificates.
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Extended key usages kubeadm assigns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
}

/// Subject alternative names, as kubeadm's `certutil.AltNames`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AltNames {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl AltNames {
    /// Adds a name, as an IP SAN when it parses as an IP address; duplicates are dropped.
    pub fn add(&mut self, name: &str) {
        let name = name.trim();
        if name.is_empty() {
            return;
        }
        match name.parse::<IpAddr>() {
            Ok(ip) if !self.ips.contains(&ip) => self.ips.push(ip),
            Ok(_) => {}
            Err(_) if !self.dns.iter().any(|d| d == name) => self.dns.push(name.to_string()),
            Err(_) => {}
        }
    }

    pub fn is_subset_of(&self, other: &AltNames) -> Option<String> {
        self.dns
            .iter()
            .find(|d| !other.dns.contains(d))
            .map(|d| format!("DNS:{d}"))
            .or_else(|| self.ips.iter().find(|ip| !other.ips.contains(ip)).map(|ip| format!("IP:{ip}")))
    }
}

/// What a new certificate should say.
#[derive(Clone, Debug)]
pub struct CertRequest {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub alt_names: AltNames,
    pub usages: Vec<Usage>,
    pub validity: Duration,
}

/// A certificate (and the chain that followed it in its file) as read from disk.
#[derive(Clone, Debug)]
pub struct LoadedCert {
    pub path: PathBuf,
    /// DER of every certificate in the file, the certificate itself first.
    pub chain: Vec<Vec<u8>>,
    pub pem: String,
}

/// The facts about a certificate the commands print and check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub alt_names: AltNames,
    pub is_ca: bool,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub usages: Vec<Usage>,
    pub self_signed: bool,
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 8] = rand::random();
    bytes[0] &= 0x7f; // positive, like Go's rand.Int(MaxInt64)
    if bytes[0] == 0 {
        bytes[0] = 1;
    }
    SerialNumber::from_slice(&bytes)
}

fn validity(params: &mut CertificateParams, valid_for: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + valid_for;
}

fn leaf_key_usages(key: &KeyPair) -> Vec<KeyUsagePurpose> {
    // kubeadm sets KeyEncipherment only for RSA keys.
    if is_rsa_key(key) {
        vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    }
}

/// A self-signed CA as kubeadm's `NewSelfSignedCACert`: CN, a DNS SAN equal to the CN, CA basic
/// constraints, key usages digitalSignature, keyEncipherment (RSA) and keyCertSign.
pub fn new_ca(common_name: &str, key: &KeyPair, valid_for: Duration) -> Result<String, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.subject_alt_names = vec![SanType::DnsName(common_name.try_into().map_err(crypto)?)];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut usages = leaf_key_usages(key);
    usages.push(KeyUsagePurpose::KeyCertSign);
    params.key_usages = usages;
    params.serial_number = Some(random_serial());
    validity(&mut params, valid_for);
    Ok(params.self_signed(key).map_err(crypto)?.pem())
}

fn crypto(e: rcgen::Error) -> PkiError {
    PkiError::Crypto(e.to_string())
}

/// The certificate authority that signs leaves: its certificate file and key.
pub struct SigningCa {
    pub cert: LoadedCert,
    pub key: KeyPair,
}

impl SigningCa {
    /// Loads and checks a CA: parses, is a CA, is not expired, and the key belongs to the certificate.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<SigningCa, PkiError> {
        let cert = LoadedCert::load(cert_path)?;
        let info = cert.info()?;
        if !info.is_ca {
            return Err(PkiError::file(
                cert_path,
                "is not a CA certificate (basic constraints CA:FALSE or absent)".into(),
            ));
        }
        let now = OffsetDateTime::now_utc();
        if info.not_after < now {
            return Err(PkiError::file(cert_path, format!("the CA certificate expired on {}", info.not_after)));
        }
        let key = load_private_key(key_path)?;
        cert.check_key(&key, key_path)?;
        Ok(SigningCa { cert, key })
    }

    /// Signs a leaf for `key` as kubeadm's `NewSignedCert`. The returned PEM is the leaf followed by the
    /// CA's own chain up to (not including) a self-signed root, so intermediate CAs work.
    pub fn sign(&self, req: &CertRequest, key: &KeyPair) -> Result<String, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for o in &req.organizations {
            params.distinguished_name.push(DnType::OrganizationName, o.as_str());
        }
        params.distinguished_name.push(DnType::CommonName, req.common_name.as_str());
        for dns in &req.alt_names.dns {
            params.subject_alt_names.push(SanType::DnsName(dns.as_str().try_into().map_err(crypto)?));
        }
        for ip in &req.alt_names.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = leaf_key_usages(key);
        params.extended_key_usages = req
            .usages
            .iter()
            .map(|u| match u {
                Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
                Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
            })
            .collect();
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        validity(&mut params, req.validity);
        let pem = self.sign_params(&params, key)?;
        if req.organizations.len() < 2 {
            return Ok(pem);
        }
        // rcgen keeps one value per attribute type: write the subject with every organization and re-sign.
        let mut blocks = ::pem::parse_many(&pem).map_err(|e| PkiError::Crypto(e.to_string()))?;
        let subject = crate::der::subject_name(&req.organizations, &req.common_name);
        let leaf = crate::der::replace_subject(blocks[0].contents(), &subject, |tbs| {
            rcgen::SigningKey::sign(&self.key, tbs).ok()
        })
        .ok_or_else(|| PkiError::Crypto("re-encoding the certificate subject failed".into()))?;
        blocks[0] = ::pem::Pem::new("CERTIFICATE", leaf);
        Ok(blocks.iter().map(::pem::encode).collect())
    }

    /// Re-signs an existing certificate with the same common name, organizations, SANs and usages and a
    /// new validity period (the attributes kubeadm's certificates carry).
    pub fn renew(&self, existing: &LoadedCert, key: &KeyPair, valid_for: Duration) -> Result<String, PkiError> {
        let info = existing.info()?;
        let req = CertRequest {
            common_name: info.common_name,
            organizations: info.organizations,
            alt_names: info.alt_names,
            usages: info.usages,
            validity: valid_for,
        };
        self.sign(&req, key)
    }

    /// Signs a PKCS#10 request as the controller manager's cluster signer does: the request's subject
    /// and SANs, the key usages named by the CertificateSigningRequest (`digital signature`,
    /// `key encipherment`, `client auth`, `server auth`), valid from five minutes ago for `valid_for`.
    pub fn sign_csr(&self, csr_pem: &str, usages: &[String], valid_for: Duration) -> Result<String, PkiError> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(crypto)?;
        let p = &mut csr.params;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = Vec::new();
        p.extended_key_usages = Vec::new();
        for u in usages {
            match u.as_str() {
                "digital signature" => p.key_usages.push(KeyUsagePurpose::DigitalSignature),
                "key encipherment" => p.key_usages.push(KeyUsagePurpose::KeyEncipherment),
                "client auth" => p.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth),
                "server auth" => p.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth),
                _ => {}
            }
        }
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(random_serial());
        validity(p, valid_for);
        let issuer = Issuer::from_ca_cert_der(&self.cert.chain[0].clone().into(), &self.key)
            .map_err(|e| PkiError::file(&self.cert.path, format!("cannot use as an issuer: {e}")))?;
        Ok(csr.signed_by(&issuer).map_err(crypto)?.pem())
    }

    fn sign_params(&self, params: &CertificateParams, key: &KeyPair) -> Result<String, PkiError> {
        let issuer = Issuer::from_ca_cert_der(&self.cert.chain[0].clone().into(), &self.key)
            .map_err(|e| PkiError::file(&self.cert.path, format!("cannot use as an issuer: {e}")))?;
        let leaf = params.signed_by(key, &issuer).map_err(crypto)?;
        let mut out = leaf.pem();
        for der in &self.cert.chain {
            if !is_self_signed(der) {
                out.push_str(&::pem::encode(&::pem::Pem::new("CERTIFICATE", der.clone())));
            }
        }
        Ok(out)
    }
}

fn is_self_signed(der: &[u8]) -> bool {
    X509Certificate::from_der(der).map(|(_, c)| c.subject() == c.issuer()).unwrap_or(false)
}

impl LoadedCert {
    pub fn load(path: &Path) -> Result<LoadedCert, PkiError> {
        let text = std::fs::read_to_string(path).map_err(|e| PkiError::file(path, format!("cannot read: {e}")))?;
        Self::from_pem(path, &text)
    }

    pub fn from_pem(path: &Path, text: &str) -> Result<LoadedCert, PkiError> {
        let blocks = ::pem::parse_many(text).map_err(|e| PkiError::file(path, format!("not valid PEM: {e}")))?;
        let chain: Vec<Vec<u8>> =
            blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE").map(|b| b.into_contents()).collect();
        if chain.is_empty() {
            return Err(PkiError::file(path, "contains no certificate".into()));
        }
        for der in &chain {
            X509Certificate::from_der(der)
                .map_err(|e| PkiError::file(path, format!("not a valid certificate: {e}")))?;
        }
        Ok(LoadedCert { path: path.to_path_buf(), chain, pem: text.to_string() })
    }

    fn parsed(&self) -> X509Certificate<'_> {
        X509Certificate::from_der(&self.chain[0]).expect("checked at load").1
    }

    pub fn info(&self) -> Result<CertInfo, PkiError> {
        let c = self.parsed();
        let attr = |oid| -> Vec<String> {
            c.subject().iter_by_oid(oid).filter_map(|a| a.as_str().ok().map(String::from)).collect()
        };
        let mut alt_names = AltNames::default();
        if let Ok(Some(san)) = c.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => alt_names.dns.push(d.to_string()),
                    GeneralName::IPAddress(bytes) => match bytes.len() {
                        4 => alt_names.ips.push(IpAddr::from(<[u8; 4]>::try_from(&bytes[..]).unwrap())),
                        16 => alt_names.ips.push(IpAddr::from(<[u8; 16]>::try_from(&bytes[..]).unwrap())),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        let mut usages = Vec::new();
        if let Ok(Some(eku)) = c.extended_key_usage() {
            if eku.value.server_auth {
                usages.push(Usage::Server);
            }
            if eku.value.client_auth {
                usages.push(Usage::Client);
            }
        }
        let ts = |t: ASN1Time| OffsetDateTime::from_unix_timestamp(t.timestamp()).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Ok(CertInfo {
            common_name: attr(&x509_parser::oid_registry::OID_X509_COMMON_NAME).into_iter().next().unwrap_or_default(),
            organizations: attr(&x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME),
            alt_names,
            is_ca: c.is_ca(),
            not_before: ts(c.validity().not_before),
            not_after: ts(c.validity().not_after),
            usages,
            self_signed: c.subject() == c.issuer(),
        })
    }

    /// Fails unless `key` is the private key of this certificate.
    pub fn check_key(&self, key: &KeyPair, key_path: &Path) -> Result<(), PkiError> {
        let c = self.parsed();
        if c.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::file(
                key_path,
                format!("does not match the certificate {} (the key pair is mismatched)", self.path.display()),
            ));
        }
        Ok(())
    }

    /// Fails unless this certificate was signed by `ca` (its first certificate).
    pub fn check_signed_by(&self, ca: &LoadedCert) -> Result<(), PkiError> {
        let c = self.parsed();
        let issuer = ca.parsed();
        c.verify_signature(Some(issuer.public_key()))
            .map_err(|_| PkiError::file(&self.path, format!("is not signed by the CA {}", ca.path.display())))
    }
}
