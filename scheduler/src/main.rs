//! kube-scheduler: binds pending pods to nodes with upstream's default filters and scores, talking
//! only to the API server, behind the `kube-system/kube-scheduler` Lease.

mod cache;
mod cycle;
mod interpod;
mod plugins;
mod preemption;
mod profile;
mod queue;
mod resources;
mod scheduler;
mod spread;
mod volumes;

use clap::Parser;
use component_base::leaderelection;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Clone, Debug)]
#[command(name = "kube-scheduler", version = "v1.35.0", about = "The Kubernetes scheduler")]
struct Flags {
    #[arg(long)]
    kubeconfig: Option<String>,
    #[arg(long)]
    master: Option<String>,
    /// A `KubeSchedulerConfiguration` (`kubescheduler.config.k8s.io/v1`).
    #[arg(long)]
    config: Option<String>,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    leader_elect: bool,
    #[arg(long, default_value = "15s")]
    leader_elect_lease_duration: String,
    #[arg(long, default_value = "10s")]
    leader_elect_renew_deadline: String,
    #[arg(long, default_value = "2s")]
    leader_elect_retry_period: String,
    #[arg(long, default_value = "kube-scheduler")]
    leader_elect_resource_name: String,
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    #[arg(long, default_value_t = 10259)]
    secure_port: u16,
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
    #[arg(long)]
    tls_cert_file: Option<String>,
    #[arg(long)]
    tls_private_key_file: Option<String>,
    #[arg(long)]
    cert_dir: Option<String>,
    #[arg(long)]
    authentication_kubeconfig: Option<String>,
    #[arg(long)]
    authorization_kubeconfig: Option<String>,
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    v: u8,
}

/// The parts of `KubeSchedulerConfiguration` this scheduler acts on; unknown plugins are an error.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Config {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    profiles: Vec<ProfileConfig>,
    percentage_of_nodes_to_score: Option<u32>,
    pod_initial_backoff_seconds: Option<u64>,
    pod_max_backoff_seconds: Option<u64>,
    leader_election: Option<LeaderElectionConfig>,
    client_connection: Option<ClientConnection>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ClientConnection {
    kubeconfig: Option<String>,
    qps: Option<f64>,
    burst: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LeaderElectionConfig {
    leader_elect: Option<bool>,
    resource_name: Option<String>,
    resource_namespace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ProfileConfig {
    scheduler_name: Option<String>,
    plugins: Option<serde_json::Value>,
    #[serde(default)]
    plugin_config: Vec<PluginConfig>,
}

#[derive(Deserialize)]
struct PluginConfig {
    name: String,
    args: Option<serde_json::Value>,
}

fn load_config(path: &str) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading --config {path}: {e}"))?;
    let cfg: Config = serde_yaml_ng::from_str(&text).map_err(|e| format!("--config {path}: {e}"))?;
    if cfg.api_version.as_deref() != Some("kubescheduler.config.k8s.io/v1")
        || cfg.kind.as_deref() != Some("KubeSchedulerConfiguration")
    {
        return Err(format!("--config {path}: not a kubescheduler.config.k8s.io/v1 KubeSchedulerConfiguration"));
    }
    if cfg.pod_initial_backoff_seconds == Some(0) {
        return Err("podInitialBackoffSeconds: Invalid value: 0: must be greater than 0".into());
    }
    if let (Some(i), Some(m)) = (cfg.pod_initial_backoff_seconds, cfg.pod_max_backoff_seconds) {
        if m < i {
            return Err(format!(
                "podMaxBackoffSeconds: Invalid value: {m}: must be greater than or equal to PodInitialBackoffSeconds"
            ));
        }
    }
    if cfg.percentage_of_nodes_to_score.is_some_and(|p| p > 100) {
        return Err("percentageOfNodesToScore: Invalid value: must be in the range [0, 100]".into());
    }
    build_profiles(&cfg)?;
    let mut names = std::collections::HashSet::new();
    for p in &cfg.profiles {
        if !names.insert(p.scheduler_name.clone().unwrap_or_else(|| "default-scheduler".into())) {
            return Err("profiles: Duplicate value: schedulerName".into());
        }
    }
    Ok(cfg)
}

/// The configured profiles, or the default profile alone.
fn build_profiles(cfg: &Config) -> Result<Vec<profile::Profile>, String> {
    let mut out = Vec::new();
    for (i, p) in cfg.profiles.iter().enumerate() {
        let plugin_config: Vec<(String, Option<serde_json::Value>)> =
            p.plugin_config.iter().map(|pc| (pc.name.clone(), pc.args.clone())).collect();
        out.push(profile::Profile::build(
            p.scheduler_name.as_deref().unwrap_or("default-scheduler"),
            p.plugins.as_ref(),
            &plugin_config,
            &format!("profiles[{i}]"),
        )?);
    }
    if out.is_empty() {
        out.push(profile::Profile::default());
    }
    Ok(out)
}

fn duration(s: &str) -> Result<Duration, String> {
    let secs: f64 = if let Some(ms) = s.strip_suffix("ms") {
        ms.parse::<f64>().map_err(|e| e.to_string())? / 1000.0
    } else if let Some(sec) = s.strip_suffix('s') {
        sec.parse::<f64>().map_err(|e| e.to_string())?
    } else if let Some(m) = s.strip_suffix('m') {
        m.parse::<f64>().map_err(|e| e.to_string())? * 60.0
    } else {
        return Err(format!("invalid duration {s:?}"));
    };
    Ok(Duration::from_secs_f64(secs))
}

#[tokio::main]
async fn main() {
    let flags = Flags::parse();
    component_base::logging::init(flags.v);
    if let Err(e) = run(flags).await {
        eprintln!("kube-scheduler: {e}");
        std::process::exit(1);
    }
}

async fn run(flags: Flags) -> Result<(), String> {
    let cfg = match &flags.config {
        Some(p) => load_config(p)?,
        None => Config::default(),
    };
    let profiles = build_profiles(&cfg)?;
    let kubeconfig =
        flags.kubeconfig.clone().or_else(|| cfg.client_connection.as_ref().and_then(|c| c.kubeconfig.clone()));
    // upstream's scheduler defaults: clientConnection.qps 50, burst 100.
    let qps = cfg.client_connection.as_ref().and_then(|c| c.qps).unwrap_or(50.0);
    let burst = cfg.client_connection.as_ref().and_then(|c| c.burst).unwrap_or(100);
    let client = component_base::client::from_flags(
        kubeconfig.as_deref(),
        flags.master.as_deref(),
        "kube-scheduler",
        qps,
        burst,
    )
    .await
    .map_err(|e| e.to_string())?;
    let le = cfg.leader_election.unwrap_or_default();
    let mut ecfg = leaderelection::Config::new(
        le.resource_namespace.as_deref().unwrap_or(&flags.leader_elect_resource_namespace),
        le.resource_name.as_deref().unwrap_or(&flags.leader_elect_resource_name),
    );
    ecfg.lease_duration = duration(&flags.leader_elect_lease_duration)?;
    ecfg.renew_deadline = duration(&flags.leader_elect_renew_deadline)?;
    ecfg.retry_period = duration(&flags.leader_elect_retry_period)?;
    let identity = ecfg.identity.clone();
    let elect = le.leader_elect.unwrap_or(flags.leader_elect);
    let elector = elect.then(|| leaderelection::Elector::new(client.clone(), ecfg));
    if flags.secure_port != 0 {
        let mut checks = vec![component_base::serving::ping()];
        if let Some(s) = elector.as_ref().map(|e| e.status()) {
            checks.push((
                "leaderElection".to_string(),
                Arc::new(move || if s.healthy() { Ok(()) } else { Err("lease not renewed".into()) }),
            ));
        }
        component_base::serving::serve_with(
            component_base::serving::Options {
                bind: std::net::SocketAddr::new(flags.bind_address, flags.secure_port),
                cert_file: flags.tls_cert_file.clone(),
                key_file: flags.tls_private_key_file.clone(),
                cert_dir: flags.cert_dir.clone(),
                component: "kube-scheduler".into(),
            },
            checks,
            vec![("/metrics/resources".to_string(), Arc::new(resources::render))],
        )
        .await
        .map_err(|e| e.to_string())?;
    }
    let opts = scheduler::Options {
        profiles,
        percentage_of_nodes_to_score: cfg.percentage_of_nodes_to_score,
        initial_backoff: Duration::from_secs(cfg.pod_initial_backoff_seconds.unwrap_or(1)),
        max_backoff: Duration::from_secs(cfg.pod_max_backoff_seconds.unwrap_or(10)),
    };
    let shutdown = component_base::shutdown_signal();
    match elector {
        None => {
            let _s = scheduler::Scheduler::start(client, opts, identity);
            shutdown.await;
            Ok(())
        }
        Some(elector) => {
            let mut leading = elector.subscribe();
            let mut opts = Some(opts);
            tokio::spawn(async move {
                while leading.changed().await.is_ok() {
                    if *leading.borrow() {
                        if let Some(o) = opts.take() {
                            let s = scheduler::Scheduler::start(client.clone(), o, identity.clone());
                            std::mem::forget(s);
                        }
                        return;
                    }
                }
            });
            elector.run(shutdown).await.map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_with_unknown_plugins_or_bad_weights_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let write = |body: &str| {
            let p = dir.path().join("c.yaml");
            std::fs::write(&p, body).unwrap();
            p.display().to_string()
        };
        let head = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n";
        let bad = write(&format!(
            "{head}profiles:\n- schedulerName: x\n  plugins:\n    score:\n      enabled: [{{name: Nope}}]\n"
        ));
        assert!(load_config(&bad).err().unwrap().contains("plugin \"Nope\" does not exist"));
        let weight = write(&format!(
            "{head}profiles:\n- plugins:\n    score:\n      enabled: [{{name: NodeAffinity, weight: 1000}}]\n"
        ));
        assert!(load_config(&weight).err().unwrap().contains("must be in the range [0, 100]"));
        let ok = write(&format!("{head}percentageOfNodesToScore: 50\nprofiles:\n- schedulerName: default-scheduler\n- schedulerName: packer\n  pluginConfig:\n  - name: NodeResourcesFit\n    args: {{scoringStrategy: {{type: MostAllocated}}}}\n"));
        let cfg = load_config(&ok).unwrap();
        assert_eq!(cfg.profiles.len(), 2);
    }
}
