//! Pod startup latency on one node: 100 pods created at once through the API, each timed from its
//! create request to the watch event that shows it Running; beside it, in the same run and on the same
//! containerd, 100 sandbox+container starts issued at once directly through CRI (the floor the kubelet
//! adds to). Upstream's SLO is p99 <= 5s.
//!
//!   cargo bench -p e2e --bench pod_startup

#[path = "../tests/common/mod.rs"]
mod common;

use common::LocalCluster;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const PODS: usize = 100;
const SERIAL: usize = 10;

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize).saturating_sub(1).min(v.len() - 1)]
}

/// Enters the cluster's network namespace (this thread, and the runtime built on it after).
fn enter_netns(netns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{netns}")).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: a valid namespace file descriptor.
    assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
}

async fn cri_floor(endpoint: &str) -> Vec<Duration> {
    cri_starts(endpoint, PODS, true, "burst").await
}

/// `n` sandbox+container starts through CRI, all at once (`concurrent`) or one after another.
async fn cri_starts(endpoint: &str, n: usize, concurrent: bool, tag: &str) -> Vec<Duration> {
    use cri::v1 as c;
    let rt = cri::Runtime::connect(endpoint, endpoint, Duration::from_secs(120)).unwrap();
    let mut tasks = Vec::new();
    let mut serial = Vec::new();
    for i in 0..n {
        let mut svc = rt.runtime.clone();
        let tag = tag.to_string();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let uid = format!("bench-cri-{tag}-{i}");
            let mut labels = HashMap::new();
            labels.insert("bench".to_string(), "cri".to_string());
            let cfg = c::PodSandboxConfig {
                metadata: Some(c::PodSandboxMetadata {
                    name: uid.clone(),
                    uid: uid.clone(),
                    namespace: "bench".into(),
                    attempt: 0,
                }),
                hostname: uid.clone(),
                log_directory: format!("/tmp/ferrokube-bench/{uid}"),
                labels: labels.clone(),
                linux: Some(c::LinuxPodSandboxConfig::default()),
                ..Default::default()
            };
            let sid = svc
                .run_pod_sandbox(c::RunPodSandboxRequest { config: Some(cfg.clone()), runtime_handler: String::new() })
                .await
                .unwrap()
                .into_inner()
                .pod_sandbox_id;
            let ctr = c::ContainerConfig {
                metadata: Some(c::ContainerMetadata { name: "c".into(), attempt: 0 }),
                image: Some(c::ImageSpec { image: "docker.io/library/busybox:1.36".into(), ..Default::default() }),
                command: vec!["sleep".into(), "600".into()],
                labels,
                log_path: "c/0.log".into(),
                linux: Some(c::LinuxContainerConfig::default()),
                ..Default::default()
            };
            let id = svc
                .create_container(c::CreateContainerRequest {
                    pod_sandbox_id: sid.clone(),
                    config: Some(ctr),
                    sandbox_config: Some(cfg),
                })
                .await
                .unwrap()
                .into_inner()
                .container_id;
            svc.start_container(c::StartContainerRequest { container_id: id }).await.unwrap();
            (start.elapsed(), sid)
        });
        if concurrent {
            tasks.push(task);
        } else {
            serial.push(task.await.unwrap());
        }
    }
    let mut out = Vec::new();
    let mut sandboxes = Vec::new();
    for t in tasks {
        serial.push(t.await.unwrap());
    }
    for (d, sid) in serial {
        out.push(d);
        sandboxes.push(sid);
    }
    let mut svc = rt.runtime.clone();
    for sid in sandboxes {
        let _ = svc.stop_pod_sandbox(c::StopPodSandboxRequest { pod_sandbox_id: sid.clone() }).await;
        let _ = svc.remove_pod_sandbox(c::RemovePodSandboxRequest { pod_sandbox_id: sid }).await;
    }
    out
}

async fn api_startup(kubeconfig: &str) -> Vec<Duration> {
    api_starts(kubeconfig, PODS, true, "burst").await
}

/// `n` pods through the API, all created at once (`concurrent`) or each after the previous one runs.
async fn api_starts(kubeconfig: &str, n: usize, concurrent: bool, tag: &str) -> Vec<Duration> {
    let cfg = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let api: Api<Pod> = Api::namespaced(client, "default");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let w = api.clone();
    let tag2 = tag.to_string();
    tokio::spawn(async move {
        let mut s = watcher::watcher(w, watcher::Config::default().labels(&format!("bench={tag2}"))).boxed();
        while let Some(Ok(ev)) = s.next().await {
            if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = ev {
                if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                    let _ = tx.send((p.metadata.name.unwrap_or_default(), Instant::now()));
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut created: HashMap<String, Instant> = HashMap::new();
    let mut posts = Vec::new();
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for i in 0..n {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("bench-{tag}-{i}"), "labels": {"bench": tag}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "600"]}],
                     "terminationGracePeriodSeconds": 0}
        }))
        .unwrap();
        let api = api.clone();
        let name = format!("bench-{tag}-{i}");
        let post = tokio::spawn(async move {
            let t = Instant::now();
            api.create(&PostParams::default(), &pod).await.unwrap();
            (name, t)
        });
        if concurrent {
            posts.push(post);
            continue;
        }
        let (name, t) = post.await.unwrap();
        created.insert(name.clone(), t);
        while !seen.contains(&name) {
            let (got, at) = tokio::time::timeout(Duration::from_secs(120), rx.recv()).await.unwrap().unwrap();
            if seen.insert(got.clone()) {
                out.push(at - created[&got]);
            }
        }
    }
    for p in posts {
        let (name, t) = p.await.unwrap();
        created.insert(name, t);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen.len() < n && Instant::now() < deadline {
        if let Ok(Some((name, at))) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            if seen.insert(name.clone()) {
                out.push(at - created[&name]);
            }
        }
    }
    assert_eq!(out.len(), n, "every pod reached Running within 5 minutes");
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches; this one runs only under `cargo bench`.
    }
    let c = LocalCluster::up("bench");
    enter_netns(&c.netns);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let endpoint = format!("unix://{}", c.path("run/containerd.sock").display());
    let kubeconfig = c.path("admin.conf").to_str().unwrap().to_string();
    // One at a time first: the latency a single pod sees on an idle node.
    let mut floor1 = rt.block_on(cri_starts(&endpoint, SERIAL, false, "serial"));
    let mut api1 = rt.block_on(api_starts(&kubeconfig, SERIAL, false, "serial"));
    let mut floor = rt.block_on(cri_floor(&endpoint));
    let mut api = rt.block_on(api_startup(&kubeconfig));
    let (s50, s99) = (percentile(&mut floor1, 0.50), percentile(&mut floor1, 0.99));
    let (t50, t99) = (percentile(&mut api1, 0.50), percentile(&mut api1, 0.99));
    println!("pod startup, {SERIAL} pods one after another on an idle node (create -> Running)");
    println!(
        "  through the API and kubelet: p50 {:>8.1} ms   p99 {:>8.1} ms",
        t50.as_secs_f64() * 1e3,
        t99.as_secs_f64() * 1e3
    );
    println!(
        "  containerd directly (CRI):   p50 {:>8.1} ms   p99 {:>8.1} ms",
        s50.as_secs_f64() * 1e3,
        s99.as_secs_f64() * 1e3
    );
    println!(
        "  ratio API/CRI:               p50 {:>8.2}      p99 {:>8.2}",
        t50.as_secs_f64() / s50.as_secs_f64(),
        t99.as_secs_f64() / s99.as_secs_f64()
    );
    let (f50, f99) = (percentile(&mut floor, 0.50), percentile(&mut floor, 0.99));
    let (a50, a99) = (percentile(&mut api, 0.50), percentile(&mut api, 0.99));
    println!("pod startup, {PODS} pods created at once on one node (create -> Running)");
    println!(
        "  through the API and kubelet: p50 {:>8.1} ms   p99 {:>8.1} ms",
        a50.as_secs_f64() * 1e3,
        a99.as_secs_f64() * 1e3
    );
    println!(
        "  containerd directly (CRI):   p50 {:>8.1} ms   p99 {:>8.1} ms",
        f50.as_secs_f64() * 1e3,
        f99.as_secs_f64() * 1e3
    );
    println!(
        "  ratio API/CRI:               p50 {:>8.2}      p99 {:>8.2}",
        a50.as_secs_f64() / f50.as_secs_f64(),
        a99.as_secs_f64() / f99.as_secs_f64()
    );
    println!("  upstream SLO p99 5000 ms: {}", if a99 <= Duration::from_secs(5) { "met" } else { "missed" });
}
