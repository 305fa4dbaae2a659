//! Pod watch events as engine signals. Only transitions are signalled: the engine counts each
//! not-ready signal as one failed probe, so repeating an unchanged state would add up to a
//! false failover. A pod being deleted (deletionTimestamp set) or gone is `deleted`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use shanraq_api::names::{LABEL_ROLE, ROLE_PRIMARY, ROLE_REPLICA};
use shanraq_ha::postgres::{HaState, Millis, NodeId, Phase, PodSignal};

use crate::engines::pod_status::pod_state;

/// Remembers each member pod's last state and emits a signal when it changes.
#[derive(Debug, Default)]
pub struct PodTracker {
    members: Vec<NodeId>,
    last: BTreeMap<NodeId, (bool, bool)>,
}

impl PodTracker {
    pub fn new(members: Vec<NodeId>) -> PodTracker {
        PodTracker {
            members,
            last: BTreeMap::new(),
        }
    }

    fn record(&mut self, node: NodeId, state: (bool, bool), at: Millis) -> Option<PodSignal> {
        if !self.members.contains(&node) || self.last.get(&node) == Some(&state) {
            return None;
        }
        self.last.insert(node.clone(), state);
        Some(PodSignal {
            node,
            at,
            ready: state.0,
            deleted: state.1,
        })
    }

    /// A pod was added or changed.
    pub fn seen(&mut self, pod: &Pod, at: Millis) -> Option<PodSignal> {
        self.record(NodeId::new(pod.name_any()), pod_state(pod), at)
    }

    /// A pod is gone.
    pub fn gone(&mut self, pod: &Pod, at: Millis) -> Option<PodSignal> {
        self.record(NodeId::new(pod.name_any()), (false, true), at)
    }
}

/// The role label `pod` must be given under `state`, if it carries another one (or none).
/// Only a settled state (`Healthy`: routing confirmed) decides; during a failover or switchover
/// the router alone writes labels.
pub fn label_fix(pod: &Pod, state: &HaState) -> Option<&'static str> {
    if state.phase != Phase::Healthy || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let primary = state.current_primary.as_ref()?;
    let wanted = if primary.as_str() == pod.name_any() {
        ROLE_PRIMARY
    } else {
        ROLE_REPLICA
    };
    (pod.labels().get(LABEL_ROLE).map(String::as_str) != Some(wanted)).then_some(wanted)
}
