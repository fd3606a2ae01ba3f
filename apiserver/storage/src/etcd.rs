//! The etcd backend: upstream's etcd3 storage layout over the `etcd-client` crate.

use crate::{EventKind, GetResult, KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchEvent, WatchStream};
use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How to reach etcd; mirrors upstream's `--etcd-*` flags.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// `--etcd-servers`: every member's URL; requests fail over between them.
    pub endpoints: Vec<String>,
    /// `--etcd-prefix` (default `/registry`).
    pub prefix: String,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Per-request deadline.
    pub request_timeout: Duration,
    /// How long to keep retrying an unreachable etcd at start (`None`: forever, as upstream).
    pub connect_retry: Option<Duration>,
}

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            prefix: "/registry".into(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            request_timeout: Duration::from_secs(30),
            connect_retry: None,
        }
    }
}

/// Lease reuse as upstream's lease manager does it: keys written with the same TTL within a short window
/// share one lease, so a burst of Events does not grant a lease per write.
struct LeaseCache {
    ttl: Duration,
    id: i64,
    granted: Instant,
}

pub struct EtcdStore {
    client: Client,
    prefix: String,
    timeout: Duration,
    leases: Mutex<Vec<LeaseCache>>,
}

const COMPACTED_MSG: &str = "required revision has been compacted";
const FUTURE_MSG: &str = "required revision is a future revision";

fn map_err(e: etcd_client::Error) -> StoreError {
    let text = e.to_string();
    if text.contains(COMPACTED_MSG) {
        StoreError::Compacted { requested: 0, compacted: 0 }
    } else if text.contains(FUTURE_MSG) {
        StoreError::FutureRevision { requested: 0, current: 0 }
    } else {
        StoreError::Unavailable(format!("etcd: {text}"))
    }
}

fn read_file(path: &PathBuf, what: &str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| StoreError::DataFile { path: path.display().to_string(), message: format!("cannot read {what}: {e}") })
}

impl EtcdStore {
    /// Connects, retrying with exponential backoff (logging each failure) while etcd is unreachable.
    pub async fn connect(config: &EtcdConfig) -> Result<Self, StoreError> {
        if config.endpoints.is_empty() {
            return Err(StoreError::Invalid("--etcd-servers lists no server".into()));
        }
        let mut options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5)).with_keep_alive(
            Duration::from_secs(30),
            Duration::from_secs(10),
        );
        if config.ca_file.is_some() || config.cert_file.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &config.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read_file(ca, "--etcd-cafile")?));
            }
            match (&config.cert_file, &config.key_file) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(Identity::from_pem(read_file(cert, "--etcd-certfile")?, read_file(key, "--etcd-keyfile")?));
                }
                (None, None) => {}
                _ => return Err(StoreError::Invalid("--etcd-certfile and --etcd-keyfile must be given together".into())),
            }
            options = options.with_tls(tls);
        }
        let started = Instant::now();
        let mut backoff = Duration::from_millis(200);
        loop {
            let attempt = async {
                let client = Client::connect(&config.endpoints, Some(options.clone())).await.map_err(map_err)?;
                let store = EtcdStore {
                    client,
                    prefix: config.prefix.trim_end_matches('/').to_string(),
                    timeout: config.request_timeout,
                    leases: Mutex::new(Vec::new()),
                };
                store.current_revision().await?;
                Ok::<_, StoreError>(store)
            };
            match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                Ok(Ok(store)) => {
                    tracing::info!(endpoints = ?config.endpoints, prefix = %config.prefix, "connected to etcd");
                    return Ok(store);
                }
                Ok(Err(e)) => {
                    if matches!(e, StoreError::DataFile { .. } | StoreError::Invalid(_)) {
                        return Err(e);
                    }
                    tracing::error!(endpoints = ?config.endpoints, error = %e, retry_in = ?backoff, "etcd is unreachable");
                }
                Err(_) => tracing::error!(endpoints = ?config.endpoints, retry_in = ?backoff, "etcd did not answer within 10s"),
            }
            if config.connect_retry.is_some_and(|limit| started.elapsed() + backoff > limit) {
                return Err(StoreError::Unavailable(format!(
                    "etcd at {} is unreachable (gave up after {:?})",
                    config.endpoints.join(","),
                    started.elapsed()
                )));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    fn full(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    fn to_kv(&self, kv: &etcd_client::KeyValue) -> KeyValue {
        let key = String::from_utf8_lossy(kv.key());
        KeyValue {
            key: key.strip_prefix(&self.prefix).unwrap_or(&key).to_string(),
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        }
    }

    async fn deadline<T>(&self, fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(map_err),
            Err(_) => Err(StoreError::Unavailable(format!("etcd request timed out after {:?}", self.timeout))),
        }
    }

    async fn lease_for(&self, ttl: Option<Duration>) -> Result<Option<PutOptions>, StoreError> {
        let Some(ttl) = ttl else { return Ok(None) };
        let window = Duration::from_secs(60).min(ttl / 20);
        {
            let leases = self.leases.lock().unwrap();
            if let Some(l) = leases.iter().find(|l| l.ttl == ttl && l.granted.elapsed() < window) {
                return Ok(Some(PutOptions::new().with_lease(l.id)));
            }
        }
        let secs = (ttl + window).as_secs().max(1) as i64;
        let granted = self.deadline(self.client.lease_client().grant(secs, None)).await?;
        let mut leases = self.leases.lock().unwrap();
        leases.retain(|l| l.ttl != ttl);
        leases.push(LeaseCache { ttl, id: granted.id(), granted: Instant::now() });
        Ok(Some(PutOptions::new().with_lease(granted.id())))
    }

    fn fix_compacted(e: StoreError, requested: Revision) -> StoreError {
        match e {
            StoreError::Compacted { compacted, .. } => StoreError::Compacted { requested, compacted },
            StoreError::FutureRevision { current, .. } => StoreError::FutureRevision { requested, current },
            other => other,
        }
    }

    /// After a failed compare: the else-branch `get` tells whether the key is gone or changed.
    fn conflict_from(&self, key: &str, responses: &[TxnOpResponse]) -> StoreError {
        let current = responses.iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| self.to_kv(kv)),
            _ => None,
        });
        match current {
            None => StoreError::NotFound { key: key.into() },
            Some(kv) => StoreError::Conflict { key: key.into(), current: Some(Box::new(kv)) },
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<GetResult, StoreError> {
        let mut opts = GetOptions::new();
        if let Some(rev) = revision {
            opts = opts.with_revision(rev);
        }
        let mut kv = self.client.kv_client();
        let resp = self
            .deadline(kv.get(self.full(key), Some(opts)))
            .await
            .map_err(|e| Self::fix_compacted(e, revision.unwrap_or(0)))?;
        let header = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok(GetResult { kv: resp.kvs().first().map(|kv| self.to_kv(kv)), revision: revision.unwrap_or(header) })
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        let full_prefix = self.full(prefix);
        let end = crate::keys::prefix_end(full_prefix.as_bytes()).unwrap_or_else(|| vec![0]);
        let start = match &opts.start_key {
            Some(s) if s.as_str() > prefix => self.full(s),
            _ => full_prefix.clone(),
        };
        let mut get = GetOptions::new().with_range(end);
        let requested = opts.revision.filter(|r| *r > 0);
        if let Some(rev) = requested {
            get = get.with_revision(rev);
        }
        if let Some(limit) = opts.limit.filter(|l| *l > 0) {
            get = get.with_limit(limit);
        }
        let mut kv = self.client.kv_client();
        let resp = self
            .deadline(kv.get(start, Some(get)))
            .await
            .map_err(|e| Self::fix_compacted(e, requested.unwrap_or(0)))?;
        let revision = requested.unwrap_or_else(|| resp.header().map(|h| h.revision()).unwrap_or(0));
        let items: Vec<KeyValue> = resp.kvs().iter().map(|kv| self.to_kv(kv)).collect();
        let remaining = resp.count() - items.len() as i64;
        Ok(ListResult { more: resp.more(), remaining: if resp.more() { remaining } else { 0 }, items, revision })
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<KeyValue, StoreError> {
        let full = self.full(key);
        let put = self.lease_for(ttl).await?;
        let txn = Txn::new()
            .when([Compare::mod_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value.to_vec(), put)]);
        let mut kv = self.client.kv_client();
        let resp = self.deadline(kv.txn(txn)).await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists { key: key.into() });
        }
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok(KeyValue { key: key.into(), value, create_revision: rev, mod_revision: rev })
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision, ttl: Option<Duration>) -> Result<KeyValue, StoreError> {
        let full = self.full(key);
        let put = self.lease_for(ttl).await?;
        let txn = Txn::new()
            .when([Compare::mod_revision(full.clone(), CompareOp::Equal, expected)])
            .and_then([TxnOp::put(full.clone(), value.to_vec(), put.map(|p| p.with_prev_key()).or(Some(PutOptions::new().with_prev_key())))])
            .or_else([TxnOp::get(full, None)]);
        let mut kv = self.client.kv_client();
        let resp = self.deadline(kv.txn(txn)).await?;
        if !resp.succeeded() {
            return Err(self.conflict_from(key, resp.op_responses().as_slice()));
        }
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        let create_revision = resp
            .op_responses()
            .iter()
            .find_map(|r| match r {
                TxnOpResponse::Put(p) => p.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .unwrap_or(rev);
        Ok(KeyValue { key: key.into(), value, create_revision, mod_revision: rev })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision), StoreError> {
        let full = self.full(key);
        let del = TxnOp::delete(full.clone(), Some(DeleteOptions::new().with_prev_key()));
        let txn = match expected {
            Some(rev) => Txn::new()
                .when([Compare::mod_revision(full.clone(), CompareOp::Equal, rev)])
                .and_then([del])
                .or_else([TxnOp::get(full, None)]),
            None => Txn::new().and_then([del]),
        };
        let mut kv = self.client.kv_client();
        let resp = self.deadline(kv.txn(txn)).await?;
        if !resp.succeeded() {
            return Err(self.conflict_from(key, resp.op_responses().as_slice()));
        }
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        let prev = resp.op_responses().iter().find_map(|r| match r {
            TxnOpResponse::Delete(d) => d.prev_kvs().first().map(|kv| self.to_kv(kv)),
            _ => None,
        });
        match prev {
            Some(prev) => Ok((prev, rev)),
            None => Err(StoreError::NotFound { key: key.into() }),
        }
    }

    async fn watch(&self, key: &str, prefix: bool, start_revision: Revision) -> Result<WatchStream, StoreError> {
        let mut opts = WatchOptions::new().with_prev_key().with_progress_notify();
        if prefix {
            opts = opts.with_prefix();
        }
        if start_revision > 0 {
            opts = opts.with_start_revision(start_revision);
        }
        let mut wc = self.client.watch_client();
        let stream = self.deadline(wc.watch(self.full(key), Some(opts))).await?;
        let prefix_len = self.prefix.len();
        let convert = move |kv: &etcd_client::KeyValue| {
            let key = String::from_utf8_lossy(kv.key());
            KeyValue {
                key: key.get(prefix_len..).unwrap_or(&key).to_string(),
                value: Bytes::copy_from_slice(kv.value()),
                create_revision: kv.create_revision(),
                mod_revision: kv.mod_revision(),
            }
        };
        let state = (stream, false);
        let events = futures::stream::unfold(state, move |(mut stream, done)| async move {
            if done {
                return None;
            }
            match stream.next().await {
                Some(Ok(resp)) => {
                    if resp.compact_revision() > 0 {
                        let err = StoreError::Compacted { requested: start_revision, compacted: resp.compact_revision() };
                        return Some((vec![Err(err)], (stream, true)));
                    }
                    if resp.canceled() {
                        let err = StoreError::Unavailable(format!("etcd cancelled the watch: {}", resp.cancel_reason()));
                        return Some((vec![Err(err)], (stream, true)));
                    }
                    let batch = resp
                        .events()
                        .iter()
                        .filter_map(|e| {
                            let kv = e.kv()?;
                            let prev = e.prev_kv().map(convert);
                            let kind = match e.event_type() {
                                EventType::Delete => EventKind::Deleted,
                                EventType::Put if kv.create_revision() == kv.mod_revision() => EventKind::Created,
                                EventType::Put => EventKind::Modified,
                            };
                            let mut kv = convert(kv);
                            if kind == EventKind::Deleted {
                                kv.value = Bytes::new();
                                kv.create_revision = 0;
                            }
                            Some(Ok(WatchEvent { kind, kv, prev: if kind == EventKind::Created { None } else { prev } }))
                        })
                        .collect::<Vec<_>>();
                    Some((batch, (stream, false)))
                }
                Some(Err(e)) => Some((vec![Err(map_err(e))], (stream, true))),
                None => Some((vec![Err(StoreError::Unavailable("etcd watch stream ended".into()))], (stream, true))),
            }
        })
        .flat_map(futures::stream::iter);
        Ok(Box::pin(events))
    }

    async fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        let full = self.full(prefix);
        let end = crate::keys::prefix_end(full.as_bytes()).unwrap_or_else(|| vec![0]);
        let mut kv = self.client.kv_client();
        let resp = self.deadline(kv.get(full, Some(GetOptions::new().with_range(end).with_count_only()))).await?;
        Ok(resp.count())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut kv = self.client.kv_client();
        self.deadline(kv.compact(revision, None)).await.map_err(|e| Self::fix_compacted(e, revision))?;
        Ok(())
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let mut kv = self.client.kv_client();
        // Upstream reads the compaction bookkeeping key; any read returns the store revision in its header.
        let resp = self.deadline(kv.get("compact_rev_key", Some(GetOptions::new().with_count_only()))).await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    fn backend_name(&self) -> &'static str {
        "etcd3"
    }
}
