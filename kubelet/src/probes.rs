//! Liveness, readiness and startup probes (exec through the runtime, httpGet, tcpSocket) with
//! upstream's timing: `initialDelaySeconds`, `periodSeconds` (10), `timeoutSeconds` (1),
//! `successThreshold` (1), `failureThreshold` (3). Liveness and readiness wait for the startup
//! probe to succeed. Results are kept per container ID; a change wakes the pod's worker.

use crate::kubelet::Kubelet;
use k8s_openapi::api::core::v1::{Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

/// The results of one pod's probes, by (container ID, kind); `None` until the first result.
#[derive(Default)]
pub struct Results {
    map: Mutex<HashMap<(String, Kind), bool>>,
    pub changed: Notify,
}

impl Results {
    pub fn get(&self, id: &str, kind: Kind) -> Option<bool> {
        self.map.lock().unwrap().get(&(id.to_string(), kind)).copied()
    }

    fn set(&self, id: &str, kind: Kind, v: bool) {
        let prev = self.map.lock().unwrap().insert((id.to_string(), kind), v);
        if prev != Some(v) {
            self.changed.notify_one();
        }
    }

    pub fn forget(&self, id: &str) {
        self.map.lock().unwrap().retain(|(cid, _), _| cid != id);
    }
}

pub enum Outcome {
    Success,
    Failure(String),
}

/// Runs one probe once.
pub async fn run_once(k: &Kubelet, pod: &Pod, container_id: &str, p: &Probe, ports: &[(String, i32)]) -> Outcome {
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_else(|| "127.0.0.1".into());
    let port_of = |port: &IntOrString| -> Option<i32> {
        match port {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(name) => {
                ports.iter().find(|(n, _)| n == name).map(|(_, p)| *p).or_else(|| name.parse().ok())
            }
        }
    };
    if let Some(e) = &p.exec {
        let mut rt = k.cri.runtime.clone();
        let req = cri::v1::ExecSyncRequest {
            container_id: container_id.into(),
            cmd: e.command.clone().unwrap_or_default(),
            timeout: timeout.as_secs() as i64,
        };
        return match tokio::time::timeout(timeout + Duration::from_secs(2), rt.exec_sync(req)).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                if r.exit_code == 0 {
                    Outcome::Success
                } else {
                    let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
                    out.push_str(&String::from_utf8_lossy(&r.stderr));
                    Outcome::Failure(out)
                }
            }
            Ok(Err(e)) => Outcome::Failure(e.message().to_string()),
            Err(_) => Outcome::Failure(format!("command timed out after {}s", timeout.as_secs())),
        };
    }
    if let Some(t) = &p.tcp_socket {
        let host = t.host.clone().unwrap_or(pod_ip);
        let Some(port) = port_of(&t.port) else { return Outcome::Failure(format!("invalid port {:?}", t.port)) };
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port as u16))).await {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(e)) => Outcome::Failure(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Outcome::Failure(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    if let Some(h) = &p.http_get {
        let host = h.host.clone().filter(|h| !h.is_empty()).unwrap_or(pod_ip);
        let Some(port) = port_of(&h.port) else { return Outcome::Failure(format!("invalid port {:?}", h.port)) };
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let url = format!("http://{host}:{port}{path}");
        return match tokio::time::timeout(
            timeout,
            http_get(&host, port, &path, h.http_headers.as_deref().unwrap_or(&[])),
        )
        .await
        {
            Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
            Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
            Ok(Err(e)) => Outcome::Failure(format!("Get \"{url}\": {e}")),
            Err(_) => Outcome::Failure(format!(
                "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
        };
    }
    Outcome::Failure("probe has no handler this kubelet supports".into())
}

/// One HTTP/1.1 GET; the status code.
pub async fn http_get(
    host: &str,
    port: i32,
    path: &str,
    headers: &[k8s_openapi::api::core::v1::HTTPHeader],
) -> Result<u16, String> {
    let stream = tokio::net::TcpStream::connect((host, port as u16))
        .await
        .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::get(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::USER_AGENT, "kube-probe/1.35")
        .header(http::header::ACCEPT, "*/*");
    for h in headers {
        req = req.header(h.name.as_str(), h.value.as_str());
    }
    let req = req.body(http_body_util::Empty::<bytes::Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(resp.status().as_u16())
}

/// A running prober for one container's probe; dropped (aborted) when the container stops.
pub struct Worker(tokio::task::JoinHandle<()>);

impl Drop for Worker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a prober probes: one running container of a pod (with the pod's IP), and its named ports.
pub struct Target {
    pub pod: Arc<Pod>,
    pub container_id: String,
    pub container: String,
    pub ports: Vec<(String, i32)>,
}

pub fn spawn(k: Arc<Kubelet>, t: Target, kind: Kind, p: Probe, results: Arc<Results>) -> Worker {
    let Target { pod, container_id, container, ports } = t;
    Worker(tokio::spawn(async move {
        let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
        let success_threshold = p.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = p.failure_threshold.unwrap_or(3).max(1);
        tokio::time::sleep(Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64)).await;
        let (mut successes, mut failures) = (0, 0);
        loop {
            let gated = kind != Kind::Startup
                && pod_has_startup(&pod, &container)
                && results.get(&container_id, Kind::Startup) != Some(true);
            if !gated {
                if kind == Kind::Startup && results.get(&container_id, Kind::Startup) == Some(true) {
                    return; // a startup probe stops once it succeeded
                }
                match run_once(&k, &pod, &container_id, &p, &ports).await {
                    Outcome::Success => {
                        failures = 0;
                        successes += 1;
                        if successes >= success_threshold {
                            results.set(&container_id, kind, true);
                        }
                    }
                    Outcome::Failure(msg) => {
                        successes = 0;
                        failures += 1;
                        let what = match kind {
                            Kind::Liveness => "Liveness",
                            Kind::Readiness => "Readiness",
                            Kind::Startup => "Startup",
                        };
                        k.events.emit(pod.as_ref(), true, "Unhealthy", format!("{what} probe failed: {}", msg.trim()));
                        if failures >= failure_threshold {
                            results.set(&container_id, kind, false);
                        }
                    }
                }
            }
            tokio::time::sleep(period).await;
        }
    }))
}

fn pod_has_startup(pod: &Pod, container: &str) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| c.name == container && c.startup_probe.is_some())
    })
}
