//! Picking up a new Redis configuration without restarting the master under load: in
//! replication mode the StatefulSet uses `OnDelete`, and the Redis task restarts stale pods
//! itself, one at a time, replicas first (highest ordinal first), each only once every replica
//! streams again and only if the master keeps `min-replicas-to-write` replicas meanwhile; then
//! it switches over, and the former master, now a replica, is restarted last. Pure: the pods as
//! listed, the engine's state and its last probe round in, one step out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use shanraq_api::names::ANNOTATION_CONFIG_HASH;
use shanraq_ha::redis::{NodeId, Phase, RedisHaState, RedisMember, ReplicationInfo};

use crate::engines::pod_status::{config_hash, pod_state};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartStep {
    /// Delete this replica's pod; the StatefulSet recreates it with the new template.
    DeleteReplica(String),
    /// Every replica is current: switch over, so the stale master becomes a replica.
    Switchover { master: String },
}

/// What to do now, if anything: nothing while the engine is not Healthy, while a pod is
/// missing, not ready or terminating, or while a replica does not stream from the master yet.
pub fn next_step(
    members: &[RedisMember],
    pods: &BTreeMap<String, Pod>,
    state: &RedisHaState,
    infos: &BTreeMap<NodeId, ReplicationInfo>,
    desired_hash: &str,
    min_replicas_to_write: u32,
) -> Option<RestartStep> {
    if state.phase != Phase::Healthy {
        return None;
    }
    let master = state.current_primary.as_ref()?;
    let endpoint = members.iter().find(|m| &m.name == master)?;
    let mut stale = Vec::new();
    let mut streaming = 0_u32;
    for member in members {
        let pod = pods.get(member.name.as_str())?;
        let (ready, deleting) = pod_state(pod);
        if !ready || deleting {
            return None;
        }
        let info = infos.get(&member.name)?;
        if &member.name == master {
            if !info.is_master() {
                return None;
            }
        } else if info.replicates_from(&endpoint.host, endpoint.port)
            && info.link_up
            && !info.sync_in_progress
        {
            streaming += 1;
        } else {
            return None;
        }
        if config_hash(pod) != Some(desired_hash) {
            stale.push(member.name.as_str());
        }
    }
    if let Some(replica) = stale.iter().rev().find(|m| **m != master.as_str()) {
        // Restarting it must leave the master enough replicas to take writes.
        if streaming.saturating_sub(1) < min_replicas_to_write {
            return None;
        }
        return Some(RestartStep::DeleteReplica((*replica).to_owned()));
    }
    if stale.contains(&master.as_str()) && streaming > 0 {
        return Some(RestartStep::Switchover {
            master: master.to_string(),
        });
    }
    None
}

/// The `shanraq.org/config-hash` the rendered Redis StatefulSet gives its pods.
pub fn desired_hash(
    cluster: &shanraq_api::ValidCluster,
    rendered: &shanraq_render::Rendered,
) -> Option<String> {
    let workload = cluster.names.workload(shanraq_api::names::Component::Redis);
    rendered.children.iter().find_map(|child| match child {
        shanraq_render::Child::StatefulSet(set)
            if set.metadata.name.as_deref() == Some(&workload) =>
        {
            set.spec
                .template
                .metadata
                .as_ref()?
                .annotations
                .as_ref()?
                .get(ANNOTATION_CONFIG_HASH)
                .cloned()
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use shanraq_ha::redis::Role;

    fn pod(name: &str, hash: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.to_owned());
        pod.metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_CONFIG_HASH.to_owned(),
            hash.to_owned(),
        )]));
        pod.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".to_owned(),
                status: "True".to_owned(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        });
        pod
    }

    fn info(master_of: Option<&str>) -> ReplicationInfo {
        ReplicationInfo {
            role: if master_of.is_some() {
                Role::Replica
            } else {
                Role::Master
            },
            master_host: master_of.map(str::to_owned),
            master_port: master_of.map(|_| 6379),
            link_up: master_of.is_some(),
            sync_in_progress: false,
            offset: 10,
            replid: "r".to_owned(),
            replicas: Vec::new(),
            good_replicas: None,
            keys: None,
            aof_enabled: false,
            loading: false,
            aof_rewriting: false,
        }
    }

    fn group(
        hashes: [&str; 3],
    ) -> (
        Vec<RedisMember>,
        BTreeMap<String, Pod>,
        RedisHaState,
        BTreeMap<NodeId, ReplicationInfo>,
    ) {
        let members: Vec<RedisMember> = (0..3)
            .map(|i| RedisMember::new(format!("r-{i}"), format!("10.0.0.{i}"), 6379))
            .collect();
        let pods = members
            .iter()
            .zip(hashes)
            .map(|(m, hash)| (m.name.to_string(), pod(m.name.as_str(), hash)))
            .collect();
        let state = RedisHaState {
            current_primary: Some(NodeId::new("r-0")),
            phase: Phase::Healthy,
            ..RedisHaState::default()
        };
        let infos = BTreeMap::from([
            (NodeId::new("r-0"), info(None)),
            (NodeId::new("r-1"), info(Some("10.0.0.0"))),
            (NodeId::new("r-2"), info(Some("10.0.0.0"))),
        ]);
        (members, pods, state, infos)
    }

    #[test]
    fn replicas_restart_first_highest_ordinal_first_then_the_master_is_switched_over() {
        let (members, pods, state, infos) = group(["old", "old", "old"]);
        assert_eq!(
            next_step(&members, &pods, &state, &infos, "new", 1),
            Some(RestartStep::DeleteReplica("r-2".to_owned()))
        );
        let (members, pods, state, infos) = group(["old", "old", "new"]);
        assert_eq!(
            next_step(&members, &pods, &state, &infos, "new", 1),
            Some(RestartStep::DeleteReplica("r-1".to_owned()))
        );
        let (members, pods, state, infos) = group(["old", "new", "new"]);
        assert_eq!(
            next_step(&members, &pods, &state, &infos, "new", 1),
            Some(RestartStep::Switchover {
                master: "r-0".to_owned()
            })
        );
        let (members, pods, state, infos) = group(["new", "new", "new"]);
        assert_eq!(next_step(&members, &pods, &state, &infos, "new", 1), None);
    }

    #[test]
    fn nothing_restarts_while_a_replica_resyncs_or_the_master_would_lose_its_writes() {
        let (members, pods, state, mut infos) = group(["old", "old", "old"]);
        if let Some(replica) = infos.get_mut(&NodeId::new("r-1")) {
            replica.sync_in_progress = true;
        }
        assert_eq!(next_step(&members, &pods, &state, &infos, "new", 1), None);
        let (members, pods, state, infos) = group(["old", "old", "old"]);
        assert_eq!(
            next_step(&members, &pods, &state, &infos, "new", 2),
            None,
            "restarting one of two replicas would leave fewer than min-replicas-to-write 2"
        );
        let (members, pods, mut state, infos) = group(["old", "old", "old"]);
        state.phase = Phase::Fencing;
        assert_eq!(next_step(&members, &pods, &state, &infos, "new", 1), None);
    }
}
