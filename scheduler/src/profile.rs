//! A profile's plugin set, from `KubeSchedulerConfiguration` `profiles[].plugins` and
//! `pluginConfig`, merged over the default profile as upstream's v1 defaulting and framework do:
//! `multiPoint` expands into every extension point a plugin implements; an extension point's own
//! `disabled` list (or `*`) keeps `multiPoint` plugins out of that point, and its `enabled` list adds
//! plugins or sets their score weight. A score weight of 0 means 1.

use serde_json::Value;
use std::collections::BTreeMap;

pub const NODE_UNSCHEDULABLE: &str = "NodeUnschedulable";
pub const NODE_NAME: &str = "NodeName";
pub const TAINT_TOLERATION: &str = "TaintToleration";
pub const NODE_AFFINITY: &str = "NodeAffinity";
pub const NODE_PORTS: &str = "NodePorts";
pub const NODE_RESOURCES_FIT: &str = "NodeResourcesFit";
pub const BALANCED_ALLOCATION: &str = "NodeResourcesBalancedAllocation";
pub const VOLUME_RESTRICTIONS: &str = "VolumeRestrictions";
pub const VOLUME_BINDING: &str = "VolumeBinding";
pub const POD_TOPOLOGY_SPREAD: &str = "PodTopologySpread";
pub const INTER_POD_AFFINITY: &str = "InterPodAffinity";
pub const IMAGE_LOCALITY: &str = "ImageLocality";
pub const DEFAULT_PREEMPTION: &str = "DefaultPreemption";

/// Every in-tree plugin name upstream's registry knows (a config naming another is refused).
pub const KNOWN_PLUGINS: &[&str] = &[
    "SchedulingGates",
    "PrioritySort",
    NODE_UNSCHEDULABLE,
    NODE_NAME,
    TAINT_TOLERATION,
    NODE_AFFINITY,
    NODE_PORTS,
    NODE_RESOURCES_FIT,
    BALANCED_ALLOCATION,
    POD_TOPOLOGY_SPREAD,
    INTER_POD_AFFINITY,
    VOLUME_BINDING,
    VOLUME_RESTRICTIONS,
    "VolumeZone",
    "NodeVolumeLimits",
    "EBSLimits",
    "GCEPDLimits",
    "AzureDiskLimits",
    IMAGE_LOCALITY,
    DEFAULT_PREEMPTION,
    "DefaultBinder",
    "DynamicResources",
];

/// The default profile's `multiPoint` plugins in upstream's order, with their score weights.
const DEFAULT_MULTI_POINT: &[(&str, i64)] = &[
    ("SchedulingGates", 0),
    ("PrioritySort", 0),
    (NODE_UNSCHEDULABLE, 0),
    (NODE_NAME, 0),
    (TAINT_TOLERATION, 3),
    (NODE_AFFINITY, 2),
    (NODE_PORTS, 0),
    (NODE_RESOURCES_FIT, 1),
    (VOLUME_RESTRICTIONS, 0),
    ("NodeVolumeLimits", 0),
    (VOLUME_BINDING, 0),
    ("VolumeZone", 0),
    (POD_TOPOLOGY_SPREAD, 2),
    (INTER_POD_AFFINITY, 2),
    (DEFAULT_PREEMPTION, 0),
    (BALANCED_ALLOCATION, 1),
    (IMAGE_LOCALITY, 1),
    ("DefaultBinder", 0),
];

/// The plugins that implement Filter (PreFilter goes with it), Score and PostFilter here.
const FILTERS: &[&str] = &[
    NODE_UNSCHEDULABLE,
    NODE_NAME,
    TAINT_TOLERATION,
    NODE_AFFINITY,
    NODE_PORTS,
    NODE_RESOURCES_FIT,
    VOLUME_RESTRICTIONS,
    VOLUME_BINDING,
    POD_TOPOLOGY_SPREAD,
    INTER_POD_AFFINITY,
];
const SCORES: &[&str] = &[
    TAINT_TOLERATION,
    NODE_AFFINITY,
    NODE_RESOURCES_FIT,
    POD_TOPOLOGY_SPREAD,
    INTER_POD_AFFINITY,
    BALANCED_ALLOCATION,
    IMAGE_LOCALITY,
];
const POST_FILTERS: &[&str] = &[DEFAULT_PREEMPTION];

/// How NodeResourcesFit scores (`scoringStrategy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitScoring {
    pub strategy: Strategy,
    /// (resource name, weight); cpu and memory with weight 1 by default.
    pub resources: Vec<(String, i64)>,
    /// `requestedToCapacityRatio.shape`: (utilization 0..=100, score 0..=100 after scaling by 10).
    pub shape: Vec<(i64, i64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    LeastAllocated,
    MostAllocated,
    RequestedToCapacityRatio,
}

impl Default for FitScoring {
    fn default() -> Self {
        FitScoring {
            strategy: Strategy::LeastAllocated,
            resources: vec![("cpu".into(), 1), ("memory".into(), 1)],
            shape: Vec::new(),
        }
    }
}

/// Which filters run, looked up once per profile rather than by name per node.
#[derive(Clone, Copy, Debug, Default)]
pub struct Filters {
    pub node_unschedulable: bool,
    pub node_name: bool,
    pub taint_toleration: bool,
    pub node_affinity: bool,
    pub node_ports: bool,
    pub node_resources_fit: bool,
    pub volume_restrictions: bool,
    pub volume_binding: bool,
    pub pod_topology_spread: bool,
    pub inter_pod_affinity: bool,
}

#[derive(Clone, Debug)]
pub struct Profile {
    pub scheduler_name: String,
    pub on: Filters,
    weights: BTreeMap<String, i64>,
    post_filters: Vec<String>,
    pub fit: FitScoring,
}

impl Default for Profile {
    fn default() -> Self {
        Profile::build("default-scheduler", None, &[], "profiles[0]").expect("the default profile is valid")
    }
}

fn names(set: Option<&Value>, which: &str) -> Vec<(String, i64)> {
    set.and_then(|s| s.get(which))
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p.get("name").and_then(|n| n.as_str()).unwrap_or("").to_string(),
                p.get("weight").and_then(|w| w.as_i64()).unwrap_or(0),
            )
        })
        .collect()
}

/// upstream's mergePluginSet: defaults minus `disabled` (all of them for `*`), with an `enabled` entry
/// of the same name replacing the default in place, then the other `enabled` entries appended.
fn merge(defaults: Vec<(String, i64)>, custom: Option<&Value>) -> Vec<(String, i64)> {
    let disabled = names(custom, "disabled");
    let enabled = names(custom, "enabled");
    let all_off = disabled.iter().any(|(n, _)| n == "*");
    let mut out: Vec<(String, i64)> = Vec::new();
    for (name, w) in defaults {
        if all_off || disabled.iter().any(|(n, _)| *n == name) {
            continue;
        }
        match enabled.iter().find(|(n, _)| *n == name) {
            Some(e) => out.push(e.clone()),
            None => out.push((name, w)),
        }
    }
    for e in enabled {
        if !out.iter().any(|(n, _)| *n == e.0) {
            out.push(e);
        }
    }
    out
}

/// One extension point's plugins: the `multiPoint` ones that implement it, unless the point disables
/// them, then the point's own `enabled` list (which wins on weight).
fn expand(multi: &[(String, i64)], point: Option<&Value>, implements: &[&str]) -> Vec<(String, i64)> {
    let disabled = names(point, "disabled");
    let all_off = disabled.iter().any(|(n, _)| n == "*");
    let enabled = names(point, "enabled");
    let mut out: Vec<(String, i64)> = Vec::new();
    for (name, w) in multi {
        if !implements.contains(&name.as_str())
            || all_off
            || disabled.iter().any(|(n, _)| n == name)
            || enabled.iter().any(|(n, _)| n == name)
        {
            continue;
        }
        out.push((name.clone(), *w));
    }
    for e in enabled {
        if implements.contains(&e.0.as_str()) && !out.iter().any(|(n, _)| *n == e.0) {
            out.push(e);
        }
    }
    out
}

fn check_names(prefix: &str, set: &Value) -> Result<(), String> {
    for which in ["enabled", "disabled"] {
        for pl in set.get(which).and_then(|v| v.as_array()).into_iter().flatten() {
            let name = pl.get("name").and_then(|n| n.as_str()).unwrap_or("");
            let wildcard = which == "disabled" && name == "*";
            if !KNOWN_PLUGINS.contains(&name) && !wildcard {
                return Err(format!("{prefix}.{which}: plugin {name:?} does not exist"));
            }
            if let Some(w) = pl.get("weight").and_then(|w| w.as_i64()) {
                if !(0..=100).contains(&w) {
                    return Err(format!(
                        "{prefix}.{which}: Invalid value: {w}: weight of {name} must be in the range [0, 100]"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// NodeResourcesFit's `scoringStrategy`, validated as upstream's ValidateNodeResourcesFitArgs.
fn fit_scoring(args: &Value, at: &str) -> Result<FitScoring, String> {
    let mut fit = FitScoring::default();
    let Some(s) = args.get("scoringStrategy") else { return Ok(fit) };
    let at = format!("{at}.scoringStrategy");
    fit.strategy = match s.get("type").and_then(|t| t.as_str()) {
        None | Some("LeastAllocated") => Strategy::LeastAllocated,
        Some("MostAllocated") => Strategy::MostAllocated,
        Some("RequestedToCapacityRatio") => Strategy::RequestedToCapacityRatio,
        Some(other) => {
            return Err(format!(
                "{at}.type: Unsupported value: {other:?}: supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\""
            ))
        }
    };
    if let Some(rs) = s.get("resources").and_then(|r| r.as_array()) {
        fit.resources.clear();
        for (i, r) in rs.iter().enumerate() {
            let name = r.get("name").and_then(|n| n.as_str()).unwrap_or("").to_string();
            let w = r.get("weight").and_then(|w| w.as_i64()).unwrap_or(1);
            if !(1..=100).contains(&w) {
                return Err(format!(
                    "{at}.resources[{i}].weight: Invalid value: {w}: resource weight of {name} not in valid range [1, 100]"
                ));
            }
            fit.resources.push((name, w));
        }
    }
    if fit.strategy == Strategy::RequestedToCapacityRatio {
        let shape =
            s.pointer("/requestedToCapacityRatio/shape").and_then(|v| v.as_array()).cloned().unwrap_or_default();
        if shape.is_empty() {
            return Err(format!(
                "{at}.requestedToCapacityRatio.shape: Required value: at least one point must be specified"
            ));
        }
        let mut last = -1;
        for (i, p) in shape.iter().enumerate() {
            let u = p.get("utilization").and_then(|v| v.as_i64()).unwrap_or(0);
            let sc = p.get("score").and_then(|v| v.as_i64()).unwrap_or(0);
            if !(0..=100).contains(&u) {
                return Err(format!("{at}.requestedToCapacityRatio.shape[{i}].utilization: Invalid value: {u}: not in valid range [0, 100]"));
            }
            if u <= last {
                return Err(format!("{at}.requestedToCapacityRatio.shape[{i}].utilization: Invalid value: {u}: utilization values must be sorted in increasing order"));
            }
            if !(0..=10).contains(&sc) {
                return Err(format!(
                    "{at}.requestedToCapacityRatio.shape[{i}].score: Invalid value: {sc}: not in valid range [0, 10]"
                ));
            }
            last = u;
            // MaxNodeScore (100) / MaxCustomPriorityScore (10).
            fit.shape.push((u, sc * 10));
        }
    } else if s.get("requestedToCapacityRatio").is_some() {
        return Err(format!("{at}.requestedToCapacityRatio: Forbidden: only valid for RequestedToCapacityRatio type"));
    }
    Ok(fit)
}

impl Profile {
    /// Builds the profile named `name` from its `plugins` and `pluginConfig` (each entry: name, args);
    /// `at` names it in errors.
    pub fn build(
        name: &str,
        plugins: Option<&Value>,
        plugin_config: &[(String, Option<Value>)],
        at: &str,
    ) -> Result<Profile, String> {
        if let Some(points) = plugins.and_then(|p| p.as_object()) {
            for (point, set) in points {
                check_names(&format!("{at}.plugins.{point}"), set)?;
            }
        }
        let mut fit = FitScoring::default();
        let mut seen = std::collections::BTreeSet::new();
        for (i, (pname, args)) in plugin_config.iter().enumerate() {
            if !KNOWN_PLUGINS.contains(&pname.as_str()) {
                return Err(format!("{at}.pluginConfig: plugin {pname:?} does not exist"));
            }
            if !seen.insert(pname.clone()) {
                return Err(format!("{at}.pluginConfig[{i}]: Duplicate value: {pname:?}"));
            }
            match args {
                Some(a) if pname == NODE_RESOURCES_FIT => {
                    fit = fit_scoring(a, &format!("{at}.pluginConfig[{i}].args"))?
                }
                // Other plugins run with upstream's default arguments; say so rather than pretend.
                Some(a) if a.as_object().is_some_and(|o| o.keys().any(|k| k != "apiVersion" && k != "kind")) => {
                    tracing::warn!(plugin = %pname, "{at}.pluginConfig[{i}].args are not applied yet; the defaults are used")
                }
                _ => {}
            }
        }
        let point = |p: &str| plugins.and_then(|v| v.get(p));
        let defaults = DEFAULT_MULTI_POINT.iter().map(|(n, w)| (n.to_string(), *w)).collect();
        let multi = merge(defaults, point("multiPoint"));
        let filters: Vec<String> = expand(&multi, point("filter"), FILTERS).into_iter().map(|(n, _)| n).collect();
        let has = |p: &str| filters.iter().any(|f| f == p);
        let on = Filters {
            node_unschedulable: has(NODE_UNSCHEDULABLE),
            node_name: has(NODE_NAME),
            taint_toleration: has(TAINT_TOLERATION),
            node_affinity: has(NODE_AFFINITY),
            node_ports: has(NODE_PORTS),
            node_resources_fit: has(NODE_RESOURCES_FIT),
            volume_restrictions: has(VOLUME_RESTRICTIONS),
            volume_binding: has(VOLUME_BINDING),
            pod_topology_spread: has(POD_TOPOLOGY_SPREAD),
            inter_pod_affinity: has(INTER_POD_AFFINITY),
        };
        let weights =
            expand(&multi, point("score"), SCORES).into_iter().map(|(n, w)| (n, if w == 0 { 1 } else { w })).collect();
        let post_filters = expand(&multi, point("postFilter"), POST_FILTERS).into_iter().map(|(n, _)| n).collect();
        Ok(Profile { scheduler_name: name.to_string(), on, weights, post_filters, fit })
    }

    /// The score weight of `plugin`, 0 when it does not score.
    pub fn weight(&self, plugin: &str) -> i64 {
        self.weights.get(plugin).copied().unwrap_or(0)
    }

    /// Whether DefaultPreemption runs for unschedulable pods.
    pub fn preempts(&self) -> bool {
        self.post_filters.iter().any(|p| p == DEFAULT_PREEMPTION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_upstreams_default_profile() {
        let p = Profile::default();
        let f = p.on;
        assert!(f.node_unschedulable && f.node_name && f.taint_toleration && f.node_affinity && f.node_ports);
        assert!(f.node_resources_fit && f.volume_restrictions && f.volume_binding);
        assert!(f.pod_topology_spread && f.inter_pod_affinity);
        assert_eq!(p.weight(TAINT_TOLERATION), 3);
        assert_eq!(p.weight(NODE_AFFINITY), 2);
        assert_eq!(p.weight(IMAGE_LOCALITY), 1);
        assert_eq!(p.weight(NODE_PORTS), 0);
        assert!(p.preempts());
    }

    #[test]
    fn points_disable_and_reweigh_multi_point_plugins() {
        let plugins = json!({
            "multiPoint": {"disabled": [{"name": "ImageLocality"}], "enabled": [{"name": "NodeAffinity", "weight": 7}]},
            "filter": {"disabled": [{"name": "TaintToleration"}]},
            "score": {"enabled": [{"name": "NodeResourcesFit", "weight": 5}], "disabled": [{"name": "InterPodAffinity"}]},
            "postFilter": {"disabled": [{"name": "*"}]}
        });
        let p = Profile::build("x", Some(&plugins), &[], "p").unwrap();
        assert!(!p.on.taint_toleration);
        assert!(p.on.inter_pod_affinity, "disabled for score only");
        assert_eq!(p.weight(TAINT_TOLERATION), 3, "disabled for filter only");
        assert_eq!((p.weight(NODE_AFFINITY), p.weight(NODE_RESOURCES_FIT)), (7, 5));
        assert_eq!((p.weight(IMAGE_LOCALITY), p.weight(INTER_POD_AFFINITY)), (0, 0));
        assert!(!p.preempts());
        let all_off = json!({"score": {"disabled": [{"name": "*"}]}});
        let p = Profile::build("x", Some(&all_off), &[], "p").unwrap();
        assert!(SCORES.iter().all(|s| p.weight(s) == 0));
    }

    #[test]
    fn fit_args_are_validated_as_upstream() {
        let cfg = |args: Value| vec![(NODE_RESOURCES_FIT.to_string(), Some(args))];
        let rtcr = json!({"scoringStrategy": {"type": "RequestedToCapacityRatio",
            "resources": [{"name": "cpu", "weight": 2}],
            "requestedToCapacityRatio": {"shape": [{"utilization": 0, "score": 10}, {"utilization": 100, "score": 0}]}}});
        let p = Profile::build("x", None, &cfg(rtcr), "p").unwrap();
        assert_eq!(p.fit.shape, vec![(0, 100), (100, 0)]);
        assert_eq!(p.fit.resources, vec![("cpu".to_string(), 2)]);
        let unsorted = json!({"scoringStrategy": {"type": "RequestedToCapacityRatio",
            "requestedToCapacityRatio": {"shape": [{"utilization": 50, "score": 1}, {"utilization": 10, "score": 2}]}}});
        let e = Profile::build("x", None, &cfg(unsorted), "p").unwrap_err();
        assert!(e.contains("utilization values must be sorted in increasing order"), "{e}");
        let bad = json!({"scoringStrategy": {"type": "Packed"}});
        assert!(Profile::build("x", None, &cfg(bad), "p").unwrap_err().contains("Unsupported value: \"Packed\""));
        let heavy = json!({"scoringStrategy": {"resources": [{"name": "cpu", "weight": 101}]}});
        assert!(Profile::build("x", None, &cfg(heavy), "p").unwrap_err().contains("not in valid range [1, 100]"));
    }
}
