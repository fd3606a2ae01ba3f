//! Bootstrap tokens (`--enable-bootstrap-token-auth`): `<id>.<secret>` checked against the Secret
//! `bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` in kube-system, as upstream's
//! bootstrap authenticator does.

use crate::UserInfo;
use base64::Engine;
use serde_json::Value;

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const GROUP: &str = "system:bootstrappers";

/// `(id, secret)` of a well-formed bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`).
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

pub fn secret_name(id: &str) -> String {
    format!("bootstrap-token-{id}")
}

fn data(secret: &Value, key: &str) -> Option<String> {
    let b64 = secret.get("data")?.get(key)?.as_str()?;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok()
}

/// The user the token names when `secret` (the token's Secret) accepts it at `now` (unix seconds).
pub fn authenticate(token: &str, secret: &Value, now: i64) -> Option<UserInfo> {
    let (id, token_secret) = parse(token)?;
    if secret["type"].as_str() != Some(SECRET_TYPE) || secret.pointer("/metadata/deletionTimestamp").is_some() {
        return None;
    }
    // Constant-time comparison of the secret part, as upstream.
    let stored = data(secret, "token-secret")?;
    let same = stored.len() == token_secret.len()
        && stored.bytes().zip(token_secret.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if data(secret, "token-id")?.as_str() != id || !same {
        return None;
    }
    if let Some(exp) = data(secret, "expiration") {
        let t = time::OffsetDateTime::parse(&exp, &time::format_description::well_known::Rfc3339).ok()?;
        if t.unix_timestamp() <= now {
            return None;
        }
    }
    if data(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return None;
    }
    let mut groups = vec![GROUP.to_string()];
    if let Some(extra) = data(secret, "auth-extra-groups") {
        for g in extra.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            // Only groups under system:bootstrappers: may be added.
            if !g.starts_with("system:bootstrappers:") {
                return None;
            }
            if !groups.iter().any(|x| x == g) {
                groups.push(g.to_string());
            }
        }
    }
    Some(UserInfo::new(format!("system:bootstrap:{id}"), groups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn accepts_only_matching_live_tokens() {
        let secret = |exp: &str, usage: &str| {
            json!({"type": SECRET_TYPE, "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
                "data": {"token-id": b("abcdef"), "token-secret": b("0123456789abcdef"), "expiration": b(exp),
                         "usage-bootstrap-authentication": b(usage), "auth-extra-groups": b("system:bootstrappers:kubeadm:default-node-token")}})
        };
        let good = secret("2099-01-01T00:00:00Z", "true");
        let u = authenticate("abcdef.0123456789abcdef", &good, 0).unwrap();
        assert_eq!(u.username, "system:bootstrap:abcdef");
        assert_eq!(u.groups, ["system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token"]);
        assert!(authenticate("abcdef.0123456789abcdeX", &good, 0).is_none());
        assert!(authenticate("abcdef.0123456789abcdee", &good, 0).is_none());
        assert!(
            authenticate("abcdef.0123456789abcdef", &secret("2000-01-01T00:00:00Z", "true"), 2_000_000_000).is_none()
        );
        assert!(authenticate("abcdef.0123456789abcdef", &secret("2099-01-01T00:00:00Z", "false"), 0).is_none());
        assert_eq!(parse("abc.def"), None);
    }
}
