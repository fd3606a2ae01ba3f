//! The front-proxy authenticator (`--requestheader-*`): a proxy that presents a certificate signed by
//! `--requestheader-client-ca-file` (with a CN in `--requestheader-allowed-names`, when that is set)
//! asserts the user in headers.

use crate::UserInfo;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct RequestHeaderConfig {
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub uid_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_prefixes: Vec<String>,
}

impl RequestHeaderConfig {
    /// Whether the proxy certificate's CN may assert identities.
    pub fn allows(&self, common_name: &str) -> bool {
        self.allowed_names.is_empty() || self.allowed_names.iter().any(|n| n == common_name)
    }

    /// The user the headers assert; `None` when no username header is set.
    pub fn user<'a>(&self, header: impl Fn(&str) -> Vec<&'a str>) -> Option<UserInfo> {
        let username = self.username_headers.iter().find_map(|h| header(h).first().map(|v| v.to_string()))?;
        if username.is_empty() {
            return None;
        }
        let uid = self.uid_headers.iter().find_map(|h| header(h).first().map(|v| v.to_string())).unwrap_or_default();
        let groups = self.group_headers.iter().flat_map(|h| header(h)).map(String::from).collect();
        Some(UserInfo { username, uid, groups, extra: BTreeMap::new() })
    }

    /// Every header a proxied request's identity is read from; the server strips them from requests
    /// that did not come through a trusted proxy.
    pub fn all_headers(&self) -> impl Iterator<Item = &String> {
        self.username_headers.iter().chain(&self.uid_headers).chain(&self.group_headers)
    }
}

/// Extra values: headers with one of `prefixes`, the rest of the name unescaped and lower-cased.
pub fn extra_from_headers<'a>(
    prefixes: &[String],
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, Vec<String>> {
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        for p in prefixes {
            if let Some(key) = lower.strip_prefix(&p.to_ascii_lowercase()) {
                extra.entry(unescape(key).to_ascii_lowercase()).or_default().push(value.to_string());
            }
        }
    }
    extra
}

/// Percent-decoding of header-name-safe keys, as upstream's `unescapeExtraKey`.
pub fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() && key.is_char_boundary(i + 3) {
            if let Ok(b) = u8::from_str_radix(&key[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers() {
        let cfg = RequestHeaderConfig {
            username_headers: vec!["X-Remote-User".into()],
            group_headers: vec!["X-Remote-Group".into()],
            extra_prefixes: vec!["X-Remote-Extra-".into()],
            ..Default::default()
        };
        let u = cfg
            .user(|h| match h {
                "X-Remote-User" => vec!["alice"],
                "X-Remote-Group" => vec!["a", "b"],
                _ => vec![],
            })
            .unwrap();
        assert_eq!((u.username.as_str(), u.groups.len()), ("alice", 2));
        let extra = extra_from_headers(
            &cfg.extra_prefixes,
            [("x-remote-extra-scopes", "s1"), ("x-remote-extra-a%2fb", "v"), ("other", "x")].into_iter(),
        );
        assert_eq!(extra["scopes"], ["s1"]);
        assert_eq!(extra["a/b"], ["v"]);
        assert!(cfg.allows("anyone"));
        assert_eq!(unescape("%zz"), "%zz");
    }
}
