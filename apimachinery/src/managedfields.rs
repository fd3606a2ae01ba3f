//! `metadata.managedFields` for create, update and patch (operation `Update`), as upstream's field
//! manager records them: each manager owns the set of fields it last set, in the `FieldsV1` encoding
//! (`f:<field>`, `k:<keys>` for items of map-lists, `v:<value>` for items of set-lists, `.` for a node
//! that is owned itself).
//!
//! A write compares the old object with the new one. Fields it added or changed move to the writing
//! manager (taken from everyone else: a non-apply write always wins); removed fields leave every
//! manager; managers left with nothing are dropped. The writing manager's `time` moves only when it
//! took a field.
//!
//! Which lists are maps or sets and which objects are atomic comes from a [`PatchMeta`], like the
//! strategic merge patch.
//!
//! ```
//! use apimachinery::managedfields::{update, Write};
//! use apimachinery::strategicpatch::NoMeta;
//! use serde_json::json;
//! let new = json!({"metadata": {"name": "a", "labels": {"app": "web"}}, "data": {"k": "v"}});
//! let w = Write { manager: "kubectl-create", api_version: "v1", subresource: "", time: "2026-01-01T00:00:00Z", ignored: &[] };
//! let entries = update(&[], None, &new, &NoMeta, &w);
//! assert_eq!(entries[0]["fieldsV1"], json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:app": {}}}}));
//! ```

use crate::strategicpatch::{FieldStrategy, ListType, NoMeta, PatchMeta};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A set of field paths, as a tree: `own` says the node itself is a member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    own: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        !self.own && self.children.is_empty()
    }

    /// Decodes a `fieldsV1` value: `{}` at the top is the empty set, below it a member leaf; `"."`
    /// marks a member with children.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        let mut set = FieldSet::parse(v)?;
        set.own = v.get(".").is_some();
        Ok(set)
    }

    fn parse(v: &Value) -> Result<FieldSet, String> {
        let Value::Object(m) = v else { return Err("fieldsV1 must be an object".into()) };
        let mut set = FieldSet { own: m.is_empty(), children: BTreeMap::new() };
        for (k, child) in m {
            if k == "." {
                set.own = true;
                continue;
            }
            if !(k.starts_with("f:") || k.starts_with("k:") || k.starts_with("v:") || k.starts_with("i:")) {
                return Err(format!("unknown path element {k:?}"));
            }
            set.children.insert(k.clone(), FieldSet::parse(child)?);
        }
        Ok(set)
    }

    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.own && !self.children.is_empty() {
            m.insert(".".into(), json!({}));
        }
        for (k, c) in &self.children {
            m.insert(k.clone(), c.to_fields_v1());
        }
        Value::Object(m)
    }

    pub fn union(&mut self, other: &FieldSet) {
        self.own |= other.own;
        for (k, c) in &other.children {
            self.children.entry(k.clone()).or_default().union(c);
        }
    }

    /// Removes every member of `other`.
    pub fn difference(&mut self, other: &FieldSet) {
        if other.own {
            self.own = false;
        }
        for (k, c) in &other.children {
            if let Some(mine) = self.children.get_mut(k) {
                mine.difference(c);
                if mine.is_empty() {
                    self.children.remove(k);
                }
            }
        }
    }

    fn child(&mut self, key: String, c: FieldSet) {
        if !c.is_empty() {
            self.children.insert(key, c);
        }
    }
}

/// What changed between two objects.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    fn child(&mut self, key: String, c: Comparison) {
        self.added.child(key.clone(), c.added);
        self.modified.child(key.clone(), c.modified);
        self.removed.child(key, c.removed);
    }
}

/// Compares `old` (absent on create) with `new`.
pub fn compare(old: Option<&Value>, new: Option<&Value>, meta: &dyn PatchMeta) -> Comparison {
    let mut c = compare_value(old, new, &FieldStrategy::default(), meta, false);
    // The object itself is never a field.
    for s in [&mut c.added, &mut c.modified, &mut c.removed] {
        s.own = false;
    }
    c
}

fn compare_value(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    strategy: &FieldStrategy,
    meta: &dyn PatchMeta,
    item: bool,
) -> Comparison {
    let mut out = Comparison::default();
    let is_list = matches!(lhs, Some(Value::Array(_))) || matches!(rhs, Some(Value::Array(_)));
    let is_object = matches!(lhs, Some(Value::Object(_))) || matches!(rhs, Some(Value::Object(_)));
    let empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        _ => false,
    };
    let leaf = if is_list {
        strategy.list == ListType::Atomic
    } else if is_object {
        meta.is_atomic() || (empty(lhs) && empty(rhs))
    } else {
        true
    };
    if leaf {
        match (lhs, rhs) {
            (None, Some(_)) => out.added.own = true,
            (Some(_), None) => out.removed.own = true,
            (Some(a), Some(b)) if a != b => out.modified.own = true,
            _ => {}
        }
        return out;
    }
    if is_list {
        let items = |v: Option<&Value>| -> Vec<(String, Value)> {
            v.and_then(Value::as_array)
                .map(|a| a.iter().map(|i| (item_key(&strategy.list, i), i.clone())).collect())
                .unwrap_or_default()
        };
        let (l, r) = (items(lhs), items(rhs));
        let find =
            |list: &[(String, Value)], k: &str| list.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let mut keys: Vec<&String> = r.iter().map(|(k, _)| k).collect();
        keys.extend(l.iter().map(|(k, _)| k).filter(|k| !r.iter().any(|(rk, _)| rk == *k)));
        keys.dedup();
        for k in keys {
            let (a, b) = (find(&l, k), find(&r, k));
            let c = match &strategy.list {
                ListType::Map(_) => compare_value(a.as_ref(), b.as_ref(), &FieldStrategy::default(), meta, true),
                _ => compare_value(a.as_ref(), b.as_ref(), &FieldStrategy::default(), &NoMeta, true),
            };
            out.child(k.clone(), c);
        }
    } else {
        let empty_map = Map::new();
        let l = lhs.and_then(Value::as_object).unwrap_or(&empty_map);
        let r = rhs.and_then(Value::as_object).unwrap_or(&empty_map);
        for k in r.keys().chain(l.keys().filter(|k| !r.contains_key(*k))) {
            let (s, child) = meta.field(k);
            let child: &dyn PatchMeta = child.as_deref().unwrap_or(&NoMeta);
            out.child(format!("f:{k}"), compare_value(l.get(k), r.get(k), &s, child, false));
        }
    }
    // Granular maps, lists and list items are members themselves; structs only through their fields
    // (upstream compares with the Go zero value, where non-pointer structs and `containers`, a list
    // without `omitempty`, already exist).
    if item || (is_object && meta.is_map()) || (is_list && !strategy.always_present) {
        match (lhs, rhs) {
            (None, Some(_)) => out.added.own = true,
            (Some(_), None) => out.removed.own = true,
            _ => {}
        }
    }
    out
}

/// The path element of a list item: `k:{"name":"x"}` (keys sorted) for map-lists, `v:<json>` otherwise.
fn item_key(list: &ListType, item: &Value) -> String {
    match list {
        ListType::Map(keys) => {
            let mut sorted: Vec<&&str> = keys.iter().collect();
            sorted.sort();
            let mut m = Map::new();
            for k in sorted {
                if let Some(v) = item.get(*k) {
                    m.insert((*k).to_string(), v.clone());
                }
            }
            format!("k:{}", Value::Object(m))
        }
        _ => format!("v:{item}"),
    }
}

/// One write: who made it and how it is labelled.
pub struct Write<'a> {
    pub manager: &'a str,
    /// The API version of the request (`apps/v1`, `v1`).
    pub api_version: &'a str,
    /// `status`, `scale`, or empty for the main resource.
    pub subresource: &'a str,
    /// RFC 3339 time, second precision.
    pub time: &'a str,
    /// Top-level fields this write does not own (e.g. `status` on the main resource).
    pub ignored: &'a [&'a str],
}

/// Fields no manager owns (server-set metadata).
const META_IGNORED: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "generation",
    "managedFields",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

fn strip_ignored(set: &mut FieldSet, ignored: &[&str]) {
    set.children.remove("f:apiVersion");
    set.children.remove("f:kind");
    for f in ignored {
        set.children.remove(&format!("f:{f}"));
    }
    if let Some(m) = set.children.get_mut("f:metadata") {
        m.own = false;
        for f in META_IGNORED {
            m.children.remove(&format!("f:{f}"));
        }
        if m.is_empty() {
            set.children.remove("f:metadata");
        }
    }
}

struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: String,
    time: Option<String>,
    set: FieldSet,
}

impl Entry {
    fn parse(v: &Value) -> Option<Entry> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let set = FieldSet::from_fields_v1(v.get("fieldsV1").unwrap_or(&json!({}))).ok()?;
        Some(Entry {
            manager: s("manager"),
            operation: s("operation"),
            api_version: s("apiVersion"),
            subresource: s("subresource"),
            time: v.get("time").and_then(Value::as_str).map(String::from),
            set,
        })
    }

    fn encode(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.set.to_fields_v1());
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m)
    }
}

/// The managed fields after `w` wrote `new` over `old` (`None` on create), starting from `entries` (the
/// stored object's, or the ones the request sent).
pub fn update(entries: &[Value], old: Option<&Value>, new: &Value, meta: &dyn PatchMeta, w: &Write<'_>) -> Vec<Value> {
    let mut entries: Vec<Entry> = entries.iter().filter_map(Entry::parse).filter(|e| !e.set.is_empty()).collect();
    let mut cmp = compare(old, Some(new), meta);
    for s in [&mut cmp.added, &mut cmp.modified, &mut cmp.removed] {
        strip_ignored(s, w.ignored);
    }
    let mut taken = cmp.added;
    taken.union(&cmp.modified);
    for e in &mut entries {
        e.set.difference(&taken);
        e.set.difference(&cmp.removed);
    }
    if !taken.is_empty() {
        let mine = entries.iter_mut().find(|e| {
            e.manager == w.manager
                && e.operation == "Update"
                && e.api_version == w.api_version
                && e.subresource == w.subresource
        });
        match mine {
            Some(e) => {
                e.set.union(&taken);
                e.time = Some(w.time.to_string());
            }
            None => entries.push(Entry {
                manager: w.manager.to_string(),
                operation: "Update".into(),
                api_version: w.api_version.to_string(),
                subresource: w.subresource.to_string(),
                time: Some(w.time.to_string()),
                set: taken,
            }),
        }
    }
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|a, b| {
        (&a.operation, &a.time, &a.manager, &a.subresource).cmp(&(&b.operation, &b.time, &b.manager, &b.subresource))
    });
    entries.iter().map(Entry::encode).collect()
}

/// The manager name upstream derives from a `User-Agent` when a request names none: the part before
/// the first `/` (`kubectl/v1.35.2 (linux/amd64) ...` → `kubectl`).
pub fn manager_from_user_agent(ua: &str) -> String {
    let m = ua.split('/').next().unwrap_or("").trim();
    if m.is_empty() {
        "unknown".into()
    } else {
        m.chars().take(128).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Meta(&'static str);
    impl PatchMeta for Meta {
        fn field(&self, name: &str) -> (FieldStrategy, Option<Box<dyn PatchMeta + '_>>) {
            match (self.0, name) {
                ("root", "metadata") => (FieldStrategy::default(), Some(Box::new(Meta("meta")))),
                ("meta", "labels") => (FieldStrategy::default(), Some(Box::new(Meta("map")))),
                ("meta", "finalizers") => (FieldStrategy { list: ListType::Set, ..Default::default() }, None),
                ("root", "spec") => (FieldStrategy::default(), Some(Box::new(Meta("spec")))),
                ("spec", "selector") => (FieldStrategy::default(), Some(Box::new(Meta("atomic")))),
                ("spec", "containers") => (
                    FieldStrategy { list: ListType::Map(vec!["name"]), always_present: true, ..Default::default() },
                    Some(Box::new(Meta("container"))),
                ),
                _ => (FieldStrategy::default(), None),
            }
        }
        fn is_map(&self) -> bool {
            self.0 == "map"
        }
        fn is_atomic(&self) -> bool {
            self.0 == "atomic"
        }
    }

    fn w<'a>(manager: &'a str, time: &'a str) -> Write<'a> {
        Write { manager, api_version: "v1", subresource: "", time, ignored: &["status"] }
    }

    #[test]
    fn create_owns_every_field_with_upstream_path_elements() {
        let obj = json!({
            "apiVersion": "v1", "kind": "X",
            "metadata": {"name": "a", "uid": "u", "labels": {"app": "web"}, "finalizers": ["f1"]},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "args": ["a", "b"],
                     "containers": [{"name": "c", "image": "i", "resources": {}}]},
            "status": {"phase": "x"}
        });
        let e = update(&[], None, &obj, &Meta("root"), &w("m", "t1"));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0]["manager"], "m");
        assert_eq!(e[0]["operation"], "Update");
        assert_eq!(
            e[0]["fieldsV1"],
            json!({
                "f:metadata": {"f:finalizers": {".": {}, "v:\"f1\"": {}}, "f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:args": {}, "f:selector": {},
                           "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}, "f:resources": {}}}}
            })
        );
    }

    #[test]
    fn a_second_manager_takes_what_it_changes_and_removals_leave_everyone() {
        let v1 = json!({"metadata": {"labels": {"a": "1", "b": "1"}}, "spec": {"x": 1, "y": 1}});
        let e = update(&[], None, &v1, &Meta("root"), &w("first", "t1"));
        let v2 = json!({"metadata": {"labels": {"a": "2"}}, "spec": {"x": 1, "y": 1, "z": 1}});
        let e = update(&e, Some(&v1), &v2, &Meta("root"), &w("second", "t2"));
        assert_eq!(e.len(), 2);
        assert_eq!(e[0]["manager"], "first");
        assert_eq!(e[0]["time"], "t1");
        assert_eq!(e[0]["fieldsV1"], json!({"f:metadata": {"f:labels": {}}, "f:spec": {"f:x": {}, "f:y": {}}}));
        assert_eq!(e[1]["fieldsV1"], json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:z": {}}}));
        // A write that changes nothing keeps every entry and time as it was.
        let same = update(&e, Some(&v2), &v2, &Meta("root"), &w("third", "t3"));
        assert_eq!(same, e);
        // Taking every field of a manager drops it.
        let v3 = json!({"metadata": {"labels": {"a": "3"}}, "spec": {"x": 2, "y": 2, "z": 1}});
        let e = update(&e, Some(&v2), &v3, &Meta("root"), &w("first", "t4"));
        assert_eq!(e.len(), 2);
        let e = update(
            &e,
            Some(&v3),
            &json!({"metadata": {"labels": {"a": "4"}}, "spec": {"x": 2, "y": 2, "z": 2}}),
            &Meta("root"),
            &w("first", "t5"),
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0]["time"], "t5");
    }

    #[test]
    fn fields_v1_round_trips_and_rejects_garbage() {
        let v = json!({"f:a": {".": {}, "f:b": {}}, "f:c": {}});
        assert_eq!(FieldSet::from_fields_v1(&v).unwrap().to_fields_v1(), v);
        assert!(FieldSet::from_fields_v1(&json!({"x": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
        assert!(FieldSet::from_fields_v1(&json!({})).unwrap().is_empty());
        // An entry with no fields (how a client resets managedFields) is dropped.
        let e = update(&[json!({"manager": "x", "operation": "Update"})], None, &json!({}), &NoMeta, &w("m", "t"));
        assert!(e.is_empty());
    }

    #[test]
    fn user_agent_prefix() {
        assert_eq!(manager_from_user_agent("kubectl/v1.35.2 (linux/amd64) kubernetes/abc"), "kubectl");
        assert_eq!(manager_from_user_agent(""), "unknown");
    }
}
