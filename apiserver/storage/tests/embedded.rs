//! What only the embedded store must prove: durability across SIGKILL, and clear errors on bad files.

use apiserver_storage::{EmbeddedStore, ListOptions, Store, StoreError};
use bytes::Bytes;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

const CHILD_ENV: &str = "FERROKUBE_CRASH_CHILD_DIR";

/// Runs only as the child of `sigkill_during_writes_loses_no_acknowledged_write`: writes forever from
/// several tasks and prints every acknowledged write.
#[test]
#[ignore = "helper process for sigkill_during_writes_loses_no_acknowledged_write"]
fn crash_child_helper() {
    let dir = std::env::var(CHILD_ENV).expect("run by the crash test");
    let round: String = std::env::var("FERROKUBE_CRASH_ROUND").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let store = Arc::new(EmbeddedStore::open(&dir).unwrap());
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            let round = round.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/configmaps/r{round}/t{t}-{i}");
                    let kv = store.create(&key, Bytes::from(format!("value-{i}")), None).await.unwrap();
                    // One line per acknowledged write; the parent reads them until it kills us.
                    println!("ACK {} {}", key, kv.mod_revision);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn sigkill_during_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut last_revision = 0;
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child_helper", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env("FERROKUBE_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut acked = Vec::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let kill_after = 300 + round * 150;
        while acked.len() < kill_after {
            let line = lines.next().expect("child keeps writing").unwrap();
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (key, rev) = rest.split_once(' ').unwrap();
                acked.push((key.to_string(), rev.parse::<i64>().unwrap()));
            }
        }
        // SIGKILL while writes are in flight.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        // Anything printed before the kill landed was acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (key, rev) = rest.split_once(' ').unwrap();
                acked.push((key.to_string(), rev.parse::<i64>().unwrap()));
            }
        }

        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = EmbeddedStore::open(dir.path()).expect("the file opens again after SIGKILL");
            for (key, rev) in &acked {
                let got = store.get(key, None).await.unwrap().kv.unwrap_or_else(|| panic!("acknowledged {key} lost"));
                assert_eq!(got.mod_revision, *rev, "{key} keeps its acknowledged revision");
            }
            let max_acked = acked.iter().map(|(_, r)| *r).max().unwrap();
            let current = store.current_revision().await.unwrap();
            assert!(current >= max_acked && current > last_revision, "revision never goes back");
            last_revision = current;
            // The store is writable and consistent after recovery.
            let kv = store.create(&format!("/after/{round}"), Bytes::from_static(b"x"), None).await.unwrap();
            assert_eq!(kv.mod_revision, current + 1);
            let listed = store.list(&format!("/configmaps/r{round}/"), ListOptions::default()).await.unwrap();
            assert!(listed.items.len() >= acked.len());
        });
    }
}

#[test]
fn data_survives_reopen_and_compaction_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, c) = rt.block_on(async {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let a = store.create("/pods/ns/a", Bytes::from_static(b"1"), None).await.unwrap();
        let b = store.update("/pods/ns/a", Bytes::from_static(b"2"), a.mod_revision, None).await.unwrap();
        let c = store.create("/pods/ns/c", Bytes::from_static(b"c"), None).await.unwrap();
        store.compact(b.mod_revision).await.unwrap();
        (a, c)
    });
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.current_revision().await.unwrap(), c.mod_revision);
        assert!(store.get("/pods/ns/a", Some(a.mod_revision)).await.unwrap_err().is_compacted());
        assert_eq!(store.get("/pods/ns/a", None).await.unwrap().kv.unwrap().value, Bytes::from_static(b"2"));
        assert_eq!(store.count("/pods/").await.unwrap(), 2);
    });
}

fn data_file_error(result: Result<EmbeddedStore, StoreError>) -> (String, String) {
    match result {
        Err(StoreError::DataFile { path, message }) => (path, message),
        Err(e) => panic!("expected a data file error, got {e:?}"),
        Ok(_) => panic!("expected a data file error, the store opened"),
    }
}

#[test]
fn corrupt_data_file_is_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ferrokube.db");
    std::fs::write(&file, vec![0x5au8; 64 * 1024]).unwrap();
    let (path, message) = data_file_error(EmbeddedStore::open(dir.path()));
    assert_eq!(path, file.display().to_string());
    assert!(message.contains("not a database") || message.contains("damaged"), "{message}");
    assert_eq!(std::fs::read(&file).unwrap(), vec![0x5au8; 64 * 1024], "the bad file is left as it was");
}

#[test]
fn damaged_pages_are_detected_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        for i in 0..400 {
            store.create(&format!("/pods/ns/p{i}"), Bytes::from(vec![b'x'; 900]), None).await.unwrap();
        }
    });
    // Fold the WAL into the main file, then scribble over pages in the middle of it.
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.checkpoint().await.unwrap();
    });
    let file = dir.path().join("ferrokube.db");
    let mut bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() > 64 * 1024);
    for b in &mut bytes[16 * 1024..48 * 1024] {
        *b = 0xff;
    }
    std::fs::write(&file, bytes).unwrap();
    let (path, _message) = data_file_error(EmbeddedStore::open(dir.path()));
    assert_eq!(path, file.display().to_string());
}

#[test]
fn a_data_dir_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedStore::open(dir.path()).unwrap();
    let (path, message) = data_file_error(EmbeddedStore::open(dir.path()));
    assert!(path.ends_with("LOCK"), "{path}");
    assert!(message.contains("in use"), "{message}");
}

#[test]
fn an_unusable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let (path, message) = data_file_error(EmbeddedStore::open(&not_a_dir));
    assert_eq!(path, not_a_dir.display().to_string());
    assert!(message.contains("data directory"), "{message}");
}
