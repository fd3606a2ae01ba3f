use crate::{EmbeddedStore, EtcdConfig, EtcdStore, Store, StoreError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Which backend to open: etcd when `--etcd-servers` is given, the embedded store in `--data-dir` otherwise.
#[derive(Clone, Debug)]
pub enum StorageConfig {
    Embedded { data_dir: PathBuf },
    Etcd(EtcdConfig),
}

impl StorageConfig {
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        StorageConfig::Embedded { data_dir: data_dir.into() }
    }
}

/// Opens the configured backend.
pub async fn open(config: &StorageConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match config {
        StorageConfig::Embedded { data_dir } => {
            let dir = data_dir.clone();
            let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(dir))
                .await
                .map_err(|e| StoreError::Internal(e.to_string()))??;
            Arc::new(store)
        }
        StorageConfig::Etcd(etcd) => Arc::new(EtcdStore::connect(etcd).await?),
    })
}

/// Compacts history every `interval` (`--etcd-compaction-interval`, default 5m; 0 disables), as upstream's
/// compactor does: each round compacts to the revision seen one round earlier, so every watcher has had at
/// least one interval to catch up. Several API servers may run it against one etcd: a round that finds
/// the revision already compacted is not an error.
pub async fn run_compactor(store: Arc<dyn Store>, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    let mut previous = None;
    loop {
        tokio::time::sleep(interval).await;
        if let Some(rev) = previous {
            match store.compact(rev).await {
                Ok(()) => tracing::info!(revision = rev, backend = store.backend_name(), "compacted storage"),
                Err(StoreError::Compacted { .. }) => {}
                Err(e) => tracing::warn!(revision = rev, error = %e, "storage compaction failed"),
            }
        }
        match store.current_revision().await {
            Ok(rev) => previous = Some(rev),
            Err(e) => tracing::warn!(error = %e, "cannot read the storage revision for compaction"),
        }
    }
}
