//! The etcd backend: upstream's etcd3 storage layout over the `etcd-client` crate.

use crate::{
    EventKind, GetResult, KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchEvent, WatchStream,
};
use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
    members: Arc<Members>,
    prefix: String,
    leases: Mutex<Vec<LeaseCache>>,
}

/// One client per member: a request that cannot reach the active member moves to the next one.
struct Members {
    clients: Vec<Client>,
    active: AtomicUsize,
    endpoints: Vec<String>,
    timeout: Duration,
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

/// Whether a failed request may be sent to another member: always when it never left this process or
/// could not connect; for reads also when the member is unavailable or has no leader.
fn failover(e: &etcd_client::Error, idempotent: bool) -> bool {
    let text = e.to_string();
    let never_sent =
        text.contains("connect error") || text.contains("Connection refused") || text.contains("no leader");
    never_sent
        || idempotent
            && (text.contains("unavailable")
                || text.contains("transport error")
                || text.contains("broken pipe")
                || text.contains("Unavailable"))
}

fn read_file(path: &PathBuf, what: &str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| StoreError::DataFile {
        path: path.display().to_string(),
        message: format!("cannot read {what}: {e}"),
    })
}

impl EtcdStore {
    /// Connects, retrying with exponential backoff (logging each failure) while etcd is unreachable.
    pub async fn connect(config: &EtcdConfig) -> Result<Self, StoreError> {
        if config.endpoints.is_empty() {
            return Err(StoreError::Invalid("--etcd-servers lists no server".into()));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(30), Duration::from_secs(10));
        if config.ca_file.is_some() || config.cert_file.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &config.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read_file(ca, "--etcd-cafile")?));
            }
            match (&config.cert_file, &config.key_file) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(Identity::from_pem(
                        read_file(cert, "--etcd-certfile")?,
                        read_file(key, "--etcd-keyfile")?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(StoreError::Invalid("--etcd-certfile and --etcd-keyfile must be given together".into()))
                }
            }
            options = options.with_tls(tls);
        }
        let mut members = Vec::with_capacity(config.endpoints.len());
        for endpoint in &config.endpoints {
            // Connections are made lazily, so an unreachable member does not fail this.
            members.push(
                Client::connect([endpoint], Some(options.clone()))
                    .await
                    .map_err(|e| StoreError::Invalid(format!("--etcd-servers: {endpoint}: {e}")))?,
            );
        }
        let store = EtcdStore {
            members: Arc::new(Members {
                clients: members,
                active: AtomicUsize::new(0),
                endpoints: config.endpoints.clone(),
                timeout: config.request_timeout,
            }),
            prefix: config.prefix.trim_end_matches('/').to_string(),
            leases: Mutex::new(Vec::new()),
        };
        let started = Instant::now();
        let mut backoff = Duration::from_millis(200);
        loop {
            match store.current_revision().await {
                Ok(_) => {
                    tracing::info!(endpoints = ?config.endpoints, prefix = %config.prefix, "connected to etcd");
                    return Ok(store);
                }
                Err(e) => {
                    tracing::error!(endpoints = ?config.endpoints, error = %e, retry_in = ?backoff, "etcd is unreachable")
                }
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

    async fn call<T, F, Fut>(&self, idempotent: bool, op: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.members.call(idempotent, op).await
    }

    /// A write transaction (never retried on another member once sent: see `Members::call`).
    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, StoreError> {
        self.call(false, |c| {
            let txn = txn.clone();
            async move { c.kv_client().txn(txn).await }
        })
        .await
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
        let granted = self.call(false, |c| async move { c.lease_client().grant(secs, None).await }).await?;
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

fn convert_event(e: &etcd_client::Event, prefix_len: usize) -> Option<WatchEvent> {
    let convert = |kv: &etcd_client::KeyValue| {
        let key = String::from_utf8_lossy(kv.key());
        KeyValue {
            key: key.get(prefix_len..).unwrap_or(&key).to_string(),
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        }
    };
    let kv = e.kv()?;
    let kind = match e.event_type() {
        EventType::Delete => EventKind::Deleted,
        EventType::Put if kv.create_revision() == kv.mod_revision() => EventKind::Created,
        EventType::Put => EventKind::Modified,
    };
    let mut out = convert(kv);
    if kind == EventKind::Deleted {
        out.value = Bytes::new();
        out.create_revision = 0;
    }
    let prev = if kind == EventKind::Created { None } else { e.prev_kv().map(convert) };
    Some(WatchEvent { kind, kv: out, prev })
}

impl Members {
    /// Runs `op` against the active member, moving to the next member when that one cannot be reached.
    /// Writes (`idempotent == false`) move on only when the request never reached a server.
    async fn call<T, F, Fut>(&self, idempotent: bool, op: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.clients.len();
        let attempts = n * 2;
        let mut last = None;
        for attempt in 0..attempts {
            let idx = self.active.load(Ordering::Relaxed) % n;
            let outcome = tokio::time::timeout(self.timeout, op(self.clients[idx].clone())).await;
            let err = match outcome {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if failover(&e, idempotent) => {
                    StoreError::Unavailable(format!("etcd {}: {e}", self.endpoints[idx]))
                }
                Ok(Err(e)) => return Err(map_err(e)),
                Err(_) if idempotent => StoreError::Unavailable(format!(
                    "etcd {}: request timed out after {:?}",
                    self.endpoints[idx], self.timeout
                )),
                Err(_) => {
                    return Err(StoreError::Unavailable(format!("etcd request timed out after {:?}", self.timeout)))
                }
            };
            let _ = self.active.compare_exchange(idx, (idx + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
            if n > 1 {
                tracing::warn!(endpoint = %self.endpoints[idx], error = %err, "etcd member failed; trying the next one");
            }
            last = Some(err);
            if attempt + 1 >= n {
                tokio::time::sleep(Duration::from_millis(100 * (attempt as u64 + 1))).await;
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Unavailable("etcd: no member answered".into())))
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<GetResult, StoreError> {
        let mut opts = GetOptions::new();
        if let Some(rev) = revision {
            opts = opts.with_revision(rev);
        }
        let full = self.full(key);
        let resp = self
            .call(true, |c| {
                let (full, opts) = (full.clone(), opts.clone());
                async move { c.kv_client().get(full, Some(opts)).await }
            })
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
        let resp = self
            .call(true, |c| {
                let (start, get) = (start.clone(), get.clone());
                async move { c.kv_client().get(start, Some(get)).await }
            })
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
        let txn = Txn::new().when([Compare::mod_revision(full.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(
            full,
            value.to_vec(),
            put,
        )]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists { key: key.into() });
        }
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok(KeyValue { key: key.into(), value, create_revision: rev, mod_revision: rev })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue, StoreError> {
        let full = self.full(key);
        let put = self.lease_for(ttl).await?;
        let txn = Txn::new()
            .when([Compare::mod_revision(full.clone(), CompareOp::Equal, expected)])
            .and_then([TxnOp::put(
                full.clone(),
                value.to_vec(),
                put.map(|p| p.with_prev_key()).or(Some(PutOptions::new().with_prev_key())),
            )])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.txn(txn).await?;
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
        let resp = self.txn(txn).await?;
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
        let members = self.members.clone();
        let full = self.full(key);
        let prefix_len = self.prefix.len();
        let open = move |members: Arc<Members>, from: Revision| {
            let full = full.clone();
            async move {
                let mut opts = WatchOptions::new().with_prev_key().with_progress_notify();
                if prefix {
                    opts = opts.with_prefix();
                }
                if from > 0 {
                    opts = opts.with_start_revision(from);
                }
                members
                    .call(true, |c| {
                        let (full, opts) = (full.clone(), opts.clone());
                        async move { c.watch_client().watch(full, Some(opts)).await }
                    })
                    .await
            }
        };
        let mut stream = open(members.clone(), start_revision).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            // The next revision this watch owes its reader; a watch re-opened on another member resumes there.
            let mut next = start_revision;
            let mut failing_since: Option<Instant> = None;
            loop {
                let broken = loop {
                    tokio::select! {
                        _ = tx.closed() => return,
                        item = stream.next() => match item {
                            Some(Ok(resp)) => {
                                failing_since = None;
                                if resp.compact_revision() > 0 {
                                    let err = StoreError::Compacted { requested: next, compacted: resp.compact_revision() };
                                    let _ = tx.send(Err(err)).await;
                                    return;
                                }
                                if next == 0 {
                                    next = resp.header().map(|h| h.revision()).unwrap_or(0) + 1;
                                }
                                for e in resp.events() {
                                    let Some(event) = convert_event(e, prefix_len) else { continue };
                                    next = event.revision() + 1;
                                    if tx.send(Ok(event)).await.is_err() {
                                        return;
                                    }
                                }
                                if resp.canceled() {
                                    break format!("etcd cancelled the watch: {}", resp.cancel_reason());
                                }
                            }
                            Some(Err(e)) => break e.to_string(),
                            None => break "etcd watch stream ended".to_string(),
                        }
                    }
                };
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(60) {
                    let _ = tx.send(Err(StoreError::Unavailable(format!("etcd watch lost: {broken}")))).await;
                    return;
                }
                tracing::warn!(error = %broken, resume_at = next, "etcd watch broke; re-opening it");
                tokio::time::sleep(Duration::from_millis(200)).await;
                match open(members.clone(), next).await {
                    Ok(s) => stream = s,
                    Err(e @ StoreError::Compacted { .. }) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot re-open the etcd watch yet"),
                }
            }
        });
        Ok(Box::pin(crate::types::receiver_stream(rx)))
    }

    async fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        let full = self.full(prefix);
        let end = crate::keys::prefix_end(full.as_bytes()).unwrap_or_else(|| vec![0]);
        let resp = self
            .call(true, |c| {
                let (full, end) = (full.clone(), end.clone());
                async move { c.kv_client().get(full, Some(GetOptions::new().with_range(end).with_count_only())).await }
            })
            .await?;
        Ok(resp.count())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.call(true, |c| async move { c.kv_client().compact(revision, None).await })
            .await
            .map_err(|e| Self::fix_compacted(e, revision))?;
        Ok(())
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        // Upstream reads the compaction bookkeeping key; any read returns the store revision in its header.
        let resp = self
            .call(true, |c| async move {
                c.kv_client().get("compact_rev_key", Some(GetOptions::new().with_count_only())).await
            })
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    fn backend_name(&self) -> &'static str {
        "etcd3"
    }
}
