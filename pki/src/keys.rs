//! Private keys: generation for every `encryptionAlgorithm` kubeadm accepts, and PEM in kubeadm's encodings.

use crate::PkiError;
use rcgen::{KeyPair, RsaKeySize};
use std::path::Path;

/// kubeadm's `ClusterConfiguration.encryptionAlgorithm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    #[default]
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcdsaP256,
    EcdsaP384,
}

impl KeyAlgorithm {
    pub fn parse(s: &str) -> Result<Self, PkiError> {
        Ok(match s {
            "RSA-2048" | "" => KeyAlgorithm::Rsa2048,
            "RSA-3072" => KeyAlgorithm::Rsa3072,
            "RSA-4096" => KeyAlgorithm::Rsa4096,
            "ECDSA-P256" => KeyAlgorithm::EcdsaP256,
            "ECDSA-P384" => KeyAlgorithm::EcdsaP384,
            other => {
                return Err(PkiError::Config(format!(
                    "encryptionAlgorithm: unsupported value {other:?}: supported values are RSA-2048, RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384"
                )))
            }
        })
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096)
    }

    pub fn generate(self) -> Result<KeyPair, PkiError> {
        let gen = match self {
            KeyAlgorithm::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
            KeyAlgorithm::Rsa3072 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072),
            KeyAlgorithm::Rsa4096 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096),
            KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        };
        gen.map_err(|e| PkiError::Crypto(format!("generating a {self:?} key: {e}")))
    }
}

pub fn is_rsa_key(key: &KeyPair) -> bool {
    key.algorithm() == &rcgen::PKCS_RSA_SHA256
        || key.algorithm() == &rcgen::PKCS_RSA_SHA384
        || key.algorithm() == &rcgen::PKCS_RSA_SHA512
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo`.
fn pkcs8_to_pkcs1(pkcs8: &[u8]) -> Option<Vec<u8>> {
    let (0x30, body, _) = crate::der::tlv(pkcs8)? else { return None };
    let (0x02, _version, rest) = crate::der::tlv(body)? else { return None };
    let (0x30, _alg, rest) = crate::der::tlv(rest)? else { return None };
    let (0x04, key, _) = crate::der::tlv(rest)? else { return None };
    Some(key.to_vec())
}

/// PEM of a private key as kubeadm writes it: `RSA PRIVATE KEY` (PKCS#1) for RSA keys; `PRIVATE KEY`
/// (PKCS#8) for ECDSA keys, which every Kubernetes component reads.
pub fn private_key_pem(key: &KeyPair) -> String {
    if is_rsa_key(key) {
        if let Some(pkcs1) = pkcs8_to_pkcs1(key.serialized_der()) {
            return pem::encode(&pem::Pem::new("RSA PRIVATE KEY", pkcs1));
        }
    }
    key.serialize_pem()
}

/// The public key as `PUBLIC KEY` PEM (sa.pub).
pub fn public_key_pem(key: &KeyPair) -> String {
    key.public_key_pem()
}

/// Loads a private key in any of the encodings kubeadm and openssl write (PKCS#1, SEC1, PKCS#8).
pub fn load_private_key(path: &Path) -> Result<KeyPair, PkiError> {
    let text = std::fs::read_to_string(path).map_err(|e| PkiError::file(path, format!("cannot read: {e}")))?;
    KeyPair::from_pem(&text).map_err(|e| PkiError::file(path, format!("not a valid private key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_keys_are_written_as_pkcs1_and_read_back() {
        let key = KeyAlgorithm::Rsa2048.generate().unwrap();
        let pem = private_key_pem(&key);
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{pem}");
        let back = KeyPair::from_pem(&pem).unwrap();
        assert_eq!(back.public_key_raw(), key.public_key_raw());
    }

    #[test]
    fn ecdsa_keys_round_trip() {
        let key = KeyAlgorithm::EcdsaP256.generate().unwrap();
        let pem = private_key_pem(&key);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(KeyPair::from_pem(&pem).unwrap().public_key_raw(), key.public_key_raw());
    }

    #[test]
    fn algorithm_names_are_kubeadms() {
        assert_eq!(KeyAlgorithm::parse("ECDSA-P256").unwrap(), KeyAlgorithm::EcdsaP256);
        assert!(KeyAlgorithm::parse("DSA").is_err());
    }
}
