//! Label selectors: upstream's string syntax (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`,
//! `!a`) and the matching rules.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// A parsed selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unable to parse requirement: {0}")]
pub struct ParseError(pub String);

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn values(list: &str, whole: &str) -> Result<Vec<String>, ParseError> {
    let inner = list
        .trim()
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .ok_or_else(|| ParseError(format!("{whole}: expected a parenthesized list of values")))?;
    let vals: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
    for v in &vals {
        crate::validation::label_value(v)
            .map_err(|e| ParseError(format!("{whole}: invalid label value: {v:?}: {e}")))?;
    }
    Ok(vals)
}

fn key(k: &str, whole: &str) -> Result<String, ParseError> {
    let k = k.trim();
    crate::validation::qualified_name(k).map_err(|e| ParseError(format!("{whole}: invalid label key {k:?}: {e}")))?;
    Ok(k.to_string())
}

impl Selector {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(Selector { requirements });
        }
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                return Err(ParseError(format!("{s}: found '', expected: identifier")));
            }
            let req = if let Some(rest) = p.strip_prefix('!') {
                Requirement::DoesNotExist(key(rest, p)?)
            } else if let Some((k, v)) = p.split_once("!=") {
                Requirement::NotEquals(key(k, p)?, label_value(v, p)?)
            } else if let Some((k, v)) = p.split_once("==") {
                Requirement::Equals(key(k, p)?, label_value(v, p)?)
            } else if let Some((k, v)) = p.split_once('=') {
                Requirement::Equals(key(k, p)?, label_value(v, p)?)
            } else if let Some(idx) = find_word(p, "notin") {
                Requirement::NotIn(key(&p[..idx], p)?, values(&p[idx + 5..], p)?)
            } else if let Some(idx) = find_word(p, "in") {
                Requirement::In(key(&p[..idx], p)?, values(&p[idx + 2..], p)?)
            } else {
                Requirement::Exists(key(p, p)?)
            };
            requirements.push(req);
        }
        Ok(Selector { requirements })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// From a `metav1.LabelSelector` (`matchLabels`, `matchExpressions`) as JSON.
    pub fn from_label_selector(sel: &serde_json::Value) -> Result<Self, ParseError> {
        let mut requirements = Vec::new();
        if let Some(m) = sel.get("matchLabels").and_then(|m| m.as_object()) {
            for (k, v) in m {
                requirements.push(Requirement::Equals(k.clone(), v.as_str().unwrap_or_default().to_string()));
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(|m| m.as_array()) {
            for e in exprs {
                let k = e.get("key").and_then(|k| k.as_str()).unwrap_or_default().to_string();
                let vals: Vec<String> = e
                    .get("values")
                    .and_then(|v| v.as_array())
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                requirements.push(match e.get("operator").and_then(|o| o.as_str()) {
                    Some("In") => Requirement::In(k, vals),
                    Some("NotIn") => Requirement::NotIn(k, vals),
                    Some("Exists") => Requirement::Exists(k),
                    Some("DoesNotExist") => Requirement::DoesNotExist(k),
                    other => return Err(ParseError(format!("{other:?} is not a valid label selector operator"))),
                });
            }
        }
        Ok(Selector { requirements })
    }
}

fn label_value(v: &str, whole: &str) -> Result<String, ParseError> {
    let v = v.trim();
    crate::validation::label_value(v).map_err(|e| ParseError(format!("{whole}: invalid label value: {v:?}: {e}")))?;
    Ok(v.to_string())
}

/// Position of `word` as a separate token (surrounded by whitespace) in `s`.
fn find_word(s: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(pos) = s[from..].find(word) {
        let idx = from + pos;
        let before = s[..idx].chars().last().is_some_and(char::is_whitespace);
        let after = s[idx + word.len()..].chars().next().is_some_and(|c| c.is_whitespace() || c == '(');
        if before && after {
            return Some(idx);
        }
        from = idx + word.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parse_and_match_every_operator() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("env", "prod")]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("tier in (front, back)", true),
            ("tier in (back)", false),
            ("tier notin (back)", true),
            ("missing notin (x)", true),
            ("tier notin (front)", false),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier in (front),!canary", true),
            ("app=web,env=dev", false),
            ("example.com/team", false),
        ];
        for (sel, want) in cases {
            assert_eq!(Selector::parse(sel).unwrap().matches(&l), want, "{sel}");
        }
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in ["app=web,", "Bad Key=x", "app=has space", "tier in front", "=x"] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn from_metav1_label_selector() {
        let sel = serde_json::json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]});
        let s = Selector::from_label_selector(&sel).unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
    }
}
