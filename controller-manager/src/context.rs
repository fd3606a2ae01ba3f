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
    ConfigMap, Endpoints, Namespace, Node, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, Secret,
    Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::runtime::watcher;
use kube::{Api, Client};
use std::sync::{Arc, OnceLock};

pub struct Context {
    pub client: Client,
    pub flags: Flags,
    pub identity: String,
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
}

macro_rules! informer {
    ($name:ident, $t:ty) => {
        pub fn $name(&self) -> Arc<Informer<$t>> {
            self.$name
                .get_or_init(|| Informer::start(Api::<$t>::all(self.client.clone()), watcher::Config::default()))
                .clone()
        }
    };
}

impl Context {
    pub fn new(client: Client, flags: &Flags, identity: String) -> Arc<Context> {
        Arc::new(Context {
            client,
            flags: flags.clone(),
            identity,
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
        })
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

    /// Secrets of `kube-system` (bootstrap tokens).
    pub fn system_secrets(&self) -> Arc<Informer<Secret>> {
        self.system_secrets
            .get_or_init(|| {
                Informer::start(
                    Api::<Secret>::namespaced(self.client.clone(), "kube-system"),
                    watcher::Config::default(),
                )
            })
            .clone()
    }

    /// The kubelets' heartbeats: Leases in `kube-node-lease`.
    pub fn node_leases(&self) -> Arc<Informer<Lease>> {
        self.node_leases
            .get_or_init(|| {
                Informer::start(
                    Api::<Lease>::namespaced(self.client.clone(), "kube-node-lease"),
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
