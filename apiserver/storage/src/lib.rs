//! The API server's storage layer.
//!
//! One [`Store`] trait with two backends that keep the same semantics:
//!
//! * [`EtcdStore`]: an external etcd cluster (`--etcd-servers`), keys laid out exactly like upstream
//!   (`/registry/<resource>/<namespace>/<name>`), values are JSON.
//! * [`EmbeddedStore`]: a single-file, crash-safe MVCC log in SQLite inside `--data-dir`, for single-node use.
//!
//! Above the trait, a [`WatchCache`] per resource prefix serves `resourceVersion=0` lists and watches from
//! memory and fans events out to many watchers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), apiserver_storage::StoreError> {
//! use apiserver_storage::{open, StorageConfig, Store, ListOptions};
//! let store = open(&StorageConfig::embedded("/tmp/data")).await?;
//! let created = store.create("/pods/default/web", br#"{"kind":"Pod"}"#.to_vec().into(), None).await?;
//! let list = store.list("/pods/", ListOptions::default()).await?;
//! assert_eq!(list.items[0].mod_revision, created.mod_revision);
//! # Ok(()) }
//! ```

mod cacher;
mod config;
mod embedded;
mod error;
mod etcd;
pub mod keys;
#[doc(hidden)]
pub mod testing;
mod types;

pub use cacher::{CacheWatch, WatchCache, WatchCacheOptions, WatchStart};
pub use config::{open, run_compactor, StorageConfig};
pub use embedded::EmbeddedStore;
pub use error::StoreError;
pub use etcd::{EtcdConfig, EtcdStore};
pub use types::{EventKind, GetResult, KeyValue, ListOptions, ListResult, Revision, WatchEvent, WatchStream};

use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

/// The storage operations the API server needs, with etcd's semantics.
///
/// Keys are relative to the backend's prefix (`--etcd-prefix`, default `/registry`) and start with `/`.
/// Every write gets a new, strictly increasing, store-wide revision; that revision is the object's
/// `resourceVersion`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The latest value of `key`, or its value as of `revision` when given.
    /// Fails with [`StoreError::Compacted`] when `revision` is older than the last compaction.
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<GetResult, StoreError>;

    /// Keys under `prefix` in key order, all read at one revision.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError>;

    /// Stores `value` only if `key` is absent; [`StoreError::AlreadyExists`] otherwise.
    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<KeyValue, StoreError>;

    /// Replaces `key` only if its current mod revision is `expected_revision`.
    /// Fails with [`StoreError::NotFound`] when absent and [`StoreError::Conflict`] (carrying the current
    /// value) when the revision differs.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_revision: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue, StoreError>;

    /// Deletes `key`, only if its mod revision is `expected_revision` when that is given.
    /// Returns the deleted value and the revision of the deletion.
    async fn delete(&self, key: &str, expected_revision: Option<Revision>) -> Result<(KeyValue, Revision), StoreError>;

    /// Every change to `key` (or to keys under it when `prefix`) with revision `>= start_revision`,
    /// exactly once and in revision order. `start_revision == 0` means "changes after now".
    async fn watch(&self, key: &str, prefix: bool, start_revision: Revision) -> Result<WatchStream, StoreError>;

    /// How many keys exist under `prefix`.
    async fn count(&self, prefix: &str) -> Result<i64, StoreError>;

    /// Discards history older than `revision`. Reads and watches older than it then fail with
    /// [`StoreError::Compacted`].
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The store's current revision.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// A short name for logs and metrics (`etcd3`, `embedded`).
    fn backend_name(&self) -> &'static str;
}
