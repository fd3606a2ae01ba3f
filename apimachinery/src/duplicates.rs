//! Duplicate keys in a JSON document, which `fieldValidation=Strict|Warn` reports as upstream's strict
//! decoder does: `duplicate field "spec.replicas"` (paths joined with `.`, list items as `[i]`).
//!
//! ```
//! let dups = apimachinery::duplicates::duplicate_fields(br#"{"spec": {"replicas": 1, "replicas": 2}}"#);
//! assert_eq!(dups, vec!["spec.replicas"]);
//! ```

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Paths of the keys that appear more than once in their object, in document order. A document that
/// is not valid JSON yields nothing (decoding reports it).
pub fn duplicate_fields(json: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(json);
    if (Walk { path: String::new(), found: &mut found }).deserialize(&mut de).is_err() {
        return Vec::new();
    }
    found
}

struct Walk<'a> {
    path: String,
    found: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
            if !seen.insert(key) && !self.found.contains(&path) {
                self.found.push(path.clone());
            }
            map.next_value_seed(Walk { path, found: self.found })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq.next_element_seed(Walk { path: format!("{}[{i}]", self.path), found: self.found })?.is_some() {
            i += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_listed_duplicates_are_named_once_in_order() {
        let doc = br#"{"metadata": {"name": "a", "name": "b", "name": "c"},
                       "spec": {"containers": [{"name": "x", "image": "i", "image": "j"}]},
                       "kind": "Pod", "kind": "Pod"}"#;
        assert_eq!(duplicate_fields(doc), vec!["metadata.name", "spec.containers[0].image", "kind"]);
        assert!(duplicate_fields(br#"{"a": {"b": 1}, "c": {"b": 1}}"#).is_empty());
        assert!(duplicate_fields(b"{not json").is_empty());
    }
}
