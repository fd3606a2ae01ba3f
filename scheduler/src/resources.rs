//! `/metrics/resources`: upstream's `kube_pod_resource_request` and `kube_pod_resource_limit` for every
//! pod that has not finished, from the scheduler's pod informer (empty until this scheduler leads and
//! has started it).

use component_base::informer::Informer;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

static PODS: OnceLock<Arc<Informer<Pod>>> = OnceLock::new();

/// Makes the pods of `informer` the ones the endpoint reports.
pub fn report(informer: Arc<Informer<Pod>>) {
    let _ = PODS.set(informer);
}

type Amounts = BTreeMap<String, f64>;

fn amounts(m: Option<&BTreeMap<String, Quantity>>) -> Amounts {
    m.into_iter().flatten().filter_map(|(k, q)| Some((k.clone(), apimachinery::quantity::parse(&q.0)?))).collect()
}

fn add(into: &mut Amounts, from: &Amounts) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

fn max(into: &mut Amounts, from: &Amounts) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_insert(*v);
        *e = e.max(*v);
    }
}

/// A pod's requests or limits as upstream's PodRequests/PodLimits: containers and sidecars summed,
/// the largest ordinary init container (with the sidecars started before it) if larger, then the
/// overhead (for limits, only on resources that have a limit).
fn pod_amounts(pod: &Pod, limits: bool) -> Amounts {
    let spec = pod.spec.clone().unwrap_or_default();
    let of = |c: &Container| {
        let r = c.resources.as_ref();
        amounts(if limits { r.and_then(|r| r.limits.as_ref()) } else { r.and_then(|r| r.requests.as_ref()) })
    };
    let mut sum = Amounts::new();
    for c in &spec.containers {
        add(&mut sum, &of(c));
    }
    let (mut init_max, mut sidecars) = (Amounts::new(), Amounts::new());
    for c in spec.init_containers.iter().flatten() {
        let r = of(c);
        if c.restart_policy.as_deref() == Some("Always") {
            add(&mut sidecars, &r);
            add(&mut sum, &r);
        } else {
            let mut with = r.clone();
            add(&mut with, &sidecars);
            max(&mut init_max, &with);
        }
    }
    max(&mut sum, &init_max);
    for (k, v) in amounts(spec.overhead.as_ref()) {
        if !limits || sum.contains_key(&k) {
            *sum.entry(k).or_default() += v;
        }
    }
    sum
}

fn unit(resource: &str) -> &'static str {
    match resource {
        "cpu" => "cores",
        "memory" | "storage" | "ephemeral-storage" => "bytes",
        r if r.starts_with("hugepages-") => "bytes",
        r if r.starts_with("attachable-volumes-") => "integer",
        _ => "",
    }
}

/// The endpoint's text for `pods`.
pub fn render_pods(pods: &[Arc<Pod>]) -> String {
    let labels = ["namespace", "pod", "node", "scheduler", "priority", "resource", "unit"];
    let tail = "broken down by pod. This shows the resource usage the scheduler and kubelet expect per pod for resources along with the unit for the resource if any.";
    let registry = prometheus::Registry::new();
    let gauge = |name: &str, what: &str| {
        let g = prometheus::GaugeVec::new(
            prometheus::Opts::new(name, format!("[STABLE] Resources {what} workloads on the cluster, {tail}")),
            &labels,
        )
        .expect("metric");
        registry.register(Box::new(g.clone())).expect("register");
        g
    };
    let request = gauge("kube_pod_resource_request", "requested by");
    let limit = gauge("kube_pod_resource_limit", "limit for");
    for p in pods {
        if matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) {
            continue;
        }
        let spec = p.spec.as_ref();
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let node = spec.and_then(|s| s.node_name.clone()).unwrap_or_default();
        let scheduler = spec.and_then(|s| s.scheduler_name.clone()).unwrap_or_default();
        let priority = spec.and_then(|s| s.priority).map(|p| p.to_string()).unwrap_or_default();
        for (vec, limits) in [(&request, false), (&limit, true)] {
            for (resource, v) in pod_amounts(p, limits) {
                vec.with_label_values(&[&ns, &name, &node, &scheduler, &priority, &resource, unit(&resource)]).set(v);
            }
        }
    }
    let mut out = Vec::new();
    let _ = prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// `render_pods` of the reported informer.
pub fn render() -> String {
    render_pods(&PODS.get().map(|i| i.list()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_limits_as_upstreams_metrics() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "ns", "name": "p"},
            "spec": {"nodeName": "n1", "schedulerName": "default-scheduler", "priority": 7,
                "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
                "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}}],
                "overhead": {"cpu": "100m", "memory": "10Mi"}}
        }))
        .unwrap();
        let done: Pod = serde_json::from_value(serde_json::json!({"metadata": {"namespace": "ns", "name": "done"},
            "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}, "status": {"phase": "Succeeded"}}))
        .unwrap();
        let text = render_pods(&[Arc::new(pod), Arc::new(done)]);
        let l = |res: &str, unit: &str| {
            format!("namespace=\"ns\",node=\"n1\",pod=\"p\",priority=\"7\",resource=\"{res}\",scheduler=\"default-scheduler\",unit=\"{unit}\"")
        };
        assert!(text.contains(&format!("kube_pod_resource_request{{{}}} 2.1\n", l("cpu", "cores"))), "{text}");
        assert!(
            text.contains(&format!("kube_pod_resource_request{{{}}} 1084227584\n", l("memory", "bytes"))),
            "{text}"
        );
        assert!(text.contains(&format!("kube_pod_resource_limit{{{}}} 2157969408\n", l("memory", "bytes"))), "{text}");
        assert!(!text.contains(&format!("kube_pod_resource_limit{{{}}}", l("cpu", "cores"))), "no cpu limit: {text}");
        assert!(!text.contains("pod=\"done\""), "finished pods are left out");
        assert!(text.contains("# TYPE kube_pod_resource_request gauge"));
    }
}
