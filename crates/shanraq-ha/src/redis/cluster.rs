//! Redis Cluster mode, observed: `CLUSTER INFO` and `CLUSTER NODES` parsed into what the status
//! and `RedisReady` report (the cluster state, slots covered, the masters and their replicas),
//! and a tracker that counts the failovers Redis Cluster performed on its own (a node seen as a
//! replica and later as a master), and what a failover could lose in each shard (`rpo`, from
//! each master's `INFO replication`). Pure: text in, data out. Failover in cluster mode is
//! Redis Cluster's own; the operator only observes and reports it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The slots of a Redis Cluster.
pub const CLUSTER_SLOTS: u32 = 16384;

/// One node of `CLUSTER NODES`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNode {
    pub id: String,
    /// `ip:port` (the bus port after `@` is dropped).
    pub address: String,
    pub master: bool,
    /// A replica's master id.
    pub master_id: Option<String>,
    /// `fail` or `fail?` flagged.
    pub failing: bool,
    /// Slots this master serves.
    pub slots: u32,
}

/// What one node says about the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// `cluster_state:ok`.
    pub state_ok: bool,
    pub slots_assigned: u32,
    pub slots_ok: u32,
    pub known_nodes: u32,
    pub current_epoch: u64,
    pub nodes: Vec<ClusterNode>,
}

impl ClusterView {
    /// Masters serving at least one slot, by address.
    pub fn masters(&self) -> Vec<&ClusterNode> {
        self.nodes
            .iter()
            .filter(|node| node.master && node.slots > 0 && !node.failing)
            .collect()
    }

    /// Replicas following `master_id` and not failing.
    pub fn replicas_of(&self, master_id: &str) -> usize {
        self.nodes
            .iter()
            .filter(|node| {
                !node.master && !node.failing && node.master_id.as_deref() == Some(master_id)
            })
            .count()
    }

    /// Every slot assigned and served by a healthy master.
    pub fn covered(&self) -> bool {
        self.state_ok && self.slots_ok == CLUSTER_SLOTS
    }

    /// One line for `RedisReady` and the status.
    pub fn summary(&self) -> String {
        let masters: Vec<String> = self
            .masters()
            .iter()
            .map(|m| {
                format!(
                    "{} ({} slots, {} replicas)",
                    m.address,
                    m.slots,
                    self.replicas_of(&m.id)
                )
            })
            .collect();
        format!(
            "cluster_state {}, {} of {CLUSTER_SLOTS} slots covered, masters: {}",
            if self.state_ok { "ok" } else { "fail" },
            self.slots_ok,
            if masters.is_empty() {
                "none".to_owned()
            } else {
                masters.join(", ")
            }
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterParseError {
    #[error("CLUSTER INFO has no {field} field")]
    Missing { field: &'static str },
    #[error("CLUSTER NODES line {line} is not valid: {text:?}")]
    Node { line: usize, text: String },
}

fn info_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (key, value) = line.trim_end_matches('\r').split_once(':')?;
        (key == name).then_some(value)
    })
}

fn slot_count(range: &str) -> u32 {
    // `[slot->-node]` entries are slots being migrated: not counted as served.
    if range.starts_with('[') {
        return 0;
    }
    match range.split_once('-') {
        Some((low, high)) => match (low.parse::<u32>(), high.parse::<u32>()) {
            (Ok(low), Ok(high)) if high >= low => high - low + 1,
            _ => 0,
        },
        None => u32::from(range.parse::<u32>().is_ok()),
    }
}

/// Parses `CLUSTER INFO` and `CLUSTER NODES` of one node.
pub fn parse_cluster(info: &str, nodes: &str) -> Result<ClusterView, ClusterParseError> {
    let state = info_field(info, "cluster_state").ok_or(ClusterParseError::Missing {
        field: "cluster_state",
    })?;
    let number = |name: &'static str| -> Result<u64, ClusterParseError> {
        info_field(info, name)
            .and_then(|value| value.parse().ok())
            .ok_or(ClusterParseError::Missing { field: name })
    };
    let mut parsed = Vec::new();
    for (index, line) in nodes.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 8 {
            return Err(ClusterParseError::Node {
                line: index + 1,
                text: line.to_owned(),
            });
        }
        let flags: BTreeSet<&str> = fields[2].split(',').collect();
        let address = fields[1]
            .split('@')
            .next()
            .unwrap_or_default()
            .split(',')
            .next()
            .unwrap_or_default()
            .to_owned();
        parsed.push(ClusterNode {
            id: fields[0].to_owned(),
            address,
            master: flags.contains("master"),
            master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
            failing: flags.contains("fail") || flags.contains("fail?"),
            slots: fields[8..].iter().map(|range| slot_count(range)).sum(),
        });
    }
    Ok(ClusterView {
        state_ok: state == "ok",
        slots_assigned: u32::try_from(number("cluster_slots_assigned")?).unwrap_or(0),
        slots_ok: u32::try_from(number("cluster_slots_ok")?).unwrap_or(0),
        known_nodes: u32::try_from(number("cluster_known_nodes")?).unwrap_or(0),
        current_epoch: number("cluster_current_epoch")?,
        nodes: parsed,
    })
}

/// Counts the failovers a Redis Cluster performed: a node id last seen as a replica that is now
/// a master serving slots. A master that was empty and received slots (scaling out) is not a
/// failover. Kept by the observer between views.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailoverTracker {
    /// Node id to whether it was last seen as a replica.
    pub replicas: BTreeMap<String, bool>,
    pub failovers_seen: u64,
}

impl FailoverTracker {
    /// Takes one view; returns the nodes that were promoted since the last one.
    pub fn observe(&mut self, view: &ClusterView) -> Vec<String> {
        let mut promoted = Vec::new();
        for node in &view.nodes {
            let was_replica = self.replicas.get(&node.id).copied();
            if was_replica == Some(true) && node.master && node.slots > 0 {
                self.failovers_seen += 1;
                promoted.push(node.address.clone());
            }
            // A master without slots keeps its last role: it may be a replica on its way up.
            if !node.master || node.slots > 0 {
                self.replicas.insert(node.id.clone(), !node.master);
            }
        }
        promoted
    }
}

/// What one shard's master answered to `INFO replication`, keyed by its `ip:port` in
/// `CLUSTER NODES`; `Err` says why there is no answer.
pub type MasterAnswers = BTreeMap<String, Result<super::ReplicationInfo, String>>;

/// What bounds the data a Redis Cluster failover can lose now: for each master serving slots,
/// its most advanced online replica as the master reports it (offset bytes behind, seconds
/// since its last acknowledgement), since Redis Cluster promotes one of a failed master's
/// replicas. The worst shard decides: a shard whose master has no online replica, or did not
/// answer as a master, has no promotable replica and its loss is unbounded; otherwise the
/// shard whose best replica lags the most (seconds, then bytes). `None` with no master
/// serving slots (not formed yet).
pub fn rpo(
    view: &ClusterView,
    answers: &MasterAnswers,
) -> Option<crate::objectives::RpoMeasurement> {
    use crate::objectives::RpoMeasurement;
    let mut worst: Option<RpoMeasurement> = None;
    for master in view.masters() {
        let shard = match answers.get(&master.address) {
            None => RpoMeasurement::NoPromotableReplica {
                reason: format!(
                    "Redis Cluster master {} ({} slots) was not sampled",
                    master.address, master.slots
                ),
            },
            Some(Err(why)) => RpoMeasurement::NoPromotableReplica {
                reason: format!(
                    "Redis Cluster master {} ({} slots) did not answer INFO replication: {why}",
                    master.address, master.slots
                ),
            },
            Some(Ok(info)) if !info.is_master() => RpoMeasurement::NoPromotableReplica {
                reason: format!(
                    "Redis Cluster master {} ({} slots) answered as a replica",
                    master.address, master.slots
                ),
            },
            Some(Ok(info)) => match info
                .replicas
                .iter()
                .filter(|link| link.online)
                .max_by_key(|link| (link.offset, std::cmp::Reverse(link.lag_seconds)))
            {
                Some(link) => RpoMeasurement::Asynchronous {
                    replica: format!(
                        "redis {}:{} (replica of Redis Cluster master {})",
                        link.ip, link.port, master.address
                    ),
                    lag_bytes: info.offset.saturating_sub(link.offset),
                    lag: std::time::Duration::from_secs(link.lag_seconds),
                },
                None => RpoMeasurement::NoPromotableReplica {
                    reason: format!(
                        "no online replica in the shard of Redis Cluster master {} ({} slots)",
                        master.address, master.slots
                    ),
                },
            },
        };
        let worse = match (&worst, &shard) {
            (None, _) => true,
            (Some(RpoMeasurement::NoPromotableReplica { .. }), _) => false,
            (_, RpoMeasurement::NoPromotableReplica { .. }) => true,
            (
                Some(RpoMeasurement::Asynchronous {
                    lag: held_lag,
                    lag_bytes: held_bytes,
                    ..
                }),
                RpoMeasurement::Asynchronous { lag, lag_bytes, .. },
            ) => (lag, lag_bytes) > (held_lag, held_bytes),
            _ => false,
        };
        if worse {
            worst = Some(shard);
        }
    }
    worst
}
