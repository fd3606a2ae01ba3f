//! Translating a Pod into CRI configuration: the sandbox (hostname, DNS, ports, cgroup parent,
//! namespaces, security), each container (image, command, env, mounts, resources, security,
//! labels and annotations as upstream sets them), and the pod's QoS class.

use crate::kubelet::Kubelet;
use cri::v1 as c;
use k8s_openapi::api::core::v1::{Container, Pod, SeccompProfile};
use std::collections::HashMap;

pub const HASH_ANNOTATION: &str = "io.kubernetes.container.hash";
pub const RESTART_ANNOTATION: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_PATH_ANNOTATION: &str = "io.kubernetes.container.terminationMessagePath";
pub const TERMINATION_POLICY_ANNOTATION: &str = "io.kubernetes.container.terminationMessagePolicy";
pub const TERMINATION_FILE_ANNOTATION: &str = "io.ferrokube.container.terminationMessageFile";
pub const GRACE_ANNOTATION: &str = "io.kubernetes.pod.terminationGracePeriod";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "Guaranteed",
            Qos::Burstable => "Burstable",
            Qos::BestEffort => "BestEffort",
        }
    }
}

/// A container's `requests` or `limits` (`kind`) of resource `name`, as a number.
pub fn res(c: &Container, kind: &str, name: &str) -> Option<f64> {
    let r = c.resources.as_ref()?;
    let m = if kind == "limits" { r.limits.as_ref()? } else { r.requests.as_ref()? };
    apimachinery::quantity::parse(&m.get(name)?.0)
}

/// upstream's `GetPodQOS`: Guaranteed when every container limits cpu and memory at its requests,
/// BestEffort when nothing is requested or limited, Burstable otherwise.
pub fn qos(pod: &Pod) -> Qos {
    let Some(spec) = pod.spec.as_ref() else { return Qos::BestEffort };
    let all: Vec<&Container> = spec.containers.iter().chain(spec.init_containers.iter().flatten()).collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        for name in ["cpu", "memory"] {
            let req = res(c, "requests", name).filter(|v| *v > 0.0);
            let lim = res(c, "limits", name).filter(|v| *v > 0.0);
            if req.is_some() || lim.is_some() {
                any = true;
            }
            let req = req.or(lim);
            if lim.is_none() || req != lim {
                guaranteed = false;
            }
        }
    }
    if !any {
        Qos::BestEffort
    } else if guaranteed {
        Qos::Guaranteed
    } else {
        Qos::Burstable
    }
}

/// The pod's cgroup parent in the QoS hierarchy (`/kubepods/burstable/pod<uid>`, or the systemd
/// slice `kubepods-burstable-pod<uid>.slice`).
pub fn cgroup_parent(k: &Kubelet, pod: &Pod) -> String {
    if !k.config.cgroups_per_qos {
        return String::new();
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let q = qos(pod);
    if k.config.cgroup_driver == "systemd" {
        let uid = uid.replace('-', "_");
        return match q {
            Qos::Guaranteed => format!("kubepods-pod{uid}.slice"),
            Qos::Burstable => format!("kubepods-burstable-pod{uid}.slice"),
            Qos::BestEffort => format!("kubepods-besteffort-pod{uid}.slice"),
        };
    }
    let root = k.config.cgroup_root.trim_end_matches('/');
    match q {
        Qos::Guaranteed => format!("{root}/kubepods/pod{uid}"),
        Qos::Burstable => format!("{root}/kubepods/burstable/pod{uid}"),
        Qos::BestEffort => format!("{root}/kubepods/besteffort/pod{uid}"),
    }
}

pub fn log_dir(k: &Kubelet, pod: &Pod) -> String {
    format!(
        "{}/{}_{}_{}",
        k.config.pod_logs_dir.trim_end_matches('/'),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

pub fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let mut l = HashMap::new();
    l.insert(cri::labels::POD_NAME.into(), pod.metadata.name.clone().unwrap_or_default());
    l.insert(cri::labels::POD_NAMESPACE.into(), pod.metadata.namespace.clone().unwrap_or_default());
    l.insert(cri::labels::POD_UID.into(), pod.metadata.uid.clone().unwrap_or_default());
    l
}

fn parse_resolv(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut ns, mut search, mut opts) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => ns.extend(f.next().map(String::from)),
            Some("search") => search = f.map(String::from).collect(),
            Some("options") => opts.extend(f.map(String::from)),
            _ => {}
        }
    }
    (ns, search, opts)
}

/// The sandbox's DNS, by `dnsPolicy` as upstream's `GetPodDNS`.
pub fn dns_config(k: &Kubelet, pod: &Pod) -> Option<c::DnsConfig> {
    let spec = pod.spec.as_ref()?;
    let host_net = spec.host_network == Some(true);
    let mut policy = spec.dns_policy.clone().unwrap_or_else(|| "ClusterFirst".into());
    if policy == "ClusterFirst" && host_net {
        policy = "Default".into();
    }
    if policy == "ClusterFirstWithHostNet" {
        policy = "ClusterFirst".into();
    }
    if policy == "ClusterFirst" && k.config.cluster_dns.is_empty() {
        policy = "Default".into();
    }
    let host = std::fs::read_to_string(&k.config.resolv_conf).unwrap_or_default();
    let (host_ns, host_search, host_opts) = parse_resolv(&host);
    let mut cfg = match policy.as_str() {
        "ClusterFirst" => {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let d = k.config.cluster_domain.trim_end_matches('.');
            let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.to_string()];
            searches.extend(host_search);
            c::DnsConfig { servers: k.config.cluster_dns.clone(), searches, options: vec!["ndots:5".into()] }
        }
        "None" => c::DnsConfig::default(),
        _ => c::DnsConfig { servers: host_ns, searches: host_search, options: host_opts },
    };
    if let Some(d) = &spec.dns_config {
        cfg.servers.extend(d.nameservers.clone().unwrap_or_default());
        cfg.searches.extend(d.searches.clone().unwrap_or_default());
        for o in d.options.iter().flatten() {
            let s = match &o.value {
                Some(v) => format!("{}:{v}", o.name.as_deref().unwrap_or("")),
                None => o.name.clone().unwrap_or_default(),
            };
            let name = o.name.clone().unwrap_or_default();
            cfg.options.retain(|x| x.split(':').next() != Some(name.as_str()));
            cfg.options.push(s);
        }
    }
    let mut seen = std::collections::HashSet::new();
    cfg.searches.retain(|s| seen.insert(s.clone()));
    cfg.searches.truncate(32);
    cfg.servers.truncate(3);
    Some(cfg)
}

fn seccomp(p: Option<&SeccompProfile>) -> Option<c::SecurityProfile> {
    let p = p?;
    Some(match p.type_.as_str() {
        "RuntimeDefault" => c::SecurityProfile {
            profile_type: c::security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        },
        "Localhost" => c::SecurityProfile {
            profile_type: c::security_profile::ProfileType::Localhost as i32,
            localhost_ref: p.localhost_profile.clone().unwrap_or_default(),
        },
        _ => c::SecurityProfile {
            profile_type: c::security_profile::ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        },
    })
}

fn namespaces(pod: &Pod) -> c::NamespaceOption {
    let s = pod.spec.as_ref();
    let node = c::NamespaceMode::Node as i32;
    let podns = c::NamespaceMode::Pod as i32;
    c::NamespaceOption {
        network: if s.and_then(|s| s.host_network) == Some(true) { node } else { podns },
        pid: if s.and_then(|s| s.host_pid) == Some(true) {
            node
        } else if s.and_then(|s| s.share_process_namespace) == Some(true) {
            podns
        } else {
            c::NamespaceMode::Container as i32
        },
        ipc: if s.and_then(|s| s.host_ipc) == Some(true) { node } else { podns },
        target_id: String::new(),
    }
}

/// The sandbox configuration; the same for every container of the sandbox.
pub fn sandbox_config(k: &Kubelet, pod: &Pod, attempt: u32) -> c::PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_net = spec.host_network == Some(true);
    let mut hostname = spec.hostname.clone().unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    hostname.truncate(63);
    let hostname = hostname.trim_end_matches(['-', '.']).to_string();
    let mut ports = Vec::new();
    for ctr in &spec.containers {
        for p in ctr.ports.iter().flatten() {
            if p.host_port.unwrap_or(0) > 0 || host_net {
                if host_net {
                    continue;
                }
                ports.push(c::PortMapping {
                    protocol: match p.protocol.as_deref() {
                        Some("UDP") => c::Protocol::Udp as i32,
                        Some("SCTP") => c::Protocol::Sctp as i32,
                        _ => c::Protocol::Tcp as i32,
                    },
                    container_port: p.container_port,
                    host_port: p.host_port.unwrap_or(0),
                    host_ip: p.host_ip.clone().unwrap_or_default(),
                });
            }
        }
    }
    let mut labels = pod.metadata.labels.clone().unwrap_or_default().into_iter().collect::<HashMap<_, _>>();
    labels.extend(pod_labels(pod));
    let psc = spec.security_context.clone().unwrap_or_default();
    let privileged = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.security_context.as_ref().and_then(|s| s.privileged) == Some(true));
    let sysctls = psc.sysctls.iter().flatten().map(|s| (s.name.clone(), s.value.clone())).collect();
    c::PodSandboxConfig {
        metadata: Some(c::PodSandboxMetadata {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            attempt,
        }),
        hostname: if host_net { String::new() } else { hostname },
        log_directory: log_dir(k, pod),
        dns_config: dns_config(k, pod),
        port_mappings: ports,
        labels,
        annotations: pod.metadata.annotations.clone().unwrap_or_default().into_iter().collect(),
        linux: Some(c::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(k, pod),
            security_context: Some(c::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(pod)),
                run_as_user: psc.run_as_user.map(|v| c::Int64Value { value: v }),
                run_as_group: psc.run_as_group.map(|v| c::Int64Value { value: v }),
                readonly_rootfs: false,
                supplemental_groups: psc.supplemental_groups.clone().unwrap_or_default(),
                privileged,
                seccomp: seccomp(psc.seccomp_profile.as_ref()),
            }),
            sysctls,
            overhead: None,
            resources: None,
        }),
    }
}

const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// CPU shares, CFS quota and memory limit from requests and limits, and the OOM score
/// adjustment by QoS class, as upstream.
pub fn resources(k: &Kubelet, pod: &Pod, ctr: &Container) -> c::LinuxContainerResources {
    let req_cpu = res(ctr, "requests", "cpu").or(res(ctr, "limits", "cpu")).unwrap_or(0.0);
    let lim_cpu = res(ctr, "limits", "cpu");
    let mem_req = res(ctr, "requests", "memory").or(res(ctr, "limits", "memory")).unwrap_or(0.0);
    let milli = apimachinery::quantity::ceil(req_cpu * 1000.0);
    let shares = (milli * 1024 / 1000).max(2);
    let (period, quota) = match lim_cpu {
        Some(l) if l > 0.0 => (100_000, (apimachinery::quantity::ceil(l * 1000.0) * 100_000 / 1000).max(1000)),
        _ => (0, 0),
    };
    let oom = match qos(pod) {
        Qos::Guaranteed => -997,
        Qos::BestEffort => 1000,
        Qos::Burstable => {
            let cap = k.machine.memory_bytes.max(1) as f64;
            let adj = 1000 - (1000.0 * mem_req / cap) as i64;
            adj.clamp(2, 999)
        }
    };
    c::LinuxContainerResources {
        cpu_period: period,
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: res(ctr, "limits", "memory").map(|v| v as i64).unwrap_or(0),
        oom_score_adj: oom,
        ..Default::default()
    }
}

pub fn security(pod: &Pod, ctr: &Container) -> c::LinuxContainerSecurityContext {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let sc = ctr.security_context.clone().unwrap_or_default();
    let privileged = sc.privileged == Some(true);
    let mut groups = psc.supplemental_groups.clone().unwrap_or_default();
    if let Some(g) = psc.fs_group {
        groups.insert(0, g);
    }
    let caps = sc.capabilities.as_ref().map(|c| c::Capability {
        add_capabilities: c.add.clone().unwrap_or_default(),
        drop_capabilities: c.drop.clone().unwrap_or_default(),
    });
    let unmasked = sc.proc_mount.as_deref() == Some("Unmasked");
    c::LinuxContainerSecurityContext {
        capabilities: caps,
        privileged,
        namespace_options: Some(namespaces(pod)),
        run_as_user: sc.run_as_user.or(psc.run_as_user).map(|v| c::Int64Value { value: v }),
        run_as_group: sc.run_as_group.or(psc.run_as_group).map(|v| c::Int64Value { value: v }),
        run_as_username: String::new(),
        readonly_rootfs: sc.read_only_root_filesystem == Some(true),
        supplemental_groups: groups,
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths: if privileged || unmasked { vec![] } else { MASKED.iter().map(|s| s.to_string()).collect() },
        readonly_paths: if privileged || unmasked { vec![] } else { READONLY.iter().map(|s| s.to_string()).collect() },
        seccomp: seccomp(sc.seccomp_profile.as_ref().or(psc.seccomp_profile.as_ref())).or(Some(c::SecurityProfile {
            profile_type: c::security_profile::ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        })),
    }
}

/// A short hash of the container's spec: a running container whose spec changed is restarted.
pub fn container_hash(ctr: &Container) -> String {
    use sha2::Digest;
    let mut c = ctr.clone();
    // Fields that may change without a restart.
    c.resources = None;
    c.readiness_probe = None;
    c.liveness_probe = None;
    c.startup_probe = None;
    let h = sha2::Sha256::digest(serde_json::to_vec(&c).unwrap_or_default());
    hex::encode(&h[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": containers}}),
        )
        .unwrap()
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos(&pod(serde_json::json!([{"name": "a"}]))), Qos::BestEffort);
        assert_eq!(
            qos(&pod(serde_json::json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]))),
            Qos::Guaranteed
        );
        assert_eq!(
            qos(&pod(serde_json::json!([{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]))),
            Qos::Burstable
        );
    }

    #[test]
    fn resolv_conf() {
        let (ns, search, opts) =
            parse_resolv("nameserver 1.1.1.1\nsearch a b\noptions ndots:2\n# x\nnameserver 8.8.8.8\n");
        assert_eq!(ns, vec!["1.1.1.1", "8.8.8.8"]);
        assert_eq!(search, vec!["a", "b"]);
        assert_eq!(opts, vec!["ndots:2"]);
    }
}
