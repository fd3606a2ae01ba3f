//! The embedded store: an MVCC log in one SQLite file (the design K3s's kine proved), for single-node
//! clusters without etcd.
//!
//! Every write appends a row whose auto-increment id is the new revision; the latest row of a key is its
//! value (or a tombstone). All writes go through one writer thread that commits them in batches (group
//! commit: one fsync for many writes) and then publishes their events in revision order, so watchers see
//! every change exactly once. Recent events stay in memory; a watcher that starts in the past or falls
//! behind reads the rows back from the file.

use crate::keys::prefix_end;
use crate::{
    EventKind, GetResult, KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchEvent, WatchStream,
};
use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};

/// The database file inside `--data-dir`.
pub const DB_FILE: &str = "ferrokube.db";
const LOCK_FILE: &str = "LOCK";
/// Writes committed in one transaction at most.
const MAX_BATCH: usize = 512;
/// Recent events kept in memory for watchers.
const EVENT_RING: usize = 20_000;
/// Rows a lagging watcher reads back from the file at a time.
const CATCH_UP_PAGE: i64 = 1000;
const READERS: usize = 4;
/// How long `open` waits for another holder of the data directory to let go.
const LOCK_WAIT: Duration = Duration::from_secs(3);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name BLOB NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    expires_at INTEGER,
    value BLOB
);
CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id);
CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn sql_err(e: rusqlite::Error) -> StoreError {
    StoreError::Internal(format!("sqlite: {e}"))
}

enum WriteOp {
    Create {
        key: String,
        value: Bytes,
        ttl: Option<Duration>,
        reply: oneshot::Sender<Result<KeyValue, StoreError>>,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
        reply: oneshot::Sender<Result<KeyValue, StoreError>>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
        reply: oneshot::Sender<Result<(KeyValue, Revision), StoreError>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Checkpoint {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    ExpireSweep,
}

struct EventLog {
    /// Every event with a revision above `base` is in `ring`, in order.
    base: Revision,
    ring: VecDeque<Arc<WatchEvent>>,
}

struct Shared {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    events: Mutex<EventLog>,
    revision: watch::Sender<Revision>,
    compacted: AtomicI64,
    writer: std::sync::mpsc::Sender<WriteOp>,
    _lock: File,
}

/// A single-file MVCC store in `--data-dir`; see the module docs.
#[derive(Clone)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let file_err =
        |e: rusqlite::Error| StoreError::DataFile { path: path.display().to_string(), message: e.to_string() };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(file_err)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(file_err)?;
    // WAL with FULL sync: a commit is on disk before it is acknowledged, so neither a killed process nor a
    // lost machine loses an acknowledged write.
    conn.pragma_update(None, "journal_mode", "WAL").map_err(file_err)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(file_err)?;
    Ok(conn)
}

impl EmbeddedStore {
    /// Opens (creating when absent) the store in `data_dir`.
    ///
    /// Fails with [`StoreError::DataFile`] naming the file when it is not a database, is damaged, or is
    /// held by another process.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| StoreError::DataFile {
            path: dir.display().to_string(),
            message: format!("cannot create data directory: {e}"),
        })?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::DataFile { path: lock_path.display().to_string(), message: e.to_string() })?;
        // A store closed a moment ago may still be releasing the lock (its background threads let go of
        // it on their next wake-up), so wait briefly before calling the directory taken.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        while lock.try_lock().is_err() {
            if std::time::Instant::now() >= deadline {
                return Err(StoreError::DataFile {
                    path: lock_path.display().to_string(),
                    message: "the data directory is in use by another process".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }

        let path = dir.join(DB_FILE);
        let file_err = |message: String| StoreError::DataFile { path: path.display().to_string(), message };
        let writer = open_connection(&path)?;
        let check: String = writer
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| file_err(format!("{e} (the file is damaged or is not a ferrokube data file)")))?;
        if check != "ok" {
            return Err(file_err(format!("integrity check failed: {check}")));
        }
        writer.execute_batch(SCHEMA).map_err(|e| file_err(e.to_string()))?;
        let current = current_revision(&writer).map_err(|e| file_err(e.to_string()))?;
        let compacted: i64 = writer
            .query_row("SELECT v FROM meta WHERE k = 'compacted'", [], |r| r.get(0))
            .optional()
            .map_err(|e| file_err(e.to_string()))?
            .unwrap_or(0);
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(open_connection(&path)?);
        }

        let (tx, rx) = std::sync::mpsc::channel();
        let (rev_tx, _) = watch::channel(current);
        let shared = Arc::new(Shared {
            path: path.clone(),
            readers: Mutex::new(readers),
            events: Mutex::new(EventLog { base: current, ring: VecDeque::new() }),
            revision: rev_tx,
            compacted: AtomicI64::new(compacted),
            writer: tx,
            _lock: lock,
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("embedded-store-writer".into())
            .spawn(move || writer_loop(writer, rx, weak))
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let sweeper = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("embedded-store-ttl".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(500));
                match sweeper.upgrade() {
                    Some(s) => {
                        if s.writer.send(WriteOp::ExpireSweep).is_err() {
                            return;
                        }
                    }
                    None => return,
                }
            })
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        tracing::info!(path = %path.display(), revision = current, compacted, "opened embedded store");
        Ok(EmbeddedStore { shared })
    }

    /// Folds the write-ahead log into the database file (for backups and tests; SQLite also does this
    /// on its own as the log grows).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(WriteOp::Checkpoint { reply }, rx).await
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let conn = shared.readers.lock().unwrap().pop();
            let conn = match conn {
                Some(c) => c,
                None => open_connection(&shared.path)?,
            };
            let result = f(&conn);
            shared.readers.lock().unwrap().push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    async fn submit<T>(&self, op: WriteOp, rx: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        self.shared.writer.send(op).map_err(|_| StoreError::Unavailable("embedded store writer stopped".into()))?;
        rx.await.map_err(|_| StoreError::Unavailable("embedded store writer stopped".into()))?
    }

    fn check_revision(&self, revision: Revision) -> Result<(), StoreError> {
        let compacted = self.shared.compacted.load(Ordering::SeqCst);
        if revision < compacted {
            return Err(StoreError::Compacted { requested: revision, compacted });
        }
        let current = *self.shared.revision.borrow();
        if revision > current {
            return Err(StoreError::FutureRevision { requested: revision, current });
        }
        Ok(())
    }
}

fn current_revision(conn: &Connection) -> rusqlite::Result<Revision> {
    Ok(conn.query_row("SELECT seq FROM sqlite_sequence WHERE name = 'kv'", [], |r| r.get(0)).optional()?.unwrap_or(0))
}

/// The latest row of `key` at or before `revision`.
struct Row {
    id: i64,
    create_revision: i64,
    deleted: bool,
    value: Bytes,
}

fn latest_row(conn: &Connection, key: &[u8], revision: Option<Revision>) -> rusqlite::Result<Option<Row>> {
    conn.prepare_cached(
        "SELECT id, create_revision, deleted, value FROM kv WHERE name = ?1 AND id <= ?2 ORDER BY id DESC LIMIT 1",
    )?
    .query_row(params![key, revision.unwrap_or(i64::MAX)], |r| {
        Ok(Row {
            id: r.get(0)?,
            create_revision: r.get(1)?,
            deleted: r.get::<_, i64>(2)? != 0,
            value: r.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default().into(),
        })
    })
    .optional()
}

fn live_kv(key: &str, row: Option<Row>) -> Option<KeyValue> {
    row.filter(|r| !r.deleted).map(|r| KeyValue {
        key: key.to_string(),
        value: r.value,
        create_revision: r.create_revision,
        mod_revision: r.id,
    })
}

fn range_bounds(prefix: &str) -> (Vec<u8>, Option<Vec<u8>>) {
    (prefix.as_bytes().to_vec(), prefix_end(prefix.as_bytes()))
}

fn key_string(raw: Vec<u8>) -> String {
    String::from_utf8(raw).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// State of every key in `[start, end)` at `revision`, in key order, at most `limit` (None: all).
fn range_at(
    conn: &Connection,
    start: &[u8],
    end: Option<&[u8]>,
    revision: Revision,
    limit: Option<i64>,
) -> rusqlite::Result<Vec<KeyValue>> {
    let mut stmt = conn.prepare_cached(
        "SELECT k.name, k.value, k.create_revision, k.id FROM kv k
         WHERE k.name >= ?1 AND (?2 IS NULL OR k.name < ?2) AND k.id <= ?3 AND k.deleted = 0
           AND k.id = (SELECT MAX(i.id) FROM kv i WHERE i.name = k.name AND i.id <= ?3)
         ORDER BY k.name LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![start, end, revision, limit.unwrap_or(-1)], |r| {
        Ok(KeyValue {
            key: key_string(r.get(0)?),
            value: r.get::<_, Option<Vec<u8>>>(1)?.unwrap_or_default().into(),
            create_revision: r.get(2)?,
            mod_revision: r.get(3)?,
        })
    })?;
    rows.collect()
}

fn count_at(conn: &Connection, start: &[u8], end: Option<&[u8]>, revision: Revision) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM kv k
         WHERE k.name >= ?1 AND (?2 IS NULL OR k.name < ?2) AND k.id <= ?3 AND k.deleted = 0
           AND k.id = (SELECT MAX(i.id) FROM kv i WHERE i.name = k.name AND i.id <= ?3)",
    )?
    .query_row(params![start, end, revision], |r| r.get(0))
}

/// Events with revision in `[from, to]` for keys in `[start, end)`, at most `limit`, read back from the file.
fn events_from_rows(
    conn: &Connection,
    from: Revision,
    to: Revision,
    start: &[u8],
    end: Option<&[u8]>,
    limit: i64,
) -> rusqlite::Result<Vec<WatchEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT k.id, k.name, k.created, k.deleted, k.create_revision, k.value, p.id, p.create_revision, p.value
         FROM kv k LEFT JOIN kv p ON p.id = k.prev_revision
         WHERE k.id >= ?1 AND k.id <= ?2 AND k.name >= ?3 AND (?4 IS NULL OR k.name < ?4)
         ORDER BY k.id LIMIT ?5",
    )?;
    let rows = stmt.query_map(params![from, to, start, end, limit], |r| {
        let key = key_string(r.get(1)?);
        let created = r.get::<_, i64>(2)? != 0;
        let deleted = r.get::<_, i64>(3)? != 0;
        let prev = match r.get::<_, Option<i64>>(6)? {
            Some(prev_id) => Some(KeyValue {
                key: key.clone(),
                value: r.get::<_, Option<Vec<u8>>>(8)?.unwrap_or_default().into(),
                create_revision: r.get(7)?,
                mod_revision: prev_id,
            }),
            None => None,
        };
        let id: i64 = r.get(0)?;
        let kind = if deleted {
            EventKind::Deleted
        } else if created {
            EventKind::Created
        } else {
            EventKind::Modified
        };
        let kv = KeyValue {
            key,
            value: if deleted { Bytes::new() } else { r.get::<_, Option<Vec<u8>>>(5)?.unwrap_or_default().into() },
            create_revision: if deleted { 0 } else { r.get(4)? },
            mod_revision: id,
        };
        Ok(WatchEvent { kind, kv, prev: if created { None } else { prev } })
    })?;
    rows.collect()
}

/// Applies one write inside the open transaction; returns its result and the event it produced.
struct Applied<T> {
    result: Result<T, StoreError>,
    event: Option<WatchEvent>,
}

/// One row of the log. `create_revision: None` means "this row creates the key".
struct NewRow<'a> {
    key: &'a str,
    created: bool,
    deleted: bool,
    create_revision: Option<i64>,
    prev_revision: i64,
    expires_at: Option<i64>,
    value: Option<&'a [u8]>,
}

fn insert_row(tx: &Connection, row: NewRow<'_>) -> rusqlite::Result<i64> {
    let NewRow { key, created, deleted, create_revision, prev_revision, expires_at, value } = row;
    tx.prepare_cached(
        "INSERT INTO kv (name, created, deleted, create_revision, prev_revision, expires_at, value)
         VALUES (?1, ?2, ?3, COALESCE(?4, 0), ?5, ?6, ?7)",
    )?
    .execute(params![
        key.as_bytes(),
        created as i64,
        deleted as i64,
        create_revision,
        prev_revision,
        expires_at,
        value
    ])?;
    let id = tx.last_insert_rowid();
    if create_revision.is_none() {
        tx.prepare_cached("UPDATE kv SET create_revision = ?1 WHERE id = ?1")?.execute(params![id])?;
    }
    Ok(id)
}

fn expiry(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|t| now_ms() + t.as_millis() as i64)
}

fn apply_create(
    tx: &Connection,
    key: &str,
    value: &Bytes,
    ttl: Option<Duration>,
) -> rusqlite::Result<Applied<KeyValue>> {
    let current = latest_row(tx, key.as_bytes(), None)?;
    if current.as_ref().is_some_and(|r| !r.deleted) {
        return Ok(Applied { result: Err(StoreError::AlreadyExists { key: key.into() }), event: None });
    }
    let id = insert_row(
        tx,
        NewRow {
            key,
            created: true,
            deleted: false,
            create_revision: None,
            prev_revision: 0,
            expires_at: expiry(ttl),
            value: Some(value),
        },
    )?;
    let kv = KeyValue { key: key.into(), value: value.clone(), create_revision: id, mod_revision: id };
    Ok(Applied { result: Ok(kv.clone()), event: Some(WatchEvent { kind: EventKind::Created, kv, prev: None }) })
}

fn conflict(key: &str, current: Option<KeyValue>) -> StoreError {
    StoreError::Conflict { key: key.into(), current: current.map(Box::new) }
}

fn apply_update(
    tx: &Connection,
    key: &str,
    value: &Bytes,
    expected: Revision,
    ttl: Option<Duration>,
) -> rusqlite::Result<Applied<KeyValue>> {
    let Some(prev) = live_kv(key, latest_row(tx, key.as_bytes(), None)?) else {
        return Ok(Applied { result: Err(StoreError::NotFound { key: key.into() }), event: None });
    };
    if prev.mod_revision != expected {
        return Ok(Applied { result: Err(conflict(key, Some(prev))), event: None });
    }
    let id = insert_row(
        tx,
        NewRow {
            key,
            created: false,
            deleted: false,
            create_revision: Some(prev.create_revision),
            prev_revision: prev.mod_revision,
            expires_at: expiry(ttl),
            value: Some(value),
        },
    )?;
    let kv =
        KeyValue { key: key.into(), value: value.clone(), create_revision: prev.create_revision, mod_revision: id };
    Ok(Applied { result: Ok(kv.clone()), event: Some(WatchEvent { kind: EventKind::Modified, kv, prev: Some(prev) }) })
}

fn apply_delete(
    tx: &Connection,
    key: &str,
    expected: Option<Revision>,
) -> rusqlite::Result<Applied<(KeyValue, Revision)>> {
    let Some(prev) = live_kv(key, latest_row(tx, key.as_bytes(), None)?) else {
        return Ok(Applied { result: Err(StoreError::NotFound { key: key.into() }), event: None });
    };
    if expected.is_some_and(|e| e != prev.mod_revision) {
        return Ok(Applied { result: Err(conflict(key, Some(prev))), event: None });
    }
    let id = insert_row(
        tx,
        NewRow {
            key,
            created: false,
            deleted: true,
            create_revision: Some(prev.create_revision),
            prev_revision: prev.mod_revision,
            expires_at: None,
            value: None,
        },
    )?;
    let kv = KeyValue { key: key.into(), value: Bytes::new(), create_revision: 0, mod_revision: id };
    Ok(Applied {
        result: Ok((prev.clone(), id)),
        event: Some(WatchEvent { kind: EventKind::Deleted, kv, prev: Some(prev) }),
    })
}

/// Removes every row that no read or watch at or after `revision` can see: rows superseded before it
/// (kept when the superseding row is exactly `revision`, so that watches from `revision` still get the
/// previous value) and tombstones older than it.
fn apply_compact(tx: &Connection, revision: Revision) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM kv WHERE id < ?1 AND EXISTS
           (SELECT 1 FROM kv n WHERE n.name = kv.name AND n.id > kv.id AND n.id < ?1)",
        params![revision],
    )?;
    tx.execute("DELETE FROM kv WHERE deleted = 1 AND id < ?1", params![revision])?;
    tx.execute(
        "INSERT INTO meta (k, v) VALUES ('compacted', ?1) ON CONFLICT (k) DO UPDATE SET v = ?1",
        params![revision],
    )?;
    Ok(())
}

fn expired_keys(tx: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = tx.prepare_cached(
        "SELECT k.name, k.id FROM kv k WHERE k.expires_at IS NOT NULL AND k.expires_at <= ?1 AND k.deleted = 0
           AND k.id = (SELECT MAX(i.id) FROM kv i WHERE i.name = k.name) LIMIT 1000",
    )?;
    let rows = stmt.query_map(params![now_ms()], |r| Ok((key_string(r.get(0)?), r.get(1)?)))?;
    rows.collect()
}

enum Reply {
    Kv(oneshot::Sender<Result<KeyValue, StoreError>>, Result<KeyValue, StoreError>),
    Del(oneshot::Sender<Result<(KeyValue, Revision), StoreError>>, Result<(KeyValue, Revision), StoreError>),
    Unit(oneshot::Sender<Result<(), StoreError>>, Result<(), StoreError>),
}

impl Reply {
    fn fail(self, err: &str) {
        let e = || StoreError::Internal(format!("sqlite commit failed: {err}"));
        match self {
            Reply::Kv(tx, _) => drop(tx.send(Err(e()))),
            Reply::Del(tx, _) => drop(tx.send(Err(e()))),
            Reply::Unit(tx, _) => drop(tx.send(Err(e()))),
        }
    }
    fn send(self) {
        match self {
            Reply::Kv(tx, r) => drop(tx.send(r)),
            Reply::Del(tx, r) => drop(tx.send(r)),
            Reply::Unit(tx, r) => drop(tx.send(r)),
        }
    }
}

fn writer_loop(mut conn: Connection, rx: std::sync::mpsc::Receiver<WriteOp>, shared: std::sync::Weak<Shared>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // A checkpoint cannot run inside a transaction: answer those first, on their own.
        let (checkpoints, batch): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|op| matches!(op, WriteOp::Checkpoint { .. }));
        for op in checkpoints {
            if let WriteOp::Checkpoint { reply } = op {
                let r = conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .map_err(|e| StoreError::Internal(format!("sqlite checkpoint: {e}")));
                let _ = reply.send(r);
            }
        }
        if batch.is_empty() {
            continue;
        }
        let mut replies = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        let mut compacted_to = None;
        let outcome = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for op in batch {
                match op {
                    WriteOp::Create { key, value, ttl, reply } => {
                        let a = apply_create(&tx, &key, &value, ttl)?;
                        events.extend(a.event);
                        replies.push(Reply::Kv(reply, a.result));
                    }
                    WriteOp::Update { key, value, expected, ttl, reply } => {
                        let a = apply_update(&tx, &key, &value, expected, ttl)?;
                        events.extend(a.event);
                        replies.push(Reply::Kv(reply, a.result));
                    }
                    WriteOp::Delete { key, expected, reply } => {
                        let a = apply_delete(&tx, &key, expected)?;
                        events.extend(a.event);
                        replies.push(Reply::Del(reply, a.result));
                    }
                    WriteOp::Compact { revision, reply } => {
                        let compacted = compacted_to.unwrap_or_else(|| shared.compacted.load(Ordering::SeqCst));
                        let current = current_revision(&tx)?;
                        let result = if revision <= compacted {
                            Err(StoreError::Compacted { requested: revision, compacted })
                        } else if revision > current {
                            Err(StoreError::FutureRevision { requested: revision, current })
                        } else {
                            apply_compact(&tx, revision)?;
                            compacted_to = Some(revision);
                            Ok(())
                        };
                        replies.push(Reply::Unit(reply, result));
                    }
                    WriteOp::Checkpoint { .. } => {
                        unreachable!("checkpoints are answered before the batch")
                    }
                    WriteOp::ExpireSweep => {
                        for (key, rev) in expired_keys(&tx)? {
                            events.extend(apply_delete(&tx, &key, Some(rev))?.event);
                        }
                    }
                }
            }
            tx.commit()
        })();
        match outcome {
            Ok(()) => {
                if let Some(rev) = compacted_to {
                    shared.compacted.store(rev, Ordering::SeqCst);
                }
                if let Some(last) = events.last().map(|e| e.revision()) {
                    let mut log = shared.events.lock().unwrap();
                    for e in events {
                        log.ring.push_back(Arc::new(e));
                    }
                    while log.ring.len() > EVENT_RING {
                        let evicted = log.ring.pop_front().expect("ring not empty");
                        log.base = evicted.revision();
                    }
                    drop(log);
                    shared.revision.send_replace(last);
                }
                replies.into_iter().for_each(Reply::send);
            }
            Err(e) => {
                tracing::error!(path = %shared.path.display(), error = %e, "embedded store transaction failed");
                let msg = e.to_string();
                replies.into_iter().for_each(|r| r.fail(&msg));
            }
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<GetResult, StoreError> {
        if let Some(rev) = revision {
            self.check_revision(rev)?;
        }
        let key = key.to_string();
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(sql_err)?;
            let current = current_revision(&tx).map_err(sql_err)?;
            let row = latest_row(&tx, key.as_bytes(), revision).map_err(sql_err)?;
            Ok(GetResult { kv: live_kv(&key, row), revision: revision.unwrap_or(current) })
        })
        .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        if let Some(rev) = opts.revision.filter(|r| *r > 0) {
            self.check_revision(rev)?;
        }
        let (mut start, end) = range_bounds(prefix);
        if let Some(s) = &opts.start_key {
            if s.as_bytes() > start.as_slice() {
                start = s.as_bytes().to_vec();
            }
        }
        let shared = self.shared.clone();
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(sql_err)?;
            let revision = match opts.revision.filter(|r| *r > 0) {
                Some(r) => r,
                None => current_revision(&tx).map_err(sql_err)?,
            };
            // A compaction may have committed since the check above; rows it removed would be missing.
            let compacted = shared.compacted.load(Ordering::SeqCst);
            if revision < compacted {
                return Err(StoreError::Compacted { requested: revision, compacted });
            }
            let limit = opts.limit.filter(|l| *l > 0);
            let mut items = range_at(&tx, &start, end.as_deref(), revision, limit.map(|l| l + 1)).map_err(sql_err)?;
            let more = limit.is_some_and(|l| items.len() as i64 > l);
            let mut remaining = 0;
            if more {
                items.truncate(limit.unwrap() as usize);
                let mut after = items.last().expect("limit > 0").key.as_bytes().to_vec();
                after.push(0);
                remaining = count_at(&tx, &after, end.as_deref(), revision).map_err(sql_err)?;
            }
            Ok(ListResult { items, revision, more, remaining })
        })
        .await
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<KeyValue, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(WriteOp::Create { key: key.into(), value, ttl, reply }, rx).await
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(WriteOp::Update { key: key.into(), value, expected, ttl, reply }, rx).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(WriteOp::Delete { key: key.into(), expected, reply }, rx).await
    }

    async fn watch(&self, key: &str, prefix: bool, start_revision: Revision) -> Result<WatchStream, StoreError> {
        let compacted = self.shared.compacted.load(Ordering::SeqCst);
        if start_revision > 0 && start_revision < compacted {
            return Err(StoreError::Compacted { requested: start_revision, compacted });
        }
        let mut rev_rx = self.shared.revision.subscribe();
        let next = if start_revision > 0 { start_revision } else { *rev_rx.borrow_and_update() + 1 };
        let (start, end) = if prefix {
            range_bounds(key)
        } else {
            let mut end = key.as_bytes().to_vec();
            end.push(0);
            (key.as_bytes().to_vec(), Some(end))
        };
        let (tx, rx) = mpsc::channel(256);
        let store = self.clone();
        tokio::spawn(async move {
            let mut next = next;
            loop {
                let current = *rev_rx.borrow_and_update();
                if next <= current {
                    let batch = store.events_after(next, current, &start, end.as_deref()).await;
                    match batch {
                        Ok((events, scanned_to)) => {
                            for e in events {
                                if tx.send(Ok(e)).await.is_err() {
                                    return;
                                }
                            }
                            next = scanned_to + 1;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                    continue;
                }
                tokio::select! {
                    changed = rev_rx.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Box::pin(crate::types::receiver_stream(rx)))
    }

    async fn count(&self, prefix: &str) -> Result<i64, StoreError> {
        let (start, end) = range_bounds(prefix);
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(sql_err)?;
            let rev = current_revision(&tx).map_err(sql_err)?;
            count_at(&tx, &start, end.as_deref(), rev).map_err(sql_err)
        })
        .await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(WriteOp::Compact { revision, reply }, rx).await
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(*self.shared.revision.borrow())
    }

    fn backend_name(&self) -> &'static str {
        "embedded"
    }
}

impl EmbeddedStore {
    /// Events with revision in `[from, to]` for keys in `[start, end)`, from memory when they are still
    /// there, else from the file. Returns them and the highest revision examined.
    async fn events_after(
        &self,
        from: Revision,
        to: Revision,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<(Vec<WatchEvent>, Revision), StoreError> {
        let in_range = |k: &[u8]| k >= start && end.is_none_or(|e| k < e);
        {
            let log = self.shared.events.lock().unwrap();
            if from > log.base {
                let skip = log.ring.partition_point(|e| e.revision() < from);
                let mut out = Vec::new();
                let mut last = from - 1;
                for e in log.ring.iter().skip(skip) {
                    if e.revision() > to {
                        break;
                    }
                    last = e.revision();
                    if in_range(e.kv.key.as_bytes()) {
                        out.push(WatchEvent::clone(e));
                    }
                }
                return Ok((out, last.max(from - 1)));
            }
        }
        let (start, end) = (start.to_vec(), end.map(<[u8]>::to_vec));
        let shared = self.shared.clone();
        self.read(move |conn| {
            let tx = conn.unchecked_transaction().map_err(sql_err)?;
            let compacted = shared.compacted.load(Ordering::SeqCst);
            if from < compacted {
                return Err(StoreError::Compacted { requested: from, compacted });
            }
            let events = events_from_rows(&tx, from, to, &start, end.as_deref(), CATCH_UP_PAGE).map_err(sql_err)?;
            let scanned_to = if (events.len() as i64) < CATCH_UP_PAGE {
                to
            } else {
                events.last().map(|e| e.revision()).unwrap_or(to)
            };
            Ok((events, scanned_to))
        })
        .await
    }
}
