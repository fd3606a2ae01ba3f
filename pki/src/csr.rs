//! PKCS#10 certificate requests as CertificateSigningRequests carry them (`spec.request`, PEM): what
//! the API server's admission and validation and the controller manager's signers read of them.

use x509_parser::prelude::FromDer;

/// A request's subject and how many SANs of each sort it asks for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CsrInfo {
    pub common_name: String,
    pub organizations: Vec<String>,
    /// DNS and IP subjectAltNames.
    pub dns_or_ip: usize,
    /// Email, URI and other subjectAltNames.
    pub other_sans: usize,
}

/// A PEM PKCS#10 request for `key` with this subject and DNS/IP SANs, as a kubelet or a user asks
/// for a certificate through a CertificateSigningRequest.
pub fn new_request(
    common_name: &str,
    organizations: &[&str],
    alt_names: &crate::cert::AltNames,
    key: &rcgen::KeyPair,
) -> Result<String, crate::PkiError> {
    let crypto = |e: rcgen::Error| crate::PkiError::Crypto(e.to_string());
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    for o in organizations {
        params.distinguished_name.push(rcgen::DnType::OrganizationName, *o);
    }
    params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
    for dns in &alt_names.dns {
        params.subject_alt_names.push(rcgen::SanType::DnsName(dns.as_str().try_into().map_err(crypto)?));
    }
    for ip in &alt_names.ips {
        params.subject_alt_names.push(rcgen::SanType::IpAddress(*ip));
    }
    params.serialize_request(key).map_err(crypto)?.pem().map_err(crypto)
}

/// Parses a PEM `CERTIFICATE REQUEST` and checks its self-signature, with upstream's messages for a
/// wrong block.
pub fn parse(pem_bytes: &[u8]) -> Result<CsrInfo, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_bytes)
        .map_err(|_| "PEM block type must be CERTIFICATE REQUEST".to_string())?;
    if pem.label != "CERTIFICATE REQUEST" && pem.label != "NEW CERTIFICATE REQUEST" {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
        .map_err(|e| format!("x509: malformed certificate request: {e}"))?;
    req.verify_signature().map_err(|e| format!("x509: invalid signature on certificate request: {e}"))?;
    let subject = &req.certification_request_info.subject;
    let common_name = subject.iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or("").to_string();
    let organizations = subject.iter_organization().filter_map(|a| a.as_str().ok()).map(String::from).collect();
    let (mut dns_or_ip, mut other_sans) = (0, 0);
    if let Some(exts) = req.requested_extensions() {
        for e in exts {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = e {
                for n in &san.general_names {
                    match n {
                        x509_parser::extensions::GeneralName::DNSName(_)
                        | x509_parser::extensions::GeneralName::IPAddress(_) => dns_or_ip += 1,
                        _ => other_sans += 1,
                    }
                }
            }
        }
    }
    Ok(CsrInfo { common_name, organizations, dns_or_ip, other_sans })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_subject_and_sans() {
        let key = crate::keys::KeyAlgorithm::EcdsaP256.generate().unwrap();
        let mut alt = crate::cert::AltNames::default();
        alt.add("node.example");
        let pem = new_request("system:node:n1", &["system:nodes"], &alt, &key).unwrap();
        let info = parse(pem.as_bytes()).unwrap();
        assert_eq!(info.common_name, "system:node:n1");
        assert_eq!(info.organizations, vec!["system:nodes"]);
        assert_eq!((info.dns_or_ip, info.other_sans), (1, 0));
        assert_eq!(
            parse(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap_err(),
            "PEM block type must be CERTIFICATE REQUEST"
        );
        assert_eq!(parse(b"junk").unwrap_err(), "PEM block type must be CERTIFICATE REQUEST");
    }
}
