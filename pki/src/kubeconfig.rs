//! Kubeconfig files with embedded certificates, in the shape client-go writes them.

use crate::PkiError;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub clusters: Vec<NamedCluster>,
    pub contexts: Vec<NamedContext>,
    #[serde(rename = "current-context")]
    pub current_context: String,
    pub kind: String,
    #[serde(default)]
    pub preferences: serde_yaml_ng::Mapping,
    pub users: Vec<NamedUser>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NamedCluster {
    pub cluster: Cluster,
    pub name: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Cluster {
    #[serde(rename = "certificate-authority-data")]
    pub certificate_authority_data: String,
    pub server: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NamedContext {
    pub context: Context,
    pub name: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Context {
    pub cluster: String,
    pub user: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NamedUser {
    pub name: String,
    pub user: User,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct User {
    #[serde(rename = "client-certificate-data", default, skip_serializing_if = "String::is_empty")]
    pub client_certificate_data: String,
    #[serde(rename = "client-key-data", default, skip_serializing_if = "String::is_empty")]
    pub client_key_data: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(path: &Path, what: &str, data: &str) -> Result<Vec<u8>, PkiError> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| PkiError::file(path, format!("{what} is not valid base64: {e}")))
}

impl Kubeconfig {
    /// A kubeconfig for one user on one cluster, named like kubeadm names them (`<user>@<cluster>`).
    pub fn with_client_cert(
        cluster: &str,
        server: &str,
        ca_pem: &[u8],
        user: &str,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Self {
        let context = format!("{user}@{cluster}");
        Kubeconfig {
            api_version: "v1".into(),
            clusters: vec![NamedCluster {
                cluster: Cluster { certificate_authority_data: b64(ca_pem), server: server.into() },
                name: cluster.into(),
            }],
            contexts: vec![NamedContext {
                context: Context { cluster: cluster.into(), user: user.into() },
                name: context.clone(),
            }],
            current_context: context,
            kind: "Config".into(),
            preferences: Default::default(),
            users: vec![NamedUser {
                name: user.into(),
                user: User {
                    client_certificate_data: b64(cert_pem),
                    client_key_data: b64(key_pem),
                    token: String::new(),
                },
            }],
        }
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("kubeconfig serializes")
    }

    pub fn load(path: &Path) -> Result<Self, PkiError> {
        let text = std::fs::read_to_string(path).map_err(|e| PkiError::file(path, format!("cannot read: {e}")))?;
        serde_yaml_ng::from_str(&text).map_err(|e| PkiError::file(path, format!("not a valid kubeconfig: {e}")))
    }

    fn current_user(&self, path: &Path) -> Result<&NamedUser, PkiError> {
        let ctx = self.contexts.iter().find(|c| c.name == self.current_context).ok_or_else(|| {
            PkiError::file(path, format!("current context {:?} is not defined", self.current_context))
        })?;
        self.users
            .iter()
            .find(|u| u.name == ctx.context.user)
            .ok_or_else(|| PkiError::file(path, format!("user {:?} is not defined", ctx.context.user)))
    }

    fn current_cluster(&self, path: &Path) -> Result<&NamedCluster, PkiError> {
        let ctx = self.contexts.iter().find(|c| c.name == self.current_context);
        let name = ctx.map(|c| c.context.cluster.clone()).unwrap_or_default();
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| PkiError::file(path, format!("cluster {name:?} is not defined")))
    }

    /// The CA certificate PEM of the current cluster.
    pub fn ca_pem(&self, path: &Path) -> Result<Vec<u8>, PkiError> {
        unb64(path, "certificate-authority-data", &self.current_cluster(path)?.cluster.certificate_authority_data)
    }

    pub fn server(&self, path: &Path) -> Result<String, PkiError> {
        Ok(self.current_cluster(path)?.cluster.server.clone())
    }

    /// The current user's client certificate and key PEM.
    pub fn client_cert_and_key(&self, path: &Path) -> Result<(Vec<u8>, Vec<u8>), PkiError> {
        let user = self.current_user(path)?;
        if user.user.client_certificate_data.is_empty() {
            return Err(PkiError::file(path, "has no embedded client certificate".into()));
        }
        Ok((
            unb64(path, "client-certificate-data", &user.user.client_certificate_data)?,
            unb64(path, "client-key-data", &user.user.client_key_data)?,
        ))
    }

    /// Replaces the current user's embedded client certificate.
    pub fn set_client_cert(&mut self, path: &Path, cert_pem: &[u8]) -> Result<(), PkiError> {
        let name = self.current_user(path)?.name.clone();
        let user = self.users.iter_mut().find(|u| u.name == name).expect("found above");
        user.user.client_certificate_data = b64(cert_pem);
        Ok(())
    }
}
