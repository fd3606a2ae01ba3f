//! Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`) decoded into the JSON the rest of
//! the API server works with.
//!
//! The wire format is upstream's: the magic `k8s\0`, then a `runtime.Unknown` holding the object's
//! apiVersion and kind and the object's own message. Field numbers and JSON names come from
//! [`tables`], generated from published crates by `gen/gen_tables.py`.
//!
//! ```
//! // A ConfigMap named "a" with data {k: v}, as kubectl sends it.
//! let mut meta = vec![0x0a, 1, b'a'];
//! let mut cm = vec![0x0a, meta.len() as u8];
//! cm.append(&mut meta);
//! cm.extend([0x12, 6, 0x0a, 1, b'k', 0x12, 1, b'v']);
//! let json = apiserver_protobuf::decode_message("api.core.v1.ConfigMap", &cm).unwrap();
//! assert_eq!(json, serde_json::json!({"metadata": {"name": "a"}, "data": {"k": "v"}}));
//! ```

#[rustfmt::skip]
mod tables;

use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// How a field is encoded on the wire and shown in JSON.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Str,
    Bytes,
    Bool,
    I32,
    I64,
    F64,
    Msg(&'static str),
    RepStr,
    RepBytes,
    RepBool,
    RepI32,
    RepI64,
    RepF64,
    RepMsg(&'static str),
    MapStr,
    MapBytes,
    MapMsg(&'static str),
}

/// (field number, JSON name, kind).
#[derive(Clone, Copy, Debug)]
pub struct Field(pub u32, pub &'static str, pub Kind);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("protobuf body does not start with the k8s magic")]
    NoMagic,
    #[error("malformed protobuf: {0}")]
    Malformed(&'static str),
    #[error("no protobuf schema for {0}")]
    UnknownType(String),
}

/// Messages by lower-cased full name: prost spells acronyms `CsiDriver`, `IpAddress`, `JsonSchemaProps`
/// where Kubernetes kinds say `CSIDriver`, `IPAddress`, `JSONSchemaProps`.
fn messages() -> &'static HashMap<String, &'static [Field]> {
    static M: OnceLock<HashMap<String, &'static [Field]>> = OnceLock::new();
    M.get_or_init(|| tables::MESSAGES.iter().map(|(n, f)| (n.to_lowercase(), *f)).collect())
}

fn lookup(name: &str) -> Option<&'static [Field]> {
    messages().get(&name.to_lowercase()).copied()
}

/// The message module of an apiVersion's group: `v1` → `api.core.v1`, `apps/v1` → `api.apps.v1`.
pub fn module_for(api_version: &str) -> String {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    match group {
        "" => format!("api.core.{version}"),
        "apiextensions.k8s.io" => format!("apiextensions_apiserver.pkg.apis.apiextensions.{version}"),
        "apiregistration.k8s.io" => format!("kube_aggregator.pkg.apis.apiregistration.{version}"),
        "meta.k8s.io" => format!("apimachinery.pkg.apis.meta.{version}"),
        g => format!("api.{}.{version}", g.split('.').next().unwrap_or(g)),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(DecodeError::Malformed("truncated varint"))?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError::Malformed("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(DecodeError::Malformed("truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()? as usize;
        self.take(n)
    }

    /// The next (field number, wire type, value) — value is the varint, the fixed bytes, or the payload.
    fn field(&mut self) -> Result<(u32, u8, u64, &'a [u8]), DecodeError> {
        let key = self.varint()?;
        let (num, wt) = ((key >> 3) as u32, (key & 7) as u8);
        match wt {
            0 => Ok((num, wt, self.varint()?, &[])),
            1 => Ok((num, wt, 0, self.take(8)?)),
            2 => Ok((num, wt, 0, self.bytes()?)),
            5 => Ok((num, wt, 0, self.take(4)?)),
            _ => Err(DecodeError::Malformed("unsupported wire type")),
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }
}

fn utf8(b: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Malformed("string is not UTF-8"))
}

fn b64(b: &[u8]) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(b))
}

const ZERO_TIME_SECONDS: i64 = -62_135_596_800; // Go's time.Time{}

fn time_value(payload: &[u8], micro: bool) -> Result<Value, DecodeError> {
    // Go writes the zero time as an empty message (and older clients as year 1): JSON null either way.
    if payload.is_empty() {
        return Ok(Value::Null);
    }
    let (mut secs, mut nanos) = (0i64, 0i64);
    let mut r = Reader { buf: payload, pos: 0 };
    while !r.done() {
        match r.field()? {
            (1, 0, v, _) => secs = v as i64,
            (2, 0, v, _) => nanos = v as i32 as i64,
            _ => {}
        }
    }
    if secs == ZERO_TIME_SECONDS && nanos == 0 {
        return Ok(Value::Null);
    }
    let t = time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| DecodeError::Malformed("time out of range"))?
        + time::Duration::nanoseconds(nanos);
    let text = if micro {
        t.format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        ))
    } else {
        t.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
    };
    Ok(json!(text.map_err(|_| DecodeError::Malformed("time does not format"))?))
}

/// The payload of field 1 when it is length-delimited.
fn first_bytes(payload: &[u8]) -> Result<Option<&[u8]>, DecodeError> {
    let mut r = Reader { buf: payload, pos: 0 };
    while !r.done() {
        if let (1, 2, _, b) = r.field()? {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

/// Messages whose JSON form is not an object of their fields.
fn special(name: &str, payload: &[u8]) -> Option<Result<Value, DecodeError>> {
    Some(match name.to_lowercase().as_str() {
        "apimachinery.pkg.apis.meta.v1.time" => time_value(payload, false),
        "apimachinery.pkg.apis.meta.v1.microtime" => time_value(payload, true),
        "apimachinery.pkg.api.resource.quantity" => {
            first_bytes(payload).and_then(|b| utf8(b.unwrap_or_default()).map(Value::from))
        }
        "apimachinery.pkg.runtime.rawextension"
        | "apimachinery.pkg.apis.meta.v1.fieldsv1"
        | "apiextensions_apiserver.pkg.apis.apiextensions.v1.json" => first_bytes(payload).map(|b| match b {
            Some(raw) if !raw.is_empty() => serde_json::from_slice(raw).unwrap_or(Value::Null),
            _ => Value::Null,
        }),
        "apimachinery.pkg.util.intstr.intorstring" => (|| {
            let (mut ty, mut int_val, mut str_val) = (0u64, 0i64, String::new());
            let mut r = Reader { buf: payload, pos: 0 };
            while !r.done() {
                match r.field()? {
                    (1, 0, v, _) => ty = v,
                    (2, 0, v, _) => int_val = v as i32 as i64,
                    (3, 2, _, b) => str_val = utf8(b)?,
                    _ => {}
                }
            }
            Ok(if ty == 1 { json!(str_val) } else { json!(int_val) })
        })(),
        "apimachinery.pkg.apis.meta.v1.duration" => (|| {
            let mut r = Reader { buf: payload, pos: 0 };
            let mut ns = 0i64;
            while !r.done() {
                if let (1, 0, v, _) = r.field()? {
                    ns = v as i64;
                }
            }
            Ok(json!(format!("{}s", ns as f64 / 1e9)))
        })(),
        _ => return None,
    })
}

fn scalar(kind: Kind, wt: u8, v: u64, b: &[u8]) -> Result<Value, DecodeError> {
    Ok(match kind {
        Kind::Str | Kind::RepStr => json!(utf8(b)?),
        Kind::Bytes | Kind::RepBytes => b64(b),
        Kind::Bool | Kind::RepBool => json!(v != 0),
        Kind::I32 | Kind::RepI32 => json!(v as i32),
        Kind::I64 | Kind::RepI64 => json!(v as i64),
        Kind::F64 | Kind::RepF64 => {
            if wt != 1 {
                return Err(DecodeError::Malformed("double without fixed64 encoding"));
            }
            json!(f64::from_le_bytes(b.try_into().map_err(|_| DecodeError::Malformed("bad double"))?))
        }
        _ => unreachable!("messages and maps are handled by the caller"),
    })
}

/// Pointer fields (`*int32`, `*bool`, ...) whose zero value means something (`replicas: 0`,
/// `automountServiceAccountToken: false`, `runAsUser: 0`). The wire cannot tell an explicit zero from
/// Go's always-written non-pointer zero, so zeros are dropped (as `omitempty` drops them from JSON)
/// except for these names.
const MEANINGFUL_ZEROS: &[&str] = &[
    "replicas",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "hostUsers",
    "shareProcessNamespace",
    "setHostnameAsFQDN",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "priority",
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "fsGroup",
    "supplementalGroups",
    "privileged",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "procMount",
    "defaultMode",
    "mode",
    "optional",
    "suspend",
    "backoffLimit",
    "backoffLimitPerIndex",
    "maxFailedIndexes",
    "parallelism",
    "completions",
    "ttlSecondsAfterFinished",
    "startingDeadlineSeconds",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "revisionHistoryLimit",
    "progressDeadlineSeconds",
    "minAvailable",
    "maxUnavailable",
    "partition",
    "expirationSeconds",
    "allowVolumeExpansion",
    "immutable",
    "publishNotReadyAddresses",
    "allocateLoadBalancerNodePorts",
    "healthCheckNodePort",
    "sessionAffinityConfig",
    "timeoutSeconds",
    "leaseDurationSeconds",
    "leaseTransitions",
    "value",
    "preemptionPolicy",
    "globalDefault",
    "ready",
    "serving",
    "terminating",
    "unschedulable",
    "count",
    "deletionGracePeriodSeconds",
    "gracePeriodSeconds",
    "orphanDependents",
    "blockOwnerDeletion",
    "controller",
    "initialDelaySeconds",
    "periodSeconds",
    "successThreshold",
    "failureThreshold",
    "readOnly",
];

/// Decodes one message of the named type into JSON. Empty strings and zero numbers and booleans are left
/// out, as Go's `omitempty` leaves them out of JSON (see [`MEANINGFUL_ZEROS`] for the exceptions); empty
/// messages are kept (`resources: {}`, `emptyDir: {}`).
pub fn decode_message(name: &str, payload: &[u8]) -> Result<Value, DecodeError> {
    decode_nested(name, payload, 0)
}

/// Deeper nesting than any Kubernetes type has; a hostile body cannot recurse past it.
const MAX_DEPTH: usize = 64;

fn decode_nested(name: &str, payload: &[u8], depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::Malformed("message nested too deeply"));
    }
    if let Some(v) = special(name, payload) {
        return v;
    }
    let fields = lookup(name).ok_or_else(|| DecodeError::UnknownType(name.to_string()))?;
    let mut out = Map::new();
    let mut r = Reader { buf: payload, pos: 0 };
    while !r.done() {
        let (num, wt, v, b) = r.field()?;
        let Some(Field(_, json_name, kind)) = fields.iter().find(|f| f.0 == num) else { continue };
        let key = json_name.to_string();
        match *kind {
            Kind::Msg(t) => {
                let value = decode_nested(t, b, depth + 1)?;
                if !value.is_null() {
                    out.insert(key, value);
                }
            }
            Kind::RepMsg(t) => {
                let item = decode_nested(t, b, depth + 1)?;
                push(&mut out, key, item);
            }
            Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_) => {
                let (mut k, mut val) = (String::new(), Value::Null);
                let mut er = Reader { buf: b, pos: 0 };
                while !er.done() {
                    match er.field()? {
                        (1, 2, _, kb) => k = utf8(kb)?,
                        (2, 2, _, vb) => {
                            val = match *kind {
                                Kind::MapStr => json!(utf8(vb)?),
                                Kind::MapBytes => b64(vb),
                                Kind::MapMsg(t) => decode_nested(t, vb, depth + 1)?,
                                _ => unreachable!(),
                            }
                        }
                        _ => {}
                    }
                }
                if val.is_null() {
                    val = match *kind {
                        Kind::MapStr | Kind::MapBytes => json!(""),
                        _ => json!({}),
                    };
                }
                out.entry(key).or_insert_with(|| json!({}))[k] = val;
            }
            Kind::RepStr | Kind::RepBytes => push(&mut out, key, scalar(*kind, wt, v, b)?),
            Kind::RepBool | Kind::RepI32 | Kind::RepI64 | Kind::RepF64 if wt == 2 => {
                // Packed encoding.
                let mut pr = Reader { buf: b, pos: 0 };
                while !pr.done() {
                    let item = if matches!(kind, Kind::RepF64) {
                        scalar(*kind, 1, 0, pr.take(8)?)?
                    } else {
                        scalar(*kind, 0, pr.varint()?, &[])?
                    };
                    push(&mut out, key.clone(), item);
                }
            }
            Kind::RepBool | Kind::RepI32 | Kind::RepI64 | Kind::RepF64 => push(&mut out, key, scalar(*kind, wt, v, b)?),
            Kind::Str => {
                let s = utf8(b)?;
                if !s.is_empty() {
                    out.insert(key, json!(s));
                }
            }
            _ => {
                let value = scalar(*kind, wt, v, b)?;
                let zero = value == json!(0) || value == json!(false) || value == json!(0.0);
                if !zero || MEANINGFUL_ZEROS.contains(json_name) {
                    out.insert(key, value);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

fn push(out: &mut Map<String, Value>, key: String, item: Value) {
    match out.entry(key).or_insert_with(|| json!([])) {
        Value::Array(a) => a.push(item),
        other => *other = json!([item]),
    }
}

/// Decodes a full request body: `k8s\0` + `runtime.Unknown{typeMeta, raw}`. Returns the object as JSON
/// with its `apiVersion` and `kind`.
pub fn decode_object(body: &[u8]) -> Result<Value, DecodeError> {
    let rest = body.strip_prefix(b"k8s\0").ok_or(DecodeError::NoMagic)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    let mut r = Reader { buf: rest, pos: 0 };
    while !r.done() {
        match r.field()? {
            (1, 2, _, tm) => {
                let mut t = Reader { buf: tm, pos: 0 };
                while !t.done() {
                    match t.field()? {
                        (1, 2, _, b) => api_version = utf8(b)?,
                        (2, 2, _, b) => kind = utf8(b)?,
                        _ => {}
                    }
                }
            }
            (2, 2, _, b) => raw = b,
            _ => {}
        }
    }
    let mut name = format!("{}.{kind}", module_for(&api_version));
    if lookup(&name).is_none() {
        // Options types (DeleteOptions, ...) travel under every group's version but live in meta/v1.
        name = format!("apimachinery.pkg.apis.meta.v1.{kind}");
    }
    let mut obj = decode_message(&name, raw)?;
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn field(num: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(((num as u64) << 3) | 2, &mut out);
        varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }

    fn int_field(num: u32, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint((num as u64) << 3, &mut out);
        varint(v, &mut out);
        out
    }

    #[test]
    fn modules() {
        assert_eq!(module_for("v1"), "api.core.v1");
        assert_eq!(module_for("apps/v1"), "api.apps.v1");
        assert_eq!(module_for("rbac.authorization.k8s.io/v1"), "api.rbac.v1");
        assert_eq!(module_for("apiextensions.k8s.io/v1"), "apiextensions_apiserver.pkg.apis.apiextensions.v1");
        for m in [
            "api.core.v1.Namespace",
            "api.apps.v1.Deployment",
            "api.rbac.v1.ClusterRole",
            "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
        ] {
            assert!(lookup(m).is_some(), "{m}");
        }
    }

    /// A Deployment as kubectl's `create deployment` encodes it, decoded field by field.
    #[test]
    fn deployment_envelope() {
        let zero_time = field(8, &[]);
        let labels = field(11, &[field(1, b"app"), field(2, b"web")].concat());
        let meta = [field(1, b"web"), labels.clone(), zero_time.clone()].concat();
        let port = [int_field(3, 80), field(4, b"TCP")].concat();
        let container = [field(1, b"web"), field(2, b"nginx"), field(6, &port), field(8, &[])].concat();
        let pod_spec = [field(2, &container), int_field(11, 0)].concat();
        let template = [field(1, &[labels.clone(), zero_time].concat()), field(2, &pod_spec)].concat();
        let selector = field(1, &[field(1, b"app"), field(2, b"web")].concat());
        let max_surge = [int_field(1, 1), field(3, b"25%")].concat();
        let strategy = field(2, &field(2, &max_surge));
        let spec = [int_field(1, 0), field(2, &selector), field(3, &template), field(4, &strategy)].concat();
        let object = [field(1, &meta), field(2, &spec)].concat();
        let type_meta = [field(1, b"apps/v1"), field(2, b"Deployment")].concat();
        let mut body = b"k8s\0".to_vec();
        body.extend([field(1, &type_meta), field(2, &object)].concat());
        let obj = decode_object(&body).unwrap();
        assert_eq!(
            obj,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}], "resources": {}}]}
                    },
                    "strategy": {"rollingUpdate": {"maxSurge": "25%"}}
                }
            })
        );
    }

    #[test]
    fn secrets_bytes_and_times() {
        let data = field(2, &[field(1, b"k"), field(2, &[0xff, 0x00])].concat());
        let cm = decode_message("api.core.v1.Secret", &[data, field(3, b"Opaque")].concat()).unwrap();
        assert_eq!(cm, json!({"data": {"k": "/wA="}, "type": "Opaque"}));
        let t = decode_message("apimachinery.pkg.apis.meta.v1.Time", &int_field(1, 1_700_000_000)).unwrap();
        assert_eq!(t, json!("2023-11-14T22:13:20Z"));
    }

    #[test]
    fn hostile_nesting_and_random_bytes_never_panic() {
        // JSONSchemaProps nests itself (field 9 is `items`-like in many messages); build a deep chain
        // through a self-referencing message type.
        let name = "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";
        let fields = lookup(name).expect("schema props");
        let tag = fields
            .iter()
            .find(|f| matches!(f.2, Kind::RepMsg(t) if t.eq_ignore_ascii_case(name)))
            .expect("a self-referencing field")
            .0;
        let mut deep = Vec::new();
        for _ in 0..10_000 {
            deep = field(tag, &deep);
        }
        assert_eq!(decode_message(name, &deep), Err(DecodeError::Malformed("message nested too deeply")));
        // Deterministic pseudo-random bodies: errors are fine, panics are not.
        let mut x: u64 = 0x2545F4914F6CDD1D;
        for _ in 0..2000 {
            let len = (x % 200) as usize;
            let mut body = b"k8s\0".to_vec();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                body.push(x as u8);
            }
            let _ = decode_object(&body);
            let _ = decode_message("api.apps.v1.Deployment", &body[4..]);
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(decode_object(b"{}"), Err(DecodeError::NoMagic));
        assert!(decode_object(b"k8s\0\x0a\xff").is_err());
        let unknown = [b"k8s\0".to_vec(), field(1, &[field(1, b"v1"), field(2, b"Nope")].concat())].concat();
        assert!(matches!(decode_object(&unknown), Err(DecodeError::UnknownType(_))));
        assert!(decode_message("api.core.v1.ConfigMap", &[0x0a, 0x05, 0x01]).is_err());
    }
}
