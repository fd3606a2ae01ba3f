//! The request path's security filters, as upstream orders them: authentication (front proxy, x509
//! client certificates, bearer tokens from `--token-auth-file`, bootstrap tokens and service-account
//! JWTs, then anonymous), impersonation, and authorization (`--authorization-mode`: the
//! `system:masters` group first, then `Node`, `RBAC`, `AlwaysAllow`, `AlwaysDeny` in the order given).
//! The rules themselves live in the `apiserver-auth` crate; this module feeds them the request and
//! the objects they need from the store.

use crate::api::{Api, Query, ResourceRequest};
use crate::flags::Flags;
use apimachinery::ApiError;
use apiserver_auth::attributes::Attributes;
use apiserver_auth::jwt::{self, PublicKey, Signer};
use apiserver_auth::node::{self, Check};
use apiserver_auth::rbac::{Rule, Snapshot};
use apiserver_auth::requestheader::RequestHeaderConfig;
use apiserver_auth::tokenfile::TokenFile;
use apiserver_auth::x509::CaBundle;
use apiserver_auth::{bootstrap, UserInfo};
use http::HeaderMap;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The client certificates a connection presented, put in each request's extensions.
#[derive(Clone)]
pub struct PeerCerts(pub Arc<Vec<CertificateDer<'static>>>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    AlwaysAllow,
    AlwaysDeny,
    Rbac,
    Node,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::AlwaysAllow => "AlwaysAllow",
            Mode::AlwaysDeny => "AlwaysDeny",
            Mode::Rbac => "RBAC",
            Mode::Node => "Node",
        }
    }
}

/// An authorization decision: allowed or not, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    Deny(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

pub struct Auth {
    pub anonymous: bool,
    pub client_ca: Option<CaBundle>,
    pub front_proxy: Option<(CaBundle, RequestHeaderConfig)>,
    pub token_file: Option<TokenFile>,
    pub bootstrap_tokens: bool,
    pub sa_keys: Vec<PublicKey>,
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub signer: Option<Signer>,
    pub max_token_expiration: Option<Duration>,
    pub modes: Vec<Mode>,
    rbac: Mutex<Option<(Vec<i64>, Arc<Snapshot>)>>,
    node_rules: Vec<Rule>,
}

impl Default for Auth {
    /// What the API server does with no security flags: anonymous requests, everything allowed.
    fn default() -> Self {
        Auth {
            anonymous: true,
            client_ca: None,
            front_proxy: None,
            token_file: None,
            bootstrap_tokens: false,
            sa_keys: Vec::new(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            signer: None,
            max_token_expiration: None,
            modes: vec![Mode::AlwaysAllow],
            rbac: Mutex::new(None),
            node_rules: node::node_rules(),
        }
    }
}

pub fn bool_flag(v: &Option<String>, default: bool) -> Result<bool, String> {
    match v.as_deref() {
        None => Ok(default),
        Some("true" | "1" | "t" | "T" | "TRUE" | "True") => Ok(true),
        Some("false" | "0" | "f" | "F" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(format!("invalid boolean {other:?}")),
    }
}

/// A comma-separated flag value as its non-empty items.
pub fn comma_list(v: &Option<String>) -> Vec<String> {
    v.as_deref().unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

impl Auth {
    pub fn from_flags(flags: &Flags) -> Result<Auth, String> {
        let mut auth = Auth {
            anonymous: bool_flag(&flags.anonymous_auth, true).map_err(|e| format!("--anonymous-auth: {e}"))?,
            bootstrap_tokens: bool_flag(&flags.enable_bootstrap_token_auth, false)
                .map_err(|e| format!("--enable-bootstrap-token-auth: {e}"))?,
            ..Auth::default()
        };
        if let Some(p) = &flags.client_ca_file {
            auth.client_ca = Some(CaBundle::load(p).map_err(|e| format!("--client-ca-file: {e}"))?);
        }
        if let Some(p) = &flags.requestheader_client_ca_file {
            let ca = CaBundle::load(p).map_err(|e| format!("--requestheader-client-ca-file: {e}"))?;
            let cfg = RequestHeaderConfig {
                allowed_names: comma_list(&flags.requestheader_allowed_names),
                username_headers: comma_list(&flags.requestheader_username_headers),
                uid_headers: comma_list(&flags.requestheader_uid_headers),
                group_headers: comma_list(&flags.requestheader_group_headers),
                extra_prefixes: comma_list(&flags.requestheader_extra_headers_prefix),
            };
            if cfg.username_headers.is_empty() {
                return Err("--requestheader-username-headers is required with --requestheader-client-ca-file".into());
            }
            auth.front_proxy = Some((ca, cfg));
        }
        if let Some(p) = &flags.token_auth_file {
            auth.token_file = Some(TokenFile::load(p).map_err(|e| format!("--token-auth-file: {e}"))?);
        }
        for p in &flags.service_account_key_file {
            auth.sa_keys.extend(PublicKey::load_all(p).map_err(|e| format!("--service-account-key-file: {e}"))?);
        }
        if let Some(p) = &flags.service_account_signing_key_file {
            let signer = Signer::load(p).map_err(|e| format!("--service-account-signing-key-file: {e}"))?;
            // The signing key always verifies its own tokens, as upstream adds it to the key set.
            let public = signer.public_key();
            if !auth.sa_keys.iter().any(|k| k.kid == public.kid) {
                auth.sa_keys.push(public);
            }
            auth.signer = Some(signer);
            if flags.service_account_issuer.is_empty() {
                return Err("--service-account-issuer is required with --service-account-signing-key-file".into());
            }
        }
        auth.issuers = flags.service_account_issuer.clone();
        auth.audiences = match &flags.api_audiences {
            Some(_) => comma_list(&flags.api_audiences),
            None => auth.issuers.clone(),
        };
        if let Some(max) = &flags.service_account_max_token_expiration {
            auth.max_token_expiration =
                Some(pki::parse_go_duration(max).map_err(|e| format!("--service-account-max-token-expiration: {e}"))?);
        }
        auth.modes = Vec::new();
        for m in flags.authorization_mode.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let mode = match m {
                "AlwaysAllow" => Mode::AlwaysAllow,
                "AlwaysDeny" => Mode::AlwaysDeny,
                "RBAC" => Mode::Rbac,
                "Node" => Mode::Node,
                other => {
                    return Err(format!(
                        "--authorization-mode: authorization mode {other:?} is not supported (AlwaysAllow, AlwaysDeny, Node, RBAC)"
                    ))
                }
            };
            if auth.modes.contains(&mode) {
                return Err(format!("--authorization-mode: {m} is given twice"));
            }
            auth.modes.push(mode);
        }
        if auth.modes.is_empty() {
            auth.modes.push(Mode::AlwaysAllow);
        }
        Ok(auth)
    }

    /// Whether the TLS layer should ask clients for certificates.
    pub fn wants_client_certs(&self) -> Vec<&CaBundle> {
        self.client_ca.iter().chain(self.front_proxy.as_ref().map(|(ca, _)| ca)).collect()
    }

    /// Who is asking. `Err` is a 401: credentials were presented and none was accepted, or there were
    /// none and anonymous requests are off.
    pub async fn authenticate(
        &self,
        api: &Api,
        headers: &HeaderMap,
        peer: Option<&PeerCerts>,
    ) -> Result<UserInfo, ApiError> {
        let result = self.authenticate_inner(api, headers, peer).await;
        let label = if result.is_ok() { "success" } else { "failure" };
        api.metrics.authn_attempts.with_label_values(&[label]).inc();
        result.map(UserInfo::authenticated)
    }

    async fn authenticate_inner(
        &self,
        api: &Api,
        headers: &HeaderMap,
        peer: Option<&PeerCerts>,
    ) -> Result<UserInfo, ApiError> {
        let mut presented = false;
        let now = UnixTime::now();
        if let Some(certs) = peer.filter(|c| !c.0.is_empty()) {
            presented = true;
            // A front proxy: its certificate is checked against the request-header CA only.
            if let Some((ca, cfg)) = &self.front_proxy {
                if ca.verify(&certs.0, now).is_ok() {
                    let cn = apiserver_auth::x509::user_from_cert(&certs.0[0]).map(|u| u.username).unwrap_or_default();
                    if cfg.allows(&cn) {
                        let get =
                            |h: &str| headers.get_all(h).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
                        if let Some(mut user) = cfg.user(get) {
                            user.extra = apiserver_auth::requestheader::extra_from_headers(
                                &cfg.extra_prefixes,
                                headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
                            );
                            return Ok(user);
                        }
                    }
                }
            }
            if let Some(ca) = &self.client_ca {
                match ca.verify(&certs.0, now) {
                    Ok(()) => match apiserver_auth::x509::user_from_cert(&certs.0[0]) {
                        Ok(u) => return Ok(u),
                        Err(e) => tracing::info!(error = %e, "client certificate rejected"),
                    },
                    Err(e) => tracing::info!(error = %e, "client certificate rejected"),
                }
            }
        }
        let token_authenticators = self.token_file.is_some() || self.bootstrap_tokens || !self.sa_keys.is_empty();
        if let Some(token) = bearer(headers).filter(|_| token_authenticators) {
            presented = true;
            if let Some(u) = self.authenticate_token(api, token).await {
                return Ok(u);
            }
            tracing::info!("bearer token rejected");
        }
        if !presented && self.anonymous {
            return Ok(UserInfo::anonymous());
        }
        Err(ApiError::unauthorized())
    }

    /// The user a bearer token names, trying each token authenticator (TokenReview uses this too).
    pub async fn authenticate_token(&self, api: &Api, token: &str) -> Option<UserInfo> {
        if let Some(u) = self.token_file.as_ref().and_then(|f| f.authenticate(token)) {
            return Some(u);
        }
        if self.bootstrap_tokens {
            if let Some((id, _)) = bootstrap::parse(token) {
                let secret = get_object(api, "", "secrets", Some("kube-system"), &bootstrap::secret_name(id)).await?;
                return bootstrap::authenticate(token, &secret, now_unix());
            }
        }
        if !self.sa_keys.is_empty() && token.matches('.').count() == 2 {
            return self.service_account_token(api, token, &self.audiences).await.map(|(u, _)| u);
        }
        None
    }

    /// A service-account JWT's user and audiences, checked against `audiences` and the live objects it
    /// is bound to.
    pub async fn service_account_token(
        &self,
        api: &Api,
        token: &str,
        audiences: &[String],
    ) -> Option<(UserInfo, Vec<String>)> {
        let claims = match jwt::verify(token, &self.sa_keys) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(error = %e, "service-account token rejected");
                return None;
            }
        };
        let issuer = claims["iss"].as_str()?.to_string();
        if issuer == jwt::LEGACY_ISSUER {
            return self.legacy_token(api, token, &claims).await.map(|u| (u, Vec::new()));
        }
        if !self.issuers.contains(&issuer) {
            return None;
        }
        if let Err(e) = jwt::check_times(&claims, now_unix()) {
            tracing::info!(reason = e, "service-account token rejected");
            return None;
        }
        let matched = jwt::audience_matches(&claims, audiences)?;
        let bound = jwt::BoundClaims::parse(&claims)?;
        let (sa_name, sa_uid) = &bound.service_account;
        let sa = get_object(api, "", "serviceaccounts", Some(&bound.namespace), sa_name).await?;
        if uid(&sa) != sa_uid {
            return None;
        }
        let mut user = apiserver_auth::service_account_user(&bound.namespace, sa_name, sa_uid);
        if let Some((name, pod_uid)) = &bound.pod {
            let pod = get_object(api, "", "pods", Some(&bound.namespace), name).await?;
            if uid(&pod) != pod_uid {
                return None;
            }
            user.extra.insert("authentication.kubernetes.io/pod-name".into(), vec![name.clone()]);
            user.extra.insert("authentication.kubernetes.io/pod-uid".into(), vec![pod_uid.clone()]);
        }
        if let Some((name, secret_uid)) = &bound.secret {
            let secret = get_object(api, "", "secrets", Some(&bound.namespace), name).await?;
            if uid(&secret) != secret_uid {
                return None;
            }
        }
        if let Some((name, node_uid)) = &bound.node {
            if bound.pod.is_none() {
                let node = get_object(api, "", "nodes", None, name).await?;
                if uid(&node) != node_uid {
                    return None;
                }
            }
            user.extra.insert("authentication.kubernetes.io/node-name".into(), vec![name.clone()]);
            user.extra.insert("authentication.kubernetes.io/node-uid".into(), vec![node_uid.clone()]);
        }
        if let Some(jti) = &bound.jti {
            user.extra.insert("authentication.kubernetes.io/credential-id".into(), vec![format!("JTI={jti}")]);
        }
        Some((user, matched))
    }

    /// A legacy token: its Secret must still exist, hold this very token, and name the live account.
    /// As upstream's legacy-token tracking: a Secret labelled `kubernetes.io/legacy-token-invalid-since`
    /// (by the legacy-serviceaccount-token-cleaner) no longer authenticates; every use stamps the
    /// Secret's `kubernetes.io/legacy-token-last-used` label with the day; tokens the account lists
    /// in `secrets` (auto-generated ones) get a warning.
    async fn legacy_token(&self, api: &Api, token: &str, claims: &Value) -> Option<UserInfo> {
        let c = |k: &str| claims.get(format!("kubernetes.io/serviceaccount/{k}")).and_then(Value::as_str);
        let (ns, secret_name, sa_name, sa_uid) =
            (c("namespace")?, c("secret.name")?, c("service-account.name")?, c("service-account.uid")?);
        let secret = get_object(api, "", "secrets", Some(ns), secret_name).await?;
        use base64::Engine;
        let stored = secret.pointer("/data/token").and_then(Value::as_str)?;
        let stored = base64::engine::general_purpose::STANDARD.decode(stored).ok()?;
        if stored != token.as_bytes() || secret.pointer("/metadata/deletionTimestamp").is_some() {
            return None;
        }
        let sa = get_object(api, "", "serviceaccounts", Some(ns), sa_name).await?;
        if uid(&sa) != sa_uid || sa.pointer("/metadata/deletionTimestamp").is_some() {
            return None;
        }
        let label = |k: &str| secret.pointer("/metadata/labels").and_then(|l| l.get(k)).and_then(Value::as_str);
        if label(INVALID_SINCE_LABEL).is_some_and(|v| !v.is_empty()) {
            api.metrics.invalid_legacy_token_uses.inc();
            mark_legacy_token_used(api, &secret).await;
            tracing::info!(
                "the token in secret {ns}/{secret_name} for service account {ns}/{sa_name} has been marked invalid. \
                 Use tokens from the TokenRequest API or manually created secret-based tokens, or remove the \
                 '{INVALID_SINCE_LABEL}' label from the secret to temporarily allow use of this token"
            );
            return None;
        }
        let listed = sa
            .get("secrets")
            .and_then(Value::as_array)
            .is_some_and(|refs| refs.iter().any(|r| r.get("name").and_then(Value::as_str) == Some(secret_name)));
        if listed {
            api.metrics.legacy_auto_token_uses.inc();
            crate::admission::warn(
                "Use tokens from the TokenRequest API or manually created secret-based tokens instead of \
                 auto-generated secret-based tokens."
                    .into(),
            );
        } else {
            api.metrics.legacy_manual_token_uses.inc();
        }
        mark_legacy_token_used(api, &secret).await;
        Some(apiserver_auth::service_account_user(ns, sa_name, sa_uid))
    }

    /// Applies `Impersonate-*` headers: each requested identity part must be allowed by the
    /// `impersonate` verb.
    pub async fn impersonate(&self, api: &Api, user: UserInfo, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
        let values = |h: &str| -> Vec<String> {
            headers.get_all(h).iter().filter_map(|v| v.to_str().ok()).map(String::from).collect()
        };
        let target_user = values("Impersonate-User").into_iter().next();
        let groups = values("Impersonate-Group");
        let target_uid = values("Impersonate-Uid").into_iter().next();
        let mut extra: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (k, v) in headers {
            if let Some(key) = k.as_str().strip_prefix("impersonate-extra-") {
                let key = apiserver_auth::requestheader::unescape(key);
                extra.entry(key).or_default().extend(v.to_str().ok().map(String::from));
            }
        }
        let Some(target) = target_user else {
            if !groups.is_empty() || target_uid.is_some() || !extra.is_empty() {
                return Err(ApiError::internal(
                    "requested impersonation of groups, a uid or extras without impersonating a user",
                ));
            }
            return Ok(user);
        };
        let check = |resource: &str, group: &str, namespace: &str, name: &str| Attributes {
            user: user.clone(),
            verb: "impersonate".into(),
            resource_request: true,
            namespace: namespace.into(),
            api_group: group.into(),
            resource: resource.into(),
            name: name.into(),
            ..Default::default()
        };
        let mut checks = Vec::new();
        let mut result = UserInfo { username: target.clone(), ..Default::default() };
        if let Some((ns, name)) =
            UserInfo::new(target.clone(), vec![]).service_account().map(|(a, b)| (a.to_string(), b.to_string()))
        {
            checks.push(check("serviceaccounts", "", &ns, &name));
            if groups.is_empty() {
                result.groups = apiserver_auth::service_account_user(&ns, &name, "").groups;
            }
        } else {
            checks.push(check("users", "", "", &target));
        }
        for g in &groups {
            checks.push(check("groups", "", "", g));
        }
        if let Some(u) = &target_uid {
            checks.push(check("uids", "authentication.k8s.io", "", u));
        }
        for (k, vs) in &extra {
            for v in vs {
                let mut a = check("userextras", "authentication.k8s.io", "", v);
                a.subresource = k.clone();
                checks.push(a);
            }
        }
        for a in checks {
            if !self.authorize(api, &a).await.allowed() {
                let gr = apimachinery::GroupResource::new(&a.api_group, &a.resource);
                return Err(ApiError::forbidden(&gr, &a.name, &a.forbidden_message()));
            }
        }
        result.groups.extend(groups);
        result.uid = target_uid.unwrap_or_default();
        result.extra = extra;
        Ok(result.authenticated())
    }

    /// The decision of the authorizer chain.
    pub async fn authorize(&self, api: &Api, a: &Attributes) -> Decision {
        let (decision, name) = self.authorize_inner(api, a).await;
        let label = if decision.allowed() { "allowed" } else { "denied" };
        api.metrics.authz_decisions.with_label_values(&[name, name, label]).inc();
        decision
    }

    async fn authorize_inner(&self, api: &Api, a: &Attributes) -> (Decision, &'static str) {
        if a.user.in_group(apiserver_auth::MASTERS) {
            return (Decision::Allow(String::new()), "Privileged");
        }
        let mut reasons = Vec::new();
        for mode in &self.modes {
            match mode {
                Mode::AlwaysAllow => return (Decision::Allow(String::new()), mode.name()),
                Mode::AlwaysDeny => return (Decision::Deny("Everything is forbidden.".into()), mode.name()),
                Mode::Rbac => {
                    if let Some(reason) = self.rbac_decision(api, a).await {
                        return (Decision::Allow(reason), mode.name());
                    }
                }
                Mode::Node => match self.node_decision(api, a).await {
                    Ok(()) => return (Decision::Allow(String::new()), mode.name()),
                    Err(Some(reason)) => reasons.push(reason),
                    Err(None) => {}
                },
            }
        }
        (Decision::Deny(reasons.join("\n")), "none")
    }

    /// The current RBAC snapshot, rebuilt when one of the four caches moved past the one it was built
    /// from. With `fresh`, the caches are first brought up to the store's current revision (a deny is
    /// rechecked that way, so a binding created just before a request is always seen).
    pub async fn rbac_snapshot(&self, api: &Api, fresh: bool) -> Result<Arc<Snapshot>, ApiError> {
        let min = if fresh { api.store.current_revision().await.map_err(ApiError::internal)? } else { 0 };
        let caches: Vec<_> = ["clusterroles", "roles", "clusterrolebindings", "rolebindings"]
            .into_iter()
            .map(|p| api.registry.find("rbac.authorization.k8s.io", "v1", p).expect("rbac resources registered"))
            .map(|res| (api.cache(res), apiserver_storage::keys::list_prefix(&res.storage_path(), None)))
            .collect();
        // The common case: no cache moved since the snapshot was built, so nothing is listed.
        if !fresh {
            let now: Option<Vec<i64>> = caches.iter().map(|(c, _)| c.revision()).collect();
            if let (Some(now), Some((seen, snap))) = (now, self.rbac.lock().unwrap().as_ref()) {
                if *seen == now {
                    return Ok(snap.clone());
                }
            }
        }
        let mut lists = Vec::new();
        let mut revs = Vec::new();
        for (cache, prefix) in &caches {
            let (items, rev) = cache.list(prefix, min).await.map_err(ApiError::internal)?;
            revs.push(rev);
            lists.push(items);
        }
        if let Some((seen, snap)) = self.rbac.lock().unwrap().as_ref() {
            if *seen == revs {
                return Ok(snap.clone());
            }
        }
        let mut parsed: Vec<Vec<Value>> = lists
            .into_iter()
            .map(|l| l.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect())
            .collect();
        let rb = parsed.pop().unwrap_or_default();
        let crb = parsed.pop().unwrap_or_default();
        let roles = parsed.pop().unwrap_or_default();
        let cr = parsed.pop().unwrap_or_default();
        let snap = Arc::new(Snapshot::new(cr, roles, crb, rb));
        *self.rbac.lock().unwrap() = Some((revs, snap.clone()));
        Ok(snap)
    }

    async fn rbac_decision(&self, api: &Api, a: &Attributes) -> Option<String> {
        for fresh in [false, true] {
            match self.rbac_snapshot(api, fresh).await {
                Ok(snap) => {
                    if let Some(g) = snap.authorize(a) {
                        return Some(g.reason);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "RBAC policy unavailable");
                    return None;
                }
            }
        }
        None
    }

    /// `Ok` allows; `Err(Some(reason))` is no opinion with a reason.
    async fn node_decision(&self, api: &Api, a: &Attributes) -> Result<(), Option<String>> {
        let Some(node_name) = a.user.node_name() else { return Err(None) };
        match node::classify(a) {
            Check::Rules => {
                if self.node_rules.iter().any(|r| r.allows(a)) {
                    Ok(())
                } else {
                    Err(None)
                }
            }
            Check::Graph(kind) => {
                if !node::verb_allowed(a, Some(kind)) {
                    return Err(Some(format!(
                        "can only {} {} with a name",
                        if kind == node::Kind::ServiceAccount { "create tokens for" } else { "get" },
                        a.resource
                    )));
                }
                let pods = pods_on_node(api, node_name, Some(&a.namespace)).await;
                if pods.iter().any(|p| node::pod_references(p, kind, &a.name)) {
                    Ok(())
                } else {
                    Err(Some(node::no_relationship(node_name)))
                }
            }
            Check::Volume => {
                if !node::verb_allowed(a, None) {
                    return Err(Some(format!("can only get {} with a name", a.resource)));
                }
                for pod in pods_on_node(api, node_name, None).await {
                    let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
                    for v in pod.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten() {
                        let Some(claim) = v.pointer("/persistentVolumeClaim/claimName").and_then(Value::as_str) else {
                            continue;
                        };
                        if let Some(pvc) = get_object(api, "", "persistentvolumeclaims", Some(&ns), claim).await {
                            if pvc.pointer("/spec/volumeName").and_then(Value::as_str) == Some(a.name.as_str()) {
                                return Ok(());
                            }
                        }
                    }
                }
                Err(Some(node::no_relationship(node_name)))
            }
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Upstream's labels for legacy service-account token Secrets.
pub const LAST_USED_LABEL: &str = "kubernetes.io/legacy-token-last-used";
pub const INVALID_SINCE_LABEL: &str = "kubernetes.io/legacy-token-invalid-since";

/// `YYYY-MM-DD`, the form of the legacy-token labels and tracking ConfigMap.
pub const DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// A time's UTC day as [`DATE`].
pub fn utc_date(t: time::OffsetDateTime) -> String {
    t.format(DATE).expect("date formats")
}

/// Stamps a legacy token Secret with today's date, unless it already says today (or tomorrow, for a
/// server whose clock is behind), by a merge patch carrying the Secret's uid, as upstream's
/// authenticator does. A failure is logged: it never fails the request.
async fn mark_legacy_token_used(api: &Api, secret: &Value) {
    let now = time::OffsetDateTime::now_utc();
    let (today, tomorrow) = (utc_date(now), utc_date(now + time::Duration::days(1)));
    let last = secret.pointer("/metadata/labels").and_then(|l| l.get(LAST_USED_LABEL)).and_then(Value::as_str);
    if last == Some(today.as_str()) || last == Some(tomorrow.as_str()) {
        return;
    }
    let (ns, name) = (crate::objects::namespace(secret), crate::objects::name(secret));
    let Some(res) = api.registry.find("", "v1", "secrets") else { return };
    let rr = ResourceRequest { res, namespace: Some(ns.to_string()), name: Some(name.to_string()), sub: None };
    let patch = json!({"metadata": {"uid": uid(secret), "labels": {LAST_USED_LABEL: today}}});
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/merge-patch+json"));
    if let Err(e) = api.patch(&rr, &headers, patch.to_string().as_bytes(), &Query::default()).await {
        tracing::error!(secret = %format!("{ns}/{name}"), error = %e.message, "failed to label legacy service account token with its last-used date");
    }
}

fn uid(obj: &Value) -> &str {
    obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("")
}

/// One object read from the store (a quorum read, so deletions are seen at once).
pub async fn get_object(api: &Api, group: &str, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
    let res = api.registry.resources.iter().find(|r| r.group == group && r.plural == plural)?;
    let rr = ResourceRequest { res, namespace: namespace.map(String::from), name: Some(name.to_string()), sub: None };
    api.get(&rr, &Query::default()).await.ok()
}

/// The pods bound to a node (in one namespace, when given), from the watch cache.
async fn pods_on_node(api: &Api, node: &str, namespace: Option<&str>) -> Vec<Value> {
    let mut pods = api.list_cached("", "pods", namespace, true).await;
    pods.retain(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node));
    pods
}

/// The 403 for a request the authorizers did not allow, as upstream's forbidden writer words it.
pub fn forbidden(a: &Attributes, reason: &str) -> ApiError {
    let mut why = a.forbidden_message();
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    if !a.resource_request {
        let mut e = ApiError::forbidden(&apimachinery::GroupResource::new("", ""), "", &why);
        e.message = format!("forbidden: {why}");
        e.details = Some(json!({}));
        return e;
    }
    ApiError::forbidden(&apimachinery::GroupResource::new(&a.api_group, &a.resource), &a.name, &why)
}
