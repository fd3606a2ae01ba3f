//! The watch cache: one per resource prefix, kept current by a single store watch, serving lists at
//! `resourceVersion=0` / not-older-than and watches from memory to any number of watchers.
//!
//! Each watcher has its own bounded buffer. The dispatcher never waits for a watcher: one whose buffer is
//! full is closed with [`StoreError::WatcherTooSlow`] (as upstream's cacher terminates slow watchers), so
//! one slow client never holds up the others.

use crate::{EventKind, KeyValue, ListOptions, Revision, Store, StoreError, WatchEvent};
use futures::{Stream, StreamExt};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

#[derive(Clone, Debug)]
pub struct WatchCacheOptions {
    /// Recent events kept for watches that resume from a resourceVersion.
    pub history: usize,
    /// Events buffered per watcher before it counts as too slow.
    pub watcher_buffer: usize,
    /// How long a read waits for the cache to reach a requested revision.
    pub freshness_timeout: Duration,
}

impl Default for WatchCacheOptions {
    fn default() -> Self {
        WatchCacheOptions { history: 10_000, watcher_buffer: 1024, freshness_timeout: Duration::from_secs(3) }
    }
}

/// Where a cache watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchStart {
    /// Changes after the cache's current revision only.
    Now,
    /// The current state as `Created` events, then changes (`resourceVersion=0`, `sendInitialEvents=true`).
    InitialState,
    /// Changes after this revision (`resourceVersion=N`); fails with `Compacted` when the cache no longer
    /// holds them.
    After(Revision),
}

const OPEN: u8 = 0;
const TOO_SLOW: u8 = 1;
const RESET: u8 = 2;

struct Watcher {
    key: String,
    prefix: bool,
    tx: mpsc::Sender<Arc<WatchEvent>>,
    closed: Arc<AtomicU8>,
}

impl Watcher {
    fn wants(&self, key: &str) -> bool {
        if self.prefix {
            key.starts_with(&self.key)
        } else {
            key == self.key
        }
    }
}

struct State {
    objects: BTreeMap<String, KeyValue>,
    /// Every event with a revision above `history_base` is in `history`.
    history: VecDeque<Arc<WatchEvent>>,
    history_base: Revision,
    revision: Revision,
    watchers: HashMap<u64, Watcher>,
    next_id: u64,
}

struct Shared {
    prefix: String,
    options: WatchCacheOptions,
    state: Mutex<State>,
    /// The cache's revision; `None` while (re)listing.
    revision: watch::Sender<Option<Revision>>,
}

/// A cache of every object under one prefix; see the module docs.
pub struct WatchCache {
    shared: Arc<Shared>,
    store: Arc<dyn Store>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A watch served by the cache. Yields the replayed or initial events first, then live ones.
pub struct CacheWatch {
    initial: VecDeque<Arc<WatchEvent>>,
    rx: mpsc::Receiver<Arc<WatchEvent>>,
    closed: Arc<AtomicU8>,
    /// The cache revision the watch was registered at (initial events reflect this revision).
    pub start_revision: Revision,
    finished: bool,
}

impl Stream for CacheWatch {
    type Item = Result<Arc<WatchEvent>, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(e) = self.initial.pop_front() {
            return Poll::Ready(Some(Ok(e)));
        }
        if self.finished {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(e)) => Poll::Ready(Some(Ok(e))),
            Poll::Ready(None) => {
                self.finished = true;
                match self.closed.load(Ordering::SeqCst) {
                    TOO_SLOW => Poll::Ready(Some(Err(StoreError::WatcherTooSlow))),
                    RESET => Poll::Ready(Some(Err(StoreError::CacheReset))),
                    _ => Poll::Ready(None),
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl std::fmt::Debug for CacheWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheWatch")
            .field("start_revision", &self.start_revision)
            .field("pending", &self.initial.len())
            .finish()
    }
}

impl CacheWatch {
    /// How many initial or replayed events are still to be yielded before live ones.
    pub fn pending_initial(&self) -> usize {
        self.initial.len()
    }
}

impl WatchCache {
    /// Starts a cache of everything under `prefix` (which ends with `/`), fed by `store`.
    pub fn new(store: Arc<dyn Store>, prefix: impl Into<String>, options: WatchCacheOptions) -> Self {
        let (revision, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            prefix: prefix.into(),
            options,
            state: Mutex::new(State {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_base: 0,
                revision: 0,
                watchers: HashMap::new(),
                next_id: 0,
            }),
            revision,
        });
        let task = tokio::spawn(run(store.clone(), shared.clone()));
        WatchCache { shared, store, task }
    }

    /// The cache's current revision (`None` while it is (re)listing).
    pub fn revision(&self) -> Option<Revision> {
        *self.shared.revision.borrow()
    }

    /// Waits until the cache is ready and at least at `min_revision`.
    async fn wait_for(&self, min_revision: Revision) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + self.shared.options.freshness_timeout;
        let mut rx = self.shared.revision.subscribe();
        loop {
            let wait = rx.wait_for(|rev| rev.is_some_and(|r| r >= min_revision));
            match tokio::time::timeout(Duration::from_millis(100), wait).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(_)) => return Err(StoreError::Unavailable("watch cache stopped".into())),
                Err(_) => {}
            }
            // The store's revision moves with writes to every resource; this cache only sees its own
            // prefix's events. When nothing under the prefix changed up to `min_revision`, the cache is
            // already that fresh.
            if self.advance_if_unchanged(min_revision).await? {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::FutureRevision {
                    requested: min_revision,
                    current: self.revision().unwrap_or(0),
                });
            }
        }
    }

    /// Moves the cache's revision to `target` when the store's state of this prefix at `target` is exactly
    /// what the cache holds (no event under the prefix between the two revisions). Returns whether the
    /// cache is now at least at `target`.
    async fn advance_if_unchanged(&self, target: Revision) -> Result<bool, StoreError> {
        let Some(seen) = self.revision() else { return Ok(false) };
        if seen >= target {
            return Ok(true);
        }
        if self.store.current_revision().await? < target {
            return Ok(false);
        }
        let list = match self
            .store
            .list(&self.shared.prefix, ListOptions { revision: Some(target), ..Default::default() })
            .await
        {
            Ok(l) => l,
            Err(StoreError::Compacted { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut state = self.shared.state.lock().unwrap();
        if state.revision != seen {
            // Events arrived meanwhile; the caller waits for them instead.
            return Ok(state.revision >= target);
        }
        let same = list.items.len() == state.objects.len()
            && list
                .items
                .iter()
                .all(|kv| state.objects.get(&kv.key).is_some_and(|o| o.mod_revision == kv.mod_revision));
        if same {
            state.revision = target;
            drop(state);
            self.shared.revision.send_replace(Some(target));
        }
        Ok(same)
    }

    /// Every object under `prefix` (within the cache's prefix), in key order, at a revision no older than
    /// `min_revision`; returns them and that revision.
    pub async fn list(&self, prefix: &str, min_revision: Revision) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        self.wait_for(min_revision).await?;
        let state = self.shared.state.lock().unwrap();
        let items = state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        Ok((items, state.revision))
    }

    /// One object at a revision no older than `min_revision`.
    pub async fn get(&self, key: &str, min_revision: Revision) -> Result<(Option<KeyValue>, Revision), StoreError> {
        self.wait_for(min_revision).await?;
        let state = self.shared.state.lock().unwrap();
        Ok((state.objects.get(key).cloned(), state.revision))
    }

    /// Watches `key` (or everything under it when `prefix`) from `start`.
    pub async fn watch(&self, key: &str, prefix: bool, start: WatchStart) -> Result<CacheWatch, StoreError> {
        let min = match start {
            WatchStart::After(rev) => rev,
            _ => 0,
        };
        self.wait_for(min).await?;
        let (tx, rx) = mpsc::channel(self.shared.options.watcher_buffer.max(1));
        let closed = Arc::new(AtomicU8::new(OPEN));
        let watcher = Watcher { key: key.to_string(), prefix, tx, closed: closed.clone() };
        let mut state = self.shared.state.lock().unwrap();
        let initial: VecDeque<Arc<WatchEvent>> = match start {
            WatchStart::Now => VecDeque::new(),
            WatchStart::InitialState => state
                .objects
                .range(key.to_string()..)
                .take_while(|(k, _)| if prefix { k.starts_with(key) } else { k.as_str() == key })
                .map(|(_, kv)| Arc::new(WatchEvent { kind: EventKind::Created, kv: kv.clone(), prev: None }))
                .collect(),
            WatchStart::After(rev) => {
                if rev < state.history_base {
                    return Err(StoreError::Compacted { requested: rev, compacted: state.history_base });
                }
                let from = state.history.partition_point(|e| e.revision() <= rev);
                state.history.iter().skip(from).filter(|e| watcher.wants(&e.kv.key)).cloned().collect()
            }
        };
        let start_revision = state.revision;
        state.watchers.retain(|_, w| !w.tx.is_closed());
        let id = state.next_id;
        state.next_id += 1;
        state.watchers.insert(id, watcher);
        Ok(CacheWatch { initial, rx, closed, start_revision, finished: false })
    }

    /// How many watchers are registered (closed ones are dropped at the next event).
    pub fn watcher_count(&self) -> usize {
        self.shared.state.lock().unwrap().watchers.len()
    }
}

fn close_all(state: &mut State, why: u8) {
    for (_, w) in state.watchers.drain() {
        w.closed.store(why, Ordering::SeqCst);
    }
}

fn apply(shared: &Shared, event: WatchEvent) {
    let event = Arc::new(event);
    let mut state = shared.state.lock().unwrap();
    match event.kind {
        EventKind::Deleted => {
            state.objects.remove(&event.kv.key);
        }
        _ => {
            state.objects.insert(event.kv.key.clone(), event.kv.clone());
        }
    }
    state.revision = event.revision();
    state.history.push_back(event.clone());
    while state.history.len() > shared.options.history {
        let evicted = state.history.pop_front().expect("history not empty");
        state.history_base = evicted.revision();
    }
    state.watchers.retain(|_, w| {
        if !w.wants(&event.kv.key) {
            return !w.tx.is_closed();
        }
        match w.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                w.closed.store(TOO_SLOW, Ordering::SeqCst);
                tracing::warn!(prefix = %shared.prefix, key = %w.key, "closing a watcher that fell too far behind");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
    let rev = state.revision;
    drop(state);
    shared.revision.send_replace(Some(rev));
}

async fn run(store: Arc<dyn Store>, shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        let list = match store.list(&shared.prefix, ListOptions::default()).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(prefix = %shared.prefix, error = %e, "watch cache cannot list; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        {
            let mut state = shared.state.lock().unwrap();
            if !first {
                close_all(&mut state, RESET);
            }
            state.objects = list.items.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
            state.history.clear();
            state.history_base = list.revision;
            state.revision = list.revision;
        }
        first = false;
        shared.revision.send_replace(Some(list.revision));
        let mut stream = match store.watch(&shared.prefix, true, list.revision + 1).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(prefix = %shared.prefix, error = %e, "watch cache cannot watch; re-listing");
                shared.revision.send_replace(None);
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => apply(&shared, event),
                Err(e) => {
                    tracing::warn!(prefix = %shared.prefix, error = %e, "watch cache lost its watch; re-listing");
                    break;
                }
            }
        }
        shared.revision.send_replace(None);
    }
}
