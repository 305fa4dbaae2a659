//! The engine's outputs: commands for the adapters (each carries the epoch it was decided under)
//! and events for people (Kubernetes Events, the demo's timeline).

use serde::{Deserialize, Serialize};

use super::info::ReplicationInfo;
use super::state::{FailoverKind, FailoverRecord};
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

pub use crate::dispatch::CommandTarget;

impl Command {
    pub fn epoch(&self) -> u64 {
        match self {
            Command::Detach { epoch, .. }
            | Command::Promote { epoch, .. }
            | Command::Replicate { epoch, .. }
            | Command::Route { epoch, .. }
            | Command::PauseWrites { epoch, .. }
            | Command::Unpause { epoch, .. } => *epoch,
        }
    }

    /// The instance acted on (for `Route`, the new master).
    pub fn node(&self) -> &NodeId {
        match self {
            Command::Detach { node, .. }
            | Command::Promote { node, .. }
            | Command::Replicate { node, .. }
            | Command::PauseWrites { node, .. }
            | Command::Unpause { node, .. } => node,
            Command::Route { master, .. } => master,
        }
    }

    pub fn target(&self) -> CommandTarget {
        match self {
            Command::Route { .. } => CommandTarget::Router,
            _ => CommandTarget::Instance(self.node().clone()),
        }
    }
}

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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum EventKind {
    MasterAdopted {
        node: NodeId,
    },
    /// Every node answered as a replica without a master: the most advanced is promoted.
    MasterBootstrapped {
        node: NodeId,
        offset: u64,
    },
    /// Several nodes claim the master role and none is designated: nobody is adopted.
    SeveralMasters {
        nodes: Vec<NodeId>,
    },
    MasterSuspected {
        node: NodeId,
        reason: String,
    },
    MasterRecovered {
        node: NodeId,
    },
    FailoverStarted {
        from: NodeId,
        reason: String,
    },
    /// A timeline step: `node` stopped taking the old master's stream at `offset`.
    Detached {
        node: NodeId,
        offset: u64,
    },
    /// The old master can no longer take an acknowledged write.
    MasterFenced {
        from: NodeId,
        how: String,
    },
    /// Not enough replicas are detached yet to fence an old master that may still run.
    FencingBlocked {
        reason: String,
    },
    Elected {
        node: NodeId,
        offset: u64,
        lost_bytes: Option<u64>,
    },
    Promoted {
        node: NodeId,
    },
    Routed {
        node: NodeId,
    },
    FailoverCompleted {
        record: FailoverRecord,
    },
    /// No replica may be promoted within the loss bound; the engine keeps trying.
    FailoverRefused {
        reason: String,
    },
    SwitchoverStarted {
        from: NodeId,
        to: NodeId,
    },
    SwitchoverCompleted {
        record: FailoverRecord,
    },
    SwitchoverAborted {
        reason: String,
    },
    /// A node claimed the master role without the designation (a returning old master): it is
    /// made a replica of the current master.
    StaleMasterDemoted {
        node: NodeId,
    },
    CommandFailed {
        command: String,
        error: String,
    },
}

impl crate::record::Telling for EventKind {
    /// A stable CamelCase reason for Kubernetes Events.
    fn reason(&self) -> &'static str {
        match self {
            EventKind::MasterAdopted { .. } => "RedisMasterAdopted",
            EventKind::MasterBootstrapped { .. } => "RedisMasterBootstrapped",
            EventKind::SeveralMasters { .. } => "RedisSeveralMasters",
            EventKind::MasterSuspected { .. } => "RedisMasterSuspected",
            EventKind::MasterRecovered { .. } => "RedisMasterRecovered",
            EventKind::FailoverStarted { .. } => "RedisFailoverStarted",
            EventKind::Detached { .. } => "RedisDetached",
            EventKind::MasterFenced { .. } => "RedisMasterFenced",
            EventKind::FencingBlocked { .. } => "RedisFencingBlocked",
            EventKind::Elected { .. } => "RedisElected",
            EventKind::Promoted { .. } => "RedisPromoted",
            EventKind::Routed { .. } => "RedisRouted",
            EventKind::FailoverCompleted { .. } => "RedisFailoverCompleted",
            EventKind::FailoverRefused { .. } => "RedisFailoverRefused",
            EventKind::SwitchoverStarted { .. } => "RedisSwitchoverStarted",
            EventKind::SwitchoverCompleted { .. } => "RedisSwitchoverCompleted",
            EventKind::SwitchoverAborted { .. } => "RedisSwitchoverAborted",
            EventKind::StaleMasterDemoted { .. } => "RedisStaleMasterDemoted",
            EventKind::CommandFailed { .. } => "RedisCommandFailed",
        }
    }

    fn importance(&self) -> crate::engine::Importance {
        use crate::engine::Importance;
        match self {
            EventKind::FailoverCompleted { .. }
            | EventKind::SwitchoverStarted { .. }
            | EventKind::SwitchoverCompleted { .. }
            | EventKind::MasterAdopted { .. }
            | EventKind::MasterBootstrapped { .. } => Importance::Normal,
            EventKind::FailoverStarted { .. }
            | EventKind::FailoverRefused { .. }
            | EventKind::FencingBlocked { .. }
            | EventKind::SwitchoverAborted { .. }
            | EventKind::StaleMasterDemoted { .. }
            | EventKind::SeveralMasters { .. }
            | EventKind::MasterSuspected { .. } => Importance::Warning,
            _ => Importance::Log,
        }
    }

    fn message(&self, epoch: u64) -> String {
        match self {
            EventKind::MasterAdopted { node } => {
                format!("adopted Redis master {node} with epoch {epoch}")
            }
            EventKind::MasterBootstrapped { node, offset } => format!(
                "no Redis master: promoting {node} (offset {offset}, the most advanced) with epoch {epoch}"
            ),
            EventKind::SeveralMasters { nodes } => format!(
                "several Redis nodes claim the master role ({}); adopting none",
                join(nodes)
            ),
            EventKind::MasterSuspected { node, reason } => {
                format!("Redis master {node} is failing: {reason}")
            }
            EventKind::MasterRecovered { node } => {
                format!("Redis master {node} answers again, no failover")
            }
            EventKind::FailoverStarted { from, reason } => {
                format!("Redis failover from {from} started with epoch {epoch}: {reason}")
            }
            EventKind::Detached { node, offset } => {
                format!("{node} detached from the old master at offset {offset}")
            }
            EventKind::MasterFenced { from, how } => {
                format!("{from} can no longer take an acknowledged write: {how}")
            }
            EventKind::FencingBlocked { reason } => {
                format!("not promoting any Redis replica yet: {reason}")
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
            EventKind::Promoted { node } => format!("{node} promoted with epoch {epoch}"),
            EventKind::Routed { node } => format!("Redis writes routed to {node}"),
            EventKind::FailoverCompleted { record } | EventKind::SwitchoverCompleted { record } => {
                let kind = match record.kind {
                    FailoverKind::Failover => "failover",
                    FailoverKind::Switchover => "switchover",
                };
                let to = record.to.as_ref().map_or("nobody", NodeId::as_str);
                let rto = record
                    .rto_ms
                    .map_or_else(|| "unknown".to_owned(), |ms| format!("{ms} ms"));
                let lost = record
                    .lost_bytes
                    .map_or_else(|| "unknown".to_owned(), |b| format!("{b} bytes"));
                format!(
                    "Redis {kind} {} -> {to} completed: routed after {rto}, offset not received {lost}",
                    record.from
                )
            }
            EventKind::FailoverRefused { reason } => format!("Redis failover refused: {reason}"),
            EventKind::SwitchoverStarted { from, to } => {
                format!("Redis switchover {from} -> {to} started with epoch {epoch}")
            }
            EventKind::SwitchoverAborted { reason } => {
                format!("Redis switchover aborted: {reason}")
            }
            EventKind::StaleMasterDemoted { node } => format!(
                "{node} claims the Redis master role without the designation of epoch {epoch}: making it a replica"
            ),
            EventKind::CommandFailed { command, error } => format!("{command} failed: {error}"),
        }
    }
}

pub(super) fn join(nodes: &[NodeId]) -> String {
    nodes
        .iter()
        .map(NodeId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one `step` decided.
pub type StepOutput = crate::engine::Decided<Command, Event>;

impl crate::dispatch::Targeted for Command {
    fn target(&self) -> CommandTarget {
        Command::target(self)
    }
}
