//! Field selectors: `a=b`, `a==b`, `a!=b`, comma-separated, matched against a resource's field set.

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<(String, bool, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid selector: {0}")]
pub struct ParseError(pub String);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let mut requirements = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(ParseError(format!("'{part}'; can't understand '{part}'")));
            };
            requirements.push((k.trim().to_string(), eq, v.trim().to_string()));
        }
        Ok(FieldSelector { requirements })
    }

    /// The fields this selector names.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|(k, _, _)| k.as_str())
    }

    pub fn matches(&self, fields: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|(k, eq, v)| {
            let have = fields.get(k).map(String::as_str).unwrap_or("");
            (have == v) == *eq
        })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let f: BTreeMap<String, String> = [("metadata.name", "a"), ("status.phase", "Running")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        assert!(FieldSelector::parse("metadata.name=a,status.phase!=Pending").unwrap().matches(&f));
        assert!(!FieldSelector::parse("metadata.name==b").unwrap().matches(&f));
        assert!(FieldSelector::parse("spec.nodeName=").unwrap().matches(&f));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
