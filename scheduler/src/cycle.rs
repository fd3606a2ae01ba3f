//! The filters that need per-pod state besides `plugins::filter`: VolumeRestrictions and
//! VolumeBinding, PodTopologySpread, InterPodAffinity. Prepared once for a pod over the cache, then
//! asked per node in upstream's order; a scheduling cycle and preemption's dry run share them.

use crate::cache::{Cache, NodeInfo};
use crate::interpod::NamespaceLabels;
use crate::plugins::Failure;
use crate::profile::{Profile, INTER_POD_AFFINITY, POD_TOPOLOGY_SPREAD};
use crate::volumes::Listers;
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashSet;

pub struct PodFilters {
    pub volumes: crate::volumes::State,
    pub spread: crate::spread::State,
    pub interpod: crate::interpod::State,
    restrictions: bool,
    binding: bool,
    spread_on: bool,
    interpod_on: bool,
}

impl PodFilters {
    /// The PreFilters. With `scoring`, also what only the scores use (ScheduleAnyway constraints,
    /// preferred terms); without, only what the filters ask. `taken`: volumes reserved for other pods.
    /// An error is a PreFilter's message that stands for every node.
    pub fn prepare(
        pod: &Pod,
        cache: &mut Cache,
        profile: &Profile,
        listers: &dyn Listers,
        taken: &HashSet<String>,
        ns_labels: NamespaceLabels<'_>,
        scoring: bool,
    ) -> Result<PodFilters, String> {
        let on = profile.on;
        let volumes = crate::volumes::prepare(pod, cache, listers, taken, on.volume_restrictions, on.volume_binding)?;
        // Required constraints: the pod's, or with none the profile's `List` defaults.
        let hard_spread = || {
            let own = pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_deref()).unwrap_or(&[]);
            let defaults = profile.args.spread_defaults.as_deref().unwrap_or(&[]);
            let asked = if own.is_empty() { defaults } else { own };
            asked.iter().any(|c| c.when_unsatisfiable == "DoNotSchedule")
        };
        let spread = match scoring {
            true => on.pod_topology_spread || profile.weight(POD_TOPOLOGY_SPREAD) > 0,
            false => on.pod_topology_spread && hard_spread(),
        };
        let interpod = on.inter_pod_affinity || (scoring && profile.weight(INTER_POD_AFFINITY) > 0);
        Ok(PodFilters {
            volumes,
            spread: if spread {
                crate::spread::prepare(pod, cache, profile.args.spread_defaults.as_deref())
            } else {
                Default::default()
            },
            interpod: if interpod {
                crate::interpod::prepare(pod, cache, ns_labels, &profile.args)
            } else {
                Default::default()
            },
            restrictions: on.volume_restrictions,
            binding: on.volume_binding,
            spread_on: on.pod_topology_spread,
            interpod_on: on.inter_pod_affinity,
        })
    }

    /// The filters on one node: volumes, then topology spread, then inter-pod affinity.
    pub fn filter(&self, node: &NodeInfo) -> Result<(), Failure> {
        if !self.volumes.is_empty() {
            self.volumes.filter(node, self.restrictions, self.binding)?;
        }
        if self.spread_on {
            self.spread.filter(node).map_err(|(r, resolvable)| Failure { reason: r.to_string(), resolvable })?;
        }
        if self.interpod_on {
            self.interpod.filter(node)?;
        }
        Ok(())
    }
}
