//! Resource-agnostic API machinery, as upstream's `k8s.io/apimachinery`: it knows nothing of Pods or
//! Deployments. No I/O.
//!
//! ```
//! use apimachinery::labels::Selector;
//! let sel = Selector::parse("app=web,tier in (front,edge),!canary").unwrap();
//! let labels = [("app", "web"), ("tier", "edge")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
//! assert!(sel.matches(&labels));
//! ```

pub mod duplicates;
pub mod fields;
pub mod images;
pub mod labels;
pub mod managedfields;
pub mod quantity;
pub mod status;
pub mod strategicpatch;
pub mod sysctls;
pub mod validation;

pub use status::{ApiError, Cause, GroupResource};
