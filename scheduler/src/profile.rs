//! A profile's plugin set, from `KubeSchedulerConfiguration` `profiles[].plugins` and
//! `pluginConfig`, merged over the default profile as upstream's v1 defaulting and framework do:
//! `multiPoint` expands into every extension point a plugin implements; an extension point's own
//! `disabled` list (or `*`) keeps `multiPoint` plugins out of that point, and its `enabled` list adds
//! plugins or sets their score weight. A score weight of 0 means 1.

use k8s_openapi::api::core::v1::{NodeAffinity, TopologySpreadConstraint};
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
    pub args: Args,
}

/// The other plugins' `pluginConfig` args, with upstream's v1 defaults.
#[derive(Clone, Debug)]
pub struct Args {
    /// NodeResourcesFit `ignoredResources` and `ignoredResourceGroups`: extended resources the fit
    /// filter does not check.
    pub ignored_resources: Vec<String>,
    pub ignored_resource_groups: Vec<String>,
    /// PodTopologySpread: None with `defaultingType: System` (hostname maxSkew 3 and zone maxSkew 5,
    /// ScheduleAnyway), the `defaultConstraints` with `List`.
    pub spread_defaults: Option<Vec<TopologySpreadConstraint>>,
    /// InterPodAffinity `hardPodAffinityWeight` (1): what a placed pod's required affinity term adds
    /// to the score of the domains that satisfy it.
    pub hard_pod_affinity_weight: i64,
    /// InterPodAffinity `ignorePreferredTermsOfExistingPods`.
    pub ignore_preferred_terms_of_existing_pods: bool,
    /// NodeAffinity `addedAffinity`, applied to every pod of the profile.
    pub added_affinity: Option<NodeAffinity>,
    /// NodeResourcesBalancedAllocation `resources` (cpu and memory).
    pub balanced_resources: Vec<String>,
    /// VolumeBinding `bindTimeoutSeconds` (600).
    pub bind_timeout_seconds: u64,
    /// DefaultPreemption `minCandidateNodesPercentage` (10) and `minCandidateNodesAbsolute` (100).
    pub min_candidate_nodes_percentage: usize,
    pub min_candidate_nodes_absolute: usize,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            ignored_resources: Vec::new(),
            ignored_resource_groups: Vec::new(),
            spread_defaults: None,
            hard_pod_affinity_weight: 1,
            ignore_preferred_terms_of_existing_pods: false,
            added_affinity: None,
            balanced_resources: vec!["cpu".into(), "memory".into()],
            bind_timeout_seconds: 600,
            min_candidate_nodes_percentage: 10,
            min_candidate_nodes_absolute: 100,
        }
    }
}

impl Args {
    /// Whether NodeResourcesFit's filter skips the extended resource `name`.
    pub fn fit_ignores(&self, name: &str) -> bool {
        self.ignored_resources.iter().any(|r| r == name)
            || name.split_once('/').is_some_and(|(group, _)| self.ignored_resource_groups.iter().any(|g| g == group))
    }

    /// How many preemption candidates are enough among `nodes` (upstream's calculateNumCandidates).
    pub fn enough_candidates(&self, nodes: usize) -> usize {
        (nodes * self.min_candidate_nodes_percentage / 100).max(self.min_candidate_nodes_absolute).min(nodes)
    }
}

fn int(args: &Value, field: &str, at: &str) -> Result<Option<i64>, String> {
    match args.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| format!("{at}.{field}: Invalid value: {v}: must be an integer")),
    }
}

fn strings(args: &Value, field: &str, at: &str) -> Result<Vec<String>, String> {
    match args.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("{at}.{field}: Invalid value: {v}: {e}")),
    }
}

/// Validates and applies one plugin's args, as upstream's Validate*Args for it.
fn plugin_args(name: &str, a: &Value, at: &str, args: &mut Args) -> Result<(), String> {
    match name {
        NODE_RESOURCES_FIT => {
            args.ignored_resources = strings(a, "ignoredResources", at)?;
            args.ignored_resource_groups = strings(a, "ignoredResourceGroups", at)?;
            for (i, g) in args.ignored_resource_groups.iter().enumerate() {
                if g.contains('/') {
                    return Err(format!(
                        "{at}.ignoredResourceGroups[{i}]: Invalid value: {g:?}: resource group name can't contain '/'"
                    ));
                }
            }
        }
        POD_TOPOLOGY_SPREAD => {
            let constraints: Vec<TopologySpreadConstraint> = match a.get("defaultConstraints") {
                None | Some(Value::Null) => Vec::new(),
                Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("{at}.defaultConstraints: {e}"))?,
            };
            let ty = a.get("defaultingType").and_then(|v| v.as_str()).unwrap_or("System");
            match ty {
                "System" if !constraints.is_empty() => {
                    return Err(format!(
                        "{at}.defaultingType: Invalid value: \"System\": when .defaultConstraints are not empty"
                    ))
                }
                "System" | "List" => {}
                other => {
                    return Err(format!(
                        "{at}.defaultingType: Unsupported value: {other:?}: supported values: \"System\", \"List\""
                    ))
                }
            }
            for (i, c) in constraints.iter().enumerate() {
                let p = format!("{at}.defaultConstraints[{i}]");
                if c.max_skew <= 0 {
                    return Err(format!("{p}.maxSkew: Invalid value: {}: not in valid range (0, inf)", c.max_skew));
                }
                if c.topology_key.is_empty() {
                    return Err(format!("{p}.topologyKey: Required value: can not be empty"));
                }
                match c.when_unsatisfiable.as_str() {
                    "" => return Err(format!("{p}.whenUnsatisfiable: Required value: can not be empty")),
                    "DoNotSchedule" | "ScheduleAnyway" => {}
                    other => {
                        return Err(format!(
                            "{p}.whenUnsatisfiable: Unsupported value: {other:?}: supported values: \"DoNotSchedule\", \"ScheduleAnyway\""
                        ))
                    }
                }
                if c.label_selector.is_some() {
                    return Err(format!(
                        "{p}.labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod"
                    ));
                }
                let repeated = constraints[..i]
                    .iter()
                    .any(|o| o.topology_key == c.topology_key && o.when_unsatisfiable == c.when_unsatisfiable);
                if repeated {
                    return Err(format!(
                        "{at}.defaultConstraints[{i}]: Duplicate value: \"{{{}, {}}}\"",
                        c.topology_key, c.when_unsatisfiable
                    ));
                }
            }
            args.spread_defaults = (ty == "List").then_some(constraints);
        }
        INTER_POD_AFFINITY => {
            if let Some(w) = int(a, "hardPodAffinityWeight", at)? {
                if !(0..=100).contains(&w) {
                    return Err(format!("{at}.hardPodAffinityWeight: Invalid value: {w}: not in valid range [0, 100]"));
                }
                args.hard_pod_affinity_weight = w;
            }
            args.ignore_preferred_terms_of_existing_pods =
                a.get("ignorePreferredTermsOfExistingPods").and_then(|v| v.as_bool()).unwrap_or(false);
        }
        NODE_AFFINITY => {
            if let Some(v) = a.get("addedAffinity").filter(|v| !v.is_null()) {
                let added: NodeAffinity =
                    serde_json::from_value(v.clone()).map_err(|e| format!("{at}.addedAffinity: {e}"))?;
                check_node_affinity(&added, &format!("{at}.addedAffinity"))?;
                args.added_affinity = Some(added);
            }
        }
        BALANCED_ALLOCATION => {
            if let Some(rs) = a.get("resources").and_then(|r| r.as_array()) {
                args.balanced_resources.clear();
                for (i, r) in rs.iter().enumerate() {
                    let name = r.get("name").and_then(|n| n.as_str()).unwrap_or("").to_string();
                    if args.balanced_resources.contains(&name) {
                        return Err(format!("{at}.resources[{i}].name: Duplicate value: {name:?}"));
                    }
                    let w = r.get("weight").and_then(|w| w.as_i64()).unwrap_or(1);
                    if w != 1 {
                        return Err(format!("{at}.resources[{i}].weight: Invalid value: {w}: must be 1"));
                    }
                    args.balanced_resources.push(name);
                }
            }
        }
        VOLUME_BINDING => {
            if let Some(t) = int(a, "bindTimeoutSeconds", at)? {
                if t < 0 {
                    return Err(format!(
                        "{at}.bindTimeoutSeconds: Invalid value: {t}: invalid BindTimeoutSeconds, should not be a negative value"
                    ));
                }
                args.bind_timeout_seconds = t as u64;
            }
            if a.get("shape").is_some_and(|v| !v.is_null()) {
                return Err(format!("{at}.shape: Invalid value: unexpected field `shape`, remove it or turn on the feature gate StorageCapacityScoring"));
            }
        }
        DEFAULT_PREEMPTION => {
            let pct = int(a, "minCandidateNodesPercentage", at)?.unwrap_or(10);
            let abs = int(a, "minCandidateNodesAbsolute", at)?.unwrap_or(100);
            if !(0..=100).contains(&pct) {
                return Err(format!(
                    "{at}.minCandidateNodesPercentage: Invalid value: {pct}: not in valid range [0, 100]"
                ));
            }
            if abs < 0 {
                return Err(format!(
                    "{at}.minCandidateNodesAbsolute: Invalid value: {abs}: not in valid range [0, inf)"
                ));
            }
            if pct == 0 && abs == 0 {
                return Err(format!("{at}.minCandidateNodesPercentage: Invalid value: 0: cannot be zero at the same time as minCandidateNodesAbsolute"));
            }
            args.min_candidate_nodes_percentage = pct as usize;
            args.min_candidate_nodes_absolute = abs as usize;
        }
        _ => {}
    }
    Ok(())
}

/// The operators and values of a node selector's requirements, as upstream's NewNodeSelector checks
/// them (a `matchFields` key may only be `metadata.name`).
fn check_node_affinity(a: &NodeAffinity, at: &str) -> Result<(), String> {
    use k8s_openapi::api::core::v1::NodeSelectorTerm;
    let check_term = |t: &NodeSelectorTerm, at: String| -> Result<(), String> {
        for (which, reqs) in [("matchExpressions", &t.match_expressions), ("matchFields", &t.match_fields)] {
            for (i, r) in reqs.iter().flatten().enumerate() {
                let p = format!("{at}.{which}[{i}]");
                let n = r.values.as_ref().map_or(0, |v| v.len());
                match r.operator.as_str() {
                    "In" | "NotIn" if n == 0 => {
                        return Err(format!(
                            "{p}.values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
                        ))
                    }
                    "Exists" | "DoesNotExist" if n > 0 => {
                        return Err(format!(
                            "{p}.values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                        ))
                    }
                    "Gt" | "Lt" if n != 1 => {
                        return Err(format!(
                        "{p}.values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'"
                    ))
                    }
                    "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
                    other => {
                        return Err(format!("{p}.operator: Invalid value: {other:?}: not a valid selector operator"))
                    }
                }
                if which == "matchFields" && r.key != "metadata.name" {
                    return Err(format!("{p}.key: Invalid value: {:?}: not a valid field selector key", r.key));
                }
            }
        }
        Ok(())
    };
    if let Some(r) = &a.required_during_scheduling_ignored_during_execution {
        for (i, t) in r.node_selector_terms.iter().enumerate() {
            check_term(t, format!("{at}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]"))?;
        }
    }
    for (i, p) in a.preferred_during_scheduling_ignored_during_execution.iter().flatten().enumerate() {
        check_term(&p.preference, format!("{at}.preferredDuringSchedulingIgnoredDuringExecution[{i}].preference"))?;
    }
    Ok(())
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
                    "{at}.resources[{i}].weight: Invalid value: {w}: resource weight of {name} not in valid range (0, 100]"
                ));
            }
            fit.resources.push((name, w));
        }
    }
    // upstream checks the shape whenever it is given, and the strategy needs one.
    let ratio = s.get("requestedToCapacityRatio").is_some_and(|v| !v.is_null());
    if ratio || fit.strategy == Strategy::RequestedToCapacityRatio {
        let shape =
            s.pointer("/requestedToCapacityRatio/shape").and_then(|v| v.as_array()).cloned().unwrap_or_default();
        if shape.is_empty() {
            return Err(format!("{at}.shape: Required value: at least one point must be specified"));
        }
        let mut last = -1;
        for (i, p) in shape.iter().enumerate() {
            let u = p.get("utilization").and_then(|v| v.as_i64()).unwrap_or(0);
            let sc = p.get("score").and_then(|v| v.as_i64()).unwrap_or(0);
            if !(0..=100).contains(&u) {
                return Err(format!("{at}.shape[{i}].utilization: Invalid value: {u}: not in valid range [0, 100]"));
            }
            if u <= last {
                return Err(format!(
                    "{at}.shape[{i}].utilization: Invalid value: {u}: values must be sorted in increasing order"
                ));
            }
            if !(0..=10).contains(&sc) {
                return Err(format!("{at}.shape[{i}].score: Invalid value: {sc}: not in valid range [0, 10]"));
            }
            last = u;
            // MaxNodeScore (100) / MaxCustomPriorityScore (10).
            fit.shape.push((u, sc * 10));
        }
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
        let mut args = Args::default();
        let mut seen = std::collections::BTreeSet::new();
        for (i, (pname, given)) in plugin_config.iter().enumerate() {
            if !KNOWN_PLUGINS.contains(&pname.as_str()) {
                return Err(format!("{at}.pluginConfig: plugin {pname:?} does not exist"));
            }
            if !seen.insert(pname.clone()) {
                return Err(format!("{at}.pluginConfig[{i}]: Duplicate value: {pname:?}"));
            }
            if let Some(a) = given {
                let path = format!("{at}.pluginConfig[{i}].args");
                if pname == NODE_RESOURCES_FIT {
                    fit = fit_scoring(a, &path)?;
                }
                plugin_args(pname, a, &path, &mut args)?;
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
        Ok(Profile { scheduler_name: name.to_string(), on, weights, post_filters, fit, args })
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
        assert_eq!(
            e,
            "p.pluginConfig[0].args.scoringStrategy.shape[1].utilization: Invalid value: 10: values must be sorted in increasing order"
        );
        let bad = json!({"scoringStrategy": {"type": "Packed"}});
        assert!(Profile::build("x", None, &cfg(bad), "p").unwrap_err().contains("Unsupported value: \"Packed\""));
        let heavy = json!({"scoringStrategy": {"resources": [{"name": "cpu", "weight": 101}]}});
        assert!(Profile::build("x", None, &cfg(heavy), "p").unwrap_err().contains("not in valid range (0, 100]"));
    }

    #[test]
    fn other_plugins_args_are_validated_and_applied() {
        let one = |plugin: &str, args: Value| Profile::build("x", None, &[(plugin.to_string(), Some(args))], "p");
        let p = one(
            POD_TOPOLOGY_SPREAD,
            json!({"defaultingType": "List", "defaultConstraints": [
                {"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}]}),
        )
        .unwrap();
        let d = p.args.spread_defaults.unwrap();
        assert_eq!((d.len(), d[0].max_skew), (1, 2));
        assert!(
            one(POD_TOPOLOGY_SPREAD, json!({"defaultingType": "List"})).unwrap().args.spread_defaults == Some(vec![])
        );
        assert!(Profile::default().args.spread_defaults.is_none(), "System by default");
        let e = one(
            POD_TOPOLOGY_SPREAD,
            json!({"defaultConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "p.pluginConfig[0].args.defaultingType: Invalid value: \"System\": when .defaultConstraints are not empty"
        );
        let e = one(
            POD_TOPOLOGY_SPREAD,
            json!({"defaultingType": "List", "defaultConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {}}]}),
        )
        .unwrap_err();
        assert!(e.ends_with("defaultConstraints[0].labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod"), "{e}");
        let e = one(
            POD_TOPOLOGY_SPREAD,
            json!({"defaultingType": "List", "defaultConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"},
            {"maxSkew": 3, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}),
        )
        .unwrap_err();
        assert!(e.ends_with("defaultConstraints[1]: Duplicate value: \"{zone, DoNotSchedule}\""), "{e}");

        let p =
            one(INTER_POD_AFFINITY, json!({"hardPodAffinityWeight": 7, "ignorePreferredTermsOfExistingPods": true}))
                .unwrap();
        assert!(p.args.hard_pod_affinity_weight == 7 && p.args.ignore_preferred_terms_of_existing_pods);
        let e = one(INTER_POD_AFFINITY, json!({"hardPodAffinityWeight": 101})).unwrap_err();
        assert!(e.ends_with("hardPodAffinityWeight: Invalid value: 101: not in valid range [0, 100]"), "{e}");

        let p = one(
            NODE_AFFINITY,
            json!({"addedAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]}]}}}),
        )
        .unwrap();
        assert!(p.args.added_affinity.is_some());
        let e = one(
            NODE_AFFINITY,
            json!({"addedAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In"}]}]}}}),
        )
        .unwrap_err();
        assert!(e.contains("nodeSelectorTerms[0].matchExpressions[0].values: Required value"), "{e}");

        let p = one(
            BALANCED_ALLOCATION,
            json!({"resources": [{"name": "cpu", "weight": 1}, {"name": "example.com/gpu", "weight": 1}]}),
        )
        .unwrap();
        assert_eq!(p.args.balanced_resources, ["cpu", "example.com/gpu"]);
        let e = one(BALANCED_ALLOCATION, json!({"resources": [{"name": "cpu", "weight": 2}]})).unwrap_err();
        assert!(e.ends_with("resources[0].weight: Invalid value: 2: must be 1"), "{e}");

        assert_eq!(one(VOLUME_BINDING, json!({"bindTimeoutSeconds": 30})).unwrap().args.bind_timeout_seconds, 30);
        assert!(one(VOLUME_BINDING, json!({"bindTimeoutSeconds": -1}))
            .unwrap_err()
            .ends_with("should not be a negative value"));

        let p = one(DEFAULT_PREEMPTION, json!({"minCandidateNodesPercentage": 50, "minCandidateNodesAbsolute": 3}))
            .unwrap();
        assert_eq!(
            (p.args.enough_candidates(100), p.args.enough_candidates(4), p.args.enough_candidates(2)),
            (50, 3, 2)
        );
        assert_eq!(
            (Profile::default().args.enough_candidates(5000), Profile::default().args.enough_candidates(20)),
            (500, 20)
        );
        let e = one(DEFAULT_PREEMPTION, json!({"minCandidateNodesPercentage": 0, "minCandidateNodesAbsolute": 0}))
            .unwrap_err();
        assert!(e.ends_with("cannot be zero at the same time as minCandidateNodesAbsolute"), "{e}");

        let p = one(
            NODE_RESOURCES_FIT,
            json!({"ignoredResources": ["example.com/a"], "ignoredResourceGroups": ["vendor.io"]}),
        )
        .unwrap();
        assert!(
            p.args.fit_ignores("example.com/a")
                && p.args.fit_ignores("vendor.io/b")
                && !p.args.fit_ignores("example.com/b")
        );
        let e = one(NODE_RESOURCES_FIT, json!({"ignoredResourceGroups": ["a/b"]})).unwrap_err();
        assert!(e.ends_with("resource group name can't contain '/'"), "{e}");
    }
}
