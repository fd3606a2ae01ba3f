//! One pod's worker: makes the runtime match the pod (volumes, sandbox, init containers in order,
//! then app containers, restarts with crash-loop back-off, probes, graceful termination) and
//! reports the pod's status, as upstream's `SyncPod`/`computePodActions`.

use crate::kubelet::Kubelet;
use crate::probes::{self, Kind, Results};
use crate::runtime::{self, Ctr, Observed};
use crate::spec;
use cri::v1 as c;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    HostIP, LifecycleHandler, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MAX_BACKOFF: Duration = Duration::from_secs(300);
const INITIAL_BACKOFF: Duration = Duration::from_secs(10);

/// Where a pod's containers go: its current sandbox, that sandbox's configuration, and what the
/// runtime has of the pod.
#[derive(Clone, Copy)]
struct Placement<'a> {
    sandbox: &'a runtime::Sandbox,
    config: &'a c::PodSandboxConfig,
    observed: &'a Observed,
}

pub struct Worker {
    k: Arc<Kubelet>,
    uid: String,
    /// Why a container is waiting (reason, message), for containers the kubelet could not start.
    waiting: HashMap<String, (String, String)>,
    /// Crash-loop back-off per container name: the current delay.
    crash_backoff: HashMap<String, Duration>,
    /// Image pull back-off per image: (delay, last failure).
    pull_backoff: HashMap<String, (Duration, Instant)>,
    probers: HashMap<(String, Kind), probes::Worker>,
    pub results: Arc<Results>,
    last_status: Option<serde_json::Value>,
    start_time: Option<Time>,
    deleted_in_api: bool,
    mount_error: Option<String>,
    /// Set when the eviction manager evicted the pod: its status message.
    evicted: Option<String>,
    /// Set when admission turned the pod away: nothing of it runs, and it ends Failed.
    pub rejected: Option<crate::admission::Rejection>,
    /// Where each volume is on the host, from the last setup of this sync.
    volume_paths: std::collections::BTreeMap<String, std::path::PathBuf>,
    /// The exit (finish time) of each container whose back-off was already announced.
    backoff_announced: HashMap<String, i64>,
}

fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn time_of(nanos: i64) -> Option<Time> {
    if nanos <= 0 {
        return None;
    }
    k8s_openapi::jiff::Timestamp::from_nanosecond(nanos as i128).ok().map(|t| {
        // metav1.Time has second precision on the wire.
        Time(k8s_openapi::jiff::Timestamp::from_second(t.as_second()).unwrap_or(t))
    })
}

pub fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

fn should_restart(policy: &str, ctr: &Ctr) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => ctr.exit_code != 0,
        _ => true,
    }
}

impl Worker {
    pub fn new(k: Arc<Kubelet>, uid: String) -> Worker {
        Worker {
            k,
            uid,
            waiting: HashMap::new(),
            crash_backoff: HashMap::new(),
            pull_backoff: HashMap::new(),
            probers: HashMap::new(),
            results: Arc::new(Results::default()),
            last_status: None,
            start_time: None,
            deleted_in_api: false,
            mount_error: None,
            evicted: None,
            rejected: None,
            volume_paths: Default::default(),
            backoff_announced: HashMap::new(),
        }
    }

    /// Syncs once; returns when the worker wants to run again at the latest.
    pub async fn sync(&mut self, pod: &Arc<Pod>) -> Duration {
        if self.deleted_in_api {
            return Duration::from_secs(3600);
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            return self.terminate_and_delete(pod).await;
        }
        let terminal = phase == "Succeeded" || phase == "Failed";
        if let (Some(r), false) = (self.rejected.clone(), terminal) {
            // Nothing of a rejected pod ever ran: there is no runtime state to read.
            return self.post_rejection(pod, &r).await;
        }
        let observed = match runtime::observe(&self.k, &self.uid).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(pod = %pod_ref(pod), error = %e.message(), "reading the pod's containers");
                return Duration::from_secs(2);
            }
        };
        let evicted = self.k.evictions.lock().unwrap().get(&self.uid).cloned();
        if let (Some(e), false) = (evicted, terminal) {
            // Evicted: every container stops (with the grace the manager gave), and the pod ends
            // Failed with the manager's message.
            self.evicted = Some(e.message);
            self.stop_everything(pod, &observed, e.grace).await;
            if let Ok(o) = runtime::observe(&self.k, &self.uid).await {
                self.post_status(pod, &o, true).await;
            }
            return Duration::from_secs(2);
        }
        if terminal {
            // A terminal pod never runs again: anything still running is stopped.
            if observed.sandboxes.iter().any(|s| s.ready) || observed.containers.iter().any(|c| c.running()) {
                self.stop_everything(pod, &observed, 0).await;
                if let Ok(o) = runtime::observe(&self.k, &self.uid).await {
                    self.post_status(pod, &o, false).await;
                }
            }
            return self.k.config.sync_frequency;
        }
        if self.start_time.is_none() {
            self.start_time =
                pod.status.as_ref().and_then(|s| s.start_time.clone()).or_else(|| Some(component_base::time_now()));
        }
        let mut next = Duration::from_secs(10);
        // A pass that changed something (a new sandbox, started containers) is followed at once by
        // another on the fresh state, so that containers start right after their sandbox rather than
        // at the next relist.
        let mut observed = observed;
        for pass in 0..3 {
            match self.sync_runtime(pod, observed, &mut next).await {
                Some(o) => {
                    observed = o;
                    break;
                }
                None => match runtime::observe(&self.k, &self.uid).await {
                    Ok(o) => observed = o,
                    Err(_) => return Duration::from_secs(2),
                },
            }
            if pass == 2 {
                next = next.min(Duration::from_secs(1));
            }
        }
        self.update_probers(pod, &observed);
        self.post_status(pod, &observed, false).await;
        next
    }

    /// Brings the runtime in line with the pod. Returns the observation when nothing was changed
    /// (else `None`: the caller observes again).
    async fn sync_runtime(&mut self, pod: &Arc<Pod>, observed: Observed, next: &mut Duration) -> Option<Observed> {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());

        match crate::volumes::setup(&self.k, pod).await {
            Ok(paths) => self.volume_paths = paths,
            Err(e) => {
                let msg = format!("MountVolume.SetUp failed: {e}");
                // Said once per distinct failure; retried every 2s.
                if self.mount_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(pod = %pod_ref(pod), error = %e, "volume setup failed");
                    self.k.events.emit(pod.as_ref(), true, "FailedMount", msg.clone());
                    self.mount_error = Some(msg);
                }
                *next = Duration::from_secs(2);
                return Some(observed);
            }
        }

        let need_sandbox = observed.current().is_none_or(|s| !s.ready);
        if need_sandbox {
            if self.pod_finished(pod, &observed) {
                return Some(observed);
            }
            // Everything of the old sandbox goes; init containers run again in the new one.
            let old_attempt = observed.current().map(|s| s.attempt + 1).unwrap_or(0);
            if observed.current().is_some() {
                self.k.events.emit(
                    pod.as_ref(),
                    false,
                    "SandboxChanged",
                    "Pod sandbox changed, it will be killed and re-created.".into(),
                );
            }
            self.stop_everything(pod, &observed, 0).await;
            if let Err(e) = self.create_sandbox(pod, old_attempt).await {
                self.k.events.emit(
                    pod.as_ref(),
                    true,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e}"),
                );
                *next = Duration::from_secs(5);
                return Some(observed);
            }
            return None;
        }
        let sandbox = observed.current().cloned().expect("a ready sandbox");
        self.write_hosts(pod, sandbox.ip.as_deref());
        let sandbox_config = spec::sandbox_config(&self.k, pod, sandbox.attempt);
        let at = Placement { sandbox: &sandbox, config: &sandbox_config, observed: &observed };
        let mut changed = false;

        // Init containers, in order; restartable (sidecar) ones keep running.
        let mut init_done = true;
        for ic in spec.init_containers.iter().flatten() {
            let sidecar = ic.restart_policy.as_deref() == Some("Always");
            match observed.latest(&sandbox.id, &ic.name) {
                None => {
                    changed |= self.start(pod, ic, &at, next).await;
                    if !sidecar {
                        init_done = false;
                        break;
                    }
                }
                Some(ctr) if ctr.running() => {
                    if sidecar {
                        if self.started(ic, ctr) {
                            changed |= self.check_liveness(pod, ic, ctr).await;
                            continue;
                        }
                        init_done = false;
                        break;
                    }
                    init_done = false;
                    break;
                }
                Some(ctr) if ctr.exited() && ctr.exit_code == 0 && !sidecar => continue,
                Some(ctr) if ctr.exited() => {
                    if policy == "Never" && !sidecar {
                        init_done = false;
                        break;
                    }
                    changed |= self.restart_after_backoff(pod, ic, ctr, &at, next).await;
                    init_done = false;
                    if !sidecar {
                        break;
                    }
                }
                Some(ctr) => {
                    // Created but not started (the kubelet stopped in between).
                    let mut rt = self.k.cri.runtime.clone();
                    let _ = rt.start_container(c::StartContainerRequest { container_id: ctr.id.clone() }).await;
                    changed = true;
                    init_done = false;
                    break;
                }
            }
        }
        if init_done {
            for ctr_spec in &spec.containers {
                match observed.latest(&sandbox.id, &ctr_spec.name) {
                    None => {
                        // A container that finished in an earlier sandbox is not rerun when the
                        // policy does not restart it.
                        if let Some(prev) = observed.latest_any(&ctr_spec.name) {
                            if prev.exited() && !should_restart(&policy, prev) {
                                continue;
                            }
                        }
                        changed |= self.start(pod, ctr_spec, &at, next).await;
                    }
                    Some(ctr) if ctr.running() => {
                        if ctr.annotations.get(spec::HASH_ANNOTATION).map(String::as_str)
                            != Some(&spec::container_hash(ctr_spec))
                        {
                            self.kill(
                                pod,
                                ctr_spec,
                                ctr,
                                &format!("Container {} definition changed, will be restarted", ctr_spec.name),
                            )
                            .await;
                            changed = true;
                            continue;
                        }
                        changed |= self.check_liveness(pod, ctr_spec, ctr).await;
                    }
                    Some(ctr) if ctr.exited() => {
                        if should_restart(&policy, ctr) {
                            changed |= self.restart_after_backoff(pod, ctr_spec, ctr, &at, next).await;
                        }
                    }
                    Some(ctr) => {
                        let mut rt = self.k.cri.runtime.clone();
                        let _ = rt.start_container(c::StartContainerRequest { container_id: ctr.id.clone() }).await;
                        changed = true;
                    }
                }
            }
        }
        if changed {
            None
        } else {
            Some(observed)
        }
    }

    /// Whether no container will ever run again (restart policy satisfied).
    fn pod_finished(&self, pod: &Pod, o: &Observed) -> bool {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        if policy == "Always" || o.current().is_none() {
            return false;
        }
        spec.containers
            .iter()
            .all(|cs| o.latest_any(&cs.name).is_some_and(|c| c.exited() && !should_restart(&policy, c)))
    }

    fn started(&self, spec: &Container, ctr: &Ctr) -> bool {
        spec.startup_probe.is_none() || self.results.get(&ctr.id, Kind::Startup) == Some(true)
    }

    async fn check_liveness(&mut self, pod: &Pod, spec: &Container, ctr: &Ctr) -> bool {
        if self.results.get(&ctr.id, Kind::Startup) == Some(false) {
            self.kill(pod, spec, ctr, &format!("Container {} failed startup probe, will be restarted", spec.name))
                .await;
            return true;
        }
        if self.results.get(&ctr.id, Kind::Liveness) == Some(false) {
            self.kill(pod, spec, ctr, &format!("Container {} failed liveness probe, will be restarted", spec.name))
                .await;
            return true;
        }
        false
    }

    async fn kill(&mut self, pod: &Pod, spec: &Container, ctr: &Ctr, why: &str) {
        self.k.events.emit(pod, false, "Killing", why.to_string());
        let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
        let remaining = self.run_pre_stop(pod, spec, ctr, grace).await;
        if let Err(e) = runtime::stop_container(&self.k, &ctr.id, remaining).await {
            tracing::warn!(container = %ctr.id, error = %e.message(), "StopContainer failed");
        }
        self.results.forget(&ctr.id);
    }

    /// Runs the preStop hook (bounded by the grace period); the seconds left.
    async fn run_pre_stop(&self, pod: &Pod, spec: &Container, ctr: &Ctr, grace: i64) -> i64 {
        let Some(h) = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) else { return grace };
        let started = Instant::now();
        let budget = Duration::from_secs(grace.max(0) as u64);
        if let Err(msg) =
            tokio::time::timeout(budget, self.run_handler(pod, &ctr.id, &h, grace)).await.unwrap_or(Ok(()))
        {
            self.k.events.emit(pod, true, "FailedPreStopHook", format!("PreStopHook failed: {msg}"));
        }
        (grace - started.elapsed().as_secs() as i64).max(2)
    }

    async fn run_handler(
        &self,
        pod: &Pod,
        container_id: &str,
        h: &LifecycleHandler,
        timeout: i64,
    ) -> Result<(), String> {
        if let Some(e) = &h.exec {
            let mut rt = self.k.cri.runtime.clone();
            let r = rt
                .exec_sync(c::ExecSyncRequest {
                    container_id: container_id.to_string(),
                    cmd: e.command.clone().unwrap_or_default(),
                    timeout,
                })
                .await
                .map_err(|e| e.message().to_string())?
                .into_inner();
            if r.exit_code != 0 {
                return Err(format!(
                    "command '{}' exited with {}: {}",
                    e.command.clone().unwrap_or_default().join(" "),
                    r.exit_code,
                    String::from_utf8_lossy(&r.stderr)
                ));
            }
            return Ok(());
        }
        if let Some(s) = &h.sleep {
            tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
            return Ok(());
        }
        if let Some(g) = &h.http_get {
            let host = g
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .or(pod.status.as_ref().and_then(|s| s.pod_ip.clone()))
                .unwrap_or_default();
            let port = match &g.port {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => *n,
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.parse().unwrap_or(80),
            };
            let code = probes::http_get(
                &host,
                port,
                g.path.as_deref().unwrap_or("/"),
                g.http_headers.as_deref().unwrap_or(&[]),
                g.scheme.as_deref() == Some("HTTPS"),
            )
            .await?;
            if !(200..400).contains(&code) {
                return Err(format!("HTTP lifecycle hook returned status {code}"));
            }
        }
        Ok(())
    }

    async fn restart_after_backoff(
        &mut self,
        pod: &Pod,
        spec: &Container,
        ctr: &Ctr,
        at: &Placement<'_>,
        next: &mut Duration,
    ) -> bool {
        // As upstream: a container that ran long enough starts over with the initial delay.
        if ctr.finished_at - ctr.started_at > 2 * MAX_BACKOFF.as_nanos() as i64 {
            self.crash_backoff.remove(&spec.name);
        }
        if let Some(delay) = self.crash_backoff.get(&spec.name).copied() {
            let until = ctr.finished_at + delay.as_nanos() as i64;
            let now = now_nanos();
            if now < until {
                self.waiting.insert(
                    spec.name.clone(),
                    (
                        "CrashLoopBackOff".into(),
                        format!(
                            "back-off {} restarting failed container={} pod={}",
                            component_base::duration::format_duration(delay),
                            spec.name,
                            pod_ref(pod)
                        ),
                    ),
                );
                let left = Duration::from_nanos((until - now) as u64);
                *next = (*next).min(left + Duration::from_millis(50));
                if self.backoff_announced.insert(spec.name.clone(), ctr.finished_at) != Some(ctr.finished_at) {
                    let note = format!("Back-off restarting failed container {} in pod {}", spec.name, pod_ref(pod));
                    self.k.events.emit(pod, true, "BackOff", note);
                }
                return false;
            }
            self.crash_backoff.insert(spec.name.clone(), (delay * 2).min(MAX_BACKOFF));
        } else {
            self.crash_backoff.insert(spec.name.clone(), INITIAL_BACKOFF);
        }
        self.start(pod, spec, at, next).await
    }

    async fn create_sandbox(&mut self, pod: &Pod, attempt: u32) -> Result<String, String> {
        let cfg = spec::sandbox_config(&self.k, pod, attempt);
        std::fs::create_dir_all(&cfg.log_directory).map_err(|e| format!("creating {}: {e}", cfg.log_directory))?;
        // The pod's own cgroup and its limits first; where cgroups cannot be written (a read-only
        // cgroupfs), the containers still get their own limits from the runtime.
        if let Err(e) = crate::cgroups::ensure_pod(&self.k, pod).await {
            tracing::warn!(pod = %self.uid, error = %e, "could not apply the pod's cgroup limits");
        }
        let mut rt = self.k.cri.runtime.clone();
        let r = rt
            .run_pod_sandbox(c::RunPodSandboxRequest {
                config: Some(cfg),
                runtime_handler: pod.spec.as_ref().and_then(|s| s.runtime_class_name.clone()).unwrap_or_default(),
            })
            .await
            .map_err(|e| format!("rpc error: code = {:?} desc = {}", e.code(), e.message()))?;
        Ok(r.into_inner().pod_sandbox_id)
    }

    fn write_hosts(&self, pod: &Pod, ip: Option<&str>) {
        let dir = crate::volumes::pod_dir(&self.k, &self.uid);
        let _ = std::fs::create_dir_all(&dir);
        let spec = pod.spec.clone().unwrap_or_default();
        let mut s = String::from("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n");
        if let Some(ip) = ip {
            let hostname = spec.hostname.clone().unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
            match &spec.subdomain {
                Some(sub) if !sub.is_empty() => {
                    let ns = pod.metadata.namespace.clone().unwrap_or_default();
                    let d = self.k.config.cluster_domain.trim_end_matches('.');
                    s.push_str(&format!("{ip}\t{hostname}.{sub}.{ns}.svc.{d}\t{hostname}\n"));
                }
                _ => s.push_str(&format!("{ip}\t{hostname}\n")),
            }
        }
        for a in spec.host_aliases.iter().flatten() {
            s.push_str(&format!(
                "\n# Entries added by HostAliases.\n{}\t{}\n",
                a.ip,
                a.hostnames.clone().unwrap_or_default().join("\t")
            ));
        }
        let path = dir.join("etc-hosts");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(s.as_str()) {
            let _ = std::fs::write(path, s);
        }
    }

    /// Ensures the image is present, as `imagePullPolicy` says; the image reference to run.
    async fn ensure_image(
        &mut self,
        pod: &Pod,
        spec: &Container,
        sandbox_config: &c::PodSandboxConfig,
    ) -> Result<String, (String, String)> {
        let image = spec.image.clone().unwrap_or_default();
        let policy =
            spec.image_pull_policy.clone().unwrap_or_else(|| apimachinery::images::default_pull_policy(&image).into());
        let mut img = self.k.cri.image.clone();
        let present = img
            .image_status(c::ImageStatusRequest {
                image: Some(c::ImageSpec { image: image.clone(), ..Default::default() }),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().image)
            .map(|i| i.id);
        if policy != "Always" {
            if let Some(id) = present {
                self.k.events.emit(
                    pod,
                    false,
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                );
                return Ok(id);
            }
            if policy == "Never" {
                let msg = format!("Container image \"{image}\" is not present with pull policy of Never");
                self.k.events.emit(pod, true, "ErrImageNeverPull", msg.clone());
                return Err(("ErrImageNeverPull".into(), msg));
            }
        }
        if let Some((delay, at)) = self.pull_backoff.get(&image) {
            if at.elapsed() < *delay {
                let msg = format!("Back-off pulling image \"{image}\"");
                self.k.events.emit(pod, false, "BackOff", msg.clone());
                return Err(("ImagePullBackOff".into(), msg));
            }
        }
        self.k.events.emit(pod, false, "Pulling", format!("Pulling image \"{image}\""));
        // serializeImagePulls (default) or maxParallelImagePulls: a permit per pull in flight.
        let _permit = self.k.pulls.acquire().await.expect("pull semaphore open");
        let started = Instant::now();
        let r = img
            .pull_image(c::PullImageRequest {
                image: Some(c::ImageSpec {
                    image: image.clone(),
                    user_specified_image: image.clone(),
                    ..Default::default()
                }),
                auth: None,
                sandbox_config: Some(sandbox_config.clone()),
            })
            .await;
        match r {
            Ok(r) => {
                self.pull_backoff.remove(&image);
                self.k.events.emit(
                    pod,
                    false,
                    "Pulled",
                    format!("Successfully pulled image \"{image}\" in {:.3}s", started.elapsed().as_secs_f64()),
                );
                Ok(r.into_inner().image_ref)
            }
            Err(e) => {
                let delay =
                    self.pull_backoff.get(&image).map(|(d, _)| (*d * 2).min(MAX_BACKOFF)).unwrap_or(INITIAL_BACKOFF);
                self.pull_backoff.insert(image.clone(), (delay, Instant::now()));
                let msg = format!(
                    "Failed to pull image \"{image}\": rpc error: code = {:?} desc = {}",
                    e.code(),
                    e.message()
                );
                self.k.events.emit(pod, true, "Failed", msg.clone());
                self.k.events.emit(pod, true, "Failed", "Error: ErrImagePull".into());
                Err(("ErrImagePull".into(), msg))
            }
        }
    }

    /// Creates and starts one container; false when it could not (the reason is kept for status).
    async fn start(&mut self, pod: &Pod, spec_c: &Container, at: &Placement<'_>, next: &mut Duration) -> bool {
        let image_ref = match self.ensure_image(pod, spec_c, at.config).await {
            Ok(r) => r,
            Err((reason, msg)) => {
                self.waiting.insert(spec_c.name.clone(), (reason, msg));
                *next = (*next).min(Duration::from_secs(5));
                return false;
            }
        };
        match self.create_and_start(pod, spec_c, at, &image_ref).await {
            Ok(()) => {
                self.waiting.remove(&spec_c.name);
                true
            }
            Err((reason, msg)) => {
                self.k.events.emit(pod, true, "Failed", format!("Error: {msg}"));
                self.waiting.insert(spec_c.name.clone(), (reason, msg));
                *next = (*next).min(Duration::from_secs(5));
                false
            }
        }
    }

    async fn create_and_start(
        &mut self,
        pod: &Pod,
        spec_c: &Container,
        at: &Placement<'_>,
        image_ref: &str,
    ) -> Result<(), (String, String)> {
        let Placement { sandbox, config: sandbox_config, observed } = *at;
        let config_err = |m: String| ("CreateContainerConfigError".to_string(), m);
        let mut pod_with_ip = pod.clone();
        if let (Some(ip), Some(st)) = (sandbox.ip.clone(), pod_with_ip.status.as_mut()) {
            st.pod_ip = Some(ip.clone());
            st.pod_ips = Some(vec![PodIP { ip }]);
            st.host_ip = self.k.node_ips.first().cloned();
        }
        let env = crate::env::build(&self.k, &pod_with_ip, spec_c).await.map_err(config_err)?;
        let vars: HashMap<String, String> = env.iter().cloned().collect();
        let attempt = observed.latest_any(&spec_c.name).map(|c| c.attempt + 1).unwrap_or(0);
        let vols = self.volume_paths.clone();

        let mut mounts = Vec::new();
        for m in spec_c.volume_mounts.iter().flatten() {
            let host = vols.get(&m.name).ok_or_else(|| {
                config_err(format!("cannot find volume \"{}\" to mount into container \"{}\"", m.name, spec_c.name))
            })?;
            let sub = m
                .sub_path
                .clone()
                .filter(|s| !s.is_empty())
                .or_else(|| m.sub_path_expr.as_ref().map(|e| crate::env::expand(e, &vars)));
            let host_path = match sub {
                Some(s) => {
                    if s.starts_with('/') || s.split('/').any(|p| p == "..") {
                        return Err(config_err(format!(
                            "failed to prepare subPath for volumeMount \"{}\" of container \"{}\"",
                            m.name, spec_c.name
                        )));
                    }
                    let p = host.join(&s);
                    if !p.exists() {
                        let _ = std::fs::create_dir_all(&p);
                    }
                    p
                }
                None => host.clone(),
            };
            mounts.push(c::Mount {
                container_path: m.mount_path.clone(),
                host_path: host_path.to_string_lossy().into_owned(),
                readonly: m.read_only == Some(true),
                selinux_relabel: false,
                propagation: match m.mount_propagation.as_deref() {
                    Some("HostToContainer") => c::MountPropagation::PropagationHostToContainer as i32,
                    Some("Bidirectional") => c::MountPropagation::PropagationBidirectional as i32,
                    _ => c::MountPropagation::PropagationPrivate as i32,
                },
            });
        }
        let pod_dir = crate::volumes::pod_dir(&self.k, &self.uid);
        let host_net = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        if !host_net && !mounts.iter().any(|m| m.container_path == "/etc/hosts") {
            mounts.push(c::Mount {
                container_path: "/etc/hosts".into(),
                host_path: pod_dir.join("etc-hosts").to_string_lossy().into_owned(),
                ..Default::default()
            });
        }
        let term_path = spec_c.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into());
        let term_dir = pod_dir.join("containers").join(&spec_c.name);
        std::fs::create_dir_all(&term_dir).map_err(|e| config_err(e.to_string()))?;
        let term_file = term_dir.join(format!("{attempt:08x}"));
        std::fs::write(&term_file, b"").map_err(|e| config_err(e.to_string()))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&term_file, std::fs::Permissions::from_mode(0o666));
        mounts.push(c::Mount {
            container_path: term_path.clone(),
            host_path: term_file.to_string_lossy().into_owned(),
            ..Default::default()
        });

        let log_dir = std::path::Path::new(&sandbox_config.log_directory).join(&spec_c.name);
        std::fs::create_dir_all(&log_dir).map_err(|e| config_err(e.to_string()))?;

        let mut labels = spec::pod_labels(pod);
        labels.insert(cri::labels::CONTAINER_NAME.into(), spec_c.name.clone());
        let mut annotations = HashMap::new();
        annotations.insert(spec::HASH_ANNOTATION.to_string(), spec::container_hash(spec_c));
        annotations.insert(spec::RESTART_ANNOTATION.to_string(), attempt.to_string());
        annotations.insert(spec::TERMINATION_PATH_ANNOTATION.to_string(), term_path);
        annotations.insert(spec::TERMINATION_FILE_ANNOTATION.to_string(), term_file.to_string_lossy().into_owned());
        annotations.insert(
            spec::TERMINATION_POLICY_ANNOTATION.to_string(),
            spec_c.termination_message_policy.clone().unwrap_or_else(|| "File".into()),
        );
        annotations.insert(
            spec::GRACE_ANNOTATION.to_string(),
            pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30).to_string(),
        );
        let config = c::ContainerConfig {
            metadata: Some(c::ContainerMetadata { name: spec_c.name.clone(), attempt }),
            image: Some(c::ImageSpec {
                image: image_ref.to_string(),
                user_specified_image: spec_c.image.clone().unwrap_or_default(),
                ..Default::default()
            }),
            command: spec_c.command.iter().flatten().map(|s| crate::env::expand(s, &vars)).collect(),
            args: spec_c.args.iter().flatten().map(|s| crate::env::expand(s, &vars)).collect(),
            working_dir: spec_c.working_dir.clone().unwrap_or_default(),
            envs: env.into_iter().map(|(key, value)| c::KeyValue { key, value }).collect(),
            mounts,
            devices: vec![],
            labels,
            annotations,
            log_path: format!("{}/{attempt}.log", spec_c.name),
            stdin: spec_c.stdin == Some(true),
            stdin_once: spec_c.stdin_once == Some(true),
            tty: spec_c.tty == Some(true),
            linux: Some(c::LinuxContainerConfig {
                resources: Some(spec::resources(&self.k, pod, spec_c)),
                security_context: Some(spec::security(pod, spec_c)),
            }),
        };
        // Keep one dead container per name (for `lastState` and logs), as upstream's GC.
        for old in observed.containers.iter().filter(|c| c.name == spec_c.name && c.exited()) {
            if observed.latest_any(&spec_c.name).map(|l| l.id.as_str()) != Some(old.id.as_str()) {
                runtime::remove_container(&self.k, &old.id).await;
            }
        }
        let mut rt = self.k.cri.runtime.clone();
        let id = rt
            .create_container(c::CreateContainerRequest {
                pod_sandbox_id: sandbox.id.clone(),
                config: Some(config),
                sandbox_config: Some(sandbox_config.clone()),
            })
            .await
            .map_err(|e| ("CreateContainerError".to_string(), e.message().to_string()))?
            .into_inner()
            .container_id;
        self.k.events.emit(pod, false, "Created", format!("Created container: {}", spec_c.name));
        rt.start_container(c::StartContainerRequest { container_id: id.clone() })
            .await
            .map_err(|e| ("RunContainerError".to_string(), e.message().to_string()))?;
        self.k.events.emit(pod, false, "Started", format!("Started container {}", spec_c.name));
        if let Some(h) = spec_c.lifecycle.as_ref().and_then(|l| l.post_start.clone()) {
            if let Err(msg) = self.run_handler(&pod_with_ip, &id, &h, 30).await {
                self.k.events.emit(pod, true, "FailedPostStartHook", format!("PostStartHook failed: {msg}"));
                let _ = runtime::stop_container(&self.k, &id, 2).await;
            }
        }
        Ok(())
    }

    /// Keeps one prober per (running container, probe kind); stopped containers lose theirs.
    fn update_probers(&mut self, pod: &Arc<Pod>, o: &Observed) {
        let Some(sb) = o.current() else {
            self.probers.clear();
            return;
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let mut want: Vec<(String, Kind)> = Vec::new();
        for cs in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            let Some(ctr) = o.latest(&sb.id, &cs.name).filter(|c| c.running()) else { continue };
            let ports: Vec<(String, i32)> =
                cs.ports.iter().flatten().filter_map(|p| Some((p.name.clone()?, p.container_port))).collect();
            for (kind, probe) in [
                (Kind::Liveness, &cs.liveness_probe),
                (Kind::Readiness, &cs.readiness_probe),
                (Kind::Startup, &cs.startup_probe),
            ] {
                let Some(p) = probe else { continue };
                let key = (ctr.id.clone(), kind);
                want.push(key.clone());
                if !self.probers.contains_key(&key) {
                    let mut pod_with_ip = (**pod).clone();
                    if let Some(st) = pod_with_ip.status.as_mut() {
                        st.pod_ip = sb.ip.clone();
                    }
                    let target = probes::Target {
                        pod: Arc::new(pod_with_ip),
                        container_id: ctr.id.clone(),
                        container: cs.name.clone(),
                        ports: ports.clone(),
                    };
                    let w = probes::spawn(self.k.clone(), target, kind, p.clone(), self.results.clone());
                    self.probers.insert(key, w);
                }
            }
        }
        self.probers.retain(|k, _| want.contains(k));
    }

    /// Stops every container (preStop hooks first, within `grace`) and every sandbox.
    async fn stop_everything(&mut self, pod: &Pod, o: &Observed, grace: i64) {
        let spec = pod.spec.clone().unwrap_or_default();
        let running: Vec<Ctr> = o.containers.iter().filter(|c| c.running()).cloned().collect();
        let mut tasks = Vec::new();
        for ctr in running {
            let cs = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .find(|c| c.name == ctr.name)
                .cloned();
            let remaining = match &cs {
                Some(cs) if grace > 0 => {
                    self.k.events.emit(pod, false, "Killing", format!("Stopping container {}", cs.name));
                    self.run_pre_stop(pod, cs, &ctr, grace).await
                }
                _ => grace,
            };
            let k = self.k.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = runtime::stop_container(&k, &ctr.id, remaining).await {
                    tracing::warn!(container = %ctr.id, error = %e.message(), "StopContainer failed");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        for s in o.sandboxes.iter().filter(|s| s.ready) {
            if let Err(e) = runtime::stop_sandbox(&self.k, &s.id).await {
                tracing::warn!(sandbox = %s.id, error = %e.message(), "StopPodSandbox failed");
            }
        }
        self.probers.clear();
    }

    /// Graceful deletion: containers get the grace period (preStop first), then the pod object
    /// is deleted with grace 0.
    async fn terminate_and_delete(&mut self, pod: &Arc<Pod>) -> Duration {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or(pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30);
        let observed = runtime::observe(&self.k, &self.uid).await.unwrap_or_default();
        self.stop_everything(pod, &observed, grace).await;
        let observed = runtime::observe(&self.k, &self.uid).await.unwrap_or_default();
        if observed.containers.iter().any(|c| c.running()) {
            return Duration::from_secs(1);
        }
        self.post_status(pod, &observed, true).await;
        let api: Api<Pod> = Api::namespaced(self.k.client.clone(), pod.metadata.namespace.as_deref().unwrap_or(""));
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        match api.delete(pod.metadata.name.as_deref().unwrap_or(""), &dp).await {
            Ok(_) => {
                self.deleted_in_api = true;
                Duration::from_secs(3600)
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                self.deleted_in_api = true;
                Duration::from_secs(3600)
            }
            Err(e) => {
                tracing::warn!(pod = %pod_ref(pod), error = %e, "deleting the pod");
                Duration::from_secs(2)
            }
        }
    }

    /// A rejected pod's status, as upstream's rejectPod writes it: Failed, the reason, and
    /// `Pod was rejected: <message>`; the event carries the same reason.
    async fn post_rejection(&mut self, pod: &Pod, r: &crate::admission::Rejection) -> Duration {
        if self.last_status.is_none() {
            self.k.events.emit(pod, true, &r.reason, r.message.clone());
        }
        let start = pod.status.as_ref().and_then(|s| s.start_time.clone()).unwrap_or_else(component_base::time_now);
        let value = serde_json::json!({
            "phase": "Failed",
            "reason": r.reason,
            "message": format!("Pod was rejected: {}", r.message),
            "qosClass": spec::qos(pod).as_str(),
            "startTime": start,
        });
        if self.patch_status(pod, value).await {
            Duration::from_secs(3600)
        } else {
            Duration::from_secs(2)
        }
    }

    /// Builds the pod's status and patches it when it changed.
    async fn post_status(&mut self, pod: &Pod, o: &Observed, terminating: bool) {
        let status = self.build_status(pod, o, terminating);
        let mut value = serde_json::to_value(&status).unwrap_or_default();
        // Conditions merge by type: a reason or message that no longer applies is removed explicitly.
        for c in value["conditions"].as_array_mut().into_iter().flatten() {
            for f in ["reason", "message"] {
                if c.get(f).is_none() {
                    c[f] = serde_json::Value::Null;
                }
            }
        }
        if self.last_status.as_ref() != Some(&value) {
            self.patch_status(pod, value).await;
        }
    }

    /// Patches the pod's status with `value` (a strategic merge patch), remembered as the last one
    /// written once it lands; whether it did.
    async fn patch_status(&mut self, pod: &Pod, value: serde_json::Value) -> bool {
        let api: Api<Pod> = Api::namespaced(self.k.client.clone(), pod.metadata.namespace.as_deref().unwrap_or(""));
        // The uid makes the patch fail rather than land on a newer pod of the same name; a static
        // pod's status goes to its mirror pod, whose uid is the API's own.
        let patch = if crate::static_pods::is_static(pod) {
            serde_json::json!({ "status": value })
        } else {
            serde_json::json!({ "metadata": { "uid": pod.metadata.uid }, "status": value })
        };
        let name = pod.metadata.name.as_deref().unwrap_or("");
        match api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => {
                self.last_status = Some(value);
                true
            }
            Err(e) => {
                tracing::warn!(pod = %pod_ref(pod), error = %e, "failed to update status for pod");
                false
            }
        }
    }

    fn container_status(
        &self,
        pod: &Pod,
        cs: &Container,
        o: &Observed,
        sandbox_id: Option<&str>,
        init: bool,
    ) -> ContainerStatus {
        let runtime_name = self.k.runtime_name();
        let latest = sandbox_id.and_then(|sid| o.latest(sid, &cs.name)).or_else(|| o.latest_any(&cs.name));
        let mut st = ContainerStatus {
            name: cs.name.clone(),
            image: cs.image.clone().unwrap_or_default(),
            image_id: String::new(),
            ready: false,
            restart_count: 0,
            started: Some(false),
            ..Default::default()
        };
        let waiting = |reason: &str, message: Option<String>| ContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message }),
            ..Default::default()
        };
        let Some(ctr) = latest else {
            st.state = Some(match self.waiting.get(&cs.name) {
                Some((r, m)) => waiting(r, Some(m.clone())),
                None => waiting(if init { "PodInitializing" } else { "ContainerCreating" }, None),
            });
            if !init
                && pod.spec.as_ref().and_then(|s| s.init_containers.as_ref()).is_some_and(|i| !i.is_empty())
                && !self.waiting.contains_key(&cs.name)
            {
                st.state = Some(waiting("PodInitializing", None));
            }
            return st;
        };
        st.container_id = Some(format!("{runtime_name}://{}", ctr.id));
        st.image_id = ctr.image_ref.clone();
        st.restart_count = ctr.attempt as i32;
        let terminated = |c: &Ctr| ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: c.exit_code,
                reason: Some(if !c.reason.is_empty() {
                    c.reason.clone()
                } else if c.exit_code == 0 {
                    "Completed".into()
                } else {
                    "Error".into()
                }),
                message: termination_message(c),
                started_at: time_of(c.started_at),
                finished_at: time_of(c.finished_at),
                container_id: Some(format!("{runtime_name}://{}", c.id)),
                signal: None,
            }),
            ..Default::default()
        };
        if ctr.running() {
            let started = self.started(cs, ctr);
            st.started = Some(started);
            st.state = Some(ContainerState {
                running: Some(ContainerStateRunning { started_at: time_of(ctr.started_at) }),
                ..Default::default()
            });
            st.ready =
                started && (cs.readiness_probe.is_none() || self.results.get(&ctr.id, Kind::Readiness) == Some(true));
            st.last_state = o.previous(&cs.name, ctr).map(terminated);
        } else if ctr.exited() {
            match self.waiting.get(&cs.name) {
                Some((r, m)) => {
                    st.state = Some(waiting(r, Some(m.clone())));
                    st.last_state = Some(terminated(ctr));
                }
                None => {
                    st.state = Some(terminated(ctr));
                    st.last_state = o.previous(&cs.name, ctr).map(terminated);
                }
            }
        } else {
            st.state = Some(waiting("ContainerCreating", None));
        }
        if st.last_state.is_none() {
            st.last_state = Some(ContainerState::default());
        }
        st
    }

    fn build_status(&self, pod: &Pod, o: &Observed, terminating: bool) -> PodStatus {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        let sandbox = o.current();
        let sid = sandbox.map(|s| s.id.clone());
        // A waiting reason stays only while the container is not running.
        let init_statuses: Vec<ContainerStatus> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| self.container_status(pod, c, o, sid.as_deref(), true))
            .collect();
        let statuses: Vec<ContainerStatus> =
            spec.containers.iter().map(|c| self.container_status(pod, c, o, sid.as_deref(), false)).collect();

        // Initialization.
        let mut init_pending: Vec<String> = Vec::new();
        let mut init_failed = false;
        for (ic, s) in spec.init_containers.iter().flatten().zip(&init_statuses) {
            let sidecar = ic.restart_policy.as_deref() == Some("Always");
            let state = s.state.clone().unwrap_or_default();
            let done = if sidecar {
                s.started == Some(true)
            } else {
                state.terminated.as_ref().is_some_and(|t| t.exit_code == 0)
            };
            if !done {
                init_pending.push(ic.name.clone());
                if !sidecar && policy == "Never" && state.terminated.as_ref().is_some_and(|t| t.exit_code != 0) {
                    init_failed = true;
                }
            }
        }
        // Phase, as upstream's getPhase.
        let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
        for s in &statuses {
            let state = s.state.clone().unwrap_or_default();
            if state.running.is_some() {
                running += 1;
            } else if let Some(t) = &state.terminated {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            } else if s.last_state.as_ref().is_some_and(|l| l.terminated.is_some()) {
                stopped += 1;
            } else {
                waiting += 1;
            }
        }
        let mut phase = if init_failed {
            "Failed"
        } else if !init_pending.is_empty() || waiting > 0 {
            "Pending"
        } else if running > 0 {
            "Running"
        } else if stopped > 0 {
            if policy == "Always" && !terminating {
                "Running"
            } else if stopped == succeeded {
                "Succeeded"
            } else if policy == "Never" || terminating {
                "Failed"
            } else {
                "Running"
            }
        } else {
            "Pending"
        };
        let api_phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        if api_phase == "Succeeded" || api_phase == "Failed" {
            phase = if api_phase == "Succeeded" { "Succeeded" } else { "Failed" };
        }
        if self.evicted.is_some() {
            phase = "Failed";
        }
        let now = component_base::time_now();
        let old_conds = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let cond = |type_: &str, ok: bool, reason: Option<&str>, message: Option<String>| -> PodCondition {
            let status = if ok { "True" } else { "False" };
            let prev = old_conds.iter().find(|c| c.type_ == type_ && c.status == status);
            PodCondition {
                type_: type_.into(),
                status: status.into(),
                reason: reason.map(String::from),
                message,
                last_probe_time: None,
                last_transition_time: prev.and_then(|p| p.last_transition_time.clone()).or(Some(now.clone())),
                observed_generation: None,
            }
        };
        let unready: Vec<String> = statuses.iter().filter(|s| !s.ready).map(|s| s.name.clone()).collect();
        let sandbox_ready = sandbox.is_some_and(|s| s.ready);
        let terminal = phase == "Succeeded" || phase == "Failed";
        // Only the conditions the kubelet owns: the patch merges them by type, so the scheduler's
        // PodScheduled and readiness gates set by others stay as they are.
        let mut conditions: Vec<PodCondition> = vec![cond("PodReadyToStartContainers", sandbox_ready, None, None)];
        conditions.push(if init_pending.is_empty() {
            cond("Initialized", true, None, None)
        } else {
            cond(
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(format!("containers with incomplete status: [{}]", init_pending.join(" "))),
            )
        });
        let (ready, reason, message) = if terminal && phase == "Succeeded" {
            (false, Some("PodCompleted"), None)
        } else if terminal {
            (false, Some("PodFailed"), None)
        } else if !init_pending.is_empty() {
            (
                false,
                Some("ContainersNotReady"),
                Some(format!(
                    "containers with unready status: [{}]",
                    spec.containers.iter().map(|c| c.name.clone()).collect::<Vec<_>>().join(" ")
                )),
            )
        } else if unready.is_empty() {
            (true, None, None)
        } else {
            (
                false,
                Some("ContainersNotReady"),
                Some(format!("containers with unready status: [{}]", unready.join(" "))),
            )
        };
        conditions.push(cond("ContainersReady", ready, reason, message.clone()));
        conditions.push(cond("Ready", ready, reason, message));
        if let Some(m) = &self.evicted {
            conditions.push(cond("DisruptionTarget", true, Some("TerminationByKubelet"), Some(m.clone())));
        }
        let host_net = spec.host_network == Some(true);
        let pod_ip = if host_net { self.k.node_ips.first().cloned() } else { sandbox.and_then(|s| s.ip.clone()) }
            .or_else(|| pod.status.as_ref().and_then(|s| s.pod_ip.clone()));
        PodStatus {
            phase: Some(phase.into()),
            conditions: Some(conditions),
            host_ip: self.k.node_ips.first().cloned(),
            host_ips: Some(self.k.node_ips.iter().map(|ip| HostIP { ip: ip.clone() }).collect()),
            pod_ip: pod_ip.clone(),
            pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
            start_time: self.start_time.clone(),
            init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
            container_statuses: Some(statuses),
            qos_class: Some(spec::qos(pod).as_str().into()),
            reason: self.evicted.as_ref().map(|_| "Evicted".to_string()),
            message: self.evicted.clone(),
            ..Default::default()
        }
    }
}

/// The termination message: the file the container wrote (at most 4096 bytes), or with
/// `FallbackToLogsOnError` and a failure, the log's last 80 lines (at most 2048 bytes).
fn termination_message(c: &Ctr) -> Option<String> {
    let file = c.annotations.get(spec::TERMINATION_FILE_ANNOTATION)?;
    let mut msg = std::fs::read(file).unwrap_or_default();
    msg.truncate(4096);
    if msg.is_empty()
        && c.exit_code != 0
        && c.annotations.get(spec::TERMINATION_POLICY_ANNOTATION).map(String::as_str) == Some("FallbackToLogsOnError")
    {
        let log = std::fs::read_to_string(&c.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(80)..];
        // CRI log lines are `<time> <stream> <tag> <message>`.
        let mut text: String =
            tail.iter().map(|l| l.splitn(4, ' ').nth(3).unwrap_or("")).collect::<Vec<_>>().join("\n");
        if text.len() > 2048 {
            text = text[text.len() - 2048..].to_string();
        }
        msg = text.into_bytes();
    }
    (!msg.is_empty()).then(|| String::from_utf8_lossy(&msg).into_owned())
}
