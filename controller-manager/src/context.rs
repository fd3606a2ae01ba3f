//! What the controllers share: the client, one informer per resource (started on first use, so only
//! the resources some enabled controller needs are watched), event recorders and the options.

use crate::flags::Flags;
pub use component_base::events::EventRecorder;
use component_base::informer::Informer;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController,
    ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::watcher;
use kube::{Api, Client};
use std::sync::{Arc, OnceLock};

pub struct Context {
    /// This controller's client: the manager's own, or with `--use-service-account-credentials` one
    /// authenticated as the controller's service account in `kube-system`.
    pub client: Client,
    pub flags: Flags,
    pub identity: String,
    shared: Arc<Shared>,
}

/// What every controller's context shares: the informers, which list and watch with the manager's own
/// credentials (as upstream's shared informers do), and how to make per-controller clients.
struct Shared {
    root: Client,
    /// The client configuration per-controller clients are made from (without the manager's own
    /// credentials), when `--use-service-account-credentials` is set.
    sa_config: Option<kube::Config>,
    pods: OnceLock<Arc<Informer<Pod>>>,
    replicasets: OnceLock<Arc<Informer<ReplicaSet>>>,
    rcs: OnceLock<Arc<Informer<ReplicationController>>>,
    deployments: OnceLock<Arc<Informer<Deployment>>>,
    namespaces: OnceLock<Arc<Informer<Namespace>>>,
    serviceaccounts: OnceLock<Arc<Informer<ServiceAccount>>>,
    configmaps: OnceLock<Arc<Informer<ConfigMap>>>,
    services: OnceLock<Arc<Informer<Service>>>,
    endpoints: OnceLock<Arc<Informer<Endpoints>>>,
    endpointslices: OnceLock<Arc<Informer<EndpointSlice>>>,
    nodes: OnceLock<Arc<Informer<Node>>>,
    node_leases: OnceLock<Arc<Informer<Lease>>>,
    clusterroles: OnceLock<Arc<Informer<ClusterRole>>>,
    jobs: OnceLock<Arc<Informer<Job>>>,
    csrs: OnceLock<Arc<Informer<CertificateSigningRequest>>>,
    system_secrets: OnceLock<Arc<Informer<Secret>>>,
    secrets: OnceLock<Arc<Informer<Secret>>>,
    resourcequotas: OnceLock<Arc<Informer<ResourceQuota>>>,
    pvcs: OnceLock<Arc<Informer<PersistentVolumeClaim>>>,
    pvs: OnceLock<Arc<Informer<PersistentVolume>>>,
    storageclasses: OnceLock<Arc<Informer<StorageClass>>>,
}

macro_rules! informer {
    ($name:ident, $t:ty) => {
        pub fn $name(&self) -> Arc<Informer<$t>> {
            self.shared
                .$name
                .get_or_init(|| Informer::start(Api::<$t>::all(self.shared.root.clone()), watcher::Config::default()))
                .clone()
        }
    };
}

impl Context {
    pub fn new(client: Client, flags: &Flags, identity: String, sa_config: Option<kube::Config>) -> Arc<Context> {
        Arc::new(Context {
            client: client.clone(),
            flags: flags.clone(),
            identity,
            shared: Arc::new(Shared {
                root: client,
                sa_config,
                pods: OnceLock::new(),
                replicasets: OnceLock::new(),
                rcs: OnceLock::new(),
                deployments: OnceLock::new(),
                namespaces: OnceLock::new(),
                serviceaccounts: OnceLock::new(),
                configmaps: OnceLock::new(),
                services: OnceLock::new(),
                endpoints: OnceLock::new(),
                endpointslices: OnceLock::new(),
                nodes: OnceLock::new(),
                node_leases: OnceLock::new(),
                clusterroles: OnceLock::new(),
                jobs: OnceLock::new(),
                csrs: OnceLock::new(),
                system_secrets: OnceLock::new(),
                secrets: OnceLock::new(),
                resourcequotas: OnceLock::new(),
                pvcs: OnceLock::new(),
                pvs: OnceLock::new(),
                storageclasses: OnceLock::new(),
            }),
        })
    }

    /// The context a controller runs with: with `--use-service-account-credentials`, a client
    /// authenticated as the service account `kube-system/<service_account>` (created when missing),
    /// with a token from the TokenRequest API that is renewed before it expires; else this context.
    pub async fn for_controller(self: &Arc<Self>, service_account: Option<&str>) -> Result<Arc<Context>, String> {
        let (Some(cfg), Some(sa)) = (&self.shared.sa_config, service_account) else { return Ok(self.clone()) };
        let (token, life) = crate::credentials::service_account_token(&self.shared.root, sa).await?;
        let client = component_base::client::with_bearer_token(
            cfg.clone(),
            token.clone(),
            self.flags.kube_api_qps,
            self.flags.kube_api_burst,
        )
        .map_err(|e| e.to_string())?;
        crate::credentials::keep_renewing(self.shared.root.clone(), sa.to_string(), token, life);
        Ok(Arc::new(Context {
            client,
            flags: self.flags.clone(),
            identity: self.identity.clone(),
            shared: self.shared.clone(),
        }))
    }

    informer!(pods, Pod);
    informer!(replicasets, ReplicaSet);
    informer!(rcs, ReplicationController);
    informer!(deployments, Deployment);
    informer!(namespaces, Namespace);
    informer!(serviceaccounts, ServiceAccount);
    informer!(configmaps, ConfigMap);
    informer!(services, Service);
    informer!(endpoints, Endpoints);
    informer!(endpointslices, EndpointSlice);
    informer!(nodes, Node);
    informer!(clusterroles, ClusterRole);
    informer!(jobs, Job);
    informer!(csrs, CertificateSigningRequest);
    informer!(secrets, Secret);
    informer!(resourcequotas, ResourceQuota);
    informer!(pvcs, PersistentVolumeClaim);
    informer!(pvs, PersistentVolume);
    informer!(storageclasses, StorageClass);

    /// Secrets of `kube-system` (bootstrap tokens).
    pub fn system_secrets(&self) -> Arc<Informer<Secret>> {
        self.shared
            .system_secrets
            .get_or_init(|| {
                Informer::start(
                    Api::<Secret>::namespaced(self.shared.root.clone(), "kube-system"),
                    watcher::Config::default(),
                )
            })
            .clone()
    }

    /// The kubelets' heartbeats: Leases in `kube-node-lease`.
    pub fn node_leases(&self) -> Arc<Informer<Lease>> {
        self.shared
            .node_leases
            .get_or_init(|| {
                Informer::start(
                    Api::<Lease>::namespaced(self.shared.root.clone(), "kube-node-lease"),
                    watcher::Config::default(),
                )
            })
            .clone()
    }

    /// An event recorder reporting as `controller` (`deployment-controller`, ...).
    pub fn recorder(&self, controller: &str) -> EventRecorder {
        EventRecorder::new(self.client.clone(), controller, Some(self.identity.clone()))
    }
}
