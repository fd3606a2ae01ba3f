//! Scheduling throughput, as upstream's scheduler_perf measures it: hollow Node objects (no kubelets)
//! and a batch of pending pods on a real kube-apiserver; pods/s from the first binding to the last,
//! beside a no-op binder's pods/s (bindings sent straight to the same API server, as fast as it
//! takes them) from the same run.
//!
//! `cargo bench -p kube-scheduler`; FERROKUBE_BENCH_NODES (5000) and FERROKUBE_BENCH_PODS (10000)
//! change the size. Three cases: basic (upstream's CI floor at 5,000 nodes: 680 pods/s), a required zone
//! spread (460) and required hostname anti-affinity among the pods (60; one pod per node fits).

#[path = "../../controller-manager/tests/common/mod.rs"]
mod common;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn create_nodes(client: &kube::Client, n: usize) {
    let api: Api<Node> = Api::all(client.clone());
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("hollow-{i:05}");
                let node: Node = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}}
                }))
                .unwrap();
                api.create(&PostParams::default(), &node).await.unwrap();
                let status = serde_json::json!({"status": {
                    "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                    "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
}

/// What the measured pods ask for beyond resources.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Basic,
    /// A required zone spread (maxSkew 1 over the 3 zones).
    Spread,
    /// Required anti-affinity with each other on the hostname: one per node.
    AntiAffinity,
}

async fn create_pods(client: &kube::Client, ns: &str, prefix: &str, n: usize, scheduler: &str, kind: Kind) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let name = format!("{prefix}-{i:05}");
            let scheduler = scheduler.to_string();
            async move {
                let mut pod: Pod = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "labels": {"app": "bench"}},
                    "spec": {"schedulerName": scheduler, "containers": [{"name": "c", "image": "pause", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
                }))
                .unwrap();
                if kind == Kind::AntiAffinity {
                    pod.spec.as_mut().unwrap().affinity = Some(serde_json::from_value(serde_json::json!(
                        {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                            {"labelSelector": {"matchLabels": {"app": "bench"}}, "topologyKey": "kubernetes.io/hostname"}]}}
                    )).unwrap());
                }
                if kind == Kind::Spread {
                    pod.spec.as_mut().unwrap().topology_spread_constraints = Some(vec![serde_json::from_value(serde_json::json!(
                        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "bench"}}}
                    )).unwrap()]);
                }
                api.create(&PostParams::default(), &pod).await.unwrap();
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
}

/// Watches until `n` pods of `prefix` are bound; returns the times of the first and last binding.
async fn wait_bound(client: kube::Client, ns: String, prefix: String, n: usize) -> (Instant, Instant) {
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let mut seen = HashSet::new();
    let mut first = None;
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.try_next().await.unwrap() {
        let pods = match ev {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => vec![p],
            _ => vec![],
        };
        for p in pods {
            let name = p.metadata.name.clone().unwrap_or_default();
            if name.starts_with(&prefix)
                && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                && seen.insert(name)
            {
                first.get_or_insert_with(Instant::now);
                if seen.len() == n {
                    return (first.unwrap(), Instant::now());
                }
            }
        }
    }
    unreachable!("the watch ended")
}

/// CPU seconds (user + system) process `pid` has used so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is 3rd; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn main() {
    let nodes = env("FERROKUBE_BENCH_NODES", 5000);
    let pods = env("FERROKUBE_BENCH_PODS", 10000);
    let mut cluster = common::Cluster::start();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let client = rt.block_on(cluster.client());
    let t = Instant::now();
    rt.block_on(create_nodes(&client, nodes));
    println!("created {nodes} hollow nodes in {:.1}s", t.elapsed().as_secs_f64());

    // The limit: a binder that does nothing but send bindings (round-robin) as fast as the API takes them.
    rt.block_on(create_pods(&client, "default", "noop", pods, "no-such-scheduler", Kind::Basic));
    let t = Instant::now();
    rt.block_on(async {
        let api: Api<Pod> = Api::namespaced(client.clone(), "default");
        futures::stream::iter(0..pods)
            .map(|i| {
                let api = api.clone();
                async move {
                    let name = format!("noop-{i:05}");
                    let b = Binding {
                        metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
                        target: ObjectReference {
                            kind: Some("Node".into()),
                            name: Some(format!("hollow-{:05}", i % nodes)),
                            ..Default::default()
                        },
                    };
                    api.create_subresource::<Binding, serde_json::Value>("binding", &name, &PostParams::default(), &b)
                        .await
                        .unwrap();
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>()
            .await;
    });
    let noop = pods as f64 / t.elapsed().as_secs_f64();

    // The scheduler: pods are pending before it starts; pods/s from its first binding to its last.
    // As upstream's scheduler_perf: the client is not the bottleneck (clientConnection qps/burst 5000).
    let config = cluster.file(
        "bench-scheduler.yaml",
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nclientConnection: {qps: 5000, burst: 5000}\n",
    );
    let mut rates = Vec::new();
    let mut cpu = Vec::new();
    // One pod per node fits with the anti-affinity.
    let anti_pods = pods.min(nodes);
    for (ns, kind, n_pods) in
        [("basic", Kind::Basic, pods), ("spread", Kind::Spread, pods), ("anti", Kind::AntiAffinity, anti_pods)]
    {
        rt.block_on(async {
            let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
            let ns_obj: k8s_openapi::api::core::v1::Namespace =
                serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
            api.create(&PostParams::default(), &ns_obj).await.unwrap();
        });
        rt.block_on(create_pods(&client, ns, "sched", n_pods, "default-scheduler", kind));
        let waiter = rt.spawn(wait_bound(client.clone(), ns.into(), "sched".into(), n_pods));
        let n = cluster
            .start_component("kube-scheduler", &["--secure-port=0", "--leader-elect=false", "--config", &config]);
        let (api_pid, sched_pid) = cluster.pids(n);
        let api_cpu = cpu_seconds(api_pid);
        let (first, last) = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1800), waiter)
                .await
                .expect("all pods bound within 30 minutes")
                .unwrap()
        });
        rates.push(n_pods as f64 / last.duration_since(first).as_secs_f64().max(1e-9));
        // CPU per pod scheduled, the scheduler's (start-up and informer sync included) and the API server's.
        cpu.push((cpu_seconds(sched_pid) / n_pods as f64, (cpu_seconds(api_pid) - api_cpu) / n_pods as f64));
        cluster.kill_manager(n, libc::SIGTERM);
    }
    let (sched, spread, anti) = (rates[0], rates[1], rates[2]);
    let ms = |(s, a): (f64, f64)| format!("CPU per pod: scheduler {:.2} ms, kube-apiserver {:.2} ms", s * 1e3, a * 1e3);
    println!();
    println!("scheduling {pods} pods on {nodes} nodes (basic: resource fit, default scores)");
    println!("  kube-scheduler      {sched:>9.0} pods/s");
    println!("  no-op binder        {noop:>9.0} pods/s   (same API server, 64 bindings in flight)");
    println!("  ratio               {:>9.2}", sched / noop);
    println!("  upstream CI floor         680 pods/s at 5,000 nodes");
    println!("  {}", ms(cpu[0]));
    println!();
    println!("with a required zone spread (maxSkew 1 over 3 zones)");
    println!("  kube-scheduler      {spread:>9.0} pods/s");
    println!("  ratio to no-op      {:>9.2}", spread / noop);
    println!("  upstream CI floor         460 pods/s at 5,000 nodes");
    println!("  {}", ms(cpu[1]));
    println!();
    println!("with a required hostname anti-affinity among the pods ({anti_pods} pods, one per node)");
    println!("  kube-scheduler      {anti:>9.0} pods/s");
    println!("  ratio to no-op      {:>9.2}", anti / noop);
    println!("  upstream CI floor          60 pods/s at 5,000 nodes");
    println!("  {}", ms(cpu[2]));
}
