//! Strategic merge patch, as upstream applies it: maps merge, `null` deletes, lists with a merge key
//! merge element by element, primitive lists with the merge strategy are unions, other lists are
//! replaced; directives `$patch: replace|delete|merge`, `$retainKeys`, `$setElementOrder/<field>`,
//! `$deleteFromPrimitiveList/<field>`.
//!
//! Which lists merge, and on which key, comes from a [`PatchMeta`] (the API server derives it from the
//! resource schemas plus upstream's patch-strategy table), so this module knows no resource.

use serde_json::{Map, Value};

/// How a field is patched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldStrategy {
    /// `patchStrategy` contains `merge`.
    pub merge: bool,
    /// `patchMergeKey`, for lists of objects.
    pub merge_key: Option<String>,
    /// `x-kubernetes-list-type` (and `-list-map-keys`): how field ownership treats the list.
    pub list: ListType,
    /// A list without `omitempty` (present, as null, in the Go zero value).
    pub always_present: bool,
}

/// `x-kubernetes-list-type`: lists not marked otherwise are atomic (owned as a whole).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ListType {
    #[default]
    Atomic,
    /// Items are scalars owned one by one.
    Set,
    /// Items are objects identified by these keys.
    Map(Vec<&'static str>),
}

/// Patch metadata of one object type: how each field is patched, and the metadata of its value (for
/// lists, of its elements).
pub trait PatchMeta {
    fn field(&self, name: &str) -> (FieldStrategy, Option<Box<dyn PatchMeta + '_>>);
    /// A map with arbitrary keys (`map[string]T`, e.g. labels) rather than a struct.
    fn is_map(&self) -> bool {
        false
    }
    /// `x-kubernetes-map-type: atomic`: the object is owned as a whole.
    fn is_atomic(&self) -> bool {
        false
    }
}

/// Metadata that knows nothing: every list is replaced (a plain JSON merge patch, plus directives).
pub struct NoMeta;

impl PatchMeta for NoMeta {
    fn field(&self, _: &str) -> (FieldStrategy, Option<Box<dyn PatchMeta + '_>>) {
        (FieldStrategy::default(), None)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("invalid patch: {0}")]
    Invalid(String),
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// A patch value with every directive removed (what lands in the object where nothing was there).
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
        other => other.clone(),
    }
}

/// Applies `patch` to `target`.
pub fn apply(target: &mut Value, patch: &Value, meta: &dyn PatchMeta) -> Result<(), PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::Invalid("a strategic merge patch must be a JSON object".into()));
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    merge_map(target.as_object_mut().expect("object"), p, meta)
}

fn merge_map(
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    meta: &dyn PatchMeta,
) -> Result<(), PatchError> {
    match patch.get(DIRECTIVE).and_then(Value::as_str) {
        Some("replace") => {
            *orig = strip(&Value::Object(patch.clone())).as_object().cloned().unwrap_or_default();
            return Ok(());
        }
        Some("delete") => {
            orig.clear();
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(PatchError::Invalid(format!("unknown patch type: {other}"))),
    }
    for (k, v) in patch {
        if k.starts_with('$') {
            if let Some(field) = k.strip_prefix(DELETE_PRIMITIVE) {
                let remove = v.as_array().cloned().unwrap_or_default();
                if let Some(Value::Array(list)) = orig.get_mut(field) {
                    list.retain(|x| !remove.contains(x));
                }
            }
            continue;
        }
        if v.is_null() {
            orig.remove(k);
            continue;
        }
        let (strategy, child) = meta.field(k);
        let child: &dyn PatchMeta = child.as_deref().unwrap_or(&NoMeta);
        match v {
            Value::Object(pm) => match orig.get_mut(k) {
                Some(Value::Object(om)) => merge_map(om, pm, child)?,
                _ => {
                    if pm.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                        orig.remove(k);
                    } else {
                        orig.insert(k.clone(), strip(v));
                    }
                }
            },
            Value::Array(pl) => {
                let current = orig.remove(k);
                let merged = match (strategy.merge, &strategy.merge_key, current) {
                    (true, Some(key), Some(Value::Array(ol))) => merge_keyed_list(ol, pl, key, child)?,
                    (true, None, Some(Value::Array(mut ol))) => {
                        for x in pl {
                            if !ol.contains(x) {
                                ol.push(x.clone());
                            }
                        }
                        ol
                    }
                    _ => pl.iter().filter(|x| !is_delete_directive(x)).map(strip).collect(),
                };
                orig.insert(k.clone(), Value::Array(merged));
            }
            other => {
                orig.insert(k.clone(), other.clone());
            }
        }
    }
    // Ordering directives after the merge.
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(SET_ORDER) {
            let (strategy, _) = meta.field(field);
            if let (Some(Value::Array(list)), Some(order)) = (orig.get_mut(field), v.as_array()) {
                reorder(list, order, strategy.merge_key.as_deref());
            }
        }
    }
    if let Some(keys) = patch.get(RETAIN_KEYS).and_then(Value::as_array) {
        let keep: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn is_delete_directive(v: &Value) -> bool {
    v.get(DIRECTIVE).and_then(Value::as_str) == Some("delete")
}

fn merge_keyed_list(
    mut orig: Vec<Value>,
    patch: &[Value],
    key: &str,
    meta: &dyn PatchMeta,
) -> Result<Vec<Value>, PatchError> {
    for p in patch {
        let Some(pm) = p.as_object() else {
            return Err(PatchError::Invalid(format!("list with merge key {key:?} holds a non-object: {p}")));
        };
        let Some(kv) = pm.get(key) else {
            if pm.get(DIRECTIVE).and_then(Value::as_str) == Some("replace") {
                // `$patch: replace` as a list element replaces the whole list with the rest of the patch.
                return Ok(patch.iter().filter(|x| x.get(DIRECTIVE).is_none()).map(strip).collect());
            }
            return Err(PatchError::Invalid(format!("map: {p} does not contain declared merge key: {key}")));
        };
        let pos = orig.iter().position(|o| o.get(key) == Some(kv));
        match (pm.get(DIRECTIVE).and_then(Value::as_str), pos) {
            (Some("delete"), Some(i)) => {
                orig.remove(i);
            }
            (Some("delete"), None) => {}
            (Some("replace"), Some(i)) => orig[i] = strip(p),
            (_, Some(i)) => {
                let target = orig[i]
                    .as_object_mut()
                    .ok_or_else(|| PatchError::Invalid("list element is not an object".into()))?;
                merge_map(target, pm, meta)?;
            }
            (_, None) => orig.push(strip(p)),
        }
    }
    Ok(orig)
}

/// Orders `list` as `order` says (elements named by merge key, or the values themselves for primitive
/// lists); elements the order does not name keep their relative order after the named ones.
fn reorder(list: &mut [Value], order: &[Value], key: Option<&str>) {
    let rank = |v: &Value| -> usize {
        let id = match key {
            Some(k) => v.get(k),
            None => Some(v),
        };
        order
            .iter()
            .position(|o| match key {
                Some(k) => o.get(k) == id,
                None => Some(o) == id,
            })
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// containers merge on `name`, their `ports` on `containerPort`; `finalizers` is a merged primitive list.
    struct PodMeta;
    struct ContainerMeta;

    impl PatchMeta for PodMeta {
        fn field(&self, name: &str) -> (FieldStrategy, Option<Box<dyn PatchMeta + '_>>) {
            match name {
                "containers" => (
                    FieldStrategy { merge: true, merge_key: Some("name".into()), ..Default::default() },
                    Some(Box::new(ContainerMeta)),
                ),
                "finalizers" => (FieldStrategy { merge: true, merge_key: None, ..Default::default() }, None),
                "spec" | "metadata" => (FieldStrategy::default(), Some(Box::new(PodMeta))),
                _ => (FieldStrategy::default(), None),
            }
        }
    }

    impl PatchMeta for ContainerMeta {
        fn field(&self, name: &str) -> (FieldStrategy, Option<Box<dyn PatchMeta + '_>>) {
            match name {
                "ports" => {
                    (FieldStrategy { merge: true, merge_key: Some("containerPort".into()), ..Default::default() }, None)
                }
                _ => (FieldStrategy::default(), None),
            }
        }
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
            "spec": {
                "containers": [
                    {"name": "web", "image": "web:1", "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "1"}]},
                    {"name": "side", "image": "side:1"}
                ],
                "tolerations": [{"key": "k"}]
            }
        })
    }

    fn patched(patch: Value) -> Value {
        let mut p = pod();
        apply(&mut p, &patch, &PodMeta).unwrap();
        p
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        let p = patched(json!({"metadata": {"labels": {"a": null, "c": "3"}}}));
        assert_eq!(p["metadata"]["labels"], json!({"b": "2", "c": "3"}));
    }

    #[test]
    fn keyed_lists_merge_by_key() {
        let p = patched(json!({"spec": {"containers": [{"name": "web", "image": "web:2"}]}}));
        assert_eq!(p["spec"]["containers"][0]["image"], "web:2");
        assert_eq!(p["spec"]["containers"][0]["ports"], json!([{"containerPort": 80}]), "untouched fields stay");
        assert_eq!(p["spec"]["containers"][1]["name"], "side", "other elements stay");
        let p = patched(json!({"spec": {"containers": [{"name": "new", "image": "n"}]}}));
        assert_eq!(p["spec"]["containers"].as_array().unwrap().len(), 3);
        let p = patched(json!({"spec": {"containers": [{"name": "web", "ports": [{"containerPort": 443}]}]}}));
        assert_eq!(p["spec"]["containers"][0]["ports"], json!([{"containerPort": 80}, {"containerPort": 443}]));
    }

    #[test]
    fn lists_without_strategy_are_replaced() {
        let p = patched(json!({"spec": {"tolerations": [{"key": "other"}]}}));
        assert_eq!(p["spec"]["tolerations"], json!([{"key": "other"}]));
        let p = patched(json!({"spec": {"containers": [{"name": "web", "env": [{"name": "B", "value": "2"}]}]}}));
        assert_eq!(p["spec"]["containers"][0]["env"], json!([{"name": "B", "value": "2"}]));
    }

    #[test]
    fn directives() {
        let p = patched(json!({"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}));
        assert_eq!(p["spec"]["containers"].as_array().unwrap().len(), 1);
        let p = patched(json!({"spec": {"containers": [{"name": "only", "image": "o"}, {"$patch": "replace"}]}}));
        assert_eq!(p["spec"]["containers"], json!([{"name": "only", "image": "o"}]));
        let p = patched(json!({"metadata": {"labels": {"$patch": "replace", "z": "9"}}}));
        assert_eq!(p["metadata"]["labels"], json!({"z": "9"}));
        let p = patched(json!({"metadata": {"finalizers": ["y"]}}));
        assert_eq!(p["metadata"]["finalizers"], json!(["x", "y"]), "primitive merge list is a union");
        let p = patched(json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}));
        assert_eq!(p["metadata"]["finalizers"], json!([]));
        let p = patched(json!({"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "web"}]}}));
        assert_eq!(p["spec"]["containers"][0]["name"], "side");
        let p =
            patched(json!({"spec": {"containers": [{"name": "web", "$retainKeys": ["name", "image"], "image": "w"}]}}));
        assert_eq!(p["spec"]["containers"][0], json!({"name": "web", "image": "w"}));
        let mut bad = pod();
        assert!(apply(&mut bad, &json!({"spec": {"containers": [{"image": "no-key"}]}}), &PodMeta).is_err());
    }
}
