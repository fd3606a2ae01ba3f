//! A secured kube-apiserver process (PKI and kubeconfigs from `ferroadm`, `--authorization-mode
//! Node,RBAC`, service-account tokens, NodeRestriction), driven by the real kubectl.

mod common;

use apiserver_storage::testing::free_port;
use common::kubectl_bin;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A binary of another package of the workspace, built when missing.
fn sibling(package: &str, bin: &str) -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_kube-apiserver"));
    let path = exe.with_file_name(bin);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo).args(["build", "-p", package, "--bin", bin]).status().unwrap();
        assert!(st.success(), "{bin} builds");
    }
    path
}

fn ferroadm() -> PathBuf {
    sibling("pki", "ferroadm")
}

struct Cluster {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    /// kube-controller-manager processes the test started.
    managers: std::cell::RefCell<Vec<Child>>,
}

impl Cluster {
    fn start(extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path();
        let common = [
            "--cert-dir",
            d.join("pki").to_str().unwrap(),
            "--kubeconfig-dir",
            d.to_str().unwrap(),
            "--apiserver-advertise-address",
            "127.0.0.1",
            "--apiserver-bind-port",
            &port.to_string(),
            "--control-plane-endpoint",
            &format!("127.0.0.1:{port}"),
            "--node-name",
            "n1",
        ]
        .map(String::from);
        for what in ["certs", "kubeconfig"] {
            let out = Command::new(ferroadm()).args([what, "generate", "all"]).args(&common).output().unwrap();
            assert!(out.status.success(), "ferroadm {what}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::fs::write(d.join("tokens.csv"), "static-token-1,alice,1001,\"dev,ops\"\n").unwrap();
        let pki = d.join("pki");
        let p = |f: &str| pki.join(f).to_str().unwrap().to_string();
        let log = std::fs::File::create(d.join("apiserver.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kube-apiserver"))
            .args(["--bind-address", "127.0.0.1", "--secure-port", &port.to_string()])
            .arg("--data-dir")
            .arg(d.join("data"))
            .args(["--client-ca-file", &p("ca.crt"), "--tls-cert-file", &p("apiserver.crt")])
            .args(["--tls-private-key-file", &p("apiserver.key"), "--service-account-key-file", &p("sa.pub")])
            .args(["--service-account-signing-key-file", &p("sa.key"), "--service-account-issuer", ISSUER])
            .args(["--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction"])
            .arg("--token-auth-file")
            .arg(d.join("tokens.csv"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut c = Cluster { child, dir, port, managers: Default::default() };
        c.wait_ready();
        c
    }

    /// Starts a kube-controller-manager as kubeadm runs it (its own kubeconfig, the cluster CA as
    /// signer, the service-account key, per-controller credentials) with `extra` flags; its log is
    /// `kcm-<n>.log`.
    fn start_manager(&self, extra: &[&str]) -> usize {
        let n = self.managers.borrow().len();
        let p = |f: &str| self.path(f).to_str().unwrap().to_string();
        let log = std::fs::File::create(self.path(&format!("kcm-{n}.log"))).unwrap();
        let child = Command::new(sibling("kube-controller-manager", "kube-controller-manager"))
            .args(["--kubeconfig", &p("controller-manager.conf"), "--secure-port=0", "--leader-elect=false"])
            .args(["--use-service-account-credentials=true", "--root-ca-file", &p("pki/ca.crt")])
            .args(["--service-account-private-key-file", &p("pki/sa.key")])
            .args(["--cluster-signing-cert-file", &p("pki/ca.crt"), "--cluster-signing-key-file", &p("pki/ca.key")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.managers.borrow_mut().push(child);
        n
    }

    fn stop_manager(&self, n: usize) {
        let mut managers = self.managers.borrow_mut();
        let _ = managers[n].kill();
        let _ = managers[n].wait();
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("kube-apiserver exited {st}: {}", std::fs::read_to_string(self.path("apiserver.log")).unwrap());
            }
            if self.kubectl("super-admin.conf", &["get", "--raw", "/readyz"]).status.success()
                && self.kubectl("super-admin.conf", &["get", "clusterrole", "system:node"]).status.success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready: {}",
                std::fs::read_to_string(self.path("apiserver.log")).unwrap()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// kubectl with one of the kubeconfigs ferroadm wrote (or a token-only one).
    fn kubectl(&self, kubeconfig: &str, args: &[&str]) -> Output {
        Command::new(kubectl_bin())
            .arg("--kubeconfig")
            .arg(self.path(kubeconfig))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, kubeconfig: &str, args: &[&str]) -> String {
        let out = self.kubectl(kubeconfig, args);
        assert!(
            out.status.success(),
            "kubectl {args:?} as {kubeconfig} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, kubeconfig: &str, args: &[&str]) -> String {
        let out = self.kubectl(kubeconfig, args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} as {kubeconfig} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// A kubeconfig that trusts the cluster CA and presents only a bearer token.
    fn token_kubeconfig(&self, name: &str, token: &str) -> String {
        let user = format!("    token: {token}\n");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: {}\n    server: https://127.0.0.1:{}\n  name: c\ncontexts:\n- context:\n    cluster: c\n    user: u\n  name: c\ncurrent-context: c\nusers:\n- name: u\n  user:\n{user}",
            self.path("pki/ca.crt").display(),
            self.port
        );
        std::fs::write(self.path(name), text).unwrap();
        name.to_string()
    }

    /// A client certificate kubeconfig signed by `ca_dir`'s CA (for certificates the server must refuse).
    fn cert_kubeconfig(&self, name: &str, cert: &Path, key: &Path) -> String {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: {}\n    server: https://127.0.0.1:{}\n  name: c\ncontexts:\n- context:\n    cluster: c\n    user: u\n  name: c\ncurrent-context: c\nusers:\n- name: u\n  user:\n    client-certificate: {}\n    client-key: {}\n",
            self.path("pki/ca.crt").display(),
            self.port,
            cert.display(),
            key.display()
        );
        std::fs::write(self.path(name), text).unwrap();
        name.to_string()
    }

    /// A raw request with curl (trusting the cluster CA): status code and body.
    fn curl(&self, args: &[&str], method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(self.path("pki/ca.crt"))
            .args(["-X", method])
            .args(args);
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/merge-patch+json", "--data", b]);
        }
        let out = cmd.arg(format!("https://127.0.0.1:{}{path}", self.port)).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// The client certificate and key embedded in a kubeconfig, as files (for curl).
    fn cert_files(&self, kubeconfig: &str) -> (String, String) {
        use base64::Engine;
        let text = std::fs::read_to_string(self.path(kubeconfig)).unwrap();
        let field = |k: &str| {
            let line = text.lines().find_map(|l| l.trim().strip_prefix(&format!("{k}: "))).unwrap();
            base64::engine::general_purpose::STANDARD.decode(line).unwrap()
        };
        let (crt, key) = (self.path(&format!("{kubeconfig}.crt")), self.path(&format!("{kubeconfig}.key")));
        std::fs::write(&crt, field("client-certificate-data")).unwrap();
        std::fs::write(&key, field("client-key-data")).unwrap();
        (crt.to_str().unwrap().to_string(), key.to_str().unwrap().to_string())
    }

    fn apply(&self, kubeconfig: &str, yaml: &str) -> Output {
        let f = self.path(&format!("m{}.yaml", rand_suffix()));
        std::fs::write(&f, yaml).unwrap();
        self.kubectl(kubeconfig, &["apply", "-f", f.to_str().unwrap()])
    }
}

fn rand_suffix() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the components said, for the failure's report.
            for n in 0..self.managers.get_mut().len() {
                let log = std::fs::read_to_string(self.path(&format!("kcm-{n}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- kcm-{n}.log (last lines) ---");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        for m in self.managers.get_mut() {
            let _ = m.kill();
            let _ = m.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn authentication_and_rbac_end_to_end() {
    let c = Cluster::start(&[]);
    const SA: &str = "super-admin.conf";

    // Anonymous (kubectl always asks for credentials, so curl): health and version, nothing else.
    assert_eq!(c.curl(&[], "GET", "/healthz", None), (200, "ok".to_string()));
    let (code, body) = c.curl(&[], "GET", "/version", None);
    assert!(code == 200 && body.contains("gitVersion"), "{body}");
    let (code, body) = c.curl(&[], "GET", "/api/v1/namespaces/default/pods", None);
    assert_eq!(code, 403, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        status["message"],
        "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    assert_eq!((status["reason"].as_str(), status["details"]["kind"].as_str()), (Some("Forbidden"), Some("pods")));
    let (code, body) = c.curl(&[], "GET", "/api", None);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("forbidden: User \\\"system:anonymous\\\" cannot get path \\\"/api\\\""), "{body}");
    let (code, body) = c.curl(&["-H", "Authorization: Bearer nonsense"], "GET", "/version", None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");

    // The kubeadm admin (O=kubeadm:cluster-admins) holds nothing until its group is bound, as kubeadm does.
    let err = c.fails("admin.conf", &["get", "nodes"]);
    assert!(err.contains("User \"kubernetes-admin\" cannot list resource \"nodes\""), "{err}");
    c.ok(
        SA,
        &[
            "create",
            "clusterrolebinding",
            "kubeadm:cluster-admins",
            "--clusterrole=cluster-admin",
            "--group=kubeadm:cluster-admins",
        ],
    );
    c.ok("admin.conf", &["get", "nodes"]);
    c.ok("admin.conf", &["create", "namespace", "team"]);
    assert_eq!(
        c.ok("admin.conf", &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]),
        "kubernetes-admin"
    );
    let groups = c.ok("admin.conf", &["auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}"]);
    assert!(groups.contains("kubeadm:cluster-admins") && groups.contains("system:authenticated"), "{groups}");
    assert_eq!(c.ok("admin.conf", &["auth", "can-i", "delete", "nodes"]).trim(), "yes");

    // A service account granted a Role can do exactly that.
    c.ok("admin.conf", &["-n", "team", "create", "serviceaccount", "bot"]);
    c.ok("admin.conf", &["-n", "team", "create", "role", "pod-reader", "--verb=get,list", "--resource=pods"]);
    c.ok(
        "admin.conf",
        &["-n", "team", "create", "rolebinding", "bot-reads", "--role=pod-reader", "--serviceaccount=team:bot"],
    );
    let token = c.ok("admin.conf", &["-n", "team", "create", "token", "bot"]).trim().to_string();
    let bot = c.token_kubeconfig("bot.conf", &token);
    assert_eq!(
        c.ok(&bot, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]),
        "system:serviceaccount:team:bot"
    );
    c.ok(&bot, &["-n", "team", "get", "pods"]);
    let err = c.fails(&bot, &["-n", "team", "get", "secrets"]);
    assert!(err.contains("User \"system:serviceaccount:team:bot\" cannot list resource \"secrets\""), "{err}");
    let err = c.fails(&bot, &["-n", "default", "get", "pods"]);
    assert!(err.contains("in the namespace \"default\""), "{err}");
    let list = c.ok(&bot, &["-n", "team", "auth", "can-i", "--list"]);
    let pods_line = list.lines().find(|l| l.starts_with("pods ")).unwrap_or_else(|| panic!("{list}"));
    assert!(pods_line.contains("[get list]"), "{list}");
    assert!(!list.lines().any(|l| l.starts_with("secrets")), "{list}");
    assert_eq!(
        c.ok("admin.conf", &["auth", "can-i", "list", "pods", "-n", "team", "--as=system:serviceaccount:team:bot"])
            .trim(),
        "yes"
    );
    assert_eq!(
        String::from_utf8_lossy(
            &c.kubectl(
                "admin.conf",
                &["auth", "can-i", "list", "secrets", "-n", "team", "--as=system:serviceaccount:team:bot"]
            )
            .stdout
        )
        .trim(),
        "no"
    );
    // Impersonation needs the impersonate verb.
    let err = c.fails(&bot, &["-n", "team", "get", "pods", "--as=kubernetes-admin"]);
    assert!(err.contains("cannot impersonate resource \"users\""), "{err}");

    // A TokenReview of the token, and of a tampered one.
    let review = format!(
        "{{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"spec\":{{\"token\":\"{token}\"}}}}"
    );
    let f = c.path("review.json");
    std::fs::write(&f, &review).unwrap();
    let out = c.ok("admin.conf", &["create", "-f", f.to_str().unwrap(), "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"]["authenticated"], true, "{out}");
    assert_eq!(v["status"]["user"]["username"], "system:serviceaccount:team:bot");
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    parts[1] = parts[1].replacen('e', "f", 1);
    let tampered = parts.join(".");
    let bad = c.token_kubeconfig("tampered.conf", &tampered);
    let err = c.fails(&bad, &["get", "--raw", "/version"]);
    assert!(err.contains("Unauthorized"), "{err}");
    // A token for another audience, and one whose account is gone.
    let other_aud =
        c.ok("admin.conf", &["-n", "team", "create", "token", "bot", "--audience", "vault"]).trim().to_string();
    let other = c.token_kubeconfig("aud.conf", &other_aud);
    assert!(c.fails(&other, &["-n", "team", "get", "pods"]).contains("Unauthorized"));
    c.ok("admin.conf", &["-n", "team", "delete", "serviceaccount", "bot"]);
    assert!(c.fails(&bot, &["-n", "team", "get", "pods"]).contains("Unauthorized"));

    // A static token user, and a user who may create RoleBindings but not grant what they lack.
    let alice = c.token_kubeconfig("alice.conf", "static-token-1");
    assert_eq!(c.ok(&alice, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]), "alice");
    c.ok(
        "admin.conf",
        &["-n", "team", "create", "role", "binder", "--verb=create,get,list", "--resource=rolebindings,pods"],
    );
    c.ok("admin.conf", &["-n", "team", "create", "rolebinding", "alice-binds", "--role=binder", "--user=alice"]);
    c.ok("admin.conf", &["-n", "team", "create", "role", "secret-admin", "--verb=*", "--resource=secrets"]);
    let err = c.fails(&alice, &["-n", "team", "create", "rolebinding", "grab", "--role=secret-admin", "--user=alice"]);
    assert!(err.contains("is attempting to grant RBAC permissions not currently held"), "{err}");
    assert!(c.fails(&alice, &["-n", "team", "get", "secrets"]).contains("forbidden"));
    // Binding a role whose permissions alice holds is fine.
    c.ok(&alice, &["-n", "team", "create", "rolebinding", "share", "--role=pod-reader", "--user=bob"]);
    let err = c.fails(&alice, &["-n", "team", "create", "role", "wide", "--verb=get", "--resource=secrets"]);
    assert!(err.contains("forbidden"), "{err}");

    // Bad certificates: signed by another CA, or expired.
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(ferroadm())
        .args(["certs", "generate", "all", "--cert-dir", other.path().to_str().unwrap(), "--kubeconfig-dir"])
        .arg(other.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let foreign = c.cert_kubeconfig(
        "foreign.conf",
        &other.path().join("apiserver-kubelet-client.crt"),
        &other.path().join("apiserver-kubelet-client.key"),
    );
    assert!(c.fails(&foreign, &["get", "--raw", "/version"]).contains("Unauthorized"));

    // Metrics count the failures.
    let metrics = c.ok("admin.conf", &["get", "--raw", "/metrics"]);
    assert!(metrics.lines().any(|l| l.starts_with("authentication_attempts{result=\"failure\"}")), "metrics");
    assert!(metrics.contains("apiserver_authorization_decisions_total"), "metrics");

    // The issuer's discovery documents, readable by service accounts.
    let doc = c.ok("admin.conf", &["get", "--raw", "/.well-known/openid-configuration"]);
    assert!(doc.contains(ISSUER) && doc.contains("/openid/v1/jwks"), "{doc}");
    let jwks = c.ok("admin.conf", &["get", "--raw", "/openid/v1/jwks"]);
    assert!(jwks.contains("\"kty\":\"RSA\""), "{jwks}");
}

#[test]
fn node_identity_reads_only_what_its_pods_use() {
    let c = Cluster::start(&[]);
    const SA: &str = "super-admin.conf";
    let kubelet = "kubelet.conf";
    assert_eq!(c.ok(kubelet, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]), "system:node:n1");
    c.ok(SA, &["create", "secret", "generic", "mine", "--from-literal=a=1"]);
    c.ok(SA, &["create", "secret", "generic", "theirs", "--from-literal=a=2"]);
    let pod = |name: &str, node: &str, secret: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n  containers:\n  - name: c\n    image: busybox:1.36\n    env:\n    - name: X\n      valueFrom: {{secretKeyRef: {{name: {secret}, key: a}}}}\n"
        )
    };
    // The ServiceAccount plugin needs the account pods run as (the controller manager makes it).
    let err = String::from_utf8_lossy(&c.apply(SA, &pod("p1", "n1", "mine")).stderr).to_string();
    assert!(
        err.contains(r#"pods "p1" is forbidden: error looking up service account default/default: serviceaccount "default" not found"#),
        "{err}"
    );
    c.ok(SA, &["create", "serviceaccount", "default"]);
    assert!(c.apply(SA, &pod("p1", "n1", "mine")).status.success());
    assert!(c.apply(SA, &pod("p2", "n2", "theirs")).status.success());
    // ... and mounts its token, the cluster CA and the namespace in every container.
    let vol = c.ok(SA, &["get", "pod", "p1", "-o", "jsonpath={.spec.volumes[0].name} {.spec.containers[0].volumeMounts[0].mountPath} {.spec.serviceAccountName} {.spec.tolerations[*].key}"]);
    assert!(vol.starts_with("kube-api-access-"), "{vol}");
    assert!(
        vol.ends_with(" /var/run/secrets/kubernetes.io/serviceaccount default node.kubernetes.io/not-ready node.kubernetes.io/unreachable"),
        "{vol}"
    );
    // The kubelet may fetch that volume's pieces for its own pod.
    c.ok(kubelet, &["get", "configmap", "kube-root-ca.crt", "--ignore-not-found"]);
    c.ok(kubelet, &["get", "secret", "mine"]);
    let err = c.fails(kubelet, &["get", "secret", "theirs"]);
    assert!(err.contains("no relationship found between node 'n1' and this object"), "{err}");
    let err = c.fails(kubelet, &["get", "secrets"]);
    assert!(err.contains("forbidden"), "{err}");
    // Node writes: its own status yes, another pod's status or another node no.
    c.ok(kubelet, &["get", "pods", "-A"]);
    // (As the kubelet does, with a PATCH; kubectl would GET pods/status first, which nodes may not.)
    let (crt, key) = c.cert_files(kubelet);
    let auth = ["--cert", crt.as_str(), "--key", key.as_str()];
    let patch = r#"{"status":{"message":"from n1"}}"#;
    let (code, body) = c.curl(&auth, "PATCH", "/api/v1/namespaces/default/pods/p1/status", Some(patch));
    assert_eq!(code, 200, "{body}");
    let (code, body) = c.curl(&auth, "PATCH", "/api/v1/namespaces/default/pods/p2/status", Some(patch));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("can only update pod status for pods with spec.nodeName set to itself"), "{body}");
    // Deletes too: only pods bound to the node.
    let (code, body) = c.curl(&auth, "DELETE", "/api/v1/namespaces/default/pods/p2", None);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains(r#"node \"n1\" can only delete pods with spec.nodeName set to itself"#), "{body}");
    let (code, body) = c.curl(&auth, "DELETE", "/api/v1/namespaces/default/pods/p1", None);
    assert_eq!(code, 200, "{body}");
    let node = |name: &str| format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n");
    let out = c.apply(kubelet, &node("n1"));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = c.apply(kubelet, &node("n2"));
    assert!(stderr(&out).contains("is not allowed to modify node \"n2\""), "{}", stderr(&out));
    let lease = |name: &str| {
        format!("apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {name}, namespace: kube-node-lease}}\nspec: {{holderIdentity: {name}}}\n")
    };
    assert!(c.apply(kubelet, &lease("n1")).status.success());
    let out = c.apply(kubelet, &lease("n2"));
    assert!(stderr(&out).contains("can only access node lease with the same name"), "{}", stderr(&out));
}

#[test]
fn bootstrap_policy_survives_restart_and_respects_user_edits() {
    let mut c = Cluster::start(&[]);
    const SA: &str = "super-admin.conf";
    // A user edit to an auto-updated role is merged back; one marked autoupdate=false is kept.
    c.ok(
        SA,
        &[
            "annotate",
            "clusterrole",
            "system:heapster",
            "rbac.authorization.kubernetes.io/autoupdate=false",
            "--overwrite",
        ],
    );
    c.ok(
        SA,
        &[
            "patch",
            "clusterrole",
            "system:heapster",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/rules","value":[]}]"#,
        ],
    );
    c.ok(
        SA,
        &[
            "patch",
            "clusterrole",
            "system:kube-dns",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/rules","value":[]}]"#,
        ],
    );
    let _ = c.child.kill();
    let _ = c.child.wait();
    let d = c.dir.path().to_path_buf();
    let log = std::fs::File::create(d.join("apiserver.log")).unwrap();
    let pki = d.join("pki");
    let p = |f: &str| pki.join(f).to_str().unwrap().to_string();
    c.child = Command::new(env!("CARGO_BIN_EXE_kube-apiserver"))
        .args(["--bind-address", "127.0.0.1", "--secure-port", &c.port.to_string()])
        .arg("--data-dir")
        .arg(d.join("data"))
        .args([
            "--client-ca-file",
            &p("ca.crt"),
            "--tls-cert-file",
            &p("apiserver.crt"),
            "--tls-private-key-file",
            &p("apiserver.key"),
        ])
        .args(["--authorization-mode", "RBAC"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    c.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dns = c.ok(SA, &["get", "clusterrole", "system:kube-dns", "-o", "jsonpath={.rules}"]);
        if dns.contains("endpoints") {
            break;
        }
        assert!(Instant::now() < deadline, "system:kube-dns not reconciled: {dns}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let heapster = c.ok(SA, &["get", "clusterrole", "system:heapster", "-o", "jsonpath={.rules}"]);
    assert!(!heapster.contains("pods"), "{heapster}");
}

/// A CertificateSigningRequest manifest for a fresh key with this subject.
fn csr_yaml(name: &str, cn: &str, orgs: &[&str], signer: &str) -> String {
    use base64::Engine;
    let key = pki::keys::KeyAlgorithm::EcdsaP256.generate().unwrap();
    let pem = pki::csr::new_request(cn, orgs, &pki::cert::AltNames::default(), &key).unwrap();
    let request = base64::engine::general_purpose::STANDARD.encode(pem);
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: {name}}}\nspec:\n  signerName: {signer}\n  usages: [client auth]\n  request: {request}\n"
    )
}

#[test]
fn certificate_requests_need_signer_permissions() {
    let c = Cluster::start(&[]);
    const SA: &str = "super-admin.conf";
    let bind = |role: &str, rules: &str| {
        let yaml = format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {role}}}\nrules:\n{rules}---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {role}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\nsubjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: csr-bob}}\n"
        );
        let out = c.apply(SA, &yaml);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    bind(
        "csr-handler",
        "- {apiGroups: [certificates.k8s.io], resources: [certificatesigningrequests], verbs: [create, get, list, watch]}\n- {apiGroups: [certificates.k8s.io], resources: [certificatesigningrequests/approval, certificatesigningrequests/status], verbs: [get, update, patch]}\n",
    );
    let out = c.apply(SA, &csr_yaml("widget", "bob", &["devs"], "example.com/widgets"));
    assert!(out.status.success(), "{}", stderr(&out));

    // CertificateApproval: updating the approval needs `approve` on the signer (or its domain).
    let as_bob = ["--as", "csr-bob"];
    let approve = ["certificate", "approve", "widget", as_bob[0], as_bob[1]];
    let err = c.fails(SA, &approve);
    assert!(
        err.contains(r#"Error from server (Forbidden): certificatesigningrequests.certificates.k8s.io "widget" is forbidden: user not permitted to approve requests with signerName "example.com/widgets""#),
        "{err}"
    );
    bind("widget-approver", "- {apiGroups: [certificates.k8s.io], resources: [signers], resourceNames: [example.com/*], verbs: [approve]}\n");
    c.ok(SA, &approve);
    let conditions = c.ok(SA, &["get", "csr", "widget", "-o", "jsonpath={.status.conditions[0].type}"]);
    assert_eq!(conditions, "Approved");

    // CertificateSigning: setting status.certificate needs `sign` on the signer.
    use base64::Engine;
    let pem = std::fs::read(c.path("pki/ca.crt")).unwrap();
    let patch =
        format!(r#"{{"status":{{"certificate":"{}"}}}}"#, base64::engine::general_purpose::STANDARD.encode(pem));
    let sign = ["patch", "csr", "widget", "--subresource=status", "--type=merge", "-p", &patch, as_bob[0], as_bob[1]];
    let err = c.fails(SA, &sign);
    assert!(err.contains(r#"user not permitted to sign requests with signerName "example.com/widgets""#), "{err}");
    bind("widget-signer", "- {apiGroups: [certificates.k8s.io], resources: [signers], resourceNames: [example.com/widgets], verbs: [sign]}\n");
    c.ok(SA, &sign);
    assert!(!c.ok(SA, &["get", "csr", "widget", "-o", "jsonpath={.status.certificate}"]).is_empty());

    // CertificateSubjectRestriction: nobody, not even system:masters, asks the API-server client signer
    // for a system:masters certificate.
    let out = c.apply(SA, &csr_yaml("root", "evil", &["system:masters"], "kubernetes.io/kube-apiserver-client"));
    assert!(
        stderr(&out).contains(r#"certificatesigningrequests.certificates.k8s.io "root" is forbidden: use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"#),
        "{}",
        stderr(&out)
    );
    let out = c.apply(SA, &csr_yaml("plain", "ok", &["devs"], "kubernetes.io/kube-apiserver-client"));
    assert!(out.status.success(), "{}", stderr(&out));
    // A request that is not a PKCS#10 PEM is invalid.
    let out = c.apply(
        SA,
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {name: junk}\nspec: {signerName: example.com/widgets, usages: [client auth], request: aGVsbG8=}\n",
    );
    assert!(
        stderr(&out).contains("spec.request: Invalid value")
            && stderr(&out).contains("PEM block type must be CERTIFICATE REQUEST"),
        "{}",
        stderr(&out)
    );
}

/// A client certificate for `cn` signed by the cluster CA, valid only between the two offsets from
/// now (for certificates that expired or are not valid yet); the cert and key file paths.
fn cert_valid_between(c: &Cluster, cn: &str, from: time::Duration, to: time::Duration) -> (String, String) {
    let ca_pem = std::fs::read_to_string(c.path("pki/ca.crt")).unwrap();
    let ca_key = pki::keys::load_private_key(&c.path("pki/ca.key")).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let key = pki::keys::KeyAlgorithm::EcdsaP256.generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + from;
    params.not_after = now + to;
    let cert = params.signed_by(&key, &issuer).unwrap();
    let n = rand_suffix();
    let (crt, key_path) = (c.path(&format!("client{n}.crt")), c.path(&format!("client{n}.key")));
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (crt.to_str().unwrap().to_string(), key_path.to_str().unwrap().to_string())
}

#[test]
fn bad_credentials_get_a_bare_401_and_stay_out_of_the_log() {
    let c = Cluster::start(&[]);
    const SA: &str = "super-admin.conf";
    const UNAUTHORIZED: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;
    let days = time::Duration::days;
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();

    // Certificates from the cluster CA: the current one authenticates (and is then forbidden), the
    // expired and the not-yet-valid ones get the bare 401.
    let (crt, key) = cert_valid_between(&c, "carol", days(-1), days(1));
    let (code, body) = c.curl(&["--cert", &crt, "--key", &key], "GET", "/api/v1/namespaces", None);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains(r#"User \"carol\" cannot list resource \"namespaces\""#), "{body}");
    for (from, to) in [(days(-10), days(-1)), (days(1), days(10))] {
        let (crt, key) = cert_valid_between(&c, "carol", from, to);
        let (code, body) = c.curl(&["--cert", &crt, "--key", &key], "GET", "/api/v1/namespaces", None);
        assert_eq!((code, json(&body)), (401, json(UNAUTHORIZED)));
    }

    // Service-account JWTs signed with the cluster's key: a current one authenticates, an expired one
    // and one not valid yet get the bare 401.
    c.ok(SA, &["create", "serviceaccount", "robot"]);
    let uid = c.ok(SA, &["get", "serviceaccount", "robot", "-o", "jsonpath={.metadata.uid}"]);
    let signer = apiserver_auth::jwt::Signer::load(&c.path("pki/sa.key")).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = |iat: i64, exp: i64| {
        signer
            .sign(&serde_json::json!({
                "iss": ISSUER, "aud": [ISSUER], "sub": "system:serviceaccount:default:robot",
                "iat": iat, "nbf": iat, "exp": exp,
                "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "robot", "uid": uid}},
            }))
            .unwrap()
    };
    let good = c.token_kubeconfig("good.conf", &token(now - 60, now + 600));
    assert_eq!(
        c.ok(&good, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]),
        "system:serviceaccount:default:robot"
    );
    let mut rejected = Vec::new();
    for (iat, exp) in [(now - 7200, now - 3600), (now + 3600, now + 7200)] {
        let t = token(iat, exp);
        let (code, body) = c.curl(&["-H", &format!("Authorization: Bearer {t}")], "GET", "/api/v1/namespaces", None);
        assert_eq!((code, json(&body)), (401, json(UNAUTHORIZED)));
        rejected.push(t);
    }
    let tampered = format!("{}x", rejected[0]);
    let (code, _) = c.curl(&["-H", &format!("Authorization: Bearer {tampered}")], "GET", "/version", None);
    assert_eq!(code, 401);
    rejected.push(tampered);

    // Failures are counted, and logged without the credentials.
    let metrics = c.ok("super-admin.conf", &["get", "--raw", "/metrics"]);
    let failures: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("authentication_attempts{result=\"failure\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(failures >= 5.0, "{failures}");
    let log = std::fs::read_to_string(c.path("apiserver.log")).unwrap();
    assert!(log.contains("client certificate rejected") && log.contains("token rejected"), "{log}");
    for t in &rejected {
        let signature = t.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a rejected token's signature is in the log");
    }
}

/// Polls `probe` for up to 60 seconds.
fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn kubelet_csr_yaml(name: &str, cn: &str) -> String {
    csr_yaml(name, cn, &["system:nodes"], "kubernetes.io/kube-apiserver-client-kubelet")
}

#[test]
fn kubelet_client_requests_are_approved_after_a_subject_access_review() {
    let c = Cluster::start(&[]);
    const SA: &str = "super-admin.conf";
    // kubeadm's bindings: bootstrap tokens may ask for node client certificates, nodes may renew
    // their own.
    let yaml = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: kubeadm:node-autoapprove-bootstrap}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: 'system:certificates.k8s.io:certificatesigningrequests:nodeclient'}\nsubjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: 'system:bootstrappers:kubeadm:default-node-token'}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: kubeadm:node-autoapprove-certificate-rotation}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: 'system:certificates.k8s.io:certificatesigningrequests:selfnodeclient'}\nsubjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: 'system:nodes'}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: csr-makers}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: 'system:node-bootstrapper'}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: 'system:bootstrappers'}\n- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: 'system:nodes'}\n- {apiGroup: rbac.authorization.k8s.io, kind: User, name: mallory}\n";
    let out = c.apply(SA, yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    c.start_manager(&[]);
    let create_as = |yaml: String, who: &[&str]| {
        let f = c.path(&format!("csr{}.yaml", rand_suffix()));
        std::fs::write(&f, yaml).unwrap();
        let mut args = vec!["create", "-f", f.to_str().unwrap()];
        args.extend_from_slice(who);
        c.ok(SA, &args);
    };
    let bootstrap = ["--as", "system:bootstrap:abcdef", "--as-group", "system:bootstrappers", "--as-group"];
    let mut bootstrap = bootstrap.to_vec();
    bootstrap.push("system:bootstrappers:kubeadm:default-node-token");
    let node1 = ["--as", "system:node:n1", "--as-group", "system:nodes"];
    // A bootstrap token asks for a new node's certificate; a node renews its own; a node asks for
    // another node's; a user without the permission asks for one; a bootstrap token asks another
    // signer.
    create_as(kubelet_csr_yaml("bootstrap", "system:node:n2"), &bootstrap);
    create_as(kubelet_csr_yaml("renewal", "system:node:n1"), &node1);
    create_as(kubelet_csr_yaml("other-node", "system:node:n3"), &node1);
    create_as(kubelet_csr_yaml("mallory", "system:node:n4"), &["--as", "mallory"]);
    create_as(
        csr_yaml("plain-client", "system:node:n5", &["system:nodes"], "kubernetes.io/kube-apiserver-client"),
        &bootstrap,
    );

    let approved = |name: &str| {
        eventually(&format!("{name} approved and signed"), || {
            let v: serde_json::Value = serde_json::from_str(&c.ok(SA, &["get", "csr", name, "-o", "json"])).unwrap();
            let cert = v["status"]["certificate"].as_str().is_some_and(|c| !c.is_empty());
            let cond = v["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Approved")?.clone();
            cert.then_some(cond)
        })
    };
    // The server records who asked.
    let spec: serde_json::Value =
        serde_json::from_str(&c.ok(SA, &["get", "csr", "bootstrap", "-o", "jsonpath={.spec}"])).unwrap();
    assert_eq!(spec["username"], "system:bootstrap:abcdef");
    assert_eq!(
        spec["groups"],
        serde_json::json!([
            "system:bootstrappers",
            "system:bootstrappers:kubeadm:default-node-token",
            "system:authenticated"
        ])
    );
    let cond = approved("bootstrap");
    assert_eq!(cond["reason"], "AutoApproved");
    assert_eq!(cond["status"], "True");
    assert_eq!(cond["message"], "Auto approving kubelet client certificate after SubjectAccessReview.");
    let cond = approved("renewal");
    assert_eq!(cond["message"], "Auto approving self kubelet client certificate after SubjectAccessReview.");
    // The others stay pending for a person: nothing recorded on them.
    std::thread::sleep(Duration::from_secs(3));
    for name in ["other-node", "mallory", "plain-client"] {
        let conditions = c.ok(SA, &["get", "csr", name, "-o", "jsonpath={.status.conditions}"]);
        assert_eq!(conditions, "", "{name} was decided");
    }
    let listing = c.ok(SA, &["get", "csr", "other-node"]);
    assert!(listing.contains("Pending"), "{listing}");
    // A person approves one by hand; the signer then issues it.
    c.ok(SA, &["certificate", "approve", "mallory"]);
    let cond = approved("mallory");
    assert_eq!(cond["reason"], "KubectlApprove");
}

#[test]
fn legacy_tokens_are_tracked_invalidated_and_cleaned_up() {
    let c = Cluster::start(&[]);
    const SA: &str = "super-admin.conf";
    let today =
        time::OffsetDateTime::now_utc().format(time::macros::format_description!("[year]-[month]-[day]")).unwrap();
    // The API server records since when it tracks legacy token use.
    let since = eventually("the tracking ConfigMap", || {
        let out = c.kubectl(
            SA,
            &[
                "get",
                "configmap",
                "-n",
                "kube-system",
                "kube-apiserver-legacy-service-account-token-tracking",
                "-o",
                "jsonpath={.data.since}",
            ],
        );
        out.status.success().then(|| String::from_utf8(out.stdout).unwrap())
    });
    assert_eq!(since, today);

    let filler = c.start_manager(&["--controllers=serviceaccount-token"]);
    let token_secret = |name: &str| {
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  annotations: {{kubernetes.io/service-account.name: robot}}\ntype: kubernetes.io/service-account-token\n---\n")
    };
    // The account first (a token Secret of a missing account is deleted), listing its auto-generated
    // tokens; manual-token is one a user made.
    let mut yaml = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: robot}\nsecrets: [{name: robot-token}, {name: stale-token}, {name: old-invalid}, {name: mounted-token}, {name: fresh-token}]\n---\n".to_string();
    for name in ["robot-token", "stale-token", "old-invalid", "mounted-token", "fresh-token", "manual-token"] {
        yaml.push_str(&token_secret(name));
    }
    yaml.push_str("apiVersion: v1\nkind: Pod\nmetadata: {name: user}\nspec:\n  serviceAccountName: robot\n  automountServiceAccountToken: false\n  containers: [{name: c, image: busybox}]\n  volumes: [{name: t, secret: {secretName: mounted-token}}]\n");
    let out = c.apply(SA, &yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = |name: &str| {
        eventually(&format!("{name} filled"), || {
            let t = c.ok(SA, &["get", "secret", name, "-o", "jsonpath={.data.token}"]);
            use base64::Engine;
            (!t.is_empty())
                .then(|| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(t).unwrap()).unwrap())
        })
    };
    let robot = c.token_kubeconfig("robot.conf", &token("robot-token"));
    let manual = c.token_kubeconfig("manual.conf", &token("manual-token"));
    for name in ["stale-token", "old-invalid", "mounted-token", "fresh-token"] {
        token(name);
    }
    c.stop_manager(filler);

    // Each use stamps the day; an auto-generated token also gets a warning.
    let out = c.kubectl(&robot, &["auth", "whoami"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("system:serviceaccount:default:robot"));
    assert!(
        stderr(&out).contains("Warning: Use tokens from the TokenRequest API or manually created secret-based tokens instead of auto-generated secret-based tokens."),
        "{}",
        stderr(&out)
    );
    let out = c.kubectl(&manual, &["auth", "whoami"]);
    assert!(out.status.success() && !stderr(&out).contains("Warning"), "{}", stderr(&out));
    let last_used = |name: &str| {
        c.ok(SA, &["get", "secret", name, "-o", r"jsonpath={.metadata.labels.kubernetes\.io/legacy-token-last-used}"])
    };
    assert_eq!(last_used("robot-token"), today);
    assert_eq!(last_used("manual-token"), today);
    assert_eq!(last_used("stale-token"), "");
    let metrics = c.ok(SA, &["get", "--raw", "/metrics"]);
    assert!(metrics.contains("serviceaccount_legacy_auto_token_uses_total 1"), "{metrics}");
    assert!(metrics.contains("serviceaccount_legacy_manual_token_uses_total 1"), "{metrics}");

    // A year later (the tracking began long ago, the cleanup period is a second): robot-token was
    // last used long ago, stale-token never; old-invalid was invalidated long ago.
    let label = |name: &str, kv: &str| c.ok(SA, &["label", "--overwrite", "secret", name, kv]);
    label("robot-token", "kubernetes.io/legacy-token-last-used=2020-01-01");
    label("old-invalid", "kubernetes.io/legacy-token-invalid-since=2020-01-02");
    label("fresh-token", &format!("kubernetes.io/legacy-token-last-used={today}"));
    c.ok(
        SA,
        &[
            "patch",
            "configmap",
            "-n",
            "kube-system",
            "kube-apiserver-legacy-service-account-token-tracking",
            "--type=merge",
            "-p",
            r#"{"data":{"since":"2020-01-01"}}"#,
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    c.start_manager(&[
        "--controllers=legacy-serviceaccount-token-cleaner",
        "--legacy-service-account-token-clean-up-period=1s",
    ]);
    let invalid_since = |name: &str| {
        c.ok(
            SA,
            &["get", "secret", name, "-o", r"jsonpath={.metadata.labels.kubernetes\.io/legacy-token-invalid-since}"],
        )
    };
    eventually("old-invalid deleted", || {
        (!c.kubectl(SA, &["get", "secret", "old-invalid"]).status.success()).then_some(())
    });
    eventually("robot-token invalidated", || (invalid_since("robot-token") == today).then_some(()));
    assert_eq!(invalid_since("stale-token"), today);
    for kept in ["mounted-token", "fresh-token", "manual-token"] {
        assert_eq!(invalid_since(kept), "", "{kept} was invalidated");
    }

    // An invalidated token no longer authenticates (a bare 401); its use is still stamped and counted.
    label("robot-token", "kubernetes.io/legacy-token-last-used=2020-01-01");
    let out = c.kubectl(&robot, &["auth", "whoami"]);
    assert!(!out.status.success() && stderr(&out).contains("Unauthorized"), "{}", stderr(&out));
    assert_eq!(last_used("robot-token"), today);
    let metrics = c.ok(SA, &["get", "--raw", "/metrics"]);
    assert!(metrics.contains("serviceaccount_invalid_legacy_auto_token_uses_total 1"), "{metrics}");
    let log = std::fs::read_to_string(c.path("apiserver.log")).unwrap();
    assert!(
        log.contains(
            "the token in secret default/robot-token for service account default/robot has been marked invalid"
        ),
        "{log}"
    );
    // Removing the label lets it in again, as upstream's message says.
    label("robot-token", "kubernetes.io/legacy-token-invalid-since-");
    let out = c.kubectl(&robot, &["auth", "whoami"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
