//! Picking up a new PostgreSQL configuration without restarting the primary under load: the
//! StatefulSet uses `OnDelete`, and the HA task restarts stale pods itself, one at a time,
//! replicas first, then switches over and lets the former primary (now a replica) be
//! restarted last. Pure: the pods as watched, the engine's settled state and the last sample
//! of the primary's replication in, one step out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use shanraq_ha::postgres::{HaState, Phase};
use shanraq_ha::wire::{InstanceRole, InstanceStatus};

use crate::engines::pod_status::{config_hash, pod_state};

/// The next step of a configuration roll-out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartStep {
    /// Delete this replica's pod; the StatefulSet recreates it with the new template.
    DeleteReplica(String),
    /// Every replica is current: switch over, so the stale primary becomes a replica.
    Switchover { primary: String },
}

/// The synchronous standbys streaming on `primary`, from the last sample.
fn synchronous_streaming<'a>(primary: &str, sample: &'a [InstanceStatus]) -> Vec<&'a str> {
    sample
        .iter()
        .filter(|s| s.name == primary && s.role == InstanceRole::Primary)
        .flat_map(|s| s.replication.iter())
        .filter(|row| {
            row.state == "streaming" && matches!(row.sync_state.as_str(), "sync" | "quorum")
        })
        .map(|row| row.application_name.as_str())
        .collect()
}

/// What to do now, if anything. Nothing while the engine is not settled, while any member pod
/// is missing, not ready or terminating (one restart at a time), or when restarting a replica
/// would leave fewer than `required` synchronous standbys streaming (commits would block).
pub fn next_step(
    members: &[String],
    pods: &BTreeMap<String, Pod>,
    state: &HaState,
    desired_hash: &str,
    required: u32,
    sample: &[InstanceStatus],
) -> Option<RestartStep> {
    if state.phase != Phase::Healthy {
        return None;
    }
    let primary = state.current_primary.as_ref()?.as_str();
    let mut stale = Vec::new();
    for member in members {
        let pod = pods.get(member)?;
        let (ready, deleting) = pod_state(pod);
        if !ready || deleting {
            return None;
        }
        if config_hash(pod) != Some(desired_hash) {
            stale.push(member.as_str());
        }
    }
    let streaming = synchronous_streaming(primary, sample);
    // Highest ordinal first, like the StatefulSet's own rolling update.
    if let Some(replica) = stale.iter().rev().find(|m| **m != primary) {
        let remaining = streaming.iter().filter(|s| *s != replica).count();
        if u32::try_from(remaining).unwrap_or(u32::MAX) < required {
            return None;
        }
        return Some(RestartStep::DeleteReplica((*replica).to_owned()));
    }
    if stale.contains(&primary) && !streaming.is_empty() {
        return Some(RestartStep::Switchover {
            primary: primary.to_owned(),
        });
    }
    None
}
