//! Taints and tolerations, shared by the scheduler (TaintToleration) and the controller manager
//! (taint eviction).

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Whether `tol` tolerates `taint` (upstream's `ToleratesTaint`): an empty effect matches every
/// effect, an empty key with `Exists` matches every taint.
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = tol.effect.as_deref().filter(|e| !e.is_empty()) {
        if e != taint.effect {
            return false;
        }
    }
    let key = tol.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        _ => key == taint.key && tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    }
}
