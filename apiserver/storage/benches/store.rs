//! Storage benchmark: creates/s and watch-event delivery latency for both backends, each beside raw etcd
//! measured with the same concurrency in the same run.
//!
//! `cargo bench -p apiserver-storage` (needs Debian's etcd-server). Sizes: `BENCH_WRITES` (default 4000),
//! `BENCH_CONCURRENCY` (default 16), `BENCH_WATCH_SAMPLES` (default 300).

use apiserver_storage::testing::EtcdServer;
use apiserver_storage::{EmbeddedStore, Store};
use bytes::Bytes;
use etcd_client::{Client, WatchOptions};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A pod-sized JSON value (~1.5 KiB).
fn value() -> Bytes {
    Bytes::from(format!(
        r#"{{"kind":"Pod","apiVersion":"v1","metadata":{{"name":"x"}},"spec":{{"pad":"{}"}}}}"#,
        "x".repeat(1400)
    ))
}

async fn raw_etcd_puts(url: &str, writes: usize, concurrency: usize) -> f64 {
    let client = Client::connect([url], None).await.unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut kv = client.kv_client();
                for i in (t..writes).step_by(concurrency) {
                    kv.put(format!("/raw/pods/ns/p{i}"), value().to_vec(), None).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    writes as f64 / started.elapsed().as_secs_f64()
}

async fn store_creates(store: Arc<dyn Store>, tag: &str, writes: usize, concurrency: usize) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let store = store.clone();
            let tag = tag.to_string();
            tokio::spawn(async move {
                for i in (t..writes).step_by(concurrency) {
                    store.create(&format!("/pods/{tag}/p{i}"), value(), None).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    writes as f64 / started.elapsed().as_secs_f64()
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

/// Time from issuing a write to its event arriving at a watcher, one write at a time.
async fn store_watch_latency(store: Arc<dyn Store>, tag: &str, samples: usize) -> Vec<Duration> {
    let prefix = format!("/watch/{tag}/");
    let mut watch = store.watch(&prefix, true, 0).await.unwrap();
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        store.create(&format!("{prefix}k{i}"), value(), None).await.unwrap();
        watch.next().await.unwrap().unwrap();
        out.push(started.elapsed());
    }
    out
}

async fn raw_watch_latency(url: &str, samples: usize) -> Vec<Duration> {
    let client = Client::connect([url], None).await.unwrap();
    let mut stream = client.watch_client().watch("/raw/watch/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    let mut kv = client.kv_client();
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        kv.put(format!("/raw/watch/k{i}"), value().to_vec(), None).await.unwrap();
        loop {
            let resp = stream.next().await.unwrap().unwrap();
            if !resp.events().is_empty() {
                break;
            }
        }
        out.push(started.elapsed());
    }
    out
}

fn main() {
    // `cargo test --benches` runs this with `--bench`-less args; only measure under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let writes = env("BENCH_WRITES", 4000);
    let concurrency = env("BENCH_CONCURRENCY", 16);
    let samples = env("BENCH_WATCH_SAMPLES", 300);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let etcd = EtcdServer::start();
        let etcd_store: Arc<dyn Store> = Arc::new(etcd.store("/registry").await.unwrap());
        let dir = tempfile::tempdir().unwrap();
        let embedded: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());

        println!("storage benchmark: {writes} writes of {} bytes, concurrency {concurrency}", value().len());
        let raw = raw_etcd_puts(&etcd.client_url, writes, concurrency).await;
        let via_etcd = store_creates(etcd_store.clone(), "etcd", writes, concurrency).await;
        let via_embedded = store_creates(embedded.clone(), "embedded", writes, concurrency).await;
        println!("  raw etcd puts/s (the limit)        {raw:10.0}");
        println!("  etcd backend creates/s             {via_etcd:10.0}   ratio to raw etcd {:.2}", via_etcd / raw);
        println!(
            "  embedded backend creates/s         {via_embedded:10.0}   ratio to raw etcd {:.2}",
            via_embedded / raw
        );

        let mut raw_lat = raw_watch_latency(&etcd.client_url, samples).await;
        let mut etcd_lat = store_watch_latency(etcd_store, "etcd", samples).await;
        let mut emb_lat = store_watch_latency(embedded, "embedded", samples).await;
        let raw50 = percentile(&mut raw_lat, 0.5);
        println!("watch delivery latency, write issued -> event received ({samples} samples):");
        for (name, lat) in [
            ("raw etcd (the limit)", &mut raw_lat),
            ("etcd backend", &mut etcd_lat),
            ("embedded backend", &mut emb_lat),
        ] {
            let (p50, p99) = (percentile(lat, 0.5), percentile(lat, 0.99));
            println!(
                "  {name:<24} p50 {:>8.3} ms  p99 {:>8.3} ms   p50 ratio to raw etcd {:.2}",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                p50.as_secs_f64() / raw50.as_secs_f64()
            );
        }
    });
}
