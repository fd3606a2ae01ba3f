//! What only the etcd backend must prove: upstream's key layout, failover between members, and a clear
//! error while etcd is unreachable.

use apiserver_storage::keys::{object_key, resource_path};
use apiserver_storage::testing::{free_port, EtcdCluster, EtcdServer};
use apiserver_storage::{EtcdConfig, EtcdStore, Store, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test]
async fn keys_are_laid_out_like_upstream() {
    let etcd = EtcdServer::start();
    let store = etcd.store("/registry").await.unwrap();
    let deploy = object_key(&resource_path("apps", "deployments"), Some("default"), "web");
    let node = object_key(&resource_path("", "nodes"), None, "node-1");
    let svc = object_key(&resource_path("", "services"), Some("default"), "kubernetes");
    for key in [&deploy, &node, &svc] {
        store.create(key, Bytes::from_static(br#"{"kind":"x"}"#), None).await.unwrap();
    }
    // etcdctl, as an operator would use it, sees upstream's paths.
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.client_url, "get", "--prefix", "/registry/", "--keys-only"])
        .output()
        .expect("etcdctl (Debian's etcd-client) is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let keys: Vec<String> =
        String::from_utf8(out.stdout).unwrap().lines().filter(|l| !l.is_empty()).map(String::from).collect();
    assert_eq!(
        keys,
        vec![
            "/registry/deployments/default/web",
            "/registry/minions/node-1",
            "/registry/services/specs/default/kubernetes"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_over_between_members() {
    let mut cluster = EtcdCluster::start(3);
    let mut config = EtcdConfig::new(cluster.client_urls.clone());
    config.connect_retry = Some(Duration::from_secs(30));
    config.request_timeout = Duration::from_secs(5);
    let store = EtcdStore::connect(&config).await.unwrap();
    let mut watch = store.watch("/leases/", true, 0).await.unwrap();
    let mut last = store.create("/leases/ns/l", Bytes::from_static(b"0"), None).await.unwrap();
    let mut expected = vec![last.mod_revision];
    // Lose the member everything talks to; the two left keep quorum and the client moves to them.
    cluster.kill(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done = 0;
    while done < 20 {
        assert!(Instant::now() < deadline, "writes did not fail over within 60s ({done} done)");
        match store.update("/leases/ns/l", Bytes::from(format!("{done}")), last.mod_revision, None).await {
            Ok(kv) => {
                expected.push(kv.mod_revision);
                last = kv;
                done += 1;
            }
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("unexpected error during failover: {e:?}"),
        }
    }
    assert_eq!(store.get("/leases/ns/l", None).await.unwrap().kv.unwrap().value, Bytes::from_static(b"19"));
    // The watch moved to a live member too, and resumed where it was: every event once, in order.
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let item = tokio::time::timeout(Duration::from_secs(60), watch.next()).await.expect("watch resumes").unwrap();
        seen.push(item.unwrap().revision());
    }
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_dead_first_endpoint_is_skipped() {
    let etcd = EtcdServer::start();
    etcd.store("/registry").await.unwrap();
    let mut config = EtcdConfig::new(vec![format!("http://127.0.0.1:{}", free_port()), etcd.client_url.clone()]);
    config.connect_retry = Some(Duration::from_secs(30));
    let store = EtcdStore::connect(&config).await.unwrap();
    for i in 0..10 {
        store.create(&format!("/pods/ns/p{i}"), Bytes::from_static(b"x"), None).await.unwrap();
    }
    assert_eq!(store.count("/pods/").await.unwrap(), 10);
}

#[tokio::test]
async fn unreachable_etcd_is_a_clear_error_after_retrying() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut config = EtcdConfig::new(vec![url.clone()]);
    config.connect_retry = Some(Duration::from_secs(2));
    let started = Instant::now();
    let err = match EtcdStore::connect(&config).await {
        Err(e) => e,
        Ok(_) => panic!("nothing listens on {url}"),
    };
    assert!(started.elapsed() >= Duration::from_millis(500), "it retried before giving up");
    match err {
        StoreError::Unavailable(msg) => assert!(msg.contains(&url), "names the endpoint: {msg}"),
        e => panic!("expected unavailable, got {e:?}"),
    }
}

#[tokio::test]
async fn missing_tls_files_name_the_file() {
    let mut config = EtcdConfig::new(vec!["https://127.0.0.1:1".into()]);
    config.ca_file = Some("/nonexistent/etcd/ca.crt".into());
    match EtcdStore::connect(&config).await {
        Err(StoreError::DataFile { path, .. }) => assert_eq!(path, "/nonexistent/etcd/ca.crt"),
        Err(e) => panic!("expected a file error, got {e:?}"),
        Ok(_) => panic!("connected without a CA file"),
    }
}

#[tokio::test]
async fn tls_with_kubeadm_etcd_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = pki::PkiConfig {
        cert_dir: dir.path().to_path_buf(),
        node_name: "etcd-test".into(),
        advertise_address: Some("127.0.0.1".parse().unwrap()),
        ..Default::default()
    };
    for name in ["etcd-ca", "etcd-server", "apiserver-etcd-client"] {
        pki::generate_certs(&cfg, name).unwrap();
    }
    let etcd = EtcdServer::start_tls(dir.path());
    assert!(etcd.client_url.starts_with("https://"));
    let mut config = EtcdConfig::new(vec![etcd.client_url.clone()]);
    config.ca_file = Some(dir.path().join("etcd/ca.crt"));
    config.cert_file = Some(dir.path().join("apiserver-etcd-client.crt"));
    config.key_file = Some(dir.path().join("apiserver-etcd-client.key"));
    config.connect_retry = Some(Duration::from_secs(30));
    let store = EtcdStore::connect(&config).await.expect("TLS with client certificates");
    let kv = store.create("/secrets/ns/s", Bytes::from_static(b"over tls"), None).await.unwrap();
    assert_eq!(store.get("/secrets/ns/s", None).await.unwrap().kv.unwrap(), kv);

    // Without a client certificate etcd refuses us, and we say so instead of hanging.
    let mut anonymous = EtcdConfig::new(vec![etcd.client_url.clone()]);
    anonymous.ca_file = Some(dir.path().join("etcd/ca.crt"));
    anonymous.connect_retry = Some(Duration::from_secs(2));
    assert!(matches!(EtcdStore::connect(&anonymous).await, Err(StoreError::Unavailable(_))));
}
