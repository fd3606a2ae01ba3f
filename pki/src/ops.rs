//! The `ferroadm certs` and `ferroadm kubeconfig` operations. Each one checks everything it reads first
//! and only then writes, so a run that fails writes nothing.

use crate::cert::{CertRequest, LoadedCert, SigningCa, Usage};
use crate::files::{write_all, PendingWrite, CERT_MODE, SECRET_MODE};
use crate::keys::{load_private_key, private_key_pem, public_key_pem};
use crate::kubeconfig::Kubeconfig;
use crate::spec::{CertSpec, KubeconfigSpec, CA_SPECS, KUBECONFIG_SPECS, LEAF_SPECS};
use crate::{PkiConfig, PkiError};
use rcgen::KeyPair;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) fn cert_paths(cfg: &PkiConfig, spec: &CertSpec) -> (PathBuf, PathBuf) {
    (cfg.cert_dir.join(format!("{}.crt", spec.base)), cfg.cert_dir.join(format!("{}.key", spec.base)))
}

/// What a CA can do in this run.
pub(crate) enum CaState {
    /// Certificate and key present (or just generated): it signs.
    Signing(SigningCa),
    /// Certificate without key: externally managed, it signs nothing here.
    External(LoadedCert),
    Missing,
}

impl CaState {
    fn cert(&self) -> Option<&LoadedCert> {
        match self {
            CaState::Signing(ca) => Some(&ca.cert),
            CaState::External(cert) => Some(cert),
            CaState::Missing => None,
        }
    }
}

/// Loads a CA from the cert dir: signing, externally managed, or missing. Fails on anything malformed.
pub(crate) fn load_ca(cfg: &PkiConfig, spec: &CertSpec) -> Result<CaState, PkiError> {
    let (crt, key) = cert_paths(cfg, spec);
    match (crt.exists(), key.exists()) {
        (true, true) => Ok(CaState::Signing(SigningCa::load(&crt, &key)?)),
        (true, false) => {
            let cert = LoadedCert::load(&crt)?;
            let info = cert.info()?;
            if !info.is_ca {
                return Err(PkiError::file(&crt, "is not a CA certificate".into()));
            }
            Ok(CaState::External(cert))
        }
        (false, true) => Err(PkiError::file(&key, format!("exists without its certificate {}", crt.display()))),
        (false, false) => Ok(CaState::Missing),
    }
}

fn signing<'a>(
    cas: &'a HashMap<&'static str, CaState>,
    ca: &'static CertSpec,
    cfg: &PkiConfig,
    what: &str,
) -> Result<&'a SigningCa, PkiError> {
    let (crt, key) = cert_paths(cfg, ca);
    match cas.get(ca.name) {
        Some(CaState::Signing(s)) => Ok(s),
        Some(CaState::External(_)) => Err(PkiError::Refused(format!(
            "cannot sign {what}: the {} certificate authority is externally managed ({} exists but {} does not); provide {what} signed by it",
            ca.name,
            crt.display(),
            key.display()
        ))),
        _ => Err(PkiError::Refused(format!(
            "cannot sign {what}: the {} certificate authority {} does not exist (create it with `ferroadm certs generate {}`)",
            ca.name,
            crt.display(),
            ca.name
        ))),
    }
}

fn request(cfg: &PkiConfig, spec: &CertSpec) -> Result<CertRequest, PkiError> {
    Ok(CertRequest {
        common_name: spec.common_name(cfg),
        organizations: spec.organizations.iter().map(|s| s.to_string()).collect(),
        alt_names: spec.alt_names(cfg)?,
        usages: spec.usages.to_vec(),
        validity: cfg.cert_validity,
    })
}

fn selected<'a, T>(name: &str, all: &'a [T], matches: impl Fn(&T) -> bool) -> Vec<&'a T> {
    if name == "all" {
        all.iter().collect()
    } else {
        all.iter().filter(|t| matches(t)).collect()
    }
}

/// `ferroadm certs generate [NAME|all]`: creates what is missing, reuses (after checking) what exists.
/// Returns the lines to print.
pub fn generate_certs(cfg: &PkiConfig, name: &str) -> Result<Vec<String>, PkiError> {
    let known = name == "all" || name == "sa" || CertSpec::find(name).is_some();
    if !known {
        let names: Vec<&str> = CA_SPECS.iter().chain(LEAF_SPECS).map(|s| s.name).chain(["sa", "all"]).collect();
        return Err(PkiError::Config(format!("unknown certificate {name:?}; one of: {}", names.join(", "))));
    }
    let mut lines = Vec::new();
    let mut writes = Vec::new();
    let mut cas: HashMap<&'static str, CaState> = HashMap::new();

    for spec in CA_SPECS {
        let mut state = load_ca(cfg, spec)?;
        let wanted = name == "all" || name == spec.name;
        match (&state, wanted) {
            (CaState::Signing(_), true) => {
                lines.push(format!("[certs] Using existing {} certificate authority", spec.name))
            }
            (CaState::External(cert), true) => lines.push(format!(
                "[certs] Using existing {} certificate authority (externally managed: no key beside {})",
                spec.name,
                cert.path.display()
            )),
            (CaState::Missing, true) => {
                let (crt, key_path) = cert_paths(cfg, spec);
                lines.push(format!("[certs] Generating \"{}\" certificate and key", spec.name));
                let key = cfg.key_algorithm.generate()?;
                let pem = crate::cert::new_ca(&spec.common_name(cfg), &key, cfg.ca_validity)?;
                writes.push(PendingWrite { path: crt.clone(), contents: pem.clone().into_bytes(), mode: CERT_MODE });
                writes.push(PendingWrite {
                    path: key_path,
                    contents: private_key_pem(&key).into_bytes(),
                    mode: SECRET_MODE,
                });
                state = CaState::Signing(SigningCa { cert: LoadedCert::from_pem(&crt, &pem)?, key });
            }
            _ => {}
        }
        cas.insert(spec.name, state);
    }

    for spec in selected(name, LEAF_SPECS, |s| s.name == name) {
        let ca = spec.ca_spec().expect("leaves name their CA");
        let (crt, key_path) = cert_paths(cfg, spec);
        let req = request(cfg, spec)?;
        match (crt.exists(), key_path.exists()) {
            (true, true) => {
                let cert = LoadedCert::load(&crt)?;
                let key = load_private_key(&key_path)?;
                cert.check_key(&key, &key_path)?;
                match cas.get(ca.name).and_then(CaState::cert) {
                    Some(ca_cert) => cert.check_signed_by(ca_cert)?,
                    None => {
                        return Err(PkiError::Refused(format!(
                            "cannot check {}: its CA certificate {} does not exist",
                            crt.display(),
                            cert_paths(cfg, ca).0.display()
                        )))
                    }
                }
                if let Some(missing) = req.alt_names.is_subset_of(&cert.info()?.alt_names) {
                    return Err(PkiError::file(
                        &crt,
                        format!("exists but lacks the SAN {missing} this configuration needs; renew or remove it"),
                    ));
                }
                lines.push(format!("[certs] Using existing {} certificate and key on disk", spec.name));
            }
            (true, false) => {
                return Err(PkiError::file(&crt, format!("exists without its key {}", key_path.display())))
            }
            (false, true) => {
                return Err(PkiError::file(&key_path, format!("exists without its certificate {}", crt.display())))
            }
            (false, false) => {
                let signer = signing(&cas, ca, cfg, spec.name)?;
                lines.push(format!("[certs] Generating \"{}\" certificate and key", spec.name));
                if !req.alt_names.dns.is_empty() || !req.alt_names.ips.is_empty() {
                    let mut dns = req.alt_names.dns.clone();
                    dns.sort();
                    let ips: Vec<String> = req.alt_names.ips.iter().map(|ip| ip.to_string()).collect();
                    lines.push(format!(
                        "[certs] {} serving cert is signed for DNS names [{}] and IPs [{}]",
                        spec.base,
                        dns.join(" "),
                        ips.join(" ")
                    ));
                }
                let key = cfg.key_algorithm.generate()?;
                let pem = signer.sign(&req, &key)?;
                writes.push(PendingWrite { path: crt, contents: pem.into_bytes(), mode: CERT_MODE });
                writes.push(PendingWrite {
                    path: key_path,
                    contents: private_key_pem(&key).into_bytes(),
                    mode: SECRET_MODE,
                });
            }
        }
    }

    if name == "all" || name == "sa" {
        let (key_path, pub_path) = (cfg.cert_dir.join("sa.key"), cfg.cert_dir.join("sa.pub"));
        if key_path.exists() {
            let key = load_private_key(&key_path)?;
            let want_pub = public_key_pem(&key);
            if pub_path.exists() {
                let have = std::fs::read_to_string(&pub_path).map_err(|e| PkiError::file(&pub_path, e.to_string()))?;
                let parse = |s: &str| pem::parse(s).map(|p| p.into_contents()).ok();
                if parse(&have).is_none() || parse(&have) != parse(&want_pub) {
                    return Err(PkiError::file(
                        &pub_path,
                        format!("does not hold the public key of {}", key_path.display()),
                    ));
                }
            } else {
                writes.push(PendingWrite { path: pub_path, contents: want_pub.into_bytes(), mode: SECRET_MODE });
            }
            lines.push("[certs] Using the existing \"sa\" key".into());
        } else {
            if pub_path.exists() {
                return Err(PkiError::file(
                    &pub_path,
                    format!("exists without its private key {}", key_path.display()),
                ));
            }
            lines.push("[certs] Generating \"sa\" key and public key".into());
            let key = cfg.key_algorithm.generate()?;
            writes.push(PendingWrite {
                path: key_path,
                contents: private_key_pem(&key).into_bytes(),
                mode: SECRET_MODE,
            });
            writes.push(PendingWrite {
                path: pub_path,
                contents: public_key_pem(&key).into_bytes(),
                mode: SECRET_MODE,
            });
        }
    }

    write_all(&writes)?;
    Ok(lines)
}

fn kubeconfig_for(
    cfg: &PkiConfig,
    ca: &SigningCa,
    client: &str,
    orgs: &[String],
    server: &str,
    validity: Duration,
) -> Result<Kubeconfig, PkiError> {
    let key = cfg.key_algorithm.generate()?;
    let req = CertRequest {
        common_name: client.to_string(),
        organizations: orgs.to_vec(),
        alt_names: Default::default(),
        usages: vec![Usage::Client],
        validity,
    };
    let cert = ca.sign(&req, &key)?;
    Ok(Kubeconfig::with_client_cert(
        &cfg.cluster_name,
        server,
        ca.cert.pem.as_bytes(),
        client,
        cert.as_bytes(),
        private_key_pem(&key).as_bytes(),
    ))
}

fn root_ca(cfg: &PkiConfig, what: &str) -> Result<SigningCa, PkiError> {
    let spec = CertSpec::find("ca").expect("ca spec");
    let mut cas = HashMap::new();
    cas.insert("ca", load_ca(cfg, spec)?);
    match cas.remove("ca") {
        Some(CaState::Signing(s)) => Ok(s),
        other => {
            if let Some(state) = other {
                cas.insert("ca", state);
            }
            signing(&cas, spec, cfg, what).map(|_| unreachable!("only a signing CA returns Ok"))
        }
    }
}

/// `ferroadm kubeconfig generate [NAME|all]`.
pub fn generate_kubeconfigs(cfg: &PkiConfig, name: &str) -> Result<Vec<String>, PkiError> {
    let specs = selected(name, KUBECONFIG_SPECS, |s| s.name == name || s.file == name);
    if specs.is_empty() {
        let names: Vec<&str> = KUBECONFIG_SPECS.iter().map(|s| s.name).chain(["all"]).collect();
        return Err(PkiError::Config(format!("unknown kubeconfig {name:?}; one of: {}", names.join(", "))));
    }
    let ca = root_ca(cfg, "kubeconfig client certificates")?;
    let mut lines = Vec::new();
    let mut writes = Vec::new();
    for spec in specs {
        let path = cfg.kubeconfig_dir.join(spec.file);
        let server = spec.server_url(cfg);
        if path.exists() {
            let existing = Kubeconfig::load(&path)?;
            let existing_ca = LoadedCert::from_pem(&path, &String::from_utf8_lossy(&existing.ca_pem(&path)?))?;
            if existing_ca.chain[0] != ca.cert.chain[0] {
                return Err(PkiError::file(
                    &path,
                    "a kubeconfig file exists already but has got the wrong CA cert".into(),
                ));
            }
            let (cert_pem, _) = existing.client_cert_and_key(&path)?;
            LoadedCert::from_pem(&path, &String::from_utf8_lossy(&cert_pem))?.check_signed_by(&ca.cert)?;
            let have_server = existing.server(&path)?;
            if have_server != server {
                lines.push(format!(
                    "[kubeconfig] WARNING: a kubeconfig file {:?} exists already but has an unexpected API Server URL: expected: {server}, got: {have_server}",
                    path.display().to_string()
                ));
            }
            lines.push(format!("[kubeconfig] Using existing kubeconfig file: {:?}", path.display().to_string()));
            continue;
        }
        let orgs: Vec<String> = spec.organizations.iter().map(|s| s.to_string()).collect();
        let kc = kubeconfig_for(cfg, &ca, &spec.client_name(cfg), &orgs, &server, cfg.cert_validity)?;
        lines.push(format!("[kubeconfig] Writing {:?} kubeconfig file", spec.file));
        writes.push(PendingWrite { path, contents: kc.to_yaml().into_bytes(), mode: SECRET_MODE });
    }
    write_all(&writes)?;
    Ok(lines)
}

/// `ferroadm kubeconfig user`: a kubeconfig for any user, signed by the cluster CA (printed, not written).
pub fn user_kubeconfig(
    cfg: &PkiConfig,
    client_name: &str,
    orgs: &[String],
    validity: Duration,
) -> Result<String, PkiError> {
    if client_name.is_empty() {
        return Err(PkiError::Config("--client-name is required".into()));
    }
    let ca = root_ca(cfg, &format!("a certificate for {client_name}"))?;
    Ok(kubeconfig_for(cfg, &ca, client_name, orgs, &cfg.control_plane_url(), validity)?.to_yaml())
}

/// `ferroadm certs renew NAME|all`: re-signs with the same subject, SANs and usages and a fresh validity
/// period. Keeps each private key unless `new_key`.
pub fn renew(cfg: &PkiConfig, name: &str, new_key: bool) -> Result<Vec<String>, PkiError> {
    let leaves = selected(name, LEAF_SPECS, |s| s.name == name);
    let kubeconfigs: Vec<&KubeconfigSpec> =
        selected(name, KUBECONFIG_SPECS, |s| s.file == name).into_iter().filter(|s| s.renewable).collect();
    if leaves.is_empty() && kubeconfigs.is_empty() {
        let names: Vec<&str> = LEAF_SPECS
            .iter()
            .map(|s| s.name)
            .chain(KUBECONFIG_SPECS.iter().filter(|s| s.renewable).map(|s| s.file))
            .chain(["all"])
            .collect();
        return Err(PkiError::Config(format!("unknown certificate {name:?}; one of: {}", names.join(", "))));
    }
    let mut cas: HashMap<&'static str, CaState> = HashMap::new();
    for spec in CA_SPECS {
        cas.insert(spec.name, load_ca(cfg, spec)?);
    }
    let mut lines = Vec::new();
    let mut writes = Vec::new();
    let key_for = |existing: KeyPair| -> Result<KeyPair, PkiError> {
        if new_key {
            cfg.key_algorithm.generate()
        } else {
            Ok(existing)
        }
    };
    for spec in leaves {
        let (crt, key_path) = cert_paths(cfg, spec);
        if !crt.exists() {
            if name == "all" {
                lines.push(format!("MISSING! {}", spec.name));
                continue;
            }
            return Err(PkiError::file(&crt, "does not exist; nothing to renew".into()));
        }
        let ca = signing(&cas, spec.ca_spec().expect("leaf CA"), cfg, spec.name)?;
        let cert = LoadedCert::load(&crt)?;
        let key = load_private_key(&key_path)?;
        cert.check_key(&key, &key_path)?;
        cert.check_signed_by(&ca.cert)?;
        let key = key_for(key)?;
        let pem = ca.renew(&cert, &key, cfg.cert_validity)?;
        writes.push(PendingWrite { path: crt, contents: pem.into_bytes(), mode: CERT_MODE });
        if new_key {
            writes.push(PendingWrite {
                path: key_path,
                contents: private_key_pem(&key).into_bytes(),
                mode: SECRET_MODE,
            });
        }
        lines.push(format!("{} renewed", spec.long_name));
    }
    for spec in kubeconfigs {
        let path = cfg.kubeconfig_dir.join(spec.file);
        if !path.exists() {
            if name == "all" {
                lines.push(format!("MISSING! {}", spec.file));
                continue;
            }
            return Err(PkiError::file(&path, "does not exist; nothing to renew".into()));
        }
        let ca = signing(&cas, CertSpec::find("ca").expect("ca"), cfg, spec.file)?;
        let mut kc = Kubeconfig::load(&path)?;
        let (cert_pem, key_pem) = kc.client_cert_and_key(&path)?;
        let cert = LoadedCert::from_pem(&path, &String::from_utf8_lossy(&cert_pem))?;
        let key = KeyPair::from_pem(&String::from_utf8_lossy(&key_pem))
            .map_err(|e| PkiError::file(&path, format!("client-key-data is not a valid key: {e}")))?;
        cert.check_key(&key, &path)?;
        cert.check_signed_by(&ca.cert)?;
        let key = key_for(key)?;
        let pem = ca.renew(&cert, &key, cfg.cert_validity)?;
        kc.set_client_cert(&path, pem.as_bytes())?;
        if new_key {
            let user = kc.users.iter_mut().find(|u| !u.user.client_key_data.is_empty()).expect("checked above");
            user.user.client_key_data =
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, private_key_pem(&key).as_bytes());
        }
        writes.push(PendingWrite { path, contents: kc.to_yaml().into_bytes(), mode: SECRET_MODE });
        lines.push(format!("{} renewed", spec.long_name));
    }
    write_all(&writes)?;
    lines.push(String::new());
    lines.push(
        "Done renewing certificates. You must restart the kube-apiserver, kube-controller-manager, kube-scheduler and etcd, so that they can use the new certificates."
            .into(),
    );
    Ok(lines)
}

/// `ferroadm certs certificate-key`: a random 32-byte key, hex-encoded, as kubeadm prints it.
pub fn certificate_key() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}
