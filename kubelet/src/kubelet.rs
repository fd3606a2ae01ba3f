//! The state the kubelet's loops share: configuration, API client, runtime connection, what the
//! runtime last reported (version, images, readiness), and the node's pod CIDR.

use crate::config::Config;
use crate::machine::Machine;
use component_base::events::EventRecorder;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct RuntimeState {
    /// `containerd://1.6.20`.
    pub version: String,
    /// `containerd`, the prefix of container IDs in pod status.
    pub name: String,
    /// Why the node is not ready (runtime down, network not ready), as upstream words it.
    pub problem: Option<String>,
    /// (names, size) of each image, largest first (the Node's `status.images`).
    pub images: Vec<(Vec<String>, i64)>,
}

#[derive(Default)]
pub struct Pressure {
    pub memory: AtomicBool,
    pub disk: AtomicBool,
    pub pid: AtomicBool,
}

pub struct Kubelet {
    pub config: Config,
    pub client: Client,
    pub cri: cri::Runtime,
    pub machine: Machine,
    pub node_ips: Vec<String>,
    pub events: EventRecorder,
    pub pressure: Pressure,
    /// Image pulls in flight: one at a time with `serializeImagePulls` (the default), else at most
    /// `maxParallelImagePulls`.
    pub pulls: tokio::sync::Semaphore,
    /// Pods the eviction manager evicts (uid → status message and grace); their workers stop them.
    pub evictions: Mutex<std::collections::HashMap<String, crate::eviction::Eviction>>,
    /// Wakes the node status loop (runtime readiness changed).
    pub node_status_kick: Notify,
    pub cni_conf_dir: String,
    /// `--cni-bridge-name`: the bridge the network configuration names.
    pub cni_bridge: String,
    runtime: Mutex<RuntimeState>,
    /// The D-Bus connection to systemd (the `systemd` cgroup driver), made on first use.
    systemd: tokio::sync::OnceCell<std::sync::Arc<zbus::Connection>>,
    /// The Node as last read or written.
    node: Mutex<Option<std::sync::Arc<Node>>>,
    pod_cidr: Mutex<Option<String>>,
}

impl Kubelet {
    pub fn new(
        config: Config,
        client: Client,
        cri: cri::Runtime,
        node_ips: Vec<String>,
        cni_conf_dir: String,
        cni_bridge: String,
    ) -> Kubelet {
        let events = EventRecorder::core_v1(client.clone(), "kubelet", &config.node_name);
        let pulls = match (config.serialize_image_pulls, config.max_parallel_image_pulls) {
            (true, _) => 1,
            (false, Some(n)) => n,
            (false, None) => tokio::sync::Semaphore::MAX_PERMITS,
        };
        Kubelet {
            config,
            client,
            cri,
            machine: Machine::read(),
            node_ips,
            events,
            pressure: Pressure::default(),
            evictions: Default::default(),
            pulls: tokio::sync::Semaphore::new(pulls),
            node_status_kick: Notify::new(),
            cni_conf_dir,
            cni_bridge,
            runtime: Mutex::new(RuntimeState {
                problem: Some("container runtime status check may not have completed yet".into()),
                ..Default::default()
            }),
            systemd: tokio::sync::OnceCell::new(),
            node: Mutex::new(None),
            pod_cidr: Mutex::new(None),
        }
    }

    /// Records an event about this node (upstream's node reference: kind Node, the name as uid).
    pub fn node_event(&self, warning: bool, reason: &str, note: String) {
        let r = k8s_openapi::api::core::v1::ObjectReference {
            kind: Some("Node".into()),
            name: Some(self.config.node_name.clone()),
            uid: Some(self.config.node_name.clone()),
            ..Default::default()
        };
        self.events.emit_ref(r, warning, reason, reason, note);
    }

    /// The connection to systemd over the system bus, made on first use.
    pub async fn systemd(&self) -> Result<std::sync::Arc<zbus::Connection>, String> {
        self.systemd
            .get_or_try_init(|| async { crate::systemd::connect(None).await.map(std::sync::Arc::new) })
            .await
            .cloned()
    }

    /// The Node as last read or written; before that, the Node the kubelet would register.
    pub fn node(&self) -> std::sync::Arc<Node> {
        self.node.lock().unwrap().clone().unwrap_or_else(|| std::sync::Arc::new(crate::node::initial_node(self)))
    }

    /// The pressure conditions in force: MemoryPressure, DiskPressure, PIDPressure.
    pub fn pressures(&self) -> [bool; 3] {
        let p = &self.pressure;
        [&p.memory, &p.disk, &p.pid].map(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn runtime_state(&self) -> RuntimeState {
        self.runtime.lock().unwrap().clone()
    }

    pub fn runtime_name(&self) -> String {
        let n = self.runtime.lock().unwrap().name.clone();
        if n.is_empty() {
            "containerd".into()
        } else {
            n
        }
    }

    /// Notes the Node as last read or written: a new `spec.podCIDR` is handed to the runtime and
    /// written into the CNI configuration.
    pub fn set_node(&self, node: &Node) {
        *self.node.lock().unwrap() = Some(std::sync::Arc::new(node.clone()));
        let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone());
        let Some(cidr) = cidr else { return };
        let mut cur = self.pod_cidr.lock().unwrap();
        if cur.as_deref() == Some(cidr.as_str()) {
            return;
        }
        *cur = Some(cidr.clone());
        drop(cur);
        tracing::info!(pod_cidr = %cidr, "updating pod CIDR");
        if let Err(e) = crate::cni::write_conflist(&self.cni_conf_dir, &cidr, &self.cni_bridge) {
            tracing::error!(error = %e, dir = %self.cni_conf_dir, "writing the CNI configuration");
        }
        let mut rt = self.cri.runtime.clone();
        tokio::spawn(async move {
            let req = cri::v1::UpdateRuntimeConfigRequest {
                runtime_config: Some(cri::v1::RuntimeConfig {
                    network_config: Some(cri::v1::NetworkConfig { pod_cidr: cidr }),
                }),
            };
            if let Err(e) = rt.update_runtime_config(req).await {
                tracing::warn!(error = %e, "UpdateRuntimeConfig failed");
            }
        });
    }
}

/// Polls the runtime every 5s for its version, conditions and images.
pub async fn runtime_loop(k: std::sync::Arc<Kubelet>) {
    loop {
        let fresh = probe_runtime(&k).await;
        let changed = {
            let mut cur = k.runtime.lock().unwrap();
            let changed = cur.problem != fresh.problem;
            *cur = fresh;
            changed
        };
        if changed {
            k.node_status_kick.notify_one();
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

async fn probe_runtime(k: &Kubelet) -> RuntimeState {
    let mut rt = k.cri.runtime.clone();
    let mut img = k.cri.image.clone();
    let version = match rt.version(cri::v1::VersionRequest { version: "v1".into() }).await {
        Ok(v) => v.into_inner(),
        Err(e) => {
            return RuntimeState {
                problem: Some(format!("container runtime is down: {}", e.message())),
                ..k.runtime_state()
            }
        }
    };
    let mut problem = None;
    match rt.status(cri::v1::StatusRequest { verbose: false }).await {
        Ok(s) => {
            for c in s.into_inner().status.map(|s| s.conditions).unwrap_or_default() {
                if !c.status {
                    let what = if c.r#type == "NetworkReady" {
                        "container runtime network not ready"
                    } else {
                        "container runtime not ready"
                    };
                    problem = Some(format!("{what}: {}=false reason:{} message:{}", c.r#type, c.reason, c.message));
                    break;
                }
            }
        }
        Err(e) => problem = Some(format!("container runtime status check failed: {}", e.message())),
    }
    let mut images: Vec<(Vec<String>, i64)> = match img.list_images(cri::v1::ListImagesRequest { filter: None }).await {
        Ok(l) => l
            .into_inner()
            .images
            .into_iter()
            .map(|i| {
                let mut names = i.repo_digests.clone();
                names.extend(i.repo_tags.clone());
                if names.is_empty() {
                    names.push(i.id.clone());
                }
                (names, i.size as i64)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    images.sort_by_key(|i| std::cmp::Reverse(i.1));
    images.truncate(50);
    RuntimeState {
        version: format!("{}://{}", version.runtime_name, version.runtime_version),
        name: version.runtime_name,
        problem,
        images,
    }
}
