//! `ferroadm` end to end: the files it writes, checked by independent verifiers (openssl and webpki).

use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ferroadm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferroadm")).args(args).output().expect("ferroadm runs")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "ferroadm failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn failed(out: Output) -> String {
    assert!(!out.status.success(), "ferroadm should have failed: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

struct Cluster {
    _dir: tempfile::TempDir,
    root: PathBuf,
    pki: PathBuf,
}

impl Cluster {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Cluster { pki: root.join("pki"), root, _dir: dir }
    }
    fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(
            [
                "--cert-dir",
                self.pki.to_str().unwrap(),
                "--kubeconfig-dir",
                self.root.to_str().unwrap(),
                "--apiserver-advertise-address",
                "192.0.2.10",
                "--node-name",
                "cp-1",
                "--control-plane-endpoint",
                "k8s.example.com:6443",
                "--apiserver-cert-extra-sans",
                "extra.example.com,203.0.113.7",
                "--service-cidr",
                "10.96.0.0/12",
                "--service-dns-domain",
                "cluster.local",
            ]
            .map(String::from),
        );
        v
    }
    fn run(&self, extra: &[&str]) -> Output {
        let args = self.args(extra);
        ferroadm(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.pki.join(rel)
    }
    /// Every file under the cluster dir and its contents, to prove a failed run wrote nothing.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p, out);
                    } else {
                        out.insert(p.clone(), std::fs::read(&p).unwrap());
                    }
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root, &mut out);
        out
    }
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn text(cert: &Path) -> String {
    openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-text"])
}

fn subject(cert: &Path) -> String {
    openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-subject", "-nameopt", "RFC2253"]).trim().to_string()
}

fn verify(ca: &Path, cert: &Path) {
    let out = openssl(&["verify", "-CAfile", ca.to_str().unwrap(), cert.to_str().unwrap()]);
    assert!(out.trim().ends_with(": OK"), "{out}");
}

fn ders(path: &Path) -> Vec<Vec<u8>> {
    pem::parse_many(std::fs::read(path).unwrap()).unwrap().into_iter().map(|p| p.into_contents()).collect()
}

fn webpki_verify(ca: &Path, cert_chain: &[Vec<u8>], server_name: Option<&str>, client: bool) {
    let ca_der = CertificateDer::from(ders(ca).remove(0));
    let anchor = webpki::anchor_from_trusted_cert(&ca_der).unwrap();
    let leaf = CertificateDer::from(cert_chain[0].clone());
    let intermediates: Vec<CertificateDer> = cert_chain[1..].iter().map(|d| CertificateDer::from(d.clone())).collect();
    let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
    let usage = if client { webpki::KeyUsage::client_auth() } else { webpki::KeyUsage::server_auth() };
    ee.verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &[anchor], &intermediates, UnixTime::now(), usage, None, None)
        .expect("webpki validates the chain");
    if let Some(name) = server_name {
        ee.verify_is_valid_for_subject_name(&ServerName::try_from(name).unwrap()).expect("valid for the name");
    }
}

fn kubeconfig_field(path: &Path, field: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}: ")).map(String::from))
        .unwrap_or_else(|| panic!("{field} in {}", path.display()))
}

fn kubeconfig_cert(path: &Path, out: &Path) -> PathBuf {
    use base64::Engine;
    let data = kubeconfig_field(path, "client-certificate-data");
    let pem = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
    std::fs::write(out, pem).unwrap();
    out.to_path_buf()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn generates_kubeadms_pki_verified_independently() {
    let c = Cluster::new();
    let out = ok(c.run(&["certs", "generate"]));
    assert!(out.contains("[certs] Generating \"apiserver\" certificate and key"), "{out}");
    ok(c.run(&["kubeconfig", "generate"]));

    // CAs: self-signed, CA:TRUE, CN as kubeadm names them, 10 years.
    for (file, cn) in [("ca.crt", "kubernetes"), ("front-proxy-ca.crt", "front-proxy-ca"), ("etcd/ca.crt", "etcd-ca")] {
        let t = text(&c.p(file));
        assert!(t.contains("CA:TRUE"), "{file}: {t}");
        assert!(t.contains("Certificate Sign"), "{file}");
        assert_eq!(subject(&c.p(file)), format!("subject=CN={cn}"));
        verify(&c.p(file), &c.p(file));
        let days = pki_days_left(&c.p(file));
        assert!((3640..=3651).contains(&days), "{file} valid for {days} days");
    }

    let leaves: &[(&str, &str, &str, &str)] = &[
        ("apiserver.crt", "ca.crt", "subject=CN=kube-apiserver", "TLS Web Server Authentication"),
        (
            "apiserver-kubelet-client.crt",
            "ca.crt",
            "subject=CN=kube-apiserver-kubelet-client,O=kubeadm:cluster-admins",
            "TLS Web Client Authentication",
        ),
        (
            "front-proxy-client.crt",
            "front-proxy-ca.crt",
            "subject=CN=front-proxy-client",
            "TLS Web Client Authentication",
        ),
        (
            "etcd/server.crt",
            "etcd/ca.crt",
            "subject=CN=cp-1",
            "TLS Web Server Authentication, TLS Web Client Authentication",
        ),
        (
            "etcd/peer.crt",
            "etcd/ca.crt",
            "subject=CN=cp-1",
            "TLS Web Server Authentication, TLS Web Client Authentication",
        ),
        (
            "etcd/healthcheck-client.crt",
            "etcd/ca.crt",
            "subject=CN=kube-etcd-healthcheck-client,O=system:masters",
            "TLS Web Client Authentication",
        ),
        (
            "apiserver-etcd-client.crt",
            "etcd/ca.crt",
            "subject=CN=kube-apiserver-etcd-client,O=system:masters",
            "TLS Web Client Authentication",
        ),
    ];
    for (file, ca, subj, eku) in leaves {
        verify(&c.p(ca), &c.p(file));
        assert_eq!(&subject(&c.p(file)), subj, "{file}");
        let t = text(&c.p(file));
        assert!(t.contains(eku), "{file} usages: {t}");
        assert!(t.contains("Digital Signature, Key Encipherment"), "{file}");
        assert!(t.contains("CA:FALSE"), "{file}");
        assert!(t.contains("rsaEncryption") && t.contains("(2048 bit)"), "{file} is RSA-2048");
        let days = pki_days_left(&c.p(file));
        assert!((363..=366).contains(&days), "{file} valid for {days} days");
        let key = c.p(&file.replace(".crt", ".key"));
        assert_eq!(mode(&key), 0o600, "{}", key.display());
        assert_eq!(mode(&c.p(file)), 0o644);
        assert!(std::fs::read_to_string(&key).unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        // The key belongs to the certificate.
        let cert_pub = openssl(&["x509", "-in", c.p(file).to_str().unwrap(), "-noout", "-pubkey"]);
        let key_pub = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
        assert_eq!(cert_pub, key_pub, "{file}");
        let server = eku.contains("Server");
        webpki_verify(&c.p(ca), &ders(&c.p(file)), None, !server);
    }

    let san = text(&c.p("apiserver.crt"));
    for want in [
        "DNS:cp-1",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:k8s.example.com",
        "DNS:extra.example.com",
        "IP Address:10.96.0.1",
        "IP Address:192.0.2.10",
        "IP Address:203.0.113.7",
    ] {
        assert!(san.contains(want), "apiserver SAN {want} missing: {san}");
    }
    for name in ["kubernetes.default.svc", "k8s.example.com", "10.96.0.1", "192.0.2.10"] {
        webpki_verify(&c.p("ca.crt"), &ders(&c.p("apiserver.crt")), Some(name), false);
    }
    let etcd = text(&c.p("etcd/server.crt"));
    for want in
        ["DNS:cp-1", "DNS:localhost", "IP Address:192.0.2.10", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"]
    {
        assert!(etcd.contains(want), "etcd server SAN {want}: {etcd}");
    }
    webpki_verify(&c.p("etcd/ca.crt"), &ders(&c.p("etcd/server.crt")), Some("127.0.0.1"), false);

    // sa.key / sa.pub: an RSA pair.
    assert_eq!(mode(&c.p("sa.key")), 0o600);
    let derived = openssl(&["pkey", "-in", c.p("sa.key").to_str().unwrap(), "-pubout"]);
    assert_eq!(derived, std::fs::read_to_string(c.p("sa.pub")).unwrap());

    // Kubeconfigs: identities, servers, embedded CA.
    let ca_b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(c.p("ca.crt")).unwrap())
    };
    for (file, subj, server) in [
        ("admin.conf", "subject=CN=kubernetes-admin,O=kubeadm:cluster-admins", "https://k8s.example.com:6443"),
        ("super-admin.conf", "subject=CN=kubernetes-super-admin,O=system:masters", "https://k8s.example.com:6443"),
        ("controller-manager.conf", "subject=CN=system:kube-controller-manager", "https://192.0.2.10:6443"),
        ("scheduler.conf", "subject=CN=system:kube-scheduler", "https://192.0.2.10:6443"),
        ("kubelet.conf", "subject=CN=system:node:cp-1,O=system:nodes", "https://k8s.example.com:6443"),
    ] {
        let path = c.root.join(file);
        assert_eq!(mode(&path), 0o600, "{file}");
        assert_eq!(kubeconfig_field(&path, "server"), server, "{file}");
        assert_eq!(kubeconfig_field(&path, "certificate-authority-data"), ca_b64, "{file}");
        let cert = kubeconfig_cert(&path, &c.root.join(format!("{file}.crt")));
        assert_eq!(subject(&cert), subj, "{file}");
        verify(&c.p("ca.crt"), &cert);
        webpki_verify(&c.p("ca.crt"), &ders(&cert), None, true);
    }
    let admin = std::fs::read_to_string(c.root.join("admin.conf")).unwrap();
    assert!(admin.contains("current-context: kubernetes-admin@kubernetes"), "{admin}");
    assert!(admin.contains("  name: kubernetes\n"), "{admin}");

    // check-expiration prints kubeadm's table.
    let report = ok(c.run(&["certs", "check-expiration"]));
    let first = report.lines().next().unwrap();
    assert_eq!(first, "CERTIFICATE                EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED");
    assert!(
        report.lines().any(|l| l.starts_with("apiserver  ")
            && l.contains("364d")
            && l.ends_with("   ca                      no")),
        "{report}"
    );
    assert!(report.lines().any(|l| l.starts_with("ca  ") && l.contains("   9y   ")), "{report}");
}

fn pki_days_left(cert: &Path) -> i64 {
    let end = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-enddate"]);
    let end = end.trim().trim_start_matches("notAfter=");
    let out = Command::new("date").args(["-u", "-d", end, "+%s"]).output().unwrap();
    let end: i64 = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    (end - now) / 86400
}

#[test]
fn existing_files_are_reused_never_overwritten() {
    let c = Cluster::new();
    // A CA made first is the one every later leaf is signed by.
    ok(c.run(&["certs", "generate", "ca"]));
    let ca_before = std::fs::read(c.p("ca.crt")).unwrap();
    let out = ok(c.run(&["certs", "generate", "all"]));
    assert!(out.contains("[certs] Using existing ca certificate authority"), "{out}");
    assert_eq!(std::fs::read(c.p("ca.crt")).unwrap(), ca_before);
    verify(&c.p("ca.crt"), &c.p("apiserver.crt"));
    ok(c.run(&["kubeconfig", "generate", "all"]));
    let before = c.snapshot();
    let out = ok(c.run(&["certs", "generate", "all"]));
    assert!(out.contains("[certs] Using existing apiserver certificate and key on disk"), "{out}");
    assert!(out.contains("[certs] Using the existing \"sa\" key"), "{out}");
    let out = ok(c.run(&["kubeconfig", "generate", "all"]));
    assert!(out.contains("Using existing kubeconfig file"), "{out}");
    assert_eq!(c.snapshot(), before, "a second run changes nothing");

    // A configuration asking for a SAN the existing certificate lacks is refused, not silently re-issued.
    let args = c.args(&["certs", "generate", "apiserver", "--apiserver-cert-extra-sans", "new.example.com"]);
    let err = failed(ferroadm(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(err.contains("apiserver.crt") && err.contains("DNS:new.example.com"), "{err}");
    assert_eq!(c.snapshot(), before);
}

#[test]
fn external_ca_without_key_signs_nothing_and_says_so() {
    let c = Cluster::new();
    ok(c.run(&["certs", "generate", "ca"]));
    std::fs::remove_file(c.p("ca.key")).unwrap();
    let before = c.snapshot();
    let err = failed(c.run(&["certs", "generate", "all"]));
    assert!(err.contains("externally managed") && err.contains("ca.key"), "{err}");
    assert_eq!(c.snapshot(), before, "nothing written");
    let err = failed(c.run(&["kubeconfig", "generate", "admin"]));
    assert!(err.contains("externally managed"), "{err}");

    // With the leaves provided by the external CA's owner, check-expiration reports it as external.
    let c2 = Cluster::new();
    ok(c2.run(&["certs", "generate", "all"]));
    ok(c2.run(&["kubeconfig", "generate", "all"]));
    std::fs::remove_file(c2.p("ca.key")).unwrap();
    let out = ok(c2.run(&["certs", "generate", "all"]));
    assert!(out.contains("externally managed"), "{out}");
    let report = ok(c2.run(&["certs", "check-expiration"]));
    assert!(report.lines().any(|l| l.starts_with("apiserver  ") && l.ends_with("yes")), "{report}");
    assert!(report.lines().any(|l| l.starts_with("ca  ") && l.ends_with("yes")), "{report}");
    assert!(report.lines().any(|l| l.starts_with("etcd-ca  ") && l.ends_with("no")), "{report}");
    let err = failed(c2.run(&["certs", "renew", "apiserver"]));
    assert!(err.contains("externally managed"), "{err}");
}

#[test]
fn intermediate_ca_chains_into_leaves() {
    let c = Cluster::new();
    std::fs::create_dir_all(&c.pki).unwrap();
    let root = c.root.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let r = |f: &str| root.join(f).to_str().unwrap().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &r("root.key"),
        "-out",
        &r("root.crt"),
        "-days",
        "3650",
        "-subj",
        "/CN=root-ca",
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &r("int.key"),
        "-out",
        &r("int.csr"),
        "-subj",
        "/CN=kubernetes",
    ]);
    std::fs::write(
        root.join("ext.cnf"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,digitalSignature,keyEncipherment\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &r("int.csr"),
        "-CA",
        &r("root.crt"),
        "-CAkey",
        &r("root.key"),
        "-CAcreateserial",
        "-out",
        &r("int.crt"),
        "-days",
        "3000",
        "-extfile",
        &r("ext.cnf"),
    ]);
    let mut bundle = std::fs::read(root.join("int.crt")).unwrap();
    bundle.extend(std::fs::read(root.join("root.crt")).unwrap());
    std::fs::write(c.p("ca.crt"), bundle).unwrap();
    std::fs::copy(root.join("int.key"), c.p("ca.key")).unwrap();

    ok(c.run(&["certs", "generate", "all"]));
    ok(c.run(&["kubeconfig", "generate", "admin"]));
    let chain = ders(&c.p("apiserver.crt"));
    assert_eq!(chain.len(), 2, "leaf followed by the intermediate");
    // Verified against the root alone, with the intermediate taken from the leaf's file.
    let out = openssl(&[
        "verify",
        "-CAfile",
        &r("root.crt"),
        "-untrusted",
        c.p("apiserver.crt").to_str().unwrap(),
        c.p("apiserver.crt").to_str().unwrap(),
    ]);
    assert!(out.trim().ends_with("OK"), "{out}");
    webpki_verify(&root.join("root.crt"), &chain, Some("kubernetes.default.svc"), false);
    let admin = kubeconfig_cert(&c.root.join("admin.conf"), &c.root.join("admin.crt"));
    assert_eq!(ders(&admin).len(), 2);
    webpki_verify(&root.join("root.crt"), &ders(&admin), None, true);
}

#[test]
fn renew_keeps_sans_and_key_and_moves_expiry() {
    let c = Cluster::new();
    let cfg = c.root.join("short.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncertificateValidityPeriod: 48h0m0s\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    ok(c.run(&["certs", "generate", "all", "--config", &cfg]));
    ok(c.run(&["kubeconfig", "generate", "all", "--config", &cfg]));
    assert!(pki_days_left(&c.p("apiserver.crt")) <= 2);
    let san_before: String =
        text(&c.p("apiserver.crt")).lines().skip_while(|l| !l.contains("Alternative Name")).nth(1).unwrap().to_string();
    let key_before = std::fs::read(c.p("apiserver.key")).unwrap();
    let admin_key_before = kubeconfig_field(&c.root.join("admin.conf"), "client-key-data");
    let admin_cert_before = kubeconfig_field(&c.root.join("admin.conf"), "client-certificate-data");

    let out = ok(c.run(&["certs", "renew", "all"]));
    assert!(out.contains("certificate for serving the Kubernetes API renewed"), "{out}");
    assert!(out.contains("Done renewing certificates."), "{out}");
    assert!(pki_days_left(&c.p("apiserver.crt")) >= 363, "expiry moved to a year out");
    let san_after: String =
        text(&c.p("apiserver.crt")).lines().skip_while(|l| !l.contains("Alternative Name")).nth(1).unwrap().to_string();
    assert_eq!(san_before, san_after);
    assert_eq!(std::fs::read(c.p("apiserver.key")).unwrap(), key_before, "key kept");
    verify(&c.p("ca.crt"), &c.p("apiserver.crt"));
    let admin = c.root.join("admin.conf");
    assert_eq!(kubeconfig_field(&admin, "client-key-data"), admin_key_before);
    assert_ne!(kubeconfig_field(&admin, "client-certificate-data"), admin_cert_before);
    let cert = kubeconfig_cert(&admin, &c.root.join("admin.crt"));
    assert!(pki_days_left(&cert) >= 363);
    assert_eq!(subject(&cert), "subject=CN=kubernetes-admin,O=kubeadm:cluster-admins");

    ok(c.run(&["certs", "renew", "apiserver", "--new-key"]));
    assert_ne!(std::fs::read(c.p("apiserver.key")).unwrap(), key_before, "asked for a new key");
    let cert_pub = openssl(&["x509", "-in", c.p("apiserver.crt").to_str().unwrap(), "-noout", "-pubkey"]);
    let key_pub = openssl(&["pkey", "-in", c.p("apiserver.key").to_str().unwrap(), "-pubout"]);
    assert_eq!(cert_pub, key_pub);
}

#[test]
fn ecdsa_from_config() {
    let c = Cluster::new();
    let cfg = c.root.join("ec.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nencryptionAlgorithm: ECDSA-P256\n",
    )
    .unwrap();
    ok(c.run(&["certs", "generate", "all", "--config", cfg.to_str().unwrap()]));
    let t = text(&c.p("apiserver.crt"));
    assert!(t.contains("id-ecPublicKey") && t.contains("prime256v1"), "{t}");
    assert!(t.contains("Digital Signature") && !t.contains("Key Encipherment"), "{t}");
    verify(&c.p("ca.crt"), &c.p("apiserver.crt"));
    webpki_verify(&c.p("ca.crt"), &ders(&c.p("apiserver.crt")), Some("kubernetes"), false);
}

#[test]
fn user_kubeconfig_and_certificate_key() {
    let c = Cluster::new();
    ok(c.run(&["certs", "generate", "ca"]));
    let yaml = ok(ferroadm(&[
        "kubeconfig",
        "user",
        "--client-name",
        "jane",
        "--org",
        "devs",
        "--org",
        "ops",
        "--cert-dir",
        c.pki.to_str().unwrap(),
        "--control-plane-endpoint",
        "10.1.2.3:6443",
    ]));
    let path = c.root.join("jane.conf");
    std::fs::write(&path, &yaml).unwrap();
    assert_eq!(kubeconfig_field(&path, "server"), "https://10.1.2.3:6443");
    assert!(yaml.contains("current-context: jane@kubernetes"), "{yaml}");
    let cert = kubeconfig_cert(&path, &c.root.join("jane.crt"));
    assert_eq!(subject(&cert), "subject=CN=jane,O=devs+O=ops", "both groups, in one RDN as Go writes them");
    verify(&c.p("ca.crt"), &cert);

    let key = ok(ferroadm(&["certs", "certificate-key"]));
    let key = key.trim();
    assert_eq!(key.len(), 64);
    assert!(key.chars().all(|ch| ch.is_ascii_hexdigit()));
    assert_ne!(key, ok(ferroadm(&["certs", "certificate-key"])).trim());
}

#[test]
fn bad_inputs_are_named_and_nothing_is_written() {
    // Malformed certificate.
    let c = Cluster::new();
    ok(c.run(&["certs", "generate", "all"]));
    std::fs::write(c.p("apiserver.crt"), "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
        .unwrap();
    std::fs::remove_file(c.p("front-proxy-client.crt")).unwrap();
    std::fs::remove_file(c.p("front-proxy-client.key")).unwrap();
    let before = c.snapshot();
    let err = failed(c.run(&["certs", "generate", "all"]));
    assert!(err.contains("apiserver.crt"), "{err}");
    assert_eq!(c.snapshot(), before, "front-proxy-client was not written either");

    // Mismatched pair.
    let c = Cluster::new();
    ok(c.run(&["certs", "generate", "all"]));
    std::fs::copy(c.p("front-proxy-client.key"), c.p("apiserver.key")).unwrap();
    let before = c.snapshot();
    let err = failed(c.run(&["certs", "generate", "all"]));
    assert!(err.contains("apiserver.key") && err.contains("mismatched"), "{err}");
    let err = failed(c.run(&["certs", "renew", "apiserver"]));
    assert!(err.contains("apiserver.key"), "{err}");
    assert_eq!(c.snapshot(), before);

    // A CA that is not a CA.
    let c = Cluster::new();
    ok(c.run(&["certs", "generate", "all"]));
    std::fs::copy(c.p("apiserver.crt"), c.p("front-proxy-ca.crt")).unwrap();
    std::fs::copy(c.p("apiserver.key"), c.p("front-proxy-ca.key")).unwrap();
    let before = c.snapshot();
    let err = failed(c.run(&["certs", "generate", "all"]));
    assert!(err.contains("front-proxy-ca.crt") && err.contains("not a CA"), "{err}");
    assert_eq!(c.snapshot(), before);

    // An expired CA.
    let c = Cluster::new();
    std::fs::create_dir_all(&c.pki).unwrap();
    let key = pki::keys::KeyAlgorithm::Rsa2048.generate().unwrap();
    let ca = pki::cert::new_ca("kubernetes", &key, std::time::Duration::from_secs(1)).unwrap();
    std::fs::write(c.p("ca.crt"), ca).unwrap();
    std::fs::write(c.p("ca.key"), pki::keys::private_key_pem(&key)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let before = c.snapshot();
    let err = failed(c.run(&["certs", "generate", "all"]));
    assert!(err.contains("ca.crt") && err.contains("expired"), "{err}");
    assert_eq!(c.snapshot(), before);

    // Unknown names.
    let err = failed(c.run(&["certs", "generate", "apiserver-typo"]));
    assert!(err.contains("unknown certificate"), "{err}");
}
