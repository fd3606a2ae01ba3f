//! kube-controller-manager: upstream's built-in controllers in one process that talks only to the API
//! server. With `--leader-elect` (the default) only the holder of the `kube-system/kube-controller-manager`
//! Lease runs controllers; a leader that cannot renew exits, as upstream's does, so a standby takes over.

mod context;
mod controllers;
mod credentials;
mod flags;

use clap::Parser;
use component_base::leaderelection;
use std::sync::Arc;

#[tokio::main]
async fn main() {
    let flags = flags::Flags::parse();
    component_base::logging::init(flags.v);
    if let Err(e) = run(flags).await {
        tracing::error!("{e}");
        eprintln!("kube-controller-manager: {e}");
        std::process::exit(1);
    }
}

async fn run(flags: flags::Flags) -> Result<(), String> {
    flags.warn_unimplemented();
    let enabled = controllers::enabled(&flags.controllers).map_err(|e| e.to_string())?;
    let cfg = component_base::client::config_from_flags(
        flags.kubeconfig.as_deref(),
        flags.master.as_deref(),
        "kube-controller-manager",
    )
    .await
    .map_err(|e| e.to_string())?;
    let sa_config = flags.use_service_account_credentials.then(|| cfg.clone());
    let client = component_base::client::limited_client(cfg, flags.kube_api_qps, flags.kube_api_burst)
        .map_err(|e| e.to_string())?;

    let mut election_cfg =
        leaderelection::Config::new(&flags.leader_elect_resource_namespace, &flags.leader_elect_resource_name);
    election_cfg.lease_duration = flags.leader_elect_lease_duration.0;
    election_cfg.renew_deadline = flags.leader_elect_renew_deadline.0;
    election_cfg.retry_period = flags.leader_elect_retry_period.0;
    let identity = election_cfg.identity.clone();
    let elector = flags.leader_elect.then(|| leaderelection::Elector::new(client.clone(), election_cfg));
    let status = elector.as_ref().map(|e| e.status());

    if flags.secure_port != 0 {
        let mut checks = vec![component_base::serving::ping()];
        if let Some(s) = status.clone() {
            checks.push((
                "leaderElection".to_string(),
                Arc::new(
                    move || if s.healthy() { Ok(()) } else { Err("the leader lease has not been renewed".into()) },
                ),
            ));
        }
        let bind = std::net::SocketAddr::new(flags.bind_address, flags.secure_port);
        component_base::serving::serve(
            component_base::serving::Options {
                bind,
                cert_file: flags.tls_cert_file.clone(),
                key_file: flags.tls_private_key_file.clone(),
                cert_dir: flags.cert_dir.clone(),
                component: "kube-controller-manager".into(),
            },
            checks,
        )
        .await
        .map_err(|e| e.to_string())?;
    }

    let shutdown = component_base::shutdown_signal();
    match elector {
        None => {
            let ctx = context::Context::new(client, &flags, identity, sa_config);
            controllers::start(&ctx, &enabled).await?;
            shutdown.await;
            Ok(())
        }
        Some(elector) => {
            let mut leading = elector.subscribe();
            let flags2 = flags.clone();
            let client2 = client.clone();
            tokio::spawn(async move {
                while leading.changed().await.is_ok() {
                    if *leading.borrow() {
                        let ctx = context::Context::new(client2.clone(), &flags2, identity.clone(), sa_config);
                        if let Err(e) = controllers::start(&ctx, &enabled).await {
                            tracing::error!("{e}");
                            eprintln!("kube-controller-manager: {e}");
                            std::process::exit(1);
                        }
                        return;
                    }
                }
            });
            match elector.run(shutdown).await {
                Ok(()) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        }
    }
}
