//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` with the
//! `leases` lock: the holder renews every retry period; a candidate takes the lease when its holder
//! has not renewed it for the lease duration (as observed on the candidate's own clock, so clock skew
//! between machines does not matter), bumping `leaseTransitions`. Every write is a compare-and-swap
//! on the Lease's resourceVersion. A leader that cannot renew within the renew deadline has lost: the
//! caller stops its work (upstream components exit). On a clean shutdown the leader releases the lease
//! (`holderIdentity` emptied, duration 1s) so a standby takes over at once.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::Client;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// `--leader-elect-*`.
#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    pub name: String,
    /// `<hostname>_<uuid>`, as upstream components build it.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Config {
    pub fn new(namespace: &str, name: &str) -> Config {
        Config {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

pub fn identity() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".into()
    };
    format!("{host}_{}", uuid::Uuid::new_v4())
}

fn master_status() -> &'static prometheus::IntGaugeVec {
    static M: OnceLock<prometheus::IntGaugeVec> = OnceLock::new();
    M.get_or_init(|| {
        let m = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "leader_election_master_status",
                "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
            ),
            &["name"],
        )
        .expect("metric");
        let _ = crate::metrics::registry().register(Box::new(m.clone()));
        m
    })
}

/// What the elector tells the rest of the process, and what `/healthz` asks it.
pub struct Status {
    leading: AtomicBool,
    /// Milliseconds since `started` of the last successful renewal while leading.
    last_renew_ms: AtomicI64,
    started: Instant,
    lease_duration: Duration,
}

impl Status {
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// Upstream's leader-election health check: failing when this process leads but has not renewed
    /// for longer than the lease duration plus a 20s tolerance.
    pub fn healthy(&self) -> bool {
        if !self.is_leader() {
            return true;
        }
        let last = Duration::from_millis(self.last_renew_ms.load(Ordering::SeqCst).max(0) as u64);
        self.started.elapsed().saturating_sub(last) <= self.lease_duration + Duration::from_secs(20)
    }
}

/// A running election. `leading()` flips to true when this process acquires the lease; if it is lost,
/// `lost()` resolves.
pub struct Elector {
    cfg: Config,
    api: Api<Lease>,
    status: Arc<Status>,
    tx: watch::Sender<bool>,
    /// The record as last observed, with the local time it was observed at.
    observed: Option<(Lease, Instant)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("leaderelection lost: failed to renew lease {0} within the renew deadline")]
    Lost(String),
}

impl Elector {
    pub fn new(client: Client, cfg: Config) -> Elector {
        let api = Api::namespaced(client, &cfg.namespace);
        let (tx, _) = watch::channel(false);
        let status = Arc::new(Status {
            leading: AtomicBool::new(false),
            last_renew_ms: AtomicI64::new(0),
            started: Instant::now(),
            lease_duration: cfg.lease_duration,
        });
        master_status().with_label_values(&[&cfg.name]).set(0);
        Elector { cfg, api, status, tx, observed: None }
    }

    pub fn status(&self) -> Arc<Status> {
        self.status.clone()
    }

    /// Subscribes to leadership changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    fn record(&self, holder: &str, transitions: i32, acquire: bool, prev: Option<&Lease>) -> Lease {
        let now = crate::micro_time_now();
        let prev_spec = prev.and_then(|l| l.spec.clone()).unwrap_or_default();
        Lease {
            metadata: ObjectMeta {
                name: Some(self.cfg.name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                resource_version: prev.and_then(|l| l.metadata.resource_version.clone()),
                ..prev.map(|l| l.metadata.clone()).unwrap_or_default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(self.cfg.lease_duration.as_secs() as i32),
                acquire_time: if acquire { Some(now.clone()) } else { prev_spec.acquire_time },
                renew_time: Some(now),
                lease_transitions: Some(transitions),
                ..prev_spec
            }),
        }
    }

    /// One attempt to acquire or renew; true when this process holds the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> bool {
        let current = match self.api.get_opt(&self.cfg.name).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(lease = %self.cfg.name, error = %e, "error retrieving resource lock");
                return false;
            }
        };
        let Some(current) = current else {
            let lease = self.record(&self.cfg.identity, 0, true, None);
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observed = Some((created, Instant::now()));
                    true
                }
                Err(e) => {
                    tracing::debug!(error = %e, "lease create lost a race");
                    false
                }
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        // Note when the record last changed, on our own clock.
        let changed = self.observed.as_ref().is_none_or(|(o, _)| o.spec != current.spec);
        if changed {
            self.observed = Some((current.clone(), Instant::now()));
        }
        let observed_at = self.observed.as_ref().map(|(_, t)| *t).unwrap_or_else(Instant::now);
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(0) as u64);
        let i_hold = holder == self.cfg.identity;
        if !holder.is_empty() && !i_hold && observed_at.elapsed() < duration {
            return false;
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + if i_hold { 0 } else { 1 };
        let lease = self.record(&self.cfg.identity, transitions, !i_hold, Some(&current));
        match self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await {
            Ok(updated) => {
                self.observed = Some((updated, Instant::now()));
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "lease update failed");
                false
            }
        }
    }

    fn set_leading(&self, leading: bool) {
        self.status.leading.store(leading, Ordering::SeqCst);
        master_status().with_label_values(&[&self.cfg.name]).set(leading as i64);
        self.tx.send_replace(leading);
    }

    /// Campaigns until elected, then renews until the lease is lost (an error) or `shutdown` resolves
    /// (the lease is released and `Ok` returned).
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ElectionError> {
        tokio::pin!(shutdown);
        tracing::info!(lease = %format!("{}/{}", self.cfg.namespace, self.cfg.name), identity = %self.cfg.identity, "attempting to acquire leader lease");
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                acquired = self.try_acquire_or_renew() => {
                    if acquired {
                        break;
                    }
                }
            }
            let jitter = self.cfg.retry_period.mul_f64(1.0 + rand::random::<f64>() * 1.2);
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(jitter) => {}
            }
        }
        tracing::info!(lease = %format!("{}/{}", self.cfg.namespace, self.cfg.name), "successfully acquired lease");
        self.status.last_renew_ms.store(self.status.started.elapsed().as_millis() as i64, Ordering::SeqCst);
        self.set_leading(true);
        let mut last_renew = Instant::now();
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    self.release().await;
                    self.set_leading(false);
                    return Ok(());
                }
                _ = tokio::time::sleep(self.cfg.retry_period) => {}
            }
            let attempt = tokio::time::timeout(self.cfg.renew_deadline, self.try_acquire_or_renew()).await;
            if attempt == Ok(true) {
                last_renew = Instant::now();
                self.status.last_renew_ms.store(self.status.started.elapsed().as_millis() as i64, Ordering::SeqCst);
            } else if last_renew.elapsed() >= self.cfg.renew_deadline {
                self.set_leading(false);
                return Err(ElectionError::Lost(format!("{}/{}", self.cfg.namespace, self.cfg.name)));
            }
        }
    }

    /// Gives the lease up so a standby need not wait for it to expire.
    async fn release(&mut self) {
        let Ok(Some(current)) = self.api.get_opt(&self.cfg.name).await else { return };
        if current.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(self.cfg.identity.as_str()) {
            return;
        }
        let mut lease =
            self.record("", current.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0), true, Some(&current));
        if let Some(s) = lease.spec.as_mut() {
            s.lease_duration_seconds = Some(1);
        }
        match self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!(lease = %self.cfg.name, "released leader lease"),
            Err(e) => tracing::warn!(lease = %self.cfg.name, error = %e, "failed to release lease"),
        }
    }
}
