//! The engine's outputs: commands for the adapters (each carries the epoch it was decided under)
//! and events for people (Kubernetes Events, the demo's timeline).

use serde::{Deserialize, Serialize};

use super::engine::Redis;
use super::info::ReplicationInfo;
use super::state::RecordDetail;
use crate::engine::Importance;
use crate::events::Lifecycle;
use crate::machine::Product;
use crate::postgres::NodeId;

/// A member as the master of others: `REPLICAOF host port`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub name: NodeId,
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "command")]
pub enum Command {
    /// `REPLICAOF 127.0.0.1 0`: stop taking the old master's stream, keep the data and the
    /// replication id; the reply's offset is final.
    Detach { node: NodeId, epoch: u64 },
    /// `REPLICAOF NO ONE`.
    Promote { node: NodeId, epoch: u64 },
    /// `REPLICAOF host port`: follow `master` (a stale master is demoted this way).
    Replicate {
        node: NodeId,
        master: Endpoint,
        epoch: u64,
    },
    /// Send writes to `master` and nowhere else.
    Route { master: NodeId, epoch: u64 },
    /// `CLIENT PAUSE <ms> WRITE`: writes block (they are not refused) until unpaused.
    PauseWrites {
        node: NodeId,
        timeout_ms: u64,
        epoch: u64,
    },
    /// `CLIENT UNPAUSE`.
    Unpause { node: NodeId, epoch: u64 },
}

crate::dispatch::command_accessors!(Command { Detach.node, Promote.node, Replicate.node, Route.master, PauseWrites.node, Unpause.node }, route: Route);

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Detach { node, epoch } => {
                write!(f, "detach {node} from the old master (epoch {epoch})")
            }
            Command::Promote { node, epoch } => write!(f, "promote {node} (epoch {epoch})"),
            Command::Replicate {
                node,
                master,
                epoch,
            } => write!(
                f,
                "make {node} a replica of {} (epoch {epoch})",
                master.name
            ),
            Command::Route { master, epoch } => {
                write!(f, "route writes to {master} (epoch {epoch})")
            }
            Command::PauseWrites {
                node,
                timeout_ms,
                epoch,
            } => write!(
                f,
                "pause writes on {node} for at most {timeout_ms} ms (epoch {epoch})"
            ),
            Command::Unpause { node, epoch } => write!(f, "unpause {node} (epoch {epoch})"),
        }
    }
}

pub use crate::engine::CommandError;

/// What a command's adapter reports: the node's `INFO replication` right after it, when it
/// could read it (a detach's final offset comes from here).
pub type CommandResult = Result<Option<ReplicationInfo>, CommandError>;

/// Something worth telling a person, stamped with when the engine decided it.
pub type Event = crate::record::Stamped<EventKind>;

/// How Redis's engine names itself in Events.

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
// A handful of events per failover: boxing the record would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum EventKind {
    /// Every node answered as a replica without a master: the most advanced is promoted.
    MasterBootstrapped { node: NodeId, offset: u64 },
    /// Several nodes claim the master role and none is designated: nobody is adopted.
    SeveralMasters { nodes: Vec<NodeId> },
    /// A timeline step: `node` stopped taking the old master's stream at `offset`.
    Detached { node: NodeId, offset: u64 },
    Elected {
        node: NodeId,
        offset: u64,
        lost_bytes: Option<u64>,
    },
    /// A node claimed the master role without the designation (a returning old master): it is
    /// made a replica of the current master.
    StaleMasterDemoted { node: NodeId },
    /// A node answered, without syncing from a master, with another replication id and an
    /// offset gone back: it came back without its data (restarted empty, or from another
    /// history).
    DatasetLost {
        node: NodeId,
        offset_before: u64,
        offset_now: u64,
        /// The keys it came back with: some, from an append-only file it was never seen to
        /// have brought up to date in that history.
        #[serde(default)]
        keys: u64,
    },
    /// A node answered, without syncing from a master, with another replication id and offset
    /// 0 but the keys of its own append-only file: it came back with its data, which stood at
    /// about `offset_before` of the group's history.
    DatasetRestored {
        node: NodeId,
        offset_before: u64,
        keys: u64,
    },
    /// What every engine tells the same way.
    #[serde(untagged)]
    Lifecycle(Lifecycle<RecordDetail>),
}

crate::events::lifecycle_kind!(EventKind, RecordDetail);

impl crate::record::Telling for EventKind {
    fn reason(&self) -> String {
        let own = match self {
            EventKind::Lifecycle(event) => return event.reason(&Redis::VOICE),
            EventKind::MasterBootstrapped { .. } => "MasterBootstrapped",
            EventKind::SeveralMasters { .. } => "SeveralMasters",
            EventKind::Detached { .. } => "Detached",
            EventKind::Elected { .. } => "Elected",
            EventKind::StaleMasterDemoted { .. } => "StaleMasterDemoted",
            EventKind::DatasetLost { .. } => "DatasetLost",
            EventKind::DatasetRestored { .. } => "DatasetRestored",
        };
        format!("{}{own}", Redis::VOICE.reason_prefix)
    }

    fn importance(&self) -> Importance {
        match self {
            EventKind::Lifecycle(event) => event.importance(),
            EventKind::MasterBootstrapped { .. } | EventKind::DatasetRestored { .. } => {
                Importance::Normal
            }
            EventKind::StaleMasterDemoted { .. }
            | EventKind::SeveralMasters { .. }
            | EventKind::DatasetLost { .. } => Importance::Warning,
            EventKind::Detached { .. } | EventKind::Elected { .. } => Importance::Log,
        }
    }

    fn message(&self, epoch: u64) -> String {
        match self {
            EventKind::Lifecycle(event) => event.message(&Redis::VOICE, epoch),
            EventKind::MasterBootstrapped { node, offset } => format!(
                "no Redis master: promoting {node} (offset {offset}, the most advanced) with epoch {epoch}"
            ),
            EventKind::SeveralMasters { nodes } => format!(
                "several Redis nodes claim the master role ({}); adopting none",
                crate::events::join(nodes)
            ),
            EventKind::Detached { node, offset } => {
                format!("{node} detached from the old master at offset {offset}")
            }
            EventKind::Elected {
                node,
                offset,
                lost_bytes,
            } => {
                let lost = lost_bytes
                    .map_or_else(|| "unknown".to_owned(), |bytes| format!("{bytes} bytes"));
                format!("elected {node} (offset {offset}, behind the old master by {lost})")
            }
            EventKind::StaleMasterDemoted { node } => format!(
                "{node} claims the Redis master role without the designation of epoch {epoch}: making it a replica"
            ),
            EventKind::DatasetLost {
                node,
                offset_before,
                offset_now,
                keys: 0,
            } => format!(
                "{node} came back without its data: another replication id, offset {offset_now} after {offset_before} \
                 (restarted with an empty directory, or from another history); what only it held is lost"
            ),
            EventKind::DatasetLost {
                node,
                offset_before,
                offset_now,
                keys,
            } => format!(
                "{node} came back without its data: another replication id, offset {offset_now} after {offset_before}, \
                 and {keys} keys from an append-only file it was never seen to bring up to date in that history (killed \
                 before the rewrite that follows a full sync finished, or from another history); what only it held is lost"
            ),
            EventKind::DatasetRestored {
                node,
                offset_before,
                keys,
            } => format!(
                "{node} came back with the {keys} keys of its append-only file, where it stood at about offset \
                 {offset_before} (Redis keeps no replication offset in that file, so it reports a new replication id)"
            ),
        }
    }
}

/// What one `step` decided.
pub type StepOutput = crate::engine::Decided<Command, Event>;
