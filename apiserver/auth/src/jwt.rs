//! Service-account JWTs: signing with `--service-account-signing-key-file` (RS256 for RSA keys, ES256
//! for P-256 keys), verifying with every `--service-account-key-file` key, the JWKS document, and the
//! claims of bound and legacy tokens as upstream writes them.

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;
use std::path::Path;

/// The issuer of legacy (Secret-based) tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn unb64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// Upstream's key id: the unpadded base64url SHA-256 of the PKIX public key.
pub fn key_id(spki_der: &[u8]) -> String {
    b64url(&sha2::Sha256::digest(spki_der))
}

/// Signs JWTs with a private key.
pub struct Signer {
    key: rcgen::KeyPair,
    kid: String,
    alg: &'static str,
}

impl Signer {
    pub fn load(path: &Path) -> Result<Signer, String> {
        let key = pki::keys::load_private_key(path).map_err(|e| e.to_string())?;
        Ok(Signer::new(key))
    }

    pub fn new(key: rcgen::KeyPair) -> Signer {
        let kid = key_id(&rcgen::PublicKeyData::subject_public_key_info(&key));
        let alg = if pki::keys::is_rsa_key(&key) { "RS256" } else { "ES256" };
        Signer { key, kid, alg }
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_spki(&rcgen::PublicKeyData::subject_public_key_info(&self.key)).expect("own key parses")
    }

    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let header = json!({"alg": self.alg, "kid": self.kid});
        let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
        let sig = rcgen::SigningKey::sign(&self.key, input.as_bytes()).map_err(|e| e.to_string())?;
        let sig = if self.alg == "ES256" { ecdsa_der_to_raw(&sig).ok_or("bad ECDSA signature")? } else { sig };
        Ok(format!("{input}.{}", b64url(&sig)))
    }
}

/// An ASN.1 `SEQUENCE { r INTEGER, s INTEGER }` as JWS's 64-byte `r || s`.
fn ecdsa_der_to_raw(der: &[u8]) -> Option<Vec<u8>> {
    let (0x30, content, _) = pki::der::tlv(der)? else { return None };
    let mut out = Vec::new();
    let mut cur = content;
    for _ in 0..2 {
        let (0x02, int, rest) = pki::der::tlv(cur)? else { return None };
        let int: Vec<u8> = int.iter().copied().skip_while(|b| *b == 0).collect();
        if int.len() > 32 {
            return None;
        }
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend(int);
        cur = rest;
    }
    Some(out)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum KeyKind {
    /// PKCS#1 `RSAPublicKey`.
    Rsa(Vec<u8>),
    /// The uncompressed P-256 point.
    P256(Vec<u8>),
}

/// A verification key.
#[derive(Clone, Debug)]
pub struct PublicKey {
    pub kid: String,
    kind: KeyKind,
}

const RSA_OID: &str = "1.2.840.113549.1.1.1";
const EC_OID: &str = "1.2.840.10045.2.1";
const P256_OID: &str = "1.2.840.10045.3.1.7";

impl PublicKey {
    pub fn from_spki(der: &[u8]) -> Result<PublicKey, String> {
        use x509_parser::prelude::FromDer;
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der).map_err(|e| e.to_string())?;
        let bits = spki.subject_public_key.data.to_vec();
        let kind = match spki.algorithm.algorithm.to_id_string().as_str() {
            RSA_OID => KeyKind::Rsa(bits),
            EC_OID => {
                let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
                if curve.as_deref() != Some(P256_OID) {
                    return Err("only P-256 elliptic curve keys are supported".into());
                }
                KeyKind::P256(bits)
            }
            other => return Err(format!("unsupported public key algorithm {other}")),
        };
        Ok(PublicKey { kid: key_id(der), kind })
    }

    /// Every key in a file of PEM blocks: public keys, certificates, or private keys (whose public half
    /// is used), as `--service-account-key-file` accepts.
    pub fn load_all(path: &Path) -> Result<Vec<PublicKey>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let blocks = pem::parse_many(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut keys = Vec::new();
        for b in blocks {
            let key = match b.tag() {
                "PUBLIC KEY" => PublicKey::from_spki(b.contents()),
                "RSA PUBLIC KEY" => {
                    let der = b.contents().to_vec();
                    let spki = rsa_spki(&der);
                    Ok(PublicKey { kid: key_id(&spki), kind: KeyKind::Rsa(der) })
                }
                "CERTIFICATE" => x509_parser::parse_x509_certificate(b.contents())
                    .map_err(|e| e.to_string())
                    .and_then(|(_, c)| PublicKey::from_spki(c.tbs_certificate.subject_pki.raw)),
                "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => rcgen::KeyPair::from_pem(&pem::encode(&b))
                    .map_err(|e| e.to_string())
                    .and_then(|k| PublicKey::from_spki(&rcgen::PublicKeyData::subject_public_key_info(&k))),
                _ => continue,
            };
            keys.push(key.map_err(|e| format!("{}: {e}", path.display()))?);
        }
        if keys.is_empty() {
            return Err(format!("{}: no public key found", path.display()));
        }
        Ok(keys)
    }

    fn alg(&self) -> &'static str {
        match self.kind {
            KeyKind::Rsa(_) => "RS256",
            KeyKind::P256(_) => "ES256",
        }
    }

    fn verify(&self, input: &[u8], sig: &[u8]) -> bool {
        match &self.kind {
            KeyKind::Rsa(der) => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der).verify(input, sig).is_ok(),
            KeyKind::P256(point) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(input, sig).is_ok(),
        }
    }

    /// The key as a JWK, as `/openid/v1/jwks` serves it.
    pub fn jwk(&self) -> Value {
        match &self.kind {
            KeyKind::Rsa(der) => {
                let ints = pki::der::tlv(der).and_then(|(_, c, _)| {
                    let (_, n, rest) = pki::der::tlv(c)?;
                    let (_, e, _) = pki::der::tlv(rest)?;
                    Some((n, e))
                });
                let (n, e) = ints.unwrap_or((&[], &[]));
                let strip = |b: &[u8]| b.iter().copied().skip_while(|x| *x == 0).collect::<Vec<u8>>();
                json!({"use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256", "n": b64url(&strip(n)), "e": b64url(&strip(e))})
            }
            KeyKind::P256(point) => {
                let (x, y) = if point.len() == 65 { (&point[1..33], &point[33..]) } else { (&point[..0], &point[..0]) };
                json!({"use": "sig", "kty": "EC", "kid": self.kid, "alg": "ES256", "crv": "P-256", "x": b64url(x), "y": b64url(y)})
            }
        }
    }
}

/// Wraps a PKCS#1 RSA key in a SubjectPublicKeyInfo (for its key id).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    use pki::der::encode;
    // AlgorithmIdentifier { rsaEncryption, NULL }
    let alg = encode(
        0x30,
        &[&[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01][..], &[0x05, 0x00]].concat(),
    );
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    encode(0x30, &[alg, encode(0x03, &bits)].concat())
}

/// Why a token was not accepted; never shown to the client (401 says only "Unauthorized").
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("not a JWT")]
    Malformed,
    #[error("invalid signature")]
    Signature,
}

/// The claims of a token signed by one of `keys`, without judging them.
pub fn verify(token: &str, keys: &[PublicKey]) -> Result<Value, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let header: Value = unb64url(h).and_then(|b| serde_json::from_slice(&b).ok()).ok_or(JwtError::Malformed)?;
    let claims: Value = unb64url(p).and_then(|b| serde_json::from_slice(&b).ok()).ok_or(JwtError::Malformed)?;
    let sig = unb64url(s).ok_or(JwtError::Malformed)?;
    let alg = header["alg"].as_str().unwrap_or("");
    let kid = header["kid"].as_str();
    let input = &token.as_bytes()[..h.len() + 1 + p.len()];
    let ok =
        keys.iter().filter(|k| k.alg() == alg && kid.is_none_or(|kid| kid == k.kid)).any(|k| k.verify(input, &sig));
    if ok {
        Ok(claims)
    } else {
        Err(JwtError::Signature)
    }
}

/// What a bound service-account token says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BoundClaims {
    pub namespace: String,
    pub service_account: (String, String),
    pub pod: Option<(String, String)>,
    pub secret: Option<(String, String)>,
    pub node: Option<(String, String)>,
    pub jti: Option<String>,
}

fn name_uid(v: &Value) -> Option<(String, String)> {
    Some((v.get("name")?.as_str()?.to_string(), v.get("uid")?.as_str()?.to_string()))
}

impl BoundClaims {
    pub fn parse(claims: &Value) -> Option<BoundClaims> {
        let k = claims.get("kubernetes.io")?;
        Some(BoundClaims {
            namespace: k.get("namespace")?.as_str()?.to_string(),
            service_account: name_uid(k.get("serviceaccount")?)?,
            pod: k.get("pod").and_then(name_uid),
            secret: k.get("secret").and_then(name_uid),
            node: k.get("node").and_then(name_uid),
            jti: claims["jti"].as_str().map(String::from),
        })
    }
}

/// The time checks every bound token passes: `exp` after now, `nbf` not after now (upstream allows
/// no leeway beyond a minute of clock skew on `nbf`/`iat`).
pub fn check_times(claims: &Value, now: i64) -> Result<(), &'static str> {
    let exp = claims["exp"].as_i64().ok_or("token has no expiry")?;
    if now >= exp {
        return Err("token has expired");
    }
    if let Some(nbf) = claims["nbf"].as_i64() {
        if nbf > now + 60 {
            return Err("token is not valid yet");
        }
    }
    Ok(())
}

/// Whether the token's `aud` (a string or a list) names one of `audiences`.
pub fn audience_matches(claims: &Value, audiences: &[String]) -> Option<Vec<String>> {
    let aud: Vec<String> = match &claims["aud"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        _ => vec![],
    };
    let matched: Vec<String> = aud.into_iter().filter(|a| audiences.contains(a)).collect();
    (!matched.is_empty()).then_some(matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(alg: pki::keys::KeyAlgorithm) {
        let signer = Signer::new(alg.generate().unwrap());
        let key = signer.public_key();
        let token = signer.sign(&json!({"iss": "me", "exp": 10})).unwrap();
        assert_eq!(verify(&token, std::slice::from_ref(&key)).unwrap()["iss"], "me");
        // A changed payload or another key fails.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64url(br#"{"iss":"me","exp":99}"#);
        parts[1] = &forged;
        assert_eq!(verify(&parts.join("."), std::slice::from_ref(&key)), Err(JwtError::Signature));
        let other = Signer::new(alg.generate().unwrap()).public_key();
        assert_eq!(verify(&token, &[other]), Err(JwtError::Signature));
        assert_eq!(verify("a.b", std::slice::from_ref(&key)), Err(JwtError::Malformed));
        assert_eq!(key.jwk()["kid"], json!(key.kid));
    }

    #[test]
    fn ecdsa_signatures_become_raw() {
        // SEQUENCE { INTEGER 0x00ff.., INTEGER 0x01 }
        let mut der = vec![0x30, 0x26, 0x02, 0x21, 0x00];
        der.extend([0xff; 32]);
        der.extend([0x02, 0x01, 0x01]);
        let raw = ecdsa_der_to_raw(&der).unwrap();
        assert_eq!(raw.len(), 64);
        assert_eq!(raw[..32], [0xff; 32]);
        assert_eq!(raw[63], 1);
    }

    #[test]
    fn rs256_and_es256() {
        roundtrip(pki::keys::KeyAlgorithm::Rsa2048);
        roundtrip(pki::keys::KeyAlgorithm::EcdsaP256);
    }

    #[test]
    fn keys_from_every_pem_kind() {
        let dir = std::env::temp_dir().join(format!("jwt-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = pki::keys::KeyAlgorithm::Rsa2048.generate().unwrap();
        let kid = Signer::new(rcgen::KeyPair::from_pem(&pki::keys::private_key_pem(&key)).unwrap()).kid;
        for (name, text) in [("priv", pki::keys::private_key_pem(&key)), ("pub", pki::keys::public_key_pem(&key))] {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            let keys = PublicKey::load_all(&p).unwrap();
            assert_eq!(keys[0].kid, kid, "{name}");
        }
        let n = key.public_key_raw();
        assert_eq!(key_id(&rsa_spki(n)), kid);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn claims() {
        let c = json!({"exp": 100, "nbf": 50, "aud": ["a", "b"], "jti": "j",
            "kubernetes.io": {"namespace": "ns", "serviceaccount": {"name": "sa", "uid": "u"}, "pod": {"name": "p", "uid": "pu"}}});
        assert!(check_times(&c, 99).is_ok());
        assert!(check_times(&c, 100).is_err());
        assert_eq!(audience_matches(&c, &["b".into()]), Some(vec!["b".to_string()]));
        assert_eq!(audience_matches(&c, &["z".into()]), None);
        let b = BoundClaims::parse(&c).unwrap();
        assert_eq!(b.pod, Some(("p".into(), "pu".into())));
        assert_eq!(b.service_account.0, "sa");
    }
}
