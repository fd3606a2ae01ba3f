use crate::Revision;

/// Errors of every backend, so that callers map them to API statuses in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key:?} not found")]
    NotFound { key: String },
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    /// The compare-and-swap failed: `current` is what the key holds now (`None`: it is gone).
    #[error("key {key:?} has been modified (current revision {})", current.as_ref().map(|kv| kv.mod_revision).unwrap_or(0))]
    Conflict { key: String, current: Option<Box<crate::KeyValue>> },
    /// The requested revision is older than the last compaction (HTTP 410 Gone).
    #[error("required revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted { requested: Revision, compacted: Revision },
    /// The requested revision is newer than the store's (HTTP 504 with "Too large resource version").
    #[error("required revision {requested} is newer than the current revision {current}")]
    FutureRevision { requested: Revision, current: Revision },
    /// A watcher did not keep up and was closed; it must re-watch from its last revision.
    #[error("watcher fell too far behind and was closed")]
    WatcherTooSlow,
    /// The watch cache re-listed from the store; watchers must start again.
    #[error("watch cache was re-initialized from storage")]
    CacheReset,
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// Opening or reading a data file failed; names the file.
    #[error("data file {path}: {message}")]
    DataFile { path: String, message: String },
    #[error("invalid request to storage: {0}")]
    Invalid(String),
    #[error("storage error: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
    pub fn is_compacted(&self) -> bool {
        matches!(self, StoreError::Compacted { .. })
    }
}
