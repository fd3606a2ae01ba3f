//! The eviction manager, as upstream's: every 10 seconds it observes the node's signals
//! (`memory.available`, `nodefs.available`, `nodefs.inodesFree`, `imagefs.available`,
//! `imagefs.inodesFree`, `pid.available`) against the `evictionHard` thresholds, reports
//! MemoryPressure, DiskPressure and PIDPressure on the Node (the controller manager taints the node
//! from them), reclaims unused images under disk pressure, and then evicts one pod per pass, ranked
//! as upstream ranks them: pods using more than they request first, then lower priority, then larger
//! usage above the request. Independently of thresholds, a pod whose emptyDir outgrows its
//! `sizeLimit`, or whose container outgrows its `ephemeral-storage` limit, is evicted at once.
//!
//! An evicted pod's containers are stopped and its status becomes `Failed`, reason `Evicted`, with
//! upstream's message and a `DisruptionTarget` condition (`TerminationByKubelet`). Critical pods
//! (static pods, `system-node-critical`/`system-cluster-critical` priority) are never evicted.

use crate::kubelet::Kubelet;
use cri::v1 as c;
use k8s_openapi::api::core::v1::Pod;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    MemoryAvailable,
    NodefsAvailable,
    NodefsInodesFree,
    ImagefsAvailable,
    ImagefsInodesFree,
    PidAvailable,
}

impl Signal {
    fn parse(s: &str) -> Option<Signal> {
        Some(match s {
            "memory.available" => Signal::MemoryAvailable,
            "nodefs.available" => Signal::NodefsAvailable,
            "nodefs.inodesFree" => Signal::NodefsInodesFree,
            "imagefs.available" => Signal::ImagefsAvailable,
            "imagefs.inodesFree" => Signal::ImagefsInodesFree,
            "pid.available" => Signal::PidAvailable,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodefsAvailable => "nodefs.available",
            Signal::NodefsInodesFree => "nodefs.inodesFree",
            Signal::ImagefsAvailable => "imagefs.available",
            Signal::ImagefsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    /// The resource a pod is evicted to reclaim, as upstream names it in the message.
    fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodefsAvailable | Signal::ImagefsAvailable => "ephemeral-storage",
            Signal::NodefsInodesFree | Signal::ImagefsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    fn disk(self) -> bool {
        !matches!(self, Signal::MemoryAvailable | Signal::PidAvailable)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Quantity(i64),
    Percentage(f64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Value,
    /// As written, for messages.
    pub text: String,
    /// How long the threshold must hold before pods are evicted for it (0 for `evictionHard`).
    pub grace: Duration,
    /// `evictionMinimumReclaim`: once met, the threshold holds until this much more is available.
    pub min_reclaim: Option<Value>,
    pub hard: bool,
}

fn parse_statements(m: &BTreeMap<String, String>, hard: bool) -> Result<Vec<Threshold>, String> {
    let mut out = Vec::new();
    for (k, v) in m {
        let signal = Signal::parse(k).ok_or_else(|| format!("unsupported eviction signal {k}"))?;
        let value = if let Some(p) = v.strip_suffix('%') {
            // As upstream: 0% and 100% turn the signal off.
            if v == "0%" || v == "100%" {
                continue;
            }
            let p: f64 = p.parse().map_err(|_| format!("invalid eviction threshold {k}: {v}"))?;
            if p < 0.0 {
                return Err(format!("eviction percentage threshold {k} must be >= 0%: {v}"));
            }
            if p > 100.0 {
                return Err(format!("eviction percentage threshold {k} must be <= 100%: {v}"));
            }
            Value::Percentage(p / 100.0)
        } else {
            let q = apimachinery::quantity::value(v).ok_or_else(|| format!("invalid eviction threshold {k}: {v}"))?;
            if q <= 0 {
                return Err(format!("eviction threshold {k} must be positive: {v}"));
            }
            Value::Quantity(q)
        };
        out.push(Threshold { signal, value, text: v.clone(), grace: Duration::ZERO, min_reclaim: None, hard });
    }
    Ok(out)
}

/// The thresholds of `evictionHard`, `evictionSoft` (each with its `evictionSoftGracePeriod`) and
/// `evictionMinimumReclaim`, validated with upstream's ParseThresholdConfig messages.
pub fn parse_config(
    hard: &BTreeMap<String, String>,
    soft: &BTreeMap<String, String>,
    soft_grace: &BTreeMap<String, String>,
    min_reclaim: &BTreeMap<String, String>,
) -> Result<Vec<Threshold>, String> {
    let mut out = parse_statements(hard, true)?;
    let mut graces = HashMap::new();
    for (k, v) in soft_grace {
        let signal = Signal::parse(k).ok_or_else(|| format!("unsupported eviction signal {k}"))?;
        let d = component_base::duration::parse_duration(v)
            .map_err(|_| format!("invalid eviction grace period specified: {v}, must be a positive value"))?;
        graces.insert(signal, d);
    }
    let mut reclaims = HashMap::new();
    for (k, v) in min_reclaim {
        let signal = Signal::parse(k).ok_or_else(|| format!("unsupported eviction signal {k}"))?;
        let value = if let Some(p) = v.strip_suffix('%') {
            let p: f64 = p.parse().map_err(|_| format!("invalid eviction minimum reclaim {k}: {v}"))?;
            if p <= 0.0 {
                return Err(format!("eviction percentage minimum reclaim {k} must be positive: {v}"));
            }
            Value::Percentage(p / 100.0)
        } else {
            let q =
                apimachinery::quantity::value(v).ok_or_else(|| format!("invalid eviction minimum reclaim {k}: {v}"))?;
            if q < 0 {
                return Err(format!("negative eviction minimum reclaim specified for {k}"));
            }
            Value::Quantity(q)
        };
        reclaims.insert(signal, value);
    }
    for mut t in parse_statements(soft, false)? {
        t.grace = *graces.get(&t.signal).ok_or_else(|| {
            format!("grace period must be specified for the soft eviction threshold {}", t.signal.name())
        })?;
        out.push(t);
    }
    for t in &mut out {
        t.min_reclaim = reclaims.get(&t.signal).cloned();
    }
    Ok(out)
}

/// (available, capacity) of a signal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    pub available: i64,
    pub capacity: i64,
}

impl Threshold {
    fn amount(v: &Value, capacity: i64) -> i64 {
        match v {
            Value::Quantity(q) => *q,
            Value::Percentage(p) => (p * capacity as f64) as i64,
        }
    }

    fn limit(&self, capacity: i64) -> i64 {
        Self::amount(&self.value, capacity)
    }

    /// Whether the signal is below the threshold (with `reclaim`, below the threshold plus its
    /// minimum reclaim: a threshold once met holds until that much more is available).
    fn met(&self, obs: &HashMap<Signal, Observation>, reclaim: bool) -> bool {
        obs.get(&self.signal).is_some_and(|o| {
            let extra = match (&self.min_reclaim, reclaim) {
                (Some(m), true) => Self::amount(m, o.capacity),
                _ => 0,
            };
            o.available < self.limit(o.capacity) + extra
        })
    }
}

/// The node conditions a signal drives: 0 MemoryPressure, 1 DiskPressure, 2 PIDPressure.
fn condition_of(s: Signal) -> usize {
    match s {
        Signal::MemoryAvailable => 0,
        Signal::PidAvailable => 2,
        _ => 1,
    }
}

/// What the manager remembers between passes, as upstream's: when each threshold was first seen
/// met, when each pressure condition was last observed, and the thresholds acted on that have not
/// yet reclaimed their minimum.
#[derive(Default)]
pub struct State {
    first_observed: HashMap<usize, Instant>,
    last_observed: [Option<Instant>; 3],
    acting: Vec<usize>,
}

/// One pass's outcome: the pressure conditions to report, and the thresholds (indexes) whose grace
/// period has passed, which evict pods.
#[derive(Debug, PartialEq)]
pub struct Decision {
    pub conditions: [bool; 3],
    pub act: Vec<usize>,
}

impl State {
    pub fn update(
        &mut self,
        thresholds: &[Threshold],
        obs: &HashMap<Signal, Observation>,
        now: Instant,
        transition: Duration,
    ) -> Decision {
        // Met now, ignoring grace periods; those acted on stay met until their minimum is reclaimed.
        let mut met: Vec<usize> = (0..thresholds.len()).filter(|i| thresholds[*i].met(obs, false)).collect();
        for i in &self.acting {
            if !met.contains(i) && thresholds[*i].met(obs, true) {
                met.push(*i);
            }
        }
        met.sort_unstable();
        self.first_observed.retain(|i, _| met.contains(i));
        for i in &met {
            self.first_observed.entry(*i).or_insert(now);
            self.last_observed[condition_of(thresholds[*i].signal)] = Some(now);
        }
        // A condition stays reported for the transition period after it was last observed.
        let conditions = self.last_observed.map(|t| t.is_some_and(|t| now.duration_since(t) < transition || t == now));
        let act: Vec<usize> =
            met.into_iter().filter(|i| now.duration_since(self.first_observed[i]) >= thresholds[*i].grace).collect();
        self.acting = act.clone();
        Decision { conditions, act }
    }
}

/// The filesystem signals of the filesystem holding `path`: (bytes, inodes).
fn fs_signals(path: &str) -> Option<(Observation, Observation)> {
    let (total, avail, inodes, free) = crate::machine::fs_stats(path)?;
    let bytes = Observation { available: avail as i64, capacity: total as i64 };
    Some((bytes, Observation { available: free as i64, capacity: inodes as i64 }))
}

/// Observes every signal: memory from `/proc/meminfo` (MemAvailable of MemTotal), nodefs from the
/// kubelet's root directory, imagefs from the runtime's image filesystem, PIDs from
/// `kernel.pid_max` less the tasks in existence.
async fn observe(k: &Kubelet) -> HashMap<Signal, Observation> {
    let mut out = HashMap::new();
    if let (Some(total), Some(avail)) = (crate::machine::meminfo("MemTotal"), crate::machine::meminfo("MemAvailable")) {
        out.insert(Signal::MemoryAvailable, Observation { available: avail, capacity: total });
    }
    let nodefs = fs_signals(&k.config.root_dir);
    if let Some((b, i)) = nodefs {
        out.insert(Signal::NodefsAvailable, b);
        out.insert(Signal::NodefsInodesFree, i);
    }
    let mount = crate::image_gc::image_fs_mount(k).await;
    if let Some((b, i)) = mount.and_then(|m| fs_signals(&m)).or(nodefs) {
        out.insert(Signal::ImagefsAvailable, b);
        out.insert(Signal::ImagefsInodesFree, i);
    }
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse::<i64>().ok());
    // /proc/loadavg's fourth field: running/total scheduling entities.
    let tasks = std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| {
        s.split_whitespace().nth(3).and_then(|f| f.split('/').nth(1)).and_then(|t| t.parse::<i64>().ok())
    });
    if let (Some(max), Some(tasks)) = (pid_max, tasks) {
        out.insert(Signal::PidAvailable, Observation { available: max - tasks, capacity: max });
    }
    out
}

/// A byte count as upstream's binary-SI Quantity prints it (`100Mi`, `1536Ki`, `1000`).
pub fn format_bytes(n: i64) -> String {
    for (suffix, unit) in
        [("Ei", 1i64 << 60), ("Pi", 1 << 50), ("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)]
    {
        if n != 0 && n % unit == 0 {
            return format!("{}{suffix}", n / unit);
        }
    }
    n.to_string()
}

/// What one pod uses, per container (name → bytes), from the runtime's stats and its log files.
#[derive(Default, Debug, Clone)]
pub struct Usage {
    pub memory: BTreeMap<String, i64>,
    /// Writable layer plus logs.
    pub disk: BTreeMap<String, i64>,
    /// Each disk-backed emptyDir volume's bytes.
    pub empty_dirs: BTreeMap<String, i64>,
}

fn dir_size(p: &Path) -> i64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else { return 0 };
    if !meta.is_dir() {
        return meta.len() as i64;
    }
    std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| dir_size(&e.path())).sum()
}

async fn usage(k: &Kubelet, pod: &Pod) -> Usage {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut u = Usage::default();
    let Ok(obs) = crate::runtime::observe(k, &uid).await else { return u };
    let mut rt = k.cri.runtime.clone();
    for ctr in obs.containers.iter().filter(|c| c.running()) {
        let Ok(s) = rt.container_stats(c::ContainerStatsRequest { container_id: ctr.id.clone() }).await else {
            continue;
        };
        let Some(s) = s.into_inner().stats else { continue };
        let mem = s.memory.and_then(|m| m.working_set_bytes).map(|v| v.value as i64).unwrap_or(0);
        let layer = s.writable_layer.and_then(|w| w.used_bytes).map(|v| v.value as i64).unwrap_or(0);
        let logs = if ctr.log_path.is_empty() { 0 } else { dir_size(Path::new(&ctr.log_path)) };
        *u.memory.entry(ctr.name.clone()).or_default() += mem;
        *u.disk.entry(ctr.name.clone()).or_default() += layer + logs;
    }
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(e) = &v.empty_dir {
            if e.medium.as_deref() != Some("Memory") {
                u.empty_dirs.insert(v.name.clone(), dir_size(&crate::volumes::volume_path(k, pod, v)));
            }
        }
    }
    u
}

fn container<'a>(pod: &'a Pod, name: &str) -> Option<&'a k8s_openapi::api::core::v1::Container> {
    pod.spec.iter().flat_map(|s| s.containers.iter()).find(|c| c.name == name)
}

/// A container's request of `resource` (its limit when it requests none), 0 without either.
fn request(pod: &Pod, name: &str, resource: &str) -> i64 {
    container(pod, name)
        .and_then(|c| crate::spec::res(c, "requests", resource).or_else(|| crate::spec::res(c, "limits", resource)))
        .map(apimachinery::quantity::ceil)
        .unwrap_or(0)
}

fn limit(pod: &Pod, name: &str, resource: &str) -> Option<i64> {
    container(pod, name).and_then(|c| crate::spec::res(c, "limits", resource)).map(apimachinery::quantity::ceil)
}

/// Static pods and pods of the system-critical priority classes (upstream's IsCriticalPod).
pub fn critical(pod: &Pod) -> bool {
    crate::static_pods::is_static(pod) || pod.spec.as_ref().and_then(|s| s.priority).is_some_and(|p| p >= 2_000_000_000)
}

/// The local-storage limit a pod breaks, as upstream's message; None when within limits.
pub fn local_storage_violation(pod: &Pod, u: &Usage) -> Option<String> {
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Some(limit) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) else { continue };
        let Some(bytes) = apimachinery::quantity::value(&limit.0) else { continue };
        if u.empty_dirs.get(&v.name).is_some_and(|used| *used > bytes) {
            return Some(format!("Usage of EmptyDir volume {:?} exceeds the limit {:?}. ", v.name, limit.0));
        }
    }
    for (name, used) in &u.disk {
        if let Some(l) = limit(pod, name, "ephemeral-storage").filter(|l| used > l) {
            return Some(format!(
                "Container {name} exceeded its local ephemeral storage limit {:?}. ",
                format_bytes(l)
            ));
        }
    }
    // The pod as a whole, when every container limits ephemeral storage.
    let containers: Vec<&str> = pod.spec.iter().flat_map(|s| s.containers.iter()).map(|c| c.name.as_str()).collect();
    let limits: Option<i64> = containers.iter().map(|c| limit(pod, c, "ephemeral-storage")).sum();
    if let Some(total) = limits {
        let used: i64 = u.disk.values().sum::<i64>() + u.empty_dirs.values().sum::<i64>();
        if used > total {
            return Some(format!(
                "Pod ephemeral local storage usage exceeds the total limit of containers {}. ",
                format_bytes(total)
            ));
        }
    }
    None
}

/// Orders candidates for a threshold as upstream's rankers: usage above requests first, then lower
/// priority, then more usage above the request.
pub fn rank(cands: &mut [(Arc<Pod>, Usage)], signal: Signal) {
    let resource = if signal == Signal::MemoryAvailable { "memory" } else { "ephemeral-storage" };
    let over = |p: &Pod, u: &Usage| -> i64 {
        let used = if signal == Signal::MemoryAvailable { &u.memory } else { &u.disk };
        let mut total: i64 = used.values().sum();
        if signal != Signal::MemoryAvailable {
            total += u.empty_dirs.values().sum::<i64>();
        }
        let req: i64 = p.spec.iter().flat_map(|s| s.containers.iter()).map(|c| request(p, &c.name, resource)).sum();
        total - req
    };
    cands.sort_by_key(|(p, u)| {
        let o = over(p, u);
        let prio = p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        (o <= 0, prio, std::cmp::Reverse(o))
    });
}

/// A pod the eviction manager evicts: its status message and the grace its containers get.
#[derive(Clone, Debug)]
pub struct Eviction {
    pub message: String,
    pub grace: i64,
}

/// Asks the pod's worker to evict it (`message` becomes its status message) and records the
/// `Evicted` event.
fn evict(k: &Kubelet, m: &crate::pods::Manager, pod: &Pod, message: String, grace: i64) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let e = Eviction { message: message.clone(), grace };
    if k.evictions.lock().unwrap().insert(uid.clone(), e).is_some() {
        return;
    }
    tracing::info!(pod = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or("")), message = %message, grace, "evicting pod");
    k.events.emit(pod, true, "Evicted", message);
    m.kick(&uid);
}

pub async fn run(k: Arc<Kubelet>, m: Arc<crate::pods::Manager>) {
    let mut state = State::default();
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        synchronize(&k, &m, &mut state).await;
    }
}

async fn synchronize(k: &Kubelet, m: &crate::pods::Manager, state: &mut State) {
    let thresholds = &k.config.eviction_thresholds;
    let pods: Vec<Arc<Pod>> = m
        .active_pods()
        .into_iter()
        .filter(|p| !k.evictions.lock().unwrap().contains_key(p.metadata.uid.as_deref().unwrap_or("")))
        .collect();
    let mut usages = Vec::new();
    for p in &pods {
        usages.push((p.clone(), usage(k, p).await));
    }
    // Local storage limits, whatever the node's state.
    let mut evicted_for_storage = false;
    for (p, u) in &usages {
        if let Some(msg) = local_storage_violation(p, u) {
            if !critical(p) {
                evict(k, m, p, msg, 0);
                evicted_for_storage = true;
            }
        }
    }
    let mut obs = observe(k).await;
    let decision = state.update(thresholds, &obs, Instant::now(), k.config.eviction_pressure_transition_period);
    let flags = [&k.pressure.memory, &k.pressure.disk, &k.pressure.pid];
    let mut changed = false;
    for (flag, on) in flags.into_iter().zip(decision.conditions) {
        changed |= flag.swap(on, std::sync::atomic::Ordering::Relaxed) != on;
    }
    if changed {
        k.node_status_kick.notify_one();
    }
    if decision.act.is_empty() || evicted_for_storage {
        return;
    }
    // Memory first, then disk, then PIDs, as upstream ranks the thresholds.
    let t = decision.act.iter().map(|i| &thresholds[*i]).min_by_key(|t| (t.signal, !t.hard)).expect("one acts");
    tracing::info!(signal = t.signal.name(), "eviction threshold met, attempting to reclaim");
    k.node_event(true, "EvictionThresholdMet", format!("Attempting to reclaim {}", t.signal.resource()));
    // Disk: reclaim node-level resources first (dead containers, terminated pods' included, then
    // unused images); pods are spared if every threshold (ignoring grace periods, with minimum
    // reclaims) is then satisfied.
    if t.signal.disk()
        && crate::container_gc::collect(k, m.pods(), true).await + crate::image_gc::remove_unused(k).await > 0
    {
        obs = observe(k).await;
        if !thresholds.iter().any(|t| t.met(&obs, true)) {
            return;
        }
    }
    let mut cands: Vec<(Arc<Pod>, Usage)> = usages.into_iter().filter(|(p, _)| !critical(p)).collect();
    rank(&mut cands, t.signal);
    let Some((pod, u)) = cands.first() else {
        tracing::warn!(signal = ?t.signal, "under pressure, and no pod may be evicted");
        return;
    };
    let o = obs[&t.signal];
    let (quantity, available) = match t.signal {
        Signal::NodefsInodesFree | Signal::ImagefsInodesFree | Signal::PidAvailable => {
            (t.limit(o.capacity).to_string(), o.available.to_string())
        }
        _ => (format_bytes(t.limit(o.capacity)), format_bytes(o.available)),
    };
    let resource = t.signal.resource();
    let mut msg =
        format!("The node was low on resource: {resource}. Threshold quantity: {quantity}, available: {available}. ");
    let used = if t.signal == Signal::MemoryAvailable { &u.memory } else { &u.disk };
    let req_resource = if t.signal == Signal::MemoryAvailable { "memory" } else { "ephemeral-storage" };
    for (name, bytes) in used {
        let req = request(pod, name, req_resource);
        if *bytes > req
            && matches!(t.signal, Signal::MemoryAvailable | Signal::NodefsAvailable | Signal::ImagefsAvailable)
        {
            msg.push_str(&format!(
                "Container {name} was using {}, request is {}, has larger consumption of {resource}. ",
                format_bytes(*bytes),
                format_bytes(req)
            ));
        }
    }
    // Hard thresholds kill at once; soft ones give the pod's grace period, capped at
    // evictionMaxPodGracePeriod.
    let grace = if t.hard {
        0
    } else {
        let own = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
        own.min(k.config.eviction_max_pod_grace_period).max(0)
    };
    evict(k, m, pod, msg, grace);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn thresholds_parse_and_compare_as_upstream() {
        let none = BTreeMap::new();
        let m = map(&[("memory.available", "100Mi"), ("nodefs.available", "10%"), ("imagefs.available", "0%")]);
        let t = parse_config(&m, &none, &none, &none).unwrap();
        assert_eq!(t.len(), 2, "0% turns a signal off");
        let obs: HashMap<Signal, Observation> = [
            (Signal::MemoryAvailable, Observation { available: 99 << 20, capacity: 1 << 30 }),
            (Signal::NodefsAvailable, Observation { available: 11, capacity: 100 }),
        ]
        .into();
        let met: Vec<Signal> = t.iter().filter(|t| t.met(&obs, false)).map(|t| t.signal).collect();
        assert_eq!(met, [Signal::MemoryAvailable]);
        let err = |h: &[(&str, &str)], s: &[(&str, &str)], g: &[(&str, &str)], r: &[(&str, &str)]| {
            parse_config(&map(h), &map(s), &map(g), &map(r)).unwrap_err()
        };
        assert_eq!(err(&[("memory.free", "1Gi")], &[], &[], &[]), "unsupported eviction signal memory.free");
        assert_eq!(
            err(&[("memory.available", "0")], &[], &[], &[]),
            "eviction threshold memory.available must be positive: 0"
        );
        assert_eq!(
            err(&[("nodefs.available", "101%")], &[], &[], &[]),
            "eviction percentage threshold nodefs.available must be <= 100%: 101%"
        );
        assert_eq!(
            err(&[], &[("memory.available", "1Gi")], &[], &[]),
            "grace period must be specified for the soft eviction threshold memory.available"
        );
        assert_eq!(
            err(&[], &[], &[], &[("memory.available", "-1Mi")]),
            "negative eviction minimum reclaim specified for memory.available"
        );
        let t = parse_config(
            &map(&[("memory.available", "100Mi")]),
            &map(&[("memory.available", "1Gi")]),
            &map(&[("memory.available", "1m30s")]),
            &map(&[("memory.available", "500Mi")]),
        )
        .unwrap();
        assert_eq!((t[1].hard, t[1].grace), (false, Duration::from_secs(90)));
        assert_eq!(t[0].min_reclaim, Some(Value::Quantity(500 << 20)), "a minimum reclaim applies to both");
        assert_eq!(
            (format_bytes(100 << 20), format_bytes(1536 << 10), format_bytes(1000)),
            ("100Mi".into(), "1536Ki".into(), "1000".into())
        );
    }

    #[test]
    fn grace_periods_minimum_reclaim_and_the_transition_period() {
        // Hard at 100 bytes with 50 to reclaim; soft at 200 after 30s.
        let t = parse_config(
            &map(&[("memory.available", "100")]),
            &map(&[("memory.available", "200")]),
            &map(&[("memory.available", "30s")]),
            &map(&[("memory.available", "50")]),
        )
        .unwrap();
        let (hard, soft) = (0, 1);
        let at = |avail: i64| -> HashMap<Signal, Observation> {
            [(Signal::MemoryAvailable, Observation { available: avail, capacity: 1000 })].into()
        };
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let transition = Duration::from_secs(60);
        let mut st = State::default();
        // Below the soft threshold: the condition at once, no eviction until its grace has passed.
        assert_eq!(
            st.update(&t, &at(150), s(0), transition),
            Decision { conditions: [true, false, false], act: vec![] }
        );
        assert_eq!(st.update(&t, &at(150), s(20), transition).act, Vec::<usize>::new());
        assert_eq!(st.update(&t, &at(150), s(30), transition).act, vec![soft]);
        // Back above it for a moment: the grace period starts again.
        assert_eq!(st.update(&t, &at(260), s(40), transition).act, Vec::<usize>::new());
        assert_eq!(st.update(&t, &at(150), s(50), transition).act, Vec::<usize>::new());
        // Below the hard threshold: at once, and it holds until 150 (100 + 50) are available.
        assert_eq!(st.update(&t, &at(90), s(60), transition).act, vec![hard]);
        assert_eq!(st.update(&t, &at(120), s(70), transition).act, vec![hard], "minimum reclaim not met yet");
        assert_eq!(
            st.update(&t, &at(160), s(80), transition).act,
            vec![soft],
            "reclaimed; the soft one's grace ran on"
        );
        // All clear: the condition stays for the transition period after it was last observed.
        let d = st.update(&t, &at(900), s(90), transition);
        assert_eq!(d, Decision { conditions: [true, false, false], act: vec![] });
        assert_eq!(st.update(&t, &at(900), s(139), transition).conditions, [true, false, false]);
        assert_eq!(st.update(&t, &at(900), s(141), transition).conditions, [false, false, false]);
    }

    fn pod(name: &str, priority: i32, spec: serde_json::Value) -> Arc<Pod> {
        let mut p: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name, "uid": name}, "spec": spec})).unwrap();
        p.spec.as_mut().unwrap().priority = Some(priority);
        Arc::new(p)
    }

    #[test]
    fn ranking_and_local_storage_limits() {
        let guaranteed = pod(
            "g",
            0,
            serde_json::json!({"containers": [{"name": "c", "resources": {"requests": {"memory": "100Mi"}}}]}),
        );
        let best_effort = pod("b", 0, serde_json::json!({"containers": [{"name": "c"}]}));
        let important = pod("i", 1000, serde_json::json!({"containers": [{"name": "c"}]}));
        let used = |mem: i64| Usage { memory: [("c".to_string(), mem)].into(), ..Default::default() };
        let mut cands = vec![
            (guaranteed.clone(), used(50 << 20)),
            (important.clone(), used(10 << 20)),
            (best_effort.clone(), used(5 << 20)),
        ];
        rank(&mut cands, Signal::MemoryAvailable);
        let order: Vec<&str> = cands.iter().map(|(p, _)| p.metadata.name.as_deref().unwrap()).collect();
        // Over their requests: b and i (i is more important), then g (within its request).
        assert_eq!(order, ["b", "i", "g"]);

        let scratch = pod(
            "s",
            0,
            serde_json::json!({"volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}],
            "containers": [{"name": "c", "resources": {"limits": {"ephemeral-storage": "4Mi"}}}]}),
        );
        let mut u = Usage::default();
        u.empty_dirs.insert("scratch".into(), 2 << 20);
        assert_eq!(
            local_storage_violation(&scratch, &u).unwrap(),
            "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". "
        );
        u.empty_dirs.insert("scratch".into(), 1 << 20);
        u.disk.insert("c".into(), 5 << 20);
        assert_eq!(
            local_storage_violation(&scratch, &u).unwrap(),
            "Container c exceeded its local ephemeral storage limit \"4Mi\". "
        );
        // 3.5Mi in the container and 1Mi in the volume: each within its own limit, 4.5Mi in all.
        u.disk.insert("c".into(), 7 << 19);
        assert_eq!(
            local_storage_violation(&scratch, &u).unwrap(),
            "Pod ephemeral local storage usage exceeds the total limit of containers 4Mi. "
        );
        u.disk.insert("c".into(), 1 << 20);
        assert!(local_storage_violation(&scratch, &u).is_none());
    }
}
