//! One conformance suite, run against the embedded store and a real etcd started by each test.

use apiserver_storage::keys::{decode_continue, encode_continue};
use apiserver_storage::testing::EtcdServer;
use apiserver_storage::{EmbeddedStore, EventKind, ListOptions, Store, StoreError, WatchEvent, WatchStream};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// Keeps whatever backs a store (a temp dir, an etcd process) alive for the test.
struct Backend {
    store: Arc<dyn Store>,
    _guard: Box<dyn std::any::Any + Send>,
}

fn embedded() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    Backend { store: Arc::new(store), _guard: Box::new(dir) }
}

async fn etcd() -> Backend {
    let server = EtcdServer::start();
    let store = server.store("/registry").await.expect("etcd comes up");
    Backend { store: Arc::new(store), _guard: Box::new(server) }
}

fn v(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next_event(w: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("a watch event within 10s")
        .expect("watch stream open")
        .expect("watch event, not an error")
}

async fn no_event(w: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), w.next()).await {
        panic!("unexpected watch item {item:?}");
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let b = super::embedded(); super::$name(b.store.clone()).await; })*
        }
        mod etcd_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let b = super::etcd().await; super::$name(b.store.clone()).await; })*
        }
    };
}

conformance!(
    create_get_and_revisions,
    get_at_old_revision,
    update_compares_mod_revision,
    delete_compares_and_returns_previous,
    list_prefix_pagination_is_consistent,
    list_at_revision_and_count,
    concurrent_conflicting_writers_exactly_one_wins,
    watch_from_now_delivers_every_change_in_order,
    watch_from_past_then_live_without_duplicates,
    watch_single_key_and_prefix_filtering,
    compaction_expires_old_revisions,
    keys_with_ttl_expire_and_watchers_see_the_delete,
    watch_cache_serves_lists_and_watches,
    watch_cache_slow_watcher_does_not_block_others,
    periodic_compactor_compacts_one_interval_behind,
);

async fn create_get_and_revisions(s: Arc<dyn Store>) {
    let before = s.current_revision().await.unwrap();
    let a = s.create("/pods/default/a", v("one"), None).await.unwrap();
    assert!(a.mod_revision > before);
    assert_eq!(a.create_revision, a.mod_revision);
    let b = s.create("/pods/default/b", v("two"), None).await.unwrap();
    assert!(b.mod_revision > a.mod_revision, "revisions increase with every write");
    assert_eq!(s.current_revision().await.unwrap(), b.mod_revision);

    let got = s.get("/pods/default/a", None).await.unwrap();
    assert_eq!(got.kv.as_ref().unwrap(), &a);
    assert_eq!(got.revision, b.mod_revision);
    assert!(s.get("/pods/default/missing", None).await.unwrap().kv.is_none());

    let err = s.create("/pods/default/a", v("again"), None).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(
        s.get("/pods/default/a", None).await.unwrap().kv.unwrap().value,
        v("one"),
        "failed create changes nothing"
    );
    assert_eq!(s.current_revision().await.unwrap(), b.mod_revision, "a failed write takes no revision");
}

async fn get_at_old_revision(s: Arc<dyn Store>) {
    let a = s.create("/cm/ns/x", v("1"), None).await.unwrap();
    let a2 = s.update("/cm/ns/x", v("2"), a.mod_revision, None).await.unwrap();
    assert_eq!(a2.create_revision, a.create_revision);
    let old = s.get("/cm/ns/x", Some(a.mod_revision)).await.unwrap();
    assert_eq!(old.kv.unwrap().value, v("1"));
    assert_eq!(old.revision, a.mod_revision);
    assert_eq!(s.get("/cm/ns/x", None).await.unwrap().kv.unwrap().value, v("2"));
    let (_, del_rev) = s.delete("/cm/ns/x", None).await.unwrap();
    assert!(s.get("/cm/ns/x", None).await.unwrap().kv.is_none());
    assert_eq!(s.get("/cm/ns/x", Some(del_rev - 1)).await.unwrap().kv.unwrap().value, v("2"));
}

async fn update_compares_mod_revision(s: Arc<dyn Store>) {
    let a = s.create("/deployments/ns/web", v("a"), None).await.unwrap();
    let b = s.update("/deployments/ns/web", v("b"), a.mod_revision, None).await.unwrap();
    assert!(b.mod_revision > a.mod_revision);
    match s.update("/deployments/ns/web", v("stale"), a.mod_revision, None).await.unwrap_err() {
        StoreError::Conflict { current, .. } => {
            assert_eq!(*current.unwrap(), b, "conflict carries the current value")
        }
        e => panic!("expected conflict, got {e:?}"),
    }
    let err = s.update("/deployments/ns/missing", v("x"), 1, None).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(s.get("/deployments/ns/web", None).await.unwrap().kv.unwrap().value, v("b"));
}

async fn delete_compares_and_returns_previous(s: Arc<dyn Store>) {
    let a = s.create("/secrets/ns/s", v("secret"), None).await.unwrap();
    let err = s.delete("/secrets/ns/s", Some(a.mod_revision + 1000)).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    let (prev, rev) = s.delete("/secrets/ns/s", Some(a.mod_revision)).await.unwrap();
    assert_eq!(prev, a);
    assert!(rev > a.mod_revision);
    assert!(s.delete("/secrets/ns/s", None).await.unwrap_err().is_not_found());
    assert!(s.delete("/secrets/ns/s", Some(rev)).await.unwrap_err().is_not_found());
    // A deleted key can be created again, with a fresh create revision.
    let again = s.create("/secrets/ns/s", v("new"), None).await.unwrap();
    assert_eq!(again.create_revision, again.mod_revision);
    assert!(again.create_revision > rev);
}

async fn list_prefix_pagination_is_consistent(s: Arc<dyn Store>) {
    for i in 0..25 {
        s.create(&format!("/pods/ns1/p{i:02}"), v(&format!("{i}")), None).await.unwrap();
    }
    s.create("/pods/ns2/other", v("x"), None).await.unwrap();
    s.create("/podsecurity/x", v("outside the prefix"), None).await.unwrap();

    let prefix = "/pods/ns1/";
    let page1 = s.list(prefix, ListOptions { limit: Some(10), ..Default::default() }).await.unwrap();
    assert_eq!(page1.items.len(), 10);
    assert!(page1.more);
    assert_eq!(page1.remaining, 15);
    assert_eq!(page1.items[0].key, "/pods/ns1/p00");
    // Writes after the first page must not show in later pages: they read at the first page's revision.
    s.create("/pods/ns1/p05a", v("late"), None).await.unwrap();
    let last = page1.items.last().unwrap().key.clone();
    s.delete(&format!("/pods/ns1/p{:02}", 20), None).await.unwrap();

    let token = encode_continue(&last, prefix, page1.revision);
    let mut keys: Vec<String> = page1.items.iter().map(|kv| kv.key.clone()).collect();
    let mut token = Some(token);
    while let Some(t) = token.take() {
        let (start, rev) = decode_continue(&t, prefix).unwrap();
        assert_eq!(rev, page1.revision);
        let page =
            s.list(prefix, ListOptions { limit: Some(10), revision: Some(rev), start_key: Some(start) }).await.unwrap();
        assert_eq!(page.revision, page1.revision);
        keys.extend(page.items.iter().map(|kv| kv.key.clone()));
        if page.more {
            token = Some(encode_continue(&page.items.last().unwrap().key, prefix, rev));
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("/pods/ns1/p{i:02}")).collect();
    assert_eq!(keys, expected);

    let all = s.list("/pods/", ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), 26, "25 + late - deleted + ns2");
    assert!(!all.more);
    assert!(all.items.windows(2).all(|w| w[0].key < w[1].key), "key order");
}

async fn list_at_revision_and_count(s: Arc<dyn Store>) {
    s.create("/nodes/a", v("a"), None).await.unwrap();
    let b = s.create("/nodes/b", v("b"), None).await.unwrap();
    s.create("/nodes/c", v("c"), None).await.unwrap();
    s.delete("/nodes/a", None).await.unwrap();
    s.update("/nodes/b", v("b2"), b.mod_revision, None).await.unwrap();

    let old = s.list("/nodes/", ListOptions { revision: Some(b.mod_revision), ..Default::default() }).await.unwrap();
    let seen: Vec<(String, Bytes)> = old.items.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
    assert_eq!(seen, vec![("/nodes/a".into(), v("a")), ("/nodes/b".into(), v("b"))]);
    let now = s.list("/nodes/", ListOptions::default()).await.unwrap();
    let seen: Vec<(String, Bytes)> = now.items.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
    assert_eq!(seen, vec![("/nodes/b".into(), v("b2")), ("/nodes/c".into(), v("c"))]);
    assert_eq!(s.count("/nodes/").await.unwrap(), 2);
    assert_eq!(s.count("/nothing/").await.unwrap(), 0);
}

async fn concurrent_conflicting_writers_exactly_one_wins(s: Arc<dyn Store>) {
    let base = s.create("/leases/kube-system/leader", v("nobody"), None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.update("/leases/kube-system/leader", v(&format!("writer-{i}")), base.mod_revision, None).await
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(kv) => winners.push(kv),
            Err(e) => assert!(e.is_conflict(), "losers get a conflict, got {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins");
    let now = s.get("/leases/kube-system/leader", None).await.unwrap().kv.unwrap();
    assert_eq!(now, winners[0]);

    // Concurrent creates of one key: one wins.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.create("/leases/kube-system/new", v(&format!("{i}")), None).await }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert!(matches!(e, StoreError::AlreadyExists { .. }), "{e:?}"),
        }
    }
    assert_eq!(ok, 1);
}

async fn watch_from_now_delivers_every_change_in_order(s: Arc<dyn Store>) {
    let mut w = s.watch("/pods/", true, 0).await.unwrap();
    let a = s.create("/pods/ns/a", v("1"), None).await.unwrap();
    let a2 = s.update("/pods/ns/a", v("2"), a.mod_revision, None).await.unwrap();
    let (_, del) = s.delete("/pods/ns/a", None).await.unwrap();
    s.create("/configmaps/ns/ignored", v("x"), None).await.unwrap();

    let e1 = next_event(&mut w).await;
    assert_eq!((e1.kind, e1.kv.clone(), e1.prev.clone()), (EventKind::Created, a.clone(), None));
    let e2 = next_event(&mut w).await;
    assert_eq!(e2.kind, EventKind::Modified);
    assert_eq!(e2.kv, a2);
    assert_eq!(e2.prev.as_ref().unwrap(), &a);
    let e3 = next_event(&mut w).await;
    assert_eq!(e3.kind, EventKind::Deleted);
    assert_eq!(e3.kv.key, "/pods/ns/a");
    assert_eq!(e3.kv.mod_revision, del);
    assert_eq!(e3.prev.as_ref().unwrap(), &a2, "delete carries the previous value");
    no_event(&mut w).await;
}

async fn watch_from_past_then_live_without_duplicates(s: Arc<dyn Store>) {
    let mut revs = Vec::new();
    for i in 0..50 {
        revs.push(s.create(&format!("/events/ns/e{i:02}"), v("x"), None).await.unwrap().mod_revision);
    }
    let start = revs[10];
    let mut w = s.watch("/events/", true, start).await.unwrap();
    // Live writes while the watcher is still catching up.
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 50..80 {
                out.push(s.create(&format!("/events/ns/e{i:02}"), v("x"), None).await.unwrap().mod_revision);
            }
            out
        })
    };
    let live = writer.await.unwrap();
    let expected: Vec<i64> = revs[10..].iter().chain(live.iter()).copied().collect();
    let mut got = Vec::new();
    while got.len() < expected.len() {
        got.push(next_event(&mut w).await.revision());
    }
    assert_eq!(got, expected, "every event from the start revision, once, in order");
    no_event(&mut w).await;
}

async fn watch_single_key_and_prefix_filtering(s: Arc<dyn Store>) {
    let mut key_watch = s.watch("/services/specs/ns/a", false, 0).await.unwrap();
    let mut ns_watch = s.watch("/services/specs/ns/", true, 0).await.unwrap();
    s.create("/services/specs/ns/ab", v("sibling with the key as prefix"), None).await.unwrap();
    s.create("/services/specs/other/a", v("other namespace"), None).await.unwrap();
    let a = s.create("/services/specs/ns/a", v("a"), None).await.unwrap();
    let e = next_event(&mut key_watch).await;
    assert_eq!(e.kv, a);
    no_event(&mut key_watch).await;
    assert_eq!(next_event(&mut ns_watch).await.kv.key, "/services/specs/ns/ab");
    assert_eq!(next_event(&mut ns_watch).await.kv.key, "/services/specs/ns/a");
    no_event(&mut ns_watch).await;
}

async fn compaction_expires_old_revisions(s: Arc<dyn Store>) {
    let a = s.create("/pods/ns/a", v("1"), None).await.unwrap();
    let a2 = s.update("/pods/ns/a", v("2"), a.mod_revision, None).await.unwrap();
    let b = s.create("/pods/ns/b", v("b"), None).await.unwrap();
    s.delete("/pods/ns/b", None).await.unwrap();
    let c = s.create("/pods/ns/c", v("c"), None).await.unwrap();
    let a3 = s.update("/pods/ns/a", v("3"), a2.mod_revision, None).await.unwrap();

    s.compact(c.mod_revision).await.unwrap();

    let err = s.get("/pods/ns/a", Some(a.mod_revision)).await.unwrap_err();
    assert!(err.is_compacted(), "{err:?}");
    let err = s.list("/pods/", ListOptions { revision: Some(b.mod_revision), ..Default::default() }).await.unwrap_err();
    assert!(err.is_compacted(), "{err:?}");
    match s.watch("/pods/", true, a.mod_revision).await {
        Err(e) => assert!(e.is_compacted(), "{e:?}"),
        Ok(mut w) => {
            let item = tokio::time::timeout(Duration::from_secs(10), w.next()).await.unwrap().unwrap();
            assert!(item.unwrap_err().is_compacted());
        }
    }
    // The state at and after the compaction revision is intact.
    let at = s.list("/pods/", ListOptions { revision: Some(c.mod_revision), ..Default::default() }).await.unwrap();
    let vals: Vec<Bytes> = at.items.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(vals, vec![v("2"), v("c")]);
    assert_eq!(s.get("/pods/ns/a", None).await.unwrap().kv.unwrap(), a3);
    let mut w = s.watch("/pods/", true, c.mod_revision).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv, c);
    let e = next_event(&mut w).await;
    assert_eq!(e.kv, a3);
    assert_eq!(e.prev.unwrap(), a2);
    // Compacting again at an old revision is reported, not silently accepted.
    assert!(s.compact(a.mod_revision).await.unwrap_err().is_compacted());
    let future = s.current_revision().await.unwrap() + 100;
    assert!(matches!(s.compact(future).await.unwrap_err(), StoreError::FutureRevision { .. }));
}

async fn keys_with_ttl_expire_and_watchers_see_the_delete(s: Arc<dyn Store>) {
    let mut w = s.watch("/events/", true, 0).await.unwrap();
    let e = s.create("/events/ns/short", v("event"), Some(Duration::from_secs(2))).await.unwrap();
    s.create("/events/ns/forever", v("event"), None).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv, e);
    next_event(&mut w).await;
    let deleted =
        tokio::time::timeout(Duration::from_secs(15), w.next()).await.expect("expiry within 15s").unwrap().unwrap();
    assert_eq!(deleted.kind, EventKind::Deleted);
    assert_eq!(deleted.kv.key, "/events/ns/short");
    assert!(s.get("/events/ns/short", None).await.unwrap().kv.is_none());
    assert!(s.get("/events/ns/forever", None).await.unwrap().kv.is_some());
}

async fn watch_cache_serves_lists_and_watches(s: Arc<dyn Store>) {
    use apiserver_storage::{WatchCache, WatchCacheOptions, WatchStart};
    let a = s.create("/pods/ns/a", v("a"), None).await.unwrap();
    let cache = WatchCache::new(s.clone(), "/pods/", WatchCacheOptions { history: 5, ..Default::default() });
    let (items, rev) = cache.list("/pods/", a.mod_revision).await.unwrap();
    assert_eq!(items, vec![a.clone()]);
    assert!(rev >= a.mod_revision);

    let mut initial = cache.watch("/pods/ns/", true, WatchStart::InitialState).await.unwrap();
    let b = s.create("/pods/ns/b", v("b"), None).await.unwrap();
    // A not-older-than list waits until the cache has seen the write.
    let (items, _) = cache.list("/pods/ns/", b.mod_revision).await.unwrap();
    assert_eq!(items.len(), 2);
    let first = initial.next().await.unwrap().unwrap();
    assert_eq!((first.kind, first.kv.clone()), (EventKind::Created, a.clone()));
    assert_eq!(initial.next().await.unwrap().unwrap().kv, b);

    // Resuming from a revision replays what followed it.
    let mut resumed = cache.watch("/pods/", true, WatchStart::After(a.mod_revision)).await.unwrap();
    assert_eq!(resumed.next().await.unwrap().unwrap().kv, b);
    for i in 0..10 {
        s.create(&format!("/pods/ns/x{i}"), v("x"), None).await.unwrap();
    }
    cache.list("/pods/", s.current_revision().await.unwrap()).await.unwrap();
    // Only 5 events of history: resuming from before them is "too old" (410).
    let err = cache.watch("/pods/", true, WatchStart::After(a.mod_revision)).await.unwrap_err();
    assert!(err.is_compacted(), "{err:?}");
    // Writes elsewhere move the store's revision without events under this prefix; the cache still
    // serves that revision (a client that listed from storage then watches from that revision).
    let elsewhere = s.create("/configmaps/ns/other", v("x"), None).await.unwrap();
    let (items, at) = cache.list("/pods/", elsewhere.mod_revision).await.unwrap();
    assert!(at >= elsewhere.mod_revision);
    assert_eq!(items.len(), 12);
    let mut from_storage_rv = cache.watch("/pods/", true, WatchStart::After(elsewhere.mod_revision)).await.unwrap();
    let later = s.create("/pods/ns/later", v("l"), None).await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), from_storage_rv.next()).await.unwrap().unwrap().unwrap().kv,
        later
    );
    // A revision beyond anything the store has times out like upstream's "Too large resource version".
    let err = cache.list("/pods/", rev + 10_000).await.unwrap_err();
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");
}

async fn watch_cache_slow_watcher_does_not_block_others(s: Arc<dyn Store>) {
    use apiserver_storage::{WatchCache, WatchCacheOptions, WatchStart};
    use std::sync::atomic::{AtomicI64, Ordering};
    let cache = WatchCache::new(s.clone(), "/pods/", WatchCacheOptions { watcher_buffer: 8, ..Default::default() });
    let mut slow = cache.watch("/pods/", true, WatchStart::Now).await.unwrap();
    let total = 40;
    // Fast watchers report the last revision they saw; the writer waits for all of them before the next
    // write, so they never fall behind, while the slow watcher never reads at all. If the slow watcher
    // held up delivery, the fast ones would stall and the wait below would time out.
    let mut progress = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..20 {
        let mut w = cache.watch("/pods/", true, WatchStart::Now).await.unwrap();
        let seen = Arc::new(AtomicI64::new(0));
        progress.push(seen.clone());
        readers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < total {
                let e = tokio::time::timeout(Duration::from_secs(20), w.next()).await.unwrap().unwrap().unwrap();
                got.push(e.revision());
                seen.store(e.revision(), Ordering::SeqCst);
            }
            got
        }));
    }
    let mut revs = Vec::new();
    for i in 0..total {
        let rev = s.create(&format!("/pods/ns/p{i}"), v("x"), None).await.unwrap().mod_revision;
        revs.push(rev);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while progress.iter().any(|p| p.load(Ordering::SeqCst) < rev) {
            assert!(std::time::Instant::now() < deadline, "fast watchers stalled at event {i}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for r in readers {
        assert_eq!(r.await.unwrap(), revs, "every fast watcher got every event in order");
    }
    // The slow watcher gets what fit in its buffer, then an error, never a silent gap.
    let mut delivered = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), slow.next()).await.unwrap() {
            Some(Ok(e)) => delivered.push(e.revision()),
            Some(Err(e)) => {
                assert!(matches!(e, StoreError::WatcherTooSlow), "{e:?}");
                break;
            }
            None => panic!("slow watcher ended without an error"),
        }
    }
    assert_eq!(delivered, revs[..8], "the buffered events, then the error");
}

async fn periodic_compactor_compacts_one_interval_behind(s: Arc<dyn Store>) {
    let old = s.create("/pods/ns/old", v("1"), None).await.unwrap();
    s.update("/pods/ns/old", v("2"), old.mod_revision, None).await.unwrap();
    let task = tokio::spawn(apiserver_storage::run_compactor(s.clone(), Duration::from_millis(300)));
    // Writes keep coming; after two rounds the revision seen in the first round is compacted.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        s.create(&format!("/events/ns/e{}", s.current_revision().await.unwrap()), v("x"), None).await.unwrap();
        match s.get("/pods/ns/old", Some(old.mod_revision)).await {
            Err(e) if e.is_compacted() => break,
            Ok(_) => {}
            Err(e) => panic!("{e:?}"),
        }
        assert!(std::time::Instant::now() < deadline, "the compactor never compacted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    assert_eq!(s.get("/pods/ns/old", None).await.unwrap().kv.unwrap().value, v("2"), "the latest value survives");
}
